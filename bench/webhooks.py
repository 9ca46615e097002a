"""Benchmark the reflex webhook intake (verify + dedupe + enqueue) against the authenticated
project list, on the same Kijko server in the same run (issue 8 §8 b: goal ≥ 0.5×).

    python -m bench.webhooks [--duration 10] [--connections 32] [--rounds 3]

Provisions a scratch database (``KIJKO_BENCH_DATABASE_URL`` or an embedded PostgreSQL), seeds
one organization with 1,000 projects, a skill and a webhook reflex (created over the API, so
its secret is the server's), and serves Kijko under uvicorn (httptools, uvloop) in its own
process, without a worker: an accepted delivery records its delivery row and a ``pending``
execution with its ``execution.run`` job, which is the intake being measured. The load
generator runs in its own process (``python -m bench.webhooks load …``) and signs every
request with a fresh ``webhook-id`` using the ``standardwebhooks`` library, as a sender would;
signing is on the client's clock, not the server's. Interleaved rounds: the project list
(``GET /api/v1/projects?page=1&pageSize=20``, bench/load.py), then the webhook intake.
Results go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.projects_list import PATH, Server, seed
from bench.scratch import kijko_settings, scratch_database

ROOT = Path(__file__).resolve().parent.parent
POOL_SIZE = 10


async def load(url: str, seconds: float, connections: int, secret: str) -> None:
    """The webhook load: every request a fresh, signed delivery; prints [rps, p50, p99, errors]."""
    from standardwebhooks import Webhook  # noqa: PLC0415 — only in the load process

    signer = Webhook(secret)
    body = json.dumps({"name": "Ada", "action": "opened", "repository": {"full_name": "acme/api"}})
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                msg_id = f"msg_{uuid.uuid4().hex}"
                now = datetime.now(tz=UTC)
                headers = {
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": signer.sign(msg_id, now, body),
                    "content-type": "application/json",
                }
                started = time.perf_counter()
                try:
                    response = await client.post(url, content=body, headers=headers)
                    if response.status_code != 202 or response.json().get("executionId") is None:
                        errors += 1
                        print(f"error: {response.status_code} {response.text[:300]}", file=sys.stderr)
                except httpx.HTTPError as error:
                    errors += 1
                    print(f"error: {type(error).__name__} {error}", file=sys.stderr)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000 if latencies else 0.0

    print(json.dumps([len(latencies) / elapsed, pct(0.50), pct(0.99), errors]))


def _drive(args: list[str]) -> tuple[float, float, float, int]:
    out = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    rps, p50, p99, errors = json.loads(out.stdout.strip().splitlines()[-1])
    if errors:  # what went wrong, as the load generator saw it (a few lines)
        print("\n".join(out.stderr.strip().splitlines()[:5]))
    return float(rps), float(p50), float(p99), int(errors)


async def make_reflex(url: str, token: str, env: dict[str, str]) -> tuple[str, str]:
    """A skill (written in SQL: no model needs to be configured) and its webhook reflex."""
    import asyncpg  # noqa: PLC0415

    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        me = (await client.get("/api/v1/auth/me")).json()
        connection = await asyncpg.connect(env["KIJKO_SYSTEM_DATABASE_URL"])
        try:
            skill_id = await connection.fetchval(
                "INSERT INTO kijko.skills (organization_id, user_id, name, prompt_template, model, input_schema)"
                " VALUES ($1, $2, 'Bench skill', 'Summarise {{name}} please.', 'claude-3-5-haiku-20241022',"
                ' \'[{"name": "name", "type": "string", "required": true}]\') RETURNING id',
                uuid.UUID(me["org_id"]),
                uuid.UUID(me["id"]),
            )
        finally:
            await connection.close()
        conditions = {"filters": [{"field": "repository.full_name", "operator": "startsWith", "value": "acme/"}]}
        response = await client.post(
            "/api/v1/reflexes",
            json={"skillId": str(skill_id), "triggerType": "webhook", "triggerConfig": {}, "conditions": conditions},
        )
        response.raise_for_status()
        reflex = response.json()
    return reflex["webhookUrl"].rsplit("/", 1)[1], reflex["triggerConfig"]["secret"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kijko-bench-"))
    with scratch_database(tmp) as scratch:
        env = dict(os.environ)
        env.update(kijko_settings(scratch, tmp), KIJKO_DB_POOL_SIZE=str(POOL_SIZE))
        # The intake is measured, not the per-reflex limit (which would answer 429 after 60).
        env["KIJKO_REFLEX_RATE_LIMIT_PER_MINUTE"] = "100000"
        token = next(iter(asyncio.run(seed(env))))
        server = Server("kijko", env)
        try:
            server.wait_ready(token)
            reflex_id, secret = asyncio.run(make_reflex(server.url, token, env))
            hook = f"{server.url}/api/v1/webhooks/reflex/{reflex_id}"
            listing = ["bench.load", server.url + PATH, "2", str(args.connections), token]
            _drive(listing)  # warm-up
            _drive(["bench.webhooks", "load", hook, "2", str(args.connections), secret])
            rounds: list[tuple[tuple[float, float, float, int], tuple[float, float, float, int]]] = []
            for _ in range(args.rounds):
                listing[2] = str(args.duration)
                projects = _drive(listing)
                hooks = _drive(["bench.webhooks", "load", hook, str(args.duration), str(args.connections), secret])
                rounds.append((projects, hooks))
        finally:
            server.stop()
    print(f"{args.connections} connections, {args.duration:.0f} s per measurement, {args.rounds} rounds")
    for name, index in (("GET /api/v1/projects", 0), ("POST /api/v1/webhooks/reflex/{id}", 1)):
        rps = statistics.median(r[index][0] for r in rounds)
        p50 = statistics.median(r[index][1] for r in rounds)
        p99 = statistics.median(r[index][2] for r in rounds)
        errors = sum(r[index][3] for r in rounds)
        print(f"{name:<36} {rps:8.0f} req/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  errors {errors}")
    ratios = [hooks[0] / projects[0] for projects, hooks in rounds]
    ratio = statistics.median(ratios)
    print(f"webhook intake / project list: {ratio:.2f} (goal >= 0.5) {'ok' if ratio >= 0.5 else 'MISSED'}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        asyncio.run(load(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]))
    else:
        main()
