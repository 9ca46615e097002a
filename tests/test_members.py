"""Project members and invitations (PROJ-11..17, contract §2.2.3, §2.2.4) over HTTP, with the
invitation link read from the mail outbox and the events read from the in-process port."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from kijko_core.db.session import system_session
from kijko_core.logging import configure_logging
from kijko_core.runtime import Kijko
from tests.apps import running
from tests.conftest import Account, sign_up
from tests.invitations import (
    API,
    LINKS,
    MEMBER_OPERATIONS,
    accept,
    invite,
    invited,
    joined,
    link_token,
    mails_to,
    org_role,
    recorded,
)
from tests.memberships import add_member
from tests.projects import created
from tests.quotas_kit import answered_when_spent
from tests.test_openapi_errors import answers_not_as_documented, documented_errors, openapi

MEMBER_KEYS = {
    "id",
    "projectId",
    "userId",
    "email",
    "name",
    "avatarUrl",
    "role",
    "notifyOnIngestion",
    "notifyOnError",
    "notifyOnTeamChanges",
    "invitedAt",
    "acceptedAt",
    "lastActiveAt",
}


def fresh_email(tag: str = "invitee") -> str:
    return f"{tag}-{uuid4().hex[:10]}@example.com"


async def members(client: Any, account: Account, project_id: str, path: str = "members") -> list[dict[str, Any]]:
    response = await client.get(f"{API}/{project_id}/{path}", headers=account.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    body: list[dict[str, Any]] = await response.get_json()
    return body


# --- adding a member ---------------------------------------------------------------------------


async def test_adding_a_member_invites_them_by_mail(client: Any, kijko: Kijko, alice: Account) -> None:
    project = await created(client, alice, "Invites")
    email = fresh_email()
    response = await invite(
        client, alice, project["id"], email, "manager", notifyOnError=False, inviteMessage="Welcome <b>aboard</b>"
    )
    assert response.status_code == 201
    member = await response.get_json()
    assert set(member) == MEMBER_KEYS
    assert (member["projectId"], member["userId"], member["email"], member["role"]) == (
        project["id"],
        "",
        email,
        "manager",
    )
    assert member["acceptedAt"] is None and member["invitedAt"].endswith("Z")
    assert (member["notifyOnIngestion"], member["notifyOnError"], member["notifyOnTeamChanges"]) == (True, False, True)

    everyone = await members(client, alice, project["id"])
    assert [m["email"] for m in everyone] == [alice.email, email]  # the creator first, as admin
    assert everyone[0]["role"] == "admin" and everyone[0]["acceptedAt"] is not None
    assert await members(client, alice, project["id"], "invitations/pending") == [member]

    [mail] = await mails_to(kijko, email)
    assert mail["template"] == "invitation" and str(mail["organization_id"]) == alice.org_id
    assert mail["subject"] == "Alice Lovelace invited you to Invites on Kijko"
    token = await link_token(kijko, email)
    assert f"http://localhost:3000/invitations/accept?token={token}" in mail["text_body"]
    assert "Welcome <b>aboard</b>" in mail["text_body"]
    assert "Welcome &lt;b&gt;aboard&lt;/b&gt;" in mail["html_body"]  # escaped in HTML
    async with system_session(kijko.system_db, readonly=True) as db:
        stored = await db.fetchval(
            "SELECT count(*) FROM kijko.project_invitations WHERE token_hash = $1", token.encode()
        )
    assert stored == 0  # only its hash is kept


async def test_member_changes_are_published_after_commit(client: Any, alice: Account) -> None:
    project = await created(client, alice, "Evented")
    email = fresh_email()
    member = await invited(client, alice, project["id"], email, "developer")
    [added] = [e for e in recorded(project["id"], "project_user:added") if e.data["email"] == email]
    assert added.data == {
        "id": member["id"],
        "project_id": project["id"],
        "user_id": "",
        "email": email,
        "name": email,
        "role": "editor",
        "added_at": added.data["added_at"],
        "added_by": alice.user_id,
        "avatar_url": None,
    }
    activity = recorded(project["id"], "activity:new")[-1].data
    assert activity["type"] == "permission" and activity["user"]["id"] == alice.user_id
    assert activity["user"]["email"] == alice.email and email in activity["description"]

    response = await client.put(
        f"{API}/{project['id']}/members/{member['id']}", json={"role": "viewer"}, headers=alice.headers
    )
    assert response.status_code == 200 and (await response.get_json())["role"] == "viewer"
    assert recorded(project["id"], "project_user:updated")[-1].data["role"] == "viewer"

    # A refused change publishes nothing (the transaction rolled back).
    before = len(recorded(project["id"]))
    again = await invite(client, alice, project["id"], email.upper())
    assert again.status_code == 409
    assert len(recorded(project["id"])) == before

    response = await client.delete(f"{API}/{project['id']}/members/{member['id']}", headers=alice.headers)
    assert response.status_code == 200 and await response.get_json() == {"success": True}
    removed = recorded(project["id"], "project_user:removed")[-1].data
    assert removed["id"] == member["id"] and removed["email"] == email
    # The creator's own admin row was announced on create, as the project's owner.
    creator = recorded(project["id"], "project_user:added")[0].data
    assert (creator["user_id"], creator["role"]) == (alice.user_id, "owner")


async def test_an_existing_address_is_member_exists_case_insensitively(client: Any, alice: Account) -> None:
    project = await created(client, alice, "Dupes")
    email = fresh_email()
    await invited(client, alice, project["id"], email)
    for again in (email, email.upper(), f"  {email.title()} ", alice.email.upper()):
        response = await invite(client, alice, project["id"], again)
        body = await response.get_json()
        assert (response.status_code, body["code"], body.get("field")) == (409, "MEMBER_EXISTS", "email"), again
    assert len(await members(client, alice, project["id"])) == 2


@pytest.mark.parametrize("email", ["not-an-email", "a@", "@b.c", "two@at@x.io", "line\nbreak@x.io"])
async def test_a_bad_address_is_a_validation_error(client: Any, alice: Account, email: str) -> None:
    project = await created(client, alice, "Bad addresses")
    response = await invite(client, alice, project["id"], email)
    body = await response.get_json()
    assert response.status_code == 422 and body["field"] == "email", body
    assert len(await members(client, alice, project["id"])) == 1


async def test_bad_roles_and_unknown_members(client: Any, alice: Account) -> None:
    project = await created(client, alice, "Unknowns")
    response = await invite(client, alice, project["id"], fresh_email(), "owner")
    assert response.status_code == 422 and (await response.get_json())["field"] == "role"
    other = await created(client, alice, "Other project")
    elsewhere = await invited(client, alice, other["id"], fresh_email())
    for member_id in (str(uuid4()), "not-a-uuid", elsewhere["id"]):
        for method in ("PUT", "DELETE"):
            response = await client.open(
                f"{API}/{project['id']}/members/{member_id}",
                method=method,
                json={"role": "viewer"},
                headers=alice.headers,
            )
            body = await response.get_json()
            assert (response.status_code, body["code"]) == (404, "MEMBER_NOT_FOUND"), (member_id, method)
        for method, path in (("POST", f"{member_id}/resend"), ("DELETE", member_id)):
            response = await client.open(
                f"{API}/{project['id']}/invitations/{path}", method=method, headers=alice.headers
            )
            assert (await response.get_json())["code"] == "MEMBER_NOT_FOUND"
    response = await client.put(
        f"{API}/{project['id']}/members/{elsewhere['id']}", json={"role": None}, headers=alice.headers
    )
    assert response.status_code in (404, 422)


# --- bulk invitations ---------------------------------------------------------------------------


async def test_bulk_invitations_answer_per_row(client: Any, kijko: Kijko, alice: Account) -> None:
    project = await created(client, alice, "Bulk")
    existing = fresh_email("existing")
    await invited(client, alice, project["id"], existing)
    levels = {
        "real-time": (True, True, True),
        "daily": (True, True, False),
        "weekly": (True, True, False),
        "disabled": (False, False, False),
    }
    fresh = {level: fresh_email(level) for level in levels}
    rows = [{"email": fresh[level], "role": "viewer", "notificationLevel": level} for level in levels]
    rows += [
        {"email": "nope", "role": "viewer", "notificationLevel": "daily"},
        {"email": existing.upper(), "role": "developer", "notificationLevel": "daily"},
        {"email": fresh["daily"], "role": "auditor", "notificationLevel": "weekly"},  # twice in one request
    ]
    response = await client.post(
        f"{API}/{project['id']}/invitations", json={"invitations": rows}, headers=alice.headers
    )
    assert response.status_code == 200
    body = await response.get_json()
    assert (body["success"], body["totalSent"], body["totalFailed"]) == (False, 4, 3)
    results = body["results"]
    assert [r["status"] for r in results] == ["sent"] * 4 + ["failed"] * 3
    assert [r.get("error") for r in results[4:]] == [
        "Invalid email format",
        "Member already exists",
        "Member already exists",
    ]
    assert all(r["memberId"] for r in results[:4]) and not any(r.get("memberId") for r in results[4:])

    by_email = {m["email"]: m for m in await members(client, alice, project["id"])}
    for level, flags in levels.items():
        member = by_email[fresh[level]]
        assert (member["notifyOnIngestion"], member["notifyOnError"], member["notifyOnTeamChanges"]) == flags, level
        assert len(await mails_to(kijko, fresh[level])) == 1
    assert len(by_email) == 1 + 1 + 4

    ok = await client.post(
        f"{API}/{project['id']}/invitations",
        json={"invitations": [{"email": fresh_email(), "role": "admin", "notificationLevel": "disabled"}]},
        headers=alice.headers,
    )
    assert (await ok.get_json())["success"] is True
    for bad in ({}, {"invitations": []}, {"invitations": [{"email": "x@y.z"}]}, [{"email": "x@y.z"}]):
        response = await client.post(f"{API}/{project['id']}/invitations", json=bad, headers=alice.headers)
        assert response.status_code in (400, 422), bad


# --- the link: preview, accept ------------------------------------------------------------------


async def test_a_signup_with_a_pending_invitation_gets_its_own_organization_and_accepts_by_the_link(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    project = await created(client, alice, "Joinable")
    email = fresh_email("newcomer")
    member = await invited(client, alice, project["id"], email, "developer")
    token = await link_token(kijko, email)

    preview = await client.get(f"{LINKS}/{token}")  # no token: public
    assert preview.status_code == 200
    shown = await preview.get_json()
    assert set(shown) == {"projectName", "organizationName", "inviter", "expiresAt"}
    assert (shown["projectName"], shown["inviter"]) == ("Joinable", {"name": "Alice Lovelace"})
    assert shown["organizationName"] == "Alice Lovelace" and shown["expiresAt"].endswith("Z")
    assert preview.headers["Cache-Control"] == "no-store"

    newcomer = await sign_up(client, email=email.upper(), first_name="Nia")
    assert newcomer.org_id != alice.org_id  # their own organization, as the owner
    assert await org_role(kijko, newcomer.org_id, newcomer.user_id) == "owner"
    assert await org_role(kijko, alice.org_id, newcomer.user_id) is None

    response = await accept(client, newcomer, token)
    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert (body["projectId"], body["organizationId"]) == (project["id"], alice.org_id)
    assert body["member"]["id"] == member["id"] and body["member"]["userId"] == newcomer.user_id
    assert body["member"]["acceptedAt"] is not None and body["member"]["name"] == "Nia Lovelace"
    assert await org_role(kijko, alice.org_id, newcomer.user_id) == "member"
    assert await members(client, alice, project["id"], "invitations/pending") == []
    updated = recorded(project["id"], "project_user:updated")[-1].data
    assert (updated["id"], updated["user_id"]) == (member["id"], newcomer.user_id)

    # The link is used up.
    again = await accept(client, newcomer, token)
    assert (again.status_code, (await again.get_json())["code"]) == (409, "ALREADY_ACCEPTED")
    looked = await client.get(f"{LINKS}/{token}")
    assert (looked.status_code, (await looked.get_json())["code"]) == (409, "ALREADY_ACCEPTED")
    for path in ("resend", ""):
        method = "POST" if path else "DELETE"
        refused = await client.open(
            f"{API}/{project['id']}/invitations/{member['id']}/{path}".rstrip("/"), method=method, headers=alice.headers
        )
        assert (refused.status_code, (await refused.get_json())["code"]) == (409, "ALREADY_ACCEPTED")


@pytest.mark.parametrize(
    ("project_role", "expected_org_role"),
    [("admin", "member"), ("manager", "member"), ("developer", "member"), ("viewer", "viewer"), ("auditor", "viewer")],
)
async def test_accepting_joins_the_organization_with_the_role_the_project_role_needs(
    client: Any, kijko: Kijko, alice: Account, bob: Account, project_role: str, expected_org_role: str
) -> None:
    project = await created(client, alice, "Org roles")
    await joined(client, kijko, alice, project["id"], bob, project_role)
    assert await org_role(kijko, alice.org_id, bob.user_id) == expected_org_role


async def test_an_existing_org_membership_is_left_as_it_is(client: Any, kijko: Kijko, alice: Account) -> None:
    project = await created(client, alice, "Kept roles")
    admin = await add_member(kijko, alice.org_id, "admin")
    await joined(client, kijko, alice, project["id"], admin, "viewer")
    assert await org_role(kijko, alice.org_id, admin.user_id) == "admin"


async def test_only_the_invited_address_can_accept(client: Any, kijko: Kijko, alice: Account, bob: Account) -> None:
    project = await created(client, alice, "Addressed")
    email = fresh_email()
    await invited(client, alice, project["id"], email)
    token = await link_token(kijko, email)
    response = await accept(client, bob, token)
    body = await response.get_json()
    assert (response.status_code, body["code"]) == (403, "INVITATION_EMAIL_MISMATCH")
    assert set(body) == {"detail", "code", "message"}
    assert await org_role(kijko, alice.org_id, bob.user_id) is None
    assert len(await members(client, alice, project["id"], "invitations/pending")) == 1


async def test_unknown_tokens_and_anonymous_accepts(client: Any, alice: Account) -> None:
    for token in ("x", "A" * 43, "%00", "a" * 300):
        response = await client.get(f"{LINKS}/{token}")
        assert (response.status_code, (await response.get_json())["code"]) == (404, "INVITATION_NOT_FOUND"), token
    response = await accept(client, alice, "A" * 43)
    assert (response.status_code, (await response.get_json())["code"]) == (404, "INVITATION_NOT_FOUND")
    anonymous = await client.post(f"{LINKS}/accept", json={"token": "A" * 43})
    assert anonymous.status_code == 401
    for bad in ({}, {"token": ""}, {"token": 5}):
        response = await client.post(f"{LINKS}/accept", json=bad, headers=alice.headers)
        assert response.status_code == 422, bad


async def test_an_expired_invitation_is_gone(client: Any, kijko: Kijko, alice: Account, bob: Account) -> None:
    project = await created(client, alice, "Expiring")
    member = await invited(client, alice, project["id"], bob.email)
    token = await link_token(kijko, bob.email)
    async with system_session(kijko.system_db) as db:
        ttl = await db.fetchval(
            "SELECT expires_at - created_at FROM kijko.project_invitations WHERE member_id = $1", UUID(member["id"])
        )
        assert ttl.total_seconds() == 168 * 3600  # KIJKO_INVITATION_TTL_HOURS' default
        # The time passes (the database's clock decides expiry).
        await db.execute(
            "UPDATE kijko.project_invitations SET expires_at = now() - interval '1 second' WHERE member_id = $1",
            UUID(member["id"]),
        )
    for response in (await client.get(f"{LINKS}/{token}"), await accept(client, bob, token)):
        assert (response.status_code, (await response.get_json())["code"]) == (410, "INVITATION_EXPIRED")
    assert await org_role(kijko, alice.org_id, bob.user_id) is None
    # A resend brings it back with a new link and a fresh expiry.
    response = await client.post(f"{API}/{project['id']}/invitations/{member['id']}/resend", headers=alice.headers)
    assert response.status_code == 200
    assert await response.get_json() == {"email": bob.email, "status": "sent", "memberId": member["id"], "error": None}
    fresh_token = await link_token(kijko, bob.email)
    assert (await accept(client, bob, fresh_token)).status_code == 200


async def test_a_resend_replaces_the_link_and_is_limited_per_hour(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    project = await created(client, alice, "Resent")
    member = await invited(client, alice, project["id"], bob.email)
    tokens = [await link_token(kijko, bob.email)]
    resend = f"{API}/{project['id']}/invitations/{member['id']}/resend"
    for _ in range(3):  # KIJKO_INVITATION_RESENDS_PER_HOUR's default
        response = await client.post(resend, headers=alice.headers)
        assert response.status_code == 200
        tokens.append(await link_token(kijko, bob.email))
    assert len(set(tokens)) == 4 and len(await mails_to(kijko, bob.email)) == 4
    limited = await client.post(resend, headers=alice.headers)
    body = await limited.get_json()
    assert (limited.status_code, body["code"]) == (429, "RATE_LIMITED")
    retry_after = int(limited.headers["Retry-After"])
    assert 3500 <= retry_after <= 3600 and body["details"]["retryAfter"] == retry_after
    assert len(await mails_to(kijko, bob.email)) == 4
    # Only the newest link opens anything.
    for old in tokens[:-1]:
        assert (await client.get(f"{LINKS}/{old}")).status_code == 404
        assert (await accept(client, bob, old)).status_code == 404
    # An hour later the window has passed.
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.project_invitations SET resend_window_started_at = now() - interval '1 hour'"
            " WHERE member_id = $1",
            UUID(member["id"]),
        )
    assert (await client.post(resend, headers=alice.headers)).status_code == 200
    assert (await accept(client, bob, await link_token(kijko, bob.email))).status_code == 200


async def test_cancelling_an_invitation_kills_the_link(client: Any, kijko: Kijko, alice: Account, bob: Account) -> None:
    project = await created(client, alice, "Cancelled")
    member = await invited(client, alice, project["id"], bob.email)
    token = await link_token(kijko, bob.email)
    response = await client.delete(f"{API}/{project['id']}/invitations/{member['id']}", headers=alice.headers)
    assert response.status_code == 200 and await response.get_json() == {"success": True}
    assert (await client.get(f"{LINKS}/{token}")).status_code == 404
    assert (await accept(client, bob, token)).status_code == 404
    assert [m["email"] for m in await members(client, alice, project["id"])] == [alice.email]
    assert recorded(project["id"], "project_user:removed")[-1].data["id"] == member["id"]


async def test_two_accepts_of_one_token_at_once_one_wins(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    project = await created(client, alice, "Raced accept")
    await invited(client, alice, project["id"], bob.email)
    token = await link_token(kijko, bob.email)
    first, second = await asyncio.gather(accept(client, bob, token), accept(client, bob, token))
    statuses = sorted([first.status_code, second.status_code])
    assert statuses == [200, 409], statuses
    async with system_session(kijko.system_db, readonly=True) as db:
        count = await db.fetchval(
            "SELECT count(*) FROM kijko.memberships WHERE organization_id = $1 AND user_id = $2",
            UUID(alice.org_id),
            UUID(bob.user_id),
        )
    assert count == 1


async def test_the_preview_is_rate_limited_per_address(client: Any, kijko: Kijko, alice: Account) -> None:
    seen = []
    for _ in range(kijko.settings.rate_limit_invitation_lookup_per_minute + 1):
        seen.append((await client.get(f"{LINKS}/{'B' * 43}")).status_code)
    assert seen[:-1] == [404] * (len(seen) - 1) and seen[-1] == 429


# --- project roles over HTTP -------------------------------------------------------------------


async def member_with(client: Any, kijko: Kijko, alice: Account, project: dict[str, Any], role: str) -> Account:
    """A user of alice's organization (org role member) who joined ``project`` as ``role``."""
    user = await add_member(kijko, alice.org_id, "member", first_name=role.title())
    await joined(client, kijko, alice, project["id"], user, role)
    return user


ROLE_CELLS = {
    # role: (rename, change privacy, invite a developer, invite an admin, delete the project)
    "admin": (200, 200, 201, 201, 200),
    "manager": (200, 200, 201, 403, 403),
    "developer": (200, 403, 403, 403, 403),
    "viewer": (403, 403, 403, 403, 403),
    "auditor": (403, 403, 403, 403, 403),
}


@pytest.mark.parametrize("role", list(ROLE_CELLS))
async def test_project_roles_decide_what_a_member_may_do(client: Any, kijko: Kijko, alice: Account, role: str) -> None:
    project = await created(client, alice, f"Roles {role}")  # private
    user = await member_with(client, kijko, alice, project, role)
    path = f"{API}/{project['id']}"
    assert (await client.get(path, headers=user.headers)).status_code == 200  # private, but a member
    assert project["id"] in {p["id"] for p in (await (await client.get(API, headers=user.headers)).get_json())["data"]}
    got = (
        (await client.patch(path, json={"name": f"Renamed {role}"}, headers=user.headers)).status_code,
        (await client.patch(path, json={"privacy": "shared"}, headers=user.headers)).status_code,
        (await invite(client, user, project["id"], fresh_email(), "developer")).status_code,
        (await invite(client, user, project["id"], fresh_email(), "admin")).status_code,
        (await client.delete(path, headers=user.headers)).status_code,
    )
    assert got == ROLE_CELLS[role]


async def test_a_manager_cannot_touch_admins_or_make_one(client: Any, kijko: Kijko, alice: Account) -> None:
    project = await created(client, alice, "Managed")
    manager = await member_with(client, kijko, alice, project, "manager")
    developer = await member_with(client, kijko, alice, project, "developer")
    by_email = {m["email"]: m for m in await members(client, alice, project["id"])}
    creator, dev = by_email[alice.email], by_email[developer.email]
    url = f"{API}/{project['id']}/members"
    assert (await client.put(f"{url}/{dev['id']}", json={"role": "admin"}, headers=manager.headers)).status_code == 403
    assert (await client.put(f"{url}/{dev['id']}", json={"role": "viewer"}, headers=manager.headers)).status_code == 200
    assert (
        await client.put(f"{url}/{creator['id']}", json={"role": "viewer"}, headers=manager.headers)
    ).status_code == 403
    assert (await client.delete(f"{url}/{creator['id']}", headers=manager.headers)).status_code == 403
    mine = by_email[manager.email]
    assert (await client.put(f"{url}/{mine['id']}", json={"role": "admin"}, headers=manager.headers)).status_code == 403
    bulk = await client.post(
        f"{API}/{project['id']}/invitations",
        json={"invitations": [{"email": fresh_email(), "role": "admin", "notificationLevel": "daily"}]},
        headers=manager.headers,
    )
    assert (await bulk.get_json())["results"][0]["status"] == "failed"
    assert (await client.delete(f"{url}/{dev['id']}", headers=manager.headers)).status_code == 200
    assert by_email[alice.email]["role"] == "admin"


async def test_members_change_their_own_flags_and_may_leave(client: Any, kijko: Kijko, alice: Account) -> None:
    project = await created(client, alice, "Own flags")
    viewer = await member_with(client, kijko, alice, project, "viewer")
    mine = next(m for m in await members(client, viewer, project["id"]) if m["email"] == viewer.email)
    url = f"{API}/{project['id']}/members/{mine['id']}"
    response = await client.patch(url, json={"notifyOnIngestion": False}, headers=viewer.headers)
    assert response.status_code == 200 and (await response.get_json())["notifyOnIngestion"] is False
    assert (await client.put(url, json={"role": "admin"}, headers=viewer.headers)).status_code == 403
    creator = next(m for m in await members(client, viewer, project["id"]) if m["email"] == alice.email)
    patched = await client.patch(
        f"{API}/{project['id']}/members/{creator['id']}", json={"notifyOnError": False}, headers=viewer.headers
    )
    assert patched.status_code == 403
    assert (await client.delete(url, headers=viewer.headers)).status_code == 200
    # Gone from a private project: it is invisible again.
    response = await client.get(f"{API}/{project['id']}", headers=viewer.headers)
    assert (response.status_code, (await response.get_json())["code"]) == (404, "PROJECT_NOT_FOUND")


async def test_a_pending_invitee_of_the_organization_does_not_see_the_private_project(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    project = await created(client, alice, "Not yet")
    user = await add_member(kijko, alice.org_id, "member")
    await invited(client, alice, project["id"], user.email, "admin")
    assert (await client.get(f"{API}/{project['id']}", headers=user.headers)).status_code == 404
    assert (await accept(client, user, await link_token(kijko, user.email))).status_code == 200
    assert (await client.get(f"{API}/{project['id']}", headers=user.headers)).status_code == 200


async def test_an_org_viewer_with_a_writing_project_role_only_reads(client: Any, kijko: Kijko, alice: Account) -> None:
    project = await created(client, alice, "Capped")
    viewer = await add_member(kijko, alice.org_id, "viewer")
    await joined(client, kijko, alice, project["id"], viewer, "developer")
    path = f"{API}/{project['id']}"
    assert (await client.get(path, headers=viewer.headers)).status_code == 200
    assert (await client.patch(path, json={"name": "Viewer rename"}, headers=viewer.headers)).status_code == 403


async def test_members_of_another_organizations_project_are_not_found(
    client: Any, alice: Account, bob: Account
) -> None:
    project = await created(client, alice, "Foreign")
    member = await invited(client, alice, project["id"], fresh_email())
    for method, path in (
        ("GET", "members"),
        ("GET", "invitations/pending"),
        ("PUT", f"members/{member['id']}"),
        ("DELETE", f"members/{member['id']}"),
        ("POST", f"invitations/{member['id']}/resend"),
        ("DELETE", f"invitations/{member['id']}"),
    ):
        response = await client.open(
            f"{API}/{project['id']}/{path}", method=method, json={"role": "viewer"}, headers=bob.headers
        )
        body = await response.get_json()
        assert (response.status_code, body["code"]) == (404, "PROJECT_NOT_FOUND"), path
    # And a project of bob's with alice's member id: the member is not found there.
    mine = await created(client, bob, "Bob's")
    response = await client.delete(f"{API}/{mine['id']}/members/{member['id']}", headers=bob.headers)
    assert (response.status_code, (await response.get_json())["code"]) == (404, "MEMBER_NOT_FOUND")
    assert len(await members(client, alice, project["id"])) == 2


async def test_the_invitation_mail_carries_no_token_in_its_subject_and_one_link(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    project = await created(client, alice, "Linked")
    email = fresh_email()
    await invited(client, alice, project["id"], email)
    [mail] = await mails_to(kijko, email)
    token = await link_token(kijko, email)
    assert token not in mail["subject"]
    assert len(re.findall(re.escape(token), mail["html_body"])) == 1


# --- every documented error, with its documented code -------------------------------------------


async def test_member_operations_document_exactly_their_errors(client: Any) -> None:
    spec = await openapi(client)
    for (method, path), statuses in MEMBER_OPERATIONS.items():
        assert set(documented_errors(spec, method, path)) == statuses | {"500"}, (method, path)
    assert "INVITATION_EMAIL_MISMATCH" in documented_errors(spec, "post", "/api/v1/invitations/accept")["403"]
    assert "MEMBER_NOT_FOUND" in documented_errors(spec, "put", f"{OP}/members/{{member_id}}")["404"]


OP = "/api/v1/projects/{project_id}"


async def test_every_documented_member_error_happens_with_its_documented_code(
    client: Any, kijko: Kijko, alice: Account, bob: Account, make_settings: Any, tmp_path: Path
) -> None:
    gone = await add_member(kijko, alice.org_id, "member")
    async with system_session(kijko.system_db) as db:
        await db.execute("DELETE FROM kijko.memberships WHERE user_id = $1", UUID(gone.user_id))
    viewer = await add_member(kijko, alice.org_id, "viewer")
    project = await created(client, alice, "Documented", privacy="shared")
    pid = project["id"]
    pending = await invited(client, alice, pid, fresh_email())
    accepted = await joined(client, kijko, alice, pid, bob, "viewer")
    expired = await invited(client, alice, pid, fresh_email())
    expired_token = await link_token(kijko, expired["email"])
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.project_invitations SET expires_at = now() - interval '1 second' WHERE member_id = $1",
            UUID(expired["id"]),
        )
        # One more resend would be over the hour's budget.
        await db.execute(
            "UPDATE kijko.project_invitations SET resend_window_started_at = now(), resends_in_window = 100"
            " WHERE member_id = $1",
            UUID(pending["id"]),
        )
    used = await link_token(kijko, bob.email)
    again = await add_member(kijko, alice.org_id, "member")
    already = await invited(client, alice, pid, again.email)
    already_token = await link_token(kijko, again.email)
    # MEMBER_EXISTS on accepting: the user is already on the project under another address.
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "INSERT INTO kijko.project_members (organization_id, project_id, user_id, email, role, accepted_at)"
            " VALUES ($1, $2, $3, $4, 'viewer', now())",
            UUID(alice.org_id),
            UUID(pid),
            UUID(again.user_id),
            f"other-{again.email}",
        )
    unknown = str(uuid4())

    def send(method: str, path: str, account: Account | None, **kwargs: Any) -> Any:
        headers = dict(account.headers) if account else {}
        return lambda: client.open(path, method=method.upper(), headers=headers, **kwargs)

    def raw(method: str, path: str, data: bytes, content_type: str = "application/json") -> Any:
        headers = {**alice.headers, "Content-Type": content_type}
        return lambda: client.open(path, method=method.upper(), headers=headers, data=data)

    huge = b'{"email": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    bodies = {
        ("post", f"{OP}/members"): {"email": fresh_email(), "role": "viewer"},
        ("put", f"{OP}/members/{{member_id}}"): {"role": "viewer"},
        ("patch", f"{OP}/members/{{member_id}}"): {"notifyOnError": True},
        ("post", f"{OP}/invitations"): {
            "invitations": [{"email": fresh_email(), "role": "viewer", "notificationLevel": "daily"}]
        },
        ("post", "/api/v1/invitations/accept"): {"token": "x" * 43},
    }
    triggers: dict[tuple[str, str], dict[str, Any]] = {}
    for (method, template), statuses in MEMBER_OPERATIONS.items():
        if "{token}" in template:
            continue
        path = template.format(project_id=pid, member_id=pending["id"])
        body = {"json": bodies[(method, template)]} if (method, template) in bodies else {}
        cases: dict[str, Any] = {"401": send(method, path, None, **body)}
        if "{project_id}" in template:
            cases["403"] = send(method, path, viewer, **body)  # reads the shared project, may not act
            cases["403 gone"] = send(method, path, gone, **body)  # left the organization
            cases["404"] = send(method, template.format(project_id=unknown, member_id=pending["id"]), alice, **body)
            if "{member_id}" in template:
                cases["404 member"] = send(method, template.format(project_id=pid, member_id=unknown), alice, **body)
        if "400" in statuses:
            cases["400"] = raw(method, path, b'{"email": ')
            cases["413"] = raw(method, path, huge)
            cases["415"] = raw(method, path, b"email=x", "application/x-www-form-urlencoded")
            cases["422"] = send(
                method,
                path,
                alice,
                json={"email": 5, "role": "nope", "invitations": 5, "token": 5, "notifyOnError": "x"},
            )
        triggers[(method, template)] = cases
    for method in ("get",):
        triggers[(method, f"{OP}/members")].pop("403")  # reading needs only read: viewers may
        triggers[(method, f"{OP}/invitations/pending")].pop("403")
    triggers[("post", f"{OP}/members")]["409"] = send(
        "post", f"{OP}/members".format(project_id=pid), alice, json={"email": bob.email.upper(), "role": "viewer"}
    )
    # 429: an organization (bob's) that spent its invitation mails of the hour.
    spent = await created(client, bob, "Spent")
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "INSERT INTO kijko.mail_outbox (organization_id, recipient, template, subject, state, finished_at)"
            " SELECT $1, 'someone@example.com', 'invitation', 'sent', 'sent', now() FROM generate_series(1, $2)",
            UUID(bob.org_id),
            kijko.settings.invitation_mails_per_hour,
        )
    triggers[("post", f"{OP}/members")]["429"] = send(
        "post", f"{OP}/members".format(project_id=spent["id"]), bob, json={"email": fresh_email(), "role": "viewer"}
    )
    # 429: no seat left on the plan (tests/test_quotas.py).

    async def add_spent(web: Any, owner: Account) -> Any:
        project = await created(web, owner, "Seated")
        path = f"{OP}/members".format(project_id=project["id"])
        return await web.post(path, json={"email": fresh_email(), "role": "viewer"}, headers=owner.headers)

    triggers[("post", f"{OP}/members")]["429 seats"] = await answered_when_spent(make_settings, tmp_path, add_spent)
    resend = f"{OP}/invitations/{{member_id}}/resend"
    triggers[("post", resend)]["409"] = send("post", resend.format(project_id=pid, member_id=accepted["id"]), alice)
    triggers[("post", resend)]["429"] = send("post", resend.format(project_id=pid, member_id=pending["id"]), alice)
    cancel = f"{OP}/invitations/{{member_id}}"
    triggers[("delete", cancel)]["409"] = send("delete", cancel.format(project_id=pid, member_id=accepted["id"]), alice)
    links = "/api/v1/invitations"
    triggers[("get", f"{links}/{{token}}")] = {
        "404": send("get", f"{links}/{'n' * 43}", None),
        "409": send("get", f"{links}/{used}", None),
        "410": send("get", f"{links}/{expired_token}", None),
    }

    async def over_the_limit() -> Any:
        # The whole budget of one address at once, then one more (the budget refills with time).
        scope = {"client": ("203.0.113.9", 51000)}
        for _ in range(kijko.settings.rate_limit_invitation_lookup_per_minute):
            await client.get(f"{links}/{'m' * 43}", scope_base=scope)
        return await client.get(f"{links}/{'m' * 43}", scope_base=scope)

    triggers[("get", f"{links}/{{token}}")]["429"] = over_the_limit
    accept_path = f"{links}/accept"
    triggers[("post", accept_path)].update(
        {
            "403 mismatch": send("post", accept_path, alice, json={"token": expired_token}),
            "404": send("post", accept_path, alice, json={"token": "n" * 43}),
            "409": send("post", accept_path, bob, json={"token": used}),
            "409 member": send("post", accept_path, again, json={"token": already_token}),
        }
    )
    expired_user = await add_member(kijko, alice.org_id, "member")
    late = await invited(client, alice, pid, expired_user.email)
    late_token = await link_token(kijko, expired_user.email)
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.project_invitations SET expires_at = now() - interval '1 second' WHERE member_id = $1",
            UUID(late["id"]),
        )
    triggers[("post", accept_path)]["410"] = send("post", accept_path, expired_user, json={"token": late_token})
    assert already["id"]

    # Only a Redis that is down answers 503 (the shared limiter; tests/test_openapi_errors.py).
    not_triggered = {("get", f"{links}/{{token}}"): {"503"}}
    spec = await openapi(client)
    problems = []
    for (method, template), statuses in MEMBER_OPERATIONS.items():
        cases = triggers[(method, template)]
        covered = {label.split()[0] for label in cases} | not_triggered.get((method, template), set())
        assert covered == statuses, (method, template, covered)
        problems += await answers_not_as_documented(method, template, cases, documented_errors(spec, method, template))
    assert problems == []


# --- migration 0009 -----------------------------------------------------------------------------


async def test_migration_0009_makes_every_existing_creator_the_admin_of_their_project(database: Any) -> None:
    from kijko_core.db import migrate as migrations
    from kijko_core.db.provision import drop_scratch, provision_scratch

    scratch = await provision_scratch(database.admin_dsn, prefix_hint="kb")
    try:
        shipped = migrations.shipped_migrations()
        before = [m for m in shipped if m.package != "kijko" or m.version < "0009"]
        await migrations.migrate(scratch.urls.migration, scratch.roles, migrations=before)
        admin = await asyncpg.connect(scratch.admin_url)
        try:
            user = await admin.fetchval(
                "INSERT INTO kijko_private.users (email, first_name, last_name)"
                " VALUES ('Founder@Example.com', 'Fay', 'Founder') RETURNING id"
            )
            org = await admin.fetchval("INSERT INTO kijko.organizations (name) VALUES ('Old') RETURNING id")
            await admin.execute(
                "INSERT INTO kijko.memberships (organization_id, user_id, role) VALUES ($1, $2, 'member')", org, user
            )
            made = await admin.fetchval(
                "INSERT INTO kijko.projects (organization_id, user_id, name, type)"
                " VALUES ($1, $2, 'Old project', 'manual') RETURNING id",
                org,
                user,
            )
            # A creator who has left the organization gets no admin row, nor does a project
            # whose creator was erased (decision 0018).
            gone = await admin.fetchval(
                "INSERT INTO kijko_private.users (email, first_name, last_name)"
                " VALUES ('left@example.com', 'Lee', 'Left') RETURNING id"
            )
            await admin.execute(
                "INSERT INTO kijko.projects (organization_id, user_id, name, type) VALUES ($1, $2, 'Left', 'files')",
                org,
                gone,
            )
            await admin.execute(
                "INSERT INTO kijko.projects (organization_id, user_id, name, type)"
                " VALUES ($1, NULL, 'Orphan', 'files')",
                org,
            )
            await migrations.migrate(scratch.urls.migration, scratch.roles)
            rows = await admin.fetch(
                "SELECT project_id, user_id, email, name, role, accepted_at FROM kijko.project_members"
            )
            forced = await admin.fetch(
                "SELECT relname FROM pg_class WHERE relnamespace = 'kijko'::regnamespace"
                " AND relname IN ('projects', 'memberships', 'project_members') AND relforcerowsecurity"
            )
        finally:
            await admin.close()
    finally:
        await drop_scratch(scratch)
    assert [(r["project_id"], r["user_id"], r["email"], r["name"], r["role"]) for r in rows] == [
        (made, user, "Founder@Example.com", "Fay Founder", "admin")
    ]
    assert rows[0]["accepted_at"] is not None
    assert sorted(r["relname"] for r in forced) == ["memberships", "project_members", "projects"]  # forced again


async def test_the_link_token_never_reaches_the_logs(client: Any, kijko: Kijko, alice: Account) -> None:
    buffer = io.StringIO()
    configure_logging("debug", "json", stream=buffer)
    project = await created(client, alice, "Logged")
    email = fresh_email()
    member = await invited(client, alice, project["id"], email)
    token = await link_token(kijko, email)
    assert (await client.get(f"{LINKS}/{token}")).status_code == 200
    assert (await client.get(f"{LINKS}/{token}x")).status_code == 404
    resend = await client.post(f"{API}/{project['id']}/invitations/{member['id']}/resend", headers=alice.headers)
    assert resend.status_code == 200
    token = await link_token(kijko, email)
    user = await add_member(kijko, alice.org_id, "member")
    assert (await accept(client, user, token)).status_code == 403
    text = buffer.getvalue()
    assert token not in text and "/invitations/<token>" in text


async def test_leaving_the_organization_ends_the_project_memberships(client: Any, kijko: Kijko, alice: Account) -> None:
    project = await created(client, alice, "Left behind")
    user = await add_member(kijko, alice.org_id, "member")
    await joined(client, kijko, alice, project["id"], user, "manager")
    async with system_session(kijko.system_db) as db:  # what removing an org member does
        await db.execute(
            "DELETE FROM kijko.memberships WHERE organization_id = $1 AND user_id = $2",
            UUID(alice.org_id),
            UUID(user.user_id),
        )
        await db.execute(
            "INSERT INTO kijko.memberships (organization_id, user_id, role) VALUES ($1, $2, 'member')",
            UUID(alice.org_id),
            UUID(user.user_id),
        )
    assert [m["email"] for m in await members(client, alice, project["id"])] == [alice.email]
    response = await client.get(f"{API}/{project['id']}", headers=user.headers)
    assert (response.status_code, (await response.get_json())["code"]) == (404, "PROJECT_NOT_FOUND")


@pytest.mark.parametrize(
    "method, suffix", [("POST", ""), ("DELETE", ""), ("PUT", ""), ("GET", "/"), ("GET", "/accept")]
)
async def test_a_link_token_sent_with_the_wrong_method_or_path_stays_out_of_the_logs(
    client: Any, kijko: Kijko, alice: Account, method: str, suffix: str
) -> None:
    # A client's mistake (a POST to the link, a stray suffix) matches no route (405, 404): the
    # access line must still not carry the token.
    buffer = io.StringIO()
    configure_logging("debug", "json", stream=buffer)
    project = await created(client, alice, "Misrouted")
    email = fresh_email()
    await invited(client, alice, project["id"], email)
    token = await link_token(kijko, email)
    response = await client.open(f"{LINKS}/{token}{suffix}", method=method)
    assert response.status_code < 500
    assert token not in buffer.getvalue()


async def test_an_organization_sends_at_most_its_invitation_mails_per_hour(make_settings: Any) -> None:
    # Anyone may sign up and create a project: without a budget per organization, adding,
    # cancelling and adding again (or bulk invitations) would mail any text to any address.
    async with running(make_settings(invitation_mails_per_hour=3)) as (kijko, _, web):
        owner = await sign_up(web)
        pid = (await created(web, owner, "Budgeted"))["id"]
        first = await invited(web, owner, pid, fresh_email())
        await web.delete(f"{API}/{pid}/invitations/{first['id']}", headers=owner.headers)  # a cancel refunds nothing
        await invited(web, owner, pid, fresh_email())
        rows = [{"email": fresh_email(), "role": "viewer", "notificationLevel": "daily"} for _ in range(2)]
        response = await web.post(f"{API}/{pid}/invitations", json={"invitations": rows}, headers=owner.headers)
        bulk = await response.get_json()
        assert [r["status"] for r in bulk["results"]] == ["sent", "failed"]
        assert "try again later" in bulk["results"][1]["error"]
        limited = await invite(web, owner, pid, fresh_email())
        assert (limited.status_code, (await limited.get_json())["code"]) == (429, "RATE_LIMITED")
        assert 0 < int(limited.headers["Retry-After"]) <= 3600
        pending = (await pending_of(web, owner, pid))[0]
        resent = await web.post(f"{API}/{pid}/invitations/{pending['id']}/resend", headers=owner.headers)
        assert resent.status_code == 429
        async with system_session(kijko.system_db, readonly=True) as db:
            sent = await db.fetchval(
                "SELECT count(*) FROM kijko.mail_outbox WHERE organization_id = $1 AND template = 'invitation'",
                UUID(owner.org_id),
            )
        assert sent == 3
        # Another organization has its own budget.
        other = await sign_up(web)
        await invited(web, other, (await created(web, other, "Elsewhere"))["id"], fresh_email())


async def pending_of(web: Any, account: Account, project_id: str) -> list[dict[str, Any]]:
    response = await web.get(f"{API}/{project_id}/invitations/pending", headers=account.headers)
    assert response.status_code == 200
    members: list[dict[str, Any]] = await response.get_json()
    return members


async def _lock_waiters(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    )


async def _until_waiting(conn: asyncpg.Connection, count: int) -> None:
    for _ in range(200):
        if await _lock_waiters(conn) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} requests never waited for a lock")


async def test_accepting_while_the_invitation_is_cancelled_neither_deadlocks_nor_fails(
    client: Any, kijko: Kijko, alice: Account, database: Any
) -> None:
    # Cancelling locks the member, then (deleting it) its invitation; accepting must take them
    # in the same order, or the two wait for each other and one request dies of a deadlock.
    project = await created(client, alice, "Raced")
    user = await add_member(kijko, alice.org_id, "member")
    member = await invited(client, alice, project["id"], user.email)
    token = await link_token(kijko, user.email)
    blocker = await asyncpg.connect(database.admin_url)
    watcher = await asyncpg.connect(database.admin_url)
    try:
        transaction = blocker.transaction()
        await transaction.start()
        # Both requests queue behind a lock on the invitation row, then go on together.
        await blocker.execute(
            "SELECT 1 FROM kijko.project_invitations WHERE member_id = $1 FOR UPDATE", UUID(member["id"])
        )
        # The accept first: it is first in line for the invitation when the blocker lets go.
        accepting = asyncio.create_task(accept(client, user, token))
        await _until_waiting(watcher, 1)
        cancelling = asyncio.create_task(
            client.delete(f"{API}/{project['id']}/invitations/{member['id']}", headers=alice.headers)
        )
        await _until_waiting(watcher, 2)
        await transaction.rollback()
        cancelled, accepted = await asyncio.gather(cancelling, accepting)
    finally:
        await blocker.close()
        await watcher.close()
    statuses = (cancelled.status_code, accepted.status_code)
    assert statuses in ((200, 404), (409, 200)), (statuses, await accepted.get_data(as_text=True))
