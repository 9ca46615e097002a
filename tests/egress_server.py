"""Small local servers for the egress tests: a plain HTTP server with a few misbehaving
routes, and a git server (git's own smart-HTTP CGI, ``git http-backend``). Both bind 127.0.0.1 on a free port and run in
a background thread."""

from __future__ import annotations

import base64
import gzip
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.net import HttpStandIn


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


class EgressServer(HttpStandIn):
    """``tls``: serve https with that server context (``self.url`` still names 127.0.0.1)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        httpd = _EgressServer(("127.0.0.1", 0), _Handler)
        httpd.hosts_seen = []
        if tls is not None:
            httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
        super().__init__(httpd)
        self.hosts_seen: list[str] = httpd.hosts_seen
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"


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


class GitServer(HttpStandIn):
    """Serves ``<root>/<owner>/<repo>.git`` bare repositories over git's smart HTTP protocol
    (``git http-backend``, git's own CGI server, run per request) on 127.0.0.1.

    ``redirect_to`` makes every request answer 302 to that base (git must not follow it);
    ``require_token`` makes every request need HTTP basic auth with that password."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.redirect_to: str | None = None
        self.require_token: str | None = None
        self.delay = 0.0
        self.heads: dict[str, str] = {}  # "owner/name" -> head commit
        self.in_flight = 0
        self.most_in_flight = 0  # the most requests it served at once
        gauge = threading.Lock()
        self.requests: list[str] = []
        self.authorizations: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                # Counted around the delay only: a request's bookkeeping may overlap the next
                # request's, the delays of two git commands overlap only if both run.
                with gauge:
                    outer.in_flight += 1
                    outer.most_in_flight = max(outer.most_in_flight, outer.in_flight)
                time.sleep(outer.delay)
                with gauge:
                    outer.in_flight -= 1
                self._answer()

            def _answer(self) -> None:
                outer.requests.append(self.path)
                outer.authorizations.append(self.headers.get("Authorization", ""))
                if outer.redirect_to is not None:
                    self.send_response(302)
                    self.send_header("Location", outer.redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if outer.require_token is not None:
                    expected = "Basic " + base64.b64encode(f"x-access-token:{outer.require_token}".encode()).decode()
                    if self.headers.get("Authorization") != expected:
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="git"')
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                path, _, query = self.path.partition("?")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                env = {
                    "PATH": "/usr/bin:/bin:/usr/local/bin",
                    "GIT_PROJECT_ROOT": str(root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "GIT_CONFIG_NOSYSTEM": "1",
                    "HOME": str(root),
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_ADDR": "127.0.0.1",
                    "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                }
                if self.headers.get("Content-Encoding"):
                    env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
                done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
                head, _, payload = done.stdout.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        super().__init__(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
        self.url = f"http://127.0.0.1:{self.port}"

    def add_repository(
        self,
        owner: str,
        name: str,
        files: dict[str, str | bytes] | None = None,
        symlinks: dict[str, str] | None = None,
    ) -> str:
        """A bare repository with one commit on ``main``; returns its head commit id."""
        work = self.root / "_work" / owner / name
        work.mkdir(parents=True)
        _git("init", "-q", "-b", "main", cwd=work)
        for path, text in (files or {"README.md": f"# {name}\n"}).items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(text, bytes):
                (work / path).write_bytes(text)
            else:
                (work / path).write_text(text)
        for path, target in (symlinks or {}).items():
            (work / path).symlink_to(target)
        _git("add", "-A", cwd=work)
        _git("commit", "-q", "-m", "first", cwd=work)
        bare = self.root / owner / f"{name}.git"
        bare.parent.mkdir(parents=True, exist_ok=True)
        _git("clone", "-q", "--bare", str(work), str(bare))
        _git("update-server-info", cwd=bare)
        self.heads[f"{owner}/{name}"] = _git("rev-parse", "HEAD", cwd=work).strip()
        return self.heads[f"{owner}/{name}"]


def tls_pair(name: str, directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for ``name`` only, and a client context trusting
    the self-signed CA that issued it (real X.509, made with ``cryptography``)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "egress test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server, client
