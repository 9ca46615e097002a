"""Stripe's webhooks: the inbox that loses nothing (docs/billing.md "Webhooks: the inbox",
decision 0165).

:func:`receive` (the route ``POST /api/v1/webhooks/stripe``) verifies the signature on the raw
body with the SDK against every configured secret (rotation), stores the event in
``kijko_private.stripe_events`` keyed by its id — a repeated id stores nothing and queues
nothing — and queues the job ``billing.stripe_event`` in the same transaction, so the delivery
is answered at once and a stored event is always processed.

:func:`process` (the job, and ``kijko inbox replay``) brings Kijko's state up to Stripe's
*now*: it takes only ids from the event (which customer, which subscription, which invoice)
and re-reads the objects from Stripe (``sync.refresh_subscription``), so replayed, repeated,
late and out-of-order events converge to the same state. A failure is recorded on the row
(``attempts``, ``last_error``) and retried with backoff (``next_attempt_at``, a new job) up to
:data:`MAX_ATTEMPTS`; the owners' mails are sent once per invoice or dispute (a key in
``kijko.billing_notices`` written with the mail).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

import stripe

from kijko_core import jobs, mail
from kijko_core.billing import checkout, subscriptions, sync
from kijko_core.billing.customers import billing_session
from kijko_core.billing.stripe_api import Stripe, StripeRefused, field, is_missing, object_id
from kijko_core.db.session import Session, system_session
from kijko_core.errors import KijkoError
from kijko_core.jobs import JobCancelled, JobContext, job_kind
from kijko_core.logging import get_logger
from kijko_core.wire import WireModel, reject_unstorable

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

log = get_logger("kijko.billing")

#: The job that processes one stored event (payload: ``{"event_id": …}``; a system job).
JOB = "billing.stripe_event"
#: Processing attempts before an event is left for an operator (``kijko inbox list --failed``,
#: ``kijko inbox replay``); between them the backoff of ``KIJKO_JOB_RETRY_BASE_SECONDS``
#: doubling up to ``KIJKO_JOB_RETRY_MAX_SECONDS``.
MAX_ATTEMPTS = 10
_EVENT_ID = re.compile(r"^evt_[A-Za-z0-9_]{1,200}$")

_SUBSCRIPTION_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.paid",
        "invoice.payment_failed",
        "invoice.finalized",
        "payment_intent.processing",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
    }
)
_PAYMENT_METHOD_EVENTS = frozenset({"payment_method.attached", "payment_method.detached"})
#: The event types Kijko acts on; others are stored and marked ignored.
HANDLED = _SUBSCRIPTION_EVENTS | _PAYMENT_METHOD_EVENTS | {"customer.deleted", "charge.dispute.created"}


class WebhookSignatureInvalid(KijkoError):
    """A delivery no configured secret signed (or signed too long ago, or not an event): Stripe
    wants a non-2xx answer; nothing is said about why."""

    status = 400
    code = "WEBHOOK_SIGNATURE_INVALID"
    default_message = "The webhook delivery could not be verified"


@dataclass(frozen=True)
class Received:
    event_id: str
    #: The id was stored before: nothing stored, nothing queued.
    duplicate: bool
    #: Stored but not to be processed (the other mode's event than the key's).
    ignored: bool


# --- receiving ------------------------------------------------------------------------------------

_INSERT = """
INSERT INTO kijko_private.stripe_events (id, type, livemode, api_version, stripe_created, payload,
                                         processed_at, outcome, note)
VALUES ($1, $2, $3, $4, $5, $6::text::jsonb,
        CASE WHEN $7::text IS NULL THEN NULL ELSE now() END,
        CASE WHEN $7::text IS NULL THEN NULL ELSE 'ignored' END, $7::text)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""


def _event_document(payload: bytes) -> dict[str, Any]:
    """The verified body as the event's fields we store, or WebhookSignatureInvalid for a body
    that is no Stripe event (signed, yet not one: refused the same way)."""
    try:
        document = reject_unstorable(json.loads(payload))
    except (ValueError, RecursionError):
        raise WebhookSignatureInvalid() from None
    if not isinstance(document, dict):
        raise WebhookSignatureInvalid()
    event_id, kind, created = document.get("id"), document.get("type"), document.get("created")
    data = document.get("data")
    if (
        not isinstance(event_id, str)
        or not _EVENT_ID.match(event_id)
        or not isinstance(kind, str)
        or not 0 < len(kind) <= 200
        or not isinstance(created, int)
        or isinstance(created, bool)
        or not isinstance(data, dict)
        or not isinstance(data.get("object"), dict)
    ):
        raise WebhookSignatureInvalid()
    return document


async def receive(kijko: Kijko, account: Stripe, payload: bytes, signature: str | None) -> Received:
    """Verify and store one delivery; queue its processing unless it was stored before."""
    try:
        account.construct_event(payload, signature)
    except (stripe.SignatureVerificationError, ValueError):
        raise WebhookSignatureInvalid() from None
    document = _event_document(payload)
    event_id = str(document["id"])
    livemode = bool(document.get("livemode"))
    # An event of the other mode (a test event at a live key's endpoint, or the other way
    # round) must not change anything: kept for the operators to see, marked ignored.
    ignored = None if livemode == account.livemode else "the event's mode (live/test) is not the configured key's"
    api_version = document.get("api_version")
    async with system_session(kijko.system_db) as db:
        stored = await db.fetchval(
            _INSERT,
            event_id,
            document["type"],
            livemode,
            str(api_version)[:100] if api_version is not None else None,
            datetime.fromtimestamp(document["created"], UTC),
            json.dumps(document),
            ignored,
        )
        if stored is not None and ignored is None:
            await jobs.enqueue(db, JOB, {"event_id": event_id})
    if stored is None:
        log.info("stripe_event_duplicate", event_id=event_id)
    else:
        log.info("stripe_event_received", event_id=event_id, type=document["type"], ignored=ignored is not None)
    return Received(event_id, duplicate=stored is None, ignored=ignored is not None)


# --- processing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What processing one event did: ``processed``, ``ignored`` or ``failed`` (with why)."""

    event_id: str
    outcome: str
    note: str | None = None
    organization_id: UUID | None = None
    error: str | None = None


class _Done(Exception):
    def __init__(self, outcome: str, note: str, org_id: UUID | None = None) -> None:
        super().__init__(note)
        self.outcome, self.note, self.org_id = outcome, note, org_id


_LOAD = "SELECT payload, processed_at FROM kijko_private.stripe_events WHERE id = $1"
_BEGIN = """
UPDATE kijko_private.stripe_events SET attempts = attempts + 1, next_attempt_at = NULL WHERE id = $1
RETURNING attempts
"""
_FINISH = """
UPDATE kijko_private.stripe_events
SET processed_at = now(), outcome = $2, note = left($3, 500), organization_id = $4, next_attempt_at = NULL
WHERE id = $1
"""
_FAILED = """
UPDATE kijko_private.stripe_events
SET last_error = left($2, 2000), organization_id = coalesce($4, organization_id),
    next_attempt_at = CASE WHEN $3::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $3::float8) END
WHERE id = $1
"""


def backoff_seconds(kijko: Kijko, attempts: int) -> float:
    """The wait before attempt ``attempts + 1``: the jobs' base doubling, capped."""
    base, cap = kijko.settings.job_retry_base_seconds, kijko.settings.job_retry_max_seconds
    return min(cap, base * 2 ** min(attempts - 1, 30))


async def process(kijko: Kijko, event_id: str, *, again: bool = False) -> Outcome | None:
    """Process stored event ``event_id``: None if there is no such event. A processed event is
    left alone unless ``again`` (a replay: processing is idempotent, mails go once)."""
    async with system_session(kijko.system_db) as db:
        row = await db.fetchrow(_LOAD, event_id)
        if row is None:
            return None
        if row["processed_at"] is not None and not again:
            return Outcome(event_id, "skipped", "processed before")
        attempts = int(await db.fetchval(_BEGIN, event_id))
    event = row["payload"]
    found: dict[str, UUID | None] = {"org": None}
    try:
        if kijko.stripe is None:
            raise RuntimeError("billing is off: no Stripe key configured in this process")
        outcome, note = await _handle(kijko, kijko.stripe, event, found)
    except JobCancelled:
        raise
    except _Done as done:
        outcome, note, found["org"] = done.outcome, done.note, done.org_id or found["org"]
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        delay = backoff_seconds(kijko, attempts) if attempts < MAX_ATTEMPTS else None
        async with system_session(kijko.system_db) as db:
            await db.execute(_FAILED, event_id, error, delay, found["org"])
            if delay is not None:
                await jobs.enqueue(db, JOB, {"event_id": event_id}, delay_seconds=delay)
        log.warning("stripe_event_failed", event_id=event_id, attempts=attempts, error=error[:300], retry_in=delay)
        return Outcome(event_id, "failed", error=error, organization_id=found["org"])
    async with system_session(kijko.system_db) as db:
        await db.execute(_FINISH, event_id, outcome, note, found["org"])
    log.info("stripe_event_processed", event_id=event_id, type=event.get("type"), outcome=outcome)
    return Outcome(event_id, outcome, note, found["org"])


@job_kind(JOB, max_attempts=3, lease_seconds=120, timeout_seconds=600)
async def stripe_event(ctx: JobContext) -> None:
    """One stored event's processing (its failures are retried by :func:`process` itself; the
    job's own attempts cover a worker that died)."""
    await process(ctx.kijko, str(ctx.payload["event_id"]))


async def _handle(
    kijko: Kijko, account: Stripe, event: Mapping[str, Any], found: dict[str, UUID | None]
) -> tuple[str, str]:
    kind = str(event["type"])
    obj = event["data"]["object"]
    if bool(event.get("livemode")) != account.livemode:  # a replay of one stored as ignored
        return "ignored", "the event's mode (live/test) is not the configured key's"
    if kind not in HANDLED:
        return "ignored", "not an event Kijko acts on"
    if kind == "charge.dispute.created":
        charge = await account.call(account.v1.charges.retrieve_async(str(obj["charge"])))
        customer_id = object_id(field(charge, "customer"))
    elif kind == "customer.deleted":
        customer_id = object_id(obj.get("id"))
    else:
        customer_id = object_id(obj.get("customer"))
    org_id = await sync.organization_of(kijko, customer_id)
    if org_id is None:
        return "ignored", "not the customer of an organization here"
    found["org"] = org_id
    if kind in _PAYMENT_METHOD_EVENTS:
        return "processed", "payment methods are read from Stripe when shown: nothing stored"
    if kind == "customer.deleted":
        return await _customer_deleted(kijko, account, org_id, str(customer_id))
    if kind == "charge.dispute.created":
        await _dispute(kijko, org_id, obj, charge)
        return "processed", "dispute: owners told"
    assert customer_id is not None
    if kind == "checkout.session.completed" and obj.get("mode") == "subscription":
        # A second Checkout completed despite the guards is cancelled here, not only when its
        # return page syncs (decision 0163).
        try:
            await checkout.keep_one_subscription(kijko, account, org_id, customer_id)
        except subscriptions.UnknownPrice as exc:
            raise _Done("ignored", f"checkout {obj.get('id')}: {exc}", org_id) from None
        return "processed", "subscriptions re-read from Stripe; duplicates cancelled"
    for sub_id in await _subscriptions_of(account, kind, obj, customer_id):
        try:
            await sync.refresh_subscription(kijko, account, org_id, sub_id)
        except subscriptions.UnknownPrice as exc:
            raise _Done("ignored", f"subscription {sub_id}: {exc}", org_id) from None
    if kind in ("invoice.payment_failed", "checkout.session.async_payment_failed"):
        invoice_id = object_id(obj.get("id") if kind.startswith("invoice.") else obj.get("invoice"))
        if invoice_id:
            await _payment_failed(kijko, account, org_id, invoice_id)
    return "processed", "subscription re-read from Stripe"


async def _subscriptions_of(account: Stripe, kind: str, obj: Mapping[str, Any], customer_id: str) -> list[str]:
    """The subscriptions an event is about, by id only (their state is read from Stripe)."""
    if kind.startswith("customer.subscription."):
        return [str(obj["id"])]
    if kind.startswith("invoice."):
        sub = object_id(field(obj, "parent", "subscription_details", "subscription"))
        return [sub] if sub else []
    if kind.startswith("checkout.session."):
        sub = object_id(obj.get("subscription"))
        return [sub] if sub else []
    # A payment intent names its customer only: the customer's latest subscriptions.
    listed = await account.call(
        account.v1.subscriptions.list_async({"customer": customer_id, "status": "all", "limit": 3})
    )
    return [str(sub.id) for sub in reversed(listed.data)]  # oldest first: the newest is stored last


_MARK_DELETED = """
UPDATE kijko.billing_customers SET deleted_at = coalesce(deleted_at, now())
WHERE organization_id = $1 AND stripe_customer_id = $2
"""


async def _customer_deleted(kijko: Kijko, account: Stripe, org_id: UUID, customer_id: str) -> tuple[str, str]:
    try:
        customer = await account.call(account.v1.customers.retrieve_async(customer_id))
    except StripeRefused as exc:
        if not is_missing(exc):
            raise
        gone = True
    else:
        gone = bool(field(customer, "deleted"))
    if not gone:
        return "ignored", "the customer exists at Stripe"
    # Stripe cancelled its subscriptions with it: store their last state (the row stays).
    listed = await account.call(
        account.v1.subscriptions.list_async({"customer": customer_id, "status": "all", "limit": 3})
    )
    for sub in reversed(listed.data):
        try:
            await sync.refresh_subscription(kijko, account, org_id, str(sub.id))
        except subscriptions.UnknownPrice:
            continue
    async with billing_session(kijko, org_id) as db:
        await db.execute(_MARK_DELETED, org_id, customer_id)
    return "processed", "customer marked deleted"


# --- the owners' mails ---------------------------------------------------------------------------

_NOTICE = """
INSERT INTO kijko.billing_notices (organization_id, key) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING key
"""
_GRACE = "SELECT plan_id, grace_until FROM kijko.subscriptions WHERE organization_id = $1"


def money(cents: int, currency: str) -> str:
    """``2900, "eur"`` → ``"29.00 EUR"`` (integer cents, Decimal: never a float)."""
    return f"{(Decimal(int(cents)) / 100).quantize(Decimal('0.01'))} {currency.upper()}"


def _day(value: datetime | int | None) -> str:
    if value is None:
        return "-"
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


async def _once(kijko: Kijko, org_id: UUID, key: str, send: Callable[[Session], Awaitable[Any]]) -> bool:
    """``send`` in the transaction that records ``key``: once per organization and key."""
    async with billing_session(kijko, org_id) as db:
        if await db.fetchval(_NOTICE, org_id, key) is None:
            return False
        await send(db)
    return True


async def _payment_failed(kijko: Kijko, account: Stripe, org_id: UUID, invoice_id: str) -> None:
    invoice = await account.call(account.v1.invoices.retrieve_async(invoice_id))
    if field(invoice, "status") in ("paid", "void", "draft"):
        return  # paid since (a late or replayed failure): nothing to tell
    renewal = field(invoice, "billing_reason") == "subscription_cycle"

    async def send(db: Session) -> None:
        row = await db.fetchrow(_GRACE, org_id)
        plan = kijko.plans.get(row["plan_id"]).name if row is not None else "paid"
        values = {
            "what": "the renewal payment" if renewal else "a payment",
            "payment": "The renewal payment" if renewal else "The payment",
            "plan": plan,
            "amount": money(int(field(invoice, "amount_due") or 0), str(field(invoice, "currency") or "eur")),
            "invoice": str(field(invoice, "number") or invoice_id),
            "grace_until": _day(row["grace_until"] if row is not None else None),
        }
        await mail.send_to_owners(db, template="payment_failed", values=values, org_id=org_id)

    if await _once(kijko, org_id, f"payment_failed:{invoice_id}", send):
        log.info("billing_mail", template="payment_failed", renewal=renewal)


async def _dispute(kijko: Kijko, org_id: UUID, dispute: Mapping[str, Any], charge: Any) -> None:
    async def send(db: Session) -> None:
        values = {
            "amount": money(
                int(dispute.get("amount") or field(charge, "amount") or 0), str(dispute.get("currency") or "eur")
            ),
            "reason": str(dispute.get("reason") or "unknown").replace("_", " "),
            "due_by": _day(field(dispute, "evidence_details", "due_by")),
        }
        await mail.send_to_owners(db, template="dispute_created", values=values, org_id=org_id)

    if await _once(kijko, org_id, f"dispute:{dispute['id']}", send):
        log.info("billing_mail", template="dispute_created")


# --- the operators' inbox ------------------------------------------------------------------------

_LIST = """
SELECT id, type, livemode, received_at, attempts, next_attempt_at, processed_at, outcome, note, last_error,
       organization_id
FROM kijko_private.stripe_events
WHERE NOT $1 OR (processed_at IS NULL AND last_error IS NOT NULL)
ORDER BY received_at DESC, id
LIMIT $2
"""


async def inbox(db: Session, *, failed: bool = False, limit: int = 50) -> list[dict[str, Any]]:
    """The newest events first; ``failed``: only those whose processing failed and is not done."""
    return [dict(row) for row in await db.fetch(_LIST, failed, limit)]


class WebhookAnswer(WireModel):
    """The answer to a delivery Kijko stored (or had stored before: ``duplicate``)."""

    received: bool
    event_id: str
    duplicate: bool


# --- retention ------------------------------------------------------------------------------------

#: Events deleted per statement, and statements per sweeper tick (bounded, like every sweep).
RETENTION_BATCH = 1000
RETENTION_BATCHES_PER_TICK = 4
_DELETE_DONE = """
DELETE FROM kijko_private.stripe_events WHERE id IN (
    SELECT id FROM kijko_private.stripe_events
    WHERE processed_at IS NOT NULL AND received_at < now() - make_interval(days => $1)
    ORDER BY received_at
    LIMIT $2
)
"""


@jobs.sweep_step("billing_inbox")
async def sweep_inbox(kijko: Kijko) -> int:
    """Delete events processed or ignored and received more than
    ``KIJKO_STRIPE_INBOX_RETENTION_DAYS`` ago (events not done stay for an operator; Stripe
    stops redelivering an event after three days); returns how many."""
    deleted = 0
    for _ in range(RETENTION_BATCHES_PER_TICK):
        async with system_session(kijko.system_db) as db:
            status = await db.execute(_DELETE_DONE, kijko.settings.stripe_inbox_retention_days, RETENTION_BATCH)
        count = int(status.rsplit(" ", 1)[-1])
        deleted += count
        if count < RETENTION_BATCH:
            break
    return deleted
