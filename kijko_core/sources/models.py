"""Wire shapes of the wizard's sources (contract §2.2.7, §3.1) and their errors."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, RootModel

from kijko_core.errors import BadRequest, Conflict, KijkoError, NotFound, ServiceUnavailable
from kijko_core.wire import WireInput, WireModel

#: The providers a user can connect (``azure`` is a GitProvider of the contract, but has no
#: connection flow yet: it answers PROVIDER_NOT_CONFIGURED).
ConnectableProvider = Literal["github", "gitlab", "bitbucket"]
GitProvider = Literal["github", "gitlab", "bitbucket", "azure"]
CONNECTABLE: tuple[ConnectableProvider, ...] = ("github", "gitlab", "bitbucket")


class ProviderNotFound(NotFound):
    code = "PROVIDER_NOT_FOUND"
    default_message = "No such git provider"


class ProviderNotConfigured(Conflict):
    code = "PROVIDER_NOT_CONFIGURED"
    default_message = "This git provider is not configured on this server"


class NotAuthenticated(Conflict):
    """The caller has no connection to the provider: a 409, never a 401 (a 401 makes the
    frontend refresh its Kijko token, contract §1.2)."""

    code = "NOT_AUTHENTICATED"
    default_message = "Connect your account at this git provider first"


class InvalidConnectionState(BadRequest):
    code = "INVALID_OAUTH_STATE"
    default_message = "The connection attempt is unknown or has expired; please start again"


class ConnectionCodeRejected(BadRequest):
    code = "OAUTH_CODE_REJECTED"
    default_message = "The git provider did not accept the authorization; please start again"


class ProviderRateLimited(ServiceUnavailable):
    code = "PROVIDER_RATE_LIMITED"
    default_message = "The git provider's rate limit is reached; try again later"

    def __init__(self, retry_after: int) -> None:
        super().__init__(details={"retryAfter": retry_after})
        self.retry_after = retry_after


class ProviderFailed(KijkoError):
    status = 502
    code = "PROVIDER_ERROR"
    default_message = "The git provider did not answer as expected"


# --- connections ---------------------------------------------------------------------------


class OAuthConnection(WireModel):
    provider: GitProvider
    connected: bool
    username: str | None = None
    avatar_url: str | None = None
    connected_at: datetime | None = None
    scope: list[str] | None = None


class OAuthConnections(RootModel[list[OAuthConnection]]):
    """``GET /oauth/connections``: a plain array (contract §1.4)."""


class AuthUrl(WireModel):
    auth_url: str


class OAuthCallback(WireInput):
    provider: Annotated[str, Field(max_length=40)]
    code: Annotated[str, Field(min_length=1, max_length=4096)]
    # Not in the contract's sketch, required here: the state binds the code to the member who
    # started the attempt (login CSRF: a code planted in someone else's browser).
    state: Annotated[str, Field(min_length=1, max_length=512)]


class ConnectionRecord(BaseModel):
    """A row of ``kijko.git_connections`` (tokens still encrypted)."""

    model_config = ConfigDict(extra="ignore")

    id: UUID
    organization_id: UUID
    user_id: UUID
    provider: ConnectableProvider
    username: str
    avatar_url: str | None
    scope: list[str]
    access_token_ciphertext: str
    refresh_token_ciphertext: str | None
    expires_at: datetime | None
    connected_at: datetime
    updated_at: datetime

    def wire(self) -> OAuthConnection:
        return OAuthConnection(
            provider=self.provider,
            connected=True,
            username=self.username,
            avatar_url=self.avatar_url,
            connected_at=self.connected_at,
            scope=self.scope,
        )


# --- repositories at the providers -----------------------------------------------------------


class ValidateFull(WireInput):
    url: Annotated[str, Field(max_length=2000)] | None = None


class RepoInfo(WireModel):
    name: str
    full_name: str
    provider: GitProvider
    url: str
    default_branch: str
    commits_per_month: int
    file_count: int
    loc_estimate: int
    primary_language: str
    last_updated: datetime
    is_private: bool
    stars: int | None = None
    description: str | None = None


class RepoValidation(WireModel):
    valid: bool
    error: str | None = None
    info: RepoInfo | None = None


class BatchQuery(WireInput):
    # Required, but checked after the token (a revoked session is a 401 first).
    provider: Annotated[str, Field(max_length=40)] | None = None


class BatchRepository(WireModel):
    id: str
    name: str
    full_name: str
    url: str
    is_private: bool
    last_updated: datetime
    is_archived: bool


class BatchRepositories(WireModel):
    repositories: list[BatchRepository]
    total: int


# --- uploads -------------------------------------------------------------------------------


class UploadedFile(WireModel):
    id: UUID
    name: str
    size: int
    type: str


class UploadFailure(WireModel):
    name: str
    error: str
    code: str | None = None  # beyond the contract: a machine-readable reason


class UploadResult(WireModel):
    uploaded: list[UploadedFile]
    errors: list[UploadFailure]


class ProjectFile(WireModel):
    """A file of a project, as ``GET /projects/{id}/full`` lists it (beyond the contract)."""

    id: UUID
    name: str
    size: int
    type: str
    uploaded_at: datetime


class FileRecord(BaseModel):
    """A row of ``kijko.uploaded_files``."""

    id: UUID
    organization_id: UUID
    project_id: UUID | None
    user_id: UUID | None
    name: str
    size: int
    content_type: str
    sha256: str
    storage_key: str
    created_at: datetime

    def uploaded(self) -> UploadedFile:
        return UploadedFile(id=self.id, name=self.name, size=self.size, type=self.content_type)

    def listed(self) -> ProjectFile:
        return ProjectFile(
            id=self.id, name=self.name, size=self.size, type=self.content_type, uploaded_at=self.created_at
        )
