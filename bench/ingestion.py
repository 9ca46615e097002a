"""Benchmark ingestion: a generated repository of 10,000 files / 100 MB ingested by Kijko's
worker against a bare reference in the same run.

    python -m bench.ingestion [--files 10000] [--bytes 100000000] [--seed 7] [--rounds 1]
        [--strategy fixed] [--contestants bare,kijko] [--repo-cache DIR]

The repository (bench/repo_gen.py: nine languages, deterministic) is generated once into
``--repo-cache`` (default ``~/.cache/kijko-bench``) and served over smart HTTP by
``git http-backend`` on 127.0.0.1 (tests/egress_server.py). A fresh database is provisioned
(in the PostgreSQL named by ``KIJKO_BENCH_DATABASE_URL``, an administrator URL, or else in an
embedded PostgreSQL) with one organization and two projects of the same repository.

- **bare** (a process of its own): ``git clone --depth 1 --single-branch --no-tags`` of the
  same URL, then a walk of the checkout that reads each file, cuts it into chunks of whole
  lines of at most ``4 × KIJKO_INGESTION_CHUNK_TOKENS`` characters (a token ≈ 4 characters),
  hashes them, and writes them in batches of 1,000 into the same ``kijko.chunks`` table with
  the statement Kijko's job uses (``kijko_core/ingestion/repository.py``'s ``INSERT … SELECT
  FROM unnest(…)``: PostgreSQL refuses ``COPY FROM`` into a table with row-level security),
  plus one ``kijko.indexed_files`` row per file, in one transaction of a service session on
  the app role (the same RLS policies, constraints and indexes as Kijko's writes; no language
  detection, filters, secrets, dedupe or progress).
- **kijko**: a ``kijko worker`` process (default settings, Redis as the doorbell when
  ``KIJKO_BENCH_REDIS_URL`` is set) and ``POST /ingest``'s service call for the project
  (``--strategy``, anonymizeSecrets and includeMetadata on, the defaults); timed from the
  start's commit until the run is ``completed``.

Both are timed end to end (clone included) and their peak RSS sampled every 50 ms with psutil
over the process tree (the worker, and git while it clones). Goals: Kijko ≤ 2 × the bare
reference's time, peak worker RSS ≤ 300 MB. Results go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import psutil

from bench import repo_gen
from kijko_core.ingestion.repository import INSERT_CHUNKS, INSERT_FILES

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "bench/generated"
BATCH = 1000
READY_TIMEOUT_SECONDS = 120.0
RUN_TIMEOUT_SECONDS = 3600.0


@dataclass
class Result:
    name: str
    seconds: float
    files: int
    chunks: int
    megabytes: float
    peak_rss_mb: float  # the process tree's, summed at each sample
    detail: str = ""


class TreeSampler:
    """Peak RSS of a process and its descendants (summed at each sample), every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._running = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self._running:
            try:
                tree = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            total = 0
            for process in tree:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def stop(self) -> float:
        self._running = False
        self._thread.join()
        return self.peak / 2**20


# ---------------------------------------------------------------------------------------------
# The bare reference (a process of its own: ``python -m bench.ingestion --reference JSON``).


def _cut(text: str, max_chars: int) -> list[tuple[int, int, str]]:
    """Chunks of whole lines, at most ``max_chars`` each (a longer line is a chunk alone)."""
    chunks: list[tuple[int, int, str]] = []
    lines = text.splitlines(keepends=True)
    start, size, parts = 1, 0, []
    for number, line in enumerate(lines, 1):
        if parts and size + len(line) > max_chars:
            chunks.append((start, number - 1, "".join(parts)))
            start, size, parts = number, 0, []
        parts.append(line)
        size += len(line)
    if parts:
        chunks.append((start, len(lines), "".join(parts)))
    return chunks


async def reference(order: dict[str, Any]) -> None:
    checkout = Path(order["workdir"]) / "checkout"
    started = time.monotonic()
    subprocess.run(  # noqa: ASYNC221 - the reference does one thing at a time, on purpose
        ["git", "clone", "-q", "--depth", "1", "--single-branch", "--branch", "main", "--no-tags",
         order["url"], str(checkout)],
        check=True, env={"PATH": os.environ["PATH"], "GIT_TERMINAL_PROMPT": "0", "HOME": order["workdir"]},
    )  # fmt: skip
    cloned = time.monotonic()
    system = await asyncpg.connect(order["system_dsn"])
    try:
        capability = await system.fetchval("SELECT service_capability FROM kijko_private.context_key")
    finally:
        await system.close()
    org, project = UUID(order["org_id"]), UUID(order["project_id"])
    languages = {extension: name for extension, (name, _) in repo_gen.LANGUAGES.items()}
    files = chunks = size = 0
    conn = await asyncpg.connect(order["app_dsn"])
    try:
        async with conn.transaction():
            await conn.execute("SELECT kijko.enter_service($1, 'ingestion', 'bench-reference', $2)", org, capability)
            run = await conn.fetchval(
                "INSERT INTO kijko.ingestion_runs (organization_id, project_id, status, previous_status)"
                " VALUES ($1, $2, 'running', 'draft') RETURNING id",
                org, project,
            )  # fmt: skip
            batch: list[tuple[Any, ...]] = []
            indexed: list[tuple[Any, ...]] = []

            async def flush() -> None:
                columns = list(zip(*batch, strict=True))
                await conn.execute(INSERT_CHUNKS, org, project, run, *columns)
                batch.clear()

            for directory, subdirectories, names in os.walk(checkout):
                subdirectories[:] = sorted(d for d in subdirectories if d != ".git")
                for name in sorted(names):
                    absolute = Path(directory, name)
                    data = absolute.read_bytes()  # noqa: ASYNC240 - as above
                    text = data.decode("utf-8", errors="replace")
                    path = absolute.relative_to(checkout).as_posix()
                    language = languages.get(absolute.suffix, "text")
                    pieces = _cut(text, order["max_chars"])
                    for first, last, content in pieces:
                        digest = hashlib.sha256(content.encode()).hexdigest()
                        batch.append((SOURCE, path, language, first, last, None, content, digest, len(content) // 4))
                    if len(batch) >= BATCH:
                        await flush()
                    indexed.append((SOURCE, path, language, len(data), text.count("\n"), len(pieces)))
                    files += 1
                    chunks += len(pieces)
                    size += len(data)
            if batch:
                await flush()
            await conn.execute(INSERT_FILES, org, project, run, *zip(*indexed, strict=True))
            # Not left active: the project could not start another run.
            await conn.execute("UPDATE kijko.ingestion_runs SET status = 'cancelled' WHERE id = $1", run)
    finally:
        await conn.close()
    done = time.monotonic()
    shutil.rmtree(checkout, ignore_errors=True)
    print(json.dumps({
        "clone": cloned - started, "index": done - cloned, "files": files, "chunks": chunks, "bytes": size,
    }), flush=True)  # fmt: skip


def run_reference(order: dict[str, Any]) -> Result:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.ingestion", "--reference", json.dumps(order)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    sampler = TreeSampler(process.pid)
    output, _ = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
    peak = sampler.stop()
    if process.returncode != 0:
        raise RuntimeError(f"the bare reference failed with {process.returncode}")
    out = json.loads(output.strip().splitlines()[-1])
    return Result(  # timed inside the process: its start-up (imports) is not the reference's work
        "bare", out["clone"] + out["index"], out["files"], out["chunks"], out["bytes"] / 1e6, peak,
        detail=f"clone {out['clone']:.1f} s, read+cut+insert {out['index']:.1f} s",
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Kijko.


@dataclass
class Setup:
    env: dict[str, str]
    token: str
    org_id: str
    kijko_project: str
    bare_project: str
    git_url: str


async def seed(env: dict[str, str], git_url: str, strategy: str) -> Setup:
    """One organization (its owner's token) and two projects of the generated repository."""
    from kijko_core.auth.models import SignupRequest
    from kijko_core.config import load_settings
    from kijko_core.runtime import Kijko

    settings = load_settings(**{key[6:].lower(): value for key, value in env.items() if key.startswith("KIJKO_")})
    kijko = await Kijko.start(settings)
    try:
        pair = await kijko.identity.signup(
            SignupRequest(
                email=f"bench-ingest-{secrets.token_hex(4)}@example.com",
                password="correct horse battery staple",
                first_name="Bench",
                last_name="Ingestion",
            )
        )
        who = await kijko.identity.verifier.verify(pair.access_token)
        projects = []
        async with kijko.system_db.connection() as handle:
            conn = handle.raw_connection
            for name in ("Kijko", "Reference"):
                project = await conn.fetchval(
                    "INSERT INTO kijko.projects (organization_id, user_id, name, description, type, chunking_strategy)"
                    " VALUES ($1, $2, $3, 'Ingestion bench', 'repository', $4) RETURNING id",
                    who.org_id, who.user_id, name, strategy,
                )  # fmt: skip
                await conn.execute(
                    "INSERT INTO kijko.repositories (organization_id, project_id, user_id, provider, repository_url,"
                    " repository_name, branch, status) VALUES ($1, $2, $3, 'gitlab', $4, $5, 'main', 'connected')",
                    who.org_id, project, who.user_id, git_url, SOURCE,
                )  # fmt: skip
                await conn.execute(
                    "UPDATE kijko.projects SET total_repos = 1 WHERE organization_id = $1 AND id = $2",
                    who.org_id, project,
                )  # fmt: skip
                projects.append(str(project))
    finally:
        await kijko.stop()
    return Setup(env, pair.access_token, str(who.org_id), projects[0], projects[1], git_url)


class Worker:
    """A ``kijko worker`` process, started and ready."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from kijko_cli.main import cli; cli()", "worker"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while "worker_started" not in log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"kijko worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def run_kijko(setup: Setup, tmp: Path, round_number: int) -> Result:
    from kijko_core.config import load_settings
    from kijko_core.db.session import system_session, tenant_session
    from kijko_core.ingestion import service
    from kijko_core.ingestion.models import StartIngestion
    from kijko_core.jobs import add_doorbell, remove_doorbell
    from kijko_core.runtime import Kijko

    env = setup.env
    settings = load_settings(**{key[6:].lower(): value for key, value in env.items() if key.startswith("KIJKO_")})
    kijko = await Kijko.start(settings)
    bell = None
    if settings.redis_url:
        from kijko_server.jobs import HueyJobs

        bell = HueyJobs(settings)
        add_doorbell(bell)
    worker = await asyncio.to_thread(Worker, env, tmp / f"worker-{round_number}.log")
    sampler = TreeSampler(worker.process.pid)
    try:
        identity = await kijko.identity.verifier.verify(setup.token)
        project = UUID(setup.kijko_project)
        async with tenant_session(kijko.app_db, identity) as db:
            await service.start(db, settings, project, StartIngestion(force_reprocess=True))
        started = time.monotonic()
        deadline = started + RUN_TIMEOUT_SECONDS
        while True:
            async with system_session(kijko.system_db, readonly=True) as db:
                run = await db.fetchrow(
                    "SELECT * FROM kijko.ingestion_runs WHERE project_id = $1 ORDER BY started_at DESC LIMIT 1",
                    project,
                )
            if run["status"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        seconds = time.monotonic() - started
    finally:
        peak = sampler.stop()
        await asyncio.to_thread(worker.stop)
        if bell is not None:
            remove_doorbell(bell)
        await kijko.stop()
    if run["status"] != "completed":
        raise RuntimeError(
            f"the run ended {run['status']}: {run['error_code']} {run['error_message']}\n"
            f"{worker.log.read_text()[-3000:]}"
        )
    return Result(
        "kijko", seconds, run["files_processed"], run["chunks_created"], run["bytes_processed"] / 1e6, peak,
        detail=f"errors {run['errors_encountered']}, tokens {run['tokens_processed']}",
    )  # fmt: skip


async def drop_reference_chunks(setup: Setup, env: dict[str, str]) -> None:
    """Between rounds: the reference's runs (and their chunks) go, so each round writes into a
    table of the same size."""
    conn = await asyncpg.connect(env["KIJKO_SYSTEM_DATABASE_URL"])
    try:
        await conn.execute("DELETE FROM kijko.ingestion_runs WHERE project_id = $1", UUID(setup.bare_project))
    finally:
        await conn.close()


def report(rounds: list[dict[str, Result]]) -> None:
    print(
        f"{'round':<6}{'run':<7}{'seconds':>9}{'files':>8}{'chunks':>9}{'MB':>8}{'MB/s':>7}{'peak RSS MB':>12}  detail"
    )
    for number, results in enumerate(rounds, 1):
        for r in results.values():
            print(
                f"{number:<6}{r.name:<7}{r.seconds:>9.1f}{r.files:>8}{r.chunks:>9}{r.megabytes:>8.1f}"
                f"{r.megabytes / r.seconds:>7.2f}{r.peak_rss_mb:>12.0f}  {r.detail}"
            )
    if all("bare" in r and "kijko" in r for r in rounds):
        ratios = [r["kijko"].seconds / r["bare"].seconds for r in rounds]
        ratio = statistics.median(ratios)
        spread = ", ".join(f"{value:.2f}" for value in ratios)
        print(f"time ratio kijko/bare: {ratio:.2f} median of [{spread}] (goal <= 2) {'ok' if ratio <= 2 else 'MISSED'}")
    peaks = [r["kijko"].peak_rss_mb for r in rounds if "kijko" in r]
    if peaks:
        print(f"peak worker RSS: {max(peaks):.0f} MB (goal <= 300) {'ok' if max(peaks) <= 300 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--bytes", type=int, default=100_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (bare, kijko, bare, …)")
    parser.add_argument("--strategy", default="fixed", choices=("fixed", "recursive", "semantic"))
    parser.add_argument("--contestants", default="bare,kijko")
    parser.add_argument("--repo-cache", type=Path, default=Path.home() / ".cache" / "kijko-bench")
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference:
        asyncio.run(reference(json.loads(args.reference)))
        return

    from bench.scratch import kijko_settings, scratch_database
    from tests.egress_server import GitServer

    started = time.monotonic()
    home = repo_gen.ensure(args.repo_cache, files=args.files, total_bytes=args.bytes, seed=args.seed)
    files, size = repo_gen.tree_stats(home / "work")
    print(f"repository: {files} files, {size / 1e6:.1f} MB ({home}, ready in {time.monotonic() - started:.0f} s)")
    contestants = [c for c in args.contestants.split(",") if c]
    tmp = Path(tempfile.mkdtemp(prefix="kijko-bench-ingestion-"))
    server = GitServer(home / "git").start()
    try:
        with scratch_database(tmp) as scratch:
            env = {k: v for k, v in os.environ.items() if not k.startswith("KIJKO_")}
            env.update(kijko_settings(scratch, tmp))
            env["KIJKO_EGRESS_ALLOW_CIDRS"] = "127.0.0.0/8"
            env["KIJKO_GIT_HOSTS"] = f"gitlab={server.url}"
            if os.environ.get("KIJKO_BENCH_REDIS_URL"):
                env["KIJKO_REDIS_URL"] = os.environ["KIJKO_BENCH_REDIS_URL"]
            setup = asyncio.run(seed(env, f"{server.url}/bench/generated.git", args.strategy))
            max_chars = 4 * int(os.environ.get("KIJKO_INGESTION_CHUNK_TOKENS", "512"))
            order = {
                "url": setup.git_url, "workdir": str(tmp), "app_dsn": scratch.urls.app,
                "system_dsn": scratch.urls.system, "org_id": setup.org_id, "project_id": setup.bare_project,
                "max_chars": max_chars,
            }  # fmt: skip
            rounds: list[dict[str, Result]] = []
            for number in range(1, args.rounds + 1):
                results: dict[str, Result] = {}
                for contestant in contestants:
                    if contestant == "bare":
                        results["bare"] = run_reference(order)
                        asyncio.run(drop_reference_chunks(setup, env))
                    else:
                        results["kijko"] = asyncio.run(run_kijko(setup, tmp, number))
                rounds.append(results)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.strategy} chunks of {max_chars // 4} tokens; Kijko with its default settings")
    report(rounds)


if __name__ == "__main__":
    main()
