"""Creating skills through the API, for the tests of the automation engine (skills, runs,
executions, habits, reflexes).

``skill_body(**overrides)`` is a valid ``POST /api/v1/skills`` body (snake_case overrides are
written camelCase: ``prompt_template=`` → ``promptTemplate``); ``create_skill`` posts it and
returns the Skill the API answered (201 asserted). Skills made straight in the database, with
the ``echo`` test skill type, come from :func:`tests.runs_kit.insert_skill`.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic.alias_generators import to_camel

from tests.conftest import Account

API = "/api/v1/skills"


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
