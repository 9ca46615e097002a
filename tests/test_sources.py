"""The wizard's sources (contract §2.2.7): git-provider connections, repositories at the
providers and uploads, against stand-ins that speak the providers' wire formats
(tests/git_providers.py) reached through the egress guard (127.0.0.0/8 allowed here only)."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import asyncpg
import httpx
import pytest
from quart.datastructures import FileStorage
from redis import asyncio as aioredis

from kijko_core.auth.accounts import erase_user
from kijko_core.db.provision import ScratchDatabase
from kijko_core.db.session import system_session
from kijko_core.runtime import Kijko
from kijko_core.sources.cache import ProviderCache
from kijko_core.sources.files import clean_name
from tests.apps import running
from tests.conftest import Account, sign_up
from tests.git_providers import CLIENT_ID, FakeProvider
from tests.memberships import add_member
from tests.net import free_port
from tests.projects import created
from tests.quotas_kit import answered_when_spent

REDIRECT = "http://localhost:3000/oauth/callback"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture(scope="module")
def providers() -> Iterator[dict[str, FakeProvider]]:
    fakes = {kind: FakeProvider(kind).start() for kind in ("github", "gitlab", "bitbucket")}
    for fake in fakes.values():
        fake.add_user("octo")
    try:
        yield fakes
    finally:
        for fake in fakes.values():
            fake.stop()


@pytest.fixture(scope="module")
async def wired(make_settings: Any, providers: dict[str, FakeProvider], tmp_path_factory: Any) -> AsyncIterator[Any]:
    values: dict[str, Any] = {"egress_allow_cidrs": "127.0.0.0/8", "git_oauth_redirect_url": REDIRECT}
    values["rate_limit_auth_per_minute"] = 100_000  # one app for the module: many signups
    for fake in providers.values():
        values |= fake.settings
    values["storage_dir"] = tmp_path_factory.mktemp("files")
    values["upload_max_file_bytes"] = 4096
    values["upload_max_request_bytes"] = 64 * 1024
    values["upload_max_files"] = 5
    async with running(make_settings(**values)) as (kijko, app, client):
        yield kijko, app, client


@pytest.fixture
def kijko_w(wired: Any) -> Kijko:
    return wired[0]  # type: ignore[no-any-return]


@pytest.fixture
def web(wired: Any) -> Any:
    return wired[2]


@pytest.fixture
async def carol(web: Any) -> Account:
    return await sign_up(web, first_name="Carol")


@pytest.fixture
async def dave(web: Any) -> Account:
    return await sign_up(web, first_name="Dave")


@pytest.fixture
async def admin_db(database: ScratchDatabase) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database.admin_url)
    try:
        yield conn
    finally:
        await conn.close()


async def connect(web: Any, account: Account, provider: str) -> dict[str, Any]:
    """The whole flow, as the browser and the frontend do it: connect, the provider's consent
    redirect, then the callback with the code and state."""
    response = await web.post(f"/api/v1/oauth/connect/{provider}", headers=account.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    auth_url = (await response.get_json())["authUrl"]
    async with httpx.AsyncClient() as browser:
        consent = await browser.get(auth_url)
    assert consent.status_code == 302
    back = parse_qs(urlsplit(consent.headers["Location"]).query)
    response = await web.post(
        "/api/v1/oauth/callback",
        json={"provider": provider, "code": back["code"][0], "state": back["state"][0]},
        headers=account.headers,
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()  # type: ignore[no-any-return]


# --- connections -----------------------------------------------------------------------------


async def test_connections_list_every_provider_not_connected(web: Any, carol: Account) -> None:
    response = await web.get("/api/v1/oauth/connections", headers=carol.headers)
    assert response.status_code == 200
    assert await response.get_json() == [
        {"provider": p, "connected": False, "username": None, "avatarUrl": None, "connectedAt": None, "scope": None}
        for p in ("github", "gitlab", "bitbucket")
    ]


@pytest.mark.parametrize("provider", ["github", "gitlab", "bitbucket"])
async def test_connect_sends_the_browser_with_pkce_and_a_state(
    web: Any, carol: Account, provider: str, providers: dict[str, FakeProvider]
) -> None:
    response = await web.post(f"/api/v1/oauth/connect/{provider}", headers=carol.headers)
    url = urlsplit((await response.get_json())["authUrl"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}" == providers[provider].url
    assert query["client_id"] == CLIENT_ID and query["redirect_uri"] == REDIRECT
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 43 and query["response_type"] == "code"


@pytest.mark.parametrize("provider", ["github", "gitlab", "bitbucket"])
async def test_a_connection_is_made_and_its_tokens_are_stored_encrypted(
    web: Any,
    kijko_w: Kijko,
    carol: Account,
    provider: str,
    providers: dict[str, FakeProvider],
    admin_db: asyncpg.Connection,
) -> None:
    connection = await connect(web, carol, provider)
    assert connection["provider"] == provider and connection["connected"] is True
    assert connection["username"] == "octo"
    assert connection["avatarUrl"] == f"{providers[provider].url}/avatars/octo.png"
    assert connection["scope"] and connection["connectedAt"]
    listed = await (await web.get("/api/v1/oauth/connections", headers=carol.headers)).get_json()
    assert [c["connected"] for c in listed] == [c["provider"] == provider for c in listed]
    row = await admin_db.fetchrow(
        "SELECT access_token_ciphertext, refresh_token_ciphertext FROM kijko.git_connections WHERE user_id = $1",
        carol.user_id,
    )
    token = kijko_w.keyring.decrypt(row["access_token_ciphertext"])
    assert token in providers[provider].tokens and token not in row["access_token_ciphertext"]
    assert (row["refresh_token_ciphertext"] is None) == (provider == "github")
    # PKCE: the verifier reached the token endpoint (GitHub and GitLab check it).
    assert providers[provider].token_requests[-1].get("code_verifier")


async def test_a_state_works_once_only_for_its_member_and_not_after_it_expires(
    web: Any, carol: Account, dave: Account, providers: dict[str, FakeProvider], admin_db: asyncpg.Connection
) -> None:
    async def started(account: Account) -> dict[str, str]:
        response = await web.post("/api/v1/oauth/connect/github", headers=account.headers)
        async with httpx.AsyncClient() as browser:
            consent = await browser.get((await response.get_json())["authUrl"])
        return {k: v[0] for k, v in parse_qs(urlsplit(consent.headers["Location"]).query).items()}

    async def finish(account: Account, back: dict[str, str], provider: str = "github") -> Any:
        body = {"provider": provider, "code": back["code"], "state": back["state"]}
        return await web.post("/api/v1/oauth/callback", json=body, headers=account.headers)

    back = await started(carol)
    # Another organization's member cannot finish it; carol still can.
    refused = await finish(dave, back)
    assert (refused.status_code, (await refused.get_json())["code"]) == (400, "INVALID_OAUTH_STATE")
    # Nor for another provider (the state is consumed by that attempt).
    other = await finish(carol, back, "gitlab")
    assert (other.status_code, (await other.get_json())["code"]) == (400, "INVALID_OAUTH_STATE")
    back = await started(carol)
    assert (await finish(carol, back)).status_code == 200
    replay = await finish(carol, back)
    assert (replay.status_code, (await replay.get_json())["code"]) == (400, "INVALID_OAUTH_STATE")
    back = await started(carol)
    await admin_db.execute("UPDATE kijko.git_oauth_states SET expires_at = now() - interval '1 second'")
    expired = await finish(carol, back)
    assert (expired.status_code, (await expired.get_json())["code"]) == (400, "INVALID_OAUTH_STATE")


async def test_a_code_the_provider_refuses_is_400(web: Any, carol: Account) -> None:
    response = await web.post("/api/v1/oauth/connect/gitlab", headers=carol.headers)
    state = parse_qs(urlsplit((await response.get_json())["authUrl"]).query)["state"][0]
    response = await web.post(
        "/api/v1/oauth/callback", json={"provider": "gitlab", "code": "forged", "state": state}, headers=carol.headers
    )
    body = await response.get_json()
    assert (response.status_code, body["code"]) == (400, "OAUTH_CODE_REJECTED")
    assert "forged" not in str(body)


async def test_unconfigured_unknown_and_azure_providers(client: Any, alice: Account, web: Any, carol: Account) -> None:
    # The session's app has no provider settings.
    response = await client.post("/api/v1/oauth/connect/github", headers=alice.headers)
    assert (response.status_code, (await response.get_json())["code"]) == (409, "PROVIDER_NOT_CONFIGURED")
    response = await client.get(
        "/api/v1/repositories/batch", query_string={"provider": "gitlab"}, headers=alice.headers
    )
    assert (response.status_code, (await response.get_json())["code"]) == (409, "PROVIDER_NOT_CONFIGURED")
    response = await web.post("/api/v1/oauth/connect/azure", headers=carol.headers)
    assert (response.status_code, (await response.get_json())["code"]) == (409, "PROVIDER_NOT_CONFIGURED")
    response = await web.post("/api/v1/oauth/connect/sourceforge", headers=carol.headers)
    assert (response.status_code, (await response.get_json())["code"]) == (404, "PROVIDER_NOT_FOUND")


async def test_disconnect_forgets_the_connection(web: Any, carol: Account, admin_db: asyncpg.Connection) -> None:
    await connect(web, carol, "bitbucket")
    response = await web.delete("/api/v1/oauth/disconnect/bitbucket", headers=carol.headers)
    assert (response.status_code, await response.get_json()) == (200, {"success": True})
    assert await admin_db.fetchval("SELECT count(*) FROM kijko.git_connections WHERE user_id = $1", carol.user_id) == 0
    again = await web.delete("/api/v1/oauth/disconnect/bitbucket", headers=carol.headers)
    assert again.status_code == 200


async def test_an_expiring_token_is_refreshed_and_a_refused_refresh_asks_to_reconnect(
    web: Any, carol: Account, providers: dict[str, FakeProvider]
) -> None:
    gitlab = providers["gitlab"]
    gitlab.add_repo("team/tool", private=True, members={"octo"})
    gitlab.expires_in = 30  # inside the refresh margin: refreshed before each use
    try:
        await connect(web, carol, "gitlab")
        before = len(gitlab.token_requests)
        response = await web.get(
            "/api/v1/repositories/batch", query_string={"provider": "gitlab"}, headers=carol.headers
        )
        assert response.status_code == 200, await response.get_json()
        assert "team/tool" in {r["fullName"] for r in (await response.get_json())["repositories"]}
        assert gitlab.token_requests[before]["grant_type"] == "refresh_token"
        gitlab.refresh_tokens.clear()  # the provider revoked the grant
        response = await web.get(
            "/api/v1/repositories/batch", query_string={"provider": "gitlab"}, headers=carol.headers
        )
        assert (response.status_code, (await response.get_json())["code"]) == (409, "NOT_AUTHENTICATED")
    finally:
        gitlab.expires_in = 7200


# --- validate-full and batch ------------------------------------------------------------------


async def validate(web: Any, account: Account, url: str) -> Any:
    response = await web.post("/api/v1/repositories/validate-full", json={"url": url}, headers=account.headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()


async def test_validate_full_reads_a_public_repository_without_a_connection(
    web: Any, carol: Account, providers: dict[str, FakeProvider]
) -> None:
    github = providers["github"]
    github.add_repo("acme/widgets", files=10, file_bytes=4000, recent_commits=7)
    body = await validate(web, carol, f"{github.url}/acme/widgets.git")
    assert body["valid"] is True and "error" not in body or body.get("error") is None
    info = body["info"]
    assert info["name"] == "widgets" and info["fullName"] == "acme/widgets" and info["provider"] == "github"
    assert (info["commitsPerMonth"], info["fileCount"], info["locEstimate"]) == (7, 10, 100)
    assert info["defaultBranch"] == "main" and info["primaryLanguage"] == "Python"
    assert info["isPrivate"] is False and info["stars"] == 3 and info["lastUpdated"].startswith("2026-11-01")


@pytest.mark.parametrize("provider", ["gitlab", "bitbucket"])
async def test_validate_full_on_gitlab_and_bitbucket(
    web: Any, carol: Account, provider: str, providers: dict[str, FakeProvider]
) -> None:
    fake = providers[provider]
    path = "group/sub/lib" if provider == "gitlab" else "space/lib"
    fake.add_repo(path, recent_commits=4, file_bytes=8000)
    suffix = "/-/tree/main" if provider == "gitlab" else ""
    info = (await validate(web, carol, f"{fake.url}/{path}{suffix}"))["info"]
    assert (info["fullName"], info["provider"], info["commitsPerMonth"]) == (path, provider, 4)
    assert info["isPrivate"] is False


async def test_validate_full_private_repositories_need_the_callers_connection(
    web: Any, carol: Account, dave: Account, providers: dict[str, FakeProvider]
) -> None:
    github = providers["github"]
    github.add_repo("acme/secret", private=True, members={"octo"})
    url = f"{github.url}/acme/secret"
    assert await validate(web, dave, url) == {
        "valid": False,
        "error": "This repository is private. Please authenticate to access it.",
        "info": None,
    }
    await connect(web, carol, "github")
    body = await validate(web, carol, url)
    assert body["valid"] is True and body["info"]["isPrivate"] is True
    # Dave (no connection) still cannot see it: nothing of carol's is used for him.
    assert (await validate(web, dave, url))["valid"] is False


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/a/b",
        "ftp://github.com/a/b",
        "not a url",
        "",
        "{github}/only-owner",
        "{github}/a/b?x=1",
        "{github}/a/b/c",
        "{github}/../b",
        # urlsplit raises on these (unbalanced IPv6 brackets): still the contract's answer.
        "https://[x",
        "http://[::1/a/b",
    ],
)
async def test_validate_full_refuses_unsupported_urls(
    web: Any, carol: Account, url: str, providers: dict[str, FakeProvider]
) -> None:
    body = await validate(web, carol, url.format(github=providers["github"].url))
    assert body == {
        "valid": False,
        "error": "Invalid repository URL. Supported: GitHub, GitLab, Bitbucket",
        "info": None,
    }


async def test_answers_are_cached_per_user(
    web: Any, carol: Account, dave: Account, providers: dict[str, FakeProvider]
) -> None:
    github = providers["github"]
    github.add_repo("acme/cached")
    url = f"{github.url}/acme/cached"
    await validate(web, carol, url)
    seen = len(github.requests)
    await validate(web, carol, url)
    assert len(github.requests) == seen  # from the cache
    await validate(web, dave, url)
    assert len(github.requests) > seen  # another user: asked again


@pytest.mark.parametrize(("provider", "retry_after"), [("github", range(100, 121)), ("gitlab", range(42, 43))])
async def test_a_rate_limited_provider_is_503_with_retry_after(
    web: Any, carol: Account, provider: str, retry_after: range, providers: dict[str, FakeProvider]
) -> None:
    fake = providers[provider]
    fake.add_repo("limited/repo")
    fake.limited = True
    try:
        response = await web.post(
            "/api/v1/repositories/validate-full", json={"url": f"{fake.url}/limited/repo"}, headers=carol.headers
        )
    finally:
        fake.limited = False
    body = await response.get_json()
    assert (response.status_code, body["code"]) == (503, "PROVIDER_RATE_LIMITED")
    assert int(response.headers["Retry-After"]) in retry_after


async def test_batch_needs_a_connection_then_lists_every_page(
    web: Any, carol: Account, providers: dict[str, FakeProvider]
) -> None:
    response = await web.get(
        "/api/v1/repositories/batch", query_string={"provider": "bitbucket"}, headers=carol.headers
    )
    assert (response.status_code, (await response.get_json())["code"]) == (409, "NOT_AUTHENTICATED")
    bitbucket = providers["bitbucket"]
    for n in range(130):
        bitbucket.add_repo(f"space/r{n}", private=n % 2 == 0, members={"octo"})
    await connect(web, carol, "bitbucket")
    response = await web.get(
        "/api/v1/repositories/batch", query_string={"provider": "bitbucket"}, headers=carol.headers
    )
    body = await response.get_json()
    names = {r["fullName"] for r in body["repositories"]}
    assert {f"space/r{n}" for n in range(130)} <= names and body["total"] == len(body["repositories"])
    item = next(r for r in body["repositories"] if r["fullName"] == "space/r0")
    assert item == {
        "id": item["id"],
        "name": "r0",
        "fullName": "space/r0",
        "url": f"{bitbucket.url}/space/r0",
        "isPrivate": True,
        "lastUpdated": item["lastUpdated"],
        "isArchived": False,
    }


async def test_batch_on_github_follows_link_pages(web: Any, carol: Account, providers: dict[str, FakeProvider]) -> None:
    github = providers["github"]
    for n in range(120):
        github.add_repo(f"octo/g{n}", members={"octo"}, archived=n == 3)
    await connect(web, carol, "github")
    body = await (
        await web.get("/api/v1/repositories/batch", query_string={"provider": "github"}, headers=carol.headers)
    ).get_json()
    listed = {r["fullName"]: r for r in body["repositories"]}
    assert {f"octo/g{n}" for n in range(120)} <= set(listed)
    assert listed["octo/g3"]["isArchived"] is True and listed["octo/g4"]["isArchived"] is False


# --- uploads ------------------------------------------------------------------------------------


class Parts(list[tuple[str, FileStorage]]):
    """Several parts under one name: Quart's test client encodes ``files.items()``, and a
    dict (or MultiDict) would give it one file per name."""

    def items(self) -> Parts:
        return self


def parts(*items: tuple[str, bytes, str]) -> Parts:
    return Parts(
        ("files", FileStorage(io.BytesIO(data), filename=name, content_type=declared)) for name, data, declared in items
    )


async def upload(web: Any, account: Account, *items: tuple[str, bytes, str], project_id: str | None = None) -> Any:
    form = {"projectId": project_id} if project_id is not None else None
    return await web.post("/api/v1/files/upload", files=parts(*items), form=form, headers=account.headers)


async def test_upload_stores_files_with_clean_names_and_sniffed_types(
    web: Any, kijko_w: Kijko, carol: Account, admin_db: asyncpg.Connection
) -> None:
    response = await upload(
        web,
        carol,
        ("../../etc/picture.txt", PNG, "text/plain"),
        ("/home/me/notes.md", b"# Notes\n\nhello \xc3\xa9\n", "application/octet-stream"),
        ("blob.bin", b"\x00\x01\x02\xff" * 10, "text/plain"),
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert body["errors"] == []
    assert [(f["name"], f["type"]) for f in body["uploaded"]] == [
        ("picture.txt", "image/png"),
        ("notes.md", "text/markdown"),
        ("blob.bin", "application/octet-stream"),
    ]
    assert [f["size"] for f in body["uploaded"]] == [len(PNG), 18, 40]
    key = await admin_db.fetchval(
        "SELECT storage_key FROM kijko.uploaded_files WHERE id = $1", body["uploaded"][0]["id"]
    )
    assert kijko_w.storage is not None and await kijko_w.storage.read(key) == PNG


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("a\x00b\x1f\u202ec.txt", "abc.txt"),
        ("..", None),
        ("dir/", None),
        ("", None),
        (None, None),
        ("  .env  ", ".env"),
        ("x" * 300 + ".markdown", "x" * 246 + ".markdown"),
    ],
)
def test_names_lose_their_directories_and_control_characters(raw: str | None, clean: str | None) -> None:
    assert clean_name(raw) == clean


async def test_upload_caps(web: Any, carol: Account, admin_db: asyncpg.Connection) -> None:
    response = await upload(web, carol, ("big.txt", b"x" * 5000, "text/plain"), ("ok.txt", b"fine", "text/plain"))
    body = await response.get_json()
    assert [f["name"] for f in body["uploaded"]] == ["ok.txt"]
    assert body["errors"][0]["name"] == "big.txt" and body["errors"][0]["code"] == "PAYLOAD_TOO_LARGE"
    count = await admin_db.fetchval("SELECT count(*) FROM kijko.uploaded_files WHERE user_id = $1", carol.user_id)
    # Over the request cap, or too many files: 413 and nothing stored.
    response = await upload(web, carol, ("huge.txt", b"y" * 70_000, "text/plain"))  # over the 64 KiB request cap
    assert (response.status_code, (await response.get_json())["code"]) == (413, "PAYLOAD_TOO_LARGE")
    response = await upload(web, carol, *[(f"f{n}.txt", b"z", "text/plain") for n in range(6)])
    assert (response.status_code, (await response.get_json())["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert (
        await admin_db.fetchval("SELECT count(*) FROM kijko.uploaded_files WHERE user_id = $1", carol.user_id) == count
    )


async def test_upload_without_files_is_422(web: Any, carol: Account) -> None:
    response = await web.post("/api/v1/files/upload", form={"projectId": ""}, headers=carol.headers)
    assert (response.status_code, (await response.get_json())["code"]) == (422, "VALIDATION_ERROR")


async def test_files_uploaded_to_a_project_are_its_sources(web: Any, carol: Account, dave: Account) -> None:
    project = await created(web, carol, "With files", type="files", privacy="shared")
    response = await upload(web, carol, ("a.txt", b"alpha", "text/plain"), project_id=project["id"])
    uploaded = (await response.get_json())["uploaded"][0]
    full = await (await web.get(f"/api/v1/projects/{project['id']}/full", headers=carol.headers)).get_json()
    assert [(f["id"], f["name"], f["size"], f["type"]) for f in full["files"]] == [
        (uploaded["id"], "a.txt", 5, "text/plain")
    ]
    # Another organization's project, a malformed and an unknown id: the projects' 404.
    for project_id in (project["id"], "not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        response = await upload(web, dave, ("b.txt", b"beta", "text/plain"), project_id=project_id)
        assert (response.status_code, (await response.get_json())["code"]) == (404, "PROJECT_NOT_FOUND")
    full = await (await web.get(f"/api/v1/projects/{project['id']}/full", headers=carol.headers)).get_json()
    assert len(full["files"]) == 1


async def test_a_viewer_cannot_upload(web: Any, kijko_w: Kijko, carol: Account) -> None:
    project = await created(web, carol, "Viewed", type="files", privacy="shared")
    viewer = await add_member(kijko_w, carol.org_id, "viewer")
    response = await upload(web, viewer, ("v.txt", b"v", "text/plain"), project_id=project["id"])
    assert (response.status_code, (await response.get_json())["code"]) == (403, "FORBIDDEN")
    response = await upload(web, viewer, ("v.txt", b"v", "text/plain"))
    assert response.status_code == 403


# --- the wizard's settings on projects ---------------------------------------------------------

SETTINGS = {
    "outputFormat": "markdown",
    "embeddingModel": "text-embedding-3-small",
    "metadataOptions": {
        "functionSignatures": True,
        "importDependencies": False,
        "gitHistory": True,
        "fileStructure": True,
        "customAnnotations": False,
    },
    "patternFilters": {"languagePatterns": ["*.py"], "excludePatterns": ["node_modules/**"]},
    "processingOptions": {"anonymizeSecrets": True, "parallelProcessing": False, "realTimeIncremental": True},
    "defaultNotificationLevel": "real-time",
    "persona": "maya",
}


async def test_custom_settings_are_stored_validated_and_returned(web: Any, carol: Account) -> None:
    project = await created(
        web, carol, "Wizard", type="manual", customSettings=SETTINGS | {"manualContent": "Our notes", "other": 1}
    )
    assert project["customSettings"] == SETTINGS
    full = await (await web.get(f"/api/v1/projects/{project['id']}/full", headers=carol.headers)).get_json()
    assert full["manualContent"] == "Our notes" and full["customSettings"] == SETTINGS
    path = f"/api/v1/projects/{project['id']}"
    response = await web.put(
        path, json={"customSettings": {"persona": "sam", "outputFormat": None}}, headers=carol.headers
    )
    changed = (await response.get_json())["customSettings"]
    assert changed["persona"] == "sam" and changed["outputFormat"] is None
    assert changed["patternFilters"] == SETTINGS["patternFilters"]
    full = await (await web.get(f"{path}/full", headers=carol.headers)).get_json()
    assert full["manualContent"] == "Our notes"  # not named in the update: unchanged
    for bad, field in (
        ({"outputFormat": "pdf"}, "customSettings.outputFormat"),
        ({"persona": "bob"}, "customSettings.persona"),
        ({"manualContent": "x" * 500_001}, "customSettings.manualContent"),
        ({"patternFilters": {"languagePatterns": ["p"] * 101}}, "customSettings.patternFilters.languagePatterns"),
    ):
        response = await web.put(path, json={"customSettings": bad}, headers=carol.headers)
        body = await response.get_json()
        assert (response.status_code, body.get("field")) == (422, field), body


# --- every documented error, with its documented code (decision 0046) -------------------------

BODY = {"400", "413", "415", "422"}
MULTIPART = {"413", "422"}
#: The statuses each operation documents besides its success and 500 (checked against the
#: document by tests/test_openapi_errors.py's operation list, and triggered below).
WIZARD: dict[tuple[str, str], set[str]] = {
    ("get", "/api/v1/oauth/connections"): {"401", "403"},
    ("post", "/api/v1/oauth/connect/{provider}"): {"401", "403", "404", "409"},
    ("post", "/api/v1/oauth/callback"): {"401", "403", "404", "409", "502", "503"} | BODY,
    ("delete", "/api/v1/oauth/disconnect/{provider}"): {"401", "403", "404", "409"},
    ("post", "/api/v1/repositories/validate-full"): {"401", "403", "502", "503"} | BODY,
    ("get", "/api/v1/repositories/batch"): {"401", "403", "404", "409", "422", "502", "503"},
    # 429: the plan's storage (tests/test_quotas.py).
    ("post", "/api/v1/files/upload"): {"401", "403", "404", "429"} | MULTIPART,
}


async def test_every_documented_error_happens_with_its_documented_code(
    web: Any, kijko_w: Kijko, carol: Account, providers: dict[str, FakeProvider], make_settings: Any, tmp_path: Path
) -> None:
    from tests.test_openapi_errors import answers_not_as_documented, documented_errors, openapi

    gone = await add_member(kijko_w, carol.org_id, "member")
    async with system_session(kijko_w.system_db) as db:
        await db.execute("DELETE FROM kijko.memberships WHERE user_id = $1", UUID(gone.user_id))
    github = providers["github"]
    github.add_repo("acme/errors")
    await connect(web, carol, "github")

    def send(method: str, path: str, account: Account | None = carol, **kwargs: Any) -> Any:
        headers = dict(account.headers) if account else {}
        return lambda: web.open(path, method=method.upper(), headers=headers, **kwargs)

    def raw(path: str, data: bytes, content_type: str = "application/json") -> Any:
        return lambda: web.open(path, method="POST", headers={**carol.headers, "Content-Type": content_type}, data=data)

    def body_errors(path: str) -> dict[str, Any]:
        return {
            "400": raw(path, b'{"url": '),
            "413": raw(path, b'{"url": "' + b"x" * (2 * 1024 * 1024) + b'"}'),
            "415": raw(path, b"url=x", "application/x-www-form-urlencoded"),
            "422": send("post", path, json={"url": 5, "code": 5}),
        }

    async def callback_with(fake: FakeProvider, flag: str) -> Any:
        response = await web.post("/api/v1/oauth/connect/github", headers=carol.headers)
        state = parse_qs(urlsplit((await response.get_json())["authUrl"]).query)["state"][0]
        setattr(fake, flag, True)
        try:
            return await web.post(
                "/api/v1/oauth/callback",
                json={"provider": "github", "code": "c", "state": state},
                headers=carol.headers,
            )
        finally:
            setattr(fake, flag, False)

    async def with_flag(flag: str, request: Any) -> Any:
        setattr(github, flag, True)
        try:
            return await request()
        finally:
            setattr(github, flag, False)

    callback = "/api/v1/oauth/callback"
    validate_path = "/api/v1/repositories/validate-full"
    batch_path = "/api/v1/repositories/batch"
    repo = {"url": f"{github.url}/acme/errors-{uuid.uuid4().hex[:6]}"}  # uncached
    upload_path = "/api/v1/files/upload"
    boundary = "----kijko"
    broken_multipart = f'--{boundary}\r\nContent-Disposition: form-data; name="files"'.encode()
    triggers: dict[tuple[str, str], dict[str, Any]] = {
        ("get", "/api/v1/oauth/connections"): {
            "401": send("get", "/api/v1/oauth/connections", None),
            "403": send("get", "/api/v1/oauth/connections", gone),
        },
        ("post", "/api/v1/oauth/connect/{provider}"): {
            "401": send("post", "/api/v1/oauth/connect/github", None),
            "403": send("post", "/api/v1/oauth/connect/github", gone),
            "404": send("post", "/api/v1/oauth/connect/myspace"),
            "409": send("post", "/api/v1/oauth/connect/azure"),
        },
        ("post", "/api/v1/oauth/callback"): {
            **body_errors(callback),
            "400 state": send("post", callback, json={"provider": "github", "code": "c", "state": "made-up"}),
            "401": send("post", callback, None, json={"provider": "github", "code": "c", "state": "s"}),
            "403": send("post", callback, gone, json={"provider": "github", "code": "c", "state": "s"}),
            "404": send("post", callback, json={"provider": "myspace", "code": "c", "state": "s"}),
            "409": send("post", callback, json={"provider": "azure", "code": "c", "state": "s"}),
            "502": lambda: callback_with(github, "broken"),
            "503": lambda: callback_with(github, "limited"),
        },
        ("delete", "/api/v1/oauth/disconnect/{provider}"): {
            "401": send("delete", "/api/v1/oauth/disconnect/github", None),
            "403": send("delete", "/api/v1/oauth/disconnect/github", gone),
            "404": send("delete", "/api/v1/oauth/disconnect/myspace"),
            "409": send("delete", "/api/v1/oauth/disconnect/azure"),
        },
        ("post", validate_path): {
            **body_errors(validate_path),
            "401": send("post", validate_path, None, json=repo),
            "403": send("post", validate_path, gone, json=repo),
            "502": lambda: with_flag("broken", send("post", validate_path, json=repo)),
            "503": lambda: with_flag("limited", send("post", validate_path, json=repo)),
        },
        ("get", batch_path): {
            "401": send("get", batch_path, None, query_string={"provider": "github"}),
            "403": send("get", batch_path, gone, query_string={"provider": "github"}),
            "404": send("get", batch_path, query_string={"provider": "myspace"}),
            "409": send("get", batch_path, query_string={"provider": "gitlab"}),  # not connected
            "422": send("get", batch_path),
            "502": lambda: with_flag("broken", send("get", batch_path, query_string={"provider": "github"})),
            "503": lambda: with_flag("limited", send("get", batch_path, query_string={"provider": "github"})),
        },
        ("post", upload_path): {
            "401": send("post", upload_path, None),
            "403": send("post", upload_path, gone, files=parts(("a.txt", b"a", "text/plain"))),
            "404": send("post", upload_path, files=parts(("a.txt", b"a", "text/plain")), form={"projectId": "x"}),
            "413": send("post", upload_path, files=parts(*[(f"{n}.txt", b"z", "text/plain") for n in range(6)])),
            "422": send("post", upload_path, json={"files": 5}),
            "429": await answered_when_spent(
                make_settings,
                tmp_path,
                lambda on, owner: on.post(
                    upload_path, files=parts(("a.txt", b"a", "text/plain")), headers=owner.headers
                ),
            ),
            # A malformed multipart body parses as empty (Quart's parser is silent): 422 too.
            "422 malformed": raw(upload_path, broken_multipart, f"multipart/form-data; boundary={boundary}"),
        },
    }
    spec = await openapi(web)
    problems = []
    for (method, template), statuses in WIZARD.items():
        documented = documented_errors(spec, method, template)
        assert set(documented) == statuses | {"500"}, (method, template)
        cases = triggers[(method, template)]
        assert {label.split()[0] for label in cases} == statuses, (method, template)
        problems += await answers_not_as_documented(method, template, cases, documented)
    assert problems == []


# --- the cache ------------------------------------------------------------------------------------


async def exercise_cache(cache: ProviderCache) -> None:
    org, alice_id, bob_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    mine = cache.key(org, alice_id, "repo", "github", "acme/x", "token")
    theirs = cache.key(org, bob_id, "repo", "github", "acme/x", "token")
    assert mine != theirs and "acme" not in mine  # per user; what was asked is hashed
    await cache.put(mine, {"info": {"name": "x"}})
    assert await cache.get(mine) == {"info": {"name": "x"}}
    assert await cache.get(theirs) is None
    await cache.forget_user(org, alice_id)
    assert await cache.get(mine) is None


async def test_the_cache_in_process() -> None:
    await exercise_cache(ProviderCache(None, 60))
    off = ProviderCache(None, 0)
    await off.put("k", 1)
    assert await off.get("k") is None


@pytest.mark.redis
async def test_the_cache_in_redis() -> None:
    url = os.environ.get("KIJKO_TEST_REDIS_URL")
    if not url:
        pytest.skip("KIJKO_TEST_REDIS_URL is not set")
    redis = aioredis.from_url(url)
    try:
        cache = ProviderCache(redis, 60)
        await exercise_cache(cache)
        key = cache.key(uuid.uuid4(), uuid.uuid4(), "batch", "gitlab")
        await cache.put(key, {"total": 0})
        assert 0 < await redis.ttl(key) <= 60  # expires by itself
        await redis.delete(key)
    finally:
        await redis.aclose()


async def test_a_redis_that_is_down_is_skipped() -> None:
    redis = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    try:
        cache = ProviderCache(redis, 60)
        await cache.put("kijko:provider:x", {"a": 1})
        assert await cache.get("kijko:provider:x") is None
    finally:
        await redis.aclose()


async def test_erasing_a_user_deletes_their_connections_and_keeps_their_files(
    web: Any, kijko_w: Kijko, carol: Account, admin_db: asyncpg.Connection
) -> None:
    member = await add_member(kijko_w, carol.org_id, "member")
    await connect(web, member, "gitlab")
    project = await created(web, member, "Member files", type="files", privacy="shared")
    uploaded = (await (await upload(web, member, ("m.txt", b"m", "text/plain"), project_id=project["id"])).get_json())[
        "uploaded"
    ][0]
    assert (await erase_user(kijko_w.system_db, UUID(member.user_id))).erased
    assert await admin_db.fetchval("SELECT count(*) FROM kijko.git_connections WHERE user_id = $1", member.user_id) == 0
    row = await admin_db.fetchrow("SELECT user_id, project_id FROM kijko.uploaded_files WHERE id = $1", uploaded["id"])
    assert row["user_id"] is None and str(row["project_id"]) == project["id"]  # the project's source stays


async def test_the_sweeper_deletes_unattached_uploads_and_bytes_no_row_names(
    web: Any, kijko_w: Kijko, carol: Account, admin_db: asyncpg.Connection
) -> None:
    from kijko_core.jobs.worker import sweep

    project = await created(web, carol, "Swept", type="files", privacy="shared")
    kept = await (await upload(web, carol, ("kept.txt", b"kept", "text/plain"), project_id=project["id"])).get_json()
    loose = await (await upload(web, carol, ("loose.txt", b"loose", "text/plain"))).get_json()
    fresh = await (await upload(web, carol, ("fresh.txt", b"fresh", "text/plain"))).get_json()
    gone = await created(web, carol, "Deleted later", type="files", privacy="shared")
    orphan = await (await upload(web, carol, ("orphan.txt", b"orphan", "text/plain"), project_id=gone["id"])).get_json()
    ids = {
        name: UUID(body["uploaded"][0]["id"])
        for name, body in (("kept", kept), ("loose", loose), ("fresh", fresh), ("orphan", orphan))
    }
    keys = {
        name: await admin_db.fetchval("SELECT storage_key FROM kijko.uploaded_files WHERE id = $1", file_id)
        for name, file_id in ids.items()
    }
    assert (await web.delete(f"/api/v1/projects/{gone['id']}", headers=carol.headers)).status_code == 200
    # "loose" was uploaded two days ago without a project; every file's bytes are old but
    # "fresh"'s, which may belong to an upload whose row is not committed yet.
    await admin_db.execute(
        "UPDATE kijko.uploaded_files SET created_at = now() - interval '2 days' WHERE id = $1", ids["loose"]
    )
    assert kijko_w.storage is not None
    root = kijko_w.settings.files_dir
    for name in ("kept", "loose", "orphan"):
        os.utime(root / keys[name], (0, 0))
    stray_young = f"{carol.org_id}/{'y' * 32}"
    (root / stray_young).write_bytes(b"in flight")

    report = await sweep(kijko_w)

    assert report.deleted["uploads"] >= 2  # the orphan's bytes and the loose file's
    left = {
        r[0] for r in await admin_db.fetch("SELECT id FROM kijko.uploaded_files WHERE id = ANY($1)", list(ids.values()))
    }
    assert left == {ids["kept"], ids["fresh"]}
    assert await kijko_w.storage.read(keys["kept"]) == b"kept"
    assert await kijko_w.storage.read(keys["fresh"]) == b"fresh"
    assert (root / stray_young).exists()
    for name in ("loose", "orphan"):
        assert not (root / keys[name]).exists(), name


async def test_the_sweeper_reaches_strays_behind_more_than_a_page_of_live_files(
    make_settings: Any, tmp_path: Any
) -> None:
    # One page of old keys per tick: a tick that always looked at the first page would find
    # the same live files forever once more than a page of them sorts (or lists) first.
    from kijko_core.sources.cleanup import sweep_uploads

    async with running(make_settings(storage_dir=tmp_path / "files")) as (kijko, _, client):
        owner = await sign_up(client)
        project = await created(client, owner, "Paged", type="files", privacy="shared")
        for n in range(6):
            response = await upload(client, owner, (f"kept{n}.txt", b"kept", "text/plain"), project_id=project["id"])
            assert response.status_code == 200
        root = kijko.settings.files_dir
        strays = [f"{owner.org_id}/{'z' * 30}{n:02d}" for n in range(3)]
        strays += [f"{uuid.UUID(int=n)}/{'a' * 32}" for n in range(3)]
        for key in strays:
            (root / key).parent.mkdir(exist_ok=True)
            (root / key).write_bytes(b"stray")
        for path in root.rglob("*"):
            if path.is_file():
                os.utime(path, (0, 0))
        for _ in range(12):  # (6 live + 6 stray) / 2 per page, twice round
            await sweep_uploads(kijko, batch=2)
        assert [key for key in strays if (root / key).exists()] == []
        assert len([p for p in (root / owner.org_id).iterdir() if p.is_file()]) == 6  # the live files stay
