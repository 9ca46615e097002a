"""The provider SDK clients of one runtime, shared by its runs (decision 0128).

Building an ``AsyncAnthropic``/``AsyncOpenAI`` client, its ``httpx2`` client and the egress
guard's connection pool for every run cost more CPU than a short provider answer, and threw the
connection away. :class:`ProviderClients` keeps them instead:

- one ``httpx2`` client over one :class:`~kijko_core.egress.GuardedTransport`: connections are
  kept alive and reused, and every *new* connection still goes through the guard (the address
  is resolved and checked when it is opened, never after);
- one SDK client per (protocol, base URL, SHA-256 of the key): a rotated or removed key is a
  different entry, never the old client; the key itself is not part of the cache's key;
- at most :data:`MAX_CLIENTS` SDK clients, the least recently used dropped first (they own
  nothing: the shared ``httpx2`` client holds the connections);
- :meth:`aclose` (``Kijko.stop``) closes the connections; a closed cache builds nothing more.

A cancelled run still aborts its request: cancelling the task closes that request's connection.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import httpx2

from kijko_core.config import Settings
from kijko_core.egress import EgressGuard
from kijko_core.llm.providers import ProviderKey
from kijko_core.llm.transport import provider_http

if TYPE_CHECKING:
    import anthropic
    import openai

#: How many SDK clients are kept (distinct provider addresses and keys in use at once).
MAX_CLIENTS = 256


class ClientsClosed(RuntimeError):
    """The runtime stopped: no provider call starts any more."""


def fingerprint(api_key: str) -> str:
    """What identifies a key in the cache (never the key itself)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


class ProviderClients:
    """SDK clients by (protocol, base URL, key fingerprint) over one guarded ``httpx2`` client."""

    def __init__(self, settings: Settings, guard: EgressGuard | None = None, *, size: int = MAX_CLIENTS) -> None:
        self._settings = settings
        self._guard = guard
        self._size = size
        self._http: httpx2.AsyncClient | None = None
        self._clients: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._closed = False

    @property
    def http(self) -> httpx2.AsyncClient:
        if self._closed:
            raise ClientsClosed("the runtime stopped")
        if self._http is None:
            self._http = provider_http(self._settings, self._guard)
        return self._http

    def anthropic(self, key: ProviderKey) -> anthropic.AsyncAnthropic:
        import anthropic

        return self._client(key, "anthropic", anthropic.AsyncAnthropic)  # type: ignore[no-any-return]

    def openai(self, key: ProviderKey) -> openai.AsyncOpenAI:
        import openai

        return self._client(key, "openai", openai.AsyncOpenAI)  # type: ignore[no-any-return]

    def _client(self, key: ProviderKey, protocol: str, make: Any) -> Any:
        ident = (protocol, key.base_url, fingerprint(key.api_key))
        client = self._clients.get(ident)
        if client is not None:
            self._clients.move_to_end(ident)
            return client
        # SDK retries off (decision 0105): kijko_core.llm.retry decides. The time limit is
        # given per request.
        client = make(api_key=key.api_key, base_url=key.base_url, http_client=self.http, max_retries=0)
        self._clients[ident] = client
        while len(self._clients) > self._size:
            self._clients.popitem(last=False)  # owns no connection: the shared client does
        return client

    def __len__(self) -> int:
        return len(self._clients)

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Close the connections; nothing is built afterwards (:class:`ClientsClosed`)."""
        self._closed = True
        self._clients.clear()
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()
