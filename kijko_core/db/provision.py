"""Create the roles and the database with an administrator connection.

Used by embedded mode, by the test suite and by ``kijko db provision`` (kijko_cli/db.py) for
self-hosters whose DBA prefers to let Kijko do it. Production deployments may equally run the
SQL of docs/deployment.md by hand.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from kijko_core.db.pools import DatabaseUrls
from kijko_core.db.roles import RoleNames, quote_identifier


@dataclass(frozen=True)
class RoleTimeouts:
    statement_ms: int
    idle_in_transaction_ms: int
    lock_ms: int


async def provision(
    admin_dsn: str,
    *,
    database: str,
    roles: RoleNames,
    passwords: dict[str, str],
    timeouts: RoleTimeouts,
    own_cluster: bool = False,
) -> None:
    """Idempotently create the owner, app and system roles and a database owned by the owner.

    Only Kijko's roles may connect to that database, and nobody but its owner may make temporary
    tables there. With ``own_cluster`` (the embedded server, or a server that holds nothing but
    Kijko) every other database of the server loses ``PUBLIC``'s ``CONNECT`` and ``TEMP`` too, so
    an injected statement cannot reach out of Kijko's database. On a shared server that is the
    DBA's call (docs/deployment.md): other tenants may rely on those defaults.
    """
    conn = await asyncpg.connect(admin_dsn)
    try:
        for kind, name in (("owner", roles.owner), ("app", roles.app), ("system", roles.system)):
            role = quote_identifier(name)
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name)
            verb = "ALTER" if exists else "CREATE"
            bypass = "BYPASSRLS" if kind == "system" else "NOBYPASSRLS"
            # Identifiers are validated by quote_identifier; the password goes in as a literal
            # through quote_literal because utility statements cannot take parameters.
            password = await conn.fetchval("SELECT quote_literal($1::text)", passwords[kind])
            await conn.execute(
                verb + " ROLE " + role + " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                "NOREPLICATION " + bypass + " PASSWORD " + password
            )
        app = quote_identifier(roles.app)
        await conn.execute("ALTER ROLE " + app + " SET statement_timeout = " + str(int(timeouts.statement_ms)))
        await conn.execute(
            "ALTER ROLE "
            + app
            + " SET idle_in_transaction_session_timeout = "
            + str(int(timeouts.idle_in_transaction_ms))
        )
        await conn.execute("ALTER ROLE " + app + " SET lock_timeout = " + str(int(timeouts.lock_ms)))
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(
                "CREATE DATABASE "
                + quote_identifier(database)
                + " OWNER "
                + quote_identifier(roles.owner)
                + " ENCODING 'UTF8' TEMPLATE template0"
            )
        await conn.execute("REVOKE ALL ON DATABASE " + quote_identifier(database) + " FROM PUBLIC")
        for name in (roles.app, roles.system):
            await conn.execute(
                "GRANT CONNECT ON DATABASE " + quote_identifier(database) + " TO " + quote_identifier(name)
            )
        if own_cluster:
            others = await conn.fetch("SELECT datname FROM pg_database WHERE datname <> $1 AND datallowconn", database)
            for row in others:
                # Names we did not choose: quoted by the server, never pasted raw.
                name = await conn.fetchval("SELECT quote_ident($1::text)", row["datname"])
                await conn.execute("REVOKE CONNECT, TEMP ON DATABASE " + name + " FROM PUBLIC")
    finally:
        await conn.close()


async def drop(admin_dsn: str, *, database: str, roles: RoleNames) -> None:
    """Remove a provisioned database and its roles (tests clean up with this)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute("DROP DATABASE IF EXISTS " + quote_identifier(database) + " WITH (FORCE)")
        for name in (roles.app, roles.system, roles.owner):
            await conn.execute("DROP ROLE IF EXISTS " + quote_identifier(name))
    finally:
        await conn.close()


def dsn_as(admin_dsn: str, *, database: str, user: str | None = None, password: str = "") -> str:
    """The server of ``admin_dsn`` (TCP or Unix socket form) as another database and, when
    given, another role."""
    parts = urlsplit(admin_dsn)
    netloc = parts.netloc
    if user is not None:
        host = parts.hostname or ""
        netloc = f"{quote(user)}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, "/" + quote(database), parts.query, ""))


def role_urls(admin_dsn: str, *, database: str, roles: RoleNames, passwords: dict[str, str]) -> DatabaseUrls:
    """The app, system and migration (owner) URLs of a provisioned database."""
    return DatabaseUrls(
        app=dsn_as(admin_dsn, database=database, user=roles.app, password=passwords["app"]),
        system=dsn_as(admin_dsn, database=database, user=roles.system, password=passwords["system"]),
        migration=dsn_as(admin_dsn, database=database, user=roles.owner, password=passwords["owner"]),
    )


DEFAULT_TIMEOUTS = RoleTimeouts(statement_ms=15_000, idle_in_transaction_ms=30_000, lock_ms=5_000)


@dataclass(frozen=True)
class ScratchDatabase:
    """A throwaway database with its own roles: what test suites (ours and plugins') and
    benchmarks run on."""

    admin_dsn: str
    name: str
    roles: RoleNames
    passwords: dict[str, str]
    urls: DatabaseUrls

    @property
    def prefix(self) -> str:
        return self.roles.prefix

    @property
    def admin_url(self) -> str:
        """The administrator connection, to this database."""
        return dsn_as(self.admin_dsn, database=self.name)


async def provision_scratch(
    admin_dsn: str, *, prefix_hint: str, timeouts: RoleTimeouts = DEFAULT_TIMEOUTS
) -> ScratchDatabase:
    """Provision a database and roles under a fresh random prefix (not yet migrated)."""
    roles = RoleNames.from_prefix(prefix_hint + secrets.token_hex(4))
    passwords = {kind: secrets.token_urlsafe(16) for kind in ("owner", "app", "system")}
    name = roles.prefix + "_db"
    await provision(admin_dsn, database=name, roles=roles, passwords=passwords, timeouts=timeouts)
    return ScratchDatabase(
        admin_dsn, name, roles, passwords, role_urls(admin_dsn, database=name, roles=roles, passwords=passwords)
    )


async def drop_scratch(scratch: ScratchDatabase) -> None:
    await drop(scratch.admin_dsn, database=scratch.name, roles=scratch.roles)
