"""One blueprint per domain; each only translates HTTP to service calls.

``BLUEPRINTS`` is the one list ``create_app`` registers, in order: a new domain adds its
blueprint here (a ``Blueprint``, or a function of the settings that makes one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from quart import Blueprint

from kijko_core.config import Settings
from kijko_server import health, swagger
from kijko_server.blueprints import (
    analytics,
    auth,
    billing,
    billing_details,
    billing_payments,
    billing_subscription,
    executions,
    habits,
    index,
    ingestion,
    llm_keys,
    members,
    oauth,
    organizations,
    plugins,
    projects,
    reflexes,
    repositories,
    runs,
    search,
    skills,
    sources,
    stripe_webhooks,
    webhooks,
    wellknown,
)
from kijko_server.ratelimits import AuthLimits

BlueprintEntry = Blueprint | Callable[[Settings], Blueprint]


def _auth(settings: Settings) -> Blueprint:
    return auth.auth_blueprint(AuthLimits(settings))


def _analytics(settings: Settings) -> Blueprint:
    return analytics.analytics_blueprint(settings)


def _invitations(settings: Settings) -> Blueprint:
    return members.invitations_blueprint(settings.rate_limit_invitation_lookup_per_minute)


BLUEPRINTS: Final[tuple[BlueprintEntry, ...]] = (
    index.bp,
    health.bp,
    wellknown.bp,
    _auth,
    projects.bp,
    members.bp,
    _invitations,
    repositories.bp,
    search.bp,
    ingestion.bp,
    organizations.bp,
    llm_keys.bp,
    billing_details.bp,
    oauth.bp,
    sources.bp,
    skills.bp,
    executions.bp,
    habits.bp,
    reflexes.bp,
    webhooks.bp,
    stripe_webhooks.bp,
    runs.bp,
    billing.bp,
    billing_payments.bp,
    billing_subscription.bp,
    plugins.bp,
    swagger.bp,
    _analytics,
)


def blueprints(settings: Settings) -> list[Blueprint]:
    return [entry if isinstance(entry, Blueprint) else entry(settings) for entry in BLUEPRINTS]
