"""Accounts and sessions shared by every identity provider (system-session operations)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg

from kijko_core.auth.principal import TokenIdentity
from kijko_core.db.session import SystemSession
from kijko_core.errors import Conflict


class AccountExists(Conflict):
    code = "ACCOUNT_EXISTS"
    default_message = "An account with this email already exists"


async def create_account(
    db: SystemSession,
    *,
    email: str,
    first_name: str,
    last_name: str,
    user_id: UUID | None = None,
) -> tuple[UUID, UUID]:
    """Create a user, their organization and the owner membership; returns (user, org)."""
    try:
        user = await db.fetchval(
            "INSERT INTO kijko_private.users (id, email, first_name, last_name)"
            " VALUES (COALESCE($1, gen_random_uuid()), $2, $3, $4) RETURNING id",
            user_id,
            email,
            first_name,
            last_name,
        )
    except asyncpg.UniqueViolationError:
        raise AccountExists(field="email") from None
    org = await db.fetchval(
        "INSERT INTO kijko.organizations (name) VALUES ($1) RETURNING id",
        f"{first_name} {last_name}".strip()[:200] or email,
    )
    await db.execute(
        "INSERT INTO kijko.memberships (organization_id, user_id, role) VALUES ($1, $2, 'owner')",
        org,
        user,
    )
    return user, org


async def find_user_by_email(db: SystemSession, email: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT u.id, c.password_hash FROM kijko_private.users u"
        " LEFT JOIN kijko_private.password_credentials c ON c.user_id = u.id"
        " WHERE lower(u.email) = lower($1)",
        email,
    )


async def default_organization(db: SystemSession, user_id: UUID) -> UUID | None:
    """The organization a fresh login lands in: the oldest membership."""
    return await db.fetchval(
        "SELECT organization_id FROM kijko.memberships WHERE user_id = $1"
        " ORDER BY created_at, organization_id LIMIT 1",
        user_id,
    )


async def open_session(
    db: SystemSession,
    *,
    session_id: str,
    user_id: UUID,
    org_id: UUID,
    provider: str,
    expires_at: datetime,
) -> None:
    await db.execute(
        "INSERT INTO kijko_private.sessions (id, user_id, organization_id, provider, expires_at)"
        " VALUES ($1, $2, $3, $4, $5)"
        # An identity-provider session seen again (a refresh) lives as long as its newest
        # tokens; a revoked one stays revoked.
        " ON CONFLICT (id) DO UPDATE"
        " SET expires_at = GREATEST(kijko_private.sessions.expires_at, EXCLUDED.expires_at)"
        " WHERE kijko_private.sessions.user_id = EXCLUDED.user_id",
        session_id,
        user_id,
        org_id,
        provider,
        expires_at,
    )


async def revoke_session(db: SystemSession, identity: TokenIdentity, *, provider: str) -> None:
    """Revoke a session (and so its refresh family and access tokens); recorded even if this
    process never saw it open, and kept at least until its access tokens expire."""
    await db.execute(
        "INSERT INTO kijko_private.sessions"
        " (id, user_id, organization_id, provider, expires_at, revoked_at)"
        " VALUES ($1, $2, $3, $4, $5, now())"
        " ON CONFLICT (id) DO UPDATE SET revoked_at = COALESCE(kijko_private.sessions.revoked_at, now())"
        " WHERE kijko_private.sessions.user_id = EXCLUDED.user_id",
        identity.session_id,
        identity.user_id,
        identity.org_id,
        provider,
        max(identity.expires_at, datetime.now(UTC) + timedelta(seconds=60)),
    )
