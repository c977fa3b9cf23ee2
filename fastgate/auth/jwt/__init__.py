"""JWT authentication: the stage, its config and claims, JWKS, JOSE, revocations, sessions."""
