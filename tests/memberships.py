"""Put a new user into an existing organization with a given role, and log them in there.

Login issues tokens for the user's oldest membership, so a user created with their own
organization would land in it. The helper creates the user through the local provider
(the same call signup makes, without spending the HTTP signup rate-limit budget of the
test), adds the membership in the target organization through a system session, deletes
the user's own organization (which cascades its owner membership), and then logs in
through the provider's real login path: the one membership left is the one the token gets.
No token is forged and no provider internals are touched.
"""

from __future__ import annotations

import uuid
from typing import Literal
from uuid import UUID

from kijko_core.db.session import system_session
from kijko_core.runtime import Kijko
from tests.conftest import Account

OrgRoleName = Literal["owner", "admin", "member", "viewer"]
PASSWORD = "correct horse battery"


async def add_member(kijko: Kijko, org_id: str, role: OrgRoleName, *, first_name: str = "Mia") -> Account:
    """A fresh user whose only membership is ``role`` in ``org_id``, with tokens for it."""
    email = f"{role}-{uuid.uuid4().hex[:12]}@example.com"
    identity = kijko.identity
    user_id, own_org = await identity.create_user(  # type: ignore[attr-defined]  # local provider
        email=email, password=PASSWORD, first_name=first_name, last_name="Member"
    )
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "INSERT INTO kijko.memberships (organization_id, user_id, role) VALUES ($1, $2, $3)",
            UUID(org_id),
            user_id,
            role,
        )
        await db.execute("DELETE FROM kijko.organizations WHERE id = $1", own_org)
    tokens = await identity.login(email, PASSWORD)
    return Account(email, PASSWORD, tokens.access_token, tokens.refresh_token, str(user_id), org_id)


async def join(kijko: Kijko, account: Account, org_id: str, role: str) -> None:
    """Give an existing user a further membership (what accepting an invitation will do)."""
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "INSERT INTO kijko.memberships (organization_id, user_id, role) VALUES ($1, $2, $3)",
            UUID(org_id),
            UUID(account.user_id),
            role,
        )
