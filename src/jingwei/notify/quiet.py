"""Quiet hours (免打扰): when a non-urgent message created at `at` may go out."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


def quiet_release(at: datetime, start: time, end: time, tz: ZoneInfo) -> datetime | None:
    """The end of the quiet window `at` falls in (local time `end`, that day or the next), or
    None when `at` is outside it. A window may wrap midnight (22:00–08:00) or not (12:00–14:00);
    start == end means no quiet hours."""
    if start == end:
        return None
    local = at.astimezone(tz)
    now = local.time().replace(tzinfo=None)
    inside = start <= now < end if start < end else (now >= start or now < end)
    if not inside:
        return None
    day = local.date() if now < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=tz)
