"""The data directory of embedded mode: generated secrets (0600 files) and the database files."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


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
