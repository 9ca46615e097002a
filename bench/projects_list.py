"""Benchmark ``GET /api/v1/projects?page=1&pageSize=20``: Kijko against a bare ASGI reference.

    python -m bench.projects_list [--duration 10] [--connections 32]

Provisions a fresh database (in the PostgreSQL named by ``KIJKO_BENCH_DATABASE_URL``, an
administrator URL, or else in an embedded PostgreSQL), seeds two organizations with 1,000
projects each, then serves the same request with Kijko and with ``bench/bare_app.py`` — the
same ``kijko.enter`` call, the same query text, the same app role and pool size — each under
uvicorn with httptools and uvloop in its own process, and drives each with 32 connections
using wrk (or, without wrk, a load generator in a separate process). Prints requests/s, p50,
p99, the ratios and the servers' peak RSS. Results go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from kijko_core.auth.models import SignupRequest
from kijko_core.config import load_settings
from kijko_core.crypto import Keyring
from kijko_core.db import migrate as migrations
from kijko_core.db.embedded import EmbeddedPostgres
from kijko_core.db.provision import drop_scratch, provision_scratch
from kijko_core.runtime import Kijko

PATH = "/api/v1/projects?page=1&pageSize=20"
PROJECTS_PER_ORG = 1_000
POOL_SIZE = 10
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    name: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    peak_rss_mb: float  # while serving the measured load
    peak_rss_overall_mb: float  # start-up included (argon2id's 64 MiB dummy hash, pools, keys)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def seed(env: dict[str, str]) -> dict[str, tuple[str, str, str]]:
    """Two organizations (one owner each) with 1,000 projects each; returns token → identity."""
    settings = load_settings(**{key[6:].lower(): value for key, value in env.items() if key.startswith("KIJKO_")})
    kijko = await Kijko.start(settings)
    identities: dict[str, tuple[str, str, str]] = {}
    try:
        for org in ("a", "b"):
            pair = await kijko.identity.signup(
                SignupRequest(
                    email=f"bench-{org}-{secrets.token_hex(4)}@example.com",
                    password="correct horse battery staple",
                    first_name="Bench",
                    last_name=org.upper(),
                )
            )
            who = await kijko.identity.verifier.verify(pair.access_token)
            identities[pair.access_token] = (str(who.user_id), str(who.org_id), who.session_id)
            rows = [
                (who.org_id, who.user_id, f"Project {org}-{number:04d}", f"Benchmark project {number}", "repository")
                for number in range(PROJECTS_PER_ORG)
            ]
            async with kijko.system_db.connection() as handle:
                await handle.raw_connection.executemany(
                    "INSERT INTO kijko.projects (organization_id, user_id, name, description, type)"
                    " VALUES ($1, $2, $3, $4, $5)",
                    rows,
                )
        async with kijko.system_db.connection() as handle:
            await handle.raw_connection.execute("ANALYZE kijko.projects")
    finally:
        await kijko.stop()
    return identities


class Server:
    """One uvicorn process; samples its RSS every 50 ms until stopped."""

    def __init__(self, which: str, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.serve", which, str(self.port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self.peak_rss = 0
        self.peak_rss_load = 0
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        process = psutil.Process(self.process.pid)
        while self._sampling:
            try:
                rss = process.memory_info().rss
                self.peak_rss = max(self.peak_rss, rss)
                self.peak_rss_load = max(self.peak_rss_load, rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    def wait_ready(self, token: str) -> None:
        self._sampler.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                response = httpx.get(self.url + PATH, headers={"Authorization": f"Bearer {token}"})
                if response.status_code == 200 and len(response.json()["data"]) == 20:
                    return
                raise RuntimeError(f"unexpected answer {response.status_code}: {response.text[:300]}")
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("server did not start in 60 s")

    def stop(self) -> None:
        self._sampling = False
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


_WRK_SCRIPT = """
local tokens = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "%s", {["Authorization"] = "Bearer " .. tokens[(i %% #tokens) + 1]})
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%f %%f %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout))
end
"""


def drive_wrk(url: str, tokens: list[str], duration: float, connections: int) -> tuple[float, float, float, int]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT % (", ".join(json.dumps(t) for t in tokens), PATH))
    try:
        output = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{int(duration)}s", "-s", script.name, url],
            capture_output=True, text=True, check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    match = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) (\d+)", output)
    if match is None:
        raise RuntimeError(f"cannot read wrk output:\n{output}")
    requests, micros, p50, p99, errors = match.groups()
    return int(requests) / (int(micros) / 1e6), float(p50) / 1000, float(p99) / 1000, int(errors)


def drive_httpx(url: str, tokens: list[str], duration: float, connections: int) -> tuple[float, float, float, int]:
    """Fallback without wrk: the load generator runs in its own process (bench/load.py)."""
    output = subprocess.run(
        [sys.executable, "-m", "bench.load", url + PATH, str(duration), str(connections), *tokens],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    rps, p50, p99, errors = json.loads(output.strip().splitlines()[-1])
    return rps, p50, p99, errors


def measure(
    which: str, env: dict[str, str], tokens: list[str], duration: float, connections: int, profile: str | None
) -> Result:
    drive = drive_wrk if shutil.which("wrk") else drive_httpx
    server = Server(which, env)
    spy = None
    try:
        server.wait_ready(tokens[0])
        drive(server.url, tokens, 2, connections)  # warm-up: pools filled, code paths hot
        server.peak_rss_load = 0
        if profile and which == "kijko":
            # Sampling profiler from outside the process (collapsed stacks: one line per stack).
            spy = subprocess.Popen(
                ["py-spy", "record", "--pid", str(server.process.pid), "--duration", str(int(duration)),
                 "--rate", "200", "--format", "raw", "--output", profile, "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        rps, p50, p99, errors = drive(server.url, tokens, duration, connections)
        if spy is not None:
            spy.wait(timeout=60)
    finally:
        server.stop()
    return Result(which, rps, p50, p99, errors, server.peak_rss_load / 2**20, server.peak_rss / 2**20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of measured load per server")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved bare/kijko rounds; medians are reported")
    parser.add_argument("--py-spy", metavar="FILE", help="also profile Kijko's server with py-spy into FILE (raw)")
    args = parser.parse_args()

    embedded: EmbeddedPostgres | None = None
    tmp = Path(tempfile.mkdtemp(prefix="kijko-bench-"))
    admin = os.environ.get("KIJKO_BENCH_DATABASE_URL")
    if not admin:
        embedded = EmbeddedPostgres(tmp / "postgres")
        embedded.start()
        admin = embedded.admin_dsn()
    scratch = asyncio.run(provision_scratch(admin, prefix_hint="kb"))
    try:
        env = dict(os.environ)
        env.update(
            KIJKO_MODE="production",
            KIJKO_PUBLIC_URL="http://bench.kijko.test",
            KIJKO_DATABASE_URL=scratch.urls.app,
            KIJKO_SYSTEM_DATABASE_URL=scratch.urls.system,
            KIJKO_MIGRATION_DATABASE_URL=scratch.urls.migration,
            KIJKO_DB_ROLE_PREFIX=scratch.prefix,
            KIJKO_DB_POOL_SIZE=str(POOL_SIZE),
            KIJKO_ENCRYPTION_KEYS=Keyring.generate_key(),
            KIJKO_DATA_DIR=str(tmp / "data"),
            KIJKO_LOG_LEVEL="info",
        )
        asyncio.run(migrations.migrate(scratch.urls.migration, scratch.roles))
        identities = asyncio.run(seed(env))
        env["KIJKO_BENCH_IDENTITIES"] = json.dumps(identities)
        tokens = list(identities)
        tool = "wrk" if shutil.which("wrk") else "bench/load.py (httpx)"
        print(f"GET {PATH}, {args.connections} connections, {args.duration:.0f} s per server, load by {tool}")
        # Interleaved rounds, so drift in a shared machine's load hits both servers alike.
        rounds = [
            [
                measure(which, env, tokens, args.duration, args.connections, args.py_spy if i == 0 else None)
                for which in ("bare", "kijko")
            ]
            for i in range(args.rounds)
        ]
    finally:
        asyncio.run(drop_scratch(scratch))
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"{'round':<6}{'server':<8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}"
        f"{'RSS load MB':>13}{'RSS all MB':>12}"
    )
    for number, results in enumerate(rounds, 1):
        for r in results:
            print(
                f"{number:<6}{r.name:<8}{r.requests_per_second:>10.0f}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}{r.errors:>8}"
                f"{r.peak_rss_mb:>13.1f}{r.peak_rss_overall_mb:>12.1f}"
            )
    throughputs = [k.requests_per_second / b.requests_per_second for b, k in rounds]
    p99s = [k.p99_ms / b.p99_ms for b, k in rounds]
    throughput, p99 = statistics.median(throughputs), statistics.median(p99s)
    rss = max(k.peak_rss_mb for _, k in rounds)
    spread = ", ".join(f"{t:.2f}" for t in throughputs)
    print(f"throughput ratio kijko/bare: {throughput:.2f} median of [{spread}] (goal >= 0.5) "
          f"{'ok' if throughput >= 0.5 else 'MISSED'}")
    print(f"p99 ratio kijko/bare:        {p99:.2f} median (goal <= 3)   {'ok' if p99 <= 3 else 'MISSED'}")
    print(f"kijko peak RSS under load:   {rss:.0f} MB (goal <= 150) {'ok' if rss <= 150 else 'MISSED'}")
    print(f"kijko peak RSS incl. start:  {max(k.peak_rss_overall_mb for _, k in rounds):.0f} MB")


if __name__ == "__main__":
    main()
