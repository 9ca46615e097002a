"""Responses that must never be stored by a browser or a proxy (RFC 6749 §5.1)."""

from __future__ import annotations

from typing import Final

from quart import Response

NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def no_store(response: Response) -> Response:
    """``after_request`` hook for blueprints that hand out tokens: every answer, success or
    error, is ``no-store`` (``Pragma`` for HTTP/1.0 caches)."""
    response.headers.update(NO_STORE)
    return response
