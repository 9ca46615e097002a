"""Numbered SQL migrations shipped inside packages, applied with the owner credentials.

Kijko's own migrations live in ``kijko_core/db/migrations`` (package ``kijko``); a plugin ships
its tables the same way and declares the folder in the ``kijko.migrations`` entry point group
(``name = module.with.migrations``; the name is the plugin's namespace). Versions are numbered
per package (``kijko:0001``, ``widgets:0001``); Kijko's always come first, then each plugin's
in order, plugins sorted by their declared dependencies and then by name. A file may state
what it needs with a ``-- requires: kijko:0004`` line; a requirement that is not shipped, or
not ordered before the file, is an error (docs/decisions/0026-migrations-from-packages.md).

Each file runs in its own transaction and is recorded (keyed by package and version) with a
SHA-256 checksum; an applied file that was edited afterwards, or that no installed package
ships any more, is an error. A session-level advisory lock makes two processes starting
together safe: the second waits, then finds nothing left to do.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata, resources

import asyncpg

from kijko_core.db.roles import RoleNames
from kijko_core.errors import ConfigurationError

# Any 64-bit constant unique to Kijko; pg_advisory_lock is cluster-wide per database.
_LOCK_KEY = 0x6B696A6B6F6D6967  # "kijkomig"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_PACKAGE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_REQUIRES = re.compile(r"^--\s*requires:\s*(.+)$", re.MULTILINE)
_KEY = re.compile(r"^([a-z][a-z0-9_]{0,39}):(\d{4})$")

#: Kijko's own migrations; plugins cannot use this name.
CORE_PACKAGE = "kijko"
ENTRY_POINT_GROUP = "kijko.migrations"

# Databases migrated before migrations came from several packages have ``version`` as the
# whole key; their rows are Kijko's (the column default), and the key becomes (package, version).
_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS kijko_private;
CREATE TABLE IF NOT EXISTS kijko_private.schema_migrations (
    package text NOT NULL DEFAULT 'kijko',
    version text NOT NULL,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (package, version)
);
ALTER TABLE kijko_private.schema_migrations
    ADD COLUMN IF NOT EXISTS package text NOT NULL DEFAULT 'kijko';
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
        WHERE i.indrelid = 'kijko_private.schema_migrations'::regclass
          AND i.indisprimary AND a.attname = 'package'
    ) THEN
        ALTER TABLE kijko_private.schema_migrations
            DROP CONSTRAINT IF EXISTS schema_migrations_pkey,
            ADD PRIMARY KEY (package, version);
    END IF;
END $$;
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
    package: str = CORE_PACKAGE

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def key(self) -> tuple[str, str]:
        return (self.package, self.version)

    @property
    def label(self) -> str:
        """``0001_name`` for Kijko's own, ``package:0001_name`` for a plugin's."""
        prefix = "" if self.package == CORE_PACKAGE else f"{self.package}:"
        return f"{prefix}{self.version}_{self.name}"

    @property
    def requires(self) -> list[tuple[str, str]]:
        found = []
        for line in _REQUIRES.findall(self.sql):
            for item in line.split(","):
                match = _KEY.match(item.strip())
                if match is None:
                    raise MigrationError(f"migration {self.label}: bad requirement {item.strip()!r}")
                found.append((match.group(1), match.group(2)))
        return found


@dataclass(frozen=True)
class MigrationStatus:
    version: str
    name: str
    applied_at: datetime | None
    package: str = CORE_PACKAGE

    @property
    def label(self) -> str:
        prefix = "" if self.package == CORE_PACKAGE else f"{self.package}:"
        return f"{prefix}{self.version}_{self.name}"


@dataclass(frozen=True)
class MigrationSource:
    """A package's folder of migrations: ``package`` is its namespace, ``module`` the
    importable module (a folder with an ``__init__.py`` or a namespace package) holding them."""

    package: str
    module: str

    def migrations(self) -> list[Migration]:
        try:
            folder = resources.files(self.module)
        except ModuleNotFoundError:
            raise MigrationError(f"migrations of {self.package!r}: module {self.module!r} not found") from None
        found = []
        for entry in folder.iterdir():
            match = _FILE_NAME.match(entry.name)
            if match:
                found.append(Migration(match.group(1), match.group(2), entry.read_text("utf-8"), self.package))
        return sorted(found, key=lambda m: m.version)


CORE_SOURCE = MigrationSource(CORE_PACKAGE, "kijko_core.db.migrations")


def discover_sources() -> list[MigrationSource]:
    """Kijko's own migrations and those of every installed plugin (the entry point group)."""
    found: dict[str, MigrationSource] = {CORE_PACKAGE: CORE_SOURCE}
    for entry in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if not _PACKAGE_NAME.match(entry.name) or entry.name in found:
            raise MigrationError(
                f"entry point {ENTRY_POINT_GROUP} {entry.name!r}: the name must be unique, "
                f"lowercase and not {CORE_PACKAGE!r}"
            )
        found[entry.name] = MigrationSource(entry.name, entry.value.strip())
    return list(found.values())


def shipped_migrations(sources: Sequence[MigrationSource] | None = None) -> list[Migration]:
    """Every shipped migration in the order it applies."""
    by_package: dict[str, list[Migration]] = {}
    for source in sources if sources is not None else discover_sources():
        by_package[source.package] = source.migrations()
    return order(by_package)


def order(by_package: dict[str, list[Migration]]) -> list[Migration]:
    """Kijko's first, then each plugin after the packages it requires (then by name);
    every requirement must be shipped and ordered before the file that states it."""
    needs: dict[str, set[str]] = {
        package: {p for m in found for p, _ in m.requires if p != package} for package, found in by_package.items()
    }
    ordered: list[str] = [CORE_PACKAGE] if CORE_PACKAGE in by_package else []
    rest = sorted(set(by_package) - {CORE_PACKAGE})
    while rest:
        ready = [p for p in rest if needs[p] <= {*ordered, CORE_PACKAGE}]
        if not ready:
            raise MigrationError("migrations of " + ", ".join(rest) + " require each other or a missing package")
        ordered.append(ready[0])
        rest.remove(ready[0])
    result = [m for package in ordered for m in sorted(by_package[package], key=lambda m: m.version)]
    position = {m.key: index for index, m in enumerate(result)}
    for index, migration in enumerate(result):
        for required in migration.requires:
            if position.get(required, len(result)) >= index:
                raise MigrationError(
                    f"migration {migration.label} requires {required[0]}:{required[1]}, which is not shipped before it"
                )
    return result


def render(migration: Migration, roles: RoleNames) -> str:
    """Substitute the role placeholders (``:app_role`` …) with quoted role names."""
    sql = migration.sql
    for placeholder, identifier in roles.placeholders().items():
        sql = re.sub(re.escape(placeholder) + r"\b", identifier, sql)
    return sql


Applied = dict[tuple[str, str], asyncpg.Record]


_APPLIED = "SELECT package, version, name, checksum, applied_at FROM kijko_private.schema_migrations"
# The history table before migrations came from several packages: every row is Kijko's.
_APPLIED_BEFORE_PACKAGES = (
    "SELECT 'kijko'::text AS package, version, name, checksum, applied_at FROM kijko_private.schema_migrations"
)


async def _applied(conn: asyncpg.Connection) -> Applied:
    exists = await conn.fetchval("SELECT to_regclass('kijko_private.schema_migrations')")
    if exists is None:
        return {}
    has_package = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema ="
        " 'kijko_private' AND table_name = 'schema_migrations' AND column_name = 'package')"
    )
    rows = await conn.fetch(_APPLIED if has_package else _APPLIED_BEFORE_PACKAGES)
    return {(row["package"], row["version"]): row for row in rows}


def _check_history(applied: Applied, shipped: list[Migration]) -> None:
    by_key = {m.key: m for m in shipped}
    for key, row in sorted(applied.items()):
        migration = by_key.get(key)
        if migration is None:
            label = key[1] if key[0] == CORE_PACKAGE else f"{key[0]}:{key[1]}"
            raise MigrationError(f"migration {label} is applied but not shipped with this version")
        if row["checksum"] != migration.checksum:
            raise MigrationError(f"migration {migration.label} was edited after it was applied")


async def status(dsn: str, *, migrations: Sequence[Migration] | None = None) -> list[MigrationStatus]:
    conn = await asyncpg.connect(dsn)
    try:
        applied = await _applied(conn)
    finally:
        await conn.close()
    shipped = list(migrations) if migrations is not None else shipped_migrations()
    _check_history(applied, shipped)
    return [
        MigrationStatus(m.version, m.name, applied[m.key]["applied_at"] if m.key in applied else None, m.package)
        for m in shipped
    ]


async def pending(dsn: str, *, migrations: Sequence[Migration] | None = None) -> list[Migration]:
    """What ``migrate`` would apply; raises ``MigrationError`` on an inconsistent history."""
    shipped = list(migrations) if migrations is not None else shipped_migrations()
    return [m for m, s in zip(shipped, await status(dsn, migrations=shipped), strict=True) if s.applied_at is None]


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
                if migration.key in applied:
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(render(migration, roles))
                        await conn.execute(
                            "INSERT INTO kijko_private.schema_migrations"
                            " (package, version, name, checksum) VALUES ($1, $2, $3, $4)",
                            migration.package,
                            migration.version,
                            migration.name,
                            migration.checksum,
                        )
                except asyncpg.PostgresError as error:
                    raise MigrationError(f"migration {migration.label} failed: {error}") from error
                done.append(migration)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()
    return done
