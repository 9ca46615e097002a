"""The reflex webhook receiver (docs/reflexes.md): ``POST /api/v1/webhooks/reflex/{reflexId}``,
public (on ``PUBLIC_ROUTES``): the signature is the credential.

In order: the raw body, capped (413 before anything else); the signature verified by the
reflex's type (kijko_core/reflexes/receiver.py: one 401 for every refusal, after the same HMAC
work); for a verified delivery only, the per-reflex rate limit (429); then deduplication on
``webhook-id``, the conditions and the execution, 202.
"""

from __future__ import annotations

from quart import Blueprint, request

from kijko_core.errors import RateLimited, ServiceUnavailable, TryAgain, ValidationFailed
from kijko_core.reflexes import receiver
from kijko_core.reflexes.errors import WebhookBodyTooLarge, WebhookRefused
from kijko_core.reflexes.models import Accepted
from kijko_core.skills.errors import SkillInactive
from kijko_server.openapi import responds
from kijko_server.ratelimits import Limit, enforce
from kijko_server.requests import raw_body
from kijko_server.responses import validate_response
from kijko_server.security import public
from kijko_server.uow import runtime

bp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks")


@bp.post("/reflex/<reflex_id>")
@public
@responds(
    WebhookRefused, WebhookBodyTooLarge, RateLimited, ValidationFailed, SkillInactive, ServiceUnavailable, TryAgain
)
@validate_response(Accepted, 202)
async def webhooks_reflex_receive(reflex_id: str) -> tuple[Accepted, int]:
    """Receive a signed delivery for a webhook reflex (Standard Webhooks: ``webhook-id``,
    ``webhook-timestamp``, ``webhook-signature``); 202 with the execution it started, or
    ``matched: false``; a repeated ``webhook-id`` answers like the first delivery."""
    kijko = runtime()
    body = await raw_body(kijko.settings.reflex_webhook_max_body_bytes, WebhookBodyTooLarge)
    headers = dict(request.headers.items())
    verified = await receiver.verify(kijko, reflex_id, headers=headers, body=body, method=request.method)
    per_minute = kijko.settings.reflex_rate_limit_per_minute
    await enforce(Limit("reflex", per_minute, 60, _no_key), str(verified.reflex.id))
    return await receiver.accept(kijko, verified), 202


async def _no_key() -> str:  # the key is the reflex id, given to ``enforce``
    return ""
