"""Who may do what (ARCHITECTURE §3), as data, and the one function services ask.

- :data:`ORG_ROLES` is the organization role × grant table; :data:`PROJECT_ROLES` the project
  role × action table, read from the caller's project membership (decision 0058).
- :func:`authorize` is what a service calls: the caller cannot read the resource → the
  domain's 404 (exactly like a missing one); can read but not act → 403 ``FORBIDDEN``.
- Each domain has a :class:`Policy`: its 404, which rows the caller may read (in Python, for
  a row in hand) and the same rule as one SQL condition its repository puts in every read.

``docs/permissions.md`` is generated from this module (``python -m kijko_core.permissions``
rewrites it; a test fails when the file and the tables disagree).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID, uuid4

from kijko_core.auth.principal import OrgRole, Principal
from kijko_core.db.sql import Fragment
from kijko_core.errors import Forbidden, NotFound
from kijko_core.habits.errors import HabitNotFound
from kijko_core.organizations.models import MemberNotFound
from kijko_core.projects.models import ProjectNotFound
from kijko_core.reflexes.errors import ReflexNotFound
from kijko_core.skills.errors import SkillNotFound


class Grant(StrEnum):
    """The columns of the organization table of ARCHITECTURE §3."""

    READ = "read org data"
    CREATE_EDIT_OWN = "create / edit own"
    EDIT_OTHERS = "edit others', delete"
    MEMBERS = "members, invitations"
    BILLING_VIEW = "billing: view"
    BILLING_MANAGE = "billing: manage"
    ORG_SETTINGS = "org settings, delete org"


_ALL = frozenset(Grant)

ORG_ROLES: dict[OrgRole, frozenset[Grant]] = {
    OrgRole.OWNER: _ALL,
    OrgRole.ADMIN: _ALL - {Grant.BILLING_MANAGE, Grant.ORG_SETTINGS},
    OrgRole.MEMBER: frozenset({Grant.READ, Grant.CREATE_EDIT_OWN}),
    OrgRole.VIEWER: frozenset({Grant.READ}),
}


class Action(StrEnum):
    """What a service asks about. Resource actions depend on who owns the resource."""

    READ = "read"
    CREATE = "create"
    EDIT = "edit"
    DELETE = "delete"
    MANAGE_MEMBERS = "manage members"
    INGEST = "run ingestion"
    #: The internal progress routes an external ingestion runner calls (project admins).
    REPORT_PROGRESS = "report ingestion progress"
    CHANGE_SETTINGS = "change settings"
    VIEW_BILLING = "view billing"
    MANAGE_BILLING = "manage billing"
    MANAGE_ORGANIZATION = "manage organization"
    #: Make someone an owner, or change or remove an owner (decision 0070).
    MANAGE_OWNERS = "manage owners"
    #: See, set and remove the organization's own LLM provider keys (decision 0104).
    MANAGE_LLM_KEYS = "manage LLM provider keys"


#: The grant an action needs on one's own resource and on another's (the same for
#: organization-wide actions).
_NEEDS: dict[Action, tuple[Grant, Grant]] = {
    Action.READ: (Grant.READ, Grant.READ),
    Action.CREATE: (Grant.CREATE_EDIT_OWN, Grant.CREATE_EDIT_OWN),
    Action.EDIT: (Grant.CREATE_EDIT_OWN, Grant.EDIT_OTHERS),
    # A member deletes what they created; deleting others' is an admin's (decision 0013).
    Action.DELETE: (Grant.CREATE_EDIT_OWN, Grant.EDIT_OTHERS),
    Action.MANAGE_MEMBERS: (Grant.MEMBERS, Grant.MEMBERS),
    # Project actions: on a project these come from the project role (decision 0058).
    Action.INGEST: (Grant.CREATE_EDIT_OWN, Grant.EDIT_OTHERS),
    Action.REPORT_PROGRESS: (Grant.CREATE_EDIT_OWN, Grant.EDIT_OTHERS),
    Action.CHANGE_SETTINGS: (Grant.CREATE_EDIT_OWN, Grant.EDIT_OTHERS),
    Action.VIEW_BILLING: (Grant.BILLING_VIEW, Grant.BILLING_VIEW),
    Action.MANAGE_BILLING: (Grant.BILLING_MANAGE, Grant.BILLING_MANAGE),
    Action.MANAGE_ORGANIZATION: (Grant.ORG_SETTINGS, Grant.ORG_SETTINGS),
    Action.MANAGE_OWNERS: (Grant.ORG_SETTINGS, Grant.ORG_SETTINGS),
    # Owners and admins: the keys spend the organization's money with a provider.
    Action.MANAGE_LLM_KEYS: (Grant.EDIT_OTHERS, Grant.EDIT_OTHERS),
}


def granted(principal: Principal, grant: Grant) -> bool:
    return any(grant in ORG_ROLES[role] for role in principal.roles)


def sees_everything(principal: Principal) -> bool:
    """Private resources of others are visible to whoever may edit others' (owners, admins)."""
    return granted(principal, Grant.EDIT_OTHERS)


#: The organization roles that :func:`sees_everything` holds for (owners, admins), for SQL
#: that asks ``role = ANY(…)`` (who may read a private project besides its members).
SEES_EVERYTHING_ROLES: list[str] = sorted(
    role.value for role, grants in ORG_ROLES.items() if Grant.EDIT_OTHERS in grants
)


class ProjectRole(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    DEVELOPER = "developer"
    VIEWER = "viewer"
    AUDITOR = "auditor"


class ProjectAction(StrEnum):
    READ = "read"
    EDIT = "edit"
    INGEST = "run ingestion"
    REPORT_PROGRESS = "report ingestion progress"
    MEMBERS = "manage members"
    SETTINGS = "change settings"
    DELETE = "delete"


PROJECT_ROLES: dict[ProjectRole, frozenset[ProjectAction]] = {
    ProjectRole.ADMIN: frozenset(ProjectAction),
    ProjectRole.MANAGER: frozenset(
        {ProjectAction.READ, ProjectAction.EDIT, ProjectAction.INGEST, ProjectAction.MEMBERS, ProjectAction.SETTINGS}
    ),
    ProjectRole.DEVELOPER: frozenset({ProjectAction.READ, ProjectAction.EDIT, ProjectAction.INGEST}),
    ProjectRole.VIEWER: frozenset({ProjectAction.READ}),
    ProjectRole.AUDITOR: frozenset({ProjectAction.READ}),
}


class Owned(Protocol):
    """A resource as :func:`authorize` sees it: its organization and who created it."""

    @property
    def organization_id(self) -> UUID: ...

    @property
    def user_id(self) -> UUID | None: ...


@dataclass(frozen=True)
class Policy:
    """One domain's answers: its 404, which rows the caller may read, and (optionally) what the
    caller may do to a row it can read.

    ``readable_sql`` is the same rule as ``readable`` for the database, with ``$1`` the
    organization, ``$2`` the caller and ``$3`` whether the caller sees everything in the
    organization (``readable_args``); repositories put it in every read, so lists, counts and
    single reads agree. Without ``may``, acting follows the organization table (own vs others').
    """

    name: str
    not_found: type[NotFound]
    readable: Callable[[Principal, Any], bool]
    readable_sql: Fragment
    may: Callable[[Principal, Action, Any], bool] | None = None

    @staticmethod
    def readable_args(principal: Principal) -> tuple[UUID, UUID, bool]:
        return principal.org_id, principal.user_id, sees_everything(principal)


@dataclass(frozen=True)
class MemberAccess:
    """The project role one user holds on one project (an accepted project member); a project
    read for a caller carries it, so :func:`authorize` needs no query."""

    user_id: UUID
    role: ProjectRole


def project_role(principal: Principal, project: Any) -> ProjectRole | None:
    """The caller's role on ``project``, or None: not a member (or the project was read for
    someone else)."""
    access: MemberAccess | None = getattr(project, "member_access", None)
    if access is None or access.user_id != principal.user_id:
        return None
    return access.role


def _project_readable(principal: Principal, project: Any) -> bool:
    # ARCHITECTURE §3: shared → every member of the organization; private → its project
    # members and the organization's owners and admins (decision 0058).
    return project.organization_id == principal.org_id and (
        project.privacy == "shared" or sees_everything(principal) or project_role(principal, project) is not None
    )


#: The project action each service action is on a project.
PROJECT_ACTIONS: dict[Action, ProjectAction] = {
    Action.READ: ProjectAction.READ,
    Action.EDIT: ProjectAction.EDIT,
    Action.INGEST: ProjectAction.INGEST,
    Action.REPORT_PROGRESS: ProjectAction.REPORT_PROGRESS,
    Action.MANAGE_MEMBERS: ProjectAction.MEMBERS,
    Action.CHANGE_SETTINGS: ProjectAction.SETTINGS,
    Action.DELETE: ProjectAction.DELETE,
}


def _project_may(principal: Principal, action: Action, project: Any) -> bool:
    """On a project the caller can read: org owners and admins may do everything; others what
    their project role allows, and an org viewer no more than read whatever the project role."""
    wanted = PROJECT_ACTIONS.get(action)
    if wanted is None:  # not a project action (billing…): the organization table decides
        return allowed(principal, action)
    if sees_everything(principal) or wanted is ProjectAction.READ:
        return True
    role = project_role(principal, project)
    if role is None or not granted(principal, Grant.CREATE_EDIT_OWN):
        return False
    return wanted in PROJECT_ROLES[role]


PROJECTS = Policy(
    name="projects",
    not_found=ProjectNotFound,
    readable=_project_readable,
    readable_sql=Fragment(
        "organization_id = $1 AND (privacy = 'shared' OR $3::boolean OR id IN"
        " (SELECT project_id FROM kijko.project_members WHERE organization_id = $1 AND user_id = $2))"
    ),
    may=_project_may,
)


#: Members of the organization: every member reads them (row-level security keeps them to the
#: active organization); owners and admins change them (decision 0070).
ORGANIZATION_MEMBERS = Policy(
    name="organization members",
    not_found=MemberNotFound,
    readable=lambda principal, member: True,
    readable_sql=Fragment("organization_id = $1"),
)


#: Skills are organization data (docs/skills.md): every member reads every skill of the
#: organization (viewers included); acting follows the organization table — members create and
#: change or delete their own, owners and admins everyone's (a skill whose creator was erased
#: is "someone else's"), viewers only read.
SKILLS = Policy(
    name="skills",
    not_found=SkillNotFound,
    readable=lambda principal, skill: skill.organization_id == principal.org_id,
    readable_sql=Fragment("organization_id = $1"),
)

#: Reflexes: organization data like skills (members their own, owners/admins all, viewers read).
REFLEXES = Policy(
    name="reflexes",
    not_found=ReflexNotFound,
    readable=lambda principal, reflex: reflex.organization_id == principal.org_id,
    readable_sql=Fragment("organization_id = $1"),
)


#: Habits are organization data (ARCHITECTURE §3): every member reads them (row-level security
#: keeps them to the active organization); members edit their own, owners and admins all.
HABITS = Policy(
    name="habits",
    not_found=HabitNotFound,
    readable=lambda principal, habit: habit.organization_id == principal.org_id,
    readable_sql=Fragment("organization_id = $1"),
)


def authorize_member_change(
    principal: Principal, target_role: OrgRole, new_role: OrgRole | None, *, organization_has_owner: bool = True
) -> None:
    """Changing a member's role (``new_role``) or removing them (``None``): owners and admins;
    only an owner makes an owner or changes or removes one — unless the organization has no
    owner left (decision 0018), when an admin may name one. (That the last owner stays is the
    database's rule, checked under a lock: 409 ``LAST_OWNER``.)"""
    authorize(principal, Action.MANAGE_MEMBERS, policy=ORGANIZATION_MEMBERS)
    if OrgRole.OWNER in (target_role, new_role) and organization_has_owner:
        authorize(principal, Action.MANAGE_OWNERS, policy=ORGANIZATION_MEMBERS)


def allowed(principal: Principal, action: Action, resource: Owned | None = None) -> bool:
    """Whether the caller's organization roles allow ``action`` (on ``resource``)."""
    own, others = _NEEDS[action]
    if resource is None or resource.user_id == principal.user_id:
        return granted(principal, own)
    return granted(principal, others)


def authorize(principal: Principal, action: Action, resource: Owned | None = None, *, policy: Policy) -> None:
    """Raise unless the caller may do ``action``: the domain's 404 when it cannot read
    ``resource`` (another organization's, or private to someone else), 403 when it can read
    it but not act. Without a resource (create, organization-wide actions) only 403."""
    if resource is not None and not (policy.readable(principal, resource) and granted(principal, Grant.READ)):
        raise policy.not_found()
    if resource is not None and policy.may is not None:
        permitted = policy.may(principal, action, resource)
    else:
        permitted = allowed(principal, action, resource)
    if not permitted:
        raise Forbidden(f"Your role does not allow you to {action} this")


# --- docs/permissions.md ---------------------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "permissions.md"

_ORG_COLUMNS: list[tuple[str, Callable[[frozenset[Grant]], str]]] = [
    (str(Grant.READ), lambda grants: _yes(Grant.READ in grants)),
    (str(Grant.CREATE_EDIT_OWN), lambda grants: _yes(Grant.CREATE_EDIT_OWN in grants)),
    (str(Grant.EDIT_OTHERS), lambda grants: _yes(Grant.EDIT_OTHERS in grants)),
    (str(Grant.MEMBERS), lambda grants: _yes(Grant.MEMBERS in grants)),
    (
        "billing",
        lambda grants: (
            "manage" if Grant.BILLING_MANAGE in grants else ("view" if Grant.BILLING_VIEW in grants else "no")
        ),
    ),
    (str(Grant.ORG_SETTINGS), lambda grants: _yes(Grant.ORG_SETTINGS in grants)),
]


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render() -> str:
    """The text of ``docs/permissions.md``."""
    org = _table(
        ["org role", *(title for title, _ in _ORG_COLUMNS)],
        [[str(role), *(cell(ORG_ROLES[role]) for _, cell in _ORG_COLUMNS)] for role in OrgRole],
    )
    actions = _table(
        ["action", "on one's own resource needs", "on another's needs"],
        [[str(action), f"`{own}`", f"`{others}`"] for action, (own, others) in _NEEDS.items()],
    )
    project = _table(
        ["project role", *(str(action) for action in ProjectAction)],
        [[str(role), *(_yes(action in PROJECT_ROLES[role]) for action in ProjectAction)] for role in ProjectRole],
    )
    routes = _table(
        ["request", "needs", *(title for title, _ in _CALLERS)],
        [
            [f"`{method} {path}`", f"`{action}`", *(cell(action) for _, cell in _CALLERS)]
            for method, path, action in PROJECT_ROUTES
        ],
    )
    skills = _table(
        ["org role", *(title for title, _, _ in _SKILL_COLUMNS)],
        [[str(role), *(_skill_verdict(role, action, own) for _, action, own in _SKILL_COLUMNS)] for role in OrgRole],
    )
    billing = _table(
        ["request", "needs", *(str(role) for role in OrgRole)],
        [
            [f"`{method} {path}`", f"`{action}`", *(_billing_verdict(role, action) for role in OrgRole)]
            for method, path, action in BILLING_ROUTES
        ],
    )
    return _TEMPLATE.format(
        org=org,
        actions=actions,
        project=project,
        routes=routes,
        projects_sql=PROJECTS.readable_sql,
        skills=skills,
        billing=billing,
    )


#: Every billing route and the action it needs (paths relative to /api/v1): billing is the
#: organization's, so the organization role alone decides (ARCHITECTURE §3).
BILLING_ROUTES: tuple[tuple[str, str, Action], ...] = (
    ("GET", "/billing/details", Action.VIEW_BILLING),
    ("PATCH", "/billing/details", Action.MANAGE_BILLING),
    ("POST", "/billing/details/validate-btw", Action.MANAGE_BILLING),
    ("GET", "/billing/payment-methods", Action.VIEW_BILLING),
    ("POST", "/billing/payment-methods/setup", Action.MANAGE_BILLING),
    ("POST", "/billing/payment-methods/{id}/default", Action.MANAGE_BILLING),
    ("DELETE", "/billing/payment-methods/{id}", Action.MANAGE_BILLING),
    ("GET", "/billing/invoices", Action.VIEW_BILLING),
    ("GET", "/billing/portal", Action.MANAGE_BILLING),
    ("GET", "/billing/subscription", Action.VIEW_BILLING),
    ("PATCH", "/billing/subscription", Action.MANAGE_BILLING),
    ("POST", "/billing/subscription/cancel", Action.MANAGE_BILLING),
    ("POST", "/billing/subscription/resume", Action.MANAGE_BILLING),
    ("POST", "/billing/checkout", Action.MANAGE_BILLING),
    ("POST", "/billing/checkout/<session_id>/sync", Action.MANAGE_BILLING),
)


def _billing_verdict(org_role: OrgRole, action: Action) -> str:
    me = Principal(uuid4(), uuid4(), "example", frozenset({org_role}), datetime.now(UTC))
    return "yes" if allowed(me, action) else "403"


#: The columns of the skills table: (title, action, on the caller's own skill).
_SKILL_COLUMNS: list[tuple[str, Action, bool]] = [
    ("read any skill", Action.READ, False),
    ("create, import, duplicate", Action.CREATE, True),
    ("edit, delete own", Action.EDIT, True),
    ("edit, delete others'", Action.EDIT, False),
]


@dataclass
class _ExampleSkill:
    organization_id: UUID
    user_id: UUID | None


def _skill_verdict(org_role: OrgRole, action: Action, own: bool) -> str:
    me = Principal(uuid4(), uuid4(), "example", frozenset({org_role}), datetime.now(UTC))
    skill = None if action is Action.CREATE else _ExampleSkill(me.org_id, me.user_id if own else uuid4())
    try:
        authorize(me, action, skill, policy=SKILLS)
    except NotFound:
        return "404"
    except Forbidden:
        return "403"
    return "yes"


#: Every project route and the action it needs: the rows of the matrix in docs/permissions.md
#: (paths relative to /api/v1). A domain adding routes under /projects/{id} adds them here.
PROJECT_ROUTES: tuple[tuple[str, str, Action], ...] = (
    ("GET", "/projects/{id}", Action.READ),
    ("GET", "/projects/{id}/full", Action.READ),
    ("PUT/PATCH", "/projects/{id} (name, description)", Action.EDIT),
    (
        "PUT/PATCH",
        "/projects/{id} (type, privacy, chunkingStrategy, includeMetadata, anonymizeSecrets)",
        Action.CHANGE_SETTINGS,
    ),
    ("DELETE", "/projects/{id}", Action.DELETE),
    ("GET", "/projects/{id}/members", Action.READ),
    ("GET", "/projects/{id}/invitations/pending", Action.READ),
    ("POST", "/projects/{id}/members", Action.MANAGE_MEMBERS),
    ("PUT/PATCH", "/projects/{id}/members/{memberId}", Action.MANAGE_MEMBERS),
    ("DELETE", "/projects/{id}/members/{memberId}", Action.MANAGE_MEMBERS),
    ("POST", "/projects/{id}/invitations", Action.MANAGE_MEMBERS),
    ("POST", "/projects/{id}/invitations/{memberId}/resend", Action.MANAGE_MEMBERS),
    ("DELETE", "/projects/{id}/invitations/{memberId}", Action.MANAGE_MEMBERS),
    ("GET", "/projects/{id}/repositories", Action.READ),
    ("POST", "/projects/{id}/repositories", Action.EDIT),
    ("DELETE", "/projects/{id}/repositories/{repoId}", Action.EDIT),
    ("GET", "/projects/{id}/search", Action.READ),
    ("GET", "/projects/{id}/files", Action.READ),
    ("POST", "/files/upload (with projectId)", Action.EDIT),
    ("POST", "/projects/{id}/ingest", Action.INGEST),
    ("POST", "/projects/{id}/ingest (runner: external)", Action.REPORT_PROGRESS),
    ("GET", "/projects/{id}/progress", Action.READ),
    ("POST", "/projects/{id}/cancel-ingestion", Action.INGEST),
    ("PUT", "/projects/{id}/progress", Action.REPORT_PROGRESS),
    ("POST", "/projects/{id}/progress/snapshot", Action.REPORT_PROGRESS),
    ("POST", "/projects/{id}/progress/complete", Action.REPORT_PROGRESS),
)


@dataclass
class _Example:
    """A project as the matrix imagines it, for a caller with some role on it."""

    organization_id: UUID
    user_id: UUID | None
    privacy: str
    member_access: MemberAccess | None = None


def _verdict(org_role: OrgRole, action: Action, privacy: str, project_role: ProjectRole | None) -> str:
    me = Principal(uuid4(), uuid4(), "example", frozenset({org_role}), datetime.now(UTC))
    access = MemberAccess(me.user_id, project_role) if project_role else None
    try:
        authorize(me, action, _Example(me.org_id, uuid4(), privacy, access), policy=PROJECTS)
    except NotFound:
        return "404"
    except Forbidden:
        return "403"
    return "yes"


def _member_cell(*roles: ProjectRole) -> Callable[[Action], str]:
    def cell(action: Action) -> str:
        verdicts = {_verdict(OrgRole.MEMBER, action, "private", role) for role in roles}
        assert len(verdicts) == 1, "roles sharing a column must agree"
        return verdicts.pop()

    return cell


def _outsider_cell(org_role: OrgRole) -> Callable[[Action], str]:
    def cell(action: Action) -> str:
        shared, private = (_verdict(org_role, action, privacy, None) for privacy in ("shared", "private"))
        return f"{shared} / {private}"

    return cell


#: The callers of the route matrix: (column title, verdict of an action).
_CALLERS: list[tuple[str, Callable[[Action], str]]] = [
    ("org owner, admin", lambda action: _verdict(OrgRole.ADMIN, action, "private", None)),
    ("project admin", _member_cell(ProjectRole.ADMIN)),
    ("manager", _member_cell(ProjectRole.MANAGER)),
    ("developer", _member_cell(ProjectRole.DEVELOPER)),
    ("viewer, auditor", _member_cell(ProjectRole.VIEWER, ProjectRole.AUDITOR)),
    ("org member, not on the project (shared / private)", _outsider_cell(OrgRole.MEMBER)),
    ("org viewer, not on the project (shared / private)", _outsider_cell(OrgRole.VIEWER)),
]


_TEMPLATE = """\
# Permissions

<!-- Generated from kijko_core/permissions.py by `python -m kijko_core.permissions`;
     tests/test_permission_table.py fails when this file and the tables disagree. -->

A token says who the caller is and which organization is active. What the caller may do is
read from `kijko.memberships` on every request (by `kijko.enter`, when the tenant session
opens), never from token claims — a role change takes effect on the next request.

Services ask one function, `kijko_core.permissions.authorize(principal, action, resource,
policy=…)`: a caller who **cannot read** the resource gets the domain's 404 (`PROJECT_NOT_FOUND`
…), exactly as if it did not exist — including another organization's resources, which
row-level security hides anyway; a caller who **can read but not act** gets 403 `FORBIDDEN`.
A 403 therefore never reveals something the caller could not see.

## Organization roles

{org}

The person who signs up becomes the owner of a new organization; someone who accepts an
invitation to a project of another organization joins it as `member` (or `viewer`, for the
project roles viewer and auditor). Billing follows the `billing` column: its routes are
[below](#billing).

## Actions

What each action a service asks about needs, on a resource the caller created and on one
someone else did (organization-wide actions need the same either way):

{actions}

## Organizations and their members

The routes of [organizations](organizations.md) (decision 0070); members are readable by
every member, so a refused change of a real member is 403, an unknown one 404.

| request | needs | otherwise |
| --- | --- | --- |
| list the caller's organizations | a live session (no membership of the token's organization) | 401 |
| get the current organization, list its members, search users | `read` | 403 `FORBIDDEN` when no longer a member |
| rename the current organization | `manage organization` (owners) | 403 `FORBIDDEN` |
| change a member's role, remove them | `manage members` (owners, admins) | 404 `MEMBER_NOT_FOUND` if none, else 403 |
| … when the member is an owner, or the new role is `owner` | also `manage owners` (owners) | 403 `FORBIDDEN` |
| … naming an owner where none is left (decision 0018) | `manage members` | 403 `FORBIDDEN` |
| … when it would leave no owner | — | 409 `LAST_OWNER` |
| switch to another organization | membership of the target | 403 `FORBIDDEN` (unknown organizations alike) |

## Projects

Which projects a caller can read is one rule, in Python for a project in hand and in SQL in
every read of `kijko_core/projects/repository.py` (lists, counts, stats and single reads
agree): a `shared` project is readable by every member of the organization, viewers
included; a `private` one by its project members (accepted ones: a pending invitee is not a
member yet) and the organization's owners and admins.

```sql
{projects_sql}
-- $1 organization, $2 caller, $3 caller is an owner or admin of the organization
```

What a caller may do to a project they can read comes from their **project role** (their row
in `kijko.project_members`, read with the project), except that the organization's owners and
admins may do everything on every project, and an organization **viewer** never does more
than read, whatever their project role. The creator of a project is its first `admin`
member; having created a project gives no right of its own (see
[decisions/0058](decisions/0058-project-roles-from-members.md)).

{project}

### Every project route

`yes` allowed, `403` `FORBIDDEN` (the caller can read the project but not do this), `404`
`PROJECT_NOT_FOUND` (the caller cannot read it: exactly as for a project that does not exist,
or another organization's). The project-role columns are for members whose organization role
is `member` (owners and admins have everything anyway; org viewers only read).

{routes}

Also:

- **create** (`POST /projects`) needs `create` in the organization: owners, admins and
  members; 403 for viewers. Lists, stats and `validate-name` show only readable projects.
- **Admins are the admins' business:** a manager manages members but cannot give the `admin`
  role, nor change, remove, resend or cancel an admin's membership or invitation (403); a
  project admin and org owners/admins can.
- **One's own membership:** any member may change their own notification flags and remove
  themselves (leave the project) without `manage members`; their role they cannot change.
- **Invitation links** (`GET /invitations/{{token}}`, public; `POST /invitations/accept`) are
  not project routes: the token is the permission, and accepting also needs the caller's
  email to be the invited one (see [members](members.md)).
- **Names** are unique per organization, case-insensitively. `validate-name` looks only at
  the projects the caller can read, so it never confirms the name of a project the caller
  cannot see; creating or renaming onto a name held by such a project is still a 409
  `PROJECT_EXISTS` (see [decisions/0022](decisions/0022-project-names-and-invisible-projects.md)).
- **Only writable fields** are taken from a body: name, description, privacy,
  chunkingStrategy, includeMetadata, anonymizeSecrets and (while draft) type. Server-managed
  fields (`id`, `organizationId`, `userId`, `status`, counters, timestamps) in a body are
  ignored. Changing `type` is possible only while the status is `draft` (409
  `INVALID_STATUS` with `field: "type"`).
- A malformed id in a path is the same 404 as an unknown one.

## Skills

Skills are organization data (see [skills](skills.md) and
[decisions/0100](decisions/0100-skills-are-organization-data.md)): every member reads every
skill of the organization; acting follows the organization table, the creator's own skill
against someone else's (a skill whose creator was erased is someone else's). `yes` allowed,
`403` `FORBIDDEN`; another organization's skill is `SKILL_NOT_FOUND` (404) for everyone.

{skills}

Bulk actions (`/skills/bulk/…`) act on the listed skills the caller may edit and skip the
others; viewers get 403 ([decisions/0102](decisions/0102-bulk-actions-skip-what-the-caller-may-not-change.md)).

## Billing

Billing belongs to the organization: owners manage it, admins view it, members and viewers
get 403 `FORBIDDEN` (there is nothing of another organization's to find: each organization has
its own). See [billing details](billing-details.md).

{billing}
"""


def main(argv: list[str]) -> int:
    """``python -m kijko_core.permissions [--check] [PATH]``: rewrite (or only check) the page
    (``docs/permissions.md`` unless PATH is given)."""
    paths = [arg for arg in argv if not arg.startswith("--")]
    doc = Path(paths[0]) if paths else DOC
    text = render()
    if "--check" in argv:
        current = doc.read_text(encoding="utf-8") if doc.exists() else ""
        if current != text:
            print(f"{doc} is out of date: run python -m kijko_core.permissions", file=sys.stderr)
            return 1
        return 0
    doc.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
