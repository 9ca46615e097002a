"""Several processes on one embedded data directory (decision 0030): ``kijko`` commands run next
to ``kijko serve`` attach to its PostgreSQL and leave it running; a second ``serve`` refuses.
Real processes, no ``KIJKO_*`` variable but the data directory."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.net import free_port
from tests.test_serve import Servers, _kijko_command, me, postgres_processes, sign_up
from tests.test_serve import servers as servers  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow


def kijko(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIJKO_")}
    env["KIJKO_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [*_kijko_command(), *args],
        env=env,
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_commands_next_to_serve_leave_its_database_running(servers: Servers) -> None:
    serve = servers.start()
    postmaster = min(postgres_processes(servers.data_dir), key=lambda p: p.pid)
    tokens = sign_up(serve.base_url)

    status = kijko(servers.data_dir, "migrate", "--status")
    assert status.returncode == 0, status.stderr
    assert status.stdout and "pending" not in status.stdout
    created = kijko(
        servers.data_dir,
        "users",
        "create",
        "--email",
        "grace@example.com",
        "--first-name",
        "Grace",
        "--last-name",
        "Hopper",
        "--password",
        "a long enough password",
    )
    assert created.returncode == 0, created.stderr
    rotated = kijko(servers.data_dir, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.startswith("new signing key: ")

    assert postmaster.is_running(), "a command stopped the server's database"
    assert httpx.get(serve.base_url + "/health/ready", timeout=10).status_code == 200
    login = httpx.post(
        serve.base_url + "/api/v1/auth/login",
        json={"email": "grace@example.com", "password": "a long enough password"},
        timeout=30,
    )
    assert login.status_code == 200, login.text
    # A token signed before the rotation still verifies; one signed after it too.
    assert me(serve.base_url, tokens["access_token"]).status_code == 200
    assert me(serve.base_url, login.json()["access_token"]).status_code == 200

    assert serve.interrupt() == 0, serve.output()
    assert postgres_processes(servers.data_dir) == [], "the last process out stopped PostgreSQL"


def test_a_second_serve_on_the_same_data_dir_refuses_with_one_line(servers: Servers) -> None:
    first = servers.start()
    port = int(first.base_url.rsplit(":", 1)[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIJKO_")}
    for second_port in (port, free_port()):
        second = subprocess.run(
            [*_kijko_command(), "serve", "--port", str(second_port), "--data-dir", str(servers.data_dir)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert second.returncode == 1
        assert second.stderr == (
            f"error: another kijko serve (pid {first.process.pid}) is already serving"
            f" the data directory {servers.data_dir}\n"
        )
    assert httpx.get(first.base_url + "/health/ready", timeout=10).status_code == 200
    assert first.interrupt() == 0
    assert postgres_processes(servers.data_dir) == []


def test_serve_stopping_while_a_command_runs_leaves_the_database_to_the_command(
    servers: Servers,
) -> None:
    """The last process out stops PostgreSQL, whoever started it."""
    serve = servers.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIJKO_")}
    env["KIJKO_DATA_DIR"] = str(servers.data_dir)
    # A library user holding the runtime open (like a long command) while serve goes away.
    holder = subprocess.Popen(
        [
            os.environ.get("PYTHON", _python()),
            "-c",
            "import asyncio, sys\n"
            "from kijko_core.config import load_settings\n"
            "from kijko_core.runtime import Kijko\n"
            "async def main():\n"
            "    kijko = await Kijko.start(load_settings())\n"
            "    print('up', flush=True)\n"
            "    sys.stdin.readline()\n"
            "    async with kijko.system_db.connection() as c:\n"
            "        print(await c.fetch_val('SELECT 1'), flush=True)\n"
            "    await kijko.stop()\n"
            "asyncio.run(main())\n",
        ],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "up", holder.stderr.read() if holder.stderr else ""
        assert serve.interrupt() == 0, serve.output()
        assert postgres_processes(servers.data_dir), "still in use by the other process"
        out, err = holder.communicate("\n", timeout=60)
        assert holder.returncode == 0, err
        assert out.strip() == "1"
    finally:
        if holder.poll() is None:
            holder.kill()
    deadline = time.monotonic() + 10
    while postgres_processes(servers.data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert postgres_processes(servers.data_dir) == []


def _python() -> str:
    import sys

    return sys.executable
