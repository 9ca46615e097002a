"""The ``http`` skill type: a skill that calls an HTTP endpoint (a worked example of a Kijko
skill type plugin; docs/plugins.md#the-http-skill-type).

The request goes through the runtime's egress-guarded client (``kijko.egress``): the URL is
chosen by an organization, so private, loopback and metadata addresses are refused (unless the
operator lets a network through with ``KIJKO_EGRESS_ALLOW_CIDRS``), redirects are not followed
and the response is size-capped. The body is the skill's ``bodyTemplate`` with the run's input
substituted by Kijko's own rule (``kijko_core.skills.templates.render``: ``{{name}}``,
``{{a.b}}``, substitution only, non-string values JSON-encoded, missing ones empty). The output is the response's text;
no tokens, no cost.

Failures (the execution's ``errorCode``):

- ``HTTP_ERROR`` — the endpoint answered outside 2xx (the message names the status; 429 and
  5xx are retryable);
- ``ADDRESS_REFUSED`` — the URL's host resolves to an address the egress guard refuses;
- ``HTTP_UNREACHABLE`` — no connection (DNS failure, refused, reset, TLS);
- ``TIMEOUT`` — no complete answer within ``timeoutSeconds``;
- ``RESPONSE_TOO_LARGE`` — the body is over ``maxResponseBytes``;
- ``TEMPLATE_ERROR`` — the body could not be rendered (over Kijko's rendered-size cap).
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any, ClassVar, Literal

import httpx
from pydantic import AnyHttpUrl, ConfigDict, Field, UrlConstraints, field_validator

from kijko_core.egress import EgressRefused, ResponseTooLarge
from kijko_core.errors import KijkoError
from kijko_core.plugins import SkillOutcome, SkillRun, SkillRunFailed, SkillType
from kijko_core.skills.templates import render
from kijko_core.wire import WireInput

__version__ = "0.1.0"

#: Headers a skill may not set: connection management belongs to the client (RFC 9110 §7.6.1),
#: and Host/Content-Length are computed from the URL and the body.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")
MAX_HEADERS = 20
MAX_HEADER_VALUE = 2000
MAX_BODY_TEMPLATE = 64 * 1024
#: What the message of an HTTP_ERROR may quote of the response (never the whole body).
MAX_QUOTED = 200

HttpsOrHttpUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=2048, allowed_schemes=["http", "https"])]


class HttpConfig(WireInput):
    """The ``typeConfig`` of an ``http`` skill (camelCase on the wire)."""

    model_config = ConfigDict(extra="forbid")

    url: HttpsOrHttpUrl
    method: Literal["GET", "POST", "PUT", "PATCH"] = "POST"
    headers: dict[str, Annotated[str, Field(max_length=MAX_HEADER_VALUE)]] = Field(
        default_factory=dict, max_length=MAX_HEADERS
    )
    #: The request body, with ``{{name}}`` placeholders for the run's input; none for GET.
    body_template: str | None = Field(default=None, max_length=MAX_BODY_TEMPLATE)
    timeout_seconds: float = Field(default=30.0, gt=0, le=120)
    max_response_bytes: int = Field(default=256 * 1024, ge=1, le=5 * 1024 * 1024)

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not HEADER_NAME.fullmatch(name):
                raise ValueError("header names are HTTP tokens of at most 100 characters")
            if name.lower() in HOP_BY_HOP:
                raise ValueError(f"the header {name} is managed by Kijko and cannot be set")
            if "\r" in value or "\n" in value:
                raise ValueError("header values are single lines")
        return headers

    @field_validator("body_template")
    @classmethod
    def _body(cls, template: str | None, info: Any) -> str | None:
        if template is not None and info.data.get("method") == "GET":
            raise ValueError("a GET request has no body")
        return template


class HttpSkillType(SkillType):
    name: ClassVar[str] = "http"
    version: ClassVar[str] = __version__
    description: ClassVar[str] = "Calls an HTTP endpoint with a templated body; the output is the response text"
    Config = HttpConfig

    async def run(self, run: SkillRun) -> SkillOutcome:
        config = run.config
        assert isinstance(config, HttpConfig)
        try:
            body = render(config.body_template, run.input) if config.body_template is not None else None
        except KijkoError:  # Kijko's rule refuses a rendered body over its size cap
            raise SkillRunFailed("TEMPLATE_ERROR", "The body could not be rendered from the input") from None
        headers = dict(config.headers)
        if body is not None and not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = (
                "application/json" if body.lstrip()[:1] in ("{", "[") else "text/plain; charset=utf-8"
            )
        try:
            async with asyncio.timeout(config.timeout_seconds):
                return await self._call(run.kijko.egress, config, headers, body)
        except TimeoutError:
            raise SkillRunFailed("TIMEOUT", "The endpoint did not answer in time", retryable=True) from None

    async def _call(
        self, client: httpx.AsyncClient, config: HttpConfig, headers: dict[str, str], body: str | None
    ) -> SkillOutcome:
        try:
            async with client.stream(
                config.method,
                str(config.url),
                headers=headers,
                content=body.encode() if body is not None else None,
                timeout=config.timeout_seconds,
            ) as response:
                data = bytearray()
                async for piece in response.aiter_bytes():
                    data += piece
                    if len(data) > config.max_response_bytes:
                        raise ResponseTooLarge("over maxResponseBytes")
        except EgressRefused:
            raise SkillRunFailed("ADDRESS_REFUSED", "The URL's address is not allowed (private or reserved)") from None
        except ResponseTooLarge:
            raise SkillRunFailed("RESPONSE_TOO_LARGE", "The response is larger than maxResponseBytes") from None
        except httpx.TimeoutException:
            raise SkillRunFailed("TIMEOUT", "The endpoint did not answer in time", retryable=True) from None
        except httpx.HTTPError as error:
            raise SkillRunFailed(
                "HTTP_UNREACHABLE", f"The endpoint could not be reached ({type(error).__name__})", retryable=True
            ) from None
        text = bytes(data).decode(response.encoding or "utf-8", errors="replace")
        if not 200 <= response.status_code < 300:
            retryable = response.status_code == 429 or response.status_code >= 500
            raise SkillRunFailed(
                "HTTP_ERROR",
                f"The endpoint answered {response.status_code} {response.reason_phrase}"[:MAX_QUOTED],
                retryable=retryable,
            )
        return SkillOutcome(output=text)
