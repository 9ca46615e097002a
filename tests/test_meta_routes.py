"""Meta-tests of the HTTP surface (TEST-01): every route needs a token unless its view is marked
``@public`` and it is on the one public list, every authenticated route checks that the
token's session is not revoked, and ``/openapi.json`` is valid OpenAPI 3.1 documenting every
route.

Each check is a function returning its violations; it runs on the real app expecting none and
on a deliberately broken app or document to prove it would notice.
"""

from __future__ import annotations

import copy
import io
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from quart import Quart
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE
from werkzeug.routing import Rule

from kijko_core import __version__
from kijko_core.logging import configure_logging
from kijko_core.runtime import Kijko
from kijko_server.app import KijkoApp, create_app
from kijko_server.security import (
    PUBLIC_ROUTES,
    authenticate,
    is_allowed_public,
    is_ending_session,
    is_marked_public,
    is_public,
    public,
    require_revocation_check,
)
from tests.conftest import sign_up

#: Served by quart-schema itself, documented nowhere.
UNDOCUMENTED = frozenset({"/openapi.json", "/docs", "/docs/assets/<name>"})
#: Methods every route answers by itself (CORS preflight, GET without body).
IMPLICIT_METHODS = frozenset({"OPTIONS", "HEAD"})
ERROR_SHAPE = {"detail", "code", "message"}

Route = tuple[str, str]  # (method, rule)


def routes(app: Quart) -> list[Route]:
    return sorted(
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if not rule.websocket
        for method in rule.methods or ()
        if method not in IMPLICIT_METHODS
    )


def _concrete_path(app: Quart, method: str, template: str) -> str:
    """The rule's path with every parameter filled in by a random uuid."""
    for rule in app.url_map.iter_rules():
        if rule.rule == template and method in (rule.methods or ()):
            built = rule.build({name: str(uuid.uuid4()) for name in rule.arguments})
            assert built is not None
            return built[1]
    raise LookupError(template)


def _rule(app: Quart, method: str, template: str) -> Rule:
    for rule in app.url_map.iter_rules():
        if rule.rule == template and method in (rule.methods or ()):
            return rule
    raise LookupError(template)


def route_is_public(app: Quart, method: str, template: str) -> bool:
    rule = _rule(app, method, template)
    return is_public(method, rule, app.view_functions[rule.endpoint])


def view_of(app: Quart, method: str, template: str) -> Callable[..., Any]:
    return app.view_functions[_rule(app, method, template).endpoint]


def public_marking_problems(app: Quart) -> list[str]:
    """Views marked ``@public`` on a route (method included) the allowlist does not permit."""
    return [
        f"{method} {template}: marked public but not on PUBLIC_ROUTES"
        for method, template in routes(app)
        if is_marked_public(view_of(app, method, template)) and not is_allowed_public(method, template)
    ]


async def unauthenticated_routes(app: Quart, public: Callable[[str, str], bool] | None = None) -> list[str]:
    """Non-public routes that do not answer 401 INVALID_TOKEN in the error shape without a
    token or with a garbage one."""
    public = public or (lambda method, template: route_is_public(app, method, template))
    client = app.test_client()
    problems = []
    for method, template in routes(app):
        if public(method, template):
            continue
        path = _concrete_path(app, method, template)
        for headers in ({}, {"Authorization": "Bearer not.a.token"}):
            response = await client.open(path, method=method, headers=headers)
            body = await response.get_json(force=True, silent=True)
            shaped = isinstance(body, dict) and ERROR_SHAPE <= body.keys()
            if response.status_code != 401 or not shaped or body.get("code") != "INVALID_TOKEN":
                code = body.get("code") if isinstance(body, dict) else None
                problems.append(f"{method} {template}: {response.status_code} {code}")
                break
    return problems


def example_of(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """A minimal valid instance of a JSON schema (the subset our request models use)."""
    if "$ref" in schema:
        return example_of(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [option for option in schema[key] if option.get("type") != "null"]
            return example_of(options[0], defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: example_of(properties[name], defs) for name in schema.get("required", [])}
    if kind == "string":
        if schema.get("format") == "email":
            return "someone@example.com"
        if schema.get("format") == "uuid":
            return str(uuid.uuid4())
        return "x" * max(int(schema.get("minLength", 1)), 8)
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    if kind == "array":
        return [example_of(schema["items"], defs) for _ in range(int(schema.get("minItems", 0)))]
    raise NotImplementedError(f"no example for {schema}")


def request_body_for(view: Callable[..., Any]) -> Any:
    found = getattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, None)
    if found is None:
        return None
    model = found[0]
    schema = model.model_json_schema()
    return example_of(schema, schema.get("$defs", {}))


async def revoked_session_problems(app: Quart, revoked: dict[str, str]) -> list[str]:
    """Authenticated routes that do not answer 401 to a validly signed token of a revoked
    session, given a valid body: each must open a tenant session (which checks revocation)
    or end the session itself (logout)."""
    client = app.test_client()
    problems = []
    for method, template in routes(app):
        view = view_of(app, method, template)
        if route_is_public(app, method, template) or is_ending_session(view):
            continue
        body = request_body_for(view)
        response = await client.open(
            _concrete_path(app, method, template),
            method=method,
            headers=revoked,
            **({"json": body} if body is not None else {}),
        )
        data = await response.get_json(force=True, silent=True)
        code = data.get("code") if isinstance(data, dict) else None
        if response.status_code != 401 or code != "INVALID_TOKEN":
            problems.append(f"{method} {template}: {response.status_code} {code}")
    return problems


@pytest.fixture
async def fresh_app(kijko: Kijko) -> AsyncIterator[KijkoApp]:
    """An app of its own, free to be broken by the test."""
    application = create_app(kijko=kijko)
    async with application.test_app():
        yield application


async def revoked_headers(app: Quart) -> dict[str, str]:
    """The headers of an account whose session was ended by logout."""
    account = await sign_up(app.test_client())
    logout = await app.test_client().post("/api/v1/auth/logout", headers=account.headers)
    assert logout.status_code == 200
    return account.headers


# ---------------------------------------------------------------------------------------------
# Authentication on every route.


async def test_every_non_public_route_requires_a_token(app: KijkoApp) -> None:
    checked = [route for route in routes(app) if not route_is_public(app, *route)]
    assert ("GET", "/api/v1/projects") in checked and ("GET", "/api/v1/auth/me") in checked
    assert await unauthenticated_routes(app) == []


async def test_public_routes_answer_without_a_token(app: KijkoApp) -> None:
    client = app.test_client()
    for path in ("/health", "/.well-known/jwks.json", "/openapi.json", "/docs", "/api/v1"):
        response = await client.get(path)
        assert response.status_code == 200, path
    root = await client.get("/")
    assert root.status_code == 302 and root.headers["Location"] == "/docs"


async def test_api_index_names_the_version_and_the_documentation(client: Any) -> None:
    response = await client.get("/api/v1")
    body = await response.get_json()
    assert body == {
        "name": "Kijko API",
        "version": __version__,
        "links": {"docs": "/docs", "openapi": "/openapi.json", "health": "/health"},
    }
    for link in body["links"].values():
        assert (await client.get(link)).status_code == 200, link


def test_the_public_list_is_exactly_the_documented_one() -> None:
    # ARCHITECTURE §7: adding a public route is a security decision; make it show up in review.
    assert [(sorted(route.methods), route.pattern) for route in PUBLIC_ROUTES] == [
        (["GET", "HEAD"], "/"),
        (["GET", "HEAD"], "/api/v1"),
        (["GET", "HEAD"], "/health"),
        (["GET", "HEAD"], "/health/*"),
        (["GET", "HEAD"], "/.well-known/*"),
        (["GET", "HEAD"], "/openapi.json"),
        (["GET", "HEAD"], "/docs"),
        (["GET", "HEAD"], "/docs/assets/*"),
        (["POST"], "/api/v1/auth/signup"),
        (["POST"], "/api/v1/auth/login"),
        (["POST"], "/api/v1/auth/refresh"),
        (["GET", "POST"], "/api/v1/auth/oauth/*"),
        (["GET", "HEAD"], "/api/v1/invitations/<token>"),
        (["POST"], "/api/v1/webhooks/*"),
        (["POST"], "/api/analytics/events"),
        (["POST"], "/api/v1/analytics/events"),
        (["GET", "HEAD"], "/api/v1/billing/plans"),
    ]
    assert is_allowed_public("POST", "/api/v1/auth/signup")
    assert not is_allowed_public("GET", "/api/v1/auth/signup")
    assert not is_allowed_public("POST", "/api/v1/auth/logout")
    assert not is_allowed_public("GET", "/api/v1/projects")
    assert not is_allowed_public("GET", "/api/v1/webhooks/github")
    assert not is_allowed_public("DELETE", "/api/v1/webhooks/github")


def test_every_public_view_is_on_the_list(app: KijkoApp) -> None:
    marked = {route for route in routes(app) if is_marked_public(view_of(app, *route))}
    assert ("POST", "/api/v1/auth/login") in marked and ("GET", "/health") in marked
    assert public_marking_problems(app) == []


async def test_a_view_marked_public_outside_the_list_is_reported_and_still_needs_a_token(
    fresh_app: KijkoApp,
) -> None:
    async def hook(event: str) -> dict[str, str]:
        return {"received": event}

    fresh_app.add_url_rule("/api/v1/meta/open", "open", public(lambda: {"open": True}), methods=["GET"])
    fresh_app.add_url_rule("/api/v1/webhooks/<event>", "hook", public(hook), methods=["GET", "POST", "DELETE"])
    assert public_marking_problems(fresh_app) == [
        "DELETE /api/v1/webhooks/<event>: marked public but not on PUBLIC_ROUTES",
        "GET /api/v1/meta/open: marked public but not on PUBLIC_ROUTES",
        "GET /api/v1/webhooks/<event>: marked public but not on PUBLIC_ROUTES",
    ]
    # Fails closed: only the allowed method of the webhook prefix is open.
    client = fresh_app.test_client()
    assert (await client.get("/api/v1/meta/open")).status_code == 401
    assert (await client.get("/api/v1/webhooks/push")).status_code == 401
    assert (await client.delete("/api/v1/webhooks/push")).status_code == 401
    assert (await client.post("/api/v1/webhooks/push")).status_code == 200


async def test_a_route_on_the_list_but_not_marked_needs_a_token(fresh_app: KijkoApp) -> None:
    # The prefix alone opens nothing: /health/* is on the list, this view is not marked.
    fresh_app.add_url_rule("/health/secret", "health_secret", lambda: {"secret": 1}, methods=["GET"])
    assert not route_is_public(fresh_app, "GET", "/health/secret")
    response = await fresh_app.test_client().get("/health/secret")
    assert response.status_code == 401
    assert await unauthenticated_routes(fresh_app) == []


async def test_walker_reports_a_route_that_answers_without_a_token(app: KijkoApp) -> None:
    # /health answers 200 without a token; were it not public, that is a leak.
    def public_but_health(method: str, rule: str) -> bool:
        return rule != "/health" and route_is_public(app, method, rule)

    assert await unauthenticated_routes(app, public_but_health) == ["GET /health: 200 None"]


async def test_walker_reports_every_route_when_authentication_is_forgotten(
    fresh_app: KijkoApp,
) -> None:
    hooks = fresh_app.before_request_funcs[None]
    hooks.remove(authenticate)
    fresh_app.add_url_rule("/api/v1/meta/leaky/<item_id>", "leaky", lambda item_id: {"item": item_id}, methods=["GET"])
    problems = await unauthenticated_routes(fresh_app)
    assert "GET /api/v1/meta/leaky/<item_id>: 200 None" in problems
    assert "GET /api/v1/auth/me" in {problem.split(":")[0] for problem in problems}
    assert "GET /api/v1/projects" in {problem.split(":")[0] for problem in problems}
    assert not any(problem.startswith("POST /api/v1/auth/signup") for problem in problems)


# ---------------------------------------------------------------------------------------------
# Revocation: every authenticated route checks the token's session.


async def test_every_authenticated_route_refuses_a_revoked_session(app: KijkoApp) -> None:
    problems = await revoked_session_problems(app, await revoked_headers(app))
    assert problems == []
    ending = [route for route in routes(app) if is_ending_session(view_of(app, *route))]
    assert ending == [("POST", "/api/v1/auth/logout")]


async def test_a_route_that_never_opens_a_tenant_session_fails_closed(fresh_app: KijkoApp) -> None:
    fresh_app.add_url_rule("/api/v1/meta/sessionless", "sessionless", lambda: {"secret": "data"}, methods=["GET"])
    live = await sign_up(fresh_app.test_client())
    logs = io.StringIO()
    configure_logging("info", "json", stream=logs)
    response = await fresh_app.test_client().get(
        "/api/v1/meta/sessionless", headers={**live.headers, "Origin": "http://localhost:3000"}
    )
    assert response.status_code == 500
    body = await response.get_json()
    assert body["code"] == "INTERNAL_ERROR" and "secret" not in json.dumps(body)
    # The crash answer of any route: the request id to quote, and the headers the browser needs.
    assert body["details"]["requestId"] == response.headers["X-Request-ID"]
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    events = [json.loads(line) for line in logs.getvalue().splitlines()]
    assert [(e["event"], e.get("status")) for e in events] == [("revocation_not_checked", None), ("request", 500)]
    # And the meta-test names the route.
    problems = await revoked_session_problems(fresh_app, await revoked_headers(fresh_app))
    assert problems == ["GET /api/v1/meta/sessionless: 500 INTERNAL_ERROR"]


async def test_without_the_guard_the_meta_test_still_finds_the_sessionless_route(
    fresh_app: KijkoApp,
) -> None:
    fresh_app.after_request_funcs[None].remove(require_revocation_check)
    fresh_app.add_url_rule("/api/v1/meta/sessionless", "sessionless", lambda: {"secret": "data"}, methods=["GET"])
    problems = await revoked_session_problems(fresh_app, await revoked_headers(fresh_app))
    # A revoked token reads the data: exactly what the guard prevents.
    assert problems == ["GET /api/v1/meta/sessionless: 200 None"]


# ---------------------------------------------------------------------------------------------
# The OpenAPI document.


def openapi_path(template: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", template)


def openapi_problems(spec: dict[str, Any], app: Quart) -> list[str]:
    problems = []
    try:
        validate(spec)
    except OpenAPIValidationError as error:
        problems.append(f"not valid OpenAPI: {error.message}")
    if not str(spec.get("openapi", "")).startswith("3.1"):
        problems.append(f"not OpenAPI 3.1: {spec.get('openapi')}")
    schemes = spec.get("components", {}).get("securitySchemes", {})
    if schemes.get("bearer", {}).get("type") != "http" or schemes["bearer"].get("scheme") != "bearer":
        problems.append("no bearer security scheme")
    if spec.get("security") != [{"bearer": []}]:
        problems.append("bearer is not the default security requirement")
    if "ErrorBody" not in spec.get("components", {}).get("schemas", {}):
        problems.append("no ErrorBody schema")
    paths = spec.get("paths", {})
    documented = {(method.upper(), path) for path, operations in paths.items() for method in operations}
    expected = {(method, openapi_path(template)) for method, template in routes(app) if template not in UNDOCUMENTED}
    problems.extend(f"{m} {p}: not documented" for m, p in sorted(expected - documented))
    problems.extend(f"{m} {p}: documented but not served" for m, p in sorted(documented - expected))
    for method, template in routes(app):
        operation = paths.get(openapi_path(template), {}).get(method.lower())
        if template in UNDOCUMENTED or operation is None:
            continue
        where = f"{method} {openapi_path(template)}"
        public = route_is_public(app, method, template)
        security = operation.get("security")
        if public and security != []:
            problems.append(f"{where}: public but not marked `security: []`")
        if not public and security is not None and {"bearer": []} not in security:
            problems.append(f"{where}: needs a token but does not require bearer")
        responses = operation.get("responses", {})
        if not public and "401" not in responses:
            problems.append(f"{where}: 401 not documented")
        for status, response in responses.items():
            if status[0] in "45":
                ref = response.get("content", {}).get("application/json", {}).get("schema", {})
                if ref.get("$ref") != "#/components/schemas/ErrorBody":
                    problems.append(f"{where}: {status} does not use ErrorBody")
    return problems


@pytest.fixture
async def spec(client: Any) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = await response.get_json()
    return document


async def test_openapi_is_valid_and_documents_every_route(spec: dict[str, Any], app: KijkoApp) -> None:
    assert "/api/v1/projects/{project_id}" in spec["paths"]
    assert openapi_problems(spec, app) == []


async def test_openapi_check_reports_a_broken_document(spec: dict[str, Any], app: KijkoApp) -> None:
    broken = copy.deepcopy(spec)
    del broken["paths"]["/api/v1/projects/{project_id}"]["delete"]
    broken["paths"]["/api/v1/ghost"] = {"get": {"responses": {"200": {"description": "boo"}}}}
    del broken["paths"]["/health"]["get"]["security"]
    broken["paths"]["/api/v1/auth/me"]["get"]["security"] = [{"apiKey": []}]
    broken["paths"]["/api/v1/projects"]["get"]["responses"]["404"] = {"description": "bare"}
    del broken["paths"]["/api/v1/projects/stats"]["get"]["responses"]["401"]
    problems = openapi_problems(broken, app)
    assert set(problems) == {
        "DELETE /api/v1/projects/{project_id}: not documented",
        "GET /api/v1/ghost: documented but not served",
        "GET /health: public but not marked `security: []`",
        "GET /api/v1/auth/me: needs a token but does not require bearer",
        "GET /api/v1/projects: 404 does not use ErrorBody",
        "GET /api/v1/projects/stats: 401 not documented",
    }


async def test_openapi_check_reports_an_invalid_document(spec: dict[str, Any], app: KijkoApp) -> None:
    broken = copy.deepcopy(spec)
    del broken["info"]
    broken["openapi"] = "3.0.3"
    del broken["components"]["securitySchemes"]
    problems = openapi_problems(broken, app)
    assert any(problem.startswith("not valid OpenAPI") for problem in problems)
    assert "not OpenAPI 3.1: 3.0.3" in problems
    assert "no bearer security scheme" in problems


async def test_redirecting_routes_document_their_302(spec: dict[str, Any]) -> None:
    for path in ("/api/v1/auth/oauth/{provider}", "/api/v1/auth/oauth/callback"):
        found = spec["paths"][path]["get"]["responses"].get("302")
        assert found is not None, path
        assert "Location" in found["headers"]
