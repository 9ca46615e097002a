"""Projects: the reference slice (PROJ-01..07, PROJ-21)."""

from __future__ import annotations

from typing import Any

from tests.conftest import Account


async def create(client: Any, account: Account, **body: Any) -> Any:
    payload = {"name": "Kijko core", "type": "repository", **body}
    return await client.post("/api/v1/projects", json=payload, headers=account.headers)


async def test_create_returns_draft_project_and_next_steps(client: Any, alice: Account) -> None:
    response = await create(client, alice, description="The backend")
    assert response.status_code == 201
    body = await response.get_json()
    project = body["project"]
    assert body["nextSteps"] == ["source_config", "team_setup", "settings", "review"]
    assert project["status"] == "draft"
    assert project["userId"] == alice.user_id
    assert project["organizationId"] == alice.org_id
    assert project["privacy"] == "private" and project["chunkingStrategy"] == "semantic"
    assert project["includeMetadata"] is True and project["anonymizeSecrets"] is True
    assert project["totalRepos"] == 0 and project["totalFiles"] == 0
    assert project["createdAt"].endswith("Z")


async def test_names_are_unique_per_organization_case_insensitively(
    client: Any, alice: Account, bob: Account
) -> None:
    assert (await create(client, alice, name="Alpha")).status_code == 201
    duplicate = await create(client, alice, name="ALPHA")
    assert duplicate.status_code == 409
    assert (await duplicate.get_json()) == {
        "detail": "A project with this name already exists",
        "code": "PROJECT_EXISTS",
        "message": "A project with this name already exists",
        "field": "name",
    }
    # Another organization may use the same name.
    assert (await create(client, bob, name="alpha")).status_code == 201
