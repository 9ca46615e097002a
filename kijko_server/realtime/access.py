"""Whether connections may still listen: one query for all of a process's connections.

A connection was accepted for a token (user, organization, session) and, on the ingestion
channel, a project. Between the handshake and the token's expiry the session may be logged out
or revoked, the user may leave the organization, or lose the right to read the project. Each
API process asks, every ``KIJKO_REALTIME_RECHECK_SECONDS``, the same questions the HTTP path
asks (``kijko.enter``'s live-session and membership checks; the projects policy's readable
rule, ``PROJECTS.readable_sql``) for all its connections at once (decision 0091).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

from databases import Database

from kijko_core.db.session import system_session
from kijko_core.db.sql import Fragment, compose
from kijko_core.permissions import PROJECTS, SEES_EVERYTHING_ROLES

# The projects policy's readable condition, with its parameters bound to each connection's
# columns ($1 organization, $2 user, $3 sees everything): one rule, however it is asked.
_READABLE = Fragment(
    PROJECTS.readable_sql.replace("$1", "c.org_id").replace("$2", "c.user_id").replace("$3", "c.sees_all")
)

_CHECK = compose(
    """
    SELECT c.i,
           EXISTS (SELECT 1 FROM kijko_private.sessions s
                   WHERE s.id = c.session_id AND s.user_id = c.user_id
                     AND s.revoked_at IS NULL AND s.expires_at > now()) AS live,
           c.roles IS NOT NULL AS member,
           (c.project_id IS NULL OR EXISTS (
               SELECT 1 FROM kijko.projects WHERE id = c.project_id AND {readable})) AS readable
    FROM (
        SELECT u.*, r.roles, coalesce(r.roles && $6::text[], false) AS sees_all
        FROM unnest($1::int[], $2::uuid[], $3::uuid[], $4::text[], $5::uuid[])
             AS u(i, user_id, org_id, session_id, project_id)
        LEFT JOIN LATERAL (
            SELECT array_agg(m.role) AS roles FROM kijko.memberships m
            WHERE m.organization_id = u.org_id AND m.user_id = u.user_id
        ) r ON true
    ) c
    """,
    readable=_READABLE,
)


class Verdict(StrEnum):
    OK = "ok"
    SESSION_ENDED = "session_ended"  # logged out, revoked or expired (HTTP: 401)
    NOT_A_MEMBER = "not_a_member"  # removed from the organization (HTTP: 403, decision 0073)
    NO_PROJECT_ACCESS = "no_project_access"


@dataclass(frozen=True)
class Grant:
    """What one connection was accepted for."""

    user_id: UUID
    org_id: UUID
    session_id: str
    project_id: UUID | None


#: Connections checked per statement (arrays of this many rows).
BATCH = 5000


async def recheck(system_db: Database, grants: Sequence[Grant]) -> list[Verdict]:
    """The verdict of each grant, in order."""
    verdicts: list[Verdict] = []
    for start in range(0, len(grants), BATCH):
        batch = grants[start : start + BATCH]
        async with system_session(system_db, readonly=True) as db:
            rows = await db.fetch(
                _CHECK,
                list(range(len(batch))),
                [g.user_id for g in batch],
                [g.org_id for g in batch],
                [g.session_id for g in batch],
                [g.project_id for g in batch],
                SEES_EVERYTHING_ROLES,
            )
        found = {row["i"]: row for row in rows}
        for i in range(len(batch)):
            row = found[i]
            if not row["live"]:
                verdicts.append(Verdict.SESSION_ENDED)
            elif not row["member"]:
                verdicts.append(Verdict.NOT_A_MEMBER)
            elif not row["readable"]:
                verdicts.append(Verdict.NO_PROJECT_ACCESS)
            else:
                verdicts.append(Verdict.OK)
    return verdicts
