"""Numbered SQL migrations shipped inside the package, applied with the owner credentials.

Each file runs in its own transaction and is recorded with a SHA-256 checksum; an applied
file that was edited afterwards is an error. A session-level advisory lock makes two processes
starting together safe: the second waits, then finds nothing left to do.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import asyncpg

from kijko_core.db.roles import RoleNames
from kijko_core.errors import ConfigurationError

# Any 64-bit constant unique to Kijko; pg_advisory_lock is cluster-wide per database.
_LOCK_KEY = 0x6B696A6B6F6D6967  # "kijkomig"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS kijko_private;
CREATE TABLE IF NOT EXISTS kijko_private.schema_migrations (
    version text PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


class MigrationError(Exception):
    """The schema and the shipped migrations disagree, or a file failed to apply."""


class SchemaBehind(ConfigurationError):
    """Production refuses to serve while migrations are pending (``kijko migrate`` first)."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationStatus:
    version: str
    name: str
    applied_at: datetime | None


def shipped_migrations() -> list[Migration]:
    folder = resources.files("kijko_core.db") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(match.group(1), match.group(2), entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


def render(migration: Migration, roles: RoleNames) -> str:
    """Substitute the role placeholders (``:app_role`` …) with quoted role names."""
    sql = migration.sql
    for placeholder, identifier in roles.placeholders().items():
        sql = re.sub(re.escape(placeholder) + r"\b", identifier, sql)
    return sql


async def _applied(conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    exists = await conn.fetchval("SELECT to_regclass('kijko_private.schema_migrations')")
    if exists is None:
        return {}
    rows = await conn.fetch("SELECT version, name, checksum, applied_at FROM kijko_private.schema_migrations")
    return {row["version"]: row for row in rows}


def _check_history(applied: dict[str, asyncpg.Record], shipped: list[Migration]) -> None:
    by_version = {m.version: m for m in shipped}
    for version, row in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(f"migration {version} is applied but not shipped with this version")
        if row["checksum"] != migration.checksum:
            raise MigrationError(
                f"migration {version}_{migration.name} was edited after it was applied"
            )


async def status(dsn: str) -> list[MigrationStatus]:
    conn = await asyncpg.connect(dsn)
    try:
        applied = await _applied(conn)
    finally:
        await conn.close()
    shipped = shipped_migrations()
    _check_history(applied, shipped)
    return [
        MigrationStatus(m.version, m.name, applied[m.version]["applied_at"] if m.version in applied else None)
        for m in shipped
    ]


async def pending(dsn: str) -> list[Migration]:
    """What ``migrate`` would apply; raises ``MigrationError`` on an inconsistent history."""
    return [
        m
        for m, s in zip(shipped_migrations(), await status(dsn), strict=True)
        if s.applied_at is None
    ]


async def migrate(
    dsn: str,
    roles: RoleNames,
    *,
    lock_timeout_ms: int = 60_000,
    migrations: Sequence[Migration] | None = None,
) -> list[Migration]:
    """Apply every pending migration (the shipped ones unless given); returns those applied."""
    conn = await asyncpg.connect(dsn)
    done: list[Migration] = []
    try:
        await conn.execute("SELECT set_config('lock_timeout', $1, false)", f"{lock_timeout_ms}ms")
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(_BOOTSTRAP)
            applied = await _applied(conn)
            shipped = list(migrations) if migrations is not None else shipped_migrations()
            _check_history(applied, shipped)
            for migration in shipped:
                if migration.version in applied:
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(render(migration, roles))
                        await conn.execute(
                            "INSERT INTO kijko_private.schema_migrations (version, name, checksum)"
                            " VALUES ($1, $2, $3)",
                            migration.version,
                            migration.name,
                            migration.checksum,
                        )
                except asyncpg.PostgresError as error:
                    raise MigrationError(
                        f"migration {migration.version}_{migration.name} failed: {error}"
                    ) from error
                done.append(migration)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()
    return done
