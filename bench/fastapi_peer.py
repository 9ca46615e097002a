"""The peer for the benchmark: ``GET /api/v1/projects`` written idiomatically in FastAPI.

What a competent team would write with FastAPI, PyJWT, asyncpg and pydantic, on the same SQL
as Kijko: a ``Depends`` chain verifies the bearer token with PyJWT (RS256 against Kijko's
public keys, loaded once at start-up; signature, ``exp``, ``iss``, ``aud`` and the claims Kijko
requires, on every request — no cache of decoded tokens), an asyncpg pool of the app role and
the same size, one read-only transaction with the same ``SELECT kijko.enter($1, $2, $3)`` and
the repository's list statement (and its count for an empty page), and pydantic response
models with camelCase aliases that FastAPI validates and serializes (``response_model=``).

The benchmark hands the verification material over in ``KIJKO_BENCH_JWT``:
``{"jwks": {...}, "issuer": ..., "audience": ..., "leeway": seconds}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
import jwt
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

# The very same statements as Kijko's repository, so the peer follows changes to them.
from kijko_core.projects.repository import _COUNT, _LIST
from kijko_core.wire import like_pattern

POOL_SIZE = int(os.environ.get("KIJKO_DB_POOL_SIZE", "10"))
ALGORITHMS = ["RS256"]
ACCESS_TOKEN_TYP = "Bearer"
REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub", "sid", "typ", "org_id"]


# --- Wire models (the same fields and camelCase keys as Kijko's Page[Project]) -------------


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class CustomSettings(CamelModel):
    output_format: str | None = None
    embedding_model: str | None = None
    metadata_options: dict[str, Any] | None = None
    pattern_filters: dict[str, Any] | None = None
    processing_options: dict[str, Any] | None = None
    default_notification_level: str | None = None
    persona: str | None = None


class Project(CamelModel):
    id: UUID
    user_id: UUID
    organization_id: UUID
    name: str
    description: str | None = None
    type: Literal["repository", "files", "manual"]
    status: Literal["draft", "processing", "active", "error"]
    privacy: Literal["private", "shared"]
    chunking_strategy: Literal["semantic", "fixed", "recursive", "custom"]
    include_metadata: bool
    anonymize_secrets: bool
    total_repos: int
    total_files: int
    original_tokens: int | None = None
    optimized_tokens: int | None = None
    ingestion_time_seconds: float | None = None
    custom_settings: CustomSettings
    created_at: datetime
    updated_at: datetime


class ProjectPage(CamelModel):
    data: list[Project]
    total: int
    page: int
    page_size: int
    has_more: bool


class Identity(BaseModel):
    user_id: UUID
    org_id: UUID
    session_id: str


# --- Start-up: the pool and the public keys --------------------------------------------------


async def _json_codec(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    verification = json.loads(os.environ["KIJKO_BENCH_JWT"])
    # kid -> public key object: jwt.decode with the PyJWK wrapper instead took ~50 % longer per token.
    app.state.keys = {jwk.key_id: jwk.key for jwk in jwt.PyJWKSet.from_dict(verification["jwks"]).keys}
    app.state.issuer = verification["issuer"]
    app.state.audience = verification["audience"]
    app.state.leeway = verification["leeway"]
    app.state.pool = await asyncpg.create_pool(
        os.environ["KIJKO_DATABASE_URL"], min_size=POOL_SIZE, max_size=POOL_SIZE, init=_json_codec
    )
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(title="Kijko list peer", lifespan=lifespan)
bearer = HTTPBearer(auto_error=False)


# --- Dependencies ----------------------------------------------------------------------------


def _unauthorized() -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, "Invalid or expired token", {"WWW-Authenticate": "Bearer"})


async def current_identity(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Identity:
    if credentials is None:
        raise _unauthorized()
    state = request.app.state
    try:
        kid = jwt.get_unverified_header(credentials.credentials).get("kid")
        key = state.keys.get(kid)
        if key is None:
            raise _unauthorized()
        claims = jwt.decode(
            credentials.credentials,
            key,
            algorithms=ALGORITHMS,
            audience=state.audience,
            issuer=state.issuer,
            leeway=state.leeway,
            options={"require": REQUIRED_CLAIMS},
        )
        if claims["typ"] != ACCESS_TOKEN_TYP:
            raise _unauthorized()
        return Identity(user_id=claims["sub"], org_id=claims["org_id"], session_id=claims["sid"])
    except (jwt.PyJWTError, ValueError):
        raise _unauthorized() from None


# Dependencies are coroutines: FastAPI runs a plain ``def`` dependency in a thread pool.
async def get_pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


# --- The endpoint ----------------------------------------------------------------------------


@app.get("/api/v1/projects", response_model=ProjectPage)
async def list_projects(
    identity: Annotated[Identity, Depends(current_identity)],
    pool: Annotated[asyncpg.Pool, Depends(get_pool)],
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=100)] = 20,
    search: Annotated[str | None, Query(max_length=200)] = None,
) -> Any:
    pattern = like_pattern(search) if search else None
    offset = (page - 1) * page_size
    async with pool.acquire() as connection, connection.transaction(readonly=True):
        try:
            roles = await connection.fetchval(
                "SELECT kijko.enter($1, $2, $3)", identity.user_id, identity.org_id, identity.session_id
            )
        except asyncpg.PostgresError as error:
            if error.sqlstate == "KJ401":
                raise _unauthorized() from None
            if error.sqlstate == "KJ403":
                raise HTTPException(status.HTTP_403_FORBIDDEN, "Not a member of this organization") from None
            raise
        admin = "owner" in roles or "admin" in roles
        scope = (identity.org_id, identity.user_id, admin)
        rows = await connection.fetch(_LIST, *scope, pattern, page_size, offset)
        total = rows[0]["total"] if rows else await connection.fetchval(_COUNT, *scope, pattern)
    return {
        "data": [dict(row) for row in rows],
        "total": total,
        "page": page,
        "page_size": page_size,
        "has_more": offset + len(rows) < total,
    }
