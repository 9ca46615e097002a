"""Realtime over Socket.IO (contract §4, ARCHITECTURE §5, docs/realtime.md) with a real uvicorn
server and python-socketio's AsyncClient: refused handshakes with each code, rooms, ingestion
events in order, member events to whoever may read the project, the token's lifecycle (warning,
reauth, expiry) and access lost while connected (removal, logout)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any
from uuid import UUID

import httpx
import pytest
import socketio

from kijko_core import events
from kijko_core.config import SecretUrl, Settings
from kijko_core.runtime import Kijko
from kijko_server.realtime import SOCKETIO_PATH, create_asgi_app
from kijko_server.realtime.access import Grant, Verdict, recheck
from tests.conftest import Account, sign_up
from tests.invitations import joined
from tests.memberships import add_member, join
from tests.projects import created
from tests.realtime import Listener, listening, serving, until, uvicorn_serving
from tests.test_errors import capture_logs, log_lines
from tests.tokens import forge

pytestmark = pytest.mark.slow

FAST = {"realtime_recheck_seconds": 0.5}
METRICS = {
    "filesProcessed": 0,
    "totalFiles": 3,
    "tokensProcessed": 0,
    "bytesProcessed": 0,
    "chunksCreated": 0,
    "errorsEncountered": 0,
}


async def refusal(url: str, *, token: str | None, project_id: str | None = None, **auth: Any) -> dict[str, Any]:
    listener = Listener()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await listener.connect(url, token=token, project_id=project_id, **auth)
    assert isinstance(listener.refusal, dict), listener.refusal
    return listener.refusal


def refused_with(found: dict[str, Any], code: str, message: str | None = None) -> None:
    assert found["message"] == code, found
    assert found["data"]["code"] == code
    if message is not None:
        assert found["data"]["message"] == message


async def test_each_refusal_has_the_contract_code_and_is_logged_without_the_token(
    kijko: Kijko, client: Any, alice: Account, bob: Account
) -> None:
    mine = await created(client, alice, "Mine")
    theirs = await created(client, bob, "Theirs")
    expired = await forge(kijko, alice.access_token, exp=int(time.time()) - 120)
    logs = capture_logs("info")
    async with serving(kijko) as served:
        url = served.url
        refused_with(await refusal(url, token=None), "NO_TOKEN", "Authentication token is required")
        refused_with(await refusal(url, token="  "), "NO_TOKEN")
        refused_with(
            await refusal(url, token=alice.access_token, project_id=""), "NO_PROJECT_ID", "Project ID is required"
        )
        # A client that says it connects for the ingestion channel must name the project.
        refused_with(await refusal(url, token=alice.access_token, channel="ingestion"), "NO_PROJECT_ID")
        refused_with(
            await refusal(url, token="not-a-jwt", project_id=mine["id"]), "INVALID_TOKEN", "Invalid or expired token"
        )
        refused_with(await refusal(url, token=expired, project_id=mine["id"]), "INVALID_TOKEN")
        # Another organization's project, an unknown one and a malformed id: the same answer.
        for other in (theirs["id"], str(uuid.uuid4()), "nope"):
            refused_with(await refusal(url, token=alice.access_token, project_id=other), "ACCESS_DENIED")
        # Accepted: the token alone (user and organization rooms), and with a readable project.
        async with listening(url, token=alice.access_token):
            pass
        async with listening(url, token=alice.access_token, project_id=mine["id"]):
            pass
    lines = [line for line in log_lines(logs) if line.get("event") == "realtime_refused"]
    assert [line["reason"] for line in lines] == [
        "NO_TOKEN",
        "NO_TOKEN",
        "NO_PROJECT_ID",
        "NO_PROJECT_ID",
        "INVALID_TOKEN",
        "INVALID_TOKEN",
        "ACCESS_DENIED",
        "ACCESS_DENIED",
        "ACCESS_DENIED",
    ]
    assert all(line["sid"] and line["address"] == "127.0.0.1" for line in lines)
    assert lines[-3]["project_id"] == theirs["id"]
    assert alice.access_token not in logs.getvalue() and expired not in logs.getvalue()


async def test_a_revoked_session_or_a_former_member_is_refused(kijko: Kijko, client: Any, alice: Account) -> None:
    viewer = await add_member(kijko, alice.org_id, "viewer")
    async with serving(kijko) as served:
        assert (await client.post("/api/v1/auth/logout", headers=viewer.headers)).status_code == 200
        refused_with(await refusal(served.url, token=viewer.access_token), "INVALID_TOKEN")
        member = await add_member(kijko, alice.org_id, "member")
        async with kijko.system_db.connection() as handle:
            await handle.raw_connection.execute(
                "DELETE FROM kijko.memberships WHERE organization_id = $1 AND user_id = $2",
                UUID(alice.org_id),
                UUID(member.user_id),
            )
        refused_with(await refusal(served.url, token=member.access_token), "ACCESS_DENIED")


async def test_ingestion_events_reach_the_projects_room_in_order_and_nobody_else(
    kijko: Kijko, client: Any, alice: Account
) -> None:
    project = await created(client, alice, "Watched")
    other = await created(client, alice, "Other")
    room = f"ingestion:{project['id']}"
    async with (
        serving(kijko) as served,
        listening(served.url, token=alice.access_token, project_id=project["id"]) as watcher,
        listening(served.url, token=alice.access_token, project_id=other["id"]) as elsewhere,
        listening(served.url, token=alice.access_token) as no_project,
    ):
        assert watcher.events == []  # no run yet: no snapshot
        pid = project["id"]
        await events.send(
            room=room,
            event="phase_started",
            data={
                "projectId": pid,
                "phase": "repository_fetch",
                "message": "Fetching",
                "startTime": "2026-11-28T00:00:00Z",
                "totalPhases": 5,
                "currentPhaseIndex": 0,
            },
        )
        for percent in (10, 50, 90):
            await events.send(
                room=room,
                event="progress_update",
                data={
                    "projectId": pid,
                    "phase": "repository_fetch",
                    "progressPercent": percent,
                    "message": f"{percent}%",
                    "metrics": {**METRICS, "filesProcessed": percent},
                },
            )
        await events.send(
            room=room,
            event="ingestion_complete",
            data={
                "projectId": pid,
                "success": True,
                "totalDurationSeconds": 1.5,
                "finalMetrics": METRICS,
                "project": {"id": pid, "name": "Watched"},
            },
        )
        await watcher.received("ingestion_complete")
        assert [name for name, _ in watcher.events] == [
            "phase_started",
            "progress_update",
            "progress_update",
            "progress_update",
            "ingestion_complete",
        ]
        assert [data["progressPercent"] for data in watcher.named("progress_update")] == [10, 50, 90]
        assert watcher.named("progress_update")[0]["metrics"]["filesProcessed"] == 10
        # A marker sent to every room of the others arrives after anything meant for them.
        await events.send(room=f"org:{alice.org_id}", event="marker", data={})
        await elsewhere.received("marker")
        await no_project.received("marker")
        assert [name for name, _ in elsewhere.events] == ["marker"]
        assert [name for name, _ in no_project.events] == ["marker"]


async def test_member_events_reach_the_organization_of_a_shared_project_and_only_the_readers_of_a_private_one(
    kijko: Kijko, client: Any, alice: Account, bob: Account
) -> None:
    shared = await created(client, alice, "Shared", privacy="shared")
    private = await created(client, alice, "Private")
    colleague = await add_member(kijko, alice.org_id, "member", first_name="Colleague")
    admin = await add_member(kijko, alice.org_id, "admin", first_name="Admin")
    async with (
        serving(kijko) as served,
        listening(served.url, token=alice.access_token) as owner,
        listening(served.url, token=colleague.access_token) as member,
        listening(served.url, token=admin.access_token) as org_admin,
        listening(served.url, token=bob.access_token) as stranger,
    ):
        added = await client.post(
            f"/api/v1/projects/{shared['id']}/members",
            json={"email": "new@example.com", "role": "viewer"},
            headers=alice.headers,
        )
        assert added.status_code == 201
        for listener in (owner, member, org_admin):
            [event] = await listener.received("project_user:added")
            assert event["project_id"] == shared["id"] and event["email"] == "new@example.com"
            [activity] = await listener.received("activity:new")
            assert activity["projectId"] == shared["id"] and activity["type"] == "permission"
        added = await client.post(
            f"/api/v1/projects/{private['id']}/members",
            json={"email": "secret@example.com", "role": "viewer"},
            headers=alice.headers,
        )
        assert added.status_code == 201
        for listener in (owner, org_admin):
            await listener.received("project_user:added", 2)
            assert listener.named("project_user:added")[1]["email"] == "secret@example.com"
        # The marker went out after the private project's events: whatever the colleague and
        # the stranger would have got is there by now.
        await events.send(room=f"org:{alice.org_id}", event="marker", data={})
        await events.send(room=f"org:{bob.org_id}", event="marker", data={})
        await member.received("marker")
        await stranger.received("marker")
        assert [e for e in member.named("project_user:added") if e["project_id"] == private["id"]] == []
        assert [name for name, _ in stranger.events] == ["marker"]


async def test_token_refresh_required_then_reauth_keeps_the_connection_past_the_old_expiry(
    kijko: Kijko, client: Any, alice: Account
) -> None:
    project = await created(client, alice, "Long watch")
    expires = int(time.time()) + 3
    short = await forge(kijko, alice.access_token, exp=expires)
    async with (
        serving(kijko) as served,
        listening(served.url, token=short, project_id=project["id"]) as watcher,
    ):
        [warning] = await watcher.received("token_refresh_required")  # expires within the lead
        assert warning["reason"] == "Token expiring soon"
        assert warning["expiresAt"] == time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(expires)).replace(
            "+00:00", "Z"
        )
        answer = await watcher.client.call("reauth", {"token": alice.access_token}, timeout=10)
        assert answer["ok"] is True and answer["expiresAt"] > warning["expiresAt"]
        await until(lambda: time.time() > expires + 1.5, what="the first token's expiry", within=10)
        await events.send(room=f"ingestion:{project['id']}", event="marker", data={})
        await watcher.received("marker")
        assert watcher.disconnected is None and watcher.named("disconnect_reason") == []


async def test_reauth_with_another_users_or_another_organizations_token_closes_the_connection(
    kijko: Kijko, client: Any, alice: Account, bob: Account
) -> None:
    await join(kijko, alice, bob.org_id, "member")
    elsewhere = await forge(kijko, alice.access_token, org_id=bob.org_id)
    async with serving(kijko) as served:
        for token in (bob.access_token, elsewhere, "garbage"):
            async with listening(served.url, token=alice.access_token) as watcher:
                answer = await watcher.client.call("reauth", {"token": token}, timeout=10)
                assert answer == {"ok": False, "code": "INVALID_TOKEN", "message": "Invalid or expired token"}
                await watcher.closed()
                assert watcher.named("disconnect_reason") == [
                    {"code": "INVALID_TOKEN", "message": "Invalid or expired token"}
                ]


async def test_at_expiry_without_reauth_the_server_disconnects_with_invalid_token(kijko: Kijko, alice: Account) -> None:
    expires = int(time.time()) + 2
    short = await forge(kijko, alice.access_token, exp=expires)
    async with serving(kijko) as served, listening(served.url, token=short) as watcher:
        await watcher.closed(within=10)
        assert time.time() >= expires - 0.05
        assert watcher.named("token_refresh_required")
        assert watcher.named("disconnect_reason") == [{"code": "INVALID_TOKEN", "message": "Invalid or expired token"}]
        assert not served.realtime.connections


async def test_a_removed_member_stops_receiving_the_projects_events_within_seconds(
    kijko: Kijko, client: Any, alice: Account
) -> None:
    project = await created(client, alice, "Team work")
    dev = await add_member(kijko, alice.org_id, "member", first_name="Dev")
    member = await joined(client, kijko, alice, project["id"], dev, "developer")
    room = f"ingestion:{project['id']}"
    async with (
        serving(kijko, **FAST) as served,
        listening(served.url, token=dev.access_token, project_id=project["id"]) as watcher,
    ):
        await events.send(room=room, event="marker", data={"n": 1})
        await watcher.received("marker")
        removed = await client.delete(f"/api/v1/projects/{project['id']}/members/{member['id']}", headers=alice.headers)
        assert removed.status_code == 200, await removed.get_data(as_text=True)
        started = time.monotonic()
        await watcher.closed(within=5)
        assert time.monotonic() - started < 3
        assert watcher.named("disconnect_reason") == [
            {"code": "ACCESS_DENIED", "message": "You do not have access to this project"}
        ]
        await events.send(room=room, event="marker", data={"n": 2})
        assert not served.realtime.connections
        refused_with(await refusal(served.url, token=dev.access_token, project_id=project["id"]), "ACCESS_DENIED")
        assert watcher.named("marker") == [{"n": 1}]


async def test_a_logged_out_session_stops_receiving_within_seconds(kijko: Kijko, client: Any) -> None:
    carol = await sign_up(client, first_name="Carol")
    async with serving(kijko, **FAST) as served, listening(served.url, token=carol.access_token) as watcher:
        assert (await client.post("/api/v1/auth/logout", headers=carol.headers)).status_code == 200
        started = time.monotonic()
        await watcher.closed(within=5)
        assert time.monotonic() - started < 3
        assert watcher.named("disconnect_reason") == [{"code": "INVALID_TOKEN", "message": "Invalid or expired token"}]


async def test_a_thousand_connections_get_their_verdicts_in_one_recheck(
    kijko: Kijko, client: Any, alice: Account, bob: Account
) -> None:
    """1,000 connections of mixed verdicts checked in one statement, each with its own verdict
    (what it costs is measured, not asserted here: docs/realtime.md)."""
    project = await created(client, alice, "Busy")
    private = await created(client, bob, "Bob's")
    a, b = alice.identity, bob.identity
    grants = [
        Grant(a.user_id, a.org_id, a.session_id, UUID(project["id"])),
        Grant(a.user_id, a.org_id, a.session_id, None),
        Grant(a.user_id, a.org_id, a.session_id, UUID(private["id"])),  # another org's
        Grant(a.user_id, a.org_id, "no-such-session", None),
        Grant(b.user_id, a.org_id, b.session_id, None),  # not a member there
    ] * 200
    verdicts = await recheck(kijko.system_db, grants)
    assert verdicts[:5] == [
        Verdict.OK,
        Verdict.OK,
        Verdict.NO_PROJECT_ACCESS,
        Verdict.SESSION_ENDED,
        Verdict.NOT_A_MEMBER,
    ]
    assert verdicts == verdicts[:5] * 200


async def test_socketio_answers_only_the_configured_cors_origins(kijko: Kijko) -> None:
    async with serving(kijko, cors_origins=["https://app.example"]) as served:
        url = f"{served.url}{SOCKETIO_PATH}/?EIO=4&transport=polling"
        async with httpx.AsyncClient() as http:
            good = await http.get(url, headers={"Origin": "https://app.example"})
            bad = await http.get(url, headers={"Origin": "https://evil.example"})
            api = await http.get(f"{served.url}/health")
        assert good.status_code == 200 and good.headers["access-control-allow-origin"] == "https://app.example"
        assert bad.status_code == 400
        assert api.status_code == 200  # everything else is still the Quart app


async def test_a_redis_that_is_down_costs_other_processes_events_not_this_ones(kijko: Kijko, alice: Account) -> None:
    from tests.net import free_port

    async with (
        serving(kijko, redis_url=SecretUrl(f"redis://127.0.0.1:{free_port()}/0")) as served,
        listening(served.url, token=alice.access_token) as watcher,
    ):
        sent = await events.send(room=f"user:{alice.user_id}", event="marker", data={"at": "x"})
        assert sent.event == "marker"
        await watcher.received("marker")
        # The failed publish was logged; the server goes on accepting.
        async with listening(served.url, token=alice.access_token):
            pass


async def test_a_member_removed_from_the_organization_is_disconnected_within_seconds(
    kijko: Kijko, client: Any, alice: Account
) -> None:
    member = await add_member(kijko, alice.org_id, "member")
    async with serving(kijko, **FAST) as served, listening(served.url, token=member.access_token) as watcher:
        removed = await client.delete(f"/api/v1/organizations/current/members/{member.user_id}", headers=alice.headers)
        assert removed.status_code in (200, 204), await removed.get_data(as_text=True)
        await watcher.closed(within=5)
        assert watcher.named("disconnect_reason") == [
            {"code": "ACCESS_DENIED", "message": "You are not a member of this organization"}
        ]


async def test_the_asgi_factory_serves_socketio_around_an_app_with_its_own_runtime(
    settings: Settings, alice: Account
) -> None:
    async with (
        uvicorn_serving(create_asgi_app(settings)) as url,
        listening(url, token=alice.access_token) as watcher,
    ):
        await events.send(room=f"user:{alice.user_id}", event="marker", data={"n": 1})
        assert await watcher.received("marker") == [{"n": 1}]
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/health")).status_code == 200


async def test_connections_per_user_are_capped_and_refusals_take_no_slot(
    kijko: Kijko, client: Any, alice: Account, bob: Account
) -> None:
    """A user holds at most KIJKO_REALTIME_MAX_CONNECTIONS_PER_USER connections to one API
    process (decision 0097); a refused handshake holds none; a closed one frees its slot;
    other users are not affected; the refusal is logged without the token."""
    theirs = await created(client, bob, "Theirs")
    logs = capture_logs("info")
    async with serving(kijko, realtime_max_connections_per_user=2) as served:
        for _ in range(3):  # refused for the project: no slot kept
            refused_with(await refusal(served.url, token=alice.access_token, project_id=theirs["id"]), "ACCESS_DENIED")
        async with listening(served.url, token=alice.access_token), listening(served.url, token=alice.access_token):
            refused_with(
                await refusal(served.url, token=alice.access_token),
                "TOO_MANY_CONNECTIONS",
                "Too many connections for this user; close some and retry",
            )
            async with listening(served.url, token=bob.access_token):
                pass
        await until(lambda: not served.realtime.connections, what="the server to see both closes")
        async with listening(served.url, token=alice.access_token), listening(served.url, token=alice.access_token):
            pass
    reasons = [line["reason"] for line in log_lines(logs) if line.get("event") == "realtime_refused"]
    assert reasons == ["ACCESS_DENIED"] * 3 + ["TOO_MANY_CONNECTIONS"]
    assert alice.access_token not in logs.getvalue()


async def test_a_flood_of_reauths_is_checked_one_at_a_time(kijko: Kijko, alice: Account) -> None:
    """Each reauth costs a token check and a database session: a connection's reauths
    overlapping the one being checked are answered at once, without either."""
    async with serving(kijko) as served, listening(served.url, token=alice.access_token) as watcher:
        answers = await asyncio.gather(
            *(watcher.client.call("reauth", {"token": alice.access_token}, timeout=10) for _ in range(30))
        )
        assert {answer.get("code") for answer in answers if not answer["ok"]} == {"REAUTH_IN_PROGRESS"}
        assert 1 <= sum(answer["ok"] for answer in answers) < 30
        # Still connected, and a later reauth is checked as usual.
        answer = await watcher.client.call("reauth", {"token": alice.access_token}, timeout=10)
        assert answer["ok"] is True and watcher.disconnected is None


async def test_an_accepted_connection_logs_the_parsed_project_id_not_the_clients_text(
    kijko: Kijko, client: Any, alice: Account
) -> None:
    """``projectId`` is parsed after strip(): padding (or the ``urn:uuid:`` form) is accepted
    but must not reach the log as sent (a refused one is cut to 64 characters)."""
    project = await created(client, alice, "Padded")
    logs = capture_logs("info")
    padded = "%20" * 2000 + f"urn:uuid:{project['id']}"
    async with serving(kijko) as served, listening(served.url, token=alice.access_token, project_id=padded):
        pass
    (line,) = [line for line in log_lines(logs) if line.get("event") == "realtime_connected"]
    assert line["project_id"] == project["id"]
