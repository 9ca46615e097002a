"""The built-in ``llm`` skill type: the rendered prompt to the model's provider, through the
official SDK, with Kijko's retries, the organization's or the platform's key, and the exact
cost from the price table (docs/llm-providers.md)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import ClassVar

from pydantic import BaseModel

from kijko_core.db.session import ServiceActor, ServiceSession, service_session
from kijko_core.llm import calls, keys, tracing
from kijko_core.llm.calls import Completion, Prompt, ProviderFailure
from kijko_core.llm.providers import ProviderKey
from kijko_core.llm.retry import RetryPolicy, with_retries
from kijko_core.plugins import SkillOutcome, SkillRun, SkillRunFailed, SkillType
from kijko_core.prices import ModelNotPriced, ModelPrice
from kijko_core.runtime import Kijko

#: ``SkillRun.extras`` key: the provider key (or None: none) the engine already resolved for
#: this run's model, with :func:`resolve_key`.
PROVIDER_KEY = "llm.provider_key"
_UNRESOLVED = object()


async def resolve_key(db: ServiceSession, kijko: Kijko, model: str) -> dict[str, ProviderKey | None]:
    """``SkillRun.extras`` with the key a run of ``model`` uses, read in the caller's session
    (the execution job's admission: no session of its own per run); empty for an unpriced model."""
    price = kijko.prices.get(model)
    if price is None:
        return {}
    return {PROVIDER_KEY: await keys.resolve(db, kijko.keyring, kijko.settings, price.provider)}


class LlmSkillType(SkillType):
    name: ClassVar[str] = "llm"
    version: ClassVar[str] = "1.0.0"
    description: ClassVar[str] = "A prompt to a large language model (Anthropic, OpenAI or an OpenAI-compatible server)"
    uses_model: ClassVar[bool] = True

    def check(self, config: BaseModel, *, model: str, kijko: Kijko) -> None:
        kijko.prices.price(model)  # ModelNotPriced: 422, field "model"

    async def run(self, run: SkillRun) -> SkillOutcome:
        kijko = run.kijko
        try:
            price = kijko.prices.price(run.model)
        except ModelNotPriced:
            raise SkillRunFailed("MODEL_NOT_PRICED", "The skill's model has no price in the price table") from None
        key = await self._key(run, price.provider)
        if key is None:
            raise SkillRunFailed(
                "PROVIDER_NOT_CONFIGURED",
                f"No API key for the {price.provider} provider: the platform has none and the organization"
                " has not set one",
            )
        try:
            prompt = Prompt(run.model, run.prompt, run.system_prompt, calls.parameters(run.parameters))
        except ProviderFailure as failure:
            raise SkillRunFailed(failure.code, failure.message) from None
        policy = RetryPolicy.from_settings(kijko.settings)
        started = time.time()
        try:
            completion = await with_retries(
                lambda: calls.complete(kijko.llm_clients, key, prompt, seconds=policy.timeout_seconds), policy
            )
        except ProviderFailure as failure:
            tracing.record(kijko, run, key, price, prompt, started, time.time(), error=failure.message)
            # retryable: a transient failure that outlasted our retries may pass later.
            raise SkillRunFailed(failure.code, failure.message, retryable=failure.transient) from None
        cost = price.cost(completion.prompt_tokens, completion.completion_tokens)
        tracing.record(kijko, run, key, price, prompt, started, time.time(), completion=completion, cost=cost)
        return _outcome(completion, price, key, cost)

    @staticmethod
    async def _key(run: SkillRun, provider: str) -> ProviderKey | None:
        """The organization's key, else the platform's: as the execution job resolved it in
        its admission transaction (``extras[PROVIDER_KEY]``), or read here in a short session
        of its own (tests): a run never holds a transaction open while a provider answers."""
        resolved = run.extras.get(PROVIDER_KEY, _UNRESOLVED)
        if resolved is None or (isinstance(resolved, ProviderKey) and resolved.provider == provider):
            return resolved
        kijko = run.kijko
        capability = await kijko.service_capability()
        actor = ServiceActor("llm", str(run.execution_id) if run.execution_id else "test")
        async with service_session(kijko.app_db, capability, run.organization_id, actor, readonly=True) as db:
            return await keys.resolve(db, kijko.keyring, kijko.settings, provider)


def _outcome(completion: Completion, price: ModelPrice, key: ProviderKey, cost: Decimal) -> SkillOutcome:
    return SkillOutcome(
        output=completion.text,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        cost=cost,
        currency=price.currency,
        key_source=key.source,
        provider=key.provider,
        model=price.model,
    )
