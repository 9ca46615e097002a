"""Kijko's ASGI application: blueprints, auth, error shape, logging, health."""

from kijko_server.app import create_app

__all__ = ["create_app"]
