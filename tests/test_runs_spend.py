"""The monthly spend cap on the platform's keys (docs/executions.md#spend-cap, decision 0109):
429 SPEND_CAP_REACHED with Retry-After on the API, habit runs recorded failed, the worker's
check at admission, organizations' own keys not capped, and the owners' mails at 80 % and
100 %, once each per month."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from kijko_core.db.session import system_session, tenant_session
from kijko_core.executions import lifecycle, spend
from kijko_core.executions.spend import SpendCapReached
from kijko_core.jobs.worker import run_until_idle
from kijko_core.runtime import Kijko
from kijko_server.app import create_app
from tests.conftest import Account
from tests.memberships import add_member
from tests.reflex_kit import create_reflex
from tests.runs_kit import MODEL, capped_runtime, execution, insert_skill, snapshot, spent

API = "/api/v1"


@pytest.fixture(scope="module")
async def capped(make_settings: Any) -> AsyncIterator[Kijko]:
    async with capped_runtime(make_settings) as runtime:
        yield runtime


@pytest.fixture
async def capped_client(capped: Kijko) -> AsyncIterator[Any]:
    application = create_app(kijko=capped)
    async with application.test_app():
        yield application.test_client()


async def mails(kijko: Kijko, account: Account) -> list[tuple[str, str]]:
    async with system_session(kijko.system_db) as db:
        rows = await db.fetch(
            "SELECT recipient, template FROM kijko.mail_outbox"
            " WHERE organization_id = $1 AND template LIKE 'spend_cap%' ORDER BY created_at, id",
            UUID(account.org_id),
        )
    return [(r["recipient"], r["template"]) for r in rows]


async def test_an_execution_over_the_cap_is_refused_with_retry_after_to_the_months_end(
    capped: Kijko, capped_client: Any, alice: Account
) -> None:
    skill = await insert_skill(capped, alice)
    await spent(capped, alice, "0.60", key_source="organization")  # own keys are not counted
    await spent(capped, alice, "0.70", days_ago=40)  # nor last month's
    await spent(capped, alice, "0.99")
    ok = await capped_client.post(
        f"{API}/skills/{skill['id']}/execute", json={"input": {"name": "A"}}, headers=alice.headers
    )
    assert ok.status_code == 200
    await spent(capped, alice, "0.01")  # 1.00: the cap
    refused = await capped_client.post(
        f"{API}/skills/{skill['id']}/execute", json={"input": {"name": "A"}}, headers=alice.headers
    )
    body = await refused.get_json()
    assert (refused.status_code, body["code"]) == (429, "SPEND_CAP_REACHED")
    async with system_session(capped.system_db) as db:
        month_end = await db.fetchval(
            "SELECT extract(epoch FROM date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month'"
            " - now() AT TIME ZONE 'UTC')"
        )
    assert abs(int(refused.headers["Retry-After"]) - float(month_end)) < 60
    test = await capped_client.post(
        f"{API}/skills/{skill['id']}/test", json={"input": {"name": "A"}}, headers=alice.headers
    )
    assert (test.status_code, (await test.get_json())["code"]) == (429, "SPEND_CAP_REACHED")
    # A reflex's test run is refused the same way (its only 429, docs/reflexes.md).
    reflex = await create_reflex(capped_client, alice, skill["id"])
    reflex_test = await capped_client.post(
        f"{API}/reflexes/{reflex['id']}/test", json={"payload": {"name": "A"}}, headers=alice.headers
    )
    assert (reflex_test.status_code, (await reflex_test.get_json())["code"]) == (429, "SPEND_CAP_REACHED")
    assert int(reflex_test.headers["Retry-After"]) > 0


async def test_a_habit_run_over_the_cap_is_recorded_failed_and_queued_ones_fail_at_admission(
    capped: Kijko, alice: Account
) -> None:
    skill = await insert_skill(capped, alice)
    async with tenant_session(capped.app_db, alice.identity) as db:
        queued = await lifecycle.start(
            db,
            snapshot=snapshot(skill),
            input={"name": "A"},
            execution_type="manual",
            user_id=UUID(alice.user_id),
            skill_id=skill["id"],
            kijko=capped,
        )
    await spent(capped, alice, "1.50")
    async with tenant_session(capped.app_db, alice.identity) as db:
        habit_run = await lifecycle.start(
            db,
            snapshot=snapshot(skill),
            input={"name": "A"},
            execution_type="habit",
            user_id=UUID(alice.user_id),
            skill_id=skill["id"],
            reference_id=uuid.uuid4(),
            scheduled_for=datetime.now(UTC),
            kijko=capped,
        )
    assert habit_run is not None
    row = await execution(capped, habit_run)
    assert (row["status"], row["error_code"], row["completed_at"] is not None) == ("failed", "SPEND_CAP_REACHED", True)
    await run_until_idle(capped)
    row = await execution(capped, queued)
    assert (row["status"], row["error_code"]) == ("failed", "SPEND_CAP_REACHED")


async def test_an_organization_with_its_own_key_for_the_provider_is_not_capped(
    capped: Kijko, capped_client: Any, alice: Account
) -> None:
    skill = await insert_skill(capped, alice)
    await spent(capped, alice, "5.00")
    async with system_session(capped.system_db) as db:
        await db.execute(
            "INSERT INTO kijko.llm_keys (organization_id, provider, key_ciphertext, last4)"
            " VALUES ($1, 'anthropic', $2, 'abcd')",
            UUID(alice.org_id),
            capped.keyring.encrypt("sk-ant-own-key-abcd"),
        )
    response = await capped_client.post(
        f"{API}/skills/{skill['id']}/execute", json={"input": {"name": "A"}}, headers=alice.headers
    )
    assert response.status_code == 200, await response.get_data(as_text=True)


async def test_owners_are_mailed_once_at_80_and_once_at_100_percent(capped: Kijko, alice: Account) -> None:
    admin = await add_member(capped, alice.org_id, "admin")
    owner = await add_member(capped, alice.org_id, "owner", first_name="Oona")
    await spent(capped, alice, "0.70")
    for cost, expected in (
        ("0.05", []),  # 75 %
        ("0.10", ["spend_cap_warning"]),  # 85 %
        ("0.05", ["spend_cap_warning"]),  # 90 %: already mailed
        ("0.20", ["spend_cap_warning", "spend_cap_reached"]),  # 110 %
        ("0.20", ["spend_cap_warning", "spend_cap_reached"]),
    ):
        skill = await insert_skill(capped, alice, type_config={"cost": cost})
        async with tenant_session(capped.app_db, alice.identity) as db:
            # Started without the cap check (the worker's admission checks: below the cap here
            # until the fourth), as a habit's tick would.
            await lifecycle.start(
                db,
                snapshot=snapshot(skill),
                input={"name": "A"},
                execution_type="manual",
                user_id=UUID(alice.user_id),
                skill_id=skill["id"],
                plans=capped.plans,
            )
        await run_until_idle(capped)
        sent = await mails(capped, alice)
        templates = sorted({template for _, template in sent})
        assert templates == sorted(expected), cost
        # Each mail went to every owner, once: not to the admin.
        for template in expected:
            assert sorted(r for r, t in sent if t == template) == sorted([alice.email, owner.email])
    assert admin.email not in {recipient for recipient, _ in await mails(capped, alice)}


async def test_the_cap_comes_from_one_replaceable_source(capped: Kijko, alice: Account) -> None:
    async def plan_cap(db: Any, settings: Any, org_id: UUID) -> Decimal | None:
        return None if org_id == UUID(alice.org_id) else Decimal("1")

    await spent(capped, alice, "3.00")
    previous = spend.use_cap_source(plan_cap)
    try:
        async with tenant_session(capped.app_db, alice.identity) as db:
            assert await spend.refusal(db, capped, UUID(alice.org_id), {"skillType": "echo", "model": MODEL}) is None
    finally:
        spend.use_cap_source(previous)
    async with tenant_session(capped.app_db, alice.identity) as db:
        refusal = await spend.refusal(db, capped, UUID(alice.org_id), {"skillType": "echo", "model": MODEL})
    assert isinstance(refusal, SpendCapReached)
