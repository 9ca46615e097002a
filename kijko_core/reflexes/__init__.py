"""Reflexes: skills run when something happens — a signed webhook or one of Kijko's own events
(contract §2.5, §3.4; docs/reflexes.md)."""
