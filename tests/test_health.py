"""Liveness and readiness (INFR-01): ``/health`` checks nothing, ``/health/ready`` checks the
database and (when configured) Redis, each with a timeout, and answers 503 in the error shape
naming the failing component."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from databases import Database

from kijko_core import __version__
from kijko_core.runtime import Kijko, make_redis
from kijko_server.app import KijkoApp, create_app
from tests.net import free_port


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, f"{netloc[0]}@{host}" if len(netloc) == 2 else host, parts.path, parts.query, ""))


async def serve(kijko: Kijko) -> AsyncIterator[KijkoApp]:
    application = create_app(kijko=kijko)
    async with application.test_app():
        yield application


async def get(kijko: Kijko, path: str) -> Any:
    async for application in serve(kijko):
        return await application.test_client().get(path)
    raise AssertionError("unreachable")


async def assert_not_ready(response: Any, component: str) -> dict[str, Any]:
    assert response.status_code == 503, await response.get_data(as_text=True)
    body = await response.get_json()
    assert set(body) <= {"detail", "code", "message", "field", "details"}
    assert body["code"] == "SERVICE_UNAVAILABLE"
    assert component in body["message"] and component in body["detail"]
    assert body["details"]["components"][component] == "unavailable"
    return body  # type: ignore[no-any-return]


@pytest.fixture
async def database_down(kijko: Kijko) -> AsyncIterator[Kijko]:
    """The runtime with its system pool pointing at a port nothing listens on."""
    pool = Database(with_port(kijko.urls.system, free_port()), min_size=0, max_size=1)
    await pool.connect()  # min_size 0: connects lazily, so this succeeds
    try:
        yield dataclasses.replace(kijko, system_db=pool)
    finally:
        await pool.disconnect()


# --- liveness ----------------------------------------------------------------------------------


async def test_liveness_is_ok_without_a_token(client: Any) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok", "version": __version__}


async def test_liveness_does_not_touch_the_database(database_down: Kijko) -> None:
    response = await get(database_down, "/health")
    assert response.status_code == 200


# --- readiness ---------------------------------------------------------------------------------


async def test_readiness_checks_the_database(client: Any) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert body["components"]["database"] == "ok"
    assert "redis" not in body["components"]  # not configured
    assert body["status"] in ("ok", "degraded") and body["version"] == __version__


async def test_readiness_is_503_when_the_database_is_down(database_down: Kijko) -> None:
    body = await assert_not_ready(await get(database_down, "/health/ready"), "database")
    assert "redis" not in body["message"]


async def test_readiness_gives_up_on_a_database_that_does_not_answer(kijko: Kijko) -> None:
    # A server that accepts connections and never says a word: only the timeout ends the check.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Database(with_port(kijko.urls.system, port), min_size=0, max_size=1)
    await pool.connect()
    try:
        impatient = kijko.settings.model_copy(update={"health_check_timeout_seconds": 0.5})
        response = await get(dataclasses.replace(kijko, system_db=pool, settings=impatient), "/health/ready")
        await assert_not_ready(response, "database")
    finally:
        await pool.disconnect()
        server.close()


@asynccontextmanager
async def with_redis(kijko: Kijko, settings: Any) -> AsyncIterator[Kijko]:
    """The runtime with its Redis client for ``settings.redis_url`` (as ``Kijko.start`` makes it)."""
    redis = make_redis(settings)
    try:
        yield dataclasses.replace(kijko, settings=settings, redis=redis)
    finally:
        if redis is not None:
            await redis.aclose()


async def test_readiness_is_503_when_configured_redis_is_down(kijko: Kijko, make_settings: Any) -> None:
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with with_redis(kijko, settings) as runtime:
        response = await get(runtime, "/health/ready")
    body = await assert_not_ready(response, "redis")
    assert body["details"]["components"]["database"] == "ok"
    assert "database" not in body["message"]


@pytest.mark.redis
async def test_readiness_checks_configured_redis(kijko: Kijko, make_settings: Any) -> None:
    url = os.environ.get("KIJKO_TEST_REDIS_URL")
    if not url:
        pytest.skip("KIJKO_TEST_REDIS_URL is not set")
    async with with_redis(kijko, make_settings(redis_url=url)) as runtime:
        response = await get(runtime, "/health/ready")
    assert response.status_code == 200, await response.get_data(as_text=True)
    components = (await response.get_json())["components"]
    assert components["database"] == "ok" and components["redis"] == "ok"


class StandInRedis:
    """Answers every command with +PONG / +OK and counts the connections it accepts."""

    def __init__(self) -> None:
        self.connections = 0
        self.pings = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while line := await reader.readline():
                if not line.startswith(b"*"):
                    continue
                words = []
                for _ in range(int(line[1:])):
                    size = int((await reader.readline())[1:])
                    words.append((await reader.readexactly(size + 2))[:-2].upper())
                if words[:1] == [b"PING"]:
                    self.pings += 1
                    writer.write(b"+PONG\r\n")
                else:
                    writer.write(b"+OK\r\n")
                await writer.drain()
        finally:
            writer.close()


async def test_readiness_uses_the_runtimes_one_redis_client(kijko: Kijko, make_settings: Any) -> None:
    stand_in = StandInRedis()
    server = await asyncio.start_server(stand_in.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with with_redis(kijko, make_settings(redis_url=f"redis://127.0.0.1:{port}/0")) as runtime:
            async for application in serve(runtime):
                for _ in range(5):
                    response = await application.test_client().get("/health/ready")
                    assert response.status_code == 200, await response.get_data(as_text=True)
    finally:
        server.close()
    # Five probes, one connection: the runtime's client, not a new one per probe.
    assert stand_in.pings == 5
    assert stand_in.connections == 1


async def test_the_runtime_owns_one_redis_client_and_starts_while_redis_is_down(
    make_settings: Any,
) -> None:
    runtime = await Kijko.start(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        assert runtime.redis is not None
    finally:
        await runtime.stop()
    runtime = await Kijko.start(make_settings())
    try:
        assert runtime.redis is None
    finally:
        await runtime.stop()


async def test_both_down_names_both(database_down: Kijko, make_settings: Any) -> None:
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with with_redis(database_down, settings) as runtime:
        response = await get(runtime, "/health/ready")
    body = await assert_not_ready(response, "database")
    assert "redis" in body["message"]
    assert body["details"]["components"]["redis"] == "unavailable"


async def test_health_routes_are_in_the_openapi_document(client: Any) -> None:
    paths = (await (await client.get("/openapi.json")).get_json())["paths"]
    assert "/health" in paths and "/health/ready" in paths
    assert paths["/health"]["get"]["security"] == []
