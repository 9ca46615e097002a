"""The README's first command, ``kijko serve``, as a real process on the embedded PostgreSQL.

No ``KIJKO_*`` variable reaches the child: it must come up on its own defaults in a temporary
data directory, answer over real HTTP, log JSON lines, stop its PostgreSQL on Ctrl-C and start
again after a ``kill -9`` with the keys (and so the tokens) it had before.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.net import free_port

pytestmark = pytest.mark.slow

START_TIMEOUT_SECONDS = 45.0
STOP_TIMEOUT_SECONDS = 30.0


def _kijko_command() -> list[str]:
    script = Path(sys.executable).with_name("kijko")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kijko_cli.main"]


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    """PostgreSQL server processes working in this data directory."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "postgres" in (process.info["name"] or "") and str(data_dir) in cmdline:
            found.append(process)
    return found


@dataclass
class Serve:
    """One ``kijko serve`` child process and its captured output."""

    process: subprocess.Popen[bytes]
    base_url: str
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text() + "\n--- stderr ---\n" + self.stderr.read_text()

    def lines(self) -> list[str]:
        return [line for line in self.stdout.read_text().splitlines() if line.strip()]

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"kijko serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.base_url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"kijko serve did not come up:\n{self.output()}")

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal delivers it, and wait for the exit."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=STOP_TIMEOUT_SECONDS)


class Servers:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.started: list[Serve] = []

    def start(self, port: int | None = None, *extra: str) -> Serve:
        port = port or free_port()
        run = len(self.started)
        stdout = self.data_dir.parent / f"{self.data_dir.name}-stdout-{run}.log"
        stderr = self.data_dir.parent / f"{self.data_dir.name}-stderr-{run}.log"
        # Nothing of the test run's configuration: the child uses the embedded defaults.
        env = {k: v for k, v in os.environ.items() if not k.startswith("KIJKO_")}
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                [*_kijko_command(), "serve", "--port", str(port), "--data-dir", str(self.data_dir), *extra],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        serve = Serve(process, f"http://127.0.0.1:{port}", stdout, stderr)
        self.started.append(serve)
        serve.wait_until_healthy()
        return serve

    def cleanup(self) -> None:
        for serve in self.started:
            if serve.process.poll() is None:
                serve.process.kill()
                serve.process.wait()
        for process in postgres_processes(self.data_dir):
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        for serve in self.started:
            serve.stdout.unlink(missing_ok=True)
            serve.stderr.unlink(missing_ok=True)


@pytest.fixture
def servers() -> Iterator[Servers]:
    root = Path(tempfile.mkdtemp(prefix="kijko-serve-"))
    root.chmod(0o755)  # as root, PostgreSQL runs as its own system user and must get in
    manager = Servers(root / "data")
    try:
        yield manager
    finally:
        manager.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def sign_up(base_url: str, email: str = "ada@example.com") -> dict[str, Any]:
    response = httpx.post(
        base_url + "/api/v1/auth/signup",
        json={"email": email, "password": "correct horse battery", "first_name": "Ada", "last_name": "Lovelace"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def me(base_url: str, access_token: str) -> httpx.Response:
    return httpx.get(
        base_url + "/api/v1/auth/me",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=10,
    )


def test_serve_on_embedded_postgres_end_to_end_then_ctrl_c(servers: Servers) -> None:
    serve = servers.start()
    assert postgres_processes(servers.data_dir), "runs on a PostgreSQL in its data dir"

    health = httpx.get(serve.base_url + "/health", headers={"X-Request-ID": "probe-1"}, timeout=5)
    assert health.json()["status"] == "ok"
    assert health.headers["X-Request-ID"] == "probe-1"

    tokens = sign_up(serve.base_url)
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    created = httpx.post(
        serve.base_url + "/api/v1/projects",
        json={"name": "Over the wire", "type": "repository"},
        headers=auth,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    listing = httpx.get(serve.base_url + "/api/v1/projects", headers=auth, timeout=10)
    assert listing.status_code == 200
    body = listing.json()
    assert body["total"] == 1
    assert [project["name"] for project in body["data"]] == ["Over the wire"]

    assert serve.interrupt() == 0, serve.output()
    assert postgres_processes(servers.data_dir) == [], "Ctrl-C stopped the embedded PostgreSQL"

    events = [json.loads(line) for line in serve.lines()]  # every line is JSON, or this fails
    serving = next(event for event in events if event.get("event") == "serving")
    assert serving["api"] == serve.base_url + "/api/v1"
    assert serving["docs"] == serve.base_url + "/docs"
    requests = [event for event in events if event.get("event") == "request"]
    assert {(r["method"], r["path"], r["status"]) for r in requests} >= {
        ("GET", "/health", 200),
        ("POST", "/api/v1/auth/signup", 201),
        ("POST", "/api/v1/projects", 201),
        ("GET", "/api/v1/projects", 200),
    }
    assert all(r.get("request_id") for r in requests)
    assert any(r["request_id"] == "probe-1" for r in requests)
    assert events[-1]["event"] == "stopped"
    assert "Traceback" not in serve.stderr.read_text()
    output = serve.output()
    assert tokens["access_token"] not in output and "correct horse battery" not in output


def test_serve_starts_again_after_kill_9_and_keeps_its_keys(servers: Servers) -> None:
    first = servers.start()
    tokens = sign_up(first.base_url)
    assert me(first.base_url, tokens["access_token"]).status_code == 200

    # kill -9 of serve alone: its PostgreSQL is left behind, orphaned, and must be adopted.
    # Same port: without KIJKO_PUBLIC_URL the issuer of the tokens is the served URL.
    port = int(first.base_url.rsplit(":", 1)[1])
    first.process.kill()
    first.process.wait()
    assert postgres_processes(servers.data_dir), "postgres outlived the killed serve"
    second = servers.start(port)
    profile = me(second.base_url, tokens["access_token"])
    assert profile.status_code == 200, profile.text
    assert profile.json()["email"] == "ada@example.com"

    # kill -9 of everything: a stale postmaster.pid is all that is left.
    second.process.kill()
    second.process.wait()
    for process in postgres_processes(servers.data_dir):
        process.kill()
    psutil.wait_procs(postgres_processes(servers.data_dir), timeout=10)
    assert (servers.data_dir / "postgres" / "postmaster.pid").exists()
    third = servers.start(port)
    assert me(third.base_url, tokens["access_token"]).status_code == 200
    login = httpx.post(
        third.base_url + "/api/v1/auth/login",
        json={"email": "ada@example.com", "password": "correct horse battery"},
        timeout=30,
    )
    assert login.status_code == 200, login.text

    assert third.interrupt() == 0, third.output()
    assert postgres_processes(servers.data_dir) == []


def serving_line(process: subprocess.Popen[bytes], stdout: Path) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for line in stdout.read_text().splitlines():
            event: dict[str, Any] = json.loads(line)
            if event.get("event") == "serving":
                return event
        if process.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"kijko serve did not announce itself:\n{stdout.read_text()}")


def test_port_0_announces_and_issues_tokens_for_the_real_port(servers: Servers) -> None:
    stdout = servers.data_dir.parent / "port0-stdout.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIJKO_")}
    with stdout.open("wb") as out:
        process = subprocess.Popen(
            [*_kijko_command(), "serve", "--port", "0", "--data-dir", str(servers.data_dir), "--log-level", "info"],
            stdout=out,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    serve = Serve(process, "", stdout, stdout)
    servers.started.append(serve)
    serving = serving_line(process, stdout)
    base = serving["api"].removesuffix("/api/v1")
    assert serving["issuer"] == base
    assert not base.endswith(":0") and int(base.rsplit(":", 1)[1]) > 0
    serve.base_url = base

    discovery = httpx.get(base + "/.well-known/openid-configuration", timeout=10).json()
    assert discovery["issuer"] == base
    assert discovery["jwks_uri"] == base + "/.well-known/jwks.json"
    tokens = sign_up(base)
    payload = tokens["access_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["iss"] == base
    assert me(base, tokens["access_token"]).status_code == 200

    # A request uvicorn cannot parse is logged by uvicorn itself: as a JSON line too.
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        raw.recv(1024)

    assert serve.interrupt() == 0
    _, stderr = process.communicate(timeout=5)
    events = [json.loads(line) for line in serve.lines()]  # every line is JSON
    assert any(e.get("logger") == "uvicorn.error" and e["event"] == "Invalid HTTP request received." for e in events)
    assert events[-1]["event"] == "stopped"
    assert b"Traceback" not in stderr


def run_serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_kijko_command(), "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_operator_errors_are_one_line_and_a_documented_exit_code(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIJKO_")}

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve("--port", str(port), "--data-dir", str(tmp_path / "a"), env=env)
    assert result.returncode == 5, result
    assert result.stderr == (
        f"error: cannot listen on 127.0.0.1:{port}: address already in use (set KIJKO_PORT or --port)\n"
    )

    closed = free_port()
    unreachable = f"postgresql://kijko:hunter2-secret@127.0.0.1:{closed}/kijko"
    result = run_serve(
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "b"),
        env={
            **env,
            "KIJKO_DATABASE_URL": unreachable,
            "KIJKO_SYSTEM_DATABASE_URL": unreachable,
            "KIJKO_MIGRATION_DATABASE_URL": unreachable,
        },
    )
    assert result.returncode == 4, result
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: database unreachable (127.0.0.1:{closed}/kijko): ")
    assert "hunter2" not in result.stderr + result.stdout

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_serve("--port", "0", "--data-dir", str(blocker / "data"), env=env)
    assert result.returncode == 6, result
    assert result.stderr == (
        f"error: data directory not writable: {blocker / 'data'}: Not a directory (set KIJKO_DATA_DIR or --data-dir)\n"
    )


def test_log_level_flag_quiets_the_info_lines(servers: Servers) -> None:
    serve = servers.start(None, "--log-level", "warning")
    assert httpx.get(serve.base_url + "/health", timeout=5).status_code == 200
    assert httpx.get(serve.base_url + "/nowhere", timeout=5).status_code == 404
    assert serve.interrupt() == 0, serve.output()
    assert serve.lines() == [], serve.output()  # no "serving", access or "stopped" line


def test_ctrl_c_while_starting_stops_cleanly_without_serving(servers: Servers) -> None:
    stdout = servers.data_dir.parent / "early-stdout.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIJKO_")}
    with stdout.open("wb") as out:
        process = subprocess.Popen(
            [*_kijko_command(), "serve", "--port", "0", "--data-dir", str(servers.data_dir)],
            stdout=out,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    servers.started.append(Serve(process, "", stdout, stdout))
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not postgres_processes(servers.data_dir) and time.monotonic() < deadline:
        assert process.poll() is None, stdout.read_text()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # the embedded PostgreSQL is starting
    assert process.wait(timeout=STOP_TIMEOUT_SECONDS) == 0
    assert process.stderr is not None and b"Traceback" not in process.stderr.read()
    events = [json.loads(line) for line in stdout.read_text().splitlines()]
    assert [e["event"] for e in events] == ["stopped"]
    psutil.wait_procs(postgres_processes(servers.data_dir), timeout=10)
    assert postgres_processes(servers.data_dir) == [], "nothing of the start-up is left running"
