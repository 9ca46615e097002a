"""The OpenAPI document: bearer auth on every route but the public ones, and the error shape
documented on every operation.

Every view declares its errors with :func:`responds` and documents exactly the statuses it
can answer (decisions 0024, 0046): those errors, the ones its validation implies (a JSON body:
400, 413, 415, 422; a query string: 422), the rate limiter's (429, and 503 when its Redis is
down) on a view with ``@rate_limit``, 401 and 503 ``TRY_AGAIN`` unless public, and 500. There is no generic list: a
view without ``@responds`` documents only those implied statuses, and the route meta-test
fails on it. Query parameters are required as their model says and never null.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from quart_schema import DataSource, OpenAPIProvider
from quart_schema.validation import QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, QUART_SCHEMA_REQUEST_ATTRIBUTE
from werkzeug.routing import Rule

from kijko_core.errors import (
    ErrorBody,
    InvalidToken,
    KijkoError,
    MalformedJson,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    TryAgain,
    UnsupportedMediaType,
    ValidationFailed,
)
from kijko_server.ratelimits import limits_of
from kijko_server.security import is_public

_REDIRECT = "_kijko_redirect"
_ERRORS = "_kijko_errors"
F = TypeVar("F", bound=Callable[..., Any])

_BODY_ERRORS: tuple[type[KijkoError], ...] = (MalformedJson, PayloadTooLarge, UnsupportedMediaType, ValidationFailed)
#: Quart's form parser is silent: a malformed multipart body parses as empty (422), never a 400.
_MULTIPART_ERRORS: tuple[type[KijkoError], ...] = (PayloadTooLarge, ValidationFailed)
#: What the limiter answers before the view runs: over the limit, or its Redis is down.
_LIMITER_ERRORS: tuple[type[KijkoError], ...] = (RateLimited, ServiceUnavailable)
_STATUS_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    410: "Gone",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Validation failed",
    429: "Rate limited",
    500: "Internal error; the body carries the request id",
    502: "Upstream error",
    503: "Service unavailable",
}


def responds(*errors: type[KijkoError]) -> Callable[[F], F]:
    """Declare the errors a view can answer beyond the ones every route of its kind can (see
    the module docstring); the OpenAPI document then lists exactly those, with their codes."""

    def mark(func: F) -> F:
        setattr(func, _ERRORS, tuple(errors))
        return func

    return mark


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }


def declared_errors(view: Callable[..., Any], public: bool) -> dict[str, dict[str, Any]] | None:
    """The error responses of a view that declared its errors; None if it did not."""
    declared: tuple[type[KijkoError], ...] | None = getattr(view, _ERRORS, None)
    if declared is None:
        return None
    return _error_responses(view, declared, public)


def _error_responses(
    view: Callable[..., Any], declared: tuple[type[KijkoError], ...], public: bool
) -> dict[str, dict[str, Any]]:
    errors: list[type[KijkoError]] = list(declared)
    request_model = getattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, None)
    if request_model is not None:
        # A multipart body (uploads) is not JSON: no 400 MALFORMED_JSON nor 415.
        multipart = request_model[1] == DataSource.FORM_MULTIPART
        errors += _MULTIPART_ERRORS if multipart else _BODY_ERRORS
    if getattr(view, QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, None) is not None:
        errors.append(ValidationFailed)
    if limits_of(view):
        errors += _LIMITER_ERRORS
    if not public:
        # Every authenticated route works in a database transaction, which a deadlock or a
        # lock/statement timeout can roll back (503 TRY_AGAIN, decision 0144); public routes
        # that use the database declare it themselves.
        errors += [InvalidToken, TryAgain]
    codes: dict[int, list[str]] = {500: ["INTERNAL_ERROR"]}
    for error in errors:
        found = codes.setdefault(error.status, [])
        if error.code not in found:
            found.append(error.code)
    return {
        str(status): _error_response(f"{_STATUS_TITLES.get(status, 'Error')}: {', '.join(found)}")
        for status, found in sorted(codes.items())
    }


def redirects(description: str) -> Callable[[F], F]:
    """Document a route that answers ``302`` with a ``Location`` header (quart-schema only
    documents JSON bodies)."""

    def mark(func: F) -> F:
        setattr(func, _REDIRECT, description)
        return func

    return mark


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema without ``null``: a query string cannot carry one (an absent
    parameter is what the model's ``None`` stands for)."""
    options = schema.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        schema = {key: value for key, value in schema.items() if key != "anyOf"}
        schema.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
    if "default" in schema and schema["default"] is None:
        schema = {key: value for key, value in schema.items() if key != "default"}
    return schema


class KijkoOpenAPIProvider(OpenAPIProvider):
    def schema(self) -> dict[str, Any]:
        schema = super().schema()
        schema["components"]["schemas"]["ErrorBody"] = ErrorBody.model_json_schema()
        return schema

    def build_querystring_parameters(self, model: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        # quart-schema looks for ``required`` on each property, where JSON Schema never puts
        # it: without this a required parameter (the OAuth callback's ``state``) is optional.
        parameters, definitions = super().build_querystring_parameters(model)
        whole = model.model_json_schema() if isinstance(model, type) and issubclass(model, BaseModel) else {}
        required = set(whole.get("required", []))
        for parameter in parameters:
            parameter["schema"] = _not_null(parameter["schema"])
            if parameter["name"] in required:
                parameter["required"] = True
        return parameters, definitions

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        view = self._app.view_functions[rule.endpoint]
        redirect = getattr(view, _REDIRECT, None)
        for operations in paths.values():
            for method, operation in operations.items():
                public = is_public(method.upper(), rule, view)
                # quart-schema keys statuses by int; mixed with ours, sorted JSON output fails.
                responses = {str(k): v for k, v in operation.get("responses", {}).items()}
                if redirect is not None:
                    responses["302"] = {
                        "description": redirect,
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    }
                # Undeclared (the route meta-test fails on it): only what every such route answers.
                errors = declared_errors(view, public) or _error_responses(view, (), public)
                for status, response in errors.items():
                    responses.setdefault(status, response)
                operation["responses"] = responses
                if public:
                    operation["security"] = []
        return paths, components
