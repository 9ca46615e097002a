"""``kijko keys list`` (``keys rotate`` is in main.py)."""

from __future__ import annotations

import sys
from datetime import datetime

import click

from kijko_cli.common import in_system_session, settings
from kijko_core.db.session import SystemSession


@click.command("list")
def list_keys() -> None:
    """The local provider's signing keys, newest first: kid, algorithm, created, retired, and
    which one signs new tokens (tab-separated)."""
    config = settings()
    if config.auth_provider != "local":
        click.echo("configuration error: KIJKO_AUTH_PROVIDER: keys list needs the local provider",
                   err=True)
        sys.exit(2)

    async def work(db: SystemSession, _: object) -> list[tuple[str, str, datetime, datetime | None]]:
        rows = await db.fetch(
            "SELECT kid, algorithm, created_at, retired_at FROM kijko_private.signing_keys"
            " ORDER BY created_at DESC, kid"
        )
        return [(r["kid"], r["algorithm"], r["created_at"], r["retired_at"]) for r in rows]

    keys = in_system_session(config, work)
    # The issuer signs with the newest key that is not retired (SigningKeyStore.active).
    signing = next((kid for kid, _, _, retired in keys if retired is None), None)
    click.echo("kid\talgorithm\tcreated_at\tretired_at\tsigning")
    for kid, algorithm, created, retired in keys:
        click.echo(
            f"{kid}\t{algorithm}\t{created.isoformat(timespec='seconds')}"
            f"\t{retired.isoformat(timespec='seconds') if retired else '-'}"
            f"\t{'yes' if kid == signing else 'no'}"
        )
