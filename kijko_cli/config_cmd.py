"""``kijko config show | check``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import SecretStr

from kijko_cli.common import settings
from kijko_core.config import (
    MASK,
    Settings,
    env_file_values,
    environment_names,
    load_settings,
    mask_url,
    unknown_variables,
)
from kijko_core.errors import ConfigurationError


@click.group("config")
@click.pass_context
def config(ctx: click.Context) -> None:
    """Show and check the settings (KIJKO_* variables, .env, defaults)."""
    if ctx.invoked_subcommand != "check":  # check reports them as problems itself
        for line in unknown_variables(environment_names()):
            click.echo(f"warning: {line}", err=True)


@config.command("show")
def show() -> None:
    """Every setting with its value and where it comes from (environment, .env or default);
    passwords and keys masked. Tab-separated."""
    current = settings()
    from_file = {name.upper() for name in env_file_values()}
    from_env = {name.upper() for name in os.environ}
    click.echo("setting\tvalue\tsource")
    for name in Settings.model_fields:
        variable = "KIJKO_" + name.upper()
        source = "environment" if variable in from_env else ".env" if variable in from_file else "default"
        click.echo(f"{variable}\t{display(getattr(current, name))}\t{source}")


@config.command("check")
def check() -> None:
    """Validate the settings: one line per problem and exit code 2, or "configuration ok"."""
    problems = [f"configuration error: {line}" for line in unknown_variables(environment_names())]
    try:
        load_settings()
    except ConfigurationError as error:
        problems += [f"configuration error: {line}" for line in error.problems]
    if problems:
        for line in problems:
            click.echo(line, err=True)
        sys.exit(2)
    click.echo("configuration ok")


def display(value: Any) -> str:
    """A setting's value as an operator reads it, with every secret masked."""
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        return mask_url(secret) if _is_url(secret) else MASK
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str) and _is_url(value):
        return mask_url(value)
    return str(value)


def _is_url(value: str) -> bool:
    return "://" in value
