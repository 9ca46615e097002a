"""The Keycloak identity provider: admin REST API, token endpoint, JWKS and OAuth brokering."""
