"""Small local servers for the egress tests: a plain HTTP server with a few misbehaving
routes, and a git server (dumb HTTP over a bare repository, the way any static web server
serves one after ``git update-server-info``). Both bind 127.0.0.1 on a free port and run in
a background thread."""

from __future__ import annotations

import gzip
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


class _Handler(BaseHTTPRequestHandler):
    server: _EgressServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet in test output
        pass

    def _send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        if "Content_Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        self.server.hosts_seen.append(self.headers.get("Host", ""))
        if parts.path == "/ok":
            self._send(200, b"hello from " + self.headers.get("Host", "").encode())
        elif parts.path == "/redirect":
            self._send(302, b"", Location=query["to"][0])
        elif parts.path == "/big":
            self._send(200, b"x" * (2 * 1024 * 1024))
        elif parts.path == "/undeclared":
            # No Content-Length: the body runs until the connection closes (HTTP/1.0).
            self.send_response(200)
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"y" * 32 * 1024)
            self.close_connection = True
        elif parts.path == "/bomb":
            body = gzip.compress(b"\0" * (20 * 1024 * 1024))
            self._send(200, body, Content_Encoding="gzip")
        elif parts.path == "/gzip":
            self._send(200, gzip.compress(b"small and fine"), Content_Encoding="gzip")
        elif parts.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"z")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
        else:
            self._send(404, b"")


class _EgressServer(ThreadingHTTPServer):
    daemon_threads = True
    hosts_seen: list[str]


class EgressServer:
    def __init__(self) -> None:
        self.httpd = _EgressServer(("127.0.0.1", 0), _Handler)
        self.httpd.hosts_seen = []
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def hosts_seen(self) -> list[str]:
        return self.httpd.hosts_seen

    def start(self) -> EgressServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "HOME": str(cwd or Path("/tmp")),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return done.stdout


class GitServer:
    """Serves ``<root>/<owner>/<repo>.git`` bare repositories over dumb HTTP on 127.0.0.1.

    ``redirect_to`` makes every request answer 302 to that base (to test that git does not
    follow redirects)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.redirect_to: str | None = None
        self.requests: list[str] = []
        outer = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests.append(self.path)
                if outer.redirect_to is not None:
                    self.send_response(302)
                    self.send_header("Location", outer.redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                super().do_GET()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def add_repository(self, owner: str, name: str, files: dict[str, str] | None = None) -> str:
        """A bare repository with one commit on ``main``; returns its head commit id."""
        work = self.root / "_work" / owner / name
        work.mkdir(parents=True)
        _git("init", "-q", "-b", "main", cwd=work)
        for path, text in (files or {"README.md": f"# {name}\n"}).items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
        _git("add", "-A", cwd=work)
        _git("commit", "-q", "-m", "first", cwd=work)
        bare = self.root / owner / f"{name}.git"
        bare.parent.mkdir(parents=True, exist_ok=True)
        _git("clone", "-q", "--bare", str(work), str(bare))
        _git("update-server-info", cwd=bare)
        return _git("rev-parse", "HEAD", cwd=work).strip()

    def start(self) -> GitServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
