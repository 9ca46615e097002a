"""Erasing a user (issue 5 §4, decision 0018): their tokens die at once, the projects they
created stay with the organization, an organization only they belonged to goes with them."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

from kijko_core.auth.accounts import erase_user
from kijko_core.db.session import system_session
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.memberships import add_member
from tests.projects import created

API = "/api/v1/projects"


async def test_a_member_who_created_projects_can_be_erased(client: Any, kijko: Kijko, alice: Account) -> None:
    member = await add_member(kijko, alice.org_id, "member")
    shared = await created(client, member, "Member shared", privacy="shared")
    private = await created(client, member, "Member private")
    own = await created(client, alice, "Alice's own")

    erasure = await erase_user(kijko.system_db, UUID(member.user_id))
    assert erasure.erased and erasure.deleted_organizations == [] and erasure.ownerless_organizations == []

    # Every token of the erased user stops working at once: access (any route) and refresh.
    for path in (API, "/api/v1/auth/me", f"{API}/{shared['id']}"):
        response = await client.get(path, headers=member.headers)
        assert response.status_code == 401, path
        assert (await response.get_json())["code"] == "INVALID_TOKEN"
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": member.refresh_token})
    assert refreshed.status_code == 401
    login = await client.post("/api/v1/auth/login", json={"email": member.email, "password": member.password})
    assert login.status_code == 401

    # The projects remain the organization's, with no creator; the owner still manages them.
    listed = await (await client.get(API, headers=alice.headers)).get_json()
    by_id = {p["id"]: p for p in listed["data"]}
    assert set(by_id) == {shared["id"], private["id"], own["id"]}
    assert by_id[shared["id"]]["userId"] == "" and by_id[private["id"]]["userId"] == ""
    assert by_id[own["id"]]["userId"] == alice.user_id
    full = await client.get(f"{API}/{shared['id']}/full", headers=alice.headers)
    assert full.status_code == 200 and (await full.get_json())["userId"] == ""
    renamed = await client.patch(f"{API}/{private['id']}", json={"name": "Kept"}, headers=alice.headers)
    assert renamed.status_code == 200 and (await renamed.get_json())["userId"] == ""

    async with system_session(kijko.system_db, readonly=True) as db:
        left = await db.fetchval(
            "SELECT (SELECT count(*) FROM kijko_private.users WHERE id = $1)"
            " + (SELECT count(*) FROM kijko_private.sessions WHERE user_id = $1)"
            " + (SELECT count(*) FROM kijko.memberships WHERE user_id = $1)"
            " + (SELECT count(*) FROM kijko.projects WHERE user_id = $1)",
            UUID(member.user_id),
        )
    assert left == 0


async def test_erasing_the_only_member_deletes_their_organization(client: Any, kijko: Kijko, alice: Account) -> None:
    await created(client, alice, "Alone")
    erasure = await erase_user(kijko.system_db, UUID(alice.user_id))
    assert erasure.erased and erasure.deleted_organizations == [UUID(alice.org_id)]
    org = UUID(alice.org_id)
    async with system_session(kijko.system_db, readonly=True) as db:
        assert await db.fetchval("SELECT count(*) FROM kijko.organizations WHERE id = $1", org) == 0
        assert await db.fetchval("SELECT count(*) FROM kijko.projects WHERE organization_id = $1", org) == 0
    assert (await client.get(API, headers=alice.headers)).status_code == 401


async def test_erasing_the_last_owner_reports_the_organization(client: Any, kijko: Kijko, alice: Account) -> None:
    admin = await add_member(kijko, alice.org_id, "admin")
    await created(client, alice, "Founder's")
    erasure = await erase_user(kijko.system_db, UUID(alice.user_id))
    assert erasure.ownerless_organizations == [UUID(alice.org_id)] and erasure.deleted_organizations == []
    listed = await (await client.get(API, headers=admin.headers)).get_json()
    assert [(p["name"], p["userId"]) for p in listed["data"]] == [("Founder's", "")]


async def test_erasing_an_unknown_user_changes_nothing(kijko: Kijko) -> None:
    erasure = await erase_user(kijko.system_db, uuid.uuid4())
    assert not erasure.erased and erasure.deleted_organizations == []
