"""Daily timers: housekeeping that runs once a day at a local hour for every tenant, scheduled by
the loop itself and rescheduled by each run."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from jingwei.core import timers
from jingwei.core.models import Timer, TimerStatus

from ..factories import TenantFactory

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
KIND = "test.daily_probe"
runs: list[tuple[int, datetime]] = []


@pytest.fixture(autouse=True)
def probe() -> Any:
    @timers.daily_timer(KIND, time(2, 0))
    def run(timer: Timer) -> None:
        runs.append((timer.tenant_id, timer.due_at))

    runs.clear()
    yield
    timers._handlers.pop(KIND)
    timers._daily.pop(KIND)


def test_every_active_tenant_gets_its_next_run_at_two_in_the_morning_local_time() -> None:
    shanghai = TenantFactory(slug="sh", timezone="Asia/Shanghai")
    london = TenantFactory(slug="ldn", timezone="Europe/London")
    TenantFactory(slug="off", is_active=False)
    now = datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)

    assert timers.ensure_daily_timers(now) >= 2
    due = dict(Timer.objects.filter(kind=KIND).values_list("tenant__slug", "due_at"))

    assert set(due) == {"sh", "ldn"}
    assert due["sh"] == datetime(2026, 11, 26, 2, 0, tzinfo=SHANGHAI)
    assert due["ldn"] == datetime(2026, 11, 26, 2, 0, tzinfo=ZoneInfo("Europe/London"))
    assert timers.ensure_daily_timers(now) == 0  # nothing twice
    assert shanghai.pk and london.pk


def test_a_run_schedules_the_next_day_and_a_missed_day_is_run_once_not_caught_up() -> None:
    tenant = TenantFactory(slug="sh", timezone="Asia/Shanghai")
    timers.ensure_daily_timers(datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI))

    # The machine was off for three days: one run, then the next one is tomorrow 02:00.
    late = datetime(2026, 11, 29, 9, 30, tzinfo=SHANGHAI)
    assert timers.fire_due(now=late) >= 1
    timer = Timer.objects.get(kind=KIND, tenant=tenant)

    assert [r[0] for r in runs] == [tenant.pk]
    assert timer.status == TimerStatus.PENDING
    assert timer.due_at == datetime(2026, 11, 30, 2, 0, tzinfo=SHANGHAI)
    assert timers.fire_due(now=late) == 0


def test_next_daily_skips_to_tomorrow_once_the_hour_has_passed() -> None:
    at = time(2, 0)
    before = datetime(2026, 11, 25, 1, 59, tzinfo=SHANGHAI)
    after = datetime(2026, 11, 25, 2, 0, tzinfo=SHANGHAI)
    assert timers._next_daily("Asia/Shanghai", at, before) == before + timedelta(minutes=1)
    assert timers._next_daily("Asia/Shanghai", at, after) == after + timedelta(days=1)
