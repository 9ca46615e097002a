"""One Stripe Customer per organization (docs/billing.md, decision 0162).

:func:`ensure_customer` finds or makes it without ever making two: the row in
``kijko.billing_customers`` first; else Stripe's customer carrying the organization's id in its
metadata (a customer made by a request that died before storing it); else a new one, with an
idempotency key naming the organization, so two requests at once (a double click) get the same
customer from Stripe, and the second INSERT finds the row there. No transaction is open while
Stripe is asked.

The customer carries the organization's billing details (:func:`push_details`; decision 0164):
given when it is made, and pushed again after each save of the details.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import stripe as stripe_sdk

from kijko_core.billing.details import TABLE as DETAILS
from kijko_core.billing.details import BillingDetails, customer_fields
from kijko_core.billing.stripe_api import PaymentProviderUnavailable, Stripe, StripeRefused, idempotency_key, writes
from kijko_core.db import sql
from kijko_core.db.session import ServiceActor, ServiceSession, service_session
from kijko_core.errors import KijkoError
from kijko_core.logging import get_logger

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
_DETAILS = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE organization_id = $1", columns=DETAILS.select_list, table=DETAILS
)

log = get_logger("kijko.billing")


async def stored_customer(db: Any, org_id: UUID) -> str | None:
    """The organization's Stripe customer id, or None (none yet, or Stripe deleted it)."""
    row = await db.fetchrow(_STORED, org_id)
    return None if row is None or row["deleted_at"] is not None else str(row["stripe_customer_id"])


async def ensure_customer(kijko: Kijko, stripe: Stripe, org_id: UUID, email: str | None = None) -> str:
    """The organization's Stripe customer id, made at Stripe the first time it is needed, with
    the organization's billing details."""
    async with billing_session(kijko, org_id, readonly=True) as db:
        row = await db.fetchrow(_STORED, org_id)
        name = await db.fetchval(_ORGANIZATION, org_id)
        record = DETAILS.maybe(await db.fetchrow(_DETAILS, org_id))
    if row is not None and row["deleted_at"] is None:
        return str(row["stripe_customer_id"])
    details = BillingDetails.empty(org_id) if record is None else BillingDetails.of(record)
    generation = "first" if row is None else row["deleted_at"].isoformat()
    found = await stripe.call(
        stripe.v1.customers.search_async({"query": f"metadata['organization_id']:'{org_id}'", "limit": 10})
    )
    alive = [c for c in found.data if not getattr(c, "deleted", False)]
    if alive and row is None:
        customer_id = alive[0].id
    else:
        params = new_customer_params(details, name, org_id)
        if email:
            params["email"] = email
        customer = await _create(stripe, params, idempotency_key("customer", org_id, generation))
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


async def _create(stripe: Stripe, params: dict[str, Any], key: str) -> Any:
    try:
        return await stripe.call(stripe.v1.customers.create_async(params, writes(key)))
    except StripeRefused as exc:
        if exc.idempotency:
            # The details changed between two first requests of the organization (the first
            # one made the customer and has not stored it yet): its customer is the one; once
            # it is stored (or found by the search), the same request succeeds.
            raise PaymentProviderUnavailable() from exc
        if not (exc.param or "").startswith("tax_id_data") or "tax_id_data" not in params:
            raise
        # Stripe refused the VAT number (checked offline when saved): the customer is made
        # without it (a refused request stores nothing under its key); the next save pushes it.
        log.warning("stripe_tax_id_refused", param=exc.param)
        return await stripe.call(
            stripe.v1.customers.create_async({k: v for k, v in params.items() if k != "tax_id_data"}, writes(key))
        )


def new_customer_params(details: BillingDetails, organization_name: str, org_id: UUID) -> dict[str, Any]:
    """A new customer's parameters: the organization's id in its metadata, and its details
    (the company's name, else the organization's; the address's given lines; the VAT number)."""
    fields = customer_fields(details)
    metadata = {"organization_id": str(org_id)}
    if fields["metadata"]["kvk_number"]:
        metadata["kvk_number"] = fields["metadata"]["kvk_number"]
    params: dict[str, Any] = {
        "name": fields["name"] or organization_name,
        "metadata": metadata,
        "address": {key: value for key, value in fields["address"].items() if value is not None},
    }
    if fields["tax_id"] is not None:
        params["tax_id_data"] = [fields["tax_id"]]
    return params


async def push_details(stripe: Stripe, customer_id: str, details: BillingDetails, organization_name: str) -> None:
    """Give the customer the organization's saved details: name, address and KVK number (a
    cleared field is cleared at Stripe too) and its one ``eu_vat`` tax id (a sub-resource:
    other VAT ids are deleted, the saved one created if missing). Each write's key names the
    save (``updatedAt``), so a retry of this push does it once and a later save pushes again."""
    fields = customer_fields(details)
    version = details.updated_at.isoformat() if details.updated_at else "never"
    address = {key: "" if value is None else value for key, value in fields["address"].items()}
    await stripe.call(
        stripe.v1.customers.update_async(
            customer_id,
            {
                "name": fields["name"] or organization_name,
                "address": address,
                "metadata": {"kvk_number": fields["metadata"]["kvk_number"] or ""},
            },
            writes(idempotency_key("customer-details", customer_id, version)),
        )
    )
    wanted = fields["tax_id"]
    kept = False
    listed = await stripe.call(stripe.v1.customers.tax_ids.list_async(customer_id, {"limit": 100}))
    for tax in listed.data:
        if tax.type != "eu_vat":
            continue
        if wanted is not None and not kept and tax.value == wanted["value"]:
            kept = True
            continue
        await stripe.call(
            stripe.v1.customers.tax_ids.delete_async(
                customer_id, tax.id, None, writes(idempotency_key("tax-id-delete", customer_id, tax.id))
            )
        )
    if wanted is not None and not kept:
        await stripe.call(
            stripe.v1.customers.tax_ids.create_async(
                customer_id, wanted, writes(idempotency_key("tax-id", customer_id, wanted["value"], version))
            )
        )


async def details_pushed(kijko: Kijko, stripe: Stripe | None, org_id: UUID, details: BillingDetails) -> bool:
    """After a save of the details was committed: push them to the organization's customer if it
    has one. Stripe failing does not undo the save (it is logged; the next save, or the
    customer's creation, pushes again). True when pushed (or nothing to push to)."""
    if stripe is None:
        return True
    async with billing_session(kijko, org_id, readonly=True) as db:
        customer_id = await stored_customer(db, org_id)
        name = await db.fetchval(_ORGANIZATION, org_id)
    if customer_id is None:
        return True
    try:
        await push_details(stripe, customer_id, details, name)
    except (KijkoError, stripe_sdk.StripeError) as exc:  # whatever Stripe said, the save stands
        log.warning("stripe_details_push_failed", customer=customer_id, error=type(exc).__name__)
        return False
    return True
