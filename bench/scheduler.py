"""Benchmark the habit scheduler (issue 8 §8 a): 10,000 habits due in the same minute, two
scheduler processes ticking at once.

    python -m bench.scheduler [--habits 10000] [--organizations 100] [--processes 2] [--rounds 3]

Provisions a fresh database (in the PostgreSQL named by ``KIJKO_BENCH_DATABASE_URL``, an
administrator URL, or else in an embedded PostgreSQL). Each round writes ``--habits`` active
habits (``0 3 * * *`` UTC: daily, so a slow tick cannot see one due twice) spread over
``--organizations`` organizations with one skill each, all due one second ago; starts
``--processes`` processes that each start a Kijko runtime and wait; then tells them to go
together: each runs one production tick (``kijko_core.habits.scheduler.tick(kijko)``: the
database's ``now()``, no ``at``).

Reported: the time from go to the end of the slower tick (as its process measured it; the
database's clock from go to both processes' exit is printed too), habits dispatched, duplicates
(executions beyond one per habit and instant, and habits whose ``run_count`` is not 1), missed
(due habits without an execution), and what each process fired. Goal: all dispatched in < 10 s,
0 duplicates, 0 missed. Results go in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import processes

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 120.0
RUN_TIMEOUT_SECONDS = 600.0


@dataclass
class Result:
    seconds: float
    dispatched: int
    duplicates: int
    missed: int
    per_process: list[int]


# ---------------------------------------------------------------------------------------------
# A scheduler process (``python -m bench.scheduler --tick-process GO_FILE``).


async def tick_process(go: Path) -> None:
    from kijko_core import jobs
    from kijko_core.config import load_settings
    from kijko_core.habits import scheduler
    from kijko_core.logging import configure_logging
    from kijko_core.runtime import Kijko

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)  # as `kijko worker` starts
    kijko = await Kijko.start(settings)
    try:
        # As a worker before its first tick: the job kinds loaded (the sweeper finds its steps
        # through them), pools and the service capability warm (standing in 2000, nothing is due).
        jobs.known_kinds()
        await scheduler.tick(kijko, at=datetime(2000, 1, 1, tzinfo=UTC), batch=1)
        print("ready", flush=True)
        while not go.exists():  # noqa: ASYNC110, ASYNC240 — a go signal across processes, polled
            await asyncio.sleep(0.002)
        profile = os.environ.get("BENCH_SCHEDULER_PROFILE")  # a file to write a cProfile of the tick to
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        report = await scheduler.tick(kijko)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(f"{profile}.{os.getpid()}")
        print(
            json.dumps(
                {
                    "fired": report.fired,
                    "skipped": report.skipped,
                    "left": report.left,
                    "seconds": time.perf_counter() - started,
                }
            ),
            flush=True,
        )
    finally:
        await kijko.stop()


# ---------------------------------------------------------------------------------------------
# The driver.

_SEED = """
WITH orgs AS (
    INSERT INTO kijko.organizations (name)
    SELECT 'bench org ' || n FROM generate_series(1, $1) AS n
    RETURNING id
), skills AS (
    INSERT INTO kijko.skills (organization_id, name, prompt_template, model)
    SELECT id, 'bench skill', 'Say something short please.', 'claude-3-5-haiku-20241022' FROM orgs
    RETURNING id, organization_id
), numbered AS (
    SELECT id, organization_id, row_number() OVER (ORDER BY id) AS k FROM skills
)
INSERT INTO kijko.habits (organization_id, skill_id, schedule_cron, timezone, next_run_at)
SELECT s.organization_id, s.id, '0 3 * * *', 'UTC', now() - interval '1 second'
FROM numbered s, generate_series(1, $2) AS n
"""


async def run_round(env: dict[str, str], habits: int, organizations: int, count: int, tmp: Path) -> Result:
    from kijko_core.config import load_settings
    from kijko_core.db.session import system_session
    from kijko_core.runtime import Kijko

    settings = load_settings(**{key[6:].lower(): value for key, value in env.items() if key.startswith("KIJKO_")})
    kijko = await Kijko.start(settings)
    try:
        async with system_session(kijko.system_db) as db:
            await db.execute(_SEED, organizations, habits // organizations)
            due = await db.fetchval("SELECT count(*) FROM kijko.habits WHERE is_active AND next_run_at <= now()")
        go = tmp / f"go-{time.monotonic_ns()}"
        started = await asyncio.to_thread(_start, env, count, go, tmp)
        async with system_session(kijko.system_db, readonly=True) as db:
            begun = await db.fetchval("SELECT clock_timestamp()")
        go.touch()
        outputs = await asyncio.to_thread(_wait, started)
        async with system_session(kijko.system_db, readonly=True) as db:
            ended = await db.fetchval("SELECT clock_timestamp()")
            counts = await db.fetchrow(
                "SELECT count(*) AS executions,"
                " count(DISTINCT (reference_id, scheduled_for)) AS distinct_fires"
                " FROM kijko.skill_executions WHERE execution_type = 'habit'"
            )
            missed = await db.fetchval(
                "SELECT count(*) FROM kijko.habits h WHERE NOT EXISTS"
                " (SELECT 1 FROM kijko.skill_executions e WHERE e.organization_id = h.organization_id"
                " AND e.reference_id = h.id)"
            )
            wrong_count = await db.fetchval("SELECT count(*) FROM kijko.habits WHERE run_count <> 1")
            wrong_org = await db.fetchval(
                "SELECT count(*) FROM kijko.skill_executions e JOIN kijko.habits h ON h.id = e.reference_id"
                " WHERE e.organization_id <> h.organization_id"
            )
        async with system_session(kijko.system_db) as db:
            await db.execute("DELETE FROM kijko.jobs")
            await db.execute("DELETE FROM kijko.organizations")  # cascades to skills, habits, executions
    finally:
        await kijko.stop()
    assert due == habits // organizations * organizations, due
    assert wrong_org == 0
    fired = [int(output["fired"]) for output in outputs]
    # Go → the last tick's end, as its process measured it (the processes' exits are not counted);
    # the database's clock bounds it from above (go → after both exited).
    print(f"  go → both processes exited: {(ended - begun).total_seconds():.2f} s (database clock)")
    return Result(
        seconds=max(output["seconds"] for output in outputs),
        dispatched=counts["distinct_fires"],
        duplicates=counts["executions"] - counts["distinct_fires"] + wrong_count,
        missed=missed,
        per_process=fired,
    )


def _start(env: dict[str, str], count: int, go: Path, tmp: Path) -> list[processes.Started]:
    command = [sys.executable, "-m", "bench.scheduler", "--tick-process", str(go)]
    started = [processes.start(command, env, tmp / f"scheduler-{n}-{time.monotonic_ns()}.log") for n in range(count)]
    processes.wait_ready(started, "ready", "a scheduler process", READY_TIMEOUT_SECONDS)
    return started


def _wait(started: list[processes.Started]) -> list[dict[str, float]]:
    outputs = []
    for process, log in started:
        process.wait(timeout=RUN_TIMEOUT_SECONDS)
        # The report is the JSON line with "fired" (log lines are JSON too).
        lines = [line for line in log.read_text().splitlines() if line.startswith('{"fired"')]
        if process.returncode != 0 or not lines:
            raise SystemExit(f"a scheduler process failed:\n{log.read_text()[-3000:]}")
        outputs.append(json.loads(lines[-1]))
        log.unlink(missing_ok=True)
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--habits", type=int, default=10_000)
    parser.add_argument("--organizations", type=int, default=100)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tick-process", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tick_process:
        asyncio.run(tick_process(args.tick_process))
        return

    from bench.scratch import kijko_settings, scratch_database

    tmp = Path(tempfile.mkdtemp(prefix="kijko-bench-scheduler-"))
    with scratch_database(tmp) as scratch:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KIJKO_")}
        env.update(kijko_settings(scratch, tmp))
        env["KIJKO_LOG_LEVEL"] = "warning"
        print(
            f"{args.habits} habits due at once in {args.organizations} organizations, "
            f"{args.processes} scheduler processes ticking together"
        )
        results = [
            asyncio.run(run_round(env, args.habits, args.organizations, args.processes, tmp))
            for _ in range(args.rounds)
        ]
    report(results)


def report(results: list[Result]) -> None:
    print(f"{'round':<6}{'seconds':>9}{'dispatched':>12}{'dupes':>7}{'missed':>8}  per process")
    for number, r in enumerate(results, 1):
        print(f"{number:<6}{r.seconds:>9.2f}{r.dispatched:>12}{r.duplicates:>7}{r.missed:>8}  {r.per_process}")
    median = statistics.median(r.seconds for r in results)
    worst = max(r.seconds for r in results)
    dupes = sum(r.duplicates for r in results)
    missed = sum(r.missed for r in results)
    verdict = "ok" if worst < 10 else "MISSED"
    print(f"all dispatched in: median {median:.2f} s, worst {worst:.2f} s (goal < 10 s) {verdict}")
    print(
        f"duplicates: {dupes} (goal 0) {'ok' if dupes == 0 else 'MISSED'}; missed: {missed} (goal 0) "
        f"{'ok' if missed == 0 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
