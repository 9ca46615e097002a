"""The runtime's provider SDK clients (kijko_core/llm/clients.py, decision 0128): kept across runs
with their connections, one per (protocol, base URL, key), a rotated key never served by the
old client, closed with the runtime; against the local provider stand-in, through the egress
guard."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest

from kijko_core.db.session import tenant_session
from kijko_core.llm import keys
from kijko_core.llm.clients import ClientsClosed, ProviderClients, fingerprint
from kijko_core.llm.models import PutLlmKey
from kijko_core.llm.providers import ProviderKey
from kijko_core.llm.skill import PROVIDER_KEY, LlmSkillType
from kijko_core.plugins import EmptyConfig, SkillRun
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.llm_servers import Answer, LlmServer, provider_settings

PLATFORM_KEY = "sk-platform-0000-PLAT"
OLD_KEY = "sk-organization-1111-OLDK"
NEW_KEY = "sk-organization-2222-NEWK"
HAIKU = "claude-3-5-haiku-20241022"


@pytest.fixture
def server() -> Iterator[LlmServer]:
    with LlmServer(api_keys={PLATFORM_KEY, OLD_KEY, NEW_KEY}) as running:
        yield running


@pytest.fixture
async def configured(kijko: Kijko, make_settings: Any, server: LlmServer) -> AsyncIterator[Kijko]:
    """The test run's Kijko pointing at the stand-in, with clients of its own, closed after."""
    settings = make_settings(**provider_settings(server, PLATFORM_KEY), llm_timeout_seconds=10)
    runtime = dataclasses.replace(kijko, settings=settings)
    try:
        yield runtime
    finally:
        await runtime.llm_clients.aclose()


def skill_run(kijko: Kijko, org_id: str, model: str = HAIKU, **extras: Any) -> SkillRun:
    return SkillRun(
        organization_id=UUID(org_id),
        execution_id=uuid4(),
        prompt="Say hi",
        system_prompt=None,
        model=model,
        parameters={"max_tokens": 20},
        config=EmptyConfig(),
        input={},
        output_format="markdown",
        kijko=kijko,
        extras=extras,
    )


def sent_key(server: LlmServer) -> str:
    """The key the last request carried (``x-api-key`` or a bearer token)."""
    headers = server.requests[-1].headers
    return headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")


async def set_org_key(kijko: Kijko, account: Account, provider: str, api_key: str) -> None:
    async with tenant_session(kijko.app_db, account.identity) as db:
        await keys.put_key(db, kijko.keyring, kijko.prices, provider, PutLlmKey.model_validate({"apiKey": api_key}))


async def test_runs_share_one_client_and_its_kept_alive_connection(
    configured: Kijko, server: LlmServer, alice: Account
) -> None:
    server.default = Answer(text="hi", prompt_tokens=3, completion_tokens=1)
    for _ in range(3):
        outcome = await LlmSkillType().run(skill_run(configured, alice.org_id))
        assert outcome.output == "hi"
    assert len(configured.llm_clients) == 1
    ports = {request.client_port for request in server.requests}
    assert len(server.requests) == 3 and len(ports) == 1  # one connection, reused


async def test_a_rotated_organization_key_gets_a_new_client_and_the_old_key_is_not_used(
    configured: Kijko, server: LlmServer, alice: Account
) -> None:
    server.default = Answer(text="hi")
    await set_org_key(configured, alice, "anthropic", OLD_KEY)
    await LlmSkillType().run(skill_run(configured, alice.org_id))
    assert sent_key(server) == OLD_KEY
    old_client = configured.llm_clients.anthropic(ProviderKey("anthropic", OLD_KEY, server.anthropic_url, "platform"))

    await set_org_key(configured, alice, "anthropic", NEW_KEY)
    server.api_keys.discard(OLD_KEY)  # the provider revoked the old one
    outcome = await LlmSkillType().run(skill_run(configured, alice.org_id))
    assert outcome.key_source == "organization"
    assert sent_key(server) == NEW_KEY
    new_client = configured.llm_clients.anthropic(ProviderKey("anthropic", NEW_KEY, server.anthropic_url, "platform"))
    assert new_client is not old_client and new_client.api_key == NEW_KEY and old_client.api_key == OLD_KEY


def test_clients_are_keyed_by_protocol_address_and_key_fingerprint_and_bounded(make_settings: Any) -> None:
    clients = ProviderClients(make_settings(), size=2)
    first = ProviderKey("anthropic", "sk-one", "https://api.anthropic.com", "platform")
    assert clients.anthropic(first) is clients.anthropic(dataclasses.replace(first, source="organization"))
    assert clients.anthropic(first) is not clients.anthropic(dataclasses.replace(first, base_url="https://x.test"))
    assert len(clients) == 2
    clients.openai(ProviderKey("openai", "sk-one", "https://api.openai.com/v1", "platform"))
    assert len(clients) == 2  # the least recently used one was dropped
    assert fingerprint("sk-one") != fingerprint("sk-two") and "sk-one" not in fingerprint("sk-one")


async def test_a_stopped_runtimes_clients_are_closed_and_build_nothing(
    configured: Kijko, server: LlmServer, alice: Account
) -> None:
    await LlmSkillType().run(skill_run(configured, alice.org_id))
    http = configured.llm_clients.http
    await configured.llm_clients.aclose()
    assert http.is_closed and configured.llm_clients.closed and len(configured.llm_clients) == 0
    with pytest.raises(ClientsClosed):
        await LlmSkillType().run(skill_run(configured, alice.org_id))
    assert len(server.requests) == 1


async def test_kijko_stop_closes_the_provider_clients(make_settings: Any, server: LlmServer, alice: Account) -> None:
    runtime = await Kijko.start(make_settings(**provider_settings(server, PLATFORM_KEY)))
    try:
        await LlmSkillType().run(skill_run(runtime, alice.org_id))
        http = runtime.llm_clients.http
    finally:
        await runtime.stop()
    assert http.is_closed and runtime.llm_clients.closed


async def test_a_key_the_engine_resolved_is_used_without_a_session_of_the_run(
    configured: Kijko, server: LlmServer, alice: Account
) -> None:
    given = ProviderKey("anthropic", NEW_KEY, server.anthropic_url, "organization")
    outcome = await LlmSkillType().run(skill_run(configured, alice.org_id, **{PROVIDER_KEY: given}))
    assert outcome.key_source == "organization"
    assert sent_key(server) == NEW_KEY
    # None: the engine found no key at all.
    failed = LlmSkillType().run(skill_run(configured, alice.org_id, **{PROVIDER_KEY: None}))
    with pytest.raises(Exception, match="No API key"):
        await failed
