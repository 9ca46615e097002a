"""The server shell (issue 5 §2): the app runs under real uvicorn wrapped in another ASGI app
(Socket.IO next) with its lifespan, requests and ``app.kijko`` intact; uvicorn trusts
``X-Forwarded-For`` only from ``KIJKO_TRUSTED_PROXIES``; the runtime owns one outbound HTTP
client that a transport (the egress guard) can police; standard-library log records (uvicorn,
Quart) are JSON lines too.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import uvicorn

from kijko_cli.serve import bind, uvicorn_config
from kijko_core.logging import configure_logging
from kijko_core.runtime import Kijko
from kijko_server.app import create_app
from tests.keycloak_server import FakeKeycloak

ASGIApp = Callable[..., Any]


class Wrapper:
    """The least an ASGI middleware can be: pass everything on, remember what went through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.scopes: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope["type"])
        await self.app(scope, receive, send)


async def serve_until(app: ASGIApp, settings: Any, work: Callable[[str], Any]) -> Any:
    """Run ``app`` under uvicorn as ``kijko serve`` configures it, do ``work(base_url)``, stop."""
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn_config(app, settings))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        assert server.started, "uvicorn did not start"
        return await work(f"http://127.0.0.1:{sock.getsockname()[1]}")
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_the_app_wrapped_in_asgi_middleware_starts_serves_and_stops(kijko: Kijko) -> None:
    app = create_app(kijko=kijko)
    events: list[str] = []

    @app.before_serving
    async def started() -> None:
        events.append(f"started with runtime {app.kijko is kijko}")

    @app.after_serving
    async def stopped() -> None:
        events.append("stopped")

    wrapped = Wrapper(app)

    async def work(base: str) -> httpx.Response:
        async with httpx.AsyncClient() as client:
            return await client.get(base + "/health/ready")

    response = await serve_until(wrapped, kijko.settings, work)
    assert response.status_code == 200, response.text
    assert response.json()["components"]["database"] == "ok"  # reached app.kijko's pool
    assert events == ["started with runtime True", "stopped"]
    assert wrapped.scopes[0] == "lifespan" and "http" in wrapped.scopes


async def test_an_app_that_owns_its_runtime_starts_and_stops_it_through_a_wrapper(
    settings: Any,
) -> None:
    app = create_app(settings)  # as an ASGI server importing a factory would
    seen: list[Kijko] = []

    async def work(base: str) -> int:
        seen.append(app.kijko)
        async with httpx.AsyncClient() as client:
            return (await client.get(base + "/health/ready")).status_code

    assert await serve_until(Wrapper(app), settings, work) == 200
    (runtime,) = seen
    assert runtime.http.is_closed, "the lifespan shutdown stopped the runtime it started"


# --- X-Forwarded-For ---------------------------------------------------------------------------


async def client_seen_by_the_app(make_settings: Any, trusted: str, peer: str, forwarded_for: str) -> str:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["client"][0])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = uvicorn_config(app, make_settings(trusted_proxies=trusted))
    config.load()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"x-forwarded-for", forwarded_for.encode())],
        "client": (peer, 5000),
        "server": ("127.0.0.1", 8000),
    }
    await config.loaded_app(scope, receive, send)
    return seen[0]


async def test_forwarded_for_is_ignored_without_trusted_proxies(make_settings: Any) -> None:
    # uvicorn's default trusts 127.0.0.1: any local process could pick its address.
    assert await client_seen_by_the_app(make_settings, "", "127.0.0.1", "203.0.113.9") == "127.0.0.1"
    assert await client_seen_by_the_app(make_settings, "", "10.0.0.2", "203.0.113.9") == "10.0.0.2"


async def test_forwarded_for_counts_only_from_a_trusted_proxy(make_settings: Any) -> None:
    trusted = "10.0.0.0/8"
    # From the proxy: the right-most hop that is not one of ours.
    assert (
        await client_seen_by_the_app(make_settings, trusted, "10.0.0.2", "198.51.100.1, 203.0.113.9, 10.0.0.7")
        == "203.0.113.9"
    )
    # From anyone else: the header changes nothing.
    assert await client_seen_by_the_app(make_settings, trusted, "192.0.2.4", "203.0.113.9") == "192.0.2.4"


# --- kijko.http --------------------------------------------------------------------------------


class Guard(httpx.AsyncBaseTransport):
    """What the egress guard will be: a transport that decides which requests leave."""

    def __init__(self, allowed_port: int | None = None) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.allowed_port = allowed_port
        self.seen: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(str(request.url))
        if self.allowed_port is None or request.url.port != self.allowed_port:
            raise httpx.ConnectError("refused by the egress guard", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_the_runtime_owns_one_http_client_with_timeouts(make_settings: Any) -> None:
    guard = Guard()
    runtime = await Kijko.start(make_settings(http_timeout_seconds=7), http_transport=guard)
    try:
        assert runtime.http.timeout.read == 7 and runtime.http.timeout.connect == 5
        assert not runtime.http.follow_redirects
        with pytest.raises(httpx.ConnectError, match="egress guard"):
            await runtime.http.get("http://192.0.2.1/anything")
        assert guard.seen == ["http://192.0.2.1/anything"]
    finally:
        await runtime.stop()
    assert runtime.http.is_closed


@pytest.mark.slow
async def test_keycloak_calls_go_through_the_runtime_client(make_settings: Any) -> None:
    fake = FakeKeycloak().start()
    try:
        port = httpx.URL(fake.url).port
        guard = Guard(allowed_port=port)
        settings = make_settings(
            auth_provider="keycloak", keycloak_url=fake.url, keycloak_client_secret=fake.client_secret
        )
        runtime = await Kijko.start(settings, http_transport=guard)
        try:
            health = await runtime.identity.health()
        finally:
            await runtime.stop()
    finally:
        fake.stop()
    assert health.status == "ok"
    assert guard.seen and all(f":{port}/" in url for url in guard.seen)


# --- standard-library logs ---------------------------------------------------------------------


def test_uvicorn_and_quart_records_are_json_lines_without_locals() -> None:
    buffer = io.StringIO()
    configure_logging("info", "json", stream=buffer)
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")

    def fail() -> None:
        api_key = "local-secret-5521"  # noqa: F841 - must not be logged
        raise RuntimeError("boom")

    try:
        fail()
    except RuntimeError:
        # Quart's app.logger is named after the app's import name.
        logging.getLogger("kijko_server.app").error("Exception on request GET /x", exc_info=True)
    logging.getLogger("uvicorn.error").info("below the library level")
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [(line["logger"], line["level"], line["event"]) for line in lines] == [
        ("uvicorn.error", "warning", "Invalid HTTP request received."),
        ("kijko_server.app", "error", "Exception on request GET /x"),
    ]
    frames = lines[1]["exception"][0]["frames"]
    assert any(frame["name"] == "fail" for frame in frames)
    assert "local-secret-5521" not in buffer.getvalue()


def test_a_second_configuration_replaces_the_first_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", stream=first)
    configure_logging("debug", "json", stream=second)
    logging.getLogger("uvicorn.error").warning("once")
    assert first.getvalue() == ""
    assert [json.loads(line)["event"] for line in second.getvalue().splitlines()] == ["once"]


def test_bind_reports_a_port_in_use_in_one_line() -> None:
    from kijko_cli.serve import EXIT_ADDRESS_UNAVAILABLE, ServeError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError) as caught:
            bind("127.0.0.1", port)
    assert caught.value.exit_code == EXIT_ADDRESS_UNAVAILABLE
    assert caught.value.message == (
        f"cannot listen on 127.0.0.1:{port}: address already in use (set KIJKO_PORT or --port)"
    )


# --- response models ---------------------------------------------------------------------------


def test_every_view_with_a_response_model_writes_it_in_one_pydantic_call(app: Any) -> None:
    from quart_schema.validation import QUART_SCHEMA_RESPONSE_ATTRIBUTE

    from kijko_server.responses import writes_native_json

    with_models = {
        endpoint
        for endpoint, view in app.view_functions.items()
        if getattr(view, QUART_SCHEMA_RESPONSE_ATTRIBUTE, None)
    }
    assert {"projects.list_projects", "auth.login", "health.liveness"} <= with_models
    assert sorted(e for e in with_models if not writes_native_json(app.view_functions[e])) == []


async def test_a_model_response_is_what_pydantic_writes(client: Any, alice: Any) -> None:
    response = await client.get("/api/v1/projects", headers=alice.headers)
    assert response.status_code == 200 and response.content_type == "application/json"
    # model_dump_json keeps the model's field order; Quart's JSON provider would sort the keys.
    assert await response.get_data(as_text=True) == '{"data":[],"total":0,"page":1,"pageSize":20,"hasMore":false}'
