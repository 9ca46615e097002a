"""The reflex webhook receiver's domain (docs/reflexes.md); the route
(kijko_server/blueprints/webhooks.py) reads the capped body, calls :func:`verify`, applies the
per-reflex rate limit to what it verified, then :func:`accept`.

:func:`verify` looks the reflex up on the system role and has the reflex's type check the
signature **before the body is parsed**, against the current secret and a previous one for
24 h after a regeneration. An unknown, inactive or non-webhook reflex, a malformed id and a bad
or stale signature all raise the same :class:`WebhookRefused`, after the same HMAC work
(against a throw-away secret when there is no reflex). :func:`accept`, for a verified delivery
only, works in a service session of the reflex's organization: deduplication on
``webhook-id``, the conditions, the execution.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

from kijko_core.crypto import DecryptionFailed
from kijko_core.db.session import ServiceActor, service_session, system_session
from kijko_core.errors import ValidationFailed
from kijko_core.plugins import Delivery, PluginError, ReflexType, SignatureInvalid, registry
from kijko_core.reflexes import conditions, repository
from kijko_core.reflexes.errors import WebhookRefused
from kijko_core.reflexes.fire import start_execution
from kijko_core.reflexes.models import Accepted, Reflex, reflex_from_row
from kijko_core.reflexes.types import new_webhook_secret
from kijko_core.wire import reject_unstorable

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

#: Verified against when there is no reflex, so an unknown id costs the same HMAC work.
_DUMMY_SECRET = new_webhook_secret()


@dataclass(frozen=True)
class Verified:
    """A delivery one of its reflex's secrets signed, and the delivery id its type read."""

    organization_id: UUID
    reflex: Reflex
    kind: ReflexType
    delivery: Delivery
    delivery_id: str


def _type_of(name: str | None) -> ReflexType | None:
    if name is None:
        return None
    try:
        kind = registry.reflex_type(name)
    except PluginError:
        return None
    return kind if kind.receives_webhooks else None


async def verify(kijko: Kijko, reflex_id: str, *, headers: Mapping[str, str], body: bytes, method: str) -> Verified:
    """The delivery to ``reflex_id`` (the path's text, maybe not an id), verified by the
    reflex's type; :class:`WebhookRefused` for every refusal alike."""
    try:
        wanted: UUID | None = UUID(reflex_id)
    except ValueError:
        wanted = None
    async with system_session(kijko.system_db, readonly=True) as system:
        row = await system.fetchrow(repository.WEBHOOK_LOOKUP, wanted)
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
    lowered = {name.lower(): value for name, value in headers.items()}
    delivery = Delivery(headers=lowered, body=body, received_at=row["received_at"], method=method)
    try:
        delivery_id = (kind or registry.reflex_type("webhook")).verify(delivery, secrets)
    except SignatureInvalid:
        raise WebhookRefused() from None
    if kind is None:  # the throw-away secret matched: impossible in practice; refused anyway
        raise WebhookRefused()
    return Verified(row["organization_id"], reflex_from_row(row), kind, delivery, delivery_id)


async def accept(kijko: Kijko, verified: Verified) -> Accepted:
    """Start the reflex's execution if the delivery matches, once per delivery id: a repeated
    id answers like the first delivery did. A body jsonb cannot hold is a 422 on ``body``;
    SKILL_INACTIVE or the skill's input refusal come from starting the execution."""
    reflex, kind, delivery = verified.reflex, verified.kind, verified.delivery
    payload = kind.payload(delivery)
    try:
        # Whatever type parsed it, it becomes an execution's input (jsonb): what jsonb cannot
        # hold is refused here, not as a 500 at the insert.
        reject_unstorable(payload)
    except ValueError as error:
        raise ValidationFailed(f"The webhook body {error}", field="body") from None
    config = kind.Config.model_validate(reflex.trigger_config)
    matched = kind.accepts(config, delivery, payload) and conditions.matches(reflex.conditions, payload)

    org_id, delivery_id = verified.organization_id, verified.delivery_id
    actor = ServiceActor("webhook.reflex", str(reflex.id))
    async with service_session(kijko.app_db, await kijko.service_capability(), org_id, actor) as db:
        if await db.fetchval(repository.REMEMBER_DELIVERY, org_id, reflex.id, delivery_id, matched) is None:
            first = await db.fetchrow(repository.FIRST_DELIVERY, org_id, reflex.id, delivery_id)
            assert first is not None
            return Accepted(execution_id=first["execution_id"], matched=first["matched"], duplicate=True)
        if not matched:
            return Accepted(matched=False)
        execution_id = await start_execution(db, kijko, reflex, payload)
        await db.execute(repository.DELIVERY_STARTED, org_id, reflex.id, delivery_id, execution_id)
    return Accepted(execution_id=execution_id)
