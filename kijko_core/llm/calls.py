"""One call to a provider through its official SDK, and what its failure means.

The SDK clients come from the runtime's :class:`~kijko_core.llm.clients.ProviderClients` (our
egress-guarded ``httpx2`` client, kept alive; no retries of their own, ``max_retries=0``):
:mod:`kijko_core.llm.retry` decides. A failure becomes a :class:`ProviderFailure` whose message
is ours — never the provider's body (it may echo the prompt or part of the key) and never the key.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import httpx2
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kijko_core.egress import EgressRefused, ResponseTooLarge
from kijko_core.llm.clients import ProviderClients
from kijko_core.llm.providers import ProviderKey

if TYPE_CHECKING:
    import anthropic
    import openai

#: What Anthropic requires (``max_tokens`` is mandatory there) when a skill sets none.
DEFAULT_MAX_TOKENS = 4096


class Parameters(BaseModel):
    """The skill's ``parameters`` Kijko passes on (snake_case, as on the wire); others are
    ignored. ``top_k`` only reaches Anthropic; ``stop_sequences`` is OpenAI's ``stop``."""

    model_config = ConfigDict(extra="ignore")

    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=1, le=1_000_000)
    stop_sequences: list[str] | None = Field(default=None, max_length=16)


@dataclass(frozen=True, slots=True)
class Prompt:
    model: str
    prompt: str
    system_prompt: str | None
    parameters: Parameters


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int


class ProviderFailure(Exception):
    """A failed call: the execution's ``code``, a message fit for the organization, whether a
    retry may succeed, and how long the provider asked to wait (``Retry-After``)."""

    def __init__(self, code: str, message: str, *, transient: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient
        self.retry_after = retry_after


def parameters(raw: Mapping[str, Any]) -> Parameters:
    try:
        return Parameters.model_validate(dict(raw))
    except ValidationError as error:
        names = sorted({str(e["loc"][0]) for e in error.errors() if e["loc"]})
        raise ProviderFailure(
            "INVALID_PARAMETERS", f"The skill's parameters are not valid: {', '.join(names) or 'parameters'}"
        ) from None


async def complete(clients: ProviderClients, key: ProviderKey, prompt: Prompt, *, seconds: float) -> Completion:
    """One call, no retry, within ``seconds``. Raises :class:`ProviderFailure`;
    ``asyncio.CancelledError`` passes (and aborts the request)."""
    # The SDKs (~140 MB of modules) load with the first call: an API process that runs no skill
    # never holds them.
    import anthropic
    import openai

    try:
        if key.protocol == "anthropic":
            return await _anthropic(clients.anthropic(key), prompt, seconds)
        return await _openai(clients.openai(key), prompt, seconds)
    except (openai.APIStatusError, anthropic.APIStatusError) as error:
        raise _status_failure(key.provider, error.status_code, error.response) from None
    except (openai.APITimeoutError, anthropic.APITimeoutError):
        raise ProviderFailure(
            "TIMEOUT", f"The {key.provider} provider did not answer in time", transient=True
        ) from None
    except (openai.APIConnectionError, anthropic.APIConnectionError) as error:
        raise _connection_failure(key.provider, error) from None
    except (openai.APIError, anthropic.APIError):
        # A body the SDK could not read as the API's (APIResponseValidationError and the like).
        raise ProviderFailure(
            "PROVIDER_ERROR", f"The {key.provider} provider sent an answer Kijko cannot read"
        ) from None


async def _openai(client: openai.AsyncOpenAI, prompt: Prompt, seconds: float) -> Completion:
    messages: list[dict[str, str]] = []
    if prompt.system_prompt:
        messages.append({"role": "system", "content": prompt.system_prompt})
    messages.append({"role": "user", "content": prompt.prompt})
    p = prompt.parameters
    options: dict[str, Any] = {}
    if p.temperature is not None:
        options["temperature"] = p.temperature
    if p.max_tokens is not None:
        # ``max_tokens`` rather than the newer ``max_completion_tokens``: every OpenAI-compatible
        # server (Gemini, vLLM, Ollama) understands it.
        options["max_tokens"] = p.max_tokens
    if p.top_p is not None:
        options["top_p"] = p.top_p
    if p.stop_sequences:
        options["stop"] = p.stop_sequences
    response = await client.chat.completions.create(
        model=prompt.model,
        messages=messages,  # type: ignore[arg-type]
        timeout=seconds,
        **options,
    )
    text = response.choices[0].message.content or "" if response.choices else ""
    usage = response.usage
    return Completion(text, usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)


async def _anthropic(client: anthropic.AsyncAnthropic, prompt: Prompt, seconds: float) -> Completion:
    p = prompt.parameters
    options: dict[str, Any] = {}
    if prompt.system_prompt:
        options["system"] = prompt.system_prompt
    if p.stop_sequences:
        options["stop_sequences"] = p.stop_sequences
    # The SDK (2.x) no longer types the sampling parameters (newer models refuse some); the
    # Messages API still takes them for the models that do, so they go in the body as such.
    sampling: dict[str, Any] = {}
    if p.temperature is not None:
        sampling["temperature"] = min(p.temperature, 1.0)  # Anthropic's range is 0–1
    if p.top_p is not None:
        sampling["top_p"] = p.top_p
    if p.top_k is not None:
        sampling["top_k"] = p.top_k
    response = await client.messages.create(
        model=prompt.model,
        max_tokens=p.max_tokens or DEFAULT_MAX_TOKENS,
        messages=[{"role": "user", "content": prompt.prompt}],
        extra_body=sampling or None,
        timeout=seconds,
        **options,
    )
    text = "".join(block.text for block in response.content if block.type == "text")
    return Completion(text, response.usage.input_tokens, response.usage.output_tokens)


def _status_failure(provider: str, status: int, response: httpx2.Response) -> ProviderFailure:
    if status in (401, 403):
        return ProviderFailure("PROVIDER_AUTH_FAILED", f"The {provider} provider refused the API key (HTTP {status})")
    if status == 429:
        return ProviderFailure(
            "PROVIDER_RATE_LIMITED",
            f"The {provider} provider's rate limit was reached (HTTP 429)",
            transient=True,
            retry_after=retry_after(response.headers),
        )
    # 408 (request timeout), 409 (Anthropic's lock conflict), 5xx and Anthropic's 529 overloaded:
    # the provider's own SDKs retry these too.
    transient = status in (408, 409) or status >= 500
    return ProviderFailure(
        "PROVIDER_ERROR",
        f"The {provider} provider answered HTTP {status}",
        transient=transient,
        retry_after=retry_after(response.headers) if transient else None,
    )


def _connection_failure(provider: str, error: Exception) -> ProviderFailure:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, EgressRefused):
            return ProviderFailure(
                "PROVIDER_ADDRESS_REFUSED",
                f"The {provider} provider's address is not on the public internet; Kijko does not call it",
            )
        if isinstance(cause, ResponseTooLarge):
            return ProviderFailure("PROVIDER_ERROR", f"The {provider} provider's answer was too large")
        if isinstance(cause, (httpx.TimeoutException, httpx2.TimeoutException)):
            return ProviderFailure("TIMEOUT", f"The {provider} provider did not answer in time", transient=True)
        cause = cause.__cause__ or cause.__context__
    return ProviderFailure("PROVIDER_ERROR", f"Could not reach the {provider} provider", transient=True)


def retry_after(headers: httpx2.Headers | Mapping[str, str]) -> float | None:
    """The wait a provider asked for: ``retry-after-ms`` (OpenAI, Anthropic), ``Retry-After`` in
    seconds or as an HTTP date; None if absent or unreadable."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            value = float(milliseconds) / 1000
            if value >= 0:
                return value
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(raw) if _looks_like_date(raw) else None
        if parsed is None:
            return None
        seconds = parsed.timestamp() - time.time()
    return max(seconds, 0.0) if seconds == seconds else None  # NaN is no wait


def _looks_like_date(raw: str) -> bool:
    try:
        email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return False
    return True
