"""The shared suites, run for every domain in tests/domains.py (decision 0023): isolation
between organizations on every route, and the role × action matrix. A domain gets both by
registering itself; a route it serves but does not register fails the coverage check."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kijko_core.runtime import Kijko
from kijko_server.app import KijkoApp, create_app
from kijko_server.openapi import declared_errors
from tests.conftest import Account
from tests.domains import (
    ACTORS,
    CALLER_ROUTES,
    DOMAINS,
    OUTSIDE_SUITES,
    PROJECTS,
    Action,
    Actor,
    CallerRoutes,
    Domain,
)
from tests.memberships import add_member

IMPLICIT = frozenset({"HEAD", "OPTIONS"})


def served_routes(app: KijkoApp, domain: Domain) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule == domain.prefix or rule.rule.startswith(domain.prefix + "/")
        for method in rule.methods or ()
        if method not in IMPLICIT
    }


def id_routes(app: KijkoApp, domain: Domain) -> list[tuple[str, str]]:
    """Every served (method, rule) that addresses one resource by its id."""
    return sorted(route for route in served_routes(app, domain) if f"<{domain.id_param}>" in route[1])


def registered_routes(domain: Domain) -> set[tuple[str, str]]:
    return {(a.method, a.rule) for a in domain.actions if a.method != "LIST"} | set(domain.collection_routes)


def body_for(domain: Domain, method: str, rule: str) -> dict[str, Any] | None:
    for action in domain.actions:
        if (action.method, action.rule) == (method, rule):
            return action.body
    return None


def ids_in(rule: str) -> list[str]:
    return re.findall(r"<(?:\w+:)?(\w+)>", rule)


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.name)
def test_every_route_of_the_domain_is_registered(domain: Domain, app: KijkoApp) -> None:
    served = served_routes(app, domain)
    assert served, f"{domain.name}: no routes under {domain.prefix}"
    assert served - registered_routes(domain) == set(), "served but not in tests/domains.py"
    assert registered_routes(domain) - served == set(), "registered but not served"
    for _method, rule in id_routes(app, domain):
        first, *others = ids_in(rule)
        assert first == domain.id_param and set(others) <= set(domain.fill), f"{rule}: an id the suites cannot fill"
    # Each view says which errors it answers, so the OpenAPI document is exact (decision 0024).
    undeclared = sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(domain.prefix)
        and declared_errors(app.view_functions[rule.endpoint], public=False) is None
    )
    assert undeclared == [], "views without @responds"


# --- isolation ---------------------------------------------------------------------------------


async def call(
    client: Any,
    account: Account,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    query: dict[str, str] | None = None,
) -> Any:
    if body is None and method in {"POST", "PUT", "PATCH"}:
        body = {}
    payload: dict[str, Any] = {"json": body} if body is not None else {}
    if query is not None:
        payload["query_string"] = query
    return await client.open(path, method=method, headers=account.headers, **payload)


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.name)
async def test_another_organizations_ids_are_not_found_on_every_route(
    domain: Domain, app: KijkoApp, client: Any, alice: Account, bob: Account
) -> None:
    theirs = [await domain.create(client, alice, kind) for kind in domain.kinds]
    mine = await domain.create(client, bob, domain.kinds[0])
    routes = id_routes(app, domain)
    assert routes, f"{domain.name}: no route takes {domain.id_param}"
    # Sub-resources are made first: making one may change what the snapshot shows (a
    # repository counts in the project's totalRepos).
    paths = {
        (method, rule, resource["id"]): await domain.resolve(client, alice, rule, resource)
        for method, rule in routes
        for resource in theirs
    }
    alice_before, bob_before = await domain.snapshot(client, alice), await domain.snapshot(client, bob)

    for method, rule in routes:
        for resource in theirs:
            path = paths[(method, rule, resource["id"])]
            response = await call(client, bob, method, path, body_for(domain, method, rule))
            body = await response.get_json()
            assert (response.status_code, body.get("code")) == (404, domain.not_found), (method, rule, body)
            assert set(body) == {"detail", "code", "message"}, body  # nothing about the resource

    assert await domain.snapshot(client, alice) == alice_before
    assert await domain.snapshot(client, bob) == bob_before
    assert await domain.listed(client, bob) == {mine["id"]}
    assert await domain.listed(client, alice) == {resource["id"] for resource in theirs}


@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.name)
async def test_bodies_naming_another_organizations_ids_change_nothing(
    domain: Domain, client: Any, alice: Account, bob: Account
) -> None:
    if domain.create_rule is None:
        pytest.skip("no create route; its own tests send foreign ids to its update routes")
    org_key, user_key, id_key = domain.owner_keys
    victim = await domain.create(client, alice, domain.kinds[0])
    alice_before = await domain.snapshot(client, alice)
    foreign = {
        org_key: alice.org_id,
        user_key: alice.user_id,
        id_key: victim["id"],
        "organization_id": alice.org_id,
        "user_id": alice.user_id,
    }
    # Create: the resource lands in Bob's organization, as Bob's, with an id of its own.
    method, rule = domain.create_rule
    response = await call(client, bob, method, rule, domain.new_body(domain.kinds[0]) | foreign)
    assert response.status_code == 201, await response.get_data(as_text=True)
    created = domain.unwrap(await response.get_json())
    assert (created[org_key], created[user_key]) == (bob.org_id, bob.user_id)
    assert created[id_key] != victim["id"]
    template = await domain.create(client, bob, domain.kinds[0])
    # Updates of Bob's own resource: it stays Bob's, in Bob's organization.
    for action in domain.actions:
        if action.method in {"PUT", "PATCH"} and ids_in(action.rule) == [domain.id_param]:
            path = domain.path(action.rule, template["id"])
            response = await call(client, bob, action.method, path, (action.body or {}) | foreign)
            assert response.status_code == 200, (action.name, await response.get_data(as_text=True))
            after = await response.get_json()
            assert (after[org_key], after[user_key], after[id_key]) == (bob.org_id, bob.user_id, template["id"])
    assert await domain.snapshot(client, alice) == alice_before


# --- the role matrix -----------------------------------------------------------------------------


async def outcome(
    domain: Domain, action: Action, client: Any, actor: Account, resource: dict[str, Any], path: str
) -> str:
    """ "ok", "403" (FORBIDDEN) or "404" (the domain's code), or what came instead."""
    if action.method == "LIST":
        return "ok" if resource["id"] in await domain.listed(client, actor) else "404"
    response = await call(client, actor, action.method, path, action.body, action.query)
    body = await response.get_json()
    status = response.status_code
    if 200 <= status < 300:
        return "ok"
    if (status, body.get("code")) in {(403, "FORBIDDEN"), (404, domain.not_found)}:
        return str(status)
    return f"{status} {body.get('code')}"


async def actors(kijko: Kijko, alice: Account, who: Actor) -> tuple[Account, Account]:
    """(the creator of the resources, the caller) in alice's organization; alice is its owner."""
    creator = await add_member(kijko, alice.org_id, "member", first_name="Cree")
    if who == "creator":
        return creator, creator
    if who == "owner":
        return creator, alice
    return creator, await add_member(kijko, alice.org_id, who)


@pytest.mark.parametrize("who", ACTORS)
@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.name)
async def test_role_matrix(domain: Domain, who: Actor, client: Any, kijko: Kijko, alice: Account) -> None:
    creator, actor = await actors(kijko, alice, who)
    got: dict[tuple[str, str], str] = {}
    expected: dict[tuple[str, str], str] = {}
    for action in domain.actions:
        for kind in domain.kinds:
            resource = await domain.create(client, creator, kind)
            if action.prepare is not None:
                await action.prepare(client, creator, resource)
            # Sub-resources first: making one may change the snapshot (totalRepos).
            path = await domain.resolve(client, creator, action.rule, resource)
            before = await domain.snapshot(client, creator)
            result = await outcome(domain, action, client, actor, resource, path)
            got[(action.name, kind)] = result
            expected[(action.name, kind)] = action.expected[kind][who]
            if result != "ok":  # a refusal changes nothing
                assert await domain.snapshot(client, creator) == before, (action.name, kind)
    if domain.create_rule is not None:
        method, rule = domain.create_rule
        response = await call(client, actor, method, rule, domain.new_body(domain.kinds[0]))
        got[("create", "-")] = {201: "ok", 200: "ok", 403: "403"}.get(response.status_code, str(response.status_code))
        expected[("create", "-")] = domain.may_create[who]
    assert got == expected


# --- routes without a resource id in their path (tests/domains.py CALLER_ROUTES) ---------------


def _caller_served(app: KijkoApp, group: CallerRoutes) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(group.prefix + "/")
        for method in rule.methods or ()
        if method not in IMPLICIT
    }


def caller_coverage_problems(app: KijkoApp, group: CallerRoutes) -> list[str]:
    """Routes under the group's prefix that are served but not registered (or the reverse),
    and views there that do not declare their errors."""
    served = _caller_served(app, group)
    registered = {(route.method, route.rule) for route in group.routes}
    problems = [f"{method} {rule}: served, not registered" for method, rule in sorted(served - registered)]
    problems += [f"{method} {rule}: registered, not served" for method, rule in sorted(registered - served)]
    problems += sorted(
        f"{rule.rule}: no @responds"
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(group.prefix + "/")
        and declared_errors(app.view_functions[rule.endpoint], public=False) is None
    )
    return problems


@pytest.mark.parametrize("group", CALLER_ROUTES, ids=lambda g: g.name)
def test_every_caller_route_is_registered(group: CallerRoutes, app: KijkoApp) -> None:
    assert _caller_served(app, group), f"{group.name}: no routes under {group.prefix}"
    assert caller_coverage_problems(app, group) == []


def unsuited_routes(app: KijkoApp) -> list[str]:
    """API routes that no domain, no caller group and no entry of OUTSIDE_SUITES covers."""
    prefixes = [d.prefix for d in DOMAINS] + [g.prefix + "/" for g in CALLER_ROUTES]
    return sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1")
        and not any(rule.rule.startswith(prefix) for prefix in prefixes)
        and not any(rule.rule == p or (p.endswith("/") and rule.rule.startswith(p)) for p in OUTSIDE_SUITES)
    )


def test_every_api_route_is_in_a_suite_or_named_outside(app: KijkoApp) -> None:
    assert unsuited_routes(app) == []


async def test_the_suite_check_notices_a_route_outside_every_suite(kijko: Kijko) -> None:
    fresh = create_app(kijko=kijko)
    fresh.add_url_rule("/api/v1/widgets/<widget_id>", "widget", lambda widget_id: {}, methods=["GET"])
    assert unsuited_routes(fresh) == ["/api/v1/widgets/<widget_id>"]


async def test_the_caller_route_check_notices_an_unregistered_route(kijko: Kijko) -> None:
    fresh = create_app(kijko=kijko)
    fresh.add_url_rule("/api/v1/files/extra", "files_extra", lambda: {"extra": True}, methods=["GET"])
    uploads = next(group for group in CALLER_ROUTES if group.prefix.endswith("/files"))
    assert caller_coverage_problems(fresh, uploads) == [
        "GET /api/v1/files/extra: served, not registered",
        "/api/v1/files/extra: no @responds",
    ]


async def _caller_outcome(response: Any) -> str:
    body = await response.get_json()
    status = response.status_code
    if 200 <= status < 300:
        return "ok"
    if (status, body.get("code")) in {(403, "FORBIDDEN"), (404, PROJECTS.not_found)} or status == 409:
        return str(status)
    return f"{status} {body.get('code')}"


@pytest.mark.parametrize("who", ACTORS)
@pytest.mark.parametrize("group", CALLER_ROUTES, ids=lambda g: g.name)
async def test_caller_routes_role_matrix(
    group: CallerRoutes, who: Actor, client: Any, kijko: Kijko, alice: Account
) -> None:
    creator, actor = await actors(kijko, alice, who)
    got: dict[tuple[str, str], str] = {}
    expected: dict[tuple[str, str], str] = {}
    for route in group.routes:
        for kind, outcomes in route.expected.items():
            project = None if kind == "-" else await PROJECTS.create(client, creator, kind)
            before = await PROJECTS.snapshot(client, creator) if project else None
            result = await _caller_outcome(await route.call(client, actor, project["id"] if project else None))
            got[(route.name, kind)] = result
            expected[(route.name, kind)] = outcomes[who]
            if project and result != "ok":
                assert await PROJECTS.snapshot(client, creator) == before, (route.name, kind)
    assert got == expected


@pytest.mark.parametrize("group", CALLER_ROUTES, ids=lambda g: g.name)
async def test_caller_routes_refuse_another_organizations_projects(
    group: CallerRoutes, client: Any, alice: Account, bob: Account
) -> None:
    for route in group.routes:
        for kind in (k for k in route.expected if k != "-"):
            theirs = await PROJECTS.create(client, alice, kind)
            before = await client.get(f"{PROJECTS.prefix}/{theirs['id']}/full", headers=alice.headers)
            response = await route.call(client, bob, theirs["id"])
            body = await response.get_json()
            assert (response.status_code, body.get("code")) == (404, PROJECTS.not_found), (route.name, kind, body)
            assert set(body) == {"detail", "code", "message"}
            after = await client.get(f"{PROJECTS.prefix}/{theirs['id']}/full", headers=alice.headers)
            assert await after.get_json() == await before.get_json()
