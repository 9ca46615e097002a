"""Realtime across processes (ARCHITECTURE §5): two ``kijko serve`` API processes and one
``kijko worker`` on the test run's PostgreSQL and Redis. An event a job publishes in the worker
(its write-only Redis manager) reaches clients connected to either API process, python-socketio's
and Node's alike; a member event published by one API process reaches a client of the other."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kijko_core.db.provision import ScratchDatabase
from kijko_core.db.session import system_session
from kijko_core.jobs import enqueue
from kijko_core.runtime import Kijko
from kijko_server.realtime import SOCKETIO_PATH
from tests import job_kinds  # noqa: F401 - the test kinds, for enqueue
from tests.conftest import Account
from tests.memberships import add_member
from tests.net import free_port
from tests.node_clients import NodeClients
from tests.projects import created
from tests.realtime import listening
from tests.test_cli import kijko_env

pytestmark = [pytest.mark.slow, pytest.mark.redis]

ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 45.0
#: How long to wait for an event to cross processes: a deadline against a hang, never a timing
#: claim; generous, since the suite runs in parallel processes on a shared machine.
WAIT_SECONDS = 60.0
KIJKO = [sys.executable, "-c", "import tests.job_kinds; from kijko_cli.main import cli; cli()"]


class Processes:
    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env, self.tmp_path = env, tmp_path
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def _spawn(self, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.tmp_path / f"process-{len(self.started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*KIJKO, *args], cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.started.append((process, log))
        return process, log

    async def api(self) -> str:
        port = free_port()
        process, log = self._spawn("serve", "--port", str(port))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_SECONDS
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    pytest.fail(f"kijko serve exited with {process.returncode}:\n{log.read_text()}")
                try:
                    if (await http.get(f"{url}/health", timeout=2)).status_code == 200:
                        return url
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        pytest.fail(f"kijko serve did not come up:\n{log.read_text()}")

    async def worker(self) -> None:
        process, log = self._spawn("worker")
        deadline = time.monotonic() + START_SECONDS
        while "worker_started" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"kijko worker did not start:\n{log.read_text()}")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in self.started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        return "\n".join(log.read_text() for _, log in self.started)


@pytest.fixture
async def processes(database: ScratchDatabase, encryption_key: str, tmp_path: Path) -> AsyncIterator[Processes]:
    redis = os.environ.get("KIJKO_TEST_REDIS_URL")
    if not redis:
        pytest.skip("needs KIJKO_TEST_REDIS_URL (API and worker processes share events through Redis)")
    env = kijko_env(
        database,
        encryption_key,
        tmp_path,
        KIJKO_REDIS_URL=redis,
        # A channel of this test's own: other runs on the same Redis never hear it.
        KIJKO_REALTIME_CHANNEL=f"kijko-test-{uuid.uuid4().hex}",
        KIJKO_LOG_FORMAT="json",
        KIJKO_WORKER_POLL_SECONDS="0.5",
        KIJKO_DB_POOL_SIZE="3",
        KIJKO_DB_SYSTEM_POOL_SIZE="2",
    )
    running = Processes(env, tmp_path)
    try:
        yield running
    finally:
        running.stop()


async def test_an_event_published_in_the_worker_reaches_clients_on_both_api_processes(
    kijko: Kijko, client: Any, alice: Account, processes: Processes
) -> None:
    project = await created(client, alice, "Watched from two places", privacy="shared")
    colleague = await add_member(kijko, alice.org_id, "member")
    first, second = await processes.api(), await processes.api()
    await processes.worker()
    pid = project["id"]
    async with (
        listening(first, token=alice.access_token, project_id=pid) as on_first,
        listening(second, token=alice.access_token, project_id=pid) as on_second,
        listening(second, token=colleague.access_token) as colleague_on_second,
        await NodeClients.start(url=second, path=SOCKETIO_PATH, token=alice.access_token, project_id=pid) as node,
    ):
        await node.wait_event("connect")
        data = {
            "projectId": pid,
            "phase": "parsing",
            "progressPercent": 42,
            "message": "from the worker",
            "metrics": dict.fromkeys(
                (
                    "filesProcessed",
                    "totalFiles",
                    "tokensProcessed",
                    "bytesProcessed",
                    "chunksCreated",
                    "errorsEncountered",
                ),
                7,
            ),
        }
        async with system_session(kijko.system_db) as db:
            await enqueue(db, "test.event", {"room": f"ingestion:{pid}", "event": "progress_update", "data": data})
        for listener in (on_first, on_second):
            assert await listener.received("progress_update", within=WAIT_SECONDS) == [data], processes.logs()
        assert (await node.wait_event("progress_update", within=WAIT_SECONDS)).data == data
        # An API process's own event (a member added through the first) reaches the second's clients.
        async with httpx.AsyncClient() as http:
            added = await http.post(
                f"{first}/api/v1/projects/{pid}/members",
                json={"email": "later@example.com", "role": "viewer"},
                headers=alice.headers,
            )
        assert added.status_code == 201, added.text
        [event] = await colleague_on_second.received("project_user:added", within=WAIT_SECONDS)
        assert event["email"] == "later@example.com"
        assert colleague_on_second.named("progress_update") == []  # not on that project's channel
    # Each process stops cleanly (the worker closes its write-only manager, the API processes
    # their subscribers).
    processes.stop()
    assert [process.returncode for process, _ in processes.started] == [0, 0, 0], processes.logs()


async def test_sigterm_stops_an_api_process_with_connected_clients_promptly(
    client: Any, alice: Account, processes: Processes
) -> None:
    url = await processes.api()
    async with listening(url, token=alice.access_token) as watcher:
        process = processes.started[-1][0]
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        await watcher.closed(within=WAIT_SECONDS)
        while process.poll() is None:  # a deadline against a hang only, generous under load
            assert time.monotonic() - started < 60, processes.logs()
            await asyncio.sleep(0.1)
        assert process.returncode == 0, processes.logs()
        # Open sockets did not hold the shutdown until uvicorn's 10 s graceful timeout: it would
        # have logged that it cancelled the connections' tasks (an error, logged at any level).
        assert "graceful shutdown exceeded" not in processes.logs()
