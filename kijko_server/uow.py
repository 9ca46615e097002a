"""The unit of work of a request: one tenant session for the authenticated caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, cast

from quart import current_app

from kijko_core.db.session import TenantSession, tenant_session
from kijko_core.errors import Forbidden
from kijko_server.security import current_identity, revocation_checked

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko


#: What every route that opens ``tenant()`` may answer besides its own errors: ``kijko.enter``
#: refuses a caller who is no longer a member of the token's organization (403). Body, query
#: and token errors are documented from the validation decorators (kijko_server/openapi.py).
TENANT_ERRORS = (Forbidden,)


def runtime() -> Kijko:
    return cast("Kijko", current_app.kijko)  # type: ignore[attr-defined]


@asynccontextmanager
async def tenant(*, readonly: bool = False) -> AsyncIterator[TenantSession]:
    """Open the caller's tenant session; leaving the block commits, an error rolls back."""
    async with tenant_session(runtime().app_db, current_identity(), readonly=readonly) as db:
        revocation_checked()  # ``kijko.enter`` refused a revoked session, or we are here
        yield db
