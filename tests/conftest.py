"""Shared fixtures: one real PostgreSQL database per test run (the machine's, when
``KIJKO_TEST_DATABASE_URL`` names an administrator connection, else an embedded server),
provisioned with fresh roles and migrated; a fresh organization per test.

Under pytest-xdist (``-n auto --dist loadfile``, decision 0143) each worker process is a test run
of its own, with its own scratch database and roles; a test file runs whole in one worker.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from kijko_core.auth.principal import TokenIdentity
from kijko_core.config import Settings, load_settings
from kijko_core.crypto import Keyring
from kijko_core.db import migrate as migrations
from kijko_core.db.embedded import EmbeddedPostgres
from kijko_core.db.provision import ScratchDatabase, drop_scratch, provision_scratch
from kijko_core.runtime import Kijko
from kijko_server.app import KijkoApp, create_app
from tests.stripe_server import StripeServer

#: Test files whose processes share a Redis list with no per-run name (huey's jobs queue): a
#: worker process of one would take the other's rings. They run in the same xdist worker.
SHARED_JOBS_QUEUE = frozenset({"test_worker_process.py", "test_realtime_processes.py"})


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` (tox's py3 env), with the files of ``SHARED_JOBS_QUEUE`` as one unit.
    (Not ``loadgroup`` with marks: it groups nothing under pytest 9.2.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedQueueAsOneFile(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            scope: str = super()._split_scope(nodeid)
            return "shared-jobs-queue" if Path(scope).name in SHARED_JOBS_QUEUE else scope

    return SharedQueueAsOneFile(config, log)


@pytest.fixture(scope="session")
def database() -> Iterator[ScratchDatabase]:
    import asyncio

    embedded: EmbeddedPostgres | None = None
    admin = os.environ.get("KIJKO_TEST_DATABASE_URL")
    if not admin:
        embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="kijko-test-")) / "postgres")
        embedded.start()
        admin = embedded.admin_dsn()
    scratch = asyncio.run(provision_scratch(admin, prefix_hint="kt"))
    asyncio.run(migrations.migrate(scratch.urls.migration, scratch.roles))
    try:
        yield scratch
    finally:
        asyncio.run(drop_scratch(scratch))
        if embedded is not None:
            embedded.stop()


@pytest.fixture(scope="session")
def encryption_key() -> str:
    return Keyring.generate_key()


@pytest.fixture(scope="session")
def make_settings(database: ScratchDatabase, encryption_key: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    data_dir = tmp_path_factory.mktemp("data")

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database.urls.app,
            "system_database_url": database.urls.system,
            "migration_database_url": database.urls.migration,
            "db_role_prefix": database.prefix,
            "encryption_keys": encryption_key,
            "data_dir": data_dir,
            "public_url": "http://kijko.test",
            "db_pool_size": 4,
            "log_level": "warning",
            # No test asks the real VIES: tests that need it point this at tests/vies_server.py.
            "vies_url": "",
            # Everything unlimited: the suites of other domains must not hit the free plan's
            # small limits (1 seat, 10 searches a day). The quota tests start runtimes on the
            # free plan (tests/test_quotas.py); production's default stays free.
            "default_plan": "enterprise",
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture(scope="session")
def settings(make_settings: Any) -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
async def kijko(settings: Settings) -> AsyncIterator[Kijko]:
    runtime = await Kijko.start(settings)
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def app(kijko: Kijko) -> AsyncIterator[KijkoApp]:
    application = create_app(kijko=kijko)
    async with application.test_app():
        yield application


@pytest.fixture
def client(app: KijkoApp) -> Any:
    return app.test_client()


@pytest.fixture
def stripe_server() -> Iterator[StripeServer]:
    """A fresh Stripe stand-in (tests/stripe_server.py); tests/billing_kit.py points Kijko at it."""
    with StripeServer() as server:
        yield server


@pytest.fixture
async def attacker(database: ScratchDatabase) -> AsyncIterator[asyncpg.Connection]:
    """A plain app-role connection, as the pool hands them out: where an injected statement
    would run."""
    conn = await asyncpg.connect(database.urls.app)
    try:
        yield conn
    finally:
        await conn.close()


@dataclass
class Account:
    """A user signed up through the API, with a fresh organization."""

    email: str
    password: str
    access_token: str
    refresh_token: str
    user_id: str
    org_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    @property
    def identity(self) -> TokenIdentity:
        """What a request with this account's token carries (its real session), for opening
        tenant sessions directly."""
        payload = self.access_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return TokenIdentity(
            UUID(self.user_id), UUID(self.org_id), claims["sid"], datetime.fromtimestamp(claims["exp"], UTC)
        )


async def sign_up(client: Any, **fields: str) -> Account:
    email = fields.get("email", f"user-{uuid.uuid4().hex[:12]}@example.com")
    password = fields.get("password", "correct horse battery")
    response = await client.post(
        "/api/v1/auth/signup",
        json={
            "email": email,
            "password": password,
            "first_name": fields.get("first_name", "Ada"),
            "last_name": fields.get("last_name", "Lovelace"),
        },
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    tokens = await response.get_json()
    me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    profile = await me.get_json()
    return Account(email, password, tokens["access_token"], tokens["refresh_token"], profile["id"], profile["org_id"])


@pytest.fixture
async def alice(client: Any) -> Account:
    return await sign_up(client, first_name="Alice")


@pytest.fixture
async def bob(client: Any) -> Account:
    """A user of another organization."""
    return await sign_up(client, first_name="Bob")
