"""Every SQL statement of project members and invitations run in a tenant session (the
cross-tenant ones of accepting an invitation are in ``invitations.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from kijko_core.db import sql
from kijko_core.db.session import Session
from kijko_core.members.models import MemberExists, ProjectMember


class MemberRecord(BaseModel):
    """A row of ``kijko.project_members``."""

    id: UUID
    organization_id: UUID
    project_id: UUID
    user_id: UUID | None
    email: str
    name: str | None
    role: str
    notify_on_ingestion: bool
    notify_on_error: bool
    notify_on_team_changes: bool
    invited_by: UUID | None
    invited_at: datetime
    accepted_at: datetime | None
    last_active_at: datetime | None
    updated_at: datetime

    def wire(self) -> ProjectMember:
        return ProjectMember.model_validate(self.model_dump())


class InvitationRecord(BaseModel):
    """A row of ``kijko.project_invitations`` (its token only as a hash)."""

    id: UUID
    organization_id: UUID
    project_id: UUID
    member_id: UUID
    token_hash: bytes
    invited_by: UUID | None
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    sent_count: int
    last_sent_at: datetime
    resend_window_started_at: datetime | None
    resends_in_window: int


MEMBERS = sql.Table("kijko.project_members", MemberRecord)
INVITATIONS = sql.Table("kijko.project_invitations", InvitationRecord)

_LIST = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE organization_id = $1 AND project_id = $2"
    "\n  AND (NOT $3::boolean OR accepted_at IS NULL)\nORDER BY invited_at, id",
    columns=MEMBERS.select_list,
    table=MEMBERS,
)
_GET = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE organization_id = $1 AND project_id = $2 AND id = $3\nFOR UPDATE",
    columns=MEMBERS.select_list,
    table=MEMBERS,
)
_INSERT = sql.compose(
    "INSERT INTO {table} (organization_id, project_id, user_id, email, name, role, notify_on_ingestion,"
    " notify_on_error, notify_on_team_changes, invited_by, accepted_at)"
    "\nVALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CASE WHEN $3::uuid IS NULL THEN NULL ELSE now() END)"
    "\nRETURNING {columns}",
    table=MEMBERS,
    columns=MEMBERS.select_list,
)
UPDATABLE = ("role", "notify_on_ingestion", "notify_on_error", "notify_on_team_changes")
_UPDATE = sql.Update(
    MEMBERS, UPDATABLE, where=sql.Fragment("organization_id = $1 AND project_id = $2 AND id = $3"), leading=3
)
_DELETE = sql.compose(
    "DELETE FROM {table} WHERE organization_id = $1 AND project_id = $2 AND id = $3 RETURNING {columns}",
    table=MEMBERS,
    columns=MEMBERS.select_list,
)

_INSERT_INVITATION = sql.compose(
    "INSERT INTO {table} (organization_id, project_id, member_id, token_hash, invited_by, expires_at)"
    "\nVALUES ($1, $2, $3, $4, $5, now() + make_interval(hours => $6))\nRETURNING {columns}",
    table=INVITATIONS,
    columns=INVITATIONS.select_list,
)
_INVITATION_OF = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE organization_id = $1 AND member_id = $2\nFOR UPDATE",
    table=INVITATIONS,
    columns=INVITATIONS.select_list,
)
# A resend: a new token (the old hash is gone, so the old link no longer opens anything), a
# fresh expiry, and the count of resends in the current hour (a new hour starts a new window).
_RESEND = sql.compose(
    "UPDATE {table} SET token_hash = $3, expires_at = now() + make_interval(hours => $4),"
    "\n    sent_count = sent_count + 1, last_sent_at = now(),"
    "\n    resend_window_started_at = CASE WHEN resend_window_started_at IS NULL"
    "\n        OR resend_window_started_at <= now() - interval '1 hour'"
    "\n        THEN now() ELSE resend_window_started_at END,"
    "\n    resends_in_window = CASE WHEN resend_window_started_at IS NULL"
    "\n        OR resend_window_started_at <= now() - interval '1 hour'"
    "\n        THEN 1 ELSE resends_in_window + 1 END"
    "\nWHERE organization_id = $1 AND id = $2\nRETURNING {columns}",
    table=INVITATIONS,
    columns=INVITATIONS.select_list,
)
# Seconds until another resend is allowed: 0 when the window is over or has room left.
_RESEND_WAIT = sql.compose(
    "SELECT CASE WHEN resend_window_started_at IS NOT NULL"
    "\n    AND resend_window_started_at > now() - interval '1 hour' AND resends_in_window >= $3"
    "\n    THEN ceil(extract(epoch FROM resend_window_started_at + interval '1 hour' - now()))::int"
    "\n    ELSE 0 END"
    "\nFROM {table}\nWHERE organization_id = $1 AND id = $2",
    table=INVITATIONS,
)

_EXISTS = {
    "project_members_email_key": lambda: MemberExists(field="email"),
    "project_members_user_key": lambda: MemberExists(field="email"),
}


async def list_members(
    db: Session, org_id: UUID, project_id: UUID, *, pending_only: bool = False
) -> list[MemberRecord]:
    return MEMBERS.many(await db.fetch(_LIST, org_id, project_id, pending_only))


async def get_for_update(db: Session, org_id: UUID, project_id: UUID, member_id: UUID) -> MemberRecord | None:
    return MEMBERS.maybe(await db.fetchrow(_GET, org_id, project_id, member_id))


async def insert(
    db: Session,
    org_id: UUID,
    project_id: UUID,
    *,
    email: str,
    role: str,
    notify: dict[str, bool],
    invited_by: UUID | None,
    user_id: UUID | None = None,
    name: str | None = None,
) -> MemberRecord:
    """A pending member (no user), or with ``user_id`` an accepted one (the creator)."""
    with sql.unique_as(_EXISTS):
        row = await db.fetchrow(
            _INSERT,
            org_id,
            project_id,
            user_id,
            email,
            name,
            role,
            notify["notify_on_ingestion"],
            notify["notify_on_error"],
            notify["notify_on_team_changes"],
            invited_by,
        )
    assert row is not None
    return MEMBERS.one(row)


async def update(
    db: Session, org_id: UUID, project_id: UUID, member_id: UUID, changes: dict[str, Any]
) -> MemberRecord | None:
    return MEMBERS.maybe(await db.fetchrow(_UPDATE.statement, org_id, project_id, member_id, *_UPDATE.args(changes)))


async def delete(db: Session, org_id: UUID, project_id: UUID, member_id: UUID) -> MemberRecord | None:
    return MEMBERS.maybe(await db.fetchrow(_DELETE, org_id, project_id, member_id))


async def insert_invitation(
    db: Session,
    member: MemberRecord,
    token_hash: bytes,
    invited_by: UUID | None,
    ttl_hours: int,
) -> InvitationRecord:
    row = await db.fetchrow(
        _INSERT_INVITATION, member.organization_id, member.project_id, member.id, token_hash, invited_by, ttl_hours
    )
    assert row is not None
    return INVITATIONS.one(row)


async def invitation_of(db: Session, org_id: UUID, member_id: UUID) -> InvitationRecord | None:
    return INVITATIONS.maybe(await db.fetchrow(_INVITATION_OF, org_id, member_id))


async def resend_wait(db: Session, invitation: InvitationRecord, per_hour: int) -> int:
    """Seconds until ``invitation`` may be sent again (0: now)."""
    return int(await db.fetchval(_RESEND_WAIT, invitation.organization_id, invitation.id, per_hour) or 0)


async def renew(db: Session, invitation: InvitationRecord, token_hash: bytes, ttl_hours: int) -> InvitationRecord:
    row = await db.fetchrow(_RESEND, invitation.organization_id, invitation.id, token_hash, ttl_hours)
    assert row is not None
    return INVITATIONS.one(row)
