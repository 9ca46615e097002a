"""Langfuse traces of provider calls (decision 0106), when ``KIJKO_LANGFUSE_HOST``,
``KIJKO_LANGFUSE_PUBLIC_KEY`` and ``KIJKO_LANGFUSE_SECRET_KEY`` are all set.

Each run's call is one batch posted to Langfuse's public ingestion API
(``POST /api/public/ingestion``, HTTP basic auth with the project's key pair): a
``trace-create`` (the skill run) and a ``generation-create`` (the model call: model, parameters,
prompt, answer, token usage, cost, timing, or the failure). It is sent in the background through
``kijko.http`` (Langfuse is a service the operator configured, like Keycloak) and never fails or
delays a run: an error is logged and dropped. A stopping runtime waits for the batches on
their way (up to :data:`SEND_TIMEOUT_SECONDS`) before it closes that client.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from kijko_core.logging import get_logger

if TYPE_CHECKING:
    from kijko_core.llm.calls import Completion, Prompt
    from kijko_core.llm.providers import ProviderKey
    from kijko_core.plugins import SkillRun
    from kijko_core.prices import ModelPrice
    from kijko_core.runtime import Kijko

log = get_logger("kijko.llm.tracing")
INGESTION_PATH = "/api/public/ingestion"
SEND_TIMEOUT_SECONDS = 10.0
# The batches on their way: a task nobody references may be collected before it ran.
_pending: set[asyncio.Task[None]] = set()


def enabled(kijko: Kijko) -> bool:
    s = kijko.settings
    return bool(s.langfuse_host and s.langfuse_public_key and s.langfuse_secret_key)


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def batch(
    run: SkillRun,
    key: ProviderKey,
    price: ModelPrice,
    prompt: Prompt,
    started: float,
    ended: float,
    *,
    completion: Completion | None,
    cost: Decimal | None,
    error: str | None,
) -> dict[str, Any]:
    """The ingestion request body for one run's call."""
    trace_id = str(run.execution_id) if run.execution_id else str(uuid.uuid4())
    metadata = {
        "organizationId": str(run.organization_id),
        "executionId": str(run.execution_id) if run.execution_id else None,
        "provider": key.provider,
        "keySource": key.source,
    }
    messages = ([{"role": "system", "content": prompt.system_prompt}] if prompt.system_prompt else []) + [
        {"role": "user", "content": prompt.prompt}
    ]
    generation: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "traceId": trace_id,
        "name": f"{key.provider}:{prompt.model}",
        "startTime": _iso(started),
        "endTime": _iso(ended),
        "model": prompt.model,
        "modelParameters": prompt.parameters.model_dump(exclude_none=True),
        "input": messages,
        "metadata": metadata,
        "level": "ERROR" if error else "DEFAULT",
    }
    if completion is not None:
        generation["output"] = completion.text
        generation["usageDetails"] = {
            "input": completion.prompt_tokens,
            "output": completion.completion_tokens,
            "total": completion.prompt_tokens + completion.completion_tokens,
        }
    if cost is not None:
        # Langfuse takes numbers; the exact amount stays Kijko's (a string in the metadata).
        generation["costDetails"] = {"total": float(cost)}
        generation["metadata"] = {**metadata, "cost": str(cost), "currency": price.currency}
    if error:
        generation["statusMessage"] = error
    trace = {
        "id": trace_id,
        "timestamp": _iso(started),
        "name": f"skill-run:{run.model}",
        "metadata": metadata,
        "input": prompt.prompt,
        "output": completion.text if completion is not None else None,
        "tags": ["kijko", key.provider],
    }
    return {
        "batch": [
            {"id": str(uuid.uuid4()), "timestamp": _iso(started), "type": "trace-create", "body": trace},
            {"id": str(uuid.uuid4()), "timestamp": _iso(ended), "type": "generation-create", "body": generation},
        ]
    }


def record(
    kijko: Kijko,
    run: SkillRun,
    key: ProviderKey,
    price: ModelPrice,
    prompt: Prompt,
    started: float,
    ended: float,
    *,
    completion: Completion | None = None,
    cost: Decimal | None = None,
    error: str | None = None,
) -> None:
    """Send the call's trace in the background, if Langfuse is configured."""
    if not enabled(kijko):
        return
    try:
        body = batch(run, key, price, prompt, started, ended, completion=completion, cost=cost, error=error)
    except Exception:
        log.exception("langfuse_trace_failed")
        return
    task = asyncio.get_running_loop().create_task(_send(kijko, body))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def _send(kijko: Kijko, body: dict[str, Any]) -> None:
    s = kijko.settings
    assert s.langfuse_host and s.langfuse_public_key and s.langfuse_secret_key
    try:
        response = await kijko.http.post(
            s.langfuse_host + INGESTION_PATH,
            json=body,
            auth=(s.langfuse_public_key, s.langfuse_secret_key.get_secret_value()),
            timeout=SEND_TIMEOUT_SECONDS,
        )
        # 207: per-event results; errors there are Langfuse's validation, worth a log line.
        if response.status_code >= 300 and response.status_code != 207:
            log.warning("langfuse_trace_refused", status=response.status_code)
    except Exception as error:  # never the run's problem
        log.warning("langfuse_trace_failed", error=type(error).__name__)


async def flush() -> None:
    """Wait for the traces on their way (each send is bounded by :data:`SEND_TIMEOUT_SECONDS`;
    ``Kijko.stop`` waits for them before it closes the HTTP client they are sent with)."""
    if _pending:
        await asyncio.wait(list(_pending))
