"""``create_app(kijko=…)``: the one ASGI application, around a started runtime.

The process owns the runtime and its logging: ``kijko serve`` starts ``Kijko``, builds the app
on it and runs uvicorn in one event loop (kijko_cli/serve.py). The app can be wrapped in any
ASGI middleware (Socket.IO next); its lifespan only runs Quart's own start-up hooks.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from functools import wraps
from typing import Any

from quart import Quart
from quart_cors import cors
from quart_schema import QuartSchema

from kijko_core import __version__
from kijko_core.config import Settings, load_settings
from kijko_core.runtime import Kijko
from kijko_server.blueprints import blueprints
from kijko_server.blueprints.sources import UPLOAD_PATH
from kijko_server.errors import register_error_handlers
from kijko_server.observability import register_request_logging
from kijko_server.openapi import KijkoOpenAPIProvider
from kijko_server.ratelimits import init_rate_limits
from kijko_server.requests import KijkoRequest
from kijko_server.security import authenticate, public, require_revocation_check


class KijkoApp(Quart):
    request_class = KijkoRequest
    kijko: Kijko


def freeze_start_up_heap() -> None:
    """Call once a served process has started: everything made while starting (modules, the
    SDKs' tables, the app) lives as long as the process, so it leaves the collector's
    generations and a full collection no longer walks it — that walk was a pause of tens of
    milliseconds in the project list's p99 (docs/performance.md)."""
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None, *, kijko: Kijko | None = None) -> KijkoApp:
    """Build the app on a started ``kijko``, which stays the caller's to stop.

    Without one, the app starts its own runtime in its lifespan and stops it after serving
    (for ASGI servers that import a factory, and for ``kijko openapi``, which never serves).
    Logging is not configured here: that is the process's business (the CLI does it).
    """
    settings = settings or (kijko.settings if kijko else load_settings())

    app = KijkoApp(__name__, static_folder=None)
    # Uploads may be larger than a JSON body (their own setting, enforced while reading).
    app.request_class = KijkoRequest.with_body_limits({UPLOAD_PATH: settings.upload_max_request_bytes})
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    app.url_map.strict_slashes = False

    QuartSchema(
        app,
        openapi_path="/openapi.json",
        swagger_ui_path=None,  # kijko_server.swagger serves /docs, without a CDN
        redoc_ui_path=None,
        scalar_ui_path=None,
        info={"title": "Kijko API", "version": __version__},
        security_schemes={"bearer": {"type": "http", "scheme": "bearer", "bearer_format": "JWT"}},
        security=[{"bearer": []}],
        pydantic_dump_options={"by_alias": True},
        openapi_provider_class=KijkoOpenAPIProvider,
    )
    # quart-schema's own view (the document) is public like any other view.
    app.view_functions["openapi"] = public(_plain(app.view_functions["openapi"]))

    # Order matters: the request id exists before authentication can fail; after requests run
    # in reverse, so the revocation check's verdict is what the access line logs.
    register_request_logging(app)
    app.before_request(authenticate)
    app.after_request(require_revocation_check)
    init_rate_limits(app)
    register_error_handlers(app)

    for blueprint in blueprints(settings):
        app.register_blueprint(blueprint)

    owned = kijko is None
    if kijko is not None:
        app.kijko = kijko

    @app.before_serving
    async def start_runtime() -> None:
        if owned:  # a served app (``kijko serve``, uvicorn): the process is the app's
            app.kijko = await Kijko.start(settings)
            freeze_start_up_heap()

    @app.after_serving
    async def stop_runtime() -> None:
        if owned and hasattr(app, "kijko"):
            await app.kijko.stop()

    return cors(
        app,
        allow_origin=settings.cors_origins,
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        expose_headers=["X-Request-ID", "Retry-After"],
        max_age=600,
    )


def _plain(view: Callable[..., Any]) -> Callable[..., Any]:
    """A function of a (bound-method) view, so it can carry our markers."""

    @wraps(view)
    async def call(*args: Any, **kwargs: Any) -> Any:
        return await view(*args, **kwargs)

    return call
