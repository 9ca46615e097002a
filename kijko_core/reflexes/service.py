"""The rules of reflexes (contract §2.5): organization data read by every member; members
create and edit their own, owners and admins all; viewers read (ARCHITECTURE §3).

The signing secret of a webhook reflex is stored encrypted with the keyring and shown only in
the create answer (``triggerConfig.secret``), ``webhook-info`` and ``regenerate-secret``, to
whoever may edit the reflex (decision 0118).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import BaseModel, ValidationError

from kijko_core.db.session import ServiceSession, Session, TenantSession
from kijko_core.executions import inline, spend
from kijko_core.executions.inline import OpenSession
from kijko_core.permissions import REFLEXES, Action, authorize
from kijko_core.plugins import PluginError, ReflexType, registry
from kijko_core.reflexes import conditions as conditions_module
from kijko_core.reflexes import repository
from kijko_core.reflexes.errors import (
    InvalidTriggerConfig,
    NotWebhook,
    ReflexNotFound,
    TriggerTypeUnavailable,
)
from kijko_core.reflexes.fire import skill_input
from kijko_core.reflexes.models import (
    CONTRACT_TRIGGER_TYPES,
    CreateReflex,
    CreateReflexResponse,
    ExecutionResult,
    RecentTrigger,
    Reflex,
    ReflexConditions,
    ReflexListQuery,
    ReflexStats,
    ReflexTest,
    ReflexTestResult,
    ReflexWithSkill,
    ReflexWithSkillPage,
    SecretAnswer,
    UpdateReflex,
    WebhookInfo,
    reflex_from_row,
)
from kijko_core.skills import service as skills
from kijko_core.skills.errors import SkillInactive, SkillNotFound
from kijko_core.skills.models import Skill, skill_from_row

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

#: The path of the receiver; the generated URL is ``KIJKO_PUBLIC_URL`` + this + the id.
WEBHOOK_PATH = "/api/v1/webhooks/reflex/"
NO_MATCH = "Test payload did not match reflex conditions"


@dataclass(frozen=True)
class _Owned:
    """A reflex as :func:`authorize` sees it."""

    organization_id: UUID
    user_id: UUID | None


def webhook_url(kijko: Kijko, reflex_id: UUID) -> str:
    return kijko.settings.base_url.rstrip("/") + WEBHOOK_PATH + str(reflex_id)


def _uuid(raw: str) -> UUID | None:
    try:
        return UUID(raw)
    except ValueError:
        return None


async def _load(db: TenantSession, reflex_id: UUID, *, for_update: bool = False) -> Reflex:
    row = await db.fetchrow(repository.GET_FOR_UPDATE if for_update else repository.GET, db.principal.org_id, reflex_id)
    if row is None:
        raise ReflexNotFound()
    return reflex_from_row(row)


def _owned(db: TenantSession, reflex: Reflex) -> _Owned:
    return _Owned(db.principal.org_id, reflex.user_id)


async def get(db: TenantSession, reflex_id: UUID) -> Reflex:
    reflex = await _load(db, reflex_id)
    authorize(db.principal, Action.READ, _owned(db, reflex), policy=REFLEXES)
    return reflex


async def for_skill(db: Session, skill_id: UUID) -> list[Reflex]:
    """The reflexes of one skill of the session's organization (``/skills/{id}/full``), newest
    first."""
    return [reflex_from_row(row) for row in await db.fetch(repository.FOR_SKILL, skill_id)]


async def _editable(db: TenantSession, reflex_id: UUID, action: Action = Action.EDIT) -> Reflex:
    reflex = await _load(db, reflex_id, for_update=True)
    authorize(db.principal, action, _owned(db, reflex), policy=REFLEXES)
    return reflex


async def _skill(db: TenantSession | ServiceSession, org_id: UUID, skill_id: UUID) -> Skill | None:
    row = await db.fetchrow(repository.SKILL, org_id, skill_id)
    return None if row is None else skill_from_row(row)


async def _skills(db: TenantSession, ids: list[UUID]) -> dict[UUID, Skill]:
    rows = await db.fetch(repository.SKILLS_BY_ID, db.principal.org_id, list(set(ids)))
    return {skill.id: skill for skill in map(skill_from_row, rows)}


async def full(db: TenantSession, reflex_id: UUID) -> ReflexWithSkill:
    reflex = await get(db, reflex_id)
    skill = await _skill(db, db.principal.org_id, reflex.skill_id)
    if skill is None:  # unreachable: the skill's deletion deletes its reflexes
        raise ReflexNotFound()
    return ReflexWithSkill.model_validate(dict(reflex) | {"skill": skill})


async def list_reflexes(db: TenantSession, query: ReflexListQuery) -> ReflexWithSkillPage:
    skill_id = _uuid(query.skill_id) if query.skill_id else None
    if query.skill_id and skill_id is None:  # not an id: no skill has it
        return ReflexWithSkillPage(reflexes=[], total=0, page=query.page, page_size=query.page_size, has_more=False)
    args = (db.principal.org_id, skill_id, query.trigger_type, query.is_active)
    rows = await db.fetch(repository.LIST, *args, query.page_size, query.offset)
    total = await db.fetchval(repository.COUNT, *args)
    reflexes = [reflex_from_row(row) for row in rows]
    found = await _skills(db, [reflex.skill_id for reflex in reflexes])
    items = [ReflexWithSkill.model_validate(dict(r) | {"skill": found[r.skill_id]}) for r in reflexes]
    return ReflexWithSkillPage(
        reflexes=items,
        total=total,
        page=query.page,
        page_size=query.page_size,
        has_more=query.offset + len(items) < total,
    )


# --- trigger types and configs -------------------------------------------------------------


def trigger_type(name: str) -> ReflexType:
    """The installed type ``name``; ``schedule`` is refused with the contract's sentence."""
    if name == "schedule":
        raise InvalidTriggerConfig("Use Habits for scheduled triggers", field="triggerType")
    try:
        return registry.reflex_type(name)
    except PluginError:
        raise TriggerTypeUnavailable() from None


def _config(kind: ReflexType, raw: dict[str, Any]) -> BaseModel:
    try:
        return kind.Config.model_validate(raw)
    except ValidationError as error:
        # Where in triggerConfig, never the value given.
        where = ".".join(str(part) for part in error.errors()[0]["loc"])
        raise InvalidTriggerConfig(f"triggerConfig.{where} is not valid for this trigger type") from None


def _stored_config(kind: ReflexType, config: BaseModel, url: str | None) -> dict[str, Any]:
    stored: dict[str, Any] = config.model_dump(by_alias=True, exclude_none=True)
    stored.pop("secret", None)  # never stored in clear (a client may send one: ignored)
    if kind.receives_webhooks and url is not None:
        stored["url"] = url
    return stored


def _conditions_json(conditions: ReflexConditions | None) -> dict[str, Any] | None:
    if conditions is None:
        return None
    conditions_module.check(conditions)
    stored: dict[str, Any] = conditions.model_dump(by_alias=True, exclude_none=True)
    return stored


async def _skill_for(db: TenantSession, raw_skill_id: str) -> Skill:
    skill_id = _uuid(raw_skill_id)
    skill = None if skill_id is None else await _skill(db, db.principal.org_id, skill_id)
    if skill is None:
        raise SkillNotFound(field="skillId")
    return skill


# --- writing -------------------------------------------------------------------------------


async def create(db: TenantSession, kijko: Kijko, data: CreateReflex) -> CreateReflexResponse:
    authorize(db.principal, Action.CREATE, policy=REFLEXES)
    kind = trigger_type(data.trigger_type)
    config = _config(kind, {k: v for k, v in data.trigger_config.items() if k not in ("secret", "url")})
    skill = await _skill_for(db, data.skill_id)
    reflex_id = uuid.uuid4()
    url = webhook_url(kijko, reflex_id) if kind.receives_webhooks else None
    secret = kind.new_secret() if kind.receives_webhooks else None
    row = await db.fetchrow(
        repository.INSERT,
        reflex_id,
        db.principal.org_id,
        skill.id,
        db.principal.user_id,
        kind.name,
        _stored_config(kind, config, url),
        _conditions_json(data.conditions),
        None if secret is None else kijko.keyring.encrypt(secret).encode(),
        data.is_active,
    )
    assert row is not None
    reflex = reflex_from_row(row)
    answer = CreateReflexResponse.model_validate(dict(reflex) | {"webhook_url": url})
    if secret is not None:  # shown this once here; later through webhook-info
        answer.trigger_config = answer.trigger_config | {"secret": secret}
    return answer


async def update(db: TenantSession, kijko: Kijko, reflex_id: UUID, data: UpdateReflex) -> Reflex:
    current = await _editable(db, reflex_id)
    given = data.model_fields_set
    kind = trigger_type(current.trigger_type)
    config = current.trigger_config
    if "trigger_config" in given and data.trigger_config is not None:
        checked = _config(kind, {k: v for k, v in data.trigger_config.items() if k not in ("secret", "url")})
        config = _stored_config(kind, checked, current.trigger_config.get("url"))
    conditions = data.conditions if "conditions" in given else current.conditions
    active = current.is_active if data.is_active is None else data.is_active
    if active and not current.is_active:
        await _require_active_skill(db, current)
    row = await db.fetchrow(
        repository.UPDATE, db.principal.org_id, current.id, config, _conditions_json(conditions), active
    )
    assert row is not None  # locked above
    return reflex_from_row(row)


async def _require_active_skill(db: TenantSession, reflex: Reflex) -> None:
    skill = await _skill(db, db.principal.org_id, reflex.skill_id)
    if skill is None or not skill.is_active:
        raise SkillInactive()


async def delete(db: TenantSession, reflex_id: UUID) -> None:
    current = await _editable(db, reflex_id, Action.DELETE)
    await db.execute(repository.DELETE, db.principal.org_id, current.id)


async def set_active(db: TenantSession, reflex_id: UUID, active: bool) -> Reflex:
    """Activate (the skill must be active; failures reset, the error cleared) or deactivate.
    ``reset-errors`` is activating too (contract: failures 0, error cleared, active)."""
    current = await _editable(db, reflex_id)
    if active:
        await _require_active_skill(db, current)
    row = await db.fetchrow(repository.SET_ACTIVE, db.principal.org_id, current.id, active)
    assert row is not None
    return reflex_from_row(row)


async def regenerate_secret(db: TenantSession, kijko: Kijko, reflex_id: UUID) -> SecretAnswer:
    current = await _editable(db, reflex_id)
    kind = trigger_type(current.trigger_type)
    if not kind.receives_webhooks:
        raise NotWebhook()
    secret = kind.new_secret()
    await db.execute(repository.ROTATE_SECRET, db.principal.org_id, current.id, kijko.keyring.encrypt(secret).encode())
    return SecretAnswer(secret=secret)


async def webhook_info(db: TenantSession, kijko: Kijko, reflex_id: UUID) -> WebhookInfo:
    """The URL, the current secret, the method and a sample payload: editors only (it shows
    the secret)."""
    current = await _load(db, reflex_id)
    authorize(db.principal, Action.EDIT, _owned(db, current), policy=REFLEXES)
    kind = trigger_type(current.trigger_type)
    if not kind.receives_webhooks:
        raise NotWebhook()
    ciphertext: bytes | None = await db.fetchval(repository.SECRET, db.principal.org_id, current.id)
    secret = kijko.keyring.decrypt(ciphertext.decode()) if ciphertext else ""
    return WebhookInfo(
        url=str(current.trigger_config.get("url") or webhook_url(kijko, current.id)),
        secret=secret,
        method="POST",
        sample_payload=kind.sample_payload(_config(kind, current.trigger_config)),
    )


# --- reading aggregates ----------------------------------------------------------------------


async def stats(db: TenantSession) -> ReflexStats:
    org_id = db.principal.org_id
    totals = await db.fetchrow(repository.STATS, org_id)
    assert totals is not None
    # Every contract key (charts iterate them) and every installed type, 0 when unused.
    by_type = dict.fromkeys((*CONTRACT_TRIGGER_TYPES, *sorted(registry.reflex_types())), 0)
    for row in await db.fetch(repository.TRIGGERS_BY_TYPE, org_id):
        by_type[row["trigger_type"]] = int(row["triggers"])
    recent = [RecentTrigger.model_validate(dict(row)) for row in await db.fetch(repository.RECENT_TRIGGERS, org_id)]
    return ReflexStats(
        total_reflexes=totals["total"],
        active_reflexes=totals["active"],
        total_triggers=totals["triggers"],
        failed_reflexes=totals["failed"],
        triggers_by_type=by_type,
        recent_triggers=recent,
    )


# --- test --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedTest:
    """A matched test, ready to run once the caller's transaction has ended."""

    org_id: UUID
    user_id: UUID
    snapshot: dict[str, Any]
    values: dict[str, Any]


async def prepare_test(
    db: TenantSession, kijko: Kijko, reflex_id: UUID, data: ReflexTest
) -> ReflexTestResult | PreparedTest:
    """Evaluate the conditions on ``payload``: the answer for a non-match, else what to run
    (the payload is the skill's input, validated against its inputSchema); over the spend cap,
    429 ``SPEND_CAP_REACHED`` like a skill test."""
    current = await _load(db, reflex_id)
    authorize(db.principal, Action.EDIT, _owned(db, current), policy=REFLEXES)
    if not conditions_module.matches(current.conditions, data.payload):
        return ReflexTestResult(success=True, conditions_match=False, error=NO_MATCH)
    _skill_row, snapshot, values = await skills.runnable(
        db, current.skill_id, skill_input(data.payload), require_active=False
    )
    refusal = await spend.refusal(db, kijko, db.principal.org_id, snapshot)
    if refusal is not None:
        raise refusal
    return PreparedTest(db.principal.org_id, db.principal.user_id, snapshot, values)


async def run_test(kijko: Kijko, open_session: OpenSession, prepared: PreparedTest) -> ReflexTestResult:
    """Run the skill inline like a skill test (kijko_core.executions.inline: not recorded as an
    execution, its provider usage counted, no transaction held while it runs)."""
    ran = await inline.run_test(
        kijko,
        open_session,
        org_id=prepared.org_id,
        user_id=prepared.user_id,
        snapshot=prepared.snapshot,
        values=prepared.values,
    )
    if ran.status != "completed":
        return ReflexTestResult(success=False, conditions_match=True, error=ran.error)
    return ReflexTestResult(
        success=True,
        conditions_match=True,
        execution_result=ExecutionResult(output=ran.output, tokens_used=ran.tokens_used, duration_ms=ran.duration_ms),
    )
