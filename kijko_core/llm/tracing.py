"""Langfuse traces of provider calls (placeholder until the ingestion client lands)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kijko_core.llm.calls import Completion, Prompt
    from kijko_core.llm.providers import ProviderKey
    from kijko_core.plugins import SkillRun
    from kijko_core.prices import ModelPrice
    from kijko_core.runtime import Kijko


def record(
    kijko: Kijko,
    run: SkillRun,
    key: ProviderKey,
    price: ModelPrice,
    prompt: Prompt,
    started: float,
    *,
    completion: Completion | None = None,
    cost: Decimal | None = None,
    error: str | None = None,
) -> Any:
    return None
