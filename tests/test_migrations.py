"""Migrations (FOUND-04): concurrent runs are safe, a failing file leaves nothing behind, an
edited history is refused, and production refuses to serve a schema that is behind.

Every test gets a freshly provisioned, empty database with its own roles, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from kijko_core.config import load_settings
from kijko_core.crypto import Keyring
from kijko_core.db import migrate as migrations
from kijko_core.db.provision import ScratchDatabase, drop_scratch, provision_scratch
from kijko_core.errors import ConfigurationError
from kijko_core.runtime import Kijko

SHIPPED = [f"{m.version}_{m.name}" for m in migrations.shipped_migrations()]


def env_of(scratch: ScratchDatabase, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``kijko`` process pointed at ``scratch``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIJKO_")}
    env.update(
        KIJKO_DATABASE_URL=scratch.urls.app,
        KIJKO_SYSTEM_DATABASE_URL=scratch.urls.system,
        KIJKO_MIGRATION_DATABASE_URL=scratch.urls.migration,
        KIJKO_DB_ROLE_PREFIX=scratch.prefix,
        KIJKO_DATA_DIR=str(tmp_path / "data"),
        **extra,
    )
    return env


@pytest.fixture
async def fresh(database: ScratchDatabase) -> AsyncIterator[ScratchDatabase]:
    scratch = await provision_scratch(database.admin_dsn, prefix_hint="km")
    try:
        yield scratch
    finally:
        await drop_scratch(scratch)


async def applied_log(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT version, name FROM kijko_private.schema_migrations ORDER BY version")
    finally:
        await conn.close()
    return [f"{row['version']}_{row['name']}" for row in rows]


def kijko(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    script = Path(sys.executable).with_name("kijko")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "kijko_cli.main"]
    return subprocess.Popen(
        [*command, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout, stderr


# ---------------------------------------------------------------------------------------------
# Concurrency.


async def test_two_migrate_calls_together_apply_each_file_once(fresh: ScratchDatabase) -> None:
    first, second = await asyncio.gather(
        migrations.migrate(fresh.urls.migration, fresh.roles),
        migrations.migrate(fresh.urls.migration, fresh.roles),
    )
    applied = sorted(f"{m.version}_{m.name}" for m in [*first, *second])
    assert applied == SHIPPED  # each file by exactly one of the two
    assert await applied_log(fresh.urls.migration) == SHIPPED
    assert await migrations.migrate(fresh.urls.migration, fresh.roles) == []


@pytest.mark.slow
def test_two_cli_migrate_processes_together_apply_each_file_once(fresh: ScratchDatabase, tmp_path: Path) -> None:
    env = env_of(fresh, tmp_path)
    processes = [kijko("migrate", env=env), kijko("migrate", env=env)]
    results = [finish(process) for process in processes]
    for code, _, stderr in results:
        assert code == 0, stderr
    applied = sorted(line.strip() for _, stdout, _ in results for line in stdout.splitlines() if line.startswith("  "))
    assert applied == SHIPPED
    assert asyncio.run(applied_log(fresh.urls.migration)) == SHIPPED


# ---------------------------------------------------------------------------------------------
# Failures.


async def test_a_failing_file_leaves_nothing_behind(fresh: ScratchDatabase) -> None:
    broken = migrations.Migration(
        "9999",
        "broken",
        "CREATE TABLE kijko.half_done (id int);\n"
        "INSERT INTO kijko.half_done VALUES (1);\n"
        "SELECT kijko.no_such_function();\n",
    )
    with pytest.raises(migrations.MigrationError, match="9999_broken failed"):
        await migrations.migrate(
            fresh.urls.migration,
            fresh.roles,
            migrations=[*migrations.shipped_migrations(), broken],
        )
    assert await applied_log(fresh.urls.migration) == SHIPPED  # earlier files stay applied
    conn = await asyncpg.connect(fresh.urls.migration)
    try:
        assert await conn.fetchval("SELECT to_regclass('kijko.half_done')") is None
    finally:
        await conn.close()
    # Nothing half-done blocks the next run either.
    assert await migrations.migrate(fresh.urls.migration, fresh.roles) == []


async def test_an_edited_applied_file_is_refused(fresh: ScratchDatabase) -> None:
    await migrations.migrate(fresh.urls.migration, fresh.roles)
    shipped = migrations.shipped_migrations()
    edited = [
        migrations.Migration(shipped[0].version, shipped[0].name, shipped[0].sql + "\n-- edit\n"),
        *shipped[1:],
    ]
    with pytest.raises(migrations.MigrationError, match="edited after it was applied"):
        await migrations.migrate(fresh.urls.migration, fresh.roles, migrations=edited)


@pytest.mark.slow
def test_cli_exits_non_zero_with_a_readable_message_on_a_broken_history(fresh: ScratchDatabase, tmp_path: Path) -> None:
    env = env_of(fresh, tmp_path)
    assert finish(kijko("migrate", env=env))[0] == 0

    async def tamper() -> None:
        conn = await asyncpg.connect(fresh.urls.migration)
        try:
            await conn.execute(
                "UPDATE kijko_private.schema_migrations SET checksum = 'tampered' WHERE version = $1",
                SHIPPED[0][:4],
            )
        finally:
            await conn.close()

    asyncio.run(tamper())
    for args in (["migrate"], ["migrate", "--status"]):
        code, stdout, stderr = finish(kijko(*args, env=env))
        assert code != 0, args
        assert "Traceback" not in stderr
        assert stderr.strip() == (f"migration error: migration {SHIPPED[0]} was edited after it was applied")


@pytest.mark.slow
def test_cli_status_lists_every_version(fresh: ScratchDatabase, tmp_path: Path) -> None:
    env = env_of(fresh, tmp_path)
    code, stdout, stderr = finish(kijko("migrate", "--status", env=env))
    assert code == 0, stderr
    assert stdout.splitlines() == [f"{name}\tpending" for name in SHIPPED]

    code, stdout, stderr = finish(kijko("migrate", env=env))
    assert code == 0, stderr
    assert stdout.splitlines()[0] == f"applied {len(SHIPPED)} migration(s)"

    code, stdout, stderr = finish(kijko("migrate", "--status", env=env))
    assert code == 0, stderr
    lines = [line.split("\t") for line in stdout.splitlines()]
    assert [name for name, _ in lines] == SHIPPED
    assert all(state != "pending" and state[:4].isdigit() for _, state in lines)


# ---------------------------------------------------------------------------------------------
# Production refuses a schema that is behind.


def production_env(fresh: ScratchDatabase, tmp_path: Path) -> dict[str, str]:
    return env_of(
        fresh,
        tmp_path,
        KIJKO_MODE="production",
        KIJKO_ENCRYPTION_KEYS=Keyring.generate_key(),
        KIJKO_PUBLIC_URL="https://api.kijko.test",
    )


async def test_production_start_refuses_a_schema_that_is_behind(fresh: ScratchDatabase, tmp_path: Path) -> None:
    everything_but_the_last = migrations.shipped_migrations()[:-1]
    await migrations.migrate(fresh.urls.migration, fresh.roles, migrations=everything_but_the_last)
    settings = load_settings(
        mode="production",
        database_url=fresh.urls.app,
        system_database_url=fresh.urls.system,
        migration_database_url=fresh.urls.migration,
        db_role_prefix=fresh.prefix,
        encryption_keys=Keyring.generate_key(),
        public_url="https://api.kijko.test",
        data_dir=tmp_path,
    )
    with pytest.raises(ConfigurationError) as raised:
        await Kijko.start(settings)
    (problem,) = raised.value.problems
    assert SHIPPED[-1] in problem and "kijko migrate" in problem
    assert SHIPPED[0] not in problem  # only what is pending
    assert await applied_log(fresh.urls.migration) == SHIPPED[:-1]  # production never migrates

    await migrations.migrate(fresh.urls.migration, fresh.roles)
    kijko_runtime = await Kijko.start(settings)
    await kijko_runtime.stop()


@pytest.mark.slow
def test_production_serve_refuses_a_schema_that_is_behind(fresh: ScratchDatabase, tmp_path: Path) -> None:
    process = kijko("serve", "--port", "0", env=production_env(fresh, tmp_path))
    code, stdout, stderr = finish(process)
    assert code == 3  # docs/operations.md
    assert stderr.strip() == (
        "configuration error: the database schema is behind, pending migrations: "
        + ", ".join(SHIPPED)
        + "; run `kijko migrate` first"
    )


# ---------------------------------------------------------------------------------------------
# Migrations from more than one package.

PLUGIN = migrations.MigrationSource("widgets", "tests.migration_plugin.migrations")


@pytest.fixture
def plugin_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test plugin registered as an installed distribution would be: a ``.dist-info``
    folder with its entry point, on ``sys.path`` — without installing anything."""
    site = tmp_path / "site"
    info = site / "kijko_widgets-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kijko-widgets\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[kijko.migrations]\nwidgets = tests.migration_plugin.migrations\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def labels(found: list[migrations.Migration]) -> list[str]:
    return [m.label for m in found]


def test_plugins_are_discovered_through_the_entry_point_group(plugin_installed: Path) -> None:
    assert migrations.discover_sources() == [migrations.CORE_SOURCE, PLUGIN]
    assert labels(migrations.shipped_migrations()) == [*SHIPPED, "widgets:0001_widgets", "widgets:0002_widget_colour"]


def test_without_plugins_only_kijkos_own_are_shipped() -> None:
    assert labels(migrations.shipped_migrations()) == SHIPPED


async def test_a_plugins_migrations_apply_after_kijkos_and_are_keyed_by_package(
    fresh: ScratchDatabase, plugin_installed: Path
) -> None:
    done = await migrations.migrate(fresh.urls.migration, fresh.roles)
    assert labels(done) == [*SHIPPED, "widgets:0001_widgets", "widgets:0002_widget_colour"]
    conn = await asyncpg.connect(fresh.urls.migration)
    try:
        rows = await conn.fetch(
            "SELECT package, version FROM kijko_private.schema_migrations ORDER BY applied_at, package"
        )
        assert ("widgets", "0001") in {(r["package"], r["version"]) for r in rows}
        assert ("kijko", "0001") in {(r["package"], r["version"]) for r in rows}
        assert await conn.fetchval("SELECT count(*) FROM widgets.widgets") == 0
    finally:
        await conn.close()
    statuses = await migrations.status(fresh.urls.migration)
    assert all(s.applied_at is not None for s in statuses)
    assert await migrations.migrate(fresh.urls.migration, fresh.roles) == []


async def test_an_applied_plugin_that_is_no_longer_installed_is_an_error(
    fresh: ScratchDatabase,
) -> None:
    shipped = migrations.shipped_migrations([migrations.CORE_SOURCE, PLUGIN])
    await migrations.migrate(fresh.urls.migration, fresh.roles, migrations=shipped)
    with pytest.raises(migrations.MigrationError, match="widgets:0001 is applied but not shipped"):
        await migrations.status(fresh.urls.migration)


def test_a_requirement_that_is_not_shipped_before_the_file_is_refused() -> None:
    needy = migrations.Migration("0001", "needy", "-- requires: kijko:9999\nSELECT 1;", "extra")
    core = migrations.CORE_SOURCE.migrations()
    with pytest.raises(migrations.MigrationError, match="extra:0001_needy requires kijko:9999"):
        migrations.order({"kijko": core, "extra": [needy]})
    # Packages are ordered by what they require, whatever their names.
    first = migrations.Migration("0001", "base", "SELECT 1;", "zeta")
    second = migrations.Migration("0001", "uses_zeta", "-- requires: zeta:0001\nSELECT 1;", "alpha")
    ordered = migrations.order({"kijko": core, "alpha": [second], "zeta": [first]})
    assert labels(ordered)[-2:] == ["zeta:0001_base", "alpha:0001_uses_zeta"]
    # And each other: refused.
    loop = migrations.Migration("0002", "loop", "-- requires: alpha:0001\nSELECT 1;", "zeta")
    with pytest.raises(migrations.MigrationError, match="require each other"):
        migrations.order({"kijko": core, "alpha": [second], "zeta": [first, loop]})


async def test_a_database_migrated_before_packages_keeps_its_history(fresh: ScratchDatabase) -> None:
    # The table as it was: ``version`` the whole key, no package column.
    await migrations.migrate(fresh.urls.migration, fresh.roles)
    conn = await asyncpg.connect(fresh.urls.migration)
    try:
        await conn.execute(
            "ALTER TABLE kijko_private.schema_migrations DROP CONSTRAINT schema_migrations_pkey;"
            " ALTER TABLE kijko_private.schema_migrations DROP COLUMN package;"
            " ALTER TABLE kijko_private.schema_migrations ADD PRIMARY KEY (version);"
        )
    finally:
        await conn.close()
    assert await migrations.pending(fresh.urls.migration) == []  # read before the upgrade
    shipped = migrations.shipped_migrations([migrations.CORE_SOURCE, PLUGIN])
    done = await migrations.migrate(fresh.urls.migration, fresh.roles, migrations=shipped)
    assert labels(done) == ["widgets:0001_widgets", "widgets:0002_widget_colour"]
    assert sorted(await applied_log(fresh.urls.migration)) == sorted([*SHIPPED, "0001_widgets", "0002_widget_colour"])
