"""Local network helpers the tests share."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


def free_port() -> int:
    """A local port nothing listens on: for a server the test starts, or as an address that
    refuses connections (a service configured but down). Bound and released at once, so it is
    free now, not reserved."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HttpStandIn:
    """The plumbing of a local HTTP stand-in (a git host, Keycloak, an egress target): ``httpd``
    served on a daemon thread between ``start()`` and ``stop()``."""

    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        httpd.daemon_threads = True  # a request left open never keeps the test run alive
        self.httpd = httpd
        self.port = int(httpd.server_address[1])
        self._thread = threading.Thread(target=httpd.serve_forever, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_unless_hung_up(connection: socket.socket, seconds: float) -> bool:
    """Wait ``seconds`` on a stand-in's request; False as soon as the client closes ``connection``
    (a slow answer the client gave up on)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([connection], [], [], min(left, 0.05))
        if readable:
            try:
                if connection.recv(1, socket.MSG_PEEK) == b"":
                    return False
            except OSError:
                return False
    return True


@dataclass(kw_only=True)
class Script:
    """A scripted stand-in's state, shared with its handler threads under ``lock``: the answers
    a test queued, the requests recorded, how many clients hung up before their answer."""

    script: deque[Any] = field(default_factory=deque)
    requests: list[Any] = field(default_factory=list)
    aborted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class ScriptedStandIn(HttpStandIn):
    """A stand-in whose answers the test queues and whose requests it reads back (its
    ``httpd.state`` is a :class:`Script`)."""

    def __init__(self, httpd: ThreadingHTTPServer, state: Script) -> None:
        super().__init__(httpd)
        self._state = state

    def queue(self, *answers: Any) -> None:
        with self._state.lock:
            self._state.script.extend(answers)

    @property
    def requests(self) -> list[Any]:
        with self._state.lock:
            return list(self._state.requests)

    @property
    def aborted(self) -> int:
        with self._state.lock:
            return self._state.aborted

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        """Poll ``predicate(self)`` until true (for what happens on the server's thread)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.02)
        return bool(predicate(self))


class Reply(Exception):
    """An answer a stand-in's handler raises from anywhere in its routing; ``body`` as the
    stand-in's ``_send`` encodes it."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}


class QuietHandler(BaseHTTPRequestHandler):
    """A stand-in's request handler: keep-alive and no Nagle delay, as real APIs' servers
    answer, and quiet in test output."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    def read_json(self) -> tuple[bytes, Any]:
        """The request body's bytes, and its JSON (None when it is not JSON)."""
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            return raw, json.loads(raw)
        except ValueError:
            return raw, None


class DispatchingHandler(QuietHandler):
    """A stand-in's request handler whose GET and POST both go to ``_dispatch``."""

    protocol_version = "HTTP/1.0"  # as BaseHTTPRequestHandler: one request per connection
    disable_nagle_algorithm = False

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        raise NotImplementedError
