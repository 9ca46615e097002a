"""The rules of skills (docs/skills.md): organization data every member reads; members create
and change their own, owners and admins everyone's, viewers only read (ARCHITECTURE §3,
``kijko_core.permissions.SKILLS``). A definition is checked when saved: its skill type is
installed, its ``typeConfig`` is valid for it, its model is priced when the type calls a
model, and its templates use only declared inputs. What the engine runs is a snapshot of it
(:func:`snapshot`, :func:`runnable`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import ValidationError

from kijko_core.db.session import ServiceSession, TenantSession
from kijko_core.errors import KijkoError, ValidationFailed
from kijko_core.permissions import SKILLS, Action, Grant, authorize, granted
from kijko_core.plugins import registry
from kijko_core.skills import repository, templates
from kijko_core.skills.errors import SkillInactive, SkillNameExists, SkillNotFound
from kijko_core.skills.inputs import validate_input
from kijko_core.skills.models import (
    NAME_MAX,
    RUN_FIELDS,
    CreateSkill,
    ExportedSkill,
    ImportSkill,
    InputSchemaField,
    Skill,
    SkillExport,
    SkillList,
    SkillListQuery,
    UpdateSkill,
)
from kijko_core.wire import like_pattern

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

#: How many " (n)" suffixes an import tries before it gives up with SKILL_NAME_EXISTS.
IMPORT_SUFFIXES = 100


# --- reading ----------------------------------------------------------------------------------


async def _readable(db: TenantSession, skill_id: UUID, *, for_update: bool = False) -> Skill:
    skill = await repository.get(db, db.principal.org_id, skill_id, for_update=for_update)
    if skill is None:
        raise SkillNotFound()
    return skill


async def get(db: TenantSession, skill_id: UUID) -> Skill:
    """The skill; :class:`SkillNotFound` for an unknown id and another organization's alike."""
    skill = await _readable(db, skill_id)
    authorize(db.principal, Action.READ, skill, policy=SKILLS)
    return skill


async def list_skills(db: TenantSession, query: SkillListQuery) -> SkillList:
    pattern = like_pattern(query.search) if query.search else None
    skills, total = await repository.list_page(
        db,
        db.principal.org_id,
        category=query.category,
        is_active=query.is_active,
        pattern=pattern,
        limit=query.page_size,
        offset=query.offset,
    )
    return SkillList(
        skills=skills,
        total=total,
        page=query.page,
        page_size=query.page_size,
        has_more=query.offset + len(skills) < total,
    )


# --- what runs --------------------------------------------------------------------------------


def snapshot(skill: Skill) -> dict[str, Any]:
    """What an execution runs and records (``skill_executions.snapshot``): the definition at
    this version, so a replay runs it again even if the skill changed since."""
    return snapshot_of(
        skill_id=skill.id,
        name=skill.name,
        version=skill.version,
        skill_type=skill.skill_type,
        type_config=skill.type_config,
        prompt_template=skill.prompt_template,
        system_prompt=skill.system_prompt,
        model=skill.model,
        parameters=skill.parameters,
        input_schema=skill.input_schema,
        output_format=skill.output_format,
    )


def snapshot_of(
    *,
    skill_id: UUID | None,
    name: str,
    version: int,
    skill_type: str,
    type_config: Mapping[str, Any],
    prompt_template: str,
    system_prompt: str | None,
    model: str,
    parameters: Mapping[str, Any],
    input_schema: Sequence[InputSchemaField],
    output_format: str,
) -> dict[str, Any]:
    """The snapshot's one shape, for a saved skill or an unsaved draft (``POST /skills/test``)."""
    return {
        "skillId": str(skill_id) if skill_id else None,
        "skillName": name,
        "skillVersion": version,
        "skillType": skill_type,
        "typeConfig": dict(type_config),
        "promptTemplate": prompt_template,
        "systemPrompt": system_prompt,
        "model": model,
        "parameters": dict(parameters),
        "inputSchema": [item.stored() for item in input_schema],
        "outputFormat": output_format,
    }


async def runnable(
    db: TenantSession | ServiceSession,
    skill_id: UUID,
    raw_input: Mapping[str, Any] | None,
    *,
    require_active: bool = True,
) -> tuple[Skill, dict[str, Any], dict[str, Any]]:
    """The skill, its snapshot and the validated input (defaults applied) for a run:
    :class:`SkillNotFound`, :class:`SkillInactive` (unless ``require_active`` is false: tests
    of an inactive skill) or a 422 on ``input.<name>`` / ``input`` (also when the rendered
    prompt would be too long). A service session (a habit firing, a reflex's delivery) reads
    in its organization; a member's session also checks the caller may read the skill."""
    if isinstance(db, TenantSession):
        skill = await get(db, skill_id)
    else:
        found = await repository.get(db, db.org_id, skill_id)
        if found is None:
            raise SkillNotFound()
        skill = found
    if require_active and not skill.is_active:
        raise SkillInactive()
    taken, values = prepare(skill, raw_input)
    return skill, taken, values


def prepare(skill: Skill, raw_input: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The snapshot and the validated input of a run of ``skill`` already read."""
    taken = snapshot(skill)
    return taken, validated_input(skill, taken, raw_input)


def validated_input(skill: Skill, taken: Mapping[str, Any], raw_input: Mapping[str, Any] | None) -> dict[str, Any]:
    """The input of a run of ``taken`` (the skill's snapshot), validated: a 422 on
    ``input.<name>`` / ``input``, also when the rendered prompt would be too long — checked
    before anything is recorded. The habit scheduler takes one snapshot per skill and batch."""
    values = validate_input(skill.input_schema, raw_input)
    templates.render_prompts(taken, values)
    return values


# --- checking a definition ----------------------------------------------------------------------


def check_definition(
    kijko: Kijko,
    *,
    skill_type: str,
    type_config: Mapping[str, Any],
    model: str,
    prompt_template: str,
    system_prompt: str | None,
    input_schema: Sequence[InputSchemaField],
) -> dict[str, Any]:
    """Refuse a definition that could not run (422 on the field at fault); return the
    ``typeConfig`` to store (as the type's ``Config`` validated it, defaults filled in).

    - ``skillType``: an installed skill type (``kijko_core.plugins.registry``);
    - ``typeConfig``: valid for the type's ``Config`` (``typeConfig.<key>``);
    - ``model``: priced (``MODEL_NOT_PRICED``) when the type calls a model, then the type's own
      ``check``;
    - ``promptTemplate`` / ``systemPrompt``: every placeholder's first segment is a declared
      input (a template with placeholders needs an ``inputSchema``; decision 0101).
    """
    kind = registry.skill_type(skill_type)
    try:
        config = kind.Config.model_validate(dict(type_config))
    except ValidationError as error:
        first = error.errors(include_input=False, include_url=False, include_context=False)[0]
        path = ".".join(str(part) for part in first["loc"] if not isinstance(part, int))
        field = f"typeConfig.{path}" if path else "typeConfig"
        raise ValidationFailed(f"{field}: {first['msg']}", field=field) from None
    if kind.uses_model:
        kijko.prices.price(model)
    kind.check(config, model=model, kijko=kijko)
    names = {item.name for item in input_schema}
    for field, text in (("promptTemplate", prompt_template), ("systemPrompt", system_prompt or "")):
        if not set(templates.roots(text)) <= names:
            raise ValidationFailed(
                "The template uses a placeholder that is not one of the skill's inputs (inputSchema)", field=field
            )
    stored: dict[str, Any] = config.model_dump(mode="json")
    return stored


def _checked(kijko: Kijko, values: dict[str, Any], schema: Sequence[InputSchemaField]) -> dict[str, Any]:
    """``values`` (stored form) with their typeConfig as checked."""
    values["type_config"] = check_definition(
        kijko,
        skill_type=values["skill_type"],
        type_config=values["type_config"],
        model=values["model"],
        prompt_template=values["prompt_template"],
        system_prompt=values["system_prompt"],
        input_schema=schema,
    )
    return values


def _stored(data: CreateSkill) -> dict[str, Any]:
    """A create body as the columns it is stored in."""
    return {
        "name": data.name,
        "description": data.description,
        "category": data.category,
        "skill_type": data.skill_type,
        "type_config": dict(data.type_config),
        "prompt_template": data.prompt_template,
        "system_prompt": data.system_prompt,
        "model": data.model,
        "parameters": data.parameters.stored(),
        "input_schema": [item.stored() for item in data.input_schema],
        "output_format": data.output_format,
        "is_active": data.is_active,
    }


def _definition(skill: Skill) -> dict[str, Any]:
    """A stored skill's columns, in the form :func:`_stored` writes."""
    return {
        "name": skill.name,
        "description": skill.description,
        "category": skill.category,
        "skill_type": skill.skill_type,
        "type_config": dict(skill.type_config),
        "prompt_template": skill.prompt_template,
        "system_prompt": skill.system_prompt,
        "model": skill.model,
        "parameters": dict(skill.parameters),
        "input_schema": [item.stored() for item in skill.input_schema],
        "output_format": skill.output_format,
        "is_active": skill.is_active,
    }


# --- writing ----------------------------------------------------------------------------------


async def create(db: TenantSession, kijko: Kijko, data: CreateSkill) -> Skill:
    principal = db.principal
    authorize(principal, Action.CREATE, policy=SKILLS)
    values = _checked(kijko, _stored(data), data.input_schema)
    return await repository.insert(db, principal.org_id, principal.user_id, values)


async def update(db: TenantSession, kijko: Kijko, skill_id: UUID, data: UpdateSkill) -> Skill:
    current = await _readable(db, skill_id, for_update=True)
    authorize(db.principal, Action.EDIT, current, policy=SKILLS)
    given = {name: getattr(data, name) for name in data.model_fields_set}
    if "parameters" in given:
        given["parameters"] = data.parameters.stored()
    if "input_schema" in given:
        given["input_schema"] = [item.stored() for item in data.input_schema]
    if "type_config" in given:
        given["type_config"] = dict(data.type_config)
    before = _definition(current)
    after = before | given
    changes = {name: value for name, value in given.items() if value != before[name]}
    if changes.keys() & set(RUN_FIELDS):
        schema = data.input_schema if "input_schema" in given else current.input_schema
        after = _checked(kijko, after, schema)
        changes |= {"type_config": after["type_config"]} if after["type_config"] != before["type_config"] else {}
        if any(after[name] != before[name] for name in RUN_FIELDS):
            changes["version"] = current.version + 1
    if not changes:
        return current
    skill = await repository.update(db, db.principal.org_id, current.id, changes)
    if skill is None:  # unreachable while the row is locked; kept as the repository's contract
        raise SkillNotFound()
    return skill


async def delete(db: TenantSession, skill_id: UUID) -> None:
    """Delete a skill: its habits and reflexes go with it; its executions stay, without it."""
    current = await _readable(db, skill_id)
    authorize(db.principal, Action.DELETE, current, policy=SKILLS)
    if not await repository.delete(db, db.principal.org_id, current.id):
        raise SkillNotFound()


def _copy_name(name: str) -> str:
    suffix = " (Copy)"
    return name[: NAME_MAX - len(suffix)] + suffix


async def duplicate(db: TenantSession, kijko: Kijko, skill_id: UUID, new_name: str | None) -> Skill:
    """A copy of a readable skill, created by (and so editable by) the caller, counters at 0."""
    source = await get(db, skill_id)
    principal = db.principal
    authorize(principal, Action.CREATE, policy=SKILLS)
    values = _definition(source) | {"name": new_name or _copy_name(source.name)}
    values = _checked(kijko, values, source.input_schema)
    return await repository.insert(db, principal.org_id, principal.user_id, values)


async def export(db: TenantSession, skill_id: UUID) -> SkillExport:
    skill = await get(db, skill_id)
    return SkillExport(skill=ExportedSkill.model_validate(_definition(skill)))


async def import_skill(db: TenantSession, kijko: Kijko, data: ImportSkill) -> Skill:
    """Create from an export: validated like a create; a name the caller already uses gets the
    first free ``" (n)"`` suffix; counters start at 0."""
    principal = db.principal
    authorize(principal, Action.CREATE, policy=SKILLS)
    try:
        values = _checked(kijko, _stored(data.skill), data.skill.input_schema)
    except KijkoError as error:
        # The definition is under "skill" in this body: name the field where it is.
        if error.field is not None:
            error.field = f"skill.{error.field}"
        raise
    values["name"] = await _free_name(db, values["name"])
    return await repository.insert(db, principal.org_id, principal.user_id, values)


async def _free_name(db: TenantSession, name: str) -> str:
    candidates = [name]
    for number in range(1, IMPORT_SUFFIXES + 1):
        suffix = f" ({number})"
        candidates.append(name[: NAME_MAX - len(suffix)] + suffix)
    taken = await repository.taken_names(db, db.principal.org_id, db.principal.user_id, candidates)
    for candidate in candidates:
        if candidate.lower() not in taken:
            return candidate
    raise SkillNameExists()


def _ids(raw: Sequence[str]) -> list[UUID]:
    """The well-formed ids among ``raw``; malformed ones are skipped like unknown ones."""
    ids: list[UUID] = []
    for value in raw:
        try:
            ids.append(UUID(value))
        except ValueError:
            continue
    return ids


async def bulk_set_active(db: TenantSession, raw_ids: Sequence[str], active: bool) -> int:
    """Activate or deactivate the given skills the caller may edit (decision 0102): a member's
    own, an owner's or admin's any of the organization's; the others are skipped, not refused.
    A viewer, who may edit none, gets 403. Answers how many skills the caller could act on."""
    principal = db.principal
    authorize(principal, Action.EDIT, policy=SKILLS)
    others = granted(principal, Grant.EDIT_OTHERS)
    return await repository.bulk_set_active(
        db, principal.org_id, _ids(raw_ids), others=others, user_id=principal.user_id, active=active
    )


async def bulk_delete(db: TenantSession, raw_ids: Sequence[str]) -> int:
    """Delete the given skills the caller may delete (as :func:`bulk_set_active`)."""
    principal = db.principal
    authorize(principal, Action.DELETE, policy=SKILLS)
    others = granted(principal, Grant.EDIT_OTHERS)
    return await repository.bulk_delete(db, principal.org_id, _ids(raw_ids), others=others, user_id=principal.user_id)
