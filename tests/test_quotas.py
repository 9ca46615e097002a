"""Plans and quotas without Stripe (issue 9 §1, §5; docs/billing.md, decisions 0150–0152):
the plans file and its override, ``GET /billing/plans`` (public), the quota engine at every
action point (429 ``QUOTA_EXCEEDED`` with its details, ``Retry-After`` for counters only), habit
and reflex runs over the quota recorded failed, the race at the limit, ``GET /billing/usage``,
the owners' mails, and what a member's SQL cannot do to the counters."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from kijko_core.billing import quotas
from kijko_core.billing.plans import Plans, plans_of
from kijko_core.config import Settings
from kijko_core.db.session import ServiceActor, load_service_capability, service_session, system_session, tenant_session
from kijko_core.errors import ConfigurationError
from kijko_core.executions import lifecycle, spend
from kijko_core.jobs.worker import run_until_idle
from kijko_core.runtime import Kijko
from kijko_server.app import create_app
from tests.conftest import Account, sign_up
from tests.habits_kit import create_habit
from tests.memberships import add_member
from tests.projects import created
from tests.quotas_kit import next_month, plans_file, store_subscription, stripe_subscription
from tests.reflex_kit import create_reflex, deliver, signed
from tests.runs_kit import cancel_leftovers, execution, insert_skill, snapshot

API = "/api/v1"
#: The frontend's PLANS constant (contract §2.8).
CONTRACT_PLANS = {
    "free": (0, 0, {"apiCalls": 1000, "ingestions": 50, "storageGb": 1, "seats": 1, "oracleQueries": 10}),
    "pro": (29, 24, {"apiCalls": 10000, "ingestions": 500, "storageGb": 25, "seats": 3, "oracleQueries": 100}),
    "teams": (79, 66, {"apiCalls": 50000, "ingestions": 2500, "storageGb": 100, "seats": 10, "oracleQueries": -1}),
    "enterprise": (-1, -1, {"apiCalls": -1, "ingestions": -1, "storageGb": -1, "seats": -1, "oracleQueries": -1}),
}


@pytest.fixture(scope="module")
async def limited(make_settings: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Kijko]:
    """The free plan with 5 API calls a month, 1 ingestion, no storage, 1 seat, 2 searches a day."""
    path = plans_file(tmp_path_factory.mktemp("plans"), api_calls=5, ingestions=1, storage_gb=0, oracle_queries=2)
    runtime = await Kijko.start(make_settings(plans_file=path, default_plan="free"))
    try:
        yield runtime
    finally:
        await cancel_leftovers(runtime)
        await runtime.stop()


@pytest.fixture
async def web(limited: Kijko) -> AsyncIterator[Any]:
    application = create_app(kijko=limited)
    async with application.test_app():
        yield application.test_client()


async def seconds_to(kijko: Kijko, unit: str) -> float:
    async with system_session(kijko.system_db) as db:
        left: float = await db.fetchval(
            "SELECT extract(epoch FROM (date_trunc($1, now() AT TIME ZONE 'UTC') + ('1 ' || $1)::interval)"
            " AT TIME ZONE 'UTC' - now())::float8",
            unit,
        )
    return left


async def assert_counter_refused(kijko: Kijko, response: Any, metric: str, limit: int, unit: str) -> None:
    body = await response.get_json()
    assert response.status_code == 429, body
    assert body["code"] == "QUOTA_EXCEEDED" and body["detail"] == body["message"]
    details = body["details"]
    assert (details["metric"], details["limit"], details["current"]) == (metric, limit, limit)
    resets = datetime.fromisoformat(details["resetsAt"].replace("Z", "+00:00"))
    left = await seconds_to(kijko, unit)
    assert abs((resets - datetime.now(UTC)).total_seconds() - left) < 60
    assert abs(int(response.headers["Retry-After"]) - left) < 60


async def assert_gauge_refused(response: Any, metric: str, limit: int) -> None:
    body = await response.get_json()
    assert response.status_code == 429, body
    assert body["code"] == "QUOTA_EXCEEDED"
    assert body["details"]["metric"] == metric and body["details"]["limit"] == limit
    assert body["details"]["resetsAt"] is None
    assert "Retry-After" not in response.headers


# --- plans ---------------------------------------------------------------------------------------


async def test_the_plans_are_public_and_the_frontends_numbers(client: Any) -> None:
    response = await client.get(f"{API}/billing/plans")  # no token
    assert response.status_code == 200
    plans = await response.get_json()
    assert [plan["id"] for plan in plans] == ["free", "pro", "teams", "enterprise"]
    for plan in plans:
        price, annual, limits = CONTRACT_PLANS[plan["id"]]
        assert (plan["price"], plan["annualPrice"], plan["limits"]) == (price, annual, limits), plan["id"]
        assert plan["currency"] == "eur" and plan["name"] and isinstance(plan["features"], list)
    assert [plan["isPopular"] for plan in plans] == [False, True, False, False]


def test_the_shipped_plans_have_prices_in_cents_and_stripe_lookup_keys() -> None:
    plans = Plans.load(None)
    pro = plans.get("pro")
    assert (pro.monthly_price_cents, pro.annual_price_cents) == (2900, 28800)
    assert pro.lookup_keys == {"monthly": "kijko_pro_monthly", "annually": "kijko_pro_annually"}
    assert plans.get("enterprise").monthly_price_cents is None  # custom
    assert plans.get("free").limit("storage") == 1024**3
    assert plans.default.id == "free"


def test_a_bad_plans_file_is_refused_line_by_line(tmp_path: Path) -> None:
    text = Plans.shipped_text()
    broken = (
        text.replace("monthly_price_cents = 2900", "monthly_price_cents = 29.0")
        .replace("seats = 3", "seats = -2")
        .replace('name = "Teams"', 'name = "Teams"\ncolour = "blue"')
        .replace("[plans.enterprise]", "[plans.galaxy]")
        .replace("[plans.enterprise.limits]", "[plans.galaxy.limits]")
    )
    with pytest.raises(ConfigurationError) as refused:
        Plans.parse(broken, "KIJKO_PLANS_FILE")
    assert refused.value.problems == [
        "KIJKO_PLANS_FILE: missing plans ['enterprise'] (the plans are ['free', 'pro', 'teams', 'enterprise'])",
        "KIJKO_PLANS_FILE: unknown plans ['galaxy'] (the plans are ['free', 'pro', 'teams', 'enterprise'])",
        "KIJKO_PLANS_FILE: plans.pro.monthly_price_cents: an integer number of cents such as 2900",
        "KIJKO_PLANS_FILE: plans.pro.limits.seats: an integer of 0 or more, or -1 for unlimited",
        "KIJKO_PLANS_FILE: plans.teams: unknown keys ['colour']",
    ]
    with pytest.raises(ConfigurationError) as cents:
        Plans.parse(text.replace("annual_price_cents = 28800", "annual_price_cents = 28000"), "f")
    assert cents.value.problems == [
        "f: plans.pro.annual_price_cents: whole euros a month when billed annually (a multiple of 1200),"
        " as the frontend shows them"
    ]
    with pytest.raises(ConfigurationError) as missing:
        Plans.load(tmp_path / "nope.toml")
    assert missing.value.problems[0].startswith("KIJKO_PLANS_FILE: cannot read")


async def test_the_plans_file_overrides_the_shipped_one_and_a_bad_one_stops_start_up(
    make_settings: Any, tmp_path: Path
) -> None:
    path = plans_file(tmp_path, api_calls=7)
    runtime = await Kijko.start(make_settings(plans_file=path))
    try:
        application = create_app(kijko=runtime)
        async with application.test_app():
            plans = await (await application.test_client().get(f"{API}/billing/plans")).get_json()
        assert plans[0]["limits"]["apiCalls"] == 7
    finally:
        await runtime.stop()
    bad = tmp_path / "bad.toml"
    bad.write_text("[plans.free]\n", encoding="utf-8")
    with pytest.raises(ConfigurationError):
        await Kijko.start(make_settings(plans_file=bad))


def test_the_default_plan_is_free_and_must_be_a_plan(make_settings: Any) -> None:
    assert Settings.model_fields["default_plan"].default == "free"  # production's default
    with pytest.raises(ConfigurationError) as refused:
        make_settings(default_plan="platinum")
    assert "KIJKO_DEFAULT_PLAN" in str(refused.value)
    assert plans_of(make_settings(default_plan="teams")).default.id == "teams"


async def test_the_spend_cap_is_the_lower_of_the_setting_and_the_plans(kijko: Kijko, make_settings: Any) -> None:
    org = uuid.uuid4()
    async with system_session(kijko.system_db) as db:
        assert await spend.spend_cap_for(db, make_settings(default_plan="enterprise"), org) is None
        assert await spend.spend_cap_for(db, make_settings(default_plan="pro"), org) == Decimal("50.00")
        lower = make_settings(default_plan="pro", llm_monthly_spend_cap="20")
        assert await spend.spend_cap_for(db, lower, org) == Decimal("20")
        higher = make_settings(default_plan="free", llm_monthly_spend_cap="20")
        assert await spend.spend_cap_for(db, higher, org) == Decimal("5.00")
        setting_only = make_settings(default_plan="enterprise", llm_monthly_spend_cap="3")
        assert await spend.spend_cap_for(db, setting_only, org) == Decimal("3")


# --- the race ---------------------------------------------------------------------------------


async def test_exactly_the_limit_gets_through_100_concurrent_searches(make_settings: Any, tmp_path: Path) -> None:
    path = plans_file(tmp_path, oracle_queries=37)
    runtime = await Kijko.start(make_settings(plans_file=path, default_plan="free", db_pool_size=16))
    try:
        application = create_app(kijko=runtime)
        async with application.test_app():
            web = application.test_client()
            owner = await sign_up(web)
            project = await created(web, owner, "Raced")
            url = f"{API}/projects/{project['id']}/search"
            answers = await asyncio.gather(
                *(web.get(url, query_string={"q": "alpha"}, headers=owner.headers) for _ in range(100))
            )
            statuses = sorted(answer.status_code for answer in answers)
            assert statuses == [200] * 37 + [429] * 63
            refused = next(answer for answer in answers if answer.status_code == 429)
            await assert_counter_refused(runtime, refused, "oracle_queries", 37, "day")
        async with system_session(runtime.system_db) as db:
            used = await db.fetchval(
                "SELECT used FROM kijko.usage_counters WHERE organization_id = $1 AND metric = 'oracle_queries'",
                UUID(owner.org_id),
            )
        assert used == 37
    finally:
        await runtime.stop()


# --- each action point -------------------------------------------------------------------------


async def test_executions_and_tests_count_as_api_calls_and_the_sixth_is_refused(limited: Kijko, web: Any) -> None:
    owner = await sign_up(web)
    skill = await insert_skill(limited, owner)
    execute = f"{API}/skills/{skill['id']}/execute"
    for _ in range(3):
        assert (await web.post(execute, json={"input": {"name": "A"}}, headers=owner.headers)).status_code == 200
    tested = await web.post(f"{API}/skills/{skill['id']}/test", json={"input": {"name": "A"}}, headers=owner.headers)
    assert tested.status_code == 200  # the 4th call: a test counts
    assert (await web.post(execute, json={"input": {"name": "A"}}, headers=owner.headers)).status_code == 200
    refused = await web.post(execute, json={"input": {"name": "A"}}, headers=owner.headers)
    await assert_counter_refused(limited, refused, "api_calls", 5, "month")
    test_refused = await web.post(
        f"{API}/skills/{skill['id']}/test", json={"input": {"name": "A"}}, headers=owner.headers
    )
    await assert_counter_refused(limited, test_refused, "api_calls", 5, "month")
    draft = {"promptTemplate": "Hi {{name}}", "skillType": "echo", "input": {"name": "A"}}
    await assert_counter_refused(
        limited, await web.post(f"{API}/skills/test", json=draft, headers=owner.headers), "api_calls", 5, "month"
    )
    reflex = await create_reflex(web, owner, skill["id"])
    reflex_test = await web.post(
        f"{API}/reflexes/{reflex['id']}/test", json={"payload": {"name": "A"}}, headers=owner.headers
    )
    await assert_counter_refused(limited, reflex_test, "api_calls", 5, "month")
    async with system_session(limited.system_db) as db:
        total = await db.fetchval(
            "SELECT count(*) FROM kijko.skill_executions WHERE organization_id = $1", UUID(owner.org_id)
        )
    assert total == 4  # nothing written for the refused ones


async def test_habit_and_reflex_runs_over_the_quota_are_recorded_failed(limited: Kijko, web: Any) -> None:
    owner = await sign_up(web)
    skill = await insert_skill(limited, owner)
    async with tenant_session(limited.app_db, owner.identity) as db:
        runs = [
            lifecycle.Run(snapshot(skill), {"name": "A"}, "manual", UUID(owner.user_id), skill["id"]) for _ in range(4)
        ]
        await lifecycle.start_many(db, runs, plans=limited.plans)
    # Run now (a habit run, as the caller): recorded failed, not refused.
    habit = await create_habit(web, owner, {"id": str(skill["id"])}, config={"name": "A"})
    ran = await web.post(f"{API}/habits/{habit['id']}/run-now", headers=owner.headers)
    assert ran.status_code == 200, await ran.get_data(as_text=True)
    first = await execution(limited, (await ran.get_json())["executionId"])
    assert first["status"] == "pending"  # the 5th call
    ran = await web.post(f"{API}/habits/{habit['id']}/run-now", headers=owner.headers)
    over = await execution(limited, (await ran.get_json())["executionId"])
    assert (over["status"], over["error_code"]) == ("failed", "QUOTA_EXCEEDED")
    assert over["job_id"] is None and over["completed_at"] is not None
    # A reflex's webhook delivery: accepted, its run recorded failed.
    reflex = await create_reflex(web, owner, skill["id"])
    body, headers = signed(reflex["triggerConfig"]["secret"], {"name": "Ada"})
    delivered = await deliver(web, reflex["id"], body, headers)
    assert delivered.status_code in (200, 202), await delivered.get_data(as_text=True)
    async with system_session(limited.system_db) as db:
        row = await db.fetchrow(
            "SELECT status, error_code FROM kijko.skill_executions WHERE reference_id = $1", UUID(reflex["id"])
        )
    assert (row["status"], row["error_code"]) == ("failed", "QUOTA_EXCEEDED")


async def test_a_scheduled_batch_gets_what_fits_and_the_rest_is_recorded_failed(limited: Kijko, web: Any) -> None:
    owner = await sign_up(web)
    skill = await insert_skill(limited, owner)
    capability = await load_service_capability(limited.system_db)
    at = datetime.now(UTC)
    async with service_session(
        limited.app_db, capability, UUID(owner.org_id), ServiceActor("habits.scheduler", "t")
    ) as db:

        def runs_of(habits: list[UUID]) -> list[lifecycle.Run]:
            return [
                lifecycle.Run(snapshot(skill), {"name": "A"}, "habit", UUID(owner.user_id), skill["id"], habit, at)
                for habit in habits
            ]

        first = runs_of([uuid.uuid4() for _ in range(3)])
        assert all(await lifecycle.start_many(db, first, plans=limited.plans))
        # Already fired: counted while checking (2 fit), then given back.
        assert await lifecycle.start_many(db, first, plans=limited.plans) == [None] * 3
        ids = await lifecycle.start_many(db, runs_of([uuid.uuid4() for _ in range(4)]), plans=limited.plans)
    assert all(ids)
    states = [(await execution(limited, execution_id))["status"] for execution_id in ids if execution_id]
    assert states == ["pending"] * 2 + ["failed"] * 2
    async with system_session(limited.system_db) as db:
        used = await db.fetchval(
            "SELECT used FROM kijko.usage_counters WHERE organization_id = $1 AND metric = 'api_calls'",
            UUID(owner.org_id),
        )
    assert used == 5


async def test_searches_are_oracle_queries_per_day(limited: Kijko, web: Any) -> None:
    owner = await sign_up(web)
    project = await created(web, owner, "Searched")
    url = f"{API}/projects/{project['id']}/search"
    assert (await web.get(url, headers=owner.headers)).status_code == 422  # not a search: not counted
    for _ in range(2):
        assert (await web.get(url, query_string={"q": "x"}, headers=owner.headers)).status_code == 200
    refused = await web.get(url, query_string={"q": "x"}, headers=owner.headers)
    await assert_counter_refused(limited, refused, "oracle_queries", 2, "day")


async def test_ingestions_are_counted_when_started(limited: Kijko, web: Any) -> None:
    owner = await sign_up(web)
    first = await created(web, owner, "First", customSettings={"manualContent": "alpha\n"})
    second = await created(web, owner, "Second", customSettings={"manualContent": "beta\n"})
    assert (await web.post(f"{API}/projects/{first['id']}/ingest", json={}, headers=owner.headers)).status_code == 200
    refused = await web.post(f"{API}/projects/{second['id']}/ingest", json={}, headers=owner.headers)
    await assert_counter_refused(limited, refused, "ingestions", 1, "month")
    async with system_session(limited.system_db) as db:
        runs = await db.fetchval("SELECT count(*) FROM kijko.ingestion_runs WHERE project_id = $1", UUID(second["id"]))
    assert runs == 0
    await cancel_run(web, owner, first["id"])


async def cancel_run(web: Any, owner: Account, project_id: str) -> None:
    await web.post(f"{API}/projects/{project_id}/cancel-ingestion", headers=owner.headers)


async def test_an_ingestion_that_would_exceed_storage_fails_with_quota_exceeded(limited: Kijko, web: Any) -> None:
    owner = await sign_up(web)
    project = await created(web, owner, "Stored", customSettings={"manualContent": "alpha beta\n\ngamma\n"})
    assert (await web.post(f"{API}/projects/{project['id']}/ingest", json={}, headers=owner.headers)).status_code == 200
    await run_until_idle(limited)
    progress = await (await web.get(f"{API}/projects/{project['id']}/progress", headers=owner.headers)).get_json()
    assert progress["errorCode"] == "QUOTA_EXCEEDED", progress
    async with system_session(limited.system_db) as db:
        chunks = await db.fetchval("SELECT count(*) FROM kijko.chunks WHERE project_id = $1", UUID(project["id"]))
    assert chunks == 0


async def test_uploads_over_the_storage_are_refused_without_retry_after(limited: Kijko, web: Any) -> None:
    from tests.domains import _upload

    owner = await sign_up(web)
    refused = await _upload(web, owner, None)
    await assert_gauge_refused(refused, "storage", 0)
    async with system_session(limited.system_db) as db:
        files = await db.fetchval(
            "SELECT count(*) FROM kijko.uploaded_files WHERE organization_id = $1", UUID(owner.org_id)
        )
    assert files == 0


async def test_seats_members_and_invitations(limited: Kijko, web: Any) -> None:
    owner = await sign_up(web)  # the only seat of the free plan here
    project = await created(web, owner, "Shared")
    add = f"{API}/projects/{project['id']}/members"
    refused = await web.post(add, json={"email": "new@example.com", "role": "developer"}, headers=owner.headers)
    await assert_gauge_refused(refused, "seats", 1)
    bulk = await web.post(
        f"{API}/projects/{project['id']}/invitations",
        json={"invitations": [{"email": "new@example.com", "role": "developer", "notificationLevel": "daily"}]},
        headers=owner.headers,
    )
    answer = await bulk.get_json()
    assert bulk.status_code == 200, answer
    assert (answer["totalSent"], answer["results"][0]["status"]) == (0, "failed")
    assert "seats" in answer["results"][0]["error"]


async def test_an_address_already_holding_a_seat_needs_no_new_one(
    kijko: Kijko, make_settings: Any, tmp_path: Path
) -> None:
    runtime = await Kijko.start(make_settings(plans_file=plans_file(tmp_path, seats=2), default_plan="free"))
    try:
        application = create_app(kijko=runtime)
        async with application.test_app():
            web = application.test_client()
            owner = await sign_up(web)
            first = await created(web, owner, "One")
            second = await created(web, owner, "Two")
            body = {"email": "Guest@example.com", "role": "developer"}
            for project in (first, second):  # the same address: one seat
                response = await web.post(f"{API}/projects/{project['id']}/members", json=body, headers=owner.headers)
                assert response.status_code in (200, 201), await response.get_data(as_text=True)
            other = {"email": "third@example.com", "role": "developer"}
            refused = await web.post(f"{API}/projects/{first['id']}/members", json=other, headers=owner.headers)
            await assert_gauge_refused(refused, "seats", 2)
            usage = await (await web.get(f"{API}/billing/usage", headers=owner.headers)).get_json()
            assert next(m for m in usage if m["type"] == "seats")["current"] == 2
    finally:
        await runtime.stop()


# --- storage: the stored chunks and the uploads (migration 0026) ---------------------------------

_CHUNK_BYTES = """
SELECT coalesce(sum(octet_length(c.content)), 0) FROM kijko.chunks c
JOIN kijko.project_indexes i ON i.organization_id = c.organization_id AND i.project_id = c.project_id
 AND i.run_id = c.run_id
WHERE c.organization_id = $1
"""


async def test_storage_is_the_bytes_of_the_indexed_chunks_and_the_uploads(kijko: Kijko, client: Any) -> None:
    from tests.domains import _upload  # 5 bytes

    owner = await sign_up(client)
    org = UUID(owner.org_id)
    text = "".join(f"def function_{n}(value):\n    return value * {n}  # ünïcödé\n\n" for n in range(40))
    project = await created(client, owner, "Measured", customSettings={"manualContent": text})

    async def ingest() -> None:
        started = await client.post(
            f"{API}/projects/{project['id']}/ingest", json={"forceReprocess": True}, headers=owner.headers
        )
        assert started.status_code == 200, await started.get_data(as_text=True)
        await run_until_idle(kijko)

    async def measured() -> tuple[int, int, int]:
        async with tenant_session(kijko.app_db, owner.identity) as db:
            storage = await quotas.storage_bytes(db, org)
        async with system_session(kijko.system_db) as db:
            chunks = int(await db.fetchval(_CHUNK_BYTES, org))
            runs = int(await db.fetchval("SELECT count(*) FROM kijko.ingestion_runs WHERE organization_id = $1", org))
        return storage, chunks, runs

    assert await measured() == (0, 0, 0)
    await ingest()
    storage, chunks, _ = await measured()
    assert chunks >= len(text.encode()) // 2 and storage == chunks  # bytes, not characters
    await ingest()  # a new index replaces the old one: counted once
    assert await measured() == (chunks, chunks, 2)
    assert (await _upload(client, owner, None)).status_code in (200, 201)
    assert (await measured())[0] == chunks + 5
    # Only the triggers write the totals: a member's SQL can neither lower nor raise them.
    for statement in (
        "UPDATE kijko.run_chunk_bytes SET bytes = 0 WHERE organization_id = $1",
        "DELETE FROM kijko.run_chunk_bytes WHERE organization_id = $1",
        "INSERT INTO kijko.run_chunk_bytes (organization_id, project_id, run_id, bytes)"
        " SELECT organization_id, project_id, id, 1 FROM kijko.ingestion_runs WHERE organization_id = $1 LIMIT 1",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with tenant_session(kijko.app_db, owner.identity) as db:
                await db.execute(statement, org)
    deleted = await client.delete(f"{API}/projects/{project['id']}", headers=owner.headers)
    assert deleted.status_code in (200, 204), await deleted.get_data(as_text=True)
    assert (await measured())[0] == 5


# --- gauges under concurrency (decision 0167) --------------------------------------------------


async def test_exactly_the_seats_left_are_taken_by_concurrent_invitations(make_settings: Any, tmp_path: Path) -> None:
    path = plans_file(tmp_path, seats=6)  # the owner and 5 invitees
    runtime = await Kijko.start(make_settings(plans_file=path, default_plan="free", db_pool_size=16))
    try:
        application = create_app(kijko=runtime)
        async with application.test_app():
            web = application.test_client()
            owner = await sign_up(web)
            project = await created(web, owner, "Crowded")
            add = f"{API}/projects/{project['id']}/members"
            answers = await asyncio.gather(
                *(
                    web.post(add, json={"email": f"guest{n}@example.com", "role": "developer"}, headers=owner.headers)
                    for n in range(20)
                )
            )
            statuses = sorted(answer.status_code for answer in answers)
            assert statuses == [201] * 5 + [429] * 15, statuses
            refused = next(answer for answer in answers if answer.status_code == 429)
            await assert_gauge_refused(refused, "seats", 6)
            usage = await (await web.get(f"{API}/billing/usage", headers=owner.headers)).get_json()
            assert next(m for m in usage if m["type"] == "seats")["current"] == 6
    finally:
        await runtime.stop()


async def test_exactly_the_storage_left_is_taken_by_concurrent_uploads(make_settings: Any, tmp_path: Path) -> None:
    from tests.domains import _upload  # 5 bytes each

    runtime = await Kijko.start(make_settings(plans_file=plans_file(tmp_path), default_plan="free", db_pool_size=16))
    try:
        application = create_app(kijko=runtime)
        async with application.test_app():
            web = application.test_client()
            owner = await sign_up(web)
            org = UUID(owner.org_id)
            async with system_session(runtime.system_db) as db:  # 1 GB but room for 4 uploads
                await db.execute(
                    "INSERT INTO kijko.uploaded_files (organization_id, name, size, content_type, sha256, storage_key)"
                    " VALUES ($1, 'big.bin', $2, 'application/octet-stream', repeat('0', 64), $3)",
                    org,
                    1024**3 - 4 * 5,
                    f"test/{uuid.uuid4()}",
                )
            answers = await asyncio.gather(*(_upload(web, owner, None) for _ in range(12)))
            statuses = sorted(answer.status_code for answer in answers)
            assert statuses.count(429) == 8 and len(set(statuses) - {429}) == 1, statuses
            await assert_gauge_refused(next(a for a in answers if a.status_code == 429), "storage", 1)
        async with system_session(runtime.system_db) as db:
            stored = await db.fetchval("SELECT sum(size) FROM kijko.uploaded_files WHERE organization_id = $1", org)
        assert stored == 1024**3
    finally:
        await runtime.stop()


async def test_resending_an_expired_invitation_takes_a_seat_again(make_settings: Any, tmp_path: Path) -> None:
    runtime = await Kijko.start(make_settings(plans_file=plans_file(tmp_path, seats=2), default_plan="free"))
    try:
        application = create_app(kijko=runtime)
        async with application.test_app():
            web = application.test_client()
            owner = await sign_up(web)
            project = await created(web, owner, "Resent")
            add = f"{API}/projects/{project['id']}/members"

            async def invite(email: str) -> Any:
                return await web.post(add, json={"email": email, "role": "developer"}, headers=owner.headers)

            async def expire(member_id: str) -> None:
                async with system_session(runtime.system_db) as db:
                    await db.execute(
                        "UPDATE kijko.project_invitations SET expires_at = now() - interval '1 second'"
                        " WHERE member_id = $1",
                        UUID(member_id),
                    )

            def resend(member_id: str) -> Any:
                return web.post(f"{API}/projects/{project['id']}/invitations/{member_id}/resend", headers=owner.headers)

            first = await (await invite("first@example.com")).get_json()  # the last seat
            assert (await resend(first["id"])).status_code == 200  # still pending: it holds its seat
            await expire(first["id"])  # the seat is free again ...
            second = await invite("second@example.com")  # ... and taken by another address
            assert second.status_code == 201, await second.get_data(as_text=True)
            await assert_gauge_refused(await resend(first["id"]), "seats", 2)
            # Once the other's invitation expires too, the resend takes the seat back.
            await expire((await second.get_json())["id"])
            assert (await resend(first["id"])).status_code == 200
            await assert_gauge_refused(await invite("third@example.com"), "seats", 2)
    finally:
        await runtime.stop()


# --- the billing period from the subscription (decision 0167) -------------------------------------


def mid_month_start(now: datetime) -> datetime:
    """The 15th, 10:00 UTC, of this month once it has passed, else of the previous month."""
    this = now.replace(day=15, hour=10, minute=0, second=0, microsecond=0)
    if this <= now:
        return this
    return (now.replace(day=1) - timedelta(days=1)).replace(day=15, hour=10, minute=0, second=0, microsecond=0)


async def counters_of(kijko: Kijko, org: UUID, metric: str) -> dict[date, int]:
    async with system_session(kijko.system_db) as db:
        rows = await db.fetch(
            "SELECT period_start, used FROM kijko.usage_counters WHERE organization_id = $1 AND metric = $2",
            org,
            metric,
        )
    return {row["period_start"]: int(row["used"]) for row in rows}


async def test_a_subscription_counts_in_its_own_period_and_a_renewal_starts_from_zero(
    make_settings: Any, tmp_path: Path
) -> None:
    path = plans_file(tmp_path, api_calls=5, pro={"api_calls": 3})
    runtime = await Kijko.start(make_settings(plans_file=path, default_plan="free"))
    try:
        application = create_app(kijko=runtime)
        async with application.test_app():
            web = application.test_client()
            owner = await sign_up(web)
            org = UUID(owner.org_id)
            skill = await insert_skill(runtime, owner)
            execute = f"{API}/skills/{skill['id']}/execute"

            async def run() -> Any:
                return await web.post(execute, json={"input": {"name": "A"}}, headers=owner.headers)

            async def api_calls_used() -> tuple[int, int]:
                usage = await (await web.get(f"{API}/billing/usage", headers=owner.headers)).get_json()
                metric = next(m for m in usage if m["type"] == "api_calls")
                return metric["current"], metric["limit"]

            assert (await run()).status_code == 200  # on the free plan: this UTC month
            now = datetime.now(UTC)
            month = now.date().replace(day=1)
            assert await counters_of(runtime, org, "api_calls") == {month: 1}
            # Subscribed mid-month: a period of its own, counted from 0 (the month's 1 stays there).
            starts = mid_month_start(now)
            ends = next_month(starts)
            sub_id = f"sub_{uuid.uuid4().hex}"
            await store_subscription(runtime, org, stripe_subscription(sub_id, "active", starts, ends))
            assert await api_calls_used() == (0, 3)
            for _ in range(3):
                assert (await run()).status_code == 200
            refused = await run()
            body = await refused.get_json()
            assert refused.status_code == 429, body
            assert (body["details"]["metric"], body["details"]["limit"], body["details"]["current"]) == (
                "api_calls",
                3,
                3,
            )
            assert datetime.fromisoformat(body["details"]["resetsAt"].replace("Z", "+00:00")) == ends
            assert abs(int(refused.headers["Retry-After"]) - (ends - datetime.now(UTC)).total_seconds()) < 60
            assert await counters_of(runtime, org, "api_calls") == {month: 1, starts.date(): 3}
            assert await api_calls_used() == (3, 3)
            # The renewal's period (a day that is neither the 1st nor the first period's start).
            renewed = next(
                day
                for day in (now - timedelta(days=k) for k in range(4))
                if day.day not in (1, starts.day) and day.date() != starts.date()
            ).replace(hour=0, minute=0, second=0, microsecond=0)
            await store_subscription(runtime, org, stripe_subscription(sub_id, "active", renewed, next_month(renewed)))
            assert await api_calls_used() == (0, 3)
            assert (await run()).status_code == 200
            assert (await counters_of(runtime, org, "api_calls"))[renewed.date()] == 1
            # Cancelled: the free plan again, in the UTC month, where its 1 call still counts.
            cancelled = stripe_subscription(sub_id, "canceled", renewed, next_month(renewed))
            await store_subscription(runtime, org, cancelled)
            assert (await run()).status_code == 200
            assert (await counters_of(runtime, org, "api_calls"))[month] == 2
            assert await api_calls_used() == (2, 5)
            # Searches stay per UTC day under a subscription.
            await store_subscription(
                runtime, org, stripe_subscription(f"sub_{uuid.uuid4().hex}", "active", renewed, next_month(renewed))
            )
            project = await created(web, owner, "Daily")
            search = await web.get(
                f"{API}/projects/{project['id']}/search", query_string={"q": "x"}, headers=owner.headers
            )
            assert search.status_code == 200
            assert await counters_of(runtime, org, "oracle_queries") == {now.date(): 1}
    finally:
        await cancel_leftovers(runtime)
        await runtime.stop()


async def test_a_period_over_without_its_renewal_mirrored_is_followed_by_the_next(
    make_settings: Any, tmp_path: Path
) -> None:
    runtime = await Kijko.start(make_settings(plans_file=plans_file(tmp_path), default_plan="free"))
    try:
        application = create_app(kijko=runtime)
        async with application.test_app():
            owner = await sign_up(application.test_client())
        org = UUID(owner.org_id)
        # Stripe's renewal event is late: the stored period ended an hour ago.
        ended = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
        began = ended - timedelta(days=30)
        await store_subscription(runtime, org, stripe_subscription(f"sub_{uuid.uuid4().hex}", "active", began, ended))
        async with tenant_session(runtime.app_db, owner.identity) as db:
            period = await quotas.entitlement(db, runtime.plans, org, "api_calls")
            day = await quotas.entitlement(db, runtime.plans, org, "oracle_queries")
        assert (period.plan.id, period.period_start, period.ends) == ("pro", ended.date(), next_month(ended))
        assert day.plan.id == "pro" and day.period_start == datetime.now(UTC).date()
    finally:
        await runtime.stop()


# --- usage --------------------------------------------------------------------------------------


async def test_usage_shapes_permissions_and_isolation(limited: Kijko, web: Any) -> None:
    owner = await sign_up(web)
    stranger = await sign_up(web)
    project = await created(web, owner, "Used")
    await web.get(f"{API}/projects/{project['id']}/search", query_string={"q": "x"}, headers=owner.headers)
    admin = await add_member(limited, owner.org_id, "admin")
    member = await add_member(limited, owner.org_id, "member")
    response = await web.get(f"{API}/billing/usage", headers=owner.headers)
    assert response.status_code == 200
    usage = await response.get_json()
    assert [m["type"] for m in usage] == ["api_calls", "ingestions", "storage", "seats", "oracle_queries"]
    by_type = {m["type"]: m for m in usage}
    assert set(by_type["oracle_queries"]) == {"type", "current", "limit", "percentage", "trend"}
    assert (by_type["oracle_queries"]["current"], by_type["oracle_queries"]["limit"]) == (1, 2)
    assert by_type["oracle_queries"]["percentage"] == 50
    assert [point["value"] for point in by_type["oracle_queries"]["trend"]] == [1]
    assert datetime.fromisoformat(by_type["oracle_queries"]["trend"][0]["date"].replace("Z", "+00:00")).tzinfo
    assert (by_type["seats"]["current"], by_type["seats"]["limit"], by_type["seats"]["percentage"]) == (3, 1, 100)
    assert (by_type["storage"]["current"], by_type["storage"]["limit"]) == (0, 0)
    assert (await web.get(f"{API}/billing/usage", headers=admin.headers)).status_code == 200
    forbidden = await web.get(f"{API}/billing/usage", headers=member.headers)
    assert (forbidden.status_code, (await forbidden.get_json())["code"]) == (403, "FORBIDDEN")
    theirs = {m["type"]: m for m in await (await web.get(f"{API}/billing/usage", headers=stranger.headers)).get_json()}
    assert theirs["oracle_queries"]["current"] == 0 and theirs["oracle_queries"]["trend"] == []
    assert theirs["seats"]["current"] == 1


async def test_owners_are_mailed_at_80_and_100_percent_once(limited: Kijko, web: Any) -> None:
    owner = await sign_up(web)
    skill = await insert_skill(limited, owner)
    execute = f"{API}/skills/{skill['id']}/execute"

    async def mails() -> list[str]:
        await run_until_idle(limited)
        async with system_session(limited.system_db) as db:
            rows = await db.fetch(
                "SELECT template FROM kijko.mail_outbox WHERE organization_id = $1 AND template LIKE 'quota%'"
                " ORDER BY created_at, id",
                UUID(owner.org_id),
            )
        return [row["template"] for row in rows]

    for expected in ([], [], [], ["quota_warning"], ["quota_warning", "quota_reached"]):
        assert (await web.post(execute, json={"input": {"name": "A"}}, headers=owner.headers)).status_code == 200
        assert await mails() == expected
    assert (await web.post(execute, json={"input": {"name": "A"}}, headers=owner.headers)).status_code == 429
    assert await mails() == ["quota_warning", "quota_reached"]


# --- what a member's SQL cannot do ----------------------------------------------------------------


async def test_a_members_session_cannot_lower_usage_or_write_alerts(limited: Kijko, web: Any) -> None:
    owner = await sign_up(web)
    project = await created(web, owner, "Counted")
    search = f"{API}/projects/{project['id']}/search"
    await web.get(search, query_string={"q": "x"}, headers=owner.headers)
    org = UUID(owner.org_id)
    # As if that search was yesterday: the next one moves yesterday's count to the rollup.
    async with system_session(limited.system_db) as db:
        await db.execute("UPDATE kijko.usage_counters SET day = day - 1 WHERE organization_id = $1", org)
    await web.get(search, query_string={"q": "x"}, headers=owner.headers)
    usage = await (await web.get(f"{API}/billing/usage", headers=owner.headers)).get_json()
    queries = next(m for m in usage if m["type"] == "oracle_queries")
    assert queries["current"] == 2 and [p["value"] for p in queries["trend"]] == [1, 1]
    forbidden = [
        "UPDATE kijko.usage_counters SET used = 0 WHERE organization_id = $1",
        "UPDATE kijko.usage_counters SET day_used = 0 WHERE organization_id = $1",
        "UPDATE kijko.usage_counters SET day = day - 1 WHERE organization_id = $1",
        "UPDATE kijko.usage_counters SET period_start = period_start - 1 WHERE organization_id = $1",
        "DELETE FROM kijko.usage_counters WHERE organization_id = $1",
        "UPDATE kijko.usage_daily SET value = 0 WHERE organization_id = $1",
        "DELETE FROM kijko.usage_daily WHERE organization_id = $1",
        "INSERT INTO kijko.usage_alerts (organization_id, metric, period_start, threshold)"
        " VALUES ($1, 'api_calls', date_trunc('month', now())::date, 80)",
    ]
    for statement in forbidden:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with tenant_session(limited.app_db, owner.identity) as db:
                await db.execute(statement, org)
    async with tenant_session(limited.app_db, owner.identity) as db:  # raising it is allowed
        await db.execute("UPDATE kijko.usage_counters SET used = used + 1 WHERE organization_id = $1", org)
    async with system_session(limited.system_db) as db:
        used = await db.fetchval("SELECT used FROM kijko.usage_counters WHERE organization_id = $1", org)
    assert used == 3


async def test_another_organizations_session_sees_and_changes_none_of_the_usage(limited: Kijko, web: Any) -> None:
    owner = await sign_up(web)
    stranger = await sign_up(web)
    project = await created(web, owner, "Mine")
    await web.get(f"{API}/projects/{project['id']}/search", query_string={"q": "x"}, headers=owner.headers)
    org = UUID(owner.org_id)
    async with tenant_session(limited.app_db, stranger.identity) as db:
        for table in ("usage_counters", "usage_daily", "usage_alerts"):
            assert await db.fetchval(f"SELECT count(*) FROM kijko.{table} WHERE organization_id = $1", org) == 0  # noqa: S608
        assert await db.execute("UPDATE kijko.usage_counters SET used = used + 100") == "UPDATE 0"
        assert await db.execute("UPDATE kijko.usage_daily SET value = value + 100") == "UPDATE 0"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # row-level security's WITH CHECK
        async with tenant_session(limited.app_db, stranger.identity) as db:
            await db.execute(
                "INSERT INTO kijko.usage_counters (organization_id, metric, period_start, used)"
                " VALUES ($1, 'api_calls', date_trunc('month', now())::date, 999)",
                org,
            )
    async with system_session(limited.system_db) as db:
        rows = await db.fetch("SELECT metric, used FROM kijko.usage_counters WHERE organization_id = $1", org)
    assert [(row["metric"], row["used"]) for row in rows] == [("oracle_queries", 1)]
