"""Where a newcomer lands: ``/`` sends the browser to the API documentation, ``/api/v1`` says
which Kijko answers and where its documentation and OpenAPI document are."""

from __future__ import annotations

from pydantic import BaseModel
from quart import Blueprint, Response, request

from kijko_core import __version__
from kijko_server.openapi import redirects, responds
from kijko_server.responses import validate_response
from kijko_server.security import public

bp = Blueprint("index", __name__)


class ApiLinks(BaseModel):
    docs: str
    openapi: str
    health: str


class ApiIndex(BaseModel):
    name: str
    version: str
    links: ApiLinks


@bp.get("/")
@public
@responds()
@redirects("To the API documentation (`/docs`)")
async def root() -> Response:
    """Send a browser to the API documentation."""
    response = Response("", status=302)
    response.headers["Location"] = "/docs"
    return response


@bp.get("/api/v1")
@public
@responds()
@validate_response(ApiIndex)
async def api_index() -> ApiIndex:
    """The API's version and the links to its documentation."""
    # Relative to where the request arrived, so it is right behind any proxy or port.
    base = request.root_path
    return ApiIndex(
        name="Kijko API",
        version=__version__,
        links=ApiLinks(docs=f"{base}/docs", openapi=f"{base}/openapi.json", health=f"{base}/health"),
    )
