"""The embedded server: recovering a data directory after ``kill -9`` (the stale-file half; the
whole restart is in test_serve.py), a private socket whatever the path, and Kijko's roles shut
out of the server's other databases."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from kijko_core.config import load_settings
from kijko_core.db.embedded import (
    ROOT_SERVER_USER,
    EmbeddedPostgres,
    binaries,
    clear_stale_pid_file,
)
from kijko_core.runtime import resolve_database


def _write_server_files(pgdata: Path, pid: int) -> tuple[Path, Path, Path]:
    pgdata.mkdir()
    pid_file = pgdata / "postmaster.pid"
    # The layout PostgreSQL writes: pid, data dir, start time, port, socket dir, host, shm, status.
    pid_file.write_text(f"{pid}\n{pgdata}\n1700000000\n5432\n{pgdata}\n\n  0 0\nready\n")
    lock = pgdata / ".s.PGSQL.5432.lock"
    lock.write_text(f"{pid}\n{pgdata}\n1700000000\n5432\n")
    socket = pgdata / ".s.PGSQL.5432"
    socket.write_text("")
    return pid_file, lock, socket


def test_files_of_a_killed_postmaster_not_yet_reaped_are_removed(tmp_path: Path) -> None:
    # A child we never wait for stays a zombie: kill(pid, 0) still succeeds, as it did for the
    # killed postmaster that made PostgreSQL refuse its socket lock file.
    zombie = subprocess.Popen(["true"])
    time.sleep(0.2)
    try:
        pid_file, lock, socket = _write_server_files(tmp_path / "pg", zombie.pid)
        clear_stale_pid_file(tmp_path / "pg", wait_seconds=1)
        assert not pid_file.exists() and not lock.exists() and not socket.exists()
    finally:
        zombie.wait()


def test_files_naming_a_pid_that_is_not_our_server_are_removed(tmp_path: Path) -> None:
    import os

    pid_file, lock, _ = _write_server_files(tmp_path / "pg", os.getpid())  # alive, not postgres
    clear_stale_pid_file(tmp_path / "pg", wait_seconds=1)
    assert not pid_file.exists() and not lock.exists()


def test_a_lock_of_another_server_is_left_alone(tmp_path: Path) -> None:
    zombie = subprocess.Popen(["true"])
    time.sleep(0.2)
    try:
        pid_file, lock, _ = _write_server_files(tmp_path / "pg", zombie.pid)
        lock.write_text("1\n/elsewhere\n")  # names another pid: not ours to remove
        clear_stale_pid_file(tmp_path / "pg", wait_seconds=1)
        assert not pid_file.exists() and lock.exists()
    finally:
        zombie.wait()


def _reachable(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)  # as root, PostgreSQL runs as its own system user and must get in
    return tmp_path


def _long_data_dir(tmp_path: Path) -> Path:
    root = tmp_path / ("d" * 60) / ("e" * 60)
    root.mkdir(parents=True)
    for directory in (_reachable(tmp_path) / ("d" * 60), root):
        directory.chmod(0o755)
    return root / "postgres"


@pytest.mark.slow
def test_a_path_too_long_for_a_socket_still_gets_a_private_socket_directory(tmp_path: Path) -> None:
    pgdata = _long_data_dir(tmp_path)
    assert len(str(pgdata / ".s.PGSQL.5432")) > 107
    server = EmbeddedPostgres(pgdata)
    server.start()
    try:
        socket_dir = Path(server.socket_dir)
        assert socket_dir != pgdata
        info = socket_dir.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700, oct(info.st_mode)
        owner = pwd.getpwnam(ROOT_SERVER_USER).pw_uid if os.geteuid() == 0 else os.geteuid()
        assert info.st_uid == owner
        assert (socket_dir / ".s.PGSQL.5432").is_socket()
        if os.geteuid() == 0:
            # The exploit: another local user connecting to the trusting socket as superuser.
            attempt = subprocess.run(
                [
                    str(binaries() / "psql"),
                    "-h",
                    str(socket_dir),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-Atc",
                    "SELECT 1",
                ],
                user="nobody",
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert attempt.returncode != 0 and "Permission denied" in attempt.stderr, attempt
    finally:
        server.stop()
    assert not socket_dir.exists(), "the private socket directory is removed with the server"


@pytest.mark.slow
async def test_kijkos_roles_reach_no_other_database_of_the_embedded_server(tmp_path: Path) -> None:
    settings = load_settings(data_dir=_reachable(tmp_path) / "data")
    urls, server = await resolve_database(settings)
    assert server is not None
    try:
        for url in (urls.app, urls.system):
            for other in ("postgres", "template1"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await asyncpg.connect(dsn_as(url, database=other))
            conn = await asyncpg.connect(url)
            try:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute("CREATE TEMP TABLE scratch (x int)")
            finally:
                await conn.close()
    finally:
        server.stop()


def dsn_as(url: str, *, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))
