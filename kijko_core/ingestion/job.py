"""The ``ingestion.run`` job: one run of a project's sources into its searchable index
(docs/ingestion.md). Five phases, each announced and reported:

1. **repository_fetch** — every repository cloned through the egress guard (the requester's
   git-provider connection for private ones), uploaded files and the manual text staged, all
   in a per-job temporary directory that is always removed;
2. **parsing** — the cheap pass over each checkout (``.gitignore``, include/exclude, caps,
   binaries, vendored files, languages): ``totalFiles``;
3. **chunking** — each file read and cut by the project's strategy, one file in memory at a
   time, chunks spooled to disk;
4. **optimization** — secrets redacted, duplicates dropped, metadata headers, spooled again;
5. **indexing** — the chunks written in batches, then, in one transaction, the project's index
   switched to this run and the previous run's chunks deleted (readers see the old index
   until that commit).

The run row is the worker's truth: every progress write names the states a live run has, so
a cancel (the row → ``cancelled``) stops the worker within one write interval (2 s), and a
retried attempt (a worker killed mid-run, retried after its lease) starts over from a clean
slate: the previous attempt's partial chunks are deleted first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from uuid import UUID

from kijko_core import events, git, jobs
from kijko_core.billing import quotas
from kijko_core.crypto import DecryptionFailed
from kijko_core.db.session import ServiceSession, system_session
from kijko_core.ingestion import repository, service
from kijko_core.ingestion.chunkers import Chunk, ChunkOptions, chunker_for
from kijko_core.ingestion.fetch import Checkout, fetch_repository, stage_manual, stage_uploads
from kijko_core.ingestion.files import (
    REPOSITORY_TOO_LARGE,
    REPOSITORY_UNREACHABLE,
    SOURCE_MISSING,
    TOO_MANY_FILES,
    Caps,
    IngestionFailed,
    SourceFile,
)
from kijko_core.ingestion.models import ACTIVE
from kijko_core.ingestion.optimize import Optimizer
from kijko_core.ingestion.reporter import Reporter, RunStopped, error_payload, room
from kijko_core.ingestion.tokens import estimate_tokens
from kijko_core.ingestion.walk import Plan, Planned, UnreadableFile, plan, read
from kijko_core.jobs import JobContext
from kijko_core.logging import get_logger
from kijko_core.projects.models import Project
from kijko_core.reflexes import catalogue
from kijko_core.repositories import urls
from kijko_core.sources.models import FileRecord

if TYPE_CHECKING:
    from kijko_core.config import Settings
    from kijko_core.runtime import Kijko

log = get_logger("kijko.ingestion")

#: Rows per INSERT of chunks (one statement, arrays bound once) and of file rows.
CHUNK_BATCH = 2000
#: Chunk batches written at once, each in its own short session: most of a write's cost is
#: PostgreSQL computing the search column (migration 0015), which then runs in as many backends.
INDEX_WRITERS = 2
FILE_BATCH = 5000
#: Chunks optimized per thread hand-off.
OPTIMIZE_BATCH = 500
#: An attempt running longer is stopped (and retried, up to the kind's attempts).
TIMEOUT_SECONDS = 6 * 3600.0
#: The ``errorCode`` of a run stopped by something that is not one of the documented codes.
INTERNAL_ERROR = "INTERNAL_ERROR"


@dataclass
class _Source:
    """One staged source: its checkout, its plan and, for a repository, its row."""

    checkout: Checkout
    repository: dict[str, Any] | None = None
    plan: Plan | None = None


@dataclass
class _Outcome:
    sources: list[_Source] = field(default_factory=list)
    original_tokens: int = 0


@jobs.job_kind(service.JOB_KIND, max_attempts=3, lease_seconds=15, timeout_seconds=TIMEOUT_SECONDS)
async def run_ingestion(ctx: JobContext) -> None:
    run_id = UUID(ctx.payload["run_id"])
    project_id = UUID(ctx.payload["project_id"])
    org_id = ctx.org_id
    assert org_id is not None
    if not await _admit(ctx, org_id, run_id, project_id):
        return
    reporter = Reporter(ctx.service_session, org_id, project_id, run_id)
    started = time.monotonic()
    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="kijko-ingestion-"))
    try:
        try:
            async with reporter.kept():
                outcome = await _pipeline(ctx, reporter, project_id, workdir)
            # Outside the keeper: once this commits the run is no longer active, and a keeper
            # write would take that for a cancel.
            await _complete(ctx, reporter, outcome, time.monotonic() - started)
        except RunStopped:
            await _stopped(ctx, reporter)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if reporter.stopped and not ctx.cancelled and task is not None:
                task.uncancel()  # our own stop: the run row was cancelled
                await _stopped(ctx, reporter)
                return
            if ctx.cancelled:  # the job was cancelled: no retry will clean up
                await _stopped(ctx, reporter)
            raise
        except IngestionFailed as failure:
            await _failed(ctx, reporter, failure.code, failure.message, recoverable=False)
        except Exception as error:
            last = ctx.attempt >= jobs.get_kind(ctx.kind).max_attempts
            log.exception("ingestion_attempt_failed", run_id=str(run_id), attempt=ctx.attempt, last=last)
            if last:
                await _failed(
                    ctx,
                    reporter,
                    INTERNAL_ERROR,
                    f"The ingestion stopped unexpectedly ({type(error).__name__})",
                    recoverable=False,
                )
            else:
                await _retrying(reporter, ctx.attempt)
            raise
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)


async def _admit(ctx: JobContext, org_id: UUID, run_id: UUID, project_id: UUID) -> bool:
    """Start the run (or restart it, for a retried attempt) within the organization's
    concurrency limit; False: nothing to do (cancelled before it ran, or finished)."""
    limit = ctx.kijko.settings.ingestion_concurrency_per_org
    async with ctx.service_session() as db:
        run = await repository.get(db, org_id, run_id, for_update=True)
        if run is None or run.status not in ACTIVE:
            return False
        await repository.lock_organization(db, org_id)
        if await repository.running_in_organization(db, org_id, run_id) >= limit:
            raise jobs.JobDeferred(ctx.kijko.settings.ingestion_queue_recheck_seconds)
        if run.status == "running":  # an earlier attempt died: start over from a clean slate
            await repository.delete_run_content(db, org_id, project_id, run_id)
            log.info("ingestion_restarted", run_id=str(run_id), attempt=ctx.attempt)
        await repository.start(db, org_id, run_id, "Starting")
    return True


# --- the phases ------------------------------------------------------------------------------


async def _pipeline(ctx: JobContext, reporter: Reporter, project_id: UUID, workdir: Path) -> _Outcome:
    org_id = reporter.org_id
    async with ctx.service_session(readonly=True) as db:
        project = await repository.project(db, org_id, project_id)
        if project is None:
            raise RunStopped(str(reporter.run_id))
        run = await repository.get(db, org_id, reporter.run_id)
        repositories = await repository.repositories(db, org_id, project_id)
        uploads = await repository.uploads(db, org_id, project_id)
        manual = await repository.manual_content(db, org_id, project_id)
        tokens = await _tokens(ctx, db, run.requested_by if run else None, repositories)
    outcome = _Outcome()
    await _repository_fetch(ctx, reporter, outcome, workdir, repositories, uploads, manual, tokens)
    await _parsing(ctx, reporter, outcome)
    raw_spool, files_spool = workdir / "chunks.jsonl", workdir / "files.jsonl"
    await _chunking(ctx, reporter, outcome, project, raw_spool, files_spool)
    kept_spool = workdir / "optimized.jsonl"
    per_file = await _optimization(ctx, reporter, project, raw_spool, kept_spool)
    await _indexing(ctx, reporter, kept_spool, files_spool, per_file)
    return outcome


async def _repository_fetch(
    ctx: JobContext,
    reporter: Reporter,
    outcome: _Outcome,
    workdir: Path,
    repositories: list[dict[str, Any]],
    uploads: list[FileRecord],
    manual: str | None,
    tokens: dict[str, str],
) -> None:
    """Phase 1: every repository cloned, the uploaded files and the manual text staged."""
    settings = ctx.kijko.settings
    org_id = reporter.org_id
    count = len(repositories) + bool(uploads) + bool(manual)
    await reporter.phase_started("repository_fetch", f"Fetching {count} source{'s' if count != 1 else ''}")
    for index, row in enumerate(repositories):
        ctx.check()
        async with ctx.service_session() as db:
            await repository.set_repository_status(db, org_id, row["id"], "syncing")
        try:
            _check_provider(settings, row)
            checkout = await fetch_repository(
                settings,
                url=row["repository_url"],
                branch=row["branch"],
                source=row["repository_name"],
                workdir=workdir / f"repository-{index}",
                token=tokens.get(row["provider"]),
                username=git.TOKEN_USERNAMES.get(row["provider"], git.TOKEN_USERNAME),
            )
        except IngestionFailed:
            async with ctx.service_session() as db:
                await repository.set_repository_status(db, org_id, row["id"], "error")
            raise
        outcome.sources.append(_Source(checkout, row))
        await reporter.progress(100 * (index + 1) / count, f"Fetched {row['repository_name']}")
    if uploads:
        if ctx.kijko.storage is None:
            raise IngestionFailed(SOURCE_MISSING, "The uploaded files' storage is not available")
        outcome.sources.append(_Source(await stage_uploads(ctx.kijko.storage, uploads, workdir / "uploads")))
        await reporter.progress(100 * (len(repositories) + 1) / count, "Staged the uploaded files")
    if manual:
        outcome.sources.append(_Source(await stage_manual(manual, workdir / "manual")))
        await reporter.progress(100.0, "Staged the text")


async def _parsing(ctx: JobContext, reporter: Reporter, outcome: _Outcome) -> None:
    """Phase 2: each source planned (filters, caps, languages): ``totalFiles``."""
    await reporter.phase_started("parsing", "Finding the files to ingest")
    caps = Caps.from_settings(ctx.kijko.settings)
    planned_bytes = 0
    for index, source in enumerate(outcome.sources):
        ctx.check()
        settings_of = source.repository
        source.plan = await asyncio.to_thread(
            plan,
            source.checkout,
            include=tuple(settings_of["include_paths"]) if settings_of else (),
            exclude=tuple(settings_of["exclude_paths"]) if settings_of else (),
            caps=caps,
        )
        reporter.counters.total_files += len(source.plan.files)
        planned_bytes += sum(planned.size_bytes for planned in source.plan.files)
        # The caps hold for the run as a whole, not only for each source.
        if reporter.counters.total_files > caps.max_files:
            raise IngestionFailed(TOO_MANY_FILES, f"The sources have more than {caps.max_files:,} files to ingest")
        if planned_bytes > caps.max_total_bytes:
            raise IngestionFailed(
                REPOSITORY_TOO_LARGE, f"The sources hold more than {caps.max_total_bytes:,} bytes to ingest"
            )
        skipped = sum(source.plan.skipped.values())
        await reporter.progress(
            100 * (index + 1) / len(outcome.sources),
            f"{source.checkout.source}: {len(source.plan.files)} files ({skipped} skipped)",
        )


async def _chunking(
    ctx: JobContext, reporter: Reporter, outcome: _Outcome, project: Project, raw_spool: Path, files_spool: Path
) -> None:
    """Phase 3: each planned file read and cut, one at a time; its chunks spooled to
    ``raw_spool``, its file row to ``files_spool``."""
    settings = ctx.kijko.settings
    await reporter.phase_started("chunking", f"Cutting {reporter.counters.total_files} files into chunks")
    chunker = chunker_for(project.chunking_strategy, custom=settings.ingestion_custom_chunker)
    options = ChunkOptions.from_settings(settings)
    total = max(reporter.counters.total_files, 1)
    with raw_spool.open("w", encoding="utf-8") as chunks_out, files_spool.open("w", encoding="utf-8") as files_out:
        for source in outcome.sources:
            assert source.plan is not None
            for planned in source.plan.files:
                ctx.check()
                cut = await asyncio.to_thread(_read_and_cut, planned, chunker, options)
                reporter.counters.files_processed += 1
                if cut is None:
                    reporter.counters.errors_encountered += 1
                else:
                    file, chunks, file_tokens = cut
                    outcome.original_tokens += file_tokens
                    reporter.counters.bytes_processed += file.size_bytes
                    _write_lines(chunks_out, (dataclasses.asdict(chunk) for chunk in chunks))
                    files_out.write(
                        json.dumps([file.source, file.path, file.language, file.size_bytes, file.line_count]) + "\n"
                    )
                reporter.original_tokens = outcome.original_tokens
                await reporter.progress(100 * reporter.counters.files_processed / total)


async def _optimization(
    ctx: JobContext, reporter: Reporter, project: Project, raw_spool: Path, kept_spool: Path
) -> dict[tuple[str, str], int]:
    """Phase 4: the spooled chunks redacted, deduplicated and headed into ``kept_spool``.
    Returns the chunks kept per (source, path)."""
    await reporter.phase_started("optimization", "Redacting secrets and removing duplicates")
    optimizer = Optimizer(anonymize_secrets=project.anonymize_secrets, include_metadata=project.include_metadata)
    raw_count = _count_lines(raw_spool)
    per_file: dict[tuple[str, str], int] = {}
    seen = 0
    with raw_spool.open(encoding="utf-8") as chunks_in, kept_spool.open("w", encoding="utf-8") as kept_out:
        # In a thread, a batch at a time: secret detection is CPU work, and the event loop
        # must stay free for the heartbeat and the progress writes.
        for batch in _batches(chunks_in, OPTIMIZE_BATCH):
            ctx.check()
            for key in await asyncio.to_thread(_optimize, batch, optimizer, kept_out):
                per_file[key] = per_file.get(key, 0) + 1
            seen += len(batch)
            await reporter.progress(100 * seen / max(raw_count, 1))
    await reporter.progress(
        100.0, f"{optimizer.secrets_redacted} secrets redacted, {optimizer.duplicates} duplicate chunks dropped"
    )
    return per_file


async def _indexing(
    ctx: JobContext, reporter: Reporter, kept_spool: Path, files_spool: Path, per_file: dict[tuple[str, str], int]
) -> None:
    """Phase 5: the kept chunks and the file rows written in batches (the index switches to
    this run when it completes, in :func:`_complete`)."""
    await reporter.phase_started("indexing", "Writing the index")
    kept_count = _count_lines(kept_spool)

    async def write(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
        async with ctx.service_session() as db:
            await _insert_chunks(db, reporter, stored)
        return stored

    async def count(finished: set[asyncio.Task[list[dict[str, Any]]]]) -> None:
        for task in finished:
            stored = task.result()  # a failed write fails the run (the others are cancelled)
            reporter.counters.chunks_created += len(stored)
            reporter.counters.tokens_processed += sum(item["token_count"] for item in stored)
        await reporter.progress(100 * reporter.counters.chunks_created / max(kept_count, 1))

    writing: set[asyncio.Task[list[dict[str, Any]]]] = set()
    try:
        with kept_spool.open(encoding="utf-8") as kept_in:
            for batch in _batches(kept_in, CHUNK_BATCH):
                ctx.check()
                if len(writing) >= INDEX_WRITERS:
                    finished, writing = await asyncio.wait(writing, return_when=asyncio.FIRST_COMPLETED)
                    await count(finished)
                writing.add(asyncio.create_task(write([json.loads(line) for line in batch])))
        while writing:
            finished, writing = await asyncio.wait(writing, return_when=asyncio.FIRST_COMPLETED)
            await count(finished)
    finally:
        for task in writing:
            task.cancel()
        await asyncio.gather(*writing, return_exceptions=True)
    with files_spool.open(encoding="utf-8") as files_in:
        for batch in _batches(files_in, FILE_BATCH):
            ctx.check()
            rows = [json.loads(line) for line in batch]
            async with ctx.service_session() as db:
                await _insert_files(db, reporter, rows, per_file)


def _optimize(lines: list[str], optimizer: Optimizer, out: IO[str]) -> list[tuple[str, str]]:
    """Optimize a batch of spooled chunks into ``out``; the (source, path) of each one kept."""
    kept_from: list[tuple[str, str]] = []
    for line in lines:
        kept = optimizer.optimize(Chunk(**json.loads(line)))
        if kept is not None:
            out.write(json.dumps(dataclasses.asdict(kept)) + "\n")
            kept_from.append((kept.source, kept.path))
    return kept_from


def _read_and_cut(planned: Planned, chunker: Any, options: ChunkOptions) -> tuple[SourceFile, list[Chunk], int] | None:
    """One file read and cut (in a thread); None when it cannot be read or cut."""
    try:
        file = read(planned)
        chunks = list(chunker.chunk(file, options))
    except UnreadableFile:
        return None
    except (ValueError, UnicodeError, RecursionError) as error:  # a parser that gave up on it
        log.info("file_not_chunked", path=planned.path, error=type(error).__name__)
        return None
    return file, chunks, estimate_tokens(file.text)


async def _insert_chunks(db: ServiceSession, reporter: Reporter, chunks: list[dict[str, Any]]) -> None:
    await db.execute(
        repository.INSERT_CHUNKS,
        reporter.org_id,
        reporter.project_id,
        reporter.run_id,
        [c["source"] for c in chunks],
        [c["path"] for c in chunks],
        [c["language"] for c in chunks],
        [c["start_line"] for c in chunks],
        [c["end_line"] for c in chunks],
        [c["symbol"] for c in chunks],
        [c["content"] for c in chunks],
        [Chunk(**c).content_hash for c in chunks],
        [c["token_count"] for c in chunks],
    )


async def _insert_files(
    db: ServiceSession, reporter: Reporter, rows: list[list[Any]], per_file: dict[tuple[str, str], int]
) -> None:
    """File rows as spooled (source, path, language, size, lines) with their kept chunk count."""
    await db.execute(
        repository.INSERT_FILES,
        reporter.org_id,
        reporter.project_id,
        reporter.run_id,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
        [per_file.get((r[0], r[1]), 0) for r in rows],
    )


def _write_lines(out: IO[str], items: Iterator[dict[str, Any]]) -> None:
    for item in items:
        out.write(json.dumps(item) + "\n")


def _count_lines(path: Path) -> int:
    with path.open("rb") as spool:
        return sum(1 for _ in spool)


def _batches(lines: IO[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _tokens(
    ctx: JobContext, db: ServiceSession, requester: UUID | None, repositories: Sequence[dict[str, Any]]
) -> dict[str, str]:
    """The requester's git-provider tokens for the providers of the repositories (a private
    repository needs one; a public one is cloned with it too, which costs nothing)."""
    tokens: dict[str, str] = {}
    if requester is None:
        return tokens
    for provider in {row["provider"] for row in repositories}:
        ciphertext = await repository.connection_ciphertext(db, db.org_id, requester, provider)
        if ciphertext is None:
            continue
        try:
            tokens[provider] = ctx.kijko.keyring.decrypt(ciphertext)
        except DecryptionFailed:
            log.warning("git_connection_unreadable", provider=provider)
    return tokens


def _check_provider(settings: Settings, row: dict[str, Any]) -> None:
    """The requester's token for ``row['provider']`` goes only to that provider's URLs. The
    API checked it when the repository was added, but the row is the app role's to insert:
    a statement injected into a member's session could pair a provider with another host and
    collect the token of whoever next starts the ingestion."""
    try:
        urls.parse(settings, row["repository_url"], row["provider"])
    except urls.InvalidRepositoryUrl:
        raise IngestionFailed(
            REPOSITORY_UNREACHABLE,
            f"{row['repository_name']}: its URL is not one of its provider's; remove the repository and add it again",
        ) from None


# --- the endings -------------------------------------------------------------------------------


async def _complete(ctx: JobContext, reporter: Reporter, outcome: _Outcome, seconds: float) -> None:
    """One transaction: the run completed, the index switched to it, the previous run's chunks
    deleted, repositories and project updated, the event and the mails queued."""
    org_id, project_id, run_id = reporter.org_id, reporter.project_id, reporter.run_id
    metrics = reporter.counters.metrics()
    async with ctx.service_session() as db:
        try:  # the plan's storage with this run as the project's index (decision 0151)
            await quotas.check_storage(db, ctx.kijko.plans, org_id, 0, project_id=project_id, run_id=run_id)
        except quotas.QuotaExceeded as error:
            raise IngestionFailed(quotas.QUOTA_EXCEEDED, error.message) from None
        done = await repository.complete(db, org_id, run_id, metrics, "Ingestion complete", outcome.original_tokens)
        if done is None:
            raise RunStopped(str(run_id))
        previous = await repository.indexed_run(db, org_id, project_id)
        await repository.set_index(db, org_id, project_id, run_id)
        if previous is not None and previous != run_id:
            await repository.delete_run_content(db, org_id, project_id, previous)
        for source in outcome.sources:
            if source.repository is not None and source.plan is not None:
                await repository.repository_synced(
                    db, org_id, source.repository["id"], source.checkout.commit, len(source.plan.files)
                )
        await repository.project_completed(
            db,
            org_id,
            project_id,
            total_files=metrics.total_files,
            original_tokens=outcome.original_tokens,
            optimized_tokens=metrics.tokens_processed,
            seconds=round(seconds, 3),
        )
        await service.announce_completion(db, org_id, project_id, done, seconds)
        await catalogue.emit(
            db,
            "ingestion.completed",
            {"projectId": str(project_id), "runId": str(run_id), "status": "completed"},
            source=str(project_id),
        )
    log.info("ingestion_completed", run_id=str(run_id), seconds=round(seconds, 3), **metrics.model_dump())


async def _stopped(ctx: JobContext, reporter: Reporter) -> None:
    """The run was cancelled: its partial chunks go, repositories go back to what they were
    (the cancel already restored the project's status)."""
    with contextlib.suppress(Exception):
        await reporter.throttle.flush()
    async with ctx.service_session() as db:
        run = await repository.get(db, reporter.org_id, reporter.run_id, for_update=True)
        if run is None or run.status == "completed":
            return  # a completed run's chunks are the index
        if run.status in ACTIVE:
            if not ctx.cancelled:
                return  # not cancelled after all
            # The job was cancelled from outside the API (``kijko jobs cancel``): so is the run.
            await repository.cancel(db, reporter.org_id, reporter.run_id)
            await repository.set_project_status(db, reporter.org_id, reporter.project_id, run.previous_status)
        await repository.delete_run_content(db, reporter.org_id, reporter.project_id, reporter.run_id)
        await repository.settle_repositories(db, reporter.org_id, reporter.project_id)
    log.info("ingestion_stopped", run_id=str(reporter.run_id))


async def _failed(ctx: JobContext, reporter: Reporter, code: str, message: str, *, recoverable: bool) -> None:
    """A fatal error: the run failed with its code, the project → ``error`` (its previous index
    stays), partial chunks removed, the ``error`` event and the mails."""
    org_id, project_id, run_id = reporter.org_id, reporter.project_id, reporter.run_id
    async with ctx.service_session() as db:
        await repository.write_progress(
            db, org_id, run_id, metrics=reporter.counters.metrics(), original_tokens=reporter.original_tokens
        )
        failed = await repository.fail(db, org_id, run_id, code, message)
        if failed is not None:
            await repository.delete_run_content(db, org_id, project_id, run_id)
            await repository.settle_repositories(db, org_id, project_id)
            await repository.set_project_status(db, org_id, project_id, "error")
            await service.announce_failure(db, org_id, project_id, failed, recoverable=recoverable)
            await catalogue.emit(
                db,
                "ingestion.failed",
                {"projectId": str(project_id), "runId": str(run_id), "status": "failed", "errorCode": code},
                source=str(project_id),
            )
    if failed is None:  # cancelled meanwhile: the cancel stands, and its clean-up is ours
        await _stopped(ctx, reporter)
        return
    log.info("ingestion_failed", run_id=str(run_id), code=code)


async def _retrying(reporter: Reporter, attempt: int) -> None:
    """An unexpected error with attempts left: say so (``recoverable``), the job retries."""
    await reporter.throttle.flush()
    await events.send(
        room=room(reporter.project_id),
        event="error",
        data=error_payload(
            reporter.project_id,
            reporter.phase,
            INTERNAL_ERROR,
            "The ingestion hit an unexpected error and will be retried",
            recoverable=True,
            retry_count=attempt,
        ),
    )


# --- the sweeper ---------------------------------------------------------------------------------

#: A live run whose job ended is left alone this long (its last write may be on its way).
ORPHAN_QUIET_SECONDS = 60.0
WORKER_LOST = "WORKER_LOST"
WORKER_LOST_MESSAGE = "The worker running this ingestion stopped before it finished; start the ingestion again"


@jobs.sweep_step("ingestion")
async def sweep_runs(kijko: Kijko) -> int:
    """End the runs nothing will finish (their job is over: a worker killed on its last
    attempt, a job an operator cancelled or deleted) — failed with ``WORKER_LOST`` and the
    project ``error``, or, for a cancelled job, cancelled with the project back to its
    previous status — and delete chunks of runs that ended without becoming an index."""
    ended = 0
    async with system_session(kijko.system_db) as db:
        for orphan in await repository.orphans(db, ORPHAN_QUIET_SECONDS, 100):
            await repository.end_orphan(db, orphan, WORKER_LOST, WORKER_LOST_MESSAGE)
            if orphan["job_state"] != "cancelled":
                payload = error_payload(
                    orphan["project_id"], orphan["phase"], WORKER_LOST, WORKER_LOST_MESSAGE, recoverable=False
                )
                events.publish(db, room=room(orphan["project_id"]), event="error", data=payload)
            ended += 1
    async with system_session(kijko.system_db) as db:
        ended += await repository.delete_stray_content(db, 10_000)
    return ended
