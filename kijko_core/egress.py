"""The egress guard: every outbound request to an address a tenant chose goes through it.

A repository URL, a provider API, later a skill's HTTP call or an outgoing webhook: Kijko
resolves the host itself, refuses addresses that are not on the public internet (loopback,
private, link-local, CGNAT, multicast, unspecified, reserved, the IPv6 forms that carry one
of those, cloud metadata services), and connects to exactly the address it checked — a
second lookup by the HTTP library would let a DNS answer that changes between the check and
the connect (rebinding) reach an internal address. The check sits in the connection layer
(an httpcore network backend), so every connection is checked: the first, a redirect's, a
retry's. ``KIJKO_EGRESS_ALLOW_CIDRS`` lets listed networks through (tests, self-hosting);
cloud metadata addresses stay refused even then.

``kijko.egress`` (made by ``Kijko.start``) is the client to use; ``kijko.http`` stays the
client for the configured, trusted services (Keycloak). git goes through ``kijko_core.git``,
which uses the same guard. docs/egress.md describes it for operators.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import anyio
import httpcore
import httpx

from kijko_core.config import Settings
from kijko_core.http import make_http_client

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``(host, port) -> addresses``: the guard's one way of looking a name up. The default asks
#: the system (getaddrinfo); tests and embedders may give their own.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

# Refused even when an allowed network covers them: nothing Kijko runs should ever talk to the
# machine's cloud identity (AWS/GCP/Azure/OpenStack/DigitalOcean/Oracle IMDS, AWS ECS task
# metadata and its IPv6 IMDS, Alibaba, Azure WireServer — a public address).
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.170.23",
        "fd00:ec2::254",
        "fd00:ec2::23",
        "100.100.100.200",
        "168.63.129.16",
    )
)

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_TEREDO = ipaddress.ip_network("2001::/32")
# Not public, but not flagged by every Python's ``ipaddress`` either.
_ALSO_REFUSED: tuple[tuple[IPNetwork, str], ...] = (
    (ipaddress.ip_network("0.0.0.0/8"), "a 'this network' address"),
    (ipaddress.ip_network("192.0.0.0/24"), "an IETF protocol address"),
    (ipaddress.ip_network("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (ipaddress.ip_network("100::/64"), "a discard-only address"),
    (ipaddress.ip_network("2001:db8::/32"), "a documentation address"),
)

DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
DEFAULT_TOTAL_TIMEOUT_SECONDS = 30.0
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class EgressRefused(httpx.ConnectError):
    """The guard refused to connect: the host resolves only to addresses Kijko may not call.

    A ``ConnectError`` so code that treats "could not connect" as "unreachable" treats a refused
    address the same way. The message names the host and why; it is for logs, not API bodies.
    """

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"egress refused for {host}: {reason}")
        self.host = host
        self.reason = reason


class ResponseTooLarge(httpx.TransportError):
    """The response body passed the egress size cap (``KIJKO_EGRESS_MAX_RESPONSE_BYTES``)."""


class EgressTimeout(httpx.TimeoutException):
    """The request with its body took longer than ``KIJKO_EGRESS_TIMEOUT_SECONDS`` in total."""


def _own_refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` itself is no public address, or None."""
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address"  # fec0::/10: deprecated, not flagged private by Python
    if ip.is_multicast:
        return "a multicast address"
    if ip in _CGNAT:
        return "a carrier-grade NAT address"
    for network, why in _ALSO_REFUSED:
        if ip.version == network.version and ip in network:
            return why
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "not a public address"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address tunnels or translates to (6to4, NAT64), if any."""
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    return None


def refusal(address: str | IPAddress, allow: Sequence[IPNetwork] = ()) -> str | None:
    """Why the guard refuses to connect to ``address`` (a readable reason), or None.

    ``allow`` are the networks let through (``KIJKO_EGRESS_ALLOW_CIDRS``); metadata addresses
    are refused regardless.
    """
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ipaddress.IPv6Address(int(ip))  # drop a %scope: it changes nothing here
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:a.b.c.d — the socket reaches a.b.c.d itself
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if any(ip.version == net.version and ip in net for net in allow):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _TEREDO:
            return "a Teredo tunnel address"
        if int(ip) >> 32 == 0 and int(ip) > 1:  # (:: and ::1 are judged below)
            return "an IPv4-compatible IPv6 address"  # ::a.b.c.d, deprecated; never public
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner, kind = embedded
            if inner in METADATA_ADDRESSES:
                return f"a cloud metadata address inside a {kind} address"
            why = _own_refusal(inner)
            if why is not None:
                return f"{why} inside a {kind} address"
            if kind == "NAT64":
                return None  # the translator reaches exactly that public IPv4 address
    return _own_refusal(ip)


#: Names of cloud metadata services (GCP, AWS, OpenStack/Oracle's ``metadata``): refused for a
#: URL saved to be called later, like the addresses above.
METADATA_HOSTNAMES: frozenset[str] = frozenset(
    (
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    )
)
# The legacy spellings of an IPv4 address the system's resolver still reads as one (2852039166,
# 0xa9fea9fe, 0251.0376.0251.0376, 169.254.43518): numbers, hex digits, x and dots only.
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$")


def host_refusal(host: str, allow: Iterable[str | IPNetwork] = ()) -> str | None:
    """Why a URL with this host, saved now and called later, is refused — without looking the
    name up (a DNS answer may change before the call; the guard checks every connection then).

    Refused: a literal address the guard refuses (also in the legacy IPv4 spellings), a cloud
    metadata name, and ``localhost`` (always the loopback, RFC 6761) unless ``allow`` lets the
    loopback through. Any other name passes here.
    """
    guard = EgressGuard(allow)
    name = host.strip("[]").rstrip(".").lower()
    if name in METADATA_HOSTNAMES:
        return "a cloud metadata host"
    if name == "localhost" or name.endswith(".localhost"):
        return guard.refusal("127.0.0.1")
    try:
        return guard.refusal(ipaddress.ip_address(name))
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(name):
        try:
            return guard.refusal(ipaddress.IPv4Address(socket.inet_aton(name)))
        except OSError:
            return "not an IP address"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """The system's answer for ``host`` (getaddrinfo, both families)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class EgressGuard:
    """Which addresses may be called, and the one way names are looked up."""

    def __init__(self, allow: Iterable[str | IPNetwork] = (), resolver: Resolver | None = None) -> None:
        self.allow: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) if isinstance(n, str) else n for n in allow
        )
        self.resolver: Resolver = resolver or system_resolver

    @classmethod
    def from_settings(cls, settings: Settings, resolver: Resolver | None = None) -> EgressGuard:
        return cls(settings.egress_allow_cidrs, resolver)

    def refusal(self, address: str | IPAddress) -> str | None:
        return refusal(address, self.allow)

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of ``host`` that may be called, in the resolver's order.

        Addresses that may not be called are dropped; if none is left, ``EgressRefused``.
        Callers connect to what this returns and never look the name up again.
        """
        name = host.strip("[]")
        try:
            literal: IPAddress | None = ipaddress.ip_address(name)
        except ValueError:
            literal = None
        if literal is not None:
            why = self.refusal(literal)
            if why is not None:
                raise EgressRefused(host, why)
            return [literal]
        answers = await self.resolver(name, port)
        allowed: list[IPAddress] = []
        reasons: list[str] = []
        for answer in answers:
            why = self.refusal(answer)
            if why is not None:
                reasons.append(why)
                continue
            ip = ipaddress.ip_address(answer.split("%")[0])
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            if ip not in allowed:
                allowed.append(ip)
        if not allowed:
            raise EgressRefused(host, "; ".join(dict.fromkeys(reasons)) or "no address")
        return allowed


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that resolves through the guard and connects to a checked
    address. TLS still names the host (httpcore passes the URL's host as SNI and checks the
    certificate against it), and the Host header is the URL's: only the socket is pinned."""

    def __init__(self, guard: EgressGuard, inner: httpcore.AsyncNetworkBackend | None = None):
        self._guard = guard
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 — httpcore's backend interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = await self._guard.resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"looking up {host} timed out") from None
        except OSError as error:  # socket.gaierror: the name does not resolve
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from None
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error  # the next checked address, like a browser would
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 — httpcore's backend interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused(path, "unix sockets are never a tenant's address")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


_HTTPCORE_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    # Most specific first: the first match wins (the same mapping httpx's own transport uses).
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except httpcore.ProxyError as error:  # no proxies here, but never let one through raw
        raise httpx.ProxyError(str(error)) from error
    except Exception as error:
        for source, target in _HTTPCORE_ERRORS:
            if isinstance(error, source):
                raise target(str(error)) from error
        raise


class _CappedBody(httpx.AsyncByteStream):
    """The response body, cut off at the size cap and the total deadline; a gzip/deflate body
    is decoded here (and counted decoded) so a small compressed bomb cannot expand past it."""

    def __init__(
        self,
        stream: AsyncIterator[bytes] | Any,
        *,
        limit: int,
        deadline: float,
        encoding: str | None,
    ) -> None:
        self._stream = stream
        self._limit = limit
        self._deadline = deadline
        # wbits 32+: a zlib or gzip header, detected from the body.
        self._decoder = zlib.decompressobj(zlib.MAX_WBITS | 32) if encoding else None
        self._seen = 0

    def _count(self, chunk: bytes) -> bytes:
        self._seen += len(chunk)
        if self._seen > self._limit:
            raise ResponseTooLarge(f"response body larger than {self._limit} bytes")
        return chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        iterator = self._stream.__aiter__()
        while True:
            remaining = self._deadline - anyio.current_time()
            try:
                with anyio.fail_after(max(remaining, 0)), _httpx_errors():
                    chunk = await iterator.__anext__()
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise EgressTimeout("the response took longer than the egress time limit") from None
            if self._decoder is None:
                yield self._count(chunk)
                continue
            try:
                # max_length bounds what one chunk may expand to before we count it.
                out = self._decoder.decompress(chunk, self._limit - self._seen + 1)
            except zlib.error as error:
                raise httpx.DecodingError(f"bad compressed body: {error}") from None
            yield self._count(out)
            if self._decoder.unconsumed_tail:
                raise ResponseTooLarge(f"response body larger than {self._limit} bytes")
        if self._decoder is not None:
            yield self._count(self._decoder.flush())

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose every connection goes through the egress guard, with a total
    time limit per request (body included) and a response size cap."""

    def __init__(
        self,
        guard: EgressGuard,
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        total_timeout: float = DEFAULT_TOTAL_TIMEOUT_SECONDS,
        ssl_context: ssl.SSLContext | None = None,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> None:
        self.guard = guard
        self.max_response_bytes = max_response_bytes
        self.total_timeout = total_timeout
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=GuardedNetworkBackend(guard),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme not in ("http", "https"):
            raise EgressRefused(request.url.host, f"the {request.url.scheme} scheme")
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        deadline = anyio.current_time() + self.total_timeout
        try:
            with anyio.fail_after(self.total_timeout), _httpx_errors():
                response = await self._pool.handle_async_request(core_request)
        except TimeoutError:
            raise EgressTimeout("the request took longer than the egress time limit") from None
        headers = httpx.Headers(response.headers)
        encoding = headers.get("content-encoding", "").strip().lower() or None
        if encoding == "identity":
            encoding = None
        declared = headers.get("content-length", "")
        too_large = declared.isdigit() and int(declared) > self.max_response_bytes
        if too_large or encoding not in (None, "gzip", "x-gzip", "deflate"):
            await response.aclose()
            if too_large:
                raise ResponseTooLarge(f"response body larger than {self.max_response_bytes} bytes")
            raise httpx.DecodingError(f"unsupported content encoding {encoding!r}")
        if encoding is not None:
            # Decoded below, under the cap; httpx must not decode it a second time.
            del headers["content-encoding"]
            headers.pop("content-length", None)
        return httpx.Response(
            status_code=response.status,
            headers=headers,
            stream=_CappedBody(
                response.stream,
                limit=self.max_response_bytes,
                deadline=deadline,
                encoding=encoding,
            ),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def make_egress_client(settings: Settings, guard: EgressGuard | None = None) -> httpx.AsyncClient:
    """The client for tenant-chosen addresses (``kijko.egress``): ``kijko.http``'s timeouts,
    user agent and no-redirects default, on the guarded transport. A caller that turns on
    ``follow_redirects`` is still safe: each hop is a new connection through the guard."""
    transport = GuardedTransport(
        guard or EgressGuard.from_settings(settings),
        max_response_bytes=settings.egress_max_response_bytes,
        total_timeout=settings.egress_timeout_seconds,
    )
    client = make_http_client(settings, transport)
    # Bodies are counted decoded; ask for them plain (gzip/deflate are still decoded safely).
    client.headers["Accept-Encoding"] = "identity"
    return client
