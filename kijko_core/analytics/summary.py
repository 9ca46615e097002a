"""The organization's summary: ``GET /api/v1/analytics/summary?period=`` (owners, admins)."""

from __future__ import annotations

from datetime import date
from typing import Final, Literal

from pydantic import Field

from kijko_core.analytics import store
from kijko_core.analytics.events import PERSONAS, ConversionAction, EventType
from kijko_core.db.session import TenantSession
from kijko_core.errors import Forbidden
from kijko_core.permissions import sees_everything
from kijko_core.wire import WireInput, WireModel

Period = Literal["7d", "30d", "90d"]
DAYS: Final[dict[str, int]] = {"7d": 7, "30d": 30, "90d": 90}
#: The key of events sent without a persona.
NO_PERSONA: Final = "unknown"


class SummaryQuery(WireInput):
    period: Period = "30d"


class DayCount(WireModel):
    date: date
    count: int


class AnalyticsSummary(WireModel):
    """Every key of ``byType``, ``byPersona`` and ``conversions`` is present (0 when none);
    ``byDay`` has every UTC day of the period, oldest first."""

    period: Period
    #: The first and last UTC day of the period (the last is today).
    from_date: date = Field(alias="from")
    to_date: date = Field(alias="to")
    total_events: int
    #: Distinct browser sessions (``sessionId``) and signed-in users among the events.
    sessions: int
    users: int
    by_type: dict[str, int]
    by_day: list[DayCount]
    by_persona: dict[str, int]
    conversions: dict[str, int]


async def summary(db: TenantSession, period: Period) -> AnalyticsSummary:
    """The caller's organization's events of the period; owners and admins only."""
    # The same roles that see everything in the organization (ARCHITECTURE §3: owners, admins).
    if not sees_everything(db.principal):
        raise Forbidden("Only the organization's owners and admins can read its analytics")
    row = await store.summary(db, DAYS[period])
    by_type, by_persona, conversions = row["by_type"], row["by_persona"], row["conversions"]
    return AnalyticsSummary(
        period=period,
        from_date=row["first"],
        to_date=row["last"],
        total_events=row["total"],
        sessions=row["sessions"],
        users=row["users"],
        by_type={kind.value: by_type.get(kind.value, 0) for kind in EventType},
        by_day=[DayCount(date=date.fromisoformat(day["date"]), count=day["count"]) for day in row["by_day"]],
        by_persona={persona: by_persona.get(persona, 0) for persona in (*PERSONAS, NO_PERSONA)},
        conversions={action.value: conversions.get(action.value, 0) for action in ConversionAction},
    )
