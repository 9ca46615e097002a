"""Skills: LLM prompt configurations an organization defines and runs (contract §2.3, §3.2;
docs/skills.md)."""
