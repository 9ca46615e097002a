"""Tenant isolation (issue 2 §8): organizations never see or touch each other's projects,
by name, in raw SQL as the app role, through the repository, under concurrency, and on a
pooled connection reused after a failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from kijko_core.auth.principal import TokenIdentity
from kijko_core.db.pools import make_pool
from kijko_core.db.session import tenant_session
from kijko_core.projects import repository
from kijko_core.runtime import Kijko
from kijko_server.app import KijkoApp, create_app
from tests.conftest import Account, sign_up
from tests.projects import created

API = "/api/v1/projects"


def identity(account: Account) -> TokenIdentity:
    """The verified identity a request of ``account`` carries."""
    return account.identity


async def test_another_organizations_names_are_not_searchable_and_free(
    client: Any, alice: Account, bob: Account
) -> None:
    """Projects-only probes by name; the id-based isolation of every route is the shared suite
    in tests/test_domain_suites.py."""
    await created(client, alice, "Alice shared", privacy="shared", description="A")
    await created(client, alice, "Alice private")
    found = await (await client.get(API, query_string={"search": "Alice"}, headers=bob.headers)).get_json()
    assert found["total"] == 0 and found["data"] == []
    check = await client.post(f"{API}/validate-name", json={"name": "alice SHARED"}, headers=bob.headers)
    assert (await check.get_json())["valid"] is True
    same_name = await client.post(API, json={"name": "Alice private", "type": "manual"}, headers=bob.headers)
    assert same_name.status_code == 201


async def test_raw_sql_in_a_tenant_session_sees_and_writes_only_its_org(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    theirs = await created(client, alice, "Alice only", privacy="shared")
    mine = await created(client, bob, "Bob only")

    async with tenant_session(kijko.app_db, identity(bob)) as db:
        rows = await db.fetch("SELECT * FROM kijko.projects")
        assert [str(row["id"]) for row in rows] == [mine["id"]]
        assert (
            await db.fetchval("SELECT count(*) FROM kijko.projects WHERE organization_id = $1", UUID(alice.org_id)) == 0
        )
        assert await db.fetchval("SELECT count(*) FROM kijko.organizations") == 1
        assert (
            await db.fetchval("SELECT count(*) FROM kijko.memberships WHERE organization_id = $1", UUID(alice.org_id))
            == 0
        )
        updated = await db.execute(
            "UPDATE kijko.projects SET name = 'Renamed by Bob' WHERE id = $1", UUID(theirs["id"])
        )
        deleted = await db.execute("DELETE FROM kijko.projects WHERE id = $1", UUID(theirs["id"]))
        assert (updated, deleted) == ("UPDATE 0", "DELETE 0")

    # Writing a row into another organization is refused by the policy's WITH CHECK ...
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with tenant_session(kijko.app_db, identity(bob)) as db:
            await db.execute(
                "INSERT INTO kijko.projects (organization_id, user_id, name, type)"
                " VALUES ($1, $2, 'Planted', 'manual')",
                UUID(alice.org_id),
                UUID(bob.user_id),
            )
    # ... and so is moving one's own row there: the column is not the app role's to update.
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        async with tenant_session(kijko.app_db, identity(bob)) as db:
            await db.execute(
                "UPDATE kijko.projects SET organization_id = $1 WHERE id = $2", UUID(alice.org_id), UUID(mine["id"])
            )

    listed = await (await client.get(API, headers=alice.headers)).get_json()
    assert [(p["id"], p["name"]) for p in listed["data"]] == [(theirs["id"], "Alice only")]
    assert (await client.get(f"{API}/{mine['id']}", headers=bob.headers)).status_code == 200


async def test_sessions_do_not_nest(kijko: Kijko, alice: Account, bob: Account) -> None:
    """In one task, ``databases`` would reuse the connection and asyncpg would make the inner
    session a savepoint whose context outlives it: the outer session of A would run as B."""
    async with tenant_session(kijko.app_db, identity(alice)) as outer:
        with pytest.raises(RuntimeError, match="already open"):
            async with tenant_session(kijko.app_db, identity(bob)):
                pass
        assert str(await outer.fetchval("SELECT kijko.current_org_id()")) == alice.org_id
        assert await outer.fetchval("SELECT count(*) FROM kijko.organizations") == 1


async def test_repository_given_another_orgs_id_returns_nothing(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    theirs = await created(client, alice, "Alice repo row", privacy="shared")
    await system_set_counters(kijko, theirs["id"])
    org_a, project_a = UUID(alice.org_id), UUID(theirs["id"])
    # Bob's session, but every call names Alice's organization and claims to see private rows.
    scope = (org_a, UUID(bob.user_id), True)
    async with tenant_session(kijko.app_db, identity(bob)) as db:
        assert await repository.get(db, scope, project_a) is None
        assert await repository.list_page(db, scope, pattern=None, limit=100, offset=0) == ([], 0)
        assert await repository.name_taken(db, scope, "Alice repo row", None) is False
        stats = (await repository.stats(db, scope)).model_dump()
        assert stats == dict.fromkeys(stats, 0)
        assert await repository.update(db, org_a, project_a, {"name": "Hijacked"}) is None
        assert await repository.delete(db, org_a, project_a) is False
    after = await (await client.get(f"{API}/{theirs['id']}", headers=alice.headers)).get_json()
    assert after["name"] == "Alice repo row"


async def system_set_counters(kijko: Kijko, project_id: str) -> None:
    from kijko_core.db.session import system_session

    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.projects SET status = 'active', optimized_tokens = 10, total_files = 2 WHERE id = $1",
            UUID(project_id),
        )


@pytest.fixture
async def small_pool_app(make_settings: Any) -> AsyncIterator[KijkoApp]:
    """A separate runtime whose app pool has two connections, shared by every request."""
    runtime = await Kijko.start(make_settings(db_pool_size=2))
    try:
        application = create_app(kijko=runtime)
        async with application.test_app():
            yield application
    finally:
        await runtime.stop()


async def test_concurrent_requests_on_a_small_pool_never_cross_organizations(
    small_pool_app: KijkoApp,
) -> None:
    client = small_pool_app.test_client()
    a, b = await sign_up(client, first_name="Ann"), await sign_up(client, first_name="Ben")
    own: dict[str, set[str]] = {}
    for account, prefix in ((a, "A"), (b, "B")):
        own[account.org_id] = {
            (await created(client, account, f"{prefix} {n}", privacy=("shared" if n % 2 else "private")))["id"]
            for n in range(3)
        }
    foreign = {a.org_id: next(iter(own[b.org_id])), b.org_id: next(iter(own[a.org_id]))}

    async def one(n: int) -> None:
        account = (a, b)[n % 2]
        mine = own[account.org_id]
        kind = (n // 2) % 5
        if kind == 0:
            body = await (await client.get(API, headers=account.headers)).get_json()
            assert {p["id"] for p in body["data"]} == mine and body["total"] == 3
            assert {p["organizationId"] for p in body["data"]} == {account.org_id}
        elif kind == 1:
            body = await (await client.get(f"{API}/stats", headers=account.headers)).get_json()
            assert body["totalProjects"] == 3
        elif kind == 2:
            target = sorted(mine)[n % 3]
            body = await (await client.get(f"{API}/{target}", headers=account.headers)).get_json()
            assert body["id"] == target and body["organizationId"] == account.org_id
        elif kind == 3:
            response = await client.get(f"{API}/{foreign[account.org_id]}/full", headers=account.headers)
            assert response.status_code == 404
        else:
            target = sorted(mine)[n % 3]
            response = await client.patch(
                f"{API}/{target}", json={"description": f"request {n}"}, headers=account.headers
            )
            body = await response.get_json()
            assert response.status_code == 200 and body["organizationId"] == account.org_id

    await asyncio.gather(*(one(n) for n in range(200)))
    for account in (a, b):
        body = await (await client.get(API, headers=account.headers)).get_json()
        assert {p["id"] for p in body["data"]} == own[account.org_id]
        # Every description was written by a request of the owning organization.
        parity = 0 if account is a else 1
        assert all(int(p["description"].split()[1]) % 2 == parity for p in body["data"] if p["description"])


async def read_back_as_app(pool: Any) -> tuple[int, Any, Any, int]:
    """On whatever connection the pool hands out: its pid, the context, and what RLS shows."""
    async with pool.connection() as handle:
        connection: asyncpg.Connection = handle.raw_connection
        return (
            await connection.fetchval("SELECT pg_backend_pid()"),
            await connection.fetchval("SELECT current_setting('kijko.org_id', true)"),
            await connection.fetchval("SELECT kijko.current_org_id()"),
            await connection.fetchval("SELECT count(*) FROM kijko.projects"),
        )


async def session_state(pool: Any) -> tuple[int, str, int]:
    """Backend, statement timeout and advisory locks held, on the pool's next connection."""
    async with pool.connection() as handle:
        connection = handle.raw_connection
        return (
            await connection.fetchval("SELECT pg_backend_pid()"),
            await connection.fetchval("SHOW statement_timeout"),
            await connection.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            ),
        )


@pytest.mark.parametrize("ending", ["python error", "sql error", "commit"])
async def test_a_finished_transaction_leaves_no_context_on_the_connection(
    client: Any, kijko: Kijko, alice: Account, ending: str
) -> None:
    await created(client, alice, "Visible inside")
    pool = make_pool(kijko.urls.app, size=1)
    await pool.connect()
    try:

        class Boom(Exception):
            pass

        role_default = await session_state(pool)
        pid = None
        try:
            async with tenant_session(pool, identity(alice)) as db:
                pid = await db.fetchval("SELECT pg_backend_pid()")
                assert await db.fetchval("SELECT count(*) FROM kijko.projects") == 1
                # What an injected statement could leave behind beyond its transaction.
                await db.fetchval("SELECT set_config('statement_timeout', '0', false)")
                await db.fetchval("SELECT pg_advisory_lock(4242)")
                if ending == "python error":
                    raise Boom()
                if ending == "sql error":
                    await db.fetchval("SELECT 1 / 0")
        except (Boom, asyncpg.DivisionByZeroError):
            assert ending != "commit"
        # Session-level state is reset too (sent with the COMMIT/ROLLBACK, or by the pool).
        assert await session_state(pool) == role_default
        same_pid, setting, org, visible = await read_back_as_app(pool)
        assert same_pid == pid  # the very connection the session used
        assert setting in ("", None) and org is None
        assert visible == 0
    finally:
        await pool.disconnect()


async def test_a_request_that_fails_mid_transaction_leaves_no_context(make_settings: Any) -> None:
    runtime = await Kijko.start(make_settings(db_pool_size=1))
    try:
        application = create_app(kijko=runtime)
        async with application.test_app():
            client = application.test_client()
            account = await sign_up(client, first_name="Fay")
            await created(client, account, "First")
            second = await created(client, account, "Second")
            pid_before = (await read_back_as_app(runtime.app_db))[0]
            # The rename passes enter() and the read, then the UPDATE hits the unique index.
            response = await client.put(f"{API}/{second['id']}", json={"name": "FIRST"}, headers=account.headers)
            assert response.status_code == 409
            pid, setting, org, visible = await read_back_as_app(runtime.app_db)
            assert pid == pid_before
            assert setting in ("", None) and org is None and visible == 0
            # The connection still serves the next request normally.
            listed = await (await client.get(API, headers=account.headers)).get_json()
            assert [p["name"] for p in listed["data"]] == ["First", "Second"]
    finally:
        await runtime.stop()
