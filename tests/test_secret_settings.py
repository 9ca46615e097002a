"""Secrets in the settings never show (issue 5 §4): ``repr``/``str`` of ``Settings``, a JSON dump
and the start-up log lines of ``kijko serve`` mask every password, including those inside the
database and Redis URLs; the code that connects still gets the whole URL."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from kijko_core.config import SecretUrl, Settings, load_settings, mask_url
from kijko_core.db.provision import ScratchDatabase
from tests.net import free_port
from tests.test_cli import clean_env
from tests.test_cli import database_env as database_env  # noqa: F401 - fixture
from tests.test_config import clean_environment as clean_environment  # noqa: F401 - autouse fixture
from tests.test_serve import _kijko_command

PG_PASSWORD = "pg-Passw0rd-4711"
REDIS_PASSWORD = "redis-Passw0rd-0815"
CLIENT_SECRET = "kc-client-secret-2342"
FERNET_KEY = "Yz1uZXZlci1zaG93LXRoaXMta2V5LWluLWxvZ3M9PT0="


def secret_settings() -> Settings:
    return load_settings(
        database_url=f"postgresql://kijko_app:{PG_PASSWORD}@db:5432/kijko",
        system_database_url=f"postgresql://kijko_system:{PG_PASSWORD}@db/kijko?sslmode=require",
        migration_database_url=f"postgresql://kijko_owner@db/kijko?password={PG_PASSWORD}",
        redis_url=f"redis://:{REDIS_PASSWORD}@cache:6379/0",
        auth_provider="keycloak",
        keycloak_url="http://keycloak:8080",
        keycloak_client_secret=CLIENT_SECRET,
        encryption_keys=FERNET_KEY,
    )


def test_repr_str_and_json_of_the_settings_show_no_secret() -> None:
    settings = secret_settings()
    shown_as = (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump()))
    for shown in shown_as:
        for secret in (PG_PASSWORD, REDIS_PASSWORD, CLIENT_SECRET, FERNET_KEY):
            assert secret not in shown
    # Where the database is stays readable: only the password is masked.
    assert "postgresql://kijko_app:***@db:5432/kijko" in repr(settings)
    assert "redis://:***@cache:6379/0" in repr(settings)
    dumped = json.loads(settings.model_dump_json())
    assert dumped["system_database_url"] == "postgresql://kijko_system:***@db/kijko?sslmode=require"
    assert dumped["migration_database_url"] == "postgresql://kijko_owner@db/kijko?password=***"


def test_the_code_that_connects_gets_the_whole_url() -> None:
    settings = secret_settings()
    assert isinstance(settings.database_url, SecretUrl) and isinstance(settings.redis_url, SecretUrl)
    assert settings.database_url.get_secret_value() == f"postgresql://kijko_app:{PG_PASSWORD}@db:5432/kijko"
    assert settings.redis_url.get_secret_value() == f"redis://:{REDIS_PASSWORD}@cache:6379/0"
    # A settings object built from another one's values keeps them.
    again = load_settings(
        database_url=settings.database_url,
        system_database_url=settings.system_database_url,
        migration_database_url=settings.migration_database_url,
    )
    assert again.database_url == settings.database_url


def test_bad_urls_are_refused_without_echoing_them() -> None:
    from kijko_core.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as raised:
        load_settings(redis_url=f"http://:{REDIS_PASSWORD}@cache")
    assert raised.value.problems == ["KIJKO_REDIS_URL: not a redis URL"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:p@h:5432/d", "postgresql://u:***@h:5432/d"),
        ("postgresql://u@h/d", "postgresql://u@h/d"),
        ("postgresql://u:p%40ss@h/d", "postgresql://u:***@h/d"),
        ("postgresql://h/d?user=u&password=p", "postgresql://h/d?user=u&password=***"),
        ("redis://:p@h:6379/0", "redis://:***@h:6379/0"),
        ("unix:///run/redis.sock?password=p", "unix:///run/redis.sock?password=***"),
        ("postgresql://u:p@[::1/d", "***"),  # unparseable: nothing of it
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def _passwords(database: ScratchDatabase) -> list[str]:
    urls = (database.urls.app, database.urls.system, database.urls.migration)
    found = [urlsplit(url).password for url in urls]
    assert all(found), "the test database's role URLs carry passwords"
    return [password for password in found if password]


@pytest.mark.slow
def test_start_up_logs_of_serve_contain_no_password(
    database: ScratchDatabase, database_env: dict[str, str], encryption_key: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {**database_env, "KIJKO_LOG_LEVEL": "debug"}
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [*_kijko_command(), "serve", "--port", str(port)],
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert process.poll() is None, out.read_text() + err.read_text()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    logged = out.read_text() + err.read_text()
    assert "serving" in logged, logged
    for secret in (*_passwords(database), encryption_key):
        assert secret not in logged


@pytest.mark.slow
def test_a_failed_start_up_names_no_password(tmp_path: Path) -> None:
    closed = free_port()
    url = f"postgresql://kijko_app:{PG_PASSWORD}@127.0.0.1:{closed}/kijko"
    env = clean_env(
        tmp_path,
        KIJKO_DATABASE_URL=url,
        KIJKO_SYSTEM_DATABASE_URL=url,
        KIJKO_MIGRATION_DATABASE_URL=url,
        KIJKO_REDIS_URL=f"redis://:{REDIS_PASSWORD}@127.0.0.1:{closed}/0",
        KIJKO_ENCRYPTION_KEYS=FERNET_KEY,
        KIJKO_LOG_LEVEL="debug",
    )
    result = subprocess.run(
        [*_kijko_command(), "serve", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    for secret in (PG_PASSWORD, REDIS_PASSWORD, FERNET_KEY):
        assert secret not in result.stdout + result.stderr
