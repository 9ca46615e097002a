"""The only way code gets a connection: a tenant session or a system session.

A session is one pooled connection and one transaction. Queries go straight to the asyncpg
connection (plain ``$1`` parameters, no query compiler on the hot path). Services receive the
session explicitly and never commit; leaving the ``async with`` block commits, an exception
rolls back. Nothing may open a second connection inside a session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from databases import Database

from kijko_core.auth.principal import OrgRole, Principal, TokenIdentity
from kijko_core.errors import Forbidden, InvalidToken

_REVOKED = "KJ401"
_NOT_A_MEMBER = "KJ403"


class Session:
    """One connection inside one transaction."""

    __slots__ = ("connection",)

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self.connection.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self.connection.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self.connection.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        return await self.connection.execute(query, *args)


class TenantSession(Session):
    """A session whose every statement is confined to one organization by row-level security."""

    __slots__ = ("principal",)

    def __init__(self, connection: asyncpg.Connection, principal: Principal) -> None:
        super().__init__(connection)
        self.principal = principal


class SystemSession(Session):
    """A session on the system credentials, for the named cross-tenant operations only."""

    __slots__ = ()


@asynccontextmanager
async def _transaction(database: Database, readonly: bool) -> AsyncIterator[asyncpg.Connection]:
    async with database.connection() as handle:
        connection: asyncpg.Connection = handle.raw_connection
        # `databases` hands the same task the same connection, and asyncpg would turn a second
        # transaction into a savepoint: a nested tenant session would then leave its
        # organization's context on the outer one. Sessions do not nest.
        if connection.is_in_transaction():
            raise RuntimeError("a session is already open on this pool in this task")
        async with connection.transaction(readonly=readonly):
            yield connection


@asynccontextmanager
async def tenant_session(
    database: Database, identity: TokenIdentity, *, readonly: bool = False
) -> AsyncIterator[TenantSession]:
    """Open a transaction on the app pool and enter the caller's organization.

    ``kijko.enter`` checks the session is not revoked and the membership exists, sets the
    transaction-local context and returns the roles, in one round trip.
    """
    async with _transaction(database, readonly) as connection:
        try:
            roles = await connection.fetchval(
                "SELECT kijko.enter($1, $2, $3)",
                identity.user_id,
                identity.org_id,
                identity.session_id,
            )
        except asyncpg.PostgresError as error:
            if error.sqlstate == _REVOKED:
                raise InvalidToken() from None
            if error.sqlstate == _NOT_A_MEMBER:
                raise Forbidden("You are not a member of this organization") from None
            raise
        principal = Principal(
            user_id=identity.user_id,
            org_id=identity.org_id,
            session_id=identity.session_id,
            roles=frozenset(OrgRole(role) for role in roles),
            expires_at=identity.expires_at,
        )
        yield TenantSession(connection, principal)


@asynccontextmanager
async def system_session(
    database: Database, *, readonly: bool = False
) -> AsyncIterator[SystemSession]:
    """Open a transaction on the system pool (signup, login, refresh, provisioning…)."""
    async with _transaction(database, readonly) as connection:
        yield SystemSession(connection)
