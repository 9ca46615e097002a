"""How a mail leaves: the ``MailTransport`` port and its two adapters (docs/mail.md).

- ``SmtpTransport``: ``KIJKO_SMTP_URL`` through ``aiosmtplib`` — STARTTLS (``smtp://``,
  required unless ``?starttls=off``), TLS from the first byte (``smtps://``), and the URL's
  user and password for AUTH. Certificates are verified against the system's CAs, or
  ``KIJKO_SMTP_CA_FILE``.
- ``LocalOutbox``: without an SMTP URL, each mail becomes a file in ``<data dir>/mail``
  (``kijko mail list|show`` read them) and one log line says a mail is waiting.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl, unquote, urlsplit
from uuid import UUID

import aiosmtplib
import structlog

from kijko_core.config import SMTP_SCHEMES, Settings
from kijko_core.data_dir import DataDirectory
from kijko_core.mail.outbox import OutboxMail

log = structlog.get_logger("kijko.mail")

#: The sender of the local outbox when ``KIJKO_MAIL_FROM`` is not set (nothing leaves).
LOCAL_FROM = "Kijko <kijko@localhost>"


class DeliveryFailed(Exception):
    """A delivery attempt failed. ``permanent``: trying again cannot help (the server refused
    the recipient or the message for good, a 5xx answer); otherwise the job retries."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class MailTransport(Protocol):
    async def deliver(self, message: EmailMessage, *, outbox_id: UUID, template: str) -> None:
        """Hand ``message`` over; raise ``DeliveryFailed`` if it was not accepted."""
        ...


def make_transport(settings: Settings) -> MailTransport:
    if settings.smtp_url is not None:
        return SmtpTransport(settings)
    # In production a mail kept on the server's disk is most likely a forgotten setting.
    return LocalOutbox(DataDirectory(settings.data_dir), warn=settings.mode == "production")


def build_message(mail: OutboxMail, sender: str) -> EmailMessage:
    """The MIME message of an outbox row: text and HTML alternatives, and a Message-ID made
    from the outbox id (so a duplicate delivery is recognisably the same message)."""
    if mail.text_body is None or mail.html_body is None:
        raise ValueError("the mail was already sent or failed; its bodies are gone")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.recipient
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(mail.created_at)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = f"<{mail.id}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
    message.set_content(mail.text_body)
    message.add_alternative(mail.html_body, subtype="html")
    return message


def sender(settings: Settings) -> str:
    return settings.mail_from or LOCAL_FROM


# --- SMTP -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpServer:
    """Where ``KIJKO_SMTP_URL`` points and how to talk to it."""

    hostname: str
    port: int
    implicit_tls: bool
    start_tls: bool
    username: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        assert parts.hostname and parts.scheme in SMTP_SCHEMES  # checked by the settings
        query = dict(parse_qsl(parts.query))
        return cls(
            hostname=parts.hostname,
            port=parts.port or SMTP_SCHEMES[parts.scheme],
            implicit_tls=parts.scheme == "smtps",
            start_tls=parts.scheme == "smtp" and query.get("starttls", "on") == "on",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )

    def __repr__(self) -> str:  # never the password, whatever prints it
        return f"SmtpServer({self.hostname}:{self.port}, tls={self.implicit_tls}, starttls={self.start_tls})"


class SmtpTransport:
    def __init__(self, settings: Settings) -> None:
        assert settings.smtp_url is not None
        self._url = settings.smtp_url
        self._ca_file = settings.smtp_ca_file
        self._timeout = settings.smtp_timeout_seconds

    def _tls_context(self) -> ssl.SSLContext:
        # Verified always: a mail server is a configured, trusted service, and its password
        # must not go to whoever answers in its place.
        return ssl.create_default_context(cafile=str(self._ca_file) if self._ca_file else None)

    async def deliver(self, message: EmailMessage, *, outbox_id: UUID, template: str) -> None:
        server = SmtpServer.from_url(self._url.get_secret_value())
        try:
            await aiosmtplib.send(
                message,
                hostname=server.hostname,
                port=server.port,
                username=server.username,
                password=server.password,
                use_tls=server.implicit_tls,
                start_tls=server.start_tls,  # True: required, never skipped silently
                tls_context=self._tls_context() if server.implicit_tls or server.start_tls else None,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refusal.code for refusal in error.recipients]
            detail = "; ".join(f"{r.code} {r.message}" for r in error.recipients)
            raise DeliveryFailed(f"recipient refused: {detail}", permanent=all(code >= 500 for code in codes)) from None
        except aiosmtplib.SMTPDataError as error:
            raise DeliveryFailed(
                f"message refused: {error.code} {error.message}", permanent=error.code >= 500
            ) from None
        except aiosmtplib.SMTPResponseException as error:
            raise DeliveryFailed(f"{type(error).__name__}: {error.code} {error.message}") from None
        except (aiosmtplib.SMTPException, OSError) as error:
            # Connection refused, TLS failure, timeout, STARTTLS not offered…: try again later.
            raise DeliveryFailed(f"{type(error).__name__}: {error}") from None
        log.info("mail sent", outbox_id=str(outbox_id), template=template, server=f"{server.hostname}:{server.port}")


# --- the local outbox -----------------------------------------------------------------------


@dataclass(frozen=True)
class LocalMail:
    """A mail kept in the local outbox."""

    id: UUID
    path: Path
    date: datetime | None
    recipient: str
    subject: str


class LocalOutbox:
    """Mails kept as ``<data dir>/mail/<outbox id>.eml`` (0600 files in a 0700 directory:
    they may carry one-time links)."""

    def __init__(self, data: DataDirectory, *, warn: bool = False) -> None:
        self.directory = data.path / "mail"
        self.warn = warn

    async def deliver(self, message: EmailMessage, *, outbox_id: UUID, template: str) -> None:
        await asyncio.to_thread(self._write, message, outbox_id)
        # One line, with neither the recipient nor anything of the body (it may hold a token).
        fields = {"outbox_id": str(outbox_id), "template": template, "hint": f"kijko mail show {outbox_id}"}
        if self.warn:
            log.warning("mail waiting in the local outbox", **fields, advice="set KIJKO_SMTP_URL to send mail")
        else:
            log.info("mail waiting in the local outbox", **fields)

    def _write(self, message: EmailMessage, outbox_id: UUID) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self.directory / f"{outbox_id}.eml"
        # Written whole, then renamed: `kijko mail list` never reads half a mail, and a
        # repeated delivery replaces the same file.
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".incoming-", suffix=".eml")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(message.as_bytes(policy=policy.SMTP))
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def list(self) -> list[LocalMail]:
        """Every kept mail, oldest first."""
        if not self.directory.is_dir():
            return []
        mails = [self._summary(path) for path in self.directory.glob("*.eml") if _outbox_id(path)]
        return sorted(mails, key=lambda m: (m.date is None, m.date or datetime.min, str(m.id)))

    def read(self, outbox_id: UUID) -> EmailMessage | None:
        path = self.directory / f"{outbox_id}.eml"
        if not path.is_file():
            return None
        return _parse(path)

    def _summary(self, path: Path) -> LocalMail:
        message = _parse(path)
        date = message["Date"]
        return LocalMail(
            id=UUID(path.stem),
            path=path,
            date=date.datetime if date is not None else None,
            recipient=str(message["To"] or ""),
            subject=str(message["Subject"] or ""),
        )


def _outbox_id(path: Path) -> bool:
    try:
        UUID(path.stem)
    except ValueError:
        return False
    return True


def _parse(path: Path) -> EmailMessage:
    with path.open("rb") as handle:
        parsed = BytesParser(policy=policy.default).parse(handle)
    assert isinstance(parsed, EmailMessage)
    return parsed
