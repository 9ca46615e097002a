"""The reflex webhook receiver (docs/reflexes.md): Standard Webhooks signatures verified before
parsing, one 401 for every refusal, deduplication, the previous secret for 24 h, the body cap,
the per-reflex rate limit, and executions only ever in the reflex's organization."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from standardwebhooks import Webhook

from kijko_core.db.session import ServiceActor, load_service_capability, service_session, system_session
from kijko_core.jobs import sweep_steps
from kijko_core.reflexes.fire import forget_deliveries
from kijko_core.runtime import Kijko, make_redis
from kijko_server.app import create_app
from tests.conftest import Account
from tests.net import free_port
from tests.reflex_kit import API, create_reflex, deliver, signed
from tests.runs_kit import cancel_leftovers, execution, insert_skill


@pytest.fixture(autouse=True)
async def _clean(kijko: Kijko) -> AsyncIterator[None]:
    yield
    await cancel_leftovers(kijko)


async def _reflex(client: Any, kijko: Kijko, account: Account, **fields: Any) -> tuple[dict[str, Any], str]:
    skill = await insert_skill(kijko, account)
    reflex = await create_reflex(client, account, skill["id"], **fields)
    return reflex, reflex["triggerConfig"]["secret"]


async def _executions(kijko: Kijko, reflex_id: str) -> list[dict[str, Any]]:
    async with system_session(kijko.system_db) as db:
        rows = await db.fetch("SELECT * FROM kijko.skill_executions WHERE reference_id = $1", UUID(reflex_id))
    return [dict(row) for row in rows]


async def test_a_signed_delivery_starts_an_execution_in_the_reflexs_organization(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    reflex, secret = await _reflex(client, kijko, alice)
    assert reflex["webhookUrl"].endswith("/api/v1/webhooks/reflex/" + reflex["id"])
    assert reflex["triggerConfig"]["url"] == reflex["webhookUrl"]
    assert secret.startswith("whsec_")
    body, headers = signed(secret, {"name": "Ada", "extra": {"deep": True}})
    response = await deliver(client, reflex["id"], body, headers)
    assert response.status_code == 202, await response.get_data(as_text=True)
    answer = await response.get_json()
    assert answer["matched"] is True and answer["duplicate"] is False
    row = await execution(kijko, answer["executionId"])
    assert str(row["organization_id"]) == alice.org_id
    assert str(row["user_id"]) == alice.user_id
    assert row["execution_type"] == "reflex" and str(row["reference_id"]) == reflex["id"]
    assert row["input"]["name"] == "Ada"
    got = await (await client.get(f"{API}/{reflex['id']}", headers=alice.headers)).get_json()
    assert got["triggerCount"] == 1 and got["lastTriggeredAt"] is not None
    assert "secret" not in got["triggerConfig"]


async def test_every_refusal_is_the_same_401(client: Any, kijko: Kijko, alice: Account) -> None:
    reflex, secret = await _reflex(client, kijko, alice)
    inactive, inactive_secret = await _reflex(client, kijko, alice, isActive=False)
    payload = {"name": "Ada"}
    cases: list[tuple[str, bytes, dict[str, str]]] = []
    body, headers = signed("whsec_" + "A" * 43 + "=", payload)
    cases.append((reflex["id"], body, headers))  # wrong secret
    body, headers = signed(secret, payload, sent=time.time() - 600)
    cases.append((reflex["id"], body, headers))  # too old
    body, headers = signed(secret, payload, sent=time.time() + 600)
    cases.append((reflex["id"], body, headers))  # too new
    body, headers = signed(secret, payload)
    cases.append((reflex["id"], body + b" ", headers))  # body changed after signing
    cases.append((reflex["id"], body, {k: v for k, v in headers.items() if k != "webhook-id"}))
    cases.append((reflex["id"], body, headers | {"webhook-signature": "v1,not-base64!"}))
    cases.append((reflex["id"], body, headers | {"webhook-timestamp": "nan"}))
    cases.append(("00000000-0000-0000-0000-000000000000", *signed(secret, payload)))  # unknown
    cases.append(("not-a-uuid", *signed(secret, payload)))  # malformed
    cases.append((inactive["id"], *signed(inactive_secret, payload)))  # inactive
    bodies = []
    for reflex_id, data, sent_headers in cases:
        response = await deliver(client, reflex_id, data, sent_headers)
        assert response.status_code == 401, (reflex_id, await response.get_data(as_text=True))
        bodies.append(await response.get_json())
    assert all(found == bodies[0] for found in bodies)
    assert bodies[0]["code"] == "WEBHOOK_UNAUTHORIZED"
    assert await _executions(kijko, reflex["id"]) == [] and await _executions(kijko, inactive["id"]) == []


async def test_an_event_reflex_receives_no_webhooks(client: Any, kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(kijko, alice)
    reflex = await create_reflex(
        client, alice, skill["id"], triggerType="event", triggerConfig={"eventName": "project.created"}
    )
    assert reflex.get("webhookUrl") is None and "secret" not in reflex["triggerConfig"]
    response = await deliver(client, reflex["id"], *signed("whsec_" + "B" * 43 + "=", {"name": "x"}))
    assert response.status_code == 401


async def test_a_repeated_webhook_id_runs_once_and_answers_like_the_first(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    reflex, secret = await _reflex(client, kijko, alice)
    body, headers = signed(secret, {"name": "Ada"}, delivery_id="msg_repeat")
    first = await (await deliver(client, reflex["id"], body, headers)).get_json()
    again = await deliver(client, reflex["id"], body, headers)
    assert again.status_code == 202
    answer = await again.get_json()
    assert answer["executionId"] == first["executionId"] and answer["duplicate"] is True
    assert len(await _executions(kijko, reflex["id"])) == 1


async def test_the_previous_secret_works_for_24_hours_after_a_regeneration(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    reflex, old = await _reflex(client, kijko, alice)
    response = await client.post(f"{API}/{reflex['id']}/regenerate-secret", headers=alice.headers)
    assert response.status_code == 200
    new = (await response.get_json())["secret"]
    assert new != old and new.startswith("whsec_")
    info = await (await client.get(f"{API}/{reflex['id']}/webhook-info", headers=alice.headers)).get_json()
    assert info["secret"] == new and info["method"] == "POST" and info["url"] == reflex["webhookUrl"]
    for secret in (old, new):
        assert (await deliver(client, reflex["id"], *signed(secret, {"name": "Ada"}))).status_code == 202
    # 24 hours later (the expiry moved into the past: the database's clock is the truth).
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.reflexes SET previous_secret_expires_at = now() - interval '1 second' WHERE id = $1",
            UUID(reflex["id"]),
        )
    assert (await deliver(client, reflex["id"], *signed(old, {"name": "Ada"}))).status_code == 401
    assert (await deliver(client, reflex["id"], *signed(new, {"name": "Ada"}))).status_code == 202


async def test_a_body_over_the_cap_is_refused_before_verification(client: Any, kijko: Kijko, alice: Account) -> None:
    reflex, secret = await _reflex(client, kijko, alice)
    cap = kijko.settings.reflex_webhook_max_body_bytes
    body, headers = signed(secret, {"name": "Ada", "pad": "x" * cap})
    response = await deliver(client, reflex["id"], body, headers)
    assert response.status_code == 413 and (await response.get_json())["code"] == "PAYLOAD_TOO_LARGE"
    # Unknown reflexes too: the size is refused before anything is looked up.
    response = await deliver(client, "00000000-0000-0000-0000-000000000000", body, headers)
    assert response.status_code == 413


@pytest.fixture
async def limited_client(kijko: Kijko) -> AsyncIterator[Any]:
    """An app whose reflexes accept 2 deliveries a minute: one more is refused whatever the
    test's own speed (the budget refills one every 30 seconds)."""
    settings = kijko.settings.model_copy(update={"reflex_rate_limit_per_minute": 2})
    application = create_app(kijko=dataclasses.replace(kijko, settings=settings))
    async with application.test_app():
        yield application.test_client()


async def test_the_rate_limit_counts_verified_deliveries_per_reflex(
    client: Any, limited_client: Any, kijko: Kijko, alice: Account
) -> None:
    reflex, secret = await _reflex(client, kijko, alice)
    other, other_secret = await _reflex(client, kijko, alice)
    # Unsigned requests do not use up the budget.
    for _ in range(5):
        response = await deliver(limited_client, reflex["id"], *signed("whsec_" + "C" * 43 + "=", {}))
        assert response.status_code == 401
    for _ in range(2):
        response = await deliver(limited_client, reflex["id"], *signed(secret, {"name": "Ada"}))
        assert response.status_code == 202
    response = await deliver(limited_client, reflex["id"], *signed(secret, {"name": "Ada"}))
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    assert (await response.get_json())["code"] == "RATE_LIMITED"
    assert len(await _executions(kijko, reflex["id"])) == 2
    # Another reflex has its own budget.
    response = await deliver(limited_client, other["id"], *signed(other_secret, {"name": "Ada"}))
    assert response.status_code == 202


async def test_conditions_that_do_not_match_run_nothing(client: Any, kijko: Kijko, alice: Account) -> None:
    conditions = {"filters": [{"field": "action", "operator": "equals", "value": "opened"}]}
    reflex, secret = await _reflex(client, kijko, alice, conditions=conditions)
    response = await deliver(client, reflex["id"], *signed(secret, {"name": "Ada", "action": "closed"}))
    assert response.status_code == 202 and (await response.get_json()) == {
        "executionId": None,
        "matched": False,
        "duplicate": False,
    }
    response = await deliver(client, reflex["id"], *signed(secret, {"name": "Ada", "action": "opened"}))
    assert (await response.get_json())["executionId"] is not None
    assert len(await _executions(kijko, reflex["id"])) == 1


async def test_a_payload_naming_another_organization_runs_only_in_the_reflexs(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    bobs_skill = await insert_skill(kijko, bob)
    reflex, secret = await _reflex(client, kijko, alice)
    payload = {
        "name": "Ada",
        "organizationId": bob.org_id,
        "organization_id": bob.org_id,
        "skillId": str(bobs_skill["id"]),
        "userId": bob.user_id,
    }
    answer = await (await deliver(client, reflex["id"], *signed(secret, payload))).get_json()
    row = await execution(kijko, answer["executionId"])
    assert str(row["organization_id"]) == alice.org_id and str(row["user_id"]) == alice.user_id
    assert row["skill_id"] != bobs_skill["id"]
    async with system_session(kijko.system_db) as db:
        count = await db.fetchval(
            "SELECT count(*) FROM kijko.skill_executions WHERE organization_id = $1", UUID(bob.org_id)
        )
    assert count == 0


async def test_a_body_that_is_not_json_is_refused_after_verification(client: Any, kijko: Kijko, alice: Account) -> None:
    reflex, secret = await _reflex(client, kijko, alice)
    _, headers = signed(secret, {})
    at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=UTC)
    headers["webhook-signature"] = Webhook(secret).sign(headers["webhook-id"], at, "not json {")
    response = await deliver(client, reflex["id"], b"not json {", headers)
    assert response.status_code == 422 and (await response.get_json())["field"] == "body"
    assert await _executions(kijko, reflex["id"]) == []


async def test_the_rate_limit_with_its_redis_down_answers_503_not_500(
    client: Any, kijko: Kijko, alice: Account, make_settings: Any
) -> None:
    reflex, secret = await _reflex(client, kijko, alice)
    down = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    redis = make_redis(down)
    try:
        application = create_app(down, kijko=dataclasses.replace(kijko, settings=down, redis=redis))
        async with application.test_app():
            response = await deliver(application.test_client(), reflex["id"], *signed(secret, {"name": "Ada"}))
    finally:
        if redis is not None:
            await redis.aclose()
    assert response.status_code == 503 and (await response.get_json())["code"] == "SERVICE_UNAVAILABLE"
    assert await _executions(kijko, reflex["id"]) == []


async def test_the_sweeper_forgets_deliveries_after_eight_days(client: Any, kijko: Kijko, alice: Account) -> None:
    reflex, secret = await _reflex(client, kijko, alice)
    for delivery_id in ("msg_old", "msg_new"):
        response = await deliver(client, reflex["id"], *signed(secret, {"name": "Ada"}, delivery_id=delivery_id))
        assert response.status_code == 202
    # The clock moved back, in SQL, in a service session like the receiver's (a member's session
    # reaches no delivery: migration 0021).
    capability = await load_service_capability(kijko.system_db)
    actor = ServiceActor("webhook.reflex", "test-clock")
    async with service_session(kijko.app_db, capability, UUID(alice.org_id), actor) as db:
        await db.execute(
            "UPDATE kijko.reflex_deliveries SET received_at = now() - interval '8 days 1 second'"
            " WHERE reflex_id = $1 AND delivery_id = 'msg_old'",
            UUID(reflex["id"]),
        )
    assert await forget_deliveries(kijko) >= 1
    async with system_session(kijko.system_db) as db:
        kept = await db.fetch(
            "SELECT delivery_id FROM kijko.reflex_deliveries WHERE reflex_id = $1", UUID(reflex["id"])
        )
    assert [row["delivery_id"] for row in kept] == ["msg_new"]
    assert "reflex_deliveries" in sweep_steps()
