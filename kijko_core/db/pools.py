"""The two connection pools: the app role (tenant sessions) and the system role."""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg
from databases import Database


class SessionConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped
    """A pooled connection whose sessions end in one round trip: ``COMMIT`` (or ``ROLLBACK``)
    and asyncpg's reset query (advisory locks, cursors, ``LISTEN``, session settings) sent
    together, so the pool need not send the reset again when the connection comes back."""

    _reset_sent = False

    async def end_transaction(self, *, commit: bool) -> None:
        self._reset_sent = False
        await self.execute(("COMMIT;" if commit else "ROLLBACK;") + self.get_reset_query())
        self._reset_sent = True

    async def reset_unless_sent(self) -> None:
        """The pool's reset: nothing if the session's last round trip carried it (and nothing
        ran since), the full reset query otherwise (a session that ended abnormally)."""
        sent, self._reset_sent = self._reset_sent, False
        if not sent:
            await self.execute(self.get_reset_query())


async def _reset_connection(connection: asyncpg.Connection) -> None:
    assert isinstance(connection, SessionConnection)
    await connection.reset_unless_sent()


async def _init_connection(connection: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await connection.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def make_pool(url: str, *, size: int) -> Database:
    return Database(
        url,
        min_size=1,
        max_size=size,
        init=_init_connection,
        connection_class=SessionConnection,
        reset=_reset_connection,
    )


@dataclass(frozen=True)
class DatabaseUrls:
    app: str
    system: str
    migration: str
