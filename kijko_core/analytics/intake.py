"""The intake's buffer: accepted events wait in memory and are written in bulk (decision 0125).

The request only checks the events and appends them here, so it never waits on the database.
A task of each API process writes what waits every ``KIJKO_ANALYTICS_FLUSH_SECONDS``, or at
once when ``FLUSH_AT`` events wait, in one statement per ``WRITE_BATCH``; stopping writes the
rest. The buffer is bounded (``KIJKO_ANALYTICS_BUFFER_MAX_EVENTS``): beyond it new events are
dropped and counted. A failed write is tried once more on the next tick, then dropped and
counted: analytics must never grow memory without bound nor block the API.

What is lost, knowingly: what waits in a process that is killed (at most a flush interval's
events; a graceful stop writes them).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from dataclasses import dataclass

from databases import Database

from kijko_core.analytics import store
from kijko_core.analytics.events import Event
from kijko_core.auth.principal import TokenIdentity
from kijko_core.db.session import system_session
from kijko_core.logging import get_logger

log = get_logger("kijko.analytics")

#: Waiting events that make the writer go at once instead of at its next tick.
FLUSH_AT = 500
#: Rows per INSERT statement.
WRITE_BATCH = 2000


@dataclass(slots=True)
class _Pending:
    event: Event
    who: TokenIdentity | None
    failed: bool = False


@dataclass(frozen=True, slots=True)
class Offered:
    accepted: int
    dropped: int


class EventBuffer:
    """One process's accepted events on their way to the database."""

    def __init__(self, system_db: Database, *, capacity: int, flush_seconds: float) -> None:
        self.system_db = system_db
        self.capacity = capacity
        self.flush_seconds = flush_seconds
        self._waiting: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: Counters since start: written rows, events dropped (buffer full or a write failed
        #: twice), and writes that failed.
        self.written = 0
        self.dropped = 0
        self.failed_writes = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def offer(self, events: list[Event], who: TokenIdentity | None) -> Offered:
        """Take what fits; never waits. Returns how many were taken and how many dropped."""
        room = max(self.capacity - len(self._waiting), 0)
        taken = events[:room]
        self._waiting.extend(_Pending(event, who) for event in taken)
        dropped = len(events) - len(taken)
        if dropped:
            self.dropped += dropped
            log.warning("analytics_dropped", reason="buffer_full", count=dropped)
        if len(self._waiting) >= FLUSH_AT:
            self._wake.set()
        return Offered(len(taken), dropped)

    async def flush(self) -> int:
        """Write everything waiting now; returns how many rows were written."""
        written = 0
        async with self._lock:
            while self._waiting:
                batch = [self._waiting.popleft() for _ in range(min(WRITE_BATCH, len(self._waiting)))]
                try:
                    async with system_session(self.system_db) as db:
                        count = await store.write(db, [(p.event, p.who) for p in batch])
                except Exception:
                    self.failed_writes += 1
                    log.exception("analytics_write_failed", events=len(batch))
                    self._give_back(batch)
                    break  # the next tick tries again
                written += count
                self.written += count
        return written

    def _give_back(self, batch: list[_Pending]) -> None:
        """A failed batch waits for one more try (in front, if it fits); a second failure, or
        no room, drops it."""
        retry = [p for p in batch if not p.failed]
        lost = len(batch) - len(retry)
        room = max(self.capacity - len(self._waiting), 0)
        lost += max(len(retry) - room, 0)
        retry = retry[:room]
        for pending in retry:
            pending.failed = True
        self._waiting.extendleft(reversed(retry))
        if lost:
            self.dropped += lost
            log.warning("analytics_dropped", reason="write_failed", count=lost)

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
            self._wake.clear()
            await self.flush()

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            # A context of its own: started from a request, it must not carry that request's
            # log context (request id, user) into every later write.
            self._task = asyncio.create_task(self._run(), name="analytics-flush", context=contextvars.Context())

    async def stop(self) -> None:
        """Stop the periodic writer and write what is left (a graceful shutdown loses none).
        The writer is asked to stop, not cancelled: a cancelled write would lose its batch."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            await self._task
            self._task = None
        await self.flush()
