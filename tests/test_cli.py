"""The ``kijko`` command line (FOUND-01): configuration errors are one clear line each and a
non-zero exit, ``kijko openapi`` prints the document, ``kijko users create`` makes a user who
can log in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from click.testing import CliRunner
from openapi_spec_validator import validate

from kijko_cli.main import cli
from kijko_core.db.provision import ScratchDatabase


def clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIJKO_")}
    env["KIJKO_DATA_DIR"] = str(tmp_path / "data")
    env.update(values)
    return env


def run_kijko(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("kijko")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "kijko_cli.main"]
    return subprocess.run(
        [*command, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    """In-process runs with none of the test run's KIJKO_* variables (and no .env file)."""
    for name in list(os.environ):
        if name.startswith("KIJKO_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KIJKO_DATA_DIR", str(tmp_path / "data"))
    # Commands configure logging onto the runner's captured stdout, closed after each run.
    saved = structlog.get_config()
    yield CliRunner()
    structlog.configure(**saved)


@pytest.mark.slow
def test_a_bad_database_url_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    env = clean_env(tmp_path, KIJKO_DATABASE_URL="mysql://x")
    result = run_kijko("migrate", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "configuration error: KIJKO_DATABASE_URL: not a postgres URL\n"
    assert result.stdout == ""


def test_each_bad_value_is_its_own_line(runner: CliRunner) -> None:
    result = runner.invoke(
        cli,
        ["migrate"],
        env={"KIJKO_REDIS_URL": "http://x", "KIJKO_LOG_LEVEL": "loud", "KIJKO_PORT": "-1"},
    )
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 3
    assert all(line.startswith("configuration error: KIJKO_") for line in lines)
    assert {line.split(":")[1].strip() for line in lines} == {
        "KIJKO_REDIS_URL",
        "KIJKO_LOG_LEVEL",
        "KIJKO_PORT",
    }


def test_production_without_secrets_lists_each_missing_one(runner: CliRunner) -> None:
    for command in (["migrate"], ["serve"], ["openapi"]):
        result = runner.invoke(cli, command, env={"KIJKO_MODE": "production"})
        assert result.exit_code == 2, command
        assert result.stderr.splitlines() == [
            "configuration error: KIJKO_DATABASE_URL: required in production mode",
            "configuration error: KIJKO_SYSTEM_DATABASE_URL: required in production mode",
            "configuration error: KIJKO_MIGRATION_DATABASE_URL: required in production mode",
            "configuration error: KIJKO_ENCRYPTION_KEYS: required in production mode",
            "configuration error: KIJKO_PUBLIC_URL: required in production mode",
        ]


def test_serve_flags_are_validated_like_settings(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["serve", "--port", "70000"])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("configuration error: KIJKO_PORT: ")


def test_openapi_prints_the_document(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["openapi"])
    assert result.exit_code == 0, result.stderr
    spec = json.loads(result.stdout)
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    expected = {"/health", "/api/v1/auth/signup", "/api/v1/projects", "/api/v1/projects/{project_id}"}
    assert expected <= set(spec["paths"])


def kijko_env(database: ScratchDatabase, encryption_key: str, tmp_path: Path, **values: str) -> dict[str, str]:
    """The environment of a ``kijko`` process on the test run's database, sharing the app
    fixture's keyring, on the enterprise plan like the app fixture (tests/conftest.py: the
    suites must not hit the free plan's limits), with ``values`` on top."""
    values = {"KIJKO_DEFAULT_PLAN": "enterprise", **values}
    return clean_env(
        tmp_path,
        KIJKO_DATABASE_URL=database.urls.app,
        KIJKO_SYSTEM_DATABASE_URL=database.urls.system,
        KIJKO_MIGRATION_DATABASE_URL=database.urls.migration,
        KIJKO_DB_ROLE_PREFIX=database.prefix,
        KIJKO_ENCRYPTION_KEYS=encryption_key,
        KIJKO_PUBLIC_URL="http://kijko.test",
        **values,
    )


@pytest.fixture
def database_env(database: ScratchDatabase, encryption_key: str, tmp_path: Path) -> dict[str, str]:
    """A ``kijko`` process on the test run's database, sharing the app fixture's keyring."""
    return kijko_env(database, encryption_key, tmp_path)


@pytest.mark.slow
async def test_users_create_makes_a_user_who_can_log_in(
    database_env: dict[str, str], client: Any, tmp_path: Path
) -> None:
    email = f"cli-{uuid.uuid4().hex[:10]}@example.com"
    args = [
        "users",
        "create",
        "--email",
        email,
        "--first-name",
        "Grace",
        "--last-name",
        "Hopper",
        "--password",
        "a long enough password",
    ]
    result = run_kijko(*args, env=database_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)

    login = await client.post("/api/v1/auth/login", json={"email": email, "password": "a long enough password"})
    assert login.status_code == 200
    tokens = await login.get_json()
    me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    profile = await me.get_json()
    assert profile["id"] == created["user_id"] and profile["org_id"] == created["org_id"]
    assert profile["first_name"] == "Grace" and profile["roles"] == ["owner"]

    again = run_kijko(*args, env=database_env, cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr == "error: An account with this email already exists\n"


def test_users_create_rejects_bad_input_without_echoing_it(runner: CliRunner) -> None:
    result = runner.invoke(
        cli,
        [
            "users",
            "create",
            "--email",
            "not-an-email",
            "--first-name",
            "Grace",
            "--last-name",
            "Hopper",
            "--password",
            "short",
        ],
    )
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert [line.split(":")[1].strip() for line in lines] == ["--email", "--password"]
    assert "short" not in result.stderr
    assert "not-an-email" not in result.stderr


@pytest.mark.slow
def test_migrate_on_the_embedded_database_stops_it_afterwards(tmp_path: Path) -> None:
    from tests.test_serve import postgres_processes

    tmp_path.chmod(0o755)  # as root, PostgreSQL runs as its own system user and must get in
    env = clean_env(tmp_path)
    first = run_kijko("migrate", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("applied ")
    assert postgres_processes(tmp_path / "data") == []
    status = run_kijko("migrate", "--status", env=env, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert status.stdout and "pending" not in status.stdout
    assert postgres_processes(tmp_path / "data") == []
