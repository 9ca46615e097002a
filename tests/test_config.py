"""Configuration (FOUND-02, SECR-05): every ``KIJKO_*`` setting validated at start with one
readable line per bad value; production has no secret defaults; embedded mode generates its
secrets into the data directory, readable by the owner only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kijko_core.config import DEFAULT_CORS_ORIGINS, Settings, load_settings
from kijko_core.crypto import Keyring
from kijko_core.errors import ConfigurationError
from kijko_core.runtime import resolve_keyring

PRODUCTION_REQUIRED = [
    "KIJKO_DATABASE_URL: required in production mode",
    "KIJKO_SYSTEM_DATABASE_URL: required in production mode",
    "KIJKO_MIGRATION_DATABASE_URL: required in production mode",
    "KIJKO_ENCRYPTION_KEYS: required in production mode",
    "KIJKO_PUBLIC_URL: required in production mode",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No KIJKO_* variable or .env file of the test run leaks into these settings."""
    import os

    for name in list(os.environ):
        if name.startswith("KIJKO_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def problems(**values: object) -> list[str]:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(**values)
    return raised.value.problems


def test_defaults_are_embedded_and_local() -> None:
    settings = load_settings()
    assert settings.mode == "embedded" and settings.embedded_database
    assert settings.auth_provider == "local"
    assert settings.cors_origins == DEFAULT_CORS_ORIGINS
    assert settings.access_token_ttl_seconds <= 900
    assert settings.refresh_reuse_grace_seconds == 10


def test_a_non_postgres_url_is_one_readable_line() -> None:
    assert problems(database_url="mysql://x") == ["KIJKO_DATABASE_URL: not a postgres URL"]


def test_every_bad_value_gets_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIJKO_DATABASE_URL", "mysql://root:hunter2@db/kijko")
    monkeypatch.setenv("KIJKO_REDIS_URL", "http://cache")
    monkeypatch.setenv("KIJKO_PORT", "eighty")
    monkeypatch.setenv("KIJKO_TRUSTED_PROXIES", "10.0.0.0/8, not-a-network")
    monkeypatch.setenv("KIJKO_LOG_LEVEL", "loud")
    monkeypatch.setenv("KIJKO_DB_ROLE_PREFIX", "Robert'); DROP")
    lines = problems()
    assert len(lines) == 6
    by_name = {line.split(":", 1)[0]: line for line in lines}
    assert set(by_name) == {
        "KIJKO_DATABASE_URL",
        "KIJKO_REDIS_URL",
        "KIJKO_PORT",
        "KIJKO_TRUSTED_PROXIES",
        "KIJKO_LOG_LEVEL",
        "KIJKO_DB_ROLE_PREFIX",
    }
    assert by_name["KIJKO_REDIS_URL"] == "KIJKO_REDIS_URL: not a redis URL"
    assert by_name["KIJKO_TRUSTED_PROXIES"] == (
        "KIJKO_TRUSTED_PROXIES: each entry must be an IP address or CIDR network"
    )
    # The submitted values are never repeated back (they may hold passwords).
    text = "\n".join(lines)
    for secret in ("hunter2", "eighty", "not-a-network", "loud", "DROP"):
        assert secret not in text


def test_production_without_secrets_lists_each_missing_one() -> None:
    assert problems(mode="production") == PRODUCTION_REQUIRED


def test_production_with_everything_is_accepted() -> None:
    url = "postgresql://kijko@db.internal/kijko"
    settings = load_settings(
        mode="production",
        database_url=url,
        system_database_url=url,
        migration_database_url=url,
        encryption_keys=Keyring.generate_key(),
        public_url="https://api.kijko.test/",
    )
    assert settings.issuer == "https://api.kijko.test"
    assert not settings.embedded_database


def test_database_urls_come_together_or_not_at_all() -> None:
    (line,) = problems(database_url="postgresql://kijko@db/kijko")
    assert line.startswith("KIJKO_DATABASE_URL: set KIJKO_DATABASE_URL, KIJKO_SYSTEM_DATABASE_URL")


def test_keycloak_needs_its_url_and_client_secret() -> None:
    assert problems(auth_provider="keycloak") == [
        "KIJKO_KEYCLOAK_URL: required when KIJKO_AUTH_PROVIDER=keycloak",
        "KIJKO_KEYCLOAK_CLIENT_SECRET: required when KIJKO_AUTH_PROVIDER=keycloak",
    ]


def test_access_tokens_cannot_live_longer_than_15_minutes() -> None:
    (line,) = problems(access_token_ttl_seconds=3600)
    assert line.startswith("KIJKO_ACCESS_TOKEN_TTL_SECONDS: ")


def test_lists_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIJKO_CORS_ORIGINS", "https://a.test, https://b.test,")
    monkeypatch.setenv("KIJKO_TRUSTED_PROXIES", "10.0.0.1,192.168.0.0/16")
    settings = load_settings()
    assert settings.cors_origins == ["https://a.test", "https://b.test"]
    assert settings.trusted_proxies == ["10.0.0.1", "192.168.0.0/16"]


def test_a_dotenv_file_is_read_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KIJKO_PORT=9001\nKIJKO_HOST=0.0.0.0\n")
    monkeypatch.setenv("KIJKO_HOST", "127.0.0.2")
    settings = Settings()
    assert settings.port == 9001 and settings.host == "127.0.0.2"


def test_embedded_mode_generates_the_keyring_once_into_a_private_file(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    first = resolve_keyring(settings)
    key_file = tmp_path / "data" / "secrets" / "encryption-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    second = resolve_keyring(settings)
    token = first.encrypt("kept across restarts")
    assert second.decrypt(token) == "kept across restarts"


def test_a_bad_encryption_keyring_is_a_configuration_error() -> None:
    settings = load_settings(encryption_keys="not-a-fernet-key")
    with pytest.raises(ConfigurationError) as raised:
        resolve_keyring(settings)
    assert raised.value.problems == ["KIJKO_ENCRYPTION_KEYS: not a comma-separated list of Fernet keys"]
