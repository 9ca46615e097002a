"""``/docs``: Swagger UI from the ``swagger-ui-bundle-v2`` package, so the page needs no CDN and
works offline (and tells no third party who reads our API reference).

quart-schema's own page loads Swagger UI from a CDN and leaves Swagger UI's validator badge
on (a request to validator.swagger.io with our document's URL); this page serves the assets
itself, under ``/docs/assets/``, and turns the validator off.
"""

from __future__ import annotations

from functools import cache
from typing import Final

from quart import Blueprint, Response, abort, url_for
from quart_schema import hide
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from kijko_core.errors import RouteNotFound
from kijko_server.openapi import responds
from kijko_server.security import public

#: The files the page uses, and their media types (nothing else of the bundle is served).
ASSETS: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}

PAGE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" type="text/css" href="{css}">
  <link rel="icon" type="image/png" href="{icon}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{js}"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "{openapi}",
      dom_id: "#swagger-ui",
      deepLinking: true,
      layout: "BaseLayout",
      presets: [SwaggerUIBundle.presets.apis],
      showExtensions: true,
      showCommonExtensions: true,
      validatorUrl: null
    }});
  </script>
</body>
</html>
"""

bp = Blueprint("swagger_ui", __name__)


@cache
def _asset(name: str) -> bytes:
    return bytes((swagger_ui_path / name).read_bytes())


@bp.get("/docs")
@public
@responds()
@hide
async def docs() -> Response:
    """The API reference, browsable."""
    page = PAGE.format(
        title="Kijko API",
        css=url_for("swagger_ui.asset", name="swagger-ui.css"),
        icon=url_for("swagger_ui.asset", name="favicon-32x32.png"),
        js=url_for("swagger_ui.asset", name="swagger-ui-bundle.js"),
        openapi=url_for("openapi"),
    )
    return Response(page, content_type="text/html; charset=utf-8")


@bp.get("/docs/assets/<name>")
@public
@responds(RouteNotFound)  # abort(404): not one of ASSETS
@hide
async def asset(name: str) -> Response:
    if name not in ASSETS:
        abort(404)
    response = Response(_asset(name), content_type=ASSETS[name])
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
