"""Search over a project's current index: ranked chunks and the indexed files (docs/search.md)."""
