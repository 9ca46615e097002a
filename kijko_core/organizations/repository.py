"""Every SQL statement of organizations. Members come through the SECURITY DEFINER functions of
migration 0012 (profiles live in kijko_private; membership writes carry their own rules)."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from kijko_core.db import sql
from kijko_core.db.session import SystemSession, TenantSession
from kijko_core.errors import Forbidden, ValidationFailed
from kijko_core.organizations.models import LastOwner, Member, MemberNotFound, UserSearchResult

_ORGANIZATION = "SELECT id, name, created_at, updated_at FROM kijko.organizations WHERE id = $1"
_RENAME = (
    "UPDATE kijko.organizations SET name = $2, updated_at = now() WHERE id = $1"
    " RETURNING id, name, created_at, updated_at"
)
# Cross-tenant on purpose, on the system role (decision 0071): the organizations of one user.
_ORGANIZATIONS_OF = (
    "SELECT o.id, o.name, o.created_at, o.updated_at, m.role, m.created_at AS joined_at"
    " FROM kijko.memberships m JOIN kijko.organizations o ON o.id = m.organization_id"
    " WHERE m.user_id = $1 ORDER BY m.created_at, o.id"
)

_MEMBER_COLUMNS = sql.Fragment("user_id AS id, email, first_name, last_name, role, joined_at")
_MEMBERS = sql.compose(
    "SELECT {columns} FROM kijko.organization_members() ORDER BY joined_at, user_id", columns=_MEMBER_COLUMNS
)
_MEMBER = sql.compose("SELECT {columns} FROM kijko.organization_members() WHERE user_id = $1", columns=_MEMBER_COLUMNS)
_CHANGE_ROLE = sql.compose("SELECT {columns} FROM kijko.change_member_role($1, $2)", columns=_MEMBER_COLUMNS)
_REMOVE = "SELECT kijko.remove_member($1)"
_HAS_OWNER = "SELECT EXISTS (SELECT 1 FROM kijko.memberships WHERE organization_id = $1 AND role = 'owner')"
# $1 an ILIKE pattern (kijko_core.wire.like_pattern), $2 the limit.
_SEARCH = (
    "SELECT user_id AS id, email, btrim(first_name || ' ' || last_name) AS name"
    " FROM kijko.organization_members()"
    " WHERE email ILIKE $1 ESCAPE '\\' OR (first_name || ' ' || last_name) ILIKE $1 ESCAPE '\\'"
    " ORDER BY lower(first_name), lower(last_name), lower(email), user_id LIMIT $2"
)

# What the member functions raise (migration 0012).
_FORBIDDEN, _NO_MEMBER, _LAST_OWNER, _BAD_ROLE = "KJ403", "KJ404", "KJ409", "22023"


def _member_error(error: asyncpg.PostgresError) -> Exception:
    if error.sqlstate == _FORBIDDEN:  # the role changed since the service asked (a race)
        return Forbidden("Your role does not allow you to change this member")
    if error.sqlstate == _NO_MEMBER:
        return MemberNotFound()
    if error.sqlstate == _LAST_OWNER:
        return LastOwner()
    if error.sqlstate == _BAD_ROLE:
        return ValidationFailed("role: not a role", field="role")
    return error


async def organization(db: TenantSession, org_id: UUID) -> asyncpg.Record | None:
    return await db.fetchrow(_ORGANIZATION, org_id)


async def rename(db: TenantSession, org_id: UUID, name: str) -> asyncpg.Record | None:
    return await db.fetchrow(_RENAME, org_id, name)


async def organizations_of(db: SystemSession, user_id: UUID) -> list[asyncpg.Record]:
    return await db.fetch(_ORGANIZATIONS_OF, user_id)


async def members(db: TenantSession) -> list[Member]:
    return [Member.model_validate(dict(row)) for row in await db.fetch(_MEMBERS)]


async def member(db: TenantSession, user_id: UUID) -> Member | None:
    row = await db.fetchrow(_MEMBER, user_id)
    return None if row is None else Member.model_validate(dict(row))


async def has_owner(db: TenantSession, org_id: UUID) -> bool:
    return bool(await db.fetchval(_HAS_OWNER, org_id))


async def change_role(db: TenantSession, user_id: UUID, role: str) -> Member:
    try:
        row = await db.fetchrow(_CHANGE_ROLE, user_id, role)
    except asyncpg.PostgresError as error:
        raise _member_error(error) from None
    if row is None:  # the function checked the member exists, under its lock
        raise MemberNotFound()
    return Member.model_validate(dict(row))


async def remove(db: TenantSession, user_id: UUID) -> None:
    try:
        await db.execute(_REMOVE, user_id)
    except asyncpg.PostgresError as error:
        raise _member_error(error) from None


async def search(db: TenantSession, pattern: str, limit: int) -> list[UserSearchResult]:
    return [UserSearchResult.model_validate(dict(row)) for row in await db.fetch(_SEARCH, pattern, limit)]
