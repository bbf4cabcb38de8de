"""Business calendar: working hours, public holidays and make-up working days (调休), so that
"2 working hours" skips nights, weekends and holidays.

A `BusinessCalendar` is a frozen value, built from a JSON-able dict (`BusinessCalendar.from_dict`,
`to_dict`) so a tenant or a region can keep its own as data:

    {
      "timezone": "Asia/Shanghai",                       # IANA name; this is the default
      "hours": {"mon": [["09:00", "12:00"], ["13:00", "18:00"]], ...,
                "sat": [["09:00", "12:00"]]},            # missing "hours": Mon–Fri 9–12, 13–18
      "holidays": ["2025-12-31"],                        # dates off
      "workdays": {"2025-12-27": "mon"},                 # dates worked, with whose hours (or a
                                                         #   list of dates: Monday's hours)
      "public_holidays": "cn"                            # also the bundled State Council dates
    }

Times are local wall-clock times in the calendar's zone, "HH:MM" or "HH:MM:SS", a period running
from its start up to (not including) its end; "24:00" may end a period. A period cannot cross
midnight: write 22:00–24:00 on one day and 00:00–06:00 on the next. The tenant's own `holidays`
and `workdays` override the public ones (a tenant that works on 2025-10-08 says so in `workdays`).
A make-up working day may be any date; it gets the hours of the weekday named for it (Monday's
unless told), which also covers a Saturday that a tenant with Saturday mornings works in full.

The functions (`add_working_time`, `working_time_between`, `is_working`, `next_working_moment`,
`add_calendar_time`) take timezone-aware datetimes in any zone and return UTC-aware datetimes:
comparing or subtracting those is always by instant (two datetimes that share a DST zone compare
by wall clock in Python, which goes wrong in the repeated hour); `.astimezone(calendar.tz)` gives
local time for display. Durations are real elapsed time, exact to the microsecond.

Across a DST change a period lasts what it really lasts (a 00:00–24:00 day is 23 or 25 hours); a
boundary that falls in the skipped hour is moved to the moment the clocks jump, and one in a
repeated hour means its first occurrence. Long durations jump whole weeks (runs of weeks with no
special date and no change of UTC offset) and otherwise go a day at a time, never minute by
minute. A calendar that has run out of working time raises `NoWorkingTime` instead of searching
for ever.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from importlib import resources
from itertools import pairwise
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jingwei.core.errors import Invalid

__all__ = [
    "DEFAULT_TIMEZONE",
    "STANDARD_HOURS",
    "WEEKDAYS",
    "BusinessCalendar",
    "CalendarError",
    "NoWorkingTime",
    "Period",
    "PublicHolidays",
    "add_calendar_time",
    "add_working_time",
    "china_calendar",
    "china_holidays",
    "default_calendar",
    "is_working",
    "next_working_moment",
    "working_time_between",
]

DEFAULT_TIMEZONE = "Asia/Shanghai"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SECONDS = 24 * 3600

_ZERO = timedelta(0)
_ONE_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_KEYS = ("timezone", "hours", "holidays", "workdays", "public_holidays")


class CalendarError(Invalid, ValueError):
    """A calendar that cannot be built as given; `field` names the bad part, e.g. `hours.mon[1]`."""

    default_code = "invalid_calendar"


class NoWorkingTime(CalendarError):
    """The calendar has no working time left after the moment asked about."""

    default_code = "no_working_time"


def _bad(where: str | None, problem: str) -> CalendarError:
    return CalendarError(f"{where}: {problem}" if where else problem, field=where)


def _clock(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}:{s:02d}" if s else f"{h:02d}:{m:02d}"


class Period(NamedTuple):
    """Working time on one day, [start, end) in seconds since local midnight; end ≤ 24:00."""

    start: int
    end: int

    @classmethod
    def parse(cls, start: str, end: str, where: str = "period") -> Period:
        return cls(_parse_clock(start, f"{where}[0]"), _parse_clock(end, f"{where}[1]"))

    def __str__(self) -> str:
        return f"{_clock(self.start)}–{_clock(self.end)}"


_WEEKDAY_HOURS = (Period(9 * 3600, 12 * 3600), Period(13 * 3600, 18 * 3600))
STANDARD_HOURS: tuple[tuple[Period, ...], ...] = (_WEEKDAY_HOURS,) * 5 + ((), ())
"""Monday to Friday 09:00–12:00 and 13:00–18:00; Saturday and Sunday off."""


class PublicHolidays(NamedTuple):
    """A bundled set of public holidays and make-up working days."""

    holidays: frozenset[date]
    workdays: frozenset[date]
    years: tuple[int, ...]
    source: str


@dataclass(frozen=True)
class BusinessCalendar:
    """Working hours in a zone, with holidays and make-up working days. Validated on creation.

    `hours` holds seven tuples of `Period`s, Monday first; `workdays` holds (date, weekday whose
    hours apply, 0 = Monday) pairs; `public_holidays` names a bundled set ("cn") or is None.
    """

    timezone: str = DEFAULT_TIMEZONE
    hours: tuple[tuple[Period, ...], ...] = STANDARD_HOURS
    holidays: frozenset[date] = frozenset()
    workdays: tuple[tuple[date, int], ...] = ()
    public_holidays: str | None = None

    _tz: ZoneInfo = field(init=False, repr=False, compare=False)
    _days: dict[date, tuple[Period, ...]] = field(init=False, repr=False, compare=False)
    _special: tuple[date, ...] = field(init=False, repr=False, compare=False)
    _extra: tuple[date, ...] = field(init=False, repr=False, compare=False)
    _week: timedelta = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "_tz", _zone(self.timezone))
        hours = _check_hours(self.hours)
        put(self, "hours", hours)
        holidays = frozenset(_check_date(d, f"holidays[{i}]") for i, d in enumerate(self.holidays))
        put(self, "holidays", holidays)
        workdays = _check_workdays(self.workdays, holidays)
        put(self, "workdays", workdays)

        days: dict[date, tuple[Period, ...]] = {}
        if self.public_holidays is not None:
            loader = _PUBLIC_SETS.get(self.public_holidays)
            if loader is None:
                known = "、".join(sorted(_PUBLIC_SETS))
                raise _bad(
                    "public_holidays",
                    f"未知的法定节假日数据 {self.public_holidays!r}（可选：{known}）",
                )
            public = loader()
            days.update(dict.fromkeys(public.holidays, ()))
            days.update(dict.fromkeys(public.workdays, hours[0]))
        days.update(dict.fromkeys(holidays, ()))
        days.update((d, hours[weekday]) for d, weekday in workdays)
        put(self, "_days", days)
        put(self, "_special", tuple(sorted(days)))
        put(self, "_extra", tuple(sorted(d for d, periods in days.items() if periods)))
        seconds = sum(p.end - p.start for day in hours for p in day)
        put(self, "_week", timedelta(seconds=seconds))

    # -- as data -------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BusinessCalendar:
        """Build from the JSON-able form (module docstring); `CalendarError` names the bad field."""
        if not isinstance(data, Mapping):
            raise _bad(None, "日历应为 JSON 对象")
        for key in data:
            if key not in _KEYS:
                raise _bad(str(key), f"未知的字段（可用：{', '.join(_KEYS)}）")
        zone = data.get("timezone", DEFAULT_TIMEZONE)
        hours = _parse_hours(data["hours"]) if "hours" in data else STANDARD_HOURS
        holidays = frozenset(
            _parse_date(value, f"holidays[{i}]")
            for i, value in enumerate(_list(data.get("holidays", []), "holidays"))
        )
        workdays = _parse_workdays(data.get("workdays", []))
        public = data.get("public_holidays")
        if public is not None and not isinstance(public, str):
            raise _bad("public_holidays", '应为数据集名称（如 "cn"）或 null')
        return cls(
            timezone=zone,
            hours=hours,
            holidays=holidays,
            workdays=workdays,
            public_holidays=public,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form; `from_dict(cal.to_dict()) == cal`."""
        data: dict[str, Any] = {
            "timezone": self.timezone,
            "hours": {
                WEEKDAYS[i]: [[_clock(p.start), _clock(p.end)] for p in day]
                for i, day in enumerate(self.hours)
                if day
            },
            "holidays": sorted(d.isoformat() for d in self.holidays),
            "workdays": {d.isoformat(): WEEKDAYS[weekday] for d, weekday in self.workdays},
        }
        if self.public_holidays is not None:
            data["public_holidays"] = self.public_holidays
        return data

    # -- days ----------------------------------------------------------------------------------

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    @property
    def weekly_working_time(self) -> timedelta:
        """Working time in an ordinary week (no holidays, no make-up days, no DST change)."""
        return self._week

    def hours_on(self, day: date) -> tuple[Period, ...]:
        """The periods worked on `day` (local date), holidays and make-up days applied."""
        periods = self._days.get(day)
        return self.hours[day.weekday()] if periods is None else periods

    # -- internals: instants are UTC datetimes -------------------------------------------------

    def _local_date(self, instant: datetime) -> date:
        return instant.astimezone(self._tz).date()

    def _instant(self, day: date, seconds: int) -> datetime:
        """The first instant whose wall-clock time in the zone is at least `day` + `seconds`."""
        wall = datetime.combine(day, time(), tzinfo=self._tz) + timedelta(seconds=seconds)
        instant = wall.astimezone(UTC)
        if instant.astimezone(self._tz) == wall:  # same tzinfo: compares wall-clock times
            return instant  # exists (fold=0 is the first of a repeated time)
        # In a gap the clocks jumped over `wall`: find the jump by bisection between the two
        # readings of it (a few hours apart at most, transitions fall on whole seconds).
        lo, hi = sorted((instant, wall.replace(fold=1).astimezone(UTC)))
        if lo.astimezone(self._tz) >= wall:
            return lo
        low, high = 0, int((hi - lo).total_seconds())
        while high - low > 1:
            mid = (low + high) // 2
            if (lo + timedelta(seconds=mid)).astimezone(self._tz) >= wall:
                high = mid
            else:
                low = mid
        return lo + timedelta(seconds=high)

    def _offset(self, day: date) -> timedelta | None:
        return datetime.combine(day, time(), tzinfo=self._tz).utcoffset()

    def _intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """`day`'s working periods as [start, end) UTC instants, in order, without empty ones."""
        periods = self.hours_on(day)
        if not periods:
            return []
        midnight = self._instant(day, 0)
        if self._instant(day, DAY_SECONDS) - midnight == _ONE_DAY:
            # No offset change today (no zone changes and changes back within one day).
            return [
                (midnight + timedelta(seconds=p.start), midnight + timedelta(seconds=p.end))
                for p in periods
            ]
        spans = [(self._instant(day, p.start), self._instant(day, p.end)) for p in periods]
        return [(a, b) for a, b in spans if b > a]

    def _plain_days(self, day: date, limit: int) -> int:
        """How many days from `day` on (at most `limit`) have their weekday's hours and a constant
        UTC offset, so that their working time is the nominal one."""
        i = bisect_left(self._special, day)
        if i < len(self._special):
            limit = min(limit, (self._special[i] - day).days)
        if limit <= 0:
            return 0
        offset = self._offset(day)
        for n in range(1, limit + 1):
            if self._offset(day + n * _ONE_DAY) != offset:
                return n - 1
        return limit

    def _next_day_with_hours(self, day: date) -> date | None:
        """The first date from `day` on with working periods; None if there is none."""
        if not self._week:
            i = bisect_left(self._extra, day)
            return self._extra[i] if i < len(self._extra) else None
        while not self.hours_on(day):  # ends: every week has hours, special dates are finite
            day += _ONE_DAY
        return day

    def _weeks_ahead(self, day: date, after: datetime, weeks: int) -> int:
        """Whole plain weeks (at most `weeks`) that can be skipped from the start of `day`."""
        if weeks <= 0 or not self._week or self._instant(day, 0) < after:
            return 0
        return self._plain_days(day, 7 * weeks) // 7


def _no_working_time(calendar: BusinessCalendar, moment: datetime) -> NoWorkingTime:
    local = moment.astimezone(calendar.tz).isoformat()
    return NoWorkingTime(f"hours: 日历在 {local} 之后没有任何工作时间", field="hours")


# -- public operations -------------------------------------------------------------------------


def add_working_time(start: datetime, duration: timedelta, calendar: BusinessCalendar) -> datetime:
    """The moment (UTC) by which `duration` of working time has passed since `start`; counting
    begins at the next working moment when `start` is outside working hours. For a positive
    duration the result is a working moment or the end of a working period (never the start of
    the next one); a zero duration returns `start` itself, so `add(add(s, a), b) == add(s, a + b)`
    always holds."""
    s = _utc(start, "start")
    if duration < _ZERO:
        raise ValueError("duration must not be negative")
    remaining = duration
    day = calendar._local_date(s) - _ONE_DAY
    while remaining:
        found = calendar._next_day_with_hours(day)
        if found is None:
            raise _no_working_time(calendar, s)
        day = found
        # Whole plain weeks, leaving at least a microsecond so the end falls inside a later day.
        weeks = (
            calendar._weeks_ahead(day, s, (remaining - _TICK) // calendar._week)
            if calendar._week
            else 0
        )
        if weeks:
            remaining -= weeks * calendar._week
            day += weeks * 7 * _ONE_DAY
            continue
        for a, b in calendar._intervals(day):
            if b <= s:
                continue
            a = max(a, s)
            if remaining <= b - a:
                return a + remaining
            remaining -= b - a
        day += _ONE_DAY
    return s


def working_time_between(a: datetime, b: datetime, calendar: BusinessCalendar) -> timedelta:
    """Working time in [a, b); negative when b is before a."""
    start, end = _utc(a, "a"), _utc(b, "b")
    if end < start:
        return -working_time_between(b, a, calendar)
    total = _ZERO
    day = calendar._local_date(start) - _ONE_DAY
    last = calendar._local_date(end)
    while day <= last + _ONE_DAY:
        found = calendar._next_day_with_hours(day)
        if found is None:
            break
        day = found
        if calendar._week and (last - day).days >= 7:
            # Days before `last` end before `end`: whole plain weeks count in one go.
            weeks = calendar._weeks_ahead(day, start, (last - day).days // 7)
            if weeks:
                total += weeks * calendar._week
                day += weeks * 7 * _ONE_DAY
                continue
        for x, y in calendar._intervals(day):
            overlap = min(y, end) - max(x, start)
            if overlap > _ZERO:
                total += overlap
        day += _ONE_DAY
    return total


def is_working(moment: datetime, calendar: BusinessCalendar) -> bool:
    """Whether `moment` falls inside a working period (a period's end is not inside it)."""
    s = _utc(moment, "moment")
    day = calendar._local_date(s)
    return any(
        a <= s < b for d in (day - _ONE_DAY, day, day + _ONE_DAY) for a, b in calendar._intervals(d)
    )


def next_working_moment(moment: datetime, calendar: BusinessCalendar) -> datetime:
    """`moment` itself when it is working time, else the start of the next working period (UTC)."""
    s = _utc(moment, "moment")
    day = calendar._local_date(s) - _ONE_DAY
    while True:
        found = calendar._next_day_with_hours(day)
        if found is None:
            raise _no_working_time(calendar, s)
        day = found
        for a, b in calendar._intervals(day):
            if b > s:
                return max(a, s)
        day += _ONE_DAY


def add_calendar_time(
    start: datetime, duration: timedelta, calendar: BusinessCalendar | None = None
) -> datetime:
    """Plain elapsed time (UTC): `duration` after `start` whatever the hours, real time across DST
    changes (unlike `+` on a datetime in a DST zone, which moves the wall clock). `calendar` is
    accepted, and not needed, so that callers can pick either function with the same arguments."""
    del calendar
    return _utc(start, "start") + duration


# -- public holidays ---------------------------------------------------------------------------


@cache
def china_holidays() -> PublicHolidays:
    """Mainland China's public holidays and make-up working days from the State Council notices
    bundled in `data/cn_holidays.json` (2025 and 2026). Years outside it have none."""
    text = resources.files("jingwei.flows").joinpath("data/cn_holidays.json").read_text("utf-8")
    data = json.loads(text)
    holidays: set[date] = set()
    workdays: set[date] = set()
    for year, entry in data["years"].items():
        for i, item in enumerate(entry["holidays"]):
            where = f"cn_holidays.json years.{year}.holidays[{i}]"
            first, last = _parse_date(item["start"], where), _parse_date(item["end"], where)
            if last < first:
                raise _bad(where, "结束日期早于开始日期")
            holidays.update(first + n * _ONE_DAY for n in range((last - first).days + 1))
        for i, item in enumerate(entry["workdays"]):
            workdays.add(_parse_date(item["date"], f"cn_holidays.json years.{year}.workdays[{i}]"))
    if holidays & workdays:
        raise _bad("cn_holidays.json", "有日期既是假日又是调休上班日")
    years = tuple(sorted(int(year) for year in data["years"]))
    return PublicHolidays(frozenset(holidays), frozenset(workdays), years, data["source"])


_PUBLIC_SETS = {"cn": china_holidays}


def china_calendar(
    years: Iterable[int] | None = None,
    *,
    timezone: str = DEFAULT_TIMEZONE,
    hours: Sequence[Sequence[Period]] = STANDARD_HOURS,
) -> BusinessCalendar:
    """Standard hours (or `hours`) with China's public holidays. Without `years` the calendar refers
    to the bundled data by name (`public_holidays="cn"`, every year it has, and later additions
    once stored as data); with `years` it copies in those years' dates, each of which must be in
    the data (`china_holidays().years`)."""
    frozen_hours = tuple(tuple(day) for day in hours)
    if years is None:
        return BusinessCalendar(timezone=timezone, hours=frozen_hours, public_holidays="cn")
    public = china_holidays()
    wanted = set(years)
    missing = sorted(wanted - set(public.years))
    if missing:
        covered = "、".join(map(str, public.years))
        raise _bad(
            "years", f"没有 {'、'.join(map(str, missing))} 年的节假日数据（已有：{covered}）"
        )
    return BusinessCalendar(
        timezone=timezone,
        hours=frozen_hours,
        holidays=frozenset(d for d in public.holidays if d.year in wanted),
        workdays=tuple((d, 0) for d in sorted(public.workdays) if d.year in wanted),
    )


@cache
def default_calendar() -> BusinessCalendar:
    """Asia/Shanghai, Monday to Friday 09:00–12:00 and 13:00–18:00, China's public holidays."""
    return china_calendar()


# -- validation and parsing --------------------------------------------------------------------


def _utc(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"{name} must be a datetime")
    if moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment.astimezone(UTC)


def _zone(key: object) -> ZoneInfo:
    if not isinstance(key, str) or not key:
        raise _bad("timezone", "应为 IANA 时区名称，如 Asia/Shanghai")
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _bad("timezone", f"未知的时区 {key!r}（应为 IANA 名称，如 Asia/Shanghai）") from None


def _check_hours(hours: object) -> tuple[tuple[Period, ...], ...]:
    if not isinstance(hours, Sequence) or isinstance(hours, str) or len(hours) != 7:
        raise _bad("hours", "应为周一到周日共 7 天的工作时段")
    return tuple(_check_day(day, WEEKDAYS[i]) for i, day in enumerate(hours))


def _check_day(day: object, name: str) -> tuple[Period, ...]:
    if not isinstance(day, Sequence) or isinstance(day, str):
        raise _bad(f"hours.{name}", "应为时段列表")
    periods: list[tuple[Period, int]] = []
    for i, item in enumerate(day):
        where = f"hours.{name}[{i}]"
        if not isinstance(item, Sequence) or isinstance(item, str) or len(item) != 2:
            raise _bad(where, "时段应为 [开始, 结束]（当天零点起的秒数）")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in item):
            raise _bad(where, "时段应为 [开始, 结束]（当天零点起的秒数）")
        start, end = item[0], item[1]
        if start < 0 or end > DAY_SECONDS:
            raise _bad(where, "时间应在 00:00 到 24:00 之间")
        if end <= start:
            raise _bad(where, f"结束时间 {_clock(end)} 应晚于开始时间 {_clock(start)}")
        periods.append((Period(start, end), i))
    periods.sort()
    for (before, _), (after, i) in pairwise(periods):
        if after.start < before.end:
            raise _bad(f"hours.{name}[{i}]", f"时段 {after} 与 {before} 重叠")
    return tuple(p for p, _ in periods)


def _check_date(value: object, where: str) -> date:
    if isinstance(value, datetime) or not isinstance(value, date):
        raise _bad(where, "应为日期")
    return value


def _check_workdays(workdays: object, holidays: frozenset[date]) -> tuple[tuple[date, int], ...]:
    if isinstance(workdays, Mapping):
        workdays = tuple(workdays.items())
    if not isinstance(workdays, Iterable):
        raise _bad("workdays", "应为 (日期, 星期几) 列表")
    seen: dict[date, int] = {}
    for i, item in enumerate(workdays):
        where = f"workdays[{i}]"
        if not isinstance(item, Sequence) or len(item) != 2:
            raise _bad(where, "应为 (日期, 按星期几的工作时间 0–6)")
        day, weekday = _check_date(item[0], where), item[1]
        where = f"workdays.{day.isoformat()}"
        if isinstance(weekday, bool) or not isinstance(weekday, int) or not 0 <= weekday <= 6:
            raise _bad(where, "按星期几的工作时间应为 0（周一）到 6（周日）")
        if day in seen:
            raise _bad(where, "同一日期出现了两次")
        if day in holidays:
            raise _bad(where, "同一天不能既是假日又是调休上班日")
        seen[day] = weekday
    return tuple(sorted(seen.items()))


def _list(value: object, where: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise _bad(where, "应为列表")
    return value


def _parse_clock(value: object, where: str) -> int:
    match = _TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _bad(where, f"时间应写作 HH:MM 或 HH:MM:SS，收到 {value!r}")
    h, m, s = int(match[1]), int(match[2]), int(match[3] or 0)
    if m > 59 or s > 59 or h > 24 or (h == 24 and (m or s)):
        raise _bad(where, f"时间应在 00:00 到 24:00 之间，收到 {value!r}")
    return h * 3600 + m * 60 + s


def _parse_date(value: object, where: str) -> date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise _bad(where, f"日期应写作 YYYY-MM-DD，收到 {value!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _bad(where, f"不存在的日期 {value!r}") from None


def _parse_weekday(value: object, where: str) -> int:
    if not isinstance(value, str) or value not in WEEKDAYS:
        raise _bad(where, f"星期应为 {'/'.join(WEEKDAYS)} 之一，收到 {value!r}")
    return WEEKDAYS.index(value)


def _parse_hours(value: object) -> tuple[tuple[Period, ...], ...]:
    if not isinstance(value, Mapping):
        raise _bad("hours", '应为对象，如 {"mon": [["09:00", "18:00"]]}')
    days: list[tuple[Period, ...]] = [() for _ in WEEKDAYS]
    for key, periods in value.items():
        if key not in WEEKDAYS:
            raise _bad(f"hours.{key}", f"未知的星期（应为 {'/'.join(WEEKDAYS)}）")
        items = _list(periods, f"hours.{key}")
        parsed = []
        for i, item in enumerate(items):
            where = f"hours.{key}[{i}]"
            if not isinstance(item, list | tuple) or len(item) != 2:
                raise _bad(where, '时段应写作 ["09:00", "12:00"]')
            parsed.append(Period.parse(item[0], item[1], where))
        days[WEEKDAYS.index(key)] = tuple(parsed)
    return tuple(days)


def _parse_workdays(value: object) -> tuple[tuple[date, int], ...]:
    if isinstance(value, Mapping):
        pairs = [
            (_parse_date(d, f"workdays.{d}"), _parse_weekday(w, f"workdays.{d}"))
            for d, w in value.items()
        ]
    else:
        pairs = [
            (_parse_date(d, f"workdays[{i}]"), 0) for i, d in enumerate(_list(value, "workdays"))
        ]
    return tuple(pairs)
