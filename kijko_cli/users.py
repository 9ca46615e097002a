"""``kijko users list | set-role | reset-password | delete`` (``users create`` is in main.py)."""

from __future__ import annotations

import sys
import uuid

import click

from kijko_cli.common import (
    EXIT_CONFIGURATION,
    in_system_session,
    require_local,
    run,
    settings,
    with_runtime,
)
from kijko_core.auth import admin
from kijko_core.auth.accounts import Erasure, erase_user
from kijko_core.db.session import SystemSession, system_session
from kijko_core.runtime import Kijko


@click.command("list")
@click.option("--org", "org_id", type=click.UUID, help="Only the members of this organization.")
def list_users(org_id: uuid.UUID | None) -> None:
    """Every user with their organizations and roles, one line per membership (tab-separated)."""
    rows = in_system_session(settings(), lambda db, _: admin.list_memberships(db, org_id))
    click.echo("user_id\temail\tname\torg_id\trole\tcreated_at")
    for row in rows:
        name = f"{row.first_name} {row.last_name}".strip()
        click.echo(
            f"{row.user_id}\t{row.email}\t{name}\t{row.org_id or '-'}\t{row.role or '-'}"
            f"\t{row.created_at.isoformat(timespec='seconds')}"
        )


@click.command("set-role")
@click.argument("user")
@click.argument("role", type=click.Choice(admin.ROLES))
@click.option("--org", "org_id", type=click.UUID, help="The organization (needed when the user belongs to several).")
def set_role(user: str, role: str, org_id: uuid.UUID | None) -> None:
    """Give USER (email or id) the ROLE in their organization. An organization keeps at least
    one owner."""

    async def work(db: SystemSession, _: object) -> tuple[uuid.UUID, uuid.UUID]:
        user_id = await admin.find_user(db, user)
        return user_id, await admin.set_role(db, user_id, role, org_id)

    user_id, org = in_system_session(settings(), work)
    click.echo(f"{user_id} is now {role} in {org}")


@click.command("reset-password")
@click.argument("user")
@click.password_option(help="The new password (asked for when not given).")
def reset_password(user: str, password: str) -> None:
    """Set a new password for USER (email or id) and end all their sessions."""
    from pydantic import TypeAdapter, ValidationError

    from kijko_core.auth.models import Password
    from kijko_core.auth.passwords import PasswordHashing

    config = settings()
    require_local(config, "users reset-password")
    try:
        TypeAdapter(Password).validate_python(password)
    except ValidationError as error:
        for problem in error.errors(include_input=False, include_url=False):  # never the value
            click.echo(f"error: --password: {problem['msg']}", err=True)
        sys.exit(EXIT_CONFIGURATION)

    hashing = PasswordHashing(config.password_hash_threads)
    try:
        password_hash = run(lambda: hashing.hash(password))  # slow: outside the transaction
    finally:
        hashing.close()

    async def work(db: SystemSession, _: object) -> tuple[uuid.UUID, int]:
        user_id = await admin.find_user(db, user)
        return user_id, await admin.set_password(db, user_id, password_hash)

    user_id, revoked = in_system_session(config, work)
    click.echo(f"new password set for {user_id}; revoked {revoked} session(s)")


@click.command("delete")
@click.argument("user")
@click.confirmation_option(
    prompt="Erase this user and everything only they can reach?", help="Do not ask for confirmation."
)
def delete_user(user: str) -> None:
    """Erase USER (email or id): credentials, sessions and memberships at once; projects they
    created stay with their organization; an organization they were alone in is deleted
    (docs/decisions/0018-erasing-a-user.md)."""

    async def work(kijko: Kijko) -> tuple[uuid.UUID, Erasure]:
        async with system_session(kijko.system_db, readonly=True) as db:
            user_id = await admin.find_user(db, user)
        return user_id, await erase_user(kijko.system_db, user_id)

    user_id, erasure = with_runtime(settings(), work)
    if not erasure.erased:  # erased by someone else between the lookup and the erasure
        click.echo("error: No user with that email or id", err=True)
        sys.exit(1)
    click.echo(f"erased {user_id}; deleted {len(erasure.deleted_organizations)} organization(s)")
    for org in erasure.ownerless_organizations:
        click.echo(
            f"warning: organization {org} has no owner now: kijko users set-role USER owner --org {org}", err=True
        )
