"""The OpenAPI document: bearer auth on every route but the public ones, and the error shape
documented on every operation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from quart_schema import OpenAPIProvider
from werkzeug.routing import Rule

from kijko_core.errors import ErrorBody
from kijko_server.security import is_public

_ERROR_STATUSES = {
    "400": "Malformed JSON or a bad request",
    "401": "Missing, expired, invalid or revoked token, or wrong credentials",
    "403": "Authenticated, but not allowed to do this",
    "404": "Unknown route or entity (another organization's entities look the same)",
    "413": "Request body too large",
    "415": "The body is not sent as application/json",
    "422": "The request does not match the schema",
    "429": "Rate limit or quota exceeded",
    "500": "Internal error; the body carries the request id",
}


_REDIRECT = "_kijko_redirect"
F = TypeVar("F", bound=Callable[..., Any])


def redirects(description: str) -> Callable[[F], F]:
    """Document a route that answers ``302`` with a ``Location`` header (quart-schema only
    documents JSON bodies)."""

    def mark(func: F) -> F:
        setattr(func, _REDIRECT, description)
        return func

    return mark


class KijkoOpenAPIProvider(OpenAPIProvider):
    def schema(self) -> dict[str, Any]:
        schema = super().schema()
        schema["components"]["schemas"]["ErrorBody"] = ErrorBody.model_json_schema()
        return schema

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        view = self._app.view_functions[rule.endpoint]
        redirect = getattr(view, _REDIRECT, None)
        for operations in paths.values():
            for method, operation in operations.items():
                # quart-schema keys statuses by int; mixed with ours, sorted JSON output fails.
                responses = {str(k): v for k, v in operation.get("responses", {}).items()}
                if redirect is not None:
                    responses["302"] = {
                        "description": redirect,
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    }
                for status, description in _ERROR_STATUSES.items():
                    responses.setdefault(
                        status,
                        {
                            "description": description,
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/ErrorBody"}
                                }
                            },
                        },
                    )
                operation["responses"] = responses
                if is_public(method.upper(), rule, view):
                    operation["security"] = []
        return paths, components
