"""Repositories of a project (PROJ-08..10, contract §2.2.2), validate-repository (§2.2.6,
against git's own HTTP server through the egress guard) and recent-repos (§2.2.7)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from kijko_core.config import Settings
from kijko_core.repositories import urls
from kijko_core.runtime import Kijko
from kijko_server.app import create_app
from tests.conftest import Account
from tests.egress_server import GitServer
from tests.memberships import add_member
from tests.projects import created

API = "/api/v1/projects"
VALIDATE = f"{API}/validate-repository"


def repos(project: dict[str, Any]) -> str:
    return f"{API}/{project['id']}/repositories"


async def add(client: Any, account: Account, project: dict[str, Any], url: str, **body: Any) -> Any:
    payload = {"provider": "github", "repositoryUrl": url, "branch": "main", **body}
    return await client.post(repos(project), json=payload, headers=account.headers)


async def project_of(client: Any, account: Account, project: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = await (await client.get(f"{API}/{project['id']}", headers=account.headers)).get_json()
    return body


# --- adding, listing, removing -------------------------------------------------------------------


async def test_add_derives_the_name_and_counts_the_repository(client: Any, alice: Account) -> None:
    project = await created(client, alice, "Repos", type="repository")
    response = await add(
        client, alice, project, "https://github.com/Acme/Widgets.git/", branch="develop", includePaths=["src/**"]
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    repository = await response.get_json()
    assert repository["repositoryName"] == "Acme/Widgets"
    assert repository["repositoryUrl"] == "https://github.com/Acme/Widgets.git"
    assert (repository["provider"], repository["branch"], repository["status"]) == ("github", "develop", "pending")
    assert repository["projectId"] == project["id"]
    assert repository["includePaths"] == ["src/**"] and repository["excludePaths"] == []
    assert repository["createdAt"].endswith("Z")
    assert "userId" not in repository and "organizationId" not in repository
    assert (await project_of(client, alice, project))["totalRepos"] == 1

    second = await add(client, alice, project, "https://gitlab.com/group/sub/tool", provider="gitlab")
    assert (await second.get_json())["repositoryName"] == "group/sub/tool"
    listed = await (await client.get(repos(project), headers=alice.headers)).get_json()
    assert [r["repositoryName"] for r in listed] == ["Acme/Widgets", "group/sub/tool"]
    full = await (await client.get(f"{API}/{project['id']}/full", headers=alice.headers)).get_json()
    assert full["repositories"] == listed
    assert full["totalRepos"] == 2


async def test_remove_uncounts_and_a_second_remove_is_not_found(client: Any, alice: Account) -> None:
    project = await created(client, alice, "Removal", type="repository")
    repository = await (
        await add(client, alice, project, "https://bitbucket.org/team/app", provider="bitbucket")
    ).get_json()
    path = f"{repos(project)}/{repository['id']}"
    response = await client.delete(path, headers=alice.headers)
    assert (response.status_code, await response.get_json()) == (200, {"success": True})
    assert (await project_of(client, alice, project))["totalRepos"] == 0
    again = await client.delete(path, headers=alice.headers)
    assert again.status_code == 404
    assert (await again.get_json())["code"] == "REPOSITORY_NOT_FOUND"
    for bad in ("not-a-uuid", str(uuid.uuid4())):
        missing = await client.delete(f"{repos(project)}/{bad}", headers=alice.headers)
        assert (missing.status_code, (await missing.get_json())["code"]) == (404, "REPOSITORY_NOT_FOUND")


async def test_a_repository_is_removed_only_through_its_own_project(client: Any, alice: Account) -> None:
    first = await created(client, alice, "First", type="repository")
    second = await created(client, alice, "Second", type="repository")
    repository = await (await add(client, alice, first, "https://github.com/a/one")).get_json()
    response = await client.delete(f"{repos(second)}/{repository['id']}", headers=alice.headers)
    assert (response.status_code, (await response.get_json())["code"]) == (404, "REPOSITORY_NOT_FOUND")
    assert (await project_of(client, alice, first))["totalRepos"] == 1
    assert (await project_of(client, alice, second))["totalRepos"] == 0


async def test_unknown_project(client: Any, alice: Account) -> None:
    for method in ("GET", "POST"):
        response = await client.open(
            f"{API}/{uuid.uuid4()}/repositories",
            method=method,
            headers=alice.headers,
            json={"provider": "github", "repositoryUrl": "https://github.com/a/b", "branch": "main"},
        )
        assert (response.status_code, (await response.get_json())["code"]) == (404, "PROJECT_NOT_FOUND")


async def test_the_same_repository_and_branch_twice_is_a_conflict(client: Any, alice: Account) -> None:
    project = await created(client, alice, "Twice", type="repository")
    assert (await add(client, alice, project, "https://github.com/acme/dup")).status_code == 201
    again = await add(client, alice, project, "https://GitHub.com/ACME/dup")
    assert again.status_code == 409
    assert await again.get_json() == {
        "detail": "This repository and branch are already in the project",
        "code": "REPOSITORY_EXISTS",
        "message": "This repository and branch are already in the project",
        "field": "repositoryUrl",
    }
    assert (await add(client, alice, project, "https://github.com/acme/dup", branch="other")).status_code == 201
    assert (await project_of(client, alice, project))["totalRepos"] == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"repositoryUrl": "https://example.com/a/b"}, "repositoryUrl"),
        ({"repositoryUrl": "http://github.com/a/b"}, "repositoryUrl"),
        ({"repositoryUrl": "https://user:pw@github.com/a/b"}, "repositoryUrl"),
        ({"repositoryUrl": "https://gitlab.com/a/b", "provider": "github"}, "repositoryUrl"),
        ({"provider": "sourceforge"}, "provider"),
        ({"branch": "-upload-pack"}, "branch"),
        ({"branch": "a..b"}, "branch"),
        ({"branch": ""}, "branch"),
        ({"includePaths": ["x"] * 101}, "includePaths"),
    ],
)
async def test_invalid_bodies_are_422_on_the_field(
    client: Any, alice: Account, body: dict[str, Any], field: str
) -> None:
    project = await created(client, alice, f"Invalid {uuid.uuid4().hex[:6]}", type="repository")
    payload = {"provider": "github", "repositoryUrl": "https://github.com/a/b", "branch": "main", **body}
    response = await client.post(repos(project), json=payload, headers=alice.headers)
    answer = await response.get_json()
    assert response.status_code == 422, answer
    assert answer["code"] == "VALIDATION_ERROR" and answer["field"] == field, answer
    assert "user:pw" not in str(answer)  # never the submitted URL back
    assert (await project_of(client, alice, project))["totalRepos"] == 0


async def test_total_repos_stays_exact_under_concurrent_adds_and_removes(client: Any, alice: Account) -> None:
    project = await created(client, alice, "Busy", type="repository")
    adds = await asyncio.gather(*(add(client, alice, project, f"https://github.com/acme/r{n}") for n in range(24)))
    assert sorted(r.status_code for r in adds) == [201] * 24
    # The same URL from several requests at once: one wins, the others conflict.
    racing = await asyncio.gather(*(add(client, alice, project, "https://github.com/acme/race") for _ in range(6)))
    assert sorted(r.status_code for r in racing) == [201] + [409] * 5
    assert (await project_of(client, alice, project))["totalRepos"] == 25
    listed = await (await client.get(repos(project), headers=alice.headers)).get_json()
    assert len(listed) == 25
    # Every repository removed twice at once: each removal counts once.
    removals = await asyncio.gather(
        *(client.delete(f"{repos(project)}/{r['id']}", headers=alice.headers) for r in listed for _ in range(2))
    )
    assert sorted(r.status_code for r in removals) == [200] * 25 + [404] * 25
    assert (await project_of(client, alice, project))["totalRepos"] == 0


async def test_viewers_read_but_do_not_add(client: Any, kijko: Kijko, alice: Account) -> None:
    project = await created(client, alice, "Shared repos", type="repository", privacy="shared")
    await add(client, alice, project, "https://github.com/acme/seen")
    viewer = await add_member(kijko, alice.org_id, "viewer")
    listed = await client.get(repos(project), headers=viewer.headers)
    assert listed.status_code == 200 and len(await listed.get_json()) == 1
    refused = await add(client, viewer, project, "https://github.com/acme/not-mine")
    assert (refused.status_code, (await refused.get_json())["code"]) == (403, "FORBIDDEN")


# --- URL rules -----------------------------------------------------------------------------------


@pytest.fixture
def hosted(make_settings: Any) -> Settings:
    settings: Settings = make_settings(
        git_hosts="gitlab=https://git.example.com,github=http://ghe.internal:8080/scm,azure=https://tfs.example.com/"
    )
    return settings


@pytest.mark.parametrize(
    ("url", "provider", "name"),
    [
        ("https://github.com/octo-cat/Hello.World", "github", "octo-cat/Hello.World"),
        ("https://github.com/octocat/hello.git", "github", "octocat/hello"),
        ("https://github.com/octocat/hello/", "github", "octocat/hello"),
        ("https://GITHUB.com/octocat/hello", "github", "octocat/hello"),
        ("https://gitlab.com/group/project", "gitlab", "group/project"),
        ("https://gitlab.com/group/sub/deeper/project.git", "gitlab", "group/sub/deeper/project"),
        ("https://bitbucket.org/workspace/repo_name", "bitbucket", "workspace/repo_name"),
        ("https://dev.azure.com/org/Project-One/_git/repo", "azure", "org/Project-One/repo"),
        ("https://git.example.com/team/tool", "gitlab", "team/tool"),
        ("http://ghe.internal:8080/scm/owner/repo", "github", "owner/repo"),
        ("https://tfs.example.com/coll/proj/_git/r", "azure", "coll/proj/r"),
    ],
)
def test_accepted_urls(hosted: Settings, url: str, provider: str, name: str) -> None:
    parsed = urls.parse(hosted, url)
    assert (parsed.provider, parsed.name) == (provider, name)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "required"),
        ("github.com/a/b", "Supported"),
        ("git@github.com:a/b.git", "Supported"),
        ("ssh://git@github.com/a/b", "Supported"),
        ("file:///srv/repo", "Supported"),
        ("http://github.com/a/b", "https"),
        ("https://example.com/a/b", "Supported"),
        ("https://github.com.evil.test/a/b", "Supported"),
        ("https://github.com:8443/a/b", "Supported"),
        ("https://token@github.com/a/b", "credentials"),
        ("https://x:y@github.com/a/b", "credentials"),
        ("https://github.com/a/b?ref=main", "query"),
        ("https://github.com/a/b#readme", "query or fragment"),
        ("https://github.com/a", "Not a GitHub"),
        ("https://github.com/a/b/tree/main", "Not a GitHub"),
        ("https://github.com/-a/b", "Not a GitHub"),
        ("https://github.com/a/..", "Not a GitHub"),
        ("https://github.com/a/b%2Fc", "Not a GitHub"),
        ("https://gitlab.com/group/project/-/tree/main", "Not a GitLab"),
        ("https://bitbucket.org/only", "Not a Bitbucket"),
        ("https://dev.azure.com/org/proj/repo", "Not a Azure"),
        ("http://git.example.com/team/tool", "Supported"),  # listed with https only
        ("https://ghe.internal:8080/scm/owner/repo", "Supported"),  # listed with http
        ("http://ghe.internal:8080/other/owner/repo", "Supported"),  # outside the base path
        ("https://github.com/a/b c", "Supported"),
        ("https://[::1]/a/b", "Supported"),
    ],
)
def test_refused_urls(hosted: Settings, url: str, why: str) -> None:
    with pytest.raises(urls.InvalidRepositoryUrl, match=why):
        urls.parse(hosted, url)


def test_the_provider_must_match(hosted: Settings) -> None:
    assert urls.parse(hosted, "https://git.example.com/a/b", "gitlab").provider == "gitlab"
    with pytest.raises(urls.InvalidRepositoryUrl, match="not a GitHub repository URL"):
        urls.parse(hosted, "https://git.example.com/a/b", "github")


def test_git_hosts_setting_is_validated(make_settings: Any) -> None:
    from kijko_core.errors import ConfigurationError

    for bad in (
        "gitlab",
        "gitea=https://x.test",
        "gitlab=ftp://x.test",
        "gitlab=https://u:p@x.test",
        "gitlab=https://",
    ):
        with pytest.raises(ConfigurationError, match="KIJKO_GIT_HOSTS"):
            make_settings(git_hosts=bad)
    with pytest.raises(ConfigurationError, match="KIJKO_EGRESS_ALLOW_CIDRS"):
        make_settings(egress_allow_cidrs="10.0.0.0/8,not-a-network")


# --- validate-repository -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    server = GitServer(tmp_path_factory.mktemp("repos"))
    server.add_repository("acme", "widgets")
    server.start()
    yield server
    server.stop()


@asynccontextmanager
async def app_with(kijko: Kijko, settings: Settings) -> AsyncIterator[Any]:
    """A client of an app on the same pools, with other settings."""
    application = create_app(settings, kijko=dataclasses.replace(kijko, settings=settings))
    async with application.test_app():
        yield application.test_client()


async def validate(client: Any, account: Account, url: Any) -> dict[str, Any]:
    response = await client.post(VALIDATE, json={"url": url}, headers=account.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    body: dict[str, Any] = await response.get_json()
    return body


async def test_validate_repository_reaches_an_allowed_git_server(
    kijko: Kijko, make_settings: Any, git_server: GitServer, alice: Account
) -> None:
    settings = make_settings(egress_allow_cidrs="127.0.0.0/8", git_hosts=f"gitlab={git_server.url}")
    async with app_with(kijko, settings) as client:
        found = await validate(client, alice, f"{git_server.url}/acme/widgets.git")
        assert found == {"valid": True, "provider": "gitlab", "repoName": "acme/widgets"} | (
            {"error": None} if "error" in found else {}
        )
        missing = await validate(client, alice, f"{git_server.url}/acme/nothing.git")
        assert missing["valid"] is False and missing["error"] == "Repository not found or not reachable"
        git_server.require_token = "secret"
        try:
            private = await validate(client, alice, f"{git_server.url}/acme/widgets.git")
        finally:
            git_server.require_token = None
        assert private["error"] == "This repository is private. Please authenticate to access it."


async def test_validate_repository_is_refused_by_the_guard_without_the_allow_setting(
    kijko: Kijko, make_settings: Any, git_server: GitServer, alice: Account
) -> None:
    settings = make_settings(git_hosts=f"gitlab={git_server.url}")
    before = len(git_server.requests)
    async with app_with(kijko, settings) as client:
        refused = await validate(client, alice, f"{git_server.url}/acme/widgets.git")
    assert refused["valid"] is False and refused["error"] == "Repository not found or not reachable"
    assert refused["repoName"] == "acme/widgets"
    assert len(git_server.requests) == before  # git never connected


@pytest.mark.parametrize("url", [None, "", "https://example.com/a/b", "not a url", "https://github.com/a"])
async def test_validate_repository_explains_invalid_urls(client: Any, alice: Account, url: str | None) -> None:
    answer = await validate(client, alice, url)
    assert answer["valid"] is False and answer["error"]
    assert not answer.get("provider")


# --- recent-repos --------------------------------------------------------------------------------


async def test_recent_repos_are_the_callers_newest_five(client: Any, kijko: Kijko, alice: Account) -> None:
    colleague = await add_member(kijko, alice.org_id, "admin")
    first = await created(client, alice, "Recent one", type="repository", privacy="shared")
    second = await created(client, alice, "Recent two", type="repository")
    for n in range(6):
        assert (await add(client, alice, first, f"https://github.com/acme/r{n}")).status_code == 201
    assert (await add(client, alice, second, "https://github.com/acme/r2")).status_code == 201  # again
    assert (await add(client, colleague, first, "https://github.com/acme/theirs")).status_code == 201
    for who in ("me", "current-user", alice.user_id):
        response = await client.get(f"/api/v1/users/{who}/recent-repos", headers=alice.headers)
        assert response.status_code == 200
        recent = await response.get_json()
        assert [r["repoName"] for r in recent] == ["acme/r2", "acme/r5", "acme/r4", "acme/r3", "acme/r1"]
        assert recent[0] == {
            "repoUrl": "https://github.com/acme/r2",
            "repoName": "acme/r2",
            "lastAnalyzed": recent[0]["lastAnalyzed"],
            "usageCount": 2,
            "provider": "github",
        }
        assert all(r["usageCount"] == 1 for r in recent[1:])
    theirs = await (await client.get("/api/v1/users/me/recent-repos", headers=colleague.headers)).get_json()
    assert [r["repoName"] for r in theirs] == ["acme/theirs"]


# Fixed names, not a uuid4 in the list: pytest-xdist workers must collect the same test ids.
@pytest.mark.parametrize("who", ["someone", "unknown-id", "colleague"])
async def test_another_users_recent_repos_are_not_found(client: Any, kijko: Kijko, alice: Account, who: str) -> None:
    if who == "unknown-id":
        who = str(uuid.uuid4())
    elif who == "colleague":
        who = (await add_member(kijko, alice.org_id, "admin")).user_id
    response = await client.get(f"/api/v1/users/{who}/recent-repos", headers=alice.headers)
    assert response.status_code == 404
    assert (await response.get_json())["code"] == "USER_NOT_FOUND"
