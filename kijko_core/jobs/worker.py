"""The worker: claims due jobs and runs their handlers, in one asyncio loop.

``Worker.run()`` claims up to ``concurrency`` jobs at a time (``FOR UPDATE SKIP LOCKED``, on
the system role), runs each handler in its own task with a heartbeat that extends the lease
every third of it, and records the outcome compare-and-set. It sleeps until a doorbell rings
(it is itself a doorbell: an in-process worker hears enqueues of its own process directly),
the next queued job is due, or ``KIJKO_WORKER_POLL_SECONDS`` pass. ``drain()`` stops claiming,
waits up to the grace period for running jobs and gives the rest back (queued again, the
attempt not counted).

``run_until_idle(kijko)`` runs every due job in this process until none is left (tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from kijko_core.db.session import ServiceCapability, system_session
from kijko_core.jobs import JobContext, JobDeferred, JobKind, known_kinds, ring, store, sweep_steps
from kijko_core.logging import get_logger

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

log = get_logger("kijko.jobs")
T = TypeVar("T")


def worker_name() -> str:
    """A lease owner name: where the worker runs, and unique per worker instance."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class _Running:
    job: store.Claimed
    ctx: JobContext
    task: asyncio.Task[None] | None = None
    release: bool = False  # set by a drain past its grace: give the job back, do not fail it
    handler_done: bool = False  # from then on only the outcome is written: never cancelled


class _Beat:
    """A job's heartbeat, started only when its first beat is due."""

    __slots__ = ("_handle", "_task", "_work")

    def __init__(self, work: Coroutine[Any, Any, None], delay: float) -> None:
        self._work: Coroutine[Any, Any, None] | None = work
        self._task: asyncio.Task[None] | None = None
        self._handle = asyncio.get_running_loop().call_later(delay, self._begin)

    def _begin(self) -> None:
        if self._work is not None:
            self._task = asyncio.create_task(self._work)
            self._work = None

    def cancel(self) -> None:
        self._handle.cancel()
        if self._work is not None:
            self._work.close()  # never started
            self._work = None
        if self._task is not None:
            self._task.cancel()


@dataclass(frozen=True)
class SweepReport:
    reaped: int
    failed: int
    deleted: dict[str, int] = field(default_factory=dict)
    due: int = 0


class Worker:
    """Claims and runs jobs of the kinds known in this process."""

    def __init__(
        self,
        kijko: Kijko,
        *,
        concurrency: int | None = None,
        kinds: Sequence[str] | None = None,
        owner: str | None = None,
    ) -> None:
        self.kijko = kijko
        self.owner = owner or worker_name()
        self.concurrency = concurrency or kijko.settings.worker_concurrency
        registered = known_kinds()
        self.kinds: dict[str, JobKind] = registered if kinds is None else {name: registered[name] for name in kinds}
        self.retry = store.Retry(kijko.settings.job_retry_base_seconds, kijko.settings.job_retry_max_seconds)
        # Kinds limited per organization: their jobs are claimed only for organizations below it.
        self.org_limits = {
            name: kind.per_org_limit(kijko.settings) for name, kind in self.kinds.items() if kind.per_org_limit
        }
        self._running: dict[UUID, _Running] = {}
        self._completions: list[tuple[store.Claimed, asyncio.Future[bool | None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.started = 0  # attempts started by this worker
        self._wake = asyncio.Event()
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()

    # -- the doorbell --------------------------------------------------------------------

    async def ring(self, job_ids: Sequence[UUID]) -> None:
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------

    async def run(self, *, sweep_every: float | None = None) -> None:
        """Claim and run jobs until ``drain()``; ``sweep_every``: also run the sweeper every
        that many seconds (an in-process worker; under huey the periodic tick does it)."""
        next_sweep = time.monotonic() if sweep_every else None
        # Expired leases are reaped by every worker each poll interval, not only by the minute
        # tick: a job whose worker died is retried soon after its lease (one indexed query).
        next_reap = time.monotonic()
        reap_every = self.kijko.settings.worker_poll_seconds
        while not self._stopping:
            self._wake.clear()
            if next_sweep is not None and time.monotonic() >= next_sweep:
                await self._guarded(self.sweep())
                next_sweep = time.monotonic() + (sweep_every or 60.0)
                next_reap = time.monotonic() + reap_every
            elif time.monotonic() >= next_reap:
                await self._guarded(self.reap())
                next_reap = time.monotonic() + reap_every
            free = self.concurrency - len(self._running)
            claimed = 0
            # While completions are being written, the same transaction claims the freed
            # slots' next jobs (one round trip less per batch): leave those slots to it.
            refilling = self._flusher is not None and not self._flusher.done()
            if free > 0 and not refilling:
                claimed = await self._guarded(self.claim_and_start(free)) or 0
                if claimed == free:
                    continue  # more may be due: claim again as soon as a slot frees
            timeout = self.kijko.settings.worker_poll_seconds
            if free > 0 and claimed == 0:
                due_in = await self._guarded(self._seconds_to_next_due())
                if due_in is not None:
                    timeout = min(timeout, max(due_in, 0.0) + 0.01)
            if next_sweep is not None:
                timeout = min(timeout, max(next_sweep - time.monotonic(), 0.0))
            timeout = min(timeout, max(next_reap - time.monotonic(), 0.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _guarded(self, work: Awaitable[T]) -> T | None:
        """One step of the loop; a database hiccup is logged and retried, never fatal."""
        try:
            return await work
        except Exception:
            log.exception("worker_step_failed", owner=self.owner)
            await asyncio.sleep(min(self.kijko.settings.worker_poll_seconds, 1.0))
            return None

    async def _seconds_to_next_due(self) -> float | None:
        async with system_session(self.kijko.system_db, readonly=True) as db:
            return await store.seconds_to_next_due(db, list(self.kinds), self.org_limits)

    async def claim_and_start(self, limit: int) -> int:
        """Claim up to ``limit`` due jobs and start each in its own task; returns how many."""
        if not self.kinds or self._stopping:
            return 0
        capability = await self.capability()
        async with system_session(self.kijko.system_db) as db:
            claimed = await store.claim(db, self.owner, list(self.kinds), limit, self.org_limits)
        self._start(claimed, capability)
        return len(claimed)

    def _start(self, claimed: list[store.Claimed], capability: ServiceCapability) -> None:
        self.started += len(claimed)
        for job in claimed:
            ctx = JobContext(job.id, job.kind, job.org_id, job.payload, job.attempt, self.kijko, capability)
            running = _Running(job, ctx)
            self._running[job.id] = running
            self._idle.clear()
            running.task = asyncio.create_task(self._execute(running), name=f"job:{job.id}")

    async def capability(self) -> ServiceCapability:
        return await self.kijko.service_capability()

    # -- one job -------------------------------------------------------------------------

    async def _execute(self, running: _Running) -> None:
        job, ctx = running.job, running.ctx
        # The first beat is due after a third of the lease: most jobs never need one.
        beat = _Beat(self._heartbeat(running), max(job.lease_seconds / 3, 0.2))
        try:
            try:
                kind = self.kinds[job.kind]
                async with asyncio.timeout(kind.timeout_seconds):
                    await kind.handler(ctx)
            except asyncio.CancelledError:
                running.handler_done = True
                beat.cancel()
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()  # the cancel was ours (drain or heartbeat), handled here
                if running.release:
                    await self._release(job)
                elif ctx.cancelled:
                    log.info("job_stopped", job_id=str(job.id), kind=job.kind, reason="cancelled")
                else:
                    await self._fail(job, RuntimeError("the job's task was cancelled"))
            except JobDeferred as deferred:
                running.handler_done = True
                beat.cancel()
                await self._release(job, deferred.seconds)
            except Exception as error:
                running.handler_done = True
                beat.cancel()
                if ctx.cancelled:
                    log.info("job_stopped", job_id=str(job.id), kind=job.kind, reason="cancelled")
                else:
                    await self._fail(job, error)
            else:
                running.handler_done = True
                beat.cancel()
                await self._complete(job)
        finally:
            beat.cancel()
            self._running.pop(job.id, None)
            if not self._running:
                self._idle.set()
            self._wake.set()  # a slot is free

    async def _heartbeat(self, running: _Running) -> None:
        interval = max(running.job.lease_seconds / 3, 0.2)
        job = running.job
        while True:
            try:
                async with system_session(self.kijko.system_db) as db:
                    ours = await store.heartbeat(db, self.owner, job.id, job.attempt)
            except Exception:
                log.exception("heartbeat_failed", job_id=str(job.id))
                await asyncio.sleep(interval)
                continue  # the lease may still hold; the next beat tries again
            if not ours:
                # Cancelled, or reaped after a stall: whatever it does next would be a second
                # run's work. Stop it.
                running.ctx._cancelled = True
                if running.task is not None and not running.handler_done:
                    running.task.cancel()
                return
            await asyncio.sleep(interval)

    async def _complete(self, job: store.Claimed) -> None:
        """Record success. Completions that arrive while one is being written go together in
        the next statement (one round trip for many short jobs); the job's slot stays taken
        until its row says so."""
        done = asyncio.get_running_loop().create_future()
        self._completions.append((job, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_completions(), name="complete")
        ours = await asyncio.shield(done)
        if ours is False:
            log.info("job_lost", job_id=str(job.id), kind=job.kind, attempt=job.attempt)

    async def _flush_completions(self) -> None:
        while self._completions:
            batch, self._completions = self._completions, []
            claimed: list[store.Claimed] = []
            woken: list[UUID] = []
            try:
                capability = await self.capability()
                async with system_session(self.kijko.system_db) as db:
                    written = await store.complete(db, self.owner, [(j.id, j.attempt) for j, _ in batch])
                    # Their organizations' slots are free: a job that deferred itself for one
                    # is due now, and claimed below in this transaction or by another worker.
                    woken = await store.hand_over(
                        db,
                        [
                            (j.kind, j.org_id)
                            for j, _ in batch
                            if j.id in written and j.org_id is not None and j.kind in self.org_limits
                        ],
                    )
                    free = self.concurrency - len(self._running) + len(batch)
                    if free > 0 and not self._stopping and self.kinds:
                        claimed = await store.claim(db, self.owner, list(self.kinds), free, self.org_limits)
            except Exception:
                # The leases expire and the jobs run again: at-least-once.
                log.exception("job_complete_failed", job_ids=[str(j.id) for j, _ in batch])
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
                continue
            for job, done in batch:
                if not done.done():
                    done.set_result(job.id in written)
            self._start(claimed, capability)
            if woken and len(claimed) < len(woken):
                await ring(woken)  # more due than this worker took: another may take them

    async def _fail(self, job: store.Claimed, error: BaseException) -> None:
        message = f"{type(error).__name__}: {error}"
        try:
            async with system_session(self.kijko.system_db) as db:
                outcome = await store.fail(db, self.owner, job.id, job.attempt, message, self.retry)
        except Exception:
            log.exception("job_fail_failed", job_id=str(job.id))
            return
        if outcome is None:
            log.info("job_lost", job_id=str(job.id), kind=job.kind, attempt=job.attempt)
            return
        state, run_after = outcome
        log.warning(
            "job_attempt_failed",
            job_id=str(job.id),
            kind=job.kind,
            attempt=job.attempt,
            state=state,
            retry_at=run_after.isoformat() if state == "queued" else None,
            error=type(error).__name__,
        )

    async def _release(self, job: store.Claimed, delay_seconds: float = 0.0) -> None:
        try:
            async with system_session(self.kijko.system_db) as db:
                await store.release(db, self.owner, job.id, job.attempt, delay_seconds=delay_seconds)
        except Exception:
            log.exception("job_release_failed", job_id=str(job.id))  # the lease expires instead
        else:
            log.info("job_released", job_id=str(job.id), kind=job.kind, delay_seconds=delay_seconds)

    # -- stopping ------------------------------------------------------------------------

    def stop_claiming(self) -> None:
        self._stopping = True
        self._wake.set()

    async def drain(self, grace_seconds: float | None = None, *, hurry: asyncio.Event | None = None) -> int:
        """Stop claiming, let running jobs finish for up to ``grace_seconds``
        (``KIJKO_WORKER_GRACE_SECONDS``) or until ``hurry`` is set, then give the rest back.
        Returns how many were given back."""
        self.stop_claiming()
        grace = self.kijko.settings.worker_grace_seconds if grace_seconds is None else grace_seconds
        waits = [asyncio.create_task(self._idle.wait())]
        if hurry is not None:
            waits.append(asyncio.create_task(hurry.wait()))
        try:
            await asyncio.wait(waits, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        left = list(self._running.values())
        for running in left:
            if running.task is not None and not running.handler_done:
                running.release = True
                running.task.cancel()
        tasks = [r.task for r in left if r.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        return len(left)

    @property
    def running_count(self) -> int:
        return len(self._running)

    # -- the sweeper ---------------------------------------------------------------------

    async def reap(self) -> int:
        """Retry (or fail) jobs whose lease expired; returns how many."""
        async with system_session(self.kijko.system_db) as db:
            reaped = await store.reap(db, self.retry)
        for job_id, state in reaped:
            log.warning("job_lease_expired", job_id=str(job_id), state=state)
        if any(state == "queued" for _, state in reaped):
            self._wake.set()
        return len(reaped)

    async def sweep(self) -> SweepReport:
        """Reap expired leases, delete what expired, and re-ring if due jobs are waiting."""
        report = await sweep(self.kijko, self.retry)
        if report.due:
            self._wake.set()
        return report


async def sweep(kijko: Kijko, retry: store.Retry | None = None) -> SweepReport:
    """The periodic tick's work (any process may run it; every step is idempotent)."""
    retry = retry or store.Retry(kijko.settings.job_retry_base_seconds, kijko.settings.job_retry_max_seconds)
    async with system_session(kijko.system_db) as db:
        reaped = await store.reap(db, retry)
    async with system_session(kijko.system_db) as db:
        deleted = await store.delete_expired(db, retention_days=kijko.settings.job_retention_days)
    for name, step in sweep_steps().items():
        try:
            deleted[name] = await step(kijko)
        except Exception:  # one domain's failing clean-up must not stop the others, nor the tick
            log.exception("sweep_step_failed", step=name)
    async with system_session(kijko.system_db, readonly=True) as db:
        due = await store.due_count(db)
    failed = sum(1 for _, state in reaped if state == "failed")
    if reaped or any(deleted.values()):
        log.info("swept", reaped=len(reaped) - failed, failed=failed, deleted=deleted, due=due)
    if due:
        await ring([])  # rows left queued (a lost ring, a retry now due): wake the workers
    return SweepReport(len(reaped) - failed, failed, deleted, due)


async def run_until_idle(kijko: Kijko, *, concurrency: int | None = None) -> int:
    """Claim and run every due job in this process until none is left; returns how many
    attempts ran. Jobs retried with a backoff in the future are left queued."""
    worker = Worker(kijko, concurrency=concurrency)
    while await worker.claim_and_start(worker.concurrency):
        await worker._idle.wait()  # completions may claim more; idle means none was left
    await worker._idle.wait()
    return worker.started
