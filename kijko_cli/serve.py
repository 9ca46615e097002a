"""``kijko serve``: uvicorn with our logging, a clean shutdown on Ctrl-C / SIGTERM."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import structlog
import uvicorn

from kijko_core.config import Settings
from kijko_core.db.migrate import MigrationError
from kijko_core.errors import ConfigurationError
from kijko_server.app import create_app

#: Start-up failures that are the operator's to fix: reported as lines, not as a traceback.
_OPERATOR_ERRORS = (ConfigurationError, MigrationError)


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def run_server(settings: Settings) -> None:
    # Bound before start-up so port 0 works and the announced URL is the real one.
    sock = _bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    log = structlog.get_logger("kijko.serve")
    app = create_app(settings)

    @app.before_serving
    async def announce() -> None:  # runs after the runtime (database, keys) is up
        log.info("serving", api=f"{base}/api/v1", docs=f"{base}/docs", mode=settings.mode)

    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", server_header=False,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    failed: list[Exception] = []
    app.before_serving_funcs[:] = [
        _reporting(func, failed, server) for func in app.before_serving_funcs
    ]
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the signal after its graceful shutdown; that is our exit
    finally:
        # A second Ctrl-C skips the lifespan shutdown; never leave the database running.
        kijko = getattr(app, "kijko", None)
        if kijko is not None and kijko.embedded is not None:
            kijko.embedded.stop()
    if failed:
        raise failed[0]
    log.info("stopped")


def _reporting(
    func: Callable[[], Awaitable[None]], failed: list[Exception], server: uvicorn.Server
) -> Callable[[], Awaitable[None]]:
    """Run a start-up hook; on an operator error, remember it and have uvicorn exit quietly
    (uvicorn and Quart would otherwise log it as a crash with a traceback)."""

    async def run() -> None:
        if failed:
            return
        try:
            await func()
        except _OPERATOR_ERRORS as error:
            failed.append(error)
            server.should_exit = True

    return run
