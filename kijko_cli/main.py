"""``kijko``: ``serve``, ``migrate``, ``users create`` and ``keys rotate``, ``openapi``; the
operator commands (``config``, ``users …``, ``sessions``, ``keys list``, ``db``, ``mail``) live in their
own modules and are registered at the end."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from kijko_cli.common import (
    one_line_errors,
    option_errors,
    require_local,
    run,
    with_runtime,
)
from kijko_cli.common import (
    settings as load_cli_settings,
)


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
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Least severe level logged (KIJKO_LOG_LEVEL, default info).",
)
def serve(host: str | None, port: int | None, data_dir: Path | None, log_level: str | None) -> None:
    """Run the API. With no database configured, on an embedded PostgreSQL in the data dir.

    Exit codes: 0 stopped, 1 failed to start, 2 configuration, 3 schema behind (run
    `kijko migrate`), 4 database unreachable, 5 address in use, 6 data directory not writable.
    """
    from kijko_cli.serve import ServeError, run_server

    settings = load_cli_settings(host=host, port=port, data_dir=data_dir, log_level=log_level)
    with one_line_errors():
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

    settings = load_cli_settings()

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

    run(work)


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

    settings = load_cli_settings()
    require_local(settings, "users create")
    try:
        data = SignupRequest(email=email, password=password, first_name=first_name, last_name=last_name)
    except ValidationError as error:
        option_errors(error)

    async def work(kijko: Kijko) -> tuple[Any, Any]:
        assert isinstance(kijko.identity, LocalProvider)
        return await kijko.identity.create_user(
            email=str(data.email),
            password=data.password,
            first_name=data.first_name,
            last_name=data.last_name,
        )

    user_id, org_id = with_runtime(settings, work)
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

    settings = load_cli_settings()
    require_local(settings, "keys rotate")

    async def work(kijko: Kijko) -> Rotation:
        assert isinstance(kijko.identity, LocalProvider)
        return await kijko.identity.keys.rotate()

    rotation = with_runtime(settings, work)
    click.echo(f"new signing key: {rotation.kid} (published now, signs from {rotation.active_from.isoformat()})")


@cli.command()
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the document to this file instead of printing it.",
)
def openapi(output: Path | None) -> None:
    """Print (or write) the OpenAPI document."""
    from kijko_server.app import create_app

    with one_line_errors():
        app = create_app(load_cli_settings())

    async def work() -> dict[str, Any]:
        async with app.test_request_context("/openapi.json"):
            return app.extensions["QUART_SCHEMA"].openapi_provider.schema()  # type: ignore[no-any-return]

    document = json.dumps(run(work), indent=2)
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
    from kijko_cli import billing_inbox, config_cmd, db, sessions
    from kijko_cli import jobs as jobs_commands
    from kijko_cli import keys as keys_commands
    from kijko_cli import mail as mail_commands
    from kijko_cli import plugins as plugins_command
    from kijko_cli import users as users_commands
    from kijko_cli import worker as worker_command

    users.add_command(users_commands.list_users)
    users.add_command(users_commands.set_role)
    users.add_command(users_commands.reset_password)
    users.add_command(users_commands.delete_user)
    keys.add_command(keys_commands.list_keys)
    cli.add_command(config_cmd.config)
    cli.add_command(sessions.sessions)
    cli.add_command(db.db)
    cli.add_command(worker_command.worker)
    cli.add_command(jobs_commands.jobs)
    cli.add_command(mail_commands.mail)
    cli.add_command(plugins_command.plugins)
    # The Stripe webhook inbox; the integrator attaches it under `kijko billing`.
    cli.add_command(billing_inbox.inbox)


_register_operator_commands()


if __name__ == "__main__":
    cli()
