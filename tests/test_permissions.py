"""Who may do what with projects (ARCHITECTURE §3): roles are read from memberships.

Cannot read → 404 (exactly like a missing project); can read but not act → 403.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import asyncpg

from kijko_core.db.provision import ScratchDatabase
from kijko_core.db.session import system_session
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.memberships import add_member

API = "/api/v1/projects"


async def create(client: Any, account: Account, name: str, **body: Any) -> Any:
    payload = {"name": name, "type": "repository", **body}
    return await client.post(API, json=payload, headers=account.headers)


async def created(client: Any, account: Account, name: str, **body: Any) -> dict[str, Any]:
    response = await create(client, account, name, **body)
    assert response.status_code == 201, await response.get_data(as_text=True)
    return (await response.get_json())["project"]


async def listed_ids(client: Any, account: Account) -> set[str]:
    body = await (await client.get(API, headers=account.headers)).get_json()
    assert body["total"] == len(body["data"])
    return {project["id"] for project in body["data"]}


async def test_helper_puts_the_user_in_the_org_with_the_role(client: Any, kijko: Kijko, alice: Account) -> None:
    viewer = await add_member(kijko, alice.org_id, "viewer")
    me = await (await client.get("/api/v1/auth/me", headers=viewer.headers)).get_json()
    assert me["org_id"] == alice.org_id and me["roles"] == ["viewer"]


# Each role x each action x shared/private is the role matrix in tests/test_domain_suites.py;
# what follows is what the matrix does not look at.


async def test_stats_count_only_the_projects_the_caller_can_read(client: Any, kijko: Kijko, alice: Account) -> None:
    mia = await add_member(kijko, alice.org_id, "member", first_name="Mia")
    viewer = await add_member(kijko, alice.org_id, "viewer")
    await created(client, mia, "Mia's shared", privacy="shared")
    await created(client, mia, "Mia's secret")
    for account, total in ((viewer, 1), (mia, 2), (alice, 2)):
        stats = await (await client.get(f"{API}/stats", headers=account.headers)).get_json()
        assert stats["totalProjects"] == total, account
        assert len(await listed_ids(client, account)) == total


async def test_an_admin_editing_a_members_project_leaves_it_the_members(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    admin = await add_member(kijko, alice.org_id, "admin")
    mia = await add_member(kijko, alice.org_id, "member")
    secret = await created(client, mia, "Mia's secret")
    response = await client.patch(f"{API}/{secret['id']}", json={"privacy": "shared"}, headers=admin.headers)
    assert response.status_code == 200
    assert (await response.get_json())["userId"] == mia.user_id


async def test_type_is_fixed_once_the_project_leaves_draft(client: Any, kijko: Kijko, alice: Account) -> None:
    project = await created(client, alice, "Typed")
    draft_change = await client.put(f"{API}/{project['id']}", json={"type": "files"}, headers=alice.headers)
    assert draft_change.status_code == 200 and (await draft_change.get_json())["type"] == "files"

    # The worker moves it on; the system role stands in for it here.
    async with system_session(kijko.system_db) as db:
        await db.execute("UPDATE kijko.projects SET status = 'active' WHERE id = $1", UUID(project["id"]))
    response = await client.put(
        f"{API}/{project['id']}", json={"type": "manual", "name": "Retyped"}, headers=alice.headers
    )
    assert response.status_code == 409
    body = await response.get_json()
    assert body["code"] == "INVALID_STATUS" and body["field"] == "type"
    after = await (await client.get(f"{API}/{project['id']}", headers=alice.headers)).get_json()
    assert after["type"] == "files" and after["name"] == "Typed"
    # Sending the current type along with other changes is fine.
    same = await client.put(f"{API}/{project['id']}", json={"type": "files", "name": "Renamed"}, headers=alice.headers)
    assert same.status_code == 200 and (await same.get_json())["name"] == "Renamed"


async def test_a_status_change_racing_a_type_change_cannot_slip_between_check_and_write(
    client: Any, kijko: Kijko, alice: Account, database: ScratchDatabase
) -> None:
    project = await created(client, alice, "Raced")
    watcher = await asyncpg.connect(database.admin_url)
    try:
        async with system_session(kijko.system_db) as worker:
            # The worker moves the project on and holds the row until it commits.
            await worker.execute("UPDATE kijko.projects SET status = 'active' WHERE id = $1", UUID(project["id"]))
            change = asyncio.create_task(
                client.put(f"{API}/{project['id']}", json={"type": "manual"}, headers=alice.headers)
            )
            # Wait until the request is waiting on that row lock (not a timing assumption:
            # we look at the server's own view of who waits).
            for _ in range(200):
                waiting = await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND wait_event_type = 'Lock'",
                    database.roles.app,
                )
                if waiting:
                    break
                await asyncio.sleep(0.02)
            assert waiting, "the update never waited for the row"
        response = await change  # the worker has committed: the update sees 'active'
    finally:
        await watcher.close()
    assert response.status_code == 409
    assert (await response.get_json())["code"] == "INVALID_STATUS"


async def test_null_is_refused_where_a_field_cannot_be_empty(client: Any, alice: Account) -> None:
    project = await created(client, alice, "Nulls")
    for field in ("name", "type", "privacy", "chunkingStrategy", "includeMetadata", "anonymizeSecrets"):
        response = await client.put(f"{API}/{project['id']}", json={field: None}, headers=alice.headers)
        assert response.status_code == 422, field
        body = await response.get_json()
        assert body["code"] == "VALIDATION_ERROR" and body["field"] == field
    after = await (await client.get(f"{API}/{project['id']}", headers=alice.headers)).get_json()
    assert after == {**after, "name": "Nulls", "privacy": project["privacy"], "type": project["type"]}
