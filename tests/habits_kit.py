"""Habits in tests: a habit made through the API (with a skill of its own), and the statuses
each habits operation documents (tests/test_habit_routes.py triggers each;
tests/test_openapi_errors.py pins the set)."""

from __future__ import annotations

from typing import Any

from tests.automation import create_skill
from tests.conftest import Account

API = "/api/v1/habits"
H = f"{API}/{{habit_id}}"
_BODY = {"400", "413", "415", "422"}
HABIT_OPERATIONS: dict[tuple[str, str], set[str]] = {
    ("get", API): {"401", "403", "422"},
    ("post", API): {"401", "403", "404"} | _BODY,
    ("get", f"{API}/stats"): {"401", "403"},
    ("post", f"{API}/validate-cron"): {"401", "403"} | _BODY,
    ("get", H): {"401", "403", "404"},
    ("get", f"{H}/full"): {"401", "403", "404"},
    ("put", H): {"401", "403", "404"} | _BODY,
    ("patch", H): {"401", "403", "404"} | _BODY,
    ("delete", H): {"401", "403", "404"},
    ("post", f"{H}/activate"): {"401", "403", "404"},
    ("post", f"{H}/deactivate"): {"401", "403", "404"},
    ("post", f"{H}/reset-errors"): {"401", "403", "404"},
    ("post", f"{H}/run-now"): {"401", "403", "404", "409", "422"},
}


def habit_body(skill_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "skillId": skill_id,
        "scheduleCron": "0 9 * * *",
        "timezone": "Europe/Amsterdam",
        "config": {"topic": "the weather"},
    }
    return body | overrides


async def create_habit(
    client: Any, account: Account, skill: dict[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """A habit ``account`` creates (201 asserted) on ``skill`` (a new one of theirs if None)."""
    skill = skill or await create_skill(client, account)
    response = await client.post(API, json=habit_body(skill["id"], **overrides), headers=account.headers)
    assert response.status_code == 201, await response.get_data(as_text=True)
    habit: dict[str, Any] = await response.get_json()
    return habit
