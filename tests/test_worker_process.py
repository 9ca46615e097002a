"""``kijko worker`` as real processes on the test run's PostgreSQL (and Redis, when
``KIJKO_TEST_REDIS_URL`` is set; SQLite in a shared data directory otherwise): two workers
racing for the same 500 jobs run each exactly once; a worker killed with ``kill -9`` mid-job
loses its lease and the job is retried and succeeds; SIGTERM drains and exits 0; ``kijko jobs``
lists, retries and cancels."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from kijko_core.db.provision import ScratchDatabase
from kijko_core.db.session import system_session
from kijko_core.jobs import add_doorbell, enqueue, remove_doorbell, store
from kijko_core.runtime import Kijko
from kijko_server.jobs import HueyJobs
from tests import job_kinds  # registers the test kinds in this process too
from tests.net import free_port
from tests.test_cli import clean_env, kijko_env, run_kijko

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 40.0
# The worker's command line with the test kinds imported first (they are never shipped).
WORKER = [sys.executable, "-c", "import tests.job_kinds; from kijko_cli.main import cli; cli()", "worker"]


@pytest.fixture
def worker_env(database: ScratchDatabase, encryption_key: str, tmp_path: Path) -> dict[str, str]:
    values = {
        "KIJKO_LOG_FORMAT": "json",
        "KIJKO_WORKER_POLL_SECONDS": "0.5",
        "KIJKO_JOB_RETRY_BASE_SECONDS": "0.1",
        "KIJKO_DB_SYSTEM_POOL_SIZE": "4",
    }
    if os.environ.get("KIJKO_TEST_REDIS_URL"):
        values["KIJKO_REDIS_URL"] = os.environ["KIJKO_TEST_REDIS_URL"]
    return kijko_env(database, encryption_key, tmp_path, **values)


@pytest.fixture(autouse=True, scope="module")
async def no_leftovers(kijko: Kijko) -> AsyncIterator[None]:
    yield
    await job_kinds.cancel_leftovers(kijko)


class Workers:
    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env = env
        self.tmp_path = tmp_path
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, **extra_env: str) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"worker-{len(self.started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                WORKER,
                cwd=ROOT,
                env={**self.env, **extra_env},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.started.append((process, log))
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"kijko worker exited with {process.returncode}:\n{log.read_text()}")
            if "worker_started" in log.read_text():
                return process
            time.sleep(0.1)
        pytest.fail(f"kijko worker did not start:\n{log.read_text()}")

    def output(self, process: subprocess.Popen[bytes]) -> str:
        return next(log for p, log in self.started if p is process).read_text()

    def events(self, process: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
        found = []
        for line in self.output(process).splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def cleanup(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def workers(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    manager = Workers(worker_env, tmp_path)
    try:
        yield manager
    finally:
        manager.cleanup()


@pytest.fixture
def doorbell(worker_env: dict[str, str]) -> Iterator[HueyJobs]:
    """This test process rings the workers' queue like an API process does."""
    from kijko_core.config import load_settings

    queue_settings: dict[str, Any] = {"data_dir": Path(worker_env["KIJKO_DATA_DIR"])}
    if "KIJKO_REDIS_URL" in worker_env:
        queue_settings["redis_url"] = worker_env["KIJKO_REDIS_URL"]
    queue = HueyJobs(load_settings(**queue_settings))
    add_doorbell(queue)
    try:
        yield queue
    finally:
        remove_doorbell(queue)


async def wait_for(
    kijko: Kijko, ids: list[UUID], states: set[str], seconds: float = 60.0
) -> dict[UUID, dict[str, Any]]:
    deadline = time.monotonic() + seconds
    rows: dict[UUID, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        async with system_session(kijko.system_db, readonly=True) as db:
            rows = {
                r["id"]: dict(r)
                for r in await db.fetch(
                    "SELECT id, state, attempts, last_error, lease_owner FROM kijko.jobs WHERE id = ANY($1)", ids
                )
            }
        if len(rows) == len(ids) and all(r["state"] in states for r in rows.values()):
            return rows
        await _sleep(0.2)
    pytest.fail(f"jobs not {states} in time: {Counter(r['state'] for r in rows.values())}")


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def log_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


async def test_two_workers_racing_for_500_jobs_run_each_exactly_once(
    kijko: Kijko, workers: Workers, doorbell: HueyJobs, tmp_path: Path
) -> None:
    first = workers.start(KIJKO_WORKER_CONCURRENCY="8")
    second = workers.start(KIJKO_WORKER_CONCURRENCY="8")
    runs = tmp_path / "runs.log"
    # One commit: all 500 appear at once. Each takes 20 ms, so one worker cannot have finished
    # them all before the other's first poll, however the doorbell's rings fall.
    async with system_session(kijko.system_db) as db:
        ids = [await enqueue(db, "test.noop", {"log": str(runs), "n": n, "sleep": 0.02}) for n in range(500)]
    rows = await wait_for(kijko, ids, {"succeeded"})
    assert all(r["attempts"] == 1 for r in rows.values())
    ran = Counter(UUID(line[0]) for line in log_lines(runs) if line[2] == "ran")
    assert set(ran) == set(ids) and set(ran.values()) == {1}  # each exactly once
    pids = Counter(line[3] for line in log_lines(runs))
    assert {str(first.pid), str(second.pid)} <= set(pids), pids  # both took part
    for process in (first, second):
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, workers.output(process)


async def test_a_worker_killed_mid_job_loses_its_lease_and_the_job_is_retried(
    kijko: Kijko, workers: Workers, doorbell: HueyJobs, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.log"
    victim = workers.start()
    async with system_session(kijko.system_db) as db:
        job_id = await enqueue(db, "test.slow", {"log": str(runs), "seconds": 30, "slow_attempts": [1]})
    deadline = time.monotonic() + 20
    while not any(line[0] == str(job_id) and line[2] == "started" for line in log_lines(runs)):
        assert time.monotonic() < deadline, workers.output(victim)
        await _sleep(0.05)
    victim.kill()  # kill -9: no drain, no release; the lease (2 s) must expire
    victim.wait()
    async with system_session(kijko.system_db, readonly=True) as db:
        assert (await store.get(db, job_id) or {})["state"] == "running"
    rescuer = workers.start()
    rows = await wait_for(kijko, [job_id], {"succeeded", "failed"}, seconds=30)
    assert rows[job_id]["state"] == "succeeded" and rows[job_id]["attempts"] == 2
    assert rows[job_id]["last_error"].startswith("lease expired")
    by_attempt = {(line[1], line[2]): line[3] for line in log_lines(runs) if line[0] == str(job_id)}
    assert by_attempt[("1", "started")] == str(victim.pid) and ("1", "finished") not in by_attempt
    assert by_attempt[("2", "finished")] == str(rescuer.pid)
    rescuer.send_signal(signal.SIGTERM)
    assert rescuer.wait(timeout=30) == 0


async def test_sigterm_drains_finishes_within_grace_and_gives_back_the_rest(
    kijko: Kijko, workers: Workers, doorbell: HueyJobs, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.log"
    process = workers.start(KIJKO_WORKER_GRACE_SECONDS="4")
    async with system_session(kijko.system_db) as db:
        short = await enqueue(db, "test.slow", {"log": str(runs), "seconds": 1.5})
        long = await enqueue(db, "test.slow", {"log": str(runs), "seconds": 60})
    deadline = time.monotonic() + 20
    while len({line[0] for line in log_lines(runs) if line[2] == "started"} & {str(short), str(long)}) < 2:
        assert time.monotonic() < deadline, workers.output(process)
        await _sleep(0.05)
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, workers.output(process)
    assert time.monotonic() - began < 15
    async with system_session(kijko.system_db, readonly=True) as db:
        finished = await store.get(db, short)
        given_back = await store.get(db, long)
    assert finished is not None and finished["state"] == "succeeded"
    assert given_back is not None and given_back["state"] == "queued"
    assert given_back["attempts"] == 0 and given_back["lease_owner"] is None  # not counted
    events = [e.get("event") for e in workers.events(process)]
    assert "worker_draining" in events and "job_released" in events and "worker_stopped" in events
    async with system_session(kijko.system_db) as db:  # leave nothing due for other tests
        await store.cancel(db, long)


async def test_jobs_command_lists_retries_and_cancels(kijko: Kijko, worker_env: dict[str, str], tmp_path: Path) -> None:
    async with system_session(kijko.system_db) as db:
        failed = await enqueue(db, "test.fail", {"n": 1})
        queued = await enqueue(db, "test.noop", {"n": 2}, delay_seconds=3600)
        await db.execute(
            "UPDATE kijko.jobs SET state = 'failed', attempts = 3, finished_at = now(), last_error = 'E: x'"
            " WHERE id = $1",
            failed,
        )
    listing = run_kijko("jobs", "list", "--state", "failed", "--kind", "test.fail", env=worker_env, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    header, *lines = listing.stdout.splitlines()
    assert header.split("\t")[:4] == ["id", "kind", "state", "attempts"]
    assert any(line.startswith(f"{failed}\ttest.fail\tfailed\t3/3") for line in lines)
    assert all("\tfailed\t" in line for line in lines)

    assert run_kijko("jobs", "retry", str(failed), env=worker_env, cwd=tmp_path).returncode == 0
    again = run_kijko("jobs", "retry", str(failed), env=worker_env, cwd=tmp_path)
    assert again.returncode == 1 and again.stderr.strip() == "error: Only a failed or cancelled job can be retried"
    assert run_kijko("jobs", "cancel", str(queued), env=worker_env, cwd=tmp_path).returncode == 0
    twice = run_kijko("jobs", "cancel", str(queued), env=worker_env, cwd=tmp_path)
    assert twice.returncode == 1 and twice.stderr.strip() == "error: The job has already finished"
    unknown = run_kijko("jobs", "cancel", "00000000-0000-0000-0000-000000000000", env=worker_env, cwd=tmp_path)
    assert unknown.returncode == 1 and unknown.stderr.strip() == "error: No job with that id"
    shown = run_kijko("jobs", "show", str(queued), env=worker_env, cwd=tmp_path)
    assert shown.returncode == 0 and json.loads(shown.stdout)["state"] == "cancelled"
    async with system_session(kijko.system_db) as db:
        row = await store.get(db, failed)
        assert row is not None and row["state"] == "queued" and row["attempts"] == 0
        await store.cancel(db, failed)


SERVE = [sys.executable, "-c", "import tests.job_kinds; from kijko_cli.main import cli; cli()", "serve"]


def _start_serve(env: dict[str, str], tmp_path: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    port = free_port()
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*SERVE, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while '"serving"' not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"kijko serve did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return process, log


async def test_serve_runs_the_worker_in_process_when_told_and_drains_on_ctrl_c(
    kijko: Kijko, worker_env: dict[str, str], tmp_path: Path
) -> None:
    runs = tmp_path / "runs.log"
    env = {k: v for k, v in worker_env.items() if k != "KIJKO_REDIS_URL"}
    process, log = _start_serve({**env, "KIJKO_SERVE_WORKER": "on"}, tmp_path, "serve-on")
    try:
        assert "worker_in_process" in log.read_text()
        async with system_session(kijko.system_db) as db:
            job_id = await enqueue(db, "test.noop", {"log": str(runs)})
        rows = await wait_for(kijko, [job_id], {"succeeded"}, seconds=20)
        assert rows[job_id]["attempts"] == 1
        assert log_lines(runs)[0][3] == str(process.pid)  # run by the server process itself
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, log.read_text()
    assert "worker_stopped" in log.read_text()

    # On an external database, `auto` leaves the jobs to `kijko worker` processes.
    process, log = _start_serve(env, tmp_path, "serve-auto")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0, log.read_text()
    assert "worker_in_process" not in log.read_text()


@pytest.mark.parametrize("command", [("worker",), ("jobs", "list")])
def test_an_unreachable_database_is_one_line_and_exit_4(
    tmp_path: Path, encryption_key: str, command: tuple[str, ...]
) -> None:

    url = f"postgresql://kijko_app:s3cret-pw@127.0.0.1:{free_port()}/kijko"
    env = clean_env(
        tmp_path,
        KIJKO_DATABASE_URL=url,
        KIJKO_SYSTEM_DATABASE_URL=url,
        KIJKO_MIGRATION_DATABASE_URL=url,
        KIJKO_ENCRYPTION_KEYS=encryption_key,
    )
    result = run_kijko(*command, env=env, cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "database unreachable" in lines[0], result.stderr
    assert "s3cret-pw" not in result.stderr and "Traceback" not in result.stderr
