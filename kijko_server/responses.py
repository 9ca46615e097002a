"""Response models written to JSON in one pydantic call.

``validate_response`` here is quart-schema's (same arguments: the model is validated and
documented in OpenAPI exactly as before) plus one step: the validated model leaves the view
as a finished JSON response written by ``model_dump_json`` (in Rust), instead of quart-schema's
dump to a dict followed by ``json.dumps`` — a third of the cost of list responses
(docs/performance.md). Views import it from here; lint bans quart-schema's own.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from pydantic import BaseModel
from quart import Response
from quart_schema import validate_response as schema_validate_response

_NATIVE = "_kijko_native_json"


def model_response(model: BaseModel, status: int = 200) -> Response:
    """A JSON response of ``model`` as the API writes it (aliases, ISO datetimes)."""
    return Response(model.model_dump_json(by_alias=True), status=status, content_type="application/json")


def writes_native_json(view: Callable[..., Any]) -> bool:
    return bool(getattr(view, _NATIVE, False))


def validate_response(
    model_class: type[BaseModel], status_code: int = 200, headers_model_class: type[Any] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """quart-schema's ``validate_response``, answering with ``model_response``."""

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        validated = schema_validate_response(model_class, status_code, headers_model_class)(func)

        @wraps(validated)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = await validated(*args, **kwargs)
            # quart-schema hands back (model, status, headers) when the status is the
            # validated one; anything else (another status, a Response) passes through.
            if isinstance(result, tuple) and len(result) == 3 and isinstance(result[0], BaseModel):
                model, status, headers = result
                if status == status_code:
                    return model_response(model, status), status, headers
            return result

        setattr(wrapper, _NATIVE, True)
        return wrapper

    return decorator
