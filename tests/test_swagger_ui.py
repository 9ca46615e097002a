"""``/docs`` works offline: Swagger UI comes from the installed package, never from a CDN."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

EXPECTED_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


async def test_docs_page_references_no_other_host(client: Any) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.content_type.startswith("text/html")
    page = await response.get_data(as_text=True)
    assert "SwaggerUIBundle(" in page and "validatorUrl: null" in page
    # No absolute URL at all: not in an attribute, not in the script.
    assert not re.search(r"(https?:)?//[A-Za-z0-9.-]+", page.replace("<!DOCTYPE html>", "")), page


async def test_every_asset_the_page_references_is_served_with_its_type(client: Any) -> None:
    page = await (await client.get("/docs")).get_data(as_text=True)
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert {urlsplit(url).path.rsplit(".", 1)[-1] for url in referenced} == {"js", "css", "png"}
    for url in referenced:
        assert not urlsplit(url).netloc and url.startswith("/docs/assets/")
        response = await client.get(url)  # no token: the page is public, so are its assets
        assert response.status_code == 200, url
        suffix = "." + url.rsplit(".", 1)[-1]
        assert response.content_type.startswith(EXPECTED_TYPES[suffix]), (url, response.content_type)
        assert len(await response.get_data()) > 500
    # The page's document is the OpenAPI document served here.
    assert '"/openapi.json"' in page
    assert (await client.get("/openapi.json")).status_code == 200


async def test_only_the_pages_assets_are_served(client: Any) -> None:
    for name in ("index.html", "swagger-ui-bundle.js.map", "..%2F__init__.py", "oauth2-redirect.html"):
        response = await client.get(f"/docs/assets/{name}")
        assert response.status_code == 404, name
    response = await client.post("/docs/assets/swagger-ui.css")
    assert response.status_code == 405
