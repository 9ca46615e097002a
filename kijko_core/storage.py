"""The storage port: where uploaded files' bytes live, by key.

The database keeps what a file is (name, size, type, owner, project); the port keeps its bytes
under an opaque key the server generates (never a name a user chose). The default
implementation is a directory (``KIJKO_STORAGE_DIR``, else ``files`` in the data dir); an
object store can implement the same three methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Protocol

#: Keys are ours: ``<org id>/<random>``; anything else is refused before it meets a path.
_KEY = re.compile(r"^[0-9a-f-]{36}/[A-Za-z0-9_-]{16,64}$")
_CHUNK = 1024 * 1024


class Storage(Protocol):
    async def put(self, key: str, source: IO[bytes]) -> None:
        """Store ``source`` (read from its current position to the end) under ``key``."""

    async def read(self, key: str) -> bytes: ...

    def stream(self, key: str) -> AsyncIterator[bytes]:
        """The bytes under ``key``, a chunk (at most 1 MiB) at a time, never the whole file in
        memory; raises ``FileNotFoundError`` when the key is missing."""

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""

    async def stale_keys(self, *, older_than_seconds: float, limit: int, after: str | None = None) -> list[str]:
        """Up to ``limit`` keys stored more than ``older_than_seconds`` ago, in key order and
        after ``after`` when given (the sweeper removes those no row names, a page a tick)."""


def new_key(org_id: object) -> str:
    """A fresh key for a file of ``org_id``: the organization as a prefix (an operator can
    find or delete one tenant's files), and 192 random bits."""
    return f"{org_id}/{secrets.token_urlsafe(24)}"


class DirectoryStorage:
    """Files in a directory: ``<root>/<org id>/<random>``, written to a temporary name and
    renamed, so a reader never sees half a file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError("not a storage key")
        return self.root / key

    async def put(self, key: str, source: IO[bytes]) -> None:
        await asyncio.to_thread(self._put, self._path(key), source)

    @staticmethod
    def _put(path: Path, source: IO[bytes]) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.part")
        try:
            with open(temporary, "xb") as target:
                while chunk := source.read(_CHUNK):
                    target.write(chunk)
                target.flush()
                os.fsync(target.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise

    async def read(self, key: str) -> bytes:
        return await asyncio.to_thread(self._path(key).read_bytes)

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(open, self._path(key), "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, _CHUNK):
                yield chunk
        finally:
            handle.close()

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self._path(key).unlink)

    async def stale_keys(self, *, older_than_seconds: float, limit: int, after: str | None = None) -> list[str]:
        return await asyncio.to_thread(self._stale_keys, time.time() - older_than_seconds, limit, after)

    def _stale_keys(self, before: float, limit: int, after: str | None = None) -> list[str]:
        found: list[str] = []
        # Sorted (folders are fixed-length org ids, so "folder/name" sorts as the pair): a
        # caller pages through every key with ``after``, whatever the directory order.
        for folder in sorted(os.scandir(self.root), key=lambda entry: entry.name):
            if not folder.is_dir(follow_symlinks=False):
                continue
            if after is not None and folder.name < after.partition("/")[0]:
                continue
            for entry in sorted(os.scandir(folder.path), key=lambda entry: entry.name):
                key = f"{folder.name}/{entry.name}"
                if after is not None and key <= after:
                    continue
                # Temporary ``.part`` names never match a key: a write in progress is skipped.
                if _KEY.fullmatch(key) and entry.is_file(follow_symlinks=False):
                    if entry.stat(follow_symlinks=False).st_mtime < before:
                        found.append(key)
                        if len(found) >= limit:
                            return found
        return found


def make_storage(root: Path) -> DirectoryStorage:
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return DirectoryStorage(root)
