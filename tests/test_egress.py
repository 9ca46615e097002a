"""The egress guard (kijko_core/egress.py): which addresses are refused, that the connection
goes to the address that was checked, redirects, and the size and time limits. Against real
local HTTP servers; names are looked up through the guard's resolver interface."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from kijko_core.egress import (
    EgressGuard,
    EgressRefused,
    EgressTimeout,
    GuardedTransport,
    ResponseTooLarge,
    host_refusal,
    make_egress_client,
    refusal,
)
from kijko_core.runtime import Kijko
from tests.egress_server import EgressServer, tls_pair

LOCAL = ["127.0.0.0/8"]

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:7f00:1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.169.254", "metadata"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fd00:ec2::254", "metadata"),
    ("168.63.129.16", "metadata"),
    ("100.100.100.200", "metadata"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("0.1.2.3", "'this network'"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "private"),  # reserved 240/4; Python counts it private
    ("255.255.255.255", "private"),
    ("2002:7f00:1::1", "loopback address inside a 6to4"),
    ("2002:a00:1::1", "private address inside a 6to4"),
    ("64:ff9b::a00:1", "private address inside a NAT64"),
    ("64:ff9b::a9fe:a9fe", "metadata"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("::127.0.0.1", "IPv4-compatible"),
    ("192.0.0.170", "IETF protocol"),
    ("198.18.0.1", "private"),
    ("2001:db8::1", "documentation"),
    ("fec0::1", "site-local"),  # deprecated (RFC 3879) but still routed inside some networks
    ("fe80::1%eth0", "link-local"),  # a zone id changes nothing
]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_refused_addresses(address: str, why: str) -> None:
    reason = refusal(address)
    assert reason is not None and why in reason


@pytest.mark.parametrize(
    "address",
    [
        "93.184.215.14",
        "140.82.112.3",
        "2606:4700::6810:84e5",
        "64:ff9b::8c52:7003",
        "2002:8c52:7003::1",
        "::ffff:140.82.112.3",
    ],
)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(address) is None


def test_the_allow_setting_lets_a_listed_network_through_but_never_metadata() -> None:
    guard = EgressGuard(["127.0.0.0/8", "10.0.0.0/8", "169.254.0.0/16", "fd00::/8"])
    assert guard.refusal("127.0.0.1") is None
    assert guard.refusal("::ffff:127.0.0.1") is None  # the same socket address
    assert guard.refusal("10.9.8.7") is None
    assert guard.refusal("::1") == "a loopback address"  # not listed
    assert guard.refusal("192.168.0.1") == "a private address"
    assert guard.refusal("169.254.169.254") == "a cloud metadata address"
    assert guard.refusal("fd00:ec2::254") == "a cloud metadata address"


def test_a_saved_hosts_refusal_needs_no_lookup() -> None:
    """``host_refusal`` (a URL saved to be called later, decision 0138): literal addresses in
    every spelling, metadata names and localhost; any other name passes without DNS."""
    assert host_refusal("169.254.169.254") == "a cloud metadata address"
    assert host_refusal("2852039166") == "a cloud metadata address"  # one number
    assert host_refusal("0xa9.0xfe.0xa9.0xfe") == "a cloud metadata address"
    assert host_refusal("0251.0376.0251.0376") == "a cloud metadata address"  # octal
    assert host_refusal("[::ffff:10.0.0.1]") == "a private address"
    assert host_refusal("Metadata.Google.Internal.") == "a cloud metadata host"
    assert host_refusal("localhost") == "a loopback address"
    assert host_refusal("api.localhost") == "a loopback address"
    assert host_refusal("127.1") == "a loopback address"
    for name in ("llm.example.com", "8.8.8.8", "2001:4860::8888", "metadata.example.com", "1e100.net"):
        assert host_refusal(name) is None, name
    allowed = ["127.0.0.0/8", "169.254.0.0/16"]
    assert host_refusal("localhost", allowed) is None and host_refusal("127.0.0.1", allowed) is None
    assert host_refusal("169.254.169.254", allowed) == "a cloud metadata address"  # never allowed
    assert host_refusal("metadata", allowed) == "a cloud metadata host"


def fixed(answers: dict[str, list[str]]) -> Any:
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in answers:
            raise OSError(f"no such name {host}")
        return answers[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


async def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    guard = EgressGuard(resolver=fixed({"intranet.example": ["10.0.0.5", "fd00::5"]}))
    with pytest.raises(EgressRefused, match="private"):
        await guard.resolve("intranet.example", 443)


async def test_only_the_permitted_answers_of_a_mixed_name_are_used() -> None:
    guard = EgressGuard(resolver=fixed({"mixed.example": ["10.0.0.5", "140.82.112.3", "::1"]}))
    assert [str(a) for a in await guard.resolve("mixed.example", 443)] == ["140.82.112.3"]


async def test_localhost_through_the_system_resolver_is_refused() -> None:
    with pytest.raises(EgressRefused, match="loopback"):
        await EgressGuard().resolve("localhost", 80)


@pytest.fixture(scope="module")
def server() -> Iterator[EgressServer]:
    running = EgressServer().start()
    yield running
    running.stop()


def client_for(guard: EgressGuard, **limits: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=GuardedTransport(guard, **limits), trust_env=False)


@pytest.fixture
async def local() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(EgressGuard(LOCAL)) as client:
        yield client


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/ok",
        "http://[::1]:{port}/ok",
        "http://[::ffff:127.0.0.1]:{port}/ok",
        "http://0.0.0.0:{port}/ok",
        "http://10.0.0.1:{port}/ok",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:{port}/ok",
    ],
)
async def test_the_transport_refuses_before_connecting(server: EgressServer, url: str) -> None:
    before = len(server.hosts_seen)
    async with client_for(EgressGuard()) as client:
        with pytest.raises(EgressRefused) as caught:
            await client.get(url.format(port=server.port))
    assert isinstance(caught.value, httpx.ConnectError)  # callers see "could not connect"
    assert caught.value.request.url.path in ("/ok", "/latest/meta-data/")
    assert len(server.hosts_seen) == before  # nothing reached the server


async def test_an_allowed_network_gets_through(local: httpx.AsyncClient, server: EgressServer) -> None:
    response = await local.get(f"{server.url}/ok")
    assert response.status_code == 200
    assert response.text == f"hello from 127.0.0.1:{server.port}"


async def test_the_connection_goes_to_the_checked_address_and_keeps_the_name(
    server: EgressServer,
) -> None:
    # "pinned.test" exists only in the guard's resolver: the request can only succeed if the
    # socket went to the address the guard checked (no second lookup), and the server still
    # sees the name in Host.
    resolver = fixed({"pinned.test": ["127.0.0.1"]})
    async with client_for(EgressGuard(LOCAL, resolver)) as client:
        response = await client.get(f"http://pinned.test:{server.port}/ok")
    assert response.text == f"hello from pinned.test:{server.port}"
    assert resolver.calls == ["pinned.test"]


async def test_tls_names_the_host_while_the_socket_goes_to_the_checked_address(
    tmp_path: Any,
) -> None:
    server_tls, client_tls = tls_pair("pinned.test", tmp_path)
    server = EgressServer(server_tls).start()
    try:
        resolver = fixed({"pinned.test": ["127.0.0.1"]})
        guard = EgressGuard(LOCAL, resolver)
        async with httpx.AsyncClient(transport=GuardedTransport(guard, ssl_context=client_tls)) as client:
            # SNI and the certificate check use the name, not the pinned address …
            response = await client.get(f"https://pinned.test:{server.port}/ok")
            assert response.text == f"hello from pinned.test:{server.port}"
            # … and verification is on: the address itself is not the certificate's name.
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|match"):
                await client.get(f"https://127.0.0.1:{server.port}/ok")
        assert resolver.calls == ["pinned.test"]
    finally:
        server.stop()


async def test_a_rebinding_name_is_checked_on_every_new_connection(server: EgressServer) -> None:
    answers = iter([["127.0.0.1"], ["10.0.0.7"]])
    calls: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    guard = EgressGuard(LOCAL, rebinding)
    # Two clients, so the second request cannot reuse the first one's connection.
    async with client_for(guard) as first:
        assert (await first.get(f"http://rebind.test:{server.port}/ok")).status_code == 200
    async with client_for(guard) as second:
        with pytest.raises(EgressRefused, match="private"):
            await second.get(f"http://rebind.test:{server.port}/ok")
    assert calls == ["rebind.test", "rebind.test"]


@pytest.mark.parametrize(
    "target",
    ["http://10.0.0.1/", "http://169.254.169.254/latest/", "http://[::1]:{port}/ok", "http://internal.test:{port}/ok"],
)
async def test_a_redirect_to_a_refused_address_is_refused(server: EgressServer, target: str) -> None:
    resolver = fixed({"internal.test": ["192.168.7.7"]})
    async with client_for(EgressGuard(LOCAL, resolver)) as client:
        location = target.format(port=server.port)
        first = await client.get(f"{server.url}/redirect", params={"to": location})
        assert first.status_code == 302  # not followed unless asked
        with pytest.raises(EgressRefused):
            await client.get(f"{server.url}/redirect", params={"to": location}, follow_redirects=True)


async def test_a_redirect_to_an_allowed_address_is_followed(local: httpx.AsyncClient, server: EgressServer) -> None:
    response = await local.get(f"{server.url}/redirect", params={"to": f"{server.url}/ok"}, follow_redirects=True)
    assert response.status_code == 200 and response.text.startswith("hello")


@pytest.mark.parametrize("path", ["/big", "/undeclared", "/bomb"])
async def test_the_response_size_is_capped(server: EgressServer, path: str) -> None:
    async with client_for(EgressGuard(LOCAL), max_response_bytes=1024 * 1024) as client:
        with pytest.raises(ResponseTooLarge):
            await client.get(f"{server.url}{path}")


async def test_a_compressed_body_within_the_cap_is_decoded(server: EgressServer) -> None:
    async with client_for(EgressGuard(LOCAL), max_response_bytes=1024) as client:
        response = await client.get(f"{server.url}/gzip")
    assert response.content == b"small and fine"


async def test_a_slow_body_hits_the_total_time_limit(server: EgressServer) -> None:
    async with client_for(EgressGuard(LOCAL), total_timeout=1.0) as client:
        with pytest.raises(EgressTimeout):
            await client.get(f"{server.url}/slow")


async def test_the_runtime_egress_client_is_guarded(kijko: Kijko, server: EgressServer) -> None:
    assert kijko.egress is not kijko.http
    assert not kijko.egress.follow_redirects
    with pytest.raises(EgressRefused):
        await kijko.egress.get(f"{server.url}/ok")


async def test_the_allow_setting_reaches_the_client(make_settings: Any, server: EgressServer) -> None:
    settings = make_settings(egress_allow_cidrs="127.0.0.0/8", egress_max_response_bytes=4096)
    async with make_egress_client(settings) as client:
        assert (await client.get(f"{server.url}/ok")).status_code == 200
        with pytest.raises(ResponseTooLarge):
            await client.get(f"{server.url}/big")
