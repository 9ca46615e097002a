"""Create the roles and the database with an administrator connection.

Used by embedded mode, by the test suite and by ``kijko db provision`` for self-hosters whose
DBA prefers to let Kijko do it. Production deployments may equally run the documented SQL by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

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
) -> None:
    """Idempotently create the owner, app and system roles and a database owned by the owner."""
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
        await conn.execute(
            "ALTER ROLE " + app + " SET statement_timeout = " + str(int(timeouts.statement_ms))
        )
        await conn.execute(
            "ALTER ROLE " + app + " SET idle_in_transaction_session_timeout = "
            + str(int(timeouts.idle_in_transaction_ms))
        )
        await conn.execute("ALTER ROLE " + app + " SET lock_timeout = " + str(int(timeouts.lock_ms)))
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(
                "CREATE DATABASE " + quote_identifier(database)
                + " OWNER " + quote_identifier(roles.owner) + " ENCODING 'UTF8' TEMPLATE template0"
            )
        await conn.execute(
            "REVOKE ALL ON DATABASE " + quote_identifier(database) + " FROM PUBLIC"
        )
        for name in (roles.app, roles.system):
            await conn.execute(
                "GRANT CONNECT ON DATABASE " + quote_identifier(database)
                + " TO " + quote_identifier(name)
            )
    finally:
        await conn.close()


async def drop(admin_dsn: str, *, database: str, roles: RoleNames) -> None:
    """Remove a provisioned database and its roles (tests clean up with this)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(
            "DROP DATABASE IF EXISTS " + quote_identifier(database) + " WITH (FORCE)"
        )
        for name in (roles.app, roles.system, roles.owner):
            await conn.execute("DROP ROLE IF EXISTS " + quote_identifier(name))
    finally:
        await conn.close()
