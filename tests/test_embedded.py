"""Recovering an embedded data directory after ``kill -9`` (the stale-file half; the whole
restart is in test_serve.py)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from kijko_core.db.embedded import clear_stale_pid_file


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
