"""The skills domain's errors (contract §2.3)."""

from __future__ import annotations

from kijko_core.errors import Conflict, NotFound


class SkillNotFound(NotFound):
    code = "SKILL_NOT_FOUND"
    default_message = "Skill not found"


class SkillNameExists(Conflict):
    code = "SKILL_NAME_EXISTS"
    default_message = "You already have a skill with this name"

    def __init__(self) -> None:
        super().__init__(field="name")


class SkillInactive(Conflict):
    code = "SKILL_INACTIVE"
    default_message = "The skill is inactive"
