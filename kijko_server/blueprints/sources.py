"""Contract §2.2.7 (the wizard's step 2): git-provider connections, repositories at the
providers, and file uploads. ``GET /users/{id}/recent-repos`` lives with the repositories.

These ``/api/v1/oauth/...`` routes connect a git provider to a signed-in user; they are not
the social sign-in routes, which live under ``/api/v1/auth/oauth/...`` and are public.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from quart import Blueprint
from quart_schema import DataSource, validate_querystring, validate_request
from quart_schema.pydantic import File

from kijko_core.billing.quotas import QuotaExceeded
from kijko_core.errors import PayloadTooLarge, ValidationFailed
from kijko_core.projects.models import ProjectNotFound
from kijko_core.sources import files, lookups
from kijko_core.sources.connections import Connections
from kijko_core.sources.models import (
    AuthUrl,
    BatchQuery,
    BatchRepositories,
    ConnectionCodeRejected,
    InvalidConnectionState,
    NotAuthenticated,
    OAuthCallback,
    OAuthConnection,
    OAuthConnections,
    ProviderFailed,
    ProviderNotConfigured,
    ProviderNotFound,
    ProviderRateLimited,
    RepoValidation,
    UploadResult,
    ValidateFull,
)
from kijko_core.wire import Success, WireInput
from kijko_server.caching import no_store
from kijko_server.openapi import responds
from kijko_server.responses import validate_response
from kijko_server.uow import TENANT_ERRORS, runtime, tenant

bp = Blueprint("sources", __name__, url_prefix="/api/v1")
bp.after_request(no_store)  # per-user answers about private repositories: never cached on the way

UPLOAD_PATH = "/api/v1/files/upload"
#: What asking a provider can answer: its rate limit (503), its failure (502).
_PROVIDER = (ProviderRateLimited, ProviderFailed)


def _connections() -> Connections:
    kijko = runtime()
    assert kijko.provider_cache is not None
    return Connections(kijko.settings, kijko.keyring, kijko.egress, kijko.provider_cache)


@bp.get("/oauth/connections")
@responds(*TENANT_ERRORS)
@validate_response(OAuthConnections)
async def list_connections() -> OAuthConnections:
    """The caller's connections: every provider, connected or not."""
    async with tenant(readonly=True) as db:
        return OAuthConnections(await _connections().list(db))


@bp.post("/oauth/connect/<provider>")
@responds(*TENANT_ERRORS, ProviderNotFound, ProviderNotConfigured)
@validate_response(AuthUrl)
async def connect(provider: str) -> AuthUrl:
    """Start connecting a provider: the URL to send the browser to (code flow with PKCE)."""
    async with tenant() as db:
        return await _connections().start(db, provider)


@bp.post("/oauth/callback")
@responds(
    *TENANT_ERRORS, ProviderNotFound, ProviderNotConfigured, InvalidConnectionState, ConnectionCodeRejected, *_PROVIDER
)
@validate_request(OAuthCallback)
@validate_response(OAuthConnection)
async def callback(data: OAuthCallback) -> OAuthConnection:
    """Finish connecting: trade the provider's code (with the state from connect) for a connection."""
    return await _connections().finish(tenant, data)


@bp.delete("/oauth/disconnect/<provider>")
@responds(*TENANT_ERRORS, ProviderNotFound, ProviderNotConfigured)
@validate_response(Success)
async def disconnect(provider: str) -> Success:
    """Forget the caller's connection to a provider (idempotent)."""
    async with tenant() as db:
        await _connections().disconnect(db, provider)
    return Success()


@bp.post("/repositories/validate-full")
@responds(*TENANT_ERRORS, *_PROVIDER)
@validate_request(ValidateFull)
@validate_response(RepoValidation)
async def validate_full(data: ValidateFull) -> RepoValidation:
    """Look a repository up at its provider by URL (with the caller's connection, if any)."""
    return await lookups.validate_full(_connections(), tenant, data.url)


@bp.get("/repositories/batch")
@responds(*TENANT_ERRORS, ProviderNotFound, ProviderNotConfigured, NotAuthenticated, ValidationFailed, *_PROVIDER)
@validate_querystring(BatchQuery)
@validate_response(BatchRepositories)
async def batch(query_args: BatchQuery) -> BatchRepositories:
    """The caller's repositories at a provider (409 NOT_AUTHENTICATED when not connected)."""
    return await lookups.batch(_connections(), tenant, query_args.provider)


def _as_list(value: Any) -> Any:
    # quart-schema hands one file as itself and several as a list.
    return value if isinstance(value, list) else [value]


class UploadForm(WireInput):
    """``multipart/form-data``: one or more ``files`` parts and an optional ``projectId``."""

    # Required, but checked after the token (a revoked session is a 401 first).
    files: list[File] = Field(default_factory=list)
    project_id: Annotated[str, Field(max_length=100)] | None = None

    _one_or_many = field_validator("files", mode="before")(_as_list)


@bp.post("/files/upload")
@responds(*TENANT_ERRORS, ProjectNotFound, PayloadTooLarge, QuotaExceeded)
@validate_request(UploadForm, source=DataSource.FORM_MULTIPART)
@validate_response(UploadResult)
async def upload(data: UploadForm) -> UploadResult:
    """Upload files (multipart field ``files``, several allowed; ``projectId`` to add them to a project)."""
    kijko = runtime()
    assert kijko.storage is not None
    incoming = [files.IncomingFile(part.filename, part.stream) for part in data.files]
    async with tenant() as db:
        return await files.upload(db, kijko.storage, kijko.settings, incoming, data.project_id)
