"""The permission module (decision 0021): docs/permissions.md is generated from its tables,
and ``authorize`` answers the domain's 404 for what the caller cannot read and 403 for what it
can read but not do. The same rules over HTTP, per role: tests/test_domain_suites.py."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import pytest

from kijko_core import permissions
from kijko_core.auth.principal import OrgRole, Principal
from kijko_core.db import sql
from kijko_core.db.provision import ScratchDatabase
from kijko_core.errors import Forbidden
from kijko_core.permissions import PROJECTS, Action, MemberAccess, ProjectRole, authorize
from kijko_core.projects.models import ProjectNotFound


def test_the_permissions_page_is_generated_from_the_tables() -> None:
    assert permissions.DOC.read_text(encoding="utf-8") == permissions.render(), (
        "docs/permissions.md is out of date: run python -m kijko_core.permissions"
    )


def test_the_check_command_notices_a_stale_page(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "kijko_core.permissions", "--check"]
    ok = subprocess.run(command, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    stale = tmp_path / "permissions.md"
    stale.write_text(permissions.render().replace("| viewer | yes | no |", "| viewer | yes | yes |"))
    refused = subprocess.run([*command, str(stale)], capture_output=True, text=True)
    assert refused.returncode == 1 and "out of date" in refused.stderr
    assert subprocess.run([sys.executable, "-m", "kijko_core.permissions", str(stale)]).returncode == 0
    assert stale.read_text() == permissions.render()
    assert "| viewer | yes | no | no | no | no | no |" in permissions.render()


def test_the_org_table_is_architecture_section_3() -> None:
    g = permissions.Grant
    assert permissions.ORG_ROLES == {
        OrgRole.OWNER: frozenset(g),
        OrgRole.ADMIN: frozenset(g) - {g.BILLING_MANAGE, g.ORG_SETTINGS},
        OrgRole.MEMBER: {g.READ, g.CREATE_EDIT_OWN},
        OrgRole.VIEWER: {g.READ},
    }


ORG, OTHER_ORG = uuid4(), uuid4()


def principal(role: OrgRole, user: UUID | None = None, org: UUID = ORG) -> Principal:
    return Principal(user or uuid4(), org, "session", frozenset({role}), datetime.now(UTC))


@dataclass
class Thing:
    organization_id: UUID
    user_id: UUID
    privacy: str
    member_access: MemberAccess | None = None


def member_of(who: Principal, privacy: str, role: ProjectRole, org: UUID = ORG) -> Thing:
    """A project someone else created, on which ``who`` is a member with ``role``."""
    return Thing(org, uuid4(), privacy, MemberAccess(who.user_id, role))


def outcome(who: Principal, action: Action, thing: Thing | None) -> str:
    try:
        authorize(who, action, thing, policy=PROJECTS)
    except ProjectNotFound:
        return "404"
    except Forbidden:
        return "403"
    return "ok"


@pytest.mark.parametrize("role", list(OrgRole))
def test_authorize_per_role(role: OrgRole) -> None:
    creator = uuid4()
    shared, private = Thing(ORG, creator, "shared"), Thing(ORG, creator, "private")
    me = principal(role)
    admin_like = role in (OrgRole.OWNER, OrgRole.ADMIN)
    writer = role != OrgRole.VIEWER
    assert outcome(me, Action.READ, shared) == "ok"
    assert outcome(me, Action.READ, private) == ("ok" if admin_like else "404")
    for action in (Action.EDIT, Action.DELETE, Action.MANAGE_MEMBERS, Action.INGEST, Action.CHANGE_SETTINGS):
        assert outcome(me, action, shared) == ("ok" if admin_like else "403")
        assert outcome(me, action, private) == ("ok" if admin_like else "404")
        # The project's admin (its creator, once the project is made): private or not.
        mine = member_of(me, "private", ProjectRole.ADMIN)
        assert outcome(me, action, mine) == ("ok" if writer else "403")
        # Having created it is no right by itself: rights come from the membership.
        created_only = Thing(ORG, me.user_id, "private")
        assert outcome(me, action, created_only) == ("ok" if admin_like else "404")
    assert outcome(me, Action.CREATE, None) == ("ok" if writer else "403")
    assert outcome(me, Action.MANAGE_MEMBERS, None) == ("ok" if admin_like else "403")
    assert outcome(me, Action.MANAGE_ORGANIZATION, None) == ("ok" if role == OrgRole.OWNER else "403")
    assert outcome(me, Action.VIEW_BILLING, None) == ("ok" if admin_like else "403")
    assert outcome(me, Action.MANAGE_BILLING, None) == ("ok" if role == OrgRole.OWNER else "403")


@pytest.mark.parametrize("role", list(OrgRole))
def test_another_organizations_resource_is_not_found_even_for_its_creator_id(role: OrgRole) -> None:
    me = principal(role)
    for privacy in ("shared", "private"):
        foreign = Thing(OTHER_ORG, me.user_id, privacy)
        for action in (Action.READ, Action.EDIT, Action.DELETE):
            assert outcome(me, action, foreign) == "404"


# Project roles × each service action, for a member whose org role lets them write
# (ARCHITECTURE §3: admin everything incl. delete; manager members, settings, ingestion;
# developer edit, ingestion; viewer and auditor read). Written out, not derived.
PROJECT_ACTIONS = (
    Action.READ,
    Action.EDIT,
    Action.INGEST,
    Action.MANAGE_MEMBERS,
    Action.CHANGE_SETTINGS,
    Action.DELETE,
)
PROJECT_CELLS: dict[ProjectRole, set[Action]] = {
    ProjectRole.ADMIN: set(PROJECT_ACTIONS),
    ProjectRole.MANAGER: {Action.READ, Action.EDIT, Action.INGEST, Action.MANAGE_MEMBERS, Action.CHANGE_SETTINGS},
    ProjectRole.DEVELOPER: {Action.READ, Action.EDIT, Action.INGEST},
    ProjectRole.VIEWER: {Action.READ},
    ProjectRole.AUDITOR: {Action.READ},
}


@pytest.mark.parametrize("privacy", ["shared", "private"])
@pytest.mark.parametrize("action", PROJECT_ACTIONS)
@pytest.mark.parametrize("project_role", list(ProjectRole))
def test_project_role_cells(project_role: ProjectRole, action: Action, privacy: str) -> None:
    me = principal(OrgRole.MEMBER)
    expected = "ok" if action in PROJECT_CELLS[project_role] else "403"
    assert outcome(me, action, member_of(me, privacy, project_role)) == expected


@pytest.mark.parametrize("project_role", list(ProjectRole))
def test_an_org_viewer_only_reads_whatever_the_project_role(project_role: ProjectRole) -> None:
    me = principal(OrgRole.VIEWER)
    for action in PROJECT_ACTIONS:
        expected = "ok" if action is Action.READ else "403"
        assert outcome(me, action, member_of(me, "private", project_role)) == expected, action


@pytest.mark.parametrize("role", [OrgRole.OWNER, OrgRole.ADMIN])
def test_org_owners_and_admins_may_do_everything_on_every_project(role: OrgRole) -> None:
    me = principal(role)
    for action in PROJECT_ACTIONS:
        for thing in (Thing(ORG, uuid4(), "private"), member_of(me, "private", ProjectRole.VIEWER)):
            assert outcome(me, action, thing) == "ok", action


def test_a_membership_read_for_someone_else_gives_nothing() -> None:
    me, other = principal(OrgRole.MEMBER), principal(OrgRole.MEMBER)
    theirs = member_of(other, "private", ProjectRole.ADMIN)
    assert outcome(me, Action.READ, theirs) == "404"
    assert outcome(me, Action.EDIT, Thing(ORG, uuid4(), "shared", theirs.member_access)) == "403"


READABLE_PROBE = sql.compose(
    "SELECT {readable} FROM kijko.projects WHERE id = $4",
    readable=PROJECTS.readable_sql,
)


async def test_the_sql_readable_condition_agrees_with_the_python_one(database: ScratchDatabase) -> None:
    """The repository filters with ``readable_sql``, authorize with ``readable``: the same
    answer for every org role, organization, privacy and project membership (real rows, in
    a transaction that is rolled back)."""
    connection = await asyncpg.connect(database.admin_url)
    try:
        async with connection.transaction():
            users = {}
            for name in ("me", "creator"):
                users[name] = await connection.fetchval(
                    "INSERT INTO kijko_private.users (email, first_name, last_name)"
                    " VALUES ($1, 'P', 'Robe') RETURNING id",
                    f"probe-{uuid4().hex}@example.com",
                )
            new_org = "INSERT INTO kijko.organizations (name) VALUES ('probe') RETURNING id"
            orgs = [await connection.fetchval(new_org) for _ in range(2)]
            for org in orgs:  # an accepted project member is a member of the organization
                await connection.execute(
                    "INSERT INTO kijko.memberships (organization_id, user_id, role) VALUES ($1, $2, 'member')",
                    org,
                    users["me"],
                )
            for role in OrgRole:
                me = Principal(users["me"], orgs[0], "session", frozenset({role}), datetime.now(UTC))
                for org in orgs:
                    for privacy in ("shared", "private"):
                        for member_role in (None, *ProjectRole):
                            project = await connection.fetchval(
                                "INSERT INTO kijko.projects (organization_id, user_id, name, type, privacy)"
                                " VALUES ($1, $2, $3, 'manual', $4) RETURNING id",
                                org,
                                users["creator"],
                                f"probe {uuid4().hex[:20]}",
                                privacy,
                            )
                            access = None
                            if member_role is not None:
                                await connection.execute(
                                    "INSERT INTO kijko.project_members (organization_id, project_id, user_id, email,"
                                    " role, accepted_at) VALUES ($1, $2, $3, 'me@example.com', $4, now())",
                                    org,
                                    project,
                                    users["me"],
                                    str(member_role),
                                )
                                access = MemberAccess(users["me"], member_role)
                            thing = Thing(org, users["creator"], privacy, access)
                            in_sql = await connection.fetchval(READABLE_PROBE, *PROJECTS.readable_args(me), project)
                            assert in_sql is PROJECTS.readable(me, thing), (role, org == orgs[0], privacy, member_role)
            raise _RollBack
    except _RollBack:
        pass
    finally:
        await connection.close()


class _RollBack(Exception):
    pass
