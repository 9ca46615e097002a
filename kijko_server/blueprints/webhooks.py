"""The reflex webhook receiver (docs/reflexes.md): ``POST /api/v1/webhooks/reflex/{reflexId}``,
public (on ``PUBLIC_ROUTES``): the signature is the credential.

In order: the raw body, capped (413 before anything else); the reflex, looked up on the system
role; the signature verified by the reflex's type **before the body is parsed**, against the
current secret and a previous one for 24 h after a regeneration. An unknown, inactive or
non-webhook reflex, a malformed id and a bad or stale signature all get the same 401, after the
same HMAC work (against a throw-away secret when there is no reflex). Then, for a verified
delivery only: the per-reflex rate limit (429), and in a service session of the reflex's
organization: deduplication on ``webhook-id``, the conditions, the execution, 202.
"""

from __future__ import annotations

from uuid import UUID

from quart import Blueprint, current_app, request

from kijko_core.crypto import DecryptionFailed
from kijko_core.db import sql
from kijko_core.db.session import (
    ServiceActor,
    ServiceCapability,
    load_service_capability,
    service_session,
    system_session,
)
from kijko_core.errors import RateLimited, ServiceUnavailable, ValidationFailed
from kijko_core.plugins import Delivery, PluginError, ReflexType, SignatureInvalid, registry
from kijko_core.reflexes import conditions
from kijko_core.reflexes.errors import WebhookBodyTooLarge, WebhookRefused
from kijko_core.reflexes.fire import start_execution
from kijko_core.reflexes.models import COLUMNS, Accepted, reflex_from_row
from kijko_core.reflexes.types import new_webhook_secret
from kijko_core.skills.errors import SkillInactive
from kijko_core.wire import reject_unstorable
from kijko_server.openapi import responds
from kijko_server.ratelimits import Limit, enforce
from kijko_server.responses import validate_response
from kijko_server.security import public
from kijko_server.uow import runtime

bp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks")

_CAPABILITY = "kijko.reflexes.service_capability"
#: Verified against when there is no reflex, so an unknown id costs the same HMAC work.
_DUMMY_SECRET = new_webhook_secret()

# The database's clock with the reflex, if any (a LEFT JOIN: one row either way).
_LOOKUP = sql.compose(
    "SELECT now() AS received_at, r.secret_ciphertext, r.previous_secret_ciphertext,"
    " r.previous_secret_expires_at > now() AS previous_valid, {columns}"
    "\nFROM (SELECT 1) AS one LEFT JOIN kijko.reflexes r ON r.id = $1",
    columns=sql.Fragment(", ".join(f"r.{name.strip()}" for name in COLUMNS.split(","))),
)
_REMEMBER = (
    "INSERT INTO kijko.reflex_deliveries (organization_id, reflex_id, delivery_id, matched)"
    " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING delivery_id"
)
_FIRST = (
    "SELECT matched, execution_id FROM kijko.reflex_deliveries"
    " WHERE organization_id = $1 AND reflex_id = $2 AND delivery_id = $3"
)
_STARTED = (
    "UPDATE kijko.reflex_deliveries SET execution_id = $4"
    " WHERE organization_id = $1 AND reflex_id = $2 AND delivery_id = $3"
)


async def _body(cap: int) -> bytes:
    """The raw body, refused past ``cap`` bytes (by its length header, or while reading)."""
    declared = request.content_length
    if declared is not None and declared > cap:
        raise WebhookBodyTooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.body:
        size += len(chunk)
        if size > cap:
            raise WebhookBodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


async def _capability() -> ServiceCapability:
    found: ServiceCapability | None = current_app.extensions.get(_CAPABILITY)
    if found is None:
        found = current_app.extensions[_CAPABILITY] = await load_service_capability(runtime().system_db)
    return found


def _type_of(name: str | None) -> ReflexType | None:
    if name is None:
        return None
    try:
        kind = registry.reflex_type(name)
    except PluginError:
        return None
    return kind if kind.receives_webhooks else None


@bp.post("/reflex/<reflex_id>")
@public
@responds(WebhookRefused, WebhookBodyTooLarge, RateLimited, ValidationFailed, SkillInactive, ServiceUnavailable)
@validate_response(Accepted, 202)
async def webhooks_reflex_receive(reflex_id: str) -> tuple[Accepted, int]:
    """Receive a signed delivery for a webhook reflex (Standard Webhooks: ``webhook-id``,
    ``webhook-timestamp``, ``webhook-signature``); 202 with the execution it started, or
    ``matched: false``; a repeated ``webhook-id`` answers like the first delivery."""
    kijko = runtime()
    body = await _body(kijko.settings.reflex_webhook_max_body_bytes)
    try:
        wanted: UUID | None = UUID(reflex_id)
    except ValueError:
        wanted = None
    async with system_session(kijko.system_db, readonly=True) as system:
        row = await system.fetchrow(_LOOKUP, wanted)
    assert row is not None  # one row, with or without a reflex
    kind = _type_of(row["trigger_type"]) if row["id"] is not None and row["is_active"] else None
    secrets = [_DUMMY_SECRET]
    if kind is not None:
        try:
            secrets = [kijko.keyring.decrypt(bytes(row["secret_ciphertext"]).decode())]
            if row["previous_valid"]:
                secrets.append(kijko.keyring.decrypt(bytes(row["previous_secret_ciphertext"]).decode()))
        except (DecryptionFailed, TypeError):  # no secret, or a key no longer in the keyring
            kind, secrets = None, [_DUMMY_SECRET]
    headers = {name.lower(): value for name, value in request.headers.items()}
    delivery = Delivery(headers=headers, body=body, received_at=row["received_at"], method=request.method)
    try:
        delivery_id = (kind or registry.reflex_type("webhook")).verify(delivery, secrets)
    except SignatureInvalid:
        raise WebhookRefused() from None
    if kind is None:  # the throw-away secret matched: impossible in practice; refused anyway
        raise WebhookRefused()

    reflex = reflex_from_row(row)
    per_minute = kijko.settings.reflex_rate_limit_per_minute
    await enforce(Limit("reflex", per_minute, 60, _no_key), str(reflex.id))
    payload = kind.payload(delivery)
    try:
        # Whatever type parsed it, it becomes an execution's input (jsonb): what jsonb cannot
        # hold is refused here, not as a 500 at the insert.
        reject_unstorable(payload)
    except ValueError as error:
        raise ValidationFailed(f"The webhook body {error}", field="body") from None
    config = kind.Config.model_validate(reflex.trigger_config)
    matched = kind.accepts(config, delivery, payload) and conditions.matches(reflex.conditions, payload)

    org_id = row["organization_id"]
    actor = ServiceActor("webhook.reflex", str(reflex.id))
    async with service_session(kijko.app_db, await _capability(), org_id, actor) as db:
        if await db.fetchval(_REMEMBER, org_id, reflex.id, delivery_id, matched) is None:
            first = await db.fetchrow(_FIRST, org_id, reflex.id, delivery_id)
            assert first is not None
            return Accepted(execution_id=first["execution_id"], matched=first["matched"], duplicate=True), 202
        if not matched:
            return Accepted(matched=False), 202
        execution_id = await start_execution(db, kijko, reflex, payload)
        await db.execute(_STARTED, org_id, reflex.id, delivery_id, execution_id)
    return Accepted(execution_id=execution_id), 202


async def _no_key() -> str:  # the key is the reflex id, given to ``enforce``
    return ""
