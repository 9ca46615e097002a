"""The one error hierarchy. Each error knows its HTTP status and wire code (ARCHITECTURE §7).

Messages are written for people and never contain submitted values.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _absent_not_null() -> Any:
    # ``to_body`` leaves out what it has not got, it never writes null: the document shows
    # the plain type, neither nullable nor required nor with a default.
    return Field(default=None, json_schema_extra=_no_default)


class ErrorBody(BaseModel):
    """The error shape of every non-2xx response (what ``KijkoError.to_body`` produces)."""

    detail: str
    code: str
    message: str
    field: str = _absent_not_null()
    details: dict[str, Any] = _absent_not_null()


class KijkoError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"
    default_message: ClassVar[str] = "Something went wrong on our side"

    def __init__(
        self,
        message: str | None = None,
        *,
        field: str | None = None,
        details: dict[str, Any] | None = None,
        code: str | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.field = field
        self.details = details
        if code is not None:
            self.code = code  # type: ignore[misc]  # domain codes share one class per status
        super().__init__(self.message)

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"detail": self.message, "code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.details:
            body["details"] = self.details
        return body


class MalformedJson(KijkoError):
    status = 400
    code = "MALFORMED_JSON"
    default_message = "The request body is not valid JSON"


class UnsupportedMediaType(KijkoError):
    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"
    default_message = "The request body must be sent as application/json"


class BadRequest(KijkoError):
    status = 400
    code = "BAD_REQUEST"
    default_message = "The request cannot be processed"


class InvalidToken(KijkoError):
    status = 401
    code = "INVALID_TOKEN"
    default_message = "The access token is missing, expired or invalid"


class InvalidRefreshToken(InvalidToken):
    """A refresh that failed: the same 401 code (the contract's), a sentence about the token
    the client actually sent."""

    default_message = "The refresh token is invalid, expired or revoked"


class InvalidCredentials(KijkoError):
    status = 401
    code = "INVALID_CREDENTIALS"
    default_message = "Incorrect email or password"


class Forbidden(KijkoError):
    status = 403
    code = "FORBIDDEN"
    default_message = "You are not allowed to do this"


class NotFound(KijkoError):
    status = 404
    code = "NOT_FOUND"
    default_message = "Not found"


class RouteNotFound(NotFound):
    code = "ROUTE_NOT_FOUND"
    default_message = "No such route"


class MethodNotAllowed(KijkoError):
    status = 405
    code = "METHOD_NOT_ALLOWED"
    default_message = "This method is not allowed on this route"


class Conflict(KijkoError):
    status = 409
    code = "CONFLICT"
    default_message = "The request conflicts with the current state"


class PayloadTooLarge(KijkoError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"
    default_message = "The request body is too large"


class ValidationFailed(KijkoError):
    status = 422
    code = "VALIDATION_ERROR"
    default_message = "The request is not valid"


class RateLimited(KijkoError):
    status = 429
    code = "RATE_LIMITED"
    default_message = "Too many attempts; try again later"

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message, details={"retryAfter": retry_after})
        self.retry_after = retry_after


class ServiceUnavailable(KijkoError):
    status = 503
    code = "SERVICE_UNAVAILABLE"
    default_message = "A service Kijko depends on is unavailable"


class TryAgain(KijkoError):
    """The database rolled the request's transaction back on a conflict with another one
    (deadlock, serialization failure) or a lock or statement timeout: nothing was changed and
    the same request may succeed in a moment (decision 0144)."""

    status = 503
    code = "TRY_AGAIN"
    default_message = "The request ran into concurrent changes and was not applied; try again"
    retry_after = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, details={"retryAfter": self.retry_after})


class UpstreamError(KijkoError):
    """An external service (identity provider, payment provider…) failed us."""

    status = 502
    code = "UPSTREAM_ERROR"
    default_message = "An external service did not answer as expected"


class ConfigurationError(Exception):
    """Raised at start-up; each line names one bad setting."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))
