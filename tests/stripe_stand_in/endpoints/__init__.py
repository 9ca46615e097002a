"""The stand-in's endpoints, registered in ``routes.ROUTES`` as these modules are imported."""

from tests.stripe_stand_in.endpoints import catalog, customers, payments, platform, sessions, subscriptions

__all__ = ["catalog", "customers", "payments", "platform", "sessions", "subscriptions"]
