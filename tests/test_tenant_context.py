"""The tenant context cannot be forged from SQL (issue 5 §4).

Every test here plays an attacker who runs arbitrary statements on an app-role connection
(think: an injected statement inside a request of their own organization). They know their
own user id, organization id and session id (all in their token) and the ids of another
organization's users and projects (ids leak: URLs, logs, shared links), but no secret.
"""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from kijko_core.db.provision import ScratchDatabase
from kijko_core.db.session import ServiceActor, load_service_capability, service_session, system_session
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.projects import created

API = "/api/v1/projects"


async def enter(conn: asyncpg.Connection, account: Account) -> list[str]:
    """What every request of ``account`` does first: enter with its real, known session."""
    identity = account.identity
    roles: list[str] = await conn.fetchval(
        "SELECT kijko.enter($1, $2, $3)", identity.user_id, identity.org_id, identity.session_id
    )
    return roles


async def sqlstate_of_enter(conn: asyncpg.Connection, user_id: Any, org_id: Any, session_id: str) -> str | None:
    try:
        async with conn.transaction():
            await conn.fetchval("SELECT kijko.enter($1, $2, $3)", user_id, org_id, session_id)
    except asyncpg.PostgresError as error:
        return error.sqlstate
    return None


# -- (a) setting the context by hand -----------------------------------------------------------


async def test_setting_the_org_by_hand_shows_nothing(
    client: Any, attacker: asyncpg.Connection, alice: Account, bob: Account
) -> None:
    await created(client, alice, "Alice secret", privacy="shared")
    async with attacker.transaction():
        await attacker.execute("SELECT set_config('kijko.org_id', $1, true)", alice.org_id)
        await attacker.execute("SELECT set_config('kijko.user_id', $1, true)", alice.user_id)
        assert await attacker.fetchval("SELECT kijko.current_org_id()") is None
        assert await attacker.fetchval("SELECT count(*) FROM kijko.projects") == 0
        assert await attacker.fetchval("SELECT count(*) FROM kijko.organizations") == 0


async def test_switching_org_after_a_real_enter_shows_nothing(
    client: Any, attacker: asyncpg.Connection, alice: Account, bob: Account
) -> None:
    await created(client, alice, "Alice secret", privacy="shared")
    await created(client, bob, "Bob's own", privacy="shared")
    async with attacker.transaction():
        assert await enter(attacker, bob) == ["owner"]
        assert await attacker.fetchval("SELECT count(*) FROM kijko.projects") == 1
        # Every setting enter() wrote, rewritten to Alice's organization.
        await attacker.execute("SELECT set_config('kijko.org_id', $1, true)", alice.org_id)
        assert await attacker.fetchval("SELECT kijko.current_org_id()") is None
        assert await attacker.fetchval("SELECT count(*) FROM kijko.projects") == 0
        assert await attacker.fetchval("SELECT count(*) FROM kijko.organizations") == 0


async def test_a_context_copied_from_another_transaction_is_worthless(
    client: Any, attacker: asyncpg.Connection, alice: Account, bob: Account
) -> None:
    """Settings read in one transaction, replayed in the next (after a revocation, say)."""
    await created(client, bob, "Bob's own", privacy="shared")
    async with attacker.transaction():
        await enter(attacker, bob)
        saved = await attacker.fetch(
            "SELECT name, current_setting(name, true) AS setting"
            " FROM unnest(ARRAY['kijko.org_id', 'kijko.user_id', 'kijko.actor', 'kijko.context']) AS name"
        )
        assert await attacker.fetchval("SELECT count(*) FROM kijko.projects") == 1
    assert [row["setting"] for row in saved][:2] == [bob.org_id, bob.user_id]
    async with attacker.transaction():
        for row in saved:
            await attacker.execute("SELECT set_config($1, $2, true)", row["name"], row["setting"])
        assert await attacker.fetchval("SELECT kijko.current_org_id()") is None
        assert await attacker.fetchval("SELECT count(*) FROM kijko.projects") == 0
    # A session-level copy (is_local = false) is no better.
    for row in saved:
        await attacker.execute("SELECT set_config($1, $2, false)", row["name"], row["setting"])
    assert await attacker.fetchval("SELECT count(*) FROM kijko.projects") == 0


# -- (b) enter() with a made-up session --------------------------------------------------------


async def test_enter_refuses_a_made_up_session(attacker: asyncpg.Connection, alice: Account, bob: Account) -> None:
    made_up = str(uuid.uuid4())
    assert await sqlstate_of_enter(attacker, UUID(alice.user_id), UUID(alice.org_id), made_up) == "KJ401"
    # Not even one's own user with a session one made up.
    assert await sqlstate_of_enter(attacker, UUID(bob.user_id), UUID(bob.org_id), made_up) == "KJ401"
    # Another user's real session id is refused for oneself, and one's own for another user.
    bobs_session = bob.identity.session_id
    assert await sqlstate_of_enter(attacker, UUID(alice.user_id), UUID(alice.org_id), bobs_session) == "KJ401"


async def test_enter_refuses_revoked_and_expired_sessions(
    kijko: Kijko, attacker: asyncpg.Connection, alice: Account
) -> None:
    identity = alice.identity
    args = (identity.user_id, identity.org_id, identity.session_id)
    assert await sqlstate_of_enter(attacker, *args) is None
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko_private.sessions SET expires_at = now() - interval '1 second' WHERE id = $1",
            identity.session_id,
        )
    assert await sqlstate_of_enter(attacker, *args) == "KJ401"
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko_private.sessions SET expires_at = now() + interval '1 hour', revoked_at = now()"
            " WHERE id = $1",
            identity.session_id,
        )
    assert await sqlstate_of_enter(attacker, *args) == "KJ401"


async def test_enter_is_no_membership_or_user_oracle(
    attacker: asyncpg.Connection, alice: Account, bob: Account
) -> None:
    """Without a session of that user, an existing member, an existing non-member and an
    unknown user all look the same; only the owner of a session learns about memberships."""
    guess = str(uuid.uuid4())
    alice_user, alice_org, bob_user = UUID(alice.user_id), UUID(alice.org_id), UUID(bob.user_id)
    answers = {
        "member, guessed session": await sqlstate_of_enter(attacker, alice_user, alice_org, guess),
        "non-member, guessed session": await sqlstate_of_enter(attacker, bob_user, alice_org, guess),
        "unknown user": await sqlstate_of_enter(attacker, uuid.uuid4(), alice_org, guess),
        "unknown organization": await sqlstate_of_enter(attacker, alice_user, uuid.uuid4(), guess),
    }
    assert set(answers.values()) == {"KJ401"}, answers
    # With their own real session, a caller learns only about their own memberships.
    assert await sqlstate_of_enter(attacker, bob_user, alice_org, bob.identity.session_id) == "KJ403"


# -- (c) another user's profile ----------------------------------------------------------------


async def test_profile_of_another_user_cannot_be_read(
    attacker: asyncpg.Connection, alice: Account, bob: Account
) -> None:
    async with attacker.transaction():
        await enter(attacker, bob)
        own = await attacker.fetch("SELECT email FROM kijko.current_user_profile()")
        assert [row["email"] for row in own] == [bob.email]
        await attacker.execute("SELECT set_config('kijko.user_id', $1, true)", alice.user_id)
        stolen = await attacker.fetch("SELECT email FROM kijko.current_user_profile()")
        assert alice.email not in [row["email"] for row in stolen]
        assert stolen == []
    async with attacker.transaction():
        await attacker.execute("SELECT set_config('kijko.user_id', $1, true)", alice.user_id)
        assert await attacker.fetch("SELECT email FROM kijko.current_user_profile()") == []


# -- (d) writing memberships -------------------------------------------------------------------


async def test_app_role_cannot_plant_a_membership(
    kijko: Kijko, attacker: asyncpg.Connection, alice: Account, bob: Account
) -> None:
    # A backdated owner membership of Bob in Alice's organization, with the context forged ...
    with pytest.raises(asyncpg.PostgresError):
        async with attacker.transaction():
            await attacker.execute("SELECT set_config('kijko.org_id', $1, true)", alice.org_id)
            await attacker.execute(
                "INSERT INTO kijko.memberships (organization_id, user_id, role, created_at)"
                " VALUES ($1, $2, 'owner', '2000-01-01')",
                UUID(alice.org_id),
                UUID(bob.user_id),
            )
    # ... or of Alice in Bob's own organization, so her next login lands there.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with attacker.transaction():
            await enter(attacker, bob)
            await attacker.execute(
                "INSERT INTO kijko.memberships (organization_id, user_id, role, created_at)"
                " VALUES ($1, $2, 'viewer', '2000-01-01')",
                UUID(bob.org_id),
                UUID(alice.user_id),
            )
    # Nor can an owner promote or remove rows through plain SQL.
    for statement in (
        "UPDATE kijko.memberships SET created_at = '2000-01-01'",
        "DELETE FROM kijko.memberships",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with attacker.transaction():
                await enter(attacker, bob)
                await attacker.execute(statement)
    async with system_session(kijko.system_db) as db:
        rows = await db.fetch(
            "SELECT organization_id, role FROM kijko.memberships WHERE user_id = ANY($1::uuid[])",
            [UUID(alice.user_id), UUID(bob.user_id)],
        )
    assert sorted((str(r["organization_id"]), r["role"]) for r in rows) == sorted(
        [(alice.org_id, "owner"), (bob.org_id, "owner")]
    )


async def test_app_role_cannot_rewrite_identity_columns_of_projects(
    client: Any, attacker: asyncpg.Connection, bob: Account
) -> None:
    """Column grants: the creator, organization, id and creation time are not the app's to
    change (a project cannot be made to look as if someone else created it, for instance)."""
    project = await created(client, bob, "Bob's own")
    for column, value in (
        ("user_id", uuid.uuid4()),
        ("id", uuid.uuid4()),
        ("organization_id", UUID(bob.org_id)),
        ("created_at", "2000-01-01"),
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with attacker.transaction():
                await enter(attacker, bob)
                await attacker.execute(
                    f"UPDATE kijko.projects SET {column} = $1 WHERE id = $2",  # noqa: S608 - fixed names
                    value if column != "created_at" else None,
                    UUID(project["id"]),
                )


# -- policies read the verified context, once per statement ------------------------------------


class _Rollback(Exception):
    """Leaves a transaction that broke an invariant on purpose."""


CONTEXT_FUNCTIONS = ("kijko.current_org_id()", "kijko.current_user_id()", "kijko.current_actor()")


async def policy_context_violations(conn: asyncpg.Connection) -> list[str]:
    """Policies of the tenant schema that read the context other than through the verifying
    functions wrapped in a sub-select (an initplan, evaluated once per statement; a bare call
    would run the HMAC check for every row), or that read the settings directly."""
    policies = await conn.fetch(
        "SELECT c.relname, p.polname, pg_get_expr(p.polqual, p.polrelid) AS using_,"
        " pg_get_expr(p.polwithcheck, p.polrelid) AS check_"
        " FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'kijko'"
    )
    problems = []
    for policy in policies:
        for clause in ("using_", "check_"):
            text = policy[clause] or ""
            name = f"kijko.{policy['relname']}: policy {policy['polname']}"
            if "current_setting" in text:
                problems.append(f"{name} reads a setting directly")
            for function in CONTEXT_FUNCTIONS:
                if text.count(function) != text.count("( SELECT " + function):
                    problems.append(f"{name} calls {function} per row")
    return problems


async def test_policies_check_the_context_once_per_statement(database: ScratchDatabase) -> None:
    owner = await asyncpg.connect(database.urls.migration)
    try:
        assert await policy_context_violations(owner) == []
        # And the check notices the two mistakes a new domain could copy.
        try:
            async with owner.transaction():
                await owner.execute("CREATE TABLE kijko.meta_per_row (organization_id uuid)")
                await owner.execute(
                    "CREATE POLICY p ON kijko.meta_per_row USING (organization_id = kijko.current_org_id())"
                    " WITH CHECK (organization_id = current_setting('kijko.org_id')::uuid)"
                )
                assert sorted(await policy_context_violations(owner)) == [
                    "kijko.meta_per_row: policy p calls kijko.current_org_id() per row",
                    "kijko.meta_per_row: policy p reads a setting directly",
                ]
                raise _Rollback
        except _Rollback:
            pass
        assert await policy_context_violations(owner) == []
    finally:
        await owner.close()


# -- rotating the key --------------------------------------------------------------------------


async def test_rotating_the_context_key_invalidates_live_contexts_and_the_capability(
    client: Any, kijko: Kijko, database: ScratchDatabase, attacker: asyncpg.Connection, bob: Account
) -> None:
    await created(client, bob, "Bob's own")
    before = await load_service_capability(kijko.system_db)
    owner = await asyncpg.connect(database.urls.migration)
    try:
        async with attacker.transaction():
            await enter(attacker, bob)
            assert await attacker.fetchval("SELECT count(*) FROM kijko.projects") == 1
            await owner.execute("SELECT kijko_private.rotate_context_key()")
            assert await attacker.fetchval("SELECT count(*) FROM kijko.projects") == 0
    finally:
        await owner.close()
    after = await load_service_capability(kijko.system_db)
    assert after.reveal() != before.reveal()
    actor = ServiceActor("scheduler", "rotation")
    with pytest.raises(asyncpg.PostgresError) as refused:
        async with service_session(kijko.app_db, before, UUID(bob.org_id), actor):
            pass
    assert refused.value.sqlstate == "KJ401"
    async with service_session(kijko.app_db, after, UUID(bob.org_id), actor) as db:
        assert await db.fetchval("SELECT count(*) FROM kijko.projects") == 1
    # New requests work with the new key; the test run's runtime (shared by later tests) reads
    # the new capability now rather than within CAPABILITY_SECONDS.
    assert (await client.get(API, headers=bob.headers)).status_code == 200
    kijko.forget_service_capability()
    assert (await kijko.service_capability()).reveal() == after.reveal()
