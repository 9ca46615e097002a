"""The data directory of embedded mode: generated secrets (0600 files) and the database files."""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from kijko_core.errors import KijkoError


class DataDirectory:
    def __init__(self, path: Path) -> None:
        self.path = path.expanduser().resolve()

    def ensure(self) -> DataDirectory:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "secrets").mkdir(mode=0o700, exist_ok=True)
        return self

    @property
    def postgres_dir(self) -> Path:
        return self.path / "postgres"

    def secret(self, name: str, generate: Callable[[], str] | None = None) -> str:
        """Read a generated secret, creating it (mode 0600, never overwritten) on first use."""
        file = self.path / "secrets" / name
        if not file.exists():
            value = (generate or (lambda: secrets.token_urlsafe(32)))()
            try:
                fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process won the race; read what it wrote
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(value)
        return file.read_text().strip()


class DataDirectoryInUse(KijkoError):
    """Another ``kijko serve`` is serving this data directory (and its embedded database)."""


@contextmanager
def claim_for_serving(path: Path) -> Iterator[None]:
    """Hold ``serve.lock`` in the data directory while serving: a second ``kijko serve`` on the
    same directory gets ``DataDirectoryInUse`` instead of sharing (or stopping) the first one's
    database. Other ``kijko`` commands do not claim it; they attach to the running database.
    The lock goes with the process, so a ``kill -9`` leaves nothing to clean up."""
    data = DataDirectory(path).ensure()
    lock = data.path / "serve.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise DataDirectoryInUse(
                f"another kijko serve{pid} is already serving the data directory {data.path}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)
