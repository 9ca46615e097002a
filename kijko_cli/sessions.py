"""``kijko sessions revoke USER|SESSION``."""

from __future__ import annotations

import click

from kijko_cli.common import in_system_session, settings
from kijko_core.auth import admin


@click.group()
def sessions() -> None:
    """End login sessions."""


@sessions.command("revoke")
@click.argument("target")
def revoke(target: str) -> None:
    """Revoke every session of a user (TARGET is their email or id) or one session (its id):
    refresh tokens stop working and access tokens are refused on their next request."""
    count = in_system_session(settings(), lambda db, _: admin.revoke_sessions(db, target))
    click.echo(f"revoked {count} session(s)")
