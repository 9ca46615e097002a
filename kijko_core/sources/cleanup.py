"""The sweeper's clean-up of uploaded files (docs/providers.md#uploads-and-storage).

A file uploaded without a project is nobody's source: it is kept
``KIJKO_UPLOAD_UNATTACHED_HOURS`` and then deleted. Bytes whose row is gone — the project or
the organization was deleted, an upload failed between storing and recording — are removed
from the storage port once they are older than ``STRAY_AFTER_SECONDS``: an upload in flight
stores its bytes before its row commits, and must not lose them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kijko_core.db.session import system_session
from kijko_core.jobs import sweep_step

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

STRAY_AFTER_SECONDS = 3600
#: Rows and keys handled per tick; the next tick takes the rest.
BATCH = 1000
#: Per storage: the last key of the previous tick's full page. Each tick looks at the next
#: page of old keys, so strays behind more than a page of live files are reached too (a tick
#: that always looked at the first page would see the same live files forever).
_cursors: dict[int, str] = {}

_DELETE_UNATTACHED = """
DELETE FROM kijko.uploaded_files WHERE id IN (
    SELECT id FROM kijko.uploaded_files
    WHERE project_id IS NULL AND created_at < now() - make_interval(hours => $1)
    LIMIT $2
)
"""
_KNOWN_KEYS = "SELECT storage_key FROM kijko.uploaded_files WHERE storage_key = ANY($1)"


@sweep_step("uploads")
async def sweep_uploads(kijko: Kijko, batch: int = BATCH) -> int:
    """Delete unattached uploads past their time, then stored bytes no row names (one page of
    ``batch`` old keys per call); returns how many stored files were removed."""
    storage = kijko.storage
    if storage is None:
        return 0
    async with system_session(kijko.system_db) as db:
        await db.execute(_DELETE_UNATTACHED, kijko.settings.upload_unattached_hours, batch)
    after = _cursors.pop(id(storage), None)
    stale = await storage.stale_keys(older_than_seconds=STRAY_AFTER_SECONDS, limit=batch, after=after)
    if len(stale) == batch:
        _cursors[id(storage)] = stale[-1]  # a short page was the last: the next tick starts over
    if not stale:
        return 0
    async with system_session(kijko.system_db, readonly=True) as db:
        known = {row[0] for row in await db.fetch(_KNOWN_KEYS, stale)}
    strays = [key for key in stale if key not in known]
    for key in strays:
        await storage.delete(key)
    return len(strays)
