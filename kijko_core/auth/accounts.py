"""Accounts and sessions shared by every identity provider (system-session operations)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
from databases import Database

from kijko_core.auth.principal import TokenIdentity
from kijko_core.db.session import SystemSession, system_session
from kijko_core.errors import Conflict, InvalidToken


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
    # The expression of the unique index users_email_key (kijko_core/auth/emails.py).
    return await db.fetchrow(
        "SELECT u.id, c.password_hash FROM kijko_private.users u"
        " LEFT JOIN kijko_private.password_credentials c ON c.user_id = u.id"
        " WHERE kijko_private.email_key(u.email) = kijko_private.email_key($1)",
        email,
    )


async def default_organization(db: SystemSession, user_id: UUID) -> UUID | None:
    """The organization a fresh login lands in: the oldest membership."""
    return await db.fetchval(
        "SELECT organization_id FROM kijko.memberships WHERE user_id = $1 ORDER BY created_at, organization_id LIMIT 1",
        user_id,
    )


async def require_live_session(db: SystemSession, identity: TokenIdentity, *, lock: bool = False) -> None:
    """The check ``kijko.enter`` makes first, for the routes that act on the caller's session
    outside any organization (listing their organizations, switching): a session Kijko knows,
    of that very user, unexpired and unrevoked, or ``InvalidToken`` (401). ``lock`` holds the
    session row until the transaction ends (a switch and a refresh do not interleave)."""
    live = await db.fetchval(_LOCKED_LIVE_SESSION if lock else _LIVE_SESSION, identity.session_id, identity.user_id)
    if not live:
        raise InvalidToken()


_LIVE_SESSION = (
    "SELECT true FROM kijko_private.sessions s"
    " WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND s.expires_at > now()"
)
_LOCKED_LIVE_SESSION = _LIVE_SESSION + " FOR UPDATE"


async def is_member(db: SystemSession, user_id: UUID, org_id: UUID) -> bool:
    """Whether ``user_id`` belongs to ``org_id``; the membership row stays share-locked until the
    transaction ends, so a removal cannot slip in before tokens for it are issued."""
    return bool(
        await db.fetchval(
            "SELECT true FROM kijko.memberships WHERE organization_id = $1 AND user_id = $2 FOR KEY SHARE",
            org_id,
            user_id,
        )
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
    process never saw it open, and kept at least until its access tokens expire. A token of an
    erased user is invalid (401): its session can no longer be recorded, nor needs to be, since
    no route accepts that user any more."""
    try:
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
    except asyncpg.ForeignKeyViolationError:
        raise InvalidToken() from None  # no such user any more: erased


@dataclass(frozen=True)
class Erasure:
    """What ``erase_user`` did."""

    #: False when there was no such user (nothing was changed).
    erased: bool
    #: Organizations the user was the only member of, deleted with everything in them.
    deleted_organizations: list[UUID] = field(default_factory=list)
    #: Organizations that still have members but no owner any more (an operator or a later
    #: role-management endpoint must name one).
    ownerless_organizations: list[UUID] = field(default_factory=list)


async def erase_user(system_db: Database, user_id: UUID) -> Erasure:
    """Erase a user (decision 0018), in one transaction on the system role.

    Their credentials, sessions (so every access and refresh token stops working at once),
    memberships and OAuth hand-offs go with the user row. Projects they created stay with
    their organization with no creator (``userId: ""``); an organization they were the only
    member of is deleted, since nobody could reach its data any more. With the keycloak
    provider the Keycloak user is not touched: delete it there too, or its next sign-in
    provisions a new, empty account.
    """
    async with system_session(system_db) as db:
        # Locking the organizations first holds off a membership being added concurrently
        # (it takes a key-share lock on its organization), so "only member" stays true.
        organizations = [
            row["id"]
            for row in await db.fetch(
                "SELECT o.id FROM kijko.organizations o"
                " WHERE o.id IN (SELECT organization_id FROM kijko.memberships WHERE user_id = $1)"
                " ORDER BY o.id FOR UPDATE",
                user_id,
            )
        ]
        alone = await db.fetchval(
            "SELECT coalesce(array_agg(m.organization_id ORDER BY m.organization_id), '{}')"
            " FROM kijko.memberships m WHERE m.user_id = $1 AND NOT EXISTS ("
            "   SELECT 1 FROM kijko.memberships o"
            "   WHERE o.organization_id = m.organization_id AND o.user_id <> $1)",
            user_id,
        )
        await db.execute("DELETE FROM kijko.organizations WHERE id = ANY($1::uuid[])", alone)
        erased = await db.fetchval("DELETE FROM kijko_private.users WHERE id = $1 RETURNING id", user_id)
        ownerless = await db.fetchval(
            "SELECT coalesce(array_agg(o ORDER BY o), '{}') FROM unnest($1::uuid[]) AS o"
            " WHERE NOT EXISTS (SELECT 1 FROM kijko.memberships m"
            "                   WHERE m.organization_id = o AND m.role = 'owner')",
            [org for org in organizations if org not in set(alone)],
        )
    return Erasure(erased is not None, list(alone), list(ownerless))
