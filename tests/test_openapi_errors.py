"""OpenAPI truthful (decisions 0024, 0046): each operation documents exactly the error statuses
it can answer, each of them is triggered here for real with the documented code (but for a
few only a misbehaving Keycloak answers, named in ``NOT_TRIGGERED``), every view declares its
errors, and fields that cannot be null are not nullable in the document."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from quart import Quart

from kijko_core.db.session import system_session
from kijko_core.runtime import Kijko, make_redis
from kijko_server.app import KijkoApp, create_app
from kijko_server.openapi import declared_errors
from tests.automation import SKILL_OPERATIONS
from tests.conftest import Account, sign_up
from tests.executions_kit import EXECUTION_OPERATIONS
from tests.habits_kit import HABIT_OPERATIONS
from tests.ingestion_kit import INGESTION_OPERATIONS
from tests.invitations import MEMBER_OPERATIONS
from tests.keycloak_server import FakeKeycloak
from tests.memberships import add_member
from tests.net import free_port
from tests.quotas_kit import answered_when_spent
from tests.reflex_kit import REFLEX_OPERATIONS
from tests.runs_kit import RUN_OPERATIONS
from tests.test_billing_details import BILLING_DETAILS_OPERATIONS
from tests.test_billing_payments import BILLING_PAYMENTS_OPERATIONS
from tests.test_billing_subscription import SUBSCRIPTION_OPERATIONS
from tests.test_billing_webhooks import STRIPE_WEBHOOK_OPERATIONS
from tests.test_llm_keys import LLM_KEY_OPERATIONS
from tests.test_sources import WIZARD

API = "/api/v1/projects"
P = "/api/v1/projects/{project_id}"
#: The statuses each projects operation can answer besides its success; 500 is on all of them.
BODY = {"400", "413", "415", "422"}
EXPECTED: dict[tuple[str, str], set[str]] = {
    ("get", API): {"401", "403", "422"},
    ("post", API): {"401", "403", "409"} | BODY,
    ("get", f"{API}/stats"): {"401", "403"},
    ("post", f"{API}/validate-name"): {"401", "403"} | BODY,
    ("get", P): {"401", "403", "404"},
    ("get", f"{P}/full"): {"401", "403", "404"},
    ("put", P): {"401", "403", "404", "409"} | BODY,
    ("patch", P): {"401", "403", "404", "409"} | BODY,
    ("delete", P): {"401", "403", "404"},
    # Repositories (contract §2.2.2, §2.2.6, §2.2.7).
    ("post", f"{API}/validate-repository"): {"401", "403"} | BODY,
    ("get", f"{P}/repositories"): {"401", "403", "404"},
    ("post", f"{P}/repositories"): {"401", "403", "404", "409"} | BODY,
    ("delete", f"{P}/repositories/{{repo_id}}"): {"401", "403", "404"},
    ("get", "/api/v1/users/{user_id}/recent-repos"): {"401", "403", "404"},
    # Search and the indexed files (issue 7 §3).
    # 429: the plan's oracle queries of the day (tests/test_quotas.py).
    ("get", f"{P}/search"): {"401", "403", "404", "422", "429"},
    ("get", f"{P}/files"): {"401", "403", "404", "422"},
}


async def openapi(client: Any) -> dict[str, Any]:
    document: dict[str, Any] = await (await client.get("/openapi.json")).get_json()
    return document


async def answers_not_as_documented(
    method: str, template: str, cases: dict[str, Any], documented: dict[str, str]
) -> list[str]:
    """Run each case (labelled by the status it should answer); report any answer whose
    status or code differs from the label or is not among the statuses' documented codes."""
    problems = []
    for label, request in cases.items():
        status = label.split()[0]
        response = await request()
        answer = await response.get_json(force=True, silent=True) or {}
        code = answer.get("code")
        if response.status_code != int(status) or not code or code not in documented.get(status, ""):
            problems.append(f"{method} {template} [{label}]: {response.status_code} {code}")
    return problems


def documented_errors(spec: dict[str, Any], method: str, path: str) -> dict[str, str]:
    """An operation's documented error statuses and their descriptions, without the 503
    ``TRY_AGAIN`` a database rollback may answer (like the 500, every operation that uses the
    database documents it; ``test_every_operation_on_the_database_documents_try_again``)."""
    responses = spec["paths"][path][method]["responses"]
    documented = {status: response["description"] for status, response in responses.items() if status[0] in "45"}
    if "503" in documented:
        title, codes = documented["503"].split(": ", 1)
        others = [code for code in codes.split(", ") if code != "TRY_AGAIN"]
        if others:
            documented["503"] = f"{title}: {', '.join(others)}"
        else:
            del documented["503"]
    return documented


#: Public operations that use the database (and so may answer 503 TRY_AGAIN).
PUBLIC_ON_THE_DATABASE = {
    ("post", "/api/v1/auth/signup"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
    ("get", "/api/v1/auth/oauth/callback"),
    ("post", "/api/v1/auth/oauth/exchange"),
    ("post", "/api/v1/webhooks/reflex/{reflex_id}"),
    ("post", "/api/v1/webhooks/stripe"),
    ("get", "/api/v1/invitations/{token}"),
}


async def test_every_operation_on_the_database_documents_try_again(client: Any) -> None:
    spec = await openapi(client)
    missing = []
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            public = operation.get("security") == []
            if public and (method, path) not in PUBLIC_ON_THE_DATABASE:
                continue
            described = operation["responses"].get("503", {}).get("description", "")
            if "TRY_AGAIN" not in described:
                missing.append(f"{method.upper()} {path}")
    assert missing == []


async def test_each_projects_operation_documents_exactly_its_errors(client: Any) -> None:
    spec = await openapi(client)
    for (method, path), statuses in EXPECTED.items():
        documented = documented_errors(spec, method, path)
        assert set(documented) == statuses | {"500"}, (method, path)
    assert "PROJECT_EXISTS" in documented_errors(spec, "post", API)["409"]
    assert "INVALID_STATUS" in documented_errors(spec, "put", P)["409"]
    assert "PROJECT_NOT_FOUND" in documented_errors(spec, "delete", P)["404"]


async def test_update_fields_that_cannot_be_null_are_not_nullable(client: Any) -> None:
    spec = await openapi(client)
    body = spec["paths"][P]["put"]["requestBody"]["content"]["application/json"]["schema"]
    schema = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]] if "$ref" in body else body
    properties = schema["properties"]
    for field in ("name", "type", "privacy", "chunkingStrategy", "includeMetadata", "anonymizeSecrets"):
        assert "null" not in str(properties[field]), field
        assert "default" not in properties[field], field
    assert {"type": "null"} in properties["description"]["anyOf"]
    assert not schema.get("required")


Request = Callable[[], Awaitable[Any]]


async def test_every_documented_error_happens_with_its_documented_code(
    client: Any, kijko: Kijko, alice: Account, make_settings: Any, tmp_path: Path
) -> None:
    async def search_spent(web: Any, owner: Account) -> Any:
        made = await web.post(API, json={"name": "Spent", "type": "manual"}, headers=owner.headers)
        path = f"{P}/search".format(project_id=(await made.get_json())["project"]["id"])
        return await web.get(path, query_string={"q": "x"}, headers=owner.headers)

    over_quota = await answered_when_spent(make_settings, tmp_path, search_spent)
    viewer = await add_member(kijko, alice.org_id, "viewer")
    member = await add_member(kijko, alice.org_id, "member")
    gone = await add_member(kijko, alice.org_id, "member")  # loses the membership below
    async with system_session(kijko.system_db) as db:
        await db.execute("DELETE FROM kijko.memberships WHERE user_id = $1", UUID(gone.user_id))

    async def project(name: str) -> dict[str, Any]:
        response = await client.post(API, json={"name": name, "type": "repository"}, headers=alice.headers)
        body: dict[str, Any] = (await response.get_json())["project"]
        return body

    taken = await project("Taken")  # shared and no longer a draft: its type cannot change
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.projects SET status = 'active', privacy = 'shared' WHERE id = $1", UUID(taken["id"])
        )
    other_id = (await project("Other"))["id"]
    unknown = str(uuid.uuid4())

    def send(method: str, path: str, account: Account | None, **kwargs: Any) -> Request:
        headers = dict(account.headers) if account else {}
        return lambda: client.open(path, method=method.upper(), headers=headers, **kwargs)

    def raw(method: str, path: str, data: bytes, content_type: str = "application/json") -> Request:
        headers = {**alice.headers, "Content-Type": content_type}
        return lambda: client.open(path, method=method.upper(), headers=headers, data=data)

    huge = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    triggers: dict[tuple[str, str], dict[str, Request]] = {}
    for (method, template), statuses in EXPECTED.items():
        path = template.format(project_id=other_id, repo_id=unknown, user_id="me")
        body = {"json": {"name": "Some name"}} if "400" in statuses else {}
        cases: dict[str, Request] = {
            "401": send(method, path, None),
            "403": send(method, path, gone, **body),  # the membership is gone
        }
        if "404" in statuses:
            cases["404"] = send(
                method,
                template.format(project_id=unknown, repo_id=unknown, user_id=unknown),
                alice,
                json={"description": "x"},
            )
        if "400" in statuses:
            cases["400"] = raw(method, path, b'{"name": ')
            cases["413"] = raw(method, path, huge)
            cases["415"] = raw(method, path, b"name=x", "application/x-www-form-urlencoded")
            cases["422"] = send(method, path, alice, json={"name": 5, "type": "nope"})
        triggers[(method, template)] = cases
    triggers[("get", API)]["422"] = send("get", API, alice, query_string={"pageSize": 0})
    triggers[("post", API)]["403"] = send("post", API, viewer, json={"name": "Viewer's", "type": "manual"})
    triggers[("post", API)]["409"] = send("post", API, member, json={"name": "TAKEN", "type": "manual"})
    for method in ("put", "patch"):
        path = P.format(project_id=other_id)
        triggers[(method, P)]["409"] = send(method, P.format(project_id=taken["id"]), alice, json={"type": "files"})
        triggers[(method, P)]["403"] = send(method, P.format(project_id=taken["id"]), viewer, json={"name": "Nope"})
        triggers[(method, P)]["409 name"] = send(method, path, alice, json={"name": "taken"})
    triggers[("delete", P)]["403"] = send("delete", P.format(project_id=taken["id"]), viewer)
    repos = f"{P}/repositories"
    repo = {"provider": "github", "repositoryUrl": "https://github.com/a/b", "branch": "main"}
    assert (await client.post(repos.format(project_id=other_id), json=repo, headers=alice.headers)).status_code == 201
    triggers[("post", repos)]["403"] = send("post", repos.format(project_id=other_id), gone, json=repo)
    triggers[("post", repos)]["404"] = send("post", repos.format(project_id=unknown), alice, json=repo)
    triggers[("post", repos)]["409"] = send("post", repos.format(project_id=other_id), alice, json=repo)
    triggers[("post", repos)]["422 url"] = send(
        "post", repos.format(project_id=other_id), alice, json={**repo, "repositoryUrl": "https://example.com/a/b"}
    )
    triggers[("delete", f"{repos}/{{repo_id}}")]["404 repository"] = send(
        "delete", f"{repos}/{unknown}".format(project_id=other_id), alice
    )
    triggers[("post", f"{API}/validate-repository")]["422"] = send(
        "post", f"{API}/validate-repository", alice, json={"url": 5}
    )
    triggers[("get", f"{P}/search")]["422"] = send("get", f"{P}/search".format(project_id=other_id), alice)
    triggers[("get", f"{P}/search")]["422 pageSize"] = send(
        "get", f"{P}/search".format(project_id=other_id), alice, query_string={"q": "x", "pageSize": 0}
    )
    triggers[("get", f"{P}/search")]["429"] = over_quota
    triggers[("get", f"{P}/files")]["422"] = send(
        "get", f"{P}/files".format(project_id=other_id), alice, query_string={"page": 0}
    )

    spec = await openapi(client)
    problems = []
    for (method, template), cases in triggers.items():
        documented = documented_errors(spec, method, template)
        assert {status.split()[0] for status in cases} == EXPECTED[(method, template)], (method, template)
        problems += await answers_not_as_documented(method, template, cases, documented)
    assert problems == []


# ---------------------------------------------------------------------------------------------
# Every other operation (decision 0046): declared by its view, limiter statuses from
# @rate_limit, and no generic list for a view that declares nothing.

AUTH = "/api/v1/auth"
OAUTH = "/api/v1/auth/oauth"
ORGS = "/api/v1/organizations"
LIMITED = {"429", "503"}  # the rate limiter: over the limit, or its Redis is down
OTHERS: dict[tuple[str, str], set[str]] = {
    ("get", "/"): set(),
    ("get", "/api/v1"): set(),
    ("get", "/health"): set(),
    ("get", "/health/ready"): {"503"},
    ("get", "/.well-known/jwks.json"): {"404"},
    ("get", "/.well-known/openid-configuration"): {"404"},
    # 401/409/502 beyond the local provider's: completing a Keycloak sign-in.
    ("post", f"{AUTH}/signup"): {"401", "409", "502"} | BODY | LIMITED,
    ("post", f"{AUTH}/login"): {"401", "409", "502"} | BODY | LIMITED,
    ("post", f"{AUTH}/refresh"): {"401", "409", "502"} | BODY | LIMITED,
    ("post", f"{AUTH}/logout"): {"401"},
    ("get", f"{AUTH}/me"): {"401", "403"},
    ("get", f"{OAUTH}/callback"): {"400", "401", "404", "409", "422", "502"},
    ("post", f"{OAUTH}/exchange"): {"401", "404"} | BODY,
    ("get", f"{OAUTH}/{{provider}}"): {"404", "502"},
    # Organizations (issue 6 §2). Switching: 400 and 502 with keycloak only.
    ("post", f"{AUTH}/switch-organization"): {"400", "401", "403", "502"} | BODY,
    ("get", ORGS): {"401"},
    ("get", f"{ORGS}/current"): {"401", "403"},
    ("patch", f"{ORGS}/current"): {"401", "403"} | BODY,
    ("get", f"{ORGS}/current/members"): {"401", "403"},
    ("patch", f"{ORGS}/current/members/{{user_id}}"): {"401", "403", "404", "409"} | BODY,
    ("delete", f"{ORGS}/current/members/{{user_id}}"): {"401", "403", "404", "409"},
    ("get", "/api/v1/users/search"): {"401", "403", "422"},
    ("get", "/api/v1/plugins"): {"401", "403"},
    # Analytics (issue 8 §7): the public intake on both paths, and the owners' summary.
    ("post", "/api/analytics/events"): BODY | LIMITED,
    ("post", "/api/v1/analytics/events"): BODY | LIMITED,
    ("get", "/api/v1/analytics/summary"): {"401", "403", "422"},
    # Billing without Stripe (issue 9): the public plans, the usage (owners and admins).
    ("get", "/api/v1/billing/plans"): set(),
    ("get", "/api/v1/billing/usage"): {"401", "403"},
}
#: Statuses documented above that only a Keycloak misbehaving or a rare race answers; each
#: is raised on a code path named in kijko_server/blueprints/auth.py (KEYCLOAK_SIGN_IN).
NOT_TRIGGERED: dict[tuple[str, str], set[str]] = {
    ("post", f"{AUTH}/signup"): {"401"},
    ("post", f"{AUTH}/login"): {"409"},
    ("post", f"{AUTH}/refresh"): {"409"},
    ("get", f"{OAUTH}/callback"): {"401", "409", "502"},
    ("post", f"{AUTH}/switch-organization"): {"502"},  # Keycloak failing to set the attribute
}


def test_every_view_declares_its_errors(app: KijkoApp) -> None:
    assert undeclared_views(app) == []
    # The Swagger UI page and its assets are not in the document, but declare all the same.
    asset = app.view_functions["swagger_ui.asset"]
    assert set(declared_errors(asset, public=True) or {}) == {"404", "500"}
    assert set(declared_errors(app.view_functions["swagger_ui.docs"], public=True) or {}) == {"500"}


def undeclared_views(app: Quart) -> list[str]:
    """Routes whose view has no ``@responds`` (quart-schema's own document view aside)."""
    return sorted(
        f"{rule.rule} ({rule.endpoint})"
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "openapi" and declared_errors(app.view_functions[rule.endpoint], public=True) is None
    )


async def test_a_view_without_a_declaration_is_reported_and_gets_no_generic_list(kijko: Kijko) -> None:
    application = create_app(kijko=kijko)
    async with application.test_app():
        application.add_url_rule("/api/v1/meta/undeclared", "undeclared", lambda: {}, methods=["GET"])
        assert undeclared_views(application) == ["/api/v1/meta/undeclared (undeclared)"]
        spec = await openapi(application.test_client())
    assert set(documented_errors(spec, "get", "/api/v1/meta/undeclared")) == {"401", "500"}


async def test_each_other_operation_documents_exactly_its_errors(client: Any) -> None:
    spec = await openapi(client)
    operations = {(method, path) for path, methods in spec["paths"].items() for method in methods}
    # Members pin theirs in tests/test_members.py, the wizard's sources in tests/test_sources.py
    # (WIZARD), ingestion in tests/ingestion_kit.py; each is triggered there.
    pinned = set(EXPECTED) | set(OTHERS) | set(MEMBER_OPERATIONS) | set(WIZARD) | set(INGESTION_OPERATIONS)
    pinned |= set(SKILL_OPERATIONS)
    pinned |= set(EXECUTION_OPERATIONS)  # triggered in tests/test_execution_history.py
    pinned |= set(HABIT_OPERATIONS)
    pinned |= set(SKILL_OPERATIONS) | set(REFLEX_OPERATIONS)
    pinned |= set(RUN_OPERATIONS)  # triggered in tests/test_runs_routes.py
    pinned |= set(LLM_KEY_OPERATIONS)  # triggered in tests/test_llm_keys.py
    pinned |= set(BILLING_DETAILS_OPERATIONS)  # triggered in tests/test_billing_details.py
    pinned |= set(BILLING_PAYMENTS_OPERATIONS)  # triggered in tests/test_billing_payments.py
    pinned |= set(STRIPE_WEBHOOK_OPERATIONS)  # triggered in tests/test_billing_webhooks.py
    pinned |= set(SUBSCRIPTION_OPERATIONS)  # triggered in tests/test_billing_subscription.py
    assert operations == pinned, "a new operation: pin its errors here"
    for (method, path), statuses in OTHERS.items():
        assert set(documented_errors(spec, method, path)) == statuses | {"500"}, (method, path)
    codes = {
        ("post", f"{AUTH}/signup", "409"): "ACCOUNT_EXISTS",
        ("post", f"{AUTH}/signup", "429"): "RATE_LIMITED",
        ("post", f"{AUTH}/signup", "503"): "SERVICE_UNAVAILABLE",
        ("post", f"{AUTH}/login", "401"): "INVALID_CREDENTIALS",
        ("post", f"{AUTH}/refresh", "401"): "INVALID_TOKEN",
        ("get", "/health/ready", "503"): "SERVICE_UNAVAILABLE",
        ("get", f"{OAUTH}/{{provider}}", "404"): "OAUTH_PROVIDER_NOT_FOUND",
        ("get", f"{OAUTH}/callback", "400"): "INVALID_OAUTH_STATE",
    }
    for (method, path, status), code in codes.items():
        assert code in documented_errors(spec, method, path)[status], (method, path, status)


def unique_address() -> str:
    value = uuid.uuid4().int
    return f"198.18.{value % 250}.{(value >> 8) % 250 + 1}"


@pytest.fixture(scope="module")
def fake_keycloak() -> Iterator[FakeKeycloak]:
    server = FakeKeycloak().start()
    try:
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def app_on(runtime: Kijko, settings: Any = None) -> AsyncIterator[Any]:
    """A test client of an app of its own on ``runtime``."""
    application = create_app(settings, kijko=runtime)
    async with application.test_app():
        yield application.test_client()


@asynccontextmanager
async def started(settings: Any) -> AsyncIterator[Kijko]:
    runtime = await Kijko.start(settings)
    try:
        yield runtime
    finally:
        await runtime.stop()


async def test_every_other_documented_error_happens_with_its_documented_code(
    client: Any, kijko: Kijko, alice: Account, make_settings: Any, fake_keycloak: FakeKeycloak
) -> None:
    gone = await add_member(kijko, alice.org_id, "member")
    async with system_session(kijko.system_db) as db:
        await db.execute("DELETE FROM kijko.memberships WHERE user_id = $1", UUID(gone.user_id))
    down = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    keycloak = {"auth_provider": "keycloak", "keycloak_client_secret": fake_keycloak.client_secret}
    async with AsyncExitStack() as stack:
        limited = await stack.enter_async_context(
            app_on(
                kijko,
                make_settings(
                    rate_limit_auth_per_minute=1, rate_limit_refresh_per_minute=1, analytics_rate_limit_per_minute=1
                ),
            )
        )
        redis = await stack.enter_async_context(closing_redis(make_redis(down)))
        redis_down = await stack.enter_async_context(
            app_on(dataclasses.replace(kijko, settings=down, redis=redis), down)
        )
        kc = await stack.enter_async_context(
            app_on(await stack.enter_async_context(started(make_settings(keycloak_url=fake_keycloak.url, **keycloak))))
        )
        kc_down_settings = make_settings(
            keycloak_url=f"http://127.0.0.1:{free_port()}", keycloak_timeout_seconds=1, **keycloak
        )
        kc_down = await stack.enter_async_context(app_on(await stack.enter_async_context(started(kc_down_settings))))
        await check_triggers(client, limited, redis_down, kc, kc_down, alice, gone)


@asynccontextmanager
async def closing_redis(redis: Any) -> AsyncIterator[Any]:
    try:
        yield redis
    finally:
        await redis.aclose()


async def check_triggers(
    client: Any, limited: Any, redis_down: Any, kc: Any, kc_down: Any, alice: Account, gone: Account
) -> None:
    def send(on: Any, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Request:
        # Each from an address of its own: no request spends another's rate-limit budget.
        scope = {"client": (unique_address(), 51000)}
        return lambda: on.open(path, method=method.upper(), headers=headers or {}, scope_base=scope, **kwargs)

    def twice(on: Any, method: str, path: str, **kwargs: Any) -> Request:
        """The second of two requests from one address (the limited app allows one)."""
        scope = {"client": (unique_address(), 51000)}

        async def request() -> Any:
            await on.open(path, method=method.upper(), scope_base=scope, **kwargs)
            return await on.open(path, method=method.upper(), scope_base=scope, **kwargs)

        return request

    def body_errors(method: str, path: str) -> dict[str, Request]:
        def raw(data: bytes, content_type: str = "application/json") -> Request:
            return send(client, method, path, {"Content-Type": content_type}, data=data)

        return {
            "400": raw(b'{"email": '),
            "413": raw(b'{"code": "' + b"x" * (2 * 1024 * 1024) + b'"}'),
            "415": raw(b"code=x", "application/x-www-form-urlencoded"),
            "422": send(client, method, path, json={"email": 5, "code": 5, "refresh_token": 5}),
        }

    def new_signup() -> dict[str, str]:
        email = f"oa-{uuid.uuid4().hex[:12]}@example.com"
        return {"email": email, "password": "correct horse battery", "first_name": "O", "last_name": "A"}

    wrong = {"email": alice.email, "password": "not the password"}
    stale = {"refresh_token": "not-a-refresh-token"}
    triggers: dict[tuple[str, str], dict[str, Request]] = {
        ("get", "/health/ready"): {"503": send(redis_down, "get", "/health/ready")},
        ("get", "/.well-known/jwks.json"): {"404": send(kc, "get", "/.well-known/jwks.json")},
        ("get", "/.well-known/openid-configuration"): {"404": send(kc, "get", "/.well-known/openid-configuration")},
        ("post", f"{AUTH}/signup"): {
            **body_errors("post", f"{AUTH}/signup"),
            "409": send(client, "post", f"{AUTH}/signup", json={**new_signup(), "email": alice.email.upper()}),
            "429": twice(limited, "post", f"{AUTH}/signup", json=new_signup()),
            "502": send(kc_down, "post", f"{AUTH}/signup", json=new_signup()),
            "503": send(redis_down, "post", f"{AUTH}/signup", json=new_signup()),
        },
        ("post", f"{AUTH}/login"): {
            **body_errors("post", f"{AUTH}/login"),
            "401": send(client, "post", f"{AUTH}/login", json=wrong),
            "429": twice(limited, "post", f"{AUTH}/login", json=wrong),
            "502": send(kc_down, "post", f"{AUTH}/login", json=wrong),
            "503": send(redis_down, "post", f"{AUTH}/login", json=wrong),
        },
        ("post", f"{AUTH}/refresh"): {
            **body_errors("post", f"{AUTH}/refresh"),
            "401": send(client, "post", f"{AUTH}/refresh", json=stale),
            "401 keycloak": send(kc, "post", f"{AUTH}/refresh", json=stale),
            "429": twice(limited, "post", f"{AUTH}/refresh", json=stale),
            "502": send(kc_down, "post", f"{AUTH}/refresh", json=stale),
            "503": send(redis_down, "post", f"{AUTH}/refresh", json=stale),
        },
        ("post", f"{AUTH}/logout"): {"401": send(client, "post", f"{AUTH}/logout")},
        ("get", "/api/v1/plugins"): {
            "401": send(client, "get", "/api/v1/plugins"),
            "403": send(client, "get", "/api/v1/plugins", gone.headers),
        },
        ("get", "/api/v1/billing/usage"): {
            "401": send(client, "get", "/api/v1/billing/usage"),
            "403": send(client, "get", "/api/v1/billing/usage", gone.headers),
        },
        ("get", f"{AUTH}/me"): {
            "401": send(client, "get", f"{AUTH}/me"),
            "403": send(client, "get", f"{AUTH}/me", gone.headers),
        },
        ("get", f"{OAUTH}/callback"): {
            "400": send(kc, "get", f"{OAUTH}/callback", query_string={"code": "x", "state": "made-up"}),
            "404": send(client, "get", f"{OAUTH}/callback", query_string={"code": "x", "state": "made-up"}),
            "422": send(client, "get", f"{OAUTH}/callback", query_string={"code": "x"}),
        },
        ("post", f"{OAUTH}/exchange"): {
            **body_errors("post", f"{OAUTH}/exchange"),
            "401": send(kc, "post", f"{OAUTH}/exchange", json={"code": "never-handed-out"}),
            "404": send(client, "post", f"{OAUTH}/exchange", json={"code": "never-handed-out"}),
        },
        ("get", f"{OAUTH}/{{provider}}"): {
            "404": send(kc, "get", f"{OAUTH}/myspace"),
            "404 local": send(client, "get", f"{OAUTH}/google"),
            "502": send(kc_down, "get", f"{OAUTH}/google"),
        },
    }

    triggers.update(await organization_triggers(client, kc, send, alice, gone))
    triggers.update(analytics_triggers(client, limited, redis_down, send, twice, alice, gone))

    spec = await openapi(client)
    problems = []
    for (method, template), statuses in OTHERS.items():
        cases = triggers.get((method, template), {})
        covered = {label.split()[0] for label in cases} | NOT_TRIGGERED.get((method, template), set())
        assert covered == statuses, (method, template)
        documented = documented_errors(spec, method, template)
        problems += await answers_not_as_documented(method, template, cases, documented)
    # Hidden from the document, declared all the same: an asset that is not one.
    missing = await client.get("/docs/assets/nope.js")
    assert missing.status_code == 404 and (await missing.get_json())["code"] == "ROUTE_NOT_FOUND"
    assert problems == []


async def organization_triggers(
    client: Any, kc: Any, send: Callable[..., Request], alice: Account, gone: Account
) -> dict[tuple[str, str], dict[str, Request]]:
    """Alice is the only owner of her organization; ``gone`` was removed from it."""
    me, other = alice.headers, str(uuid.uuid4())
    member = f"{ORGS}/current/members/{{user_id}}"

    def at(user_id: str) -> str:
        return member.format(user_id=user_id)

    def body_errors(method: str, path: str) -> dict[str, Request]:
        def raw(data: bytes, content_type: str = "application/json") -> Request:
            return send(client, method, path, {**me, "Content-Type": content_type}, data=data)

        return {
            "400": raw(b'{"name": '),
            "413": raw(b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'),
            "415": raw(b"name=x", "application/x-www-form-urlencoded"),
            "422": send(client, method, path, me, json={"name": 5, "role": 5, "organization_id": 5}),
        }

    kc_account = await sign_up(kc)
    switch = f"{AUTH}/switch-organization"
    return {
        (("post", switch)): {
            **body_errors("post", switch),
            "400": send(kc, "post", switch, kc_account.headers, json={"organization_id": kc_account.org_id}),
            "400 body": body_errors("post", switch)["400"],
            "401": send(client, "post", switch, json={"organization_id": alice.org_id}),
            "403": send(client, "post", switch, me, json={"organization_id": other}),
        },
        ("get", ORGS): {"401": send(client, "get", ORGS)},
        ("get", f"{ORGS}/current"): {
            "401": send(client, "get", f"{ORGS}/current"),
            "403": send(client, "get", f"{ORGS}/current", gone.headers),
        },
        ("patch", f"{ORGS}/current"): {
            **body_errors("patch", f"{ORGS}/current"),
            "401": send(client, "patch", f"{ORGS}/current", json={"name": "x"}),
            "403": send(client, "patch", f"{ORGS}/current", gone.headers, json={"name": "x"}),
        },
        ("get", f"{ORGS}/current/members"): {
            "401": send(client, "get", f"{ORGS}/current/members"),
            "403": send(client, "get", f"{ORGS}/current/members", gone.headers),
        },
        ("patch", member): {
            **body_errors("patch", at(other)),
            "401": send(client, "patch", at(other), json={"role": "viewer"}),
            "403": send(client, "patch", at(alice.user_id), gone.headers, json={"role": "viewer"}),
            "404": send(client, "patch", at(other), me, json={"role": "viewer"}),
            "409": send(client, "patch", at(alice.user_id), me, json={"role": "viewer"}),
        },
        ("delete", member): {
            "401": send(client, "delete", at(other)),
            "403": send(client, "delete", at(alice.user_id), gone.headers),
            "404": send(client, "delete", at(other), me),
            "409": send(client, "delete", at(alice.user_id), me),
        },
        ("get", "/api/v1/users/search"): {
            "401": send(client, "get", "/api/v1/users/search"),
            "403": send(client, "get", "/api/v1/users/search", gone.headers),
            "422": send(client, "get", "/api/v1/users/search", me, query_string={"q": "x" * 101}),
        },
    }


def analytics_triggers(
    client: Any,
    limited: Any,
    redis_down: Any,
    send: Callable[..., Request],
    twice: Callable[..., Request],
    alice: Account,
    gone: Account,
) -> dict[tuple[str, str], dict[str, Request]]:
    """The intake on both paths (public: no 401) and the summary (owners and admins)."""
    triggers: dict[tuple[str, str], dict[str, Request]] = {}
    for path in ("/api/analytics/events", "/api/v1/analytics/events"):

        def raw(data: bytes, content_type: str = "application/json", path: str = path) -> Request:
            return send(client, "post", path, {"Content-Type": content_type}, data=data)

        triggers[("post", path)] = {
            "400": raw(b'{"events": ['),
            "413": raw(b'{"events": ["' + b"x" * (2 * 1024 * 1024) + b'"]}'),
            "415": raw(b"events=x", "application/x-www-form-urlencoded"),
            "422": send(client, "post", path, json={"events": [{}] * 51}),
            "429": twice(limited, "post", path, json={"events": []}),
            "503": send(redis_down, "post", path, json={"events": []}),
        }
    summary = "/api/v1/analytics/summary"
    triggers[("get", summary)] = {
        "401": send(client, "get", summary),
        "403": send(client, "get", summary, gone.headers),
        "422": send(client, "get", summary, alice.headers, query_string={"period": "1y"}),
    }
    return triggers


def schema_of(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        found: dict[str, Any] = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        return found
    return schema


async def test_other_schemas_say_what_the_runtime_sends(client: Any, alice: Account) -> None:
    spec = await openapi(client)
    responses: dict[tuple[str, str], dict[str, Any]] = {}
    for method, path in OTHERS:
        operation = spec["paths"][path][method]
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            assert "null" not in json.dumps(schema_of(spec, body["schema"])), (method, path)
        for status, response in operation["responses"].items():
            content = response.get("content", {}).get("application/json")
            if status[0] == "2" and content is not None:
                schema = schema_of(spec, content["schema"])
                if schema.get("type") == "array":  # a plain list (contract §1.4): its items
                    schema = schema_of(spec, schema["items"])
                # Every field is always written, and none of them is ever null.
                assert "null" not in json.dumps(schema), (method, path)
                assert set(schema.get("required", [])) == set(schema["properties"]), (method, path)
                responses[(method, path)] = schema
    links = spec["components"]["schemas"]["ApiLinks"]
    assert "null" not in json.dumps(links) and set(links["required"]) == set(links["properties"])
    # A query string has no null, and what the model requires is a required parameter.
    parameters = {
        (path, parameter["name"]): parameter
        for path in (f"{OAUTH}/callback", API)
        for parameter in spec["paths"][path]["get"]["parameters"]
    }
    assert "null" not in json.dumps(list(parameters.values()))
    required = {key for key, parameter in parameters.items() if parameter.get("required")}
    assert required == {(f"{OAUTH}/callback", "state")}
    assert set(parameters) >= {(f"{OAUTH}/callback", "code"), (f"{OAUTH}/callback", "error"), (API, "search")}
    tokens = responses[("post", f"{AUTH}/signup")]
    assert tokens["properties"]["token_type"]["const"] == "bearer"

    # And what the runtime sends is that.
    login = await client.post(f"{AUTH}/login", json={"email": alice.email, "password": alice.password})
    pair = await login.get_json()
    assert set(pair) == set(tokens["required"]) and pair["token_type"] == "bearer"
    me = await (await client.get(f"{AUTH}/me", headers=alice.headers)).get_json()
    assert set(me) == set(responses[("get", f"{AUTH}/me")]["required"])
    assert None not in me.values() and None not in pair.values()


async def test_error_body_fields_are_absent_never_null(client: Any, alice: Account) -> None:
    spec = await openapi(client)
    schema = spec["components"]["schemas"]["ErrorBody"]
    assert set(schema["required"]) == {"detail", "code", "message"}
    for name in ("field", "details"):
        assert "null" not in json.dumps(schema["properties"][name]), name
        assert "default" not in schema["properties"][name], name
    taken = {"email": alice.email, "password": "correct horse battery", "first_name": "A", "last_name": "B"}
    with_field = await (await client.post(f"{AUTH}/signup", json=taken)).get_json()
    assert with_field["field"] == "email" and "details" not in with_field
    without = await (await client.get(f"{AUTH}/me")).get_json()
    assert set(without) == {"detail", "code", "message"}
