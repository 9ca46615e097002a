"""Executions: one run of a skill, by hand, by a habit or by a reflex (contract §2.6, §3.5;
docs/executions.md)."""
