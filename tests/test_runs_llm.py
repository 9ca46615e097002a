"""Executions end to end through the built-in ``llm`` skill type: the API, the worker, the real
provider SDKs and the egress guard against the local provider stand-ins (tests/llm_servers.py):
output, tokens and the exact cost recorded with the usage row; a cancel hangs up the provider
request; a provider refusal is the execution's error code."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from kijko_core.db.session import system_session
from kijko_core.runtime import Kijko
from kijko_server.app import create_app
from tests.automation import create_skill
from tests.conftest import Account
from tests.ingestion_kit import running_worker, wait_for
from tests.llm_servers import Answer, LlmServer, provider_settings
from tests.runs_kit import cancel_leftovers, execution, usage

API = "/api/v1"
KEY = "sk-platform-runs-0000"
MODEL = "claude-3-5-haiku-20241022"  # 0.80 / 4.00 usd per million tokens


@pytest.fixture
def server() -> Iterator[LlmServer]:
    with LlmServer(api_keys={KEY}) as running:
        yield running


@pytest.fixture
async def provider_kijko(kijko: Kijko, make_settings: Any, server: LlmServer) -> AsyncIterator[Kijko]:
    """The test run's Kijko with its provider settings pointing at the stand-in (same pools)."""
    runtime = dataclasses.replace(
        kijko,
        settings=make_settings(**provider_settings(server, KEY), llm_max_retries=0),
    )
    yield runtime
    await cancel_leftovers(runtime)


@pytest.fixture
async def provider_client(provider_kijko: Kijko) -> AsyncIterator[Any]:
    application = create_app(kijko=provider_kijko)
    async with application.test_app():
        yield application.test_client()


async def llm_skill(client: Any, account: Account) -> dict[str, Any]:
    return await create_skill(
        client,
        account,
        model=MODEL,
        prompt_template="Write one line about {{topic}}.",
        system_prompt="You are terse.",
        parameters={"temperature": 0.2, "max_tokens": 50},
    )


async def test_an_execution_runs_on_the_provider_and_records_tokens_cost_and_usage(
    provider_kijko: Kijko, provider_client: Any, server: LlmServer, alice: Account
) -> None:
    skill = await llm_skill(provider_client, alice)
    server.queue(Answer(text="Tides follow the moon.", prompt_tokens=1000, completion_tokens=500))
    async with running_worker(provider_kijko):
        response = await provider_client.post(
            f"{API}/skills/{skill['id']}/execute",
            json={"input": {"topic": "tides"}},
            query_string={"wait": 20},
            headers=alice.headers,
        )
    body = await response.get_json()
    assert response.status_code == 200, body
    assert (body["status"], body["output"], body["tokensUsed"]) == ("completed", "Tides follow the moon.", 1500)
    row = await execution(provider_kijko, body["executionId"])
    assert row["cost"] == Decimal("0.0028") and row["currency"] == "usd" and row["key_source"] == "platform"
    [used] = await usage(provider_kijko, alice.org_id)
    assert (used["provider"], used["model"], used["cost"], used["prompt_tokens"]) == (
        "anthropic",
        MODEL,
        Decimal("0.0028"),
        1000,
    )
    [request] = server.requests
    assert request.body["messages"][0]["content"] == "Write one line about tides."
    assert request.body["system"] == "You are terse."


async def test_cancelling_a_running_execution_hangs_up_the_provider_call(
    provider_kijko: Kijko, provider_client: Any, server: LlmServer, alice: Account
) -> None:
    skill = await llm_skill(provider_client, alice)
    server.queue(Answer(delay=60))
    async with running_worker(provider_kijko):
        started = await provider_client.post(
            f"{API}/skills/{skill['id']}/execute", json={"input": {"topic": "tides"}}, headers=alice.headers
        )
        execution_id = (await started.get_json())["executionId"]
        await wait_for(lambda: _provider_called(server), within=30)
        cancelled = await provider_client.post(f"{API}/executions/{execution_id}/cancel", headers=alice.headers)
        assert cancelled.status_code == 200
        assert (await execution(provider_kijko, execution_id))["status"] == "cancelled"
        await wait_for(lambda: _aborted(server), within=30)  # the worker hung up (well before 60 s)
    row = await execution(provider_kijko, execution_id)
    assert (row["status"], row["output"]) == ("cancelled", None)


async def test_a_provider_refusal_is_the_executions_error_code(
    provider_kijko: Kijko, provider_client: Any, server: LlmServer, alice: Account
) -> None:
    skill = await llm_skill(provider_client, alice)
    server.queue(Answer(status=401))
    async with running_worker(provider_kijko):
        response = await provider_client.post(
            f"{API}/skills/{skill['id']}/execute",
            json={"input": {"topic": "tides"}},
            query_string={"wait": 20},
            headers=alice.headers,
        )
    body = await response.get_json()
    assert (body["status"], body["errorCode"]) == ("failed", "PROVIDER_AUTH_FAILED")
    assert KEY not in body["error"]
    row = await execution(provider_kijko, UUID(body["executionId"]))
    assert row["error_code"] == "PROVIDER_AUTH_FAILED" and await usage(provider_kijko, alice.org_id) == []


async def _provider_called(server: LlmServer) -> bool:
    return bool(server.requests)


async def _aborted(server: LlmServer) -> bool:
    return server.aborted >= 1


async def test_an_inline_test_past_the_test_timeout_fails_with_timeout_and_hangs_up(
    kijko: Kijko, make_settings: Any, server: LlmServer, alice: Account
) -> None:
    """``KIJKO_EXECUTION_TEST_TIMEOUT_SECONDS`` bounds ``POST /skills/test``: a provider slower
    than it ends the test ``failed`` with ``TIMEOUT`` (200, as a test's outcome), the provider
    request is abandoned, and nothing is recorded as an execution."""
    settings = make_settings(**provider_settings(server, KEY), llm_max_retries=0, execution_test_timeout_seconds=0.5)
    application = create_app(kijko=dataclasses.replace(kijko, settings=settings))
    server.default = Answer(text="Too late.", delay=30)
    async with application.test_app():
        client = application.test_client()
        response = await client.post(
            f"{API}/skills/test",
            json={"promptTemplate": "Write one line about {{topic}}.", "model": MODEL, "input": {"topic": "tides"}},
            headers=alice.headers,
        )
    body = await response.get_json()
    assert response.status_code == 200, body
    assert (body["status"], body["errorCode"]) == ("failed", "TIMEOUT")
    assert body["executionId"].startswith("test-") and body.get("output") is None
    assert server.wait_for(lambda s: s.aborted >= 1)  # the provider call was hung up on
    assert len(server.requests) == 1  # a timeout is not retried inside a test
    async with system_session(kijko.system_db) as db:
        count = await db.fetchval(
            "SELECT count(*) FROM kijko.skill_executions WHERE organization_id = $1", UUID(alice.org_id)
        )
    assert count == 0
