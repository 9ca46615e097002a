"""Habits: skills run on a cron schedule (contract §2.4, §3.3; docs/habits.md)."""
