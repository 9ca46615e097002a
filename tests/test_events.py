"""The events port (decision 0061): published in a session, delivered only after it commits."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from kijko_core import events
from kijko_core.db.session import tenant_session
from kijko_core.runtime import Kijko
from tests.conftest import Account


class Failing(Exception):
    pass


async def test_an_event_is_delivered_after_commit_and_never_after_a_rollback(kijko: Kijko, alice: Account) -> None:
    port = events.port()
    assert isinstance(port, events.InProcessEvents)
    room = f"project:{uuid.uuid4()}"
    async with tenant_session(kijko.app_db, alice.identity) as db:
        events.publish(db, room=room, event="project_user:added", data={"n": 1})
        events.publish(db, room=room, event="activity:new", data={"n": 2})
        assert port.recorded(room) == []  # not before the commit
    assert [(e.event, e.data) for e in port.recorded(room)] == [
        ("project_user:added", {"n": 1}),
        ("activity:new", {"n": 2}),
    ]
    with pytest.raises(Failing):
        async with tenant_session(kijko.app_db, alice.identity) as db:
            events.publish(db, room=room, event="project_user:removed", data={})
            raise Failing
    assert [e.event for e in port.recorded(room)] == ["project_user:added", "activity:new"]


async def test_a_failing_subscriber_does_not_fail_the_change_or_other_subscribers(kijko: Kijko, alice: Account) -> None:
    port = events.InProcessEvents(capacity=3)
    previous = events.use(port)
    heard: list[Any] = []

    async def broken(event: events.Event) -> None:
        raise RuntimeError("listener down")

    async def listening(event: events.Event) -> None:
        heard.append(event.data)

    try:
        port.subscribe(broken)
        stop = port.subscribe(listening)
        room = f"org:{uuid.uuid4()}"
        async with tenant_session(kijko.app_db, alice.identity) as db:
            for n in range(5):
                events.publish(db, room=room, event="activity:new", data={"n": n})
        assert heard == [{"n": n} for n in range(5)]
        assert [e.data["n"] for e in port.recorded(room)] == [2, 3, 4]  # bounded
        stop()
        async with tenant_session(kijko.app_db, alice.identity) as db:
            events.publish(db, room=room, event="activity:new", data={"n": 5})
        assert len(heard) == 5
    finally:
        events.use(previous)


@pytest.mark.parametrize("room", ["project:", "project:x", "team:00000000-0000-0000-0000-000000000000", ""])
async def test_rooms_are_named_by_kind_and_id(kijko: Kijko, alice: Account, room: str) -> None:
    async with tenant_session(kijko.app_db, alice.identity, readonly=True) as db:
        with pytest.raises(ValueError, match="room"):
            events.publish(db, room=room, event="activity:new", data={})


async def test_send_delivers_at_once_and_a_failing_port_does_not_raise() -> None:
    port = events.InProcessEvents()
    previous = events.use(port)
    room = f"ingestion:{uuid.uuid4()}"
    try:
        await events.send(room=room, event="progress_update", data={"progressPercent": 40})
        assert [(e.event, e.data) for e in port.recorded(room)] == [("progress_update", {"progressPercent": 40})]

        class Down:
            async def deliver(self, event: events.Event) -> None:
                raise ConnectionError("transport down")

        events.use(Down())
        sent = await events.send(room=room, event="progress_update", data={})  # logged, not raised
        assert sent.room == room
        with pytest.raises(ValueError, match="room"):
            await events.send(room="ingestion:x", event="progress_update", data={})
    finally:
        events.use(previous)
