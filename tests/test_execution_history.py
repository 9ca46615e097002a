"""The read side of executions (contract §2.3, §2.6, §2.7; docs/execution-history.md): lists,
filters and order, one execution, histories, statistics, export, projection and cleanup.

Executions are written straight into the database (tests/executions_kit.py) with chosen
times, statuses, tokens and costs; every expected figure is computed here, in Python, from
those rows — money with Decimal and rounding half to even, once per figure."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

from kijko_core.db.session import system_session
from kijko_core.runtime import Kijko
from tests.conftest import Account
from tests.executions_kit import (
    EXECUTION_OPERATIONS,
    Row,
    db_now,
    delete_skill,
    insert,
    insert_habit,
    insert_reflex,
    make_row,
    skill_id,
)
from tests.memberships import add_member
from tests.test_openapi_errors import documented_errors, openapi

API = "/api/v1"
EXECUTIONS = f"{API}/executions"
STATUSES = ("pending", "running", "completed", "failed", "cancelled")
TYPES = ("manual", "habit", "reflex", "api")


def cents(amount: Decimal) -> int:
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def newest_first(rows: list[Row]) -> list[str]:
    return [str(row.id) for row in sorted(rows, key=lambda r: (r.executed_at, r.id.bytes), reverse=True)]


async def get(client: Any, account: Account, path: str, **query: Any) -> tuple[int, Any]:
    response = await client.get(path, query_string=query or None, headers=account.headers)
    return response.status_code, await response.get_json()


async def today(kijko: Kijko) -> date:
    async with system_session(kijko.system_db, readonly=True) as db:
        value: date = await db.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date")
    return value


def midday(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


# --- lists ------------------------------------------------------------------------------------


async def test_the_list_is_newest_first_with_an_id_tie_breaker_and_filters(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    now = await db_now(kijko)
    writer = await skill_id(kijko, alice, name="Writer")
    reader = await skill_id(kijko, alice, name="Reader")
    same = now - timedelta(hours=3)
    rows = await insert(
        kijko,
        [
            make_row(alice.org_id, at=now - timedelta(hours=1), skill_id=writer, status="completed"),
            make_row(alice.org_id, at=same, skill_id=writer, status="failed", execution_type="habit"),
            make_row(alice.org_id, at=same, skill_id=reader, status="completed", execution_type="api"),
            make_row(alice.org_id, at=same, skill_id=reader, status="pending"),
            make_row(alice.org_id, at=now - timedelta(days=2), skill_id=reader, status="cancelled"),
            make_row(alice.org_id, at=now - timedelta(days=5), skill_id=None, skill_name="Gone"),
        ],
    )
    status, body = await get(client, alice, EXECUTIONS)
    assert status == 200
    assert [e["id"] for e in body["executions"]] == newest_first(rows)
    assert (body["total"], body["page"], body["pageSize"], body["hasMore"]) == (6, 1, 20, False)
    by_id = {e["id"]: e for e in body["executions"]}
    assert by_id[str(rows[0].id)]["skill"]["name"] == "Writer"
    assert by_id[str(rows[0].id)]["skill"]["promptTemplate"] == "Say hello to {{name}} please."  # the Skill model
    assert by_id[str(rows[5].id)]["skill"] is None and by_id[str(rows[5].id)]["skillId"] is None

    # Pages: limit/offset, page = offset // limit + 1.
    status, page = await get(client, alice, EXECUTIONS, limit=2, offset=2)
    assert [e["id"] for e in page["executions"]] == newest_first(rows)[2:4]
    assert (page["total"], page["page"], page["pageSize"], page["hasMore"]) == (6, 2, 2, True)
    status, past = await get(client, alice, EXECUTIONS, limit=5, offset=10)
    assert (status, past["executions"], past["total"], past["hasMore"]) == (200, [], 6, False)

    def expect(**where: Any) -> list[str]:
        return newest_first([row for row in rows if all(getattr(row, k) == v for k, v in where.items())])

    for query, where in (
        ({"skillId": str(reader)}, {"skill_id": reader}),
        ({"status": "completed"}, {"status": "completed"}),
        ({"executionType": "habit"}, {"execution_type": "habit"}),
        ({"skillId": str(reader), "status": "completed"}, {"skill_id": reader, "status": "completed"}),
    ):
        status, found = await get(client, alice, EXECUTIONS, **query)
        assert [e["id"] for e in found["executions"]] == expect(**where), query
        assert found["total"] == len(expect(**where))
    # Dates are inclusive bounds.
    bound = same.isoformat()
    status, found = await get(client, alice, EXECUTIONS, startDate=bound, endDate=bound)
    assert sorted(e["id"] for e in found["executions"]) == sorted(str(r.id) for r in rows if r.executed_at == same)
    status, found = await get(client, alice, EXECUTIONS, startDate=bound)
    assert [e["id"] for e in found["executions"]] == newest_first([r for r in rows if r.executed_at >= same])

    for bad in (
        {"limit": 0},
        {"limit": 101},
        {"offset": -1},
        {"status": "done"},
        {"startDate": "2026-01-01T00:00:00"},
        {"skillId": "not-a-uuid"},
        {"startDate": "0001-01-01T00:00:00+01:00"},  # before the first instant, once in UTC
        {"endDate": "9999-12-31T23:59:59-01:00"},
        {"executionType": "cron"},
    ):
        status, error = await get(client, alice, EXECUTIONS, **bad)
        assert status == 422 and error["code"] == "VALIDATION_ERROR", (bad, error)


async def test_one_execution_its_money_tokens_and_404s(client: Any, kijko: Kijko, alice: Account, bob: Account) -> None:
    now = await db_now(kijko)
    skill = await skill_id(kijko, alice, name="Money")
    half, one_and_half, plain = await insert(
        kijko,
        [
            # 0.005 dollars is half a cent: half to even → 0; 0.015 is 1.5 cents → 2.
            make_row(
                alice.org_id,
                at=now,
                skill_id=skill,
                prompt_tokens=100,
                completion_tokens=23,
                duration_ms=900,
                cost="0.005",
            ),
            make_row(alice.org_id, at=now, skill_id=skill, prompt_tokens=7, completion_tokens=None, cost="0.015"),
            make_row(alice.org_id, at=now, skill_id=skill, status="pending"),
        ],
    )
    status, body = await get(client, alice, f"{EXECUTIONS}/{half.id}")
    assert status == 200
    assert (body["costCents"], body["currency"], body["tokensUsed"], body["promptTokens"]) == (0, "usd", 123, 100)
    assert (body["durationMs"], body["status"], body["executionType"]) == (900, "completed", "manual")
    assert body["input"] == {"text": "hello"} and "skill" not in body
    status, body = await get(client, alice, f"{EXECUTIONS}/{one_and_half.id}")
    assert (body["costCents"], body["tokensUsed"]) == (2, 7)
    status, body = await get(client, alice, f"{EXECUTIONS}/{plain.id}/full")
    assert (status, body["costCents"], body["tokensUsed"], body["completedAt"]) == (200, None, None, None)
    assert body["skill"]["id"] == str(skill)

    for path in (f"{EXECUTIONS}/{half.id}", f"{EXECUTIONS}/{half.id}/full"):
        for who, target in ((bob, path), (alice, path.replace(str(half.id), str(uuid.uuid4())))):
            status, error = await get(client, who, target)
            assert (status, error["code"]) == (404, "EXECUTION_NOT_FOUND")
            assert set(error) == {"detail", "code", "message"}
    status, error = await get(client, alice, f"{EXECUTIONS}/not-an-id")
    assert (status, error["code"]) == (404, "EXECUTION_NOT_FOUND")


async def test_recent_and_running(client: Any, kijko: Kijko, alice: Account, bob: Account) -> None:
    now = await db_now(kijko)
    rows = await insert(
        kijko,
        [make_row(alice.org_id, at=now - timedelta(minutes=n), status=STATUSES[n % 5]) for n in range(12)],
    )
    await insert(kijko, [make_row(bob.org_id, at=now, status="running")])
    status, recent = await get(client, alice, f"{EXECUTIONS}/recent")
    assert (status, [e["id"] for e in recent]) == (200, newest_first(rows)[:10])
    status, recent = await get(client, alice, f"{EXECUTIONS}/recent", limit=3)
    assert [e["id"] for e in recent] == newest_first(rows)[:3]
    status, running = await get(client, alice, f"{EXECUTIONS}/running")
    active = [r for r in rows if r.status in {"pending", "running"}]
    assert [e["id"] for e in running] == list(reversed(newest_first(active)))  # oldest first
    status, error = await get(client, alice, f"{EXECUTIONS}/recent", limit=0)
    assert status == 422


async def test_histories_of_a_skill_a_habit_and_a_reflex(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    now = await db_now(kijko)
    skill = await skill_id(kijko, alice)
    habit = await insert_habit(kijko, alice.org_id, skill)
    reflex = await insert_reflex(kijko, alice.org_id, skill)
    theirs = await skill_id(kijko, bob)
    their_habit, their_reflex = (
        await insert_habit(kijko, bob.org_id, theirs),
        await insert_reflex(kijko, bob.org_id, theirs),
    )
    by_habit = await insert(
        kijko,
        [
            make_row(
                alice.org_id, at=now - timedelta(minutes=n), skill_id=skill, execution_type="habit", reference_id=habit
            )
            for n in range(13)
        ],
    )
    by_reflex = await insert(
        kijko,
        [
            make_row(
                alice.org_id,
                at=now - timedelta(minutes=n),
                skill_id=skill,
                execution_type="reflex",
                reference_id=reflex,
            )
            for n in range(3)
        ],
    )
    everything = by_habit + by_reflex

    status, body = await get(client, alice, f"{API}/skills/{skill}/executions")
    assert (status, body["total"], [e["id"] for e in body["executions"]]) == (200, 16, newest_first(everything)[:10])
    status, body = await get(client, alice, f"{API}/skills/{skill}/executions", limit=5, offset=10)
    assert [e["id"] for e in body["executions"]] == newest_first(everything)[10:15]
    status, body = await get(client, alice, f"{API}/habits/{habit}/executions", limit=20)
    assert (body["total"], [e["id"] for e in body["executions"]]) == (13, newest_first(by_habit))
    status, body = await get(client, alice, f"{API}/reflexes/{reflex}/executions")
    assert (body["total"], [e["id"] for e in body["executions"]]) == (3, newest_first(by_reflex))
    assert {e["referenceId"] for e in body["executions"]} == {str(reflex)}
    status, body = await get(client, alice, f"{API}/skill-executions", skillId=str(skill), limit=15)
    assert (status, [e["id"] for e in body["executions"]], body["hasMore"]) == (
        200,
        newest_first(everything)[:15],
        True,
    )
    status, body = await get(client, alice, f"{API}/skill-executions", skillId=str(skill), limit=16)
    assert (len(body["executions"]), body["hasMore"]) == (16, False)

    # Unknown, malformed and other organizations' ids: the same 404.
    for path, code in (
        (f"{API}/skills/{{}}/executions", "SKILL_NOT_FOUND"),
        (f"{API}/habits/{{}}/executions", "HABIT_NOT_FOUND"),
        (f"{API}/reflexes/{{}}/executions", "REFLEX_NOT_FOUND"),
        (f"{API}/skills/{{}}/stats", "SKILL_NOT_FOUND"),
    ):
        foreign = {"SKILL_NOT_FOUND": theirs, "HABIT_NOT_FOUND": their_habit, "REFLEX_NOT_FOUND": their_reflex}[code]
        for target in (foreign, uuid.uuid4(), "nope"):
            status, error = await get(client, alice, path.format(target))
            assert (status, error["code"], set(error)) == (404, code, {"detail", "code", "message"}), path
    for target in (theirs, uuid.uuid4()):
        status, error = await get(client, alice, f"{API}/skill-executions", skillId=str(target))
        assert (status, error["code"]) == (404, "SKILL_NOT_FOUND")
    status, error = await get(client, alice, f"{API}/skill-executions")
    assert (status, error["code"], error["field"]) == (422, "VALIDATION_ERROR", "skillId")  # required
    status, error = await get(client, alice, f"{API}/habits/{habit}/executions", limit=101)
    assert status == 422


# --- statistics --------------------------------------------------------------------------------


def _window(rows: list[Row], first: date, last: date) -> list[Row]:
    return [r for r in rows if first <= r.executed_at.astimezone(UTC).date() <= last]


async def _scenario(kijko: Kijko, account: Account) -> tuple[list[Row], dict[str, UUID], date]:
    """A month of executions: many sub-cent costs, half cents, every status and type, a
    deleted skill, a cost in another currency, days without executions."""
    day = await today(kijko)
    skills = {name: await skill_id(kijko, account, name=name) for name in ("Alpha", "Beta", "Gamma")}
    gone = await skill_id(kijko, account, name="Gone soon")
    rows: list[Row] = []
    # 1,000 completed runs of 0.00004 dollars (0.004 cents) each: 4 cents, not 0.
    for n in range(1000):
        rows.append(
            make_row(
                account.org_id,
                at=midday(day) - timedelta(days=n % 3, seconds=n),
                skill_id=skills["Alpha"],
                prompt_tokens=10,
                completion_tokens=5,
                duration_ms=100 + n % 7,
                cost="0.00004",
            )
        )
    for n, status in enumerate(STATUSES * 3):
        finished = status in {"completed", "failed", "cancelled"}
        rows.append(
            make_row(
                account.org_id,
                at=midday(day - timedelta(days=2 * n)) - timedelta(hours=n % 5),
                skill_id=skills["Beta"],
                status=status,
                execution_type=TYPES[n % 4],
                prompt_tokens=1000 * n if finished else None,
                completion_tokens=n if finished else None,
                duration_ms=250 * (n + 1) if finished else None,
                cost=str(Decimal("0.005") * (n + 1)) if finished else None,
            )
        )
    rows.append(
        make_row(
            account.org_id,
            at=midday(day - timedelta(days=20)),
            skill_id=skills["Gamma"],
            execution_type="api",
            prompt_tokens=5,
            completion_tokens=5,
            duration_ms=77,
            cost="0.015",
        )
    )
    rows.append(
        make_row(
            account.org_id,
            at=midday(day - timedelta(days=40)),
            skill_id=skills["Gamma"],
            duration_ms=10_000,
            cost="1.25",
        )
    )
    rows.append(
        make_row(
            account.org_id,
            at=midday(day - timedelta(days=2)),
            skill_id=skills["Gamma"],
            prompt_tokens=1,
            completion_tokens=1,
            duration_ms=50,
            cost="9.99",
            currency="eur",
        )
    )
    for n in range(2):
        row = make_row(
            account.org_id,
            at=midday(day - timedelta(days=3 + n)),
            skill_id=gone,
            skill_name="Gone soon",
            execution_type="reflex",
            prompt_tokens=3,
            completion_tokens=3,
            duration_ms=300,
            cost="0.025",
        )
        rows.append(row)
    await insert(kijko, rows)
    await delete_skill(kijko, gone)
    for row in rows:
        if row.skill_id == gone:
            row.skill_id = None
    skills["gone"] = gone
    return rows, skills, day


def money(rows: list[Row]) -> Decimal:
    return sum(
        (r.cost for r in rows if r.status == "completed" and r.currency == "usd" and r.cost is not None), Decimal(0)
    )


def mean(values: list[int]) -> int:
    return half_up(Decimal(sum(values)) / len(values)) if values else 0


def rate(rows: list[Row]) -> int:
    done = sum(r.status == "completed" for r in rows)
    finished = done + sum(r.status == "failed" for r in rows)
    return int((Decimal(100 * done) / finished).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)) if finished else 0


def completed(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.status == "completed"]


async def test_execution_stats_match_the_rows(client: Any, kijko: Kijko, alice: Account, bob: Account) -> None:
    rows, skills, day = await _scenario(kijko, alice)
    await insert(kijko, [make_row(bob.org_id, at=midday(day), cost="5.00", duration_ms=1)])
    status, body = await get(client, alice, f"{EXECUTIONS}/stats")
    assert status == 200
    assert body["totalExecutions"] == len(rows)
    assert body["successfulExecutions"] == sum(r.status == "completed" for r in rows)
    assert body["failedExecutions"] == sum(r.status == "failed" for r in rows)
    assert body["cancelledExecutions"] == sum(r.status == "cancelled" for r in rows)
    assert body["totalTokensUsed"] == sum(r.tokens for r in completed(rows))
    assert body["totalCostCents"] == cents(money(rows))
    assert body["currency"] == "usd"
    assert body["averageDurationMs"] == mean([r.duration_ms for r in completed(rows) if r.duration_ms is not None])
    assert body["executionsByStatus"] == {s: sum(r.status == s for r in rows) for s in STATUSES}
    assert body["executionsByType"] == {t: sum(r.execution_type == t for r in rows) for t in TYPES}
    days = [day - timedelta(days=n) for n in range(13, -1, -1)]
    assert body["dailyExecutions"] == [
        {
            "date": d.isoformat(),
            "count": len(_window(rows, d, d)),
            "tokens": sum(r.tokens for r in completed(_window(rows, d, d))),
        }
        for d in days
    ]
    assert any(entry["count"] == 0 for entry in body["dailyExecutions"])  # empty days are there

    # Filters: one skill, a date range.
    beta = [r for r in rows if r.skill_id == skills["Beta"]]
    status, body = await get(client, alice, f"{EXECUTIONS}/stats", skillId=str(skills["Beta"]))
    assert (body["totalExecutions"], body["totalCostCents"]) == (len(beta), cents(money(beta)))
    start = midday(day - timedelta(days=6))
    ranged = [r for r in rows if r.executed_at >= start]
    status, body = await get(client, alice, f"{EXECUTIONS}/stats", startDate=start.isoformat())
    assert (body["totalExecutions"], body["totalCostCents"]) == (len(ranged), cents(money(ranged)))

    # An organization without executions: zeros, every key.
    empty = await add_member(kijko, str((await _fresh_org(client)).org_id), "viewer")
    status, body = await get(client, empty, f"{EXECUTIONS}/stats")
    assert body["executionsByStatus"] == dict.fromkeys(STATUSES, 0)
    assert body["executionsByType"] == dict.fromkeys(TYPES, 0)
    assert (body["totalCostCents"], body["averageDurationMs"], len(body["dailyExecutions"])) == (0, 0, 14)


async def _fresh_org(client: Any) -> Account:
    from tests.conftest import sign_up

    return await sign_up(client, first_name="Empty")


async def test_cost_breakdown_matches_the_rows(client: Any, kijko: Kijko, alice: Account) -> None:
    rows, skills, day = await _scenario(kijko, alice)
    status, body = await get(client, alice, f"{EXECUTIONS}/cost-breakdown")
    assert status == 200
    assert body["totalCostCents"] == cents(money(rows))
    names = {value: key for key, value in skills.items()}
    groups: dict[UUID | None, list[Row]] = {}
    for row in completed(rows):
        groups.setdefault(row.skill_id, []).append(row)
    expected = sorted(
        (
            {
                "skillId": None if key is None else str(key),
                "skillName": "Gone soon" if key is None else names[key],
                "costCents": cents(money(group)),
                "executionCount": len(group),
                "_exact": money(group),
            }
            for key, group in groups.items()
        ),
        key=lambda entry: -entry["_exact"],
    )
    for entry in expected:
        del entry["_exact"]
    assert body["costBySkill"] == expected
    assert body["costByType"] == {t: cents(money([r for r in rows if r.execution_type == t])) for t in TYPES}
    days = [day - timedelta(days=n) for n in range(29, -1, -1)]
    assert body["costByDay"] == [{"date": d.isoformat(), "costCents": cents(money(_window(rows, d, d)))} for d in days]
    # The 1,000 sub-cent runs of Alpha: summed first, rounded once.
    alpha = next(entry for entry in body["costBySkill"] if entry["skillName"] == "Alpha")
    assert (alpha["costCents"], alpha["executionCount"]) == (4, 1000)

    end = midday(day - timedelta(days=1))
    status, body = await get(client, alice, f"{EXECUTIONS}/cost-breakdown", endDate=end.isoformat())
    assert body["totalCostCents"] == cents(money([r for r in rows if r.executed_at <= end]))


def percentile(values: list[int], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def test_performance_percentiles_success_rate_and_hours(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    status, body = await get(client, alice, f"{EXECUTIONS}/performance")
    assert body == {
        "averageDurationMs": 0,
        "p50DurationMs": 0,
        "p90DurationMs": 0,
        "p99DurationMs": 0,
        "successRate": 0,
        "durationByHour": [],
    }
    day = await today(kijko)
    base = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=1)
    skill = await skill_id(kijko, alice)
    durations = [40 * n + (n * n) % 17 for n in range(1, 41)]
    rows = [
        make_row(alice.org_id, at=base + timedelta(hours=n % 24, minutes=n), skill_id=skill, duration_ms=d)
        for n, d in enumerate(durations)
    ]
    rows += [make_row(alice.org_id, at=base, skill_id=skill, status="failed", duration_ms=5) for _ in range(7)]
    rows += [make_row(alice.org_id, at=base, status="cancelled", duration_ms=1)]
    rows += [make_row(alice.org_id, at=base, duration_ms=99_999)]  # another skill
    await insert(kijko, rows)
    await insert(kijko, [make_row(bob.org_id, at=base, duration_ms=1)])

    status, body = await get(client, alice, f"{EXECUTIONS}/performance", skillId=str(skill))
    assert status == 200
    assert body["averageDurationMs"] == mean(durations)
    for key, fraction in (("p50DurationMs", 0.5), ("p90DurationMs", 0.9), ("p99DurationMs", 0.99)):
        assert body[key] == half_up(Decimal(str(percentile(durations, fraction)))), key
    assert body["successRate"] == rate([r for r in rows if r.skill_id == skill])
    hours: dict[int, list[int]] = {}
    for row in rows:
        if row.skill_id == skill and row.status == "completed":
            hours.setdefault(row.executed_at.hour, []).append(row.duration_ms or 0)
    assert body["durationByHour"] == [{"hour": h, "avgDurationMs": mean(v)} for h, v in sorted(hours.items())]

    status, body = await get(client, alice, f"{EXECUTIONS}/performance")
    everything = [r.duration_ms or 0 for r in completed(rows)]
    assert body["p99DurationMs"] == half_up(Decimal(str(percentile(everything, 0.99))))
    assert body["successRate"] == rate(rows)


async def test_cost_projection(client: Any, kijko: Kijko, alice: Account) -> None:
    status, body = await get(client, alice, f"{EXECUTIONS}/cost-projection")
    assert body == {"projectedCostCents": 0, "projectedRuns": 0, "averageDailyCost": 0, "currency": "usd"}
    now = await db_now(kijko)
    rows = [make_row(alice.org_id, at=now - timedelta(days=n, hours=1), cost="0.37", duration_ms=1) for n in range(29)]
    rows += [make_row(alice.org_id, at=now - timedelta(days=3), status="failed", cost="1.00", duration_ms=1)]
    rows += [make_row(alice.org_id, at=now - timedelta(days=31), cost="50.00", duration_ms=1)]  # outside the window
    await insert(kijko, rows)
    window = [r for r in rows if r.executed_at > now - timedelta(days=30)]
    spent = money(window)
    for ahead in (30, 7, 365):
        status, body = await get(client, alice, f"{EXECUTIONS}/cost-projection", daysAhead=ahead)
        assert body == {
            "projectedCostCents": cents(spent * ahead / 30),
            "projectedRuns": int((Decimal(len(window)) * ahead / 30).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)),
            "averageDailyCost": cents(spent / 30),
            "currency": "usd",
        }
    for bad in (0, 366, "x"):
        status, error = await get(client, alice, f"{EXECUTIONS}/cost-projection", daysAhead=bad)
        assert status == 422


# --- export -------------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def test_export_csv_and_json(client: Any, kijko: Kijko, alice: Account) -> None:
    now = await db_now(kijko)
    plain = await skill_id(kijko, alice, name='Say "hi", then')
    formula = await skill_id(kijko, alice, name='=HYPERLINK("http://evil")')
    rows = await insert(
        kijko,
        [
            make_row(
                alice.org_id,
                at=now - timedelta(minutes=1),
                skill_id=plain,
                prompt_tokens=3,
                completion_tokens=4,
                duration_ms=12,
                cost="0.025",
            ),
            make_row(alice.org_id, at=now - timedelta(minutes=2), skill_id=formula, status="running"),
            make_row(alice.org_id, at=now - timedelta(minutes=3), skill_id=formula, status="failed", duration_ms=3),
        ],
    )
    day = await today(kijko)
    names = {plain: 'Say "hi", then', formula: '=HYPERLINK("http://evil")'}

    def cells(row: Row) -> list[str]:
        return [
            str(row.id),
            str(row.skill_id),
            names[row.skill_id],  # type: ignore[index]
            row.execution_type,
            row.status,
            "" if row.prompt_tokens is None and row.completion_tokens is None else str(row.tokens),
            "" if row.duration_ms is None else str(row.duration_ms),
            "" if row.cost is None else str(cents(row.cost)),
            _iso(row.executed_at),
            _iso(row.completed_at),
        ]

    response = await client.get(f"{EXECUTIONS}/export", query_string={"format": "csv"}, headers=alice.headers)
    body = await response.get_json()
    assert response.status_code == 200
    assert body["filename"] == f"executions-{day.isoformat()}.csv"
    header = "id,skillId,skillName,executionType,status,tokensUsed,durationMs,costCents,executedAt,completedAt"
    lines = body["data"].split("\r\n")
    assert lines[0] == ",".join(f'"{name}"' for name in header.split(","))
    assert lines[-1] == "" and len(lines) == 5
    for line in lines[1:4]:
        assert line.startswith('"') and line.endswith('"')
    parsed = list(csv.reader(io.StringIO(body["data"])))
    expected = [cells(row) for row in rows]
    expected = [[("'" + c if c[:1] in {"=", "+", "-", "@"} else c) for c in line] for line in expected]
    assert parsed[1:] == expected
    assert '"Say ""hi"", then"' in lines[1]
    assert '"\'=HYPERLINK(""http://evil"")"' in lines[2]
    assert (body["rowCount"], body["truncated"]) == (3, False)

    response = await client.get(f"{EXECUTIONS}/export", headers=alice.headers)
    body = await response.get_json()
    assert body["filename"] == f"executions-{day.isoformat()}.json"
    records = json.loads(body["data"])
    assert [r["id"] for r in records] == [str(r.id) for r in rows]
    assert records[0]["skillName"] == 'Say "hi", then' and records[1]["skillName"] == names[formula]
    assert (records[0]["costCents"], records[0]["tokensUsed"], records[1]["completedAt"]) == (2, 7, None)

    response = await client.get(
        f"{EXECUTIONS}/export", query_string={"status": "failed", "format": "csv"}, headers=alice.headers
    )
    assert [line[0] for line in csv.reader(io.StringIO((await response.get_json())["data"]))][1:] == [str(rows[2].id)]
    response = await client.get(f"{EXECUTIONS}/export", query_string={"format": "xml"}, headers=alice.headers)
    assert response.status_code == 422


# --- cleanup ------------------------------------------------------------------------------------


async def test_cleanup_owners_and_admins_only_never_active_ones(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    now = await db_now(kijko)
    old = now - timedelta(days=100)
    rows = await insert(
        kijko,
        [
            make_row(alice.org_id, at=old, status=s, duration_ms=1, cost="0.01" if s == "completed" else None)
            for s in STATUSES
        ]
        + [make_row(alice.org_id, at=now - timedelta(days=10), duration_ms=1)],
    )
    await insert(kijko, [make_row(bob.org_id, at=old, duration_ms=1)])
    member = await add_member(kijko, alice.org_id, "member")
    viewer = await add_member(kijko, alice.org_id, "viewer")
    admin = await add_member(kijko, alice.org_id, "admin")
    for who in (member, viewer):
        response = await client.delete(f"{EXECUTIONS}/cleanup", headers=who.headers)
        assert (response.status_code, (await response.get_json())["code"]) == (403, "FORBIDDEN")
    status, listed = await get(client, alice, EXECUTIONS, limit=100)
    assert listed["total"] == 6
    response = await client.delete(f"{EXECUTIONS}/cleanup", query_string={"olderThanDays": 0}, headers=admin.headers)
    assert response.status_code == 422

    response = await client.delete(f"{EXECUTIONS}/cleanup", headers=admin.headers)
    body = await response.get_json()
    assert response.status_code == 200 and body["deletedCount"] == 3 and body["freedSpaceMb"] >= 0
    status, listed = await get(client, alice, EXECUTIONS, limit=100)
    kept = {str(r.id) for r in rows if r.status in {"pending", "running"} or r.executed_at > old}
    assert {e["id"] for e in listed["executions"]} == kept
    status, theirs = await get(client, bob, EXECUTIONS)
    assert theirs["total"] == 1  # another organization's history is not touched
    response = await client.delete(f"{EXECUTIONS}/cleanup", query_string={"olderThanDays": 5}, headers=alice.headers)
    assert (await response.get_json())["deletedCount"] == 1


# --- the skills' statistics -----------------------------------------------------------------


async def test_skill_stats_global_and_static_paths_win_over_ids(client: Any, kijko: Kijko, alice: Account) -> None:
    rows, skills, day = await _scenario(kijko, alice)
    await skill_id(kijko, alice, name="Idle", is_active=False)
    status, body = await get(client, alice, f"{API}/skills/stats")
    assert status == 200
    assert (body["totalSkills"], body["activeSkills"]) == (4, 3)  # Alpha, Beta, Gamma, Idle; gone is deleted
    assert body["totalExecutions"] == len(rows)
    assert body["totalTokensUsed"] == sum(r.tokens for r in completed(rows))
    assert body["totalCostCents"] == cents(money(rows))
    assert body["executionsByStatus"] == {s: sum(r.status == s for r in rows) for s in STATUSES}
    assert body["executionsByType"] == {t: sum(r.execution_type == t for r in rows) for t in TYPES}
    counts = Counter(r.skill_id for r in rows if r.skill_id is not None)
    names = {value: key for key, value in skills.items()}
    assert body["topSkillsByUsage"] == [
        {"skillId": str(skill), "name": names[skill], "count": count}
        for skill, count in sorted(counts.items(), key=lambda item: (-item[1], names[item[0]]))[:5]
    ]


async def test_skill_period_stats_and_overview(client: Any, kijko: Kijko, alice: Account) -> None:
    rows, skills, day = await _scenario(kijko, alice)
    for period, days in (("7d", 7), ("30d", 30), ("90d", 90), (None, 30)):
        first = day - timedelta(days=days - 1)
        query = {"period": period} if period else {}
        beta = _window([r for r in rows if r.skill_id == skills["Beta"]], first, day)
        status, body = await get(client, alice, f"{API}/skills/{skills['Beta']}/stats", **query)
        assert status == 200
        assert body["overview"] == {
            "totalRuns": len(beta),
            "successRate": rate(beta),
            "avgTokens": mean([r.tokens for r in completed(beta)]),
            "avgDurationMs": mean([r.duration_ms or 0 for r in completed(beta)]),
            "totalCostCents": cents(money(beta)),
        }
        series = [first + timedelta(days=n) for n in range(days)]
        assert body["executionsOverTime"] == [
            {
                "date": d.isoformat(),
                "count": len(_window(beta, d, d)),
                "successCount": sum(r.status == "completed" for r in _window(beta, d, d)),
                "failureCount": sum(r.status == "failed" for r in _window(beta, d, d)),
                "tokens": sum(r.tokens for r in completed(_window(beta, d, d))),
                "costCents": cents(money(_window(beta, d, d))),
            }
            for d in series
        ]
        assert body["executionsByStatus"] == {s: sum(r.status == s for r in beta) for s in STATUSES}
        assert body["executionsByType"] == {t: sum(r.execution_type == t for r in beta) for t in TYPES}

        everything = _window(rows, first, day)
        status, overview = await get(client, alice, f"{API}/skills/stats/overview", **query)
        assert status == 200
        assert overview["overview"]["totalRuns"] == len(everything)
        assert overview["overview"]["totalCostCents"] == cents(money(everything))
        assert len(overview["executionsOverTime"]) == days
        runs = Counter(r.skill_id for r in everything)
        names = {value: key for key, value in skills.items()}
        assert sorted((e["skillId"] or "", e["name"], e["runs"]) for e in overview["skillBreakdown"]) == sorted(
            ("" if key is None else str(key), "Gone soon" if key is None else names[key], count)
            for key, count in runs.items()
        )
        assert [e["runs"] for e in overview["skillBreakdown"]] == sorted(runs.values(), reverse=True)
    for bad in ("1d", "30"):
        status, error = await get(client, alice, f"{API}/skills/stats/overview", period=bad)
        assert status == 422
        status, error = await get(client, alice, f"{API}/skills/{skills['Beta']}/stats", period=bad)
        assert status == 422


# --- every route: roles and documented errors --------------------------------------------------


async def test_every_member_reads_the_history_only_owners_and_admins_clean_up(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    now = await db_now(kijko)
    skill = await skill_id(kijko, alice)
    habit, reflex = await insert_habit(kijko, alice.org_id, skill), await insert_reflex(kijko, alice.org_id, skill)
    (row,) = await insert(kijko, [make_row(alice.org_id, at=now, skill_id=skill, duration_ms=1)])
    paths = [
        EXECUTIONS,
        f"{EXECUTIONS}/recent",
        f"{EXECUTIONS}/running",
        f"{EXECUTIONS}/stats",
        f"{EXECUTIONS}/cost-breakdown",
        f"{EXECUTIONS}/performance",
        f"{EXECUTIONS}/cost-projection",
        f"{EXECUTIONS}/export",
        f"{EXECUTIONS}/{row.id}",
        f"{EXECUTIONS}/{row.id}/full",
        f"{API}/skill-executions?skillId={skill}",
        f"{API}/skills/{skill}/executions",
        f"{API}/habits/{habit}/executions",
        f"{API}/reflexes/{reflex}/executions",
        f"{API}/skills/stats",
        f"{API}/skills/stats/overview",
        f"{API}/skills/{skill}/stats",
    ]
    for role in ("admin", "member", "viewer"):
        account = await add_member(kijko, alice.org_id, role)  # type: ignore[arg-type]
        for path in paths:
            response = await client.get(path, headers=account.headers)
            assert response.status_code == 200, (role, path, await response.get_json())
        response = await client.delete(f"{EXECUTIONS}/cleanup", headers=account.headers)
        assert response.status_code == (200 if role == "admin" else 403), role


async def test_read_operations_document_exactly_their_errors_and_answer_them(
    client: Any, kijko: Kijko, alice: Account
) -> None:
    spec = await openapi(client)
    for (method, path), statuses in EXECUTION_OPERATIONS.items():
        assert set(documented_errors(spec, method, path)) == statuses | {"500"}, (method, path)
    gone = await add_member(kijko, alice.org_id, "member")
    async with system_session(kijko.system_db) as db:
        await db.execute("DELETE FROM kijko.memberships WHERE user_id = $1", UUID(gone.user_id))
    member = await add_member(kijko, alice.org_id, "member")
    skill = await skill_id(kijko, alice)
    unknown = str(uuid.uuid4())
    bad_query = {
        "limit": 0,
        "startDate": "yesterday",
        "daysAhead": 0,
        "olderThanDays": 0,
        "period": "1y",
        "format": "xml",
        "skillId": "x",
    }
    problems = []
    for (method, template), statuses in EXECUTION_OPERATIONS.items():
        path = template.format(execution_id=unknown, skill_id=str(skill), habit_id=unknown, reflex_id=unknown)
        documented = documented_errors(spec, method, template)
        query = {"skillId": str(skill)} if template.endswith("skill-executions") else {}
        cases: dict[str, tuple[Account | None, str, dict[str, Any]]] = {
            "401": (None, path, query),
            "403": (gone, path, query),
        }
        if "404" in statuses:
            missing = template.format(execution_id=unknown, skill_id=unknown, habit_id=unknown, reflex_id=unknown)
            cases["404"] = (alice, missing, {"skillId": unknown} if template.endswith("skill-executions") else {})
        if "422" in statuses:
            cases["422"] = (alice, path, bad_query)
        for label, (who, target, params) in cases.items():
            headers = who.headers if who else {}
            response = await client.open(target, method=method.upper(), headers=headers, query_string=params)
            code = (await response.get_json())["code"]
            if response.status_code != int(label) or code not in documented[label]:
                problems.append(f"{method} {template} [{label}]: {response.status_code} {code}")
    response = await client.delete(f"{EXECUTIONS}/cleanup", headers=member.headers)
    assert (
        response.status_code == 403 and "FORBIDDEN" in documented_errors(spec, "delete", f"{EXECUTIONS}/cleanup")["403"]
    )
    assert problems == []
