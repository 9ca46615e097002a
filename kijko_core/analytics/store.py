"""The analytics table's statements: the bulk write, the summary and the retention delete."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from kijko_core.analytics.events import Event
from kijko_core.auth.principal import TokenIdentity
from kijko_core.db.session import Session, SystemSession

# One statement per batch (decision 0077's INSERT … SELECT FROM unnest), on the system role:
# anonymous rows belong to no tenant. The organization is attached only when the token's
# session is still live and its user a member of the organization — checked here, in the same
# statement, so attribution rests on the database, not on the token alone (decision 0126).
_WRITE = """
INSERT INTO kijko.analytics_events
    (organization_id, user_id, type, occurred_at, persona, session_id, properties)
SELECT CASE WHEN v.live THEN e.org END, CASE WHEN v.live THEN e.usr END,
       e.type, e.occurred, e.persona, e.session, j.props
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
            $7::text[], $8::text[])
     AS e (org, usr, sid, type, occurred, persona, session, props)
CROSS JOIN LATERAL (SELECT e.props::jsonb) AS j (props)
CROSS JOIN LATERAL (
    SELECT e.org IS NOT NULL AND EXISTS (
        SELECT 1 FROM kijko_private.sessions s
        JOIN kijko.memberships m ON m.user_id = s.user_id AND m.organization_id = e.org
        WHERE s.id = e.sid AND s.user_id = e.usr AND s.revoked_at IS NULL
    )
) AS v (live)
-- jsonb writes numbers in full (1e-300 takes 302 characters): a row that would break the
-- column's size check is skipped, so it cannot fail the batch it travels in.
WHERE octet_length(j.props::text) <= 16384
"""


async def write(db: SystemSession, pending: Sequence[tuple[Event, TokenIdentity | None]]) -> int:
    """Store accepted events in one statement; returns how many rows were written."""
    if not pending:
        return 0
    columns: list[list[Any]] = [[] for _ in range(8)]
    for event, who in pending:
        row = (
            who.org_id if who else None,
            who.user_id if who else None,
            who.session_id if who else None,
            event.type.value,
            event.occurred_at,
            event.persona,
            event.session_id,
            event.properties_json,
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    status = await db.execute(_WRITE, *columns)
    return int(status.rsplit(" ", 1)[-1])


# Days are UTC calendar days: the period is today and the n - 1 days before it, every day
# present (zero when empty), oldest first. One statement, so every number is from one snapshot.
_SUMMARY = """
WITH b AS (
    SELECT d.first, d.last,
           d.first::timestamp AT TIME ZONE 'UTC' AS since,
           (d.last + 1)::timestamp AT TIME ZONE 'UTC' AS until
    FROM (SELECT (now() AT TIME ZONE 'UTC')::date - ($1::int - 1) AS first,
                 (now() AT TIME ZONE 'UTC')::date AS last) AS d
), e AS (
    SELECT a.type, a.persona, a.session_id, a.user_id, a.properties ->> 'action' AS action,
           (a.occurred_at AT TIME ZONE 'UTC')::date AS day
    FROM kijko.analytics_events a, b
    WHERE a.organization_id = (SELECT kijko.current_org_id())
      AND a.occurred_at >= b.since AND a.occurred_at < b.until
)
SELECT b.first, b.last,
    (SELECT count(*) FROM e) AS total,
    (SELECT count(DISTINCT session_id) FROM e) AS sessions,
    (SELECT count(DISTINCT user_id) FROM e) AS users,
    (SELECT coalesce(jsonb_object_agg(t.type, t.n), '{}') FROM
        (SELECT type, count(*) AS n FROM e GROUP BY type) AS t) AS by_type,
    (SELECT jsonb_agg(jsonb_build_object('date', to_char(g.day, 'YYYY-MM-DD'), 'count', coalesce(c.n, 0))
                      ORDER BY g.day)
     FROM generate_series(b.first, b.last, interval '1 day') AS g (day)
     LEFT JOIN (SELECT day, count(*) AS n FROM e GROUP BY day) AS c ON c.day = g.day::date) AS by_day,
    (SELECT coalesce(jsonb_object_agg(coalesce(p.persona, 'unknown'), p.n), '{}') FROM
        (SELECT persona, count(*) AS n FROM e GROUP BY persona) AS p) AS by_persona,
    (SELECT coalesce(jsonb_object_agg(c.action, c.n), '{}') FROM
        (SELECT action, count(*) AS n FROM e
         WHERE type = 'conversion_signal' AND action IS NOT NULL GROUP BY action) AS c) AS conversions
FROM b
"""


async def summary(db: Session, days: int) -> asyncpg.Record:
    """The aggregates of the session's organization over the last ``days`` UTC days."""
    row = await db.fetchrow(_SUMMARY, days)
    assert row is not None  # one row from b, always
    return row


_DELETE_EXPIRED = """
DELETE FROM kijko.analytics_events WHERE id IN (
    SELECT id FROM kijko.analytics_events
    WHERE received_at < now() - make_interval(days => $1)
    ORDER BY received_at
    LIMIT $2
)
"""


async def delete_expired(db: SystemSession, *, retention_days: int, limit: int) -> int:
    """Delete up to ``limit`` events received more than ``retention_days`` ago."""
    status = await db.execute(_DELETE_EXPIRED, retention_days, limit)
    return int(status.rsplit(" ", 1)[-1])
