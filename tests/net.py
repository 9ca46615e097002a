"""Local network helpers the tests share."""

from __future__ import annotations

import socket
import threading
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


class Reply(Exception):
    """An answer a stand-in's handler raises from anywhere in its routing; ``body`` as the
    stand-in's ``_send`` encodes it."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}


class DispatchingHandler(BaseHTTPRequestHandler):
    """A stand-in's request handler: quiet in test output, GET and POST both go to ``_dispatch``."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        raise NotImplementedError
