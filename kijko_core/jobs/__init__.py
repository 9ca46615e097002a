"""Background jobs (ARCHITECTURE §5, docs/jobs.md): every job is a row in ``kijko.jobs``.

A module declares a kind with :func:`job_kind`; code that causes work calls :func:`enqueue`
with its own session, so the job row commits (or rolls back) with the change that caused it,
and the doorbell rings only after the commit. A worker (``kijko_core.jobs.worker``) claims
due rows with ``FOR UPDATE SKIP LOCKED`` on the system role and runs each kind's handler with
a :class:`JobContext`; the handler's tenant work runs in a service session of the job's
organization, under row-level security.

The doorbell is a port: ``kijko_server.jobs`` rings huey (Redis or SQLite), an in-process
worker listens on its own bell; losing a ring costs latency, never work (the sweeper re-rings).

Modules defining kinds are found through the entry-point group ``kijko.jobs``, so a plugin
adds kinds by declaring ``[options.entry_points] kijko.jobs = name = package.module``.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from kijko_core.db.session import (
    ServiceActor,
    ServiceCapability,
    ServiceSession,
    Session,
    SystemSession,
    TenantSession,
    service_session,
    system_session,
)
from kijko_core.logging import get_logger

if TYPE_CHECKING:
    from kijko_core.config import Settings
    from kijko_core.runtime import Kijko

__all__ = [
    "Doorbell",
    "JobCancelled",
    "JobContext",
    "JobDeferred",
    "JobKind",
    "JobStates",
    "UnknownJobKind",
    "add_doorbell",
    "enqueue",
    "enqueue_many",
    "get_kind",
    "job_kind",
    "known_kinds",
    "remove_doorbell",
    "ring",
    "sweep_step",
    "sweep_steps",
]

ENTRY_POINT_GROUP = "kijko.jobs"
#: A payload carries ids, not content (the column's check refuses more).
MAX_PAYLOAD_BYTES = 16384
#: One ring names at most this many ids: a ring only wakes workers, who claim by SKIP LOCKED.
MAX_IDS_PER_RING = 100

JobStates = ("queued", "running", "succeeded", "failed", "cancelled")

log = get_logger("kijko.jobs")

Handler = Callable[["JobContext"], Awaitable[None]]


class UnknownJobKind(LookupError):
    """No loaded module declared this kind (a missing ``kijko.jobs`` entry point?)."""


@dataclass(frozen=True, slots=True)
class JobKind:
    name: str
    handler: Handler
    max_attempts: int
    lease_seconds: int
    timeout_seconds: float | None = None
    #: ``settings → n``: claim a job of this kind only while fewer than n of its organization's
    #: run (decision 0129). The handler still enforces its own limit; this spares the claims
    #: that would only defer themselves.
    per_org_limit: Callable[[Settings], int] | None = None


_KINDS: dict[str, JobKind] = {}
_entry_points_loaded = False


def job_kind(
    name: str,
    *,
    max_attempts: int = 5,
    lease_seconds: int = 60,
    timeout_seconds: float | None = 3600,
    per_org_limit: Callable[[Settings], int] | None = None,
) -> Callable[[Handler], Handler]:
    """Declare the handler of a job kind (at import time).

    ``max_attempts``: runs before the job ends ``failed``; ``lease_seconds``: how long a worker
    holds the job between heartbeats (sent every third of it) before another may retry it;
    ``timeout_seconds``: an attempt running longer is cancelled and fails with
    ``TimeoutError`` (heartbeats keep a hung handler's lease alive, so this is what ends it;
    ``None``: no limit); ``per_org_limit``: ``settings → n``, workers claim a job of the kind
    only while fewer than n of the same organization run (a hint that saves claims; the
    handler's own check, e.g. under a lock, is what holds).
    """
    ServiceActor(name, "0")  # the kind names the service actor: same shape (raises otherwise)
    if not 1 <= max_attempts <= 100:
        raise ValueError("max_attempts: 1 to 100")
    if not 1 <= lease_seconds <= 86400:
        raise ValueError("lease_seconds: 1 to 86400")
    if timeout_seconds is not None and not 0 < timeout_seconds:
        raise ValueError("timeout_seconds: > 0, or None")

    def register(handler: Handler) -> Handler:
        existing = _KINDS.get(name)
        if existing is not None and existing.handler is not handler:
            # Re-importing the same module (a reload) is fine; two modules claiming one name is not.
            if (existing.handler.__module__, existing.handler.__qualname__) != (
                handler.__module__,
                handler.__qualname__,
            ):
                raise ValueError(f"job kind {name!r} is already declared by {existing.handler.__module__}")
        _KINDS[name] = JobKind(name, handler, max_attempts, lease_seconds, timeout_seconds, per_org_limit)
        return handler

    return register


def load_kinds() -> None:
    """Import every module of the ``kijko.jobs`` entry-point group (once per process)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        point.load()


def get_kind(name: str) -> JobKind:
    kind = _KINDS.get(name)
    if kind is None:
        load_kinds()
        kind = _KINDS.get(name)
    if kind is None:
        raise UnknownJobKind(f"unknown job kind {name!r}")
    return kind


def known_kinds() -> dict[str, JobKind]:
    load_kinds()
    return dict(_KINDS)


#: A step of the periodic sweeper: cleans up after a domain, returns how many things it removed.
SweepStep = Callable[["Kijko"], Awaitable[int]]
_SWEEP_STEPS: dict[str, SweepStep] = {}


def sweep_step(name: str) -> Callable[[SweepStep], SweepStep]:
    """Declare a clean-up the sweeper runs every tick, next to its own (at import time, in a
    module of the ``kijko.jobs`` entry-point group). It must be idempotent and bounded: any
    worker may run it, several at once."""

    def register(step: SweepStep) -> SweepStep:
        _SWEEP_STEPS[name] = step
        return step

    return register


def sweep_steps() -> dict[str, SweepStep]:
    load_kinds()
    return dict(_SWEEP_STEPS)


# ---------------------------------------------------------------------------------------------
# The doorbell port.


class Doorbell(Protocol):
    async def ring(self, job_ids: Sequence[UUID]) -> None:
        """Wake workers: jobs are due. Best effort; must not raise for a lost ring."""


_DOORBELLS: list[Doorbell] = []


def add_doorbell(bell: Doorbell) -> None:
    """Install a doorbell in this process (the server's huey bell, an in-process worker's)."""
    if bell not in _DOORBELLS:
        _DOORBELLS.append(bell)


def remove_doorbell(bell: Doorbell) -> None:
    if bell in _DOORBELLS:
        _DOORBELLS.remove(bell)


async def ring(job_ids: Sequence[UUID]) -> None:
    """Ring every installed doorbell; a bell that fails is logged (the sweeper re-rings)."""
    ids = list(job_ids)[:MAX_IDS_PER_RING]
    for bell in list(_DOORBELLS):
        try:
            await bell.ring(ids)
        except Exception:
            log.exception("doorbell_failed", bell=type(bell).__name__)


@dataclass
class _RingAfterCommit:
    """One after-commit callback per session, however many jobs it enqueues."""

    job_ids: list[UUID] = field(default_factory=list)

    async def __call__(self) -> None:
        await ring(self.job_ids)


# ---------------------------------------------------------------------------------------------
# Enqueue.

# One statement for any number of jobs (decision 0077's INSERT … SELECT FROM unnest: COPY is
# refused under row-level security); the payloads travel as JSON text.
_INSERT = """
INSERT INTO kijko.jobs (id, organization_id, kind, payload, max_attempts, lease_seconds, run_after)
SELECT j.id, $3, $4, j.payload::jsonb, $5, $6, now() + make_interval(secs => $7)
FROM unnest($1::uuid[], $2::text[]) AS j (id, payload)
"""


async def enqueue(
    db: Session,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    org_id: UUID | None = None,
    delay_seconds: float = 0,
) -> UUID:
    """Write a job row in ``db``'s transaction; the doorbell rings after that transaction
    commits (nothing rings, and no row remains, if it rolls back).

    ``org_id`` defaults to the organization of a tenant or service session; ``None`` from a
    system session is a system job. A tenant session can only enqueue for its own
    organization (row-level security). ``payload``: ids and small values, JSON, ≤ 16 KiB.
    """
    [job_id] = await enqueue_many(db, kind, [payload], org_id=org_id, delay_seconds=delay_seconds)
    return job_id


async def enqueue_many(
    db: Session,
    kind: str,
    payloads: Sequence[dict[str, Any] | None],
    *,
    org_id: UUID | None = None,
    delay_seconds: float = 0,
    job_ids: Sequence[UUID] | None = None,
) -> list[UUID]:
    """:func:`enqueue` for many jobs of one kind and organization in one statement; their ids
    in the order of ``payloads``. The doorbell rings once after the commit, for all of them.

    ``job_ids``: ids chosen by the caller (fresh ``uuid4``), so rows written in the same
    statement as the jobs' causes can name their jobs (an execution's ``job_id``); one per
    payload. Nothing is checked against existing rows: a reused id fails the statement.
    """
    spec = get_kind(kind)
    if not math.isfinite(delay_seconds) or delay_seconds < 0:
        raise ValueError("delay_seconds: a finite number ≥ 0")
    bodies = []
    for payload in payloads:
        content = dict(payload or {})
        body = json.dumps(content)  # as the pool's jsonb codec writes it
        # The ASCII text is never shorter than the stored UTF-8: measure that only when needed.
        if len(body) > MAX_PAYLOAD_BYTES and len(json.dumps(content, ensure_ascii=False).encode()) > MAX_PAYLOAD_BYTES:
            raise ValueError("job payload too large: carry ids, not content")
        bodies.append(body)
    if job_ids is None:
        # No RETURNING: the app role needs no read of what it inserts.
        ids = [uuid.uuid4() for _ in bodies]
    elif len(job_ids) != len(bodies):
        raise ValueError("job_ids: one per payload")
    else:
        ids = list(job_ids)
    if not ids:
        return []
    if org_id is None:
        if isinstance(db, TenantSession):
            org_id = db.principal.org_id
        elif isinstance(db, ServiceSession):
            org_id = db.org_id
    await db.execute(_INSERT, ids, bodies, org_id, kind, spec.max_attempts, spec.lease_seconds, float(delay_seconds))
    bell = next((cb for cb in db.after_commit_callbacks if isinstance(cb, _RingAfterCommit)), None)
    if bell is None:
        bell = _RingAfterCommit()
        db.after_commit(bell)
    bell.job_ids.extend(ids)
    return ids


# ---------------------------------------------------------------------------------------------
# What a handler gets.


class JobCancelled(Exception):
    """The job was cancelled (or its lease lost) while it ran; raised by ``ctx.check()``."""


class JobDeferred(Exception):
    """Raised by a handler that cannot run yet (a limit of its own, such as ingestion's
    per-organization concurrency): the job goes back to ``queued``, due in ``seconds``, and the
    attempt is not counted. Whatever the handler wrote before raising is its to undo (raise it
    before doing anything, or inside the transaction that would have started the work)."""

    def __init__(self, seconds: float) -> None:
        if not math.isfinite(seconds) or not 0 <= seconds <= 86400:
            raise ValueError("seconds: 0 to 86400")
        super().__init__(f"deferred by {seconds} s")
        self.seconds = float(seconds)


@dataclass
class JobContext:
    """One attempt of one job, handed to its kind's handler."""

    job_id: UUID
    kind: str
    org_id: UUID | None
    payload: dict[str, Any]
    attempt: int  # 1-based
    kijko: Kijko
    _capability: ServiceCapability = field(repr=False)
    _cancelled: bool = field(default=False, repr=False)

    @property
    def actor(self) -> ServiceActor:
        return ServiceActor(self.kind, str(self.job_id))

    @property
    def cancelled(self) -> bool:
        """True once a heartbeat found the job cancelled or its lease lost; the worker also
        cancels the handler's task then, so a handler awaiting I/O stops by itself."""
        return self._cancelled

    def check(self) -> None:
        """Raise :class:`JobCancelled` if the job should stop (for long CPU-bound loops)."""
        if self._cancelled:
            raise JobCancelled(str(self.job_id))

    @asynccontextmanager
    async def service_session(self, *, readonly: bool = False) -> AsyncIterator[ServiceSession]:
        """A session of the job's organization under RLS, as ``service:<kind>:<job id>``.
        Use short ones (one per step): progress is visible while the job runs."""
        if self.org_id is None:
            raise RuntimeError(f"job {self.job_id} is a system job: it has no organization")
        async with service_session(
            self.kijko.app_db, self._capability, self.org_id, self.actor, readonly=readonly
        ) as db:
            yield db

    @asynccontextmanager
    async def system_session(self, *, readonly: bool = False) -> AsyncIterator[SystemSession]:
        """For the named cross-tenant operations only (the sweeper's kind of work)."""
        async with system_session(self.kijko.system_db, readonly=readonly) as db:
            yield db
