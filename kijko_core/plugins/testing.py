"""The contract test suite for skill and reflex type plugins (docs/plugins.md#the-contract-suite).

A plugin author subclasses :class:`SkillTypeContract` or :class:`ReflexTypeContract` in their own
pytest module and provides a few fixtures (the type, a valid and some invalid configurations, a
sample run or a correctly signed sample delivery); the inherited ``test_*`` methods check what
Kijko relies on — the same checks the loader makes, that Kijko really loads the installed
distribution's entry point, and the type's behaviour on the samples::

    from kijko_core.plugins.testing import SampleRun, SkillTypeContract

    class TestMySkill(SkillTypeContract):
        @pytest.fixture
        def skill_type(self):
            return MySkill()

        @pytest.fixture
        def sample_config(self):
            return {"url": "https://example.com"}

This module imports pytest: it is for tests only (``pip install 'kijko[plugin-testing]'``), and
nothing of Kijko's own imports it. The tests are plain functions (no pytest-asyncio needed): a
run executes in ``asyncio.run`` with a stand-in of the running Kijko (:class:`PluginTestKijko`:
settings, ``http``, ``egress`` — the egress-guarded client — and prices; no database).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar, cast
from uuid import UUID, uuid4

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from kijko_core.config import Settings
from kijko_core.egress import EgressGuard, make_egress_client
from kijko_core.http import make_http_client
from kijko_core.plugins import (
    API_VERSION,
    Delivery,
    ReflexType,
    SignatureInvalid,
    SkillOutcome,
    SkillRun,
    SkillRunFailed,
    SkillType,
    registry,
)
from kijko_core.prices import PriceTable

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

__all__ = [
    "PluginTestKijko",
    "ReflexTypeContract",
    "SampleRun",
    "SignedSample",
    "SkillTypeContract",
    "delivery",
    "skill_run",
]

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Stand-ins and builders


@dataclass
class PluginTestKijko:
    """What a type may use of the running Kijko, without a database: ``settings``, ``http``
    (trusted services), ``egress`` (tenant-chosen addresses, through the egress guard) and
    ``prices``. ``allow`` are the networks the guard lets through (e.g. ``127.0.0.1/32`` for a
    local test server; without it, loopback and private addresses are refused as in production)."""

    settings: Settings
    http: httpx.AsyncClient
    egress: httpx.AsyncClient
    prices: PriceTable = field(default_factory=PriceTable.shipped)

    @classmethod
    def make(cls, *, allow: Sequence[str] = (), **settings: Any) -> PluginTestKijko:
        configured = Settings(**settings)
        return cls(
            configured,
            make_http_client(configured),
            make_egress_client(configured, EgressGuard(allow)),
        )

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.egress.aclose()


def skill_run(
    config: BaseModel,
    kijko: PluginTestKijko | Kijko,
    *,
    prompt: str = "",
    input: Mapping[str, Any] | None = None,
    model: str = "",
    parameters: Mapping[str, Any] | None = None,
    system_prompt: str | None = None,
    output_format: str = "text",
    organization_id: UUID | None = None,
) -> SkillRun:
    """A :class:`SkillRun` as the engine builds it (a test run: no execution id)."""
    return SkillRun(
        organization_id=organization_id or uuid4(),
        execution_id=None,
        prompt=prompt,
        system_prompt=system_prompt,
        model=model,
        parameters=dict(parameters or {}),
        config=config,
        input=dict(input or {}),
        output_format=output_format,
        kijko=cast("Kijko", kijko),
    )


def delivery(body: bytes, headers: Mapping[str, str], *, method: str = "POST") -> Delivery:
    """A :class:`Delivery` as the receiver hands it over: header names lowercased."""
    return Delivery(
        headers={name.lower(): value for name, value in headers.items()},
        body=body,
        received_at=datetime.now(UTC),
        method=method,
    )


@dataclass(frozen=True)
class SampleRun:
    """One run to try: the skill's ``typeConfig``, the rendered prompt and the input; ``allow``
    lets the egress guard through to these networks (a local server); ``settings`` are more
    settings for the stand-in Kijko. ``check`` (optional) inspects the outcome further."""

    config: Mapping[str, Any]
    prompt: str = ""
    input: Mapping[str, Any] = field(default_factory=dict)
    model: str = ""
    allow: Sequence[str] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    check: Callable[[SkillOutcome], None] | None = None


@dataclass(frozen=True)
class SignedSample:
    """A delivery signed with ``secret`` the way the sender signs it; ``delivery_id``: what
    ``verify`` must return (None: any non-empty string); ``payload``: what ``payload()`` must
    return (``...``: anything). ``config`` is a reflex configuration that ``accepts`` it."""

    delivery: Delivery
    secret: str
    config: Mapping[str, Any]
    delivery_id: str | None = None
    payload: Any = ...


def _run_async(work: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await work()

    return asyncio.run(main())


def _tampered(sample: Delivery) -> Delivery:
    body = sample.body
    changed = body[:-1] + bytes([body[-1] ^ 0x01]) if body else b"x"
    return replace(sample, body=changed)


# ---------------------------------------------------------------------------------------------
# What both kinds of type share


class _TypeContract:
    """The checks every type passes; ``_type`` and ``_group`` come from the subclasses."""

    _group: str
    _base: type[SkillType] | type[ReflexType]

    @pytest.fixture
    def sample_config(self) -> Mapping[str, Any]:
        """A valid configuration (override when the type's Config has required fields)."""
        return {}

    @pytest.fixture
    def invalid_configs(self) -> Sequence[Mapping[str, Any]]:
        """Configurations the type must refuse (at least one; override with the type's own)."""
        return [{"__not_a_field__": True}]

    def test_name_and_version(self, plugin_type: Any) -> None:
        kind = plugin_type
        assert isinstance(kind, self._base)
        assert isinstance(kind.name, str) and registry.NAME.fullmatch(kind.name), (
            "name: lowercase, [a-z][a-z0-9_.-]*, at most 64 characters"
        )
        assert isinstance(kind.version, str) and kind.version.strip(), "version: a non-empty string"
        assert len(kind.version) <= registry.MAX_VERSION_LENGTH
        assert isinstance(kind.description, str)

    def test_api_version(self, plugin_type: Any) -> None:
        assert plugin_type.api_version == API_VERSION, (
            f"written for plugin API version {plugin_type.api_version}; this Kijko offers {API_VERSION}"
        )

    def test_config_is_a_pydantic_model_with_a_json_schema(self, plugin_type: Any) -> None:
        config = type(plugin_type).Config
        assert isinstance(config, type) and issubclass(config, BaseModel)
        schema = config.model_json_schema()
        assert schema.get("type") == "object"
        json.dumps(schema)  # GET /api/v1/plugins publishes it as JSON

    def test_a_valid_config_is_accepted(self, plugin_type: Any, sample_config: Mapping[str, Any]) -> None:
        type(plugin_type).Config.model_validate(sample_config)

    def test_invalid_configs_are_refused(self, plugin_type: Any, invalid_configs: Sequence[Mapping[str, Any]]) -> None:
        assert invalid_configs, "give at least one invalid configuration"
        config = type(plugin_type).Config
        for invalid in invalid_configs:
            with pytest.raises(ValidationError):
                config.model_validate(invalid)

    def test_kijko_loads_the_installed_entry_point(self, plugin_type: Any) -> None:
        """The distribution is installed and its entry point passes Kijko's own loader."""
        kind = plugin_type
        found = [item for item in registry.discover().report if item.group == self._group and item.name == kind.name]
        assert found, f"no entry point {kind.name!r} in the group {self._group} (is the distribution installed?)"
        assert [(item.status, item.reason) for item in found] == [("loaded", None)]


# ---------------------------------------------------------------------------------------------
# Skill types


class SkillTypeContract(_TypeContract):
    """Subclass with the fixtures ``skill_type`` (an instance), and as needed ``sample_config``,
    ``invalid_configs``, ``sample_run`` (a :class:`SampleRun` that succeeds) and
    ``failing_runs`` (``[(SampleRun, errorCode), …]`` that must fail with that code)."""

    _group = registry.SKILL_TYPES_GROUP
    _base = SkillType

    @pytest.fixture
    def plugin_type(self, skill_type: SkillType) -> SkillType:
        assert isinstance(skill_type, SkillType), "the skill_type fixture must return a SkillType instance"
        return skill_type

    @pytest.fixture
    def sample_run(self) -> SampleRun | None:
        """A run that must succeed (None: the type cannot run without outside services)."""
        return None

    @pytest.fixture
    def failing_runs(self) -> Sequence[tuple[SampleRun, str]]:
        return []

    @staticmethod
    async def _run(kind: SkillType, sample: SampleRun) -> SkillOutcome:
        kijko = PluginTestKijko.make(allow=sample.allow, **sample.settings)
        try:
            config = type(kind).Config.model_validate(sample.config)
            return await kind.run(
                skill_run(config, kijko, prompt=sample.prompt, input=sample.input, model=sample.model)
            )
        finally:
            await kijko.aclose()

    def test_run_returns_an_outcome(self, plugin_type: SkillType, sample_run: SampleRun | None) -> None:
        if sample_run is None:
            pytest.skip("no sample_run given")
        kind = plugin_type
        outcome = _run_async(lambda: self._run(kind, sample_run))
        assert isinstance(outcome, SkillOutcome)
        assert isinstance(outcome.output, str)
        assert outcome.prompt_tokens >= 0 and outcome.completion_tokens >= 0
        if outcome.cost is not None:
            assert isinstance(outcome.cost, Decimal) and outcome.cost >= 0 and outcome.currency
        if sample_run.check is not None:
            sample_run.check(outcome)

    def test_failures_are_skill_run_failed_with_their_code(
        self, plugin_type: SkillType, failing_runs: Sequence[tuple[SampleRun, str]]
    ) -> None:
        if not failing_runs:
            pytest.skip("no failing_runs given")
        kind = plugin_type
        for sample, code in failing_runs:
            with pytest.raises(SkillRunFailed) as failed:
                _run_async(lambda sample=sample: self._run(kind, sample))  # type: ignore[misc]
            assert failed.value.code == code, failed.value.message
            assert failed.value.message and len(failed.value.message) <= 1000


# ---------------------------------------------------------------------------------------------
# Reflex types


class ReflexTypeContract(_TypeContract):
    """Subclass with the fixtures ``reflex_type`` (an instance), as needed ``sample_config`` and
    ``invalid_configs``, and for a webhook type ``signed_sample`` (a :class:`SignedSample`)
    and optionally ``rejected_sample`` (``(config, delivery)`` that ``accepts`` refuses)."""

    _group = registry.REFLEX_TYPES_GROUP
    _base = ReflexType

    @pytest.fixture
    def plugin_type(self, reflex_type: ReflexType) -> ReflexType:
        assert isinstance(reflex_type, ReflexType), "the reflex_type fixture must return a ReflexType instance"
        return reflex_type

    @pytest.fixture
    def signed_sample(self) -> SignedSample | None:
        return None

    @pytest.fixture
    def rejected_sample(self) -> tuple[Mapping[str, Any], Delivery] | None:
        return None

    @staticmethod
    def _webhook(kind: ReflexType, sample: SignedSample | None) -> SignedSample:
        if not kind.receives_webhooks:
            pytest.skip("not a webhook type")
        assert isinstance(sample, SignedSample), "a webhook type's test gives a signed_sample"
        return sample

    def test_new_secrets_are_random_strings(self, plugin_type: ReflexType, signed_sample: SignedSample | None) -> None:
        kind = plugin_type
        self._webhook(kind, signed_sample)
        first, second = kind.new_secret(), kind.new_secret()
        assert isinstance(first, str) and len(first) >= 16
        assert first != second

    def test_a_correctly_signed_delivery_is_verified(
        self, plugin_type: ReflexType, signed_sample: SignedSample | None
    ) -> None:
        kind = plugin_type
        sample = self._webhook(kind, signed_sample)
        delivery_id = kind.verify(sample.delivery, [sample.secret])
        assert isinstance(delivery_id, str) and delivery_id
        if sample.delivery_id is not None:
            assert delivery_id == sample.delivery_id
        # During a secret's rotation both are given: the right one matches, wherever it is.
        assert kind.verify(sample.delivery, [kind.new_secret(), sample.secret]) == delivery_id

    def test_a_tampered_or_wrongly_signed_delivery_is_refused(
        self, plugin_type: ReflexType, signed_sample: SignedSample | None
    ) -> None:
        kind = plugin_type
        sample = self._webhook(kind, signed_sample)
        for secrets in ([kind.new_secret()], []):
            with pytest.raises(SignatureInvalid):
                kind.verify(sample.delivery, secrets)
        with pytest.raises(SignatureInvalid):
            kind.verify(_tampered(sample.delivery), [sample.secret])
        unsigned = replace(sample.delivery, headers={"content-type": "application/json"})
        with pytest.raises(SignatureInvalid):
            kind.verify(unsigned, [sample.secret])

    def test_the_payload_after_verify(self, plugin_type: ReflexType, signed_sample: SignedSample | None) -> None:
        kind = plugin_type
        sample = self._webhook(kind, signed_sample)
        kind.verify(sample.delivery, [sample.secret])
        payload = kind.payload(sample.delivery)
        json.dumps(payload)  # conditions and the skill's input take JSON values
        if sample.payload is not ...:
            assert payload == sample.payload

    def test_accepts_filters_deliveries(
        self,
        plugin_type: ReflexType,
        signed_sample: SignedSample | None,
        rejected_sample: tuple[Mapping[str, Any], Delivery] | None,
    ) -> None:
        kind = plugin_type
        sample = self._webhook(kind, signed_sample)
        config = type(kind).Config.model_validate(sample.config)
        assert kind.accepts(config, sample.delivery, kind.payload(sample.delivery)) is True
        if rejected_sample is not None:
            other_config, other = rejected_sample
            parsed = type(kind).Config.model_validate(other_config)
            assert kind.accepts(parsed, other, kind.payload(other)) is False

    def test_sample_payload_is_json(self, plugin_type: ReflexType, sample_config: Mapping[str, Any]) -> None:
        kind = plugin_type
        payload = kind.sample_payload(type(kind).Config.model_validate(sample_config))
        assert isinstance(payload, dict)
        json.dumps(payload)
