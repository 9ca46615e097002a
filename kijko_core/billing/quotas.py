"""The quota engine (issue 9 §5, decision 0151, docs/billing.md#quotas).

- Counters (``api_calls``, ``ingestions`` per billing period — the subscription's current
  period while it grants a plan, else the UTC calendar month (decision 0167); ``oracle_queries``
  per UTC day) live in ``kijko.usage_counters`` (migration 0023) and are consumed by **one** statement that
  checks and increments (``INSERT … ON CONFLICT DO UPDATE … WHERE used + n <= limit``): row
  locks serialize concurrent consumers of one organization, so exactly the limit gets through.
  The statement runs in the caller's transaction, with the action it counts: a rolled-back
  action is not counted, a counted one happened.
- Gauges (``storage``: bytes of the stored chunks of each project's current index plus the
  uploaded files; ``seats``: the organization's members plus pending invitations to other
  addresses) are computed from the data when an action would add to them, under a transaction
  lock per organization and gauge (:func:`lock_gauge`) held until the action commits, so
  concurrent additions are serialized: exactly what fits gets through.
- Over a limit: :class:`QuotaExceeded`, 429 ``QUOTA_EXCEEDED`` with ``details: {metric, limit,
  current, resetsAt}``; counters carry ``Retry-After`` (seconds to the reset), gauges do not.
- Every consumption also adds to ``kijko.usage_daily`` (the usage trend); crossing 80 % or
  100 % of a limit queues the owners' mail (kijko_core/billing/alerts.py).

No web framework here: the server maps the error, the engine only needs a session.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

from kijko_core import jobs
from kijko_core.billing.plans import GB, UNLIMITED, Plan, Plans
from kijko_core.billing.subscriptions import ENTITLED_WHERE, plan_for
from kijko_core.db.session import Session
from kijko_core.errors import KijkoError

QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
COUNTERS = ("api_calls", "ingestions", "oracle_queries")
GAUGES = ("storage", "seats")
#: The owners are mailed when a metric reaches these percentages of its limit, once per period.
THRESHOLDS = (80, 100)
#: The job that records and mails a threshold reached (kijko_core/billing/alerts.py).
ALERT_JOB = "billing.usage_alert"


class QuotaExceeded(KijkoError):
    status = 429
    code = QUOTA_EXCEEDED
    default_message = "The organization has used up this quota of its plan"

    def __init__(self, metric: str, limit: float, current: float, resets_at: datetime | None, retry_after: int | None):
        what = METRIC_NAMES.get(metric, metric)
        message = f"The organization has reached its plan's limit of {what}"
        if resets_at is not None:
            message += f"; it resets at {resets_at.isoformat().replace('+00:00', 'Z')}"
        super().__init__(
            message,
            details={
                "metric": metric,
                "limit": limit,
                "current": current,
                "resetsAt": resets_at.isoformat().replace("+00:00", "Z") if resets_at else None,
            },
        )
        #: Seconds to the reset (the ``Retry-After`` header); None for a gauge.
        self.retry_after = retry_after


METRIC_NAMES = {
    "api_calls": "API calls this billing period",
    "ingestions": "ingestions this billing period",
    "oracle_queries": "oracle queries today",
    "storage": "storage",
    "seats": "seats",
}


def counter_period(metric: str) -> str:
    """The period a counter is kept for: ``day`` (the UTC day) for ``oracle_queries``; ``month``
    for the others, meaning the billing period — the subscription's current period while it
    grants a plan, else the UTC calendar month (:data:`_PERIOD_CTE`, decision 0167)."""
    return "day" if metric == "oracle_queries" else "month"


# The plan that applies to organization $1 and the period a counter of unit $2 ('day' or
# 'month', :func:`counter_period`) counts in, from the database clock: the UTC day; or the
# billing period — the current period of the subscription while it grants a plan (the same
# condition as ``plan_for``), else the UTC calendar month. A stored period already over (its
# renewal not mirrored yet: Stripe's event is late) is followed by the next one of its interval.
# Counters are keyed by the UTC date a period starts on (decision 0167).
_PERIOD_CTE = f"""
entitled AS (
    SELECT plan_id, billing_interval, current_period_start, current_period_end
    FROM kijko.subscriptions WHERE organization_id = $1 AND {ENTITLED_WHERE}
), utc AS (
    SELECT date_trunc($2::text, now() AT TIME ZONE 'UTC') AS start
), period AS (
    SELECT e.plan_id,
           CASE WHEN $2::text = 'day' OR e.plan_id IS NULL THEN utc.start AT TIME ZONE 'UTC'
                WHEN e.current_period_end > now() THEN e.current_period_start
                ELSE e.current_period_end END AS starts,
           CASE WHEN $2::text = 'day' OR e.plan_id IS NULL
                THEN (utc.start + ('1 ' || $2::text)::interval) AT TIME ZONE 'UTC'
                WHEN e.current_period_end > now() THEN e.current_period_end
                ELSE e.current_period_end
                     + CASE e.billing_interval WHEN 'annually' THEN interval '1 year' ELSE interval '1 month' END
           END AS ends
    FROM utc LEFT JOIN entitled AS e ON true
)"""  # noqa: S608
# The plan and the period, read together (the round trip ``plan_for`` made anyway).
_ENTITLEMENT = f"""
WITH {_PERIOD_CTE}
SELECT plan_id, (starts AT TIME ZONE 'UTC')::date AS period_start, ends FROM period
"""  # noqa: S608


@dataclass(frozen=True, slots=True)
class Entitlement:
    """The plan that applies now and a counter's current period."""

    plan: Plan
    #: The counters' key: the UTC date the period starts on.
    period_start: date
    #: When the period ends (the counter resets).
    ends: datetime


async def entitlement(db: Session, plans: Plans, org_id: UUID, metric: str) -> Entitlement:
    """The organization's plan and the current period of counter ``metric``, in one statement."""
    row = await db.fetchrow(_ENTITLEMENT, org_id, counter_period(metric))
    assert row is not None
    plan = plans.default if row["plan_id"] is None else plans.get(row["plan_id"])
    return Entitlement(plan, row["period_start"], row["ends"])


# The one statement that reads the plan and the period and checks and increments ($1
# organization, $2 unit (:func:`counter_period`), $3 metric, $4 = n, $5 the metric's limit per
# plan id as JSON (-1 unlimited), $6: grant part of n when all of it does not fit (a batch of
# habit runs), $7 the default plan's id). The plan and the billing period come from
# :data:`_PERIOD_CTE` in the same statement: counting costs one round trip. On an existing row
# the right-hand sides of SET read the row as locked (the latest committed version), so
# concurrent consumers are serialized by the row lock and each sees the others' increments. The
# row also counts its current UTC day (``day``, ``day_used``), for the usage trend; on the first
# consumption of a new day the previous day's count moves to ``kijko.usage_daily`` in the same
# statement, so the hot path writes one row, not two.
_LIMIT = "(SELECT lim FROM params)"
_GRANTED = f"CASE WHEN {_LIMIT} < 0 OR c.used + $4::bigint <= {_LIMIT} THEN $4::bigint ELSE {_LIMIT} - c.used END"
_CONSUME_TEMPLATE = f"""
WITH {_PERIOD_CTE}, params AS (
    SELECT (period.starts AT TIME ZONE 'UTC')::date AS start, (now() AT TIME ZONE 'UTC')::date AS today,
           ($5::jsonb ->> coalesce(period.plan_id, $7::text))::bigint AS lim{{async_commit}}
    FROM period
), counted AS (
    INSERT INTO kijko.usage_counters AS c (organization_id, metric, period_start, used, granted, day, day_used)
    SELECT $1, $3, p.start, g.n, g.n, p.today, g.n
    FROM params AS p,
         LATERAL (SELECT CASE WHEN p.lim < 0 OR $4::bigint <= p.lim THEN $4::bigint ELSE p.lim END AS n) AS g
    WHERE p.lim < 0 OR $4::bigint <= p.lim OR ($6::boolean AND p.lim > 0)
    ON CONFLICT (organization_id, metric, period_start) DO UPDATE
    SET used = c.used + {{granted}},
        granted = {{granted}},
        day_used = CASE WHEN c.day = EXCLUDED.day THEN c.day_used ELSE 0 END + {{granted}},
        day = EXCLUDED.day,
        rolled_day = CASE WHEN c.day = EXCLUDED.day THEN NULL ELSE c.day END,
        rolled_used = CASE WHEN c.day = EXCLUDED.day THEN NULL ELSE c.day_used END,
        updated_at = now()
    WHERE {_LIMIT} < 0 OR c.used + $4::bigint <= {_LIMIT} OR ($6::boolean AND c.used < {_LIMIT})
    RETURNING c.used, c.granted, c.rolled_day, c.rolled_used
), rolled AS (
    INSERT INTO kijko.usage_daily AS d (organization_id, metric, day, value)
    SELECT $1, $3, rolled_day, rolled_used FROM counted WHERE rolled_day IS NOT NULL AND rolled_used > 0
    ON CONFLICT (organization_id, metric, day) DO UPDATE SET value = d.value + EXCLUDED.value
)
SELECT used, granted, (SELECT lim FROM params) AS lim FROM counted
"""  # noqa: S608
_CONSUME = _CONSUME_TEMPLATE.format(async_commit="", granted=_GRANTED)
# The same, committing without waiting for the WAL flush (``only_write``), in the same round trip.
_CONSUME_ONLY_WRITE = _CONSUME_TEMPLATE.format(
    async_commit=",\n           set_config('synchronous_commit', 'off', true) AS async_commit", granted=_GRANTED
)

# What a refusal reports: the period's use, its end and the seconds to it (database clock);
# $1 organization, $2 unit, $3 metric.
_PERIOD = f"""
WITH {_PERIOD_CTE}
SELECT coalesce((SELECT c.used FROM kijko.usage_counters c, period
                 WHERE c.organization_id = $1 AND c.metric = $3
                   AND c.period_start = (period.starts AT TIME ZONE 'UTC')::date), 0) AS used,
       period.ends AS resets_at,
       extract(epoch FROM period.ends - now())::float8 AS seconds_left
FROM period
"""  # noqa: S608

# Giving back what was consumed but not used (a batch's runs already fired): service sessions
# only (the trigger of migration 0023 refuses a member's session).
_REFUND = f"""
WITH {_PERIOD_CTE}
UPDATE kijko.usage_counters
SET used = greatest(used - $4::bigint, 0),
    day_used = CASE WHEN day = (now() AT TIME ZONE 'UTC')::date THEN greatest(day_used - $4::bigint, 0)
                    ELSE day_used END,
    updated_at = now()
WHERE organization_id = $1 AND metric = $3
  AND period_start = (SELECT (starts AT TIME ZONE 'UTC')::date FROM period)
"""  # noqa: S608

# Storage in bytes: the stored chunks of each project's current index (their content's bytes,
# totalled per run by migration 0026's triggers: one row per project is read, not every chunk)
# and the uploaded files. $2/$3: a run about to become project $2's index (its chunks counted
# instead of the current index's); NULL for none.
_STORAGE = """
SELECT (
    coalesce((SELECT sum(b.bytes) FROM kijko.project_indexes i
              JOIN kijko.run_chunk_bytes b
                ON b.organization_id = i.organization_id AND b.project_id = i.project_id AND b.run_id = i.run_id
              WHERE i.organization_id = $1 AND b.organization_id = $1
                AND i.project_id IS DISTINCT FROM $2::uuid), 0)
    + coalesce((SELECT b.bytes FROM kijko.run_chunk_bytes b
                WHERE b.organization_id = $1 AND b.project_id = $2::uuid AND b.run_id = $3::uuid), 0)
    + coalesce((SELECT sum(u.size) FROM kijko.uploaded_files u WHERE u.organization_id = $1), 0)
)::bigint
"""

# Seats: the organization's members, and the addresses with a pending, unexpired invitation
# that are not members yet (one seat per address, however many projects invite it).
_SEATS = """
WITH members AS (SELECT lower(email) AS email FROM kijko.organization_members())
SELECT (SELECT count(*) FROM members)
     + (SELECT count(DISTINCT lower(m.email)) FROM kijko.project_members m
        JOIN kijko.project_invitations i ON i.organization_id = m.organization_id AND i.member_id = m.id
        WHERE m.organization_id = $1 AND m.user_id IS NULL AND i.accepted_at IS NULL AND i.expires_at > now()
          AND lower(m.email) NOT IN (SELECT email FROM members)) AS seats,
       EXISTS (SELECT 1 FROM members WHERE email = lower($2::text))
    OR EXISTS (SELECT 1 FROM kijko.project_members m
               JOIN kijko.project_invitations i ON i.organization_id = m.organization_id AND i.member_id = m.id
               WHERE m.organization_id = $1 AND m.user_id IS NULL AND i.accepted_at IS NULL
                 AND i.expires_at > now() AND lower(m.email) = lower($2::text)) AS has_seat
"""

# Serializes the actions that add to one gauge of one organization until their transaction ends.
# Taken before anything else the check reads (and before the action writes), each in its own
# statement: under READ COMMITTED the measure that follows sees what the previous holder committed.
_GAUGE_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('kijko.quota.' || $2::text || ':' || $1::uuid::text, 0))"

# A gauge's value of today, for the trend (measurements may go down).
_GAUGE_DAILY = """
INSERT INTO kijko.usage_daily AS d (organization_id, metric, day, value)
VALUES ($1, $2, (now() AT TIME ZONE 'UTC')::date, $3)
ON CONFLICT (organization_id, metric, day) DO UPDATE SET value = EXCLUDED.value
"""
_MONTH_START = "SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date"
_ALERTED = (
    "SELECT coalesce(max(threshold), 0) FROM kijko.usage_alerts"
    " WHERE organization_id = $1 AND metric = $2 AND period_start = $3"
)


@dataclass(frozen=True, slots=True)
class Consumed:
    #: The period's use after this consumption, and what this consumption got.
    used: int
    granted: int


async def _consume(
    db: Session,
    plans: Plans,
    org_id: UUID,
    metric: str,
    amount: int,
    *,
    partial: bool,
    only_write: bool = False,
) -> Consumed | None:
    limits = {plan.id: plan.limit(metric) for plan in plans}
    statement = _CONSUME_ONLY_WRITE if only_write else _CONSUME
    row = await db.fetchrow(
        statement, org_id, counter_period(metric), metric, amount, limits, partial, plans.default.id
    )
    if row is None:
        return None
    consumed = Consumed(int(row["used"]), int(row["granted"]))
    await _alert_if_crossed(db, org_id, metric, int(row["lim"]), consumed.used - consumed.granted, consumed.used)
    return consumed


async def consume(
    db: Session, plans: Plans, org_id: UUID, metric: str, amount: int = 1, *, only_write: bool = False
) -> int:
    """Count ``amount`` of counter ``metric`` in ``db``'s transaction, or raise
    :class:`QuotaExceeded` (nothing counted) when it does not fit in the plan's limit. Returns the
    period's use.

    ``only_write``: the count is the transaction's only write (a search), so its commit need not
    wait for the WAL flush (``synchronous_commit = off`` for this transaction): a crash may lose
    the last few counts, never a row of data, and the organization's counter row is released
    sooner (decision 0151)."""
    if metric not in COUNTERS or amount < 1:
        raise ValueError(f"consume: a counter of {COUNTERS} and an amount of 1 or more")
    consumed = await _consume(db, plans, org_id, metric, amount, partial=False, only_write=only_write)
    if consumed is None:
        raise await counter_exceeded(db, plans, org_id, metric)
    return consumed.used


async def consume_up_to(db: Session, plans: Plans, org_id: UUID, metric: str, amount: int) -> int:
    """Count as much of ``amount`` as fits (a batch of habit runs: those beyond the limit are
    recorded refused); returns how much was counted, 0 when nothing fits."""
    if metric not in COUNTERS or amount < 0:
        raise ValueError(f"consume_up_to: a counter of {COUNTERS} and an amount of 0 or more")
    if amount == 0:
        return 0
    consumed = await _consume(db, plans, org_id, metric, amount, partial=True)
    return 0 if consumed is None else consumed.granted


async def refund(db: Session, org_id: UUID, metric: str, amount: int) -> None:
    """Give back ``amount`` counted in this transaction for actions that did not happen (a service
    session's: a member's session may not lower a counter)."""
    if amount > 0:
        await db.execute(_REFUND, org_id, counter_period(metric), metric, amount)


async def exceeded(db: Session, plan: Plan, org_id: UUID, metric: str) -> QuotaExceeded:
    """The :class:`QuotaExceeded` of counter ``metric`` as it stands (for a refusal)."""
    row = await db.fetchrow(_PERIOD, org_id, counter_period(metric), metric)
    assert row is not None
    seconds = max(1, math.ceil(float(row["seconds_left"])))
    return QuotaExceeded(metric, plan.limit(metric), int(row["used"]), row["resets_at"], seconds)


async def counter_exceeded(db: Session, plans: Plans, org_id: UUID, metric: str) -> QuotaExceeded:
    """:func:`exceeded` for the organization's plan."""
    return await exceeded(db, await plan_for(db, plans, org_id), org_id, metric)


# --- gauges ------------------------------------------------------------------------------------


async def storage_bytes(
    db: Session, org_id: UUID, *, project_id: UUID | None = None, run_id: UUID | None = None
) -> int:
    """The organization's stored bytes; with ``run_id``, as if that run were ``project_id``'s
    current index."""
    return int(await db.fetchval(_STORAGE, org_id, project_id, run_id))


async def seats(db: Session, org_id: UUID, email: str | None = None) -> tuple[int, bool]:
    """The organization's seats in use, and whether ``email`` already holds one."""
    row = await db.fetchrow(_SEATS, org_id, email or "")
    assert row is not None
    return int(row["seats"]), bool(row["has_seat"])


async def lock_gauge(db: Session, org_id: UUID, metric: str) -> None:
    """Wait for the other transactions adding to gauge ``metric`` of ``org_id`` to end, and hold
    it until this one ends (decision 0167). Reentrant within a transaction."""
    if metric not in GAUGES:
        raise ValueError(f"lock_gauge: a gauge of {GAUGES}")
    await db.execute(_GAUGE_LOCK, org_id, metric)


def _storage_exceeded(limit: int, current: int) -> QuotaExceeded:
    return QuotaExceeded("storage", limit // GB, round(current / GB, 3), None, None)


async def check_storage(
    db: Session,
    plans: Plans,
    org_id: UUID,
    adding: int,
    *,
    project_id: UUID | None = None,
    run_id: UUID | None = None,
) -> int:
    """Refuse (:class:`QuotaExceeded`, no ``Retry-After``) when the organization's storage plus
    ``adding`` bytes would exceed the plan's; returns the storage it would then use. With
    ``run_id``: the storage once that run is ``project_id``'s index (``adding`` is then 0).
    Holds the organization's storage lock until the transaction ends: call it in the action's
    transaction, before the action's writes."""
    await lock_gauge(db, org_id, "storage")
    plan = await plan_for(db, plans, org_id)
    limit = plan.limit("storage")
    current = await storage_bytes(db, org_id, project_id=project_id, run_id=run_id)
    after = current + adding
    if limit != UNLIMITED and after > limit:
        raise _storage_exceeded(limit, current if run_id is None else after)
    await record_gauge(db, org_id, "storage", after, limit)
    return after


async def check_seat(db: Session, plans: Plans, org_id: UUID, email: str) -> None:
    """Refuse (:class:`QuotaExceeded`, no ``Retry-After``) inviting ``email`` when that needs a
    seat the plan does not have (an address that is a member or already invited needs none).
    Holds the organization's seats lock until the transaction ends (call it before the
    invitation's writes)."""
    await lock_gauge(db, org_id, "seats")
    plan = await plan_for(db, plans, org_id)
    limit = plan.limit("seats")
    used, has_seat = await seats(db, org_id, email)
    if has_seat:
        return
    if limit != UNLIMITED and used + 1 > limit:
        raise QuotaExceeded("seats", limit, used, None, None)
    await record_gauge(db, org_id, "seats", used + 1, limit)


async def record_gauge(db: Session, org_id: UUID, metric: str, value: int, limit: int) -> None:
    """Today's value of a gauge (the trend) and, at 80 % or 100 % of its limit, the owners' mail
    unless this month's was queued already."""
    await db.execute(_GAUGE_DAILY, org_id, metric, value)
    if limit <= 0 or value * 100 < limit * THRESHOLDS[0]:
        return
    period = await db.fetchval(_MONTH_START)
    alerted = int(await db.fetchval(_ALERTED, org_id, metric, period))
    if any(alerted < t <= value * 100 / limit for t in THRESHOLDS):
        await jobs.enqueue(db, ALERT_JOB, {"metric": metric}, org_id=org_id)


async def _alert_if_crossed(db: Session, org_id: UUID, metric: str, limit: int, before: int, after: int) -> None:
    """Queue the owners' mail when this consumption crossed a threshold (at most once per
    crossing; the job records it once per period)."""
    if limit <= 0:
        return
    if any(before * 100 < limit * t <= after * 100 for t in THRESHOLDS):
        await jobs.enqueue(db, ALERT_JOB, {"metric": metric}, org_id=org_id)


def as_wire_number(metric: str, value: int) -> float | int:
    """A metric's value in the contract's unit (storage in GB, fractional)."""
    return round(value / GB, 3) if metric == "storage" else value
