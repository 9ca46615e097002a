"""Contract §2.5: reflexes — CRUD, activate/deactivate, test, reset-errors, the webhook secret
and statistics. A reflex's executions are the executions blueprint's; the receiver of webhook
deliveries is kijko_server/blueprints/webhooks.py. ``/stats`` is routed before ``/<reflex_id>``."""

from __future__ import annotations

from uuid import UUID

from quart import Blueprint
from quart_schema import validate_querystring, validate_request

import kijko_core.reflexes.fire  # noqa: F401 — its finish listener, in the server process too
from kijko_core.billing.quotas import QuotaExceeded
from kijko_core.errors import RateLimited, ValidationFailed
from kijko_core.executions.spend import SpendCapReached
from kijko_core.reflexes import service
from kijko_core.reflexes.errors import (
    InvalidTriggerConfig,
    NotWebhook,
    ReflexNotFound,
    TriggerTypeUnavailable,
)
from kijko_core.reflexes.models import (
    CreateReflex,
    CreateReflexResponse,
    Reflex,
    ReflexListQuery,
    ReflexStats,
    ReflexTest,
    ReflexTestResult,
    ReflexWithSkill,
    ReflexWithSkillPage,
    SecretAnswer,
    UpdateReflex,
    WebhookInfo,
)
from kijko_core.skills.errors import SkillInactive, SkillNotFound
from kijko_core.wire import Success
from kijko_server.openapi import responds
from kijko_server.paths import entity_id
from kijko_server.ratelimits import enforce_inline_test
from kijko_server.responses import validate_response
from kijko_server.uow import TENANT_ERRORS, runtime, tenant

bp = Blueprint("reflexes", __name__, url_prefix="/api/v1/reflexes")

#: What saving a trigger can refuse besides the body's own validation.
TRIGGER_ERRORS = (InvalidTriggerConfig, TriggerTypeUnavailable, ValidationFailed)


def parse_reflex_id(raw: str) -> UUID:
    """A reflex id in a path: malformed is the same 404 as unknown."""
    return entity_id(raw, ReflexNotFound)


@bp.get("")
@responds(*TENANT_ERRORS)
@validate_querystring(ReflexListQuery)
@validate_response(ReflexWithSkillPage)
async def reflexes_list(query_args: ReflexListQuery) -> ReflexWithSkillPage:
    """The organization's reflexes with their skills, newest first, with optional filters."""
    async with tenant(readonly=True) as db:
        return await service.list_reflexes(db, query_args)


@bp.post("")
@responds(*TENANT_ERRORS, SkillNotFound, *TRIGGER_ERRORS)  # 403 for viewers
@validate_request(CreateReflex)
@validate_response(CreateReflexResponse, 201)
async def reflexes_create(data: CreateReflex) -> tuple[CreateReflexResponse, int]:
    """Create a reflex; a webhook reflex gets its URL and signing secret (shown here once)."""
    async with tenant() as db:
        return await service.create(db, runtime(), data), 201


@bp.get("/stats")
@responds(*TENANT_ERRORS)
@validate_response(ReflexStats)
async def reflexes_stats() -> ReflexStats:
    """Counts, triggers per type (every contract type and every installed one) and the five
    latest triggers."""
    async with tenant(readonly=True) as db:
        return await service.stats(db)


@bp.get("/<reflex_id>")
@responds(*TENANT_ERRORS, ReflexNotFound)
@validate_response(Reflex)
async def reflexes_get(reflex_id: str) -> Reflex:
    """One reflex (never its secret)."""
    async with tenant(readonly=True) as db:
        return await service.get(db, parse_reflex_id(reflex_id))


@bp.get("/<reflex_id>/full")
@responds(*TENANT_ERRORS, ReflexNotFound)
@validate_response(ReflexWithSkill)
async def reflexes_full(reflex_id: str) -> ReflexWithSkill:
    """One reflex with its skill."""
    async with tenant(readonly=True) as db:
        return await service.full(db, parse_reflex_id(reflex_id))


@bp.route("/<reflex_id>", methods=["PUT", "PATCH"])
@responds(*TENANT_ERRORS, ReflexNotFound, SkillInactive, *TRIGGER_ERRORS)
@validate_request(UpdateReflex)
@validate_response(Reflex)
async def reflexes_update(reflex_id: str, data: UpdateReflex) -> Reflex:
    """Change triggerConfig (validated against the reflex's type), conditions, isActive."""
    async with tenant() as db:
        return await service.update(db, runtime(), parse_reflex_id(reflex_id), data)


@bp.delete("/<reflex_id>")
@responds(*TENANT_ERRORS, ReflexNotFound)
@validate_response(Success)
async def reflexes_delete(reflex_id: str) -> Success:
    """Delete a reflex (its executions stay in the history)."""
    async with tenant() as db:
        await service.delete(db, parse_reflex_id(reflex_id))
    return Success()


@bp.post("/<reflex_id>/activate")
@responds(*TENANT_ERRORS, ReflexNotFound, SkillInactive)
@validate_response(Reflex)
async def reflexes_activate(reflex_id: str) -> Reflex:
    """Activate: consecutive failures back to 0, the error cleared; 409 if the skill is inactive."""
    return await _set_active(reflex_id, True)


@bp.post("/<reflex_id>/deactivate")
@responds(*TENANT_ERRORS, ReflexNotFound)
@validate_response(Reflex)
async def reflexes_deactivate(reflex_id: str) -> Reflex:
    """Deactivate: deliveries are refused (401), events ignored."""
    return await _set_active(reflex_id, False)


@bp.post("/<reflex_id>/reset-errors")
@responds(*TENANT_ERRORS, ReflexNotFound, SkillInactive)
@validate_response(Reflex)
async def reflexes_reset_errors(reflex_id: str) -> Reflex:
    """Failures back to 0, the error cleared and the reflex active again."""
    return await _set_active(reflex_id, True)


async def _set_active(reflex_id: str, active: bool) -> Reflex:
    """activate, reset-errors (the same) and deactivate."""
    async with tenant() as db:
        return await service.set_active(db, parse_reflex_id(reflex_id), active)


@bp.post("/<reflex_id>/test")
@responds(*TENANT_ERRORS, ReflexNotFound, ValidationFailed, SpendCapReached, RateLimited, QuotaExceeded)
@validate_request(ReflexTest)
@validate_response(ReflexTestResult)
async def reflexes_test(reflex_id: str, data: ReflexTest) -> ReflexTestResult:
    """Evaluate the conditions on ``{payload}``; on a match run the skill inline (not recorded)."""
    async with tenant(readonly=True) as db:
        prepared = await service.prepare_test(db, runtime(), parse_reflex_id(reflex_id), data)
        user_id = db.principal.user_id
    if isinstance(prepared, ReflexTestResult):
        return prepared
    await enforce_inline_test(user_id)  # only a run counts: evaluating the conditions is free
    return await service.run_test(runtime(), tenant, prepared)  # no transaction held while it runs


@bp.post("/<reflex_id>/regenerate-secret")
@responds(*TENANT_ERRORS, ReflexNotFound, NotWebhook)
@validate_response(SecretAnswer)
async def reflexes_regenerate_secret(reflex_id: str) -> SecretAnswer:
    """A new signing secret; the previous one stays valid for 24 hours."""
    async with tenant() as db:
        return await service.regenerate_secret(db, runtime(), parse_reflex_id(reflex_id))


@bp.get("/<reflex_id>/webhook-info")
@responds(*TENANT_ERRORS, ReflexNotFound, NotWebhook)
@validate_response(WebhookInfo)
async def reflexes_webhook_info(reflex_id: str) -> WebhookInfo:
    """URL, current secret, method and a sample payload (for whoever may edit the reflex)."""
    async with tenant(readonly=True) as db:
        return await service.webhook_info(db, runtime(), parse_reflex_id(reflex_id))
