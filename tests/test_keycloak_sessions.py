"""Keycloak sessions Kijko never saw are recorded when their first token is verified
(decision 0016), so ``kijko.enter`` can refuse every session it does not know."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from kijko_core.db.session import system_session
from kijko_core.runtime import Kijko
from tests import test_keycloak as keycloak_suite
from tests.conftest import sign_up
from tests.keycloak_server import FakeKeycloak
from tests.test_errors import error_of
from tests.test_keycloak import claims_of
from tests.tokens import bearer

# The Keycloak stand-in and a runtime using it, shared with the provider's own suite.
fake = keycloak_suite.fake
kc_kijko = keycloak_suite.kc_kijko
kc_app = keycloak_suite.kc_app
kc = keycloak_suite.kc

pytestmark = pytest.mark.slow


async def session_row(kijko: Kijko, session_id: str) -> Any:
    async with system_session(kijko.system_db, readonly=True) as db:
        return await db.fetchrow(
            "SELECT user_id, provider, expires_at, revoked_at FROM kijko_private.sessions WHERE id = $1",
            session_id,
        )


async def test_a_session_opened_outside_kijko_is_recorded_on_first_use(
    kc: Any, fake: FakeKeycloak, kc_kijko: Kijko
) -> None:
    account = await sign_up(kc)
    user = fake.users[account.user_id]
    # A token of a session another client of the realm opened (keycloak-js, say).
    outside = str(uuid.uuid4())
    token = fake.sign(fake.access_claims(user, outside))
    assert await session_row(kc_kijko, outside) is None
    assert (await kc.get("/api/v1/auth/me", headers=bearer(token))).status_code == 200
    row = await session_row(kc_kijko, outside)
    assert row is not None and str(row["user_id"]) == account.user_id and row["provider"] == "keycloak"
    assert row["expires_at"].timestamp() >= claims_of(token)["exp"]

    # A later token of the same session extends the record instead of being refused.
    later = fake.sign(fake.access_claims(user, outside, exp=int(time.time()) + 3600))
    assert (await kc.get("/api/v1/projects", headers=bearer(later))).status_code == 200
    extended = await session_row(kc_kijko, outside)
    assert extended["expires_at"] > row["expires_at"]

    # Logging out revokes it; its tokens stop working and seeing it again does not revive it.
    assert (await kc.post("/api/v1/auth/logout", headers=bearer(later))).status_code == 200
    await error_of(await kc.get("/api/v1/auth/me", headers=bearer(token)), 401, "INVALID_TOKEN")
    newer = fake.sign(fake.access_claims(user, outside, exp=int(time.time()) + 7200))
    await error_of(await kc.get("/api/v1/auth/me", headers=bearer(newer)), 401, "INVALID_TOKEN")
    assert (await session_row(kc_kijko, outside))["revoked_at"] is not None


async def test_a_session_of_one_user_is_not_taken_over_by_another(kc: Any, fake: FakeKeycloak, kc_kijko: Kijko) -> None:
    first, second = await sign_up(kc), await sign_up(kc)
    session_id = claims_of(first.access_token)["sid"]
    stolen = fake.sign(fake.access_claims(fake.users[second.user_id], session_id))
    await error_of(await kc.get("/api/v1/auth/me", headers=bearer(stolen)), 401, "INVALID_TOKEN")
    assert str((await session_row(kc_kijko, session_id))["user_id"]) == first.user_id
