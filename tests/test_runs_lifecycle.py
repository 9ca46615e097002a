"""The execution lifecycle in kijko_core (docs/executions.md): start with its idempotency key,
the ``execution.run`` job to each ending, cancel (pending, running, racing a completion),
retry and replay, the per-organization limit and the finish listeners."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from kijko_core.db.session import Session, system_session, tenant_session
from kijko_core.executions import lifecycle
from kijko_core.executions.errors import CannotCancel, CannotRetry
from kijko_core.executions.lifecycle import FinishedExecution
from kijko_core.jobs.worker import run_until_idle
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.ingestion_kit import recording, running_worker, wait_for
from tests.runs_kit import PROMPTS, cancel_leftovers, execution, insert_skill, snapshot, usage


@pytest.fixture(autouse=True)
async def _clean(kijko: Kijko) -> AsyncIterator[None]:
    yield
    await cancel_leftovers(kijko)


async def start(kijko: Kijko, account: Account, skill: dict[str, Any], **kw: Any) -> UUID | None:
    async with tenant_session(kijko.app_db, account.identity) as db:
        return await lifecycle.start(
            db,
            snapshot=kw.pop("snapshot", snapshot(skill)),
            input=kw.pop("input", {"name": "Ada"}),
            execution_type=kw.pop("execution_type", "manual"),
            user_id=UUID(account.user_id),
            skill_id=skill["id"],
            plans=kijko.plans,
            **kw,
        )


async def test_start_records_pending_counts_the_run_and_the_job_completes_it(kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(
        kijko, alice, type_config={"cost": "0.0125", "prompt_tokens": 100, "completion_tokens": 20}
    )
    finished: list[FinishedExecution] = []

    async def listener(db: Session, done: FinishedExecution) -> None:
        finished.append(done)

    lifecycle.add_finish_listener(listener)
    try:
        async with recording() as recorder:
            execution_id = await start(kijko, alice, skill)
            assert execution_id is not None
            row = await execution(kijko, execution_id)
            assert row["status"] == "pending" and row["snapshot"]["promptTemplate"] == skill["prompt_template"]
            await run_until_idle(kijko)
    finally:
        lifecycle.remove_finish_listener(listener)
    row = await execution(kijko, execution_id)
    assert row["status"] == "completed"
    assert row["output"] == "echo: Say hello to Ada please."
    assert (row["prompt_tokens"], row["completion_tokens"]) == (100, 20)
    assert row["cost"] == Decimal("0.0125") and row["currency"] == "usd" and row["key_source"] == "platform"
    assert row["duration_ms"] is not None and row["completed_at"] is not None
    [used] = await usage(kijko, alice.org_id)
    assert used["execution_id"] == execution_id and used["cost"] == Decimal("0.0125") and not used["is_test"]
    assert [f.status for f in finished if f.id == execution_id] == ["completed"]
    statuses = [e.data["status"] for e in recorder.recorded(room=f"user:{alice.user_id}", event="execution:updated")]
    assert statuses == ["pending", "running", "completed"]
    events = recorder.recorded(room=f"user:{alice.user_id}")
    assert events[-1].data["costCents"] == 1 and events[-1].data["tokensUsed"] == 120


async def test_a_habit_fires_once_per_schedule_instant(kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(kijko, alice)
    habit_id, instant = uuid.uuid4(), datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    first = await start(kijko, alice, skill, execution_type="habit", reference_id=habit_id, scheduled_for=instant)
    again = await start(kijko, alice, skill, execution_type="habit", reference_id=habit_id, scheduled_for=instant)
    assert first is not None and again is None
    async with system_session(kijko.system_db) as db:
        count = await db.fetchval("SELECT execution_count FROM kijko.skills WHERE id = $1", skill["id"])
        jobs = await db.fetchval(
            "SELECT count(*) FROM kijko.jobs WHERE kind = 'execution.run' AND payload->>'execution_id' = $1",
            str(first),
        )
    assert (count, jobs) == (1, 1)


@pytest.mark.parametrize(
    ("config", "code"),
    [
        ({"fail_code": "PROVIDER_RATE_LIMITED"}, "PROVIDER_RATE_LIMITED"),
        ({"crash": True}, "EXECUTION_FAILED"),
        ({"sleep": 5}, "TIMEOUT"),
    ],
)
async def test_failures_end_with_their_code_and_no_detail_leaks(
    make_settings: Any, alice: Account, config: dict[str, Any], code: str
) -> None:
    runtime = await Kijko.start(make_settings(execution_timeout_seconds=0.3))
    try:
        skill = await insert_skill(runtime, alice, type_config=config)
        execution_id = await start(runtime, alice, skill)
        await run_until_idle(runtime)
        row = await execution(runtime, execution_id)
    finally:
        await cancel_leftovers(runtime)
        await runtime.stop()
    assert (row["status"], row["error_code"]) == ("failed", code)
    assert row["completed_at"] is not None and "sk-test" not in row["error_message"]
    assert "Traceback" not in row["error_message"]


async def test_an_uninstalled_skill_type_fails_the_run(kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(kijko, alice)
    execution_id = await start(kijko, alice, skill, snapshot={**snapshot(skill), "skillType": "gone"})
    await run_until_idle(kijko)
    row = await execution(kijko, execution_id)
    assert (row["status"], row["error_code"]) == ("failed", "SKILL_TYPE_UNAVAILABLE")


async def test_cancel_of_a_pending_execution_is_immediate_and_its_job_never_runs(kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(kijko, alice)
    execution_id = await start(kijko, alice, skill)
    assert execution_id is not None
    async with tenant_session(kijko.app_db, alice.identity) as db:
        job_id = await lifecycle.cancel(db, execution_id)
    row = await execution(kijko, execution_id)
    assert (row["status"], row["error_message"]) == ("cancelled", "Cancelled by user")
    assert row["completed_at"] is not None
    await lifecycle.cancel_job(kijko.system_db, UUID(alice.org_id), execution_id, job_id)
    await run_until_idle(kijko)
    assert execution_id not in PROMPTS
    assert (await execution(kijko, execution_id))["status"] == "cancelled"
    async with tenant_session(kijko.app_db, alice.identity) as db:
        with pytest.raises(CannotCancel):
            await lifecycle.cancel(db, execution_id)


async def test_cancel_of_a_running_execution_aborts_the_run_and_keeps_its_tokens(kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(kijko, alice, type_config={"sleep": 60, "tokens_when_cancelled": 7})
    execution_id = await start(kijko, alice, skill)
    assert execution_id is not None
    async with running_worker(kijko):
        await wait_for(lambda: _status_is(kijko, execution_id, "running"), within=30)
        async with tenant_session(kijko.app_db, alice.identity) as db:
            job_id = await lifecycle.cancel(db, execution_id)
        assert (await execution(kijko, execution_id))["status"] == "cancelled"
        await lifecycle.cancel_job(kijko.system_db, UUID(alice.org_id), execution_id, job_id)
        # The worker's heartbeat stops the run and adds what it consumed (well within 60 s).
        row = await wait_for(lambda: _with_tokens(kijko, execution_id), within=30)
    assert (row["status"], row["prompt_tokens"]) == ("cancelled", 7)
    assert row["error_message"] == "Cancelled by user"


async def test_a_completion_after_a_cancel_keeps_the_cancel_and_records_what_was_spent(
    kijko: Kijko, alice: Account
) -> None:
    skill = await insert_skill(kijko, alice, type_config={"sleep": 1, "cost": "0.002"})
    execution_id = await start(kijko, alice, skill)
    assert execution_id is not None
    async with running_worker(kijko):
        await wait_for(lambda: _status_is(kijko, execution_id, "running"), within=30)
        async with tenant_session(kijko.app_db, alice.identity) as db:
            await lifecycle.cancel(db, execution_id)  # the job is left running: its completion races in
        row = await wait_for(lambda: _with_tokens(kijko, execution_id), within=30)
    assert (row["status"], row["output"]) == ("cancelled", None)
    assert (row["prompt_tokens"], row["completion_tokens"], row["cost"]) == (10, 5, Decimal("0.002"))
    assert [u["execution_id"] for u in await usage(kijko, alice.org_id)] == [execution_id]


async def test_a_cancel_after_completion_is_refused_and_changes_nothing(kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(kijko, alice)
    execution_id = await start(kijko, alice, skill)
    assert execution_id is not None
    await run_until_idle(kijko)
    async with tenant_session(kijko.app_db, alice.identity) as db:
        with pytest.raises(CannotCancel):
            await lifecycle.cancel(db, execution_id)
    row = await execution(kijko, execution_id)
    assert (row["status"], row["error_message"]) == ("completed", None)


async def test_a_retried_attempt_of_a_started_run_does_not_call_the_skill_again(kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(kijko, alice)
    execution_id = await start(kijko, alice, skill)
    assert execution_id is not None
    # What a worker that died after admitting it leaves behind: the row running, its job queued.
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.skill_executions SET status = 'running', started_at = now() WHERE id = $1", execution_id
        )
    await run_until_idle(kijko)
    row = await execution(kijko, execution_id)
    assert (row["status"], row["error_code"]) == ("failed", "WORKER_LOST")
    assert execution_id not in PROMPTS


async def test_starting_a_run_does_not_wait_for_transactions_that_reference_the_skill(
    kijko: Kijko, alice: Account
) -> None:
    """An execution's insert holds a key-share lock on its skill (the foreign key) until its
    transaction ends; counting the run must not conflict with it, or two starts of one skill
    deadlock (each holding the key-share lock the other's count waits for)."""
    skill = await insert_skill(kijko, alice)
    holding, release = asyncio.Event(), asyncio.Event()

    async def another_transaction() -> None:
        async with tenant_session(kijko.app_db, alice.identity) as other:
            # What another start's insert (or a habit's, a reflex's) holds until it commits.
            await other.execute("SELECT 1 FROM kijko.skills WHERE id = $1 FOR KEY SHARE", skill["id"])
            holding.set()
            await release.wait()

    other = asyncio.create_task(another_transaction())
    try:
        await holding.wait()
        async with asyncio.timeout(10):
            execution_id = await start(kijko, alice, skill)
        assert execution_id is not None
    finally:
        release.set()
        await other


async def test_concurrent_starts_of_one_skill_all_succeed_and_are_all_counted(kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(kijko, alice)
    async with asyncio.timeout(30):
        ids = await asyncio.gather(*(start(kijko, alice, skill) for _ in range(16)))
    assert None not in ids and len(set(ids)) == 16
    async with tenant_session(kijko.app_db, alice.identity) as db:
        count = await db.fetchval("SELECT execution_count FROM kijko.skills WHERE id = $1", skill["id"])
    assert count == 16


async def test_the_fifth_execution_of_an_organization_waits_for_a_free_slot(kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(kijko, alice, type_config={"sleep": 1.5})
    ids = [await start(kijko, alice, skill) for _ in range(5)]
    most = 0
    async with running_worker(kijko, concurrency=8):

        async def all_done() -> bool:
            nonlocal most
            statuses = [(await execution(kijko, i))["status"] for i in ids]
            most = max(most, statuses.count("running"))
            return statuses.count("completed") == 5

        await wait_for(all_done, within=60, every=0.05)
    assert most == 4  # the limit was reached, never passed
    rows = [await execution(kijko, i) for i in ids]
    last_start = max(r["started_at"] for r in rows)
    first_end = min(r["completed_at"] for r in rows)
    assert last_start >= first_end  # the fifth started only once one had ended


async def test_retry_uses_the_skills_current_configuration_and_replay_the_snapshot(
    kijko: Kijko, alice: Account
) -> None:
    skill = await insert_skill(kijko, alice, type_config={"fail_code": "PROVIDER_ERROR"})
    execution_id = await start(kijko, alice, skill)
    assert execution_id is not None
    await run_until_idle(kijko)
    async with tenant_session(kijko.app_db, alice.identity) as db:
        await db.execute(
            "UPDATE kijko.skills SET type_config = '{}', prompt_template = 'Now greet {{name}} warmly.',"
            " version = version + 1 WHERE id = $1",
            skill["id"],
        )

    async with tenant_session(kijko.app_db, alice.identity) as db:

        async def current(skill_id: UUID, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
            row = await db.fetchrow("SELECT * FROM kijko.skills WHERE id = $1", skill_id)
            return snapshot(dict(row)), values

        retried, status = await lifecycle.retry(
            db, execution_id, current=current, user_id=UUID(alice.user_id), plans=kijko.plans
        )
        replayed, _ = await lifecycle.replay(db, execution_id, user_id=UUID(alice.user_id), plans=kijko.plans)
    assert status == "pending"
    await run_until_idle(kijko)
    retried_row, replayed_row = await execution(kijko, retried), await execution(kijko, replayed)
    assert (retried_row["status"], retried_row["output"]) == ("completed", "echo: Now greet Ada warmly.")
    assert retried_row["source_execution_id"] == execution_id and retried_row["input"] == {"name": "Ada"}
    # The replay ran the stored snapshot: the old config, which fails.
    assert (replayed_row["status"], replayed_row["error_code"]) == ("failed", "PROVIDER_ERROR")
    assert replayed_row["snapshot"]["skillVersion"] == skill["version"]
    async with tenant_session(kijko.app_db, alice.identity) as db:
        with pytest.raises(CannotRetry):
            await lifecycle.retry(
                db, retried, current=current, user_id=UUID(alice.user_id), plans=kijko.plans
            )  # completed


async def _status_is(kijko: Kijko, execution_id: UUID, status: str) -> bool:
    return (await execution(kijko, execution_id))["status"] == status


async def _with_tokens(kijko: Kijko, execution_id: UUID) -> dict[str, Any] | None:
    row = await execution(kijko, execution_id)
    return row if row["prompt_tokens"] is not None else None
