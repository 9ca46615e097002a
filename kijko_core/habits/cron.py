"""Cron schedules in a time zone: validation and the next fire instants (docs/habits.md).

Pure functions, no database, no clock of their own: callers pass the instant to start from
(the database's ``now()`` for the scheduler and the routes).

- Only five fields (minute hour day-of-month month day-of-week), as croniter reads them, with
  month and weekday names, ``L``, ``W``, ``#`` and ``?``. Refused: six or seven fields
  (seconds, years), ``@hourly``-style aliases and ``@reboot``, croniter's random ``R`` and
  hashed ``H`` (a schedule must be the same every time it is read), and a schedule that never
  fires (``0 0 31 2 *``). Decision 0114.
- The fields are wall-clock times in the habit's IANA zone. A wall time skipped by a
  spring-forward gap fires at the first instant after the gap (02:30 on Amsterdam's
  2026-03-29 → 03:00 CEST); a wall time that happens twice on a fall-back day fires once, at
  its first occurrence. Several wall times inside one gap fire once, at its end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

__all__ = [
    "CronInvalid",
    "Schedule",
    "describe",
    "min_interval_seconds",
    "next_after",
    "next_runs",
    "parse",
    "zone",
]

FIELDS = 5
_NAMES = re.compile(r"JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|SUN|MON|TUE|WED|THU|FRI|SAT")
_FIELD = re.compile(r"[0-9*,/\-#?LW]+")
#: Fires looked at when measuring a schedule's shortest interval (stops at the first too short).
_INTERVAL_SAMPLE = 500


class CronInvalid(ValueError):
    """The schedule or zone cannot be used; the message says why, without echoing it."""


@dataclass(frozen=True)
class Schedule:
    """A validated five-field expression (normalised to single spaces)."""

    expression: str


def parse(expression: str) -> Schedule:
    """Validate a five-field cron expression; raises :class:`CronInvalid`."""
    fields = expression.split()
    if expression.strip().startswith("@"):
        raise CronInvalid("Use five cron fields; @ aliases (hourly, daily, reboot…) are not accepted")
    if len(fields) != FIELDS:
        raise CronInvalid("A schedule has exactly five fields: minute, hour, day of month, month, day of week")
    for value in fields:
        if not _FIELD.fullmatch(_NAMES.sub("0", value.upper())):
            raise CronInvalid("A cron field holds numbers, ranges, steps, lists, month or weekday names only")
    normalised = " ".join(fields)
    try:
        iterator = croniter(normalised, datetime(2000, 1, 1), max_years_between_matches=30)
        iterator.get_next(datetime)
    except CroniterBadDateError:
        raise CronInvalid("This schedule never fires") from None
    except (CroniterBadCronError, CroniterError, ValueError, KeyError, IndexError):
        raise CronInvalid("This is not a valid cron expression") from None
    return Schedule(normalised)


#: In the zone database's directory, but not a zone one chooses (the machine's, legacy rules).
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_ZONES


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; raises :class:`CronInvalid` for anything else (paths, ``localtime``)."""
    if name not in _zones():
        raise CronInvalid("Not an IANA time zone name (such as UTC or Europe/Amsterdam)")
    return ZoneInfo(name)


def _instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant a wall-clock time of ``tz`` fires at: itself; its first occurrence when the
    clocks go back; the end of the gap when the clocks jump over it."""
    first = wall.replace(tzinfo=tz, fold=0)
    as_utc = first.astimezone(UTC)
    if as_utc.astimezone(tz).replace(tzinfo=None) == wall:
        return as_utc  # exists (fold=0 is the first of two occurrences)
    # Skipped: the transition lies between the wall time read with the later offset (fold=1)
    # and with the earlier one (fold=0). Find it to the second.
    low = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)  # before the transition
    high = as_utc  # after it
    after_offset = high.astimezone(tz).utcoffset()
    while (high - low) > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).utcoffset() == after_offset:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def next_after(schedule: Schedule, tz: ZoneInfo, after: datetime) -> datetime:
    """The first fire instant strictly after ``after`` (an aware datetime), in UTC."""
    if after.tzinfo is None:
        raise ValueError("after must be an aware datetime")
    local = after.astimezone(tz)
    # Wall times are mapped to instants monotonically (a gap's times to its end, repeated
    # times to their first occurrence), so walking the wall clock from ``after``'s own wall
    # time finds the first instant after it; in the second pass of a repeated hour the walk
    # skips that hour's times, which fired in the first pass.
    iterator = croniter(schedule.expression, local.replace(tzinfo=None), max_years_between_matches=30)
    while True:
        wall = iterator.get_next(datetime)
        instant = _instant(wall, tz)
        if instant > after:
            return instant


def next_runs(schedule: Schedule, tz: ZoneInfo, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire instants after ``after`` (UTC)."""
    runs: list[datetime] = []
    at = after
    for _ in range(count):
        at = next_after(schedule, tz, at)
        runs.append(at)
    return runs


def min_interval_seconds(schedule: Schedule, floor: int) -> int | None:
    """The shortest wall-clock interval between two fires if it is below ``floor`` seconds
    (looking at up to 500 fires from a fixed start), else None."""
    iterator = croniter(schedule.expression, datetime(2001, 1, 1), max_years_between_matches=30)
    previous = iterator.get_next(datetime)
    for _ in range(_INTERVAL_SAMPLE):
        try:
            current = iterator.get_next(datetime)
        except CroniterBadDateError:
            return None
        gap = int((current - previous).total_seconds())
        if gap < floor:
            return gap
        previous = current
    return None


def describe(schedule: Schedule) -> str | None:
    """A sentence for people (cron-descriptor), or None when it cannot say."""
    from cron_descriptor import Options, get_description

    options = Options()
    options.use_24hour_time_format = True
    try:
        return str(get_description(schedule.expression, options))
    except Exception:  # the descriptor is a nicety; a schedule croniter accepts stays valid
        return None
