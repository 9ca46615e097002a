"""Ingestion: a project's sources turned into searchable chunks (docs/ingestion.md)."""
