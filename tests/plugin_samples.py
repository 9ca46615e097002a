"""Skill and reflex types for the plugin-loading tests (tests/test_plugins.py): good ones and
one per way a plugin can be broken. They are declared through test-only ``.dist-info``
folders, the way an installed distribution declares them."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from kijko_core.plugins import Delivery, ReflexType, SignatureInvalid, SkillOutcome, SkillRun, SkillType


class EchoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prefix: str = Field(default="", max_length=20)


class EchoSkill(SkillType):
    """Answers its prompt, prefixed."""

    name = "echo"
    version = "1.2.0"
    description = "Answers its prompt"
    Config = EchoConfig

    async def run(self, run: SkillRun) -> SkillOutcome:
        assert isinstance(run.config, EchoConfig)
        return SkillOutcome(output=run.config.prefix + run.prompt)


class SameNameSkill(EchoSkill):
    """Another distribution's ``echo``."""


class OldApiSkill(EchoSkill):
    name = "old"
    api_version = 0


class NoVersionSkill(SkillType):
    name = "unversioned"

    async def run(self, run: SkillRun) -> SkillOutcome:
        return SkillOutcome(output="")


class NotAModelConfig:
    pass


class BadConfigSkill(EchoSkill):
    name = "badconfig"
    Config = NotAModelConfig  # type: ignore[assignment]


class FailingInitSkill(EchoSkill):
    name = "failing"

    def __init__(self) -> None:
        raise RuntimeError("no connection")


class AbstractSkill(SkillType):
    """Forgets to implement run()."""

    name = "abstract"
    version = "1"


class NotASkill:
    name = "plain"
    version = "1"


class PingReflex(ReflexType):
    name = "ping"
    version = "0.1"
    receives_webhooks = True

    def new_secret(self) -> str:
        return "s"

    def verify(self, delivery: Delivery, secrets: Any) -> str:
        if delivery.headers.get("x-secret") not in secrets:
            raise SignatureInvalid()
        return "1"

    sample: ClassVar[dict[str, Any]] = {}


class LineChunker:
    def chunk(self, file: Any, options: Any) -> Any:
        return iter(())


class RouteSampleSkill(EchoSkill):
    """Registered at run time by the route test (as an embedding application would)."""

    name = "sample-echo"


class RouteSampleReflex(PingReflex):
    name = "sample-ping"
    description = "Pings"
