"""Reflexes over the API (contract §2.5, docs/reflexes.md): create and its validation per
trigger type, updates, activation, test, the secret, statistics, who may do what, and the
event catalogue firing ``event`` reflexes (project creation, execution endings, no loops)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest

from kijko_core.db.session import system_session
from kijko_core.jobs.worker import run_until_idle
from kijko_core.reflexes import fire
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.invitations import joined
from tests.memberships import add_member
from tests.reflex_kit import API, REFLEX_OPERATIONS, create_reflex, deliver, signed
from tests.runs_kit import cancel_leftovers, insert_skill


@pytest.fixture(autouse=True)
async def _clean(kijko: Kijko) -> AsyncIterator[None]:
    yield
    await cancel_leftovers(kijko)


async def _post(client: Any, account: Account, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = await client.post(API, json=body, headers=account.headers)
    return response.status_code, await response.get_json()


async def test_create_validates_per_trigger_type(client: Any, kijko: Kijko, alice: Account, bob: Account) -> None:
    skill = await insert_skill(kijko, alice)
    base = {"skillId": str(skill["id"])}
    status, body = await _post(client, alice, base | {"triggerType": "schedule", "triggerConfig": {}})
    assert (status, body["code"], body["message"]) == (
        422,
        "INVALID_TRIGGER_CONFIG",
        "Use Habits for scheduled triggers",
    )
    for unavailable in ("email", "file_change", "api_call", "no-such-type"):
        status, body = await _post(client, alice, base | {"triggerType": unavailable, "triggerConfig": {}})
        assert (status, body["code"], body["field"]) == (422, "TRIGGER_TYPE_UNAVAILABLE", "triggerType"), unavailable
    bad_configs = [
        ("event", {}),
        ("event", {"eventName": "project.deleted"}),
        ("event", {"eventName": "project.created", "unknown": 1}),
        ("webhook", {"method": "GET"}),  # no signed body to verify (decision 0119)
        ("webhook", {"method": "PUT"}),
    ]
    for trigger_type, config in bad_configs:
        status, body = await _post(client, alice, base | {"triggerType": trigger_type, "triggerConfig": config})
        assert (status, body["code"], body["field"]) == (422, "INVALID_TRIGGER_CONFIG", "triggerConfig"), config
        assert "project.deleted" not in body["message"]  # no submitted values echoed
    for skill_id in ("not-a-uuid", "00000000-0000-0000-0000-000000000000", str((await insert_skill(kijko, bob))["id"])):
        status, body = await _post(client, alice, {"skillId": skill_id, "triggerType": "webhook", "triggerConfig": {}})
        assert (status, body["code"], body["field"]) == (404, "SKILL_NOT_FOUND", "skillId")
    bad_conditions = [
        ({"filters": [{"field": "a", "operator": "regex", "value": "(unclosed"}]}, "conditions.filters.0.value"),
        ({"filters": [{"field": "a", "operator": "regex", "value": "a" * 501}]}, "conditions.filters.0.value"),
        ({"expression": "items[?"}, "conditions.expression"),
    ]
    for conditions, field in bad_conditions:
        status, body = await _post(
            client, alice, base | {"triggerType": "webhook", "triggerConfig": {}, "conditions": conditions}
        )
        assert (status, body["field"]) == (422, field), body
    async with system_session(kijko.system_db) as db:
        assert await db.fetchval("SELECT count(*) FROM kijko.reflexes WHERE skill_id = $1", skill["id"]) == 0


async def test_a_webhook_url_is_generated_and_the_secret_shown_where_the_contract_says(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    skill = await insert_skill(kijko, alice)
    created = await create_reflex(
        client, alice, skill["id"], triggerConfig={"url": "https://evil.example/x", "secret": "whsec_mine"}
    )
    expected = kijko.settings.base_url.rstrip("/") + "/api/v1/webhooks/reflex/" + created["id"]
    assert created["webhookUrl"] == expected == created["triggerConfig"]["url"]
    secret = created["triggerConfig"]["secret"]
    assert secret.startswith("whsec_") and secret != "whsec_mine"
    assert created["triggerConfig"]["method"] == "POST" and created["userId"] == alice.user_id
    for path in ("", "/full"):
        got = await (await client.get(f"{API}/{created['id']}{path}", headers=alice.headers)).get_json()
        assert "secret" not in got["triggerConfig"] and got["triggerConfig"]["url"] == expected
    full = await (await client.get(f"{API}/{created['id']}/full", headers=alice.headers)).get_json()
    assert full["skill"]["id"] == str(skill["id"])
    async with system_session(kijko.system_db) as db:
        row = await db.fetchrow("SELECT * FROM kijko.reflexes WHERE id = $1", UUID(created["id"]))
    assert row is not None and secret.encode() not in bytes(row["secret_ciphertext"])
    assert "secret" not in row["trigger_config"]
    info = await (await client.get(f"{API}/{created['id']}/webhook-info", headers=alice.headers)).get_json()
    assert info["secret"] == secret and info["samplePayload"]


async def test_update_list_activation_and_stats(client: Any, kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(kijko, alice)
    other = await insert_skill(kijko, alice)
    webhook = await create_reflex(client, alice, skill["id"])
    event = await create_reflex(
        client, alice, other["id"], triggerType="event", triggerConfig={"eventName": "ingestion.failed"}
    )
    response = await client.patch(
        f"{API}/{webhook['id']}",
        json={"conditions": {"expression": "action == 'opened'"}, "triggerType": "event", "isActive": False},
        headers=alice.headers,
    )
    assert response.status_code == 200
    patched = await response.get_json()
    assert patched["triggerType"] == "webhook" and patched["isActive"] is False
    assert patched["conditions"]["expression"] == "action == 'opened'"
    assert patched["triggerConfig"]["url"] == webhook["webhookUrl"]
    response = await client.put(
        f"{API}/{event['id']}", json={"triggerConfig": {"eventName": "x"}}, headers=alice.headers
    )
    assert (await response.get_json())["code"] == "INVALID_TRIGGER_CONFIG"
    response = await client.put(f"{API}/{event['id']}", json={"conditions": None}, headers=alice.headers)
    assert response.status_code == 200 and (await response.get_json()).get("conditions") is None

    listed = await (await client.get(API, query_string={"triggerType": "event"}, headers=alice.headers)).get_json()
    assert [r["id"] for r in listed["reflexes"]] == [event["id"]] and listed["reflexes"][0]["skill"]["id"]
    listed = await (await client.get(API, query_string={"isActive": "false"}, headers=alice.headers)).get_json()
    assert [r["id"] for r in listed["reflexes"]] == [webhook["id"]]
    listed = await (await client.get(API, query_string={"skillId": str(skill["id"])}, headers=alice.headers)).get_json()
    assert listed["total"] == 1 and listed["hasMore"] is False
    page = await (await client.get(API, query_string={"pageSize": 1}, headers=alice.headers)).get_json()
    assert page["total"] == 2 and page["hasMore"] is True and page["reflexes"][0]["id"] == event["id"]

    # Activation: the skill must be active; failures and the error are cleared.
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.reflexes SET consecutive_failures = 3, last_error_message = 'boom' WHERE id = $1",
            UUID(webhook["id"]),
        )
        await db.execute("UPDATE kijko.skills SET is_active = false WHERE id = $1", skill["id"])
    response = await client.post(f"{API}/{webhook['id']}/activate", headers=alice.headers)
    assert (response.status_code, (await response.get_json())["code"]) == (409, "SKILL_INACTIVE")
    async with system_session(kijko.system_db) as db:
        await db.execute("UPDATE kijko.skills SET is_active = true WHERE id = $1", skill["id"])
    for route in ("activate", "reset-errors"):
        response = await client.post(f"{API}/{webhook['id']}/{route}", headers=alice.headers)
        got = await response.get_json()
        assert (got["isActive"], got["consecutiveFailures"], got.get("lastErrorMessage")) == (True, 0, None)
    got = await (await client.post(f"{API}/{webhook['id']}/deactivate", headers=alice.headers)).get_json()
    assert got["isActive"] is False

    for route, method in (("regenerate-secret", "POST"), ("webhook-info", "GET")):
        response = await client.open(f"{API}/{event['id']}/{route}", method=method, headers=alice.headers)
        assert (response.status_code, (await response.get_json())["code"]) == (409, "NOT_WEBHOOK")

    stats = await (await client.get(f"{API}/stats", headers=alice.headers)).get_json()
    assert set(stats["triggersByType"]) >= {"webhook", "email", "file_change", "api_call", "schedule", "event"}
    assert (stats["totalReflexes"], stats["activeReflexes"], stats["totalTriggers"]) == (2, 1, 0)
    assert stats["recentTriggers"] == []

    assert (await client.delete(f"{API}/{webhook['id']}", headers=alice.headers)).status_code == 200
    assert (await client.get(f"{API}/{webhook['id']}", headers=alice.headers)).status_code == 404


async def test_test_evaluates_the_conditions_and_runs_the_skill_inline(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    skill = await insert_skill(kijko, alice)
    conditions = {"matchAll": True, "filters": [{"field": "pr.action", "operator": "startsWith", "value": "open"}]}
    reflex = await create_reflex(client, alice, skill["id"], conditions=conditions)
    miss = await client.post(
        f"{API}/{reflex['id']}/test", json={"payload": {"pr": {"action": "closed"}}}, headers=alice.headers
    )
    answer = await miss.get_json()
    assert (answer["success"], answer["conditionsMatch"], answer.get("executionResult")) == (True, False, None)
    assert answer["error"] == "Test payload did not match reflex conditions"
    hit = await client.post(
        f"{API}/{reflex['id']}/test",
        json={"payload": {"name": "Ada", "pr": {"action": "opened"}}},
        headers=alice.headers,
    )
    answer = await hit.get_json()
    assert answer["success"] is True and answer["conditionsMatch"] is True
    assert answer["executionResult"]["output"] == "echo: Say hello to Ada please."
    assert answer["executionResult"]["tokensUsed"] == 15
    # Its input is validated like an execution's: 422 on the field.
    bad = await client.post(
        f"{API}/{reflex['id']}/test", json={"payload": {"pr": {"action": "opened"}}}, headers=alice.headers
    )
    assert bad.status_code == 422 and (await bad.get_json())["field"].startswith("input")
    async with system_session(kijko.system_db) as db:
        assert await db.fetchval("SELECT count(*) FROM kijko.skill_executions WHERE skill_id = $1", skill["id"]) == 0


async def test_who_may_create_and_bodies_naming_other_organizations(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    skill = await insert_skill(kijko, alice)
    viewer = await add_member(kijko, alice.org_id, "viewer")
    member = await add_member(kijko, alice.org_id, "member")
    body = {"skillId": str(skill["id"]), "triggerType": "webhook", "triggerConfig": {}}
    assert (await _post(client, viewer, body))[0] == 403
    status, created = await _post(client, member, body)  # a member may use the organization's skills
    assert status == 201 and created["userId"] == member.user_id
    victim = await create_reflex(client, bob, (await insert_skill(kijko, bob))["id"])
    foreign = {"id": victim["id"], "userId": bob.user_id, "organizationId": bob.org_id, "skillId": victim["skillId"]}
    response = await client.put(f"{API}/{created['id']}", json=foreign | {"isActive": False}, headers=member.headers)
    after = await response.get_json()
    assert (after["id"], after["userId"], after["skillId"]) == (created["id"], member.user_id, str(skill["id"]))
    bobs = await (await client.get(f"{API}/{victim['id']}", headers=bob.headers)).get_json()
    assert (bobs["isActive"], bobs["userId"], bobs["updatedAt"]) == (True, bob.user_id, victim["updatedAt"])


async def _any_input(kijko: Kijko, skill: dict[str, Any]) -> dict[str, Any]:
    """The skill without declared inputs (an event's data is its input as it is)."""
    async with system_session(kijko.system_db) as db:
        await db.execute("UPDATE kijko.skills SET input_schema = '[]' WHERE id = $1", skill["id"])
    return skill


async def _run_jobs(kijko: Kijko) -> None:
    await run_until_idle(kijko)


async def test_project_creation_fires_event_reflexes_of_its_organization_only(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    skill = await insert_skill(kijko, alice, template="New project {{name}} by {{userId}}.")
    await insert_skill(kijko, bob)
    reflex = await create_reflex(
        client, alice, skill["id"], triggerType="event", triggerConfig={"eventName": "project.created"}
    )
    narrowed = await create_reflex(
        client,
        alice,
        skill["id"],
        triggerType="event",
        triggerConfig={"eventName": "project.created", "source": "00000000-0000-0000-0000-000000000000"},
    )
    response = await client.post(
        "/api/v1/projects", json={"name": "Docs site", "type": "manual"}, headers=alice.headers
    )
    project = (await response.get_json())["project"]
    await client.post("/api/v1/projects", json={"name": "Bob's", "type": "manual"}, headers=bob.headers)
    await _run_jobs(kijko)
    async with system_session(kijko.system_db) as db:
        rows = await db.fetch(
            "SELECT * FROM kijko.skill_executions WHERE reference_id = ANY($1::uuid[]) ORDER BY executed_at",
            [UUID(reflex["id"]), UUID(narrowed["id"])],
        )
        bobs = await db.fetchval(
            "SELECT count(*) FROM kijko.skill_executions WHERE organization_id = $1", UUID(bob.org_id)
        )
    assert [str(r["reference_id"]) for r in rows] == [reflex["id"]]
    [row] = rows
    assert str(row["organization_id"]) == alice.org_id and str(row["user_id"]) == alice.user_id
    assert row["input"]["projectId"] == project["id"] and row["status"] == "completed"
    assert row["output"] == f"echo: New project Docs site by {alice.user_id}."
    assert bobs == 0


async def test_execution_events_fire_but_never_loop_and_failures_disable_a_reflex(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    failing = await insert_skill(kijko, alice, type_config={"fail_code": "PROVIDER_ERROR"})
    failing_on_events = await _any_input(
        kijko, await insert_skill(kijko, alice, type_config={"fail_code": "PROVIDER_ERROR"})
    )
    watcher_skill = await _any_input(
        kijko, await insert_skill(kijko, alice, template="Execution {{executionId}} {{status}}.")
    )
    # A reflex on execution.failed whose own runs fail too: they must not trigger it again.
    watcher = await create_reflex(
        client,
        alice,
        failing_on_events["id"],
        triggerType="event",
        triggerConfig={"eventName": "execution.failed"},
        conditions={"filters": [{"field": "executionType", "operator": "equals", "value": "reflex"}]},
    )
    completed_watcher = await create_reflex(
        client, alice, watcher_skill["id"], triggerType="event", triggerConfig={"eventName": "execution.completed"}
    )
    succeeding = await create_reflex(client, alice, watcher_skill["id"])
    response = await deliver(client, succeeding["id"], *signed(succeeding["triggerConfig"]["secret"], {"name": "Ada"}))
    assert response.status_code == 202
    await _run_jobs(kijko)
    webhook = await create_reflex(client, alice, failing["id"])
    secret = webhook["triggerConfig"]["secret"]
    for _ in range(kijko.settings.reflex_max_consecutive_failures):
        response = await deliver(client, webhook["id"], *signed(secret, {"name": "Ada"}))
        assert response.status_code == 202
        await _run_jobs(kijko)
    async with system_session(kijko.system_db) as db:
        by_reference = {
            str(r["reference_id"]): r["n"]
            for r in await db.fetch(
                "SELECT reference_id, count(*) AS n FROM kijko.skill_executions"
                " WHERE organization_id = $1 AND reference_id IS NOT NULL GROUP BY reference_id",
                UUID(alice.org_id),
            )
        }
    # Each failed webhook run fired the watcher once; the watcher's own failures fired nothing.
    assert by_reference[webhook["id"]] == 5
    assert by_reference[watcher["id"]] == 5
    # The succeeding run fired the completion watcher once; the watcher's own completion did not.
    assert by_reference[succeeding["id"]] == 1 and by_reference[completed_watcher["id"]] == 1
    # The ending of its limit-th failed run turned it off and told its creator (the watcher
    # failed as often: it too), without waiting for the worker's tick (decision 0139).
    got = await (await client.get(f"{API}/{webhook['id']}", headers=alice.headers)).get_json()
    limit = kijko.settings.reflex_max_consecutive_failures
    assert got["isActive"] is False and got["consecutiveFailures"] == limit and got["lastErrorMessage"]
    got = await (await client.get(f"{API}/{watcher['id']}", headers=alice.headers)).get_json()
    assert got["isActive"] is False and got["consecutiveFailures"] == limit

    async def subjects() -> list[str]:
        async with system_session(kijko.system_db) as db:
            rows = await db.fetch(
                "SELECT subject FROM kijko.mail_outbox WHERE template = 'reflex_disabled' AND recipient = $1"
                " AND organization_id = $2",
                alice.email.lower(),
                UUID(alice.org_id),
            )
        return [row["subject"] for row in rows]

    assert sum(failing["name"] in subject for subject in await subjects()) == 1
    told = len(await subjects())
    await fire.disable_failing(kijko)  # the tick, the safety net: already off, nobody is told twice
    assert len(await subjects()) == told
    # Deactivated: the next delivery is the same 401 as an unknown reflex.
    assert (await deliver(client, webhook["id"], *signed(secret, {"name": "Ada"}))).status_code == 401
    response = await client.post(f"{API}/{webhook['id']}/reset-errors", headers=alice.headers)
    assert (await response.get_json())["consecutiveFailures"] == 0
    stats = await (await client.get(f"{API}/stats", headers=alice.headers)).get_json()
    assert stats["triggersByType"]["webhook"] == 6 and stats["triggersByType"]["event"] == 6
    assert len(stats["recentTriggers"]) == 5


async def test_each_reflex_operation_documents_its_errors(client: Any) -> None:
    from tests.test_openapi_errors import documented_errors

    spec = await (await client.get("/openapi.json")).get_json()
    for (method, path), statuses in REFLEX_OPERATIONS.items():
        assert set(documented_errors(spec, method, path)) == statuses | {"500"}, (method, path)


async def test_a_member_joining_a_project_fires_member_added(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    skill = await _any_input(kijko, await insert_skill(kijko, alice, template="Welcome {{userId}} as {{role}}."))
    response = await client.post(
        "/api/v1/projects", json={"name": "Team space", "type": "manual"}, headers=alice.headers
    )
    project = (await response.get_json())["project"]
    reflex = await create_reflex(
        client,
        alice,
        skill["id"],
        triggerType="event",
        triggerConfig={"eventName": "member.added", "source": project["id"]},
    )
    await joined(client, kijko, alice, project["id"], bob, "developer")
    await _run_jobs(kijko)
    async with system_session(kijko.system_db) as db:
        rows = await db.fetch("SELECT * FROM kijko.skill_executions WHERE reference_id = $1", UUID(reflex["id"]))
    [row] = rows
    assert str(row["organization_id"]) == alice.org_id and str(row["user_id"]) == alice.user_id
    assert row["output"] == f"echo: Welcome {bob.user_id} as developer."
