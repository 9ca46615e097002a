"""Meta-tests of the HTTP surface (TEST-01): every route needs a token unless it is on the one
public list, and ``/openapi.json`` is valid OpenAPI 3.1 documenting every route.

Each check is a function returning its violations; it runs on the real app expecting none and
on a deliberately broken app or document to prove it would notice.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from quart import Quart

from kijko_core.runtime import Kijko
from kijko_server.app import KijkoApp, create_app
from kijko_server.security import PUBLIC_ROUTES, authenticate, is_public

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


async def unauthenticated_routes(
    app: Quart, public: Callable[[str, str], bool] = is_public
) -> list[str]:
    """Non-public routes that do not answer 401 INVALID_TOKEN in the error shape without a
    token or with a garbage one."""
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


@pytest.fixture
async def fresh_app(kijko: Kijko) -> AsyncIterator[KijkoApp]:
    """An app of its own, free to be broken by the test."""
    application = create_app(kijko=kijko)
    async with application.test_app():
        yield application


# ---------------------------------------------------------------------------------------------
# Authentication on every route.


async def test_every_non_public_route_requires_a_token(app: KijkoApp) -> None:
    checked = [route for route in routes(app) if not is_public(*route)]
    assert ("GET", "/api/v1/projects") in checked and ("GET", "/api/v1/auth/me") in checked
    assert await unauthenticated_routes(app) == []


async def test_public_routes_answer_without_a_token(app: KijkoApp) -> None:
    client = app.test_client()
    for path in ("/health", "/.well-known/jwks.json", "/openapi.json", "/docs"):
        response = await client.get(path)
        assert response.status_code == 200, path


def test_the_public_list_is_exactly_the_documented_one() -> None:
    # ARCHITECTURE §7: adding a public route is a security decision; make it show up in review.
    assert [(sorted(route.methods), route.pattern) for route in PUBLIC_ROUTES] == [
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
        (["*"], "/api/v1/webhooks/*"),
        (["POST"], "/api/analytics/events"),
        (["POST"], "/api/v1/analytics/events"),
    ]
    assert is_public("POST", "/api/v1/auth/signup")
    assert not is_public("GET", "/api/v1/auth/signup")
    assert not is_public("POST", "/api/v1/auth/logout")
    assert not is_public("GET", "/api/v1/projects")


async def test_walker_reports_a_route_that_answers_without_a_token(app: KijkoApp) -> None:
    # /health answers 200 without a token; were it not on the public list, that is a leak.
    def public_but_health(method: str, rule: str) -> bool:
        return rule != "/health" and is_public(method, rule)

    assert await unauthenticated_routes(app, public_but_health) == ["GET /health: 200 None"]


async def test_walker_reports_every_route_when_authentication_is_forgotten(
    fresh_app: KijkoApp,
) -> None:
    hooks = fresh_app.before_request_funcs[None]
    hooks.remove(authenticate)
    fresh_app.add_url_rule(
        "/api/v1/meta/leaky/<item_id>", "leaky", lambda item_id: {"item": item_id}, methods=["GET"]
    )
    problems = await unauthenticated_routes(fresh_app)
    assert "GET /api/v1/meta/leaky/<item_id>: 200 None" in problems
    assert "GET /api/v1/auth/me" in {problem.split(":")[0] for problem in problems}
    assert "GET /api/v1/projects" in {problem.split(":")[0] for problem in problems}
    assert not any(problem.startswith("POST /api/v1/auth/signup") for problem in problems)


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
    documented = {
        (method.upper(), path) for path, operations in paths.items() for method in operations
    }
    expected = {
        (method, openapi_path(template))
        for method, template in routes(app)
        if template not in UNDOCUMENTED
    }
    problems.extend(f"{m} {p}: not documented" for m, p in sorted(expected - documented))
    problems.extend(f"{m} {p}: documented but not served" for m, p in sorted(documented - expected))
    for method, template in routes(app):
        operation = paths.get(openapi_path(template), {}).get(method.lower())
        if template in UNDOCUMENTED or operation is None:
            continue
        where = f"{method} {openapi_path(template)}"
        public = is_public(method, template)
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


async def test_openapi_is_valid_and_documents_every_route(
    spec: dict[str, Any], app: KijkoApp
) -> None:
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
