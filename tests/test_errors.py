"""Every failure answers in the one error shape (ARCHITECTURE §7, issue 2 §5).

``{"detail", "code", "message", "field"?, "details"?}``; error bodies never echo submitted
values and a crash says nothing internal.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from kijko_core.config import Settings
from kijko_core.db.provision import ScratchDatabase
from kijko_core.db.roles import quote_identifier
from kijko_core.logging import configure_logging
from kijko_core.runtime import Kijko
from kijko_server.app import KijkoApp, create_app
from kijko_server.security import public
from tests.apps import running
from tests.conftest import Account
from tests.projects import created

SHAPE_KEYS = {"detail", "code", "message", "field", "details"}
ONE_MIB = 1024 * 1024


def assert_error_shape(body: Any, status: int, code: str) -> None:
    assert isinstance(body, dict), body
    assert set(body) <= SHAPE_KEYS, body
    assert {"detail", "code", "message"} <= set(body), body
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["message"], str) and body["message"] == body["detail"]
    if "field" in body:
        assert isinstance(body["field"], str)
    if "details" in body:
        assert isinstance(body["details"], dict)


async def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, await response.get_data(as_text=True)
    assert response.content_type == "application/json"
    body = await response.get_json()
    assert_error_shape(body, status, code)
    return body  # type: ignore[no-any-return]


# --- routing ---------------------------------------------------------------------------------


async def test_unknown_route_is_404_route_not_found(client: Any) -> None:
    response = await client.get("/api/v1/no-such-thing")
    await error_of(response, 404, "ROUTE_NOT_FOUND")


async def test_unknown_route_needs_no_token_to_say_so(client: Any) -> None:
    # An unknown route is not a protected route: 404, not 401.
    response = await client.post("/nowhere/at/all", json={"a": 1})
    await error_of(response, 404, "ROUTE_NOT_FOUND")


async def test_wrong_method_is_405_with_allow_header(client: Any) -> None:
    response = await client.delete("/health")
    await error_of(response, 405, "METHOD_NOT_ALLOWED")
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert "GET" in allowed and "DELETE" not in allowed


async def test_wrong_method_on_protected_route_is_405_not_401(client: Any) -> None:
    response = await client.delete("/api/v1/projects")
    await error_of(response, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in response.headers["Allow"]


# --- bodies ----------------------------------------------------------------------------------


async def test_malformed_json_is_400(client: Any) -> None:
    response = await client.post(
        "/api/v1/auth/login",
        data=b'{"email": "a@example.com", "password": ',
        headers={"Content-Type": "application/json"},
    )
    body = await error_of(response, 400, "MALFORMED_JSON")
    assert "a@example.com" not in json.dumps(body)


async def test_malformed_json_on_protected_route_is_400(client: Any, alice: Account) -> None:
    response = await client.post(
        "/api/v1/projects",
        data=b"{name: 'unquoted'}",
        headers={"Content-Type": "application/json", **alice.headers},
    )
    body = await error_of(response, 400, "MALFORMED_JSON")
    assert "unquoted" not in json.dumps(body)


async def test_body_that_is_not_utf8_is_400_malformed_json(client: Any, alice: Account) -> None:
    # Found by the API fuzzer: Quart decodes outside its JSON error handling (was a 500).
    for path, headers in (("/api/v1/auth/login", {}), ("/api/v1/projects", alice.headers)):
        response = await client.post(
            path, data=b'{"name": "\x80\xff"}', headers={"Content-Type": "application/json", **headers}
        )
        await error_of(response, 400, "MALFORMED_JSON")


async def test_json_that_is_not_an_object_is_422(client: Any) -> None:
    response = await client.post("/api/v1/auth/login", json=["a@example.com", "pw"])
    body = await error_of(response, 422, "VALIDATION_ERROR")
    assert "a@example.com" not in json.dumps(body)


async def test_non_json_content_type_is_a_4xx_in_the_shape(client: Any) -> None:
    # Decision 0001: a JSON route given another media type answers 415 UNSUPPORTED_MEDIA_TYPE.
    response = await client.post(
        "/api/v1/auth/login",
        data=b"email=a@example.com&password=secret",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    body = await error_of(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "a@example.com" not in json.dumps(body)


async def test_missing_content_type_is_a_4xx_in_the_shape(client: Any) -> None:
    response = await client.post("/api/v1/auth/login", data=b'{"email": "a@example.com"}')
    await error_of(response, 415, "UNSUPPORTED_MEDIA_TYPE")


async def test_json_with_charset_is_accepted(client: Any) -> None:
    response = await client.post(
        "/api/v1/auth/login",
        data=json.dumps({"email": "nobody@example.com", "password": "wrong-password"}).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    await error_of(response, 401, "INVALID_CREDENTIALS")


# --- schema errors ---------------------------------------------------------------------------


async def test_short_project_name_is_422_with_field_name(client: Any, alice: Account) -> None:
    response = await client.post("/api/v1/projects", json={"name": "ab", "type": "repository"}, headers=alice.headers)
    body = await error_of(response, 422, "VALIDATION_ERROR")
    assert body["field"] == "name"


async def test_wrong_type_of_camel_case_field_names_the_wire_field(client: Any, alice: Account) -> None:
    response = await client.post(
        "/api/v1/projects",
        json={"name": "Valid name", "type": "repository", "chunkingStrategy": 42},
        headers=alice.headers,
    )
    body = await error_of(response, 422, "VALIDATION_ERROR")
    assert body["field"] == "chunkingStrategy"


async def test_unknown_enum_value_is_not_echoed(client: Any, alice: Account) -> None:
    response = await client.post(
        "/api/v1/projects",
        json={"name": "Valid name", "type": "repository", "chunkingStrategy": "zebra-xyzzy"},
        headers=alice.headers,
    )
    body = await error_of(response, 422, "VALIDATION_ERROR")
    assert body["field"] == "chunkingStrategy"
    assert "zebra-xyzzy" not in json.dumps(body)


async def test_missing_required_field_names_it(client: Any, alice: Account) -> None:
    response = await client.post("/api/v1/projects", json={"name": "Valid name"}, headers=alice.headers)
    body = await error_of(response, 422, "VALIDATION_ERROR")
    assert body["field"] == "type"


async def test_snake_case_auth_fields_keep_their_wire_names(client: Any) -> None:
    response = await client.post(
        "/api/v1/auth/signup",
        json={"email": "x@example.com", "password": "long enough pw", "first_name": "Ada"},
    )
    body = await error_of(response, 422, "VALIDATION_ERROR")
    assert body["field"] == "last_name"


async def test_query_string_errors_are_422_with_field(client: Any, alice: Account) -> None:
    response = await client.get("/api/v1/projects?pageSize=1000", headers=alice.headers)
    body = await error_of(response, 422, "VALIDATION_ERROR")
    assert body["field"] == "pageSize"


# --- size --------------------------------------------------------------------------------------


async def test_body_over_one_mib_is_413(client: Any) -> None:
    payload = json.dumps({"email": "a@example.com", "password": "x" * (ONE_MIB + 10)})
    response = await client.post(
        "/api/v1/auth/login", data=payload.encode(), headers={"Content-Type": "application/json"}
    )
    await error_of(response, 413, "PAYLOAD_TOO_LARGE")


async def test_body_just_under_the_limit_is_not_413(client: Any) -> None:
    payload = json.dumps({"email": "a@example.com", "password": "x" * (ONE_MIB - 100)})
    response = await client.post(
        "/api/v1/auth/login", data=payload.encode(), headers={"Content-Type": "application/json"}
    )
    # Too long a password for the schema, but not too large a body.
    await error_of(response, 422, "VALIDATION_ERROR")


async def asgi_call(
    app: KijkoApp, method: str, path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> tuple[int, dict[str, str], bytes]:
    """One request straight through the ASGI interface, the body in ``chunks`` messages with
    ``more_body`` set, as a server passes on a chunked upload."""
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        # Nothing more to read: wait as a connected client would, until the app is done.
        import asyncio

        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"kijko.test"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("kijko.test", 80),
        "extensions": {},
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    start = next(message for message in sent if message["type"] == "http.response.start")
    response_headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], response_headers, body


async def test_chunked_body_over_one_mib_without_content_length_is_413(app: KijkoApp) -> None:
    chunk = b"x" * (256 * 1024)
    status, headers, body = await asgi_call(
        app,
        "POST",
        "/api/v1/auth/login",
        [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        [b'{"email": "a@example.com", "password": "', *([chunk] * 5), b'"}'],
    )
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert_error_shape(json.loads(body), 413, "PAYLOAD_TOO_LARGE")


async def test_small_chunked_body_is_read_normally(app: KijkoApp) -> None:
    status, _, body = await asgi_call(
        app,
        "POST",
        "/api/v1/auth/login",
        [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        [b'{"email": "nobody@', b'example.com", "password": ', b'"wrong-password"}'],
    )
    assert status == 401
    assert_error_shape(json.loads(body), 401, "INVALID_CREDENTIALS")


async def test_body_limit_is_configurable(kijko: Kijko, make_settings: Any) -> None:
    small = create_app(make_settings(max_body_bytes=2048), kijko=kijko)
    async with small.test_app():
        response = await small.test_client().post(
            "/api/v1/auth/login", json={"email": "a@example.com", "password": "x" * 4000}
        )
    await error_of(response, 413, "PAYLOAD_TOO_LARGE")


# --- crashes and secrets -----------------------------------------------------------------------

CRASH_TEXT = "db password is hunter2 at 10.1.2.3"
SECRET_LOCAL = "sk_live_local_variable_secret_4242"


@pytest.fixture
async def crashing_app(kijko: Kijko) -> AsyncIterator[KijkoApp]:
    application = create_app(kijko=kijko)

    # Under /health/ and marked public, so the crash is reached without a token.
    @application.get("/health/crash-for-test")
    @public
    async def crash() -> str:
        api_key = SECRET_LOCAL  # noqa: F841 - must not show up in a logged traceback
        raise RuntimeError(CRASH_TEXT)

    async with application.test_app():
        yield application


def capture_logs(level: str = "debug") -> io.StringIO:
    """Send the structlog JSON lines into a buffer (replacing the configuration of earlier tests)."""
    buffer = io.StringIO()
    configure_logging(level, "json", stream=buffer)
    return buffer


def log_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


async def test_crash_is_500_with_request_id_and_nothing_internal(crashing_app: KijkoApp) -> None:
    logs = capture_logs()
    response = await crashing_app.test_client().get("/health/crash-for-test", headers={"X-Request-ID": "crash-req-1"})
    body = await error_of(response, 500, "INTERNAL_ERROR")
    assert body["details"] == {"requestId": "crash-req-1"}
    assert response.headers["X-Request-ID"] == "crash-req-1"
    raw = await response.get_data(as_text=True)
    for internal in ("hunter2", "RuntimeError", "Traceback", "crash_for_test", SECRET_LOCAL):
        assert internal not in raw
    # The crash is logged, once, with the request id, and without local variables.
    text = logs.getvalue()
    assert SECRET_LOCAL not in text
    crashes = [line for line in log_lines(logs) if line["event"] == "unhandled_exception"]
    assert len(crashes) == 1
    assert crashes[0]["request_id"] == "crash-req-1"
    assert "RuntimeError" in json.dumps(crashes[0]["exception"])
    frames = [frame for error in crashes[0]["exception"] for frame in error["frames"]]
    assert frames and all("locals" not in frame for frame in frames)


async def test_crash_still_writes_the_access_log_line(crashing_app: KijkoApp) -> None:
    logs = capture_logs("info")
    await crashing_app.test_client().get("/health/crash-for-test")
    access = [line for line in log_lines(logs) if line["event"] == "request"]
    assert len(access) == 1 and access[0]["status"] == 500


KNOWN_PASSWORD = "Tr0ub4dor&3-known-password"
KNOWN_TOKEN = "eyJhbGciOiJSUzI1NiJ9.known-token-payload.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        # Bad email next to a password and a token-shaped first name.
        (
            "/api/v1/auth/signup",
            {"email": "not-an-email", "password": KNOWN_PASSWORD, "first_name": KNOWN_TOKEN},
        ),
        # The secrets are themselves the invalid values.
        (
            "/api/v1/auth/signup",
            {
                "email": f"{KNOWN_PASSWORD}@example.com",
                "password": KNOWN_PASSWORD * 20,
                "first_name": "Ada",
                "last_name": "L",
            },
        ),
        ("/api/v1/auth/login", {"email": KNOWN_TOKEN, "password": [KNOWN_PASSWORD]}),
        ("/api/v1/auth/refresh", {"refresh_token": [KNOWN_TOKEN, KNOWN_PASSWORD]}),
        ("/api/v1/auth/refresh", {"refresh_token": KNOWN_TOKEN * 100, "password": KNOWN_PASSWORD}),
    ],
)
async def test_secrets_in_an_invalid_body_are_neither_echoed_nor_logged(
    client: Any, path: str, payload: dict[str, Any]
) -> None:
    logs = capture_logs()
    response = await client.post(path, json=payload, headers={"Authorization": f"Bearer {KNOWN_TOKEN}"})
    await error_of(response, 422, "VALIDATION_ERROR")
    raw = await response.get_data(as_text=True)
    for secret in (KNOWN_PASSWORD, KNOWN_TOKEN):
        assert secret not in raw
        assert secret not in logs.getvalue()
    assert any(line["event"] == "request" for line in log_lines(logs))


async def test_secrets_in_malformed_json_are_neither_echoed_nor_logged(client: Any) -> None:
    logs = capture_logs()
    response = await client.post(
        "/api/v1/auth/login",
        data=f'{{"email": "{KNOWN_TOKEN}", "password": "{KNOWN_PASSWORD}"'.encode(),
        headers={"Content-Type": "application/json"},
    )
    await error_of(response, 400, "MALFORMED_JSON")
    raw = await response.get_data(as_text=True)
    for secret in (KNOWN_PASSWORD, KNOWN_TOKEN):
        assert secret not in raw
        assert secret not in logs.getvalue()


async def test_invalid_bearer_token_is_not_logged(client: Any) -> None:
    logs = capture_logs()
    response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {KNOWN_TOKEN}"})
    await error_of(response, 401, "INVALID_TOKEN")
    assert KNOWN_TOKEN not in logs.getvalue()
    assert KNOWN_TOKEN not in await response.get_data(as_text=True)


async def test_a_bad_row_of_a_list_is_named_by_its_position_in_the_message(client: Any, alice: Account) -> None:
    project = await created(client, alice, "Bulk rows")
    rows = [{"email": f"row{n}@example.com", "role": "viewer", "notificationLevel": "daily"} for n in range(3)]
    del rows[2]["notificationLevel"]
    response = await client.post(
        f"/api/v1/projects/{project['id']}/invitations", json={"invitations": rows}, headers=alice.headers
    )
    body = await error_of(response, 422, "VALIDATION_ERROR")
    assert body["field"] == "invitations.notificationLevel"  # the form field
    assert body["message"].startswith("invitations[2].notificationLevel: ")  # and which row


# --- a busy database (decision 0144) ------------------------------------------------------------


@pytest.fixture
async def impatient(database: ScratchDatabase, settings: Settings) -> AsyncIterator[Any]:
    """A client of a runtime of its own whose app-role connection gives up waiting for a lock
    after 100 ms instead of the provisioned 5 s. The role's setting in this database is read
    when a connection opens: it is set only while the runtime opens its pools, so no other
    pool's connection keeps it. (A connection opened later waits the usual 5 s: slower, same
    answer.)"""
    setting = "ALTER ROLE " + quote_identifier(database.roles.app) + " IN DATABASE " + quote_identifier(database.name)
    admin = await asyncpg.connect(database.admin_dsn)
    await admin.execute(setting + " SET lock_timeout = 100")
    still_set = True
    try:
        async with running(settings) as (_, _, client):
            await admin.execute(setting + " RESET lock_timeout")
            still_set = False
            yield client
    finally:
        if still_set:
            await admin.execute(setting + " RESET lock_timeout")
        await admin.close()


async def test_a_lock_timeout_is_503_try_again_and_the_same_request_succeeds_later(
    database: ScratchDatabase, alice: Account, impatient: Any
) -> None:
    # Another transaction (the system role, as a worker's) holds the organization's row with
    # the lock an UPDATE takes, and keeps it while the owner renames the organization.
    other = await asyncpg.connect(database.urls.system)
    logs = capture_logs()
    rename = {"name": "Renamed while locked"}
    try:
        async with other.transaction():
            await other.execute("SELECT 1 FROM kijko.organizations WHERE id = $1 FOR NO KEY UPDATE", alice.org_id)
            response = await impatient.patch("/api/v1/organizations/current", json=rename, headers=alice.headers)
            body = await error_of(response, 503, "TRY_AGAIN")
            assert response.headers["Retry-After"] == "1"
            assert body["details"] == {"retryAfter": 1}
        # Rolled back: nothing changed; sent again once the lock is gone, it succeeds.
        name = await other.fetchval("SELECT name FROM kijko.organizations WHERE id = $1", alice.org_id)
        assert name != rename["name"]
    finally:
        await other.close()
    again = await impatient.patch("/api/v1/organizations/current", json=rename, headers=alice.headers)
    assert again.status_code == 200, await again.get_data(as_text=True)
    assert (await again.get_json())["name"] == rename["name"]
    # A warning with the SQLSTATE, not a crash; nothing of the request's values.
    lines = log_lines(logs)
    warnings = [line for line in lines if line["event"] == "database_try_again"]
    assert [(w["level"], w["sqlstate"], w["condition"]) for w in warnings] == [
        ("warning", "55P03", "lock_not_available")
    ]
    assert not [line for line in lines if line["event"] == "unhandled_exception"]
    assert rename["name"] not in logs.getvalue()
