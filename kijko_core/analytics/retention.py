"""The sweeper's retention of analytics events (``KIJKO_ANALYTICS_RETENTION_DAYS``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kijko_core.analytics import store
from kijko_core.db.session import system_session
from kijko_core.jobs import sweep_step

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

#: Rows deleted per statement, and statements per tick: bounded, so one tick never holds long
#: locks; a backlog (retention shortened) goes down by this much every tick.
BATCH = 5000
BATCHES_PER_TICK = 4


@sweep_step("analytics")
async def sweep_analytics(kijko: Kijko) -> int:
    """Delete events received more than the retention ago; returns how many."""
    deleted = 0
    for _ in range(BATCHES_PER_TICK):
        async with system_session(kijko.system_db) as db:
            count = await store.delete_expired(db, retention_days=kijko.settings.analytics_retention_days, limit=BATCH)
        deleted += count
        if count < BATCH:
            break
    return deleted
