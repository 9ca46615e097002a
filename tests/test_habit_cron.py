"""The cron module (kijko_core/habits/cron.py): five fields only, next runs in an IANA zone,
DST gaps fire at the gap's end, repeated wall times fire once (docs/habits.md#dst)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kijko_core.habits import cron

AMSTERDAM = cron.zone("Europe/Amsterdam")
NEW_YORK = cron.zone("America/New_York")
LORD_HOWE = cron.zone("Australia/Lord_Howe")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def local(runs: list[datetime], tz: object) -> list[str]:
    return [run.astimezone(tz).isoformat() for run in runs]  # type: ignore[arg-type]


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    ["* * * * *", "*/15 9-17 * * MON-FRI", "0 0 L * *", "0 0 * * 1#2", "30 2 * * *", "0 12 1 jan,jul *", "5 4 * * sun"],
)
def test_five_field_expressions_are_accepted(expression: str) -> None:
    assert cron.parse(expression).expression == " ".join(expression.split())


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("* * * * * *", "exactly five fields"),  # seconds (or years)
        ("0 0 * * * 2026", "exactly five fields"),
        ("* * * *", "exactly five fields"),
        ("", "exactly five fields"),
        ("@hourly", "aliases"),
        ("@reboot", "aliases"),
        ("@daily", "aliases"),
        ("R * * * *", "numbers, ranges"),  # croniter's random minute: not the same twice
        ("H * * * *", "numbers, ranges"),  # hashed
        ("61 * * * *", "not a valid cron"),
        ("* 24 * * *", "not a valid cron"),
        ("0 0 31 2 *", "never fires"),
        ("a b c d e", "numbers, ranges"),
        ("*/0 * * * *", "not a valid cron"),
    ],
)
def test_other_expressions_are_refused_with_a_reason(expression: str, reason: str) -> None:
    with pytest.raises(cron.CronInvalid, match=reason) as caught:
        cron.parse(expression)
    assert expression.strip() == "" or expression not in str(caught.value)  # never echoed


@pytest.mark.parametrize("name", ["Mars/Olympus", "localtime", "../../etc/passwd", "utc ", "", "Europe"])
def test_only_iana_zone_names_are_zones(name: str) -> None:
    with pytest.raises(cron.CronInvalid):
        cron.zone(name)


def test_iana_zone_names_are_zones() -> None:
    assert str(cron.zone("UTC")) == "UTC"
    assert str(cron.zone("Asia/Kolkata")) == "Asia/Kolkata"


def test_minimum_interval() -> None:
    assert cron.min_interval_seconds(cron.parse("* * * * *"), 300) == 60
    assert cron.min_interval_seconds(cron.parse("*/5 * * * *"), 300) is None
    assert cron.min_interval_seconds(cron.parse("0,2 * * * *"), 300) == 120  # the short gap of two
    assert cron.min_interval_seconds(cron.parse("0 0 29 2 *"), 3600) is None
    assert cron.min_interval_seconds(cron.parse("0,1 0 29 2 *"), 3600) == 60  # only on leap days


def test_description() -> None:
    assert cron.describe(cron.parse("*/15 9-17 * * MON-FRI")) == (
        "Every 15 minutes, between 09:00 and 17:59, Monday through Friday"
    )


# --- next runs --------------------------------------------------------------------------------


def test_next_run_is_strictly_after() -> None:
    every_quarter = cron.parse("*/15 * * * *")
    assert cron.next_after(every_quarter, cron.zone("UTC"), utc(2026, 1, 1, 0, 15)) == utc(2026, 1, 1, 0, 30)
    assert cron.next_after(every_quarter, cron.zone("UTC"), utc(2026, 1, 1, 0, 14, 59)) == utc(2026, 1, 1, 0, 15)
    with pytest.raises(ValueError, match="aware"):
        cron.next_after(every_quarter, cron.zone("UTC"), datetime(2026, 1, 1))


def test_the_zone_decides_the_instant() -> None:
    nine = cron.parse("0 9 * * *")
    assert cron.next_after(nine, AMSTERDAM, utc(2026, 1, 10)) == utc(2026, 1, 10, 8)  # CET
    assert cron.next_after(nine, AMSTERDAM, utc(2026, 7, 10)) == utc(2026, 7, 10, 7)  # CEST
    assert cron.next_after(nine, NEW_YORK, utc(2026, 1, 10)) == utc(2026, 1, 10, 14)  # EST


def test_amsterdam_daily_0230_on_the_spring_forward_day_runs_at_the_end_of_the_gap() -> None:
    # 2026-03-29: 02:00 CET → 03:00 CEST; 02:30 does not exist that day.
    runs = cron.next_runs(cron.parse("30 2 * * *"), AMSTERDAM, utc(2026, 3, 27, 12), 4)
    assert local(runs, AMSTERDAM) == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",  # the first instant after the gap
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_amsterdam_daily_0230_on_the_fall_back_day_runs_once() -> None:
    # 2026-10-25: 03:00 CEST → 02:00 CET; 02:30 happens twice, it runs at the first.
    runs = cron.next_runs(cron.parse("30 2 * * *"), AMSTERDAM, utc(2026, 10, 23, 12), 4)
    assert runs == [
        utc(2026, 10, 24, 0, 30),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
        utc(2026, 10, 27, 1, 30),
    ]
    # Standing inside the second 02:30 hour, the next run is the next day's.
    assert cron.next_after(cron.parse("30 2 * * *"), AMSTERDAM, utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 26, 1, 30)


def test_every_quarter_hour_across_the_gap_fires_once_at_its_end() -> None:
    runs = cron.next_runs(cron.parse("*/15 * * * *"), AMSTERDAM, utc(2026, 3, 29, 0, 40), 4)
    assert local(runs, AMSTERDAM) == [
        "2026-03-29T01:45:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:00, 02:15, 02:30, 02:45 and 03:00 are one instant
        "2026-03-29T03:15:00+02:00",
        "2026-03-29T03:30:00+02:00",
    ]
    assert all(later - earlier >= timedelta(minutes=15) for earlier, later in zip(runs, runs[1:], strict=False))


def test_every_quarter_hour_across_the_repeated_hour_fires_each_wall_time_once() -> None:
    runs = cron.next_runs(cron.parse("*/15 * * * *"), AMSTERDAM, utc(2026, 10, 24, 23, 40), 7)
    assert local(runs, AMSTERDAM) == [
        "2026-10-25T01:45:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:15:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:45:00+02:00",
        "2026-10-25T03:00:00+01:00",  # the second 02:00–02:59 is skipped: those times fired
        "2026-10-25T03:15:00+01:00",
    ]
    assert len(set(runs)) == len(runs)


def test_new_york_both_transitions() -> None:
    # 2026-03-08 02:00 EST → 03:00 EDT; 2026-11-01 02:00 EDT → 01:00 EST.
    half_past_two = cron.parse("30 2 * * *")
    spring = cron.next_runs(half_past_two, NEW_YORK, utc(2026, 3, 7, 12), 2)
    assert local(spring, NEW_YORK) == ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]
    half_past_one = cron.parse("30 1 * * *")
    autumn = cron.next_runs(half_past_one, NEW_YORK, utc(2026, 10, 31, 12), 2)
    assert local(autumn, NEW_YORK) == ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]


def test_lord_howe_half_hour_dst() -> None:
    # 2026-10-04 02:00 (+10:30) → 02:30 (+11:00); 2026-04-05 02:00 (+11:00) → 01:30 (+10:30).
    spring = cron.next_runs(cron.parse("15 2 * * *"), LORD_HOWE, utc(2026, 10, 2), 3)
    assert local(spring, LORD_HOWE) == [
        "2026-10-03T02:15:00+10:30",
        "2026-10-04T02:30:00+11:00",
        "2026-10-05T02:15:00+11:00",
    ]
    autumn = cron.next_runs(cron.parse("45 1 * * *"), LORD_HOWE, utc(2026, 4, 3), 3)
    assert local(autumn, LORD_HOWE) == [
        "2026-04-04T01:45:00+11:00",
        "2026-04-05T01:45:00+11:00",  # once, the first of the two
        "2026-04-06T01:45:00+10:30",
    ]


def test_next_runs_never_repeat_or_go_back_across_the_transitions() -> None:
    # From 1 March and 25 September, 41 days of half hours cover all six transitions above.
    for tz in (AMSTERDAM, NEW_YORK, LORD_HOWE):
        for start in (utc(2026, 3, 1), utc(2026, 9, 25)):
            for expression, count in (("*/30 * * * *", 2000), ("30 2 * * *", 45), ("0 1-3 * * *", 130)):
                runs = cron.next_runs(cron.parse(expression), tz, start, count)
                assert all(earlier < later for earlier, later in zip(runs, runs[1:], strict=False)), (tz, expression)
