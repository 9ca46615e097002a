"""Every failure answers in the one error shape ``{detail, code, message, field?, details?}``.

Error bodies never echo submitted values: validation messages come from pydantic's error
types without their ``input``, and crashes say nothing internal.
"""

from __future__ import annotations

import structlog
from pydantic import ValidationError
from quart import Quart, Response, jsonify
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

from kijko_core import errors
from kijko_core.db.transient import TRANSIENT_SQLSTATES, transient_sqlstate

log = structlog.get_logger("kijko.errors")


_HTTP_ERRORS: dict[int, type[errors.KijkoError]] = {
    400: errors.BadRequest,
    404: errors.RouteNotFound,
    405: errors.MethodNotAllowed,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
}


def error_response(error: errors.KijkoError, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(error.to_body())
    response.status_code = error.status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _wire_field(location: tuple[int | str, ...]) -> str | None:
    """The form field (``invitations.email``): what a client shows the error next to."""
    parts = [str(part) for part in location if not isinstance(part, int)]
    return ".".join(parts) or None


def _wire_path(location: tuple[int | str, ...]) -> str | None:
    """The field with the positions in lists (``invitations[3].email``), for the message: in a
    bulk body it says which row is wrong."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or None


def validation_error(error: Exception) -> errors.ValidationFailed:
    if isinstance(error, ValidationError):
        first = error.errors(include_input=False, include_url=False, include_context=False)[0]
        location = tuple(first["loc"])
        field, path = _wire_field(location), _wire_path(location)
        if first["type"] in ("model_type", "model_attributes_type", "dict_type") and not location:
            return errors.ValidationFailed("The request body must be a JSON object")
        message = first["msg"]
        return errors.ValidationFailed(f"{path}: {message}" if path else message, field=field)
    return errors.ValidationFailed()


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(errors.KijkoError)
    async def kijko_error(error: errors.KijkoError) -> Response:
        headers = {}
        retry_after = getattr(error, "retry_after", None)  # ours, or a provider's limit (503)
        if isinstance(retry_after, int):
            headers["Retry-After"] = str(retry_after)
        return error_response(error, headers)

    @app.errorhandler(RequestSchemaValidationError)
    async def schema_error(error: RequestSchemaValidationError) -> Response:
        return error_response(validation_error(error.validation_error))

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        kind = _HTTP_ERRORS.get(status)
        if kind is None:
            if status >= 500:
                return await crash(error)
            generic = errors.KijkoError(error.description or None)
            generic.status = status  # type: ignore[misc]
            generic.code = (error.name or "ERROR").upper().replace(" ", "_")  # type: ignore[misc]
            return error_response(generic)
        response = error_response(kind())
        if status == 405 and isinstance(error, HTTPException):
            allowed = error.get_headers()
            for name, value in allowed:
                if name.lower() == "allow":
                    response.headers["Allow"] = value
        return response

    @app.errorhandler(Exception)
    async def crash(error: Exception) -> Response:
        sqlstate = transient_sqlstate(error)
        if sqlstate is not None:
            # Not a bug: the transaction was rolled back and the client may send the request
            # again. Never retried here (decision 0144). The SQLSTATE only: the error's message
            # and detail may name rows.
            log.warning("database_try_again", sqlstate=sqlstate, condition=TRANSIENT_SQLSTATES[sqlstate])
            return await kijko_error(errors.TryAgain())
        log.error("unhandled_exception", exc_info=error)
        from kijko_server.observability import current_request_id

        failure = errors.KijkoError(details={"requestId": current_request_id()})
        return error_response(failure)
