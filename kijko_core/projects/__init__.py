"""Projects: the reference slice every other domain copies (models / repository / service)."""
