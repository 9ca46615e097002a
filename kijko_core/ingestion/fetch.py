"""The repository_fetch phase: every source of a project put into the run's work directory.

A repository is cloned through the egress guard (``kijko_core.git.clone``: one shallow
branch, no tags, no submodules, no hooks, symbolic links checked out as plain files and then
skipped); uploaded files are copied from the storage port a chunk at a time; manual text
becomes one file. The caller owns ``workdir`` and removes it (always) when the run ends.
docs/ingestion-sources.md describes it, with the error codes.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import structlog

from kijko_core import git
from kijko_core.config import Settings
from kijko_core.egress import EgressGuard
from kijko_core.ingestion.files import (
    AUTHENTICATION_REQUIRED,
    BRANCH_NOT_FOUND,
    CLONE_TIMEOUT,
    REPOSITORY_NOT_FOUND,
    REPOSITORY_TOO_LARGE,
    REPOSITORY_UNREACHABLE,
    SOURCE_MISSING,
    TOO_MANY_FILES,
    IngestionFailed,
)
from kijko_core.sources.models import FileRecord
from kijko_core.storage import Storage

log = structlog.get_logger("kijko.ingestion")

UPLOADS: Final = "uploads"
MANUAL: Final = "manual"
#: The one file manual text becomes (its path in the index).
MANUAL_PATH: Final = "manual.md"


@dataclass(frozen=True)
class Checkout:
    """A source on disk. ``commit`` is the cloned commit (None for uploads and manual text);
    ``symlinks`` are paths git recorded as symbolic links or submodules, which ``plan``
    skips like links on disk."""

    source: str
    root: Path
    commit: str | None
    symlinks: frozenset[str] = field(default=frozenset())


def _slug(source: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", source).strip("-.")[:60] or "repository"


async def fetch_repository(
    settings: Settings,
    *,
    url: str,
    branch: str,
    source: str,
    workdir: Path,
    token: str | None = None,
    guard: EgressGuard | None = None,
    username: str = git.TOKEN_USERNAME,
) -> Checkout:
    """Clone ``branch`` of ``url`` (depth 1) into a new directory under ``workdir``; raises
    ``IngestionFailed`` (messages name ``source``, never the URL or the token). ``username``
    goes with ``token`` (the provider's, ``git.TOKEN_USERNAMES``)."""
    if not branch.strip() or branch.startswith("-"):
        raise IngestionFailed(BRANCH_NOT_FOUND, f"{source}: {branch!r} is not a branch name")
    parent = workdir / "repositories"
    await asyncio.to_thread(parent.mkdir, parents=True, exist_ok=True)
    home = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=f"{_slug(source)}-", dir=parent))
    destination = home / "tree"
    try:
        try:
            await git.clone(
                settings, url, destination, token=token, username=username, branch=branch, depth=1, guard=guard
            )
        except git.GitError as error:
            failure = _failure(error, source=source, branch=branch, token=token is not None)
            # str(error) and its stderr never hold the token (it reaches git through the environment).
            log.info("repository fetch failed", source=source, code=failure.code, reason=str(error))
            raise failure from None
        try:
            checked = await git.inspect(settings, destination)
        except git.GitTooLarge:
            raise IngestionFailed(TOO_MANY_FILES, f"{source} has too many files to be read") from None
        # Any other failure of git on our own clone is ours, not the user's: it propagates.
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, home, True)
        raise
    return Checkout(source=source, root=destination, commit=checked.commit, symlinks=checked.links)


def _failure(error: git.GitError, *, source: str, branch: str, token: bool) -> IngestionFailed:
    if isinstance(error, git.GitRefused):
        return IngestionFailed(
            REPOSITORY_UNREACHABLE,
            f"{source} cannot be fetched from this server: its address is not allowed "
            "(only https, and hosts on the public internet or allowed by the operator)",
        )
    if isinstance(error, git.GitTimeout):
        return IngestionFailed(CLONE_TIMEOUT, f"Fetching {source} took too long and was stopped; try again later")
    if isinstance(error, git.GitTooLarge):
        return IngestionFailed(
            REPOSITORY_TOO_LARGE,
            f"{source} is larger than this server accepts for one clone; "
            "ask the operator about KIJKO_GIT_CLONE_MAX_BYTES",
        )
    stderr = (error.stderr if isinstance(error, git.GitFailed) else "").lower()
    if "remote branch" in stderr and "not found" in stderr:
        return IngestionFailed(BRANCH_NOT_FOUND, f"{source} has no branch {branch!r}")
    summary = str(error)
    if summary == git.AUTHENTICATION_REQUIRED:
        if token:
            return IngestionFailed(
                AUTHENTICATION_REQUIRED,
                f"The git provider refused the connected account's access to {source}; "
                "reconnect your account or check its access to the repository",
            )
        return IngestionFailed(
            AUTHENTICATION_REQUIRED,
            f"{source} needs authentication: connect your account at its git provider",
        )
    if summary == "repository not found":
        return IngestionFailed(
            REPOSITORY_NOT_FOUND,
            f"{source} was not found (if it is private, connect an account that can read it)",
        )
    if "redirect" in summary:
        return IngestionFailed(
            REPOSITORY_UNREACHABLE, f"The server of {source} redirected elsewhere; use the repository's own URL"
        )
    return IngestionFailed(REPOSITORY_UNREACHABLE, f"{source} could not be fetched: the git server is not reachable")


def _upload_name(record: FileRecord, taken: set[str]) -> str:
    """The record's name as one plain file name (names were cleaned at upload; again here,
    since this one becomes a path), made unique with `` (2)``, `` (3)`` …"""
    name = unicodedata.normalize("NFC", record.name.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    if name in ("", ".", "..") or len(name.encode()) > 255:
        name = str(record.id)
    candidate, counter = name, 1
    stem, dot, extension = name.rpartition(".")
    while candidate.casefold() in taken:  # (case-insensitive: the file system may be)
        counter += 1
        candidate = f"{stem} ({counter}).{extension}" if dot and stem else f"{name} ({counter})"
    taken.add(candidate.casefold())
    return candidate


async def stage_uploads(storage: Storage, files: Sequence[FileRecord], workdir: Path) -> Checkout:
    """Copy each uploaded file's bytes (a chunk at a time) into ``workdir/uploads``, checking
    size and SHA-256 against the record. Raises ``IngestionFailed(SOURCE_MISSING)`` when the
    bytes are gone or no longer the uploaded ones."""
    root = workdir / UPLOADS
    await asyncio.to_thread(root.mkdir, parents=True, exist_ok=False)
    taken: set[str] = set()
    for record in files:
        target = root / _upload_name(record, taken)
        digest = hashlib.sha256()
        size = 0
        handle = await asyncio.to_thread(open, target, "xb")
        try:
            async for chunk in storage.stream(record.storage_key):
                digest.update(chunk)
                size += len(chunk)
                if size > record.size:
                    break
                await asyncio.to_thread(handle.write, chunk)
        except (FileNotFoundError, ValueError):
            raise IngestionFailed(
                SOURCE_MISSING, f"The uploaded file {record.name!r} is no longer stored; upload it again"
            ) from None
        finally:
            await asyncio.to_thread(handle.close)
        if size != record.size or digest.hexdigest() != record.sha256:
            raise IngestionFailed(
                SOURCE_MISSING, f"The stored bytes of {record.name!r} are not the uploaded ones; upload it again"
            )
    return Checkout(source=UPLOADS, root=root, commit=None)


async def stage_manual(text: str, workdir: Path) -> Checkout:
    """The project's manual text as one file, ``manual.md``, in ``workdir/manual``."""
    root = workdir / MANUAL

    def write() -> None:
        root.mkdir(parents=True, exist_ok=False)
        with open(root / MANUAL_PATH, "xb") as handle:
            handle.write(text.encode("utf-8", "replace"))  # (a lone surrogate cannot be stored)

    await asyncio.to_thread(write)
    return Checkout(source=MANUAL, root=root, commit=None)
