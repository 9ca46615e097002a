"""The executions domain's errors (contract §2.6)."""

from __future__ import annotations

from kijko_core.errors import Conflict, NotFound


class ExecutionNotFound(NotFound):
    code = "EXECUTION_NOT_FOUND"
    default_message = "Execution not found"


class CannotCancel(Conflict):
    code = "CANNOT_CANCEL"
    default_message = "Only a pending or running execution can be cancelled"


class CannotRetry(Conflict):
    code = "CANNOT_RETRY"
    default_message = "Only a failed or cancelled execution can be retried"
