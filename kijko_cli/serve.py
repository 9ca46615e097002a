"""``kijko serve``: the CLI owns the process — its logging, its event loop and the runtime.

In one ``asyncio.run``: bind the socket (so ``--port 0`` is resolved before anything announces
a URL), start the runtime (``Kijko.start``), build the app on it (``create_app(kijko=…)``)
and run uvicorn on the bound socket; on Ctrl-C or SIGTERM uvicorn shuts down gracefully,
then the runtime stops (pools, HTTP client, embedded database). The app is an ordinary ASGI
app, wrapped by the Socket.IO server (kijko_server/realtime) before uvicorn gets it.

Start-up failures an operator can fix are one line on stderr and a documented exit code
(docs/operations.md), never a traceback: see ``ServeError`` and the ``EXIT_*`` codes.
"""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, AsyncExitStack, nullcontext
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import structlog
import uvicorn

from kijko_cli.common import DATABASE_UNREACHABLE, EXIT_DATABASE_UNREACHABLE, EXIT_FAILED
from kijko_cli.worker import jobs_in_serve
from kijko_core.config import Settings
from kijko_core.data_dir import DataDirectory, claim_for_serving
from kijko_core.db.migrate import MigrationError
from kijko_core.errors import ConfigurationError, KijkoError
from kijko_core.logging import configure_logging
from kijko_core.runtime import Kijko
from kijko_server.app import create_app, freeze_start_up_heap
from kijko_server.realtime import with_realtime

#: Exit codes of ``kijko serve`` (documented in docs/operations.md; 2 and 3 are shared with
#: the other commands: configuration error, schema behind).
EXIT_STARTUP_FAILED = EXIT_FAILED
EXIT_ADDRESS_UNAVAILABLE = 5
EXIT_DATA_DIR_UNWRITABLE = 6


class ServeError(Exception):
    """A start-up failure that is the operator's to fix: one line, one exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def run_server(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    log = structlog.get_logger("kijko.serve")
    check_data_dir(settings)
    with serving_claim(settings):
        _run(settings, log)


def _run(settings: Settings, log: Any) -> None:
    sock = bind(settings.host, settings.port)
    # The real port (``--port 0``) goes into the settings, so the token issuer and the
    # discovery URLs name the address that actually answers.
    settings = settings.model_copy(update={"port": sock.getsockname()[1]})
    stop = _Stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        started = asyncio.run(_serve(settings, sock, stop))
    except asyncio.CancelledError:
        started = True  # a second Ctrl-C during start-up: given up on request
    except (ServeError, ConfigurationError, KijkoError, MigrationError):
        raise  # the operator's to fix: one line each (kijko_cli.main)
    except Exception as error:
        # Unexpected: the traceback goes to the log as JSON, the terminal gets one line.
        log.exception("start_failed")
        raise ServeError(f"failed to start: {type(error).__name__} (details in the log)", EXIT_STARTUP_FAILED) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if not started:
        raise ServeError("the application failed to start (see the log above)", EXIT_STARTUP_FAILED)
    log.info("stopped")


async def _serve(settings: Settings, sock: socket.socket, stop: _Stop) -> bool:
    stop.arm(asyncio.current_task())
    kijko = await start_runtime(settings)
    jobs = AsyncExitStack()
    try:
        app = create_app(kijko=kijko)
        freeze_start_up_heap()
        host, port = sock.getsockname()[:2]
        base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"  # as bound

        @app.before_serving
        async def announce() -> None:
            structlog.get_logger("kijko.serve").info(
                "serving",
                api=f"{base}/api/v1",
                docs=f"{base}/docs",
                mode=settings.mode,
                issuer=settings.issuer,
            )

        # Socket.IO at /api/v1/socket.io in front of the app (docs/realtime.md).
        server = uvicorn.Server(uvicorn_config(with_realtime(app), settings))
        stop.server = server
        if stop.requested:  # Ctrl-C while starting: stop cleanly instead of serving
            return True
        # A worker in this loop on the embedded defaults, else huey's doorbell (docs/jobs.md).
        await jobs.enter_async_context(jobs_in_serve(kijko))
        await server.serve(sockets=[sock])
        return server.started
    finally:
        stop.disarm()  # nothing interrupts the runtime's own stop
        try:
            await jobs.aclose()
        finally:
            await kijko.stop()


async def start_runtime(settings: Settings) -> Kijko:
    try:
        return await Kijko.start(settings)
    except DATABASE_UNREACHABLE as error:
        raise ServeError(
            f"database unreachable ({database_address(settings)}): {type(error).__name__}: {error}",
            EXIT_DATABASE_UNREACHABLE,
        ) from None


def uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    trusted = list(settings.trusted_proxies)
    return uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,  # our handlers (configure_logging): every line JSON
        access_log=False,  # the app writes its own access line, with the request id
        server_header=False,
        timeout_graceful_shutdown=10,
        # X-Forwarded-For / -Proto count only from KIJKO_TRUSTED_PROXIES (right-most untrusted
        # hop, the rule of kijko_server.ratelimits); uvicorn's default would trust 127.0.0.1.
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted,
    )


def serving_claim(settings: Settings) -> AbstractContextManager[None]:
    """One ``kijko serve`` per embedded data directory (decision 0030); claimed before binding,
    so a second serve says so whatever port it was given."""
    return claim_for_serving(settings.data_dir) if settings.embedded_database else nullcontext()


def check_data_dir(settings: Settings) -> None:
    """The data directory holds the embedded database and generated secrets: when it is used,
    it must be writable before anything starts."""
    if not settings.embedded_database and settings.encryption_keys is not None:
        return  # not used
    path = settings.data_dir
    try:
        directory = DataDirectory(path).ensure()
        with tempfile.TemporaryFile(dir=directory.path):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ServeError(
            f"data directory not writable: {path}: {reason} (set KIJKO_DATA_DIR or --data-dir)",
            EXIT_DATA_DIR_UNWRITABLE,
        ) from None


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        why = "address already in use" if error.errno == errno.EADDRINUSE else error.strerror
        raise ServeError(
            f"cannot listen on {host}:{port}: {why} (set KIJKO_PORT or --port)",
            EXIT_ADDRESS_UNAVAILABLE,
        ) from None
    return sock


def database_address(settings: Settings) -> str:
    """Where the database was looked for, without credentials."""
    if settings.embedded_database:
        return f"embedded, in {settings.data_dir}"
    url = settings.migration_database_url or settings.database_url
    parts = urlsplit(url.get_secret_value() if url else "")
    return f"{parts.hostname or 'local socket'}:{parts.port or 5432}{parts.path}"


class _Stop:
    """SIGINT/SIGTERM. While starting: let the start-up finish, then stop without serving
    (cancelling it half-way could leave a starting PostgreSQL behind); a second signal cancels
    it anyway. While uvicorn runs: its graceful shutdown (a second Ctrl-C forces it). Installed
    for the whole run so that neither asyncio's nor uvicorn's re-raised signal interrupts the
    runtime's own ``stop``."""

    def __init__(self) -> None:
        self.server: uvicorn.Server | None = None
        self.requested = False
        self._cancel: Callable[[], object] | None = None

    def arm(self, task: asyncio.Task[Any] | None) -> None:
        loop = asyncio.get_running_loop()
        if task is not None:
            self._cancel = lambda: loop.call_soon_threadsafe(task.cancel)

    def disarm(self) -> None:
        self.server = None
        self._cancel = None

    def __call__(self, sig: int, frame: FrameType | None) -> None:
        if self.server is not None:
            self.server.handle_exit(sig, frame)
        elif not self.requested:
            self.requested = True
        elif self._cancel is not None:
            self._cancel()
            self._cancel = None
