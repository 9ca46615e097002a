"""The scratch database a benchmark runs Kijko on, and the settings that point Kijko at it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kijko_core.crypto import Keyring
from kijko_core.db import migrate as migrations
from kijko_core.db.embedded import EmbeddedPostgres
from kijko_core.db.provision import ScratchDatabase, drop_scratch, provision_scratch


@contextmanager
def scratch_database(tmp: Path) -> Iterator[ScratchDatabase]:
    """A migrated scratch database with its roles, on the server KIJKO_BENCH_DATABASE_URL names or else on
    an embedded PostgreSQL under ``tmp``; dropped (and the embedded server stopped) afterwards."""
    embedded: EmbeddedPostgres | None = None
    admin = os.environ.get("KIJKO_BENCH_DATABASE_URL")
    if not admin:
        embedded = EmbeddedPostgres(tmp / "postgres")
        embedded.start()
        admin = embedded.admin_dsn()
    scratch = asyncio.run(provision_scratch(admin, prefix_hint="kb"))
    try:
        asyncio.run(migrations.migrate(scratch.urls.migration, scratch.roles))
        yield scratch
    finally:
        asyncio.run(drop_scratch(scratch))
        if embedded is not None:
            embedded.stop()


def kijko_settings(scratch: ScratchDatabase, tmp: Path) -> dict[str, str]:
    """KIJKO_* variables of a production-mode Kijko on ``scratch`` (a fresh encryption key)."""
    return {
        "KIJKO_MODE": "production",
        "KIJKO_PUBLIC_URL": "http://bench.kijko.test",
        "KIJKO_DATABASE_URL": scratch.urls.app,
        "KIJKO_SYSTEM_DATABASE_URL": scratch.urls.system,
        "KIJKO_MIGRATION_DATABASE_URL": scratch.urls.migration,
        "KIJKO_DB_ROLE_PREFIX": scratch.prefix,
        "KIJKO_ENCRYPTION_KEYS": Keyring.generate_key(),
        "KIJKO_DATA_DIR": str(tmp / "data"),
        "KIJKO_LOG_LEVEL": "info",
        # Unlimited: a bench measures the work, not the free plan's quotas (docs/billing.md).
        "KIJKO_DEFAULT_PLAN": "enterprise",
    }
