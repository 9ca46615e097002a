"""A plugin that ships its own tables, for tests/test_migrations.py: registered through a
``.dist-info`` folder put on ``sys.path`` (as an installed distribution would be), not installed."""
