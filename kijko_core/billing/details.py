"""An organization's billing details (``kijko.billing_details``, migration 0024; issue 9 §4).

One row per organization, made by the first save. Owners change the details, owners and admins
read them (ARCHITECTURE §3: billing is the organization's; members and viewers get 403). A save
is a merge (decision 0161): the UI saves one field at a time, on blur, so a body changes exactly
the fields it names, ``null`` (or a blank string) clears one, and a field the details do not
have is refused (422 on that field) — a typo must not look like a save. Each value is checked
offline (:mod:`kijko_core.billing.btw`): the BTW/VAT number's checksum, the KVK number, the
country code; a bad one is 422 with ``field`` the wire name (``btwNumber``).

:func:`customer_fields` is what the Stripe Customer of the organization will be given (name,
address, tax id), so that invoices carry the details.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kijko_core.auth.principal import Principal
from kijko_core.billing.btw import InvalidVatNumber, check_country, check_kvk, check_vat
from kijko_core.db import sql
from kijko_core.db.session import TenantSession
from kijko_core.errors import NotFound, ValidationFailed
from kijko_core.permissions import Action, Policy, authorize
from kijko_core.wire import WireInput, WireModel

#: The country of details never saved (contract §3.6: ``country`` defaults to ``NL``).
DEFAULT_COUNTRY = "NL"


class BillingDetailsRecord(BaseModel):
    """A row of ``kijko.billing_details``."""

    organization_id: UUID
    company_name: str | None
    btw_number: str | None
    kvk_number: str | None
    address_line1: str | None
    address_line2: str | None
    postal_code: str | None
    city: str | None
    country: str
    updated_at: datetime
    updated_by: UUID | None


class BillingDetails(WireModel):
    """The organization's billing details (contract §3.6 ``BillingDetails``). Details never
    saved are this shape with every optional field null, ``country`` ``NL`` and ``updatedAt``
    null (decision 0161). ``userId`` is who saved them last (null when nobody has, or that user
    was erased): billing belongs to the organization, not to a user."""

    organization_id: UUID
    user_id: UUID | None
    company_name: str | None
    btw_number: str | None
    kvk_number: str | None
    address_line1: str | None
    address_line2: str | None
    postal_code: str | None
    city: str | None
    country: str
    updated_at: datetime | None

    @classmethod
    def of(cls, record: BillingDetailsRecord) -> BillingDetails:
        return cls(**record.model_dump(exclude={"updated_by"}), user_id=record.updated_by)

    @classmethod
    def empty(cls, org_id: UUID) -> BillingDetails:
        return cls(
            organization_id=org_id,
            user_id=None,
            company_name=None,
            btw_number=None,
            kvk_number=None,
            address_line1=None,
            address_line2=None,
            postal_code=None,
            city=None,
            country=DEFAULT_COUNTRY,
            updated_at=None,
        )


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _optional() -> Any:
    """A field that may be absent but not null: the document shows neither ``null`` nor a
    default (the default None is never validated and only read for fields present)."""
    return Field(default=None, json_schema_extra=_no_default)


Line = Annotated[str, Field(max_length=200)]
#: Server-managed fields of BillingDetails a client may send back with a save; they are dropped.
READ_ONLY = frozenset({"organizationId", "organization_id", "userId", "user_id", "updatedAt", "updated_at", "id"})


class PatchBillingDetails(WireInput):
    """``PATCH /billing/details``: only the fields present change; ``null`` or a blank string
    clears one (``country`` cannot be cleared). The server-managed fields of BillingDetails are
    ignored; any other field is 422."""

    model_config = ConfigDict(extra="forbid")

    company_name: Line | None = None
    btw_number: Annotated[str, Field(max_length=40)] | None = None
    kvk_number: Annotated[str, Field(max_length=20)] | None = None
    address_line1: Line | None = None
    address_line2: Line | None = None
    postal_code: Annotated[str, Field(max_length=20)] | None = None
    city: Annotated[str, Field(max_length=100)] | None = None
    #: ISO 3166-1 alpha-2; may be absent, not null.
    country: Annotated[str, Field(max_length=10)] = _optional()

    @model_validator(mode="before")
    @classmethod
    def _drop_read_only(cls, value: Any) -> Any:
        # A client may send a whole BillingDetails back; what the server manages is not taken.
        if isinstance(value, dict):
            return {key: item for key, item in value.items() if key not in READ_ONLY}
        return value

    @field_validator("country", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null (it has no default to go back to but NL: send NL)")
        return value


class ValidateBtw(WireInput):
    """``POST /billing/details/validate-btw``."""

    btw_number: Annotated[str, Field(min_length=1, max_length=40)]


#: Billing is the organization's: readable by whoever the action allows; it is never "not found".
BILLING = Policy(
    name="billing",
    not_found=NotFound,
    readable=lambda principal, resource: True,
    readable_sql=sql.Fragment("organization_id = $1"),
)

TABLE = sql.Table("kijko.billing_details", BillingDetailsRecord)
EDITABLE = (
    "company_name",
    "btw_number",
    "kvk_number",
    "address_line1",
    "address_line2",
    "postal_code",
    "city",
    "country",
)
_GET = sql.compose("SELECT {columns}\nFROM {table}\nWHERE organization_id = $1", columns=TABLE.select_list, table=TABLE)
# The first save makes the row; saves at once of different fields then each change their own.
_ENSURE = sql.compose(
    "INSERT INTO {table} (organization_id, updated_by) VALUES ($1, $2)\nON CONFLICT (organization_id) DO NOTHING",
    table=TABLE,
)
_UPDATE = sql.Update(TABLE, (*EDITABLE, "updated_by"), where=sql.Fragment("organization_id = $1"), leading=1)


def _wire_name(field: str) -> str:
    return PatchBillingDetails.model_fields[field].alias or field


def _checked(field: str, value: str | None) -> str | None:
    """The value to store for ``field`` (None clears it); ValidationFailed on the wire name."""
    if value is None or not value.strip():
        if field == "country":
            raise ValidationFailed("The country cannot be blank", field=_wire_name(field))
        return None
    text = value.strip()
    try:
        if field == "btw_number":
            return check_vat(text).compact
        if field == "kvk_number":
            return check_kvk(text)
        if field == "country":
            return check_country(text)
    except (InvalidVatNumber, ValueError) as error:
        raise ValidationFailed(str(error), field=_wire_name(field)) from None
    return text


def changes_of(data: PatchBillingDetails) -> dict[str, str | None]:
    """The columns a save changes, each value checked (the first bad one, in field order, is
    the 422)."""
    return {field: _checked(field, getattr(data, field)) for field in EDITABLE if field in data.model_fields_set}


def authorize_view(principal: Principal) -> None:
    authorize(principal, Action.VIEW_BILLING, policy=BILLING)


def authorize_manage(principal: Principal) -> None:
    authorize(principal, Action.MANAGE_BILLING, policy=BILLING)


async def read(db: TenantSession) -> BillingDetails:
    """The organization's details as they are (the empty shape before the first save), for
    anyone; the routes authorize first."""
    record = TABLE.maybe(await db.fetchrow(_GET, db.principal.org_id))
    return BillingDetails.empty(db.principal.org_id) if record is None else BillingDetails.of(record)


async def get_details(db: TenantSession) -> BillingDetails:
    """The details (owners and admins)."""
    authorize_view(db.principal)
    return await read(db)


async def update_details(db: TenantSession, data: PatchBillingDetails) -> BillingDetails:
    """Merge ``data`` into the details (owners)."""
    authorize_manage(db.principal)
    changes = changes_of(data)
    if not changes:
        return await read(db)
    org_id, user_id = db.principal.org_id, db.principal.user_id
    await db.execute(_ENSURE, org_id, user_id)
    row = await db.fetchrow(_UPDATE.statement, org_id, *_UPDATE.args({**changes, "updated_by": user_id}))
    assert row is not None  # made just above, in this transaction
    return BillingDetails.of(TABLE.one(row))


def customer_fields(details: BillingDetails) -> dict[str, Any]:
    """What the organization's Stripe Customer is to be given, in Stripe's parameter names:
    ``name`` (the company), ``address`` (always: the country at least, which Stripe Tax needs),
    ``tax_id`` (an ``eu_vat`` tax id, or None) and the KVK number in ``metadata``. None means
    "not given": the caller clears it at Stripe."""
    address = {
        "line1": details.address_line1,
        "line2": details.address_line2,
        "postal_code": details.postal_code,
        "city": details.city,
        "country": details.country,
    }
    tax_id = {"type": "eu_vat", "value": details.btw_number} if details.btw_number else None
    return {
        "name": details.company_name,
        "address": address,
        "tax_id": tax_id,
        "metadata": {"kvk_number": details.kvk_number},
    }
