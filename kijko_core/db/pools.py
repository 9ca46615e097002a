"""The two connection pools: the app role (tenant sessions) and the system role."""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg
from databases import Database


async def _init_connection(connection: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await connection.set_type_codec(
            name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


def make_pool(url: str, *, size: int) -> Database:
    return Database(url, min_size=1, max_size=size, init=_init_connection)


@dataclass(frozen=True)
class DatabaseUrls:
    app: str
    system: str
    migration: str
