"""The habits domain's errors (contract §2.4)."""

from __future__ import annotations

from kijko_core.errors import NotFound


class HabitNotFound(NotFound):
    code = "HABIT_NOT_FOUND"
    default_message = "Habit not found"
