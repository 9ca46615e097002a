"""``kijko mail list|show|test`` run for real (docs/mail.md): the local outbox in the data
directory, and a test message through SMTP with the password never printed."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

from kijko_core.config import Settings
from kijko_core.db.session import system_session
from kijko_core.mail import send
from kijko_core.mail.delivery import deliver_once
from kijko_core.runtime import Kijko
from tests.smtp_server import SmtpServer, self_signed_certificate
from tests.test_cli import clean_env, run_kijko
from tests.test_mail_delivery import VALUES, opener

PASSWORD = "cli-Sm7p-secret"


def test_mail_test_list_and_show_read_the_local_outbox(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    empty = run_kijko("mail", "list", env=env, cwd=tmp_path)
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout == "id\tdate\tto\tsubject\n"

    sent = run_kijko("mail", "test", "--to", "Ops@Example.com", env=env, cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("test message ") and sent.stdout.endswith(" kept in the local outbox\n")
    mail_id = sent.stdout.split()[2]
    assert (tmp_path / "data" / "mail" / f"{mail_id}.eml").is_file()

    listed = run_kijko("mail", "list", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    header, line = listed.stdout.splitlines()
    fields = line.split("\t")
    assert fields[0] == mail_id and fields[2] == "Ops@example.com"
    assert fields[3] == "Kijko test message from http://127.0.0.1:8000"

    shown = run_kijko("mail", "show", mail_id, env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    head, _, body = shown.stdout.partition("\n\n")
    assert head.splitlines()[:3] == [
        "From: Kijko <kijko@localhost>",
        "To: Ops@example.com",
        "Subject: Kijko test message from http://127.0.0.1:8000",
    ]
    assert f"Message-ID: <{mail_id}@localhost>" in head
    assert "- transport: local outbox\n" in body and "<li>" not in body

    html = run_kijko("mail", "show", "--html", mail_id, env=env, cwd=tmp_path)
    assert html.returncode == 0 and "<li>transport: local outbox</li>" in html.stdout

    unknown = run_kijko("mail", "show", str(uuid.uuid4()), env=env, cwd=tmp_path)
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: no mail ")
    not_an_id = run_kijko("mail", "show", "../../secrets/encryption-key", env=env, cwd=tmp_path)
    assert not_an_id.returncode == 2


async def test_mails_delivered_by_the_job_are_listed(kijko: Kijko, make_settings: Any, tmp_path: Path) -> None:
    settings: Settings = make_settings(data_dir=tmp_path / "data")
    async with system_session(kijko.system_db) as db:
        outbox_id = await send(db, to="reader@example.com", template="test_message", values=VALUES, org_id=None)
    await deliver_once(settings, opener(kijko, None), outbox_id, last_attempt=False)
    listed = run_kijko("mail", "list", env=clean_env(tmp_path), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [UUID(line.split("\t")[0]) for line in listed.stdout.splitlines()[1:]] == [outbox_id]


def test_mail_test_over_smtp_reports_and_never_prints_the_password(tmp_path: Path) -> None:
    certificate = self_signed_certificate(tmp_path)
    with SmtpServer(certificate=certificate, user=("ops", PASSWORD)) as server:
        env = clean_env(
            tmp_path,
            KIJKO_SMTP_URL=f"smtp://ops:{PASSWORD}@127.0.0.1:{server.port}",
            KIJKO_MAIL_FROM="Kijko <kijko@kijko.test>",
            KIJKO_SMTP_CA_FILE=str(certificate[0]),
        )
        sent = run_kijko("mail", "test", "--to", "ops@example.com", env=env, cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
        assert f"accepted by smtp://ops:***@127.0.0.1:{server.port}" in sent.stdout
        (received,) = server.received
        assert received.login == "ops" and received.tls
        assert "smtp://ops:***@" in (received.message.get_body(("plain",)) or received.message).get_content()

        refused = run_kijko(
            "mail",
            "test",
            "--to",
            "ops@example.com",
            cwd=tmp_path,
            env={**env, "KIJKO_SMTP_URL": f"smtp://ops:{PASSWORD}x@127.0.0.1:{server.port}"},
        )
        assert refused.returncode == 1 and refused.stderr.startswith("error: not delivered: ")
        assert "535" in refused.stderr
    for result in (sent, refused):
        assert PASSWORD not in result.stdout + result.stderr
    assert PASSWORD not in received.raw.decode()

    bad = run_kijko("mail", "test", "--to", "not an address", env=clean_env(tmp_path), cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr == "error: The email address is not valid\n"
