"""A project's git repositories (contract §2.2.2, §2.2.6 validate-repository) and the
caller's recent repositories (§2.2.7)."""
