"""Extension points of the automation engine (docs/plugins.md): skill types and reflex types.

A plugin is a distribution that declares, in its entry points, a class deriving from
:class:`SkillType` (group ``kijko.skill_types``) or :class:`ReflexType` (group
``kijko.reflex_types``). The built-in types (``llm``; ``webhook``, ``event``) are declared the
same way by Kijko's own ``setup.cfg``: one path for all.

The base classes are versioned (:data:`API_VERSION`): a plugin built for another version is
reported and skipped at start-up, never half-loaded. Each type carries a pydantic model of its
configuration (``Config``), whose JSON schema ``GET /api/v1/plugins`` publishes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from kijko_core.errors import KijkoError

if TYPE_CHECKING:
    from kijko_core.runtime import Kijko

#: The version of the plugin interface this Kijko offers. A type declares the version it was
#: written for in ``api_version``; a different one is refused at load time.
API_VERSION = 1


class EmptyConfig(BaseModel):
    """The configuration of a type that needs none."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------------
# Skill types


@dataclass(frozen=True, slots=True)
class SkillRun:
    """One run of a skill, as its type receives it: the snapshot that runs, already rendered."""

    organization_id: UUID
    #: None for tests (``POST /skills/test``, ``/skills/:id/test``), which are not executions.
    execution_id: UUID | None
    #: The rendered prompt template (substitution only, ``kijko_core.skills.templates``).
    prompt: str
    system_prompt: str | None
    model: str
    #: The skill's ``parameters`` (snake_case keys as on the wire: temperature, max_tokens…).
    parameters: Mapping[str, Any]
    #: The skill type's validated configuration (an instance of its ``Config``).
    config: BaseModel
    #: The validated input (defaults applied).
    input: Mapping[str, Any]
    output_format: str
    #: The running Kijko: settings, the egress-guarded client (``kijko.egress``), prices…
    kijko: Kijko
    #: Per-run services the engine offers (e.g. resolved provider keys); type-specific.
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SkillOutcome:
    """What a successful run produced. Costs are exact (``Decimal``), in ``currency``."""

    output: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal | None = None
    currency: str | None = None
    #: Whose key paid for a provider call: the platform's (capped) or the organization's.
    key_source: Literal["platform", "organization"] | None = None
    provider: str | None = None
    model: str | None = None


class SkillRunFailed(Exception):
    """A run that failed for a reason the execution records (``errorCode``, ``errorMessage``).

    ``code`` is one of the documented codes (docs/executions.md): ``PROVIDER_AUTH_FAILED``,
    ``PROVIDER_RATE_LIMITED``, ``PROVIDER_ERROR``, ``MODEL_NOT_PRICED``, ``TIMEOUT``… ``message``
    is shown to the organization: never a secret, never the provider's raw body. Tokens already
    consumed (a call that failed after streaming, a cancelled one) are reported if known.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.retryable = retryable


class SkillType(ABC):
    """How a skill runs. Subclass it, set the class attributes, implement :meth:`run`."""

    #: The plugin interface version this type was written for.
    api_version: ClassVar[int] = API_VERSION
    #: The ``skillType`` value that selects it (lowercase, ``[a-z][a-z0-9_.-]*``).
    name: ClassVar[str]
    #: The type's own version (shown by ``kijko plugins`` and ``GET /plugins``).
    version: ClassVar[str]
    description: ClassVar[str] = ""
    #: The skill's ``typeConfig`` (validated when the skill is saved).
    Config: ClassVar[type[BaseModel]] = EmptyConfig
    #: Whether ``model`` names a priced LLM model (checked against the price table on save).
    uses_model: ClassVar[bool] = False

    def check(self, config: BaseModel, *, model: str, kijko: Kijko) -> None:
        """Further checks when a skill is saved (after ``Config`` validated); raise a
        :class:`~kijko_core.errors.KijkoError` (a 422 with its ``field``) to refuse it."""
        return None

    @abstractmethod
    async def run(self, run: SkillRun) -> SkillOutcome:
        """Run once. Raise :class:`SkillRunFailed` for a failure to record; the task is
        cancelled (``asyncio.CancelledError``) when the execution is cancelled or times out."""


# ---------------------------------------------------------------------------------------------
# Reflex types


@dataclass(frozen=True, slots=True)
class Delivery:
    """One inbound webhook request, before anything is parsed: headers (names lowercased), the
    raw body (already size-capped) and when it arrived (the database's clock)."""

    headers: Mapping[str, str]
    body: bytes
    received_at: datetime
    method: str = "POST"


class SignatureInvalid(Exception):
    """The delivery is not signed by a current secret (or its timestamp is out of tolerance).
    The receiver answers every such case with the same 401 as an unknown reflex."""


class ReflexType(ABC):
    """What fires a reflex. Webhook-receiving types verify and parse deliveries; the others
    (``event``) are fired by Kijko itself."""

    api_version: ClassVar[int] = API_VERSION
    #: The ``triggerType`` value that selects it.
    name: ClassVar[str]
    version: ClassVar[str]
    description: ClassVar[str] = ""
    #: The reflex's ``triggerConfig`` (validated on create and update).
    Config: ClassVar[type[BaseModel]] = EmptyConfig
    #: Whether deliveries arrive at ``/api/v1/webhooks/reflex/{id}`` (then it has a secret).
    receives_webhooks: ClassVar[bool] = False

    def new_secret(self) -> str:
        """A fresh signing secret for a webhook type (shown to the user, stored encrypted)."""
        raise NotImplementedError(f"reflex type {self.name!r} has no secret")

    def verify(self, delivery: Delivery, secrets: Sequence[str]) -> str:
        """Check the delivery's signature against any of ``secrets`` (the current one and, for
        24 h after a regeneration, the previous one) **before** its body is parsed; return the
        delivery id that deduplicates it. Raise :class:`SignatureInvalid` otherwise."""
        raise NotImplementedError(f"reflex type {self.name!r} receives no webhooks")

    def payload(self, delivery: Delivery) -> Any:
        """The delivery's payload for the conditions and the skill's input (after ``verify``).
        Raise :class:`~kijko_core.errors.KijkoError` (4xx) for a body that cannot be read."""
        raise NotImplementedError(f"reflex type {self.name!r} receives no webhooks")

    def accepts(self, config: BaseModel, delivery: Delivery, payload: Any) -> bool:
        """A type's own filter before the reflex's conditions (e.g. GitHub's event names)."""
        return True

    def sample_payload(self, config: BaseModel) -> dict[str, Any]:
        """An example payload for ``GET /reflexes/:id/webhook-info``."""
        return {}


class PluginError(KijkoError):
    """A type that is not installed, or was skipped at load time (422 on the API)."""

    status = 422
    code = "VALIDATION_ERROR"
