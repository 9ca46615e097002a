"""Switching organizations and removed members with the keycloak provider, end to end through
HTTP against the Keycloak-shaped server (tests/keycloak_server.py): the organization travels
as the user's ``org_id`` attribute, which the realm's mapper writes into each access token."""

from __future__ import annotations

from typing import Any

import pytest

from kijko_core.runtime import Kijko
from tests import test_keycloak as keycloak_suite
from tests.conftest import sign_up
from tests.keycloak_server import FakeKeycloak
from tests.memberships import join
from tests.test_errors import error_of
from tests.test_keycloak import claims_of
from tests.tokens import bearer

pytestmark = pytest.mark.slow


# The Keycloak stand-in and a runtime using it, shared with the provider's own suite.
fake = keycloak_suite.fake
kc_kijko = keycloak_suite.kc_kijko
kc_app = keycloak_suite.kc_app
kc = keycloak_suite.kc


SWITCH = "/api/v1/auth/switch-organization"


async def test_switch_points_the_attribute_and_refreshes_the_same_session(
    kc: Any, kc_kijko: Kijko, fake: FakeKeycloak
) -> None:
    ada, bob = await sign_up(kc, first_name="Ada"), await sign_up(kc, first_name="Bob")
    await join(kc_kijko, ada, bob.org_id, "member")
    response = await kc.post(
        SWITCH, json={"organization_id": bob.org_id, "refresh_token": ada.refresh_token}, headers=ada.headers
    )
    assert response.status_code == 200, await response.get_json()
    tokens = await response.get_json()
    claims = claims_of(tokens["access_token"])
    assert claims["org_id"] == bob.org_id
    assert claims["sid"] == claims_of(ada.access_token)["sid"]  # one Keycloak session
    user = fake.user_by_email(ada.email)
    assert user is not None and user.attributes["org_id"] == [bob.org_id]
    me = await (await kc.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))).get_json()
    assert (me["org_id"], me["roles"]) == (bob.org_id, ["member"])
    listed = await (await kc.get("/api/v1/organizations", headers=bearer(tokens["access_token"]))).get_json()
    assert [(o["id"], o["current"]) for o in listed] == [(ada.org_id, False), (bob.org_id, True)]
    # Refreshing keeps the new organization; switching back works the same way.
    refreshed = await (
        await kc.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).get_json()
    assert claims_of(refreshed["access_token"])["org_id"] == bob.org_id
    back = await kc.post(
        SWITCH,
        json={"organizationId": ada.org_id, "refresh_token": refreshed["refresh_token"]},
        headers=bearer(refreshed["access_token"]),
    )
    assert claims_of((await back.get_json())["access_token"])["org_id"] == ada.org_id


async def test_switch_needs_the_refresh_token_with_keycloak(kc: Any, kc_kijko: Kijko) -> None:
    ada, bob = await sign_up(kc), await sign_up(kc)
    await join(kc_kijko, ada, bob.org_id, "member")
    response = await kc.post(SWITCH, json={"organization_id": bob.org_id}, headers=ada.headers)
    body = await error_of(response, 400, "BAD_REQUEST")
    assert body["field"] == "refresh_token"


async def test_switch_to_a_foreign_organization_is_403_and_changes_nothing(kc: Any, fake: FakeKeycloak) -> None:
    ada, bob = await sign_up(kc), await sign_up(kc)
    response = await kc.post(
        SWITCH, json={"organization_id": bob.org_id, "refresh_token": ada.refresh_token}, headers=ada.headers
    )
    await error_of(response, 403, "FORBIDDEN")
    user = fake.user_by_email(ada.email)
    assert user is not None and user.attributes["org_id"] == [ada.org_id]
    refreshed = await (await kc.post("/api/v1/auth/refresh", json={"refresh_token": ada.refresh_token})).get_json()
    assert claims_of(refreshed["access_token"])["org_id"] == ada.org_id


async def test_switch_with_another_sessions_refresh_token_is_refused(
    kc: Any, kc_kijko: Kijko, fake: FakeKeycloak
) -> None:
    ada, bob = await sign_up(kc), await sign_up(kc)
    await join(kc_kijko, ada, bob.org_id, "member")
    other_session = await (
        await kc.post("/api/v1/auth/login", json={"email": ada.email, "password": ada.password})
    ).get_json()
    mine = await kc.post(
        SWITCH,
        json={"organization_id": bob.org_id, "refresh_token": other_session["refresh_token"]},
        headers=ada.headers,
    )
    await error_of(mine, 401, "INVALID_TOKEN")
    theirs = await kc.post(
        SWITCH, json={"organization_id": bob.org_id, "refresh_token": bob.refresh_token}, headers=ada.headers
    )
    await error_of(theirs, 401, "INVALID_TOKEN")
    # Refused before anything changed: Ada's next refresh still lands in her own organization.
    user = fake.user_by_email(ada.email)
    assert user is not None and user.attributes["org_id"] == [ada.org_id]


async def test_a_removed_members_refresh_lands_in_their_other_organization(
    kc: Any, kc_kijko: Kijko, fake: FakeKeycloak
) -> None:
    ada, bob = await sign_up(kc), await sign_up(kc)
    await join(kc_kijko, ada, bob.org_id, "member")
    switched = await (
        await kc.post(
            SWITCH, json={"organization_id": bob.org_id, "refresh_token": ada.refresh_token}, headers=ada.headers
        )
    ).get_json()
    removed = await kc.delete(f"/api/v1/organizations/current/members/{ada.user_id}", headers=bob.headers)
    assert removed.status_code == 200
    await error_of(await kc.get("/api/v1/auth/me", headers=bearer(switched["access_token"])), 403, "FORBIDDEN")
    refreshed = await (
        await kc.post("/api/v1/auth/refresh", json={"refresh_token": switched["refresh_token"]})
    ).get_json()
    assert claims_of(refreshed["access_token"])["org_id"] == ada.org_id
    user = fake.user_by_email(ada.email)
    assert user is not None and user.attributes["org_id"] == [ada.org_id]
