"""Projects: the reference slice (PROJ-01..07, PROJ-21)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from kijko_core.auth.principal import TokenIdentity
from kijko_core.db.session import Session, system_session
from kijko_core.projects.models import ProjectNotFound
from kijko_core.runtime import Kijko
from kijko_server.paths import entity_id
from tests.conftest import Account
from tests.memberships import add_member


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


async def test_names_are_unique_per_organization_case_insensitively(client: Any, alice: Account, bob: Account) -> None:
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


# --- helpers ---------------------------------------------------------------------------------

API = "/api/v1/projects"


async def created(client: Any, account: Account, **body: Any) -> dict[str, Any]:
    response = await create(client, account, **body)
    assert response.status_code == 201, await response.get_data(as_text=True)
    return (await response.get_json())["project"]


async def system_sql(kijko: Kijko, query: str, *args: Any) -> Any:
    """Set up server-managed state (status, counters, timestamps) the way a worker would."""
    async with system_session(kijko.system_db) as db:
        return await db.fetch(query, *args)


def identity(account: Account) -> TokenIdentity:
    """The verified identity a request of ``account`` would carry."""
    return account.identity


def when(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


# --- get, full, update, delete -------------------------------------------------------------------


async def test_get_returns_the_project_as_created(client: Any, alice: Account) -> None:
    project = await created(client, alice, description="Docs", privacy="shared", includeMetadata=False)
    response = await client.get(f"{API}/{project['id']}", headers=alice.headers)
    assert response.status_code == 200
    assert await response.get_json() == project
    assert project["description"] == "Docs" and project["privacy"] == "shared"
    assert project["includeMetadata"] is False


async def test_full_has_the_creator_as_its_admin_member(client: Any, alice: Account) -> None:
    project = await created(client, alice)
    response = await client.get(f"{API}/{project['id']}/full", headers=alice.headers)
    assert response.status_code == 200
    body = await response.get_json()
    assert body["repositories"] == []
    [member] = body["members"]
    assert (member["userId"], member["email"], member["role"]) == (alice.user_id, alice.email, "admin")
    assert member["projectId"] == project["id"] and member["acceptedAt"] is not None
    assert body["currentIngestion"] is None
    assert {key: body[key] for key in project} == project


async def test_put_changes_only_the_fields_given_and_bumps_updated_at(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    project = await created(client, alice, description="Before")
    await system_sql(
        kijko,
        "UPDATE kijko.projects SET updated_at = updated_at - interval '1 hour' WHERE id = $1",
        UUID(project["id"]),
    )
    before = await (await client.get(f"{API}/{project['id']}", headers=alice.headers)).get_json()
    response = await client.put(
        f"{API}/{project['id']}",
        json={"name": "Renamed", "chunkingStrategy": "fixed", "anonymizeSecrets": False},
        headers=alice.headers,
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    after = await response.get_json()
    assert after["name"] == "Renamed"
    assert after["chunkingStrategy"] == "fixed" and after["anonymizeSecrets"] is False
    unchanged = {"description", "type", "privacy", "includeMetadata", "createdAt", "status", "id"}
    assert {key: after[key] for key in unchanged} == {key: before[key] for key in unchanged}
    assert when(after["updatedAt"]) > when(before["updatedAt"])
    again = await (await client.get(f"{API}/{project['id']}", headers=alice.headers)).get_json()
    assert again == after


async def test_patch_is_an_alias_of_put(client: Any, alice: Account) -> None:
    project = await created(client, alice)
    response = await client.patch(
        f"{API}/{project['id']}", json={"privacy": "shared", "type": "files"}, headers=alice.headers
    )
    assert response.status_code == 200
    body = await response.get_json()
    assert body["privacy"] == "shared" and body["type"] == "files"
    assert body["name"] == project["name"]


async def test_server_managed_fields_in_the_body_are_ignored(client: Any, alice: Account, bob: Account) -> None:
    project = await created(client, alice)
    forged = {
        "id": str(uuid4()),
        "status": "active",
        "userId": bob.user_id,
        "organizationId": bob.org_id,
        "totalRepos": 7,
        "totalFiles": 9,
        "optimizedTokens": 1000,
        "createdAt": "2001-01-01T00:00:00Z",
        "description": "Real change",
    }
    response = await client.put(f"{API}/{project['id']}", json=forged, headers=alice.headers)
    assert response.status_code == 200
    body = await response.get_json()
    assert body["description"] == "Real change"
    assert body["id"] == project["id"] and body["status"] == "draft"
    assert body["userId"] == alice.user_id and body["organizationId"] == alice.org_id
    assert body["totalRepos"] == 0 and body["totalFiles"] == 0
    assert body["optimizedTokens"] is None and body["createdAt"] == project["createdAt"]
    # Also on create.
    other = await created(client, alice, name="Second", **{k: v for k, v in forged.items() if k != "id"})
    assert other["status"] == "draft" and other["organizationId"] == alice.org_id
    assert other["userId"] == alice.user_id and other["totalRepos"] == 0


async def test_null_clears_the_description_and_absent_keeps_it(client: Any, alice: Account) -> None:
    project = await created(client, alice, description="Something")
    kept = await client.put(f"{API}/{project['id']}", json={"privacy": "shared"}, headers=alice.headers)
    assert (await kept.get_json())["description"] == "Something"
    cleared = await client.put(f"{API}/{project['id']}", json={"description": None}, headers=alice.headers)
    assert cleared.status_code == 200
    assert (await cleared.get_json())["description"] is None


async def test_update_validates_the_name_length(client: Any, alice: Account) -> None:
    project = await created(client, alice)
    for name in ("ab", "x" * 51):
        response = await client.put(f"{API}/{project['id']}", json={"name": name}, headers=alice.headers)
        assert response.status_code == 422
        body = await response.get_json()
        assert body["code"] == "VALIDATION_ERROR" and body["field"] == "name"
        assert name not in body["detail"]


async def test_rename_to_a_taken_name_conflicts(client: Any, alice: Account) -> None:
    await created(client, alice, name="Taken")
    project = await created(client, alice, name="Free")
    response = await client.put(f"{API}/{project['id']}", json={"name": "TAKEN"}, headers=alice.headers)
    assert response.status_code == 409
    body = await response.get_json()
    assert body["code"] == "PROJECT_EXISTS" and body["field"] == "name"
    # Renaming a project to another spelling of its own name is not a conflict.
    response = await client.put(f"{API}/{project['id']}", json={"name": "FREE"}, headers=alice.headers)
    assert response.status_code == 200 and (await response.get_json())["name"] == "FREE"


async def test_delete_then_the_project_is_gone(client: Any, alice: Account) -> None:
    project = await created(client, alice)
    response = await client.delete(f"{API}/{project['id']}", headers=alice.headers)
    assert response.status_code == 200
    assert await response.get_json() == {"success": True}
    for method in ("get", "delete"):
        gone = await getattr(client, method)(f"{API}/{project['id']}", headers=alice.headers)
        assert gone.status_code == 404
        assert (await gone.get_json())["code"] == "PROJECT_NOT_FOUND"
    listed = await (await client.get(API, headers=alice.headers)).get_json()
    assert listed["total"] == 0


# --- create validation, not found ---------------------------------------------------------------


async def test_create_validates_name_and_type(client: Any, alice: Account) -> None:
    for body, field in (
        ({"name": "ab"}, "name"),
        ({"name": "x" * 51}, "name"),
        ({"name": "   ab   "}, "name"),
        ({"type": "spaceship"}, "type"),
        ({"privacy": "public"}, "privacy"),
    ):
        response = await create(client, alice, **body)
        assert response.status_code == 422, body
        error = await response.get_json()
        assert error["code"] == "VALIDATION_ERROR" and error["field"] == field, error
    missing = await client.post(API, json={"name": "No type"}, headers=alice.headers)
    assert missing.status_code == 422 and (await missing.get_json())["field"] == "type"
    # Exactly 3 and exactly 50 characters are fine.
    assert (await create(client, alice, name="abc")).status_code == 201
    assert (await create(client, alice, name="y" * 50)).status_code == 201


NOT_FOUND = {
    "detail": "Project not found",
    "code": "PROJECT_NOT_FOUND",
    "message": "Project not found",
}


@pytest.mark.parametrize("project_id", [None, "not-a-uuid", "..", "12345", "00000000-0000-0000-0000-00000000000g"])
async def test_unknown_and_malformed_ids_are_project_not_found(
    client: Any, alice: Account, project_id: str | None
) -> None:
    target = project_id or str(uuid4())
    for method, suffix, body in (
        ("get", "", None),
        ("get", "/full", None),
        ("put", "", {"name": "Whatever"}),
        ("patch", "", {"name": "Whatever"}),
        ("delete", "", None),
    ):
        response = await getattr(client, method)(
            f"{API}/{target}{suffix}", headers=alice.headers, **({"json": body} if body else {})
        )
        assert response.status_code == 404, (method, suffix)
        assert await response.get_json() == NOT_FOUND


async def test_a_path_traversal_id_is_not_found_and_reaches_nothing(client: Any, kijko: Kijko, alice: Account) -> None:
    """``../../etc`` as an id: the route layer reports it like any unknown id (services take
    UUIDs only); over HTTP an encoded slash makes it no project path at all, so the router
    answers 404 before any project code runs (kept that way so wrong methods on project
    sub-resources still get 405)."""
    with pytest.raises(ProjectNotFound):
        entity_id("../../etc", ProjectNotFound)
    project = await created(client, alice)
    for method in ("get", "put", "delete"):
        response = await getattr(client, method)(
            f"{API}/..%2F..%2Fetc", headers=alice.headers, **({"json": {}} if method == "put" else {})
        )
        assert response.status_code == 404
        assert set(await response.get_json()) == {"detail", "code", "message"}
    assert (await client.get(f"{API}/{project['id']}", headers=alice.headers)).status_code == 200


# --- list ---------------------------------------------------------------------------------------


async def test_list_defaults_and_shape(client: Any, alice: Account) -> None:
    ids = [(await created(client, alice, name=f"Project {n}"))["id"] for n in range(3)]
    response = await client.get(API, headers=alice.headers)
    assert response.status_code == 200
    body = await response.get_json()
    assert set(body) == {"data", "total", "page", "pageSize", "hasMore"}
    assert (body["total"], body["page"], body["pageSize"], body["hasMore"]) == (3, 1, 20, False)
    assert [project["id"] for project in body["data"]] == ids


async def test_list_pages_in_insertion_order(client: Any, alice: Account) -> None:
    ids = [(await created(client, alice, name=f"Page {n}"))["id"] for n in range(5)]
    seen: list[str] = []
    for page in (1, 2, 3):
        response = await client.get(API, query_string={"page": page, "pageSize": 2}, headers=alice.headers)
        body = await response.get_json()
        assert (body["total"], body["page"], body["pageSize"]) == (5, page, 2)
        assert body["hasMore"] is (page < 3)
        seen += [project["id"] for project in body["data"]]
    assert seen == ids
    beyond = await (await client.get(API, query_string={"page": 9, "pageSize": 2}, headers=alice.headers)).get_json()
    assert beyond == {"data": [], "total": 5, "page": 9, "pageSize": 2, "hasMore": False}
    snake = await client.get(API, query_string={"page_size": 1}, headers=alice.headers)
    assert (await snake.get_json())["pageSize"] == 1


async def test_list_breaks_ties_on_id(client: Any, kijko: Kijko, alice: Account) -> None:
    # One transaction, one now(): identical created_at for all three.
    rows = await system_sql(
        kijko,
        "INSERT INTO kijko.projects (organization_id, user_id, name, type)"
        " SELECT $1, $2, 'Tie ' || n, 'manual' FROM generate_series(1, 3) AS n RETURNING id",
        UUID(alice.org_id),
        UUID(alice.user_id),
    )
    expected = sorted(str(row["id"]) for row in rows)
    for _ in range(2):
        body = await (await client.get(API, headers=alice.headers)).get_json()
        assert [project["id"] for project in body["data"]] == expected


@pytest.mark.parametrize("query", [{"page": 0}, {"pageSize": 0}, {"pageSize": 101}, {"page": "x"}, {"pageSize": -1}])
async def test_list_rejects_out_of_range_paging(client: Any, alice: Account, query: dict[str, Any]) -> None:
    response = await client.get(API, query_string=query, headers=alice.headers)
    assert response.status_code == 422
    body = await response.get_json()
    assert body["code"] == "VALIDATION_ERROR" and body["field"] == next(iter(query))


async def test_list_accepts_the_page_size_bounds(client: Any, alice: Account) -> None:
    await created(client, alice)
    for size in (1, 100):
        response = await client.get(API, query_string={"pageSize": size}, headers=alice.headers)
        assert response.status_code == 200 and (await response.get_json())["pageSize"] == size


async def test_search_is_case_insensitive_over_name_and_description(client: Any, alice: Account) -> None:
    by_name = await created(client, alice, name="Kijko Tools")
    by_description = await created(client, alice, name="Other", description="uses KIJKO inside")
    await created(client, alice, name="Unrelated", description="nothing here")
    body = await (await client.get(API, query_string={"search": "kIjKo"}, headers=alice.headers)).get_json()
    assert [project["id"] for project in body["data"]] == [by_name["id"], by_description["id"]]
    assert body["total"] == 2


@pytest.mark.parametrize(
    ("wanted", "decoy", "search"),
    [("Plan 50%", "Plan 500", "50%"), ("Proj a_b", "Proj axb", "a_b"), ("Back\\slash", "Backslash", "k\\s")],
)
async def test_search_treats_wildcards_literally(
    client: Any, alice: Account, wanted: str, decoy: str, search: str
) -> None:
    match = await created(client, alice, name=wanted)
    await created(client, alice, name=decoy)
    body = await (await client.get(API, query_string={"search": search}, headers=alice.headers)).get_json()
    assert [project["id"] for project in body["data"]] == [match["id"]]
    assert body["total"] == 1


async def test_list_is_one_round_trip(client: Any, kijko: Kijko, alice: Account) -> None:
    """The page and its total come from one statement (no count query, no N+1)."""
    for n in range(3):
        await created(client, alice, name=f"Trip {n}")
    statements: list[str] = []
    real_fetch, real_fetchrow, real_fetchval, real_execute = (
        Session.fetch,
        Session.fetchrow,
        Session.fetchval,
        Session.execute,
    )

    def spy(real: Any) -> Any:
        async def call(self: Session, query: str, *args: Any) -> Any:
            statements.append(query)
            return await real(self, query, *args)

        return call

    with pytest.MonkeyPatch.context() as patch:
        for name, real in (
            ("fetch", real_fetch),
            ("fetchrow", real_fetchrow),
            ("fetchval", real_fetchval),
            ("execute", real_execute),
        ):
            patch.setattr(Session, name, spy(real))
        response = await client.get(API, query_string={"pageSize": 2}, headers=alice.headers)
    assert response.status_code == 200
    assert len(statements) == 1, statements


# --- stats --------------------------------------------------------------------------------------


async def test_stats_totals_over_the_projects(client: Any, kijko: Kijko, alice: Account) -> None:
    empty = await (await client.get(f"{API}/stats", headers=alice.headers)).get_json()
    assert empty == {
        "totalProjects": 0,
        "activeProjects": 0,
        "processingProjects": 0,
        "errorProjects": 0,
        "totalTokens": 0,
        "totalFiles": 0,
    }
    projects = [(await created(client, alice, name=f"Stat {n}"))["id"] for n in range(5)]
    for project_id, status, tokens, files in zip(
        projects,
        ("active", "active", "processing", "error", "draft"),
        (100, 250, None, 7, None),
        (3, 4, 0, 1, 0),
        strict=True,
    ):
        await system_sql(
            kijko,
            "UPDATE kijko.projects SET status = $2, optimized_tokens = $3, total_files = $4 WHERE id = $1",
            UUID(project_id),
            status,
            tokens,
            files,
        )
    response = await client.get(f"{API}/stats", headers=alice.headers)
    assert response.status_code == 200
    assert await response.get_json() == {
        "totalProjects": 5,
        "activeProjects": 2,
        "processingProjects": 1,
        "errorProjects": 1,
        "totalTokens": 357,
        "totalFiles": 8,
    }


# --- validate-name ------------------------------------------------------------------------------


async def validate(client: Any, account: Account, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"{API}/validate-name", json=body, headers=account.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()


async def test_validate_name_rules(client: Any, alice: Account) -> None:
    for body, error in (
        ({}, "Project name is required"),
        ({"name": None}, "Project name is required"),
        ({"name": "   "}, "Project name is required"),
        ({"name": "ab"}, "Project name must be at least 3 characters"),
        ({"name": "x" * 51}, "Project name cannot exceed 50 characters"),
    ):
        result = await validate(client, alice, body)
        assert result["valid"] is False and result["error"] == error, body
    ok = await validate(client, alice, {"name": "Brand new"})
    assert ok["valid"] is True and not ok.get("error") and not ok.get("suggestion")


async def test_validate_name_finds_taken_names_with_a_suggestion(client: Any, kijko: Kijko, alice: Account) -> None:
    project = await created(client, alice, name="Atlas")
    taken = await validate(client, alice, {"name": "aTLAS"})
    assert taken == {
        "valid": False,
        "error": "A project with this name already exists",
        "suggestion": "aTLAS 2",
    }
    await created(client, alice, name="Atlas 2")
    assert (await validate(client, alice, {"name": "Atlas"}))["suggestion"] == "Atlas 3"
    # A rename check excludes the project itself.
    mine = await validate(client, alice, {"name": "ATLAS", "projectId": project["id"]})
    assert mine["valid"] is True
    # Another member's private project, which the owner can read, holds its name too.
    colleague = await add_member(kijko, alice.org_id, "member")
    private = await created(client, colleague, name="Hidden one")
    assert private["privacy"] == "private"
    hidden = await validate(client, alice, {"name": "hidden ONE"})
    assert hidden["valid"] is False and hidden["suggestion"] == "hidden ONE 2"
    # A malformed projectId excludes nothing.
    odd = await validate(client, alice, {"name": "Atlas", "projectId": "nope"})
    assert odd["valid"] is False


async def test_validate_name_does_not_confirm_names_the_caller_cannot_see(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    """Decision 0022: a private project of another member is invisible to a member, so its
    name is answered exactly like a free one, and suggestions skip nothing because of it;
    creating onto it is still refused by the per-organization unique index."""
    mia = await add_member(kijko, alice.org_id, "member", first_name="Mia")
    max_ = await add_member(kijko, alice.org_id, "member", first_name="Max")
    await created(client, mia, name="Secret plan")
    await created(client, mia, name="Open plan", privacy="shared")
    await created(client, mia, name="Open plan 2")  # private: must not push the suggestion on

    free = await validate(client, max_, {"name": "Nobody has this"})
    assert await validate(client, max_, {"name": "secret PLAN"}) == free
    assert free["valid"] is True
    visible = await validate(client, max_, {"name": "open plan"})
    assert visible == {"valid": False, "error": "A project with this name already exists", "suggestion": "open plan 2"}
    # The creator and the owner see it taken.
    assert (await validate(client, mia, {"name": "Secret plan"}))["valid"] is False
    assert (await validate(client, alice, {"name": "Secret plan"}))["valid"] is False

    response = await create(client, max_, name="SECRET plan")
    assert response.status_code == 409
    assert (await response.get_json())["code"] == "PROJECT_EXISTS"
    # A viewer cannot probe by creating: the role check comes before the insert.
    viewer = await add_member(kijko, alice.org_id, "viewer")
    assert await validate(client, viewer, {"name": "Secret plan"}) == free
    refused = await create(client, viewer, name="Secret plan")
    assert refused.status_code == 403 and (await refused.get_json())["code"] == "FORBIDDEN"


async def test_validate_name_suggestion_fits_the_limit(client: Any, alice: Account) -> None:
    name = "z" * 50
    await created(client, alice, name=name)
    result = await validate(client, alice, {"name": name})
    assert result["suggestion"] == "z" * 48 + " 2"


async def test_nul_characters_are_a_validation_error_not_a_crash(client: Any, alice: Account) -> None:
    """PostgreSQL cannot store NUL in text: it must be a 422 on the field, never a 500."""
    project = await created(client, alice)
    for method, path, kwargs, field in (
        ("post", API, {"json": {"name": "ab\x00cd", "type": "manual"}}, "name"),
        ("post", API, {"json": {"name": "Fine", "type": "manual", "description": "x\x00"}}, "description"),
        ("put", f"{API}/{project['id']}", {"json": {"name": "ab\x00cd"}}, "name"),
        ("get", API, {"query_string": {"search": "a\x00b"}}, "search"),
        ("post", f"{API}/validate-name", {"json": {"name": "ab\x00cd"}}, "name"),
    ):
        response = await getattr(client, method)(path, headers=alice.headers, **kwargs)
        assert response.status_code == 422, (path, await response.get_data(as_text=True))
        body = await response.get_json()
        assert body["code"] == "VALIDATION_ERROR" and body["field"] == field
        assert "\x00" not in body["detail"]


async def test_nul_characters_in_auth_bodies_are_a_validation_error(client: Any) -> None:
    """The same rule on the snake_case auth models (kept here with the projects NUL test)."""
    for path, body, field in (
        (
            "/api/v1/auth/signup",
            {"email": "n@example.com", "password": "correct horse battery", "first_name": "A\x00", "last_name": "B"},
            "first_name",
        ),
        ("/api/v1/auth/login", {"email": "n\x00@example.com", "password": "whatever"}, "email"),
    ):
        response = await client.post(path, json=body)
        assert response.status_code == 422, await response.get_data(as_text=True)
        assert (await response.get_json())["field"] == field
