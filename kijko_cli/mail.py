"""``kijko mail list|show|test``: the local outbox (mails kept in the data directory when no
SMTP server is configured) and a test message through the configured transport."""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime
from uuid import UUID

import click

from kijko_cli.common import EXIT_FAILED, one_line_errors, settings
from kijko_core.config import Settings
from kijko_core.data_dir import DataDirectory
from kijko_core.logging import configure_logging
from kijko_core.mail import outbox, rendering
from kijko_core.mail.transport import DeliveryFailed, LocalOutbox, build_message, make_transport, sender


@click.group()
def mail() -> None:
    """Read the local outbox; send a test message."""


def _local(config: Settings) -> LocalOutbox:
    if config.smtp_url is not None:
        click.echo("note: KIJKO_SMTP_URL is set, so new mails go to the SMTP server, not here", err=True)
    return LocalOutbox(DataDirectory(config.data_dir))


@mail.command("list")
def list_mails() -> None:
    """The mails in the local outbox, oldest first: id, date, recipient, subject
    (tab-separated)."""
    kept = _local(settings()).list()
    click.echo("id\tdate\tto\tsubject")
    for item in kept:
        date = item.date.isoformat(timespec="seconds") if item.date else "-"
        click.echo(f"{item.id}\t{date}\t{item.recipient}\t{item.subject}")


@mail.command("show")
@click.argument("mail_id", metavar="ID", type=click.UUID)
@click.option("--html", "as_html", is_flag=True, help="Print the HTML part instead of the text.")
def show(mail_id: UUID, as_html: bool) -> None:
    """Print a mail of the local outbox: its headers and its text (or HTML) part."""
    message = _local(settings()).read(mail_id)
    if message is None:
        click.echo(f"error: no mail {mail_id} in the local outbox", err=True)
        sys.exit(EXIT_FAILED)
    for header in ("From", "To", "Subject", "Date", "Message-ID"):
        click.echo(f"{header}: {message[header] or ''}")
    click.echo("")
    body = message.get_body(("html",) if as_html else ("plain",))
    content = body.get_content() if body is not None else ""
    click.echo(str(content).replace("\r\n", "\n"), nl=False)


@mail.command("test")
@click.option("--to", "to", required=True, help="Where to send the test message.")
def test(to: str) -> None:
    """Send a test message now through the configured transport (SMTP, or the local outbox)
    and say whether it was accepted: a check of the mail settings. Uses no database."""
    config = settings()
    # The outcome is this command's output; the transport's own log lines only when they warn.
    configure_logging("warning", config.log_format, stream=sys.stderr)
    with one_line_errors():
        recipient = outbox.recipient_address(to)
    instance = config.public_url or config.base_url
    server = "local outbox" if config.smtp_url is None else str(config.smtp_url)  # password masked
    values = {
        "instance": instance,
        "details": [{"label": "sent by", "value": "kijko mail test"}, {"label": "transport", "value": server}],
    }
    rendered = rendering.render("test_message", values)
    now = datetime.now(UTC)
    test_mail = outbox.OutboxMail(
        id=uuid.uuid4(),
        organization_id=None,
        recipient=recipient,
        template="test_message",
        subject=rendered.subject,
        text_body=rendered.text,
        html_body=rendered.html,
        state="queued",
        attempts=0,
        last_error=None,
        created_at=now,
        finished_at=None,
    )
    message = build_message(test_mail, sender(config))
    try:
        asyncio.run(make_transport(config).deliver(message, outbox_id=test_mail.id, template="test_message"))
    except DeliveryFailed as error:
        click.echo(f"error: not delivered: {error}", err=True)
        sys.exit(EXIT_FAILED)
    where = "kept in the local outbox" if config.smtp_url is None else f"accepted by {server}"
    click.echo(f"test message {test_mail.id} {where}")
