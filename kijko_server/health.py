"""Liveness and readiness (INFR-01)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import BaseModel
from quart import Blueprint

from kijko_core import __version__
from kijko_core.db.session import system_session
from kijko_core.errors import ServiceUnavailable
from kijko_server.openapi import responds
from kijko_server.responses import validate_response
from kijko_server.security import public
from kijko_server.uow import runtime

bp = Blueprint("health", __name__)


class Liveness(BaseModel):
    status: Literal["ok"]
    version: str


class Readiness(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    components: dict[str, str]


@bp.get("/health")
@public
@responds()
@validate_response(Liveness)
async def liveness() -> Liveness:
    """The process is up. Checks no dependency."""
    return Liveness(status="ok", version=__version__)


async def _database() -> None:
    async with system_session(runtime().system_db, readonly=True) as db:
        await db.fetchval("SELECT 1")


async def _redis() -> None:
    # The runtime's one client: a probe opens no connection of its own.
    client = runtime().redis
    assert client is not None
    await client.ping()


async def _check(probe: Any) -> bool:
    try:
        await asyncio.wait_for(probe, runtime().settings.health_check_timeout_seconds)
    except Exception:
        return False
    return True


@bp.get("/health/ready")
@public
@responds(ServiceUnavailable)
@validate_response(Readiness)
async def readiness() -> Readiness:
    """Ready to serve: the database and (when configured) Redis answer in time.

    The identity provider is reported but only degrades readiness: cached keys still verify.
    """
    kijko = runtime()
    components: dict[str, str] = {}
    components["database"] = "ok" if await _check(_database()) else "unavailable"
    if kijko.redis is not None:
        components["redis"] = "ok" if await _check(_redis()) else "unavailable"
    try:
        provider = await asyncio.wait_for(kijko.identity.health(), kijko.settings.health_check_timeout_seconds)
        components["identity"] = provider.status
    except Exception:
        components["identity"] = "degraded"
    failing = sorted(name for name, state in components.items() if state == "unavailable")
    if failing:
        raise ServiceUnavailable(f"Not ready: {', '.join(failing)} unavailable", details={"components": components})
    status: Literal["ok", "degraded"] = "ok" if all(v == "ok" for v in components.values()) else "degraded"
    return Readiness(status=status, version=__version__, components=components)
