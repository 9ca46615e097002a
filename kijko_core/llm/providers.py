"""Which protocol a provider speaks, where it answers and whose key pays (decision 0103).

A model's provider is the price table's ``provider`` field. ``anthropic`` speaks the Anthropic
Messages API; every other provider is taken to speak OpenAI's Chat Completions (OpenAI itself,
Gemini's OpenAI-compatible endpoint, OpenRouter, vLLM, Ollama, LM Studio…). The platform has
settings for ``openai`` and ``anthropic``; other providers have a default address when Kijko
knows one (``gemini``) and run with an organization's key only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from kijko_core.config import Settings
from kijko_core.egress import IPNetwork, host_refusal

Protocol = Literal["openai", "anthropic"]
KeySource = Literal["platform", "organization"]

ANTHROPIC = "anthropic"
OPENAI = "openai"
#: Addresses of OpenAI-compatible providers Kijko knows, used when an organization's key has no
#: base URL of its own. (``openai`` and ``anthropic`` take the platform's base URL settings.)
KNOWN_BASE_URLS: dict[str, str] = {
    "gemini": "https://generativelanguage.googleapis.com/v1beta/openai",
    "google": "https://generativelanguage.googleapis.com/v1beta/openai",
}


def protocol(provider: str) -> Protocol:
    return "anthropic" if provider == ANTHROPIC else "openai"


@dataclass(frozen=True, slots=True)
class ProviderKey:
    """A key to call ``provider`` with, at ``base_url``; never logged (``repr`` hides it)."""

    provider: str
    api_key: str = field(repr=False)
    base_url: str
    source: KeySource

    @property
    def protocol(self) -> Protocol:
        return protocol(self.provider)


def default_base_url(settings: Settings, provider: str) -> str | None:
    """Where ``provider`` answers when no organization chose an address."""
    if provider == ANTHROPIC:
        return settings.anthropic_base_url
    if provider == OPENAI:
        return settings.openai_base_url
    return KNOWN_BASE_URLS.get(provider)


def platform_key(settings: Settings, provider: str) -> ProviderKey | None:
    """The platform's key for ``provider`` (settings), or None."""
    secret = {ANTHROPIC: settings.anthropic_api_key, OPENAI: settings.openai_api_key}.get(provider)
    if secret is None or not secret.get_secret_value():
        return None
    base_url = default_base_url(settings, provider)
    assert base_url is not None
    return ProviderKey(provider, secret.get_secret_value(), base_url, "platform")


def base_url_problem(url: str, allow: Iterable[str | IPNetwork] = ()) -> str | None:
    """Why ``url`` cannot be a provider's base URL, or None: its shape, and a host the egress
    guard would refuse that is known without a DNS lookup (a literal address, a metadata name;
    decision 0138). Names are not resolved here: the answer may change before the call, and the
    guard judges the address at every call anyway. ``allow``: ``KIJKO_EGRESS_ALLOW_CIDRS``."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "an http(s) URL with a host"
    if parts.username is not None or parts.password is not None:
        return "no credentials in the URL (the key is sent as the provider expects)"
    if parts.query or parts.fragment:
        return "no query or fragment"
    refused = host_refusal(parts.hostname, allow)
    if refused is not None:
        return f"an address on the public internet, not {refused}"
    return None
