"""The installed skill and reflex types, found through their entry-point groups.

FIRST VERSION (pre-work for issue 8): loads every entry point of both groups once per process.
The plugins part (helper F) owns this module: load reports, skipping a broken plugin, the API
version check, ``kijko plugins`` and ``GET /api/v1/plugins`` build on it. Keep the functions'
names and signatures: the engine, skills and reflexes call them.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from kijko_core.plugins import PluginError, ReflexType, SkillType

SKILL_TYPES_GROUP = "kijko.skill_types"
REFLEX_TYPES_GROUP = "kijko.reflex_types"

_skill_types: dict[str, SkillType] | None = None
_reflex_types: dict[str, ReflexType] | None = None


def _load() -> None:
    global _skill_types, _reflex_types
    if _skill_types is None:
        _skill_types = {}
        for entry in entry_points(group=SKILL_TYPES_GROUP):
            cls = entry.load()
            _skill_types[cls.name] = cls()
    if _reflex_types is None:
        _reflex_types = {}
        for entry in entry_points(group=REFLEX_TYPES_GROUP):
            cls = entry.load()
            _reflex_types[cls.name] = cls()


def skill_types() -> dict[str, SkillType]:
    _load()
    assert _skill_types is not None
    return dict(_skill_types)


def reflex_types() -> dict[str, ReflexType]:
    _load()
    assert _reflex_types is not None
    return dict(_reflex_types)


def skill_type(name: str) -> SkillType:
    """The installed skill type ``name``; :class:`PluginError` (422, field ``skillType``) if none."""
    found = skill_types().get(name)
    if found is None:
        raise PluginError("This skill type is not available", field="skillType")
    return found


def reflex_type(name: str) -> ReflexType:
    """The installed reflex type ``name``; :class:`PluginError` (422, field ``triggerType``)."""
    found = reflex_types().get(name)
    if found is None:
        raise PluginError("This trigger type is not available", field="triggerType", code="TRIGGER_TYPE_UNAVAILABLE")
    return found


def register_skill_type(instance: SkillType) -> None:
    """Add a type at run time (tests; embedding applications)."""
    _load()
    assert _skill_types is not None
    _skill_types[instance.name] = instance


def register_reflex_type(instance: ReflexType) -> None:
    _load()
    assert _reflex_types is not None
    _reflex_types[instance.name] = instance
