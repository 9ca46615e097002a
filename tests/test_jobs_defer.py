"""``jobs.JobDeferred`` (docs/jobs.md): a handler that cannot run yet gives its job back,
queued and due later, without consuming an attempt (ingestion's per-organization limit)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kijko_core.db.session import system_session
from kijko_core.jobs import JobDeferred, enqueue
from kijko_core.jobs.worker import run_until_idle
from kijko_core.runtime import Kijko
from tests import job_kinds
from tests.ingestion_kit import running_worker, wait_for
from tests.test_jobs import job_row


@pytest.fixture(scope="module")
async def jobs(make_settings: Any) -> AsyncIterator[Kijko]:
    runtime = await Kijko.start(make_settings(worker_poll_seconds=0.1))
    try:
        yield runtime
    finally:
        await job_kinds.cancel_leftovers(runtime)
        await runtime.stop()


async def test_a_deferred_job_is_queued_again_for_later_without_using_an_attempt(jobs: Kijko) -> None:
    async with system_session(jobs.system_db) as db:
        job_id = await enqueue(db, "test.defer", {"defer_times": 1, "seconds": 30})
    await run_until_idle(jobs, concurrency=1)
    row = await job_row(jobs, job_id)
    assert (row["state"], row["attempts"], row["lease_owner"]) == ("queued", 0, None)
    assert 25 < (row["run_after"] - row["updated_at"]).total_seconds() <= 30
    assert job_kinds.RUNS[job_id] == [1]  # it ran once, as its first attempt
    await run_until_idle(jobs)  # not due yet: nothing runs
    assert job_kinds.RUNS[job_id] == [1]


async def test_a_job_deferred_twice_still_has_its_one_attempt_and_succeeds(jobs: Kijko) -> None:
    async with system_session(jobs.system_db) as db:
        job_id = await enqueue(db, "test.defer", {"defer_times": 2, "seconds": 0.2})
    started = time.monotonic()
    async with running_worker(jobs):
        await wait_for(lambda: _state_is(jobs, job_id, "succeeded"), within=20)
    assert time.monotonic() - started >= 0.4  # waited twice
    assert job_kinds.RUNS[job_id] == [1, 1, 1]  # max_attempts 1, three runs: deferrals are free
    row = await job_row(jobs, job_id)
    assert (row["state"], row["attempts"]) == ("succeeded", 1)


def test_a_deferral_must_be_a_sane_delay() -> None:
    for seconds in (-1.0, float("nan"), float("inf"), 86401.0):
        with pytest.raises(ValueError):
            JobDeferred(seconds)
    assert JobDeferred(0).seconds == 0.0


async def _state_is(kijko: Kijko, job_id: Any, state: str) -> bool:
    return (await job_row(kijko, job_id))["state"] == state
