"""Delivering the outbox (issue 6 §4, docs/mail.md) against a real SMTP server the tests start
(aiosmtpd): the message's headers and both parts, a temporary refusal retried, a permanent one
failed at once, STARTTLS and TLS with a certificate made here, AUTH, and the password kept out
of the logs and the outbox."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from kijko_core import mail
from kijko_core.config import Settings
from kijko_core.data_dir import DataDirectory
from kijko_core.db.session import (
    ServiceActor,
    Session,
    load_service_capability,
    service_session,
    system_session,
    tenant_session,
)
from kijko_core.logging import configure_logging
from kijko_core.mail import outbox
from kijko_core.mail.delivery import deliver_once
from kijko_core.mail.transport import DeliveryFailed, LocalOutbox
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.net import free_port
from tests.smtp_server import SmtpServer, self_signed_certificate

PASSWORD = "sm7p-Pa55word-do-not-log"
USER = "kijko-mailer"
VALUES = {
    "instance": "Kijko <test> & co",
    "details": [{"label": "first", "value": "<b>one</b>"}, {"label": "second", "value": 'say "two"'}],
}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def plain_smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def logs() -> io.StringIO:
    buffer = io.StringIO()
    configure_logging("debug", "json", stream=buffer)
    return buffer


def smtp_settings(make_settings: Any, url: str, **more: Any) -> Settings:
    settings: Settings = make_settings(smtp_url=url, mail_from="Kijko Test <kijko@kijko.test>", **more)
    return settings


def opener(kijko: Kijko, org_id: UUID | None) -> Callable[[], AbstractAsyncContextManager[Session]]:
    """Sessions that see the row: the organization's service session, or a system session."""

    @asynccontextmanager
    async def open_session() -> AsyncIterator[Session]:
        if org_id is None:
            async with system_session(kijko.system_db) as db:
                yield db
            return
        capability = await load_service_capability(kijko.system_db)
        async with service_session(kijko.app_db, capability, org_id, ServiceActor("mail.deliver", "test")) as db:
            yield db

    return open_session


async def queued(kijko: Kijko, account: Account, to: str = "Reader@Example.com") -> UUID:
    async with tenant_session(kijko.app_db, account.identity) as db:
        return await mail.send(db, to=to, template="test_message", values=VALUES, org_id=UUID(account.org_id))


async def row(kijko: Kijko, outbox_id: UUID) -> outbox.OutboxMail:
    async with system_session(kijko.system_db) as db:
        found = await outbox.get(db, outbox_id)
    assert found is not None
    return found


async def test_a_mail_is_delivered_with_its_headers_and_both_parts(
    kijko: Kijko, make_settings: Any, alice: Account, plain_smtp: SmtpServer
) -> None:
    settings = smtp_settings(make_settings, f"smtp://127.0.0.1:{plain_smtp.port}?starttls=off")
    outbox_id = await queued(kijko, alice)
    state = await deliver_once(settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=False)
    assert state == "sent"
    (received,) = plain_smtp.received
    assert received.sender == "kijko@kijko.test" and received.recipients == ["Reader@example.com"]
    message = received.message
    assert message["From"] == "Kijko Test <kijko@kijko.test>"
    assert message["To"] == "Reader@example.com"
    assert message["Subject"] == "Kijko test message from Kijko <test> & co"
    assert message["Message-ID"] == f"<{outbox_id}@kijko.test>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] is not None
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    # On the wire lines end in CRLF.
    text_content, html_content = (part.get_content().replace("\r\n", "\n") for part in (text, html))
    assert '- first: <b>one</b>\n- second: say "two"\n' in text_content  # plain text as given
    assert "<li>first: &lt;b&gt;one&lt;/b&gt;</li>" in html_content  # escaped in HTML
    assert "<li>second: say &quot;two&quot;</li>" in html_content
    assert "<strong>Kijko &lt;test&gt; &amp; co</strong>" in html_content
    sent = await row(kijko, outbox_id)
    assert sent.state == "sent" and sent.attempts == 1 and sent.text_body is None and sent.html_body is None
    # A repeated job finds nothing to do: the mail goes out once.
    assert await deliver_once(settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=False) == "gone"
    assert len(plain_smtp.received) == 1


async def test_a_temporary_refusal_is_retried_and_then_delivered(
    kijko: Kijko, make_settings: Any, alice: Account, plain_smtp: SmtpServer
) -> None:
    settings = smtp_settings(make_settings, f"smtp://127.0.0.1:{plain_smtp.port}?starttls=off")
    plain_smtp.handler.temporary_failures = 1
    outbox_id = await queued(kijko, alice)
    with pytest.raises(DeliveryFailed, match="451") as raised:
        await deliver_once(settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=False)
    assert not raised.value.permanent
    waiting = await row(kijko, outbox_id)
    assert waiting.state == "queued" and waiting.attempts == 1 and "451" in (waiting.last_error or "")
    assert waiting.text_body is not None  # still there for the next attempt
    assert await deliver_once(settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=False) == "sent"
    assert plain_smtp.handler.attempts == 2 and len(plain_smtp.received) == 1
    done = await row(kijko, outbox_id)
    assert done.state == "sent" and done.attempts == 2


async def test_the_last_failed_attempt_fails_the_mail(
    kijko: Kijko, make_settings: Any, alice: Account, plain_smtp: SmtpServer
) -> None:
    settings = smtp_settings(make_settings, f"smtp://127.0.0.1:{plain_smtp.port}?starttls=off")
    plain_smtp.handler.temporary_failures = 5
    outbox_id = await queued(kijko, alice)
    with pytest.raises(DeliveryFailed):
        await deliver_once(settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=True)
    failed = await row(kijko, outbox_id)
    assert failed.state == "failed" and "451" in (failed.last_error or "") and failed.finished_at is not None
    # Out of attempts, not refused: the bodies stay for an operator's retry of the job…
    assert failed.text_body is not None and failed.html_body is not None
    assert await deliver_once(settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=False) == "gone"
    # …whose first attempt sends it again once the server takes mail.
    plain_smtp.handler.temporary_failures = 0
    again = await deliver_once(
        settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=False, revive_failed=True
    )
    assert again == "sent" and len(plain_smtp.received) == 1
    sent = await row(kijko, outbox_id)
    assert sent.state == "sent" and sent.text_body is None and sent.attempts == 2


async def test_a_refused_recipient_fails_at_once(
    kijko: Kijko, make_settings: Any, alice: Account, plain_smtp: SmtpServer
) -> None:
    settings = smtp_settings(make_settings, f"smtp://127.0.0.1:{plain_smtp.port}?starttls=off")
    plain_smtp.handler.refuse_recipients.add("nobody@example.com")
    outbox_id = await queued(kijko, alice, to="nobody@example.com")
    assert await deliver_once(settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=False) == "failed"
    failed = await row(kijko, outbox_id)
    assert failed.state == "failed" and "550" in (failed.last_error or "") and not plain_smtp.received
    assert failed.text_body is None  # refused for good: nothing kept to retry
    revived = await deliver_once(
        settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=False, revive_failed=True
    )
    assert revived == "gone"


async def test_an_unreachable_server_is_a_temporary_failure(kijko: Kijko, make_settings: Any, alice: Account) -> None:

    settings = smtp_settings(make_settings, f"smtp://127.0.0.1:{free_port()}?starttls=off")
    outbox_id = await queued(kijko, alice)
    with pytest.raises(DeliveryFailed) as raised:
        await deliver_once(settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=False)
    assert not raised.value.permanent
    assert (await row(kijko, outbox_id)).state == "queued"


async def test_system_mail_is_delivered_through_a_system_session(
    kijko: Kijko, make_settings: Any, plain_smtp: SmtpServer
) -> None:
    settings = smtp_settings(make_settings, f"smtp://127.0.0.1:{plain_smtp.port}?starttls=off")
    async with system_session(kijko.system_db) as db:
        outbox_id = await mail.send(db, to="ops@example.com", template="test_message", values=VALUES, org_id=None)
    assert await deliver_once(settings, opener(kijko, None), outbox_id, last_attempt=False) == "sent"
    assert [r.recipients for r in plain_smtp.received] == [["ops@example.com"]]


# --- TLS and AUTH -----------------------------------------------------------------------------


async def test_starttls_with_auth_delivers_and_never_logs_the_password(
    kijko: Kijko, make_settings: Any, alice: Account, certificate: tuple[Path, Path], logs: io.StringIO
) -> None:
    with SmtpServer(certificate=certificate, user=(USER, PASSWORD)) as server:
        url = f"smtp://{USER}:{PASSWORD}@127.0.0.1:{server.port}"
        settings = smtp_settings(make_settings, url, smtp_ca_file=certificate[0])
        outbox_id = await queued(kijko, alice)
        assert await deliver_once(settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=False) == "sent"
        (received,) = server.received
        assert received.tls and received.login == USER

        # A wrong password is refused, recorded and logged: without the password.
        wrong = smtp_settings(
            make_settings, f"smtp://{USER}:{PASSWORD}-wrong@127.0.0.1:{server.port}", smtp_ca_file=certificate[0]
        )
        second = await queued(kijko, alice)
        with pytest.raises(DeliveryFailed, match="535"):
            await deliver_once(wrong, opener(kijko, UUID(alice.org_id)), second, last_attempt=True)
    failed = await row(kijko, second)
    assert failed.state == "failed" and "535" in (failed.last_error or "")
    assert PASSWORD not in (failed.last_error or "")
    output = logs.getvalue()
    events = [json.loads(line)["event"] for line in output.splitlines()]
    assert "mail sent" in events and "mail delivery failed" in events
    assert PASSWORD not in output
    assert PASSWORD not in repr(settings) and PASSWORD not in settings.model_dump_json()


async def test_starttls_refuses_a_certificate_it_cannot_verify(
    kijko: Kijko, make_settings: Any, alice: Account, certificate: tuple[Path, Path]
) -> None:
    with SmtpServer(certificate=certificate, user=(USER, PASSWORD)) as server:
        settings = smtp_settings(make_settings, f"smtp://{USER}:{PASSWORD}@127.0.0.1:{server.port}")
        outbox_id = await queued(kijko, alice)
        with pytest.raises(DeliveryFailed, match="(?i)certificate"):
            await deliver_once(settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=False)
        assert not server.received and server.handler.attempts == 0


async def test_starttls_is_required_when_the_url_does_not_turn_it_off(
    kijko: Kijko, make_settings: Any, alice: Account, plain_smtp: SmtpServer
) -> None:
    settings = smtp_settings(make_settings, f"smtp://127.0.0.1:{plain_smtp.port}")  # offers no STARTTLS
    outbox_id = await queued(kijko, alice)
    with pytest.raises(DeliveryFailed, match="(?i)starttls"):
        await deliver_once(settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=False)
    assert not plain_smtp.received


# aiosmtpd counts only STARTTLS as TLS for AUTH; this server is TLS from the first byte.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_implicit_tls_with_smtps(
    kijko: Kijko, make_settings: Any, alice: Account, certificate: tuple[Path, Path]
) -> None:
    with SmtpServer(certificate=certificate, implicit_tls=True, user=(USER, PASSWORD)) as server:
        url = f"smtps://{USER}:{PASSWORD}@127.0.0.1:{server.port}"
        settings = smtp_settings(make_settings, url, smtp_ca_file=certificate[0])
        outbox_id = await queued(kijko, alice)
        assert await deliver_once(settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=False) == "sent"
        (received,) = server.received
        assert received.tls and received.login == USER


# --- the local outbox -------------------------------------------------------------------------


async def test_without_smtp_mails_are_kept_in_the_data_dir(
    kijko: Kijko, make_settings: Any, alice: Account, tmp_path: Path, logs: io.StringIO
) -> None:
    settings: Settings = make_settings(data_dir=tmp_path / "data")
    assert settings.smtp_url is None
    outbox_id = await queued(kijko, alice)
    assert await deliver_once(settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=False) == "sent"
    local = LocalOutbox(DataDirectory(settings.data_dir))
    (kept,) = local.list()
    assert kept.id == outbox_id and kept.recipient == "Reader@example.com"
    assert kept.subject == "Kijko test message from Kijko <test> & co"
    assert stat.S_IMODE(os.stat(kept.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(kept.path.parent).st_mode) == 0o700
    message = local.read(outbox_id)
    assert message is not None and message["Message-ID"] == f"<{outbox_id}@localhost>"
    html = message.get_body(("html",))
    assert html is not None and "&lt;b&gt;one&lt;/b&gt;" in html.get_content()
    # One line says a mail is waiting, without the recipient or anything of the body.
    (line,) = [json.loads(raw) for raw in logs.getvalue().splitlines() if "local outbox" in raw]
    assert line["outbox_id"] == str(outbox_id) and line["hint"] == f"kijko mail show {outbox_id}"
    assert "Reader" not in json.dumps(line) and "one" not in json.dumps(line)


async def test_non_ascii_text_survives_the_trip(
    kijko: Kijko, make_settings: Any, alice: Account, plain_smtp: SmtpServer
) -> None:
    settings = smtp_settings(make_settings, f"smtp://127.0.0.1:{plain_smtp.port}?starttls=off")
    values = {"instance": "Zoë's café ✓", "details": [{"label": "naïve", "value": "日本語 🚀"}]}
    async with tenant_session(kijko.app_db, alice.identity) as db:
        outbox_id = await mail.send(
            db, to="zoe@example.com", template="test_message", values=values, org_id=UUID(alice.org_id)
        )
    assert await deliver_once(settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=False) == "sent"
    (received,) = plain_smtp.received
    assert received.message["Subject"] == "Kijko test message from Zoë's café ✓"
    text, html = received.message.get_body(("plain",)), received.message.get_body(("html",))
    assert text is not None and "- naïve: 日本語 🚀" in text.get_content()
    assert html is not None and "<strong>Zoë&#x27;s café ✓</strong>" in html.get_content()


async def test_in_production_a_mail_kept_locally_is_a_warning(
    kijko: Kijko, make_settings: Any, alice: Account, tmp_path: Path, logs: io.StringIO
) -> None:
    settings: Settings = make_settings(mode="production", data_dir=tmp_path / "data")
    outbox_id = await queued(kijko, alice)
    assert await deliver_once(settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=False) == "sent"
    (line,) = [json.loads(raw) for raw in logs.getvalue().splitlines() if "local outbox" in raw]
    assert line["level"] == "warning" and line["advice"] == "set KIJKO_SMTP_URL to send mail"


async def test_a_local_outbox_that_cannot_be_written_fails_the_attempt(
    kijko: Kijko, make_settings: Any, alice: Account, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "mail").write_text("a file where the outbox directory should be")
    settings: Settings = make_settings(data_dir=data)
    outbox_id = await queued(kijko, alice)
    with pytest.raises(DeliveryFailed, match="FileExistsError"):
        await deliver_once(settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=False)
    assert (await row(kijko, outbox_id)).state == "queued"
    with pytest.raises(DeliveryFailed):
        await deliver_once(settings, opener(kijko, UUID(alice.org_id)), outbox_id, last_attempt=True)
    failed = await row(kijko, outbox_id)
    assert failed.state == "failed" and failed.attempts == 2 and "FileExistsError" in (failed.last_error or "")


async def test_a_delivery_prunes_its_organizations_old_finished_mail_only(
    kijko: Kijko, make_settings: Any, alice: Account, bob: Account, plain_smtp: SmtpServer
) -> None:
    settings = smtp_settings(make_settings, f"smtp://127.0.0.1:{plain_smtp.port}?starttls=off")
    old_alice, recent_alice, old_bob = await queued(kijko, alice), await queued(kijko, alice), await queued(kijko, bob)
    async with system_session(kijko.system_db) as db:
        old_system = await mail.send(db, to="ops@example.com", template="test_message", values=VALUES, org_id=None)
        for outbox_id, days in ((old_alice, 20), (recent_alice, 10), (old_bob, 20), (old_system, 20)):
            assert await outbox.begin_attempt(db, outbox_id) is not None
            assert await outbox.finish(db, outbox_id, sent=True)
            # Finished that many days ago (test set-up: the clock cannot be moved).
            await db.execute(
                "UPDATE kijko.mail_outbox SET finished_at = now() - make_interval(days => $2) WHERE id = $1",
                outbox_id,
                days,
            )
    settings = settings.model_copy(update={"job_retention_days": 14})
    fresh = await queued(kijko, alice)
    assert await deliver_once(settings, opener(kijko, UUID(alice.org_id)), fresh, last_attempt=False) == "sent"
    async with system_session(kijko.system_db, readonly=True) as db:
        left = {
            r["id"]
            for r in await db.fetch(
                "SELECT id FROM kijko.mail_outbox WHERE id = ANY($1)",
                [old_alice, recent_alice, old_bob, old_system, fresh],
            )
        }
    assert left == {recent_alice, old_bob, old_system, fresh}
