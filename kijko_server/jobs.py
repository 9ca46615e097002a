"""The jobs port on huey: the doorbell and the periodic tick (ARCHITECTURE §5, docs/jobs.md).

huey carries no work: a ring is the message ``kijko.jobs.ring`` with up to 100 job ids, and
the tick ``kijko.jobs.tick`` runs the sweeper once a minute. The jobs themselves are rows in
PostgreSQL that workers claim; a lost ring costs latency, never work.

- ``RedisHuey`` on ``KIJKO_REDIS_URL`` when it is set (every process shares the queue);
  otherwise ``SqliteHuey`` in the data directory (processes on one machine share the file).
- Messages are JSON, never pickle: whoever can write to the queue can at most wake a worker.
- huey tasks are synchronous and run on the consumer's threads; each worker process owns one
  asyncio loop (with the runtime's pools) and the tasks hand coroutines to it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import redis
from huey import Huey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer
from huey.registry import Message
from huey.serializer import Serializer

from kijko_core.config import Settings
from kijko_core.data_dir import DataDirectory
from kijko_core.jobs.worker import Worker
from kijko_core.logging import get_logger

QUEUE_NAME = "kijko-jobs"
RING_TASK = "kijko.jobs.ring"
TICK_TASK = "kijko.jobs.tick"
SQLITE_FILE = "jobs-queue.sqlite3"
# A Redis that does not answer in time loses the ring (logged), never blocks the caller long;
# above huey's 1 s blocking read.
REDIS_TIMEOUT_SECONDS = 5.0
# The sweeper's budget inside one tick.
TICK_TIMEOUT_SECONDS = 50.0

log = get_logger("kijko.jobs")


class JsonSerializer(Serializer):  # type: ignore[misc]  # huey is untyped
    """huey's messages as JSON: our two tasks carry strings only, so nothing is unpickled."""

    def _serialize(self, data: Any) -> bytes:
        if not isinstance(data, Message):
            raise TypeError("only task messages go through the jobs queue")
        return json.dumps(list(data), separators=(",", ":")).encode()

    def _deserialize(self, data: bytes) -> Any:
        fields = json.loads(data)
        if not isinstance(fields, list) or len(fields) > len(Message._fields):
            raise ValueError("not a jobs queue message")
        message = Message(*fields)
        return message._replace(args=tuple(message.args or ()), kwargs=dict(message.kwargs or {}))


def make_huey(settings: Settings) -> Huey:
    """Redis when ``KIJKO_REDIS_URL`` is set, else SQLite in the data directory."""
    common: dict[str, Any] = {"results": False, "serializer": JsonSerializer(), "utc": True}
    if settings.redis_url is not None:
        pool = redis.ConnectionPool.from_url(
            settings.redis_url.get_secret_value(),
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
        )
        return RedisHuey(QUEUE_NAME, connection_pool=pool, **common)
    return SqliteHuey(QUEUE_NAME, filename=str(sqlite_path(settings)), **common)


def sqlite_path(settings: Settings) -> Path:
    return DataDirectory(settings.data_dir).ensure().path / SQLITE_FILE


class HueyJobs:
    """The doorbell (any process: ``ring``) and, in a worker process, the consumer that hands
    rings and ticks to the worker's loop (``attach`` then ``consumer``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.huey = make_huey(settings)
        self._worker: Worker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

        @self.huey.task(name=RING_TASK)  # type: ignore[misc,untyped-decorator]
        def ring_task(job_ids: list[str]) -> None:
            self._on_ring(job_ids)

        @self.huey.periodic_task(crontab(minute="*"), name=TICK_TASK)  # type: ignore[misc,untyped-decorator]
        def tick_task() -> None:
            self._on_tick()

        self._ring_task = ring_task

    # -- the doorbell (kijko_core.jobs.Doorbell) ----------------------------------------

    async def ring(self, job_ids: Sequence[UUID]) -> None:
        ids = [str(job_id) for job_id in job_ids]
        # huey's storage clients are synchronous: off the event loop.
        await asyncio.to_thread(self._ring_task, ids)

    # -- the worker side -----------------------------------------------------------------

    def attach(self, worker: Worker, loop: asyncio.AbstractEventLoop) -> None:
        self._worker, self._loop = worker, loop

    def consumer(self) -> Consumer:
        """huey's consumer on threads: two, so a tick never delays a ring. Signals stay with
        ``kijko worker`` (it re-installs its own after ``start``)."""
        return Consumer(self.huey, workers=2, periodic=True, worker_type="thread", max_delay=1.0)

    def _submit(self, work: Any) -> concurrent.futures.Future[Any] | None:
        if self._worker is None or self._loop is None or self._loop.is_closed():
            work.close()
            return None
        try:
            return asyncio.run_coroutine_threadsafe(work, self._loop)
        except RuntimeError:  # the loop stopped meanwhile
            work.close()
            return None

    def _on_ring(self, job_ids: list[str]) -> None:
        if self._worker is not None:
            self._submit(self._worker.ring([UUID(i) for i in job_ids[:100]]))

    def _on_tick(self) -> None:
        if self._worker is None:
            return
        future = self._submit(self._worker.sweep())
        if future is None:
            return
        try:
            future.result(TICK_TIMEOUT_SECONDS)
        except Exception:
            log.exception("tick_failed")
