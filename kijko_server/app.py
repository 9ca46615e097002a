"""``create_app(settings)``: the one ASGI application."""

from __future__ import annotations

from quart import Quart
from quart_cors import cors
from quart_schema import QuartSchema

from kijko_core import __version__
from kijko_core.config import Settings, load_settings
from kijko_core.logging import configure_logging
from kijko_core.runtime import Kijko
from kijko_server.blueprints import auth, oauth, projects, wellknown
from kijko_server.errors import register_error_handlers
from kijko_server.health import bp as health_bp
from kijko_server.json import KijkoJSONProvider, render_models_natively
from kijko_server.observability import register_request_logging
from kijko_server.openapi import KijkoOpenAPIProvider
from kijko_server.ratelimits import AuthLimits, init_rate_limits
from kijko_server.requests import KijkoRequest
from kijko_server.security import authenticate
from kijko_server.swagger import init_swagger_ui


class KijkoApp(Quart):
    request_class = KijkoRequest
    json_provider_class = KijkoJSONProvider
    kijko: Kijko


def create_app(settings: Settings | None = None, *, kijko: Kijko | None = None) -> KijkoApp:
    """Build the app. It starts its runtime (pools, embedded database…) when it starts serving,
    unless a started ``kijko`` is passed in, which then stays the caller's to stop."""
    settings = settings or (kijko.settings if kijko else load_settings())
    configure_logging(settings.log_level, settings.log_format)

    app = KijkoApp(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    app.url_map.strict_slashes = False

    QuartSchema(
        app,
        openapi_path="/openapi.json",
        swagger_ui_path=None,  # kijko_server.swagger serves /docs without a CDN
        redoc_ui_path=None,
        scalar_ui_path=None,
        info={"title": "Kijko API", "version": __version__},
        security_schemes={"bearer": {"type": "http", "scheme": "bearer", "bearer_format": "JWT"}},
        security=[{"bearer": []}],
        pydantic_dump_options={"by_alias": True},
        openapi_provider_class=KijkoOpenAPIProvider,
    )
    render_models_natively(app)
    init_swagger_ui(app)

    # Order matters: the request id exists before authentication can fail.
    register_request_logging(app)
    app.before_request(authenticate)
    init_rate_limits(app)
    register_error_handlers(app)

    app.register_blueprint(health_bp)
    app.register_blueprint(wellknown.bp)
    app.register_blueprint(auth.auth_blueprint(AuthLimits(settings)))
    app.register_blueprint(projects.bp)
    app.register_blueprint(oauth.bp)

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
