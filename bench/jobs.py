"""Benchmark background jobs: enqueue 10,000 no-op jobs and run them with two worker
processes, Kijko's ``kijko worker`` against a bare reference.

    python -m bench.jobs [--jobs 10000] [--workers 2] [--concurrency 8] [--rounds 3]

Provisions a fresh database (in the PostgreSQL named by ``KIJKO_BENCH_DATABASE_URL``, an
administrator URL, or else in an embedded PostgreSQL). Each round, for each contestant: start
the worker processes and wait until they are ready, enqueue the jobs with
``kijko_core.jobs.enqueue`` in one transaction (so they all become due at its commit; the
doorbell rings after it), wait until every job has succeeded, then stop the workers.

- **kijko:** ``kijko worker`` (huey's consumer on Redis when ``KIJKO_BENCH_REDIS_URL`` is set,
  else SQLite in the data dir; ``--concurrency`` jobs at a time per process, default settings
  otherwise): claim, a task per job with its heartbeat, the handler, completion.
- **bare:** a loop on one plain asyncpg connection on the system role that claims
  ``--concurrency`` rows with the same ``FOR UPDATE SKIP LOCKED`` statement
  (``kijko_core.jobs.store``) and marks them succeeded with the same completion statement,
  polling every 10 ms when nothing is due.

Reported from the database's own clock: jobs/s (jobs ÷ (last finish − commit)), the p50/p99
queue latency (claim − commit) and duplicates (claims beyond one per job: every claim counts
an attempt, so any second run shows). Results go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench import processes
from kijko_core.jobs import JobContext, add_doorbell, enqueue, job_kind, remove_doorbell, store

KIND = "bench.noop"
ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 60.0
RUN_TIMEOUT_SECONDS = 600.0


@job_kind(KIND, max_attempts=3, lease_seconds=60)
async def noop(ctx: JobContext) -> None:
    """Nothing: what is measured is the machinery around it."""


@dataclass
class Result:
    name: str
    jobs_per_second: float
    p50_ms: float
    p99_ms: float
    duplicates: int
    not_succeeded: int


# ---------------------------------------------------------------------------------------------
# The bare reference worker (a process of its own: ``python -m bench.jobs --reference-worker``).


async def reference_worker(dsn: str, batch: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    owner = f"bare:{os.getpid()}"
    conn = await asyncpg.connect(dsn)
    try:
        print("ready", flush=True)
        while not stop.is_set():
            rows = await conn.fetch(store._CLAIM, owner, [KIND], batch)
            if not rows:
                await asyncio.sleep(0.01)
                continue
            await conn.execute(store._COMPLETE, owner, [r["id"] for r in rows], [r["attempts"] for r in rows])
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------------
# Driving a round.


class Workers:
    def __init__(self, which: str, count: int, env: dict[str, str], concurrency: int, tmp: Path) -> None:
        self.processes: list[processes.Started] = []
        for n in range(count):
            log = tmp / f"{which}-{n}-{time.monotonic_ns()}.log"
            if which == "kijko":
                command = [sys.executable, "-c", "import bench.jobs; from kijko_cli.main import cli; cli()", "worker"]
                extra = {"KIJKO_WORKER_CONCURRENCY": str(concurrency)}
            else:
                command = [sys.executable, "-m", "bench.jobs", "--reference-worker", "--concurrency", str(concurrency)]
                extra = {}
            self.processes.append(processes.start(command, {**env, **extra}, log))
        marker = "worker_started" if which == "kijko" else "ready"
        processes.wait_ready(self.processes, marker, f"{which} worker", READY_TIMEOUT_SECONDS)

    def stop(self) -> None:
        processes.stop(self.processes)


async def run_round(which: str, jobs: int, env: dict[str, str], workers: int, concurrency: int, tmp: Path) -> Result:
    from kijko_core.config import load_settings
    from kijko_core.db.session import system_session
    from kijko_core.runtime import Kijko

    settings = load_settings(**{key[6:].lower(): value for key, value in env.items() if key.startswith("KIJKO_")})
    kijko = await Kijko.start(settings)
    bell = None
    if which == "kijko":
        from kijko_server.jobs import HueyJobs

        bell = HueyJobs(settings)
        add_doorbell(bell)
    running = await asyncio.to_thread(Workers, which, workers, env, concurrency, tmp)
    try:
        async with system_session(kijko.system_db) as db:
            ids = [await enqueue(db, KIND, {"n": n}) for n in range(jobs)]
        async with system_session(kijko.system_db, readonly=True) as db:
            committed = await db.fetchval("SELECT clock_timestamp()")
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while True:
            async with system_session(kijko.system_db, readonly=True) as db:
                left = await db.fetchval(
                    "SELECT count(*) FROM kijko.jobs WHERE id = ANY($1) AND state <> 'succeeded'", ids
                )
            if left == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        async with system_session(kijko.system_db) as db:
            rows = await db.fetch(
                "SELECT state, attempts, started_at, finished_at FROM kijko.jobs WHERE id = ANY($1)", ids
            )
            await db.execute("DELETE FROM kijko.jobs WHERE id = ANY($1)", ids)
    finally:
        await asyncio.to_thread(running.stop)
        if bell is not None:
            remove_doorbell(bell)
        await kijko.stop()
    done = [r for r in rows if r["state"] == "succeeded"]
    waits = sorted((r["started_at"] - committed).total_seconds() * 1000 for r in done)
    last = max(r["finished_at"] for r in done)
    return Result(
        which,
        jobs_per_second=len(done) / max((last - committed).total_seconds(), 1e-6),
        p50_ms=statistics.median(waits),
        p99_ms=waits[min(len(waits) - 1, int(len(waits) * 0.99))],
        duplicates=sum(r["attempts"] for r in rows) - len(rows),
        not_succeeded=len(rows) - len(done),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes per contestant")
    parser.add_argument("--concurrency", type=int, default=8, help="jobs claimed/run at a time per process")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--reference-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_worker:
        asyncio.run(reference_worker(os.environ["KIJKO_SYSTEM_DATABASE_URL"], args.concurrency))
        return

    from bench.scratch import kijko_settings, scratch_database

    tmp = Path(tempfile.mkdtemp(prefix="kijko-bench-jobs-"))
    with scratch_database(tmp) as scratch:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KIJKO_")}
        env.update(kijko_settings(scratch, tmp))
        if os.environ.get("KIJKO_BENCH_REDIS_URL"):
            env["KIJKO_REDIS_URL"] = os.environ["KIJKO_BENCH_REDIS_URL"]
        queue = "Redis" if "KIJKO_REDIS_URL" in env else "SQLite"
        print(
            f"{args.jobs} no-op jobs, {args.workers} worker processes x {args.concurrency}, "
            f"one enqueue transaction, kijko's doorbell on {queue}"
        )
        rounds = [
            {
                which: asyncio.run(run_round(which, args.jobs, env, args.workers, args.concurrency, tmp))
                for which in ("bare", "kijko")
            }
            for _ in range(args.rounds)
        ]
    report(rounds)


def report(rounds: list[dict[str, Result]]) -> None:
    print(f"{'round':<6}{'worker':<8}{'jobs/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'dupes':>7}{'unfinished':>11}")
    for number, results in enumerate(rounds, 1):
        for r in results.values():
            print(
                f"{number:<6}{r.name:<8}{r.jobs_per_second:>10.0f}{r.p50_ms:>10.1f}{r.p99_ms:>10.1f}"
                f"{r.duplicates:>7}{r.not_succeeded:>11}"
            )
    ratios = [r["kijko"].jobs_per_second / r["bare"].jobs_per_second for r in rounds]
    ratio = statistics.median(ratios)
    spread = ", ".join(f"{value:.2f}" for value in ratios)
    verdict = "ok" if ratio >= 0.5 else "MISSED"
    print(f"throughput ratio kijko/bare: {ratio:.2f} median of [{spread}] (goal >= 0.5) {verdict}")
    dupes = sum(r[w].duplicates for r in rounds for w in r)
    unfinished = sum(r[w].not_succeeded for r in rounds for w in r)
    print(f"duplicates: {dupes} (goal 0) {'ok' if dupes == 0 else 'MISSED'}; unfinished: {unfinished}")


if __name__ == "__main__":
    main()
