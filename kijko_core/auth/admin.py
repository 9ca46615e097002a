"""What an operator does to accounts outside any tenant context (``kijko users``, ``kijko
sessions``): system-session operations, each a function a library user can call too.

Users are named by email or id, as an operator types them. Every function takes a
``SystemSession``: the caller decides the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from kijko_core.auth.principal import OrgRole
from kijko_core.db.session import SystemSession
from kijko_core.errors import Conflict, NotFound

ROLES = tuple(role.value for role in OrgRole)  # the choices `kijko users set-role` offers


class UnknownUser(NotFound):
    code = "USER_NOT_FOUND"
    default_message = "No user with that email or id"


class UnknownSession(NotFound):
    code = "SESSION_NOT_FOUND"
    default_message = "No user or session with that email or id"


class MembershipNeeded(NotFound):
    code = "MEMBERSHIP_NOT_FOUND"
    default_message = "The user is not a member of that organization"


class OrganizationAmbiguous(Conflict):
    code = "ORGANIZATION_AMBIGUOUS"
    default_message = "The user belongs to several organizations: name one with --org"


class LastOwner(Conflict):
    code = "LAST_OWNER"
    default_message = "That would leave the organization without an owner"


@dataclass(frozen=True)
class Membership:
    user_id: UUID
    email: str
    first_name: str
    last_name: str
    org_id: UUID | None
    role: str | None
    created_at: datetime


def _as_uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


async def find_user(db: SystemSession, ref: str) -> UUID:
    """The id of the user with this email (the login rule: any case, any accents) or id;
    ``UnknownUser`` otherwise."""
    user_id = _as_uuid(ref)
    found = await db.fetchval(
        "SELECT id FROM kijko_private.users"
        " WHERE id = $1 OR kijko_private.email_key(email) = kijko_private.email_key($2)",
        user_id,
        ref,
    )
    if found is None:
        raise UnknownUser()
    return found  # type: ignore[no-any-return]


async def list_memberships(db: SystemSession, org_id: UUID | None = None) -> list[Membership]:
    """Every user with each of their memberships (a user without one appears once, with none),
    by email; only one organization's members when ``org_id`` is given."""
    rows = await db.fetch(
        "SELECT u.id, u.email, u.first_name, u.last_name, u.created_at,"
        "       m.organization_id, m.role"
        " FROM kijko_private.users u"
        " LEFT JOIN kijko.memberships m ON m.user_id = u.id"
        " WHERE $1::uuid IS NULL OR m.organization_id = $1"
        " ORDER BY lower(u.email), u.id, m.created_at, m.organization_id",
        org_id,
    )
    return [
        Membership(
            r["id"],
            r["email"],
            r["first_name"],
            r["last_name"],
            r["organization_id"],
            r["role"],
            r["created_at"],
        )
        for r in rows
    ]


async def set_role(db: SystemSession, user_id: UUID, role: str, org_id: UUID | None = None) -> UUID:
    """Change the user's role in ``org_id`` (or in their only organization); returns that
    organization. An organization always keeps an owner."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    memberships = await db.fetch(
        "SELECT organization_id, role FROM kijko.memberships WHERE user_id = $1"
        " AND ($2::uuid IS NULL OR organization_id = $2) FOR UPDATE",
        user_id,
        org_id,
    )
    if not memberships:
        raise MembershipNeeded()
    if len(memberships) > 1:
        raise OrganizationAmbiguous()
    org, current = memberships[0]["organization_id"], memberships[0]["role"]
    if current == "owner" and role != "owner":
        # Lock the organization's owners so two demotions cannot both see the other owner.
        others = await db.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM kijko.memberships WHERE organization_id = $1"
            " AND role = 'owner' AND user_id <> $2 FOR UPDATE) AS owners",
            org,
            user_id,
        )
        if others == 0:
            raise LastOwner()
    await db.execute(
        "UPDATE kijko.memberships SET role = $3 WHERE organization_id = $1 AND user_id = $2",
        org,
        user_id,
        role,
    )
    return org  # type: ignore[no-any-return]


async def set_password(db: SystemSession, user_id: UUID, password_hash: str) -> int:
    """Replace the user's password and end all their sessions (a reset signs them out
    everywhere); returns how many sessions were revoked."""
    await db.execute(
        "INSERT INTO kijko_private.password_credentials (user_id, password_hash) VALUES ($1, $2)"
        " ON CONFLICT (user_id) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
        " updated_at = now()",
        user_id,
        password_hash,
    )
    return await revoke_user_sessions(db, user_id)


async def revoke_user_sessions(db: SystemSession, user_id: UUID) -> int:
    """Revoke every live session of the user: their refresh tokens stop working and their
    access tokens are refused on the next request. Returns how many were revoked."""
    status = await db.execute(
        "UPDATE kijko_private.sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
    )
    return int(status.split()[-1])


async def revoke_sessions(db: SystemSession, ref: str) -> int:
    """``ref`` names a user (email or id: all their sessions) or one session (its id)."""
    try:
        user_id = await find_user(db, ref)
    except UnknownUser:
        pass
    else:
        return await revoke_user_sessions(db, user_id)
    exists = await db.fetchval(
        "WITH revoked AS (UPDATE kijko_private.sessions SET revoked_at = COALESCE(revoked_at, now())"
        " WHERE id = $1 RETURNING revoked_at = now() AS now_revoked)"
        " SELECT now_revoked FROM revoked",
        ref,
    )
    if exists is None:
        raise UnknownSession()
    return 1 if exists else 0
