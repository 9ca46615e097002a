"""The organization LLM keys' wire models and their 404 (docs/llm-providers.md#organization-keys)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import Field

from kijko_core.errors import NotFound
from kijko_core.wire import WireInput, WireModel


class LlmKeyNotFound(NotFound):
    code = "LLM_KEY_NOT_FOUND"
    default_message = "This organization has no key for this provider"


class LlmKey(WireModel):
    """A stored key as the API shows it: never the key, only its last four characters."""

    provider: str
    last4: str
    base_url: str | None
    created_at: datetime
    updated_at: datetime
    #: Who set it last (null once that user is erased).
    updated_by: UUID | None


class LlmKeyList(WireModel):
    data: list[LlmKey]


class PutLlmKey(WireInput):
    """``PUT`` (alias ``PATCH``) ``…/llm-keys/{provider}``: partial — ``apiKey`` is required when
    the organization has no key for the provider yet; ``baseUrl: null`` removes the address."""

    api_key: str | None = Field(default=None, min_length=8, max_length=1000)
    base_url: str | None = Field(default=None, max_length=2000)
