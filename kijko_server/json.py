"""JSON on the wire: ISO-8601 UTC datetimes with ``Z``, UUIDs and Decimals as strings."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from quart.json.provider import DefaultJSONProvider


def iso_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class KijkoJSONProvider(DefaultJSONProvider):
    sort_keys = False
    compact = True

    @staticmethod
    def default(value: Any) -> Any:
        if isinstance(value, datetime):
            return iso_utc(value)
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, (UUID, Decimal)):
            return str(value)
        return DefaultJSONProvider.default(value)
