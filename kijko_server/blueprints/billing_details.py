"""The organization's billing details and BTW/VAT validation (docs/billing-details.md): owners
save them, owners and admins read them; members and viewers get 403."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_request

from kijko_core.billing import customers, details, vies
from kijko_core.billing.details import BillingDetails, PatchBillingDetails, ValidateBtw
from kijko_core.billing.vies import BtwValidationResult
from kijko_core.errors import RateLimited, ServiceUnavailable
from kijko_server.openapi import responds
from kijko_server.ratelimits import enforce_btw_validation
from kijko_server.responses import validate_response
from kijko_server.uow import TENANT_ERRORS, runtime, tenant

bp = Blueprint("billing_details", __name__, url_prefix="/api/v1/billing/details")


@bp.get("")
@responds(*TENANT_ERRORS)
@validate_response(BillingDetails)
async def get_billing_details() -> BillingDetails:
    """The organization's billing details (owners and admins). Before the first save: every
    optional field null, ``country`` ``NL``, ``updatedAt`` null."""
    async with tenant(readonly=True) as db:
        return await details.get_details(db)


@bp.patch("")
@responds(*TENANT_ERRORS)
@validate_request(PatchBillingDetails)
@validate_response(BillingDetails)
async def patch_billing_details(data: PatchBillingDetails) -> BillingDetails:
    """Save some of the billing details (owners): a merge — the fields present change, the others
    stay; ``null`` clears one. An invalid BTW/VAT number (checksum), KVK number (8 digits) or
    country (ISO 3166-1 alpha-2), or a field the details do not have, is 422 on that field.
    Once saved, the details are given to the organization's Stripe customer, if it has one;
    Stripe failing then does not undo the save (the next save pushes them again)."""
    async with tenant() as db:
        saved = await details.update_details(db, data)
        org_id = db.principal.org_id
    kijko = runtime()
    await customers.details_pushed(kijko, kijko.stripe, org_id, saved)
    return saved


@bp.post("/validate-btw")
@responds(*TENANT_ERRORS, RateLimited, ServiceUnavailable)
@validate_request(ValidateBtw)
@validate_response(BtwValidationResult)
async def validate_btw(data: ValidateBtw) -> BtwValidationResult:
    """Validate a BTW/VAT number (owners): its checksum offline, then VIES. An invalid checksum
    is ``isValid: false`` without asking VIES; VIES unreachable or failing: ``isValid`` from
    the checksum with an ``errorMessage`` saying VIES could not confirm it. Each user may
    validate ``KIJKO_VIES_RATE_LIMIT_PER_MINUTE`` numbers a minute (429 with ``Retry-After``)."""
    kijko = runtime()
    async with tenant(readonly=True) as db:
        details.authorize_manage(db.principal)
        user_id = db.principal.user_id
    await enforce_btw_validation(user_id)
    # No transaction is held while VIES is asked (it may take seconds).
    cache = kijko.vies_cache or vies.make_cache(None, kijko.settings)
    return await vies.validate_btw(data.btw_number, settings=kijko.settings, client=kijko.egress, cache=cache)
