"""Benchmark the quota engine on a hot path (issue 9 §6): ``GET /api/v1/projects`` against the
same list with one ``api_calls`` consumption in its transaction, in the same run.

    python -m bench.quotas [--duration 10] [--rounds 3] [--connections 32] [--orgs 8]
                           [--mode uvicorn|inprocess]

Provisions a scratch database (in the PostgreSQL named by ``KIJKO_BENCH_DATABASE_URL``, an
administrator URL, or else in an embedded PostgreSQL) and seeds ``--orgs`` organizations (one
owner each) with 1,000 projects each, as bench/projects_list.py does; the plan is
``enterprise`` (unlimited, so nothing is refused: the check-and-increment statement still runs
in full). The app gets one bench-only route, ``/api/v1/bench/projects-counted``: the projects
list view (the same decorators) with ``quotas.consume(..., "api_calls")`` in its tenant
transaction (a write transaction, as every counted action is). Only the bench's server process
registers it (:func:`counted_app`); the real app never has it.

Two variants, each measuring both routes: ``one org`` (every connection is the same
organization's owner: one counter row for all of them, the worst case) and ``N orgs`` (the
connections' requests spread over the ``--orgs`` organizations). Within each round the two
routes alternate (the order flips every round), so drift in a shared machine's load hits both
alike. Prints requests/s, p50 and p99 per variant and route (medians over rounds) and the
counted/plain throughput ratio per round (goal: counted ≥ 0.9× plain).

``--mode uvicorn`` (the default): Kijko is served by uvicorn (httptools, uvloop) in its own
process (``python -m bench.serve quotas PORT``) and driven by bench/projects_list.py's external
load generator (wrk if installed, else bench/load.py in its own process) — a server as deployed,
its client outside it. ``--mode inprocess``: both routes through Quart's in-process test client
with ``--connections`` concurrent callers; the client shares the process (and its CPU) with
the server, so absolute numbers are lower and the ratio understates what the count costs a
real server. Results in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from quart_schema import validate_querystring

from bench.projects_list import POOL_SIZE, Server, load_generator, seed
from bench.scratch import kijko_settings, scratch_database
from kijko_core.billing import quotas
from kijko_core.config import Settings, load_settings
from kijko_core.db.provision import ScratchDatabase
from kijko_core.logging import configure_logging
from kijko_core.projects import service
from kijko_core.projects.models import Project, ProjectListQuery
from kijko_core.runtime import Kijko
from kijko_core.wire import Page
from kijko_server.app import create_app
from kijko_server.responses import validate_response
from kijko_server.uow import runtime, tenant

PLAIN = "/api/v1/projects?page=1&pageSize=20"
COUNTED_ROUTE = "/api/v1/bench/projects-counted"
COUNTED = COUNTED_ROUTE + "?page=1&pageSize=20"
ROUTES = {PLAIN: "plain", COUNTED: "counted"}

#: Per variant, route and round: requests/s, p50 ms, p99 ms, errors.
Measured = tuple[float, float, float, int]
Results = dict[tuple[str, str], list[Measured]]


@validate_querystring(ProjectListQuery)
@validate_response(Page[Project])
async def projects_counted(query_args: ProjectListQuery) -> Page[Project]:
    """The projects list, counted as an API call in its transaction."""
    async with tenant() as db:
        page = await service.list_projects(db, query_args)
        # Last and the only write, as in the search: the organization's counter row stays locked
        # only until the commit, which does not wait for the WAL flush.
        await quotas.consume(db, runtime().plans, db.principal.org_id, "api_calls", only_write=True)
    return page


def counted_app(settings: Settings | None = None, *, kijko: Kijko | None = None) -> Any:
    """Kijko's app with the bench-only counted route (the bench's server process only)."""
    app = create_app(settings, kijko=kijko)
    app.add_url_rule(COUNTED_ROUTE, "bench_projects_counted", projects_counted)
    return app


def schedule(rounds: int, variants: list[str]) -> Iterator[tuple[str, str]]:
    """(variant, route) in measuring order: per round each variant's two routes back to back,
    plain first in even rounds and counted first in odd ones."""
    for number in range(rounds):
        for variant in variants:
            yield from ((variant, path) for path in ((PLAIN, COUNTED) if number % 2 == 0 else (COUNTED, PLAIN)))


def variants(tokens: list[str]) -> dict[str, list[str]]:
    """The tokens of each variant: the first organization's owner alone, and every owner."""
    spread = {"one org": tokens[:1]}
    if len(tokens) > 1:
        spread[f"{len(tokens)} orgs"] = tokens
    return spread


# --- uvicorn in its own process, an external load generator -----------------------------------


def served(args: argparse.Namespace, env: dict[str, str], tokens: list[str]) -> tuple[Results, str]:
    drive, tool = load_generator()
    chosen = variants(tokens)
    results: Results = {}
    server = Server("quotas", env)
    try:
        server.wait_ready(tokens[0])
        check_answers(server.url, tokens)
        for path in (PLAIN, COUNTED):  # warm-up: pools filled, both code paths hot
            drive(server.url, tokens, min(2.0, args.duration), args.connections, path)
        for variant, path in schedule(args.rounds, list(chosen)):
            measured = drive(server.url, chosen[variant], args.duration, args.connections, path)
            results.setdefault((variant, path), []).append(measured)
    finally:
        server.stop()
    return results, tool


def check_answers(url: str, tokens: list[str]) -> None:
    """Before timing: for each organization both routes answer the same page."""
    for token in tokens:
        headers = {"Authorization": f"Bearer {token}"}
        plain, counted = (httpx.get(url + path, headers=headers) for path in (PLAIN, COUNTED))
        if plain.status_code != 200 or counted.status_code != 200 or plain.json() != counted.json():
            raise SystemExit(f"the routes answer differently: {plain.status_code} {counted.status_code}")


# --- Quart's in-process test client ------------------------------------------------------------


async def drive_inprocess(client: Any, path: str, tokens: list[str], seconds: float, callers: int) -> Measured:
    """Requests/s, p50 and p99 (ms) of ``callers`` concurrent callers for ``seconds`` (caller
    ``i`` with ``tokens[i % len(tokens)]``)."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def caller(number: int) -> None:
        headers = {"Authorization": f"Bearer {tokens[number % len(tokens)]}"}
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = await client.get(path, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: {response.status_code} {await response.get_data(as_text=True)}")
            latencies.append((time.perf_counter() - started) * 1000)

    began = time.monotonic()
    await asyncio.gather(*(caller(n) for n in range(callers)))
    elapsed = time.monotonic() - began
    ordered = sorted(latencies)
    return len(ordered) / elapsed, statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.99) - 1)], 0


async def inprocess(args: argparse.Namespace, env: dict[str, str], tokens: list[str]) -> Results:
    values = {key[6:].lower(): value for key, value in env.items() if key.startswith("KIJKO_")}
    settings = load_settings(**values)
    configure_logging(settings.log_level, settings.log_format)  # as the server's process does
    kijko = await Kijko.start(settings)
    chosen = variants(tokens)
    results: Results = {}
    try:
        app = counted_app(kijko=kijko)
        async with app.test_app():
            client = app.test_client()
            for path in (PLAIN, COUNTED):  # warm-up, both paths
                await drive_inprocess(client, path, tokens, 1, args.connections)
            for variant, path in schedule(args.rounds, list(chosen)):
                measured = await drive_inprocess(client, path, chosen[variant], args.duration, args.connections)
                results.setdefault((variant, path), []).append(measured)
    finally:
        await kijko.stop()
    return results


# --- the run -----------------------------------------------------------------------------------


async def counted_calls(scratch: ScratchDatabase) -> tuple[int, int]:
    """The API calls counted, and in how many organizations."""
    connection = await asyncpg.connect(scratch.urls.system)
    try:
        row = await connection.fetchrow(
            "SELECT coalesce(sum(used), 0) AS used, count(*) AS orgs FROM kijko.usage_counters"
            " WHERE metric = 'api_calls' AND used > 0"
        )
    finally:
        await connection.close()
    assert row is not None
    return int(row["used"]), int(row["orgs"])


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="kijko-bench-quotas-") as tmp, scratch_database(Path(tmp)) as scratch:
        env = dict(os.environ)
        env.update(kijko_settings(scratch, Path(tmp)), KIJKO_DB_POOL_SIZE=str(POOL_SIZE), KIJKO_LOG_LEVEL="warning")
        tokens = list(asyncio.run(seed(env, [f"q{number}" for number in range(args.orgs)])))
        load_before = os.getloadavg()[0]
        if args.mode == "uvicorn":
            results, tool = served(args, env, tokens)
            how = f"uvicorn (httptools, uvloop) in its own process, load by {tool}"
        else:
            results, how = asyncio.run(inprocess(args, env, tokens)), "Quart's in-process test client"
        load_after = os.getloadavg()[0]
        counted, orgs = asyncio.run(counted_calls(scratch))
    print(
        f"GET {PLAIN} against {COUNTED_ROUTE} (+1 api_calls); {how}; {args.connections} connections, "
        f"{args.duration:g} s per measurement, {args.rounds} round(s), medians over rounds"
    )
    # On a shared machine a busy neighbour moves single measurements by more than the ratio.
    print(f"load average (1 min): {load_before:.1f} before, {load_after:.1f} after the measurements")
    report(results)
    print(f"API calls counted: {counted} in {orgs} organization(s)")


def report(results: Results) -> None:
    print(f"{'variant':<10}{'route':<9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for variant in dict.fromkeys(variant for variant, _ in results):
        for path, name in ROUTES.items():
            rows = results[(variant, path)]
            rps, p50, p99 = (statistics.median(row[i] for row in rows) for i in range(3))
            print(f"{variant:<10}{name:<9}{rps:>9.1f}{p50:>9.2f}{p99:>9.2f}{sum(row[3] for row in rows):>8}")
        ratios = [c[0] / p[0] for p, c in zip(results[(variant, PLAIN)], results[(variant, COUNTED)], strict=True)]
        ratio = statistics.median(ratios)
        spread = ", ".join(f"{r:.2f}" for r in ratios)
        verdict = "ok" if ratio >= 0.9 else "MISSED"
        print(f"{variant:<10}counted/plain {ratio:.2f}x median of [{spread}] (goal >= 0.90x) {verdict}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("uvicorn", "inprocess"), default="uvicorn")
    parser.add_argument("--duration", type=float, default=10, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", "--concurrency", type=int, default=32, help="concurrent callers")
    parser.add_argument("--orgs", type=int, default=8, help="organizations of the spread variant (1: one org only)")
    parsed = parser.parse_args()
    if parsed.orgs < 1 or parsed.rounds < 1 or parsed.connections < 1:
        parser.error("--orgs, --rounds and --connections take 1 or more")
    main(parsed)
