"""Benchmark skill executions end to end (issue 8 §8 c): 1,000 executions of the built-in ``llm``
skill type against a local provider stand-in that answers in 200 ms, run by two ``kijko worker``
processes, measured against the bound the per-organization limit sets.

    python -m bench.executions [--executions 1000] [--orgs 10] [--limit 4] [--delay 0.2]
                               [--workers 2] [--rounds 3]

Provisions a fresh database (``KIJKO_BENCH_DATABASE_URL``, an administrator URL, or else an
embedded PostgreSQL) and starts the Anthropic Messages stand-in of ``tests/llm_servers.py`` (the
real wire format, a fixed delay per answer). Each round: ``--orgs`` organizations with one
``llm`` skill each; the workers are started and ready; the clock starts; the executions are
started with ``lifecycle.start_many``, one transaction per organization (as a habit fires its
runs; the ten commits take a few tens of milliseconds); then it waits until every execution has
ended.

The bound: at most ``--limit`` executions of an organization run at once
(``KIJKO_EXECUTION_CONCURRENCY_PER_ORG``) and each takes at least ``--delay`` seconds, so no engine
finishes faster than ``orgs × limit / delay`` executions per second. Reported from the database's
clock: executions/s (executions ÷ (last ``completedAt`` − the clock's start)), the ratio to the bound
(goal ≥ 0.7), the most that ever ran at once in one organization (from the rows' start and end
times: must not pass the limit) and any execution that did not complete. Results go in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from bench import processes

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 60.0
RUN_TIMEOUT_SECONDS = 600.0
KEY = "sk-bench-platform-0000"
MODEL = "claude-3-5-haiku-20241022"


@dataclass
class Result:
    per_second: float
    bound: float
    most_at_once: int
    not_completed: int

    @property
    def ratio(self) -> float:
        return self.per_second / self.bound


class Workers:
    """``kijko worker`` processes, started and ready."""

    def __init__(self, count: int, env: dict[str, str], tmp: Path, profile: Path | None = None) -> None:
        self.processes: list[processes.Started] = []
        for n in range(count):
            log = tmp / f"worker-{n}-{time.monotonic_ns()}.log"
            code = "from kijko_cli.main import cli; cli()"
            if profile is not None:
                # cProfile of the whole worker, written when it stops (pstats file per worker).
                target = profile / f"worker-{n}-{time.monotonic_ns()}.pstats"
                code = (
                    "import cProfile; from kijko_cli.main import cli; p = cProfile.Profile(); p.enable()\n"
                    f"try:\n    cli()\nfinally:\n    p.disable(); p.dump_stats({str(target)!r})"
                )
            self.processes.append(processes.start([sys.executable, "-c", code, "worker"], env, log))
        processes.wait_ready(self.processes, "worker_started", "a worker", READY_TIMEOUT_SECONDS)

    def stop(self) -> None:
        processes.stop(self.processes, _released)


def _released(log: str) -> None:
    released = log.count("job_released")
    if released:
        print(f"  a worker deferred {released} jobs (released them to wait for a slot)")


async def _organizations(kijko: Any, count: int) -> list[tuple[UUID, dict[str, Any]]]:
    """``count`` fresh organizations, each with one llm skill (written by a service actor)."""
    from kijko_core.db.session import ServiceActor, load_service_capability, service_session, system_session

    capability = await load_service_capability(kijko.system_db)
    made: list[tuple[UUID, dict[str, Any]]] = []
    for n in range(count):
        async with system_session(kijko.system_db) as db:
            org_id = await db.fetchval("INSERT INTO kijko.organizations (name) VALUES ($1) RETURNING id", f"Bench {n}")
        async with service_session(kijko.app_db, capability, org_id, ServiceActor("bench", "setup")) as db:
            skill = await db.fetchrow(
                "INSERT INTO kijko.skills (organization_id, name, prompt_template, model, parameters, input_schema)"
                " VALUES ($1, 'Bench skill', 'Write one line about {{topic}}.', $2, $3, $4) RETURNING *",
                org_id,
                MODEL,
                {"max_tokens": 50},
                [{"name": "topic", "type": "string", "required": True}],
            )
        made.append((org_id, dict(skill)))
    return made


def _snapshot(skill: dict[str, Any]) -> dict[str, Any]:
    """The execution snapshot of a skill row, as the skills service takes it."""
    from kijko_core.skills import service as skills  # noqa: PLC0415 — imported where it runs, like the rest
    from kijko_core.skills.models import skill_from_row  # noqa: PLC0415

    return skills.snapshot(skill_from_row(skill))


async def run_round(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> Result:
    from kijko_core.config import load_settings
    from kijko_core.db.session import ServiceActor, load_service_capability, service_session, system_session
    from kijko_core.executions import lifecycle
    from kijko_core.jobs import add_doorbell, remove_doorbell
    from kijko_core.runtime import Kijko
    from kijko_server.jobs import HueyJobs

    settings = load_settings(**{key[6:].lower(): value for key, value in env.items() if key.startswith("KIJKO_")})
    kijko = await Kijko.start(settings)
    bell = HueyJobs(settings)
    add_doorbell(bell)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    running = await asyncio.to_thread(Workers, args.workers, env, tmp, args.profile)
    try:
        orgs = await _organizations(kijko, args.orgs)
        capability = await load_service_capability(kijko.system_db)
        async with system_session(kijko.system_db, readonly=True) as db:
            began = await db.fetchval("SELECT clock_timestamp()")
        ids: list[UUID] = []
        per_org = [
            args.executions // args.orgs + (1 if n < args.executions % args.orgs else 0) for n in range(args.orgs)
        ]
        for (org_id, skill), count in zip(orgs, per_org, strict=True):
            snapshot = _snapshot(skill)
            batch = [
                lifecycle.Run(snapshot, {"topic": f"tide {n}"}, "api", user_id=None, skill_id=skill["id"])
                for n in range(count)
            ]
            async with service_session(kijko.app_db, capability, org_id, ServiceActor("bench", "start")) as db:
                started = await lifecycle.start_many(db, batch, kijko=kijko)
            assert None not in started
            ids.extend(i for i in started if i is not None)
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            async with system_session(kijko.system_db, readonly=True) as db:
                left = await db.fetchval(
                    "SELECT count(*) FROM kijko.skill_executions WHERE id = ANY($1) AND completed_at IS NULL", ids
                )
            if left == 0:
                break
            await asyncio.sleep(0.1)
        async with system_session(kijko.system_db, readonly=True) as db:
            rows = await db.fetch(
                "SELECT organization_id, status, error_code, error_message, executed_at, started_at, completed_at"
                " FROM kijko.skill_executions"
                " WHERE id = ANY($1)",
                ids,
            )
    finally:
        await asyncio.to_thread(running.stop)
        remove_doorbell(bell)
        await kijko.stop()
    # The workers' CPU (start-up included): what a run costs whatever the machine's load.
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    done = [r for r in rows if r["status"] == "completed"]
    failures: dict[str, int] = {}
    for r in rows:
        if r["status"] != "completed":
            key = f"{r['status']} {r['error_code']}: {r['error_message']}"
            failures[key] = failures.get(key, 0) + 1
    for key, count in failures.items():
        print(f"  {count} x {key}")
    runs = sorted((r["completed_at"] - r["started_at"]).total_seconds() for r in done)
    if runs:
        print(f"  run time p50 {statistics.median(runs):.3f} s, max {runs[-1]:.3f} s")
    gaps = _hand_over_gaps(rows, args.limit)
    if gaps:
        print(
            f"  slot hand-over (an end to its organization's next start) p50 {statistics.median(gaps) * 1000:.0f} ms,"
            f" p90 {gaps[int(len(gaps) * 0.9)] * 1000:.0f} ms"
        )
    per_run = cpu / max(len(rows), 1) * 1000
    print(f"  workers' CPU {cpu:.1f} s in all, {per_run:.1f} ms per execution (start-up included)")
    last = max(r["completed_at"] for r in done) if done else began
    return Result(
        per_second=len(done) / max((last - began).total_seconds(), 1e-6),
        bound=args.orgs * args.limit / args.delay,
        most_at_once=_most_at_once(rows),
        not_completed=len(rows) - len(done),
    )


def _hand_over_gaps(rows: list[Any], limit: int) -> list[float]:
    """Per organization, the n-th end frees the slot of the (limit + n)-th start: the seconds
    between them (sorted), what the engine adds between two runs of a full organization."""
    gaps: list[float] = []
    by_org: dict[Any, tuple[list[Any], list[Any]]] = {}
    for r in rows:
        if r["started_at"] is not None and r["completed_at"] is not None:
            starts, ends = by_org.setdefault(r["organization_id"], ([], []))
            starts.append(r["started_at"])
            ends.append(r["completed_at"])
    for starts, ends in by_org.values():
        starts.sort()
        ends.sort()
        gaps.extend((s - e).total_seconds() for s, e in zip(starts[limit:], ends, strict=False))
    return sorted(gaps)


def _most_at_once(rows: list[Any]) -> int:
    """The most executions of one organization running at the same instant."""
    most = 0
    by_org: dict[Any, list[tuple[Any, int]]] = {}
    for r in rows:
        if r["started_at"] is not None and r["completed_at"] is not None:
            by_org.setdefault(r["organization_id"], []).extend([(r["started_at"], 1), (r["completed_at"], -1)])
    for points in by_org.values():
        now = 0
        for _, step in sorted(points, key=lambda p: (p[0], p[1])):  # ends before starts at a tie
            now += step
            most = max(most, now)
    return most


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=1000)
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--limit", type=int, default=4, help="KIJKO_EXECUTION_CONCURRENCY_PER_ORG")
    parser.add_argument("--delay", type=float, default=0.2, help="the provider's answer time, seconds")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--recheck", type=float, default=0.5, help="KIJKO_EXECUTION_QUEUE_RECHECK_SECONDS")
    parser.add_argument("--profile", type=Path, default=None, help="a directory: cProfile each worker into it")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from bench.scratch import kijko_settings, scratch_database
    from tests.llm_servers import Answer, LlmServer

    tmp = Path(tempfile.mkdtemp(prefix="kijko-bench-executions-"))
    # Workers claim an organization's jobs only while it has a free slot (decision 0129), so a
    # worker needs its share of the slots and a margin (claims racing between the two workers
    # may still defer a few): more would let one process take all the work while the other
    # idles, and one process's CPU is the limit.
    concurrency = max(4, math.ceil(args.orgs * args.limit * 1.25 / args.workers))
    with scratch_database(tmp) as scratch, LlmServer(api_keys={KEY}) as server:
        server.default = Answer(delay=args.delay, text="One line.", prompt_tokens=20, completion_tokens=5)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KIJKO_")}
        env.update(kijko_settings(scratch, tmp))
        env.update(
            {
                "KIJKO_WORKER_CONCURRENCY": str(concurrency),
                "KIJKO_EXECUTION_CONCURRENCY_PER_ORG": str(args.limit),
                "KIJKO_EXECUTION_QUEUE_RECHECK_SECONDS": str(args.recheck),
                "KIJKO_ANTHROPIC_API_KEY": KEY,
                "KIJKO_ANTHROPIC_BASE_URL": server.anthropic_url,
                "KIJKO_EGRESS_ALLOW_CIDRS": "127.0.0.0/8",
                "KIJKO_DB_POOL_SIZE": str(max(10, concurrency)),
            }
        )
        if os.environ.get("KIJKO_BENCH_REDIS_URL"):
            env["KIJKO_REDIS_URL"] = os.environ["KIJKO_BENCH_REDIS_URL"]
        print(
            f"{args.executions} executions, {args.orgs} organizations x limit {args.limit}, provider answers in "
            f"{args.delay * 1000:.0f} ms, {args.workers} worker processes x {concurrency}"
        )
        results = [asyncio.run(run_round(args, env, tmp)) for _ in range(args.rounds)]
    report(results, args.limit)


def report(results: list[Result], limit: int) -> None:
    print(f"{'round':<6}{'exec/s':>9}{'bound/s':>9}{'ratio':>7}{'most at once':>14}{'not completed':>15}")
    for number, r in enumerate(results, 1):
        print(f"{number:<6}{r.per_second:>9.1f}{r.bound:>9.1f}{r.ratio:>7.2f}{r.most_at_once:>14}{r.not_completed:>15}")
    ratio = statistics.median(r.ratio for r in results)
    verdict = "ok" if ratio >= 0.7 else "MISSED"
    spread = ", ".join(f"{r.ratio:.2f}" for r in results)
    print(f"throughput / bound: {ratio:.2f} median of [{spread}] (goal >= 0.7) {verdict}")
    most = max(r.most_at_once for r in results)
    print(f"most running at once in one organization: {most} (limit {limit}) {'ok' if most <= limit else 'MISSED'}")
    unfinished = sum(r.not_completed for r in results)
    print(f"not completed: {unfinished} (goal 0) {'ok' if unfinished == 0 else 'MISSED'}")


if __name__ == "__main__":
    main()
