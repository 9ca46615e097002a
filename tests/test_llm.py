"""The built-in ``llm`` skill type against local stand-ins of the providers (tests/llm_servers.py),
through the real SDKs and the egress guard: exact costs from the price table, the retry policy,
the failure codes, cancellation, whose key pays, and Langfuse traces on the wire."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID, uuid4

import pytest

from kijko_core.db.session import tenant_session
from kijko_core.llm import keys, tracing
from kijko_core.llm.models import PutLlmKey
from kijko_core.llm.skill import LlmSkillType
from kijko_core.plugins import EmptyConfig, SkillRun, SkillRunFailed
from kijko_core.plugins.registry import skill_type
from kijko_core.prices import ModelNotPriced
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.llm_servers import Answer, LlmServer, provider_settings
from tests.net import HttpStandIn, wait_unless_hung_up

PLATFORM_KEY = "sk-platform-0000-PLAT"
ORG_KEY = "sk-organization-1111-ORGK"


@pytest.fixture
def server() -> Iterator[LlmServer]:
    with LlmServer(api_keys={PLATFORM_KEY, ORG_KEY}) as running:
        yield running


def runtime(kijko: Kijko, make_settings: Any, server: LlmServer, **overrides: Any) -> Kijko:
    """The test run's Kijko with the provider settings pointing at the stand-in (the same pools;
    only the settings differ)."""
    values: dict[str, Any] = {**provider_settings(server, PLATFORM_KEY), "llm_timeout_seconds": 10}
    values.update(overrides)
    return dataclasses.replace(kijko, settings=make_settings(**values))


def skill_run(kijko: Kijko, org_id: str, model: str = "gpt-4o", **overrides: Any) -> SkillRun:
    values: dict[str, Any] = {
        "organization_id": UUID(org_id),
        "execution_id": uuid4(),
        "prompt": "Summarise the repository",
        "system_prompt": "You are terse.",
        "model": model,
        "parameters": {"temperature": 0.3, "max_tokens": 200, "stop_sequences": ["END"], "top_k": 5},
        "config": EmptyConfig(),
        "input": {},
        "output_format": "markdown",
        "kijko": kijko,
    }
    values.update(overrides)
    return SkillRun(**values)


async def run_llm(run: SkillRun) -> Any:
    return await LlmSkillType().run(run)


async def failure_of(run: SkillRun) -> SkillRunFailed:
    with pytest.raises(SkillRunFailed) as raised:
        await run_llm(run)
    return raised.value


# --- the type ------------------------------------------------------------------------------------


def test_llm_is_the_installed_skill_type_for_llm() -> None:
    installed = skill_type("llm")
    assert isinstance(installed, LlmSkillType)
    assert installed.uses_model and installed.version


def test_saving_a_skill_with_an_unpriced_model_is_refused(kijko: Kijko) -> None:
    LlmSkillType().check(EmptyConfig(), model="gpt-4o", kijko=kijko)
    with pytest.raises(ModelNotPriced) as raised:
        LlmSkillType().check(EmptyConfig(), model="gpt-unknown", kijko=kijko)
    assert raised.value.field == "model"


# --- success and cost ----------------------------------------------------------------------------


async def test_openai_run_returns_text_usage_and_the_exact_cost(
    kijko: Kijko, make_settings: Any, server: LlmServer, alice: Account
) -> None:
    server.queue(Answer(text="A short summary", prompt_tokens=1234, completion_tokens=567))
    outcome = await run_llm(skill_run(runtime(kijko, make_settings, server), alice.org_id))
    # gpt-4o: 2.50 / 10.00 per million → (1234 × 2.50 + 567 × 10.00) / 10⁶
    assert outcome.cost == Decimal("0.008755") and isinstance(outcome.cost, Decimal)
    assert (outcome.output, outcome.prompt_tokens, outcome.completion_tokens) == ("A short summary", 1234, 567)
    assert (outcome.currency, outcome.provider, outcome.key_source, outcome.model) == (
        "usd",
        "openai",
        "platform",
        "gpt-4o",
    )
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {PLATFORM_KEY}"
    assert request.body["model"] == "gpt-4o"
    assert request.body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Summarise the repository"},
    ]
    assert (request.body["temperature"], request.body["max_tokens"], request.body["stop"]) == (0.3, 200, ["END"])
    assert "top_k" not in request.body  # Anthropic only


async def test_anthropic_run_uses_the_messages_api_and_prices_its_usage(
    kijko: Kijko, make_settings: Any, server: LlmServer, alice: Account
) -> None:
    server.queue(Answer(text="Bonjour", prompt_tokens=1000, completion_tokens=250))
    outcome = await run_llm(skill_run(runtime(kijko, make_settings, server), alice.org_id, "claude-3-5-haiku-20241022"))
    # 0.80 / 4.00 per million → (1000 × 0.80 + 250 × 4.00) / 10⁶
    assert outcome.cost == Decimal("0.0018")
    assert (outcome.output, outcome.provider, outcome.key_source) == ("Bonjour", "anthropic", "platform")
    [request] = server.requests
    assert request.path == "/v1/messages"
    assert request.headers["anthropic-version"]
    assert request.body["system"] == "You are terse."
    assert request.body["messages"] == [{"role": "user", "content": "Summarise the repository"}]
    assert (request.body["max_tokens"], request.body["top_k"], request.body["stop_sequences"]) == (200, 5, ["END"])


# --- retries ---------------------------------------------------------------------------------------


async def test_a_429_with_retry_after_is_retried_after_the_wait_asked_for(
    kijko: Kijko, make_settings: Any, server: LlmServer, alice: Account
) -> None:
    server.queue(Answer(status=429, retry_after="1"), Answer(text="after the wait"))
    outcome = await run_llm(skill_run(runtime(kijko, make_settings, server), alice.org_id))
    assert outcome.output == "after the wait"
    first, second = server.requests
    assert first.answered is not None
    # The retry came no earlier than the provider asked (the backoff alone is ~0.01 s here).
    assert second.arrived - first.answered >= 1.0


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("gpt-4o", 500, "PROVIDER_ERROR"),
        ("gpt-4o", 503, "PROVIDER_ERROR"),
        ("gpt-4o", 429, "PROVIDER_RATE_LIMITED"),
        ("claude-3-5-haiku-20241022", 529, "PROVIDER_ERROR"),
        ("claude-3-5-haiku-20241022", 500, "PROVIDER_ERROR"),
    ],
)
async def test_transient_failures_are_retried_then_given_up_with_their_code(
    kijko: Kijko, make_settings: Any, server: LlmServer, alice: Account, model: str, status: int, code: str
) -> None:
    server.default = Answer(status=status, message=f"secret detail {PLATFORM_KEY}")
    failed = await failure_of(skill_run(runtime(kijko, make_settings, server, llm_max_retries=2), alice.org_id, model))
    assert failed.code == code
    assert len(server.requests) == 3  # the first try and two retries
    assert PLATFORM_KEY not in failed.message and "secret detail" not in failed.message


@pytest.mark.parametrize("model", ["gpt-4o", "claude-3-5-haiku-20241022"])
async def test_a_refused_key_fails_at_once_without_retry(
    kijko: Kijko, make_settings: Any, server: LlmServer, alice: Account, model: str
) -> None:
    server.api_keys.discard(PLATFORM_KEY)
    failed = await failure_of(skill_run(runtime(kijko, make_settings, server), alice.org_id, model))
    assert failed.code == "PROVIDER_AUTH_FAILED"
    assert len(server.requests) == 1
    assert PLATFORM_KEY not in failed.message


async def test_a_bad_request_is_not_retried(
    kijko: Kijko, make_settings: Any, server: LlmServer, alice: Account
) -> None:
    server.default = Answer(status=400, message="messages: the prompt echoed back")
    failed = await failure_of(skill_run(runtime(kijko, make_settings, server), alice.org_id))
    assert failed.code == "PROVIDER_ERROR" and "echoed" not in failed.message
    assert len(server.requests) == 1


async def test_a_slow_provider_times_out(kijko: Kijko, make_settings: Any, server: LlmServer, alice: Account) -> None:
    server.default = Answer(delay=30)
    settings = {"llm_timeout_seconds": 0.5, "llm_max_retries": 1}
    failed = await failure_of(skill_run(runtime(kijko, make_settings, server, **settings), alice.org_id))
    assert failed.code == "TIMEOUT"
    assert len(server.requests) == 2  # a timeout is transient: retried once, then given up
    assert server.wait_for(lambda s: s.aborted == 2)  # both requests were hung up, not left open


async def test_cancelling_a_run_aborts_the_request_in_flight(
    kijko: Kijko, make_settings: Any, server: LlmServer, alice: Account
) -> None:
    server.default = Answer(delay=30)
    task = asyncio.create_task(run_llm(skill_run(runtime(kijko, make_settings, server), alice.org_id)))
    assert await asyncio.to_thread(server.wait_for, lambda s: len(s.requests) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(server.wait_for, lambda s: s.aborted == 1)
    assert len(server.requests) == 1  # and nothing retried it


async def test_invalid_parameters_fail_before_any_call(
    kijko: Kijko, make_settings: Any, server: LlmServer, alice: Account
) -> None:
    run = skill_run(runtime(kijko, make_settings, server), alice.org_id, parameters={"temperature": "hot"})
    failed = await failure_of(run)
    assert failed.code == "INVALID_PARAMETERS" and "temperature" in failed.message
    assert server.requests == []


# --- keys and addresses ----------------------------------------------------------------------------


async def set_org_key(kijko: Kijko, account: Account, provider: str, key: str, base_url: str | None = None) -> None:
    body: dict[str, Any] = {"apiKey": key}
    if base_url is not None:
        body["baseUrl"] = base_url
    async with tenant_session(kijko.app_db, account.identity) as db:
        # Saved as under KIJKO_EGRESS_ALLOW_CIDRS=127.0.0.0/8 (the stand-in servers' loopback): a
        # base URL the guard would refuse is refused at save too (decision 0138).
        data = PutLlmKey.model_validate(body)
        await keys.put_key(db, kijko.keyring, kijko.prices, provider, data, ["127.0.0.0/8"])


async def test_the_organizations_key_beats_the_platforms_and_is_recorded(
    kijko: Kijko, make_settings: Any, server: LlmServer, alice: Account, bob: Account
) -> None:
    configured = runtime(kijko, make_settings, server)
    await set_org_key(kijko, alice, "openai", ORG_KEY)
    outcome = await run_llm(skill_run(configured, alice.org_id))
    assert outcome.key_source == "organization"
    assert server.requests[-1].headers["authorization"] == f"Bearer {ORG_KEY}"
    # Another organization still runs on the platform's key.
    other = await run_llm(skill_run(configured, bob.org_id))
    assert other.key_source == "platform"
    assert server.requests[-1].headers["authorization"] == f"Bearer {PLATFORM_KEY}"


async def test_an_organization_key_runs_without_a_platform_key(
    kijko: Kijko, make_settings: Any, server: LlmServer, alice: Account
) -> None:
    configured = runtime(kijko, make_settings, server, anthropic_api_key=None)
    failed = await failure_of(skill_run(configured, alice.org_id, "claude-3-5-haiku-20241022"))
    assert failed.code == "PROVIDER_NOT_CONFIGURED"
    assert server.requests == []
    await set_org_key(kijko, alice, "anthropic", ORG_KEY)
    outcome = await run_llm(skill_run(configured, alice.org_id, "claude-3-5-haiku-20241022"))
    assert outcome.key_source == "organization"


async def test_an_organization_base_url_on_a_private_address_is_refused_by_the_egress_guard(
    kijko: Kijko, make_settings: Any, server: LlmServer, alice: Account
) -> None:
    # Saved while the loopback was allowed; without KIJKO_EGRESS_ALLOW_CIDRS now, 127.0.0.1 is
    # no address a tenant may make Kijko call: the guard refuses it at call time.
    await set_org_key(kijko, alice, "openai", ORG_KEY, base_url=server.openai_url)
    configured = runtime(kijko, make_settings, server, egress_allow_cidrs="")
    failed = await failure_of(skill_run(configured, alice.org_id))
    assert failed.code == "PROVIDER_ADDRESS_REFUSED"
    assert server.requests == []
    # With the address allowed, the organization's base URL is the one called.
    outcome = await run_llm(
        skill_run(runtime(kijko, make_settings, server, openai_base_url="https://api.openai.com/v1"), alice.org_id)
    )
    assert outcome.key_source == "organization"
    assert len(server.requests) == 1


async def test_an_unpriced_model_fails_the_run(
    kijko: Kijko, make_settings: Any, server: LlmServer, alice: Account
) -> None:
    failed = await failure_of(skill_run(runtime(kijko, make_settings, server), alice.org_id, "gpt-unknown"))
    assert failed.code == "MODEL_NOT_PRICED"
    assert server.requests == []


# --- Langfuse ----------------------------------------------------------------------------------------


class LangfuseReceiver(HttpStandIn):
    """``POST /api/public/ingestion`` as Langfuse answers it (207 with per-event results),
    recording the batches and the basic-auth credentials they came with."""

    def __init__(self, status: int = 207, delay: float = 0.0) -> None:
        self.batches: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                if delay and not wait_unless_hung_up(self.connection, delay):
                    return  # a slow Langfuse: a batch counts only if its sender waited for the answer
                outer.authorizations.append(self.headers.get("Authorization", ""))
                outer.batches.append(body)
                answer = json.dumps(
                    {"successes": [{"id": e["id"], "status": 201} for e in body["batch"]], "errors": []}
                ).encode()
                self.send_response(status if self.path == "/api/public/ingestion" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                outer.arrived.set()

        super().__init__(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
        self.url = f"http://127.0.0.1:{self.port}"


async def test_a_run_is_traced_to_langfuse_in_its_ingestion_format(
    kijko: Kijko, make_settings: Any, server: LlmServer, alice: Account
) -> None:
    receiver = LangfuseReceiver().start()
    try:
        configured = runtime(
            kijko,
            make_settings,
            server,
            langfuse_host=receiver.url,
            langfuse_public_key="pk-lf-test",
            langfuse_secret_key="sk-lf-secret",
        )
        server.queue(Answer(text="traced", prompt_tokens=100, completion_tokens=20))
        run = skill_run(configured, alice.org_id)
        await run_llm(run)
        await tracing.flush()
        assert await asyncio.to_thread(receiver.arrived.wait, 10)
    finally:
        receiver.stop()
    [body] = receiver.batches
    assert receiver.authorizations == ["Basic " + base64.b64encode(b"pk-lf-test:sk-lf-secret").decode()]
    trace, generation = body["batch"]
    assert (trace["type"], generation["type"]) == ("trace-create", "generation-create")
    assert all(event["id"] and event["timestamp"].endswith("Z") for event in body["batch"])
    assert trace["body"]["id"] == str(run.execution_id) == generation["body"]["traceId"]
    g = generation["body"]
    assert (g["model"], g["output"], g["level"]) == ("gpt-4o", "traced", "DEFAULT")
    assert g["usageDetails"] == {"input": 100, "output": 20, "total": 120}
    assert g["metadata"]["cost"] == "0.00045" and g["metadata"]["keySource"] == "platform"
    assert g["modelParameters"]["temperature"] == 0.3
    assert PLATFORM_KEY not in json.dumps(body)


async def test_a_stopping_runtime_sends_the_traces_still_on_their_way(
    make_settings: Any, server: LlmServer, alice: Account
) -> None:
    receiver = LangfuseReceiver(delay=0.5).start()
    try:
        settings = make_settings(
            **provider_settings(server, PLATFORM_KEY),
            langfuse_host=receiver.url,
            langfuse_public_key="pk-lf-test",
            langfuse_secret_key="sk-lf-secret",
        )
        own = await Kijko.start(settings)
        try:
            await run_llm(skill_run(own, alice.org_id))
        finally:
            await own.stop()  # at once: the batch is still on its way, the receiver slow
        assert len(receiver.batches) == 1
    finally:
        receiver.stop()


async def test_langfuse_down_or_refusing_never_fails_a_run(
    kijko: Kijko, make_settings: Any, server: LlmServer, alice: Account
) -> None:
    receiver = LangfuseReceiver(status=500).start()
    try:
        for host in (receiver.url, "http://127.0.0.1:9"):
            configured = runtime(
                kijko,
                make_settings,
                server,
                langfuse_host=host,
                langfuse_public_key="pk-lf-test",
                langfuse_secret_key="sk-lf-secret",
            )
            outcome = await run_llm(skill_run(configured, alice.org_id))
            await tracing.flush()
            assert outcome.output
    finally:
        receiver.stop()
    assert len(receiver.batches) == 1


def test_langfuse_settings_come_together(make_settings: Any) -> None:
    from kijko_core.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as raised:
        make_settings(langfuse_host="https://cloud.langfuse.com", langfuse_public_key="pk-lf-x")
    assert raised.value.problems == [
        "KIJKO_LANGFUSE_HOST: set KIJKO_LANGFUSE_HOST, KIJKO_LANGFUSE_PUBLIC_KEY and KIJKO_LANGFUSE_SECRET_KEY together"
    ]


# --- the policy's arithmetic -------------------------------------------------------------------------


def test_retry_after_is_read_in_seconds_milliseconds_or_as_a_date() -> None:
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    from kijko_core.llm.calls import retry_after

    assert retry_after({"retry-after": "7"}) == 7.0
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < (retry_after({"retry-after": later}) or 0) <= 120
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None
    assert retry_after({"retry-after": "-3"}) == 0.0


def test_backoff_is_full_jitter_under_the_exponential_bound_and_the_cap() -> None:
    from kijko_core.llm.retry import RetryPolicy

    policy = RetryPolicy(max_retries=5, base_seconds=1.0, max_seconds=5.0, timeout_seconds=10)
    for retry, bound in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (5, 5.0)):
        waits = [policy.delay(retry, None) for _ in range(200)]
        assert all(0 <= wait <= bound for wait in waits)
        assert len(set(waits)) > 1  # random, not lockstep
    assert policy.delay(1, 3.0) == 3.0  # Retry-After honoured …
    assert policy.delay(1, 600.0) == 5.0  # … and capped
