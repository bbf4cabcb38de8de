"""The business calendar: worked SLA examples (nights, weekends, lunch, 春节, 调休 make-up days),
DST zones, the bundled State Council dates, validation, and hypothesis properties of
`add_working_time` / `working_time_between` (inverse, monotonic, additive, lands on working time)
checked against a plain day-by-day reference. No database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from jingwei.core.errors import Invalid
from jingwei.flows.calendar import (
    STANDARD_HOURS,
    BusinessCalendar,
    CalendarError,
    NoWorkingTime,
    Period,
    add_calendar_time,
    add_working_time,
    china_calendar,
    china_holidays,
    default_calendar,
    is_working,
    next_working_moment,
    working_time_between,
)

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
H = timedelta(hours=1)
TICK = timedelta(microseconds=1)
ALL_DAY = (Period(0, 24 * 3600),)


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)  # type: ignore[misc]


def ny(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=NY, fold=fold)  # type: ignore[misc]


def hm(h: int, m: int = 0) -> int:
    return h * 3600 + m * 60


CAL = default_calendar()


# -- worked examples ---------------------------------------------------------------------------


def test_friday_evening_ticket_with_two_hour_sla_is_due_monday_morning() -> None:
    due = add_working_time(sh(2025, 3, 7, 17, 30), 2 * H, CAL)  # Friday
    assert due == sh(2025, 3, 10, 10, 30)  # Monday
    assert due.tzinfo is UTC and due.astimezone(SH).hour == 10
    assert working_time_between(sh(2025, 3, 7, 17, 30), due, CAL) == 2 * H


def test_start_in_another_zone_gives_the_same_instant_in_the_calendar_zone() -> None:
    due = add_working_time(datetime(2025, 3, 7, 9, 30, tzinfo=UTC), 2 * H, CAL)
    assert due == sh(2025, 3, 10, 10, 30)
    assert due.tzinfo is UTC


def test_lunch_break_is_skipped() -> None:
    assert add_working_time(sh(2025, 3, 10, 11, 30), H, CAL) == sh(2025, 3, 10, 13, 30)
    assert working_time_between(sh(2025, 3, 10, 11, 0), sh(2025, 3, 10, 14, 0), CAL) == 2 * H


def test_start_in_the_night_begins_counting_at_nine() -> None:
    assert next_working_moment(sh(2025, 3, 10, 3, 0), CAL) == sh(2025, 3, 10, 9, 0)
    assert add_working_time(sh(2025, 3, 10, 3, 0), 2 * H, CAL) == sh(2025, 3, 10, 11, 0)


def test_spring_festival_2025_is_skipped() -> None:
    # Monday 27 January is worked; 28 January – 4 February is 春节; Wednesday 5 February resumes.
    assert add_working_time(sh(2025, 1, 27, 17, 0), 2 * H, CAL) == sh(2025, 2, 5, 10, 0)
    assert working_time_between(sh(2025, 1, 28), sh(2025, 2, 5), CAL) == timedelta(0)


def test_make_up_sunday_counts_as_a_working_day() -> None:
    # Saturday 25 January is off, Sunday 26 January is a 调休 make-up day (Monday's hours).
    assert add_working_time(sh(2025, 1, 25, 10, 0), H, CAL) == sh(2025, 1, 26, 10, 0)
    assert is_working(sh(2025, 1, 26, 9, 0), CAL)
    assert not is_working(sh(2025, 1, 26, 12, 30), CAL)  # lunch still applies
    assert is_working(sh(2025, 9, 28, 15, 0), CAL)  # the National Day make-up Sunday


def test_national_day_2025_and_its_make_up_saturday() -> None:
    assert add_working_time(sh(2025, 9, 30, 17, 0), 3 * H, CAL) == sh(2025, 10, 9, 11, 0)
    # Friday 10 October 17:00 + 2h: Saturday 11 October is worked.
    assert add_working_time(sh(2025, 10, 10, 17, 0), 2 * H, CAL) == sh(2025, 10, 11, 10, 0)


def test_spring_festival_2026_with_make_up_saturday_before_it() -> None:
    # Friday 13 February 2026, then the make-up Saturday 14 February, then 15–23 February off.
    assert add_working_time(sh(2026, 2, 13, 17, 0), 2 * H, CAL) == sh(2026, 2, 14, 10, 0)
    assert add_working_time(sh(2026, 2, 14, 17, 0), 2 * H, CAL) == sh(2026, 2, 24, 10, 0)


def test_working_week_and_holiday_week_totals() -> None:
    assert working_time_between(sh(2025, 3, 10), sh(2025, 3, 17), CAL) == 40 * H
    # 27 Jan (Mon) worked, 28 Jan – 2 Feb off; the week of 26 Jan – 1 Feb has Sun 26 and Mon 27.
    assert working_time_between(sh(2025, 1, 26), sh(2025, 2, 2), CAL) == 16 * H
    assert working_time_between(sh(2025, 3, 17), sh(2025, 3, 10), CAL) == -40 * H


def test_period_boundaries_are_half_open() -> None:
    assert is_working(sh(2025, 3, 10, 9, 0), CAL)
    assert is_working(sh(2025, 3, 10, 11, 59, 59), CAL)
    assert not is_working(sh(2025, 3, 10, 12, 0), CAL)
    assert is_working(sh(2025, 3, 10, 13, 0), CAL)
    assert not is_working(sh(2025, 3, 10, 18, 0), CAL)
    assert next_working_moment(sh(2025, 3, 10, 12, 0), CAL) == sh(2025, 3, 10, 13, 0)
    assert next_working_moment(sh(2025, 3, 10, 10, 15), CAL) == sh(2025, 3, 10, 10, 15)
    # Work that ends exactly at a period's end is due then, not at the next period's start.
    assert add_working_time(sh(2025, 3, 10, 9, 0), 3 * H, CAL) == sh(2025, 3, 10, 12, 0)


def test_exact_to_the_second_and_zero_duration() -> None:
    start = sh(2025, 3, 10, 17, 59, 59)
    assert add_working_time(start, timedelta(seconds=2), CAL) == sh(2025, 3, 11, 9, 0, 1)
    assert add_working_time(sh(2025, 3, 8, 3, 0), timedelta(0), CAL) == sh(2025, 3, 8, 3, 0)


def test_saturday_mornings_and_make_up_days_with_mondays_hours() -> None:
    cal = BusinessCalendar.from_dict(
        {
            "hours": {
                **{d: [["09:00", "12:00"], ["13:00", "18:00"]] for d in ("mon", "tue", "wed")},
                **{d: [["09:00", "12:00"], ["13:00", "18:00"]] for d in ("thu", "fri")},
                "sat": [["09:00", "12:00"]],
            },
            "public_holidays": "cn",
        }
    )
    assert cal.weekly_working_time == 43 * H
    assert add_working_time(sh(2025, 3, 7, 17, 30), 2 * H, cal) == sh(2025, 3, 8, 10, 30)
    assert add_working_time(sh(2025, 3, 8, 11, 0), 2 * H, cal) == sh(2025, 3, 10, 10, 0)
    # Saturday 8 February 2025 is a make-up day: the full Monday, not the Saturday morning.
    assert cal.hours_on(date(2025, 2, 8)) == cal.hours[0]
    # Saturday 3 January 2026 is inside 元旦: off, even for a Saturday-morning tenant.
    assert cal.hours_on(date(2026, 1, 3)) == ()


def test_tenant_days_override_the_public_ones() -> None:
    cal = BusinessCalendar.from_dict(
        {
            "public_holidays": "cn",
            "workdays": {"2025-10-08": "wed"},
            "holidays": ["2025-09-28", "2025-03-12"],
        }
    )
    assert is_working(sh(2025, 10, 8, 10, 0), cal)  # a public holiday the tenant works
    assert not is_working(sh(2025, 9, 28, 10, 0), cal)  # a make-up Sunday the tenant does not
    assert not is_working(sh(2025, 3, 12, 10, 0), cal)  # an ordinary Wednesday off
    assert is_working(sh(2025, 10, 1, 10, 0), cal) is False


def test_explicit_years_and_their_limits() -> None:
    only_2025 = china_calendar(years=[2025])
    assert not is_working(sh(2025, 10, 3, 10, 0), only_2025)
    assert is_working(sh(2026, 10, 2, 10, 0), only_2025)  # 2026 dates were not copied in
    both = china_calendar(years=range(2025, 2027))
    assert not is_working(sh(2026, 10, 2, 10, 0), both)
    assert both.holidays == china_holidays().holidays
    with pytest.raises(CalendarError) as err:
        china_calendar(years=[2025, 2027])
    assert err.value.field == "years" and "2027" in err.value.message


def test_add_calendar_time_is_plain_elapsed_time() -> None:
    assert add_calendar_time(sh(2025, 3, 7, 17, 30), 2 * H, CAL) == sh(2025, 3, 7, 19, 30)
    start = datetime(2025, 3, 7, 9, 30, tzinfo=UTC)
    assert add_calendar_time(start, 2 * H) == add_calendar_time(start, 2 * H, CAL)
    assert add_calendar_time(sh(2025, 3, 7), 2 * H).tzinfo is UTC
    # 24 real hours across the spring-forward night: 12:00 EST becomes 13:00 EDT.
    assert add_calendar_time(ny(2025, 3, 8, 12), 24 * H) == ny(2025, 3, 9, 13)


def test_naive_datetimes_and_negative_durations_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        add_working_time(datetime(2025, 3, 10, 9), H, CAL)
    with pytest.raises(ValueError, match="timezone-aware"):
        working_time_between(sh(2025, 3, 10), datetime(2025, 3, 11), CAL)
    with pytest.raises(ValueError, match="negative"):
        add_working_time(sh(2025, 3, 10, 9), -H, CAL)


# -- DST ---------------------------------------------------------------------------------------

NY_OFFICE = BusinessCalendar(
    timezone="America/New_York", hours=((Period(hm(9), hm(17)),),) * 5 + ((), ())
)
NY_24_7 = BusinessCalendar(timezone="America/New_York", hours=(ALL_DAY,) * 7)


def test_dst_office_hours_count_real_hours() -> None:
    # Friday 7 March 2025 16:00 EST + 2h: 1h on Friday, 1h on Monday (now EDT).
    assert add_working_time(ny(2025, 3, 7, 16), 2 * H, NY_OFFICE) == ny(2025, 3, 10, 10)
    assert working_time_between(ny(2025, 3, 7, 9), ny(2025, 3, 10, 17), NY_OFFICE) == 16 * H


def test_dst_days_last_23_and_25_hours() -> None:
    assert working_time_between(ny(2025, 3, 9), ny(2025, 3, 10), NY_24_7) == 23 * H
    assert working_time_between(ny(2025, 11, 2), ny(2025, 11, 3), NY_24_7) == 25 * H
    assert add_working_time(ny(2025, 3, 8, 12), 24 * H, NY_24_7) == ny(2025, 3, 9, 13)
    assert add_working_time(ny(2025, 11, 1, 12), 24 * H, NY_24_7) == ny(2025, 11, 2, 11)
    assert working_time_between(ny(2025, 1, 1), ny(2026, 1, 1), NY_24_7) == 365 * 24 * H


def test_period_boundary_in_the_skipped_hour_moves_to_the_jump() -> None:
    # Sundays 02:30–04:00: on 9 March 2025 02:00–03:00 does not exist, so it is 03:00–04:00 EDT.
    cal = BusinessCalendar(
        timezone="America/New_York", hours=((),) * 6 + ((Period(hm(2, 30), hm(4)),),)
    )
    assert working_time_between(ny(2025, 3, 9), ny(2025, 3, 10), cal) == H
    assert next_working_moment(ny(2025, 3, 9, 1), cal) == ny(2025, 3, 9, 3)
    assert next_working_moment(ny(2025, 3, 9, 1), cal) == datetime(2025, 3, 9, 7, tzinfo=UTC)
    assert working_time_between(ny(2025, 3, 16), ny(2025, 3, 17), cal) == 1.5 * H


def test_period_boundary_in_the_repeated_hour_is_its_first_occurrence() -> None:
    # Sundays 01:30–02:00: on 2 November 2025 01:00–02:00 happens twice, so 01:30 EDT–02:00 EST.
    cal = BusinessCalendar(
        timezone="America/New_York", hours=((),) * 6 + ((Period(hm(1, 30), hm(2)),),)
    )
    assert working_time_between(ny(2025, 11, 2), ny(2025, 11, 3), cal) == 1.5 * H
    assert is_working(ny(2025, 11, 2, 1, 15, fold=1), cal)  # the second 01:15, EST
    assert add_working_time(ny(2025, 11, 2), 1.5 * H, cal) == ny(2025, 11, 2, 2)


def test_zone_that_changes_at_midnight() -> None:
    # Chile springs forward at 24:00 on Saturday 6 September 2025: Sunday starts at 01:00.
    cal = BusinessCalendar(timezone="America/Santiago", hours=(ALL_DAY,) * 7)
    cl = ZoneInfo("America/Santiago")
    sat, sun, mon = (datetime(2025, 9, d, tzinfo=cl) for d in (6, 7, 8))
    assert working_time_between(sat, sun, cal) == 24 * H
    assert working_time_between(sun, mon, cal) == 23 * H
    jump = datetime(2025, 9, 7, 4, tzinfo=UTC)  # 00:00 -04 is 01:00 -03
    assert next_working_moment(jump - TICK, cal) == jump - TICK
    assert add_working_time(sat, 24 * H, cal) == jump


# -- no working time ---------------------------------------------------------------------------


def test_calendar_without_working_periods_raises_instead_of_looping() -> None:
    closed = BusinessCalendar.from_dict({"hours": {}, "workdays": ["2025-03-08"]})
    assert closed.weekly_working_time == timedelta(0)
    with pytest.raises(NoWorkingTime) as err:
        add_working_time(sh(2025, 3, 10, 9), H, closed)
    assert err.value.field == "hours" and isinstance(err.value, CalendarError)
    with pytest.raises(NoWorkingTime):
        next_working_moment(sh(2025, 3, 10, 9), closed)
    assert working_time_between(sh(2025, 1, 1), sh(2030, 1, 1), closed) == timedelta(0)
    assert not is_working(sh(2025, 3, 10, 10), closed)
    assert add_working_time(sh(2025, 3, 10, 9), timedelta(0), closed) == sh(2025, 3, 10, 9)


# -- long durations jump weeks -----------------------------------------------------------------


def test_long_durations_jump_whole_weeks(monkeypatch: pytest.MonkeyPatch) -> None:
    days_looked_at = 0
    original = BusinessCalendar._intervals

    def counting(self: BusinessCalendar, day: date) -> list[tuple[datetime, datetime]]:
        nonlocal days_looked_at
        days_looked_at += 1
        return original(self, day)

    monkeypatch.setattr(BusinessCalendar, "_intervals", counting)
    plain = BusinessCalendar()
    due = add_working_time(sh(2025, 3, 10, 9), 40 * H * 52 * 5, plain)  # five working years
    assert due == sh(2030, 3, 1, 18)  # exactly 260 working weeks later: a Friday evening
    assert days_looked_at < 20
    days_looked_at = 0
    assert working_time_between(sh(2025, 3, 10, 9), due, plain) == 40 * H * 52 * 5
    assert days_looked_at < 20
    days_looked_at = 0
    # With China's holidays the weeks around each holiday go day by day, the others in one go.
    due = add_working_time(sh(2025, 1, 1), 8 * H * 400, CAL)
    assert working_time_between(sh(2025, 1, 1), due, CAL) == 8 * H * 400
    assert days_looked_at < 400


# -- bundled holiday data ----------------------------------------------------------------------


def _days(first: str, last: str) -> set[date]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return {a + timedelta(days=n) for n in range((b - a).days + 1)}


def test_state_council_dates_2025_and_2026() -> None:
    data = china_holidays()
    assert data.years == (2025, 2026)
    holidays_2025 = (
        _days("2025-01-01", "2025-01-01")
        | _days("2025-01-28", "2025-02-04")
        | _days("2025-04-04", "2025-04-06")
        | _days("2025-05-01", "2025-05-05")
        | _days("2025-05-31", "2025-06-02")
        | _days("2025-10-01", "2025-10-08")
    )
    holidays_2026 = (
        _days("2026-01-01", "2026-01-03")
        | _days("2026-02-15", "2026-02-23")
        | _days("2026-04-04", "2026-04-06")
        | _days("2026-05-01", "2026-05-05")
        | _days("2026-06-19", "2026-06-21")
        | _days("2026-09-25", "2026-09-27")
        | _days("2026-10-01", "2026-10-07")
    )
    assert data.holidays == holidays_2025 | holidays_2026
    assert len(holidays_2025) == 28 and len(holidays_2026) == 33
    workdays = {"2025-01-26", "2025-02-08", "2025-04-27", "2025-09-28", "2025-10-11"} | {
        "2026-01-04",
        "2026-02-14",
        "2026-02-28",
        "2026-05-09",
        "2026-09-20",
        "2026-10-10",
    }
    assert data.workdays == {date.fromisoformat(d) for d in workdays}
    assert all(d.weekday() >= 5 for d in data.workdays)  # every make-up day is a weekend day
    assert not data.holidays & data.workdays
    assert "2025年部分节假日安排" in data.source and "2026年部分节假日安排" in data.source


def test_holiday_data_ships_inside_the_package() -> None:
    path = resources.files("jingwei.flows").joinpath("data/cn_holidays.json")
    assert path.is_file()
    assert set(json.loads(path.read_text("utf-8"))["years"]) == {"2025", "2026"}


# -- validation --------------------------------------------------------------------------------

WEEK = [["09:00", "12:00"], ["13:00", "18:00"]]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"timezone": 8}, "timezone"),
        ({"hours": {"mon": [["09:00", "12:00"], ["11:30", "13:00"]]}}, "hours.mon[1]"),
        ({"hours": {"mon": [["13:00", "18:00"], ["09:00", "13:30"]]}}, "hours.mon[0]"),
        ({"hours": {"tue": [["18:00", "09:00"]]}}, "hours.tue[0]"),
        ({"hours": {"wed": [["09:00", "09:00"]]}}, "hours.wed[0]"),
        ({"hours": {"sat": [["24:00", "24:00"]]}}, "hours.sat[0]"),
        ({"hours": {"thu": [["25:00", "26:00"]]}}, "hours.thu[0][0]"),
        ({"hours": {"fri": [["09:00", "12:60"]]}}, "hours.fri[0][1]"),
        ({"hours": {"fri": [["9am", "5pm"]]}}, "hours.fri[0][0]"),
        ({"hours": {"fri": [["09:00", 1700]]}}, "hours.fri[0][1]"),
        ({"hours": {"fri": [["09:00"]]}}, "hours.fri[0]"),
        ({"hours": {"fri": "09:00-18:00"}}, "hours.fri"),
        ({"hours": {"funday": WEEK}}, "hours.funday"),
        ({"hours": [WEEK]}, "hours"),
        ({"holidays": ["2025-02-30"]}, "holidays[0]"),
        ({"holidays": ["2025-01-01", "1/2/2025"]}, "holidays[1]"),
        ({"holidays": "2025-01-01"}, "holidays"),
        ({"workdays": {"2025-01-26": "someday"}}, "workdays.2025-01-26"),
        ({"workdays": {"2025-13-26": "mon"}}, "workdays.2025-13-26"),
        ({"workdays": [20250126]}, "workdays[0]"),
        ({"holidays": ["2025-01-26"], "workdays": ["2025-01-26"]}, "workdays.2025-01-26"),
        ({"public_holidays": "us"}, "public_holidays"),
        ({"public_holidays": True}, "public_holidays"),
        ({"timezon": "Asia/Shanghai"}, "timezon"),
    ],
)
def test_bad_calendars_name_the_bad_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(CalendarError) as err:
        BusinessCalendar.from_dict(data)
    assert err.value.field == field
    assert err.value.message.startswith(f"{field}: ")
    # Usable as a domain error (422 with the field) and as a plain ValueError.
    assert isinstance(err.value, Invalid) and isinstance(err.value, ValueError)
    assert err.value.status == 422 and err.value.code == "invalid_calendar"


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(CalendarError) as err:
        BusinessCalendar(hours=STANDARD_HOURS[:6])
    assert err.value.field == "hours"
    with pytest.raises(CalendarError) as err:
        BusinessCalendar(timezone="Nowhere/Town")
    assert err.value.field == "timezone"
    with pytest.raises(CalendarError) as err:
        BusinessCalendar(workdays=((date(2025, 1, 26), 7),))
    assert err.value.field == "workdays.2025-01-26"
    overlapping = (Period(hm(9), hm(12)), Period(hm(10), hm(11)))
    with pytest.raises(CalendarError) as err:
        BusinessCalendar(hours=((), overlapping, (), (), (), (), ()))
    assert err.value.field == "hours.tue[1]"


def test_valid_forms_and_defaults() -> None:
    assert BusinessCalendar.from_dict({}) == BusinessCalendar()
    assert (
        BusinessCalendar().hours == STANDARD_HOURS
        and BusinessCalendar().timezone == "Asia/Shanghai"
    )
    touching = BusinessCalendar.from_dict(
        {"hours": {"mon": [["13:00", "24:00"], ["09:00", "13:00"], ["00:00", "06:30:15"]]}}
    )
    assert touching.hours[0] == (
        Period(0, hm(6, 30) + 15),
        Period(hm(9), hm(13)),
        Period(hm(13), hm(24)),
    )
    listed = BusinessCalendar.from_dict({"workdays": ["2025-03-08"]})
    assert listed.workdays == ((date(2025, 3, 8), 0),)
    assert listed == BusinessCalendar.from_dict({"workdays": {"2025-03-08": "mon"}})
    assert default_calendar() is default_calendar()
    assert default_calendar().public_holidays == "cn"


# -- properties --------------------------------------------------------------------------------

ZONES = [
    "Asia/Shanghai",
    "Asia/Hong_Kong",
    "America/New_York",
    "Europe/London",
    "Europe/Dublin",  # negative DST in the tz database
    "America/Santiago",  # changes at midnight
    "Australia/Lord_Howe",  # half-hour DST
]


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    zone = draw(st.sampled_from(ZONES))
    boundary = st.one_of(
        st.integers(0, 96).map(lambda q: q * 900),  # quarter hours
        st.integers(0, 24 * 3600),  # any second
    )
    hours = []
    for _ in range(7):
        points = sorted(draw(st.sets(boundary, max_size=6)))
        hours.append(tuple(Period(a, b) for a, b in zip(points[::2], points[1::2], strict=False)))
    assume(any(hours))
    days = st.dates(date(2024, 6, 1), date(2027, 6, 30))
    holidays = draw(st.frozensets(days, max_size=15))
    workdays = draw(st.dictionaries(days, st.integers(0, 6), max_size=5))
    return BusinessCalendar(
        timezone=zone,
        hours=tuple(hours),
        holidays=holidays,
        workdays=tuple((d, w) for d, w in workdays.items() if d not in holidays),
        public_holidays=draw(st.sampled_from([None, "cn"])),
    )


FIXED = [
    CAL,
    NY_OFFICE,
    NY_24_7,
    BusinessCalendar.from_dict(
        {
            "timezone": "Europe/London",
            "hours": {d: [["00:30", "01:30"], ["02:00", "24:00"]] for d in ("sat", "sun")},
        }
    ),
]
any_calendar = st.one_of(st.sampled_from(FIXED), calendars())
moments = st.datetimes(
    datetime(2024, 6, 1),
    datetime(2027, 6, 30),
    timezones=st.sampled_from([UTC, SH, NY, ZoneInfo("America/Santiago")]),
    allow_imaginary=False,
)
spans = st.one_of(
    st.timedeltas(TICK, timedelta(hours=10)),
    st.timedeltas(timedelta(hours=10), timedelta(days=100)),
)


def utc(moment: datetime) -> datetime:
    """For `==` with a moment in a repeated or skipped hour, which Python never finds equal to a
    datetime of another zone."""
    return moment.astimezone(UTC)


def fit(calendar: BusinessCalendar, span: timedelta) -> timedelta:
    """Keep a span within ~3 years of the calendar's working time (a calendar with one second a
    week would otherwise run past year 9999)."""
    cap = calendar.weekly_working_time * 150
    return span if span <= cap else TICK + timedelta(microseconds=span // TICK % (cap // TICK))


PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(any_calendar, moments, spans)
def test_working_time_between_inverts_add_working_time(
    calendar: BusinessCalendar, start: datetime, span: timedelta
) -> None:
    span = fit(calendar, span)
    due = add_working_time(start, span, calendar)
    assert due > start
    assert working_time_between(start, due, calendar) == span
    assert working_time_between(due, start, calendar) == -span


@PROPS
@given(any_calendar, moments, spans, spans)
def test_add_working_time_is_strictly_monotonic(
    calendar: BusinessCalendar, start: datetime, a: timedelta, b: timedelta
) -> None:
    a, b = sorted((fit(calendar, a), fit(calendar, b)))
    assume(a < b)
    assert add_working_time(start, a, calendar) < add_working_time(start, b, calendar)


@PROPS
@given(any_calendar, moments, spans)
def test_result_is_working_time_or_the_end_of_a_period(
    calendar: BusinessCalendar, start: datetime, span: timedelta
) -> None:
    due = add_working_time(start, fit(calendar, span), calendar)
    assert due.tzinfo is UTC
    assert is_working(due - TICK, calendar)  # the last microsecond counted was working time
    if not is_working(due, calendar):
        assert next_working_moment(due, calendar) > due  # so `due` ends a period


@PROPS
@given(any_calendar, moments, spans, spans)
def test_add_working_time_is_additive(
    calendar: BusinessCalendar, start: datetime, a: timedelta, b: timedelta
) -> None:
    a, b = fit(calendar, a), fit(calendar, b)
    step = add_working_time(add_working_time(start, a, calendar), b, calendar)
    assert step == add_working_time(start, a + b, calendar)
    assert add_working_time(start, timedelta(0), calendar) == utc(start)


@PROPS
@given(any_calendar, moments, spans)
def test_counting_starts_at_the_next_working_moment(
    calendar: BusinessCalendar, start: datetime, span: timedelta
) -> None:
    span = fit(calendar, span)
    first = next_working_moment(start, calendar)
    assert first >= start and is_working(first, calendar)
    assert working_time_between(start, first, calendar) == timedelta(0)
    assert add_working_time(first, span, calendar) == add_working_time(start, span, calendar)
    assert is_working(start, calendar) == (first == utc(start))


@PROPS
@given(any_calendar, moments, moments, moments)
def test_working_time_between_adds_up_over_a_split(
    calendar: BusinessCalendar, a: datetime, b: datetime, c: datetime
) -> None:
    assert working_time_between(a, b, calendar) + working_time_between(
        b, c, calendar
    ) == working_time_between(a, c, calendar)


@PROPS
@given(st.sampled_from(ZONES), st.integers(0, 24 * 3600), moments, spans)
def test_round_the_clock_working_time_is_real_elapsed_time(
    zone: str, split: int, start: datetime, span: timedelta
) -> None:
    # Every hour worked, the day cut in two at any second (in a DST change too): working time is
    # then exactly elapsed time, whatever the zone does at its changes.
    day = (Period(0, split), Period(split, 24 * 3600)) if 0 < split < 24 * 3600 else ALL_DAY
    cal = BusinessCalendar(timezone=zone, hours=(day,) * 7)
    assert add_working_time(start, span, cal) == utc(start) + span
    assert working_time_between(start, utc(start) + span, cal) == span
    assert is_working(start, cal) and next_working_moment(start, cal) == utc(start)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(FIXED), st.data())
def test_calendars_survive_the_dict_round_trip(
    calendar: BusinessCalendar, data: st.DataObject
) -> None:
    for cal in (calendar, data.draw(calendars())):
        as_json = json.loads(json.dumps(cal.to_dict()))
        assert BusinessCalendar.from_dict(as_json) == cal


# The week jumps and DST handling against a plain reference that walks every day and converts
# each period's wall-clock bounds directly (valid where no bound falls in a DST change).


def reference_between(a: datetime, b: datetime, calendar: BusinessCalendar) -> timedelta:
    tz, total = calendar.tz, timedelta(0)
    day = a.astimezone(tz).date() - timedelta(days=1)
    while day <= b.astimezone(tz).date() + timedelta(days=1):
        midnight = datetime.combine(day, time(), tzinfo=tz)
        for p in calendar.hours_on(day):
            x = (midnight + timedelta(seconds=p.start)).astimezone(UTC)
            y = (midnight + timedelta(seconds=p.end)).astimezone(UTC)
            total += max(timedelta(0), min(y, b) - max(x, a))
        day += timedelta(days=1)
    return total


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([CAL, NY_OFFICE, BusinessCalendar(hours=((Period(hm(8), hm(20)),),) * 7)]),
    moments,
    st.timedeltas(timedelta(0), timedelta(days=3 * 366)),
)
def test_long_spans_match_a_day_by_day_reference(
    calendar: BusinessCalendar, start: datetime, length: timedelta
) -> None:
    end = start + length
    expected = reference_between(start, end, calendar)
    assert working_time_between(start, end, calendar) == expected
    if expected:
        due = add_working_time(start, expected, calendar)
        assert due <= end
        assert reference_between(start, due, calendar) == expected
        assert reference_between(start, due - TICK, calendar) < expected


def test_module_imports_without_django_settings() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = "from jingwei.flows.calendar import *; print(default_calendar().weekly_working_time)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1 day, 16:00:00"
