"""``kijko serve | migrate | users create | keys rotate | openapi``."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from kijko_core.config import Settings, load_settings
from kijko_core.db.migrate import MigrationError, SchemaBehind
from kijko_core.errors import ConfigurationError, KijkoError

T = TypeVar("T")


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Expected failures print one readable line each and exit non-zero, never a traceback:
    2 for configuration, 3 for a schema behind the code, 1 for everything else
    (docs/operations.md)."""
    try:
        yield
    except SchemaBehind as error:
        for line in error.problems:
            click.echo(f"configuration error: {line}", err=True)
        sys.exit(3)
    except ConfigurationError as error:
        for line in error.problems:
            click.echo(f"configuration error: {line}", err=True)
        sys.exit(2)
    except MigrationError as error:
        click.echo(f"migration error: {error}", err=True)
        sys.exit(1)
    except KijkoError as error:
        click.echo(f"error: {error.message}", err=True)
        sys.exit(1)


def _settings(**overrides: Any) -> Settings:
    with _one_line_errors():
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    with _one_line_errors():
        return asyncio.run(factory())  # type: ignore[arg-type]


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kijko")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Kijko: the backend of AI-powered developer tools."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        ctx.exit(0)
    if ctx.invoked_subcommand != "config":  # config warns (or fails) on its own
        from kijko_core.config import environment_names, unknown_variables

        for line in unknown_variables(environment_names()):
            click.echo(f"warning: {line}", err=True)


@cli.command()
@click.option("--host", help="Interface to listen on (KIJKO_HOST, default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (KIJKO_PORT, default 8000).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data directory (KIJKO_DATA_DIR).")
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
    help="Least severe level logged (KIJKO_LOG_LEVEL, default info).",
)
def serve(host: str | None, port: int | None, data_dir: Path | None, log_level: str | None) -> None:
    """Run the API. With no database configured, on an embedded PostgreSQL in the data dir.

    Exit codes: 0 stopped, 1 failed to start, 2 configuration, 3 schema behind (run
    `kijko migrate`), 4 database unreachable, 5 address in use, 6 data directory not writable.
    """
    from kijko_cli.serve import ServeError, run_server

    settings = _settings(host=host, port=port, data_dir=data_dir, log_level=log_level)
    with _one_line_errors():
        try:
            run_server(settings)
        except ServeError as error:
            click.echo(f"error: {error.message}", err=True)
            sys.exit(error.exit_code)


@cli.command()
@click.option("--status", "show_status", is_flag=True, help="Show applied and pending migrations.")
def migrate(show_status: bool) -> None:
    """Apply pending database migrations (with the owner credentials)."""
    from kijko_core.db import migrate as migrations
    from kijko_core.db.roles import RoleNames
    from kijko_core.runtime import resolve_database

    settings = _settings()

    async def work() -> None:
        urls, embedded = await resolve_database(settings)
        try:
            if show_status:
                for item in await migrations.status(urls.migration):
                    state = item.applied_at.isoformat() if item.applied_at else "pending"
                    click.echo(f"{item.label}\t{state}")
                return
            done = await migrations.migrate(urls.migration, RoleNames.from_prefix(settings.db_role_prefix))
            click.echo(f"applied {len(done)} migration(s)" + "".join(f"\n  {m.label}" for m in done))
        finally:
            if embedded is not None:
                embedded.stop()

    _run(work)


@cli.group()
def users() -> None:
    """Manage users: create, list, roles and passwords (create and passwords: local provider)."""


@users.command("create")
@click.option("--email", required=True)
@click.option("--first-name", required=True)
@click.option("--last-name", required=True)
@click.password_option(help="Password (asked for when not given).")
def users_create(email: str, first_name: str, last_name: str, password: str) -> None:
    """Create a user with their own organization (they become its owner)."""
    from pydantic import ValidationError

    from kijko_core.auth.local.provider import LocalProvider
    from kijko_core.auth.models import SignupRequest
    from kijko_core.runtime import Kijko

    settings = _settings()
    if settings.auth_provider != "local":
        click.echo("error: users are created in Keycloak when KIJKO_AUTH_PROVIDER=keycloak", err=True)
        sys.exit(2)
    try:
        data = SignupRequest(email=email, password=password, first_name=first_name, last_name=last_name)
    except ValidationError as error:
        # One line per bad option; never the submitted value (it may be the password).
        for problem in error.errors(include_input=False, include_url=False):
            option = "--" + str(problem["loc"][0]).replace("_", "-") if problem["loc"] else ""
            click.echo(f"error: {option}: {problem['msg']}", err=True)
        sys.exit(2)

    async def work() -> tuple[Any, Any]:
        kijko = await Kijko.start(settings)
        try:
            assert isinstance(kijko.identity, LocalProvider)
            return await kijko.identity.create_user(
                email=str(data.email), password=data.password,
                first_name=data.first_name, last_name=data.last_name,
            )
        finally:
            await kijko.stop()

    user_id, org_id = _run(work)
    click.echo(json.dumps({"user_id": str(user_id), "org_id": str(org_id)}))


@cli.group()
def keys() -> None:
    """Manage the local provider's token signing keys."""


@keys.command("rotate")
def keys_rotate() -> None:
    """Publish a new signing key; it signs from one key refresh interval on, when the old one
    is retired (and stays published until its tokens expire)."""
    from kijko_core.auth.local.keys import Rotation
    from kijko_core.auth.local.provider import LocalProvider
    from kijko_core.runtime import Kijko

    settings = _settings()

    async def work() -> Rotation:
        kijko = await Kijko.start(settings)
        try:
            if not isinstance(kijko.identity, LocalProvider):
                raise ConfigurationError(["KIJKO_AUTH_PROVIDER: keys rotate needs the local provider"])
            return await kijko.identity.keys.rotate()
        finally:
            await kijko.stop()

    rotation = _run(work)
    click.echo(f"new signing key: {rotation.kid} (published now, signs from {rotation.active_from.isoformat()})")


@cli.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the document to this file instead of printing it.")
def openapi(output: Path | None) -> None:
    """Print (or write) the OpenAPI document."""
    from kijko_server.app import create_app

    app = create_app(_settings())

    async def work() -> dict[str, Any]:
        async with app.test_request_context("/openapi.json"):
            return app.extensions["QUART_SCHEMA"].openapi_provider.schema()  # type: ignore[no-any-return]

    document = json.dumps(_run(work), indent=2)
    if output is None:
        click.echo(document)
        return
    try:
        output.write_text(document + "\n")
    except OSError as error:
        click.echo(f"error: cannot write {output}: {error.strerror}", err=True)
        sys.exit(1)


def _register_operator_commands() -> None:
    """The operator commands live in their own modules (kijko_cli/users.py, …)."""
    from kijko_cli import config_cmd, db, sessions
    from kijko_cli import keys as keys_commands
    from kijko_cli import users as users_commands

    users.add_command(users_commands.list_users)
    users.add_command(users_commands.set_role)
    users.add_command(users_commands.reset_password)
    users.add_command(users_commands.delete_user)
    keys.add_command(keys_commands.list_keys)
    cli.add_command(config_cmd.config)
    cli.add_command(sessions.sessions)
    cli.add_command(db.db)


_register_operator_commands()


if __name__ == "__main__":
    cli()
