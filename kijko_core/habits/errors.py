"""The habits domain's errors (contract §2.4)."""

from __future__ import annotations

from kijko_core.errors import NotFound, ValidationFailed


class HabitNotFound(NotFound):
    code = "HABIT_NOT_FOUND"
    default_message = "Habit not found"


class InvalidCron(ValidationFailed):
    code = "INVALID_CRON"
    default_message = "The schedule is not a valid five-field cron expression"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, field="scheduleCron")


class InvalidTimezone(ValidationFailed):
    code = "INVALID_TIMEZONE"
    default_message = "Not an IANA time zone name (such as UTC or Europe/Amsterdam)"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, field="timezone")
