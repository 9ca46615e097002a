"""The invitation mail end to end: invited over HTTP, delivered by the ``mail.deliver`` job to a
real SMTP server the test starts (aiosmtpd), and accepted with the link read from the message
that arrived."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from kijko_core.jobs.worker import run_until_idle
from kijko_core.runtime import Kijko
from tests.apps import running
from tests.conftest import sign_up
from tests.smtp_server import SmtpServer

LINK = re.compile(r"https://app\.kijko\.test/invitations/accept\?token=([A-Za-z0-9_-]+)")


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
async def mailing(make_settings: Any, smtp: SmtpServer) -> AsyncIterator[tuple[Kijko, Any]]:
    settings = make_settings(
        smtp_url=f"smtp://127.0.0.1:{smtp.port}?starttls=off",
        mail_from="Kijko <kijko@kijko.test>",
        app_url="https://app.kijko.test/",
    )
    async with running(settings) as (runtime, _app, client):
        await run_until_idle(runtime)  # jobs of earlier tests out of the way
        smtp.received.clear()
        yield runtime, client


async def test_the_invitation_arrives_by_smtp_and_its_link_joins_the_project(
    mailing: tuple[Kijko, Any], smtp: SmtpServer
) -> None:
    runtime, client = mailing
    alice = await sign_up(client, first_name="Alice")
    invitee = await sign_up(client, first_name="Ivo")
    created = await client.post(
        "/api/v1/projects", json={"name": "Mailed project", "type": "manual"}, headers=alice.headers
    )
    project = (await created.get_json())["project"]
    response = await client.post(
        f"/api/v1/projects/{project['id']}/members",
        json={"email": invitee.email, "role": "developer", "inviteMessage": "See you there"},
        headers=alice.headers,
    )
    assert response.status_code == 201
    assert await run_until_idle(runtime) >= 1

    [received] = [r for r in smtp.received if r.recipients == [invitee.email]]
    message = received.message
    assert message["Subject"] == "Alice Lovelace invited you to Mailed project on Kijko"
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "See you there" in text and "developer" in text
    [token] = LINK.findall(text)
    assert f'href="https://app.kijko.test/invitations/accept?token={token}"' in html

    preview = await client.get(f"/api/v1/invitations/{token}")
    assert preview.status_code == 200 and (await preview.get_json())["projectName"] == "Mailed project"
    accepted = await client.post("/api/v1/invitations/accept", json={"token": token}, headers=invitee.headers)
    assert accepted.status_code == 200
    member = (await accepted.get_json())["member"]
    assert (member["userId"], member["role"]) == (invitee.user_id, "developer")
