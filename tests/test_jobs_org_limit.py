"""Kinds limited per organization (``job_kind(per_org_limit=…)``, decision 0129): workers claim
a job of such a kind only while its organization has fewer than the limit running, a job of a
full organization stays queued (not claimed only to defer itself), and a finished job hands its
slot to its organization's oldest deferred one in the transaction that completes it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest

from kijko_core.db.session import system_session
from kijko_core.jobs import store
from kijko_core.jobs.worker import Worker, run_until_idle
from kijko_core.runtime import Kijko
from tests import job_kinds
from tests.conftest import Account
from tests.test_jobs import enqueue_system, job_row

KIND = "test.limited"
LIMITS = {KIND: job_kinds.LIMITED_PER_ORG}


@pytest.fixture(scope="module")
async def jobs(make_settings: Any) -> AsyncIterator[Kijko]:
    runtime = await Kijko.start(make_settings(worker_poll_seconds=0.1))
    try:
        yield runtime
    finally:
        await job_kinds.cancel_leftovers(runtime)
        await runtime.stop()


async def _claim(kijko: Kijko, owner: str, org_limits: dict[str, int] | None = LIMITS) -> list[store.Claimed]:
    async with system_session(kijko.system_db) as db:
        return await store.claim(db, owner, [KIND], 100, org_limits)


async def test_a_full_organizations_jobs_stay_queued_until_one_of_its_jobs_ends(
    jobs: Kijko, alice: Account, bob: Account
) -> None:
    a = [await enqueue_system(jobs, KIND, org_id=UUID(alice.org_id)) for _ in range(3)]
    b = [await enqueue_system(jobs, KIND, org_id=UUID(bob.org_id)) for _ in range(3)]
    first = await _claim(jobs, "w1")
    # Two of each organization, oldest first; the third of each stays queued.
    assert {c.id for c in first} == {a[0], a[1], b[0], b[1]}
    assert await _claim(jobs, "w2") == []
    assert (await job_row(jobs, a[2]))["state"] == "queued"
    async with system_session(jobs.system_db, readonly=True) as db:
        assert await store.seconds_to_next_due(db, [KIND], LIMITS) is None  # nothing claimable
        assert (await store.seconds_to_next_due(db, [KIND]) or 0) <= 0  # though due
    async with system_session(jobs.system_db) as db:
        assert await store.complete(db, "w1", [(a[0], 1)]) == {a[0]}
    async with system_session(jobs.system_db, readonly=True) as db:
        due_in = await store.seconds_to_next_due(db, [KIND], LIMITS)
    assert due_in is not None and due_in <= 0
    assert [c.id for c in await _claim(jobs, "w2")] == [a[2]]  # alice's slot, not bob's
    async with system_session(jobs.system_db) as db:
        await store.complete(db, "w1", [(a[1], 1), (b[0], 1), (b[1], 1)])
        await store.complete(db, "w2", [(a[2], 1)])
    assert [c.id for c in await _claim(jobs, "w3")] == [b[2]]
    async with system_session(jobs.system_db) as db:
        await store.complete(db, "w3", [(b[2], 1)])


async def test_without_limits_the_claim_takes_every_due_job(jobs: Kijko, alice: Account) -> None:
    ids = [await enqueue_system(jobs, KIND, org_id=UUID(alice.org_id)) for _ in range(3)]
    claimed = await _claim(jobs, "plain", None)
    assert set(ids) <= {c.id for c in claimed}
    async with system_session(jobs.system_db) as db:
        await store.complete(db, "plain", [(c.id, c.attempt) for c in claimed])


async def test_hand_over_makes_the_oldest_deferred_job_of_the_organization_due(
    jobs: Kijko, alice: Account, bob: Account
) -> None:
    older = await enqueue_system(jobs, KIND, org_id=UUID(alice.org_id), delay_seconds=3600)
    newer = await enqueue_system(jobs, KIND, org_id=UUID(alice.org_id), delay_seconds=3600)
    other = await enqueue_system(jobs, KIND, org_id=UUID(bob.org_id), delay_seconds=3600)
    async with system_session(jobs.system_db) as db:
        assert await store.hand_over(db, [(KIND, UUID(alice.org_id))]) == [older]
        assert await store.hand_over(db, []) == []
    assert [c.id for c in await _claim(jobs, "w")] == [older]
    for job_id in (newer, other):
        row = await job_row(jobs, job_id)
        assert row["state"] == "queued" and row["run_after"] > row["created_at"]
    async with system_session(jobs.system_db) as db:
        await store.complete(db, "w", [(older, 1)])
        for job_id in (newer, other):
            assert await store.cancel(db, job_id)


async def test_a_worker_completing_a_job_hands_its_slot_over_and_runs_the_waiting_one(
    jobs: Kijko, alice: Account
) -> None:
    org = UUID(alice.org_id)
    due = [await enqueue_system(jobs, KIND, org_id=org) for _ in range(2)]
    waiting = await enqueue_system(jobs, KIND, org_id=org, delay_seconds=3600)  # deferred itself
    assert Worker(jobs).org_limits[KIND] == job_kinds.LIMITED_PER_ORG
    await run_until_idle(jobs)
    # Without the hand-over it would wait its hour; the completion made it due and ran it.
    for job_id in [*due, waiting]:
        assert (await job_row(jobs, job_id))["state"] == "succeeded"
    assert job_kinds.RUNS[waiting] == [1]
