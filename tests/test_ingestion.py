"""Ingestion end to end (issue 7 §5, docs/ingestion.md): a git repository made here, served by
git's own smart-HTTP server on 127.0.0.1 (allowed through KIJKO_EGRESS_ALLOW_CIDRS and
KIJKO_GIT_HOSTS), ingested by a real worker of this process: exact metrics, the planted key
redacted, symlink and binary skipped, the project active, the events in order and valid per
the frontend's validators; cancel, re-ingest, failures, concurrency, isolation and the
internal progress routes of external runners."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import pytest

from kijko_core.db.session import system_session
from kijko_core.ingestion.tokens import estimate_tokens
from kijko_core.jobs.worker import run_until_idle
from kijko_core.runtime import Kijko
from kijko_server.app import create_app
from tests import contract_events
from tests.conftest import Account, sign_up
from tests.egress_server import GitServer
from tests.ingestion_kit import (
    API,
    chunks_of,
    files_of,
    indexed_run,
    ingest,
    progress,
    project_with_repository,
    recording,
    runs_of,
)
from tests.memberships import add_member

AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))

#: What the walk reads (path → text), and what it must leave out.
INGESTED: dict[str, str] = {
    ".gitignore": "*.log\nbuild/\n",
    "README.md": "# Widgets\n\nCompute checksums of widgets.\n",
    "src/checksum.py": (
        "import hashlib\n\n\n"
        "def compute_checksum(data: bytes) -> str:\n"
        '    """The widget\'s checksum."""\n'
        "    return hashlib.sha256(data).hexdigest()\n\n\n"
        "class Widget:\n"
        "    def __init__(self, name: str) -> None:\n"
        "        self.name = name\n"
    ),
    "src/web/index.ts": "export function renderWidget(name: string): string {\n  return `<b>${name}</b>`;\n}\n",
    "src/lib.rs": "pub fn answer() -> u32 {\n    42\n}\n",
    "config/settings.py": (
        f"REGION = 'eu-west-1'\nAWS_ACCESS_KEY_ID = '{AWS_KEY_ID}'\nAWS_SECRET_ACCESS_KEY = '{AWS_SECRET}'\n"
    ),
}
LEFT_OUT: dict[str, str | bytes] = {
    "debug.log": "ignored by .gitignore\n",
    "build/out.py": "ignored = True\n",
    "logo.png": PNG,
}
SYMLINKS = {"escape": "/etc/passwd"}


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    server = GitServer(tmp_path_factory.mktemp("ingestion-runs-git"))
    server.add_repository("acme", "widgets", {**INGESTED, **LEFT_OUT}, symlinks=SYMLINKS)
    server.add_repository("acme", "other", {"main.go": "package main\n\nfunc main() {}\n"})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server(git_server: GitServer) -> Iterator[GitServer]:
    yield git_server
    git_server.delay = 0.0
    git_server.require_token = None


@pytest.fixture(scope="module")
async def ingestion_kijko(make_settings: Any, git_server: GitServer) -> AsyncIterator[Kijko]:
    settings = make_settings(
        egress_allow_cidrs="127.0.0.0/8",
        git_hosts=f"gitlab={git_server.url}",
        worker_poll_seconds=0.2,
        job_retry_base_seconds=0.1,
        job_retry_max_seconds=0.5,
        ingestion_queue_recheck_seconds=0.2,
        db_pool_size=10,
    )
    runtime = await Kijko.start(settings)
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def web(ingestion_kijko: Kijko) -> AsyncIterator[Any]:
    application = create_app(kijko=ingestion_kijko)
    async with application.test_app():
        yield application.test_client()


@pytest.fixture
async def carol(web: Any) -> Account:
    return await sign_up(web, first_name="Carol")


@pytest.fixture
async def dave(web: Any) -> Account:
    """Of another organization."""
    return await sign_up(web, first_name="Dave")


def repo_url(server: GitServer, name: str = "widgets") -> str:
    return f"{server.url}/acme/{name}.git"


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------------------------
# The proof.


async def test_a_repository_is_ingested_end_to_end(
    web: Any, ingestion_kijko: Kijko, server: GitServer, carol: Account
) -> None:
    kijko = ingestion_kijko
    project = await project_with_repository(web, carol, unique("Widgets"), repo_url(server))
    async with recording() as recorder:
        started = await ingest(web, carol, project["id"], skipValidation=False, forceReprocess=False)
        assert started["status"] == "processing" and started["projectId"] == project["id"]
        assert started["wsNamespaceUrl"] == f"/api/v1/socket.io?projectId={project['id']}"
        assert isinstance(started["estimatedDurationSeconds"], int) and started["estimatedDurationSeconds"] >= 1
        queued = await progress(web, carol, project["id"])
        assert queued["phase"] == "repository_fetch" and queued["progressPercent"] == 0
        assert queued["completedAt"] is None and queued["estimatedCompletionAt"] is not None
        assert set(queued["metrics"].values()) == {0}
        shown = await (await web.get(f"{API}/{project['id']}", headers=carol.headers)).get_json()
        assert shown["status"] == "processing"

        await run_until_idle(kijko)

        finished = await progress(web, carol, project["id"])
        room = f"ingestion:{project['id']}"
        recorded = recorder.recorded(room=room)

    # The progress record: complete, exact.
    assert finished["id"] == queued["id"] and finished["completedAt"] is not None
    assert finished["progressPercent"] == 100 and finished["phase"] == "indexing"
    assert finished["errorMessage"] is None and finished["errorCode"] is None
    run_id = finished["id"]
    chunks = await chunks_of(kijko, run_id)
    files = await files_of(kijko, run_id)
    assert sorted(f["path"] for f in files) == sorted(INGESTED)
    assert finished["metrics"] == {
        "filesProcessed": len(INGESTED),
        "totalFiles": len(INGESTED),
        "tokensProcessed": sum(c["token_count"] for c in chunks),
        "bytesProcessed": sum(len(text.encode()) for text in INGESTED.values()),
        "chunksCreated": len(chunks),
        "errorsEncountered": 0,
    }
    assert chunks and all(c["source"] == "acme/widgets" for c in chunks)
    assert {f["path"]: f["line_count"] for f in files} == {path: text.count("\n") for path, text in INGESTED.items()}
    assert sum(f["chunk_count"] for f in files) == len(chunks)
    assert {f["path"]: f["language"] for f in files}["src/checksum.py"] == "python"

    # The key is redacted, the function is there; symlink, binary and ignored files are not.
    everything = "\n".join(c["content"] for c in chunks)
    assert AWS_SECRET not in everything and AWS_KEY_ID not in everything
    assert "settings.py" in {c["path"].rsplit("/", 1)[-1] for c in chunks}
    assert any("def compute_checksum" in c["content"] for c in chunks if c["path"] == "src/checksum.py")
    assert not {c["path"] for c in chunks} & {*LEFT_OUT, *SYMLINKS}
    assert "root:" not in everything  # /etc/passwd never read through the symlink

    # The project: active, with the run's figures; the repository: synced.
    shown = await (await web.get(f"{API}/{project['id']}/full", headers=carol.headers)).get_json()
    assert shown["status"] == "active"
    assert shown["totalFiles"] == len(INGESTED)
    assert shown["optimizedTokens"] == finished["metrics"]["tokensProcessed"]
    assert shown["originalTokens"] == sum(estimate_tokens(text) for text in INGESTED.values())
    assert shown["ingestionTimeSeconds"] > 0
    (repository,) = shown["repositories"]
    assert repository["status"] == "connected" and repository["fileCount"] == len(INGESTED)
    assert repository["lastCommitHash"] == server.heads["acme/widgets"] and repository["lastSyncAt"]
    assert await indexed_run(kijko, project["id"]) == UUID(run_id)

    # The events: in order, each valid for the frontend, the last one carrying the project.
    names = [e.event + (":" + e.data["phase"] if e.event == "phase_started" else "") for e in recorded]
    assert contract_events.order_problems(names) == []
    assert [n for n in names if n.startswith("phase_started")] == [
        f"phase_started:{phase}" for phase in contract_events.PHASES
    ]
    assert names[-1] == "ingestion_complete"
    for event in recorded:
        contract_events.assert_valid(event.event, event.data)
    complete = recorded[-1].data
    assert complete["finalMetrics"] == finished["metrics"] and complete["success"] is True
    assert complete["project"]["id"] == project["id"] and complete["project"]["status"] == "active"
    updates = [e for e in recorded if e.event == "progress_update"]
    assert updates[-1].data["metrics"]["chunksCreated"] <= len(chunks)
    # At most one progress_update per 500 ms within a phase (but the pending one, flushed
    # right before ingestion_complete).
    for before, after in zip(updates, updates[1:-1], strict=False):
        if before.data["phase"] == after.data["phase"]:
            assert (after.timestamp - before.timestamp).total_seconds() >= 0.45

    # The mail to the member who asked for it (the creator: notifyOnIngestion by default).
    async with system_session(kijko.system_db, readonly=True) as db:
        mails = await db.fetch(
            "SELECT recipient, template FROM kijko.mail_outbox WHERE organization_id = $1", UUID(carol.org_id)
        )
    assert [(m["recipient"], m["template"]) for m in mails] == [(carol.email.lower(), "ingestion_complete")]


# ---------------------------------------------------------------------------------------------
# Start: the rules and every error code.


async def test_start_refuses_what_the_contract_refuses(
    web: Any, ingestion_kijko: Kijko, server: GitServer, carol: Account, dave: Account
) -> None:
    url = f"{API}/{{}}/ingest"
    # NO_SOURCES: a project without repositories, files or text.
    empty = (
        await (await web.post(API, json={"name": unique("Empty"), "type": "manual"}, headers=carol.headers)).get_json()
    )["project"]
    response = await web.post(url.format(empty["id"]), json={}, headers=carol.headers)
    assert response.status_code == 422 and (await response.get_json())["code"] == "NO_SOURCES"
    # CUSTOM_CHUNKER_MISSING: no plugin installed here.
    custom = await project_with_repository(web, carol, unique("Custom"), repo_url(server), chunkingStrategy="custom")
    response = await web.post(url.format(custom["id"]), json={}, headers=carol.headers)
    assert response.status_code == 422 and (await response.get_json())["code"] == "CUSTOM_CHUNKER_MISSING"
    # Another organization's project, an unknown one, a malformed id: the same 404.
    project = await project_with_repository(web, carol, unique("Rules"), repo_url(server))
    for path, who in (
        (url.format(project["id"]), dave),
        (url.format(uuid.uuid4()), carol),
        (url.format("nope"), carol),
    ):
        response = await web.post(path, json={}, headers=who.headers)
        assert response.status_code == 404 and (await response.get_json())["code"] == "PROJECT_NOT_FOUND"
    # A viewer of the organization may not start it.
    viewer = await add_member(ingestion_kijko, carol.org_id, "viewer")
    shared = await project_with_repository(web, carol, unique("Shared"), repo_url(server), privacy="shared")
    response = await web.post(url.format(shared["id"]), json={}, headers=viewer.headers)
    assert response.status_code == 403
    # ALREADY_PROCESSING while it runs; nothing changed by the refused call.
    await ingest(web, carol, project["id"])
    for body in ({}, {"forceReprocess": True}):
        response = await web.post(url.format(project["id"]), json=body, headers=carol.headers)
        assert response.status_code == 409 and (await response.get_json())["code"] == "ALREADY_PROCESSING"
    assert len(await runs_of(ingestion_kijko, project["id"])) == 1
    await run_until_idle(ingestion_kijko)
    # INVALID_STATUS once active, unless forceReprocess.
    response = await web.post(url.format(project["id"]), json={}, headers=carol.headers)
    assert response.status_code == 409 and (await response.get_json())["code"] == "INVALID_STATUS"
    await ingest(web, carol, project["id"], forceReprocess=True)
    await run_until_idle(ingestion_kijko)
    assert [r["status"] for r in await runs_of(ingestion_kijko, project["id"])] == ["completed", "completed"]


async def test_two_starts_at_once_make_one_run(
    web: Any, ingestion_kijko: Kijko, server: GitServer, carol: Account
) -> None:
    project = await project_with_repository(web, carol, unique("Race"), repo_url(server))
    answers = await asyncio.gather(
        *(web.post(f"{API}/{project['id']}/ingest", json={}, headers=carol.headers) for _ in range(4))
    )
    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409]
    assert len(await runs_of(ingestion_kijko, project["id"])) == 1
    await run_until_idle(ingestion_kijko)


async def test_progress_is_null_for_a_project_never_ingested(
    web: Any, server: GitServer, carol: Account, dave: Account
) -> None:
    project = await project_with_repository(web, carol, unique("Never"), repo_url(server))
    response = await web.get(f"{API}/{project['id']}/progress", headers=carol.headers)
    assert response.status_code == 200 and await response.get_data(as_text=True) == "null"
    response = await web.get(f"{API}/{project['id']}/progress", headers=dave.headers)
    assert response.status_code == 404 and (await response.get_json())["code"] == "PROJECT_NOT_FOUND"
