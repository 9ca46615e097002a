"""Exporting executions as CSV or JSON (contract §2.6 ``/executions/export``;
docs/execution-history.md).

The rows are the filtered executions, newest first, at most ``EXPORT_MAX`` of them (the
answer says when more matched). Both formats carry the contract's ten columns. CSV: a header
row, every cell double-quoted with quotes doubled, lines ended by CRLF (RFC 4180). A cell a
spreadsheet would read as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage
return) is prefixed with ``'`` (decision 0113); the JSON export is data for programs and stays
verbatim.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any, Final, Literal

from kijko_core import prices
from kijko_core.db import sql
from kijko_core.executions.models import ExecutionFilters, tokens_used
from kijko_core.executions.queries import FILTERS, Db, filter_args
from kijko_core.wire import WireModel

#: Most executions one export holds.
EXPORT_MAX: Final = 10_000
COLUMNS: Final[tuple[str, ...]] = (
    "id",
    "skillId",
    "skillName",
    "executionType",
    "status",
    "tokensUsed",
    "durationMs",
    "costCents",
    "executedAt",
    "completedAt",
)
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")

_ROWS = sql.compose(
    "SELECT e.id, e.skill_id, COALESCE(s.name, e.snapshot ->> 'skillName') AS skill_name, e.execution_type,"
    " e.status, e.prompt_tokens, e.completion_tokens, e.duration_ms, e.cost, e.executed_at, e.completed_at"
    "\nFROM kijko.skill_executions e"
    "\nLEFT JOIN kijko.skills s ON s.organization_id = e.organization_id AND s.id = e.skill_id"
    "\nWHERE {filters}\nORDER BY e.executed_at DESC, e.id DESC\nLIMIT $7",
    filters=FILTERS,
)
_TODAY = "SELECT (now() AT TIME ZONE 'UTC')::date"


class ExportQuery(ExecutionFilters):
    """The list's filters (``limit``/``offset`` are not used: an export starts at the newest)
    and the format."""

    format: Literal["csv", "json"] = "json"


class Export(WireModel):
    data: str
    filename: str
    #: Beyond the contract: how many executions ``data`` holds, and whether more matched
    #: than one export holds (``EXPORT_MAX``; narrow the dates to get the rest).
    row_count: int
    truncated: bool


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _record(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "skillId": None if row["skill_id"] is None else str(row["skill_id"]),
        "skillName": row["skill_name"],
        "executionType": row["execution_type"],
        "status": row["status"],
        "tokensUsed": tokens_used(row["prompt_tokens"], row["completion_tokens"]),
        "durationMs": row["duration_ms"],
        "costCents": None if row["cost"] is None else prices.cents(row["cost"]),
        "executedAt": _iso(row["executed_at"]),
        "completedAt": _iso(row["completed_at"]),
    }


def csv_cell(value: Any) -> str:
    """One CSV cell: always quoted, quotes doubled, null empty, formulas defused with ``'``."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START):
        text = "'" + text
    return '"' + text.replace('"', '""') + '"'


def to_csv(records: list[dict[str, Any]]) -> str:
    lines = [",".join(csv_cell(column) for column in COLUMNS)]
    lines += [",".join(csv_cell(record[column]) for column in COLUMNS) for record in records]
    return "\r\n".join(lines) + "\r\n"


def filename(day: date, format: str) -> str:
    return f"executions-{day.isoformat()}.{format}"


async def export(db: Db, query: ExportQuery) -> Export:
    rows = await db.fetch(_ROWS, *filter_args(db, query), EXPORT_MAX + 1)
    records = [_record(row) for row in rows[:EXPORT_MAX]]
    data = to_csv(records) if query.format == "csv" else json.dumps(records, ensure_ascii=False)
    today: date = await db.fetchval(_TODAY)
    return Export(
        data=data,
        filename=filename(today, query.format),
        row_count=len(records),
        truncated=len(rows) > EXPORT_MAX,
    )
