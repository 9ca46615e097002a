"""One rule for "the same email address" (issue 5 §4): ``email_key`` in Python (the login rate
limit) and ``kijko_private.email_key`` in SQL (the login lookup and the unique index) agree,
and ``dİmİtrİ@…`` is ``dimitri@…`` for signup, login and the limit alike."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from kijko_core.auth.emails import email_key
from kijko_core.runtime import Kijko
from tests.conftest import sign_up

AUTH = "/api/v1/auth"

CORPUS = [
    "dimitri@example.com",
    "dİmİtrİ@example.com",
    "DİMİTRİ@EXAMPLE.COM",
    "  Dimitri@Example.com\t",
    "ｄｉｍｉｔｒｉ@ｅｘａｍｐｌｅ.ｃｏｍ",  # full-width
    "josé@example.com",
    "jose\u0301@example.com",  # the same, decomposed
    "JOSÉ@EXAMPLE.COM",
    "ÅSA.ØSTERGÅRD@EXAMPLE.DK",
    "ΟΔΟΣ@example.gr",  # a final sigma: simple case mapping, as PostgreSQL
    "ДМИТРИЙ@пример.рф",
    "ﬁnn@example.com",  # a ligature
    "straße@example.de",
    "ǅemal@example.com",  # a title-case digraph
    "user+tag@例え.jp",
    "ı@example.com",  # dotless i stays dotless
]


def test_the_rule() -> None:
    assert email_key("dİmİtrİ@example.com") == "dimitri@example.com"
    assert email_key("DİMİTRİ@EXAMPLE.COM") == "dimitri@example.com"
    assert email_key(" ｄｉｍｉｔｒｉ@example.com ") == "dimitri@example.com"
    assert email_key("josé@example.com") == email_key("jose\u0301@example.com") == "jose@example.com"
    assert email_key("ﬁnn@x.nl") == "finn@x.nl"
    assert email_key("ı@x.nl") != email_key("i@x.nl")


@pytest.mark.parametrize("email", CORPUS)
async def test_python_and_sql_agree(kijko: Kijko, email: str) -> None:
    async with kijko.system_db.connection() as handle:
        in_sql = await handle.raw_connection.fetchval("SELECT kijko_private.email_key($1)", email)
    assert in_sql == email_key(email)


async def test_signup_refuses_an_email_that_is_an_existing_one(client: Any) -> None:
    local = f"dimitri-{uuid.uuid4().hex[:8]}"
    await sign_up(client, email=f"{local}@example.com")
    for spelling in (f"{local.replace('i', 'İ')}@example.com", f"{local.upper()}@EXAMPLE.COM"):
        response = await client.post(
            f"{AUTH}/signup",
            json={"email": spelling, "password": "another-password", "first_name": "A", "last_name": "B"},
        )
        assert response.status_code == 409, await response.get_data(as_text=True)
        body = await response.get_json()
        assert body["code"] == "ACCOUNT_EXISTS" and body["field"] == "email"


async def test_login_finds_the_account_by_any_spelling(client: Any) -> None:
    local = f"dimitri-{uuid.uuid4().hex[:8]}"
    account = await sign_up(client, email=f"{local}@example.com")
    for spelling in (f"{local.upper().replace('I', 'İ')}@EXAMPLE.COM", f" {local}@example.com "):
        response = await client.post(f"{AUTH}/login", json={"email": spelling, "password": account.password})
        assert response.status_code == 200, await response.get_data(as_text=True)
