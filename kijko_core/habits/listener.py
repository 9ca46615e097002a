"""Counting a habit's failed runs in a row (docs/habits.md#auto-disable): a finish listener on
every execution, in the transaction that ends it. A completed run resets the count and clears
the error; a failed one adds one and keeps its error; a cancelled one changes nothing (a person
stopped it, the habit did not fail). Deactivating a habit over the limit is the scheduler
tick's (it has the settings): :func:`kijko_core.habits.scheduler.disable_failing`."""

from __future__ import annotations

from kijko_core.db.session import Session
from kijko_core.executions import lifecycle
from kijko_core.habits import repository

#: The habits table's limit on last_error_message.
MAX_ERROR_CHARS = 4000


def error_text(code: str | None, message: str | None) -> str:
    text = f"{code}: {message}" if code and message else (message or code or "The run failed")
    return text[:MAX_ERROR_CHARS]


async def on_finish(db: Session, finished: lifecycle.FinishedExecution) -> None:
    if finished.execution_type != "habit" or finished.reference_id is None:
        return
    if finished.status == "completed":
        await repository.run_succeeded(db, finished.reference_id)
    elif finished.status == "failed":
        await repository.run_failed(db, finished.reference_id, error_text(finished.error_code, finished.error_message))


lifecycle.add_finish_listener(on_finish)
