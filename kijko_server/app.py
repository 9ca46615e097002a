"""``create_app(kijko=…)``: the one ASGI application, around a started runtime.

The process owns the runtime and its logging: ``kijko serve`` starts ``Kijko``, builds the app
on it and runs uvicorn in one event loop (kijko_cli/serve.py). The app can be wrapped in any
ASGI middleware (Socket.IO next); its lifespan only runs Quart's own start-up hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from quart import Quart, Request
from quart_cors import cors
from quart_schema import QuartSchema

from kijko_core import __version__
from kijko_core.config import Settings, load_settings
from kijko_core.errors import MalformedJson, UnsupportedMediaType
from kijko_core.runtime import Kijko
from kijko_server.blueprints import blueprints
from kijko_server.errors import register_error_handlers
from kijko_server.observability import register_request_logging
from kijko_server.openapi import KijkoOpenAPIProvider
from kijko_server.ratelimits import init_rate_limits
from kijko_server.security import authenticate, public, require_revocation_check


class KijkoRequest(Request):
    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        # A JSON route given another media type says so (415), as Flask does, instead of
        # validating an absent body (docs/decisions/0001-http-errors.md).
        if not (force or silent or self.is_json):
            raise UnsupportedMediaType()
        try:
            return await super().get_json(force=force, silent=silent, cache=cache)
        except UnicodeDecodeError:  # Quart decodes the body outside its own error handling
            if silent:
                return None
            raise MalformedJson() from None

    def on_json_loading_failed(self, error: Exception) -> None:  # type: ignore[override]
        raise MalformedJson()


class KijkoApp(Quart):
    request_class = KijkoRequest
    kijko: Kijko


def create_app(settings: Settings | None = None, *, kijko: Kijko | None = None) -> KijkoApp:
    """Build the app on a started ``kijko``, which stays the caller's to stop.

    Without one, the app starts its own runtime in its lifespan and stops it after serving
    (for ASGI servers that import a factory, and for ``kijko openapi``, which never serves).
    Logging is not configured here: that is the process's business (the CLI does it).
    """
    settings = settings or (kijko.settings if kijko else load_settings())

    app = KijkoApp(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    app.url_map.strict_slashes = False

    QuartSchema(
        app,
        openapi_path="/openapi.json",
        swagger_ui_path="/docs",
        redoc_ui_path=None,
        scalar_ui_path=None,
        info={"title": "Kijko API", "version": __version__},
        security_schemes={"bearer": {"type": "http", "scheme": "bearer", "bearer_format": "JWT"}},
        security=[{"bearer": []}],
        pydantic_dump_options={"by_alias": True},
        openapi_provider_class=KijkoOpenAPIProvider,
    )
    # quart-schema's own views (the document and its UI) are public like any other view.
    for endpoint in ("openapi", "swagger_ui"):
        if endpoint in app.view_functions:
            app.view_functions[endpoint] = public(_plain(app.view_functions[endpoint]))

    # Order matters: the request id exists before authentication can fail; after requests run
    # in reverse, so the revocation check's verdict is what the access line logs.
    register_request_logging(app)
    app.before_request(authenticate)
    app.after_request(require_revocation_check)
    init_rate_limits(app, settings)
    register_error_handlers(app)

    for blueprint in blueprints(settings):
        app.register_blueprint(blueprint)

    owned = kijko is None
    if kijko is not None:
        app.kijko = kijko

    @app.before_serving
    async def start_runtime() -> None:
        if owned:
            app.kijko = await Kijko.start(settings)

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
