"""What the CLI's commands share: settings, one line per expected failure (never a
traceback) with a documented exit code, and a started runtime for the length of a command."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import asyncpg
import click

from kijko_core.config import Settings, load_settings
from kijko_core.db.migrate import MigrationError, SchemaBehind
from kijko_core.db.session import SystemSession, system_session
from kijko_core.errors import ConfigurationError, KijkoError
from kijko_core.runtime import Kijko

T = TypeVar("T")

#: Exit codes every command uses (docs/operations.md); ``kijko serve`` adds 5 and 6.
EXIT_FAILED = 1
EXIT_CONFIGURATION = 2
EXIT_SCHEMA_BEHIND = 3
EXIT_DATABASE_UNREACHABLE = 4

#: Failures to reach or log in to PostgreSQL (network, DNS, refused, bad password, no database).
DATABASE_UNREACHABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Expected failures print one readable line each and exit with their code."""
    try:
        yield
    except SchemaBehind as error:
        for line in error.problems:
            click.echo(f"configuration error: {line}", err=True)
        sys.exit(EXIT_SCHEMA_BEHIND)
    except ConfigurationError as error:
        for line in error.problems:
            click.echo(f"configuration error: {line}", err=True)
        sys.exit(EXIT_CONFIGURATION)
    except MigrationError as error:
        click.echo(f"migration error: {error}", err=True)
        sys.exit(EXIT_FAILED)
    except KijkoError as error:
        click.echo(f"error: {error.message}", err=True)
        sys.exit(EXIT_FAILED)


def settings(**overrides: Any) -> Settings:
    """The settings, with the command line's options (``None``: not given) on top."""
    with one_line_errors():
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a command's coroutine; a database that cannot be reached is one line, exit 4."""
    with one_line_errors():
        try:
            return asyncio.run(factory())  # type: ignore[arg-type]
        except DATABASE_UNREACHABLE as error:
            click.echo(f"error: database unreachable: {type(error).__name__}: {error}", err=True)
            sys.exit(EXIT_DATABASE_UNREACHABLE)


def require_local(config: Settings, what: str) -> None:
    """Commands that act on the local provider's own data refuse the keycloak provider."""
    if config.auth_provider != "local":
        click.echo(
            f"configuration error: KIJKO_AUTH_PROVIDER: {what} needs the local provider"
            " (with keycloak, do it in Keycloak)",
            err=True,
        )
        sys.exit(EXIT_CONFIGURATION)


def option_errors(error: Any) -> None:
    """One line per invalid option of a pydantic ``ValidationError``, never the submitted value
    (it may be a password); exit 2."""
    for problem in error.errors(include_input=False, include_url=False):
        option = "--" + str(problem["loc"][0]).replace("_", "-") if problem["loc"] else ""
        click.echo(f"error: {option}: {problem['msg']}", err=True)
    sys.exit(EXIT_CONFIGURATION)


def with_runtime(config: Settings, work: Callable[[Kijko], Awaitable[T]]) -> T:
    """Start the runtime (attaching to a running embedded database, never stopping it under a
    server), run ``work``, stop the runtime. Operator commands sell nothing: they do not
    check the Stripe Prices (``kijko billing check`` does)."""

    async def main() -> T:
        kijko = await Kijko.start(config, check_prices=False)
        try:
            return await work(kijko)
        finally:
            await kijko.stop()

    return run(main)


def in_system_session(config: Settings, work: Callable[[SystemSession, Kijko], Awaitable[T]]) -> T:
    """``work`` in one system transaction of a started runtime."""

    async def in_session(kijko: Kijko) -> T:
        async with system_session(kijko.system_db) as db:
            return await work(db, kijko)

    return with_runtime(config, in_session)
