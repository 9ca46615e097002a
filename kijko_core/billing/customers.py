"""One Stripe Customer per organization (docs/billing.md, decision 0162).

:func:`ensure_customer` finds or makes it without ever making two: the row in
``kijko.billing_customers`` first; else Stripe's customer carrying the organization's id in its
metadata (a customer made by a request that died before storing it); else a new one, with an
idempotency key naming the organization, so two requests at once (a double click) get the same
customer from Stripe, and the second INSERT finds the row there. No transaction is open while
Stripe is asked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from kijko_core.billing.stripe_api import Stripe, idempotency_key, writes
from kijko_core.db.session import ServiceActor, ServiceSession, service_session

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko


@asynccontextmanager
async def billing_session(kijko: Kijko, org_id: UUID, *, readonly: bool = False) -> AsyncIterator[ServiceSession]:
    """A service session of ``org_id`` for billing's writes: Stripe's answers are stored by the
    service, never by a member's session (migration 0025)."""
    actor = ServiceActor("billing", uuid4().hex)
    async with service_session(
        kijko.app_db, await kijko.service_capability(), org_id, actor, readonly=readonly
    ) as session:
        yield session


_STORED = "SELECT stripe_customer_id, deleted_at FROM kijko.billing_customers WHERE organization_id = $1"
# ON CONFLICT without a target: both unique indexes (organization, customer) are arbiters, so a
# concurrent INSERT of the same customer waits for the first and does nothing (with only the
# organization as the arbiter, the customer index raised a unique violation in that race).
_STORE = """
INSERT INTO kijko.billing_customers (organization_id, stripe_customer_id, livemode) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING
"""
# A customer Stripe deleted is replaced by the new one.
_REVIVE = """
UPDATE kijko.billing_customers
SET stripe_customer_id = $2, livemode = $3, deleted_at = NULL, created_at = now()
WHERE organization_id = $1 AND deleted_at IS NOT NULL
"""
_ORGANIZATION = "SELECT name FROM kijko.organizations WHERE id = $1"


async def stored_customer(db: Any, org_id: UUID) -> str | None:
    """The organization's Stripe customer id, or None (none yet, or Stripe deleted it)."""
    row = await db.fetchrow(_STORED, org_id)
    return None if row is None or row["deleted_at"] is not None else str(row["stripe_customer_id"])


async def ensure_customer(kijko: Kijko, stripe: Stripe, org_id: UUID, email: str | None = None) -> str:
    """The organization's Stripe customer id, made at Stripe the first time it is needed."""
    async with billing_session(kijko, org_id, readonly=True) as db:
        row = await db.fetchrow(_STORED, org_id)
        name = await db.fetchval(_ORGANIZATION, org_id)
    if row is not None and row["deleted_at"] is None:
        return str(row["stripe_customer_id"])
    generation = "first" if row is None else row["deleted_at"].isoformat()
    found = await stripe.call(
        stripe.v1.customers.search_async({"query": f"metadata['organization_id']:'{org_id}'", "limit": 10})
    )
    alive = [c for c in found.data if not getattr(c, "deleted", False)]
    if alive and row is None:
        customer_id = alive[0].id
    else:
        params: dict[str, Any] = {"name": name, "metadata": {"organization_id": str(org_id)}}
        if email:
            params["email"] = email
        customer = await stripe.call(
            stripe.v1.customers.create_async(params, writes(idempotency_key("customer", org_id, generation)))
        )
        stripe.check_livemode(customer)
        customer_id = customer.id
    return await store_customer(kijko, org_id, customer_id, stripe.livemode)


async def store_customer(kijko: Kijko, org_id: UUID, customer_id: str, livemode: bool) -> str:
    """Store ``customer_id`` as the organization's (unless it has a live one already, made by a
    request at the same time); the organization's customer id as stored."""
    async with billing_session(kijko, org_id) as db:
        return await stored_after_insert(db, org_id, customer_id, livemode)


async def stored_after_insert(db: ServiceSession, org_id: UUID, customer_id: str, livemode: bool) -> str:
    """Insert ``customer_id`` as the organization's in ``db`` (a service session) unless it has a
    live one; the organization's customer id as stored."""
    await db.execute(_STORE, org_id, customer_id, livemode)
    await db.execute(_REVIVE, org_id, customer_id, livemode)
    return str(await db.fetchval(_STORED, org_id))
