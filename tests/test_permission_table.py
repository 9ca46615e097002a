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
from kijko_core.permissions import PROJECTS, Action, authorize
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
    for action in (Action.EDIT, Action.DELETE):
        assert outcome(me, action, shared) == ("ok" if admin_like else "403")
        assert outcome(me, action, private) == ("ok" if admin_like else "404")
        # One's own, private or not.
        mine = Thing(ORG, me.user_id, "private")
        assert outcome(me, action, mine) == ("ok" if writer else "403")
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


READABLE_PROBE = sql.compose(
    "SELECT {readable}"
    " FROM (VALUES ($4::uuid, $5::uuid, $6::text)) AS project(organization_id, user_id, privacy)",
    readable=PROJECTS.readable_sql,
)


async def test_the_sql_readable_condition_agrees_with_the_python_one(database: ScratchDatabase) -> None:
    """The repository filters with ``readable_sql``, authorize with ``readable``: the same
    answer for every role, organization, creator and privacy."""
    connection = await asyncpg.connect(database.admin_url)
    try:
        for role in OrgRole:
            me = principal(role)
            for org in (ORG, OTHER_ORG):
                for creator in (me.user_id, uuid4()):
                    for privacy in ("shared", "private"):
                        thing = Thing(org, creator, privacy)
                        in_sql = await connection.fetchval(
                            READABLE_PROBE, *PROJECTS.readable_args(me), org, creator, privacy
                        )
                        assert in_sql is PROJECTS.readable(me, thing), (role, org == ORG, creator, privacy)
    finally:
        await connection.close()
