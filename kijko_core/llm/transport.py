"""The provider SDKs' HTTP client, on the egress guard.

The official SDKs (``openai`` ≥ 3, ``anthropic`` ≥ 2) are built on ``httpx2`` and refuse an
``httpx`` client; the egress guard (kijko_core/egress.py) is an ``httpx`` transport. This bridge
is an ``httpx2`` transport that hands each request to a :class:`~kijko_core.egress.GuardedTransport`
and the answer back, translating errors class by class (a refused address stays an
``EgressRefused`` in the cause chain). Every connection is the guard's: the first, a retry's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import httpx
import httpx2

from kijko_core import __version__
from kijko_core.config import Settings
from kijko_core.egress import EgressGuard, GuardedTransport

#: The runtime's one pool serves every run at once: no cap on connections (a run never waits
#: for another's), and as many kept alive as a worker runs jobs at once (KIJKO_WORKER_CONCURRENCY ≤ 256).
PROVIDER_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=256)


@contextmanager
def _as_httpx2() -> Iterator[None]:
    try:
        yield
    except httpx.HTTPError as error:
        # The nearest httpx2 class of the same name (ReadTimeout, ConnectError…): the SDKs tell
        # a timeout from a refused connection by these classes.
        for cls in type(error).__mro__:
            target = getattr(httpx2, cls.__name__, None)
            if isinstance(target, type) and issubclass(target, httpx2.TransportError):
                raise target(str(error)) from error
        raise httpx2.TransportError(str(error)) from error


class _Body(httpx2.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        iterator = self._stream.__aiter__()
        while True:
            with _as_httpx2():
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    return
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class GuardedBridge(httpx2.AsyncBaseTransport):
    """An ``httpx2`` transport over an ``httpx`` :class:`GuardedTransport`."""

    def __init__(self, inner: GuardedTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()  # a JSON body of a few KiB at most
        outgoing = httpx.Request(
            request.method,
            str(request.url),
            headers=request.headers.raw,
            content=body,
            extensions=dict(request.extensions),
        )
        with _as_httpx2():
            response = await self.inner.handle_async_request(outgoing)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx2.Response(
            response.status_code,
            headers=response.headers.raw,
            stream=_Body(response.stream),
            extensions=dict(response.extensions),
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def provider_http(settings: Settings, guard: EgressGuard | None = None) -> httpx2.AsyncClient:
    """The ``httpx2`` client of provider calls: every connection through the egress guard (an
    organization's base URL is user-supplied; the platform's takes the same path), the answer
    size-capped, a request bounded by ``KIJKO_LLM_TIMEOUT_SECONDS`` body included. One per
    runtime (kijko_core/llm/clients.py): connections are kept alive, each new one checked."""
    transport = GuardedBridge(
        GuardedTransport(
            guard or EgressGuard.from_settings(settings),
            max_response_bytes=settings.egress_max_response_bytes,
            total_timeout=settings.llm_timeout_seconds,
            limits=PROVIDER_LIMITS,
        )
    )
    timeout = settings.llm_timeout_seconds
    return httpx2.AsyncClient(
        transport=transport,
        timeout=httpx2.Timeout(timeout, connect=min(timeout, 5.0)),
        follow_redirects=False,
        # Bodies are counted decoded by the guard; ask for them plain.
        headers={"User-Agent": f"kijko/{__version__}", "Accept-Encoding": "identity"},
        trust_env=False,
    )
