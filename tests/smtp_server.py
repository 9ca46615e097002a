"""A real SMTP server for the tests (aiosmtpd in a background thread), with what delivery
needs checking: STARTTLS or TLS from the first byte with a self-signed certificate made here
(cryptography), AUTH PLAIN/LOGIN against one user, and scripted refusals (``451`` for the
next n messages, ``550`` for a recipient)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.net import free_port


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM files in ``directory``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kijko test smtp")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    raw: bytes
    tls: bool
    login: str | None


@dataclass
class Handler:
    """What the server does with a message; the test scripts it and reads what arrived."""

    received: list[Received] = field(default_factory=list)
    temporary_failures: int = 0  # answer 451 to the next n messages
    refuse_recipients: set[str] = field(default_factory=set)  # answer 550 to these
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any) -> str:
        if address.lower() in self.refuse_recipients:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.attempts += 1
            if self.temporary_failures > 0:
                self.temporary_failures -= 1
                return "451 4.3.0 Try again later"
            raw = envelope.original_content or b""
            parsed = BytesParser(policy=policy.default).parsebytes(raw)
            assert isinstance(parsed, EmailMessage)
            tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
            login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
            self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), parsed, raw, tls, login))
        return "250 2.0.0 Accepted"


class SmtpServer:
    """``with SmtpServer(...) as smtp:`` — listening on ``smtp.port`` of 127.0.0.1."""

    def __init__(
        self,
        *,
        certificate: tuple[Path, Path] | None = None,
        implicit_tls: bool = False,
        user: tuple[str, str] | None = None,
    ) -> None:
        self.handler = Handler()
        self.port = free_port()
        self.user = user
        tls: ssl.SSLContext | None = None
        if certificate is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(*map(str, certificate))
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
        if implicit_tls:
            # TLS from the first byte (aiosmtpd knows only STARTTLS as "TLS" for AUTH).
            kwargs.update(ssl_context=tls, auth_require_tls=False)
        elif tls is not None:
            kwargs.update(tls_context=tls, require_starttls=True)
        if tls is None:
            kwargs["auth_require_tls"] = False
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, server_hostname="localhost", **kwargs
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword) and self.user is not None:
            if (data.login.decode(), data.password.decode()) == self.user:
                return AuthResult(success=True, auth_data=data)
        return AuthResult(success=False, handled=False)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        return self.handler.received
