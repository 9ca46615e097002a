"""The wizard's sources (contract §2.2.7): git-provider connections, repository look-ups at
the providers, uploaded files and a manual project's text."""
