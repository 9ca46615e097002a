"""Analytics intake latency against the health endpoint's, in the same run (docs/analytics.md).

The intake must answer "within a few ms" and never wait on the database: its latency should be
close to ``GET /health``'s, which does no I/O either. Both are driven in process through the
app's ASGI interface (no network, no uvicorn), interleaved, with ``--concurrency`` requests in
flight; each intake request carries ``--events`` valid events. The buffer's writer runs as in
production meanwhile; at the end the app stops (writing what waits) and the stored rows are
counted, so events that were answered but not stored would show.

    python -m bench.analytics [--requests 2000] [--concurrency 8] [--events 10]

KIJKO_BENCH_DATABASE_URL names a PostgreSQL administrator connection (else an embedded server).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.scratch import scratch_database
from kijko_core.config import load_settings
from kijko_core.crypto import Keyring
from kijko_core.db.provision import ScratchDatabase
from kijko_core.db.session import system_session
from kijko_core.logging import configure_logging
from kijko_core.runtime import Kijko
from kijko_server.app import create_app


def _event(session: str) -> dict[str, Any]:
    return {
        "type": "conversion_signal",
        "timestamp": datetime.now(UTC).isoformat(),
        "persona": "alex",
        "sessionId": session,
        "properties": {"action": "copy_to_cursor", "project_id": "p-1"},
    }


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _run(scratch: ScratchDatabase, data_dir: Path, requests: int, concurrency: int, events: int) -> None:
    settings = load_settings(
        mode="production",
        public_url="http://bench.kijko.test",
        database_url=scratch.urls.app,
        system_database_url=scratch.urls.system,
        migration_database_url=scratch.urls.migration,
        db_role_prefix=scratch.prefix,
        encryption_keys=Keyring.generate_key(),
        data_dir=data_dir,
        log_level="error",
        analytics_rate_limit_per_minute=100_000,
        analytics_buffer_max_events=1_000_000,
    )
    configure_logging(settings.log_level, settings.log_format)  # as `kijko serve` does: quiet
    kijko = await Kijko.start(settings)
    latencies: dict[str, list[float]] = {"health": [], "intake": []}
    sent = 0
    try:
        app = create_app(settings, kijko=kijko)
        async with app.test_app():
            client = app.test_client()
            session = f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}"
            batch = {"events": [_event(session) for _ in range(events)]}

            async def one(kind: str) -> None:
                nonlocal sent
                started = time.perf_counter()
                if kind == "health":
                    response = await client.get("/health")
                    assert response.status_code == 200
                else:
                    response = await client.post("/api/analytics/events", json=batch)
                    assert response.status_code == 202, await response.get_data(as_text=True)
                    sent += (await response.get_json())["accepted"]
                latencies[kind].append((time.perf_counter() - started) * 1000)

            for _ in range(20):  # warm-up, not measured
                await client.get("/health")
            for start in range(0, requests, concurrency):
                kinds = ["health" if (start + i) % 2 else "intake" for i in range(min(concurrency, requests - start))]
                await asyncio.gather(*(one(kind) for kind in kinds))
        async with system_session(kijko.system_db, readonly=True) as db:
            stored = await db.fetchval("SELECT count(*) FROM kijko.analytics_events WHERE session_id = $1", session)
    finally:
        await kijko.stop()
    print(f"requests: {requests} (half each), concurrency {concurrency}, {events} events per intake request")
    for kind, values in latencies.items():
        print(
            f"{kind:>7}: p50 {statistics.median(values):6.2f} ms  p99 {_percentile(values, 0.99):6.2f} ms"
            f"  max {max(values):6.2f} ms"
        )
    ratio = _percentile(latencies["intake"], 0.99) / _percentile(latencies["health"], 0.99)
    print(f"intake p99 / health p99: {ratio:.2f}")
    print(f"events accepted: {sent}, stored after stop: {stored}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--events", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kijko-bench-analytics-") as tmp:
        with scratch_database(Path(tmp)) as scratch:
            asyncio.run(_run(scratch, Path(tmp) / "data", args.requests, args.concurrency, args.events))


if __name__ == "__main__":
    main()
