"""The local identity provider: Kijko signs its own tokens (embedded default)."""
