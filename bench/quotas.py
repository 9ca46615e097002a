"""Benchmark the quota engine on a hot path (issue 9 §6): ``GET /api/v1/projects`` against the
same list with one ``api_calls`` consumption in its transaction, in the same run.

    python -m bench.quotas [--duration 10] [--concurrency 16] [--rounds 3]

Provisions a scratch database (in the PostgreSQL named by ``KIJKO_BENCH_DATABASE_URL``, an
administrator URL, or else in an embedded PostgreSQL), seeds one organization with 1,000
projects and starts Kijko in this process on the ``enterprise`` plan (unlimited, so nothing is
refused: the check-and-increment statement still runs in full). The app gets one bench-only
route, ``/api/v1/bench/projects-counted``: the projects list view with
``quotas.consume(..., "api_calls")`` in its tenant transaction (a write transaction, as every
counted action is). Both routes are driven through Quart's in-process test client by
``--concurrency`` concurrent callers, alternating in rounds so that drift in the machine's load
hits both alike. Prints requests/s and p50/p99 per variant and the ratio (goal: counted ≥ 0.9×
plain). The client shares the process with the server, so absolute numbers are lower than
``bench/projects_list.py``'s; the ratio is what this measures. Results in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from quart_schema import validate_querystring

from bench.scratch import kijko_settings, scratch_database
from kijko_core.auth.models import SignupRequest
from kijko_core.billing import quotas
from kijko_core.config import load_settings
from kijko_core.projects import service
from kijko_core.projects.models import ProjectListQuery
from kijko_core.runtime import Kijko
from kijko_server.app import create_app
from kijko_server.uow import tenant

PLAIN = "/api/v1/projects?page=1&pageSize=20"
COUNTED = "/api/v1/bench/projects-counted?page=1&pageSize=20"
PROJECTS = 1_000


@validate_querystring(ProjectListQuery)
async def projects_counted(query_args: ProjectListQuery) -> Any:
    """The projects list, counted as an API call in its transaction."""
    async with tenant() as db:
        page = await service.list_projects(db, query_args)
        # Last and the only write, as in the search: the organization's counter row stays locked
        # only until the commit, which does not wait for the WAL flush.
        await quotas.consume(db, _kijko.plans, db.principal.org_id, "api_calls", only_write=True)
    return page.model_dump(mode="json", by_alias=True)


_kijko: Kijko


async def seed(kijko: Kijko) -> str:
    pair = await kijko.identity.signup(
        SignupRequest(
            email=f"bench-{secrets.token_hex(4)}@example.com",
            password="correct horse battery staple",
            first_name="Bench",
            last_name="Quotas",
        )
    )
    who = await kijko.identity.verifier.verify(pair.access_token)
    rows = [
        (who.org_id, who.user_id, f"Project {number:04d}", f"Benchmark project {number}", "repository")
        for number in range(PROJECTS)
    ]
    async with kijko.system_db.connection() as handle:
        await handle.raw_connection.executemany(
            "INSERT INTO kijko.projects (organization_id, user_id, name, description, type)"
            " VALUES ($1, $2, $3, $4, $5)",
            rows,
        )
        await handle.raw_connection.execute("ANALYZE kijko.projects")
    return pair.access_token


async def drive(client: Any, path: str, token: str, seconds: float, concurrency: int) -> tuple[float, float, float]:
    """Requests/s, p50 and p99 (ms) of ``concurrency`` callers for ``seconds``."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + seconds

    async def caller() -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = await client.get(path, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: {response.status_code} {await response.get_data(as_text=True)}")
            latencies.append((time.perf_counter() - started) * 1000)

    began = time.monotonic()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.monotonic() - began
    ordered = sorted(latencies)
    return len(ordered) / elapsed, statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


async def measure(args: argparse.Namespace, env: dict[str, str]) -> tuple[dict[str, list[Any]], int]:
    global _kijko
    values = {key[6:].lower(): value for key, value in env.items() if key.startswith("KIJKO_")}
    settings = load_settings(**(values | {"default_plan": "enterprise", "log_level": "warning", "db_pool_size": 10}))
    _kijko = kijko = await Kijko.start(settings)
    try:
        token = await seed(kijko)
        app = create_app(kijko=kijko)
        app.add_url_rule("/api/v1/bench/projects-counted", "bench_projects_counted", projects_counted)
        async with app.test_app():
            client = app.test_client()
            await drive(client, PLAIN, token, 1, args.concurrency)  # warm-up, both paths
            await drive(client, COUNTED, token, 1, args.concurrency)
            results: dict[str, list[Any]] = {PLAIN: [], COUNTED: []}
            for _ in range(args.rounds):
                for path in (PLAIN, COUNTED):
                    results[path].append(await drive(client, path, token, args.duration, args.concurrency))
        async with kijko.system_db.connection() as handle:
            counted = int(await handle.raw_connection.fetchval("SELECT sum(used) FROM kijko.usage_counters"))
    finally:
        await kijko.stop()
    return results, counted


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="kijko-bench-quotas-") as tmp, scratch_database(Path(tmp)) as scratch:
        results, counted = asyncio.run(measure(args, kijko_settings(scratch, Path(tmp))))
    rates = {}
    for path, name in ((PLAIN, "plain"), (COUNTED, "counted")):
        rps = statistics.median(r[0] for r in results[path])
        p50 = statistics.median(r[1] for r in results[path])
        p99 = statistics.median(r[2] for r in results[path])
        rates[name] = rps
        print(f"{name:8} {rps:8.1f} req/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms")
    print(f"counted/plain: {rates['counted'] / rates['plain']:.2f}x (goal ≥ 0.90x); API calls counted: {counted}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args())
