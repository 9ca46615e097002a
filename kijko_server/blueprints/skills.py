"""Contract §2.3: skills — CRUD, list, duplicate, bulk actions, export and import.

Running (``/execute``, ``/test``), statistics and a skill's executions are other blueprints
(runs, executions). Static paths (``/bulk/…``, ``/import``) are routed before ``/<skill_id>``.
"""

from __future__ import annotations

from uuid import UUID

from quart import Blueprint
from quart_schema import validate_querystring, validate_request

from kijko_core.errors import ValidationFailed
from kijko_core.plugins import PluginError
from kijko_core.prices import ModelNotPriced
from kijko_core.skills import full, service
from kijko_core.skills.errors import SkillNameExists, SkillNotFound
from kijko_core.skills.models import (
    BulkResult,
    BulkSkills,
    CreateSkill,
    DuplicateSkill,
    ImportSkill,
    Skill,
    SkillExport,
    SkillList,
    SkillListQuery,
    UpdateSkill,
)
from kijko_core.wire import Success
from kijko_server.openapi import responds
from kijko_server.paths import entity_id
from kijko_server.responses import validate_response
from kijko_server.uow import TENANT_ERRORS, runtime, tenant

bp = Blueprint("skills", __name__, url_prefix="/api/v1/skills")

#: What saving a definition can refuse besides the body's own validation (docs/skills.md).
DEFINITION_ERRORS = (SkillNameExists, ModelNotPriced, PluginError, ValidationFailed)


def parse_skill_id(raw: str) -> UUID:
    """A skill id in a path: malformed is the same 404 as unknown."""
    return entity_id(raw, SkillNotFound)


@bp.get("")
@responds(*TENANT_ERRORS)
@validate_querystring(SkillListQuery)
@validate_response(SkillList)
async def skills_list(query_args: SkillListQuery) -> SkillList:
    """The organization's skills, most recently changed first, with optional filters."""
    async with tenant(readonly=True) as db:
        return await service.list_skills(db, query_args)


@bp.post("")
@responds(*TENANT_ERRORS, *DEFINITION_ERRORS)  # 403 for viewers
@validate_request(CreateSkill)
@validate_response(Skill, 201)
async def skills_create(data: CreateSkill) -> tuple[Skill, int]:
    """Create a skill (the contract's defaults for what is left out)."""
    async with tenant() as db:
        return await service.create(db, runtime(), data), 201


@bp.post("/bulk/activate")
@responds(*TENANT_ERRORS)
@validate_request(BulkSkills)
@validate_response(BulkResult)
async def skills_bulk_activate(data: BulkSkills) -> BulkResult:
    """Activate the listed skills the caller may edit; others are skipped."""
    return await _bulk_set_active(data, True)


@bp.post("/bulk/deactivate")
@responds(*TENANT_ERRORS)
@validate_request(BulkSkills)
@validate_response(BulkResult)
async def skills_bulk_deactivate(data: BulkSkills) -> BulkResult:
    """Deactivate the listed skills the caller may edit; others are skipped."""
    return await _bulk_set_active(data, False)


async def _bulk_set_active(data: BulkSkills, active: bool) -> BulkResult:
    async with tenant() as db:
        return BulkResult(count=await service.bulk_set_active(db, data.skill_ids, active))


@bp.delete("/bulk")
@responds(*TENANT_ERRORS)
@validate_request(BulkSkills)
@validate_response(BulkResult)
async def skills_bulk_delete(data: BulkSkills) -> BulkResult:
    """Delete the listed skills the caller may delete; others are skipped."""
    async with tenant() as db:
        return BulkResult(count=await service.bulk_delete(db, data.skill_ids))


@bp.post("/import")
@responds(*TENANT_ERRORS, *DEFINITION_ERRORS)
@validate_request(ImportSkill)
@validate_response(Skill, 201)
async def skills_import(data: ImportSkill) -> tuple[Skill, int]:
    """Create a skill from an export (version "1.0"); a taken name gets a " (n)" suffix."""
    async with tenant() as db:
        return await service.import_skill(db, runtime(), data), 201


@bp.get("/<skill_id>")
@responds(*TENANT_ERRORS, SkillNotFound)
@validate_response(Skill)
async def skills_get(skill_id: str) -> Skill:
    """One skill."""
    async with tenant(readonly=True) as db:
        return await service.get(db, parse_skill_id(skill_id))


@bp.get("/<skill_id>/full")
@responds(*TENANT_ERRORS, SkillNotFound)
@validate_response(full.SkillWithRelations)
async def skills_get_full(skill_id: str) -> full.SkillWithRelations:
    """One skill with its habits, reflexes and 10 newest executions."""
    async with tenant(readonly=True) as db:
        return await full.get_full(db, parse_skill_id(skill_id))


@bp.route("/<skill_id>", methods=["PUT", "PATCH"])
@responds(*TENANT_ERRORS, SkillNotFound, *DEFINITION_ERRORS)
@validate_request(UpdateSkill)
@validate_response(Skill)
async def skills_update(skill_id: str, data: UpdateSkill) -> Skill:
    """Change the fields given; absent fields stay, null clears description and systemPrompt."""
    async with tenant() as db:
        return await service.update(db, runtime(), parse_skill_id(skill_id), data)


@bp.delete("/<skill_id>")
@responds(*TENANT_ERRORS, SkillNotFound)
@validate_response(Success)
async def skills_delete(skill_id: str) -> Success:
    """Delete a skill with its habits and reflexes; its executions stay, without it."""
    async with tenant() as db:
        await service.delete(db, parse_skill_id(skill_id))
    return Success()


@bp.post("/<skill_id>/duplicate")
@responds(*TENANT_ERRORS, SkillNotFound, *DEFINITION_ERRORS)
@validate_request(DuplicateSkill)
@validate_response(Skill, 201)
async def skills_duplicate(skill_id: str, data: DuplicateSkill) -> tuple[Skill, int]:
    """Copy a skill as the caller's own (name default "<name> (Copy)"), counters at 0."""
    async with tenant() as db:
        return await service.duplicate(db, runtime(), parse_skill_id(skill_id), data.new_name), 201


@bp.get("/<skill_id>/export")
@responds(*TENANT_ERRORS, SkillNotFound)
@validate_response(SkillExport)
async def skills_export(skill_id: str) -> SkillExport:
    """The skill's definition without its identity and counters, as ``{skill, version}``."""
    async with tenant(readonly=True) as db:
        return await service.export(db, parse_skill_id(skill_id))
