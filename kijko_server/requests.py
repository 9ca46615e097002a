"""``KijkoRequest``: how a request body becomes JSON, and how that fails (in the error shape).

A body is JSON only if it is UTF-8, nested at most ``MAX_JSON_DEPTH`` levels, and holds no
lone surrogate (``"\\ud800"``): such a string cannot be encoded back to UTF-8, so it would fail
later, anywhere (a hash, a log line, the database), as a 500. Refusing all three while
parsing keeps every route safe without each one knowing (docs/decisions/0040-json-input-limits.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from quart import Request, request

from kijko_core.errors import MalformedJson, PayloadTooLarge, UnsupportedMediaType

#: Deepest nesting of arrays and objects a body may have. Our bodies need 3 or 4; the cap is
#: checked before parsing, so a deep body never reaches the recursive parser (nor pydantic).
MAX_JSON_DEPTH: Final = 32

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
# A \u escape of a UTF-16 surrogate (D800–DFFF); a pair is fine, a lone one is not.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class JsonTooDeep(MalformedJson):
    default_message = f"The request body is nested too deeply (at most {MAX_JSON_DEPTH} levels)"


class JsonNotUnicode(MalformedJson):
    default_message = "The request body is not valid UTF-8 or contains an unpaired surrogate"


def json_depth_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays/objects in ``text`` nest deeper than ``limit`` (brackets inside strings
    do not count). Linear, and stops at the first level over the limit."""
    if text.count("[") + text.count("{") <= limit:
        return False  # the common case, without looking at strings
    depth = 0
    for bracket in _BRACKETS.findall(_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def parse_json(data: bytes) -> Any:
    """Parse a request body, raising ``MalformedJson`` (400) for anything we refuse."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonNotUnicode() from None
    if json_depth_exceeds(text):
        raise JsonTooDeep()
    try:
        value = json.loads(text)
    except ValueError:  # JSONDecodeError, and int() of a number too long to convert
        raise MalformedJson() from None
    except RecursionError:  # cannot happen under the depth cap; never a 500 if it did
        raise JsonTooDeep() from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            # json.loads joins escaped pairs into one character; what stays is a lone half.
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise JsonNotUnicode() from None
    return value


def printable_query(query_string: bytes) -> bytes:
    """The query string with raw bytes that are not UTF-8 percent-encoded.

    An ASGI server may pass the query's bytes as the client sent them (uvicorn refuses them
    itself; others need not); Quart decodes them strictly while routing, before any error
    handler exists, and the app raised. Percent-encoded, such bytes become what werkzeug
    makes of ``%FF`` in any query: literal text, refused by the query models or harmless.
    """
    try:
        query_string.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(chr(b) if b < 0x80 else f"%{b:02X}" for b in query_string).encode()
    return query_string


class KijkoRequest(Request):
    _parsed_json: Any = Ellipsis  # our own cache: Quart's is private to its get_json
    #: Paths whose body has its own limit instead of ``MAX_CONTENT_LENGTH`` (file uploads);
    #: set per app by ``with_body_limits``.
    body_limits: ClassVar[Mapping[str, int]] = {}

    @classmethod
    def with_body_limits(cls, limits: Mapping[str, int]) -> type[KijkoRequest]:
        return type(cls.__name__, (cls,), {"body_limits": dict(limits)})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Quart passes (method, scheme, path, …); the limit must be known before the body
        # arrives, since the body and the form parser enforce it while reading.
        path = args[2] if len(args) > 2 else kwargs.get("path")
        limit = self.body_limits.get(path) if isinstance(path, str) else None
        if limit is not None:
            kwargs["max_content_length"] = limit
        super().__init__(*args, **kwargs)
        if limit is not None:
            self.max_content_length = limit
        self.query_string = printable_query(self.query_string)

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        # A JSON route given another media type says so (415), as Flask does, instead of
        # validating an absent body (docs/decisions/0001-http-errors.md).
        if not (force or self.is_json):
            if silent:
                return None
            raise UnsupportedMediaType()
        if self._parsed_json is not Ellipsis:
            return self._parsed_json
        data = await self.get_data(cache=cache, as_text=False)
        try:
            result = parse_json(data if isinstance(data, bytes) else data.encode())
        except MalformedJson:
            if silent:
                return None
            raise
        if cache:
            self._parsed_json = result
        return result


async def raw_body(cap: int, too_large: type[PayloadTooLarge] = PayloadTooLarge) -> bytes:
    """The current request's body as sent (a signature covers exactly these bytes), refused
    with ``too_large`` past ``cap`` bytes — by its length header, or while reading."""
    declared = request.content_length
    if declared is not None and declared > cap:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.body:
        size += len(chunk)
        if size > cap:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)
