"""Inviting over the API and reading the link back from the mail outbox, for tests."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from kijko_core import events
from kijko_core.db.session import system_session
from kijko_core.runtime import Kijko
from tests.conftest import Account

API = "/api/v1/projects"
LINKS = "/api/v1/invitations"
_TOKEN = re.compile(r"/invitations/accept\?token=([A-Za-z0-9_-]+)")


async def invite(client: Any, by: Account, project_id: str, email: str, role: str = "developer", **body: Any) -> Any:
    return await client.post(
        f"{API}/{project_id}/members", json={"email": email, "role": role, **body}, headers=by.headers
    )


async def invited(client: Any, by: Account, project_id: str, email: str, role: str = "developer") -> dict[str, Any]:
    response = await invite(client, by, project_id, email, role)
    assert response.status_code == 201, await response.get_data(as_text=True)
    member: dict[str, Any] = await response.get_json()
    return member


async def mails_to(kijko: Kijko, email: str) -> list[dict[str, Any]]:
    """The outbox rows addressed to ``email``, oldest first."""
    async with system_session(kijko.system_db, readonly=True) as db:
        rows = await db.fetch(
            "SELECT organization_id, recipient, template, subject, text_body, html_body"
            " FROM kijko.mail_outbox WHERE lower(recipient) = lower($1) ORDER BY created_at, id",
            email,
        )
    return [dict(row) for row in rows]


async def link_token(kijko: Kijko, email: str) -> str:
    """The token of the newest invitation mailed to ``email`` (read from the mail's text)."""
    mails = await mails_to(kijko, email)
    assert mails, f"no mail to {email}"
    match = _TOKEN.search(mails[-1]["text_body"])
    assert match, mails[-1]["text_body"]
    return match.group(1)


async def accept(client: Any, account: Account, token: str) -> Any:
    return await client.post(f"{LINKS}/accept", json={"token": token}, headers=account.headers)


async def joined(client: Any, kijko: Kijko, by: Account, project_id: str, who: Account, role: str) -> dict[str, Any]:
    """``who`` invited by ``by`` with ``role`` and accepted: the member."""
    await invited(client, by, project_id, who.email, role)
    response = await accept(client, who, await link_token(kijko, who.email))
    assert response.status_code == 200, await response.get_data(as_text=True)
    member: dict[str, Any] = (await response.get_json())["member"]
    return member


async def org_role(kijko: Kijko, org_id: str, user_id: str) -> str | None:
    async with system_session(kijko.system_db, readonly=True) as db:
        role: str | None = await db.fetchval(
            "SELECT role FROM kijko.memberships WHERE organization_id = $1 AND user_id = $2",
            UUID(org_id),
            UUID(user_id),
        )
    return role


def recorded(project_id: str, event: str | None = None) -> list[events.Event]:
    """The member events of one project, each once (they go to every room of the project's
    audience: its organization's, or its readers' own; tests/test_realtime_audience.py)."""
    port = events.port()
    assert isinstance(port, events.InProcessEvents)
    found: list[events.Event] = []
    seen: set[int] = set()
    for e in port.recorded(event=event):
        about = e.data.get("project_id") or e.data.get("projectId")
        if about == project_id and not e.room.startswith("project:"):
            key = id(e.data)  # one payload object per announcement, shared by its rooms
            if key not in seen:
                seen.add(key)
                found.append(e)
    return found


# The statuses each member and invitation operation documents besides its success (500 is on
# all of them); tests/test_members.py makes each happen with its documented code.
P = "/api/v1/projects/{project_id}"
M = f"{P}/members/{{member_id}}"
BODY = {"400", "413", "415", "422"}
MEMBER_OPERATIONS: dict[tuple[str, str], set[str]] = {
    ("get", f"{P}/members"): {"401", "403", "404"},
    ("post", f"{P}/members"): {"401", "403", "404", "409", "429"} | BODY,
    ("put", M): {"401", "403", "404"} | BODY,
    ("patch", M): {"401", "403", "404"} | BODY,
    ("delete", M): {"401", "403", "404"},
    ("post", f"{P}/invitations"): {"401", "403", "404"} | BODY,
    ("get", f"{P}/invitations/pending"): {"401", "403", "404"},
    ("post", f"{P}/invitations/{{member_id}}/resend"): {"401", "403", "404", "409", "429"},
    ("delete", f"{P}/invitations/{{member_id}}"): {"401", "403", "404", "409"},
    ("get", "/api/v1/invitations/{token}"): {"404", "409", "410", "429", "503"},
    ("post", "/api/v1/invitations/accept"): {"401", "403", "404", "409", "410"} | BODY,
}
