"""The operator's commands (issue 5 §5): ``kijko -h``, ``config show|check``, ``users
list|set-role|reset-password|delete``, ``sessions revoke``, ``keys list``, ``openapi --output``,
``db provision`` and the warning about unknown ``KIJKO_*`` variables. Commands that touch the
database run as real processes on the test run's database; their effect is checked through
the API."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from click.testing import CliRunner

from kijko_cli.main import cli
from kijko_core.config import Settings
from kijko_core.crypto import Keyring
from kijko_core.db.provision import ScratchDatabase, drop
from kijko_core.db.roles import RoleNames
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.memberships import add_member
from tests.net import free_port
from tests.test_cli import clean_env, run_kijko
from tests.test_cli import database_env as database_env  # noqa: F401 - fixture
from tests.test_cli import runner as runner  # noqa: F401 - fixture

# --- help and unknown variables -------------------------------------------------------------


def test_kijko_h_and_plain_kijko_print_help_and_exit_0(runner: CliRunner, tmp_path: Path) -> None:
    for args in (["-h"], ["--help"], []):
        result = runner.invoke(cli, args, prog_name="kijko")
        assert result.exit_code == 0, (args, result.output)
        assert result.stdout.startswith("Usage: kijko"), args
        assert "config" in result.stdout and "sessions" in result.stdout
    assert runner.invoke(cli, ["users", "-h"]).exit_code == 0
    plain = run_kijko(env=clean_env(tmp_path), cwd=tmp_path)  # the installed entry point
    assert (plain.returncode, plain.stderr) == (0, "")
    assert plain.stdout.startswith("Usage: kijko")


def test_an_unknown_kijko_variable_is_one_warning_line_with_the_closest_name(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KIJKO_LOG_LEVLE=debug\n")
    # serve warns too: the line comes before its own (failing) start-up.
    result = runner.invoke(
        cli,
        ["serve", "--port", "70000"],
        env={"KIJKO_DATABSE_URL": "postgresql://x/y", "KIJKO_TEST_ANYTHING": "1"},
    )
    assert result.stderr.splitlines()[:2] == [
        "warning: KIJKO_DATABSE_URL is not a Kijko setting and is ignored (did you mean KIJKO_DATABASE_URL?)",
        "warning: KIJKO_LOG_LEVLE is not a Kijko setting and is ignored (did you mean KIJKO_LOG_LEVEL?)",
    ]
    assert "KIJKO_TEST_ANYTHING" not in result.stderr  # the test suite's own variables


# --- config --------------------------------------------------------------------------------


def test_config_show_lists_every_setting_with_its_source_and_masks_secrets(runner: CliRunner, tmp_path: Path) -> None:
    key = Keyring.generate_key()
    (tmp_path / ".env").write_text("KIJKO_LOG_LEVEL=debug\n")
    result = runner.invoke(
        cli,
        ["config", "show"],
        env={
            "KIJKO_PORT": "9000",
            "KIJKO_ENCRYPTION_KEYS": key,
            "KIJKO_REDIS_URL": "redis://:hunter2-secret@localhost:6379/0",
        },
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "setting\tvalue\tsource"
    rows = {name: (value, source) for name, value, source in (line.split("\t") for line in lines[1:])}
    assert set(rows) == {"KIJKO_" + name.upper() for name in Settings.model_fields}
    assert rows["KIJKO_PORT"] == ("9000", "environment")
    assert rows["KIJKO_LOG_LEVEL"] == ("debug", ".env")
    assert rows["KIJKO_HOST"] == ("127.0.0.1", "default")
    assert rows["KIJKO_ENCRYPTION_KEYS"] == ("***", "environment")
    assert rows["KIJKO_REDIS_URL"] == ("redis://:***@localhost:6379/0", "environment")
    assert key not in result.output and "hunter2-secret" not in result.output


def test_config_check_is_ok_or_one_line_per_problem_and_exit_2(runner: CliRunner) -> None:
    ok = runner.invoke(cli, ["config", "check"])
    assert (ok.exit_code, ok.stdout) == (0, "configuration ok\n")

    bad = runner.invoke(cli, ["config", "check"], env={"KIJKO_PORT": "-1", "KIJKO_PROT": "80"})
    assert bad.exit_code == 2
    assert bad.stdout == ""
    assert bad.stderr.splitlines() == [
        "configuration error: KIJKO_PROT is not a Kijko setting and is ignored (did you mean KIJKO_PORT?)",
        "configuration error: KIJKO_PORT: Input should be greater than or equal to 0",
    ]


# --- openapi --output -----------------------------------------------------------------------


def test_openapi_output_writes_the_document(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "openapi.json"
    result = runner.invoke(cli, ["openapi", "--output", str(target)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "/api/v1/projects" in json.loads(target.read_text())["paths"]

    missing = runner.invoke(cli, ["openapi", "-o", str(tmp_path / "no" / "such" / "dir.json")])
    assert missing.exit_code == 1
    (line,) = missing.stderr.splitlines()
    assert line.startswith("error: cannot write ") and "No such file or directory" in line


# --- users, sessions, keys (real processes on the test database) ----------------------------


def _columns(output: str) -> list[dict[str, str]]:
    header, *lines = output.splitlines()
    names = header.split("\t")
    return [dict(zip(names, line.split("\t"), strict=True)) for line in lines]


@pytest.mark.slow
async def test_users_list_and_set_role(
    database_env: dict[str, str], tmp_path: Path, alice: Account, kijko: Kijko, client: Any
) -> None:
    member = await add_member(kijko, alice.org_id, "member")
    listing = kijko_run(database_env, tmp_path, "users", "list", "--org", alice.org_id)
    assert listing.returncode == 0, listing.stderr
    rows = {row["email"]: row for row in _columns(listing.stdout)}
    assert set(rows) == {alice.email, member.email}
    assert rows[alice.email]["role"] == "owner" and rows[alice.email]["user_id"] == alice.user_id
    assert rows[member.email]["role"] == "member" and rows[member.email]["name"] == "Mia Member"

    promoted = kijko_run(database_env, tmp_path, "users", "set-role", member.email, "admin")
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout == f"{member.user_id} is now admin in {alice.org_id}\n"
    me = await client.get("/api/v1/auth/me", headers=member.headers)
    assert (await me.get_json())["roles"] == ["admin"]

    last_owner = kijko_run(database_env, tmp_path, "users", "set-role", alice.user_id, "viewer")
    assert last_owner.returncode == 1
    assert last_owner.stderr == "error: That would leave the organization without an owner\n"

    unknown = kijko_run(database_env, tmp_path, "users", "set-role", "nobody@example.com", "admin")
    assert (unknown.returncode, unknown.stderr) == (1, "error: No user with that email or id\n")
    bad_role = kijko_run(database_env, tmp_path, "users", "set-role", alice.email, "emperor")
    assert bad_role.returncode == 2


@pytest.mark.slow
async def test_users_delete_erases_the_user_and_keeps_their_projects(
    database_env: dict[str, str], tmp_path: Path, alice: Account, kijko: Kijko, client: Any
) -> None:
    member = await add_member(kijko, alice.org_id, "member")
    created = await client.post(
        "/api/v1/projects",
        headers=member.headers,
        json={"name": "kept after erasure", "type": "manual", "privacy": "shared"},
    )
    assert created.status_code == 201, await created.get_data(as_text=True)
    project_id = (await created.get_json())["project"]["id"]

    unconfirmed = kijko_run(database_env, tmp_path, "users", "delete", member.email)
    assert unconfirmed.returncode == 1  # no --yes and no terminal to confirm on: nothing done
    assert (await client.get("/api/v1/auth/me", headers=member.headers)).status_code == 200

    erased = kijko_run(database_env, tmp_path, "users", "delete", member.email, "--yes")
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout == f"erased {member.user_id}; deleted 0 organization(s)\n"
    assert (await client.get("/api/v1/auth/me", headers=member.headers)).status_code == 401
    kept = await client.get(f"/api/v1/projects/{project_id}", headers=alice.headers)
    assert kept.status_code == 200 and (await kept.get_json())["userId"] == ""

    again = kijko_run(database_env, tmp_path, "users", "delete", member.email, "--yes")
    assert (again.returncode, again.stderr) == (1, "error: No user with that email or id\n")


@pytest.mark.slow
async def test_reset_password_replaces_it_and_ends_every_session(
    database_env: dict[str, str], tmp_path: Path, alice: Account, client: Any
) -> None:
    short = kijko_run(database_env, tmp_path, "users", "reset-password", alice.email, "--password", "short")
    assert short.returncode == 2 and "short" not in short.stderr.replace("--password", "")

    reset = kijko_run(
        database_env, tmp_path, "users", "reset-password", alice.email, "--password", "a brand new password"
    )
    assert reset.returncode == 0, reset.stderr
    assert reset.stdout == f"new password set for {alice.user_id}; revoked 1 session(s)\n"

    assert (await client.get("/api/v1/auth/me", headers=alice.headers)).status_code == 401
    old = await client.post("/api/v1/auth/login", json={"email": alice.email, "password": alice.password})
    assert old.status_code == 401
    new = await client.post("/api/v1/auth/login", json={"email": alice.email, "password": "a brand new password"})
    assert new.status_code == 200


@pytest.mark.slow
async def test_sessions_revoke_by_user_or_by_session(
    database_env: dict[str, str], tmp_path: Path, alice: Account, bob: Account, client: Any
) -> None:
    by_session = kijko_run(database_env, tmp_path, "sessions", "revoke", bob.identity.session_id)
    assert (by_session.returncode, by_session.stdout) == (0, "revoked 1 session(s)\n")
    assert (await client.get("/api/v1/auth/me", headers=bob.headers)).status_code == 401
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": bob.refresh_token})
    assert refreshed.status_code == 401

    assert (await client.get("/api/v1/auth/me", headers=alice.headers)).status_code == 200
    by_user = kijko_run(database_env, tmp_path, "sessions", "revoke", alice.email.upper())
    assert (by_user.returncode, by_user.stdout) == (0, "revoked 1 session(s)\n"), by_user.stderr
    assert (await client.get("/api/v1/auth/me", headers=alice.headers)).status_code == 401
    again = kijko_run(database_env, tmp_path, "sessions", "revoke", alice.user_id)
    assert (again.returncode, again.stdout) == (0, "revoked 0 session(s)\n")

    unknown = kijko_run(database_env, tmp_path, "sessions", "revoke", "no-such-session")
    assert unknown.returncode == 1
    assert unknown.stderr == "error: No user or session with that email or id\n"


@pytest.mark.slow
def test_keys_list_shows_which_key_signs(database_env: dict[str, str], tmp_path: Path) -> None:
    rotated = kijko_run(database_env, tmp_path, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    new_kid = rotated.stdout.removeprefix("new signing key: ").split()[0]
    listing = kijko_run(database_env, tmp_path, "keys", "list")
    assert listing.returncode == 0, listing.stderr
    rows = _columns(listing.stdout)
    # The new key is published first and signs only from its activation time; until then the
    # previous key signs, retiring exactly when the new one takes over.
    new, current = rows[0], rows[1]
    assert (new["kid"], new["signing"], new["retired_at"], new["algorithm"]) == (new_kid, "no", "-", "RS256")
    assert new["active_from"] > new["created_at"]
    assert (current["signing"], current["retired_at"]) == ("yes", new["active_from"])
    assert all(r["signing"] == "no" and r["retired_at"] != "-" for r in rows[2:])


# --- db provision ---------------------------------------------------------------------------


@pytest.mark.slow
async def test_db_provision_creates_roles_and_database_and_keeps_configured_passwords(
    database: ScratchDatabase, tmp_path: Path
) -> None:
    prefix = "kp" + secrets.token_hex(4)
    roles = RoleNames.from_prefix(prefix)
    name = prefix + "_db"
    env = clean_env(tmp_path, KIJKO_DB_ROLE_PREFIX=prefix)
    try:
        first = run_kijko(
            "db", "provision", "--admin-url", database.admin_dsn, "--database", name, env=env, cwd=tmp_path
        )
        assert first.returncode == 0, first.stderr
        assert first.stderr == (
            f"provisioned database {name} with roles {prefix}_owner, {prefix}_app, {prefix}_system\n"
        )
        urls = dict(line.split("=", 1) for line in first.stdout.splitlines())
        assert set(urls) == {"KIJKO_DATABASE_URL", "KIJKO_SYSTEM_DATABASE_URL", "KIJKO_MIGRATION_DATABASE_URL"}
        app = await asyncpg.connect(urls["KIJKO_DATABASE_URL"])
        try:
            assert await app.fetchval("SELECT current_user") == roles.app
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute("CREATE TEMP TABLE t (x int)")
        finally:
            await app.close()

        # Again, configured with those URLs: nothing changes, the passwords still work.
        again = run_kijko("db", "provision", "--admin-url", database.admin_dsn, env={**env, **urls}, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert again.stdout == ""
        migrated = run_kijko("migrate", env={**env, **urls}, cwd=tmp_path)
        assert migrated.returncode == 0, migrated.stderr

        wrong = {**urls, "KIJKO_DATABASE_URL": _with_user(urls["KIJKO_DATABASE_URL"], "someone")}
        refused = run_kijko("db", "provision", "--admin-url", database.admin_dsn, env={**env, **wrong}, cwd=tmp_path)
        assert refused.returncode == 2
        assert refused.stderr == (
            f"configuration error: KIJKO_DATABASE_URL: its user must be {prefix}_app (KIJKO_DB_ROLE_PREFIX)\n"
        )
    finally:
        await drop(database.admin_dsn, database=name, roles=roles)


def _with_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=user + parts.netloc[parts.netloc.index(":") :]))


def kijko_run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_kijko(*args, env=env, cwd=cwd)


@pytest.mark.slow
@pytest.mark.parametrize("command", [("users", "list"), ("sessions", "revoke", "x"), ("migrate", "--status")])
def test_a_database_that_cannot_be_reached_is_one_line_and_exit_4(
    tmp_path: Path, encryption_key: str, command: tuple[str, ...]
) -> None:

    url = f"postgresql://kijko_app:s3cret-pw@127.0.0.1:{free_port()}/kijko"
    env = clean_env(
        tmp_path,
        KIJKO_DATABASE_URL=url,
        KIJKO_SYSTEM_DATABASE_URL=url,
        KIJKO_MIGRATION_DATABASE_URL=url,
        KIJKO_ENCRYPTION_KEYS=encryption_key,
    )
    result = run_kijko(*command, env=env, cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: database unreachable: "), result.stderr
    assert "s3cret-pw" not in result.stderr and "Traceback" not in result.stderr
