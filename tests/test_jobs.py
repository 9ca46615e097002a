"""Background jobs (issue 6 §1, docs/jobs.md): enqueue inside the caller's transaction with the
doorbell after commit, claims with SKIP LOCKED, compare-and-set state changes, retries with
backoff, cancel, the sweeper, and tenant work confined to the job's organization."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from kijko_core.db.session import system_session, tenant_session
from kijko_core.jobs import (
    JobContext,
    UnknownJobKind,
    add_doorbell,
    enqueue,
    enqueue_many,
    job_kind,
    remove_doorbell,
    store,
)
from kijko_core.jobs.worker import Worker, run_until_idle, sweep
from kijko_core.runtime import Kijko
from tests import job_kinds
from tests.conftest import Account
from tests.projects import created


@pytest.fixture(scope="module")
async def jobs(make_settings: Any) -> AsyncIterator[Kijko]:
    """A runtime whose retries are due at once (no backoff), so run_until_idle sees them."""
    runtime = await Kijko.start(
        make_settings(job_retry_base_seconds=0, job_retry_max_seconds=0, worker_poll_seconds=0.2)
    )
    try:
        yield runtime
    finally:
        await runtime.stop()


class Recorder:
    def __init__(self) -> None:
        self.rings: list[list[UUID]] = []

    async def ring(self, job_ids: Sequence[UUID]) -> None:
        self.rings.append(list(job_ids))

    @property
    def ids(self) -> set[UUID]:
        return {i for ring in self.rings for i in ring}


@pytest.fixture
def bell() -> Any:
    recorder = Recorder()
    add_doorbell(recorder)
    try:
        yield recorder
    finally:
        remove_doorbell(recorder)


async def job_row(kijko: Kijko, job_id: UUID) -> dict[str, Any]:
    async with system_session(kijko.system_db, readonly=True) as db:
        row = await store.get(db, job_id)
    assert row is not None
    return row


async def enqueue_system(kijko: Kijko, kind: str, payload: dict[str, Any] | None = None, **kw: Any) -> UUID:
    async with system_session(kijko.system_db) as db:
        return await enqueue(db, kind, payload or {}, **kw)


@pytest.fixture(autouse=True, scope="module")
async def no_leftovers(jobs: Kijko) -> AsyncIterator[None]:
    yield
    await job_kinds.cancel_leftovers(jobs)


# ---------------------------------------------------------------------------------------------
# Enqueue and the doorbell.


async def test_enqueue_rings_after_commit_and_a_rollback_leaves_nothing(
    jobs: Kijko, alice: Account, bell: Recorder
) -> None:
    class Boom(Exception):
        pass

    seen_inside: list[set[UUID]] = []
    with pytest.raises(Boom):
        async with tenant_session(jobs.app_db, alice.identity) as db:
            rolled_back = await enqueue(db, "test.noop", {"n": 1})
            seen_inside.append(bell.ids)
            raise Boom
    assert seen_inside == [set()]  # nothing rings before the commit
    assert bell.rings == []  # nor after a rollback
    async with system_session(jobs.system_db, readonly=True) as db:
        assert await store.get(db, rolled_back) is None

    async with tenant_session(jobs.app_db, alice.identity) as db:
        first = await enqueue(db, "test.noop", {"n": 2})
        second = await enqueue(db, "test.noop", {"n": 3}, delay_seconds=3600)
        assert bell.rings == []  # still inside the transaction
    assert bell.rings == [[first, second]]  # one ring per transaction, after its commit
    row = await job_row(jobs, first)
    assert row["state"] == "queued" and row["attempts"] == 0
    assert str(row["organization_id"]) == alice.org_id  # the tenant session's organization
    assert row["max_attempts"] == 3 and row["lease_seconds"] == 30  # from the kind
    assert row["payload"] == {"n": 2}
    later = await job_row(jobs, second)
    assert (later["run_after"] - later["created_at"]).total_seconds() == pytest.approx(3600, abs=1)


async def test_a_tenant_enqueues_only_for_its_own_organization_and_changes_no_job(
    jobs: Kijko, alice: Account, bob: Account
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with tenant_session(jobs.app_db, alice.identity) as db:
            await enqueue(db, "test.noop", {}, org_id=UUID(bob.org_id))
    bobs = await enqueue_system(jobs, "test.noop", {}, org_id=UUID(bob.org_id))
    system_job = await enqueue_system(jobs, "test.noop", {})
    async with tenant_session(jobs.app_db, alice.identity) as db:
        visible = {r["id"] for r in await db.fetch("SELECT id FROM kijko.jobs")}
        assert bobs not in visible and system_job not in visible
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with db.savepoint():
                await db.execute("UPDATE kijko.jobs SET state = 'succeeded'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with db.savepoint():
                await db.execute("DELETE FROM kijko.jobs")
    assert (await job_row(jobs, bobs))["state"] == "queued"


async def test_enqueue_refuses_unknown_kinds_and_content_payloads(jobs: Kijko) -> None:
    async with system_session(jobs.system_db) as db:
        with pytest.raises(UnknownJobKind):
            await enqueue(db, "no.such.kind", {})
        with pytest.raises(ValueError, match="too large"):
            await enqueue(db, "test.noop", {"blob": "x" * 20000})
        with pytest.raises(ValueError):
            await enqueue(db, "test.noop", {}, delay_seconds=-1)


async def test_enqueue_many_writes_one_row_per_payload_in_order_and_rings_once(
    jobs: Kijko, alice: Account, bell: Recorder
) -> None:
    chosen = [uuid.uuid4() for _ in range(3)]
    async with tenant_session(jobs.app_db, alice.identity) as db:
        assert await enqueue_many(db, "test.noop", []) == []
        ids = await enqueue_many(db, "test.noop", [{"n": 1}, None, {"n": "é"}])
        given = await enqueue_many(db, "test.noop", [{"i": i} for i in range(3)], job_ids=chosen, delay_seconds=60)
        assert bell.rings == []
    assert given == chosen and len(set(ids)) == 3
    assert bell.rings == [ids + chosen]  # one ring for the transaction's jobs, after its commit
    assert [(await job_row(jobs, i))["payload"] for i in ids] == [{"n": 1}, {}, {"n": "é"}]
    for i, job_id in enumerate(chosen):
        row = await job_row(jobs, job_id)
        assert row["payload"] == {"i": i} and str(row["organization_id"]) == alice.org_id
        assert (row["state"], row["max_attempts"], row["lease_seconds"]) == ("queued", 3, 30)
        assert (row["run_after"] - row["created_at"]).total_seconds() == pytest.approx(60, abs=1)

    # A bad payload anywhere refuses the whole call before anything is written; so does a
    # mismatched list of ids. A rollback leaves nothing and rings nothing.
    class Boom(Exception):
        pass

    rings = len(bell.rings)
    async with system_session(jobs.system_db) as db:
        before = await db.fetchval("SELECT count(*) FROM kijko.jobs")
        with pytest.raises(ValueError, match="too large"):
            await enqueue_many(db, "test.noop", [{"n": 1}, {"blob": "é" * 9000}])
        with pytest.raises(ValueError, match="one per payload"):
            await enqueue_many(db, "test.noop", [{}, {}], job_ids=[uuid.uuid4()])
        assert await db.fetchval("SELECT count(*) FROM kijko.jobs") == before
    lost = [uuid.uuid4(), uuid.uuid4()]
    with pytest.raises(Boom):
        async with tenant_session(jobs.app_db, alice.identity) as db:
            await enqueue_many(db, "test.noop", [{}, {}], job_ids=lost)
            raise Boom
    assert len(bell.rings) == rings
    async with system_session(jobs.system_db, readonly=True) as db:
        assert [await store.get(db, i) for i in lost] == [None, None]


async def test_a_payload_measured_in_utf8_fits_even_when_its_escaped_text_does_not(jobs: Kijko) -> None:
    # 4,000 "é" are 8,000 bytes stored but 24,000 characters as escaped JSON: accepted.
    job_id = await enqueue_system(jobs, "test.noop", {"text": "é" * 4000})
    assert (await job_row(jobs, job_id))["payload"] == {"text": "é" * 4000}


def test_kind_names_are_service_actor_kinds() -> None:
    with pytest.raises(ValueError):
        job_kind("Bad Kind")
    with pytest.raises(ValueError):
        job_kind("test.ok", max_attempts=0)


# ---------------------------------------------------------------------------------------------
# Running: success, retries, failure.


async def test_run_until_idle_runs_each_due_job_once(jobs: Kijko, alice: Account) -> None:
    async with tenant_session(jobs.app_db, alice.identity) as db:
        ids = [await enqueue(db, "test.noop", {"i": i}) for i in range(20)]
        later = await enqueue(db, "test.noop", {}, delay_seconds=3600)
    assert await run_until_idle(jobs) >= 20
    for job_id in ids:
        assert job_kinds.RUNS[job_id] == [1]
        row = await job_row(jobs, job_id)
        assert row["state"] == "succeeded" and row["attempts"] == 1
        assert row["lease_owner"] is None and row["finished_at"] >= row["started_at"]
    assert later not in job_kinds.RUNS  # not due
    assert (await job_row(jobs, later))["state"] == "queued"


async def test_a_job_that_always_fails_ends_failed_after_its_attempts(jobs: Kijko) -> None:
    job_id = await enqueue_system(jobs, "test.fail")
    await run_until_idle(jobs)
    assert job_kinds.RUNS[job_id] == [1, 2, 3]
    row = await job_row(jobs, job_id)
    assert row["state"] == "failed" and row["attempts"] == 3
    assert row["last_error"] == "ValueError: boom on attempt 3"
    assert row["finished_at"] is not None and row["lease_owner"] is None


async def test_a_failed_attempt_is_retried_and_succeeds(jobs: Kijko) -> None:
    job_id = await enqueue_system(jobs, "test.flaky")
    await run_until_idle(jobs)
    assert job_kinds.RUNS[job_id] == [1, 2]
    row = await job_row(jobs, job_id)
    assert row["state"] == "succeeded" and row["last_error"] == "ConnectionError: first attempt fails"


async def test_retries_back_off_exponentially_with_jitter(kijko: Kijko) -> None:
    """With the default settings (base 10 s), the first retry waits 5–10 s, the second 10–20 s."""
    job_id = await enqueue_system(kijko, "test.fail")
    worker = Worker(kijko, kinds=["test.fail"])
    waits = []
    for _ in range(2):
        async with system_session(kijko.system_db) as db:
            await db.execute("UPDATE kijko.jobs SET run_after = now() WHERE id = $1", job_id)
        # Claim this job only: others of the kind may be due.
        async with system_session(kijko.system_db) as db:
            claimed = [c for c in await store.claim(db, worker.owner, ["test.fail"], 1000) if c.id == job_id]
        assert len(claimed) == 1
        async with system_session(kijko.system_db) as db:
            outcome = await store.fail(db, worker.owner, job_id, claimed[0].attempt, "E", worker.retry)
            now = await db.fetchval("SELECT clock_timestamp()")
        assert outcome is not None and outcome[0] == "queued"
        waits.append((outcome[1] - now).total_seconds())
    assert 4.5 <= waits[0] <= 10.1 and 9.5 <= waits[1] <= 20.1


async def test_state_changes_are_compare_and_set(jobs: Kijko) -> None:
    job_id = await enqueue_system(jobs, "test.noop")
    async with system_session(jobs.system_db) as db:
        await db.execute("UPDATE kijko.jobs SET run_after = now() - interval '1 day' WHERE id = $1", job_id)
        mine = [c for c in await store.claim(db, "w1", ["test.noop"], 1000) if c.id == job_id]
    assert len(mine) == 1 and mine[0].attempt == 1
    retry = store.Retry(0, 0)
    async with system_session(jobs.system_db) as db:
        # Another owner, or a stale attempt, changes nothing.
        assert await store.complete(db, "w2", [(job_id, 1)]) == set()
        assert await store.complete(db, "w1", [(job_id, 2)]) == set()
        assert await store.fail(db, "w2", job_id, 1, "x", retry) is None
        assert not await store.heartbeat(db, "w2", job_id, 1)
        assert await store.heartbeat(db, "w1", job_id, 1)
        assert not await store.retry(db, job_id)  # running: not retryable
        assert await store.cancel(db, job_id)
        # Cancelled: the worker's outcome loses, whatever it is.
        assert await store.complete(db, "w1", [(job_id, 1)]) == set()
        assert await store.fail(db, "w1", job_id, 1, "x", retry) is None
        assert not await store.heartbeat(db, "w1", job_id, 1)
        assert not await store.cancel(db, job_id)  # already final
        assert await store.retry(db, job_id)
    row = await job_row(jobs, job_id)
    assert row["state"] == "queued" and row["attempts"] == 0 and row["finished_at"] is None


async def test_the_database_refuses_impossible_states(jobs: Kijko) -> None:
    job_id = await enqueue_system(jobs, "test.noop")
    for statement in (
        "UPDATE kijko.jobs SET state = 'running' WHERE id = $1",  # no lease
        "UPDATE kijko.jobs SET state = 'succeeded' WHERE id = $1",  # no finish time
        "UPDATE kijko.jobs SET lease_owner = 'w' , lease_expires_at = now() WHERE id = $1",
        "UPDATE kijko.jobs SET attempts = 4 WHERE id = $1",
    ):
        with pytest.raises(asyncpg.CheckViolationError):
            async with system_session(jobs.system_db) as db:
                await db.execute(statement, job_id)


async def test_cancel_and_complete_racing_never_leave_an_impossible_state(jobs: Kijko) -> None:
    ids = [await enqueue_system(jobs, "test.noop") for _ in range(60)]
    async with system_session(jobs.system_db) as db:
        await db.execute("UPDATE kijko.jobs SET run_after = now() - interval '1 day' WHERE id = ANY($1)", ids)
        claimed = [c for c in await store.claim(db, "racer", ["test.noop"], 1000) if c.id in set(ids)]
    assert len(claimed) == 60

    async def complete(job: store.Claimed) -> bool:
        async with system_session(jobs.system_db) as db:
            return job.id in await store.complete(db, "racer", [(job.id, job.attempt)])

    async def cancel(job: store.Claimed) -> bool:
        async with system_session(jobs.system_db) as db:
            return await store.cancel(db, job.id)

    results = await asyncio.gather(*(f(j) for j in claimed for f in (complete, cancel)))
    for n, job in enumerate(claimed):
        completed, cancelled = results[2 * n], results[2 * n + 1]
        assert completed != cancelled  # exactly one wins
        row = await job_row(jobs, job.id)
        assert row["state"] == ("succeeded" if completed else "cancelled")
        assert row["lease_owner"] is None and row["finished_at"] is not None


async def test_a_cancelled_running_job_stops_at_its_next_heartbeat(jobs: Kijko) -> None:
    job_id = await enqueue_system(jobs, "test.slow", {"seconds": 30})
    worker = Worker(jobs, kinds=["test.slow"])
    runner = asyncio.create_task(worker.run())
    try:
        for _ in range(100):
            if job_id in job_kinds.RUNS:
                break
            await asyncio.sleep(0.05)
        async with system_session(jobs.system_db) as db:
            assert await store.cancel(db, job_id)
        for _ in range(60):  # lease 2 s: a heartbeat every ⅔ s
            if worker.running_count == 0:
                break
            await asyncio.sleep(0.1)
        assert worker.running_count == 0
    finally:
        await worker.drain(0)
        await runner
    row = await job_row(jobs, job_id)
    assert row["state"] == "cancelled" and row["attempts"] == 1


async def test_an_expired_lease_is_reaped_and_retried_then_failed(jobs: Kijko) -> None:
    job_id = await enqueue_system(jobs, "test.noop")
    retry = store.Retry(0, 0)
    for attempt in (1, 2, 3):
        async with system_session(jobs.system_db) as db:
            await db.execute("UPDATE kijko.jobs SET run_after = now() - interval '1 day' WHERE id = $1", job_id)
            assert job_id in {c.id for c in await store.claim(db, "dead", ["test.noop"], 1000)}
            await db.execute(
                "UPDATE kijko.jobs SET lease_expires_at = clock_timestamp() - interval '1 second' WHERE id = $1",
                job_id,
            )
        async with system_session(jobs.system_db) as db:
            reaped = dict(await store.reap(db, retry))
        assert reaped[job_id] == ("failed" if attempt == 3 else "queued")
    row = await job_row(jobs, job_id)
    assert row["state"] == "failed" and row["attempts"] == 3
    assert row["last_error"].startswith("lease expired: worker dead")


# ---------------------------------------------------------------------------------------------
# Tenant work.


async def test_tenant_work_in_a_job_is_confined_to_the_jobs_organization(
    jobs: Kijko, client: Any, alice: Account, bob: Account
) -> None:
    await created(client, alice, "Alice one")
    await created(client, bob, "Bob one")
    async with tenant_session(jobs.app_db, alice.identity) as db:
        job_id = await enqueue(db, "test.tenant", {"other_org": bob.org_id})
    await run_until_idle(jobs)
    seen = job_kinds.SEEN[job_id]
    assert seen == {
        "projects": ["Alice one"],
        "actor": f"service:test.tenant:{job_id}",
        "role": jobs.roles.app,  # not the system role
        "planted": "refused",
    }
    assert (await job_row(jobs, job_id))["state"] == "succeeded"
    names = {p["name"] for p in (await (await client.get("/api/v1/projects", headers=bob.headers)).get_json())["data"]}
    assert names == {"Bob one"}


async def test_a_system_job_has_no_tenant_session(jobs: Kijko) -> None:
    seen: dict[str, str] = {}

    @job_kind("test.system-probe", max_attempts=1)
    async def probe(ctx: JobContext) -> None:
        try:
            async with ctx.service_session():
                pass
        except RuntimeError as error:
            seen["error"] = str(error)

    job_id = await enqueue_system(jobs, "test.system-probe")
    await run_until_idle(jobs)
    assert "system job" in seen["error"]
    assert (await job_row(jobs, job_id))["state"] == "succeeded"


# ---------------------------------------------------------------------------------------------
# The sweeper.


async def test_the_sweeper_deletes_what_expired_and_nothing_else(jobs: Kijko, alice: Account) -> None:
    old = await enqueue_system(jobs, "test.noop")
    fresh = await enqueue_system(jobs, "test.noop")
    queued = await enqueue_system(jobs, "test.noop", delay_seconds=3600)
    token = uuid.uuid4().hex
    async with system_session(jobs.system_db) as db:
        for job_id, days in ((old, 15), (fresh, 13)):
            await db.execute(
                "UPDATE kijko.jobs SET state = 'succeeded', finished_at = now() - make_interval(days => $2)"
                " WHERE id = $1",
                job_id,
                days,
            )
        # Sessions, refresh tokens, OAuth states and hand-offs: one expired, one live each.
        user_id = UUID(alice.user_id)
        expiries = (("expired", timedelta(minutes=-1)), ("live", timedelta(hours=1)))
        # Sessions: gone an hour after expiry (no access token outlives that), except a revoked
        # Keycloak one, kept 30 days (Keycloak may still issue tokens for its sid).
        session_rows = (
            ("expired", "local", timedelta(hours=-2), False),
            ("revoked-local", "local", timedelta(hours=-2), True),
            ("just-expired", "local", timedelta(minutes=-30), False),
            ("live", "local", timedelta(hours=1), False),
            ("revoked-keycloak", "keycloak", timedelta(hours=-2), True),
            ("old-revoked-keycloak", "keycloak", timedelta(days=-31), True),
        )
        for name, provider, expiry, revoked in session_rows:
            await db.execute(
                "INSERT INTO kijko_private.sessions (id, user_id, organization_id, provider, expires_at, revoked_at)"
                " VALUES ($1, $2, $3, $4, now() + $5, CASE WHEN $6 THEN now() - interval '3 days' END)",
                f"{token}-{name}",
                user_id,
                UUID(alice.org_id),
                provider,
                expiry,
                revoked,
            )
        for name, expiry in expiries:
            await db.execute(
                "INSERT INTO kijko_private.refresh_tokens (session_id, token_hash, expires_at)"
                " VALUES ($1, $2, now() + $3)",
                f"{token}-live",
                f"{token}-{name}".encode(),
                expiry,
            )
            await db.execute(
                "INSERT INTO kijko_private.oauth_states (state_hash, provider, verifier_ciphertext, expires_at)"
                " VALUES ($1, 'github', 'x', now() + $2)",
                f"{token}-{name}".encode(),
                expiry,
            )
            await db.execute(
                "INSERT INTO kijko.git_oauth_states"
                " (state_hash, organization_id, user_id, provider, verifier_ciphertext, expires_at)"
                " VALUES ($1, $2, $3, 'gitlab', 'x', now() + $4)",
                f"{token}-{name}".encode(),
                UUID(alice.org_id),
                user_id,
                expiry,
            )
            await db.execute(
                "INSERT INTO kijko_private.oauth_handoffs (code_hash, user_id, tokens_ciphertext, expires_at)"
                " VALUES ($1, $2, 'x', now() + $3)",
                f"{token}-{name}".encode(),
                user_id,
                expiry,
            )
    report = await sweep(jobs)
    assert report.deleted["jobs"] >= 1 and report.deleted["sessions"] >= 1
    async with system_session(jobs.system_db, readonly=True) as db:
        assert await store.get(db, old) is None
        assert await store.get(db, fresh) is not None and await store.get(db, queued) is not None
        sessions = {
            r["id"] for r in await db.fetch("SELECT id FROM kijko_private.sessions WHERE id LIKE $1", f"{token}-%")
        }
        assert sessions == {f"{token}-{n}" for n in ("live", "just-expired", "revoked-keycloak")}
        for schema, table, column in (
            ("kijko_private", "refresh_tokens", "token_hash"),
            ("kijko_private", "oauth_states", "state_hash"),
            ("kijko_private", "oauth_handoffs", "code_hash"),
            ("kijko", "git_oauth_states", "state_hash"),
        ):
            left = {
                bytes(r[0])
                for r in await db.fetch(
                    f"SELECT {column} FROM {schema}.{table} WHERE {column} IN ($1, $2)",  # noqa: S608
                    f"{token}-expired".encode(),
                    f"{token}-live".encode(),
                )
            }
            assert left == {f"{token}-live".encode()}, table
    # Alice's own (live) session still works.
    async with tenant_session(jobs.app_db, alice.identity) as db:
        assert await db.fetchval("SELECT 1") == 1


def test_serve_runs_the_worker_on_the_embedded_defaults_only(make_settings: Any) -> None:
    from kijko_cli.worker import serve_runs_worker
    from kijko_core.config import load_settings

    assert serve_runs_worker(load_settings(data_dir="/tmp/kijko-embedded-probe"))  # no database URL
    assert not serve_runs_worker(make_settings())  # an external database
    assert serve_runs_worker(make_settings(serve_worker="on"))
    assert not serve_runs_worker(load_settings(data_dir="/tmp/kijko-embedded-probe", serve_worker="off"))


def test_the_queue_carries_json_never_pickle() -> None:
    import pickle

    from huey.registry import Message

    from kijko_server.jobs import JsonSerializer

    serializer = JsonSerializer()
    message = Message("id-1", "kijko.jobs.ring", None, 0, 0, None, (["a", "b"],), {})
    data = serializer.serialize(message)
    assert json.loads(data)[1] == "kijko.jobs.ring"
    assert serializer.deserialize(data) == message
    with pytest.raises(ValueError):
        serializer.deserialize(pickle.dumps(message))  # a pickle is not even read
    with pytest.raises(TypeError):
        serializer.serialize({"not": "a message"})


async def test_heartbeats_keep_a_job_longer_than_its_lease_from_being_reaped(jobs: Kijko) -> None:
    """test.slow has a 2 s lease; the job takes 3.5 s while the worker reaps every 0.2 s."""
    job_id = await enqueue_system(jobs, "test.slow", {"seconds": 3.5})
    worker = Worker(jobs, kinds=["test.slow"])
    runner = asyncio.create_task(worker.run())
    try:
        for _ in range(200):
            row = await job_row(jobs, job_id)
            if row["state"] != "queued" and row["state"] != "running":
                break
            await asyncio.sleep(0.1)
    finally:
        await worker.drain(0)
        await runner
    row = await job_row(jobs, job_id)
    assert row["state"] == "succeeded" and row["attempts"] == 1 and row["last_error"] is None
    assert job_kinds.RUNS[job_id] == [1]
    assert (row["finished_at"] - row["started_at"]).total_seconds() > 3.4


async def test_drain_gives_back_what_runs_past_the_grace_without_counting_the_attempt(jobs: Kijko) -> None:
    job_id = await enqueue_system(jobs, "test.slow", {"seconds": 60})
    worker = Worker(jobs, kinds=["test.slow"])
    runner = asyncio.create_task(worker.run())
    for _ in range(100):
        if job_id in job_kinds.RUNS:
            break
        await asyncio.sleep(0.05)
    assert await worker.drain(0.2) == 1
    await runner
    row = await job_row(jobs, job_id)
    assert row["state"] == "queued" and row["attempts"] == 0 and row["lease_owner"] is None
    async with system_session(jobs.system_db) as db:
        assert await store.cancel(db, job_id)  # nothing left due for other tests


async def test_an_attempt_past_its_kinds_timeout_fails(jobs: Kijko) -> None:
    job_id = await enqueue_system(jobs, "test.hang")
    await run_until_idle(jobs)
    row = await job_row(jobs, job_id)
    assert row["state"] == "failed" and row["attempts"] == 1
    assert row["last_error"].startswith("TimeoutError")


async def test_the_sweeper_re_rings_while_due_jobs_wait(jobs: Kijko, bell: Recorder) -> None:
    await enqueue_system(jobs, "test.noop")
    bell.rings.clear()  # the ring of the commit was lost, say
    report = await sweep(jobs)
    assert report.due >= 1 and len(bell.rings) == 1
    await run_until_idle(jobs)
