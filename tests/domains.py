"""The registry the shared suites run from (decision 0023): one entry per domain.

A domain registers its routes, how to create a resource of each kind, its 404 code, and for
each action what every caller may do. ``tests/test_domain_suites.py`` then runs, for every
registered domain:

- the **isolation suite**: another organization's ids on every route of the domain that takes
  one answer the domain's 404 and change nothing; bodies naming another organization's ids
  (``organizationId``, ``userId``, ``id``) change nothing either;
- the **role matrix**: each caller (owner, admin, member, viewer, and the member who created the
  resource) × each action × each kind of resource → allowed, 403 or the domain's 404;
- a **coverage check**: every route the app serves under the domain's prefix is registered
  here, so a new route cannot skip either suite.

The expectations are written here from ARCHITECTURE §3, independently of
``kijko_core.permissions``: the suites check the implementation against the specification.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.automation import skill_body
from tests.conftest import Account
from tests.memberships import add_member

#: Who calls: the organization's roles, and the member who created the resource.
Actor = Literal["owner", "admin", "member", "viewer", "creator"]
ACTORS: tuple[Actor, ...] = ("owner", "admin", "member", "viewer", "creator")
#: What a call may come to: done, 403 FORBIDDEN, or the domain's 404 (or, for a caller
#: route, 409: a provider the suites' app does not configure; 503 BILLING_DISABLED: Stripe,
#: which the suites' app does not configure either).
Outcome = Literal["ok", "403", "404", "409", "503 BILLING_DISABLED"]
Expected = dict[str, dict[Actor, Outcome]]  # resource kind → actor → outcome

Client = Any
NewBody = Callable[[str], dict[str, Any]]
Listed = Callable[[Client, Account], Awaitable[set[str]]]
Snapshot = Callable[[Client, Account], Awaitable[Any]]
#: Makes a sub-resource of a resource (as the account that created it) and returns its id,
#: for routes that address one inside the resource (``/projects/<project_id>/members/<member_id>``).
Fill = Callable[[Client, Account, dict[str, Any]], Awaitable[str]]


def everyone(outcome: Outcome = "ok") -> dict[Actor, Outcome]:
    return dict.fromkeys(ACTORS, outcome)


def only(*actors: Actor, otherwise: Outcome) -> dict[Actor, Outcome]:
    return {actor: ("ok" if actor in actors else otherwise) for actor in ACTORS}


@dataclass(frozen=True)
class Action:
    """One thing a caller does to one resource: a route (as the app's rule) and a body valid
    enough that a 404 or 403 cannot hide behind a 422. ``method="LIST"`` is the domain's list:
    "ok" when the resource is listed, "404" when it is left out."""

    name: str
    method: str
    rule: str
    expected: Expected
    body: dict[str, Any] | None = None
    #: A query string valid enough that a 422 cannot hide the outcome (``?q=`` of search).
    query: dict[str, str] | None = None
    #: Brings the resource (as its creator) into the state the action needs to succeed for
    #: whoever may do it (an ingestion to cancel), before the role matrix calls it.
    prepare: Callable[[Client, Account, dict[str, Any]], Awaitable[None]] | None = None


@dataclass(frozen=True)
class Domain:
    name: str
    prefix: str
    id_param: str
    not_found: str
    kinds: tuple[str, ...]
    new_body: NewBody  # kind → a valid create body for a new resource of that kind
    listed: Listed  # (client, account) → ids the account's lists show
    snapshot: Snapshot  # (client, account) → everything the account can see, to compare
    actions: tuple[Action, ...]
    #: The create route and who may use it (resource-less: "ok" or "403"); None for a domain
    #: whose resources are not created over its own API (``make`` makes them instead).
    create_rule: tuple[str, str] | None
    may_create: dict[Actor, Outcome]
    #: Routes without the id, registered with why they need no suite of their own here.
    collection_routes: dict[tuple[str, str], str] = field(default_factory=dict)
    #: Keys of a resource's JSON naming its organization, creator and id.
    owner_keys: tuple[str, str, str] = ("organizationId", "userId", "id")
    #: The resource in the create route's answer.
    unwrap: Callable[[Any], dict[str, Any]] = lambda body: body
    #: How to fill the other ids of a route (parameter → a fresh sub-resource's id).
    fill: dict[str, Fill] = field(default_factory=dict)
    #: Makes a resource of a kind in the account's organization when there is no create route.
    make: Callable[[Client, Account, str], Awaitable[dict[str, Any]]] | None = None

    def path(self, rule: str, resource_id: str) -> str:
        return rule.replace(f"<{self.id_param}>", resource_id)

    async def resolve(self, client: Client, creator: Account, rule: str, resource: dict[str, Any]) -> str:
        """``rule`` for ``resource``, its other ids filled with fresh sub-resources made by
        ``creator`` (who made the resource)."""
        path = self.path(rule, resource["id"])
        for param, make in self.fill.items():
            if f"<{param}>" in path:
                path = path.replace(f"<{param}>", await make(client, creator, resource))
        return path

    async def create(self, client: Client, account: Account, kind: str) -> dict[str, Any]:
        if self.make is not None:
            return await self.make(client, account, kind)
        assert self.create_rule is not None
        method, rule = self.create_rule
        response = await client.open(rule, method=method, json=self.new_body(kind), headers=account.headers)
        assert response.status_code == 201, await response.get_data(as_text=True)
        return self.unwrap(await response.get_json())


_PAGE = {"pageSize": 100}


def listed_ids(api: str, key: str, query: dict[str, int] = _PAGE) -> Listed:
    """``listed`` for a paged list: the ids under ``key`` of its first page (all of them)."""

    async def listed(client: Client, account: Account) -> set[str]:
        response = await client.get(api, query_string=query, headers=account.headers)
        body = await response.get_json()
        assert response.status_code == 200 and body["total"] <= 100, body
        return {item["id"] for item in body[key]}

    return listed


async def list_and_stats(client: Client, account: Account, api: str, query: dict[str, int] = _PAGE) -> dict[str, Any]:
    """A snapshot's list page and ``{api}/stats``."""
    listed = await client.get(api, query_string=query, headers=account.headers)
    stats = await client.get(f"{api}/stats", headers=account.headers)
    return {"list": await listed.get_json(), "stats": await stats.get_json()}


# --- projects ------------------------------------------------------------------------------------

PROJECTS_API = "/api/v1/projects"
_PROJECT = f"{PROJECTS_API}/<project_id>"


def _new_project(kind: str) -> dict[str, Any]:
    return {"name": f"P {kind} {uuid.uuid4().hex[:10]}", "type": "repository", "privacy": kind}


async def _pending_member(client: Client, creator: Account, project: dict[str, Any]) -> str:
    """A pending member (an invitation) of ``project``, added by its creator."""
    response = await client.post(
        f"{PROJECTS_API}/{project['id']}/members",
        json={"email": f"invitee-{uuid.uuid4().hex[:10]}@example.com", "role": "developer"},
        headers=creator.headers,
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    member_id: str = (await response.get_json())["id"]
    return member_id


_MEMBERS = f"{_PROJECT}/members"
_MEMBER = f"{_MEMBERS}/<member_id>"
_INVITATIONS = f"{_PROJECT}/invitations"
_INVITATION = f"{_INVITATIONS}/<member_id>"


async def _repository(client: Client, creator: Account, project: dict[str, Any]) -> str:
    """A repository of ``project``, added by its creator."""
    response = await client.post(
        f"{PROJECTS_API}/{project['id']}/repositories",
        json={
            "provider": "github",
            "repositoryUrl": f"https://github.com/acme/r-{uuid.uuid4().hex[:10]}",
            "branch": "main",
        },
        headers=creator.headers,
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    repository_id: str = (await response.get_json())["id"]
    return repository_id


_REPOSITORIES = f"{_PROJECT}/repositories"


async def _with_text(client: Client, creator: Account, project: dict[str, Any]) -> None:
    """Give the project a source (a manual text), so it can be ingested."""
    response = await client.patch(
        f"{PROJECTS_API}/{project['id']}",
        json={"customSettings": {"manualContent": "A text to ingest."}},
        headers=creator.headers,
    )
    assert response.status_code == 200, await response.get_data(as_text=True)


async def _ingesting(client: Client, creator: Account, project: dict[str, Any]) -> None:
    """Start the project's ingestion (it stays queued: the suites run no worker)."""
    await _with_text(client, creator, project)
    response = await client.post(f"{PROJECTS_API}/{project['id']}/ingest", json={}, headers=creator.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)


async def _ingesting_externally(client: Client, creator: Account, project: dict[str, Any]) -> None:
    """Start a run for an external runner (the creator is the project's admin)."""
    await _with_text(client, creator, project)
    response = await client.post(
        f"{PROJECTS_API}/{project['id']}/ingest", json={"runner": "external"}, headers=creator.headers
    )
    assert response.status_code == 200, await response.get_data(as_text=True)


_ZERO_METRICS = dict.fromkeys(
    ("filesProcessed", "totalFiles", "tokensProcessed", "bytesProcessed", "chunksCreated", "errorsEncountered"), 0
)

_READ: Expected = {
    "shared": everyone(),
    "private": only("owner", "admin", "creator", otherwise="404"),
}
_WRITE: Expected = {
    "shared": only("owner", "admin", "creator", otherwise="403"),
    "private": only("owner", "admin", "creator", otherwise="404"),
}

PROJECTS = Domain(
    name="projects",
    prefix=PROJECTS_API,
    id_param="project_id",
    not_found="PROJECT_NOT_FOUND",
    kinds=("shared", "private"),
    new_body=_new_project,
    unwrap=lambda body: body["project"],
    listed=listed_ids(PROJECTS_API, "data"),
    snapshot=lambda client, account: list_and_stats(client, account, PROJECTS_API),
    actions=(
        Action("get", "GET", _PROJECT, _READ),
        Action("get full", "GET", f"{_PROJECT}/full", _READ),
        Action("list", "LIST", PROJECTS_API, _READ),
        Action("update", "PUT", _PROJECT, _WRITE, {"description": "changed by PUT", "privacy": "shared"}),
        Action("patch", "PATCH", _PROJECT, _WRITE, {"description": "changed by PATCH"}),
        Action("delete", "DELETE", _PROJECT, _WRITE),
        # Members and invitations (ARCHITECTURE §3: reading the project shows its members;
        # managing them is the project admin's — the creator — and the org owners'/admins').
        Action("list members", "GET", _MEMBERS, _READ),
        Action("pending invitations", "GET", f"{_INVITATIONS}/pending", _READ),
        Action("add member", "POST", _MEMBERS, _WRITE, {"email": "new-member@example.com", "role": "viewer"}),
        Action("update member", "PUT", _MEMBER, _WRITE, {"role": "viewer"}),
        Action("patch member", "PATCH", _MEMBER, _WRITE, {"notifyOnError": False}),
        Action("remove member", "DELETE", _MEMBER, _WRITE),
        Action(
            "invite",
            "POST",
            _INVITATIONS,
            _WRITE,
            {"invitations": [{"email": "bulk@example.com", "role": "auditor", "notificationLevel": "daily"}]},
        ),
        Action("resend invitation", "POST", f"{_INVITATION}/resend", _WRITE),
        Action("cancel invitation", "DELETE", _INVITATION, _WRITE),
        # Repositories: reading them is reading the project; adding and removing, editing it.
        Action("list repositories", "GET", _REPOSITORIES, _READ),
        Action(
            "add repository",
            "POST",
            _REPOSITORIES,
            _WRITE,
            {"provider": "gitlab", "repositoryUrl": "https://gitlab.com/acme/suite", "branch": "main"},
        ),
        Action("remove repository", "DELETE", f"{_REPOSITORIES}/<repo_id>", _WRITE),
        # Search and the indexed files: reading them is reading the project (docs/search.md).
        Action("search", "GET", f"{_PROJECT}/search", _READ, query={"q": "parse_config"}),
        Action("list indexed files", "GET", f"{_PROJECT}/files", _READ),
        # Ingestion (docs/ingestion.md): following it is reading the project; starting and
        # cancelling it, "run ingestion"; the external runner's routes, "report ingestion
        # progress" (project admins, org owners and admins) — the creator is the project admin.
        Action("ingest", "POST", f"{_PROJECT}/ingest", _WRITE, {}, prepare=_with_text),
        Action("progress", "GET", f"{_PROJECT}/progress", _READ),
        Action("cancel ingestion", "POST", f"{_PROJECT}/cancel-ingestion", _WRITE, prepare=_ingesting),
        Action("snapshot progress", "POST", f"{_PROJECT}/progress/snapshot", _WRITE, {"metrics": _ZERO_METRICS}),
        Action(
            "complete ingestion",
            "POST",
            f"{_PROJECT}/progress/complete",
            _WRITE,
            {"metrics": _ZERO_METRICS, "totalDurationSeconds": 1.5},
            prepare=_ingesting_externally,
        ),
    ),
    fill={"member_id": _pending_member, "repo_id": _repository},
    create_rule=("POST", PROJECTS_API),
    may_create=only("owner", "admin", "member", "creator", otherwise="403"),
    collection_routes={
        ("GET", PROJECTS_API): "the list: the 'list' action and the isolation snapshot",
        ("POST", PROJECTS_API): "create: may_create, and foreign ids in its body",
        ("GET", f"{PROJECTS_API}/stats"): "aggregates over readable projects: the isolation snapshot",
        ("POST", f"{PROJECTS_API}/validate-name"): "names only: test_projects.py (decision 0022)",
        ("POST", f"{PROJECTS_API}/validate-repository"): "a URL only, no project: test_repositories.py",
        # Not an update of the project (its answer is the run, not the project): the isolation
        # suite covers it by its id; its role matrix is in test_ingestion_routes.py.
        ("PUT", f"{_PROJECT}/progress"): "the external runner's progress: test_ingestion_routes.py",
    },
)


# --- routes without a resource id in their path ----------------------------------------------

#: What such a route is asked with: (client, caller, a project id or None) → the response.
Call = Callable[[Client, Account, "str | None"], Awaitable[Any]]


@dataclass(frozen=True)
class CallerRoute:
    """A route that addresses no resource of the organization by an id in its path: it acts on
    the caller's own things (git-provider connections) or names a project in its body or form
    (uploads). ``expected`` is the role matrix: without a project (``"-"``), or per kind of
    project (``PROJECTS.kinds``) when ``call`` takes the project's id; another organization's
    project id is always the projects' 404 (the isolation suite)."""

    name: str
    method: str
    rule: str
    call: Call
    expected: Expected


@dataclass(frozen=True)
class CallerRoutes:
    """The routes under ``prefix``; the coverage check fails on a served one not listed here."""

    name: str
    prefix: str
    routes: tuple[CallerRoute, ...]


def _json(method: str, path: str, body: dict[str, Any] | None = None) -> Call:
    async def call(client: Client, account: Account, project_id: str | None) -> Any:
        return await client.open(path, method=method, headers=account.headers, **({"json": body} if body else {}))

    return call


async def _upload(client: Client, account: Account, project_id: str | None) -> Any:
    from io import BytesIO

    from quart.datastructures import FileStorage

    class Parts(list[tuple[str, FileStorage]]):
        def items(self) -> Parts:  # Quart's test client encodes files.items(): one part each
            return self

    files = Parts([("files", FileStorage(BytesIO(b"hello"), filename="hello.txt", content_type="text/plain"))])
    form = {"projectId": project_id} if project_id else None
    return await client.post("/api/v1/files/upload", files=files, form=form, headers=account.headers)


_ANYONE: Expected = {"-": everyone()}
SOURCES = "/api/v1"
CALLER_ROUTES: tuple[CallerRoutes, ...] = (
    CallerRoutes(
        "git-provider connections",
        f"{SOURCES}/oauth",
        (
            # Personal: every member connects their own account; nobody sees another's. The
            # suites' app has no provider configured: connect and callback answer 409 to all
            # (tests/test_sources.py runs them against stand-in providers).
            CallerRoute(
                "list", "GET", f"{SOURCES}/oauth/connections", _json("GET", f"{SOURCES}/oauth/connections"), _ANYONE
            ),
            CallerRoute(
                "connect",
                "POST",
                f"{SOURCES}/oauth/connect/<provider>",
                _json("POST", f"{SOURCES}/oauth/connect/github"),
                {"-": everyone("409")},
            ),
            CallerRoute(
                "callback",
                "POST",
                f"{SOURCES}/oauth/callback",
                _json("POST", f"{SOURCES}/oauth/callback", {"provider": "github", "code": "c", "state": "s"}),
                {"-": everyone("409")},
            ),
            CallerRoute(
                "disconnect",
                "DELETE",
                f"{SOURCES}/oauth/disconnect/<provider>",
                _json("DELETE", f"{SOURCES}/oauth/disconnect/github"),
                _ANYONE,
            ),
        ),
    ),
    CallerRoutes(
        "repositories at the providers",
        f"{SOURCES}/repositories",
        (
            CallerRoute(
                "validate-full",
                "POST",
                f"{SOURCES}/repositories/validate-full",
                _json("POST", f"{SOURCES}/repositories/validate-full", {"url": "https://example.com/a/b"}),
                _ANYONE,
            ),
            CallerRoute(
                "batch",
                "GET",
                f"{SOURCES}/repositories/batch",
                _json("GET", f"{SOURCES}/repositories/batch?provider=github"),
                {"-": everyone("409")},
            ),
        ),
    ),
    CallerRoutes(
        "uploads",
        f"{SOURCES}/files",
        (
            CallerRoute(
                "upload",
                "POST",
                f"{SOURCES}/files/upload",
                _upload,
                # Without a project: whoever may create; to a project: whoever may edit it.
                {"-": only("owner", "admin", "member", "creator", otherwise="403"), **_WRITE},
            ),
        ),
    ),
    CallerRoutes(
        "users",
        f"{SOURCES}/users",
        (
            # The caller's own recent repositories (another user's id is a 404:
            # test_repositories.py) and the members of the caller's organization
            # (test_organizations.py keeps other organizations' users out).
            CallerRoute(
                "recent repositories",
                "GET",
                f"{SOURCES}/users/<user_id>/recent-repos",
                _json("GET", f"{SOURCES}/users/me/recent-repos"),
                _ANYONE,
            ),
            CallerRoute(
                "search", "GET", f"{SOURCES}/users/search", _json("GET", f"{SOURCES}/users/search?q=a"), _ANYONE
            ),
        ),
    ),
)

# Analytics (issue 8 §7): the summary of the caller's organization (owners and admins; the
# other organizations' and anonymous events never count: tests/test_analytics.py), and the
# public intake, which anyone may post to (attributed to the caller's organization).
_ANALYTICS = "/api/v1/analytics"
CALLER_ROUTES += (
    CallerRoutes(
        "analytics",
        _ANALYTICS,
        (
            CallerRoute(
                "summary",
                "GET",
                f"{_ANALYTICS}/summary",
                _json("GET", f"{_ANALYTICS}/summary?period=7d"),
                {"-": only("owner", "admin", otherwise="403")},
            ),
            CallerRoute(
                "intake", "POST", f"{_ANALYTICS}/events", _json("POST", f"{_ANALYTICS}/events", {"events": []}), _ANYONE
            ),
        ),
    ),
)

# Billing details (issue 9 §4, ARCHITECTURE §3): the organization's, one per organization, so no
# id in the path. Owners change them and validate BTW/VAT numbers, owners and admins read them;
# members (the creator is one) and viewers get 403. Another organization's details are never
# seen or changed: tests/test_billing_details.py. The suites' app asks no VIES: the number's
# checksum is wrong, so it is answered offline.
_BILLING = "/api/v1/billing"
_BILLING_DETAILS = f"{_BILLING}/details"
_SUBSCRIPTION = f"{_BILLING}/subscription"


def _billing_off(*allowed: Actor) -> dict[Actor, Outcome]:
    """Stripe routes in the suites' app (no Stripe keys): 503 BILLING_DISABLED for who may,
    403 for the others."""
    return {actor: ("503 BILLING_DISABLED" if actor in allowed else "403") for actor in ACTORS}


# Billing without Stripe (issue 9; docs/billing.md): the plans are public; the organization's
# usage is viewed by owners and admins (ARCHITECTURE §3). Neither takes an id: the caller's
# organization is the token's (another organization's counters never show:
# tests/test_quotas.py).
CALLER_ROUTES += (
    CallerRoutes(
        "billing",
        _BILLING,
        (
            CallerRoute(
                "get",
                "GET",
                _BILLING_DETAILS,
                _json("GET", _BILLING_DETAILS),
                {"-": only("owner", "admin", otherwise="403")},
            ),
            CallerRoute(
                "save",
                "PATCH",
                _BILLING_DETAILS,
                _json("PATCH", _BILLING_DETAILS, {"companyName": "Suite B.V."}),
                {"-": only("owner", otherwise="403")},
            ),
            CallerRoute(
                "validate btw",
                "POST",
                f"{_BILLING_DETAILS}/validate-btw",
                _json("POST", f"{_BILLING_DETAILS}/validate-btw", {"btwNumber": "NL000099998B58"}),
                {"-": only("owner", otherwise="403")},
            ),
            CallerRoute("plans", "GET", f"{_BILLING}/plans", _json("GET", f"{_BILLING}/plans"), _ANYONE),
            CallerRoute(
                "usage",
                "GET",
                f"{_BILLING}/usage",
                _json("GET", f"{_BILLING}/usage"),
                {"-": only("owner", "admin", otherwise="403")},
            ),
            # Payment methods, invoices and the portal (docs/billing.md): Stripe's, so the suites'
            # app (no Stripe) answers those allowed 503 BILLING_DISABLED and the others 403.
            # Roles with Stripe on, and other organizations' ids (the same 404):
            # tests/test_billing_payments.py.
            CallerRoute(
                "payment methods",
                "GET",
                f"{_BILLING}/payment-methods",
                _json("GET", f"{_BILLING}/payment-methods"),
                {"-": _billing_off("owner", "admin")},
            ),
            CallerRoute(
                "setup payment method",
                "POST",
                f"{_BILLING}/payment-methods/setup",
                _json("POST", f"{_BILLING}/payment-methods/setup", {"type": "card"}),
                {"-": _billing_off("owner")},
            ),
            CallerRoute(
                "default payment method",
                "POST",
                f"{_BILLING}/payment-methods/<pm_id>/default",
                _json("POST", f"{_BILLING}/payment-methods/pm_suite/default"),
                {"-": _billing_off("owner")},
            ),
            CallerRoute(
                "delete payment method",
                "DELETE",
                f"{_BILLING}/payment-methods/<pm_id>",
                _json("DELETE", f"{_BILLING}/payment-methods/pm_suite"),
                {"-": _billing_off("owner")},
            ),
            CallerRoute(
                "invoices",
                "GET",
                f"{_BILLING}/invoices",
                _json("GET", f"{_BILLING}/invoices"),
                {"-": _billing_off("owner", "admin")},
            ),
            CallerRoute(
                "portal", "GET", f"{_BILLING}/portal", _json("GET", f"{_BILLING}/portal"), {"-": _billing_off("owner")}
            ),
            # The subscription (issue 9 §2): owners manage it, admins view it. The suites' app has
            # no Stripe, so whoever passes the role check gets 503 BILLING_DISABLED; with Stripe,
            # roles and isolation (another organization's Checkout session is a 404, its
            # subscription never shows): tests/test_billing_subscription.py.
            CallerRoute(
                "subscription",
                "GET",
                _SUBSCRIPTION,
                _json("GET", _SUBSCRIPTION),
                {"-": _billing_off("owner", "admin")},
            ),
            CallerRoute(
                "change plan",
                "PATCH",
                _SUBSCRIPTION,
                _json("PATCH", _SUBSCRIPTION, {"planId": "teams", "interval": "monthly"}),
                {"-": _billing_off("owner")},
            ),
            CallerRoute(
                "cancel",
                "POST",
                f"{_SUBSCRIPTION}/cancel",
                _json("POST", f"{_SUBSCRIPTION}/cancel"),
                {"-": _billing_off("owner")},
            ),
            CallerRoute(
                "resume",
                "POST",
                f"{_SUBSCRIPTION}/resume",
                _json("POST", f"{_SUBSCRIPTION}/resume"),
                {"-": _billing_off("owner")},
            ),
            CallerRoute(
                "checkout",
                "POST",
                f"{_BILLING}/checkout",
                _json("POST", f"{_BILLING}/checkout", {"planId": "pro", "interval": "monthly"}),
                {"-": _billing_off("owner")},
            ),
            CallerRoute(
                "checkout sync",
                "POST",
                f"{_BILLING}/checkout/<session_id>/sync",
                _json("POST", f"{_BILLING}/checkout/cs_test_suite/sync"),
                {"-": _billing_off("owner")},
            ),
        ),
    ),
)

#: Routes under /api/v1 that neither a domain nor a caller group covers, and why: a route
#: anywhere else must be registered in one of them (test_domain_suites.py).
OUTSIDE_SUITES: dict[str, str] = {
    "/api/v1": "the API's index: public, test_shell.py",
    "/api/v1/auth/": "the caller's own credentials and session: test_auth_endpoints.py, test_keycloak*.py",
    "/api/v1/invitations/": "addressed by a one-time token, not an id: test_members.py",
    # A skill's history by a query parameter; isolation (another organization's skill → the
    # skills' 404) and roles in test_execution_history.py.
    "/api/v1/skill-executions": "a skill's history by ?skillId=: test_execution_history.py",
    "/api/v1/webhooks/": "public, signed deliveries addressed by a reflex id (test_reflex_webhooks.py) or Stripe's"
    " events (test_billing_webhooks.py)",
    "/api/v1/plugins": "the installed plugin types, the same for every organization: test_plugins.py",
}

# --- organization members -------------------------------------------------------------------------

ORGANIZATIONS_API = "/api/v1/organizations"
_CURRENT_ORG = f"{ORGANIZATIONS_API}/current"
_ORG_MEMBERS = f"{_CURRENT_ORG}/members"
_ORG_MEMBER = f"{_ORG_MEMBERS}/<user_id>"


async def _make_member(client: Client, account: Account, kind: str) -> dict[str, Any]:
    """A user with role ``kind`` in the account's organization (members join by invitation,
    which is not this domain's route)."""
    member = await add_member(client.app.kijko, account.org_id, kind)  # type: ignore[arg-type]
    return {"id": member.user_id}


async def _listed_members(client: Client, account: Account) -> set[str]:
    """The members the account's list shows, the account itself left out (it is always there)."""
    response = await client.get(_ORG_MEMBERS, headers=account.headers)
    body = await response.get_json()
    assert response.status_code == 200, body
    return {member["id"] for member in body if member["id"] != account.user_id}


async def _members_snapshot(client: Client, account: Account) -> dict[str, Any]:
    members = await client.get(_ORG_MEMBERS, headers=account.headers)
    current = await client.get(_CURRENT_ORG, headers=account.headers)
    return {"members": await members.get_json(), "current": await current.get_json()}


# Owners and admins manage members; only owners change an owner (ARCHITECTURE §3 "members,
# invitations"; decision 0070). Readable by every member, so the others get 403.
_MANAGE_MEMBER: Expected = {
    "owner": only("owner", otherwise="403"),
    "admin": only("owner", "admin", otherwise="403"),
    "member": only("owner", "admin", otherwise="403"),
    "viewer": only("owner", "admin", otherwise="403"),
}

ORGANIZATION_MEMBERS = Domain(
    name="organization members",
    prefix=ORGANIZATIONS_API,
    id_param="user_id",
    not_found="MEMBER_NOT_FOUND",
    kinds=("owner", "admin", "member", "viewer"),
    new_body=lambda kind: {},
    make=_make_member,
    listed=_listed_members,
    snapshot=_members_snapshot,
    actions=(
        Action("list", "LIST", _ORG_MEMBERS, {kind: everyone() for kind in ("owner", "admin", "member", "viewer")}),
        Action("change role", "PATCH", _ORG_MEMBER, _MANAGE_MEMBER, {"role": "viewer"}),
        Action("remove", "DELETE", _ORG_MEMBER, _MANAGE_MEMBER),
    ),
    create_rule=None,
    may_create={},
    collection_routes={
        ("GET", ORGANIZATIONS_API): "the caller's own organizations: test_organizations.py",
        ("GET", _CURRENT_ORG): "the token's organization: the isolation snapshot, test_organizations.py",
        ("PATCH", _CURRENT_ORG): "owners only, own organization: test_organizations.py",
        ("GET", _ORG_MEMBERS): "the 'list' action and the isolation snapshot",
        # Addressed by provider name, not an id; roles and isolation between organizations:
        ("GET", f"{_CURRENT_ORG}/llm-keys"): "owners and admins: test_llm_keys.py",
        ("GET", f"{_CURRENT_ORG}/llm-keys/<provider>"): "owners and admins: test_llm_keys.py",
        ("PUT", f"{_CURRENT_ORG}/llm-keys/<provider>"): "owners and admins: test_llm_keys.py",
        ("PATCH", f"{_CURRENT_ORG}/llm-keys/<provider>"): "owners and admins: test_llm_keys.py",
        ("DELETE", f"{_CURRENT_ORG}/llm-keys/<provider>"): "owners and admins: test_llm_keys.py",
    },
)
# --- skills -----------------------------------------------------------------------------------------

SKILLS_API = "/api/v1/skills"
_SKILL = f"{SKILLS_API}/<skill_id>"


async def _skill_snapshot(client: Client, account: Account) -> dict[str, Any]:
    listed = await client.get(SKILLS_API, query_string={"pageSize": 100}, headers=account.headers)
    return {"list": await listed.get_json()}


# Skills are organization data (ARCHITECTURE §3, docs/skills.md): every member reads them;
# the creator, owners and admins change them; a copy is a create (viewers cannot).
_SKILL_READ: Expected = {"skill": everyone()}
_SKILL_WRITE: Expected = {"skill": only("owner", "admin", "creator", otherwise="403")}
_SKILL_COPY: Expected = {"skill": only("owner", "admin", "member", "creator", otherwise="403")}

SKILLS = Domain(
    name="skills",
    prefix=SKILLS_API,
    id_param="skill_id",
    not_found="SKILL_NOT_FOUND",
    kinds=("skill",),
    new_body=lambda kind: skill_body(),
    listed=listed_ids(SKILLS_API, "skills"),
    snapshot=_skill_snapshot,
    actions=(
        Action("get", "GET", _SKILL, _SKILL_READ),
        Action("get full", "GET", f"{_SKILL}/full", _SKILL_READ),
        Action("list", "LIST", SKILLS_API, _SKILL_READ),
        Action("export", "GET", f"{_SKILL}/export", _SKILL_READ),
        Action("update", "PUT", _SKILL, _SKILL_WRITE, {"description": "changed by PUT", "isActive": False}),
        Action("patch", "PATCH", _SKILL, _SKILL_WRITE, {"description": "changed by PATCH"}),
        Action("delete", "DELETE", _SKILL, _SKILL_WRITE),
        Action("duplicate", "POST", f"{_SKILL}/duplicate", _SKILL_COPY, {}),
        # The skill's history and statistics (docs/execution-history.md): reading the skill.
        Action("executions", "GET", f"{_SKILL}/executions", _SKILL_READ),
        Action("stats", "GET", f"{_SKILL}/stats", _SKILL_READ, query={"period": "7d"}),
        # Running a skill is a create (docs/executions.md): every role but viewers, on any
        # skill of the organization. The suites run no worker: execute answers pending, and
        # test runs inline (the llm type without a key answers failed, still a 200).
        Action("execute", "POST", f"{_SKILL}/execute", _SKILL_COPY, {"input": {"topic": "tides"}}),
        Action("test", "POST", f"{_SKILL}/test", _SKILL_COPY, {"input": {"topic": "tides"}}),
    ),
    create_rule=("POST", SKILLS_API),
    may_create=only("owner", "admin", "member", "creator", otherwise="403"),
    collection_routes={
        ("GET", SKILLS_API): "the list: the 'list' action and the isolation snapshot",
        ("POST", SKILLS_API): "create: may_create, and foreign ids in its body",
        ("POST", f"{SKILLS_API}/import"): "a create from an export: test_skills.py (roles, validation)",
        # Ids in the body: other organizations' are skipped (test_skills.py checks their rows
        # in SQL), others' skills only by owners and admins.
        ("POST", f"{SKILLS_API}/bulk/activate"): "ids in the body: test_skills.py",
        ("POST", f"{SKILLS_API}/bulk/deactivate"): "ids in the body: test_skills.py",
        ("DELETE", f"{SKILLS_API}/bulk"): "ids in the body: test_skills.py",
        ("POST", f"{SKILLS_API}/test"): "a draft without an id: test_runs_routes.py (roles, validation)",
        ("GET", f"{SKILLS_API}/stats"): "aggregates of the organization: test_execution_history.py",
        ("GET", f"{SKILLS_API}/stats/overview"): "aggregates of the organization: test_execution_history.py",
    },
)

# --- executions (the read side; docs/execution-history.md) ------------------------------------------

EXECUTIONS_API = "/api/v1/executions"
_EXECUTION = f"{EXECUTIONS_API}/<execution_id>"


async def _make_execution(client: Client, account: Account, kind: str) -> dict[str, Any]:
    """An execution of the account's, written in SQL (running one is the runs part's route)."""
    from tests.executions_kit import db_now, insert, make_row

    kijko = client.app.kijko
    (row,) = await insert(kijko, [make_row(account.org_id, at=await db_now(kijko), user_id=account.user_id)])
    return {"id": str(row.id)}


# Executions are organization data (decision 0111): every member reads every execution.
_EXECUTION_READ: Expected = {"execution": everyone()}
_AGGREGATE = "aggregates of the organization: the isolation snapshot, test_execution_history.py"

EXECUTIONS = Domain(
    name="executions",
    prefix=EXECUTIONS_API,
    id_param="execution_id",
    not_found="EXECUTION_NOT_FOUND",
    kinds=("execution",),
    new_body=lambda kind: {},
    make=_make_execution,
    listed=listed_ids(EXECUTIONS_API, "executions", {"limit": 100}),
    snapshot=lambda client, account: list_and_stats(client, account, EXECUTIONS_API, {"limit": 100}),
    actions=(
        Action("get", "GET", _EXECUTION, _EXECUTION_READ),
        Action("get full", "GET", f"{_EXECUTION}/full", _EXECUTION_READ),
        Action("list", "LIST", EXECUTIONS_API, _EXECUTION_READ),
    ),
    create_rule=None,
    may_create={},
    collection_routes={
        ("GET", EXECUTIONS_API): "the list: the 'list' action and the isolation snapshot",
        ("GET", f"{EXECUTIONS_API}/recent"): "the organization's newest: test_execution_history.py",
        ("GET", f"{EXECUTIONS_API}/running"): "the organization's active ones: test_execution_history.py",
        ("GET", f"{EXECUTIONS_API}/stats"): _AGGREGATE,
        ("GET", f"{EXECUTIONS_API}/cost-breakdown"): _AGGREGATE,
        ("GET", f"{EXECUTIONS_API}/performance"): _AGGREGATE,
        ("GET", f"{EXECUTIONS_API}/cost-projection"): _AGGREGATE,
        ("GET", f"{EXECUTIONS_API}/export"): "the filtered list as text: test_execution_history.py",
        ("DELETE", f"{EXECUTIONS_API}/cleanup"): "owners and admins, own organization: test_execution_history.py",
        # The runs part's routes: the isolation suite covers them by id; their roles (who may
        # cancel, retry, replay, and in which states) in test_runs_routes.py.
        ("POST", f"{_EXECUTION}/cancel"): "runs: roles and states in test_runs_routes.py",
        ("POST", f"{_EXECUTION}/retry"): "runs: roles and states in test_runs_routes.py",
        ("POST", f"{_EXECUTION}/replay"): "runs: roles and states in test_runs_routes.py",
    },
)


def automation_actions(
    rule: str, api: str, read: Expected, write: Expected, update: dict[str, Any], patch: dict[str, Any], *own: Action
) -> tuple[Action, ...]:
    """What habits and reflexes (automations) share: read, list, change, delete, turn on and
    off, reset the errors, the domain's ``own`` actions, and the history (reading it)."""
    return (
        Action("get", "GET", rule, read),
        Action("get full", "GET", f"{rule}/full", read),
        Action("list", "LIST", api, read),
        Action("update", "PUT", rule, write, update),
        Action("patch", "PATCH", rule, write, patch),
        Action("delete", "DELETE", rule, write),
        Action("activate", "POST", f"{rule}/activate", write),
        Action("deactivate", "POST", f"{rule}/deactivate", write),
        Action("reset errors", "POST", f"{rule}/reset-errors", write),
        *own,
        # Its history (docs/execution-history.md): reading the automation.
        Action("executions", "GET", f"{rule}/executions", read),
    )


# --- habits -----------------------------------------------------------------------------------------

HABITS_API = "/api/v1/habits"
_HABIT = f"{HABITS_API}/<habit_id>"


async def _make_habit(client: Client, account: Account, kind: str) -> dict[str, Any]:
    from tests.habits_kit import create_habit

    return await create_habit(client, account)


async def _habit_snapshot(client: Client, account: Account) -> dict[str, Any]:
    # The skills too: a run (run-now) counts on its skill.
    listed_and_stats = await list_and_stats(client, account, HABITS_API)
    skills = await client.get("/api/v1/skills", query_string=_PAGE, headers=account.headers)
    return {**listed_and_stats, "skills": await skills.get_json()}


# Habits are organization data (ARCHITECTURE §3, docs/habits.md): every member reads them; the
# creator, owners and admins change, run and delete them.
_HABIT_READ: Expected = {"habit": everyone()}
_HABIT_WRITE: Expected = {"habit": only("owner", "admin", "creator", otherwise="403")}

HABITS = Domain(
    name="habits",
    prefix=HABITS_API,
    id_param="habit_id",
    not_found="HABIT_NOT_FOUND",
    kinds=("habit",),
    new_body=lambda kind: {},
    make=_make_habit,
    listed=listed_ids(HABITS_API, "habits"),
    snapshot=_habit_snapshot,
    actions=automation_actions(
        _HABIT,
        HABITS_API,
        _HABIT_READ,
        _HABIT_WRITE,
        {"scheduleCron": "30 8 * * 1-5", "timezone": "UTC"},
        {"scheduleDescription": "changed by PATCH"},
        Action("run now", "POST", f"{_HABIT}/run-now", _HABIT_WRITE),
    ),
    # The Habit has no organizationId on the wire (contract §3.3): tests/test_habit_routes.py
    # sends foreign ids in create and update bodies and checks the rows.
    create_rule=None,
    may_create={},
    collection_routes={
        ("GET", HABITS_API): "the list: the 'list' action and the isolation snapshot",
        ("POST", HABITS_API): "create: roles and foreign skillId/ids in test_habit_routes.py",
        ("GET", f"{HABITS_API}/stats"): "aggregates: the isolation snapshot",
        ("POST", f"{HABITS_API}/validate-cron"): "a cron string only, no habit: test_habit_routes.py",
    },
)


# --- reflexes ---------------------------------------------------------------------------------------

REFLEXES_API = "/api/v1/reflexes"
_REFLEX = f"{REFLEXES_API}/<reflex_id>"


async def _make_reflex(client: Client, account: Account, kind: str) -> dict[str, Any]:
    """A webhook reflex on a skill of the account's (an ``echo`` skill: its test runs inline)."""
    from tests.runs_kit import insert_skill  # noqa: PLC0415 — registers the echo skill type

    skill = await insert_skill(client.app.kijko, account)
    body = {"skillId": str(skill["id"]), "triggerType": kind, "triggerConfig": {}}
    response = await client.post(REFLEXES_API, json=body, headers=account.headers)
    assert response.status_code == 201, await response.get_data(as_text=True)
    created: dict[str, Any] = await response.get_json()
    return created


# Reflexes are organization data like skills (docs/reflexes.md): every member reads them; the
# creator, owners and admins change, test them and see their secret (webhook-info).
_REFLEX_READ: Expected = {"webhook": everyone()}
_REFLEX_WRITE: Expected = {"webhook": only("owner", "admin", "creator", otherwise="403")}

REFLEXES = Domain(
    name="reflexes",
    prefix=REFLEXES_API,
    id_param="reflex_id",
    not_found="REFLEX_NOT_FOUND",
    kinds=("webhook",),
    new_body=lambda kind: {},
    make=_make_reflex,
    listed=listed_ids(REFLEXES_API, "reflexes"),
    snapshot=lambda client, account: list_and_stats(client, account, REFLEXES_API),
    actions=automation_actions(
        _REFLEX,
        REFLEXES_API,
        _REFLEX_READ,
        _REFLEX_WRITE,
        {"conditions": {"matchAll": False}, "isActive": False},
        {"triggerConfig": {"method": "POST"}},
        Action("test", "POST", f"{_REFLEX}/test", _REFLEX_WRITE, {"payload": {"name": "Ada"}}),
        Action("regenerate secret", "POST", f"{_REFLEX}/regenerate-secret", _REFLEX_WRITE),
        Action("webhook info", "GET", f"{_REFLEX}/webhook-info", _REFLEX_WRITE),
    ),
    create_rule=None,
    may_create={},
    collection_routes={
        ("GET", REFLEXES_API): "the list: the 'list' action and the isolation snapshot",
        ("POST", REFLEXES_API): "create, with a skill of the organization: test_reflexes.py (roles, foreign ids)",
        ("GET", f"{REFLEXES_API}/stats"): "aggregates over the organization's reflexes: the isolation snapshot",
    },
)


DOMAINS: tuple[Domain, ...] = (PROJECTS, ORGANIZATION_MEMBERS, SKILLS, EXECUTIONS, HABITS, REFLEXES)
