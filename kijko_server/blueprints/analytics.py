"""Contract §2.7 and §3.9: the browser's analytics events, and the organization's summary.

``POST /api/analytics/events`` (the live frontend's path, without ``/v1``) and its ``/api/v1``
twin do the same: public, rate-limited per client address, answered 202 as soon as
the events are checked and handed to the buffer (kijko_core/analytics/intake.py) — nothing
slow happens in the request. The buffer and its writer are made by the first request and
written out when the app stops.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field
from quart import Blueprint, current_app
from quart_schema import validate_querystring, validate_request

from kijko_core.analytics.events import EventBatch, Rejected, check_batch
from kijko_core.analytics.intake import EventBuffer
from kijko_core.analytics.summary import AnalyticsSummary, SummaryQuery, summary
from kijko_core.config import Settings
from kijko_core.wire import WireModel
from kijko_server.openapi import responds
from kijko_server.ratelimits import Limit, by_client_address, rate_limit
from kijko_server.responses import validate_response
from kijko_server.security import optional_identity, public
from kijko_server.uow import TENANT_ERRORS, runtime, tenant

#: Where the app keeps its buffer (``app.extensions``; tests flush it from there).
BUFFER = "kijko.analytics"


class IntakeResult(WireModel):
    """What a batch came to. The browser ignores it (fire-and-forget); it is for other clients
    and for debugging. ``dropped``: accepted but not kept, the server's buffer being full."""

    accepted: int
    dropped: int
    rejected: list[Rejected] = Field(max_length=50)


def analytics_blueprint(settings: Settings) -> Blueprint:
    bp = Blueprint("analytics", __name__)
    per_address = Limit("address", settings.analytics_rate_limit_per_minute, 60, by_client_address)

    def buffer_of_this_app() -> EventBuffer:
        # Made on first use, not before serving: an app that starts its own runtime does so
        # in its own before-serving hook, which runs after the blueprints' ones.
        buffer: EventBuffer | None = current_app.extensions.get(BUFFER)
        if buffer is None:
            buffer = current_app.extensions[BUFFER] = EventBuffer(
                runtime().system_db,
                capacity=settings.analytics_buffer_max_events,
                flush_seconds=settings.analytics_flush_seconds,
            )
            buffer.start()
        return buffer

    @bp.after_app_serving
    async def analytics_stop() -> None:
        # Runs before the app's own runtime stops (registered earlier): the pool is still open.
        buffer: EventBuffer | None = current_app.extensions.pop(BUFFER, None)
        if buffer is not None:
            await buffer.stop()

    async def take(data: EventBatch) -> tuple[IntakeResult, int]:
        accepted, rejected = check_batch(data.events, datetime.now(UTC))
        who = await optional_identity() if accepted else None
        offered = buffer_of_this_app().offer(accepted, who)
        return IntakeResult(accepted=offered.accepted, dropped=offered.dropped, rejected=rejected), 202

    # Two views, not one view on two rules: OpenAPI needs an operation id per path. Each path
    # has its own rate-limit budget (the browser only ever uses one of them).
    @bp.post("/api/v1/analytics/events")
    @public
    @responds()
    @rate_limit(per_address)
    @validate_request(EventBatch)
    @validate_response(IntakeResult, 202)
    async def analytics_events(data: EventBatch) -> tuple[IntakeResult, int]:
        """Take a batch of analytics events (≤ 50): each is checked on its own, a refused one
        is listed with its index and the others are kept. Anonymous; a valid Bearer token
        attributes the events to its user and organization (an invalid one is ignored)."""
        return await take(data)

    @bp.post("/api/analytics/events")
    @public
    @responds()
    @rate_limit(per_address)
    @validate_request(EventBatch)
    @validate_response(IntakeResult, 202)
    async def analytics_events_unversioned(data: EventBatch) -> tuple[IntakeResult, int]:
        """The same as ``POST /api/v1/analytics/events``, at the path the live frontend posts
        to (contract §2.7, §5.1 row 1)."""
        return await take(data)

    @bp.get("/api/v1/analytics/summary")
    @responds(*TENANT_ERRORS)
    @validate_querystring(SummaryQuery)
    @validate_response(AnalyticsSummary)
    async def analytics_summary(query_args: SummaryQuery) -> AnalyticsSummary:
        """Aggregates of the organization's events over the period (UTC days): counts by type,
        by day (every day, oldest first), by persona, distinct sessions and users, and
        conversion actions. Owners and admins only."""
        async with tenant(readonly=True) as db:
            return await summary(db, query_args.period)

    return bp
