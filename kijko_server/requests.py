"""``KijkoRequest``: how a request body becomes JSON, and how that fails (in the error shape)."""

from __future__ import annotations

from typing import Any

from quart import Request

from kijko_core.errors import MalformedJson, UnsupportedMediaType


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
