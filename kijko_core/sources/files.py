"""Uploaded files (docs/decisions/0067-uploads-sniffed-and-stored-by-key.md).

Names are reduced to a plain file name (no directories, no control characters); the stored
type is sniffed from the bytes (magic numbers through ``filetype``, else UTF-8 text), never
the type the client declared; the bytes go to the storage port under a key of our own. A file
uploaded with a project id becomes a source of that project and needs the right to edit it.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import unicodedata
import uuid
from dataclasses import dataclass
from typing import IO

import filetype

from kijko_core.billing import quotas
from kijko_core.billing.plans import plans_of
from kijko_core.config import Settings
from kijko_core.db.session import TenantSession
from kijko_core.errors import PayloadTooLarge, ValidationFailed
from kijko_core.permissions import PROJECTS, Action, authorize
from kijko_core.projects import service as projects
from kijko_core.projects.models import ProjectNotFound
from kijko_core.sources import repository
from kijko_core.sources.models import UploadedFile, UploadFailure, UploadResult
from kijko_core.storage import Storage, new_key

NAME_MAX = 255
_SNIFF_BYTES = 8192
_CHUNK = 1024 * 1024
#: Text formats told apart by their extension once the bytes are known to be text.
_TEXT_TYPES = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".json": "application/json",
    ".csv": "text/csv",
    ".html": "text/html",
    ".htm": "text/html",
    ".xml": "application/xml",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
}


@dataclass(frozen=True)
class IncomingFile:
    """One ``files`` part: the name the client gave and the bytes (a seekable stream)."""

    filename: str | None
    stream: IO[bytes]


def clean_name(raw: str | None) -> str | None:
    """The last path component of ``raw``, without control characters, NFC-normalised and at
    most 255 characters (the extension kept); None when nothing usable is left."""
    if not raw:
        return None
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C")
    name = name.strip().strip(".") if set(name.strip()) <= {"."} else name.strip()
    if not name:
        return None
    if len(name) > NAME_MAX:
        stem, dot, extension = name.rpartition(".")
        keep = extension[:20] if dot and stem else ""
        name = name[: NAME_MAX - len(keep) - (1 if keep else 0)] + (f".{keep}" if keep else "")
    return name


def sniff(head: bytes, name: str) -> str:
    """The media type of a file from its first bytes."""
    kind = filetype.guess(head)
    if kind is not None:
        return str(kind.mime)
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as error:
            # The sample may end inside a character: only a failure before its last 3 bytes counts.
            if error.start < len(head) - 3:
                return "application/octet-stream"
        suffix = "." + name.rpartition(".")[2].lower() if "." in name else ""
        return _TEXT_TYPES.get(suffix) or _plain_text(suffix)
    return "application/octet-stream"


def _plain_text(suffix: str) -> str:
    guessed = mimetypes.types_map.get(suffix, "")
    return guessed if guessed.startswith("text/") else "text/plain"


def _measure(stream: IO[bytes]) -> tuple[int, str, bytes]:
    """Size, SHA-256 and first bytes of ``stream``, which is left at its start."""
    stream.seek(0)
    digest = hashlib.sha256()
    head = stream.read(_SNIFF_BYTES)
    size = len(head)
    digest.update(head)
    while chunk := stream.read(_CHUNK):
        size += len(chunk)
        digest.update(chunk)
    stream.seek(0)
    return size, digest.hexdigest(), head


async def upload(
    db: TenantSession, storage: Storage, settings: Settings, incoming: list[IncomingFile], project_id: str | None
) -> UploadResult:
    if not incoming:
        raise ValidationFailed("files: at least one file is required", field="files")
    if len(incoming) > settings.upload_max_files:
        raise PayloadTooLarge(f"At most {settings.upload_max_files} files per request", field="files")
    target = None
    if project_id:
        try:
            wanted = uuid.UUID(project_id)
        except ValueError:
            raise ProjectNotFound() from None  # malformed: the same 404 as unknown
        project = await projects.get(db, wanted)
        authorize(db.principal, Action.EDIT, project, policy=PROJECTS)
        target = project.id
    else:
        authorize(db.principal, Action.CREATE, policy=PROJECTS)
    uploaded: list[UploadedFile] = []
    failures: list[UploadFailure] = []
    written: list[str] = []
    try:
        for part in incoming:
            name = clean_name(part.filename)
            if name is None:
                failures.append(UploadFailure(name=part.filename or "", error="The file has no usable name"))
                continue
            size, sha256, head = await asyncio.to_thread(_measure, part.stream)
            if size > settings.upload_max_file_bytes:
                failures.append(
                    UploadFailure(
                        name=name,
                        error=f"The file is larger than {settings.upload_max_file_bytes} bytes",
                        code=PayloadTooLarge.code,
                    )
                )
                continue
            # The plan's storage (decision 0151): 429 QUOTA_EXCEEDED, and nothing of the request stays.
            await quotas.check_storage(db, plans_of(settings), db.principal.org_id, size)
            key = new_key(db.principal.org_id)
            await storage.put(key, part.stream)
            written.append(key)
            record = await repository.insert_file(
                db,
                {
                    "id": uuid.uuid4(),
                    "project_id": target,
                    "name": name,
                    "size": size,
                    "content_type": sniff(head, name),
                    "sha256": sha256,
                    "storage_key": key,
                },
            )
            uploaded.append(record.uploaded())
    except BaseException:
        # Nothing of a failed request stays: its rows roll back, its bytes go here.
        for key in written:
            await storage.delete(key)
        raise
    return UploadResult(uploaded=uploaded, errors=failures)
