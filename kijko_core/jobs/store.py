"""The jobs table's statements: claim, heartbeat, complete, fail, release, cancel, retry, reap
and the sweeper's deletes. All run on the system role (the worker finds and claims work; the
handlers' tenant work runs in service sessions). Every state change is compare-and-set: it
names the states it leaves, and a running job's changes also name the claim (lease owner and
attempt), so a worker that lost its lease can change nothing. Times: the database clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from kijko_core.db.session import Session

#: ``last_error`` is capped by the column.
MAX_ERROR_CHARS = 4000


@dataclass(frozen=True, slots=True)
class Claimed:
    """One claimed attempt: (id, attempt) with the worker's owner name identify the claim."""

    id: UUID
    kind: str
    org_id: UUID | None
    payload: dict[str, Any]
    attempt: int
    lease_seconds: int
    waited: timedelta  # claim time − run_after: the queue latency of this attempt


_CLAIM = """
UPDATE kijko.jobs j
SET state = 'running', attempts = j.attempts + 1, lease_owner = $1,
    lease_expires_at = clock_timestamp() + make_interval(secs => j.lease_seconds),
    started_at = clock_timestamp(), updated_at = clock_timestamp()
FROM (
    SELECT id FROM kijko.jobs
    WHERE state = 'queued' AND run_after <= clock_timestamp() AND kind = ANY($2::text[])
    ORDER BY run_after
    LIMIT $3
    FOR UPDATE SKIP LOCKED
) due
WHERE j.id = due.id
RETURNING j.id, j.kind, j.organization_id, j.payload, j.attempts, j.lease_seconds,
    clock_timestamp() - j.run_after AS waited
"""


# Kinds with a per-organization limit ($4 kinds, $5 limits; decision 0129): a due job of such a
# kind is a candidate only while its organization's running jobs of the kind plus the earlier
# candidates of the same organization stay under the limit (a window over the due rows; the
# chosen ones are then locked SKIP LOCKED, and re-checked queued, like the plain claim).
#: The CTEs ``busy`` (running jobs per kind and organization) and ``limits`` (kind → most at
#: once), with the parameters named by ``kinds`` and ``limits`` (filled in at import time).
_BUSY = """
busy AS (
    SELECT kind, organization_id, count(*)::int AS running FROM kijko.jobs
    WHERE state = 'running' AND kind = ANY({kinds}::text[])
    GROUP BY kind, organization_id
), limits AS (
    SELECT * FROM unnest({kinds}::text[], {limits}::int[]) AS l (kind, max_running)
)"""


_CLAIM_LIMITED = f"""
WITH {_BUSY.format(kinds="$4", limits="$5")}, ranked AS (
    SELECT q.id, q.run_after, l.max_running, coalesce(b.running, 0) AS running,
           row_number() OVER (PARTITION BY q.kind, q.organization_id ORDER BY q.run_after, q.id) AS nth
    FROM kijko.jobs q
    LEFT JOIN limits l ON l.kind = q.kind
    LEFT JOIN busy b ON b.kind = q.kind AND b.organization_id = q.organization_id
    WHERE q.state = 'queued' AND q.run_after <= clock_timestamp() AND q.kind = ANY($2::text[])
), chosen AS (
    SELECT id FROM ranked WHERE max_running IS NULL OR running + nth <= max_running
    ORDER BY run_after LIMIT $3
)
UPDATE kijko.jobs j
SET state = 'running', attempts = j.attempts + 1, lease_owner = $1,
    lease_expires_at = clock_timestamp() + make_interval(secs => j.lease_seconds),
    started_at = clock_timestamp(), updated_at = clock_timestamp()
FROM (
    SELECT id FROM kijko.jobs WHERE id IN (SELECT id FROM chosen) AND state = 'queued'
    FOR UPDATE SKIP LOCKED
) due
WHERE j.id = due.id
RETURNING j.id, j.kind, j.organization_id, j.payload, j.attempts, j.lease_seconds,
    clock_timestamp() - j.run_after AS waited
"""  # noqa: S608 — our own constants only


async def claim(
    db: Session, owner: str, kinds: Sequence[str], limit: int, org_limits: Mapping[str, int] | None = None
) -> list[Claimed]:
    """Claim up to ``limit`` due jobs of ``kinds`` (rows another worker holds are skipped);
    ``org_limits``: kind → the most of one organization's jobs of that kind running at once
    (jobs of a full organization are left queued)."""
    if org_limits:
        names = list(org_limits)
        rows = await db.fetch(_CLAIM_LIMITED, owner, list(kinds), limit, names, [org_limits[n] for n in names])
    else:
        rows = await db.fetch(_CLAIM, owner, list(kinds), limit)
    return [
        Claimed(r["id"], r["kind"], r["organization_id"], r["payload"], r["attempts"], r["lease_seconds"], r["waited"])
        for r in rows
    ]


_NEXT_DUE = """
SELECT extract(epoch FROM min(run_after) - clock_timestamp())::float8
FROM kijko.jobs WHERE state = 'queued' AND kind = ANY($1::text[])
"""


_NEXT_DUE_LIMITED = f"""
WITH {_BUSY.format(kinds="$2", limits="$3")}
SELECT extract(epoch FROM min(q.run_after) - clock_timestamp())::float8
FROM kijko.jobs q
LEFT JOIN limits l ON l.kind = q.kind
LEFT JOIN busy b ON b.kind = q.kind AND b.organization_id = q.organization_id
WHERE q.state = 'queued' AND q.kind = ANY($1::text[])
  AND (l.max_running IS NULL OR coalesce(b.running, 0) < l.max_running)
"""  # noqa: S608 — our own constants only


async def seconds_to_next_due(
    db: Session, kinds: Sequence[str], org_limits: Mapping[str, int] | None = None
) -> float | None:
    """Seconds until the next queued job of ``kinds`` is due (≤ 0: now), None: none queued;
    with ``org_limits``, jobs of organizations at their kind's limit do not count (a finished
    job of theirs wakes the worker)."""
    if org_limits:
        names = list(org_limits)
        return await db.fetchval(_NEXT_DUE_LIMITED, list(kinds), names, [org_limits[n] for n in names])
    return await db.fetchval(_NEXT_DUE, list(kinds))


_HEARTBEAT = """
UPDATE kijko.jobs
SET lease_expires_at = clock_timestamp() + make_interval(secs => lease_seconds),
    updated_at = clock_timestamp()
WHERE id = $1 AND state = 'running' AND lease_owner = $2 AND attempts = $3
RETURNING id
"""


async def heartbeat(db: Session, owner: str, job_id: UUID, attempt: int) -> bool:
    """Extend the lease; False: the job was cancelled or the lease was lost (stop working)."""
    return await db.fetchval(_HEARTBEAT, job_id, owner, attempt) is not None


_COMPLETE = """
UPDATE kijko.jobs j
SET state = 'succeeded', lease_owner = NULL, lease_expires_at = NULL,
    finished_at = clock_timestamp(), updated_at = clock_timestamp()
FROM unnest($2::uuid[], $3::int[]) AS done (id, attempt)
WHERE j.id = done.id AND j.attempts = done.attempt AND j.state = 'running' AND j.lease_owner = $1
RETURNING j.id
"""


async def complete(db: Session, owner: str, attempts: Sequence[tuple[UUID, int]]) -> set[UUID]:
    """Mark claimed attempts succeeded; returns the ids that were still ours (a job cancelled
    or reaped meanwhile keeps its state)."""
    if not attempts:
        return set()
    rows = await db.fetch(_COMPLETE, owner, [a[0] for a in attempts], [a[1] for a in attempts])
    return {r["id"] for r in rows}


# A finished job of a kind limited per organization hands its slot over: that organization's
# oldest job of the kind waiting for a recheck (deferred, decision 0110) becomes due at once,
# as many as finished ($1 kinds, $2 organizations, one pair per finished job).
_HAND_OVER = """
UPDATE kijko.jobs j SET run_after = clock_timestamp(), updated_at = clock_timestamp()
FROM (
    SELECT waiting.id
    FROM (SELECT kind, organization_id, count(*) AS n FROM unnest($1::text[], $2::uuid[]) AS f (kind, organization_id)
          GROUP BY kind, organization_id) finished
    CROSS JOIN LATERAL (
        SELECT q.id FROM kijko.jobs q
        WHERE q.kind = finished.kind AND q.organization_id = finished.organization_id
          AND q.state = 'queued' AND q.run_after > clock_timestamp()
        ORDER BY q.created_at LIMIT finished.n
        FOR UPDATE SKIP LOCKED
    ) waiting
) due
WHERE j.id = due.id
RETURNING j.id
"""


async def hand_over(db: Session, finished: Sequence[tuple[str, UUID]]) -> list[UUID]:
    """Make one waiting (deferred) job of the same kind and organization due now per finished
    ``(kind, organization)``; returns the ids made due."""
    if not finished:
        return []
    rows = await db.fetch(_HAND_OVER, [f[0] for f in finished], [f[1] for f in finished])
    return [r["id"] for r in rows]


def _backoff(attempts: str, base: str, cap: str) -> str:
    """Exponential backoff with equal jitter: base·2^(attempt−1), capped, then 50–100 % of it
    (the fragment, from our own column and parameter names; used at import time only)."""
    return (
        f"make_interval(secs => least({cap}::float8, {base}::float8 * power(2, {attempts} - 1))"
        " * (0.5 + random() * 0.5))"
    )


_FAIL = f"""
UPDATE kijko.jobs
SET state = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
    run_after = CASE WHEN attempts >= max_attempts THEN run_after
                     ELSE clock_timestamp() + {_backoff("attempts", "$4", "$5")} END,
    finished_at = CASE WHEN attempts >= max_attempts THEN clock_timestamp() END,
    lease_owner = NULL, lease_expires_at = NULL, last_error = left($6, {MAX_ERROR_CHARS}),
    updated_at = clock_timestamp()
WHERE id = $1 AND state = 'running' AND lease_owner = $2 AND attempts = $3
RETURNING state, run_after
"""  # noqa: S608 — our own constants only


@dataclass(frozen=True, slots=True)
class Retry:
    base_seconds: float
    max_seconds: float


async def fail(
    db: Session, owner: str, job_id: UUID, attempt: int, error: str, retry: Retry
) -> tuple[str, datetime] | None:
    """Record a failed attempt: back to ``queued`` after a backoff, or ``failed`` after the
    last attempt. None: the job was no longer ours (cancelled, reaped)."""
    row = await db.fetchrow(_FAIL, job_id, owner, attempt, retry.base_seconds, retry.max_seconds, error)
    return None if row is None else (row["state"], row["run_after"])


_RELEASE = """
UPDATE kijko.jobs
SET state = 'queued', attempts = attempts - 1, lease_owner = NULL, lease_expires_at = NULL,
    run_after = clock_timestamp() + make_interval(secs => $4), updated_at = clock_timestamp()
WHERE id = $1 AND state = 'running' AND lease_owner = $2 AND attempts = $3
RETURNING id
"""


async def release(db: Session, owner: str, job_id: UUID, attempt: int, *, delay_seconds: float = 0.0) -> bool:
    """Give an unfinished job back: queued again, due in ``delay_seconds``, the attempt not
    counted (a draining worker; a handler that deferred itself, ``jobs.JobDeferred``)."""
    return await db.fetchval(_RELEASE, job_id, owner, attempt, float(delay_seconds)) is not None


_REAP = f"""
UPDATE kijko.jobs j
SET state = CASE WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'queued' END,
    run_after = CASE WHEN j.attempts >= j.max_attempts THEN j.run_after
                     ELSE clock_timestamp() + {_backoff("j.attempts", "$2", "$3")} END,
    finished_at = CASE WHEN j.attempts >= j.max_attempts THEN clock_timestamp() END,
    last_error = left('lease expired: worker ' || j.lease_owner || ' stopped answering',
                      {MAX_ERROR_CHARS}),
    lease_owner = NULL, lease_expires_at = NULL, updated_at = clock_timestamp()
FROM (
    SELECT id FROM kijko.jobs
    WHERE state = 'running' AND lease_expires_at < clock_timestamp()
    LIMIT $1
    FOR UPDATE SKIP LOCKED
) expired
WHERE j.id = expired.id
RETURNING j.id, j.state
"""  # noqa: S608 — our own constants only


async def reap(db: Session, retry: Retry, limit: int = 1000) -> list[tuple[UUID, str]]:
    """Jobs whose lease expired (their worker died or hung): retried with backoff, or failed
    after their last attempt. Returns (id, new state)."""
    rows = await db.fetch(_REAP, limit, retry.base_seconds, retry.max_seconds)
    return [(r["id"], r["state"]) for r in rows]


_CANCEL = """
UPDATE kijko.jobs
SET state = 'cancelled', lease_owner = NULL, lease_expires_at = NULL,
    finished_at = clock_timestamp(), updated_at = clock_timestamp()
WHERE id = $1 AND state IN ('queued', 'running')
RETURNING id
"""


async def cancel(db: Session, job_id: UUID) -> bool:
    """Cancel a queued or running job (a running one stops at its next heartbeat). False: no
    such job, or it had already finished."""
    return await db.fetchval(_CANCEL, job_id) is not None


_RETRY = """
UPDATE kijko.jobs
SET state = 'queued', attempts = 0, run_after = clock_timestamp(), finished_at = NULL,
    updated_at = clock_timestamp()
WHERE id = $1 AND state IN ('failed', 'cancelled')
RETURNING id
"""


async def retry(db: Session, job_id: UUID) -> bool:
    """Queue a failed or cancelled job again with all its attempts. False: no such job, or it
    is not failed or cancelled."""
    return await db.fetchval(_RETRY, job_id) is not None


JOB_COLUMNS = (
    "id, kind, organization_id, payload, state, attempts, max_attempts, lease_seconds,"
    " run_after, lease_owner, lease_expires_at, last_error, created_at, updated_at,"
    " started_at, finished_at"
)

_GET = f"SELECT {JOB_COLUMNS} FROM kijko.jobs WHERE id = $1"  # noqa: S608 — constants

_LIST = f"""
SELECT {JOB_COLUMNS} FROM kijko.jobs
WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR kind = $2)
ORDER BY created_at DESC, id
LIMIT $3
"""  # noqa: S608 — constants


async def get(db: Session, job_id: UUID) -> dict[str, Any] | None:
    row = await db.fetchrow(_GET, job_id)
    return None if row is None else dict(row)


async def list_jobs(
    db: Session, *, state: str | None = None, kind: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(_LIST, state, kind, limit)]


# The sweeper's deletes: each bounded, so one tick never holds long locks.
_DELETE_FINISHED = """
DELETE FROM kijko.jobs WHERE id IN (
    SELECT id FROM kijko.jobs
    WHERE finished_at < clock_timestamp() - make_interval(days => $1) LIMIT $2
)
"""
# A session row outlives its expiry by an hour (longer than any access token can outlive its
# session, leeway included), and a revoked Keycloak session by 30 days: Keycloak may still
# issue tokens for its sid, and only this row makes Kijko refuse them.
_DELETE_SESSIONS = """
DELETE FROM kijko_private.sessions WHERE id IN (
    SELECT id FROM kijko_private.sessions
    WHERE expires_at < clock_timestamp() - interval '1 hour'
      AND (revoked_at IS NULL OR provider = 'local' OR expires_at < clock_timestamp() - interval '30 days')
    LIMIT $1
)
"""
_DELETE_REFRESH_TOKENS = """
DELETE FROM kijko_private.refresh_tokens WHERE id IN (
    SELECT id FROM kijko_private.refresh_tokens WHERE expires_at < clock_timestamp() LIMIT $1
)
"""
_DELETE_OAUTH_STATES = """
DELETE FROM kijko_private.oauth_states WHERE state_hash IN (
    SELECT state_hash FROM kijko_private.oauth_states WHERE expires_at < clock_timestamp() LIMIT $1
)
"""
_DELETE_GIT_OAUTH_STATES = """
DELETE FROM kijko.git_oauth_states WHERE state_hash IN (
    SELECT state_hash FROM kijko.git_oauth_states WHERE expires_at < clock_timestamp() LIMIT $1
)
"""
_DELETE_OAUTH_HANDOFFS = """
DELETE FROM kijko_private.oauth_handoffs WHERE code_hash IN (
    SELECT code_hash FROM kijko_private.oauth_handoffs WHERE expires_at < clock_timestamp() LIMIT $1
)
"""

_DUE = """
SELECT count(*) FROM kijko.jobs WHERE state = 'queued' AND run_after <= clock_timestamp()
"""


def _deleted(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


async def delete_expired(db: Session, *, retention_days: int, limit: int = 10_000) -> dict[str, int]:
    """Delete finished jobs past retention, expired sessions (their refresh tokens go with
    them), expired refresh tokens and expired one-time OAuth states and hand-off codes."""
    return {
        "jobs": _deleted(await db.execute(_DELETE_FINISHED, retention_days, limit)),
        "sessions": _deleted(await db.execute(_DELETE_SESSIONS, limit)),
        "refresh_tokens": _deleted(await db.execute(_DELETE_REFRESH_TOKENS, limit)),
        "oauth_states": _deleted(await db.execute(_DELETE_OAUTH_STATES, limit)),
        "oauth_handoffs": _deleted(await db.execute(_DELETE_OAUTH_HANDOFFS, limit)),
        "git_oauth_states": _deleted(await db.execute(_DELETE_GIT_OAUTH_STATES, limit)),
    }


async def due_count(db: Session) -> int:
    return await db.fetchval(_DUE)
