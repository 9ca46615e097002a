"""``kijko keys list`` (``keys rotate`` is in main.py)."""

from __future__ import annotations

from datetime import datetime

import click
from asyncpg import Record

from kijko_cli.common import in_system_session, require_local, settings
from kijko_core.db.session import SystemSession


@click.command("list")
def list_keys() -> None:
    """The local provider's signing keys, newest first: kid, algorithm, created, signs from,
    retired, and which one signs new tokens now (tab-separated)."""
    config = settings()
    require_local(config, "keys list")

    async def work(db: SystemSession, _: object) -> list[Record]:
        # The same rule as SigningKeyStore: the newest key already active and not yet retired
        # signs; a rotated-in key is published (in the JWKS) before it signs.
        return await db.fetch(
            "SELECT kid, algorithm, created_at, active_from, retired_at,"
            " kid = (SELECT s.kid FROM kijko_private.signing_keys s"
            "        WHERE s.active_from <= now() AND (s.retired_at IS NULL OR s.retired_at > now())"
            "        ORDER BY s.active_from DESC LIMIT 1) AS signing"
            " FROM kijko_private.signing_keys ORDER BY created_at DESC, kid"
        )

    keys = in_system_session(config, work)
    click.echo("kid\talgorithm\tcreated_at\tactive_from\tretired_at\tsigning")
    for key in keys:
        click.echo(
            f"{key['kid']}\t{key['algorithm']}\t{_when(key['created_at'])}"
            f"\t{_when(key['active_from'])}\t{_when(key['retired_at'])}"
            f"\t{'yes' if key['signing'] else 'no'}"
        )


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"
