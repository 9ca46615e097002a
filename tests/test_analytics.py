"""Analytics (contract §2.7, §3.9; docs/analytics.md): the public intake on both paths,
checked per event, attributed by a valid token only, rate-limited per client address,
buffered and written in bulk; the retention sweep; the organization's summary."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from databases import Database

from kijko_core.analytics.events import MAX_PROPERTIES_BYTES, ConversionAction, Event, EventType, check
from kijko_core.analytics.intake import EventBuffer, Offered
from kijko_core.db.session import system_session, tenant_session
from kijko_core.jobs.worker import sweep
from kijko_core.runtime import Kijko
from kijko_server.app import KijkoApp, create_app
from kijko_server.blueprints.analytics import BUFFER
from tests.conftest import Account, sign_up
from tests.memberships import add_member
from tests.net import free_port
from tests.test_rate_limits import assert_rate_limited, redis_url, unique_address, with_redis  # noqa: F401

PATHS = ("/api/analytics/events", "/api/v1/analytics/events")
V1 = PATHS[1]
SUMMARY = "/api/v1/analytics/summary"


def now_iso(delta: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + delta).isoformat().replace("+00:00", "Z")


def event(session: str, type_: str = "project_creation_started", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": type_,
        "timestamp": now_iso(),
        "persona": "alex",
        "sessionId": session,
        "properties": {"project_type": "repo"},
    }
    body.update(fields)
    return body


def new_session() -> str:
    return f"1732800000000-{uuid.uuid4().hex[:10]}"


async def post(
    client: Any, body: Any, *, path: str = V1, headers: dict[str, str] | None = None, peer: str | None = None
) -> Any:
    return await client.post(
        path, json=body, headers=headers or {}, scope_base={"client": (peer or unique_address(), 50000)}
    )


async def flush(app: KijkoApp) -> None:
    await app.extensions[BUFFER].flush()


async def rows(kijko: Kijko, session: str) -> list[asyncpg.Record]:
    """Every stored event of a browser session, as the system role sees them (anonymous too)."""
    async with system_session(kijko.system_db, readonly=True) as db:
        return await db.fetch(
            "SELECT * FROM kijko.analytics_events WHERE session_id = $1 ORDER BY occurred_at, id", session
        )


# --- intake ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
async def test_an_anonymous_batch_is_accepted_and_stored(app: KijkoApp, client: Any, kijko: Kijko, path: str) -> None:
    session = new_session()
    batch = [
        event(session),
        event(session, "conversion_signal", persona=None, properties={"action": "copy_to_cursor", "project_id": "p1"}),
        event(
            session,
            "ingestion_completed",
            properties={"project_id": "p1", "filesProcessed": 12, "compressionRatio": 0.4, "extra": {"a": [1, 2]}},
        ),
    ]
    response = await post(client, {"events": batch}, path=path)
    assert response.status_code == 202
    assert await response.get_json() == {"accepted": 3, "dropped": 0, "rejected": []}
    await flush(app)
    stored = await rows(kijko, session)
    assert [row["type"] for row in stored] == [e["type"] for e in batch]
    assert all(row["organization_id"] is None and row["user_id"] is None for row in stored)
    assert [row["persona"] for row in stored] == ["alex", None, "alex"]
    assert [row["properties"] for row in stored] == [e["properties"] for e in batch]
    assert stored[0]["occurred_at"] == datetime.fromisoformat(batch[0]["timestamp"])
    assert all(row["received_at"] is not None for row in stored)


async def test_the_background_writer_stores_without_being_asked(client: Any, kijko: Kijko) -> None:
    session = new_session()
    assert (await post(client, {"events": [event(session)]})).status_code == 202
    for _ in range(400):  # waits for the periodic writer (no flush() here); not a timing claim
        if await rows(kijko, session):
            break
        await asyncio.sleep(0.05)
    assert len(await rows(kijko, session)) == 1


async def test_stopping_the_app_writes_what_waits(kijko: Kijko, make_settings: Any) -> None:
    session = new_session()
    application = create_app(make_settings(analytics_flush_seconds=60), kijko=kijko)
    async with application.test_app():
        assert (await post(application.test_client(), {"events": [event(session)] * 3})).status_code == 202
        assert await rows(kijko, session) == []  # the writer's next tick is a minute away
    assert len(await rows(kijko, session)) == 3


async def test_an_app_that_starts_its_own_runtime_takes_and_writes_events(settings: Any, kijko: Kijko) -> None:
    # The ASGI-factory shape: the runtime starts in the app's own before-serving hook.
    session = new_session()
    application = create_app(settings)
    async with application.test_app():
        assert (await post(application.test_client(), {"events": [event(session)] * 2})).status_code == 202
    assert len(await rows(kijko, session)) == 2


async def test_a_full_buffer_drops_and_counts_never_grows(kijko: Kijko, make_settings: Any) -> None:
    session = new_session()
    application = create_app(make_settings(analytics_flush_seconds=60, analytics_buffer_max_events=100), kijko=kijko)
    async with application.test_app():
        client = application.test_client()
        answers = [await (await post(client, {"events": [event(session)] * 40})).get_json() for _ in range(3)]
        assert [(a["accepted"], a["dropped"]) for a in answers] == [(40, 0), (40, 0), (20, 20)]
        assert application.extensions[BUFFER].dropped == 20
        assert len(application.extensions[BUFFER]) == 100
    assert len(await rows(kijko, session)) == 100


async def test_a_valid_token_attributes_the_events(app: KijkoApp, client: Any, kijko: Kijko, alice: Account) -> None:
    session = new_session()
    response = await post(client, {"events": [event(session)]}, headers=alice.headers)
    assert response.status_code == 202
    await flush(app)
    [row] = await rows(kijko, session)
    assert (str(row["organization_id"]), str(row["user_id"])) == (alice.org_id, alice.user_id)


@pytest.mark.parametrize("authorization", ["Bearer not-a-token", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer a.b.c"])
async def test_an_invalid_token_is_ignored_and_the_events_kept_anonymously(
    app: KijkoApp, client: Any, kijko: Kijko, authorization: str
) -> None:
    session = new_session()
    response = await post(client, {"events": [event(session)]}, headers={"Authorization": authorization})
    assert response.status_code == 202
    await flush(app)
    [row] = await rows(kijko, session)
    assert row["organization_id"] is None and row["user_id"] is None


async def test_a_revoked_sessions_token_attributes_nothing(app: KijkoApp, client: Any, kijko: Kijko) -> None:
    account = await sign_up(client)
    assert (await client.post("/api/v1/auth/logout", headers=account.headers)).status_code in (200, 204)
    session = new_session()
    assert (await post(client, {"events": [event(session)]}, headers=account.headers)).status_code == 202
    await flush(app)
    [row] = await rows(kijko, session)
    assert row["organization_id"] is None and row["user_id"] is None


async def test_a_former_members_token_attributes_nothing(
    app: KijkoApp, client: Any, kijko: Kijko, alice: Account
) -> None:
    member = await add_member(kijko, alice.org_id, "member")
    async with system_session(kijko.system_db) as db:
        await db.execute("DELETE FROM kijko.memberships WHERE user_id = $1", UUID(member.user_id))
    session = new_session()
    assert (await post(client, {"events": [event(session)]}, headers=member.headers)).status_code == 202
    await flush(app)
    [row] = await rows(kijko, session)
    assert row["organization_id"] is None


async def test_bad_events_are_refused_one_by_one_and_the_rest_is_kept(app: KijkoApp, client: Any, kijko: Kijko) -> None:
    session = new_session()
    secret = "s3cr3t-value-in-a-bad-event"
    batch: list[Any] = [
        event(session),  # 0 kept
        event(session, "page_viewed"),  # 1 unknown type
        "not an object",  # 2
        event(session, persona="bob"),  # 3
        event(session, timestamp="yesterday"),  # 4
        event(session, timestamp="2026-11-29T10:00:00"),  # 5 no time zone
        event(session, timestamp=now_iso(timedelta(days=30 * -1))),  # 6 too old
        event(session, timestamp=now_iso(timedelta(days=1))),  # 7 too far ahead
        event(session, sessionId=""),  # 8
        event(session, sessionId="x" * 129),  # 9
        event(session, "conversion_signal", properties={"action": secret}),  # 10 unknown action
        event(session, "conversion_signal", properties={}),  # 11 action missing
        event(session, "ingestion_started", properties={"repo_count": "5"}),  # 12 strict count
        event(session, "ingestion_started", properties={"repo_count": -1}),  # 13
        event(session, properties={"padding": "x" * MAX_PROPERTIES_BYTES}),  # 14 oversize
        event(session, properties={f"k{i}": i for i in range(65)}),  # 15 too many keys
        event(session, properties={"note": "a\x00b"}),  # 16 NUL
        event(session, properties="text"),  # 17
        event(session, "persona_detected", properties={"persona": "maya", "confidence": "certain"}),  # 18
        event(session, "error_occurred", properties={"recoverable": "yes", "error_code": "E1"}),  # 19
        event(session, "persona_override", properties={"from_persona": "alex", "to_persona": "sam"}),  # 20 kept
    ]
    response = await post(client, {"events": batch})
    assert response.status_code == 202
    body = await response.get_json()
    assert body["accepted"] == 2 and body["dropped"] == 0
    rejected = {item["index"]: item for item in body["rejected"]}
    assert sorted(rejected) == list(range(1, 20))
    assert rejected[1]["code"] == "UNKNOWN_EVENT_TYPE" and rejected[1]["field"] == "type"
    assert {item["code"] for i, item in rejected.items() if i != 1} == {"VALIDATION_ERROR"}
    expected_fields = {
        3: "persona",
        4: "timestamp",
        5: "timestamp",
        6: "timestamp",
        7: "timestamp",
        8: "sessionId",
        9: "sessionId",
        10: "properties.action",
        11: "properties.action",
        12: "properties.repo_count",
        13: "properties.repo_count",
        14: "properties",
        15: "properties",
        16: "properties",
        17: "properties",
        18: "properties.confidence",
        19: "properties.recoverable",
    }
    assert {i: rejected[i]["field"] for i in expected_fields} == expected_fields
    assert all(item["message"] for item in body["rejected"])
    assert secret not in json.dumps(body)
    await flush(app)
    assert [row["type"] for row in await rows(kijko, session)] == ["project_creation_started", "persona_override"]


async def test_nan_in_properties_is_refused_per_event(app: KijkoApp, client: Any, kijko: Kijko) -> None:
    session = new_session()
    good = json.dumps(event(session))
    bad = json.dumps(event(session)).replace('"repo"', "NaN")
    response = await client.post(
        V1,
        data=f'{{"events": [{bad}, {good}]}}',
        headers={"Content-Type": "application/json"},
        scope_base={"client": (unique_address(), 1)},
    )
    body = await response.get_json()
    assert response.status_code == 202, body
    assert body["accepted"] == 1 and [(r["index"], r["field"]) for r in body["rejected"]] == [(0, "properties")]
    await flush(app)
    assert len(await rows(kijko, session)) == 1


async def test_an_event_that_grows_in_the_database_cannot_fail_its_batch(
    app: KijkoApp, client: Any, kijko: Kijko
) -> None:
    # 1e-300 is 6 characters as sent and 302 as jsonb writes it: within the intake's cap, over
    # the column's. That row is skipped; the others of the same write are stored.
    session = new_session()
    grows = event(session, "error_occurred", properties={"tiny": [1e-300] * 200})
    response = await post(client, {"events": [event(session), grows, event(session, "persona_override")]})
    assert (await response.get_json())["accepted"] == 3
    buffer = app.extensions[BUFFER]
    await flush(app)
    assert [row["type"] for row in await rows(kijko, session)] == ["project_creation_started", "persona_override"]
    assert buffer.failed_writes == 0 and len(buffer) == 0


async def test_more_than_fifty_events_refuse_the_batch(app: KijkoApp, client: Any, kijko: Kijko) -> None:
    session = new_session()
    response = await post(client, {"events": [event(session)] * 51})
    body = await response.get_json()
    assert response.status_code == 422 and body["code"] == "VALIDATION_ERROR" and body["field"] == "events"
    assert (await post(client, {"events": [event(session)] * 50})).status_code == 202
    await flush(app)
    assert len(await rows(kijko, session)) == 50


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        ('{"events": [', 400, "MALFORMED_JSON"),
        ("[]", 422, "VALIDATION_ERROR"),
        ('{"events": {}}', 422, "VALIDATION_ERROR"),
        ("{}", 422, "VALIDATION_ERROR"),
    ],
)
async def test_a_body_that_is_not_a_batch_is_refused(client: Any, data: str, status: int, code: str) -> None:
    response = await client.post(
        V1, data=data, headers={"Content-Type": "application/json"}, scope_base={"client": (unique_address(), 1)}
    )
    body = await response.get_json()
    assert (response.status_code, body["code"]) == (status, code)
    assert set(body) <= {"detail", "code", "message", "field", "details"}


async def test_an_empty_batch_is_fine(client: Any) -> None:
    response = await post(client, {"events": []})
    assert response.status_code == 202 and await response.get_json() == {"accepted": 0, "dropped": 0, "rejected": []}


async def test_a_body_over_the_limit_is_413(kijko: Kijko, make_settings: Any) -> None:
    application = create_app(make_settings(max_body_bytes=4096), kijko=kijko)
    async with application.test_app():
        session = new_session()
        response = await post(application.test_client(), {"events": [event(session, properties={"p": "x" * 3000})] * 3})
        assert response.status_code == 413 and (await response.get_json())["code"] == "PAYLOAD_TOO_LARGE"


# --- rate limit --------------------------------------------------------------------------------


@asynccontextmanager
async def limited_app(kijko: Kijko, make_settings: Any, per_minute: int) -> AsyncIterator[Any]:
    application = create_app(make_settings(analytics_rate_limit_per_minute=per_minute), kijko=kijko)
    async with application.test_app():
        yield application.test_client()


@pytest.mark.parametrize("path", PATHS)
async def test_the_intake_is_rate_limited_per_address(kijko: Kijko, make_settings: Any, path: str) -> None:
    async with limited_app(kijko, make_settings, 3) as client:
        peer, other = unique_address(), unique_address()
        session = new_session()
        for _ in range(3):
            assert (await post(client, {"events": [event(session)]}, path=path, peer=peer)).status_code == 202
        await assert_rate_limited(await post(client, {"events": [event(session)]}, path=path, peer=peer))
        # Another address has its own budget; a forged X-Forwarded-For from the same peer does
        # not (the address is the one the server resolved: only trusted proxies may set it).
        assert (await post(client, {"events": []}, path=path, peer=other)).status_code == 202
        forged = await post(client, {"events": []}, path=path, peer=peer, headers={"X-Forwarded-For": unique_address()})
        await assert_rate_limited(forged)


@pytest.mark.redis
async def test_the_intake_limit_is_shared_by_the_processes_through_redis(
    kijko: Kijko,
    make_settings: Any,
    redis_url: str,  # noqa: F811  (the fixture of tests/test_rate_limits.py, imported above)
) -> None:
    settings = make_settings(redis_url=redis_url, analytics_rate_limit_per_minute=3)
    peer = unique_address()
    async with with_redis(kijko, settings) as one, with_redis(kijko, settings) as two:
        first, second = create_app(settings, kijko=one), create_app(settings, kijko=two)
        async with first.test_app(), second.test_app():
            for client in (first.test_client(), second.test_client(), first.test_client()):
                assert (await post(client, {"events": []}, peer=peer)).status_code == 202
            await assert_rate_limited(await post(second.test_client(), {"events": []}, peer=peer))
            assert (await post(second.test_client(), {"events": []}, peer=unique_address())).status_code == 202


async def test_preflights_are_never_limited_and_allow_the_browser(kijko: Kijko, make_settings: Any) -> None:
    async with limited_app(kijko, make_settings, 1) as client:
        peer = unique_address()
        for path in PATHS * 3:
            response = await client.options(
                path,
                headers={
                    "Origin": "https://app.kijko.nl",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type",
                },
                scope_base={"client": (peer, 1)},
            )
            assert response.status_code == 200
            assert response.headers["Access-Control-Allow-Origin"] == "https://app.kijko.nl"
            assert "content-type" in response.headers["Access-Control-Allow-Headers"].lower()
        answer = await client.post(
            PATHS[0], json={"events": []}, headers={"Origin": "https://app.kijko.nl"}, scope_base={"client": (peer, 1)}
        )
        assert answer.status_code == 202
        assert answer.headers["Access-Control-Allow-Origin"] == "https://app.kijko.nl"


# --- retention ---------------------------------------------------------------------------------


async def insert(
    kijko: Kijko,
    *,
    session: str,
    org_id: str | None = None,
    user_id: str | None = None,
    type_: str = "project_creation_started",
    occurred_at: datetime | None = None,
    received_days_ago: int = 0,
    persona: str | None = None,
    properties: dict[str, Any] | None = None,
) -> None:
    """A stored event as the intake would write it (the system role), at a chosen time."""
    async with system_session(kijko.system_db) as db:
        await db.execute(
            "INSERT INTO kijko.analytics_events"
            " (organization_id, user_id, type, occurred_at, received_at, persona, session_id, properties)"
            " VALUES ($1, $2, $3, coalesce($4, now()), now() - make_interval(days => $5), $6, $7, $8)",
            UUID(org_id) if org_id else None,
            UUID(user_id) if user_id else None,
            type_,
            occurred_at,
            received_days_ago,
            persona,
            session,
            properties or {},
        )


async def test_the_sweeper_deletes_events_past_the_retention_only(kijko: Kijko, alice: Account) -> None:
    session = new_session()
    days = kijko.settings.analytics_retention_days
    await insert(kijko, session=session, received_days_ago=days + 1)
    await insert(kijko, session=session, org_id=alice.org_id, received_days_ago=days + 30)
    await insert(kijko, session=session, received_days_ago=days - 1)
    await insert(kijko, session=session, org_id=alice.org_id)
    report = await sweep(kijko)
    assert report.deleted["analytics"] >= 2
    left = await rows(kijko, session)
    assert len(left) == 2
    async with system_session(kijko.system_db, readonly=True) as db:
        ages = await db.fetch(
            "SELECT extract(day FROM now() - received_at)::int AS age FROM kijko.analytics_events"
            " WHERE session_id = $1 ORDER BY age",
            session,
        )
    assert [row["age"] for row in ages] == [0, days - 1]


# --- row-level security ------------------------------------------------------------------------


async def test_tenants_see_only_their_organizations_events(
    app: KijkoApp, client: Any, kijko: Kijko, alice: Account, bob: Account, attacker: asyncpg.Connection
) -> None:
    session = new_session()
    await post(client, {"events": [event(session)]}, headers=alice.headers)
    await post(client, {"events": [event(session)]}, headers=bob.headers)
    await post(client, {"events": [event(session)]})
    await flush(app)
    assert len(await rows(kijko, session)) == 3
    async with tenant_session(kijko.app_db, alice.identity, readonly=True) as db:
        seen = await db.fetch("SELECT organization_id FROM kijko.analytics_events WHERE session_id = $1", session)
    assert [str(row["organization_id"]) for row in seen] == [alice.org_id]
    # The app role without a tenant context sees nothing, and cannot write at all.
    assert await attacker.fetch("SELECT 1 FROM kijko.analytics_events WHERE session_id = $1", session) == []
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await attacker.execute(
            "INSERT INTO kijko.analytics_events (type, occurred_at, session_id) VALUES ('error_occurred', now(), 'x')"
        )


# --- summary -----------------------------------------------------------------------------------


async def db_today(kijko: Kijko) -> date:
    async with system_session(kijko.system_db, readonly=True) as db:
        today: date = await db.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date")
    return today


def at(day: date, minute: int = 1) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(minutes=minute)


async def test_the_summary_counts_the_organizations_events_only(
    client: Any, kijko: Kijko, alice: Account, bob: Account
) -> None:
    today = await db_today(kijko)
    s1, s2, s3 = new_session(), new_session(), new_session()
    org, user = alice.org_id, alice.user_id
    mine: list[dict[str, Any]] = [
        {"session": s1, "type_": "project_creation_started", "occurred_at": at(today), "persona": "alex"},
        {
            "session": s1,
            "type_": "conversion_signal",
            "occurred_at": at(today, 2),
            "persona": "alex",
            "properties": {"action": "copy_to_cursor"},
        },
        {
            "session": s2,
            "type_": "conversion_signal",
            "occurred_at": at(today - timedelta(days=2)),
            "properties": {"action": "copy_to_cursor"},
        },
        {
            "session": s2,
            "type_": "conversion_signal",
            "occurred_at": at(today - timedelta(days=6)),
            "persona": "sam",
            "properties": {"action": "invite_team"},
        },
        {
            "session": s3,
            "type_": "error_occurred",
            "occurred_at": at(today - timedelta(days=6), 1439),
            "persona": "maya",
            "user": user,
        },
        # Outside 7d, inside 30d:
        {"session": s3, "type_": "ingestion_started", "occurred_at": at(today - timedelta(days=7)), "persona": "maya"},
        {"session": s3, "type_": "ingestion_started", "occurred_at": at(today - timedelta(days=29)), "user": user},
        # Outside 30d:
        {"session": s3, "type_": "ingestion_started", "occurred_at": at(today - timedelta(days=30))},
    ]
    for item in mine:
        await insert(
            kijko,
            session=item["session"],
            org_id=org,
            user_id=item.get("user"),
            type_=item["type_"],
            occurred_at=item["occurred_at"],
            persona=item.get("persona"),
            properties=item.get("properties"),
        )
    # Another organization's and anonymous events, on the same days and sessions: never counted.
    for other in (bob.org_id, None):
        for offset in (0, 2, 6):
            await insert(
                kijko,
                session=s1,
                org_id=other,
                type_="conversion_signal",
                occurred_at=at(today - timedelta(days=offset)),
                properties={"action": "api_key"},
            )

    def expected(days: int) -> dict[str, Any]:
        first = today - timedelta(days=days - 1)
        inside = [item for item in mine if first <= item["occurred_at"].date() <= today]
        by_day = [
            {
                "date": (first + timedelta(days=n)).isoformat(),
                "count": sum(1 for item in inside if item["occurred_at"].date() == first + timedelta(days=n)),
            }
            for n in range(days)
        ]
        return {
            "period": f"{days}d",
            "from": first.isoformat(),
            "to": today.isoformat(),
            "totalEvents": len(inside),
            "sessions": len({item["session"] for item in inside}),
            "users": len({item["user"] for item in inside if item.get("user")}),
            "byType": {kind.value: sum(1 for item in inside if item["type_"] == kind.value) for kind in EventType},
            "byDay": by_day,
            "byPersona": {
                persona: sum(1 for item in inside if item.get("persona") == persona)
                for persona in ("alex", "maya", "sam")
            }
            | {"unknown": sum(1 for item in inside if item.get("persona") is None)},
            "conversions": {
                action.value: sum(
                    1
                    for item in inside
                    if item["type_"] == "conversion_signal" and item["properties"]["action"] == action.value
                )
                for action in ConversionAction
            },
        }

    for period, days in (("7d", 7), ("30d", 30), ("90d", 90)):
        response = await client.get(SUMMARY, query_string={"period": period}, headers=alice.headers)
        assert response.status_code == 200, await response.get_data(as_text=True)
        assert await response.get_json() == expected(days), period
    # Spot checks of the expectation itself (so a wrong helper cannot agree with wrong SQL).
    seven = expected(7)
    assert (seven["totalEvents"], seven["sessions"], seven["users"]) == (5, 3, 1)
    assert seven["conversions"]["copy_to_cursor"] == 2 and seven["conversions"]["api_key"] == 0
    assert [day["count"] for day in seven["byDay"]] == [2, 0, 0, 0, 1, 0, 2]
    default = await client.get(SUMMARY, headers=alice.headers)
    assert (await default.get_json())["period"] == "30d"


async def test_an_empty_organizations_summary_has_every_key_and_day(client: Any) -> None:
    owner = await sign_up(client)
    body = await (await client.get(SUMMARY, query_string={"period": "7d"}, headers=owner.headers)).get_json()
    assert body["totalEvents"] == 0 and len(body["byDay"]) == 7
    assert all(day["count"] == 0 for day in body["byDay"])
    assert set(body["byType"]) == {kind.value for kind in EventType} and set(body["byType"].values()) == {0}
    assert set(body["conversions"]) == {action.value for action in ConversionAction}
    assert body["byPersona"] == {"alex": 0, "maya": 0, "sam": 0, "unknown": 0}


@pytest.mark.parametrize(("role", "status"), [("admin", 200), ("member", 403), ("viewer", 403)])
async def test_only_owners_and_admins_read_the_summary(
    client: Any, kijko: Kijko, alice: Account, role: str, status: int
) -> None:
    caller = await add_member(kijko, alice.org_id, role)  # type: ignore[arg-type]
    response = await client.get(SUMMARY, headers=caller.headers)
    assert response.status_code == status
    if status == 403:
        assert (await response.get_json())["code"] == "FORBIDDEN"


@pytest.mark.parametrize("query", [{"period": "1y"}, {"period": ""}, {"period": "7D"}])
async def test_an_unknown_period_is_422(client: Any, alice: Account, query: dict[str, str]) -> None:
    response = await client.get(SUMMARY, query_string=query, headers=alice.headers)
    body = await response.get_json()
    assert (response.status_code, body["code"], body.get("field")) == (422, "VALIDATION_ERROR", "period")


async def test_the_summary_needs_a_token(client: Any) -> None:
    response = await client.get(SUMMARY)
    assert response.status_code == 401


async def test_a_failed_write_is_tried_once_more_then_dropped_and_counted() -> None:
    # A pool that was never connected: every write fails, as with the database down.
    unreachable = Database(f"postgresql://nobody@127.0.0.1:{free_port()}/nothing")
    buffer = EventBuffer(unreachable, capacity=100, flush_seconds=60)
    events = [check(i, event(new_session()), datetime.now(UTC)) for i in range(3)]
    assert all(isinstance(item, Event) for item in events)
    assert buffer.offer(events, None) == Offered(3, 0)  # type: ignore[arg-type]
    assert await buffer.flush() == 0
    assert (buffer.failed_writes, buffer.dropped, len(buffer)) == (1, 0, 3)  # kept for one more try
    assert buffer.offer(events[:1], None) == Offered(1, 0)  # type: ignore[arg-type]
    assert await buffer.flush() == 0
    # The three failed twice and are gone; the newer one has failed once and waits.
    assert (buffer.failed_writes, buffer.dropped, len(buffer)) == (2, 3, 1)
