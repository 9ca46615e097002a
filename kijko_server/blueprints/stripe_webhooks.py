"""Stripe's webhook endpoint (docs/billing.md "Webhooks: the inbox", decision 0165):
``POST /api/v1/webhooks/stripe``, public (``/api/v1/webhooks/*`` on ``PUBLIC_ROUTES``): the
signature is the credential.

In order: 503 ``BILLING_DISABLED`` without Stripe; the raw body, capped (413); the signature
verified on those bytes by the SDK against each configured secret (400, saying nothing about
why); the event stored in the inbox with its processing job (kijko_core/billing/webhooks.py),
200 at once — a repeated event id too, storing nothing. Processing happens in the job.

No rate limit: each refused delivery costs one HMAC per configured secret over at most the
body limit, and a verified one is Stripe's, which must not be turned away (Stripe retries
non-2xx answers for days, so a 429 would only delay them).
"""

from __future__ import annotations

from quart import Blueprint, request

from kijko_core.billing import webhooks
from kijko_core.billing.stripe_api import BillingDisabled, require
from kijko_core.errors import PayloadTooLarge, TryAgain
from kijko_server.openapi import responds
from kijko_server.requests import raw_body
from kijko_server.responses import validate_response
from kijko_server.security import public
from kijko_server.uow import runtime

bp = Blueprint("stripe_webhooks", __name__, url_prefix="/api/v1/webhooks")


@bp.post("/stripe")
@public
@responds(webhooks.WebhookSignatureInvalid, PayloadTooLarge, BillingDisabled, TryAgain)
@validate_response(webhooks.WebhookAnswer)
async def webhooks_stripe_receive() -> webhooks.WebhookAnswer:
    """Receive a Stripe event (``Stripe-Signature``): stored once by its id and processed in
    the background; 200 at once, for a repeated event too (``duplicate``). A delivery no
    configured secret signed, or signed more than five minutes ago, is 400."""
    kijko = runtime()
    account = require(kijko.stripe)
    body = await raw_body(kijko.settings.max_body_bytes)
    received = await webhooks.receive(kijko, account, body, request.headers.get("Stripe-Signature"))
    return webhooks.WebhookAnswer(received=True, event_id=received.event_id, duplicate=received.duplicate)
