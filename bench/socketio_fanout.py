"""Benchmark Socket.IO fan-out: 1,000 clients in one room, 20 events/s for 30 s; Kijko's
realtime server against a bare python-socketio server with the same clients.

    python -m bench.socketio_fanout [--clients 1000] [--client-processes 4] [--rate 20]
        [--duration 30] [--setups one,one-redis,two-redis] [--servers bare,kijko]

Clients: the npm ``socket.io-client`` (tests/realtime_clients/client.mjs, installed by
tests/node_clients.py), ``--client-processes`` Node processes holding ``--clients`` websocket
connections between them, all joined to ``ingestion:<project id>``. Each event carries a
sequence number and the epoch milliseconds at which it was emitted; each client records the
delivery latency (same machine, same clock) and the sequence numbers it got.

Setups (``two-redis`` and ``one-redis`` need ``KIJKO_BENCH_REDIS_URL``, e.g.
``redis://127.0.0.1:6379/6``, whose keys the bench's channel uses; without it only ``one`` runs):

- ``one``: one API process, no Redis (in-process manager); the events are emitted inside that
  process, as the worker of ``kijko serve`` does on embedded defaults.
- ``one-redis``: one API process on Redis; events from a separate publisher process through a
  write-only Redis manager (the worker-side publisher).
- ``two-redis``: two API processes on Redis, the client processes split between them; events
  from the publisher process.

Per setup and server: connect (until every client is connected), warm-up (probe events until
every client has received one: joined the room), then ``rate × duration`` events, then wait
for stragglers until all arrived or nothing arrived for 5 s. Reported: the time to connect
every client, how long emitting took (``duration`` when the emitter kept up: an in-process
emit awaits the fan-out to every client), p50/p99/max delivery latency (from the emitter's
clock reading to the client's), lost events (expected deliveries − distinct deliveries),
duplicates, clients dropped, the servers' CPU (cores busy during the run) and peak RSS, and
the p99 ratio kijko/bare. Goals: p99 < 200 ms, 0 lost. Results go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
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
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.socketio_serve import PATH, emit_paced
from tests.net import free_port
from tests.node_clients import NodeClients, install, missing_programs

ROOT = Path(__file__).resolve().parent.parent
SETUPS = ("one", "one-redis", "two-redis")
SERVERS = ("bare", "kijko")
READY_SECONDS = 120.0
DRAIN_SECONDS = 5.0
EVENT = "progress_update"
PROBE = "bench_probe"


@dataclass
class Result:
    setup: str
    server: str
    connect_seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    expected: int
    lost: int
    duplicates: int
    peak_rss_mb: float
    emit_seconds: float  # how long emitting the events took (rate × duration: kept up)
    server_cpu: float  # CPU seconds of the server processes per second of the measured run
    disconnects: int  # clients dropped during the run (each loses what follows)


@dataclass
class Target:
    """Who the clients connect as: the same for bare (which checks nothing) and kijko."""

    token: str
    project_id: str
    env: dict[str, str] = field(default_factory=dict)  # the servers' environment
    login: tuple[str, str] | None = None  # kijko: a fresh access token (15 min at most) per run


class Server:
    """One ``bench.socketio_serve`` process; samples its RSS every 100 ms until stopped."""

    def __init__(self, which: str, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.socketio_serve", which, str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.peak_rss = 0
        self.psutil = psutil.Process(self.process.pid)
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def cpu_seconds(self) -> float:
        times = self.psutil.cpu_times()
        return float(times.user + times.system)

    def _sample(self) -> None:
        while self._sampling:
            try:
                self.peak_rss = max(self.peak_rss, self.psutil.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.1)

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited:\n{self.log.read_text()[-3000:]}")
                try:
                    # Engine.IO's handshake over polling: answers once Socket.IO is mounted.
                    response = await http.get(f"{self.url}{PATH}/?EIO=4&transport=polling")
                    if response.status_code in (200, 400, 401, 403):
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"server did not start in 60 s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self._sampling = False
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# ---------------------------------------------------------------------------------------------
# The publisher (a process of its own: ``python -m bench.socketio_fanout --publish JSON``).


async def publish(order: dict[str, Any]) -> None:
    """Emit through the worker-side write-only Redis publisher of ``order["server"]``; prints
    "ready" once connected, then one emission order per stdin line (``{event, count, rate,
    first}``), "done" after each."""
    if order["server"] == "bare":
        import socketio

        manager = socketio.AsyncRedisManager(order["redis_url"], write_only=True)

        async def emit(room: str, event: str, data: dict[str, Any]) -> None:
            await manager.emit(event, data, room=room)
    else:
        emit = await kijko_publisher()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    while line := await reader.readline():
        job = json.loads(line)
        started = time.monotonic()
        await emit_paced(emit, order["room"], job["event"], job["count"], job["rate"], job.get("first", 0))
        print(f"done {time.monotonic() - started:.3f}", flush=True)


async def kijko_publisher() -> Any:
    """Kijko's worker-side publisher: the port ``kijko worker`` installs when KIJKO_REDIS_URL is
    set (a write-only Redis manager), and ``kijko_core.events.send`` as the ingestion job's
    reporter calls it."""
    from kijko_core import events
    from kijko_core.config import load_settings
    from kijko_server.realtime import worker_port

    port = worker_port(load_settings())
    assert port is not None, "KIJKO_REDIS_URL is not set"
    events.use(port)

    async def emit(room: str, event: str, data: dict[str, Any]) -> None:
        await events.send(room=room, event=event, data=data)

    return emit


class Publisher:
    """The publisher process for the Redis setups."""

    def __init__(self, server: str, room: str, env: dict[str, str], redis_url: str) -> None:
        order = json.dumps({"server": server, "room": room, "redis_url": redis_url})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.socketio_fanout", "--publish", order],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the publisher did not start")

    def emit(self, event: str, count: int, rate: float, first: int = 0) -> None:
        """Start an emission; returns at once (``wait`` for its end)."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"event": event, "count": count, "rate": rate, "first": first}) + "\n")
        self.process.stdin.flush()

    def wait(self) -> float:
        """The seconds the emission took."""
        assert self.process.stdout is not None
        word, _, seconds = self.process.stdout.readline().strip().partition(" ")
        if word != "done":
            raise RuntimeError("the publisher stopped")
        return float(seconds)

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=20)


# ---------------------------------------------------------------------------------------------
# One measured run.


async def gather_reports(
    clients: list[NodeClients], *, reset: bool = False, full: bool = False
) -> list[dict[str, Any]]:
    """Every client process's report: counts only, unless ``full`` (latencies, sequences)."""
    for group in clients:
        await group.send({"report": True, "reset": reset, "full": full})
    return [(await group.wait_event("report", within=60)).data for group in clients]


def delivered(reports: list[dict[str, Any]], event: str) -> list[int]:
    return [count for report in reports for count in report["received"].get(event, [])]


async def run_one(
    setup: str, server: str, target: Target, args: argparse.Namespace, redis_url: str | None, tmp: Path
) -> Result:
    room = f"ingestion:{target.project_id}"
    if target.login is not None:
        target.token = await kijko_login(target.env, *target.login)
    env = {**target.env, "KIJKO_BENCH_FANOUT_REDIS_URL": redis_url or ""}
    if redis_url and server == "kijko":
        env["KIJKO_REDIS_URL"] = redis_url
    processes = 2 if setup == "two-redis" else 1
    servers = [Server(server, env, tmp / f"{setup}-{server}-{n}.log") for n in range(processes)]
    publisher: Publisher | None = None
    clients: list[NodeClients] = []
    try:
        for s in servers:
            await s.wait_ready()
        if setup != "one":
            assert redis_url
            publisher = await asyncio.to_thread(Publisher, server, room, env, redis_url)

        async def emit(event: str, count: int, rate: float, first: int = 0) -> float:
            """Emit and wait until the emitter is done; the seconds emitting took."""
            if publisher is not None:
                await asyncio.to_thread(publisher.emit, event, count, rate, first)
                return await asyncio.to_thread(publisher.wait)
            async with httpx.AsyncClient(timeout=30) as http:
                order = {"room": room, "event": event, "count": count, "rate": rate, "first": first}
                (await http.post(f"{servers[0].url}/__bench/emit", json=order)).raise_for_status()
                await asyncio.sleep(count / rate)
                while (state := (await http.get(f"{servers[0].url}/__bench/emit")).json())["running"]:  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.1)
                return float(state["seconds"])

        # Connect: the client processes split over the servers.
        started = time.monotonic()
        per_process = [args.clients // args.client_processes] * args.client_processes
        per_process[-1] += args.clients - sum(per_process)
        # One client first on each server: its first handshake loads the token keys (before the
        # fix in kijko_core/auth/tokens.py, a burst arriving during that load was refused).
        for s in servers:
            first = await NodeClients.start(url=s.url, path=PATH, token=target.token, project_id=target.project_id)
            ready = (await first.wait_event("ready", within=READY_SECONDS)).data
            await first.close()
            if ready["failed"]:
                raise RuntimeError(f"the first client could not connect: {first.events}")
        for n, count in enumerate(per_process):
            clients.append(
                await NodeClients.start(
                    url=servers[n % len(servers)].url,
                    path=PATH,
                    token=target.token,
                    project_id=target.project_id,
                    count=count,
                    quiet=True,
                    measure=EVENT,
                    timeout=READY_SECONDS * 1000,
                )
            )
        ready = [(await group.wait_event("ready", within=READY_SECONDS)).data for group in clients]
        connect_seconds = time.monotonic() - started
        failed = sum(r["failed"] for r in ready)
        if failed:
            errors = [e.data for group in clients for e in group.events if e.event == "connect_error"][:3]
            raise RuntimeError(f"{failed} clients could not connect, e.g. {errors}")

        # Warm-up: probes until every client has one (it is in the room).
        deadline = time.monotonic() + READY_SECONDS
        while True:
            await emit(PROBE, 1, 10.0)
            await asyncio.sleep(0.2)
            if sum(1 for n in delivered(await gather_reports(clients), PROBE) if n) == args.clients:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("not every client joined the room within the warm-up")
        await gather_reports(clients, reset=True)

        # The measured run.
        count = int(args.rate * args.duration)
        cpu_before, wall_before = sum(s.cpu_seconds() for s in servers), time.monotonic()
        emit_seconds = await emit(EVENT, count, args.rate)
        # Stragglers: until all arrived, or nothing more arrives for DRAIN_SECONDS (late is
        # counted in the latencies; lost is what never arrives).
        seen, last_change = -1, time.monotonic()
        while True:
            reports = await gather_reports(clients)
            total = sum(delivered(reports, EVENT))
            if total != seen:
                seen, last_change = total, time.monotonic()
            if total >= count * args.clients or time.monotonic() - last_change > DRAIN_SECONDS:
                break
            await asyncio.sleep(0.5)
        reports = await gather_reports(clients, full=True)
        server_cpu = (sum(s.cpu_seconds() for s in servers) - cpu_before) / (time.monotonic() - wall_before)
        disconnects = sum(1 for group in clients for e in group.events if e.event == "disconnect")
    finally:
        for group in clients:
            await group.close()
        if publisher is not None:
            publisher.stop()
        for s in servers:
            s.stop()
    latencies = sorted(ms for report in reports for ms in report["latencies"])
    distinct = sum(len(set(seqs)) for report in reports for seqs in report["sequences"])
    total = sum(len(seqs) for report in reports for seqs in report["sequences"])
    expected = count * args.clients
    return Result(
        setup,
        server,
        connect_seconds=connect_seconds,
        p50_ms=statistics.median(latencies) if latencies else float("nan"),
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan"),
        max_ms=latencies[-1] if latencies else float("nan"),
        expected=expected,
        lost=expected - distinct,
        duplicates=total - distinct,
        peak_rss_mb=sum(s.peak_rss for s in servers) / 2**20,
        emit_seconds=emit_seconds,
        server_cpu=server_cpu,
        disconnects=disconnects,
    )


# ---------------------------------------------------------------------------------------------
# Kijko's side: a user, an organization and a project the clients may read.


def _settings(env: dict[str, str]) -> Any:
    from kijko_core.config import load_settings

    return load_settings(**{key[6:].lower(): value for key, value in env.items() if key.startswith("KIJKO_")})


async def kijko_login(env: dict[str, str], email: str, password: str) -> str:
    from kijko_core.runtime import Kijko

    kijko = await Kijko.start(_settings(env))
    try:
        return (await kijko.identity.login(email, password)).access_token  # type: ignore[attr-defined]
    finally:
        await kijko.stop()


async def kijko_target(env: dict[str, str]) -> Target:
    from kijko_core.auth.models import SignupRequest
    from kijko_core.runtime import Kijko

    kijko = await Kijko.start(_settings(env))
    email, password = f"bench-fanout-{secrets.token_hex(4)}@example.com", "correct horse battery staple"
    try:
        pair = await kijko.identity.signup(
            SignupRequest(
                email=email,
                password=password,
                first_name="Bench",
                last_name="Fanout",
            )
        )
        who = await kijko.identity.verifier.verify(pair.access_token)
        async with kijko.system_db.connection() as handle:
            project_id = await handle.raw_connection.fetchval(
                "INSERT INTO kijko.projects (organization_id, user_id, name, description, type)"
                " VALUES ($1, $2, 'Fan-out', 'Socket.IO fan-out bench', 'repository') RETURNING id",
                who.org_id,
                who.user_id,
            )
    finally:
        await kijko.stop()
    return Target(pair.access_token, str(project_id), env, login=(email, password))


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"{'setup':<11}{'server':<8}{'connect s':>10}{'emit s':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'expected':>10}{'lost':>8}{'dupes':>6}{'drops':>6}{'CPU':>6}{'RSS MB':>8}"
    )
    for r in results:
        print(
            f"{r.setup:<11}{r.server:<8}{r.connect_seconds:>10.1f}{r.emit_seconds:>8.1f}{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}{r.max_ms:>9.1f}"
            f"{r.expected:>10}{r.lost:>8}{r.duplicates:>6}{r.disconnects:>6}{r.server_cpu:>6.2f}{r.peak_rss_mb:>8.0f}"
        )
    for setup in dict.fromkeys(r.setup for r in results):
        by = {r.server: r for r in results if r.setup == setup}
        line = f"{setup}:"
        if "bare" in by and "kijko" in by:
            line += f" p99 ratio kijko/bare {by['kijko'].p99_ms / max(by['bare'].p99_ms, 1e-9):.2f};"
        for name, r in by.items():
            p99 = "ok" if r.p99_ms < 200 else "MISSED"
            lost = "ok" if r.lost == 0 else "MISSED"
            line += f" {name} p99 {r.p99_ms:.0f} ms (goal < 200) {p99}, lost {r.lost} (goal 0) {lost};"
        print(line.rstrip(";"))


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the servers and clients are stopped
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of events")
    parser.add_argument("--setups", default=",".join(SETUPS))
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument(
        "--kijko-setting",
        action="append",
        default=[],
        metavar="KIJKO_NAME=VALUE",
        help="a setting for Kijko's servers (repeatable), e.g. KIJKO_REALTIME_RECHECK_SECONDS=60",
    )
    parser.add_argument("--publish", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        asyncio.run(publish(json.loads(args.publish)))
        return
    missing = missing_programs()
    if missing:
        raise SystemExit(f"the fan-out bench drives the npm socket.io-client: {' and '.join(missing)} not on PATH")
    install()
    redis_url = os.environ.get("KIJKO_BENCH_REDIS_URL")
    setups = [s for s in args.setups.split(",") if s]
    servers = [s for s in args.servers.split(",") if s]
    if not redis_url and set(setups) - {"one"}:
        print("KIJKO_BENCH_REDIS_URL is not set: only the setup 'one' runs")
        setups = [s for s in setups if s == "one"]
    tmp = Path(tempfile.mkdtemp(prefix="kijko-bench-fanout-"))
    print(
        f"{args.clients} clients ({args.client_processes} Node processes, socket.io-client, websocket), one room, "
        f"{args.rate:g} events/s for {args.duration:g} s ({int(args.rate * args.duration)} events each)"
    )
    results: list[Result] = []
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("KIJKO_")}
    bare = Target(token="bare-" + secrets.token_hex(8), project_id=str(uuid.uuid4()), env=base_env)
    if "kijko" in servers:
        from bench.scratch import kijko_settings, scratch_database

        with scratch_database(tmp) as scratch:
            env = {**base_env, **kijko_settings(scratch, tmp)}
            env.update(item.split("=", 1) for item in args.kijko_setting)
            kijko = asyncio.run(kijko_target(env))
            for setup in setups:
                for server in servers:
                    target = kijko if server == "kijko" else bare
                    results.append(asyncio.run(run_one(setup, server, target, args, redis_url, tmp)))
    else:
        for setup in setups:
            results.append(asyncio.run(run_one(setup, "bare", bare, args, redis_url, tmp)))
    shutil.rmtree(tmp, ignore_errors=True)
    report(results, args)


if __name__ == "__main__":
    main()
