"""The execution lifecycle in kijko_core (docs/executions.md): start with its idempotency key,
the ``execution.run`` job to each ending, cancel (pending, running, racing a completion),
retry and replay, the per-organization limit and the finish listeners."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from kijko_core.db.session import Session, tenant_session
from kijko_core.executions import lifecycle
from kijko_core.executions.lifecycle import FinishedExecution
from kijko_core.jobs.worker import run_until_idle
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.ingestion_kit import recording
from tests.runs_kit import cancel_leftovers, execution, insert_skill, snapshot, usage


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
