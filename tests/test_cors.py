"""CORS (issue 2 §5): only ``https://app.kijko.nl`` and ``http://localhost:3000`` by default,
configurable; preflights need no token; error responses are readable by allowed origins."""

from __future__ import annotations

from typing import Any

import pytest

from kijko_core.runtime import Kijko
from kijko_server.app import create_app

ALLOWED = ["https://app.kijko.nl", "http://localhost:3000"]


async def preflight(client: Any, origin: str, path: str = "/api/v1/projects") -> Any:
    return await client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-request-id",
        },
    )


def header_set(response: Any, name: str) -> set[str]:
    return {item.strip().lower() for item in response.headers.get(name, "").split(",") if item.strip()}


@pytest.mark.parametrize("origin", ALLOWED)
async def test_preflight_from_default_origins_is_allowed(client: Any, origin: str) -> None:
    response = await preflight(client, origin)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert {"post", "put", "patch", "delete"} <= header_set(response, "Access-Control-Allow-Methods")
    assert {"authorization", "content-type", "x-request-id"} <= header_set(response, "Access-Control-Allow-Headers")


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://app.kijko.nl",  # wrong scheme
        "https://app.kijko.nl.evil.example",
        "http://localhost:3001",
        "null",
    ],
)
async def test_preflight_from_other_origins_is_not_allowed(client: Any, origin: str) -> None:
    response = await preflight(client, origin)
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Methods" not in response.headers


async def test_actual_response_names_the_allowed_origin_and_exposes_headers(client: Any) -> None:
    response = await client.get("/health", headers={"Origin": "https://app.kijko.nl"})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.kijko.nl"
    assert "origin" in header_set(response, "Vary")
    assert {"x-request-id", "retry-after"} <= header_set(response, "Access-Control-Expose-Headers")


async def test_actual_response_to_other_origin_has_no_cors_headers(client: Any) -> None:
    response = await client.get("/health", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200  # the browser, not the server, withholds the body
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/api/v1/auth/me", 401), ("GET", "/no-such-route", 404), ("DELETE", "/health", 405)],
)
async def test_error_responses_are_readable_by_allowed_origins(
    client: Any, method: str, path: str, status: int
) -> None:
    response = await client.open(path, method=method, headers={"Origin": "http://localhost:3000"})
    assert response.status_code == status
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"


async def test_preflight_needs_no_token_even_on_protected_routes(client: Any) -> None:
    response = await preflight(client, "https://app.kijko.nl", "/api/v1/projects/stats")
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.kijko.nl"


async def test_origins_are_configurable(kijko: Kijko, make_settings: Any) -> None:
    application = create_app(make_settings(cors_origins=["https://staging.kijko.nl"]), kijko=kijko)
    async with application.test_app():
        client = application.test_client()
        allowed = await preflight(client, "https://staging.kijko.nl")
        assert allowed.headers["Access-Control-Allow-Origin"] == "https://staging.kijko.nl"
        for default in ALLOWED:
            assert "Access-Control-Allow-Origin" not in (await preflight(client, default)).headers


async def test_origins_are_configurable_as_a_comma_list(kijko: Kijko, make_settings: Any) -> None:
    settings = make_settings(cors_origins="https://a.example, https://b.example")
    application = create_app(settings, kijko=kijko)
    async with application.test_app():
        client = application.test_client()
        for origin in ("https://a.example", "https://b.example"):
            assert (await preflight(client, origin)).headers["Access-Control-Allow-Origin"] == origin
        assert "Access-Control-Allow-Origin" not in (await preflight(client, "https://c.example")).headers
