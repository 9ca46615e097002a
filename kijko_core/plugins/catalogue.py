"""What ``GET /api/v1/plugins`` and ``kijko plugins`` show of the loaded types (docs/plugins.md).

Members see the types they can use — names, versions, descriptions, where each comes from and
its configuration's JSON schema. Skipped plugins and their reasons (module paths, exception
messages) are the operator's business: ``kijko plugins`` and the start-up log show them.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from kijko_core.plugins import API_VERSION, registry
from kijko_core.plugins.registry import PluginReport
from kijko_core.wire import WireModel


class PluginTypeInfo(WireModel):
    name: str = Field(max_length=64)
    version: str = Field(max_length=64)
    description: str
    #: The distribution that provides it (``kijko`` for the built-in types; None when an
    #: embedding application registered it at run time) and that distribution's version.
    distribution: str | None
    distribution_version: str | None
    builtin: bool
    #: The JSON schema of the type's ``Config`` (the skill's ``typeConfig`` / the reflex's
    #: ``triggerConfig``), camelCase properties as on the wire.
    config_schema: dict[str, Any]


class SkillTypeInfo(PluginTypeInfo):
    #: Whether the skill's ``model`` is used (and must be a priced model).
    uses_model: bool


class ReflexTypeInfo(PluginTypeInfo):
    #: Whether deliveries arrive at the reflex's webhook URL (then it has a signing secret).
    receives_webhooks: bool


class ChunkerInfo(WireModel):
    name: str = Field(max_length=64)
    distribution: str | None
    distribution_version: str | None


class PluginCatalogue(WireModel):
    #: The plugin interface version this Kijko offers (``kijko_core.plugins.API_VERSION``).
    api_version: int
    skill_types: list[SkillTypeInfo]
    reflex_types: list[ReflexTypeInfo]
    chunkers: list[ChunkerInfo]


def _common(item: PluginReport, kind: Any) -> dict[str, Any]:
    return {
        "name": item.name,
        "version": item.version or "",
        "description": item.description,
        "distribution": item.distribution,
        "distribution_version": item.distribution_version,
        "builtin": item.builtin,
        "config_schema": type(kind).Config.model_json_schema(),
    }


def catalogue() -> PluginCatalogue:
    """The loaded types of this process, each list by name."""
    return PluginCatalogue(
        api_version=API_VERSION,
        skill_types=[
            SkillTypeInfo(**_common(item, kind), uses_model=kind.uses_model)
            for item, kind in registry.loaded_skill_types()
        ],
        reflex_types=[
            ReflexTypeInfo(**_common(item, kind), receives_webhooks=kind.receives_webhooks)
            for item, kind in registry.loaded_reflex_types()
        ],
        chunkers=sorted(
            (
                ChunkerInfo(
                    name=item.name, distribution=item.distribution, distribution_version=item.distribution_version
                )
                for item in registry.report()
                if item.group == registry.CHUNKERS_GROUP and item.status == "loaded"
            ),
            key=lambda chunker: chunker.name,
        ),
    )
