"""No 500s from input (issue 5 §4): lone surrogates, invalid UTF-8 and deeply nested JSON on
every JSON route (login and signup included), odd query strings and path parameters, and
logout by a user who was erased meanwhile (docs/decisions/0040-json-input-limits.md)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart_schema import DataSource
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE

from kijko_core.db.session import system_session
from kijko_core.runtime import Kijko
from kijko_server.app import KijkoApp, create_app
from kijko_server.requests import MAX_JSON_DEPTH, json_depth_exceeds
from tests.billing_kit import billing_runtime
from tests.conftest import Account, sign_up
from tests.stripe_server import StripeServer
from tests.test_errors import assert_error_shape, error_of

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: Each body names every field our JSON routes take, so the bad value is in a field the route
#: reads, not only in an ignored one.
FIELDS = ("email", "password", "first_name", "last_name", "refresh_token", "name", "code", "type")


def with_every_field(value: bytes) -> bytes:
    # Written by hand: json.dumps would escape the backslashes of the \u escapes.
    return b"{" + b", ".join(b'"%s": "%s"' % (name.encode(), value) for name in FIELDS) + b"}"


HOSTILE_BODIES: dict[str, bytes] = {
    "lone high surrogate escape": with_every_field(b"\\ud800@example.com"),
    "lone low surrogate escape": with_every_field(b"abc\\udfffdefghij"),
    "surrogates in the wrong order": with_every_field(b"\\ude00\\ud83d-abcdefgh"),
    "lone surrogate in a key": b'{"\\udc00": 1, "email": "a@example.com", "password": "abcdefghij"}',
    "raw surrogate in UTF-8": with_every_field(b"\xed\xa0\x80@example.com"),
    "raw latin-1 byte": with_every_field(b"caf\xe9@example.com"),
    "nested 100 levels": b'{"email": ' + b"[" * 100 + b"]" * 100 + b"}",
    "nested 5000 levels": b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "nested 100000 objects": b'{"a": ' * 100_000 + b"1" + b"}" * 100_000,
    "unclosed nesting 200000": b"[" * 200_000,
}


@pytest.fixture
async def roomy_app(kijko: Kijko, make_settings: Any) -> AsyncIterator[KijkoApp]:
    """The app with rate limits out of the way: this test is about bodies, not budgets."""
    settings = make_settings(
        rate_limit_auth_per_minute=100_000,
        rate_limit_refresh_per_minute=100_000,
        rate_limit_login_per_account_per_hour=100_000,
    )
    application = create_app(settings, kijko=kijko)
    async with application.test_app():
        yield application


def json_routes(app: KijkoApp) -> list[tuple[str, str]]:
    """Every (method, rule) whose view validates a JSON body."""
    found = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        found_model = getattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, None)
        if found_model is None or found_model[1] != DataSource.JSON:  # uploads are multipart
            continue
        found += [(method, rule.rule) for method in sorted((rule.methods or set()) & BODY_METHODS)]
    return sorted(found)


def fill(rule: str, project_id: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: project_id if m[1] == "project_id" else "google", rule)


async def a_project(client: Any, account: Account) -> str:
    created = await client.post(
        "/api/v1/projects", json={"name": "Target project", "type": "repository"}, headers=account.headers
    )
    assert created.status_code == 201
    return str((await created.get_json())["project"]["id"])


def test_the_json_routes_are_found(app: KijkoApp) -> None:
    routes = json_routes(app)
    for expected in (
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/signup"),
        ("POST", "/api/v1/auth/refresh"),
        ("POST", "/api/v1/auth/oauth/exchange"),
        ("POST", "/api/v1/projects"),
        ("PATCH", "/api/v1/projects/<project_id>"),
    ):
        assert expected in routes


@pytest.mark.parametrize("kind", list(HOSTILE_BODIES))
async def test_hostile_json_is_400_malformed_json_on_every_json_route(roomy_app: KijkoApp, kind: str) -> None:
    client = roomy_app.test_client()
    alice = await sign_up(client)
    project_id = await a_project(client, alice)
    for method, rule in json_routes(roomy_app):
        response = await client.open(
            fill(rule, project_id),
            method=method,
            data=HOSTILE_BODIES[kind],
            headers={"Content-Type": "application/json", **alice.headers},
        )
        assert response.status_code == 400, (method, rule, await response.get_data(as_text=True))
        await error_of(response, 400, "MALFORMED_JSON")
    # The body was refused before any route acted on it: the account still works.
    assert (await client.get("/api/v1/auth/me", headers=alice.headers)).status_code == 200


async def test_login_and_signup_with_a_lone_surrogate_in_the_email(roomy_app: KijkoApp) -> None:
    """The example of the issue: was a 500 on login (the address went into a rate-limit key)."""
    client = roomy_app.test_client()
    for path in ("/api/v1/auth/login", "/api/v1/auth/signup"):
        response = await client.post(
            path,
            data=b'{"email": "\\ud800@x.com", "password": "correct horse battery",'
            b' "first_name": "A", "last_name": "B"}',
            headers={"Content-Type": "application/json"},
        )
        body = await error_of(response, 400, "MALFORMED_JSON")
        assert "surrogate" in body["detail"]


async def test_a_surrogate_pair_is_a_character_and_accepted(client: Any, alice: Account) -> None:
    response = await client.post(
        "/api/v1/projects",
        data=b'{"name": "Smile \\ud83d\\ude00", "type": "repository"}',
        headers={"Content-Type": "application/json", **alice.headers},
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    assert (await response.get_json())["project"]["name"] == "Smile \U0001f600"
    # An escaped backslash before "ud800" is text, not an escape.
    response = await client.post(
        "/api/v1/projects",
        data=b'{"name": "Path \\\\ud800", "type": "repository"}',
        headers={"Content-Type": "application/json", **alice.headers},
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    assert (await response.get_json())["project"]["name"] == "Path \\ud800"


async def test_nesting_up_to_the_limit_reaches_validation(client: Any, alice: Account) -> None:
    deep = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    at_limit = f'{{"name": {deep}, "type": "repository"}}'
    response = await client.post(
        "/api/v1/projects", data=at_limit.encode(), headers={"Content-Type": "application/json", **alice.headers}
    )
    body = await error_of(response, 422, "VALIDATION_ERROR")  # parsed, then found no string
    assert body["field"] == "name"
    over = f'{{"name": [{deep}], "type": "repository"}}'
    response = await client.post(
        "/api/v1/projects", data=over.encode(), headers={"Content-Type": "application/json", **alice.headers}
    )
    body = await error_of(response, 400, "MALFORMED_JSON")
    assert "nested too deeply" in body["detail"]


def test_depth_counts_brackets_outside_strings_only() -> None:
    assert not json_depth_exceeds('{"a": "' + "[" * 1000 + '"}')
    assert not json_depth_exceeds('{"a": "\\"' + "{" * 1000 + '"}')
    assert not json_depth_exceeds("[" + "[1]," * 1000 + "[]]")  # wide, not deep
    assert json_depth_exceeds("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    assert not json_depth_exceeds("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    assert json_depth_exceeds('{"a": "]]]]", "b": ' + "{" * 40 + "}" * 40 + "}", limit=32)


async def test_a_number_too_long_to_convert_is_400(client: Any) -> None:
    response = await client.post(
        "/api/v1/auth/login",
        data=b'{"email": "a@example.com", "password": ' + b"9" * 5000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    await error_of(response, 400, "MALFORMED_JSON")


# --- query strings and path parameters ------------------------------------------------------

ODD_VALUES = {
    "surrogate as invalid UTF-8": "%ED%A0%80",
    "lone continuation byte": "%80",
    "NUL": "%00",
    "overlong": "a" * 20_000,
    "overlong UTF-8 slash": "%C0%AF",
}


def get_routes(app: KijkoApp) -> list[str]:
    return sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if "GET" in (rule.methods or ()) and rule.rule not in ("/docs", "/openapi.json")
    )


@pytest.mark.parametrize("kind", list(ODD_VALUES))
async def test_odd_query_strings_and_path_parameters_never_500(
    kijko: Kijko, make_settings: Any, stripe_server: StripeServer, alice: Account, kind: str
) -> None:
    # Billing on (the Stripe stand-in): its routes answer their own 4xx rather than the 503
    # BILLING_DISABLED of an app without Stripe.
    async with billing_runtime(kijko, make_settings, stripe_server) as runtime:
        app = create_app(kijko=runtime)
        async with app.test_app():
            await _odd_requests_never_500(app, app.test_client(), alice, ODD_VALUES[kind])


async def _odd_requests_never_500(app: KijkoApp, client: Any, alice: Account, value: str) -> None:
    routes = get_routes(app)
    assert "/api/v1/projects/<project_id>" in routes and "/api/v1/auth/oauth/callback" in routes
    for rule in routes:
        if "<" in rule:
            path = re.sub(r"<(?:\w+:)?\w+>", value, rule)
            response = await client.get(path, headers=alice.headers)
            assert 400 <= response.status_code < 500, (rule, response.status_code)
            assert_error_shape(await response.get_json(), response.status_code, (await response.get_json())["code"])
        for query in (f"search={value}", f"state={value}&code={value}", f"pageSize={value}", f"{value}={value}"):
            response = await client.get(f"{fill(rule, 'x')}?{query}", headers=alice.headers)
            assert response.status_code < 500, (rule, query, response.status_code)
            if response.status_code >= 400:
                body = await response.get_json()
                assert_error_shape(body, response.status_code, body["code"])


async def test_nul_and_overlong_search_terms_are_422(client: Any, alice: Account) -> None:
    for value in ("%00", "a" * 20_000):
        response = await client.get(f"/api/v1/projects?search={value}", headers=alice.headers)
        body = await error_of(response, 422, "VALIDATION_ERROR")
        assert body["field"] == "search"


async def test_an_odd_project_id_is_the_404_of_an_unknown_one(client: Any, alice: Account) -> None:
    for value in ODD_VALUES.values():
        response = await client.get(f"/api/v1/projects/{value}", headers=alice.headers)
        await error_of(response, 404, "PROJECT_NOT_FOUND")


async def raw_get(app: KijkoApp, path: str, query: bytes, token: str) -> tuple[int, dict[str, Any]]:
    """A GET straight through ASGI with the query's bytes as a server passes them (unescaped)."""
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # connected until the app is done, as a client would be
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"kijko.test"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("kijko.test", 80),
        "extensions": {},
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    start = next(message for message in sent if message["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body)


@pytest.mark.parametrize("raw", [b"\xff", b"\xed\xa0\x80", b"caf\xe9", b"\xc0\xaf"])
async def test_raw_bytes_that_are_not_utf8_in_a_query_string_never_500(
    app: KijkoApp, alice: Account, raw: bytes
) -> None:
    """Quart decodes the query strictly while routing, before error handlers: the app raised
    out of ASGI. uvicorn refuses such request lines itself (its own 400), but the app must not
    depend on the server in front of it."""
    status, body = await raw_get(app, "/api/v1/projects", b"search=" + raw, alice.access_token)
    assert status == 200 and body["total"] == 0  # kept as the literal text "%FF": no match
    status, body = await raw_get(app, "/api/v1/projects", b"pageSize=" + raw, alice.access_token)
    assert status == 422 and body["field"] == "pageSize"
    status, body = await raw_get(app, "/api/v1/auth/oauth/callback", b"state=" + raw, alice.access_token)
    assert 400 <= status < 500
    assert_error_shape(body, status, body["code"])
    # Valid UTF-8 in the same query is still read as the characters it encodes.
    mixed = "search=Smile \U0001f600&x=".encode() + raw
    status, body = await raw_get(app, "/api/v1/projects", mixed, alice.access_token)
    assert status == 200


# --- logout by an erased user -----------------------------------------------------------------


async def test_logout_by_an_erased_user_is_401_not_500(kijko: Kijko, client: Any) -> None:
    account = await sign_up(client)
    # Erased behind the API's back (the official erase function is another change).
    async with system_session(kijko.system_db) as db:
        await db.execute("DELETE FROM kijko_private.users WHERE id = $1", account.user_id)
    response = await client.post("/api/v1/auth/logout", headers=account.headers)
    await error_of(response, 401, "INVALID_TOKEN")
    # And again, and with the other routes: still 401, never 500.
    for method, path in (("POST", "/api/v1/auth/logout"), ("GET", "/api/v1/auth/me"), ("GET", "/api/v1/projects")):
        response = await client.open(path, method=method, headers=account.headers)
        await error_of(response, 401, "INVALID_TOKEN")
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    await error_of(refreshed, 401, "INVALID_TOKEN")
