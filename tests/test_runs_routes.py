"""The running routes (contract §2.3 execute/test, §2.6 cancel/retry, + replay;
docs/executions.md): answers and codes, ``?wait``, tests counted in usage but not recorded as
executions, who may do what, and other organizations' ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest

from kijko_core.db.session import system_session
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.ingestion_kit import running_worker
from tests.memberships import add_member
from tests.runs_kit import RUN_OPERATIONS, cancel_leftovers, execution, insert_skill, usage
from tests.test_openapi_errors import documented_errors, openapi

API = "/api/v1"


@pytest.fixture(autouse=True)
async def _clean(kijko: Kijko) -> AsyncIterator[None]:
    yield
    await cancel_leftovers(kijko)


async def execute(client: Any, account: Account, skill_id: Any, body: Any = None, **query: Any) -> Any:
    return await client.post(
        f"{API}/skills/{skill_id}/execute",
        json={"input": {"name": "Ada"}} if body is None else body,
        query_string=query,
        headers=account.headers,
    )


async def test_execute_answers_pending_at_once_and_counts_the_run(client: Any, kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(kijko, alice)
    response = await execute(client, alice, skill["id"])
    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert body["status"] == "pending" and body["executionId"]
    row = await execution(kijko, body["executionId"])
    assert (row["execution_type"], row["user_id"], row["input"]) == ("manual", UUID(alice.user_id), {"name": "Ada"})
    skill_now = await client.get(f"{API}/skills/{skill['id']}", headers=alice.headers)
    assert (await skill_now.get_json())["executionCount"] == 1


async def test_wait_answers_the_outcome(client: Any, kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(kijko, alice, type_config={"sleep": 0.2})
    async with running_worker(kijko):
        response = await execute(
            client, alice, skill["id"], body={"input": {"name": "Bo"}, "executionType": "api"}, wait=20
        )
    body = await response.get_json()
    assert response.status_code == 200, body
    assert body["status"] == "completed" and body["output"] == "echo: Say hello to Bo please."
    assert body["tokensUsed"] == 15 and body["durationMs"] >= 0
    assert (await execution(kijko, body["executionId"]))["execution_type"] == "api"


async def test_wait_that_runs_out_answers_the_current_status(client: Any, kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(kijko, alice)
    response = await execute(client, alice, skill["id"], wait=0.2)  # no worker: it stays pending
    body = await response.get_json()
    assert (response.status_code, body["status"], body.get("output")) == (200, "pending", None)


@pytest.mark.parametrize("wait", ["0", "-1", "31", "abc", "nan"])
async def test_wait_must_be_between_0_and_30_seconds(client: Any, kijko: Kijko, alice: Account, wait: str) -> None:
    skill = await insert_skill(kijko, alice)
    response = await execute(client, alice, skill["id"], wait=wait)
    assert response.status_code == 422
    assert (await response.get_json())["code"] == "VALIDATION_ERROR"


async def test_execute_refuses_bad_input_an_inactive_skill_and_client_made_habit_runs(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    skill = await insert_skill(kijko, alice)
    missing = await execute(client, alice, skill["id"], body={"input": {}})
    assert missing.status_code == 422 and (await missing.get_json())["field"] == "input.name"
    habit = await execute(client, alice, skill["id"], body={"input": {"name": "A"}, "executionType": "habit"})
    assert habit.status_code == 422
    inactive = await insert_skill(kijko, alice, is_active=False)
    refused = await execute(client, alice, inactive["id"])
    assert (refused.status_code, (await refused.get_json())["code"]) == (409, "SKILL_INACTIVE")
    unknown = await execute(client, alice, "not-a-uuid")
    assert (unknown.status_code, (await unknown.get_json())["code"]) == (404, "SKILL_NOT_FOUND")
    async with system_session(kijko.system_db) as db:
        count = await db.fetchval(
            "SELECT count(*) FROM kijko.skill_executions WHERE organization_id = $1", UUID(alice.org_id)
        )
    assert count == 0


async def test_another_organizations_skill_and_executions_are_not_found(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    skill = await insert_skill(kijko, alice)
    theirs = await execute(client, bob, skill["id"])
    assert (theirs.status_code, (await theirs.get_json())["code"]) == (404, "SKILL_NOT_FOUND")
    test = await client.post(f"{API}/skills/{skill['id']}/test", json={"input": {"name": "A"}}, headers=bob.headers)
    assert (test.status_code, (await test.get_json())["code"]) == (404, "SKILL_NOT_FOUND")
    execution_id = (await (await execute(client, alice, skill["id"])).get_json())["executionId"]
    for action in ("cancel", "retry", "replay"):
        response = await client.post(f"{API}/executions/{execution_id}/{action}", headers=bob.headers)
        assert (response.status_code, (await response.get_json())["code"]) == (404, "EXECUTION_NOT_FOUND"), action
    assert (await execution(kijko, execution_id))["status"] == "pending"


async def test_who_may_run_and_cancel(client: Any, kijko: Kijko, alice: Account) -> None:
    member = await add_member(kijko, alice.org_id, "member")
    other = await add_member(kijko, alice.org_id, "member", first_name="Olu")
    admin = await add_member(kijko, alice.org_id, "admin")
    viewer = await add_member(kijko, alice.org_id, "viewer")
    skill = await insert_skill(kijko, alice)  # the owner's: members run it too
    refused = await execute(client, viewer, skill["id"])
    assert (refused.status_code, (await refused.get_json())["code"]) == (403, "FORBIDDEN")
    ids = [(await (await execute(client, member, skill["id"])).get_json())["executionId"] for _ in range(3)]
    for who, execution_id, status in (
        (viewer, ids[0], 403),
        (other, ids[0], 403),
        (member, ids[0], 200),
        (admin, ids[1], 200),
    ):
        response = await client.post(f"{API}/executions/{execution_id}/cancel", headers=who.headers)
        assert response.status_code == status, await response.get_data(as_text=True)
    again = await client.post(f"{API}/executions/{ids[0]}/cancel", headers=member.headers)
    assert (again.status_code, (await again.get_json())["code"]) == (409, "CANNOT_CANCEL")
    row = await execution(kijko, ids[0])
    assert (row["status"], row["error_message"]) == ("cancelled", "Cancelled by user")
    assert (await execution(kijko, ids[2]))["status"] == "pending"


async def test_retry_and_replay_answer_the_new_execution(client: Any, kijko: Kijko, alice: Account) -> None:
    skill = await insert_skill(kijko, alice)
    execution_id = (await (await execute(client, alice, skill["id"])).get_json())["executionId"]
    refused = await client.post(f"{API}/executions/{execution_id}/retry", headers=alice.headers)
    assert (refused.status_code, (await refused.get_json())["code"]) == (409, "CANNOT_RETRY")
    replay_running = await client.post(f"{API}/executions/{execution_id}/replay", headers=alice.headers)
    assert (replay_running.status_code, (await replay_running.get_json())["code"]) == (409, "CANNOT_REPLAY")
    await client.post(f"{API}/executions/{execution_id}/cancel", headers=alice.headers)
    retried = await client.post(f"{API}/executions/{execution_id}/retry", headers=alice.headers)
    body = await retried.get_json()
    assert retried.status_code == 200 and body["status"] == "pending" and body["newExecutionId"] != execution_id
    replayed = await client.post(f"{API}/executions/{execution_id}/replay", headers=alice.headers)
    assert replayed.status_code == 200
    new = await execution(kijko, (await replayed.get_json())["newExecutionId"])
    assert new["source_execution_id"] == UUID(execution_id)


async def test_a_draft_test_runs_inline_is_not_an_execution_and_is_counted_in_usage(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    draft = {
        "promptTemplate": "Greet {{who}} in one line.",
        "model": "claude-3-5-haiku-20241022",
        "skillType": "echo",
        "typeConfig": {"cost": "0.0004", "prompt_tokens": 4, "completion_tokens": 2},
        "input": {"who": "Grace"},
    }
    response = await client.post(f"{API}/skills/test", json=draft, headers=alice.headers)
    body = await response.get_json()
    assert response.status_code == 200, body
    assert body["executionId"].startswith("test-") and body["status"] == "completed"
    assert (body["output"], body["tokensUsed"]) == ("echo: Greet Grace in one line.", 6)
    [used] = await usage(kijko, alice.org_id)
    assert used["is_test"] and used["execution_id"] is None and str(used["cost"]) == "0.0004"
    async with system_session(kijko.system_db) as db:
        assert (
            await db.fetchval(
                "SELECT count(*) FROM kijko.skill_executions WHERE organization_id = $1", UUID(alice.org_id)
            )
            == 0
        )


async def test_a_draft_test_is_validated_and_viewers_may_not_run_one(client: Any, kijko: Kijko, alice: Account) -> None:
    unpriced = await client.post(
        f"{API}/skills/test",
        json={"promptTemplate": "Hi there, model.", "model": "no-such-model"},
        headers=alice.headers,
    )
    assert (unpriced.status_code, (await unpriced.get_json())["code"]) == (422, "MODEL_NOT_PRICED")
    no_template = await client.post(
        f"{API}/skills/test", json={"model": "claude-3-5-haiku-20241022"}, headers=alice.headers
    )
    assert no_template.status_code == 422
    viewer = await add_member(kijko, alice.org_id, "viewer")
    refused = await client.post(
        f"{API}/skills/test",
        json={"promptTemplate": "Hi there.", "skillType": "echo", "model": "claude-3-5-haiku-20241022"},
        headers=viewer.headers,
    )
    assert refused.status_code == 403


async def test_a_skill_test_runs_an_inactive_skill_and_reports_a_failure(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    skill = await insert_skill(kijko, alice, is_active=False, type_config={"fail_code": "PROVIDER_AUTH_FAILED"})
    response = await client.post(
        f"{API}/skills/{skill['id']}/test", json={"input": {"name": "Al"}}, headers=alice.headers
    )
    body = await response.get_json()
    assert response.status_code == 200, body
    assert (body["status"], body["errorCode"], body["error"]) == (
        "failed",
        "PROVIDER_AUTH_FAILED",
        "The echo was told to fail",
    )


async def test_run_operations_document_exactly_their_errors(client: Any) -> None:
    spec = await openapi(client)
    for (method, path), statuses in RUN_OPERATIONS.items():
        assert set(documented_errors(spec, method, path)) == statuses | {"500"}, (method, path)
    assert "SPEND_CAP_REACHED" in documented_errors(spec, "post", "/api/v1/skills/{skill_id}/execute")["429"]
    assert "CANNOT_CANCEL" in documented_errors(spec, "post", "/api/v1/executions/{execution_id}/cancel")["409"]
    assert "EXECUTION_NOT_FOUND" in documented_errors(spec, "post", "/api/v1/executions/{execution_id}/retry")["404"]
