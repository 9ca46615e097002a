"""Every SQL statement of the wizard's sources (repository kit, decision 0020). Connections and
states are read only for the caller (``user_id = $2``) inside its organization (RLS)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from kijko_core.db import sql
from kijko_core.db.session import TenantSession
from kijko_core.projects.models import ProjectNotFound
from kijko_core.sources.models import ConnectionRecord, FileRecord

CONNECTIONS = sql.Table("kijko.git_connections", ConnectionRecord)
FILES = sql.Table("kijko.uploaded_files", FileRecord)

_LIST_CONNECTIONS = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE organization_id = $1 AND user_id = $2\nORDER BY provider",
    columns=CONNECTIONS.select_list,
    table=CONNECTIONS,
)
_GET_CONNECTION = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE organization_id = $1 AND user_id = $2 AND provider = $3",
    columns=CONNECTIONS.select_list,
    table=CONNECTIONS,
)
# Locked while its tokens are refreshed: a provider that rotates refresh tokens (GitLab) takes
# each one once, so two requests must not both spend it.
_GET_CONNECTION_FOR_UPDATE = sql.compose("{get}\nFOR UPDATE", get=sql.Fragment(_GET_CONNECTION))
_UPSERT_CONNECTION = sql.compose(
    "INSERT INTO {table} (organization_id, user_id, provider, username, avatar_url, scope,"
    " access_token_ciphertext, refresh_token_ciphertext, expires_at)"
    "\nVALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    "\nON CONFLICT (organization_id, user_id, provider) DO UPDATE SET"
    " username = EXCLUDED.username, avatar_url = EXCLUDED.avatar_url, scope = EXCLUDED.scope,"
    " access_token_ciphertext = EXCLUDED.access_token_ciphertext,"
    " refresh_token_ciphertext = EXCLUDED.refresh_token_ciphertext,"
    " expires_at = EXCLUDED.expires_at, connected_at = now(), updated_at = now()"
    "\nRETURNING {columns}",
    table=CONNECTIONS,
    columns=CONNECTIONS.select_list,
)
_UPDATE_TOKENS = sql.compose(
    "UPDATE {table} SET access_token_ciphertext = $4, refresh_token_ciphertext = $5,"
    " expires_at = $6, updated_at = now()"
    "\nWHERE organization_id = $1 AND user_id = $2 AND provider = $3",
    table=CONNECTIONS,
)
_DELETE_CONNECTION = sql.compose(
    "DELETE FROM {table} WHERE organization_id = $1 AND user_id = $2 AND provider = $3", table=CONNECTIONS
)

_DELETE_EXPIRED_STATES = "DELETE FROM kijko.git_oauth_states WHERE expires_at < now()"
_INSERT_STATE = (
    "INSERT INTO kijko.git_oauth_states"
    " (state_hash, organization_id, user_id, provider, verifier_ciphertext, expires_at)"
    " VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))"
)
# Consumed whatever comes next (single use); only the member who started it, for that provider.
_TAKE_STATE = (
    "DELETE FROM kijko.git_oauth_states WHERE state_hash = $1"
    " RETURNING CASE WHEN expires_at > now() AND organization_id = $2 AND user_id = $3"
    " AND provider = $4 THEN verifier_ciphertext END"
)

_INSERT_FILE = sql.compose(
    "INSERT INTO {table} (id, organization_id, project_id, user_id, name, size, content_type, sha256, storage_key)"
    "\nVALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)\nRETURNING {columns}",
    table=FILES,
    columns=FILES.select_list,
)
_PROJECT_FILES = sql.compose(
    "SELECT {columns}\nFROM {table}\nWHERE organization_id = $1 AND project_id = $2\nORDER BY created_at, id",
    columns=FILES.select_list,
    table=FILES,
)

_SET_MANUAL_CONTENT = "UPDATE kijko.projects SET manual_content = $3 WHERE organization_id = $1 AND id = $2"
_MANUAL_CONTENT = "SELECT manual_content FROM kijko.projects WHERE organization_id = $1 AND id = $2"


async def connections(db: TenantSession) -> list[ConnectionRecord]:
    principal = db.principal
    return CONNECTIONS.many(await db.fetch(_LIST_CONNECTIONS, principal.org_id, principal.user_id))


async def connection(db: TenantSession, provider: str, *, for_update: bool = False) -> ConnectionRecord | None:
    principal = db.principal
    statement = _GET_CONNECTION_FOR_UPDATE if for_update else _GET_CONNECTION
    return CONNECTIONS.maybe(await db.fetchrow(statement, principal.org_id, principal.user_id, provider))


async def save_connection(db: TenantSession, provider: str, values: dict[str, Any]) -> ConnectionRecord:
    principal = db.principal
    row = await db.fetchrow(
        _UPSERT_CONNECTION,
        principal.org_id,
        principal.user_id,
        provider,
        values["username"],
        values["avatar_url"],
        values["scope"],
        values["access_token_ciphertext"],
        values["refresh_token_ciphertext"],
        values["expires_at"],
    )
    assert row is not None
    return CONNECTIONS.one(row)


async def update_tokens(
    db: TenantSession, provider: str, access: str, refresh: str | None, expires_at: datetime | None
) -> None:
    principal = db.principal
    await db.execute(_UPDATE_TOKENS, principal.org_id, principal.user_id, provider, access, refresh, expires_at)


async def delete_connection(db: TenantSession, provider: str) -> bool:
    principal = db.principal
    return await db.execute(_DELETE_CONNECTION, principal.org_id, principal.user_id, provider) == "DELETE 1"


async def insert_state(
    db: TenantSession, state_hash: bytes, provider: str, verifier_ciphertext: str, ttl_seconds: int
) -> None:
    principal = db.principal
    await db.execute(_DELETE_EXPIRED_STATES)
    await db.execute(
        _INSERT_STATE, state_hash, principal.org_id, principal.user_id, provider, verifier_ciphertext, ttl_seconds
    )


async def take_state(db: TenantSession, state_hash: bytes, provider: str) -> str | None:
    principal = db.principal
    value: str | None = await db.fetchval(_TAKE_STATE, state_hash, principal.org_id, principal.user_id, provider)
    return value


async def insert_file(db: TenantSession, values: dict[str, Any]) -> FileRecord:
    principal = db.principal
    try:
        row = await db.fetchrow(
            _INSERT_FILE,
            values["id"],
            principal.org_id,
            values["project_id"],
            principal.user_id,
            values["name"],
            values["size"],
            values["content_type"],
            values["sha256"],
            values["storage_key"],
        )
    except asyncpg.ForeignKeyViolationError:
        raise ProjectNotFound() from None  # the project went away since it was checked
    assert row is not None
    return FILES.one(row)


async def project_files(db: TenantSession, project_id: UUID) -> list[FileRecord]:
    return FILES.many(await db.fetch(_PROJECT_FILES, db.principal.org_id, project_id))


async def set_manual_content(db: TenantSession, project_id: UUID, content: str | None) -> None:
    await db.execute(_SET_MANUAL_CONTENT, db.principal.org_id, project_id, content)


async def manual_content(db: TenantSession, project_id: UUID) -> str | None:
    value: str | None = await db.fetchval(_MANUAL_CONTENT, db.principal.org_id, project_id)
    return value
