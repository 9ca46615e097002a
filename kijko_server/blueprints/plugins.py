"""The installed skill types, reflex types and chunkers (docs/plugins.md): the same for every
organization, readable by any member."""

from __future__ import annotations

from quart import Blueprint

from kijko_core.plugins.catalogue import PluginCatalogue, catalogue
from kijko_server.openapi import responds
from kijko_server.responses import validate_response
from kijko_server.uow import TENANT_ERRORS, tenant

bp = Blueprint("plugins", __name__, url_prefix="/api/v1/plugins")


@bp.get("")
@responds(*TENANT_ERRORS)
@validate_response(PluginCatalogue)
async def plugins_list() -> PluginCatalogue:
    """The skill types (``skillType``), reflex types (``triggerType``) and chunkers this server
    loaded at start-up, with their versions, where they come from and the JSON schema of their
    configuration. Plugins skipped at start-up are not listed (``kijko plugins`` shows them
    with the reason)."""
    async with tenant(readonly=True):  # checks the caller's session like every route
        pass
    return catalogue()
