"""The reference for the benchmark: the same work as ``GET /api/v1/projects`` with no framework.

A bare ASGI callable on an asyncpg pool of the app role: one transaction (read-only), the same
``SELECT kijko.enter(...)`` and the same list query text as Kijko's repository, rows dumped with
the standard json module. It does not verify the token (tokens map to identities through a
table the benchmark hands over in ``KIJKO_BENCH_IDENTITIES``), so the gap to Kijko includes
token verification, routing, validation, models and logging.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from kijko_core.projects.repository import _LIST  # the very same statement text

POOL_SIZE = int(os.environ.get("KIJKO_DB_POOL_SIZE", "10"))
_IDENTITIES: dict[bytes, tuple[uuid.UUID, uuid.UUID, str]] = {
    ("Bearer " + token).encode(): (uuid.UUID(user), uuid.UUID(org), session)
    for token, (user, org, session) in json.loads(os.environ["KIJKO_BENCH_IDENTITIES"]).items()
}
_pool: asyncpg.Pool | None = None


def _default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


async def _respond(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _pool
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                url = os.environ["KIJKO_DATABASE_URL"]
                _pool = await asyncpg.create_pool(url, min_size=POOL_SIZE, max_size=POOL_SIZE)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _pool is not None:
                    await _pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    identity = _IDENTITIES.get(dict(scope["headers"]).get(b"authorization", b""))
    if identity is None or _pool is None:
        await _respond(send, 401, b'{"code":"INVALID_TOKEN"}')
        return
    user_id, org_id, session_id = identity
    page, page_size = 1, 20
    async with _pool.acquire() as connection, connection.transaction(readonly=True):
        roles = await connection.fetchval("SELECT kijko.enter($1, $2, $3)", user_id, org_id, session_id)
        admin = "owner" in roles or "admin" in roles
        rows = await connection.fetch(_LIST, org_id, user_id, admin, None, page_size, (page - 1) * page_size)
    total = rows[0]["total"] if rows else 0
    data = [{key: value for key, value in row.items() if key != "total"} for row in rows]
    body = {"data": data, "total": total, "page": page, "pageSize": page_size, "hasMore": page * page_size < total}
    await _respond(send, 200, json.dumps(body, default=_default).encode())
