"""What the generated ``search`` column of ``kijko.chunks`` (migration 0015) costs at write time.

    python -m bench.search_column [--chunks 50000] [--lines 60] [--batch 1000] [--rounds 2]

Provisions a fresh, migrated database (in the PostgreSQL named by ``KIJKO_BENCH_DATABASE_URL``,
an administrator URL, or else in an embedded PostgreSQL) and writes the same chunks of real
Python source (``--lines``-line windows of the standard library's and this environment's
``.py`` files, cycled until there are ``--chunks``; the symbol is the window's first
``def``/``class``) into the real ``kijko.chunks`` the way the ingestion job does: a service
session on the app role (row-level security on), one ``INSERT … SELECT … FROM unnest(…)`` per
batch. Each round writes them with the table as migrated (the ``search`` column and its GIN
index), without them, and with a naive ``to_tsvector('simple', …)`` column and GIN index
instead; the run's rows are deleted between contestants. Results: docs/decisions/0082.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import re
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg

from bench.scratch import scratch_database
from kijko_core.db.provision import ScratchDatabase

_INSERT = (
    "INSERT INTO kijko.chunks (organization_id, project_id, run_id, source, path, language, start_line,"
    " end_line, symbol, content, content_hash, token_count)"
    " SELECT $1, $2, $3, c.source, c.path, c.language, c.start_line, c.end_line, c.symbol, c.content,"
    " c.content_hash, c.token_count"
    " FROM unnest($4::text[], $5::text[], $6::text[], $7::int[], $8::int[], $9::text[], $10::text[],"
    " $11::text[], $12::int[])"
    " AS c (source, path, language, start_line, end_line, symbol, content, content_hash, token_count)"
)
_NAIVE = (
    "ALTER TABLE kijko.chunks ADD COLUMN search tsvector GENERATED ALWAYS AS"
    " (to_tsvector('simple', coalesce(symbol, '') || ' ' || path || ' ' || content)) STORED;"
    " CREATE INDEX chunks_search_idx ON kijko.chunks USING gin (search)"
)
_DROP = "ALTER TABLE kijko.chunks DROP COLUMN IF EXISTS search"  # its index goes with it
_SYMBOL = re.compile(r"(?:def|class) (\w+)")


def _migrated_column() -> str:
    """Migration 0015's column and index, as shipped (so the bench measures what ships)."""
    text = resources.files("kijko_core.db.migrations").joinpath("0015_code_search.sql").read_text("utf-8")
    start = text.index("ALTER TABLE kijko.chunks ADD COLUMN search")
    return text[start:]


def _corpus(lines: int) -> Iterator[tuple[str, int, int, str]]:
    roots = {Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])}
    for root in sorted(roots):
        for path in sorted(root.rglob("*.py")):
            try:
                text = path.read_text(encoding="utf-8").splitlines(keepends=True)
            except (UnicodeDecodeError, OSError):
                continue
            for start in range(0, len(text), lines):
                content = "".join(text[start : start + lines]).replace("\x00", "")
                if content.strip():
                    yield str(path.relative_to(root)), start + 1, min(start + lines, len(text)), content


def _chunks(count: int, lines: int) -> list[tuple[Any, ...]]:
    rows = []
    cycled = itertools.chain.from_iterable(
        ((f"copy{n}/{p}", s, e, c) for p, s, e, c in _corpus(lines)) for n in itertools.count()
    )
    for path, start, end, content in itertools.islice(cycled, count):
        symbol = _SYMBOL.search(content)
        rows.append(
            (
                "acme/bench",
                path[:4096],
                "python",
                start,
                end,
                symbol.group(1)[:512] if symbol else None,
                content,
                hashlib.sha256(content.encode()).hexdigest(),
                len(content) // 4,
            )
        )
    return rows


async def _write(
    scratch: ScratchDatabase, ids: tuple[uuid.UUID, uuid.UUID, uuid.UUID], rows: list[Any], batch: int
) -> float:
    org, project, run = ids
    system = await asyncpg.connect(scratch.urls.system)
    capability = await system.fetchval("SELECT service_capability FROM kijko_private.context_key")
    await system.close()
    conn = await asyncpg.connect(scratch.urls.app)
    try:
        started = time.perf_counter()
        async with conn.transaction():
            await conn.execute("SELECT kijko.enter_service($1, 'ingestion', 'bench', $2)", org, capability)
            for i in range(0, len(rows), batch):
                columns = list(zip(*rows[i : i + batch], strict=True))
                await conn.execute(_INSERT, org, project, run, *(list(column) for column in columns))
        return time.perf_counter() - started
    finally:
        await conn.close()


async def _bench(scratch: ScratchDatabase, args: argparse.Namespace) -> None:
    rows = _chunks(args.chunks, args.lines)
    megabytes = sum(len(row[6].encode()) for row in rows) / 1e6
    print(f"{len(rows)} chunks, {megabytes:.1f} MB of content, batches of {args.batch}")
    admin = await asyncpg.connect(scratch.admin_url)
    ids = (uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
    org, project, run = ids
    await admin.execute("INSERT INTO kijko.organizations (id, name) VALUES ($1, 'Bench')", org)
    await admin.execute(
        "INSERT INTO kijko.projects (id, organization_id, name, type) VALUES ($1, $2, 'Bench', 'repository')",
        project,
        org,
    )
    await admin.execute(
        "INSERT INTO kijko.ingestion_runs (id, organization_id, project_id, status, previous_status)"
        " VALUES ($1, $2, $3, 'running', 'draft')",
        run,
        org,
        project,
    )
    contestants = {"search column (0015) + GIN": _migrated_column(), "no search column": None, "naive": _NAIVE}
    for round_number in range(1, args.rounds + 1):
        for name, ddl in contestants.items():
            await admin.execute(_DROP)
            if ddl:
                await admin.execute(ddl)
            await admin.execute("VACUUM ANALYZE kijko.chunks")
            elapsed = await _write(scratch, ids, rows, args.batch)
            size = await admin.fetchval("SELECT pg_size_pretty(pg_total_relation_size('kijko.chunks'))")
            label = "naive to_tsvector + GIN" if name == "naive" else name
            print(
                f"round {round_number}  {label:28s} {elapsed:7.2f} s  {len(rows) / elapsed:7.0f} chunks/s"
                f"  {megabytes / elapsed:6.1f} MB/s  table {size}",
                flush=True,
            )
            await admin.execute("DELETE FROM kijko.chunks WHERE run_id = $1", run)
    await admin.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=50_000)
    parser.add_argument("--lines", type=int, default=60)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, scratch_database(Path(tmp)) as scratch:
        asyncio.run(_bench(scratch, args))


if __name__ == "__main__":
    main(sys.argv[1:])
