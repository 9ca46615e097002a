"""An organization's own LLM provider keys (docs/llm-providers.md#organization-keys): owners
and admins list, read, set and remove them; the key itself is never answered, only ``last4``."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_request

from kijko_core.llm import keys
from kijko_core.llm.models import LlmKey, LlmKeyList, LlmKeyNotFound, PutLlmKey
from kijko_core.prices import PriceTable
from kijko_core.wire import Success
from kijko_server.openapi import responds
from kijko_server.responses import validate_response
from kijko_server.uow import TENANT_ERRORS, runtime, tenant

bp = Blueprint("llm_keys", __name__, url_prefix="/api/v1/organizations/current/llm-keys")


def _prices() -> PriceTable:
    return runtime().prices


@bp.get("")
@responds(*TENANT_ERRORS)
@validate_response(LlmKeyList)
async def list_llm_keys() -> LlmKeyList:
    """The organization's stored keys, by provider (owners and admins)."""
    async with tenant(readonly=True) as db:
        return LlmKeyList(data=await keys.list_keys(db))


@bp.get("/<provider>")
@responds(*TENANT_ERRORS, LlmKeyNotFound)
@validate_response(LlmKey)
async def get_llm_key(provider: str) -> LlmKey:
    """The organization's key for ``provider``: its last four characters and base URL."""
    async with tenant(readonly=True) as db:
        return await keys.get_key(db, provider)


@bp.route("/<provider>", methods=["PUT", "PATCH"])
@responds(*TENANT_ERRORS)
@validate_request(PutLlmKey)
@validate_response(LlmKey)
async def put_llm_key(provider: str, data: PutLlmKey) -> LlmKey:
    """Set the organization's key (and optionally base URL) for ``provider``; it then takes
    precedence over the platform's key. A provider no priced model uses is 422 (``provider``)."""
    kijko = runtime()
    async with tenant() as db:
        return await keys.put_key(db, kijko.keyring, _prices(), provider, data, kijko.settings.egress_allow_cidrs)


@bp.delete("/<provider>")
@responds(*TENANT_ERRORS, LlmKeyNotFound)
@validate_response(Success)
async def delete_llm_key(provider: str) -> Success:
    """Remove the organization's key for ``provider``: runs use the platform's again."""
    async with tenant() as db:
        await keys.delete_key(db, provider)
    return Success()
