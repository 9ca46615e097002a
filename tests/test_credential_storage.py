"""Credentials at rest and at work: argon2id hashes made off the event loop, and no password,
refresh token or private key stored in plain text anywhere in the database."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import uuid
from typing import Any

import asyncpg
from argon2 import PasswordHasher

from kijko_core.auth.local.provider import LocalProvider
from kijko_core.auth.passwords import PasswordHashing
from kijko_core.db.provision import ScratchDatabase
from kijko_core.runtime import Kijko
from kijko_server.app import create_app
from tests.conftest import sign_up
from tests.tokens import unverified_parts

TEXT_TYPES = ("text", "character varying", "character", "bytea", "jsonb", "json")


class RecordingHasher(PasswordHasher):
    """The real argon2id hasher, noting where each call ran."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str, bool]] = []

    def _note(self, operation: str) -> None:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        self.calls.append((operation, threading.current_thread().name, on_loop))

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self._note("hash")
        return super().hash(password, salt=salt)

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002
        self._note("verify")
        return super().verify(hash, password)


async def test_passwords_are_argon2id_and_never_hashed_on_the_event_loop(kijko: Kijko, alice: Any) -> None:
    hasher = RecordingHasher()
    provider = LocalProvider(
        kijko.settings, kijko.system_db, kijko.keyring, passwords=PasswordHashing(2, hasher=hasher)
    )
    await provider.start()
    app = create_app(kijko=dataclasses.replace(kijko, identity=provider))
    try:
        async with app.test_app():
            client = app.test_client()
            account = await sign_up(client, password="a fine long password")
            for email, password, status in (
                (account.email, account.password, 200),
                (account.email, "a wrong password", 401),
                (f"nobody-{uuid.uuid4().hex}@example.com", account.password, 401),
            ):
                response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
                assert response.status_code == status
    finally:
        await provider.close()

    operations = [operation for operation, _, _ in hasher.calls]
    # The dummy hash for unknown emails, the signup, then three logins: the unknown email
    # is verified too, so it costs what a wrong password costs.
    assert sorted(operations) == ["hash", "hash", "verify", "verify", "verify"]
    for _, thread, on_loop in hasher.calls:
        assert thread.startswith("argon2") and not on_loop

    async with kijko.system_db.connection() as handle:
        stored = await handle.raw_connection.fetchval(
            "SELECT password_hash FROM kijko_private.password_credentials WHERE user_id = $1",
            uuid.UUID(account.user_id),
        )
    assert stored.startswith("$argon2id$")


async def _dump(url: str) -> tuple[list[str], bytes]:
    """Every text-like value of every table in kijko and kijko_private, as one blob."""
    conn = await asyncpg.connect(url)
    try:
        columns = await conn.fetch(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns"
            " WHERE table_schema IN ('kijko', 'kijko_private') AND data_type = ANY($1::text[])"
            " AND (table_schema, table_name) IN (SELECT table_schema, table_name"
            "   FROM information_schema.tables WHERE table_type = 'BASE TABLE')",
            list(TEXT_TYPES),
        )
        names = [f"{c['table_schema']}.{c['table_name']}.{c['column_name']}" for c in columns]
        chunks: list[bytes] = []
        for column in columns:
            # Identifiers come from the catalog and are quoted by PostgreSQL's format(%I).
            # Values as text, and bytea also as raw bytes (not only in its hex text form).
            query = await conn.fetchval(
                "SELECT format('SELECT %I::text, %I FROM %I.%I', $1::text, $1::text, $2::text, $3::text)",
                column["column_name"],
                column["table_schema"],
                column["table_name"],
            )
            for text, raw in await conn.fetch(query):
                if text is not None:
                    chunks.append(text.encode())
                if isinstance(raw, bytes):
                    chunks.append(raw)
        return names, b"\n".join(chunks)
    finally:
        await conn.close()


async def test_no_password_refresh_token_or_private_key_is_stored_in_plain_text(
    client: Any, kijko: Kijko, database: ScratchDatabase
) -> None:
    password = "plain-" + uuid.uuid4().hex
    account = await sign_up(client, password=password)
    refresh_tokens = [account.refresh_token]
    login = await client.post("/api/v1/auth/login", json={"email": account.email, "password": password})
    refresh_tokens.append((await login.get_json())["refresh_token"])
    # Two refreshes with one token: the successor is kept for the grace window.
    responses = await asyncio.gather(
        *(client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_tokens[-1]}) for _ in range(2))
    )
    refresh_tokens.extend([(await r.get_json())["refresh_token"] for r in responses])
    assert all(r.status_code == 200 for r in responses)

    names, blob = await _dump(database.admin_url)
    assert "kijko_private.refresh_tokens.successor_ciphertext" in names
    assert "kijko_private.password_credentials.password_hash" in names
    # The scan sees the data: the email and the session id are there in plain text.
    session_id = unverified_parts(account.access_token)[1]["sid"]
    assert account.email.encode() in blob and session_id.encode() in blob

    assert password.encode() not in blob
    for token in set(refresh_tokens):
        assert token.encode() not in blob
    kid = unverified_parts(account.access_token)[0]["kid"]
    async with kijko.system_db.connection() as handle:
        ciphertext = await handle.raw_connection.fetchval(
            "SELECT private_key_ciphertext FROM kijko_private.signing_keys WHERE kid = $1", kid
        )
    private_exponent = json.loads(kijko.keyring.decrypt(ciphertext))["d"]
    assert private_exponent.encode() not in blob
