"""Organizations: the caller's organizations, the active one, its members and user search."""
