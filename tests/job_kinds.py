"""Job kinds for the jobs tests only, registered by importing this module (never shipped).

Outcomes are recorded where the test can read them: in this process's ``RUNS`` for
in-process workers, and appended to the file named by the payload's ``log`` for worker
processes (one short line per write: O_APPEND keeps lines whole across processes).
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from typing import Any
from uuid import UUID

import asyncpg

from kijko_core import events
from kijko_core.jobs import JobContext, JobDeferred, job_kind

#: job id → attempts run in this process.
RUNS: dict[UUID, list[int]] = defaultdict(list)
#: job id → what a tenant job saw.
SEEN: dict[UUID, dict[str, object]] = {}


def _log(ctx: JobContext, what: str) -> None:
    path = ctx.payload.get("log")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{ctx.job_id} {ctx.attempt} {what} {os.getpid()}\n".encode())
        finally:
            os.close(fd)


@job_kind("test.noop", max_attempts=3, lease_seconds=30)
async def noop(ctx: JobContext) -> None:
    """Does nothing (for ``sleep`` seconds, when the payload says so)."""
    RUNS[ctx.job_id].append(ctx.attempt)
    await asyncio.sleep(float(ctx.payload.get("sleep", 0)))
    _log(ctx, "ran")


@job_kind("test.fail", max_attempts=3, lease_seconds=30)
async def always_fails(ctx: JobContext) -> None:
    RUNS[ctx.job_id].append(ctx.attempt)
    raise ValueError(f"boom on attempt {ctx.attempt}")


@job_kind("test.flaky", max_attempts=3, lease_seconds=30)
async def flaky(ctx: JobContext) -> None:
    RUNS[ctx.job_id].append(ctx.attempt)
    if ctx.attempt == 1:
        raise ConnectionError("first attempt fails")


@job_kind("test.slow", max_attempts=3, lease_seconds=2)
async def slow(ctx: JobContext) -> None:
    """Sleeps ``seconds`` (only on the attempts listed in ``slow_attempts``, default all)."""
    RUNS[ctx.job_id].append(ctx.attempt)
    _log(ctx, "started")
    if ctx.attempt in ctx.payload.get("slow_attempts", [ctx.attempt]):
        await asyncio.sleep(float(ctx.payload.get("seconds", 1)))
    _log(ctx, "finished")


@job_kind("test.tenant", max_attempts=1, lease_seconds=30)
async def tenant_work(ctx: JobContext) -> None:
    """Reads and writes in the job's organization; tries to plant a row in ``other_org``."""
    async with ctx.service_session() as db:
        names = sorted(r["name"] for r in await db.fetch("SELECT name FROM kijko.projects"))
        actor = await db.fetchval("SELECT kijko.current_actor()")
        role = await db.fetchval("SELECT current_user")
        await db.execute(
            "INSERT INTO kijko.projects (organization_id, name, type) VALUES ($1, $2, 'manual')",
            ctx.org_id,
            f"Made by job {str(ctx.job_id)[:8]}",
        )
        planted = "allowed"
        try:
            async with db.savepoint():
                await db.execute(
                    "INSERT INTO kijko.projects (organization_id, name, type) VALUES ($1, 'Planted', 'manual')",
                    UUID(ctx.payload["other_org"]),
                )
        except asyncpg.InsufficientPrivilegeError:
            planted = "refused"
    SEEN[ctx.job_id] = {"projects": names, "actor": actor, "role": role, "planted": planted}


async def cancel_leftovers(kijko: Any) -> None:
    """Cancel this module's kinds' unfinished jobs, so another test module's
    ``run_until_idle`` never runs them."""
    from kijko_core.db.session import system_session

    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.jobs SET state = 'cancelled', lease_owner = NULL, lease_expires_at = NULL,"
            " finished_at = clock_timestamp() WHERE kind LIKE 'test.%' AND state IN ('queued', 'running')"
        )


@job_kind("test.hang", max_attempts=1, lease_seconds=30, timeout_seconds=0.5)
async def hang(ctx: JobContext) -> None:
    RUNS[ctx.job_id].append(ctx.attempt)
    await asyncio.Event().wait()  # never set: only the kind's timeout ends it


@job_kind("test.defer", max_attempts=1, lease_seconds=30)
async def defers(ctx: JobContext) -> None:
    """Defers itself ``defer_times`` times by ``seconds``, then runs (its one attempt)."""
    RUNS[ctx.job_id].append(ctx.attempt)
    if len(RUNS[ctx.job_id]) <= int(ctx.payload.get("defer_times", 1)):
        raise JobDeferred(float(ctx.payload.get("seconds", 0.2)))


@job_kind("test.event", max_attempts=1, lease_seconds=30)
async def publish_event(ctx: JobContext) -> None:
    """Sends the payload's ``event`` to its ``room`` through the process's events port (the
    realtime tests: a worker process's events reach the API processes' clients)."""
    await events.send(room=ctx.payload["room"], event=ctx.payload["event"], data=ctx.payload["data"])
    _log(ctx, "sent")


#: ``test.limited``'s per-organization limit.
LIMITED_PER_ORG = 2


@job_kind("test.limited", max_attempts=1, lease_seconds=30, per_org_limit=lambda settings: LIMITED_PER_ORG)
async def limited(ctx: JobContext) -> None:
    """Does nothing; workers claim at most LIMITED_PER_ORG of one organization at once."""
    RUNS[ctx.job_id].append(ctx.attempt)
