"""What projects and members share: who is acting, and announcing member changes (the
``events`` port) with the contract's ProjectUser payload, to whoever may read the project."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from kijko_core import events
from kijko_core.db.session import Session, TenantSession
from kijko_core.members import repository
from kijko_core.members.models import notifications
from kijko_core.members.repository import MemberRecord
from kijko_core.permissions import SEES_EVERYTHING_ROLES
from kijko_core.projects.models import Project

#: The ProjectUser role (contract §3.1, the share dialog's) of each project role.
PROJECT_USER_ROLES = {
    "admin": "admin",
    "manager": "admin",
    "developer": "editor",
    "viewer": "viewer",
    "auditor": "viewer",
}


async def caller_profile(db: Session) -> dict[str, Any]:
    """The id, email and name of the user in the session's context."""
    row = await db.fetchrow("SELECT id, email, first_name, last_name FROM kijko.current_user_profile()")
    assert row is not None  # kijko.enter verified the user
    return {"id": row["id"], "email": row["email"], "name": f"{row['first_name']} {row['last_name']}".strip()}


def project_user(member: MemberRecord, project: Project) -> dict[str, Any]:
    """The contract's ProjectUser (§3.1, snake_case) of a member."""
    role = PROJECT_USER_ROLES[member.role]
    if member.role == "admin" and member.user_id is not None and member.user_id == project.user_id:
        role = "owner"  # the creator, while still an admin of their project
    return {
        "id": str(member.id),
        "project_id": str(member.project_id),
        "user_id": "" if member.user_id is None else str(member.user_id),
        "email": member.email,
        "name": member.name or member.email,
        "role": role,
        "added_at": member.invited_at.isoformat(),
        "added_by": "" if member.invited_by is None else str(member.invited_by),
        "avatar_url": None,
    }


async def audience(db: Session, project: Project) -> list[str]:
    """The rooms of whoever may read ``project`` now (decision 0092): a shared project's
    organization room; for a private one, the ``user:<id>`` rooms of its accepted members and
    of the organization's owners and admins."""
    if project.privacy == "shared":
        return [f"org:{project.organization_id}"]
    rows = await db.fetch(
        "SELECT user_id FROM kijko.project_members"
        " WHERE organization_id = $1 AND project_id = $2 AND user_id IS NOT NULL"
        " UNION SELECT user_id FROM kijko.memberships WHERE organization_id = $1 AND role = ANY($3::text[])"
        " ORDER BY user_id",
        project.organization_id,
        project.id,
        SEES_EVERYTHING_ROLES,
    )
    return [f"user:{row['user_id']}" for row in rows]


async def announce(
    db: Session, kind: str, member: MemberRecord, project: Project, actor: dict[str, Any], description: str
) -> None:
    """``project_user:<kind>`` and ``activity:new`` to whoever may read the project, after
    commit (the audience as it is once this change is made: a removed member is not in it)."""
    activity = {
        "id": str(uuid.uuid4()),
        "type": "permission",
        "user": {"id": str(actor["id"]), "name": actor["name"], "email": actor["email"]},
        "description": description,
        "timestamp": datetime.now(UTC).isoformat(),
        "projectId": str(project.id),
    }
    payload = project_user(member, project)
    for room in await audience(db, project):
        events.publish(db, room=room, event=f"project_user:{kind}", data=payload)
        events.publish(db, room=room, event="activity:new", data=activity)


async def add_creator(db: TenantSession, project: Project) -> MemberRecord:
    """The creator of a new project becomes its admin member (replacing decision 0013)."""
    me = await caller_profile(db)
    member = await repository.insert(
        db,
        project.organization_id,
        project.id,
        email=me["email"],
        name=me["name"] or None,
        role="admin",
        notify=notifications("real-time"),
        invited_by=db.principal.user_id,
        user_id=db.principal.user_id,
    )
    payload = project_user(member, project)
    for room in await audience(db, project):
        events.publish(db, room=room, event="project_user:added", data=payload)
    return member
