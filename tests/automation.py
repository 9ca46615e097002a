"""Creating skills through the API, for the tests of the automation engine (skills, runs,
executions, habits, reflexes).

``skill_body(**overrides)`` is a valid ``POST /api/v1/skills`` body (snake_case overrides are
written camelCase: ``prompt_template=`` → ``promptTemplate``); ``create_skill`` posts it and
returns the Skill the API answered (201 asserted).

Until the built-in ``llm`` skill type is installed (its entry point, kijko_core.llm), importing
this module registers a stand-in named ``llm`` with the same save-time rule (the model must be
priced) whose runs fail: never installed over the real one.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from pydantic.alias_generators import to_camel

from kijko_core.plugins import SkillOutcome, SkillRun, SkillRunFailed, SkillType, registry
from tests.conftest import Account

API = "/api/v1/skills"


class _LlmStandIn(SkillType):
    name: ClassVar[str] = "llm"
    version: ClassVar[str] = "0"
    description: ClassVar[str] = "Test stand-in until the llm skill type is installed"
    uses_model: ClassVar[bool] = True

    async def run(self, run: SkillRun) -> SkillOutcome:
        raise SkillRunFailed("PROVIDER_ERROR", "The llm skill type is not installed in this test run")


if "llm" not in registry.skill_types():
    registry.register_skill_type(_LlmStandIn())


def skill_body(**overrides: Any) -> dict[str, Any]:
    """A valid create body: a fresh name, a template using its one input ``topic``."""
    body: dict[str, Any] = {
        "name": f"Skill {uuid.uuid4().hex[:10]}",
        "description": "Summarises a topic",
        "category": "generation",
        "promptTemplate": "Write three sentences about {{topic}}.",
        "inputSchema": [{"name": "topic", "type": "string", "required": True}],
    }
    for key, value in overrides.items():
        body[to_camel(key) if "_" in key else key] = value
    return body


async def create_skill(client: Any, account: Account, **overrides: Any) -> dict[str, Any]:
    """The skill ``account`` creates (201 asserted), as the API answers it."""
    response = await client.post(API, json=skill_body(**overrides), headers=account.headers)
    assert response.status_code == 201, await response.get_data(as_text=True)
    skill: dict[str, Any] = await response.get_json()
    return skill


S = f"{API}/{{skill_id}}"
_BODY = {"400", "413", "415", "422"}
#: The statuses each skills operation (this part's routes) can answer besides its success and
#: 500 (tests/test_skill_routes.py triggers each; tests/test_openapi_errors.py pins the set).
SKILL_OPERATIONS: dict[tuple[str, str], set[str]] = {
    ("get", API): {"401", "403", "422"},
    ("post", API): {"401", "403", "409"} | _BODY,
    ("post", f"{API}/bulk/activate"): {"401", "403"} | _BODY,
    ("post", f"{API}/bulk/deactivate"): {"401", "403"} | _BODY,
    ("delete", f"{API}/bulk"): {"401", "403"} | _BODY,
    ("post", f"{API}/import"): {"401", "403", "409"} | _BODY,
    ("get", S): {"401", "403", "404"},
    ("get", f"{S}/full"): {"401", "403", "404"},
    ("put", S): {"401", "403", "404", "409"} | _BODY,
    ("patch", S): {"401", "403", "404", "409"} | _BODY,
    ("delete", S): {"401", "403", "404"},
    ("post", f"{S}/duplicate"): {"401", "403", "404", "409"} | _BODY,
    ("get", f"{S}/export"): {"401", "403", "404"},
}
