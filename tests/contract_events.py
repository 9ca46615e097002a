"""The frontend's runtime validators of the ingestion channel (contract §4.1,
``types/websocketEvents.ts``), written again here so tests check what a client would accept:
a payload failing them is dropped by the client, so field names and types are strict.

``problems(event, payload)`` returns what is wrong (empty: the client accepts it);
``assert_valid(event, payload)`` raises with that list. Used by the ingestion tests and by the
realtime tests (events as a Socket.IO client receives them).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

PHASES = ("repository_fetch", "parsing", "chunking", "optimization", "indexing")
METRICS = ("filesProcessed", "totalFiles", "tokensProcessed", "bytesProcessed", "chunksCreated", "errorsEncountered")
EVENTS = ("phase_started", "progress_update", "ingestion_complete", "error")


def _number(value: Any) -> bool:
    # JSON numbers; a bool is not one (JavaScript's typeof true is "boolean").
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _non_empty_string(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _time(value: Any) -> bool:
    """``datetime/ISO/epoch``: an epoch number, or a string ``Date.parse`` understands."""
    if _number(value):
        return True
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def metrics_problems(metrics: Any, where: str = "metrics") -> list[str]:
    if not isinstance(metrics, dict):
        return [f"{where} is not an object"]
    found = []
    for name in METRICS:
        if name not in metrics:
            found.append(f"{where}.{name} is missing")
        elif not _number(metrics[name]) or metrics[name] < 0:
            found.append(f"{where}.{name} is not a number ≥ 0: {metrics[name]!r}")
    return found


def problems(event: str, payload: Any) -> list[str]:
    """What the client's validator of ``event`` refuses in ``payload``."""
    if event not in EVENTS:
        return [f"unknown event {event!r}"]
    if not isinstance(payload, dict):
        return ["the payload is not an object"]
    found: list[str] = []
    if not _non_empty_string(payload.get("projectId")):
        found.append("projectId is not a non-empty string")
    if event != "ingestion_complete" and payload.get("phase") not in PHASES:
        found.append(f"phase is not an IngestionPhase: {payload.get('phase')!r}")
    if event == "phase_started":
        if not isinstance(payload.get("message"), str):
            found.append("message is not a string")
        if not _time(payload.get("startTime")):
            found.append("startTime is not a date")
        total = payload.get("totalPhases", 5)
        if not _number(total) or total < 1:
            found.append("totalPhases is not a number ≥ 1")
        index = payload.get("currentPhaseIndex")
        if not _number(index) or index < 0:
            found.append("currentPhaseIndex is not a number ≥ 0")
        elif payload.get("phase") in PHASES and index != PHASES.index(payload["phase"]):
            found.append("currentPhaseIndex is not the phase's index")
    elif event == "progress_update":
        percent = payload.get("progressPercent")
        if not _number(percent) or not 0 <= percent <= 100:
            found.append(f"progressPercent is not a number 0–100: {percent!r}")
        if not isinstance(payload.get("message"), str):
            found.append("message is not a string")
        found += metrics_problems(payload.get("metrics"))
    elif event == "ingestion_complete":
        if not isinstance(payload.get("success"), bool):
            found.append("success is not a boolean")
        seconds = payload.get("totalDurationSeconds")
        if not _number(seconds) or seconds < 0:
            found.append("totalDurationSeconds is not a number ≥ 0")
        found += metrics_problems(payload.get("finalMetrics"), "finalMetrics")
        project = payload.get("project")
        if (
            not isinstance(project, dict)
            or not _non_empty_string(project.get("id"))
            or not isinstance(project.get("name"), str)
        ):
            found.append("project is not a Project (id and name at least)")
    elif event == "error":
        if not _non_empty_string(payload.get("errorCode")):
            found.append("errorCode is not a non-empty string")
        if not isinstance(payload.get("errorMessage"), str):
            found.append("errorMessage is not a string")
        if not isinstance(payload.get("recoverable", True), bool):
            found.append("recoverable is not a boolean")
        retries = payload.get("retryCount", 0)
        if not _number(retries) or retries < 0:
            found.append("retryCount is not a number ≥ 0")
    return found


def assert_valid(event: str, payload: Any) -> None:
    found = problems(event, payload)
    assert not found, f"{event}: {found} in {payload!r}"


def order_problems(names: list[str]) -> list[str]:
    """The order a run's events come in: the five phases each announced once, in the
    contract's order, progress only after the first phase, and ``ingestion_complete`` or
    ``error`` last."""
    found = []
    phases = [name for name in names if name.startswith("phase_started:")]
    if [name.split(":", 1)[1] for name in phases] != list(PHASES)[: len(phases)]:
        found.append(f"phases out of order: {phases}")
    if names and not names[0].startswith("phase_started"):
        found.append(f"the first event is {names[0]}, not phase_started")
    enders = [i for i, name in enumerate(names) if name in ("ingestion_complete", "error")]
    if enders and enders[0] != len(names) - 1:
        found.append("events after the run ended")
    return found
