"""Running skills in tests (kijko_core/executions): an ``echo`` skill type the test tells what
to do through its ``typeConfig`` (answer, tokens, cost, sleep, fail with a code, crash), skills
written straight into the database, and small helpers around the worker.

The ``echo`` type is a real plugin of the plugin interface, registered like an embedding
application would (``register_skill_type``); nothing of Kijko's own code is patched.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from kijko_core.db.session import system_session, tenant_session
from kijko_core.plugins import SkillOutcome, SkillRun, SkillRunFailed, SkillType, registry
from kijko_core.runtime import Kijko
from kijko_core.skills import service as skills
from kijko_core.skills.models import skill_from_row
from tests.conftest import Account

#: The model the echo type's runs are priced with when they report a cost (a shipped one).
MODEL = "claude-3-5-haiku-20241022"


class EchoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sleep: float = 0.0
    fail_code: str | None = None
    crash: bool = False
    prompt_tokens: int = 10
    completion_tokens: int = 5
    cost: str | None = None  # a decimal string; with it, a provider call's usage is reported
    key_source: Literal["platform", "organization"] = "platform"
    tokens_when_cancelled: int | None = None


#: What each run received (execution id or None for tests → the rendered prompt), for asserts.
PROMPTS: dict[UUID | None, str] = {}
#: Runs in progress, by execution id (set when a run starts sleeping).
STARTED: dict[UUID | None, asyncio.Event] = {}


class EchoSkillType(SkillType):
    """Answers its rendered prompt; told by its config to sleep, fail or crash."""

    name: ClassVar[str] = "echo"
    version: ClassVar[str] = "1.0"
    description: ClassVar[str] = "Test skill type: answers its prompt"
    Config: ClassVar[type[BaseModel]] = EchoConfig
    uses_model: ClassVar[bool] = True

    async def run(self, run: SkillRun) -> SkillOutcome:
        config = run.config
        assert isinstance(config, EchoConfig)
        PROMPTS[run.execution_id] = run.prompt
        STARTED.setdefault(run.execution_id, asyncio.Event()).set()
        if config.sleep:
            try:
                await asyncio.sleep(config.sleep)
            except asyncio.CancelledError:
                if config.tokens_when_cancelled is not None:
                    raise SkillRunFailed("CANCELLED", "Cancelled", prompt_tokens=config.tokens_when_cancelled) from None
                raise
        if config.crash:
            raise RuntimeError("secret-looking detail sk-test-123 that must not leak")
        if config.fail_code:
            raise SkillRunFailed(config.fail_code, "The echo was told to fail", prompt_tokens=3)
        cost = Decimal(config.cost) if config.cost is not None else None
        return SkillOutcome(
            output=f"echo: {run.prompt}",
            prompt_tokens=config.prompt_tokens,
            completion_tokens=config.completion_tokens,
            cost=cost,
            currency="usd" if cost is not None else None,
            key_source=config.key_source if cost is not None else None,
            provider="anthropic" if cost is not None else None,
            model=run.model if cost is not None else None,
        )


registry.register_skill_type(EchoSkillType())


def snapshot(skill: dict[str, Any]) -> dict[str, Any]:
    """The execution snapshot of a skill row written by :func:`insert_skill`."""
    return skills.snapshot(skill_from_row(skill))


async def insert_skill(
    kijko: Kijko,
    account: Account,
    *,
    type_config: dict[str, Any] | None = None,
    template: str = "Say hello to {{name}} please.",
    is_active: bool = True,
    skill_type: str = "echo",
    name: str | None = None,
) -> dict[str, Any]:
    """A skill of ``account``'s organization, created by them, written straight to the database
    (no API checks: any skill type and template); :func:`tests.automation.create_skill` makes
    one through the API."""
    async with tenant_session(kijko.app_db, account.identity) as db:
        row = await db.fetchrow(
            "INSERT INTO kijko.skills (organization_id, user_id, name, skill_type, type_config, prompt_template,"
            " model, parameters, input_schema, is_active)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
            UUID(account.org_id),
            UUID(account.user_id),
            name or f"Echo {uuid.uuid4().hex[:8]}",
            skill_type,
            type_config or {},
            template,
            MODEL,
            {"temperature": 1, "max_tokens": 100},
            [{"name": "name", "type": "string", "required": True}],
            is_active,
        )
    assert row is not None
    return dict(row)


async def execution(kijko: Kijko, execution_id: UUID | str) -> dict[str, Any]:
    async with system_session(kijko.system_db) as db:
        row = await db.fetchrow("SELECT * FROM kijko.skill_executions WHERE id = $1", UUID(str(execution_id)))
    assert row is not None
    return dict(row)


async def usage(kijko: Kijko, org_id: str) -> list[dict[str, Any]]:
    async with system_session(kijko.system_db) as db:
        rows = await db.fetch("SELECT * FROM kijko.llm_usage WHERE organization_id = $1 ORDER BY id", UUID(org_id))
    return [dict(r) for r in rows]


async def cancel_leftovers(kijko: Kijko) -> None:
    """Cancel unfinished execution jobs, so another module's ``run_until_idle`` never runs them."""
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.jobs SET state = 'cancelled', lease_owner = NULL, lease_expires_at = NULL,"
            " finished_at = clock_timestamp() WHERE kind = 'execution.run' AND state IN ('queued', 'running')"
        )


@asynccontextmanager
async def capped_runtime(make_settings: Callable[..., Any], cap: str = "1.00") -> AsyncIterator[Kijko]:
    """A runtime of its own with a monthly spend cap on the platform's keys (the tests'
    ``capped`` fixtures); its unfinished executions cancelled when it stops."""
    runtime = await Kijko.start(make_settings(llm_monthly_spend_cap=cap))
    try:
        yield runtime
    finally:
        await cancel_leftovers(runtime)
        await runtime.stop()


async def spent(kijko: Kijko, account: Account, cost: str, *, key_source: str = "platform", days_ago: int = 0) -> None:
    """A provider call made ``days_ago``, paid with ``key_source``."""
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "INSERT INTO kijko.llm_usage (organization_id, provider, model, key_source, cost, currency, created_at)"
            " VALUES ($1, 'anthropic', $2, $3, $4, 'usd', now() - make_interval(days => $5))",
            UUID(account.org_id),
            MODEL,
            key_source,
            Decimal(cost),
            days_ago,
        )


_S = "/api/v1/skills/{skill_id}"
_E = "/api/v1/executions/{execution_id}"
_BODY = {"400", "413", "415", "422"}
#: The statuses each running route can answer besides its success and 500
#: (tests/test_runs_routes.py checks the document; tests/test_openapi_errors.py pins the set).
RUN_OPERATIONS: dict[tuple[str, str], set[str]] = {
    ("post", f"{_S}/execute"): {"401", "403", "404", "409", "429"} | _BODY,
    ("post", "/api/v1/skills/test"): {"401", "403", "429"} | _BODY,
    ("post", f"{_S}/test"): {"401", "403", "404", "429"} | _BODY,
    ("post", f"{_E}/cancel"): {"401", "403", "404", "409"},
    ("post", f"{_E}/retry"): {"401", "403", "404", "409", "422", "429"},
    ("post", f"{_E}/replay"): {"401", "403", "404", "409", "429"},
}
