"""The npm ``socket.io-client``, run by Node, for the realtime tests and the fan-out bench.

``tests/realtime_clients/client.mjs`` is the client (its header documents the options, the JSON
lines it prints and the commands it reads); this module installs its package once and drives it::

    async with await NodeClients.start(url=base, path="/api/v1/socket.io",
                                       token=token, project_id=str(pid)) as clients:
        await clients.wait_for(lambda e: e.event == "connect")
        hello = await clients.wait_for(lambda e: e.event == "progress_update", within=10)
        await clients.send({"emit": "reauth", "data": {"token": other}})

**Install cache.** ``npm ci`` runs once per lock file into
``$KIJKO_TEST_NODE_CACHE`` (default ``$XDG_CACHE_HOME/kijko-tests``, else
``~/.cache/kijko-tests``) ``/node-<first 16 hex of the lock's sha256>``; later runs, and
CI on the same machine, reuse it. Changing ``package-lock.json`` installs a fresh directory; old
ones can be deleted at will. Without ``node`` or ``npm`` on PATH the callers are skipped (the
reason names the missing program); a failing ``npm ci`` is an error, never a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

PACKAGE = Path(__file__).parent / "realtime_clients"
CLIENT = PACKAGE / "client.mjs"


def missing_programs() -> list[str]:
    """The programs the harness needs that are not on PATH."""
    return [name for name in ("node", "npm") if shutil.which(name) is None]


def cache_root() -> Path:
    explicit = os.environ.get("KIJKO_TEST_NODE_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "kijko-tests"


def install_dir() -> Path:
    lock = (PACKAGE / "package-lock.json").read_bytes()
    return cache_root() / f"node-{hashlib.sha256(lock).hexdigest()[:16]}"


def install() -> Path:
    """The directory holding client.mjs and its node_modules, installed with ``npm ci`` on first
    use. Built in a temporary sibling and renamed into place, so concurrent runs never see half
    an install."""
    target = install_dir()
    if (target / "node_modules" / "socket.io-client" / "package.json").is_file():
        _place_client(target)  # the script may change without the lock
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(PACKAGE / name, staging / name)
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"npm ci failed in {staging}:\n{result.stdout}\n{result.stderr}")
        try:
            staging.rename(target)
        except OSError:  # another run installed it first
            if not (target / "node_modules").is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _place_client(target)
    return target


def _place_client(target: Path) -> None:
    """Copy client.mjs beside the node_modules it imports (Node resolves imports from the
    script's directory), atomically: another run may be starting it."""
    fd, temporary = tempfile.mkstemp(prefix=".client.", suffix=".mjs", dir=target)
    os.close(fd)
    shutil.copyfile(CLIENT, temporary)
    os.replace(temporary, target / "client.mjs")


_installed: Path | None = None


def require_node() -> Path:
    """Install (once per process) and return the client directory; skip the calling test when
    Node or npm is absent."""
    global _installed
    missing = missing_programs()
    if missing:
        import pytest  # here, so that the benches can use this module without pytest

        pytest.skip(f"the npm socket.io-client tests need {' and '.join(missing)} on PATH")
    if _installed is None:
        _installed = install()
    return _installed


@dataclass(frozen=True)
class Event:
    """One line the client printed."""

    event: str
    data: Any
    t: float  # epoch milliseconds at which the client saw it
    client: int | None  # which of the process's connections (None: the process itself)


class NodeClients:
    """One Node process holding ``count`` socket.io-client connections."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[Event] = []
        self._taken: set[int] = set()
        self._changed = asyncio.Condition()
        self._stderr = bytearray()
        self._reader = asyncio.create_task(self._read())
        self._errors = asyncio.create_task(self._read_stderr())

    @classmethod
    async def start(
        cls,
        *,
        url: str,
        path: str = "/socket.io",
        token: str | None = None,
        project_id: str | None = None,
        count: int = 1,
        **options: Any,
    ) -> Self:
        """Start the client process; the options (including the token) go over stdin.
        Extra keyword arguments are client.mjs options (auth, query, transports, reconnection,
        quiet, …)."""
        directory = require_node()
        config: dict[str, Any] = {"url": url, "path": path, "count": count, **options}
        if token is not None:
            config["token"] = token
        if project_id is not None:
            config["projectId"] = project_id
        process = await asyncio.create_subprocess_exec(
            "node",
            str(directory / "client.mjs"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,  # a fan-out report is one long line
        )
        clients = cls(process)
        await clients.send(config)
        return clients

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            raw = json.loads(line)
            event = Event(raw["event"], raw.get("data"), float(raw["t"]), raw.get("client"))
            async with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        async with self._changed:  # end of output: wake the waiters so they can fail
            self._changed.notify_all()

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self._stderr.extend(line)

    async def send(self, command: dict[str, Any]) -> None:
        """Write one command line (see client.mjs)."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()

    async def wait_for(self, predicate: Callable[[Event], bool], within: float = 10.0) -> Event:
        """The earliest event that matches and no earlier call returned (so waiting for
        "connect" and then for an event that came before it still finds that event; check
        order on ``events``). Fails with what was seen when ``within`` seconds pass or the
        process ends first."""
        deadline = time.monotonic() + within
        checked = 0
        async with self._changed:
            while True:
                for index in range(checked, len(self.events)):
                    if index not in self._taken and predicate(self.events[index]):
                        self._taken.add(index)
                        return self.events[index]
                checked = len(self.events)
                if self._reader.done():
                    raise AssertionError(f"the client exited; {self._describe()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching event within {within} s; {self._describe()}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)

    async def wait_event(self, name: str, within: float = 10.0, client: int | None = None) -> Event:
        """The next event called ``name`` (of connection ``client``, when given)."""
        return await self.wait_for(lambda e: e.event == name and (client is None or e.client == client), within)

    def _describe(self) -> str:
        seen = [(e.event, e.client, e.data) for e in self.events[-20:]]
        stderr = self._stderr.decode(errors="replace")[-2000:]
        return f"last events: {seen}; stderr: {stderr!r}"

    async def close(self, within: float = 10.0) -> int:
        """Disconnect every connection, wait for the process to end; its exit code."""
        if self.process.returncode is None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await self.send({"close": True})
            try:
                await asyncio.wait_for(self.process.wait(), within)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self._reader
        await self._errors
        assert self.process.returncode is not None
        return self.process.returncode

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
