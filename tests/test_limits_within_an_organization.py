"""Migration 0013 (decision 0074): within one organization, SQL on the app role — a statement
injected into a member's tenant session — cannot take another member's git-provider
connection, make itself a member of a private project, forge a job's state, rewrite a queued
mail or repoint an uploaded file. Each case runs the statement in a real tenant session."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from kijko_core.db.session import system_session, tenant_session
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.memberships import add_member
from tests.projects import created

INSUFFICIENT_PRIVILEGE = "42501"  # also what a row-level security WITH CHECK refusal raises


async def refused(kijko: Kijko, account: Account, statement: str, *args: Any) -> None:
    with pytest.raises(asyncpg.PostgresError) as error:
        async with tenant_session(kijko.app_db, account.identity) as db:
            await db.execute(statement, *args)
    assert error.value.sqlstate == INSUFFICIENT_PRIVILEGE, error.value


async def test_a_member_cannot_take_or_see_another_members_git_connection(kijko: Kijko, alice: Account) -> None:
    mallory = await add_member(kijko, alice.org_id, "admin", first_name="Mallory")
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "INSERT INTO kijko.git_connections"
            " (organization_id, user_id, provider, username, access_token_ciphertext)"
            " VALUES ($1, $2, 'github', 'alice-gh', 'sealed')",
            UUID(alice.org_id),
            UUID(alice.user_id),
        )
    async with tenant_session(kijko.app_db, mallory.identity) as db:
        assert await db.fetch("SELECT * FROM kijko.git_connections") == []
        moved = await db.execute("UPDATE kijko.git_connections SET username = 'mine'")
        assert moved == "UPDATE 0"
    await refused(
        kijko,
        mallory,
        "INSERT INTO kijko.git_connections (organization_id, user_id, provider, username, access_token_ciphertext)"
        " VALUES ($1, $2, 'gitlab', 'as-alice', 'x')",
        UUID(alice.org_id),
        UUID(alice.user_id),
    )
    await refused(kijko, alice, "UPDATE kijko.git_connections SET user_id = $1", UUID(mallory.user_id))
    async with tenant_session(kijko.app_db, alice.identity) as db:
        assert [r["username"] for r in await db.fetch("SELECT username FROM kijko.git_connections")] == ["alice-gh"]


async def test_a_member_cannot_make_themselves_a_member_of_a_private_project(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    project = await created(client, alice, "Secret plans", privacy="private")
    mallory = await add_member(kijko, alice.org_id, "member", first_name="Mallory")
    await refused(
        kijko,
        mallory,
        "INSERT INTO kijko.project_members (organization_id, project_id, user_id, email, role, accepted_at)"
        " VALUES ($1, $2, $3, 'm@example.com', 'admin', now())",
        UUID(alice.org_id),
        UUID(project["id"]),
        UUID(mallory.user_id),
    )
    response = await client.get(f"/api/v1/projects/{project['id']}", headers=mallory.headers)
    assert response.status_code == 404
    # A pending invitee (no user yet) is still what the app may add.
    async with tenant_session(kijko.app_db, alice.identity) as db:
        await db.execute(
            "INSERT INTO kijko.project_members (organization_id, project_id, email, role)"
            " VALUES ($1, $2, $3, 'viewer')",
            UUID(alice.org_id),
            UUID(project["id"]),
            f"{uuid.uuid4().hex}@example.com",
        )


async def test_a_tenant_enqueues_jobs_but_cannot_forge_their_state(kijko: Kijko, alice: Account) -> None:
    await refused(
        kijko,
        alice,
        "INSERT INTO kijko.jobs (id, organization_id, kind, payload, max_attempts, lease_seconds, state,"
        " attempts, lease_owner, lease_expires_at)"
        " VALUES ($1, $2, 'mail.deliver', '{}', 5, 60, 'running', 1, 'me', now() + interval '1 year')",
        uuid.uuid4(),
        UUID(alice.org_id),
    )


async def test_a_queued_mail_keeps_its_recipient(kijko: Kijko, alice: Account) -> None:
    await refused(kijko, alice, "UPDATE kijko.mail_outbox SET recipient = 'attacker@example.com'")
    await refused(kijko, alice, "UPDATE kijko.mail_outbox SET subject = 'Pay here'")


async def test_an_uploaded_file_cannot_be_repointed(kijko: Kijko, alice: Account) -> None:
    await refused(kijko, alice, "UPDATE kijko.uploaded_files SET storage_key = 'elsewhere'")
    await refused(kijko, alice, "UPDATE kijko.uploaded_files SET project_id = NULL")
