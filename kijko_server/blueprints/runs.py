"""Contract §2.3 execute/test and §2.6 cancel/retry (+ replay): running skills
(docs/executions.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from quart import Blueprint
from quart_schema import validate_querystring, validate_request

from kijko_core.billing.quotas import QuotaExceeded
from kijko_core.db.session import TenantSession
from kijko_core.errors import RateLimited, ValidationFailed
from kijko_core.executions import inline, lifecycle, spend
from kijko_core.executions.errors import CannotCancel, CannotRetry, ExecutionNotFound
from kijko_core.executions.models import (
    ExecuteQuery,
    ExecuteSkill,
    ExecuteSkillResponse,
    RetryResponse,
    TestDraft,
    TestSkill,
)
from kijko_core.executions.spend import SpendCapReached
from kijko_core.permissions import Action, authorize
from kijko_core.plugins import PluginError
from kijko_core.prices import ModelNotPriced
from kijko_core.skills import service as skills
from kijko_core.skills import templates
from kijko_core.skills.errors import SkillInactive, SkillNotFound
from kijko_core.skills.inputs import validate_input
from kijko_core.skills.models import InputSchemaField
from kijko_core.wire import Success
from kijko_server.openapi import responds
from kijko_server.paths import entity_id
from kijko_server.ratelimits import enforce_inline_test
from kijko_server.responses import validate_response
from kijko_server.uow import TENANT_ERRORS, runtime, tenant

bp = Blueprint("runs", __name__, url_prefix="/api/v1")


def _execution_id(raw: str) -> UUID:
    return entity_id(raw, ExecutionNotFound)


@asynccontextmanager
async def _reader() -> AsyncIterator[TenantSession]:
    async with tenant(readonly=True) as db:
        yield db


@bp.post("/skills/<skill_id>/execute")
@responds(*TENANT_ERRORS, SkillNotFound, SkillInactive, ValidationFailed, SpendCapReached, QuotaExceeded)
@validate_request(ExecuteSkill)
@validate_querystring(ExecuteQuery)
@validate_response(ExecuteSkillResponse)
async def runs_execute_skill(skill_id: str, data: ExecuteSkill, query_args: ExecuteQuery) -> ExecuteSkillResponse:
    """Run the skill with ``input`` (validated against its inputSchema): a ``pending``
    execution with a snapshot of the configuration, answered at once — or, with ``?wait=N``
    (0 < N ≤ 30), when it ended within N seconds (``output``, ``tokensUsed``, ``durationMs``),
    else with its current status. Status changes go to the caller's ``user:<id>`` room as
    ``execution:updated``. 429 ``SPEND_CAP_REACHED`` (``Retry-After``) over the monthly cap,
    429 ``QUOTA_EXCEEDED`` (``Retry-After``) over the plan's API calls."""
    kijko = runtime()
    async with tenant() as db:
        authorize(db.principal, Action.CREATE, policy=lifecycle.EXECUTIONS)
        skill, snapshot, values = await skills.runnable(db, entity_id(skill_id, SkillNotFound), data.input)
        execution_id = await lifecycle.start(
            db,
            snapshot=snapshot,
            input=values,
            execution_type=data.execution_type,
            user_id=db.principal.user_id,
            skill_id=skill.id,
            kijko=kijko,
        )
        assert execution_id is not None  # no habit key
        org_id = db.principal.org_id
    if query_args.wait is None:
        return ExecuteSkillResponse(execution_id=str(execution_id), status="pending")
    return await inline.wait_for_outcome(_reader, org_id, execution_id, query_args.wait)


@bp.post("/skills/test")
@responds(*TENANT_ERRORS, ValidationFailed, ModelNotPriced, PluginError, SpendCapReached, RateLimited, QuotaExceeded)
@validate_request(TestDraft)
@validate_response(ExecuteSkillResponse)
async def runs_test_draft(data: TestDraft) -> ExecuteSkillResponse:
    """Run an unsaved configuration once, inline (within the test timeout): not recorded as an
    execution (``executionId`` ``test-<uuid>``), its provider usage counted (spend, cap)."""
    kijko = runtime()
    schema = [InputSchemaField.model_validate(field.model_dump()) for field in data.input_schema or []]
    if data.input_schema is None:
        # Without a schema the input is used as given: each placeholder names an input.
        schema = [
            InputSchemaField(name=name, type="string")
            for name in templates.roots(data.prompt_template + "\n" + (data.system_prompt or ""))
        ]
    type_config = skills.check_definition(
        kijko,
        skill_type=data.skill_type,
        type_config=data.type_config or {},
        model=data.model,
        prompt_template=data.prompt_template,
        system_prompt=data.system_prompt,
        input_schema=schema,
    )
    values = dict(data.input or {}) if data.input_schema is None else validate_input(schema, data.input)
    snapshot = skills.snapshot_of(
        skill_id=None,
        name="Draft",
        version=0,
        skill_type=data.skill_type,
        type_config=type_config,
        prompt_template=data.prompt_template,
        system_prompt=data.system_prompt,
        model=data.model,
        parameters=data.parameters or {},
        input_schema=schema,
        output_format=data.output_format,
    )
    return await _test(snapshot, values)


@bp.post("/skills/<skill_id>/test")
@responds(*TENANT_ERRORS, SkillNotFound, ValidationFailed, SpendCapReached, RateLimited, QuotaExceeded)
@validate_request(TestSkill)
@validate_response(ExecuteSkillResponse)
async def runs_test_skill(skill_id: str, data: TestSkill) -> ExecuteSkillResponse:
    """Run the saved skill once with ``input``, inline (an inactive skill too): not recorded
    as an execution, its provider usage counted."""
    async with tenant(readonly=True) as db:
        authorize(db.principal, Action.CREATE, policy=lifecycle.EXECUTIONS)
        _, snapshot, values = await skills.runnable(
            db, entity_id(skill_id, SkillNotFound), data.input, require_active=False
        )
    return await _test(snapshot, values)


async def _test(snapshot: dict[str, Any], values: dict[str, Any]) -> ExecuteSkillResponse:
    kijko = runtime()
    async with tenant(readonly=True) as db:
        authorize(db.principal, Action.CREATE, policy=lifecycle.EXECUTIONS)
        org_id, user_id = db.principal.org_id, db.principal.user_id
        refusal = await spend.refusal(db, kijko, org_id, snapshot)
    if refusal is not None:
        raise refusal
    await enforce_inline_test(user_id)
    return await inline.run_test(kijko, tenant, org_id=org_id, user_id=user_id, snapshot=snapshot, values=values)


@bp.post("/executions/<execution_id>/cancel")
@responds(*TENANT_ERRORS, ExecutionNotFound, CannotCancel)
@validate_response(Success)
async def runs_cancel_execution(execution_id: str) -> Success:
    """Cancel a pending or running execution: it ends ``cancelled`` ("Cancelled by user",
    ``completedAt``) at once; a running provider call is aborted within seconds and the tokens
    it consumed, if known, are added. Members cancel their own executions, owners and admins
    any."""
    identifier = _execution_id(execution_id)
    async with tenant() as db:
        await lifecycle.authorize_on(db, identifier, Action.EDIT)
        job_id = await lifecycle.cancel(db, identifier)
        org_id = db.principal.org_id
    await lifecycle.cancel_job(runtime().system_db, org_id, identifier, job_id)
    return Success()


@bp.post("/executions/<execution_id>/retry")
@responds(
    *TENANT_ERRORS, ExecutionNotFound, CannotRetry, SkillInactive, ValidationFailed, SpendCapReached, QuotaExceeded
)
@validate_response(RetryResponse)
async def runs_retry_execution(execution_id: str) -> RetryResponse:
    """Start a failed or cancelled execution again: the same skill, type, reference and input,
    with the skill's *current* configuration (``CANNOT_RETRY`` when its skill was deleted:
    replay runs the stored one)."""
    identifier = _execution_id(execution_id)
    async with tenant() as db:
        await lifecycle.authorize_on(db, identifier, Action.EDIT)

        async def current(skill_id: UUID, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
            try:
                _, snapshot, checked = await skills.runnable(db, skill_id, values)
            except SkillNotFound:
                raise CannotRetry(
                    "The skill of this execution was deleted; replay it to run its stored configuration"
                ) from None
            return snapshot, checked

        new_id, status = await lifecycle.retry(
            db, identifier, current=current, user_id=db.principal.user_id, kijko=runtime()
        )
    return RetryResponse(new_execution_id=str(new_id), status=status)  # type: ignore[arg-type]


@bp.post("/executions/<execution_id>/replay")
@responds(*TENANT_ERRORS, ExecutionNotFound, CannotRetry, SpendCapReached, QuotaExceeded)
@validate_response(RetryResponse)
async def runs_replay_execution(execution_id: str) -> RetryResponse:
    """Run a finished execution's stored snapshot again with its input, even if its skill
    changed or was deleted since: a new ``manual`` (or ``api``) execution."""
    identifier = _execution_id(execution_id)
    async with tenant() as db:
        await lifecycle.authorize_on(db, identifier, Action.EDIT)
        new_id, status = await lifecycle.replay(db, identifier, user_id=db.principal.user_id, kijko=runtime())
    return RetryResponse(new_execution_id=str(new_id), status=status)  # type: ignore[arg-type]
