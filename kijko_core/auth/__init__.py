"""Identity: token verification, the local and Keycloak providers, and the auth service."""
