"""Organizations and switching (issue 6 §2) over HTTP with the local provider: the caller's
organizations, the active one, its members (roles, removal, the last owner), switching the
token's organization, and user search. Role cells and isolation of the member routes also run
in the shared suites (tests/domains.py); the cells that need more than one request are here."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from kijko_core.auth.accounts import erase_user
from kijko_core.auth.principal import OrgRole, Principal
from kijko_core.db.session import system_session, tenant_session
from kijko_core.errors import Forbidden
from kijko_core.permissions import authorize_member_change
from kijko_core.runtime import Kijko
from tests.conftest import Account, sign_up
from tests.memberships import add_member, join
from tests.test_errors import error_of
from tests.tokens import bearer

ORGS = "/api/v1/organizations"
CURRENT = f"{ORGS}/current"
MEMBERS = f"{CURRENT}/members"
SWITCH = "/api/v1/auth/switch-organization"
SEARCH = "/api/v1/users/search"


def member_path(user_id: str) -> str:
    return f"{MEMBERS}/{user_id}"


async def roles_in(kijko: Kijko, org_id: str) -> dict[str, str]:
    async with system_session(kijko.system_db, readonly=True) as db:
        rows = await db.fetch("SELECT user_id, role FROM kijko.memberships WHERE organization_id = $1", UUID(org_id))
    return {str(row["user_id"]): row["role"] for row in rows}


def with_token(account: Account, access_token: str, refresh_token: str, org_id: str) -> Account:
    return Account(account.email, account.password, access_token, refresh_token, account.user_id, org_id)


# --- the caller's organizations ------------------------------------------------------------------


async def test_list_shows_every_organization_of_the_caller_with_role_and_current(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    await join(kijko, alice, bob.org_id, "viewer")
    response = await client.get(ORGS, headers=alice.headers)
    assert response.status_code == 200
    listed = await response.get_json()
    assert [(o["id"], o["role"], o["current"]) for o in listed] == [
        (alice.org_id, "owner", True),
        (bob.org_id, "viewer", False),
    ]
    assert set(listed[0]) == {"id", "name", "role", "createdAt", "updatedAt", "joinedAt", "current"}
    assert listed[0]["name"] == "Alice Lovelace"
    # Bob sees only his own: Alice's membership in his organization is not his.
    bobs = await (await client.get(ORGS, headers=bob.headers)).get_json()
    assert [(o["id"], o["role"]) for o in bobs] == [(bob.org_id, "owner")]


async def test_current_is_the_tokens_organization_with_the_callers_role(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    viewer = await add_member(kijko, alice.org_id, "viewer")
    for account, role in ((alice, "owner"), (viewer, "viewer")):
        body = await (await client.get(CURRENT, headers=account.headers)).get_json()
        assert (body["id"], body["role"], body["name"]) == (alice.org_id, role, "Alice Lovelace")
        assert set(body) == {"id", "name", "role", "createdAt", "updatedAt"}


async def test_organization_routes_need_a_token(client: Any) -> None:
    for method, path in (("GET", ORGS), ("GET", CURRENT), ("GET", MEMBERS), ("GET", f"{SEARCH}?q=a")):
        response = await client.open(path, method=method)
        await error_of(response, 401, "INVALID_TOKEN")


# --- renaming the organization -------------------------------------------------------------------


async def test_only_owners_rename_and_only_their_own_organization(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    for role in ("admin", "member", "viewer"):
        caller = await add_member(kijko, alice.org_id, role)  # type: ignore[arg-type]
        refused = await client.patch(CURRENT, json={"name": "Taken over"}, headers=caller.headers)
        await error_of(refused, 403, "FORBIDDEN")
    bobs_before = await (await client.get(CURRENT, headers=bob.headers)).get_json()
    response = await client.patch(
        CURRENT,
        # Server-managed and foreign ids in the body are ignored: only the name is writable.
        json={"name": "  Analytical Engines  ", "id": bob.org_id, "organizationId": bob.org_id, "role": "viewer"},
        headers=alice.headers,
    )
    assert response.status_code == 200
    body = await response.get_json()
    assert (body["id"], body["name"], body["role"]) == (alice.org_id, "Analytical Engines", "owner")
    assert body["updatedAt"] > body["createdAt"]
    assert await (await client.get(CURRENT, headers=bob.headers)).get_json() == bobs_before
    listed = await (await client.get(ORGS, headers=alice.headers)).get_json()
    assert listed[0]["name"] == "Analytical Engines"


@pytest.mark.parametrize(
    "body",
    [{}, {"name": ""}, {"name": "   "}, {"name": "x" * 201}, {"name": None}, {"name": 12}, {"name": "a\x00b"}],
    ids=["missing", "empty", "blank", "too-long", "null", "number", "nul"],
)
async def test_a_bad_name_is_a_422_on_the_field(client: Any, alice: Account, body: dict[str, Any]) -> None:
    response = await client.patch(CURRENT, json=body, headers=alice.headers)
    error = await error_of(response, 422, "VALIDATION_ERROR")
    assert error["field"] == "name"
    assert (await (await client.get(CURRENT, headers=alice.headers)).get_json())["name"] == "Alice Lovelace"


async def test_a_name_of_200_characters_is_kept(client: Any, alice: Account) -> None:
    response = await client.patch(CURRENT, json={"name": "n" * 200}, headers=alice.headers)
    assert response.status_code == 200 and (await response.get_json())["name"] == "n" * 200


# --- members -------------------------------------------------------------------------------------


async def test_members_are_the_users_of_the_active_organization_only(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    viewer = await add_member(kijko, alice.org_id, "viewer", first_name="Vera")
    await join(kijko, bob, alice.org_id, "member")  # Bob, in Alice's organization too
    response = await client.get(MEMBERS, headers=viewer.headers)
    assert response.status_code == 200
    members = await response.get_json()
    assert [(m["id"], m["role"]) for m in members] == [
        (alice.user_id, "owner"),
        (viewer.user_id, "viewer"),
        (bob.user_id, "member"),
    ]
    first = members[0]
    assert set(first) == {"id", "email", "firstName", "lastName", "role", "joinedAt"}
    assert (first["email"], first["firstName"], first["lastName"]) == (alice.email, "Alice", "Lovelace")
    # Bob's own organization lists Bob alone: Alice's members never show there.
    bobs = await (await client.get(MEMBERS, headers=bob.headers)).get_json()
    assert [m["id"] for m in bobs] == [bob.user_id]


async def test_owner_and_admin_change_roles_and_it_takes_effect_on_the_next_request(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    admin = await add_member(kijko, alice.org_id, "admin")
    member = await add_member(kijko, alice.org_id, "member")
    promoted = await client.patch(member_path(member.user_id), json={"role": "admin"}, headers=admin.headers)
    assert promoted.status_code == 200
    body = await promoted.get_json()
    assert (body["id"], body["role"], body["email"]) == (member.user_id, "admin", member.email)
    me = await (await client.get("/api/v1/auth/me", headers=member.headers)).get_json()
    assert me["roles"] == ["admin"]  # the same token: roles come from the database
    # The owner demotes the admin; the admin's next management request is refused.
    demoted = await client.patch(member_path(admin.user_id), json={"role": "viewer"}, headers=alice.headers)
    assert (await demoted.get_json())["role"] == "viewer"
    refused = await client.patch(member_path(member.user_id), json={"role": "member"}, headers=admin.headers)
    await error_of(refused, 403, "FORBIDDEN")
    assert (await roles_in(kijko, alice.org_id))[member.user_id] == "admin"


async def test_an_admin_cannot_make_an_owner_nor_touch_one(client: Any, kijko: Kijko, alice: Account) -> None:
    admin = await add_member(kijko, alice.org_id, "admin")
    member = await add_member(kijko, alice.org_id, "member")
    before = await roles_in(kijko, alice.org_id)
    cases = [
        ("PATCH", member_path(member.user_id), {"role": "owner"}),
        ("PATCH", member_path(admin.user_id), {"role": "owner"}),  # not even themselves
        ("PATCH", member_path(alice.user_id), {"role": "admin"}),
        ("DELETE", member_path(alice.user_id), None),
    ]
    for method, path, body in cases:
        response = await client.open(path, method=method, headers=admin.headers, **({"json": body} if body else {}))
        await error_of(response, 403, "FORBIDDEN")
    assert await roles_in(kijko, alice.org_id) == before
    # An owner may make an owner.
    made = await client.patch(member_path(member.user_id), json={"role": "owner"}, headers=alice.headers)
    assert (await made.get_json())["role"] == "owner"


async def test_members_and_viewers_cannot_manage_members(client: Any, kijko: Kijko, alice: Account) -> None:
    target = await add_member(kijko, alice.org_id, "viewer")
    for role in ("member", "viewer"):
        caller = await add_member(kijko, alice.org_id, role)  # type: ignore[arg-type]
        changed = await client.patch(member_path(target.user_id), json={"role": "member"}, headers=caller.headers)
        await error_of(changed, 403, "FORBIDDEN")
        removed = await client.delete(member_path(target.user_id), headers=caller.headers)
        await error_of(removed, 403, "FORBIDDEN")
        # Not even themselves: leaving goes through an owner or admin.
        promoted = await client.patch(member_path(caller.user_id), json={"role": "admin"}, headers=caller.headers)
        await error_of(promoted, 403, "FORBIDDEN")
    assert (await roles_in(kijko, alice.org_id))[target.user_id] == "viewer"


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_unknown_malformed_and_foreign_members_are_the_same_404(
    client: Any, kijko: Kijko, alice: Account, bob: Account, method: str
) -> None:
    member = await add_member(kijko, alice.org_id, "member")
    bobs_before = await roles_in(kijko, alice.org_id)
    for user_id in (str(uuid.uuid4()), "not-a-uuid", member.user_id, alice.user_id):
        response = await client.open(
            member_path(user_id),
            method=method,
            headers=bob.headers,
            **({"json": {"role": "viewer"}} if method == "PATCH" else {}),
        )
        body = await error_of(response, 404, "MEMBER_NOT_FOUND")
        assert set(body) == {"detail", "code", "message"}
    assert await roles_in(kijko, alice.org_id) == bobs_before


@pytest.mark.parametrize("body", [{}, {"role": "superuser"}, {"role": "OWNER"}, {"role": None}])
async def test_a_bad_role_is_a_422(client: Any, kijko: Kijko, alice: Account, body: dict[str, Any]) -> None:
    member = await add_member(kijko, alice.org_id, "member")
    response = await client.patch(member_path(member.user_id), json=body, headers=alice.headers)
    assert (await error_of(response, 422, "VALIDATION_ERROR"))["field"] == "role"


async def test_a_body_naming_another_organization_changes_nothing_there(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    member = await add_member(kijko, alice.org_id, "member")
    await join(kijko, member, bob.org_id, "viewer")
    bobs_before = await roles_in(kijko, bob.org_id)
    response = await client.patch(
        member_path(member.user_id),
        json={"role": "admin", "organizationId": bob.org_id, "organization_id": bob.org_id, "id": bob.user_id},
        headers=alice.headers,
    )
    assert (await response.get_json())["id"] == member.user_id
    assert (await roles_in(kijko, alice.org_id))[member.user_id] == "admin"
    assert await roles_in(kijko, bob.org_id) == bobs_before


# --- the last owner ------------------------------------------------------------------------------


async def test_the_last_owner_can_be_neither_demoted_nor_removed(client: Any, kijko: Kijko, alice: Account) -> None:
    demoted = await client.patch(member_path(alice.user_id), json={"role": "admin"}, headers=alice.headers)
    body = await error_of(demoted, 409, "LAST_OWNER")
    assert "owner" in body["detail"]
    removed = await client.delete(member_path(alice.user_id), headers=alice.headers)
    await error_of(removed, 409, "LAST_OWNER")
    assert (await roles_in(kijko, alice.org_id)) == {alice.user_id: "owner"}
    # Owner to owner is no change, and allowed.
    same = await client.patch(member_path(alice.user_id), json={"role": "owner"}, headers=alice.headers)
    assert same.status_code == 200
    # With a second owner, either may step down.
    other = await add_member(kijko, alice.org_id, "owner")
    stepped = await client.patch(member_path(alice.user_id), json={"role": "member"}, headers=alice.headers)
    assert (await stepped.get_json())["role"] == "member"
    last = await client.delete(member_path(other.user_id), headers=other.headers)
    await error_of(last, 409, "LAST_OWNER")


async def _reset_to_alice_alone(kijko: Kijko, alice: Account, other: Account) -> None:
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "INSERT INTO kijko.memberships (organization_id, user_id, role) VALUES ($1, $2, 'owner')"
            " ON CONFLICT (organization_id, user_id) DO UPDATE SET role = 'owner'",
            UUID(alice.org_id),
            UUID(alice.user_id),
        )
        await db.execute(
            "DELETE FROM kijko.memberships WHERE organization_id = $1 AND user_id = $2",
            UUID(alice.org_id),
            UUID(other.user_id),
        )


async def _race(client: Any, method: str, pairs: tuple[tuple[Account, Account], ...]) -> list[tuple[int, str]]:
    kwargs = {"json": {"role": "member"}} if method == "PATCH" else {}
    responses = await asyncio.gather(
        *(
            client.open(member_path(target.user_id), method=method, headers=caller.headers, **kwargs)
            for caller, target in pairs
        )
    )
    results = []
    for response in responses:
        body = await response.get_json()
        results.append((response.status_code, body.get("code", "") if response.status_code >= 400 else ""))
    return sorted(results)


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_the_two_owners_stepping_down_at_once_leave_one_owner(
    client: Any, kijko: Kijko, alice: Account, method: str
) -> None:
    for _ in range(5):  # a race: several rounds, each must keep exactly one owner
        other = await add_member(kijko, alice.org_id, "owner")
        results = await _race(client, method, ((alice, alice), (other, other)))
        assert results == [(200, ""), (409, "LAST_OWNER")]
        owners = [user for user, role in (await roles_in(kijko, alice.org_id)).items() if role == "owner"]
        assert len(owners) == 1
        await _reset_to_alice_alone(kijko, alice, other)


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_two_owners_demoting_each_other_at_once_leave_one_owner(
    client: Any, kijko: Kijko, alice: Account, method: str
) -> None:
    for _ in range(5):
        other = await add_member(kijko, alice.org_id, "owner")
        results = await _race(client, method, ((alice, other), (other, alice)))
        # The second to take the organization's lock is no owner any more: refused.
        assert results == [(200, ""), (403, "FORBIDDEN")]
        owners = [user for user, role in (await roles_in(kijko, alice.org_id)).items() if role == "owner"]
        assert len(owners) == 1
        await _reset_to_alice_alone(kijko, alice, other)


# --- removing a member ---------------------------------------------------------------------------


async def test_a_removed_member_is_refused_on_the_next_request(client: Any, kijko: Kijko, alice: Account) -> None:
    member = await add_member(kijko, alice.org_id, "member")
    assert (await client.get(CURRENT, headers=member.headers)).status_code == 200
    removed = await client.delete(member_path(member.user_id), headers=alice.headers)
    assert removed.status_code == 200 and await removed.get_json() == {"success": True}
    for path in (CURRENT, MEMBERS, "/api/v1/auth/me", "/api/v1/projects", f"{SEARCH}?q=a"):
        await error_of(await client.get(path, headers=member.headers), 403, "FORBIDDEN")
    members = await (await client.get(MEMBERS, headers=alice.headers)).get_json()
    assert member.user_id not in {m["id"] for m in members}
    again = await client.delete(member_path(member.user_id), headers=alice.headers)
    await error_of(again, 404, "MEMBER_NOT_FOUND")


async def test_an_admin_removes_members_and_admins_and_may_leave(client: Any, kijko: Kijko, alice: Account) -> None:
    admin = await add_member(kijko, alice.org_id, "admin")
    other_admin = await add_member(kijko, alice.org_id, "admin")
    viewer = await add_member(kijko, alice.org_id, "viewer")
    for target in (viewer, other_admin, admin):
        response = await client.delete(member_path(target.user_id), headers=admin.headers)
        assert response.status_code == 200, await response.get_json()
    assert await roles_in(kijko, alice.org_id) == {alice.user_id: "owner"}


async def test_a_removed_members_refresh_moves_to_their_other_organization(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    member = await add_member(kijko, alice.org_id, "member")
    await join(kijko, member, bob.org_id, "viewer")
    await client.delete(member_path(member.user_id), headers=alice.headers)
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": member.refresh_token})
    assert refreshed.status_code == 200
    tokens = await refreshed.get_json()
    me = await (
        await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    ).get_json()
    assert (me["org_id"], me["roles"]) == (bob.org_id, ["viewer"])
    # The session stays there on later refreshes.
    later = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    again = await (
        await client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {(await later.get_json())['access_token']}"}
        )
    ).get_json()
    assert again["org_id"] == bob.org_id


async def test_a_member_removed_from_their_only_organization_cannot_refresh(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    member = await add_member(kijko, alice.org_id, "member")
    await client.delete(member_path(member.user_id), headers=alice.headers)
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": member.refresh_token})
    await error_of(refreshed, 401, "INVALID_TOKEN")
    assert await (await client.get(ORGS, headers=member.headers)).get_json() == []


# --- switching organizations ---------------------------------------------------------------------


async def test_switch_issues_tokens_for_another_organization_of_the_caller(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    await join(kijko, alice, bob.org_id, "admin")
    response = await client.post(SWITCH, json={"organization_id": bob.org_id}, headers=alice.headers)
    assert response.status_code == 200
    tokens = await response.get_json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["refresh_token"] != alice.refresh_token
    switched = with_token(alice, tokens["access_token"], tokens["refresh_token"], bob.org_id)
    me = await (await client.get("/api/v1/auth/me", headers=switched.headers)).get_json()
    assert (me["org_id"], me["roles"]) == (bob.org_id, ["admin"])
    listed = await (await client.get(ORGS, headers=switched.headers)).get_json()
    assert [(o["id"], o["current"]) for o in listed] == [(alice.org_id, False), (bob.org_id, True)]
    # Bob's projects, not Alice's, through the new token.
    await client.post(
        "/api/v1/projects",
        json={"name": "Bobs project", "type": "repository", "privacy": "shared"},
        headers=bob.headers,
    )
    projects = await (await client.get("/api/v1/projects", headers=switched.headers)).get_json()
    assert [p["name"] for p in projects["data"]] == ["Bobs project"]
    # The refresh token of the switch refreshes into the new organization; switching back works.
    refreshed = await (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).get_json()
    me = await (
        await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {refreshed['access_token']}"})
    ).get_json()
    assert me["org_id"] == bob.org_id
    back = await client.post(
        SWITCH, json={"organizationId": alice.org_id}, headers={"Authorization": f"Bearer {refreshed['access_token']}"}
    )
    assert back.status_code == 200
    me = await (
        await client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {(await back.get_json())['access_token']}"}
        )
    ).get_json()
    assert me["org_id"] == alice.org_id


async def test_switch_is_one_session_the_old_refresh_token_leads_to_the_new_one(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    await join(kijko, alice, bob.org_id, "member")
    switched = await (await client.post(SWITCH, json={"organization_id": bob.org_id}, headers=alice.headers)).get_json()
    # A refresh racing the switch (same old token, inside the grace window) gets the switch's
    # successor, for the new organization.
    raced = await client.post("/api/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
    assert raced.status_code == 200
    assert (await raced.get_json())["refresh_token"] == switched["refresh_token"]
    # Logout with the new token ends the session: the old access token is refused too.
    await client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {switched['access_token']}"})
    await error_of(await client.get(CURRENT, headers=alice.headers), 401, "INVALID_TOKEN")


@pytest.mark.parametrize("target", ["other", "unknown", "malformed"])
async def test_switch_to_an_organization_of_which_the_caller_is_not_a_member_is_403(
    client: Any, alice: Account, bob: Account, target: str
) -> None:
    org_id = {"other": bob.org_id, "unknown": str(uuid.uuid4()), "malformed": "not-an-id"}[target]
    response = await client.post(SWITCH, json={"organization_id": org_id}, headers=alice.headers)
    body = await error_of(response, 403, "FORBIDDEN")
    assert set(body) == {"detail", "code", "message"}
    # Nothing changed: the same tokens still work where they did.
    me = await (await client.get("/api/v1/auth/me", headers=alice.headers)).get_json()
    assert me["org_id"] == alice.org_id
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
    assert refreshed.status_code == 200


@pytest.mark.parametrize("body", [{}, {"organization_id": ""}, {"organization_id": 5}, {"organization_id": None}])
async def test_switch_without_an_organization_is_a_422(client: Any, alice: Account, body: dict[str, Any]) -> None:
    response = await client.post(SWITCH, json=body, headers=alice.headers)
    await error_of(response, 422, "VALIDATION_ERROR")


async def test_switch_needs_a_live_session(client: Any, kijko: Kijko, alice: Account, bob: Account) -> None:
    await join(kijko, alice, bob.org_id, "member")
    await error_of(await client.post(SWITCH, json={"organization_id": bob.org_id}), 401, "INVALID_TOKEN")
    await client.post("/api/v1/auth/logout", headers=alice.headers)
    response = await client.post(SWITCH, json={"organization_id": bob.org_id}, headers=alice.headers)
    await error_of(response, 401, "INVALID_TOKEN")
    await error_of(await client.get(ORGS, headers=alice.headers), 401, "INVALID_TOKEN")


async def test_a_removed_member_can_still_switch_to_another_organization_of_theirs(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    member = await add_member(kijko, alice.org_id, "member")
    await join(kijko, member, bob.org_id, "viewer")
    await client.delete(member_path(member.user_id), headers=alice.headers)
    await error_of(await client.get(CURRENT, headers=member.headers), 403, "FORBIDDEN")
    listed = await (await client.get(ORGS, headers=member.headers)).get_json()
    assert [(o["id"], o["current"]) for o in listed] == [(bob.org_id, False)]
    back = await client.post(SWITCH, json={"organization_id": alice.org_id}, headers=member.headers)
    await error_of(back, 403, "FORBIDDEN")
    moved = await client.post(SWITCH, json={"organization_id": bob.org_id}, headers=member.headers)
    assert moved.status_code == 200
    headers = {"Authorization": f"Bearer {(await moved.get_json())['access_token']}"}
    assert (await (await client.get(CURRENT, headers=headers)).get_json())["id"] == bob.org_id


# --- user search ---------------------------------------------------------------------------------


async def test_search_finds_members_by_email_or_name_case_insensitively(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    grace = await add_member(kijko, alice.org_id, "viewer", first_name="Grace")
    await add_member(kijko, alice.org_id, "member", first_name="Charles")

    async def found(q: str, account: Account = alice) -> list[str]:
        response = await client.get(SEARCH, query_string={"q": q}, headers=account.headers)
        assert response.status_code == 200, await response.get_json()
        return [user["name"] for user in await response.get_json()]

    assert await found("GRACE") == ["Grace Member"]
    assert await found("grace member") == ["Grace Member"]
    assert await found("lovelace") == ["Alice Lovelace"]
    assert await found(alice.email.upper()[:10]) == ["Alice Lovelace"]
    assert await found("member", grace) == ["Charles Member", "Grace Member"]  # a viewer may search
    assert await found("nobody-like-this") == []
    body = await (await client.get(SEARCH, query_string={"q": "grace"}, headers=alice.headers)).get_json()
    assert body == [{"id": grace.user_id, "email": grace.email, "name": "Grace Member"}]


async def test_search_takes_like_wildcards_literally(client: Any, kijko: Kijko, alice: Account) -> None:
    await add_member(kijko, alice.org_id, "member", first_name="Per%cent")
    await add_member(kijko, alice.org_id, "member", first_name="Under_score")
    for q, names in (
        ("%", ["Per%cent Member"]),
        ("_", ["Under_score Member"]),
        ("r%c", ["Per%cent Member"]),
        ("\\", []),
    ):
        body = await (await client.get(SEARCH, query_string={"q": q}, headers=alice.headers)).get_json()
        assert [user["name"] for user in body] == names, q


async def test_search_answers_at_most_ten(client: Any, kijko: Kijko, alice: Account) -> None:
    for _ in range(11):
        await add_member(kijko, alice.org_id, "viewer", first_name="Twin")
    body = await (await client.get(SEARCH, query_string={"q": "twin"}, headers=alice.headers)).get_json()
    assert len(body) == 10


async def test_search_never_shows_users_of_another_organization(client: Any, kijko: Kijko, alice: Account) -> None:
    same_name_elsewhere = await sign_up(client, first_name="Alice")  # "Alice Lovelace", her own organization
    mallory = await add_member(kijko, same_name_elsewhere.org_id, "member", first_name="Mallory")
    body = await (await client.get(SEARCH, query_string={"q": "alice lovelace"}, headers=alice.headers)).get_json()
    assert [user["id"] for user in body] == [alice.user_id]
    for q in (mallory.email, same_name_elsewhere.email, "mallory"):
        assert await (await client.get(SEARCH, query_string={"q": q}, headers=alice.headers)).get_json() == []
    theirs = await (
        await client.get(SEARCH, query_string={"q": "alice"}, headers=same_name_elsewhere.headers)
    ).get_json()
    assert [user["id"] for user in theirs] == [same_name_elsewhere.user_id]


async def test_search_without_text_finds_nobody(client: Any, alice: Account) -> None:
    for query in ({}, {"q": ""}, {"q": "   "}):
        response = await client.get(SEARCH, query_string=query, headers=alice.headers)
        assert response.status_code == 200 and await response.get_json() == []


async def test_search_text_over_100_characters_is_a_422(client: Any, alice: Account) -> None:
    response = await client.get(SEARCH, query_string={"q": "x" * 101}, headers=alice.headers)
    assert (await error_of(response, 422, "VALIDATION_ERROR"))["field"] == "q"


# --- the rule, cell by cell, and the database holding it ---------------------------------------


def rule(caller: OrgRole, target: OrgRole, new: OrgRole | None, *, has_owner: bool = True) -> str:
    who = Principal(uuid.uuid4(), uuid.uuid4(), "session", frozenset({caller}), datetime.now(UTC))
    try:
        authorize_member_change(who, target, new, organization_has_owner=has_owner)
    except Forbidden:
        return "403"
    return "ok"


@pytest.mark.parametrize("caller", list(OrgRole))
@pytest.mark.parametrize("target", list(OrgRole))
@pytest.mark.parametrize("new", [*OrgRole, None], ids=lambda new: f"to-{new}" if new else "remove")
def test_member_change_rule_per_cell(caller: OrgRole, target: OrgRole, new: OrgRole | None) -> None:
    """Written from the rule (decision 0070), independently of the module: owners anything;
    admins anything not touching an owner; members and viewers nothing."""
    if caller == OrgRole.OWNER:
        expected = "ok"
    elif caller == OrgRole.ADMIN:
        expected = "403" if OrgRole.OWNER in (target, new) else "ok"
    else:
        expected = "403"
    assert rule(caller, target, new) == expected
    # Where no owner is left (an erased sole owner), naming one is an admin's too.
    if target != OrgRole.OWNER:
        assert rule(caller, target, new, has_owner=False) == (
            "403" if caller in (OrgRole.MEMBER, OrgRole.VIEWER) else "ok"
        )


async def test_an_admin_names_an_owner_when_the_only_owner_was_erased(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    admin = await add_member(kijko, alice.org_id, "admin")
    member = await add_member(kijko, alice.org_id, "member")
    erasure = await erase_user(kijko.system_db, UUID(alice.user_id))
    assert erasure.ownerless_organizations == [UUID(alice.org_id)]
    refused = await client.patch(member_path(admin.user_id), json={"role": "owner"}, headers=member.headers)
    await error_of(refused, 403, "FORBIDDEN")
    named = await client.patch(member_path(admin.user_id), json={"role": "owner"}, headers=admin.headers)
    assert named.status_code == 200 and (await named.get_json())["role"] == "owner"
    # From then on the usual rule: only owners touch owners.
    other_admin = await add_member(kijko, alice.org_id, "admin")
    again = await client.patch(member_path(member.user_id), json={"role": "owner"}, headers=other_admin.headers)
    await error_of(again, 403, "FORBIDDEN")
    assert await roles_in(kijko, alice.org_id) == {
        admin.user_id: "owner",
        member.user_id: "member",
        other_admin.user_id: "admin",
    }


async def test_sql_on_the_app_role_cannot_promote_its_caller(client: Any, kijko: Kijko, alice: Account) -> None:
    """The member functions hold the rules themselves: a member's own tenant context cannot
    make them owner, and the table stays unwritable on the app role."""
    member = await add_member(kijko, alice.org_id, "member")
    for statement in (
        "SELECT * FROM kijko.change_member_role($1, 'owner')",
        "SELECT kijko.remove_member($2)",
    ):
        with pytest.raises(asyncpg.PostgresError) as refused:
            async with tenant_session(kijko.app_db, member.identity) as db:
                target = alice.user_id if "remove" in statement else member.user_id
                await db.fetch(statement.replace("$2", "$1"), UUID(target))
        assert refused.value.sqlstate == "KJ403"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with tenant_session(kijko.app_db, member.identity) as db:
            await db.execute("UPDATE kijko.memberships SET role = 'owner' WHERE user_id = $1", UUID(member.user_id))
    assert (await roles_in(kijko, alice.org_id))[member.user_id] == "member"


async def test_without_a_context_the_member_functions_see_and_do_nothing(
    attacker: asyncpg.Connection, alice: Account
) -> None:
    assert await attacker.fetch("SELECT * FROM kijko.organization_members()") == []
    with pytest.raises(asyncpg.PostgresError) as refused:
        await attacker.fetch("SELECT * FROM kijko.change_member_role($1, 'viewer')", UUID(alice.user_id))
    assert refused.value.sqlstate == "KJ403"


async def test_the_database_refuses_what_the_rule_refuses_even_when_asked_directly(
    kijko: Kijko, alice: Account
) -> None:
    admin = await add_member(kijko, alice.org_id, "admin")
    cases = (
        (admin, "SELECT * FROM kijko.change_member_role($1, 'member')", alice.user_id, "KJ403"),
        (admin, "SELECT * FROM kijko.change_member_role($1, 'owner')", admin.user_id, "KJ403"),
        (admin, "SELECT kijko.remove_member($1)", alice.user_id, "KJ403"),
        (alice, "SELECT * FROM kijko.change_member_role($1, 'admin')", alice.user_id, "KJ409"),
        (alice, "SELECT kijko.remove_member($1)", alice.user_id, "KJ409"),
        (alice, "SELECT kijko.remove_member($1)", str(uuid.uuid4()), "KJ404"),
        (alice, "SELECT * FROM kijko.change_member_role($1, 'root')", admin.user_id, "22023"),
    )
    for caller, statement, target, sqlstate in cases:
        with pytest.raises(asyncpg.PostgresError) as refused:
            async with tenant_session(kijko.app_db, caller.identity) as db:
                await db.fetch(statement, UUID(target))
        assert refused.value.sqlstate == sqlstate, (statement, target)
    assert await roles_in(kijko, alice.org_id) == {alice.user_id: "owner", admin.user_id: "admin"}


async def test_a_refresh_racing_a_switch_neither_fails_nor_deadlocks(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    await join(kijko, alice, bob.org_id, "member")
    current = alice
    for _ in range(10):
        switched, refreshed = await asyncio.gather(
            client.post(SWITCH, json={"organization_id": bob.org_id}, headers=current.headers),
            client.post("/api/v1/auth/refresh", json={"refresh_token": current.refresh_token}),
        )
        assert (switched.status_code, refreshed.status_code) == (200, 200)
        pair, other = await switched.get_json(), await refreshed.get_json()
        me = await (await client.get("/api/v1/auth/me", headers=bearer(pair["access_token"]))).get_json()
        assert me["org_id"] == bob.org_id
        # Whichever ran first, the refresh's answer continues the same family, in Bob's
        # organization now.
        again = await client.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
        assert again.status_code == 200
        tokens = await again.get_json()
        me = await (await client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))).get_json()
        assert me["org_id"] == bob.org_id
        back = await client.post(SWITCH, json={"organization_id": alice.org_id}, headers=bearer(tokens["access_token"]))
        assert back.status_code == 200
        fresh = await back.get_json()
        current = with_token(alice, fresh["access_token"], fresh["refresh_token"], alice.org_id)
