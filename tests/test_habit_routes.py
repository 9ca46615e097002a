"""The habits routes (contract §2.4): shapes, schedules and their validation, permissions the
shared suites do not cover, foreign ids in bodies, run-now, stats, validate-cron, and the
OpenAPI document's errors, each triggered with its documented code."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from kijko_core.db.session import system_session, tenant_session
from kijko_core.habits import service
from kijko_core.habits.errors import InvalidCron
from kijko_core.habits.models import CreateHabit
from kijko_core.runtime import Kijko
from tests.automation import create_skill
from tests.conftest import Account
from tests.habits_kit import API, HABIT_OPERATIONS, H, create_habit, habit_body
from tests.memberships import add_member
from tests.test_openapi_errors import answers_not_as_documented, documented_errors, openapi


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def row(kijko: Kijko, habit_id: str) -> dict[str, Any]:
    async with system_session(kijko.system_db) as db:
        found = await db.fetchrow("SELECT * FROM kijko.habits WHERE id = $1", UUID(habit_id))
    assert found is not None
    return dict(found)


async def db_now(kijko: Kijko) -> datetime:
    async with system_session(kijko.system_db) as db:
        value: datetime = await db.fetchval("SELECT now()")
    return value


# --- shapes and schedules -----------------------------------------------------------------------


async def test_create_computes_the_next_run_in_the_habits_zone(client: Any, kijko: Kijko, alice: Account) -> None:
    skill = await create_skill(client, alice)
    before = await db_now(kijko)
    habit = await create_habit(client, alice, skill, scheduleCron="0  9 * * *", scheduleDescription="Mornings")
    assert habit["skillId"] == skill["id"] and habit["userId"] == alice.user_id
    assert habit["scheduleCron"] == "0 9 * * *"  # normalised
    assert (habit["runCount"], habit["consecutiveFailures"], habit["isActive"]) == (0, 0, True)
    assert habit["config"] == {"topic": "the weather"} and habit["timezone"] == "Europe/Amsterdam"
    assert "organizationId" not in habit and habit["lastRunAt"] is None
    next_run = instant(habit["nextRunAt"])
    local = next_run.astimezone(ZoneInfo("Europe/Amsterdam"))
    assert (local.hour, local.minute) == (9, 0)
    assert before < next_run and (next_run - before).total_seconds() <= 24 * 3600


async def test_defaults_and_an_inactive_habit_has_no_next_run(client: Any, alice: Account) -> None:
    skill = await create_skill(client, alice)
    response = await client.post(
        API, json={"skillId": skill["id"], "scheduleCron": "*/5 * * * *", "isActive": False}, headers=alice.headers
    )
    assert response.status_code == 201
    habit = await response.get_json()
    assert (habit["timezone"], habit["config"], habit["isActive"]) == ("UTC", {}, False)
    assert "nextRunAt" not in habit


async def test_get_full_list_filters_and_order(client: Any, alice: Account, bob: Account) -> None:
    skill = await create_skill(client, alice)
    other_skill = await create_skill(client, alice)
    late = await create_habit(client, alice, skill, scheduleCron="59 23 * * *", timezone="Pacific/Kiritimati")
    soon = await create_habit(client, alice, skill, scheduleCron="* * * * *", timezone="UTC")
    off = await create_habit(client, alice, other_skill, isActive=False)
    await create_habit(client, bob)

    got = await client.get(f"{API}/{soon['id']}", headers=alice.headers)
    assert got.status_code == 200 and await got.get_json() == soon
    full = await (await client.get(f"{API}/{soon['id']}/full", headers=alice.headers)).get_json()
    assert full["skill"]["id"] == skill["id"] and full["skill"]["name"] == skill["name"]
    assert {key: value for key, value in full.items() if key != "skill"} == soon

    page = await (await client.get(API, headers=alice.headers)).get_json()
    assert [h["id"] for h in page["habits"]] == [soon["id"], late["id"], off["id"]]  # active, soonest first
    assert (page["total"], page["page"], page["pageSize"], page["hasMore"]) == (3, 1, 20, False)
    assert all(h["skill"]["id"] == h["skillId"] for h in page["habits"])
    by_skill = await (await client.get(API, query_string={"skillId": skill["id"]}, headers=alice.headers)).get_json()
    assert {h["id"] for h in by_skill["habits"]} == {soon["id"], late["id"]}
    inactive = await (await client.get(API, query_string={"isActive": "false"}, headers=alice.headers)).get_json()
    assert [h["id"] for h in inactive["habits"]] == [off["id"]]
    paged = await (await client.get(API, query_string={"pageSize": 2, "page": 2}, headers=alice.headers)).get_json()
    assert ([h["id"] for h in paged["habits"]], paged["hasMore"]) == ([off["id"]], False)
    first = await (await client.get(API, query_string={"pageSize": 2}, headers=alice.headers)).get_json()
    assert first["hasMore"] is True


async def test_update_reschedules_when_the_schedule_or_zone_changes(client: Any, kijko: Kijko, alice: Account) -> None:
    habit = await create_habit(client, alice, scheduleCron="0 9 * * *", timezone="UTC")
    response = await client.put(f"{API}/{habit['id']}", json={"config": {"topic": "tides"}}, headers=alice.headers)
    same = await response.get_json()
    assert (
        response.status_code == 200 and same["nextRunAt"] == habit["nextRunAt"] and same["config"] == {"topic": "tides"}
    )

    moved = await (
        await client.patch(f"{API}/{habit['id']}", json={"timezone": "Asia/Tokyo"}, headers=alice.headers)
    ).get_json()
    local = instant(moved["nextRunAt"]).astimezone(ZoneInfo("Asia/Tokyo"))
    assert (moved["timezone"], local.hour, local.minute) == ("Asia/Tokyo", 9, 0)

    rescheduled = await (
        await client.put(f"{API}/{habit['id']}", json={"scheduleCron": "15 18 * * *"}, headers=alice.headers)
    ).get_json()
    local = instant(rescheduled["nextRunAt"]).astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.hour, local.minute) == (18, 15)

    stopped = await (
        await client.put(f"{API}/{habit['id']}", json={"isActive": False}, headers=alice.headers)
    ).get_json()
    assert stopped["isActive"] is False and "nextRunAt" not in stopped
    assert (await row(kijko, habit["id"]))["next_run_at"] is None
    cleared = await (
        await client.patch(f"{API}/{habit['id']}", json={"scheduleDescription": None}, headers=alice.headers)
    ).get_json()
    assert cleared["scheduleDescription"] is None and "nextRunAt" not in cleared


async def test_activate_deactivate_reset_errors_and_delete(client: Any, kijko: Kijko, alice: Account) -> None:
    habit = await create_habit(client, alice, scheduleCron="*/10 * * * *")
    off = await (await client.post(f"{API}/{habit['id']}/deactivate", headers=alice.headers)).get_json()
    assert off["isActive"] is False and "nextRunAt" not in off
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.habits SET consecutive_failures = 3, last_error_message = 'boom' WHERE id = $1",
            UUID(habit["id"]),
        )
    on = await (await client.post(f"{API}/{habit['id']}/activate", headers=alice.headers)).get_json()
    assert (on["isActive"], on["consecutiveFailures"], on["lastErrorMessage"]) == (True, 0, None)
    assert instant(on["nextRunAt"]) > await db_now(kijko)
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.habits SET consecutive_failures = 5, last_error_message = 'boom', is_active = false,"
            " next_run_at = NULL WHERE id = $1",
            UUID(habit["id"]),
        )
    reset = await (await client.post(f"{API}/{habit['id']}/reset-errors", headers=alice.headers)).get_json()
    assert (reset["isActive"], reset["consecutiveFailures"], reset["lastErrorMessage"]) == (True, 0, None)
    assert "nextRunAt" in reset

    deleted = await client.delete(f"{API}/{habit['id']}", headers=alice.headers)
    assert deleted.status_code == 200 and await deleted.get_json() == {"success": True}
    gone = await client.get(f"{API}/{habit['id']}", headers=alice.headers)
    assert gone.status_code == 404 and (await gone.get_json())["code"] == "HABIT_NOT_FOUND"


async def test_habits_go_with_their_skill(client: Any, kijko: Kijko, alice: Account) -> None:
    skill = await create_skill(client, alice)
    habit = await create_habit(client, alice, skill)
    assert (await client.delete(f"/api/v1/skills/{skill['id']}", headers=alice.headers)).status_code == 200
    assert (await client.get(f"{API}/{habit['id']}", headers=alice.headers)).status_code == 404
    async with system_session(kijko.system_db) as db:
        assert await db.fetchval("SELECT count(*) FROM kijko.habits WHERE id = $1", UUID(habit["id"])) == 0


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cron", ["* * * * * *", "0 9 * * * 2026", "@hourly", "@reboot", "61 * * * *", "0 0 31 2 *", "R * * * *", "* * *"]
)
async def test_only_five_field_cron_is_accepted(client: Any, kijko: Kijko, alice: Account, cron: str) -> None:
    skill = await create_skill(client, alice)
    response = await client.post(API, json=habit_body(skill["id"], scheduleCron=cron), headers=alice.headers)
    body = await response.get_json()
    assert (response.status_code, body["code"], body["field"]) == (422, "INVALID_CRON", "scheduleCron")
    assert cron not in body["message"] and body["message"] == body["detail"]
    habit = await create_habit(client, alice, skill)
    update = await client.put(f"{API}/{habit['id']}", json={"scheduleCron": cron}, headers=alice.headers)
    assert (update.status_code, (await update.get_json())["code"]) == (422, "INVALID_CRON")
    assert (await row(kijko, habit["id"]))["schedule_cron"] == habit["scheduleCron"]


@pytest.mark.parametrize("timezone", ["Mars/Olympus", "localtime", "../../etc/passwd", "CET ", "+02:00"])
async def test_timezone_must_be_an_iana_name(client: Any, alice: Account, timezone: str) -> None:
    skill = await create_skill(client, alice)
    response = await client.post(API, json=habit_body(skill["id"], timezone=timezone), headers=alice.headers)
    body = await response.get_json()
    assert (response.status_code, body["code"], body["field"]) == (422, "INVALID_TIMEZONE", "timezone")


async def test_the_minimum_interval_setting_refuses_schedules_firing_more_often(
    kijko: Kijko, client: Any, alice: Account
) -> None:
    skill = await create_skill(client, alice)
    async with tenant_session(kijko.app_db, alice.identity) as db:
        with pytest.raises(InvalidCron, match="120 seconds apart; the shortest interval allowed is 300"):
            await service.create(
                db, CreateHabit(skill_id=UUID(skill["id"]), schedule_cron="0,2 * * * *"), min_interval_seconds=300
            )
        created = await service.create(
            db, CreateHabit(skill_id=UUID(skill["id"]), schedule_cron="*/5 * * * *"), min_interval_seconds=300
        )
    assert created.schedule_cron == "*/5 * * * *"
    # The default (60 s, cron's own resolution) accepts every minute.
    await create_habit(client, alice, skill, scheduleCron="* * * * *")


async def test_config_and_string_limits(client: Any, alice: Account) -> None:
    skill = await create_skill(client, alice)
    big = {"topic": "x" * (64 * 1024)}
    for body in (
        habit_body(skill["id"], config=big),
        habit_body(skill["id"], config=[1]),
        habit_body(skill["id"], scheduleDescription="d" * 501),
        habit_body(skill["id"], scheduleCron="*" * 201),
        habit_body(skill["id"], timezone="Z" * 65),
        habit_body(skill["id"], isActive="sometimes"),
        habit_body("not-a-uuid"),
    ):
        response = await client.post(API, json=body, headers=alice.headers)
        assert response.status_code == 422, body


async def test_unknown_and_other_organizations_skills_are_not_found(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    theirs = await create_skill(client, bob)
    for skill_id in (theirs["id"], str(uuid.uuid4())):
        response = await client.post(API, json=habit_body(skill_id), headers=alice.headers)
        body = await response.get_json()
        assert (response.status_code, body["code"], body["field"]) == (404, "SKILL_NOT_FOUND", "skillId")
    async with system_session(kijko.system_db) as db:
        count = await db.fetchval("SELECT count(*) FROM kijko.habits WHERE skill_id = $1", UUID(theirs["id"]))
    assert count == 0


async def test_bodies_naming_another_organizations_ids_change_nothing(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    victim = await create_habit(client, alice)
    foreign = {
        "organizationId": alice.org_id,
        "organization_id": alice.org_id,
        "userId": alice.user_id,
        "user_id": alice.user_id,
        "id": victim["id"],
        "runCount": 99,
        "consecutiveFailures": 7,
        "nextRunAt": "2030-01-01T00:00:00Z",
    }
    skill = await create_skill(client, bob)
    response = await client.post(API, json=habit_body(skill["id"]) | foreign, headers=bob.headers)
    created = await response.get_json()
    assert response.status_code == 201 and created["id"] != victim["id"]
    assert (created["userId"], created["runCount"], created["consecutiveFailures"]) == (bob.user_id, 0, 0)
    stored = await row(kijko, created["id"])
    assert (str(stored["organization_id"]), str(stored["user_id"])) == (bob.org_id, bob.user_id)
    for method in ("PUT", "PATCH"):
        response = await client.open(
            f"{API}/{created['id']}", method=method, json={"config": {"topic": method}} | foreign, headers=bob.headers
        )
        after = await response.get_json()
        assert response.status_code == 200 and after["id"] == created["id"] and after["userId"] == bob.user_id
        stored = await row(kijko, created["id"])
        assert (str(stored["organization_id"]), stored["run_count"], stored["consecutive_failures"]) == (
            bob.org_id,
            0,
            0,
        )
    assert await row(kijko, victim["id"]) == await row(kijko, victim["id"])
    assert (await row(kijko, victim["id"]))["config"] == victim["config"]


async def test_viewers_read_members_create_but_only_edit_their_own(client: Any, kijko: Kijko, alice: Account) -> None:
    skill = await create_skill(client, alice)
    viewer = await add_member(kijko, alice.org_id, "viewer")
    member = await add_member(kijko, alice.org_id, "member")
    refused = await client.post(API, json=habit_body(skill["id"]), headers=viewer.headers)
    assert (refused.status_code, (await refused.get_json())["code"]) == (403, "FORBIDDEN")
    mine = await create_habit(client, member, skill)  # a member schedules the owner's skill
    assert mine["userId"] == member.user_id
    owners = await create_habit(client, alice, skill)
    denied = await client.post(f"{API}/{owners['id']}/deactivate", headers=member.headers)
    assert denied.status_code == 403
    listed = await (await client.get(API, headers=viewer.headers)).get_json()
    assert {h["id"] for h in listed["habits"]} == {mine["id"], owners["id"]}


# --- run-now ------------------------------------------------------------------------------------


async def test_run_now_starts_an_execution_as_the_caller(client: Any, kijko: Kijko, alice: Account) -> None:
    habit = await create_habit(client, alice, config={"topic": "rain"})
    response = await client.post(f"{API}/{habit['id']}/run-now", headers=alice.headers)
    body = await response.get_json()
    assert response.status_code == 200 and body["status"] == "queued" and body["message"]
    async with system_session(kijko.system_db) as db:
        execution = await db.fetchrow("SELECT * FROM kijko.skill_executions WHERE id = $1", UUID(body["executionId"]))
    assert execution is not None
    assert (execution["execution_type"], str(execution["reference_id"]), str(execution["user_id"])) == (
        "habit",
        habit["id"],
        alice.user_id,
    )
    assert (str(execution["organization_id"]), execution["input"], execution["scheduled_for"]) == (
        alice.org_id,
        {"topic": "rain"},
        None,
    )
    assert execution["snapshot"]["skillId"] == habit["skillId"]
    counted = await row(kijko, habit["id"])
    assert counted["run_count"] == 1 and counted["last_run_at"] is not None


async def test_run_now_refuses_an_inactive_skill_and_a_config_that_does_not_fit(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    skill = await create_skill(client, alice)
    habit = await create_habit(client, alice, skill, config={"topic": 5})
    unfit = await client.post(f"{API}/{habit['id']}/run-now", headers=alice.headers)
    body = await unfit.get_json()
    assert unfit.status_code == 422 and body["field"] == "config.topic", body
    await client.put(f"/api/v1/skills/{skill['id']}", json={"isActive": False}, headers=alice.headers)
    await client.put(f"{API}/{habit['id']}", json={"config": {"topic": "fine"}}, headers=alice.headers)
    inactive = await client.post(f"{API}/{habit['id']}/run-now", headers=alice.headers)
    assert (inactive.status_code, (await inactive.get_json())["code"]) == (409, "SKILL_INACTIVE")
    async with system_session(kijko.system_db) as db:
        count = await db.fetchval(
            "SELECT count(*) FROM kijko.skill_executions WHERE reference_id = $1", UUID(habit["id"])
        )
    assert count == 0 and (await row(kijko, habit["id"]))["run_count"] == 0


# --- stats and validate-cron --------------------------------------------------------------------


async def test_stats(client: Any, kijko: Kijko, alice: Account) -> None:
    skill = await create_skill(client, alice)
    habits = [await create_habit(client, alice, skill, scheduleCron=f"{m} * * * *", timezone="UTC") for m in range(6)]
    off = await create_habit(client, alice, skill, isActive=False)
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "UPDATE kijko.habits SET consecutive_failures = 2, run_count = 4 WHERE id = $1", UUID(off["id"])
        )
        await db.execute("UPDATE kijko.habits SET run_count = 3 WHERE id = $1", UUID(habits[0]["id"]))
    stats = await (await client.get(f"{API}/stats", headers=alice.headers)).get_json()
    assert {k: v for k, v in stats.items() if k != "upcomingRuns"} == {
        "totalHabits": 7,
        "activeHabits": 6,
        "totalRuns": 7,
        "failedHabits": 1,
    }
    upcoming = stats["upcomingRuns"]
    expected = sorted(habits, key=lambda h: (h["nextRunAt"], h["id"]))[:5]
    assert [u["habitId"] for u in upcoming] == [h["id"] for h in expected]
    assert all(u["skillName"] == skill["name"] for u in upcoming)


async def test_validate_cron(client: Any, kijko: Kijko, alice: Account) -> None:
    response = await client.post(f"{API}/validate-cron", json={"cron": "30 2 * * *"}, headers=alice.headers)
    body = await response.get_json()
    assert response.status_code == 200 and body["isValid"] is True and "error" not in body or body["error"] is None
    assert body["description"] == "At 02:30"
    runs = [instant(text) for text in body["nextRuns"]]
    assert len(runs) == 5 and runs == sorted(runs) and runs[0] > await db_now(kijko)
    assert all((run.hour, run.minute) == (2, 30) for run in runs)  # UTC by default
    zoned = await (
        await client.post(
            f"{API}/validate-cron", json={"cron": "30 2 * * *", "timezone": "Asia/Kolkata"}, headers=alice.headers
        )
    ).get_json()
    assert all((instant(t).hour, instant(t).minute) == (21, 0) for t in zoned["nextRuns"])
    invalid = await (
        await client.post(f"{API}/validate-cron", json={"cron": "* * * * * *"}, headers=alice.headers)
    ).get_json()
    assert invalid["isValid"] is False and "five fields" in invalid["error"] and invalid.get("nextRuns") is None
    bad_zone = await client.post(
        f"{API}/validate-cron", json={"cron": "* * * * *", "timezone": "Nowhere/City"}, headers=alice.headers
    )
    assert (bad_zone.status_code, (await bad_zone.get_json())["field"]) == (422, "timezone")


# --- the OpenAPI document -----------------------------------------------------------------------


async def test_habit_operations_document_exactly_their_errors(client: Any) -> None:
    spec = await openapi(client)
    for (method, path), statuses in HABIT_OPERATIONS.items():
        assert set(documented_errors(spec, method, path)) == statuses | {"500"}, (method, path)
    assert "INVALID_CRON" in documented_errors(spec, "post", API)["422"]
    assert "INVALID_TIMEZONE" in documented_errors(spec, "put", H)["422"]
    assert "SKILL_NOT_FOUND" in documented_errors(spec, "post", API)["404"]
    assert "SKILL_INACTIVE" in documented_errors(spec, "post", f"{H}/run-now")["409"]
    assert "HABIT_NOT_FOUND" in documented_errors(spec, "get", H)["404"]


async def test_every_documented_habit_error_happens_with_its_documented_code(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    gone = await add_member(kijko, alice.org_id, "member")
    async with system_session(kijko.system_db) as db:
        await db.execute("DELETE FROM kijko.memberships WHERE user_id = $1", UUID(gone.user_id))
    skill = await create_skill(client, alice)
    habit = await create_habit(client, alice, skill)
    inactive_skill = await create_skill(client, alice)
    inactive = await create_habit(client, alice, inactive_skill)
    await client.put(f"/api/v1/skills/{inactive_skill['id']}", json={"isActive": False}, headers=alice.headers)
    unfit = await create_habit(client, alice, skill, config={"topic": 5})
    unknown = str(uuid.uuid4())

    def send(method: str, path: str, account: Account | None, **kwargs: Any) -> Any:
        headers = dict(account.headers) if account else {}
        return lambda: client.open(path, method=method.upper(), headers=headers, **kwargs)

    def raw(method: str, path: str, data: bytes, content_type: str = "application/json") -> Any:
        headers = {**alice.headers, "Content-Type": content_type}
        return lambda: client.open(path, method=method.upper(), headers=headers, data=data)

    huge = b'{"cron": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    triggers: dict[tuple[str, str], dict[str, Any]] = {}
    for (method, template), statuses in HABIT_OPERATIONS.items():
        path = template.format(habit_id=habit["id"])
        body = {"json": {"cron": "* * * * *", "scheduleCron": "* * * * *", "skillId": skill["id"]}}
        cases: dict[str, Any] = {"401": send(method, path, None), "403": send(method, path, gone, **body)}
        if "404" in statuses and "{habit_id}" in template:
            cases["404"] = send(method, template.format(habit_id=unknown), alice, json={"config": {}})
        if "400" in statuses:
            cases["400"] = raw(method, path, b'{"cron": ')
            cases["413"] = raw(method, path, huge)
            cases["415"] = raw(method, path, b"cron=x", "application/x-www-form-urlencoded")
            cases["422"] = send(method, path, alice, json={"cron": 5, "scheduleCron": 5, "skillId": 5, "config": 5})
        triggers[(method, template)] = cases
    triggers[("get", API)]["422"] = send("get", API, alice, query_string={"pageSize": 0})
    triggers[("post", API)]["404"] = send("post", API, alice, json=habit_body(unknown))
    triggers[("post", API)]["422 cron"] = send("post", API, alice, json=habit_body(skill["id"], scheduleCron="@daily"))
    triggers[("post", API)]["422 zone"] = send("post", API, alice, json=habit_body(skill["id"], timezone="Nope"))
    triggers[("post", f"{API}/validate-cron")]["422 zone"] = send(
        "post", f"{API}/validate-cron", alice, json={"cron": "* * * * *", "timezone": "Nope"}
    )
    for method in ("put", "patch"):
        triggers[(method, H)]["422 cron"] = send(
            method, H.format(habit_id=habit["id"]), alice, json={"scheduleCron": "x"}
        )
    run_now = f"{H}/run-now"
    triggers[("post", run_now)]["409"] = send("post", run_now.format(habit_id=inactive["id"]), alice)
    triggers[("post", run_now)]["422"] = send("post", run_now.format(habit_id=unfit["id"]), alice)

    spec = await openapi(client)
    problems = []
    for (method, template), cases in triggers.items():
        documented = documented_errors(spec, method, template)
        assert {status.split()[0] for status in cases} == HABIT_OPERATIONS[(method, template)], (method, template)
        problems += await answers_not_as_documented(method, template, cases, documented)
    assert problems == []


async def test_habit_times_are_utc_iso_strings(client: Any, alice: Account) -> None:
    habit = await create_habit(client, alice)
    for key in ("createdAt", "updatedAt", "nextRunAt"):
        assert instant(habit[key]).tzinfo is not None
        assert instant(habit[key]).utcoffset() == UTC.utcoffset(None)
