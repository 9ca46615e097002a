"""``kijko billing inbox list | replay``: the operators' view of the Stripe webhook inbox
(docs/operations.md "Stripe webhook inbox"; kijko_core/billing/webhooks.py). Meant to live
under ``kijko billing`` (``kijko billing inbox …``)."""

from __future__ import annotations

from typing import Any

import click

from kijko_cli.common import in_system_session, settings, with_runtime
from kijko_core.billing import webhooks
from kijko_core.runtime import Kijko


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


def _plain(value: Any, limit: int = 200) -> str:
    return (str(value) if value is not None else "-").replace("\t", " ").replace("\n", " ")[:limit]


@click.group()
def inbox() -> None:
    """Stripe's webhook events as received: list them, replay one."""


@inbox.command("list")
@click.option("--failed", is_flag=True, help="Only events whose processing failed and is not done.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
def list_events(failed: bool, limit: int) -> None:
    """The newest events first, one per line (tab-separated)."""
    rows = in_system_session(settings(), lambda db, _: webhooks.inbox(db, failed=failed, limit=limit))
    click.echo("id\ttype\tstate\tattempts\torg_id\treceived_at\tnext_attempt_at\tprocessed_at\tnote\tlast_error")
    for row in rows:
        state = row["outcome"] or ("failed" if row["last_error"] else "pending")
        click.echo(
            f"{row['id']}\t{row['type']}\t{state}\t{row['attempts']}\t{row['organization_id'] or '-'}"
            f"\t{_when(row['received_at'])}\t{_when(row['next_attempt_at'])}\t{_when(row['processed_at'])}"
            f"\t{_plain(row['note'])}\t{_plain(row['last_error'])}"
        )


@inbox.command("replay")
@click.argument("event_id")
def replay(event_id: str) -> None:
    """Process a stored event again, now, in this process (with this process's Stripe key):
    Kijko re-reads what it names from Stripe; mails already sent are not sent again."""

    async def work(kijko: Kijko) -> webhooks.Outcome | None:
        return await webhooks.process(kijko, event_id, again=True)

    outcome = with_runtime(settings(), work)
    if outcome is None:
        click.echo("error: No stored Stripe event with that id", err=True)
        raise click.exceptions.Exit(1)
    if outcome.outcome == "failed":
        click.echo(f"error: {event_id} failed again: {_plain(outcome.error, 500)}", err=True)
        raise click.exceptions.Exit(1)
    click.echo(f"{event_id} {outcome.outcome}: {_plain(outcome.note, 500)}")
