"""A hostile tenant and a malicious client against the automation engine's routes (the review of
issue 8): other organizations' ids in paths, bodies and filters answer like unknown ids and
change nothing; malformed input answers 4xx in the one error shape, never 500."""

from __future__ import annotations

import dataclasses
import io
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from standardwebhooks import Webhook

from kijko_core.db.session import system_session
from kijko_core.logging import configure_logging
from kijko_core.runtime import Kijko
from kijko_server.app import create_app
from tests.automation import create_skill
from tests.conftest import Account
from tests.habits_kit import create_habit
from tests.reflex_kit import create_reflex, deliver, signed

V1 = "/api/v1"


def problem(body: Any) -> bool:
    return isinstance(body, dict) and {"detail", "code", "message"} <= body.keys()


async def call(client: Any, method: str, path: str, account: Account | None, **kwargs: Any) -> tuple[int, Any]:
    headers = dict(kwargs.pop("headers", {}))
    if account is not None:
        headers |= account.headers
    response = await getattr(client, method)(path, headers=headers, **kwargs)
    text = await response.get_data(as_text=True)
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = text
    return response.status_code, body


async def snapshot_rows(kijko: Kijko, org_id: str) -> dict[str, Any]:
    """Every automation row of the organization, as text, to compare before and after."""
    out: dict[str, Any] = {}
    async with system_session(kijko.system_db, readonly=True) as db:
        for table in ("skills", "skill_executions", "habits", "reflexes", "llm_usage"):
            rows = await db.fetch(
                f"SELECT to_jsonb(t)::text AS row FROM kijko.{table} t WHERE organization_id = $1 ORDER BY 1",  # noqa: S608
                UUID(org_id),
            )
            out[table] = [r["row"] for r in rows]
    return out


@pytest.fixture
async def victim(client: Any, kijko: Kijko, alice: Account) -> dict[str, Any]:
    skill = await create_skill(client, alice)
    habit = await create_habit(client, alice, skill)
    reflex = await create_reflex(client, alice, skill["id"])
    async with system_session(kijko.system_db) as db:
        execution = await db.fetchval(
            "INSERT INTO kijko.skill_executions (organization_id, skill_id, user_id, execution_type, snapshot,"
            " status, error_code, completed_at) VALUES ($1, $2, $3, 'manual', '{}'::jsonb, 'failed', 'PROVIDER_ERROR',"
            " now()) RETURNING id",
            UUID(alice.org_id),
            UUID(skill["id"]),
            UUID(alice.user_id),
        )
    return {"skill": skill, "habit": habit, "reflex": reflex, "execution": str(execution)}


async def test_another_organizations_ids_answer_like_unknown_ones(
    client: Any, kijko: Kijko, alice: Account, bob: Account, victim: dict[str, Any]
) -> None:
    before = await snapshot_rows(kijko, alice.org_id)
    own = await create_skill(client, bob)
    ids = {
        "skill": victim["skill"]["id"],
        "habit": victim["habit"]["id"],
        "reflex": victim["reflex"]["id"],
        "execution": victim["execution"],
    }
    unknown = str(uuid.uuid4())
    paths = [
        ("get", "/skills/{skill}"),
        ("get", "/skills/{skill}/full"),
        ("put", "/skills/{skill}"),
        ("patch", "/skills/{skill}"),
        ("delete", "/skills/{skill}"),
        ("post", "/skills/{skill}/duplicate"),
        ("get", "/skills/{skill}/export"),
        ("post", "/skills/{skill}/execute"),
        ("post", "/skills/{skill}/test"),
        ("get", "/skills/{skill}/stats"),
        ("get", "/skills/{skill}/executions"),
        ("get", "/habits/{habit}"),
        ("get", "/habits/{habit}/full"),
        ("put", "/habits/{habit}"),
        ("patch", "/habits/{habit}"),
        ("delete", "/habits/{habit}"),
        ("post", "/habits/{habit}/activate"),
        ("post", "/habits/{habit}/deactivate"),
        ("post", "/habits/{habit}/reset-errors"),
        ("post", "/habits/{habit}/run-now"),
        ("get", "/habits/{habit}/executions"),
        ("get", "/reflexes/{reflex}"),
        ("get", "/reflexes/{reflex}/full"),
        ("put", "/reflexes/{reflex}"),
        ("patch", "/reflexes/{reflex}"),
        ("delete", "/reflexes/{reflex}"),
        ("post", "/reflexes/{reflex}/activate"),
        ("post", "/reflexes/{reflex}/deactivate"),
        ("post", "/reflexes/{reflex}/reset-errors"),
        ("post", "/reflexes/{reflex}/test"),
        ("post", "/reflexes/{reflex}/regenerate-secret"),
        ("get", "/reflexes/{reflex}/webhook-info"),
        ("get", "/reflexes/{reflex}/executions"),
        ("get", "/executions/{execution}"),
        ("get", "/executions/{execution}/full"),
        ("post", "/executions/{execution}/cancel"),
        ("post", "/executions/{execution}/retry"),
        ("post", "/executions/{execution}/replay"),
    ]
    bodies: dict[str, Any] = {"put": {"name": "Taken over"}, "patch": {"name": "Taken over"}, "post": {}}
    differences = []
    for method, template in paths:
        kwargs = {"json": bodies[method]} if method in bodies else {}
        theirs = await call(client, method, V1 + template.format(**ids), bob, **kwargs)
        nobody = await call(client, method, V1 + template.format(**dict.fromkeys(ids, unknown)), bob, **kwargs)
        if theirs != nobody or theirs[0] != 404:
            differences.append((method, template, theirs, nobody))
    assert differences == []
    # Bodies naming them.
    skill_id = ids["skill"]
    for method, path, body in [
        ("post", "/habits", {"skillId": skill_id, "scheduleCron": "0 9 * * *", "timezone": "UTC"}),
        ("post", "/reflexes", {"skillId": skill_id, "triggerType": "webhook", "triggerConfig": {}}),
    ]:
        theirs = await call(client, method, V1 + path, bob, json=body)
        nobody = await call(client, method, V1 + path, bob, json=body | {"skillId": unknown})
        assert theirs == nobody and theirs[0] == 404, (path, theirs, nobody)
    for path in ("/skills/bulk/activate", "/skills/bulk/deactivate"):
        status, body = await call(client, "post", V1 + path, bob, json={"skillIds": [skill_id]})
        assert status == 200, body
    status, body = await call(client, "delete", V1 + "/skills/bulk", bob, json={"skillIds": [skill_id]})
    assert status == 200, body
    # Bob's own habit and reflex cannot be moved onto Alice's skill.
    habit = await create_habit(client, bob, own)
    reflex = await create_reflex(client, bob, own["id"])
    for path in (f"/habits/{habit['id']}", f"/reflexes/{reflex['id']}"):
        status, body = await call(client, "patch", V1 + path, bob, json={"skillId": skill_id})
        assert status in (200, 404, 422), (path, status, body)
    # Filters naming them show nothing of theirs.
    for path in (
        f"/executions?skillId={skill_id}",
        f"/skill-executions?skillId={skill_id}",
        f"/executions/stats?skillId={skill_id}",
        f"/executions/export?skillId={skill_id}&format=json",
        f"/executions/recent?skillId={skill_id}",
    ):
        status, body = await call(client, "get", V1 + path, bob)
        assert status < 500, (path, status, body)
        assert ids["execution"] not in json.dumps(body), path
    # Executing an own skill with their habit as the reference: the reference is not theirs.
    status, body = await call(
        client,
        "post",
        f"{V1}/skills/{own['id']}/execute",
        bob,
        json={"input": {"topic": "x"}, "referenceId": ids["habit"]},
    )
    assert status < 500, body
    # The webhook of their reflex, signed with any secret: the same 401 as an unknown reflex.
    payload, headers = signed("whsec_" + "A" * 32, {"x": 1})
    theirs_webhook = await deliver(client, ids["reflex"], payload, headers)
    nobody_webhook = await deliver(client, unknown, payload, headers)
    assert theirs_webhook.status_code == nobody_webhook.status_code == 401
    assert await theirs_webhook.get_data() == await nobody_webhook.get_data()
    assert await snapshot_rows(kijko, alice.org_id) == before


@pytest.fixture
async def limited_client(kijko: Kijko) -> AsyncIterator[Any]:
    """An app allowing 2 inline tests per user and 1 analytics batch per address a minute: one
    more is refused whatever the test's own speed."""
    settings = kijko.settings.model_copy(
        update={"execution_test_rate_limit_per_minute": 2, "analytics_rate_limit_per_minute": 1}
    )
    application = create_app(kijko=dataclasses.replace(kijko, settings=settings))
    async with application.test_app():
        yield application.test_client()


DRAFT = {"promptTemplate": "Write about {{topic}} now.", "model": "gpt-4o", "input": {"topic": "x"}}


async def test_inline_tests_are_limited_per_user(
    client: Any, limited_client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    skill = await create_skill(client, alice)
    reflex = await create_reflex(client, alice, skill["id"])
    # The draft test, the saved skill's test and a reflex's test share one budget.
    for path, body in (
        ("/skills/test", DRAFT),
        (f"/skills/{skill['id']}/test", {"input": {"topic": "x"}}),
    ):
        status, answer = await call(limited_client, "post", V1 + path, alice, json=body)
        assert status == 200, answer
    status, answer = await call(
        limited_client, "post", f"{V1}/reflexes/{reflex['id']}/test", alice, json={"payload": {"topic": "x"}}
    )
    assert status == 429 and problem(answer) and answer["code"] == "RATE_LIMITED", answer
    status, answer = await call(limited_client, "post", V1 + "/skills/test", alice, json=DRAFT)
    assert status == 429, answer
    # Another user has their own budget.
    status, answer = await call(limited_client, "post", V1 + "/skills/test", bob, json=DRAFT)
    assert status == 200, answer


async def test_the_analytics_limit_is_not_reset_by_forwarding_headers(limited_client: Any) -> None:
    event = {"type": "conversion_signal", "sessionId": "s1", "timestamp": "2026-01-01T00:00:00Z"}
    answers = []
    for forwarded in ("203.0.113.1", "203.0.113.2"):
        response = await limited_client.post(
            V1 + "/analytics/events",
            json={"events": [event]},
            headers={"X-Forwarded-For": forwarded, "X-Real-IP": forwarded, "Forwarded": f"for={forwarded}"},
        )
        answers.append(response.status_code)
    assert answers == [202, 429]


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        ("/habits", '{"skillId": "%s", "scheduleCron": "0 9 * * *", "config": {"topic": 1e309}}', "config"),
        ("/habits", '{"skillId": "%s", "scheduleCron": "0 9 * * *", "config": {"topic": NaN}}', "config"),
        (
            "/reflexes",
            '{"skillId": "%s", "triggerType": "webhook", "triggerConfig": {},'
            ' "conditions": {"filters": [{"field": "a", "operator": "equals", "value": -Infinity}]}}',
            "conditions",
        ),
        ("/skills/%s/execute", '{"input": {"topic": "x", "extra": [1e999]}}', "input"),
    ],
)
async def test_numbers_json_cannot_hold_are_refused_on_their_field(
    client: Any, kijko: Kijko, alice: Account, path: str, raw: str, field: str
) -> None:
    skill = await create_skill(client, alice)
    before = await snapshot_rows(kijko, alice.org_id)
    target = path % skill["id"] if "%s" in path else path
    body = raw % skill["id"] if "%s" in raw else raw
    response = await client.post(V1 + target, data=body, headers=alice.headers | {"Content-Type": "application/json"})
    answer = await response.get_json()
    assert response.status_code == 422 and problem(answer) and answer["field"] == field, answer
    assert "1e309" not in json.dumps(answer) and "Infinity" not in answer["field"]
    assert await snapshot_rows(kijko, alice.org_id) == before


@pytest.fixture
def logs() -> io.StringIO:
    """Every log line written while the test runs, at debug level."""
    buffer = io.StringIO()
    configure_logging("debug", "json", stream=buffer)
    return buffer


async def test_provider_keys_and_reflex_secrets_stay_out_of_logs_errors_and_reads(
    client: Any, kijko: Kijko, alice: Account, logs: io.StringIO
) -> None:
    key = "sk-review-" + uuid.uuid4().hex
    status, body = await call(
        client, "put", f"{V1}/organizations/current/llm-keys/openai", alice, json={"apiKey": key, "baseUrl": "ftp://x"}
    )
    assert status == 422 and key not in json.dumps(body)
    status, body = await call(client, "put", f"{V1}/organizations/current/llm-keys/openai", alice, json={"apiKey": key})
    assert status == 200 and key not in json.dumps(body) and body["last4"] == key[-4:]
    skill = await create_skill(client, alice)
    reflex = await create_reflex(client, alice, skill["id"])
    secret = reflex["triggerConfig"]["secret"]
    status, regenerated = await call(client, "post", f"{V1}/reflexes/{reflex['id']}/regenerate-secret", alice)
    assert status == 200
    new_secret = regenerated["secret"]
    # Deliveries signed with the secret, a wrong one, and a body carrying the secret.
    for signing, topic in ((new_secret, "x"), ("whsec_" + "B" * 43 + "=", secret)):
        payload, headers = signed(signing, {"topic": topic})
        await deliver(client, reflex["id"], payload, headers)
    reads = [
        await call(client, "get", f"{V1}/reflexes", alice),
        await call(client, "get", f"{V1}/reflexes/{reflex['id']}", alice),
        await call(client, "get", f"{V1}/reflexes/{reflex['id']}/full", alice),
        await call(client, "get", f"{V1}/skills/{skill['id']}/full", alice),
        await call(client, "get", f"{V1}/organizations/current/llm-keys", alice),
        await call(client, "get", f"{V1}/organizations/current/llm-keys/openai", alice),
    ]
    for status, body in reads:
        text = json.dumps(body)
        assert status == 200 and key not in text and secret not in text and new_secret not in text, body
    logged = logs.getvalue()
    assert logged  # the requests were logged
    for value in (key, secret, new_secret, secret.removeprefix("whsec_"), new_secret.removeprefix("whsec_")):
        assert value not in logged
    async with system_session(kijko.system_db, readonly=True) as db:
        stored = await db.fetchval(
            "SELECT key_ciphertext FROM kijko.llm_keys WHERE organization_id = $1", UUID(alice.org_id)
        )
    assert key not in stored


@pytest.mark.parametrize(
    "raw",
    [
        '{"topic": "x", "extra": 1e309}',
        '{"topic": "x", "extra": NaN}',
        '{"topic": "x", "extra": "a\\u0000b"}',
        '{"topic": "x", "extra": "\\ud800"}',
        '{"topic": "x", "extra": {"\\u0000": 1}}',
    ],
)
async def test_a_signed_webhook_body_jsonb_cannot_hold_is_refused(
    client: Any, kijko: Kijko, alice: Account, raw: str
) -> None:
    skill = await create_skill(client, alice)
    reflex = await create_reflex(client, alice, skill["id"])
    before = await snapshot_rows(kijko, alice.org_id)
    msg_id = f"msg_{uuid.uuid4().hex}"
    at = datetime.now(UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(reflex["triggerConfig"]["secret"]).sign(msg_id, at, raw),
        "content-type": "application/json",
    }
    response = await deliver(client, reflex["id"], raw.encode(), headers)
    answer = await response.get_json()
    assert response.status_code == 422 and problem(answer) and answer["field"] == "body", answer
    assert await snapshot_rows(kijko, alice.org_id) == before
