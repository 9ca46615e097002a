"""``mail.send`` → the ``mail.deliver`` job → a real SMTP server (issue 6 §4): the job row is
written with the outbox row, a refused attempt is retried by the jobs system, the last one
fails the mail, and a rolled-back change sends nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import pytest

from kijko_core import mail
from kijko_core.db.session import system_session, tenant_session
from kijko_core.jobs import admin
from kijko_core.jobs.worker import run_until_idle
from kijko_core.mail import outbox
from kijko_core.mail.delivery import MAX_ATTEMPTS
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.smtp_server import SmtpServer
from tests.test_mail_delivery import VALUES


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
async def mailer(make_settings: Any, smtp: SmtpServer) -> AsyncIterator[Kijko]:
    """A runtime that delivers to the test's SMTP server, with retries due at once."""
    runtime = await Kijko.start(
        make_settings(
            smtp_url=f"smtp://127.0.0.1:{smtp.port}?starttls=off",
            mail_from="Kijko <kijko@kijko.test>",
            job_retry_base_seconds=0,
            job_retry_max_seconds=0,
        )
    )
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def server(mailer: Kijko, smtp: SmtpServer) -> SmtpServer:
    """The SMTP server with no job of earlier tests still due (run_until_idle runs them all;
    counts below are "at least": another test's retry may fall due meanwhile)."""
    await run_until_idle(mailer)
    smtp.handler.temporary_failures = 0
    smtp.handler.attempts = 0
    smtp.received.clear()
    return smtp


async def job_of(kijko: Kijko, outbox_id: UUID) -> dict[str, Any]:
    async with system_session(kijko.system_db, readonly=True) as db:
        rows = await db.fetch(
            "SELECT organization_id, state, attempts, last_error FROM kijko.jobs"
            " WHERE kind = 'mail.deliver' AND payload ->> 'outbox_id' = $1",
            str(outbox_id),
        )
    assert len(rows) == 1
    return dict(rows[0])


async def mail_row(kijko: Kijko, outbox_id: UUID) -> outbox.OutboxMail:
    async with system_session(kijko.system_db, readonly=True) as db:
        found = await outbox.get(db, outbox_id)
    assert found is not None
    return found


async def send_as(kijko: Kijko, account: Account, to: str) -> UUID:
    async with tenant_session(kijko.app_db, account.identity) as db:
        return await mail.send(db, to=to, template="test_message", values=VALUES, org_id=UUID(account.org_id))


async def test_send_enqueues_the_job_and_the_worker_delivers(mailer: Kijko, server: SmtpServer, alice: Account) -> None:
    outbox_id = await send_as(mailer, alice, "first@example.com")
    job = await job_of(mailer, outbox_id)
    assert job["state"] == "queued" and job["organization_id"] == UUID(alice.org_id)
    assert await run_until_idle(mailer) >= 1
    (received,) = server.received
    assert received.recipients == ["first@example.com"]
    assert received.message["Message-ID"] == f"<{outbox_id}@kijko.test>"
    assert (await job_of(mailer, outbox_id))["state"] == "succeeded"
    assert (await mail_row(mailer, outbox_id)).state == "sent"


async def test_a_failed_smtp_attempt_is_retried_by_the_job_system(
    mailer: Kijko, server: SmtpServer, alice: Account
) -> None:
    server.handler.temporary_failures = 1  # 451 once
    outbox_id = await send_as(mailer, alice, "retried@example.com")
    assert await run_until_idle(mailer) >= 2  # the retry is due at once here (no backoff)
    job = await job_of(mailer, outbox_id)
    assert job["state"] == "succeeded" and job["attempts"] == 2
    row = await mail_row(mailer, outbox_id)
    assert row.state == "sent" and row.attempts == 2 and row.last_error and "451" in row.last_error
    assert server.handler.attempts == 2 and [r.recipients for r in server.received] == [["retried@example.com"]]


async def test_a_mail_refused_every_time_fails_and_a_retry_of_its_job_sends_it(
    mailer: Kijko, server: SmtpServer, alice: Account
) -> None:
    server.handler.temporary_failures = 100
    outbox_id = await send_as(mailer, alice, "never@example.com")
    assert await run_until_idle(mailer) >= MAX_ATTEMPTS
    job = await job_of(mailer, outbox_id)
    assert job["state"] == "failed" and job["attempts"] == MAX_ATTEMPTS and "451" in job["last_error"]
    row = await mail_row(mailer, outbox_id)
    assert row.state == "failed" and row.attempts == MAX_ATTEMPTS and "451" in (row.last_error or "")
    assert not server.received

    # The operator fixes the cause and retries the job (`kijko jobs retry`): the mail goes out.
    server.handler.temporary_failures = 0
    async with system_session(mailer.system_db) as db:
        job_id = await db.fetchval(
            "SELECT id FROM kijko.jobs WHERE kind = 'mail.deliver' AND payload ->> 'outbox_id' = $1", str(outbox_id)
        )
        await admin.retry(db, job_id)
    assert await run_until_idle(mailer) >= 1
    assert (await job_of(mailer, outbox_id))["state"] == "succeeded"
    row = await mail_row(mailer, outbox_id)
    assert row.state == "sent" and row.attempts == MAX_ATTEMPTS + 1 and row.text_body is None
    assert [r.recipients for r in server.received] == [["never@example.com"]]


async def test_a_permanently_refused_recipient_ends_the_job_at_once(
    mailer: Kijko, server: SmtpServer, alice: Account
) -> None:
    server.handler.refuse_recipients.add("gone@example.com")
    outbox_id = await send_as(mailer, alice, "gone@example.com")
    assert await run_until_idle(mailer) >= 1
    assert (await job_of(mailer, outbox_id))["state"] == "succeeded"  # the job did its work
    row = await mail_row(mailer, outbox_id)
    assert row.state == "failed" and "550" in (row.last_error or "")


async def test_system_mail_is_delivered_by_a_system_job(mailer: Kijko, server: SmtpServer) -> None:
    async with system_session(mailer.system_db) as db:
        outbox_id = await mail.send(db, to="ops@example.com", template="test_message", values=VALUES, org_id=None)
    assert (await job_of(mailer, outbox_id))["organization_id"] is None
    assert await run_until_idle(mailer) >= 1
    assert (await mail_row(mailer, outbox_id)).state == "sent"
    assert [r.recipients for r in server.received] == [["ops@example.com"]]


async def test_a_rolled_back_transaction_sends_nothing(mailer: Kijko, server: SmtpServer, alice: Account) -> None:
    class Abort(Exception):
        pass

    sent: list[UUID] = []
    with pytest.raises(Abort):
        async with tenant_session(mailer.app_db, alice.identity) as db:
            sent.append(
                await mail.send(
                    db, to="rollback@example.com", template="test_message", values=VALUES, org_id=UUID(alice.org_id)
                )
            )
            raise Abort
    await run_until_idle(mailer)
    async with system_session(mailer.system_db, readonly=True) as db:
        assert await outbox.get(db, sent[0]) is None
        jobs = await db.fetchval("SELECT count(*) FROM kijko.jobs WHERE payload ->> 'outbox_id' = $1", str(sent[0]))
    assert jobs == 0 and not server.received and server.handler.attempts == 0
