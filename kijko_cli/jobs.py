"""``kijko jobs list | show | retry | cancel``: the operators' view of background jobs."""

from __future__ import annotations

import json
import uuid
from typing import Any

import click

from kijko_cli.common import in_system_session, settings
from kijko_core.db.session import SystemSession
from kijko_core.jobs import JobStates
from kijko_core.jobs import admin as jobs_admin
from kijko_core.runtime import Kijko


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


@click.group()
def jobs() -> None:
    """Background jobs: list them by state, show one, retry or cancel one."""


@jobs.command("list")
@click.option("--state", type=click.Choice(JobStates), help="Only jobs in this state.")
@click.option("--kind", help="Only jobs of this kind (e.g. mail.deliver).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
def list_jobs(state: str | None, kind: str | None, limit: int) -> None:
    """The newest jobs first, one per line (tab-separated)."""
    rows = in_system_session(settings(), lambda db, _: jobs_admin.list_jobs(db, state=state, kind=kind, limit=limit))
    click.echo("id\tkind\tstate\tattempts\torg_id\tcreated_at\trun_after\tfinished_at\tlast_error")
    for row in rows:
        error = (row["last_error"] or "-").replace("\t", " ").replace("\n", " ")[:200]
        click.echo(
            f"{row['id']}\t{row['kind']}\t{row['state']}\t{row['attempts']}/{row['max_attempts']}"
            f"\t{row['organization_id'] or '-'}\t{_when(row['created_at'])}\t{_when(row['run_after'])}"
            f"\t{_when(row['finished_at'])}\t{error}"
        )


@jobs.command("show")
@click.argument("job_id", type=click.UUID)
def show(job_id: uuid.UUID) -> None:
    """One job as JSON (its payload holds ids only)."""
    from kijko_core.jobs import store

    async def work(db: SystemSession, _: Kijko) -> dict[str, Any] | None:
        return await store.get(db, job_id)

    row = in_system_session(settings(), work)
    if row is None:
        raise click.exceptions.Exit(_not_found())
    click.echo(json.dumps(row, default=str, indent=2))


def _not_found() -> int:
    click.echo("error: No job with that id", err=True)
    return 1


@jobs.command("retry")
@click.argument("job_id", type=click.UUID)
def retry(job_id: uuid.UUID) -> None:
    """Queue a failed or cancelled job again, with all its attempts."""
    _ring_through_huey()
    in_system_session(settings(), lambda db, _: jobs_admin.retry(db, job_id))
    click.echo(f"{job_id} queued again")


@jobs.command("cancel")
@click.argument("job_id", type=click.UUID)
def cancel(job_id: uuid.UUID) -> None:
    """Cancel a queued or running job (a running one stops at its next heartbeat)."""
    in_system_session(settings(), lambda db, _: jobs_admin.cancel(db, job_id))
    click.echo(f"{job_id} cancelled")


def _ring_through_huey() -> None:
    """A retried job is due now: ring the workers' doorbell after the commit. Not when
    ``kijko serve`` runs the worker itself: it consumes no queue (it finds the job by its poll)."""
    from kijko_cli.worker import serve_runs_worker
    from kijko_core.jobs import add_doorbell
    from kijko_server.jobs import HueyJobs

    config = settings()
    if not serve_runs_worker(config):
        add_doorbell(HueyJobs(config))
