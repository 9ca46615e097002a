"""Service sessions (issue 5 §1, decision 0017): jobs, the scheduler and webhooks work in one
organization without a user token, under row-level security on the app role, and say who
they are; SQL on the app role cannot open one."""

from __future__ import annotations

import secrets
import uuid
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from kijko_core.db.session import (
    OrganizationNotFound,
    ServiceActor,
    ServiceCapability,
    load_service_capability,
    service_session,
    tenant_session,
)
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.projects import created

API = "/api/v1/projects"


@pytest.fixture
async def capability(kijko: Kijko) -> ServiceCapability:
    return await load_service_capability(kijko.system_db)


async def test_a_service_session_works_in_its_organization_only(
    client: Any, kijko: Kijko, capability: ServiceCapability, alice: Account, bob: Account
) -> None:
    mine = await created(client, alice, "Alice private")  # private: a job sees it all the same
    await created(client, bob, "Bob's own", privacy="shared")
    actor = ServiceActor("ingestion", "job-42")
    async with service_session(kijko.app_db, capability, UUID(alice.org_id), actor) as db:
        assert db.org_id == UUID(alice.org_id) and str(db.actor) == "service:ingestion:job-42"
        assert await db.fetchval("SELECT current_user") == kijko.roles.app  # not the system role
        assert await db.fetchval("SELECT kijko.current_actor()") == "service:ingestion:job-42"
        assert await db.fetchval("SELECT kijko.current_user_id()") is None
        assert str(await db.fetchval("SELECT kijko.current_org_id()")) == alice.org_id
        assert [str(r["id"]) for r in await db.fetch("SELECT id FROM kijko.projects")] == [mine["id"]]
        assert await db.fetchval("SELECT count(*) FROM kijko.organizations") == 1
        # It writes its organization's rows: progress of an ingestion, a project of its own.
        await db.execute(
            "UPDATE kijko.projects SET status = 'processing', total_files = 7 WHERE id = $1", UUID(mine["id"])
        )
        await db.execute(
            "INSERT INTO kijko.projects (organization_id, name, type) VALUES ($1, 'Made by a job', 'manual')",
            UUID(alice.org_id),
        )
        # Not another organization's, and not in anyone's name.
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with db.savepoint():
                await db.execute(
                    "INSERT INTO kijko.projects (organization_id, name, type) VALUES ($1, 'Planted', 'manual')",
                    UUID(bob.org_id),
                )
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with db.savepoint():
                await db.execute(
                    "INSERT INTO kijko.projects (organization_id, user_id, name, type)"
                    " VALUES ($1, $2, 'In Alice''s name', 'manual')",
                    UUID(alice.org_id),
                    UUID(alice.user_id),
                )
    listed = await (await client.get(API, headers=alice.headers)).get_json()
    by_name = {p["name"]: p for p in listed["data"]}
    assert by_name["Alice private"]["status"] == "processing" and by_name["Alice private"]["totalFiles"] == 7
    assert by_name["Made by a job"]["userId"] == ""  # no user created it
    bobs = await (await client.get(API, headers=bob.headers)).get_json()
    assert [p["name"] for p in bobs["data"]] == ["Bob's own"]


async def test_a_service_session_for_an_unknown_organization_is_refused(
    kijko: Kijko, capability: ServiceCapability
) -> None:
    with pytest.raises(OrganizationNotFound):
        async with service_session(kijko.app_db, capability, uuid.uuid4(), ServiceActor("scheduler", "tick-1")):
            pass


@pytest.mark.parametrize(
    ("kind", "job_id"),
    [("Ingestion", "1"), ("a:b", "1"), ("webhook", "x:y"), ("", "1"), ("webhook", "job\n"), ("kind\n", "1")],
)
def test_actor_names_are_unambiguous(kind: str, job_id: str) -> None:
    with pytest.raises(ValueError):
        ServiceActor(kind, job_id)


async def test_the_app_role_cannot_open_a_service_session_by_sql(
    kijko: Kijko, capability: ServiceCapability, attacker: asyncpg.Connection, alice: Account, bob: Account
) -> None:
    org = UUID(alice.org_id)
    # Without the capability: any guess, none, or the empty string.
    for guess in (secrets.token_hex(32), None, ""):
        with pytest.raises(asyncpg.PostgresError) as refused:
            await attacker.execute("SELECT kijko.enter_service($1, 'ingestion', 'x', $2)", org, guess)
        assert refused.value.sqlstate == "KJ401"
    # Not from inside a tenant session of another organization either.
    with pytest.raises(asyncpg.PostgresError) as refused:
        async with tenant_session(kijko.app_db, bob.identity) as db:
            await db.execute("SELECT kijko.enter_service($1, 'ingestion', 'x', $2)", org, secrets.token_hex(32))
    assert refused.value.sqlstate == "KJ401"
    # The capability is nowhere the app role can read it: not in the private schema ...
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await attacker.fetch("SELECT * FROM kijko_private.context_key")
    # ... and not in the statement text of a running service session (a bind parameter).
    async with service_session(kijko.app_db, capability, org, ServiceActor("ingestion", "job-1")) as db:
        await db.fetchval("SELECT 1")  # still inside the session's transaction
        seen = await attacker.fetch("SELECT query FROM pg_stat_activity WHERE query IS NOT NULL")
        assert seen and not any(capability.reveal() in row["query"] for row in seen)
        assert any("enter_service" in row["query"] or row["query"] == "SELECT 1" for row in seen)
    assert capability.reveal() not in repr(capability)
