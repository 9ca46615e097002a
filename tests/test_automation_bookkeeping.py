"""The automation engine's bookkeeping and spend mails against SQL on the app role (migration
0022, decisions 0136, 0137, 0139), next to tests/test_automation_limits.py (0021).

A member's tenant session (an injected statement, a bug) can no longer forge a skill's run
count, a habit's or reflex's counters, failures and last run, schedule a habit's run in the
past, or pre-insert this month's spend alerts to keep the owners' mails from going out; the
API's own paths (execute, run-now, reschedule, activate, reset-errors, inline tests over the
cap) still work. An automation whose run reaches the failure limit is off in the transaction
that ends that run: the next webhook delivery is refused at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
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
from kijko_core.executions import lifecycle
from kijko_core.jobs.worker import run_until_idle
from kijko_core.reflexes import fire
from kijko_core.runtime import Kijko
from kijko_server.app import create_app
from tests.conftest import Account
from tests.habits_kit import create_habit
from tests.memberships import add_member
from tests.reflex_kit import create_reflex, deliver, signed
from tests.runs_kit import MODEL, cancel_leftovers, insert_skill, snapshot

API = "/api/v1"
INSUFFICIENT_PRIVILEGE = "42501"


async def refused(kijko: Kijko, account: Account, statement: str, *args: Any) -> None:
    with pytest.raises(asyncpg.PostgresError) as error:
        async with tenant_session(kijko.app_db, account.identity) as db:
            await db.execute(statement, *args)
    assert error.value.sqlstate == INSUFFICIENT_PRIVILEGE, error.value


@pytest.fixture(autouse=True)
async def _clean(kijko: Kijko) -> AsyncIterator[None]:
    yield
    await cancel_leftovers(kijko)


@pytest.fixture(scope="module")
async def capped(make_settings: Any) -> AsyncIterator[Kijko]:
    runtime = await Kijko.start(make_settings(llm_monthly_spend_cap="1.00"))
    try:
        yield runtime
    finally:
        await cancel_leftovers(runtime)
        await runtime.stop()


@pytest.fixture
async def capped_client(capped: Kijko) -> AsyncIterator[Any]:
    application = create_app(kijko=capped)
    async with application.test_app():
        yield application.test_client()


async def fetch_row(kijko: Kijko, table: str, row_id: Any) -> dict[str, Any]:
    async with system_session(kijko.system_db, readonly=True) as db:
        row = await db.fetchrow(f"SELECT * FROM kijko.{table} WHERE id = $1", UUID(str(row_id)))  # noqa: S608
    assert row is not None
    return dict(row)


async def spent(kijko: Kijko, account: Account, cost: str) -> None:
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "INSERT INTO kijko.llm_usage (organization_id, provider, model, key_source, cost, currency)"
            " VALUES ($1, 'anthropic', $2, 'platform', $3, 'usd')",
            UUID(account.org_id),
            MODEL,
            Decimal(cost),
        )


async def mail_templates(kijko: Kijko, account: Account, pattern: str) -> list[str]:
    async with system_session(kijko.system_db, readonly=True) as db:
        rows = await db.fetch(
            "SELECT template FROM kijko.mail_outbox WHERE organization_id = $1 AND template LIKE $2 ORDER BY id",
            UUID(account.org_id),
            pattern,
        )
    return [r["template"] for r in rows]


# --- skills --------------------------------------------------------------------------------------


async def test_a_skills_run_count_is_the_databases(client: Any, kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(kijko, alice)
    mallory = await add_member(kijko, alice.org_id, "member", first_name="Mallory")
    for account in (mallory, alice):
        await refused(kijko, account, "UPDATE kijko.skills SET execution_count = 1000")
        await refused(kijko, account, "UPDATE kijko.skills SET execution_count = execution_count + 1")
        await refused(kijko, account, "UPDATE kijko.skills SET last_executed_at = now() - interval '1 day'")
    await refused(
        kijko,
        mallory,
        "INSERT INTO kijko.skills (organization_id, user_id, name, prompt_template, model, execution_count)"
        " VALUES ($1, $2, 'Inflated', 'Say hello to {{name}}', 'gpt-4o', 1000)",
        UUID(alice.org_id),
        UUID(mallory.user_id),
    )
    # The API's start counts the run (in the member's session, by the insert itself)…
    response = await client.post(
        f"{API}/skills/{skill['id']}/execute", json={"input": {"name": "A"}}, headers=alice.headers
    )
    assert response.status_code in (200, 202), await response.get_data(as_text=True)
    got = await (await client.get(f"{API}/skills/{skill['id']}", headers=alice.headers)).get_json()
    assert got["executionCount"] == 1 and got["lastExecutedAt"] is not None
    # … and many runs of one skill started at once count once each.
    runs = [
        lifecycle.Run(snapshot(skill), {"name": str(n)}, "manual", UUID(alice.user_id), skill["id"]) for n in range(3)
    ]
    async with tenant_session(kijko.app_db, alice.identity) as db:
        await lifecycle.start_many(db, runs, plans=kijko.plans)
    assert (await fetch_row(kijko, "skills", skill["id"]))["execution_count"] == 4


# --- habits --------------------------------------------------------------------------------------


async def test_a_habits_bookkeeping_is_the_runs(client: Any, kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(kijko, alice)
    habit = await create_habit(client, alice, {"id": str(skill["id"])}, config={"name": "A"})
    habit_id = UUID(habit["id"])
    mallory = await add_member(kijko, alice.org_id, "member", first_name="Mallory")
    for statement in (
        "UPDATE kijko.habits SET run_count = 99",
        "UPDATE kijko.habits SET last_run_at = now()",
        "UPDATE kijko.habits SET consecutive_failures = 4",
        "UPDATE kijko.habits SET last_error_message = 'Nothing to see'",
        "UPDATE kijko.habits SET consecutive_failures = consecutive_failures + 1, updated_at = now()",
        # A run in the past (or now) would fire at the next tick, outside the schedule.
        "UPDATE kijko.habits SET next_run_at = now() - interval '1 minute'",
        "UPDATE kijko.habits SET next_run_at = now()",
        "UPDATE kijko.habits SET updated_at = now() - interval '1 day'",
    ):
        await refused(kijko, mallory, statement)
    for columns, values in (
        ("run_count", "5"),
        ("consecutive_failures", "4"),
        ("last_run_at", "now()"),
        ("next_run_at", "now() - interval '1 minute'"),
    ):
        await refused(
            kijko,
            mallory,
            f"INSERT INTO kijko.habits (organization_id, skill_id, user_id, schedule_cron, {columns})"  # noqa: S608
            f" VALUES ($1, $2, $3, '*/5 * * * *', {values})",
            UUID(alice.org_id),
            skill["id"],
            UUID(mallory.user_id),
        )
    # What the rule lets through: a reset, a next run in the future.
    async with tenant_session(kijko.app_db, mallory.identity) as db:
        assert await db.execute("UPDATE kijko.habits SET consecutive_failures = 0, last_error_message = NULL") == (
            "UPDATE 1"
        )
        assert await db.execute("UPDATE kijko.habits SET next_run_at = now() + interval '1 hour'") == "UPDATE 1"
    # A failure is counted once per failed run the transaction recorded, never twice.
    record_failed = (
        "INSERT INTO kijko.skill_executions (organization_id, skill_id, user_id, execution_type, reference_id,"
        " snapshot, status, error_code, completed_at)"
        " VALUES ($1, $2, $3, 'habit', $4, '{}'::jsonb, 'failed', 'SPEND_CAP_REACHED', now())"
    )
    bump = "UPDATE kijko.habits SET consecutive_failures = consecutive_failures + 1, updated_at = now() WHERE id = $1"
    await refused(kijko, mallory, bump, habit_id)
    with pytest.raises(asyncpg.PostgresError) as error:
        async with tenant_session(kijko.app_db, mallory.identity) as db:
            await db.execute(record_failed, UUID(alice.org_id), skill["id"], UUID(mallory.user_id), habit_id)
            assert await db.execute(bump, habit_id) == "UPDATE 1"
            await db.execute(bump, habit_id)
    assert error.value.sqlstate == INSUFFICIENT_PRIVILEGE
    assert (await fetch_row(kijko, "habits", habit_id))["consecutive_failures"] == 0

    # The API's paths still work in a member's session: reschedule, deactivate, activate,
    # reset-errors, run-now (counted by the database).
    moved = await client.put(f"{API}/habits/{habit_id}", json={"scheduleCron": "30 7 * * *"}, headers=alice.headers)
    assert moved.status_code == 200 and (await moved.get_json())["nextRunAt"] != habit["nextRunAt"]
    off = await (await client.post(f"{API}/habits/{habit_id}/deactivate", headers=alice.headers)).get_json()
    assert off["isActive"] is False
    on = await (await client.post(f"{API}/habits/{habit_id}/activate", headers=alice.headers)).get_json()
    assert on["isActive"] is True and on["nextRunAt"]
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.habits SET consecutive_failures = 3, last_error_message = 'boom' WHERE id = $1", habit_id
        )
    reset = await (await client.post(f"{API}/habits/{habit_id}/reset-errors", headers=alice.headers)).get_json()
    assert reset["consecutiveFailures"] == 0
    ran = await client.post(f"{API}/habits/{habit_id}/run-now", headers=alice.headers)
    assert ran.status_code in (200, 202), await ran.get_data(as_text=True)
    row = await fetch_row(kijko, "habits", habit_id)
    assert row["run_count"] == 1 and row["last_run_at"] is not None


async def test_a_habit_run_now_refused_at_the_limit_turns_the_habit_off_at_once(
    capped: Kijko, capped_client: Any, alice: Account
) -> None:
    """The member's session counts the failure it recorded (the spend cap's refusal) and, at
    the limit, turns the habit off and tells its creator — in the same transaction."""
    skill = await insert_skill(capped, alice)
    habit = await create_habit(capped_client, alice, {"id": str(skill["id"])}, config={"name": "A"})
    habit_id = UUID(habit["id"])
    limit = capped.settings.habit_max_consecutive_failures
    async with system_session(capped.system_db) as db:
        await db.execute("UPDATE kijko.habits SET consecutive_failures = $2 WHERE id = $1", habit_id, limit - 1)
    await spent(capped, alice, "1.50")
    response = await capped_client.post(f"{API}/habits/{habit_id}/run-now", headers=alice.headers)
    assert response.status_code in (200, 202), await response.get_data(as_text=True)
    row = await fetch_row(capped, "habits", habit_id)
    assert (row["is_active"], row["next_run_at"], row["consecutive_failures"], row["run_count"]) == (
        False,
        None,
        limit,
        1,
    )
    assert row["last_error_message"].startswith("SPEND_CAP_REACHED")
    assert await mail_templates(capped, alice, "habit_disabled") == ["habit_disabled"]


# --- reflexes ------------------------------------------------------------------------------------


async def test_a_reflexs_bookkeeping_is_the_runs(client: Any, kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(kijko, alice)
    reflex = await create_reflex(client, alice, skill["id"])
    reflex_id = UUID(reflex["id"])
    mallory = await add_member(kijko, alice.org_id, "member", first_name="Mallory")
    for statement in (
        "UPDATE kijko.reflexes SET trigger_count = 99",
        "UPDATE kijko.reflexes SET last_triggered_at = now()",
        "UPDATE kijko.reflexes SET consecutive_failures = 2",
        "UPDATE kijko.reflexes SET last_error_message = 'Nothing to see'",
        "UPDATE kijko.reflexes SET updated_at = now() - interval '1 day'",
    ):
        await refused(kijko, mallory, statement)
    await refused(
        kijko,
        mallory,
        "INSERT INTO kijko.reflexes (organization_id, skill_id, user_id, trigger_type, trigger_count)"
        " VALUES ($1, $2, $3, 'webhook', 50)",
        UUID(alice.org_id),
        skill["id"],
        UUID(mallory.user_id),
    )
    # A delivery (the receiver's service session) counts; reset-errors (the member's) resets.
    response = await deliver(client, reflex["id"], *signed(reflex["triggerConfig"]["secret"], {"name": "Ada"}))
    assert response.status_code == 202
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.reflexes SET consecutive_failures = 2, last_error_message = 'boom' WHERE id = $1", reflex_id
        )
    reset = await (await client.post(f"{API}/reflexes/{reflex_id}/reset-errors", headers=alice.headers)).get_json()
    assert (reset["consecutiveFailures"], reset["triggerCount"]) == (0, 1)


async def test_a_reflex_is_off_when_the_run_reaching_the_limit_ends(client: Any, kijko: Kijko, alice: Account) -> None:
    failing = await insert_skill(kijko, alice, type_config={"fail_code": "PROVIDER_ERROR"})
    reflex = await create_reflex(client, alice, failing["id"])
    secret = reflex["triggerConfig"]["secret"]
    limit = kijko.settings.reflex_max_consecutive_failures
    for n in range(limit):
        response = await deliver(client, reflex["id"], *signed(secret, {"name": "Ada"}))
        assert response.status_code == 202, n
        await run_until_idle(kijko)
    # No tick ran: the ending of the limit-th failed run turned the reflex off and told Alice.
    got = await (await client.get(f"{API}/reflexes/{reflex['id']}", headers=alice.headers)).get_json()
    assert (got["isActive"], got["consecutiveFailures"]) == (False, limit)
    assert await mail_templates(kijko, alice, "reflex_disabled") == ["reflex_disabled"]
    # The very next delivery is refused (the same 401 as an unknown reflex) and runs nothing.
    assert (await deliver(client, reflex["id"], *signed(secret, {"name": "Ada"}))).status_code == 401
    async with system_session(kijko.system_db, readonly=True) as db:
        runs = await db.fetchval(
            "SELECT count(*) FROM kijko.skill_executions WHERE reference_id = $1", UUID(reflex["id"])
        )
    assert runs == limit
    # The tick, the safety net, finds nothing left to do for it: nobody is told twice.
    await fire.disable_failing(kijko)
    assert await mail_templates(kijko, alice, "reflex_disabled") == ["reflex_disabled"]


# --- the spend mails -----------------------------------------------------------------------------


async def test_only_service_sessions_record_spend_alerts(kijko: Kijko, alice: Account) -> None:
    mallory = await add_member(kijko, alice.org_id, "member", first_name="Mallory")
    pre_insert = (
        "INSERT INTO kijko.llm_spend_alerts (organization_id, period, threshold)"
        " VALUES ($1, date_trunc('month', now())::date, $2)"
    )
    for account in (mallory, alice):  # a member, and even an owner's own session
        for threshold in (80, 100):
            await refused(kijko, account, pre_insert, UUID(alice.org_id), threshold)
    capability = await load_service_capability(kijko.system_db)
    actor = ServiceActor("spend.alerts", "test-1")
    async with service_session(kijko.app_db, capability, UUID(alice.org_id), actor) as db:
        assert await db.execute(pre_insert, UUID(alice.org_id), 80) == "INSERT 0 1"


async def test_an_inline_test_over_80_percent_still_mails_the_owners(
    capped: Kijko, capped_client: Any, alice: Account
) -> None:
    """The inline test runs in the member's request; its alert is recorded in a service session."""
    mallory = await add_member(capped, alice.org_id, "member", first_name="Mallory")
    await spent(capped, alice, "0.70")
    skill = await insert_skill(capped, mallory, type_config={"cost": "0.15"})
    response = await capped_client.post(
        f"{API}/skills/{skill['id']}/test", json={"input": {"name": "A"}}, headers=mallory.headers
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert (await response.get_json())["status"] == "completed"
    assert await mail_templates(capped, alice, "spend_cap%") == ["spend_cap_warning"]
