"""Ingestion end to end (issue 7 §5, docs/ingestion.md): a git repository made here, served by
git's own smart-HTTP server on 127.0.0.1 (allowed through KIJKO_EGRESS_ALLOW_CIDRS and
KIJKO_GIT_HOSTS), ingested by a real worker of this process: exact metrics, the planted key
redacted, symlink and binary skipped, the project active, the events in order and valid per
the frontend's validators; cancel, re-ingest, failures, concurrency, isolation and the
internal progress routes of external runners."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from kijko_core.db.session import (
    ServiceActor,
    load_service_capability,
    service_session,
    system_session,
    tenant_session,
)
from kijko_core.ingestion.tokens import estimate_tokens
from kijko_core.jobs.worker import run_until_idle
from kijko_core.runtime import Kijko
from kijko_server.app import create_app
from tests import contract_events, runs_kit
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
    run_row,
    running_worker,
    runs_of,
    wait_for,
)
from tests.memberships import add_member
from tests.reflex_kit import create_reflex

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


@pytest.fixture(scope="module", autouse=True)
def own_temporary_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The jobs of this module make their work directories (``tempfile``) in a directory of its
    own: the tests that check they are removed then see only theirs, not those of ingestions
    running at the same time in another xdist worker or another test run on the machine."""
    previous = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.mktemp("tmp"))
    try:
        yield
    finally:
        tempfile.tempdir = previous


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
        git_hosts=f"github={git_server.url}",
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
    workdirs_before = _workdirs()
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

    assert _workdirs() == workdirs_before  # the job's temporary directory is gone

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


# ---------------------------------------------------------------------------------------------
# Cancel, re-ingest, failure.


async def _service_insert_chunk(
    kijko: Kijko, org_id: str, project_id: str, run_id: str, *, actor_org: str | None = None
) -> None:
    """A chunk written the way the worker writes them (a service session of ``actor_org``)."""
    capability = await load_service_capability(kijko.system_db)
    async with service_session(
        kijko.app_db, capability, UUID(actor_org or org_id), ServiceActor("ingestion.run", "test")
    ) as db:
        await db.execute(
            "INSERT INTO kijko.chunks (organization_id, project_id, run_id, source, path, language, start_line,"
            " end_line, content, content_hash, token_count) VALUES ($1, $2, $3, 'acme/widgets', 'partial.py',"
            " 'python', 1, 1, 'partial', repeat('a', 64), 1)",
            UUID(org_id),
            UUID(project_id),
            UUID(run_id),
        )


async def test_cancel_stops_the_worker_within_5_s_and_keeps_the_previous_index(
    web: Any, ingestion_kijko: Kijko, server: GitServer, carol: Account
) -> None:
    kijko = ingestion_kijko
    project = await project_with_repository(web, carol, unique("Cancel"), repo_url(server))
    await ingest(web, carol, project["id"])
    await run_until_idle(kijko)
    first = await progress(web, carol, project["id"])
    first_chunks = await chunks_of(kijko, first["id"])
    assert first["completedAt"] and first_chunks

    server.delay = 2.0  # every git request: the fetch takes seconds
    async with recording() as recorder, running_worker(kijko) as worker:
        second = await ingest(web, carol, project["id"], forceReprocess=True)
        run = (await runs_of(kijko, project["id"]))[-1]
        await wait_for(lambda: _status_is(kijko, run["id"], "running"))
        await _service_insert_chunk(kijko, carol.org_id, project["id"], str(run["id"]))  # as if partly indexed
        cancelled_at = time.monotonic()
        response = await web.post(f"{API}/{project['id']}/cancel-ingestion", headers=carol.headers)
        assert response.status_code == 200 and await response.get_json() == {"success": True}
        await wait_for(lambda: _idle(worker), within=5.0)
        assert time.monotonic() - cancelled_at < 5.0
        await wait_for(lambda: _no_chunks(kijko, run["id"]), within=5.0)

    row = await run_row(kijko, run["id"])
    assert row["status"] == "cancelled" and row["completed_at"] is None
    async with system_session(kijko.system_db, readonly=True) as db:
        job_state = await db.fetchval("SELECT state FROM kijko.jobs WHERE id = $1", UUID(second["jobId"]))
    assert job_state == "cancelled"
    # The previous run stays the index, whole; the project is back to active; what a client
    # reads is the previous (completed) run, not the withdrawn one.
    assert await indexed_run(kijko, project["id"]) == UUID(first["id"])
    assert await chunks_of(kijko, first["id"]) == first_chunks
    shown = await (await web.get(f"{API}/{project['id']}/full", headers=carol.headers)).get_json()
    assert shown["status"] == "active" and shown["repositories"][0]["status"] == "connected"
    assert (await progress(web, carol, project["id"]))["id"] == first["id"]
    assert not recorder.recorded(event="ingestion_complete") and not recorder.recorded(event="error")
    # Nothing left to cancel.
    response = await web.post(f"{API}/{project['id']}/cancel-ingestion", headers=carol.headers)
    assert response.status_code == 404 and (await response.get_json())["code"] == "NO_ACTIVE_INGESTION"


async def test_cancelling_a_first_run_returns_the_project_to_draft(
    web: Any, ingestion_kijko: Kijko, server: GitServer, carol: Account
) -> None:
    project = await project_with_repository(web, carol, unique("Draft"), repo_url(server))
    started = await ingest(web, carol, project["id"])
    response = await web.post(f"{API}/{project['id']}/cancel-ingestion", headers=carol.headers)
    assert response.status_code == 200
    shown = await (await web.get(f"{API}/{project['id']}", headers=carol.headers)).get_json()
    assert shown["status"] == "draft"
    assert await progress(web, carol, project["id"]) is None
    async with system_session(ingestion_kijko.system_db, readonly=True) as db:
        assert await db.fetchval("SELECT state FROM kijko.jobs WHERE id = $1", UUID(started["jobId"])) == "cancelled"
    # It can be started again (a draft needs no forceReprocess).
    await ingest(web, carol, project["id"])
    await run_until_idle(ingestion_kijko)
    assert (await progress(web, carol, project["id"]))["completedAt"]


async def test_re_ingesting_swaps_the_index_atomically(
    web: Any, ingestion_kijko: Kijko, server: GitServer, carol: Account
) -> None:
    kijko = ingestion_kijko
    project = await project_with_repository(web, carol, unique("Swap"), repo_url(server))
    await ingest(web, carol, project["id"])
    await run_until_idle(kijko)
    first = await progress(web, carol, project["id"])
    first_chunks = await chunks_of(kijko, first["id"])

    server.delay = 0.5
    async with running_worker(kijko) as worker:
        await ingest(web, carol, project["id"], forceReprocess=True)
        second_id = (await runs_of(kijko, project["id"]))[-1]["id"]
        # While the new run works, readers see the old index, whole. (Read in one statement:
        # separate reads of the status and the index could fall either side of the swap.)
        seen_running = False
        while True:
            status, indexed, old_chunks = await _run_and_index(kijko, second_id, project["id"], first["id"])
            if status not in ("queued", "running"):
                break
            seen_running = True
            assert indexed == UUID(first["id"])
            assert old_chunks == len(first_chunks)
            await asyncio.sleep(0.05)
        await wait_for(lambda: _idle(worker))
    assert seen_running
    assert await indexed_run(kijko, project["id"]) == second_id
    second_chunks = await chunks_of(kijko, second_id)
    assert [c["content_hash"] for c in second_chunks] == [c["content_hash"] for c in first_chunks]
    assert await chunks_of(kijko, first["id"]) == []  # the old run's chunks went with the switch
    assert await files_of(kijko, first["id"]) == []
    assert (await run_row(kijko, first["id"]))["status"] == "completed"  # its history stays


async def test_a_fatal_error_fails_the_run_with_its_code(
    web: Any, ingestion_kijko: Kijko, server: GitServer, carol: Account
) -> None:
    kijko = ingestion_kijko
    project = await project_with_repository(web, carol, unique("Missing"), repo_url(server, "missing"))
    workdirs_before = _workdirs()
    async with recording() as recorder:
        await ingest(web, carol, project["id"])
        await run_until_idle(kijko)
    assert _workdirs() == workdirs_before  # removed after a failure too
    failed = await progress(web, carol, project["id"])
    assert failed["errorCode"] == "REPOSITORY_NOT_FOUND" and "acme/missing" in failed["errorMessage"]
    assert failed["completedAt"] is None and failed["phase"] == "repository_fetch"
    shown = await (await web.get(f"{API}/{project['id']}/full", headers=carol.headers)).get_json()
    assert shown["status"] == "error" and shown["repositories"][0]["status"] == "error"
    assert await indexed_run(kijko, project["id"]) is None
    (error,) = recorder.recorded(room=f"ingestion:{project['id']}", event="error")
    contract_events.assert_valid("error", error.data)
    assert error.data["errorCode"] == "REPOSITORY_NOT_FOUND" and error.data["recoverable"] is False
    names = [e.event for e in recorder.recorded(room=f"ingestion:{project['id']}")]
    assert names[0] == "phase_started" and names[-1] == "error"
    async with system_session(kijko.system_db, readonly=True) as db:
        templates = await db.fetch(
            "SELECT template FROM kijko.mail_outbox WHERE organization_id = $1 ORDER BY created_at",
            UUID(carol.org_id),
        )
    assert [t["template"] for t in templates] == ["ingestion_failed"]
    # An error project is re-ingested only with forceReprocess.
    response = await web.post(f"{API}/{project['id']}/ingest", json={}, headers=carol.headers)
    assert response.status_code == 409 and (await response.get_json())["code"] == "INVALID_STATUS"


async def test_the_run_of_another_organization_is_out_of_reach(
    web: Any, ingestion_kijko: Kijko, server: GitServer, carol: Account, dave: Account
) -> None:
    kijko = ingestion_kijko
    project = await project_with_repository(web, carol, unique("Isolated"), repo_url(server))
    theirs = await project_with_repository(web, dave, unique("Theirs"), repo_url(server))
    await ingest(web, carol, project["id"])
    for method, path, body in (
        ("GET", f"{API}/{project['id']}/progress", None),
        ("POST", f"{API}/{project['id']}/cancel-ingestion", None),
        ("POST", f"{API}/{project['id']}/ingest", {"forceReprocess": True}),
        ("PUT", f"{API}/{project['id']}/progress", {"message": "mine now"}),
        ("POST", f"{API}/{project['id']}/progress/snapshot", {"metrics": _metrics()}),
        ("POST", f"{API}/{project['id']}/progress/complete", {"metrics": _metrics(), "totalDurationSeconds": 1}),
    ):
        response = await web.open(path, method=method, json=body, headers=dave.headers)
        assert response.status_code == 404, (method, path)
        assert (await response.get_json())["code"] == "PROJECT_NOT_FOUND"
    run_id = str((await runs_of(kijko, project["id"]))[0]["id"])
    assert (await run_row(kijko, run_id))["status"] == "queued"

    # A job of Dave's organization can never write chunks into Carol's: row-level security
    # refuses Carol's organization id, the composite foreign key Carol's project or run under
    # Dave's id.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _service_insert_chunk(kijko, carol.org_id, project["id"], run_id, actor_org=dave.org_id)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await _service_insert_chunk(kijko, dave.org_id, project["id"], run_id, actor_org=dave.org_id)
    # A member (a user in the context) writes no chunks even in their own organization.
    from kijko_core.db.session import tenant_session

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with tenant_session(kijko.app_db, carol.identity) as db:
            await db.execute(
                "INSERT INTO kijko.chunks (organization_id, project_id, run_id, source, path, language,"
                " start_line, end_line, content, content_hash, token_count)"
                " VALUES ($1, $2, $3, 'x', 'x', 'text', 1, 1, 'x', repeat('a', 64), 1)",
                UUID(carol.org_id),
                UUID(project["id"]),
                UUID(run_id),
            )
    # Nor reads another organization's.
    await run_until_idle(kijko)
    async with tenant_session(kijko.app_db, dave.identity, readonly=True) as db:
        assert await db.fetchval("SELECT count(*) FROM kijko.chunks WHERE project_id = $1", UUID(project["id"])) == 0
        assert (
            await db.fetchval("SELECT count(*) FROM kijko.ingestion_runs WHERE project_id = $1", UUID(project["id"]))
            == 0
        )
    assert theirs["id"] != project["id"]


async def _status_is(kijko: Kijko, run_id: Any, *states: str) -> bool:
    return (await run_row(kijko, run_id))["status"] in states


async def _run_and_index(kijko: Kijko, run_id: Any, project_id: str, old_run_id: str) -> tuple[str, UUID | None, int]:
    """A run's status, the project's indexed run and the chunk count of ``old_run_id``, from
    one snapshot."""
    async with system_session(kijko.system_db, readonly=True) as db:
        row = await db.fetchrow(
            "SELECT (SELECT status FROM kijko.ingestion_runs WHERE id = $1) AS status,"
            " (SELECT run_id FROM kijko.project_indexes WHERE project_id = $2) AS indexed,"
            " (SELECT count(*) FROM kijko.chunks WHERE run_id = $3) AS old_chunks",
            UUID(str(run_id)),
            UUID(project_id),
            UUID(old_run_id),
        )
    return row["status"], row["indexed"], row["old_chunks"]


def _workdirs() -> set[str]:
    return {path.name for path in Path(tempfile.gettempdir()).glob("kijko-ingestion-*")}


async def _only_run_id(kijko: Kijko, project_id: str) -> Any:
    (run,) = await runs_of(kijko, project_id)
    return run["id"]


async def _idle(worker: Any) -> bool:
    return worker.running_count == 0


async def _no_chunks(kijko: Kijko, run_id: Any) -> bool:
    return not await chunks_of(kijko, run_id)


def _metrics(**values: int) -> dict[str, int]:
    return {name: values.get(name, 0) for name in contract_events.METRICS}


async def test_an_organization_runs_at_most_its_limit_and_queues_the_rest(
    web: Any, ingestion_kijko: Kijko, server: GitServer, carol: Account, dave: Account
) -> None:
    kijko = ingestion_kijko
    assert kijko.settings.ingestion_concurrency_per_org == 2
    projects = [await project_with_repository(web, carol, unique(f"Busy {i}"), repo_url(server)) for i in range(3)]
    elsewhere = await project_with_repository(web, dave, unique("Elsewhere"), repo_url(server))
    server.delay = 0.7
    most = 0
    seen_queued_while_full = False
    async with running_worker(kijko, concurrency=8) as worker:
        for project in projects:  # more than the limit: accepted, not refused
            await ingest(web, carol, project["id"])
        await ingest(web, dave, elsewhere["id"])  # another organization's limit is its own
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = [(await runs_of(kijko, p["id"]))[0]["status"] for p in projects]
            running = states.count("running")
            most = max(most, running)
            if running == 2 and "queued" in states:
                seen_queued_while_full = True
            if all(state == "completed" for state in states):
                break
            await asyncio.sleep(0.05)
        other_run = await _only_run_id(kijko, elsewhere["id"])
        await wait_for(lambda: _status_is(kijko, other_run, "completed"))
        await wait_for(lambda: _idle(worker))
    assert most == 2 and seen_queued_while_full
    assert [(await runs_of(kijko, p["id"]))[0]["status"] for p in projects] == ["completed"] * 3
    async with system_session(kijko.system_db, readonly=True) as db:
        attempts = await db.fetch(
            "SELECT j.attempts FROM kijko.jobs j JOIN kijko.ingestion_runs r ON r.job_id = j.id"
            " WHERE r.project_id = ANY($1::uuid[])",
            [UUID(p["id"]) for p in projects],
        )
    assert [a["attempts"] for a in attempts] == [1, 1, 1]  # waiting consumed no attempt


async def test_a_private_repository_is_cloned_with_the_requesters_connection(
    web: Any, ingestion_kijko: Kijko, server: GitServer, carol: Account
) -> None:
    kijko = ingestion_kijko
    project = await project_with_repository(web, carol, unique("Private"), repo_url(server, "other"))
    server.require_token = "gho_secret-token-of-carol"
    # Not connected: the clone is refused, and says what to do.
    await ingest(web, carol, project["id"])
    await run_until_idle(kijko)
    failed = await progress(web, carol, project["id"])
    assert failed["errorCode"] == "AUTHENTICATION_REQUIRED" and "connect" in failed["errorMessage"]
    assert server.require_token not in failed["errorMessage"]
    # Connected (the provider's token stored encrypted, as the OAuth flow stores it).
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "INSERT INTO kijko.git_connections (organization_id, user_id, provider, username,"
            " access_token_ciphertext) VALUES ($1, $2, 'github', 'carol', $3)",
            UUID(carol.org_id),
            UUID(carol.user_id),
            kijko.keyring.encrypt(server.require_token),
        )
    await ingest(web, carol, project["id"], forceReprocess=True)
    await run_until_idle(kijko)
    done = await progress(web, carol, project["id"])
    assert done["completedAt"] and done["metrics"]["totalFiles"] == 1
    chunks = await chunks_of(kijko, done["id"])
    assert [c["path"] for c in chunks] == ["main.go"]


async def test_a_custom_chunker_plugin_is_used_and_a_file_it_fails_on_is_counted(
    web: Any, ingestion_kijko: Kijko, carol: Account, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_chunking import install_plugin

    kijko = ingestion_kijko

    async def manual_project(name: str) -> dict[str, Any]:
        body = {
            "name": unique(name),
            "type": "manual",
            "chunkingStrategy": "custom",
            "customSettings": {"manualContent": "alpha beta\n\ngamma\n"},
        }
        response = await web.post(API, json=body, headers=carol.headers)
        assert response.status_code == 201
        project: dict[str, Any] = (await response.get_json())["project"]
        return project

    install_plugin(tmp_path / "good", monkeypatch, {"paragraphs": "tests.test_chunking:ParagraphChunker"})
    good = await manual_project("Custom")
    await ingest(web, carol, good["id"])
    await run_until_idle(kijko)
    done = await progress(web, carol, good["id"])
    assert done["completedAt"] and done["metrics"]["chunksCreated"] == 1
    assert [c["symbol"] for c in await chunks_of(kijko, done["id"])] == ["whole"]

    monkeypatch.undo()
    install_plugin(tmp_path / "bad", monkeypatch, {"buggy": "tests.test_chunking:FailingChunker"})
    bad = await manual_project("Buggy")
    await ingest(web, carol, bad["id"])
    await run_until_idle(kijko)
    counted = await progress(web, carol, bad["id"])  # the file failed; the run went on
    assert counted["completedAt"] and counted["errorCode"] is None
    assert counted["metrics"] == {
        "filesProcessed": 1,
        "totalFiles": 1,
        "tokensProcessed": 0,
        "bytesProcessed": 0,
        "chunksCreated": 0,
        "errorsEncountered": 1,
    }
    assert await chunks_of(kijko, counted["id"]) == []


async def test_a_token_goes_only_to_its_providers_urls_whatever_the_repository_row_says(
    web: Any, ingestion_kijko: Kijko, server: GitServer, carol: Account
) -> None:
    """A repository row pairing a provider with another provider's host (the app role inserts
    rows: an injected statement could) fails the run before any clone: the requester's token
    of that provider never reaches the host."""
    kijko = ingestion_kijko
    response = await web.post(API, json={"name": unique("Forged"), "type": "repository"}, headers=carol.headers)
    project = (await response.get_json())["project"]
    token = "glpat-carols-gitlab-token"
    async with tenant_session(kijko.app_db, carol.identity) as db:  # what an injected statement can do
        await db.execute(
            "INSERT INTO kijko.repositories (organization_id, project_id, user_id, provider, repository_url,"
            " repository_name, branch) VALUES ($1, $2, $3, 'gitlab', $4, 'acme/other', 'main')",
            UUID(carol.org_id),
            UUID(project["id"]),
            UUID(carol.user_id),
            repo_url(server, "other"),
        )
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "INSERT INTO kijko.git_connections (organization_id, user_id, provider, username,"
            " access_token_ciphertext) VALUES ($1, $2, 'gitlab', 'carol', $3)",
            UUID(carol.org_id),
            UUID(carol.user_id),
            kijko.keyring.encrypt(token),
        )
    before = len(server.authorizations)
    await ingest(web, carol, project["id"])
    await run_until_idle(kijko)
    failed = await progress(web, carol, project["id"])
    assert failed["errorCode"] == "REPOSITORY_UNREACHABLE", failed
    assert "provider" in failed["errorMessage"] and token not in failed["errorMessage"]
    assert server.authorizations[before:] == []  # no request reached the host at all


async def test_ingestion_completed_and_failed_fire_event_reflexes_of_that_project(
    web: Any, ingestion_kijko: Kijko, server: GitServer, carol: Account
) -> None:
    """The catalogue's ``ingestion.completed`` / ``ingestion.failed`` (docs/reflexes.md#events),
    emitted by real runs: a reflex on each fires once with the run's data, one narrowed to
    another project (``source``) does not."""
    kijko = ingestion_kijko
    skill = await runs_kit.insert_skill(kijko, carol, template="Run {{runId}} of {{projectId}}: {{status}}.")
    async with system_session(kijko.system_db) as db:  # the event's data is the input, as it comes
        await db.execute("UPDATE kijko.skills SET input_schema = '[]' WHERE id = $1", skill["id"])
    good = await project_with_repository(web, carol, unique("Good"), repo_url(server))
    bad = await project_with_repository(web, carol, unique("Bad"), repo_url(server, "missing"))

    async def on(event: str, source: str) -> str:
        config = {"eventName": event, "source": source}
        return str((await create_reflex(web, carol, skill["id"], triggerType="event", triggerConfig=config))["id"])

    completed, failed = await on("ingestion.completed", good["id"]), await on("ingestion.failed", bad["id"])
    elsewhere = await on("ingestion.completed", bad["id"])
    await ingest(web, carol, good["id"])
    await ingest(web, carol, bad["id"])
    await run_until_idle(kijko)
    async with system_session(kijko.system_db, readonly=True) as db:
        rows = await db.fetch(
            "SELECT reference_id, input, status, organization_id FROM kijko.skill_executions"
            " WHERE reference_id = ANY($1::uuid[])",
            [UUID(completed), UUID(failed), UUID(elsewhere)],
        )
    by_reflex = {str(row["reference_id"]): row for row in rows}
    assert sorted(by_reflex) == sorted([completed, failed]) and len(rows) == 2
    done, broken = by_reflex[completed], by_reflex[failed]
    assert (done["input"]["projectId"], done["input"]["status"]) == (good["id"], "completed")
    assert done["input"]["runId"] == (await progress(web, carol, good["id"]))["id"]
    assert (broken["input"]["projectId"], broken["input"]["status"]) == (bad["id"], "failed")
    assert broken["input"]["errorCode"] == "REPOSITORY_NOT_FOUND"
    assert {str(row["organization_id"]) for row in rows} == {carol.org_id}
    assert {row["status"] for row in rows} == {"completed"}
