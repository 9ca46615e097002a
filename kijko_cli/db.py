"""``kijko db provision``: create Kijko's roles and database on a PostgreSQL server from an
administrator URL (what embedded mode does by itself; decision 0032)."""

from __future__ import annotations

import secrets
from urllib.parse import unquote, urlsplit

import asyncpg
import click

from kijko_cli.common import run, settings
from kijko_core.config import Settings
from kijko_core.db.provision import provision, role_urls
from kijko_core.db.roles import RoleNames
from kijko_core.errors import ConfigurationError, KijkoError
from kijko_core.runtime import role_timeouts

DEFAULT_DATABASE = "kijko"


class ProvisioningFailed(KijkoError):
    """The administrator connection failed or lacks a privilege (exit code 1)."""


@click.group()
def db() -> None:
    """Set up the production database."""


@db.command("provision")
@click.option(
    "--admin-url",
    required=True,
    metavar="URL",
    help="An administrator (CREATEROLE and CREATEDB) connection; PGPASSWORD or ~/.pgpass may hold its password.",
)
@click.option("--database", default=None, help="Database name (default: that of KIJKO_DATABASE_URL, else kijko).")
@click.option(
    "--own-cluster",
    is_flag=True,
    help="The server holds nothing but Kijko: also revoke PUBLIC's CONNECT and TEMP on its other databases.",
)
def provision_command(admin_url: str, database: str | None, own_cluster: bool) -> None:
    """Create (or bring up to date) the owner, app and system roles and the database.

    With KIJKO_DATABASE_URL, KIJKO_SYSTEM_DATABASE_URL and KIJKO_MIGRATION_DATABASE_URL set,
    the roles get the passwords those URLs carry. Without them, fresh passwords are generated
    and the three URLs printed for your secret store. Then run `kijko migrate`.
    """
    # Only the role prefix, timeouts and the three URLs matter here: the other production
    # requirements (keys, public URL) need not be in place yet.
    config = settings(mode="embedded")
    roles = RoleNames.from_prefix(config.db_role_prefix)
    configured = not config.embedded_database
    passwords = {kind: secrets.token_urlsafe(32) for kind in ("owner", "app", "system")}

    async def work() -> str:
        name = database or DEFAULT_DATABASE
        if configured:
            name, configured_passwords = _from_urls(config, roles)
            if database is not None and database != name:
                raise ConfigurationError(["KIJKO_DATABASE_URL: names another database than --database"])
            passwords.update(configured_passwords)
        try:
            await provision(
                admin_url,
                database=name,
                roles=roles,
                passwords=passwords,
                timeouts=role_timeouts(config),
                own_cluster=own_cluster,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise ProvisioningFailed(f"provisioning failed: {error}") from None
        return name

    name = run(work)
    click.echo(
        f"provisioned database {name} with roles {roles.owner}, {roles.app}, {roles.system}",
        err=True,
    )
    if not configured:
        urls = role_urls(admin_url, database=name, roles=roles, passwords=passwords)
        click.echo(f"KIJKO_DATABASE_URL={urls.app}")
        click.echo(f"KIJKO_SYSTEM_DATABASE_URL={urls.system}")
        click.echo(f"KIJKO_MIGRATION_DATABASE_URL={urls.migration}")


def _from_urls(config: Settings, roles: RoleNames) -> tuple[str, dict[str, str]]:
    """The database and the role passwords of the configured URLs, which must name the roles
    of KIJKO_DB_ROLE_PREFIX and one database."""
    urls = {
        "app": ("KIJKO_DATABASE_URL", config.database_url, roles.app),
        "system": ("KIJKO_SYSTEM_DATABASE_URL", config.system_database_url, roles.system),
        "owner": ("KIJKO_MIGRATION_DATABASE_URL", config.migration_database_url, roles.owner),
    }
    problems: list[str] = []
    passwords: dict[str, str] = {}
    databases: set[str] = set()
    for kind, (variable, url, role) in urls.items():
        parts = urlsplit(str(url))
        if unquote(parts.username or "") != role:
            problems.append(f"{variable}: its user must be {role} (KIJKO_DB_ROLE_PREFIX)")
        if not parts.password:
            problems.append(f"{variable}: has no password to give the role")
        passwords[kind] = unquote(parts.password or "")
        databases.add(unquote(parts.path.lstrip("/")))
    if len(databases) != 1 or "" in databases:
        problems.append("KIJKO_DATABASE_URL: the three database URLs must name the same database")
    if problems:
        raise ConfigurationError(problems)
    return databases.pop(), passwords
