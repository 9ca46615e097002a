"""Property-based run of the whole served OpenAPI document (``tox -e api-fuzz``).

Kijko runs under uvicorn on a free port against the test database; schemathesis generates
valid and invalid requests for every operation, sent with a real bearer token. Whatever it
sends, the API must never answer >= 500, every non-2xx answer must be in the error shape
``{detail, code, message, field?, details?}``, and every answer must be one the document
lists for the operation: its status, media type and body schema (decision 0046).

Skipped unless ``KIJKO_API_FUZZ=1`` (the tox env sets it): it takes minutes, not seconds.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
import httpx  # noqa: E402
import uvicorn  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.specs.openapi import checks as openapi_checks  # noqa: E402

from kijko_core.billing.plans import plans_of  # noqa: E402
from kijko_server.app import create_app  # noqa: E402
from tests.billing_kit import make_prices, stripe_settings  # noqa: E402
from tests.stripe_server import StripeServer  # noqa: E402

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.skipif(os.environ.get("KIJKO_API_FUZZ") != "1", reason="set KIJKO_API_FUZZ=1"),
]

MAX_EXAMPLES = int(os.environ.get("KIJKO_API_FUZZ_EXAMPLES", "25"))
#: A regular expression on operation paths to fuzz only some (``KIJKO_API_FUZZ_ONLY='/skills|/habits'``);
#: unset, every operation.
ONLY = re.compile(os.environ.get("KIJKO_API_FUZZ_ONLY", ""))
ERROR_KEYS = {"detail", "code", "message"}
OPTIONAL_ERROR_KEYS = {"field", "details"}
LOGOUT = ("POST", "/api/v1/auth/logout")
CONFORMANCE = [
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]


class Server:
    """Kijko under uvicorn in a background thread, on a socket bound to a free port."""

    def __init__(self, app: Any) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.socket])), daemon=True
        )

    def __enter__(self) -> Server:
        self.thread.start()
        for _ in range(600):
            if self.server.started:
                return self
            if not self.thread.is_alive():
                raise RuntimeError("the API server did not start")
            threading.Event().wait(0.05)
        raise RuntimeError("the API server did not start within 30 s")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()


def sign_up(base_url: str) -> str:
    response = httpx.post(
        f"{base_url}/api/v1/auth/signup",
        json={
            "email": f"fuzz-{uuid.uuid4().hex[:12]}@example.com",
            "password": "correct horse battery staple",
            "first_name": "Fuzz",
            "last_name": "Tester",
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def server(make_settings: Any) -> Iterator[Server]:
    # Generous auth limits: the fuzzer signs up and logs in hundreds of times; 429s are
    # covered by their own tests, here they would only hide the handlers behind them.
    unlimited = 1_000_000
    # Billing on, against the Stripe stand-in, so that its routes are fuzzed past the 503
    # BILLING_DISABLED they answer without Stripe; everything unlimited (the quota 429s have
    # their own tests).
    with StripeServer() as stripe_server:
        settings = make_settings(
            rate_limit_auth_per_minute=unlimited,
            rate_limit_refresh_per_minute=unlimited,
            rate_limit_login_per_account_per_hour=unlimited,
            analytics_rate_limit_per_minute=100_000,
            execution_test_rate_limit_per_minute=100_000,
            **stripe_settings(stripe_server, default_plan="enterprise"),
        )
        make_prices(stripe_server, plans_of(settings))
        with Server(create_app(settings)) as running:
            yield running


@pytest.fixture(scope="module")
def token(server: Server) -> str:
    return sign_up(server.url)


@pytest.fixture(scope="module")
def api_schema(server: Server) -> Any:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def _short(value: Any) -> str:
    text = repr({key: item for key, item in value.items() if item not in (None, {}, schemathesis.core.NOT_SET)})
    return text if len(text) <= 300 else text[:300] + "…"


def check(case: Any, server: Server, token: str) -> None:
    # Logging out would end the shared session for every later case: use a fresh one.
    bearer = sign_up(server.url) if (case.method.upper(), case.path) == LOGOUT else token
    response = case.call(base_url=server.url, headers={"Authorization": f"Bearer {bearer}"})
    sent = {"query": case.query, "headers": case.headers, "media_type": case.media_type, "body": case.body}
    where = f"{case.method.upper()} {case.formatted_path} {_short(sent)} -> {response.status_code}"
    assert response.status_code < 500, f"{where}: {response.text[:300]}"
    # The document is truthful: the status is one the operation lists, the body its schema.
    try:
        case.validate_response(response, checks=CONFORMANCE)
    except Exception as error:
        pytest.fail(f"{where}: {error}")
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            pytest.fail(f"{where}: error body is not JSON: {response.text[:200]!r}")
        assert isinstance(body, dict), f"{where}: error body is not an object: {body!r}"
        keys = set(body)
        assert ERROR_KEYS <= keys, f"{where}: error body lacks {ERROR_KEYS - keys}: {body!r}"
        assert keys <= ERROR_KEYS | OPTIONAL_ERROR_KEYS, f"{where}: unexpected keys {keys}: {body!r}"
        for key in ("detail", "code", "message", "field"):
            assert key not in body or isinstance(body[key], str), f"{where}: {key} is not a string: {body!r}"
        assert "details" not in body or isinstance(body["details"], dict), f"{where}: details: {body!r}"
        assert body["code"], f"{where}: empty code"


# schemathesis' own pytest parametrization (from_fixture) breaks on pytest >= 9.2, so each
# operation gets its own Hypothesis run here; every failing operation is reported, not only the first.
# The operations are dealt into PARTS tests per mode, so that pytest-xdist (``tox -e api-fuzz``
# runs ``-n auto``) spreads them over the CPUs; together the parts cover every operation.
PARTS = 2


@pytest.mark.parametrize("part", range(PARTS))
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_server_error_and_errors_in_shape(mode: str, part: int, api_schema: Any, server: Server, token: str) -> None:
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    operations = [operation for operation in operations if ONLY.search(operation.path)]
    assert operations, "the OpenAPI document lists no operation"
    for operation in operations[part::PARTS]:
        strategy = operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode))

        @given(case=strategy)
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            check(case, server, token)

        try:
            run()
        except Unsatisfiable:
            continue  # nothing about this operation can be made invalid (no parameters, no body)
        except Exception as error:  # one report per failing operation
            failures.append(f"{operation.method.upper()} {operation.path}: {error}")
    assert not failures, f"{len(failures)} failing operation(s):\n" + "\n\n".join(failures)
