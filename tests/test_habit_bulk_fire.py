"""Firing in bulk (docs/habits.md#the-scheduler, docs/executions.md): ``lifecycle.start_many``
writes many executions with one statement per table and keeps the habit's fire key — the first
of two runs for one ``(habit, instant)`` in a batch wins, a run already fired by an earlier
statement is skipped, every execution gets exactly one job and one count on its skill, and the
spend cap still records refused habit runs ``failed``; two schedulers over 500 habits fire each
exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from kijko_core.db.session import system_session, tenant_session
from kijko_core.executions import lifecycle
from kijko_core.executions.spend import SpendCapReached
from kijko_core.habits import scheduler
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.ingestion_kit import recording
from tests.runs_kit import cancel_leftovers, capped_runtime, insert_skill, snapshot, spent

INSTANT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
async def _clean(kijko: Kijko) -> AsyncIterator[None]:
    yield
    await cancel_leftovers(kijko)  # no other module's run_until_idle runs these executions


def habit_run(account: Account, skill: dict[str, Any], habit_id: UUID, at: datetime, name: str) -> lifecycle.Run:
    return lifecycle.Run(
        snapshot=snapshot(skill),
        input={"name": name},
        execution_type="habit",
        user_id=UUID(account.user_id),
        skill_id=skill["id"],
        reference_id=habit_id,
        scheduled_for=at,
    )


async def start_many(
    kijko: Kijko, account: Account, runs: list[lifecycle.Run], *, capped: Kijko | None = None
) -> list[UUID | None]:
    """``runs`` started in a session of ``account`` (with the spend cap of ``capped``)."""
    async with tenant_session(kijko.app_db, account.identity) as db:
        return await lifecycle.start_many(db, runs, kijko=capped, plans=kijko.plans)


async def written(kijko: Kijko, skill_id: UUID) -> tuple[list[dict[str, Any]], int, dict[UUID, dict[str, Any]]]:
    """The skill's executions (oldest first), its run count, and the execution.run jobs by id."""
    async with system_session(kijko.system_db) as db:
        executions = await db.fetch(
            "SELECT * FROM kijko.skill_executions WHERE skill_id = $1 ORDER BY executed_at, id", skill_id
        )
        count = await db.fetchval("SELECT execution_count FROM kijko.skills WHERE id = $1", skill_id)
        jobs = await db.fetch(
            "SELECT * FROM kijko.jobs WHERE kind = 'execution.run' AND payload->>'execution_id' = ANY($1::text[])",
            [str(e["id"]) for e in executions],
        )
    return [dict(e) for e in executions], count, {j["id"]: dict(j) for j in jobs}


async def test_the_first_of_two_runs_for_one_habit_instant_in_a_batch_is_the_one_kept(
    kijko: Kijko, alice: Account
) -> None:
    skill = await insert_skill(kijko, alice)
    one, two = uuid.uuid4(), uuid.uuid4()
    manual = lifecycle.Run(
        snapshot=snapshot(skill), input={"name": "Eve"}, execution_type="manual", user_id=UUID(alice.user_id),
        skill_id=skill["id"],
    )  # fmt: skip
    runs = [
        habit_run(alice, skill, one, INSTANT, "Ada"),
        habit_run(alice, skill, two, INSTANT, "Bob"),
        habit_run(alice, skill, one, INSTANT, "Cy"),  # the same fire again, in the same batch
        manual,
        habit_run(alice, skill, one, INSTANT + timedelta(days=1), "Dee"),  # the habit's next instant
    ]
    async with recording() as recorder:
        ids = await start_many(kijko, alice, runs)
    assert ids[2] is None and all(i is not None for i in ids[:2] + ids[3:])
    assert len(set(ids)) == 5  # four distinct ids and the None
    executions, count, jobs = await written(kijko, skill["id"])
    by_id = {e["id"]: e for e in executions}
    assert set(by_id) == {i for i in ids if i is not None}
    assert by_id[ids[0]]["input"] == {"name": "Ada"}  # the first one, not "Cy"
    assert (by_id[ids[3]]["execution_type"], by_id[ids[3]]["scheduled_for"]) == ("manual", None)
    assert all(e["status"] == "pending" and e["snapshot"] == snapshot(skill) for e in executions)
    assert count == 4
    # One job per execution, named on its row and naming it back.
    assert {e["job_id"] for e in executions} == set(jobs)
    assert all(jobs[e["job_id"]]["payload"] == {"execution_id": str(e["id"])} for e in executions)
    assert all(str(j["organization_id"]) == alice.org_id for j in jobs.values())
    # One execution:updated per execution, after the commit, in the order of the runs.
    announced = recorder.recorded(room=f"user:{alice.user_id}", event="execution:updated")
    assert [e.data["executionId"] for e in announced] == [str(i) for i in ids if i is not None]


async def test_a_batch_spanning_an_earlier_fire_skips_it_and_starts_the_rest(kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(kijko, alice)
    habit, other = uuid.uuid4(), uuid.uuid4()
    async with tenant_session(kijko.app_db, alice.identity) as db:
        earlier = await lifecycle.start(
            db,
            snapshot=snapshot(skill),
            input={"name": "Ada"},
            execution_type="habit",
            user_id=UUID(alice.user_id),
            skill_id=skill["id"],
            reference_id=habit,
            scheduled_for=INSTANT,
            plans=kijko.plans,
        )
    assert earlier is not None
    later = INSTANT + timedelta(hours=1)
    ids = await start_many(
        kijko,
        alice,
        [
            habit_run(alice, skill, habit, INSTANT, "Again"),
            habit_run(alice, skill, habit, later, "Later"),
            habit_run(alice, skill, other, INSTANT, "Other"),
        ],
    )
    assert ids[0] is None and ids[1] is not None and ids[2] is not None
    # Everything already fired: nothing is written, nothing counted.
    assert await start_many(kijko, alice, [habit_run(alice, skill, habit, later, "x")]) == [None]
    executions, count, jobs = await written(kijko, skill["id"])
    by_id = {e["id"]: e for e in executions}
    assert set(by_id) == {earlier, ids[1], ids[2]}
    assert by_id[earlier]["input"] == {"name": "Ada"}  # the earlier fire is untouched
    assert count == 3 and len(jobs) == 3 and {e["job_id"] for e in executions} == set(jobs)


async def test_a_failing_batch_writes_nothing(kijko: Kijko, alice: Account, bob: Account) -> None:
    """All or nothing: a run of another organization's skill fails the whole statement (the
    foreign key is per organization), and the transaction leaves no execution, job or count."""
    skill = await insert_skill(kijko, alice)
    bobs = await insert_skill(kijko, bob)
    runs = [habit_run(alice, skill, uuid.uuid4(), INSTANT, "Ada"), habit_run(alice, bobs, uuid.uuid4(), INSTANT, "Bo")]
    with pytest.raises(Exception, match="foreign key"):
        await start_many(kijko, alice, runs)
    assert await written(kijko, skill["id"]) == ([], 0, {})
    assert await written(kijko, bobs["id"]) == ([], 0, {})
    with pytest.raises(ValueError, match="execution_type"):
        await start_many(kijko, alice, [lifecycle.Run({}, {}, "cron", None, None)])


@pytest.fixture(scope="module")
async def capped(make_settings: Any) -> AsyncIterator[Kijko]:
    async with capped_runtime(make_settings) as runtime:
        yield runtime


async def test_over_the_spend_cap_habit_runs_are_recorded_failed_and_an_api_run_refuses_the_batch(
    capped: Kijko, alice: Account
) -> None:
    skill = await insert_skill(capped, alice)
    await spent(capped, alice, "1.50")
    manual = lifecycle.Run(snapshot(skill), {"name": "Eve"}, "manual", UUID(alice.user_id), skill["id"])
    habit = uuid.uuid4()
    with pytest.raises(SpendCapReached):
        await start_many(capped, alice, [habit_run(alice, skill, habit, INSTANT, "Ada"), manual], capped=capped)
    assert await written(capped, skill["id"]) == ([], 0, {})  # refused before anything was written

    runs = [habit_run(alice, skill, habit, INSTANT, "Ada"), habit_run(alice, skill, habit, INSTANT, "Ada")]
    async with recording() as recorder:
        ids = await start_many(capped, alice, runs, capped=capped)
    assert ids[0] is not None and ids[1] is None
    [row], count, jobs = await written(capped, skill["id"])
    assert (row["status"], row["error_code"], row["job_id"], row["completed_at"] is not None) == (
        "failed",
        "SPEND_CAP_REACHED",
        None,
        True,
    )
    assert count == 1 and jobs == {}  # counted as a run; nothing to run
    [event] = recorder.recorded(room=f"user:{alice.user_id}", event="execution:updated")
    assert (event.data["executionId"], event.data["status"], event.data["errorCode"]) == (
        str(ids[0]),
        "failed",
        "SPEND_CAP_REACHED",
    )


@pytest.fixture
async def second(settings: Any) -> AsyncIterator[Kijko]:
    """Another scheduler process's runtime: pools of its own."""
    runtime = await Kijko.start(settings)
    try:
        yield runtime
    finally:
        await runtime.stop()


async def test_two_schedulers_over_500_habits_fire_each_exactly_once(
    kijko: Kijko, second: Kijko, alice: Account, bob: Account
) -> None:
    skills = {account.org_id: await insert_skill(kijko, account) for account in (alice, bob)}
    due = datetime(2031, 5, 4, 3, 2, tzinfo=UTC)
    async with system_session(kijko.system_db) as db:
        habit_ids: list[UUID] = []
        for n, account in enumerate((alice, bob, alice, bob)):  # organizations interleaved
            rows = await db.fetch(
                "INSERT INTO kijko.habits (organization_id, skill_id, user_id, schedule_cron, timezone, config,"
                " next_run_at) SELECT $1, $2, $3, '*/5 * * * *', 'UTC', $4, $5 FROM generate_series(1, 125)"
                " RETURNING id",
                UUID(account.org_id),
                skills[account.org_id]["id"],
                UUID(account.user_id),
                {"name": f"habit {n}"},
                due - timedelta(seconds=n),
            )
            habit_ids += [row["id"] for row in rows]
    at = due + timedelta(seconds=30)
    reports = await asyncio.gather(scheduler.tick(kijko, at=at, batch=70), scheduler.tick(second, at=at, batch=70))
    assert all(not report.errors and not report.left for report in reports)
    assert all(report.fired > 0 for report in reports)  # both took part
    async with system_session(kijko.system_db) as db:
        fired = await db.fetch(
            "SELECT e.reference_id, e.organization_id, e.user_id, e.scheduled_for, e.job_id, e.skill_id,"
            " h.organization_id AS habit_org, h.user_id AS habit_user, h.run_count, h.next_run_at, h.last_run_at"
            " FROM kijko.skill_executions e JOIN kijko.habits h ON h.id = e.reference_id"
            " WHERE e.reference_id = ANY($1::uuid[])",
            habit_ids,
        )
        jobs = await db.fetchval(
            "SELECT count(*) FROM kijko.jobs j JOIN kijko.skill_executions e"
            " ON j.payload->>'execution_id' = e.id::text AND j.id = e.job_id AND j.organization_id = e.organization_id"
            " WHERE e.reference_id = ANY($1::uuid[])",
            habit_ids,
        )
        counts = await db.fetch(
            "SELECT id, execution_count FROM kijko.skills WHERE id = ANY($1::uuid[])",
            [skill["id"] for skill in skills.values()],
        )
    assert len(fired) == 500 and {row["reference_id"] for row in fired} == set(habit_ids)
    assert jobs == 500
    assert {row["execution_count"] for row in counts} == {250}
    for row in fired:
        assert (row["organization_id"], row["user_id"]) == (row["habit_org"], row["habit_user"])
        assert row["skill_id"] == skills[str(row["organization_id"])]["id"]
        assert row["run_count"] == 1 and row["last_run_at"] == row["scheduled_for"]
        assert row["scheduled_for"] <= due and row["next_run_at"] == datetime(2031, 5, 4, 3, 5, tzinfo=UTC)
    # Standing at the same instant again fires nothing more.
    again = await asyncio.gather(scheduler.tick(kijko, at=at, batch=70), scheduler.tick(second, at=at, batch=70))
    assert all(report.errors == [] for report in again)
    async with system_session(kijko.system_db) as db:
        total = await db.fetchval(
            "SELECT count(*) FROM kijko.skill_executions WHERE reference_id = ANY($1::uuid[])", habit_ids
        )
    assert total == 500
