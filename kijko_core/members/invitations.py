"""The invitation link: looking a token up (public) and accepting it (the invitee).

Both cross organizations: the invitation lives in the inviting organization, the invitee is
anonymous (preview) or signed in to another organization (accept). They run in a **system
session**, like signup, as two named operations that act only on the one invitation whose
token the caller holds (decision 0059):

- :func:`preview` reads the project and organization names, the inviter's name and the
  expiry — nothing else;
- :func:`accept` checks the caller's email against the invitation's (case-insensitively),
  then adds the caller to the organization if needed (org role ``member`` for project roles
  admin/manager/developer, ``viewer`` for viewer/auditor; an existing membership is left as
  it is) and marks the member accepted, in one transaction with the invitation row locked, so
  of two accepts of one token exactly one succeeds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from kijko_core.crypto import digest_secret
from kijko_core.db import sql
from kijko_core.db.session import SystemSession
from kijko_core.members.common import announce
from kijko_core.members.models import (
    AcceptedInvitation,
    AlreadyAccepted,
    InvitationEmailMismatch,
    InvitationExpired,
    InvitationNotFound,
    InvitationPreview,
    Inviter,
    MemberExists,
)
from kijko_core.members.repository import MEMBERS
from kijko_core.projects.repository import TABLE as PROJECTS
from kijko_core.reflexes import catalogue

#: The organization role an accepted invitee gets when not yet in the organization.
ORG_ROLE_FOR = {"admin": "member", "manager": "member", "developer": "member", "viewer": "viewer", "auditor": "viewer"}

_PREVIEW = sql.compose(
    "SELECT p.name AS project_name, o.name AS organization_name,"
    "\n    btrim(u.first_name || ' ' || u.last_name) AS inviter_name,"
    "\n    i.expires_at, i.expires_at <= now() AS expired, i.accepted_at"
    "\nFROM kijko.project_invitations i"
    "\nJOIN kijko.projects p ON p.organization_id = i.organization_id AND p.id = i.project_id"
    "\nJOIN kijko.organizations o ON o.id = i.organization_id"
    "\nLEFT JOIN kijko_private.users u ON u.id = i.invited_by"
    "\nWHERE i.token_hash = $1",
)
# The member is locked first, then (below) the invitation: the order in which cancelling,
# resending and removing take them (the member row, then its invitation), so an accept racing
# one of them waits instead of deadlocking.
_MEMBER_OF = sql.compose(
    "SELECT organization_id, member_id FROM kijko.project_invitations WHERE token_hash = $1",
)
_LOCK_MEMBER = sql.compose(
    "SELECT 1 FROM {members} WHERE organization_id = $1 AND id = $2\nFOR UPDATE",
    members=MEMBERS,
)
# Locks the invitation and its member: a second accept of the same token waits here, then
# finds it accepted. Read by the token again: a resend may have replaced it meanwhile.
_LOCK = sql.compose(
    "SELECT i.id, i.organization_id, i.project_id, i.member_id, i.accepted_at,"
    "\n    i.expires_at <= now() AS expired, m.email, m.role,"
    "\n    lower(m.email) = lower($2) AS same_email"
    "\nFROM kijko.project_invitations i"
    "\nJOIN kijko.project_members m ON m.organization_id = i.organization_id AND m.id = i.member_id"
    "\nWHERE i.token_hash = $1\nFOR UPDATE OF i, m",
)
_JOIN_ORGANIZATION = sql.compose(
    "INSERT INTO kijko.memberships (organization_id, user_id, role) VALUES ($1, $2, $3)"
    "\nON CONFLICT (organization_id, user_id) DO NOTHING",
)
_ALREADY_MEMBER = sql.compose(
    "SELECT EXISTS (SELECT 1 FROM {members} WHERE organization_id = $1 AND project_id = $2 AND user_id = $3)",
    members=MEMBERS,
)
_ACCEPT_MEMBER = sql.compose(
    "UPDATE {members} SET user_id = $3, name = $4, accepted_at = now(), updated_at = now()"
    "\nWHERE organization_id = $1 AND id = $2\nRETURNING {columns}",
    members=MEMBERS,
    columns=MEMBERS.select_list,
)
_ACCEPT_INVITATION = sql.compose(
    "UPDATE kijko.project_invitations SET accepted_at = now() WHERE organization_id = $1 AND id = $2",
)
_PROJECT = sql.compose(
    "SELECT {columns}\nFROM {projects}\nWHERE organization_id = $1 AND id = $2",
    columns=PROJECTS.select_list,
    projects=PROJECTS,
)


async def preview(db: SystemSession, token: str) -> InvitationPreview:
    row = await db.fetchrow(_PREVIEW, digest_secret(token))
    if row is None:
        raise InvitationNotFound()
    if row["accepted_at"] is not None:
        raise AlreadyAccepted()
    if row["expired"]:
        raise InvitationExpired()
    expires_at: datetime = row["expires_at"]
    return InvitationPreview(
        project_name=row["project_name"],
        organization_name=row["organization_name"],
        inviter=Inviter(name=row["inviter_name"] or None),
        expires_at=expires_at,
    )


async def accept(db: SystemSession, caller: dict[str, Any], token: str) -> AcceptedInvitation:
    """``caller``: the id, email and name of the signed-in user (from their tenant session)."""
    token_hash = digest_secret(token)
    found = await db.fetchrow(_MEMBER_OF, token_hash)
    if found is None:
        raise InvitationNotFound()
    await db.execute(_LOCK_MEMBER, found["organization_id"], found["member_id"])
    row = await db.fetchrow(_LOCK, token_hash, caller["email"])
    if row is None:
        raise InvitationNotFound()
    # The address first: whoever else holds the link learns nothing about its state.
    if not row["same_email"]:
        raise InvitationEmailMismatch()
    if row["accepted_at"] is not None:
        raise AlreadyAccepted()
    if row["expired"]:
        raise InvitationExpired()
    org_id: UUID = row["organization_id"]
    user_id: UUID = caller["id"]
    if await db.fetchval(_ALREADY_MEMBER, org_id, row["project_id"], user_id):
        raise MemberExists("You are already a member of this project")
    await db.execute(_JOIN_ORGANIZATION, org_id, user_id, ORG_ROLE_FOR[row["role"]])
    accepted = await db.fetchrow(_ACCEPT_MEMBER, org_id, row["member_id"], user_id, caller["name"] or None)
    project_row = await db.fetchrow(_PROJECT, org_id, row["project_id"])
    assert accepted is not None and project_row is not None  # both locked or referenced above
    member = MEMBERS.one(accepted)
    await db.execute(_ACCEPT_INVITATION, org_id, row["id"])
    project = PROJECTS.one(project_row)
    who = caller["name"] or caller["email"]
    await announce(db, "updated", member, project, caller, f"{who} accepted the invitation as {member.role}")
    await catalogue.emit(
        db,
        "member.added",
        {"projectId": str(project.id), "userId": str(user_id), "role": str(member.role)},
        source=str(project.id),
        org_id=org_id,
    )
    return AcceptedInvitation(project_id=project.id, organization_id=org_id, member=member.wire())
