"""The habit scheduler (kijko_core/habits/scheduler.py, docs/habits.md#the-scheduler): due habits
fire once, two schedulers on their own pools never double-fire, downtime gives one catch-up,
inactive habits and skills do not run, executions land in the habit's organization only, an
interrupted tick is completed without a second fire, and habits failing too often in a row turn
themselves off with an event and a mail.

The clock (decision 0116): ``tick(kijko, at=…)`` stands at a chosen instant; everything else
(executed_at, updated_at…) keeps the database's own ``now()``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from kijko_core import events
from kijko_core.db.session import ServiceActor, load_service_capability, service_session, system_session
from kijko_core.executions import lifecycle
from kijko_core.habits import scheduler
from kijko_core.jobs import sweep_steps
from kijko_core.jobs.worker import run_until_idle
from kijko_core.runtime import Kijko
from kijko_core.skills import service as skills
from tests import runs_kit
from tests.automation import create_skill
from tests.conftest import Account
from tests.habits_kit import API, create_habit


async def habit_row(kijko: Kijko, habit_id: str) -> dict[str, Any]:
    async with system_session(kijko.system_db) as db:
        row = await db.fetchrow("SELECT * FROM kijko.habits WHERE id = $1", UUID(habit_id))
    assert row is not None
    return dict(row)


async def fires(kijko: Kijko, habit_id: str) -> list[dict[str, Any]]:
    async with system_session(kijko.system_db) as db:
        rows = await db.fetch(
            "SELECT * FROM kijko.skill_executions WHERE reference_id = $1 ORDER BY scheduled_for", UUID(habit_id)
        )
    return [dict(row) for row in rows]


@pytest.fixture
async def second(settings: Any) -> AsyncIterator[Kijko]:
    """Another scheduler process's runtime: pools of its own."""
    runtime = await Kijko.start(settings)
    try:
        yield runtime
    finally:
        await runtime.stop()


async def test_the_tick_is_a_sweep_step_of_the_worker() -> None:
    assert sweep_steps()["habits"] is scheduler.sweep


async def test_a_due_habit_fires_once_for_its_instant(client: Any, kijko: Kijko, alice: Account) -> None:
    habit = await create_habit(client, alice, scheduleCron="*/5 * * * *", timezone="UTC", config={"topic": "tea"})
    due: datetime = (await habit_row(kijko, habit["id"]))["next_run_at"]

    await scheduler.tick(kijko, at=due - timedelta(seconds=1))  # not yet
    assert await fires(kijko, habit["id"]) == []

    at = due + timedelta(seconds=20)
    await scheduler.tick(kijko, at=at)
    await scheduler.tick(kijko, at=at)  # again at the same instant: nothing more
    [execution] = await fires(kijko, habit["id"])
    assert execution["scheduled_for"] == due and execution["execution_type"] == "habit"
    assert (str(execution["organization_id"]), str(execution["user_id"])) == (alice.org_id, alice.user_id)
    assert execution["input"] == {"topic": "tea"} and execution["status"] == "pending"
    assert execution["snapshot"]["skillId"] == habit["skillId"] and str(execution["skill_id"]) == habit["skillId"]
    after = await habit_row(kijko, habit["id"])
    assert after["next_run_at"] == due + timedelta(minutes=5)
    assert (after["run_count"], after["last_run_at"]) == (1, due)
    shown = await (await client.get(f"{API}/{habit['id']}", headers=alice.headers)).get_json()
    assert shown["runCount"] == 1


async def test_two_schedulers_on_their_own_pools_never_double_fire(
    client: Any, kijko: Kijko, second: Kijko, alice: Account, bob: Account
) -> None:
    habits = []
    for account in (alice, bob):
        skill = await create_skill(client, account)
        habits += [
            await create_habit(client, account, skill, scheduleCron="* * * * *", timezone="UTC") for _ in range(15)
        ]
    due = max([(await habit_row(kijko, h["id"]))["next_run_at"] for h in habits])
    at = due + timedelta(seconds=1)
    for _ in range(3):  # three rounds of two concurrent ticks with small batches
        reports = await asyncio.gather(scheduler.tick(kijko, at=at, batch=4), scheduler.tick(second, at=at, batch=4))
        assert all(not report.errors for report in reports)
    for habit in habits:
        fired = await fires(kijko, habit["id"])
        assert len(fired) == 1, habit["id"]
        row = await habit_row(kijko, habit["id"])
        assert row["run_count"] == 1 and row["next_run_at"] > at
        # Never in another organization than the habit's.
        assert fired[0]["organization_id"] == row["organization_id"] and fired[0]["user_id"] == row["user_id"]


async def test_after_downtime_one_catch_up_run_then_the_schedule_resumes(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    habit = await create_habit(client, alice, scheduleCron="*/15 * * * *", timezone="UTC")
    due: datetime = (await habit_row(kijko, habit["id"]))["next_run_at"]
    at = due + timedelta(hours=3, minutes=7)  # twelve instants missed
    await scheduler.tick(kijko, at=at)
    [catch_up] = await fires(kijko, habit["id"])
    assert catch_up["scheduled_for"] == due  # labelled with the first missed instant
    row = await habit_row(kijko, habit["id"])
    assert row["next_run_at"] == due + timedelta(hours=3, minutes=15) and row["run_count"] == 1
    await scheduler.tick(kijko, at=row["next_run_at"])
    assert [e["scheduled_for"] for e in await fires(kijko, habit["id"])] == [due, row["next_run_at"]]


async def test_inactive_habits_do_not_fire_and_an_inactive_skill_is_skipped_and_recorded(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    off = await create_habit(client, alice, scheduleCron="* * * * *", isActive=False)
    skill = await create_skill(client, alice)
    skipped = await create_habit(client, alice, skill, scheduleCron="* * * * *", timezone="UTC")
    await client.put(f"/api/v1/skills/{skill['id']}", json={"isActive": False}, headers=alice.headers)
    due: datetime = (await habit_row(kijko, skipped["id"]))["next_run_at"]
    await scheduler.tick(kijko, at=due + timedelta(hours=1))
    assert await fires(kijko, off["id"]) == [] and await fires(kijko, skipped["id"]) == []
    assert (await habit_row(kijko, off["id"]))["next_run_at"] is None
    row = await habit_row(kijko, skipped["id"])
    assert row["last_error_message"] == scheduler.SKILL_INACTIVE_MESSAGE
    assert (row["run_count"], row["consecutive_failures"], row["is_active"]) == (0, 0, True)
    assert row["next_run_at"] == due + timedelta(hours=1, minutes=1)


async def test_a_config_that_no_longer_fits_the_skill_counts_as_a_failure(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    skill = await create_skill(client, alice)
    habit = await create_habit(client, alice, skill, scheduleCron="* * * * *", timezone="UTC", config={"topic": 5})
    due: datetime = (await habit_row(kijko, habit["id"]))["next_run_at"]
    await scheduler.tick(kijko, at=due)
    assert await fires(kijko, habit["id"]) == []
    row = await habit_row(kijko, habit["id"])
    assert row["consecutive_failures"] == 1 and "config.topic" in row["last_error_message"]
    assert row["next_run_at"] > due


async def test_an_interrupted_tick_is_completed_without_a_second_fire(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    """A scheduler that died after its execution committed and before the habit advanced: the
    execution exists for (habit, next_run_at), the habit still points at that instant."""
    habit = await create_habit(client, alice, scheduleCron="*/10 * * * *", timezone="UTC")
    row = await habit_row(kijko, habit["id"])
    capability = await load_service_capability(kijko.system_db)
    async with service_session(
        kijko.app_db, capability, UUID(alice.org_id), ServiceActor("habits.scheduler", "crashed")
    ) as db:
        skill = await runs_kit_skill(db, row["skill_id"])
        first = await lifecycle.start(
            db,
            snapshot=skills.snapshot(skill),
            input={"topic": "the weather"},
            execution_type="habit",
            user_id=row["user_id"],
            skill_id=row["skill_id"],
            reference_id=row["id"],
            scheduled_for=row["next_run_at"],
            plans=kijko.plans,
        )
    assert first is not None
    await scheduler.tick(kijko, at=row["next_run_at"] + timedelta(seconds=5))
    [only] = await fires(kijko, habit["id"])
    assert only["id"] == first
    after = await habit_row(kijko, habit["id"])
    assert after["next_run_at"] == row["next_run_at"] + timedelta(minutes=10) and after["run_count"] == 1


async def runs_kit_skill(db: Any, skill_id: UUID) -> Any:
    from kijko_core.skills import repository

    skill = await repository.get(db, db.org_id, skill_id)
    assert skill is not None
    return skill


async def test_failing_runs_in_a_row_turn_the_habit_off_with_an_event_and_a_mail(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    limit = kijko.settings.habit_max_consecutive_failures
    skill = await runs_kit.insert_skill(kijko, alice, type_config={"fail_code": "PROVIDER_ERROR"})
    habit = await create_habit(
        client, alice, {"id": str(skill["id"])}, scheduleCron="* * * * *", timezone="UTC", config={"name": "Ada"}
    )
    port = events.port()
    assert isinstance(port, events.InProcessEvents)
    seen = len(port.events)
    for n in range(1, limit + 1):
        due = (await habit_row(kijko, habit["id"]))["next_run_at"]
        seen = len(port.events)
        await scheduler.tick(kijko, at=due)
        await run_until_idle(kijko)
        row = await habit_row(kijko, habit["id"])
        assert row["consecutive_failures"] == n and row["is_active"] == (n < limit), n
        assert row["last_error_message"].startswith("PROVIDER_ERROR: ")
    # The ending of the limit-th failed run turned it off, in its own transaction (decision
    # 0139): no tick was needed. (Ticks fire every due habit of the database: other tests'
    # habits fail and turn off too, so only this habit's row, event and mail are looked at.)
    assert (row["is_active"], row["next_run_at"], row["consecutive_failures"]) == (False, None, limit)
    await scheduler.tick(kijko, at=due + timedelta(minutes=5))
    assert len(await fires(kijko, habit["id"])) == limit  # the next tick fired nothing

    def announced() -> list[events.Event]:
        return [
            e
            for e in list(port.events)[seen:]
            if e.event == "activity:new" and e.data.get("metadata", {}).get("habitId") == habit["id"]
        ]

    [activity] = announced()
    assert activity.room == f"user:{alice.user_id}"
    assert activity.data["type"] == "config" and activity.data["user"]["email"] == alice.email
    assert activity.data["metadata"]["consecutiveFailures"] == limit and str(limit) in activity.data["description"]

    async def mails() -> list[Any]:
        async with system_session(kijko.system_db) as db:
            return await db.fetch(
                "SELECT recipient, subject, organization_id FROM kijko.mail_outbox WHERE template = 'habit_disabled'"
                " AND recipient = $1",
                alice.email.lower(),
            )

    [mail] = await mails()
    assert skill["name"] in mail["subject"] and str(mail["organization_id"]) == alice.org_id
    # Later ticks (the safety net) find it off already, and tell nobody again.
    await scheduler.tick(kijko, at=due + timedelta(minutes=6))
    assert len(announced()) == 1 and len(await mails()) == 1
    # Activating again starts the count from zero.
    on = await (await client.post(f"{API}/{habit['id']}/activate", headers=alice.headers)).get_json()
    assert (on["isActive"], on["consecutiveFailures"], on["lastErrorMessage"]) == (True, 0, None)


async def test_a_completed_run_resets_the_count_and_a_cancelled_one_leaves_it(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    skill = await runs_kit.insert_skill(kijko, alice, type_config={})
    habit = await create_habit(
        client, alice, {"id": str(skill["id"])}, scheduleCron="* * * * *", timezone="UTC", config={"name": "Ada"}
    )
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.habits SET consecutive_failures = 2, last_error_message = 'x' WHERE id = $1",
            UUID(habit["id"]),
        )
    run = await (await client.post(f"{API}/{habit['id']}/run-now", headers=alice.headers)).get_json()
    capability = await load_service_capability(kijko.system_db)
    async with service_session(kijko.app_db, capability, UUID(alice.org_id), ServiceActor("test", "cancel")) as db:
        assert await lifecycle.cancel(db, UUID(run["executionId"])) is not None
    assert (await habit_row(kijko, habit["id"]))["consecutive_failures"] == 2
    due = (await habit_row(kijko, habit["id"]))["next_run_at"]
    await scheduler.tick(kijko, at=due)
    await run_until_idle(kijko)
    row = await habit_row(kijko, habit["id"])
    assert (row["consecutive_failures"], row["last_error_message"]) == (0, None)
    statuses = sorted(e["status"] for e in await fires(kijko, habit["id"]))
    assert statuses == ["cancelled", "completed"]
