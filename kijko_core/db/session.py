"""The only way code gets a connection: a tenant session, a service session or a system session.

A session is one pooled connection and one transaction. Queries go straight to the asyncpg
connection (plain ``$1`` parameters, no query compiler on the hot path). Services receive the
session explicitly and never commit; leaving the ``async with`` block commits, an exception
rolls back. Nothing may open a second connection inside a session.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
from databases import Database

from kijko_core.auth.principal import OrgRole, Principal, TokenIdentity
from kijko_core.db.pools import SessionConnection
from kijko_core.errors import Forbidden, InvalidToken, NotFound
from kijko_core.logging import get_logger

_REVOKED = "KJ401"
_NOT_A_MEMBER = "KJ403"
_NO_ORGANIZATION = "KJ404"
# The shapes kijko.enter_service accepts: an actor string must read back unambiguously.
_SERVICE_KIND = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
_JOB_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


#: What ``Session.after_commit`` accepts: a plain or an async function of no arguments.
AfterCommit = Callable[[], Awaitable[None] | None]


class Session:
    """One connection inside one transaction."""

    __slots__ = ("connection", "_after_commit")

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self._after_commit: list[AfterCommit] = []

    def after_commit(self, callback: AfterCommit) -> None:
        """Call ``callback`` once this session's transaction has committed (never if it rolls
        back), in the order registered. The change is durable by then: a callback that fails
        is logged and skipped, it does not fail the caller (whatever it announces must have
        a fallback, like the jobs sweeper re-ringing queued rows)."""
        self._after_commit.append(callback)

    @property
    def after_commit_callbacks(self) -> tuple[AfterCommit, ...]:
        """The callbacks registered so far (``enqueue`` adds its ids to its own one)."""
        return tuple(self._after_commit)

    async def _committed(self) -> None:
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                get_logger("kijko.db").exception("after_commit_failed", callback=repr(callback))

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self.connection.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self.connection.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self.connection.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        return await self.connection.execute(query, *args)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A part of the session that an error undoes alone, leaving the session usable.
        (The session's transaction is started by hand, so asyncpg's nested ``transaction()``
        is not available; PostgreSQL resolves a repeated savepoint name to the newest.)"""
        await self.connection.execute("SAVEPOINT kijko_savepoint")
        try:
            yield
        except BaseException:
            await self.connection.execute("ROLLBACK TO SAVEPOINT kijko_savepoint; RELEASE SAVEPOINT kijko_savepoint")
            raise
        await self.connection.execute("RELEASE SAVEPOINT kijko_savepoint")


class TenantSession(Session):
    """A session whose every statement is confined to one organization by row-level security."""

    __slots__ = ("principal",)

    def __init__(self, connection: asyncpg.Connection, principal: Principal) -> None:
        super().__init__(connection)
        self.principal = principal


@dataclass(frozen=True, slots=True)
class ServiceActor:
    """Who works in a service session: a kind of work (``ingestion``, ``scheduler``,
    ``webhook.github``…) and the id of the job or delivery, recorded as
    ``kijko.current_actor()`` = ``service:<kind>:<job id>``."""

    kind: str
    job_id: str

    def __post_init__(self) -> None:
        if not _SERVICE_KIND.fullmatch(self.kind) or not _JOB_ID.fullmatch(self.job_id):
            raise ValueError("service kind: [a-z][a-z0-9_.-]*, job id: [A-Za-z0-9_.-]{1,128}")

    def __str__(self) -> str:
        return f"service:{self.kind}:{self.job_id}"


class ServiceCapability:
    """The secret that lets ``kijko.enter_service`` open a service session (decision 0017).

    Read through the system pool, so only a process holding the system credentials has it;
    never logged or shown.
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def __repr__(self) -> str:
        return "ServiceCapability(**********)"

    def reveal(self) -> str:
        return self._secret


async def load_service_capability(system_db: Database) -> ServiceCapability:
    """Read the service capability (once per process is enough; it does not change by itself)."""
    async with system_session(system_db, readonly=True) as db:
        secret = await db.fetchval("SELECT service_capability FROM kijko_private.context_key")
    if secret is None:
        raise RuntimeError("the database has no service capability; is migration 0005 applied?")
    return ServiceCapability(secret)


class OrganizationNotFound(NotFound):
    code = "ORGANIZATION_NOT_FOUND"
    default_message = "Organization not found"


class ServiceSession(Session):
    """A session confined to one organization by row-level security, on the app role, for work
    no user requested this moment (jobs, the scheduler, webhooks). It has no user: rows it
    creates have no creator, and ``kijko.current_actor()`` names the service and job."""

    __slots__ = ("org_id", "actor")

    def __init__(self, connection: asyncpg.Connection, org_id: UUID, actor: ServiceActor) -> None:
        super().__init__(connection)
        self.org_id = org_id
        self.actor = actor


class SystemSession(Session):
    """A session on the system credentials, for the named cross-tenant operations only."""

    __slots__ = ()


@asynccontextmanager
async def _transaction(database: Database, readonly: bool) -> AsyncIterator[asyncpg.Connection]:
    async with database.connection() as handle:
        connection: SessionConnection = handle.raw_connection
        # `databases` hands the same task the same connection, and asyncpg would turn a second
        # transaction into a savepoint: a nested tenant session would then leave its
        # organization's context on the outer one. Sessions do not nest.
        if connection.is_in_transaction():
            raise RuntimeError("a session is already open on this pool in this task")
        await connection.execute("BEGIN READ ONLY" if readonly else "BEGIN")
        try:
            yield connection
        except BaseException:
            if not connection.is_closed():
                # A failed ROLLBACK (connection lost) must not hide the error that caused it;
                # the pool then rolls back and resets the connection itself.
                with contextlib.suppress(Exception):
                    await connection.end_transaction(commit=False)
            raise
        await connection.end_transaction(commit=True)


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
        session = TenantSession(connection, principal)
        yield session
    await session._committed()


@asynccontextmanager
async def service_session(
    database: Database,
    capability: ServiceCapability,
    org_id: UUID,
    actor: ServiceActor,
    *,
    readonly: bool = False,
) -> AsyncIterator[ServiceSession]:
    """Open a transaction on the app pool and enter ``org_id`` as ``actor``.

    ``database`` is the app pool, like for tenant sessions: the work runs under RLS, never on
    the system role. Raises ``OrganizationNotFound`` for an organization that does not exist.
    """
    async with _transaction(database, readonly) as connection:
        try:
            await connection.execute(
                "SELECT kijko.enter_service($1, $2, $3, $4)",
                org_id,
                actor.kind,
                actor.job_id,
                capability.reveal(),
            )
        except asyncpg.PostgresError as error:
            if error.sqlstate == _NO_ORGANIZATION:
                raise OrganizationNotFound() from None
            raise
        service = ServiceSession(connection, org_id, actor)
        yield service
    await service._committed()


@asynccontextmanager
async def system_session(database: Database, *, readonly: bool = False) -> AsyncIterator[SystemSession]:
    """Open a transaction on the system pool (signup, login, refresh, provisioning…)."""
    async with _transaction(database, readonly) as connection:
        session = SystemSession(connection)
        yield session
    await session._committed()
