"""Request ids and the one access-log line per request."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from quart import Quart, Response, current_app, g, request

_PLAIN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SECRET_PATH = "_kijko_secret_path"
log = structlog.get_logger("kijko.http")
F = TypeVar("F", bound=Callable[..., Any])


def secret_in_path(func: F) -> F:
    """Mark a view whose path carries a secret (an invitation token): its access line shows
    the route template (``/api/v1/invitations/<token>``), never the path itself."""
    setattr(func, _SECRET_PATH, True)
    return func


def _logged_path() -> str:
    if request.url_rule is not None:
        view = current_app.view_functions.get(request.endpoint or "")
        return request.url_rule.rule if getattr(view, _SECRET_PATH, False) else request.path
    # No route matched (a 405 for the wrong method, a 404 for a stray suffix): the path may
    # still carry a secret route's secret, so everything after that route's fixed prefix goes.
    for rule in current_app.url_map.iter_rules():
        if getattr(current_app.view_functions.get(rule.endpoint), _SECRET_PATH, False):
            prefix = rule.rule.split("<", 1)[0]
            if prefix != rule.rule and request.path.startswith(prefix):
                return f"{prefix}<redacted>"
    return request.path


def current_request_id() -> str | None:
    return structlog.contextvars.get_contextvars().get("request_id")


def request_id_for(offered: str | None) -> str:
    """The offered id when it is short and plain (it goes into headers and logs), else a new one."""
    # fullmatch: with ``$`` a trailing newline would pass.
    if offered and _PLAIN_ID.fullmatch(offered):
        return offered
    return uuid.uuid4().hex


def register_request_logging(app: Quart) -> None:
    @app.before_request
    async def bind_request_id() -> None:
        request_id = request_id_for(request.headers.get("X-Request-ID"))
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        g.started_at = time.perf_counter()

    @app.after_request
    async def log_request(response: Response) -> Response:
        request_id = current_request_id()
        if request_id:
            response.headers["X-Request-ID"] = request_id
        identity = g.get("identity")
        started = g.get("started_at")
        log.info(
            "request",
            method=request.method,
            path=_logged_path(),
            status=response.status_code,
            duration_ms=round((time.perf_counter() - started) * 1000, 2) if started else None,
            user_id=str(identity.user_id) if identity else None,
            org_id=str(identity.org_id) if identity else None,
        )
        return response
