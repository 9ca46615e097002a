"""The automation engine's tables against SQL on the app role (migration 0021, decision 0132).

Across organizations: a tenant session of one organization reads, changes and deletes none of
another's skills, executions, usage, habits, reflexes, deliveries, keys, alerts or analytics
events, and inserts none in its name. Within one organization: a member's session (an injected
statement) cannot lower the spend the cap counts, forge an execution's outcome, hand a skill,
habit or reflex to someone else, forget webhook deliveries, or set the organization's provider
keys. Each case runs the statement in a real tenant session."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
import pytest

from kijko_core.db.session import (
    ServiceActor,
    load_service_capability,
    service_session,
    system_session,
    tenant_session,
)
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.memberships import add_member

INSUFFICIENT_PRIVILEGE = "42501"  # also what a row-level security WITH CHECK refusal raises

TABLES = (
    "skills",
    "skill_executions",
    "llm_usage",
    "habits",
    "reflexes",
    "reflex_deliveries",
    "llm_keys",
    "llm_spend_alerts",
    "analytics_events",
)


async def refused(kijko: Kijko, account: Account, statement: str, *args: Any) -> None:
    with pytest.raises(asyncpg.PostgresError) as error:
        async with tenant_session(kijko.app_db, account.identity) as db:
            await db.execute(statement, *args)
    assert error.value.sqlstate == INSUFFICIENT_PRIVILEGE, error.value


async def seeded(kijko: Kijko, account: Account) -> dict[str, UUID]:
    """One row in each automation table of ``account``'s organization (inserted as the system)."""
    org, user = UUID(account.org_id), UUID(account.user_id)
    async with system_session(kijko.system_db) as db:
        skill = await db.fetchval(
            "INSERT INTO kijko.skills (organization_id, user_id, name, prompt_template, model)"
            " VALUES ($1, $2, 'Seeded skill', 'Say hello to {{name}}', 'gpt-4o') RETURNING id",
            org,
            user,
        )
        execution = await db.fetchval(
            "INSERT INTO kijko.skill_executions (organization_id, skill_id, user_id, execution_type, snapshot)"
            " VALUES ($1, $2, $3, 'manual', '{}'::jsonb) RETURNING id",
            org,
            skill,
            user,
        )
        await db.execute(
            "INSERT INTO kijko.llm_usage (organization_id, execution_id, user_id, provider, model, key_source,"
            " prompt_tokens, completion_tokens, cost, currency)"
            " VALUES ($1, $2, $3, 'openai', 'gpt-4o', 'platform', 10, 10, 2.5, 'usd')",
            org,
            execution,
            user,
        )
        habit = await db.fetchval(
            "INSERT INTO kijko.habits (organization_id, skill_id, user_id, schedule_cron, next_run_at)"
            " VALUES ($1, $2, $3, '*/5 * * * *', now() + interval '1 hour') RETURNING id",
            org,
            skill,
            user,
        )
        reflex = await db.fetchval(
            "INSERT INTO kijko.reflexes (organization_id, skill_id, user_id, trigger_type)"
            " VALUES ($1, $2, $3, 'webhook') RETURNING id",
            org,
            skill,
            user,
        )
        await db.execute(
            "INSERT INTO kijko.llm_keys (organization_id, provider, key_ciphertext, last4, updated_by)"
            " VALUES ($1, 'openai', 'sealed', 'abcd', $2)",
            org,
            user,
        )
        await db.execute(
            "INSERT INTO kijko.llm_spend_alerts (organization_id, period, threshold)"
            " VALUES ($1, date_trunc('month', now())::date, 80)",
            org,
        )
        await db.execute(
            "INSERT INTO kijko.analytics_events (organization_id, user_id, type, occurred_at, session_id)"
            " VALUES ($1, $2, 'conversion_signal', now(), 's1')",
            org,
            user,
        )
    # Deliveries are written by the receiver's service session (the system role only sweeps).
    capability = await load_service_capability(kijko.system_db)
    async with service_session(kijko.app_db, capability, org, ServiceActor("webhook", "test-1")) as db:
        await db.execute(
            "INSERT INTO kijko.reflex_deliveries (organization_id, reflex_id, delivery_id, matched)"
            " VALUES ($1, $2, 'msg_1', false)",
            org,
            reflex,
        )
    return {"skill": skill, "execution": execution, "habit": habit, "reflex": reflex}


async def counts(kijko: Kijko, org_id: str) -> dict[str, int]:
    async with system_session(kijko.system_db, readonly=True) as db:
        return {
            table: await db.fetchval(
                f"SELECT count(*) FROM kijko.{table} WHERE organization_id = $1",  # noqa: S608 — constants
                UUID(org_id),
            )
            for table in TABLES
        }


async def test_another_organizations_automation_rows_are_out_of_reach(
    kijko: Kijko, alice: Account, bob: Account
) -> None:
    ids = await seeded(kijko, alice)
    before = await counts(kijko, alice.org_id)
    assert all(before[table] == 1 for table in TABLES), before
    async with tenant_session(kijko.app_db, bob.identity) as db:
        for table in TABLES:
            assert await db.fetchval(f"SELECT count(*) FROM kijko.{table}") == 0, table  # noqa: S608
            if table not in ("llm_usage", "analytics_events", "llm_spend_alerts"):  # no DELETE grant at all
                assert await db.execute(f"DELETE FROM kijko.{table}") == "DELETE 0", table  # noqa: S608
        assert await db.execute("UPDATE kijko.skills SET is_active = false") == "UPDATE 0"
        assert await db.execute("UPDATE kijko.skill_executions SET status = 'cancelled'") == "UPDATE 0"
        assert await db.execute("UPDATE kijko.habits SET is_active = false, next_run_at = NULL") == "UPDATE 0"
        assert await db.execute("UPDATE kijko.reflexes SET is_active = false") == "UPDATE 0"
    org = UUID(alice.org_id)
    await refused(kijko, bob, "DELETE FROM kijko.llm_usage")
    # Rows in the other organization's name: refused, whatever the table.
    await refused(
        kijko,
        bob,
        "INSERT INTO kijko.skill_executions (organization_id, skill_id, user_id, execution_type, snapshot)"
        " VALUES ($1, $2, $3, 'manual', '{}'::jsonb)",
        org,
        ids["skill"],
        UUID(bob.user_id),
    )
    await refused(
        kijko,
        bob,
        "INSERT INTO kijko.habits (organization_id, skill_id, user_id, schedule_cron)"
        " VALUES ($1, $2, $3, '*/5 * * * *')",
        org,
        ids["skill"],
        UUID(bob.user_id),
    )
    await refused(
        kijko,
        bob,
        "INSERT INTO kijko.llm_usage (organization_id, user_id, provider, model, key_source, cost, currency, is_test)"
        " VALUES ($1, $2, 'openai', 'gpt-4o', 'platform', 1000, 'usd', true)",
        org,
        UUID(bob.user_id),
    )
    await refused(
        kijko,
        bob,
        "INSERT INTO kijko.llm_spend_alerts (organization_id, period, threshold)"
        " VALUES ($1, date_trunc('month', now())::date, 100)",
        org,
    )
    # Bob's own skill cannot reach Alice's through a habit or reflex either (composite keys).
    with pytest.raises(asyncpg.PostgresError):
        async with tenant_session(kijko.app_db, bob.identity) as db:
            await db.execute(
                "INSERT INTO kijko.reflexes (organization_id, skill_id, user_id, trigger_type)"
                " VALUES ($1, $2, $3, 'webhook')",
                UUID(bob.org_id),
                ids["skill"],
                UUID(bob.user_id),
            )
    assert await counts(kijko, alice.org_id) == before


async def test_a_member_cannot_lower_the_spend_the_cap_counts(kijko: Kijko, alice: Account) -> None:
    await seeded(kijko, alice)
    mallory = await add_member(kijko, alice.org_id, "member", first_name="Mallory")
    await refused(kijko, mallory, "DELETE FROM kijko.llm_usage")
    await refused(kijko, alice, "DELETE FROM kijko.llm_usage")
    # Backdating a row (out of this month) or paying it with the organization's key is as bad.
    await refused(
        kijko,
        mallory,
        "INSERT INTO kijko.llm_usage (organization_id, user_id, provider, model, key_source, cost, currency,"
        " is_test, created_at)"
        " VALUES ($1, $2, 'openai', 'gpt-4o', 'platform', 0, 'usd', true, now() - interval '1 year')",
        UUID(alice.org_id),
        UUID(mallory.user_id),
    )
    # A member's session adds its own test runs' usage only: not another's, not an execution's.
    await refused(
        kijko,
        mallory,
        "INSERT INTO kijko.llm_usage (organization_id, user_id, provider, model, key_source, cost, currency, is_test)"
        " VALUES ($1, $2, 'openai', 'gpt-4o', 'platform', 0, 'usd', true)",
        UUID(alice.org_id),
        UUID(alice.user_id),
    )
    await refused(
        kijko,
        mallory,
        "INSERT INTO kijko.llm_usage (organization_id, user_id, provider, model, key_source, cost, currency, is_test)"
        " VALUES ($1, $2, 'openai', 'gpt-4o', 'platform', 0, 'usd', false)",
        UUID(alice.org_id),
        UUID(mallory.user_id),
    )
    async with tenant_session(kijko.app_db, mallory.identity) as db:
        await db.execute(
            "INSERT INTO kijko.llm_usage (organization_id, user_id, provider, model, key_source, cost, currency,"
            " is_test) VALUES ($1, $2, 'openai', 'gpt-4o', 'platform', 0.5, 'usd', true)",
            UUID(alice.org_id),
            UUID(mallory.user_id),
        )
    async with system_session(kijko.system_db, readonly=True) as db:
        total = await db.fetchval(
            "SELECT sum(cost) FROM kijko.llm_usage WHERE organization_id = $1", UUID(alice.org_id)
        )
    assert str(total) == "3.0"


async def test_a_member_cannot_forge_an_executions_outcome(kijko: Kijko, alice: Account) -> None:
    ids = await seeded(kijko, alice)
    org, user = UUID(alice.org_id), UUID(alice.user_id)
    await refused(
        kijko,
        alice,
        "INSERT INTO kijko.skill_executions (organization_id, skill_id, user_id, execution_type, snapshot, status,"
        " completed_at) VALUES ($1, $2, $3, 'manual', '{}'::jsonb, 'completed', now())",
        org,
        ids["skill"],
        user,
    )
    await refused(
        kijko,
        alice,
        "INSERT INTO kijko.skill_executions (organization_id, skill_id, user_id, execution_type, snapshot, cost,"
        " currency) VALUES ($1, $2, $3, 'manual', '{}'::jsonb, 0, 'usd')",
        org,
        ids["skill"],
        user,
    )
    await refused(
        kijko,
        alice,
        "INSERT INTO kijko.skill_executions (organization_id, skill_id, user_id, execution_type, snapshot,"
        " executed_at) VALUES ($1, $2, $3, 'manual', '{}'::jsonb, now() - interval '1 year')",
        org,
        ids["skill"],
        user,
    )
    await refused(
        kijko,
        alice,
        "UPDATE kijko.skill_executions SET status = 'completed', output = 'forged', completed_at = now(),"
        " cost = 0, currency = 'usd', key_source = 'platform'",
    )
    await refused(kijko, alice, "UPDATE kijko.skill_executions SET prompt_tokens = 1, completion_tokens = 1")
    await refused(kijko, alice, 'UPDATE kijko.skill_executions SET snapshot = \'{"model": "other"}\'::jsonb')
    await refused(kijko, alice, "UPDATE kijko.skill_executions SET user_id = NULL")
    await refused(kijko, alice, "UPDATE kijko.skill_executions SET executed_at = now() - interval '1 year'")
    # What the API does in a member's session still works: record the job, cancel.
    async with tenant_session(kijko.app_db, alice.identity) as db:
        assert await db.execute("UPDATE kijko.skill_executions SET job_id = gen_random_uuid()") == "UPDATE 1"
        cancelled = await db.execute(
            "UPDATE kijko.skill_executions SET status = 'cancelled', error_message = 'Cancelled by user',"
            " completed_at = now(), updated_at = now() WHERE status IN ('pending', 'running')"
        )
        assert cancelled == "UPDATE 1"
    # A finished execution is the runs' alone.
    await refused(kijko, alice, "UPDATE kijko.skill_executions SET status = 'pending', completed_at = NULL")
    await refused(kijko, alice, "UPDATE kijko.skill_executions SET error_message = 'Nothing to see'")
    async with system_session(kijko.system_db, readonly=True) as db:
        row = await db.fetchrow(
            "SELECT status, cost, output FROM kijko.skill_executions WHERE id = $1", ids["execution"]
        )
    assert dict(row) == {"status": "cancelled", "cost": None, "output": None}


async def test_only_owners_and_admins_remove_execution_history(kijko: Kijko, alice: Account) -> None:
    ids = await seeded(kijko, alice)
    mallory = await add_member(kijko, alice.org_id, "member", first_name="Mallory")
    async with tenant_session(kijko.app_db, mallory.identity) as db:
        assert await db.execute("DELETE FROM kijko.skill_executions") == "DELETE 0"
    admin = await add_member(kijko, alice.org_id, "admin", first_name="Ada")
    async with tenant_session(kijko.app_db, admin.identity) as db:
        assert await db.execute("DELETE FROM kijko.skill_executions WHERE id = $1", ids["execution"]) == "DELETE 1"
    # The usage the execution paid stays counted.
    async with system_session(kijko.system_db, readonly=True) as db:
        assert (
            await db.fetchval("SELECT count(*) FROM kijko.llm_usage WHERE organization_id = $1", UUID(alice.org_id))
            == 1
        )


async def test_creators_cannot_be_changed(kijko: Kijko, alice: Account) -> None:
    await seeded(kijko, alice)
    mallory = await add_member(kijko, alice.org_id, "member", first_name="Mallory")
    for table in ("skills", "habits", "reflexes"):
        await refused(kijko, mallory, f"UPDATE kijko.{table} SET user_id = $1", UUID(mallory.user_id))  # noqa: S608
        await refused(kijko, mallory, f"UPDATE kijko.{table} SET created_at = now()")  # noqa: S608
    await refused(kijko, mallory, "UPDATE kijko.habits SET skill_id = skill_id")
    await refused(kijko, mallory, "UPDATE kijko.reflexes SET trigger_type = 'event'")


async def test_webhook_deliveries_are_the_receivers(kijko: Kijko, alice: Account) -> None:
    await seeded(kijko, alice)
    async with tenant_session(kijko.app_db, alice.identity) as db:
        assert await db.fetch("SELECT * FROM kijko.reflex_deliveries") == []
        assert await db.execute("DELETE FROM kijko.reflex_deliveries") == "DELETE 0"
    async with system_session(kijko.system_db, readonly=True) as db:
        assert (
            await db.fetchval(
                "SELECT count(*) FROM kijko.reflex_deliveries WHERE organization_id = $1", UUID(alice.org_id)
            )
            == 1
        )


async def test_only_owners_and_admins_set_provider_keys(kijko: Kijko, alice: Account) -> None:
    await seeded(kijko, alice)
    org = UUID(alice.org_id)
    mallory = await add_member(kijko, alice.org_id, "member", first_name="Mallory")
    async with tenant_session(kijko.app_db, mallory.identity) as db:
        redirected = await db.execute("UPDATE kijko.llm_keys SET base_url = 'https://attacker.example/v1'")
        assert redirected == "UPDATE 0"
        assert await db.execute("DELETE FROM kijko.llm_keys") == "DELETE 0"
    await refused(
        kijko,
        mallory,
        "INSERT INTO kijko.llm_keys (organization_id, provider, key_ciphertext, last4, base_url, updated_by)"
        " VALUES ($1, 'anthropic', 'x', 'x', 'https://attacker.example', $2)",
        org,
        UUID(mallory.user_id),
    )
    # An admin sets keys in their own name only.
    admin = await add_member(kijko, alice.org_id, "admin", first_name="Ada")
    await refused(kijko, admin, "UPDATE kijko.llm_keys SET last4 = 'wxyz', updated_by = $1", UUID(alice.user_id))
    async with tenant_session(kijko.app_db, admin.identity) as db:
        assert await db.execute("UPDATE kijko.llm_keys SET last4 = 'wxyz', updated_by = $1", UUID(admin.user_id)) == (
            "UPDATE 1"
        )
    async with system_session(kijko.system_db, readonly=True) as db:
        row = await db.fetchrow("SELECT last4, base_url FROM kijko.llm_keys WHERE organization_id = $1", org)
    assert dict(row) == {"last4": "wxyz", "base_url": None}
