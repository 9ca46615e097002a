"""How a run tells the world: the progress record (``GET /progress``) and the events of room
``ingestion:<projectId>`` (contract §4.1), through ``kijko_core.events`` only.

- ``phase_started``, ``ingestion_complete`` and ``error`` go out at once;
- ``progress_update`` at most once per 500 ms per project (:class:`ProgressThrottle`): an update
  inside the window replaces the pending one, which goes out when the window ends — or at once
  before ``ingestion_complete`` or ``error``; a new phase starts a fresh window (the previous
  phase's pending update is dropped: ``phase_started`` says that phase is over);
- the progress record is written at every phase change and at least every 2 s while a run
  is running (:class:`Reporter`); the write names the states a live run has, so a run that
  was cancelled answers "no row" and the worker stops (that write *is* its cancellation check).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from kijko_core import events
from kijko_core.db.session import Session
from kijko_core.ingestion import repository
from kijko_core.ingestion.models import PHASES, IngestionMetrics, IngestionPhase
from kijko_core.logging import get_logger

log = get_logger("kijko.ingestion")

#: ``progress_update`` events of one project are at least this far apart (contract §4.1).
THROTTLE_SECONDS = 0.5
#: The progress record of a running run is never older than this (contract §2.2.5: polled
#: every 2 s by clients that lost their socket).
WRITE_EVERY_SECONDS = 2.0


def room(project_id: UUID) -> str:
    return f"ingestion:{project_id}"


def metrics_payload(metrics: IngestionMetrics) -> dict[str, int]:
    return metrics.model_dump(by_alias=True)


def progress_payload(
    project_id: UUID, phase: str, percent: float, message: str, metrics: IngestionMetrics
) -> dict[str, Any]:
    return {
        "projectId": str(project_id),
        "phase": phase,
        "progressPercent": _percent(percent),
        "message": message,
        "metrics": metrics_payload(metrics),
    }


def phase_started_payload(project_id: UUID, phase: IngestionPhase, message: str) -> dict[str, Any]:
    return {
        "projectId": str(project_id),
        "phase": phase,
        "message": message,
        "startTime": datetime.now(UTC).isoformat(),
        "totalPhases": len(PHASES),
        "currentPhaseIndex": PHASES.index(phase),
    }


def error_payload(
    project_id: UUID, phase: str, code: str, message: str, *, recoverable: bool, retry_count: int = 0
) -> dict[str, Any]:
    return {
        "projectId": str(project_id),
        "phase": phase,
        "errorCode": code,
        "errorMessage": message,
        "recoverable": recoverable,
        "retryCount": max(retry_count, 0),
    }


def complete_payload(
    project_id: UUID, seconds: float, metrics: IngestionMetrics, project: dict[str, Any]
) -> dict[str, Any]:
    return {
        "projectId": str(project_id),
        "success": True,
        "totalDurationSeconds": max(round(seconds, 3), 0.0),
        "finalMetrics": metrics_payload(metrics),
        "project": project,
    }


def _percent(value: float) -> float:
    if not math.isfinite(value):
        return 0.0
    return round(min(max(value, 0.0), 100.0), 2)


class ProgressThrottle:
    """The ``progress_update`` rate limit of one project in this process."""

    def __init__(self, project_id: UUID, interval: float = THROTTLE_SECONDS) -> None:
        self.room = room(project_id)
        self.interval = interval
        self._last = -math.inf
        self._pending: dict[str, Any] | None = None
        self._timer: asyncio.Task[None] | None = None

    async def offer(self, payload: dict[str, Any]) -> None:
        """Send now if the window allows, else keep it (the latest wins) for the window's end."""
        now = time.monotonic()
        if self._timer is None and now - self._last >= self.interval:
            self._last = now
            await events.send(room=self.room, event="progress_update", data=payload)
            return
        self._pending = payload
        if self._timer is None:
            self._timer = asyncio.create_task(self._later(self._last + self.interval - now))

    async def _later(self, delay: float) -> None:
        await asyncio.sleep(max(delay, 0.0))
        self._timer = None
        await self._send_pending()

    async def _send_pending(self) -> None:
        payload, self._pending = self._pending, None
        if payload is not None:
            self._last = time.monotonic()
            await events.send(room=self.room, event="progress_update", data=payload)

    async def flush(self) -> None:
        """Send the pending update now (before a phase change, a completion or an error)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._send_pending()

    def new_phase(self) -> None:
        """A fresh window: the phase's first update goes out at once. A pending update of the
        previous phase is dropped (``phase_started`` says that phase is over; sending it
        now would break the 500 ms spacing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending = None
        self._last = -math.inf


_THROTTLES: dict[UUID, ProgressThrottle] = {}


def throttle(project_id: UUID) -> ProgressThrottle:
    """The process's throttle of ``project_id`` (the worker's reporter and PUT /progress)."""
    found = _THROTTLES.get(project_id)
    if found is None:
        found = _THROTTLES[project_id] = ProgressThrottle(project_id)
    return found


async def finish_throttle(project_id: UUID) -> None:
    """Flush and forget the project's throttle (its run ended)."""
    found = _THROTTLES.pop(project_id, None)
    if found is not None:
        await found.flush()


class RunStopped(Exception):
    """The run is no longer active (cancelled, or finished by someone else): stop working."""


@dataclass
class Counters:
    """The run's metrics as the worker counts them (exact; see docs/ingestion.md)."""

    files_processed: int = 0
    total_files: int = 0
    tokens_processed: int = 0
    bytes_processed: int = 0
    chunks_created: int = 0
    errors_encountered: int = 0

    def metrics(self) -> IngestionMetrics:
        return IngestionMetrics(
            files_processed=self.files_processed,
            total_files=self.total_files,
            tokens_processed=self.tokens_processed,
            bytes_processed=self.bytes_processed,
            chunks_created=self.chunks_created,
            errors_encountered=self.errors_encountered,
        )


OpenSession = Callable[[], AbstractAsyncContextManager[Session]]


class Reporter:
    """The worker's side: phase, per-phase percent, message and counters of one run, written
    to the progress record and announced to the run's room."""

    def __init__(
        self,
        open_session: OpenSession,
        org_id: UUID,
        project_id: UUID,
        run_id: UUID,
        *,
        write_every: float = WRITE_EVERY_SECONDS,
    ) -> None:
        self.open_session = open_session
        self.org_id = org_id
        self.project_id = project_id
        self.run_id = run_id
        self.write_every = write_every
        self.counters = Counters()
        self.original_tokens: int | None = None
        self.phase: IngestionPhase = "repository_fetch"
        self.percent = 0.0
        self.message = ""
        self.stopped = False
        self.throttle = throttle(project_id)
        self._last_write = time.monotonic()
        self._write_lock = asyncio.Lock()

    async def write(self) -> None:
        """Write the record now; raises :class:`RunStopped` when the run is no longer active."""
        async with self._write_lock:
            async with self.open_session() as db:
                row = await repository.write_progress(
                    db,
                    self.org_id,
                    self.run_id,
                    phase=self.phase,
                    percent=_percent(self.percent),
                    message=self.message[:2000],
                    metrics=self.counters.metrics(),
                    original_tokens=self.original_tokens,
                )
            self._last_write = time.monotonic()
        if row is None:
            self.stopped = True
            raise RunStopped(str(self.run_id))

    async def phase_started(self, phase: IngestionPhase, message: str) -> None:
        self.phase, self.percent, self.message = phase, 0.0, message
        await self.write()
        self.throttle.new_phase()
        await events.send(
            room=room(self.project_id),
            event="phase_started",
            data=phase_started_payload(self.project_id, phase, message),
        )
        await self.throttle.offer(self._progress())

    async def progress(self, percent: float, message: str | None = None) -> None:
        """Report within the phase: an event (throttled) and, when due, the record."""
        self.percent = percent
        if message is not None:
            self.message = message
        await self.throttle.offer(self._progress())
        if time.monotonic() - self._last_write >= self.write_every:
            await self.write()

    def _progress(self) -> dict[str, Any]:
        return progress_payload(self.project_id, self.phase, self.percent, self.message, self.counters.metrics())

    @asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        """While the block runs, write the record every ``write_every`` seconds even when the
        block awaits something long (a clone); when a write finds the run stopped, the
        block's task is cancelled (the caller turns that into a clean stop, see job.py)."""
        task = asyncio.current_task()
        assert task is not None

        async def keep() -> None:
            while True:
                await asyncio.sleep(max(self.write_every - (time.monotonic() - self._last_write), 0.05))
                if time.monotonic() - self._last_write < self.write_every * 0.9:
                    continue
                try:
                    await self.write()
                except RunStopped:
                    task.cancel()
                    return
                except Exception:
                    log.exception("progress_write_failed", run_id=str(self.run_id))

        keeper = asyncio.create_task(keep(), name=f"ingestion-progress:{self.run_id}")
        try:
            yield
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
