"""Benchmark ``GET /api/v1/projects?page=1&pageSize=20``: Kijko against a bare ASGI reference
and against the same endpoint written idiomatically in FastAPI.

    python -m bench.projects_list [--duration 10] [--connections 32] [--servers bare,peer,kijko]

Provisions a fresh database (in the PostgreSQL named by ``KIJKO_BENCH_DATABASE_URL``, an
administrator URL, or else in an embedded PostgreSQL), seeds two organizations with 1,000
projects each, then serves the same request with Kijko, with ``bench/fastapi_peer.py`` (FastAPI,
PyJWT, asyncpg, pydantic) and with ``bench/bare_app.py`` — the same ``kijko.enter`` call, the
same query text, the same app role and pool size — each under uvicorn with httptools and uvloop
in its own process. Before timing, it checks that every server answers the same page and
refuses a token with a broken signature. It then drives each with 32 connections using wrk (or,
without wrk, a load generator in a separate process). Prints requests/s, p50, p99, the ratios
and the servers' peak RSS. Results go in docs/performance.md.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
import psutil

from bench.scratch import kijko_settings, scratch_database
from kijko_core.auth.local.provider import LocalProvider
from kijko_core.auth.models import SignupRequest
from kijko_core.config import load_settings
from kijko_core.runtime import Kijko

PATH = "/api/v1/projects?page=1&pageSize=20"
SERVERS = ("bare", "peer", "kijko")  # the order within a round
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


async def seed(env: dict[str, str], orgs: Sequence[str] = ("a", "b")) -> dict[str, tuple[str, str, str]]:
    """One organization per name in ``orgs`` (one owner each; two by default) with 1,000 projects
    each; returns token → identity, in the order of ``orgs``."""
    settings = load_settings(**{key[6:].lower(): value for key, value in env.items() if key.startswith("KIJKO_")})
    kijko = await Kijko.start(settings)
    identities: dict[str, tuple[str, str, str]] = {}
    try:
        for org in orgs:
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


async def jwt_material(env: dict[str, str]) -> dict[str, object]:
    """What the FastAPI peer verifies tokens with: Kijko's JWKS, issuer, audience and leeway."""
    settings = load_settings(**{key[6:].lower(): value for key, value in env.items() if key.startswith("KIJKO_")})
    kijko = await Kijko.start(settings)
    try:
        assert isinstance(kijko.identity, LocalProvider)
        jwks = await kijko.identity.keys.jwks()
    finally:
        await kijko.stop()
    return {
        "jwks": jwks,
        "issuer": settings.issuer,
        "audience": settings.jwt_audience,
        "leeway": settings.jwt_leeway_seconds,
    }


class Server:
    """One uvicorn process; samples its RSS every 50 ms until stopped."""

    def __init__(self, which: str, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.serve", which, str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
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


class Drive(Protocol):
    """A load generator: ``path`` on the server at ``url`` for ``duration`` seconds over
    ``connections`` connections, requests cycling through ``tokens``; returns requests/s, p50
    and p99 (ms) and the errors."""

    def __call__(
        self, url: str, tokens: list[str], duration: float, connections: int, path: str = PATH
    ) -> tuple[float, float, float, int]: ...


def drive_wrk(
    url: str, tokens: list[str], duration: float, connections: int, path: str = PATH
) -> tuple[float, float, float, int]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT % (", ".join(json.dumps(t) for t in tokens), path))
    try:
        output = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{int(duration)}s", "-s", script.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    match = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) (\d+)", output)
    if match is None:
        raise RuntimeError(f"cannot read wrk output:\n{output}")
    requests, micros, p50, p99, errors = match.groups()
    return int(requests) / (int(micros) / 1e6), float(p50) / 1000, float(p99) / 1000, int(errors)


def drive_httpx(
    url: str, tokens: list[str], duration: float, connections: int, path: str = PATH
) -> tuple[float, float, float, int]:
    """Fallback without wrk: the load generator runs in its own process (bench/load.py)."""
    output = subprocess.run(
        [sys.executable, "-m", "bench.load", url + path, str(duration), str(connections), *tokens],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps, p50, p99, errors = json.loads(output.strip().splitlines()[-1])
    return rps, p50, p99, errors


def load_generator() -> tuple[Drive, str]:
    """wrk when it is installed, else bench/load.py in its own process; and its name."""
    if shutil.which("wrk"):
        return drive_wrk, "wrk"
    return drive_httpx, "bench/load.py (httpx)"


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


def _broken_signature(token: str) -> str:
    header, payload, signature = token.split(".")
    middle = len(signature) // 2
    changed = "A" if signature[middle] != "A" else "B"
    return ".".join((header, payload, signature[:middle] + changed + signature[middle + 1 :]))


def check_same_answers(names: list[str], env: dict[str, str], tokens: list[str]) -> None:
    """Before timing: every server answers each token's page with the same body, and answers
    401 to a token whose signature was altered (the bare reference by its lookup table)."""
    bodies: dict[str, list[object]] = {}
    for which in names:
        server = Server(which, env)
        try:
            server.wait_ready(tokens[0])
            answers = []
            for token in tokens:
                response = httpx.get(server.url + PATH, headers={"Authorization": f"Bearer {token}"})
                response.raise_for_status()
                body = response.json()
                if which == "bare":  # it writes the column names and the jsonb text as they are
                    body["data"] = [{_camel(key): value for key, value in item.items()} for item in body["data"]]
                    for item in body["data"]:
                        item["customSettings"] = json.loads(item["customSettings"])
                for item in body["data"]:  # the models write every setting, null when not set
                    item["customSettings"] = {k: v for k, v in item["customSettings"].items() if v is not None}
                answers.append(body)
            forged = httpx.get(server.url + PATH, headers={"Authorization": f"Bearer {_broken_signature(tokens[0])}"})
            if forged.status_code != 401:
                raise RuntimeError(f"{which} answered {forged.status_code} to a token with a broken signature")
        finally:
            server.stop()
        bodies[which] = answers
    first, *others = names
    for which in others:
        if bodies[which] != bodies[first]:
            raise RuntimeError(f"{which} and {first} answer different bodies for {PATH}")


def measure(
    which: str, env: dict[str, str], tokens: list[str], duration: float, connections: int, profile: str | None
) -> Result:
    drive, _ = load_generator()
    server = Server(which, env)
    spy = None
    try:
        server.wait_ready(tokens[0])
        drive(server.url, tokens, 2, connections)  # warm-up: pools filled, code paths hot
        server.peak_rss_load = 0
        if profile and which == "kijko":
            # Sampling profiler from outside the process (collapsed stacks: one line per stack).
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(server.process.pid),
                    "--duration",
                    str(int(duration)),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--output",
                    profile,
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
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
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated servers to measure, of bare, peer (FastAPI) and kijko; default all",
    )
    parser.add_argument("--py-spy", metavar="FILE", help="also profile Kijko's server with py-spy into FILE (raw)")
    args = parser.parse_args()
    chosen = {name.strip() for name in args.servers.split(",") if name.strip()}
    if not chosen or not chosen <= set(SERVERS):
        parser.error(f"--servers takes a comma-separated subset of {', '.join(SERVERS)}")
    names = [name for name in SERVERS if name in chosen]

    tmp = Path(tempfile.mkdtemp(prefix="kijko-bench-"))
    try:
        with scratch_database(tmp) as scratch:
            env = dict(os.environ)
            env.update(kijko_settings(scratch, tmp), KIJKO_DB_POOL_SIZE=str(POOL_SIZE))
            identities = asyncio.run(seed(env))
            env["KIJKO_BENCH_IDENTITIES"] = json.dumps(identities)
            env["KIJKO_BENCH_JWT"] = json.dumps(asyncio.run(jwt_material(env)))
            tokens = list(identities)
            check_same_answers(names, env, tokens)
            _, tool = load_generator()
            print(f"GET {PATH}, {args.connections} connections, {args.duration:.0f} s per server, load by {tool}")
            print(f"same answers from {', '.join(names)}; a broken signature is refused by each")
            # Interleaved rounds, so drift in a shared machine's load hits every server alike.
            rounds = [
                {
                    which: measure(which, env, tokens, args.duration, args.connections, args.py_spy if i == 0 else None)
                    for which in names
                }
                for i in range(args.rounds)
            ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    report(rounds)


def _ratio(rounds: list[dict[str, Result]], other: str, metric: str) -> tuple[float, list[float]]:
    """The median over rounds of kijko's ``metric`` divided by ``other``'s, and the values."""
    values = [getattr(r["kijko"], metric) / getattr(r[other], metric) for r in rounds]
    return statistics.median(values), values


def report(rounds: list[dict[str, Result]]) -> None:
    print(
        f"{'round':<6}{'server':<8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}"
        f"{'RSS load MB':>13}{'RSS all MB':>12}"
    )
    for number, results in enumerate(rounds, 1):
        for r in results.values():
            print(
                f"{number:<6}{r.name:<8}{r.requests_per_second:>10.0f}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}{r.errors:>8}"
                f"{r.peak_rss_mb:>13.1f}{r.peak_rss_overall_mb:>12.1f}"
            )
    names = rounds[0].keys()
    if "kijko" not in names:
        return
    # Goals (docs/performance.md): at least half the bare reference's throughput and at most
    # 3x its p99; at least the FastAPI peer's throughput and at most its p99.
    for other, min_throughput, max_p99 in (("bare", 0.5, 3.0), ("peer", 1.0, 1.0)):
        if other not in names:
            continue
        throughput, throughputs = _ratio(rounds, other, "requests_per_second")
        p99, _ = _ratio(rounds, other, "p99_ms")
        spread = ", ".join(f"{t:.2f}" for t in throughputs)
        label = f"kijko/{other}:"
        print(
            f"throughput ratio {label:<12}{throughput:.2f} median of [{spread}] (goal >= {min_throughput:g}) "
            f"{'ok' if throughput >= min_throughput else 'MISSED'}"
        )
        print(f"p99 ratio {label:<19}{p99:.2f} median (goal <= {max_p99:g})   {'ok' if p99 <= max_p99 else 'MISSED'}")
    rss = max(r["kijko"].peak_rss_mb for r in rounds)
    print(f"kijko peak RSS under load:   {rss:.0f} MB (goal <= 150) {'ok' if rss <= 150 else 'MISSED'}")
    print(f"kijko peak RSS incl. start:  {max(r['kijko'].peak_rss_overall_mb for r in rounds):.0f} MB")


if __name__ == "__main__":
    main()
