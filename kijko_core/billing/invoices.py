"""The organization's invoices, read from Stripe page by page (docs/billing.md "Payment
methods, invoices and the portal", decision 0164).

``GET /billing/invoices?limit=&startingAfter=`` answers ``{invoices, hasMore}``, newest first,
like the other "load more" lists (``{executions, hasMore}``): the next page starts after the
last invoice's ``id``. A cursor that is not an invoice of this organization's customer —
another customer's, unknown, malformed — is the same 422 on ``startingAfter``: its owner's
invoices are never read.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from kijko_core.billing.stripe_api import Stripe, StripeRefused, field, is_missing
from kijko_core.errors import ValidationFailed
from kijko_core.wire import WireInput, WireModel

InvoiceStatus = Literal["draft", "open", "paid", "void", "uncollectible"]
_INVOICE_ID = re.compile(r"in_[A-Za-z0-9]{1,250}")


class InvoiceQuery(WireInput):
    limit: int = Field(default=10, ge=1, le=100)
    #: The ``id`` of the last invoice of the previous page.
    starting_after: str | None = Field(default=None, max_length=255)


class Invoice(WireModel):
    """The contract's Invoice (§3.6), read from Stripe. ``id`` is Stripe's invoice id (Kijko
    stores no invoices), ``userId`` null (the organization's), amounts in integer cents."""

    id: str
    user_id: UUID | None
    stripe_invoice_id: str
    #: Stripe's invoice number; null while the invoice is a draft.
    invoice_number: str | None
    status: InvoiceStatus
    amount_due: int
    amount_paid: int
    currency: str
    description: str | None
    #: Stripe's hosted invoice page.
    invoice_url: str | None
    pdf_url: str | None
    #: The service period billed: from the invoice's lines (the subscription's period), else
    #: the invoice's own period.
    period_start: datetime
    period_end: datetime
    due_date: datetime | None
    paid_at: datetime | None
    created_at: datetime


class InvoiceList(WireModel):
    """A page of invoices, newest first; ``hasMore``: ask again with ``startingAfter`` the last
    invoice's ``id``."""

    invoices: list[Invoice]
    has_more: bool


def _at(epoch: int | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _period(invoice: Any) -> tuple[int, int]:
    periods = [field(line, "period") for line in (field(field(invoice, "lines"), "data") or [])]
    starts = [field(p, "start") for p in periods if p is not None and field(p, "start") is not None]
    ends = [field(p, "end") for p in periods if p is not None and field(p, "end") is not None]
    if starts and ends:
        return min(starts), max(ends)
    return invoice.period_start, invoice.period_end


def shown(invoice: Any) -> Invoice:
    start, end = _period(invoice)
    transitions = field(invoice, "status_transitions")
    return Invoice(
        id=invoice.id,
        user_id=None,
        stripe_invoice_id=invoice.id,
        invoice_number=invoice.number,
        status=invoice.status,
        amount_due=invoice.amount_due,
        amount_paid=invoice.amount_paid,
        currency=str(invoice.currency).lower(),
        description=invoice.description,
        invoice_url=invoice.hosted_invoice_url,
        pdf_url=invoice.invoice_pdf,
        period_start=datetime.fromtimestamp(start, UTC),
        period_end=datetime.fromtimestamp(end, UTC),
        due_date=_at(invoice.due_date),
        paid_at=_at(field(transitions, "paid_at") if transitions is not None else None),
        created_at=datetime.fromtimestamp(invoice.created, UTC),
    )


def _not_ours() -> ValidationFailed:
    return ValidationFailed("startingAfter is not an invoice of this organization", field="startingAfter")


def _customer_of(invoice: Any) -> str | None:
    customer = field(invoice, "customer")
    return customer if customer is None or isinstance(customer, str) else field(customer, "id")


async def list_invoices(stripe: Stripe, customer_id: str | None, query: InvoiceQuery) -> InvoiceList:
    """A page of the customer's invoices (none without a customer)."""
    cursor = query.starting_after
    if cursor is not None:
        if customer_id is None or not _INVOICE_ID.fullmatch(cursor):
            raise _not_ours()
        try:
            after = await stripe.call(stripe.v1.invoices.retrieve_async(cursor))
        except StripeRefused as exc:
            if is_missing(exc):
                raise _not_ours() from None
            raise
        if _customer_of(after) != customer_id:
            raise _not_ours()
    if customer_id is None:
        return InvoiceList(invoices=[], has_more=False)
    params: dict[str, Any] = {"customer": customer_id, "limit": query.limit}
    if cursor is not None:
        params["starting_after"] = cursor
    try:
        page = await stripe.call(stripe.v1.invoices.list_async(params))
    except StripeRefused as exc:
        if is_missing(exc):  # the customer, or the cursor, vanished at Stripe meanwhile
            if cursor is not None:
                raise _not_ours() from None
            return InvoiceList(invoices=[], has_more=False)
        raise
    return InvoiceList(invoices=[shown(invoice) for invoice in page.data], has_more=bool(page.has_more))
