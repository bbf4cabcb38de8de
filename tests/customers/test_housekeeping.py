"""The nightly run: scheduled per tenant at 02:00 by the timer loop, run as a job by the worker,
it does what the passing of time asks — old events go, idle customers return to the pool, rules
whose windows moved are re-applied, scores follow."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from jingwei.core import timers
from jingwei.core.models import Timer
from jingwei.customers.models import (
    Customer,
    CustomerEvent,
    CustomerPool,
    CustomerSettings,
    CustomerTag,
    OwnershipChange,
    ScoreSignal,
    Tag,
    TagGroup,
    TagRule,
)

from .factories import make_customer
from .test_import_jobs import run_worker

pytestmark = pytest.mark.django_db(transaction=True)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_the_nightly_run_purges_returns_tags_and_scores(org: Any, admin: Any) -> None:
    tenant = org.tenant
    night = datetime(2026, 11, 26, 2, 0, 30, tzinfo=SHANGHAI)
    loyal = make_customer(admin, "王建国", "13817450021", region_id=org.pudong.pk)
    idle = make_customer(admin, "李娜", "13900001111", region_id=org.pudong.pk)
    Customer.objects.filter(pk=idle.pk).update(
        owned_since=night - timedelta(days=40), last_followed_at=night - timedelta(days=35)
    )
    Customer.objects.filter(pk=loyal.pk).update(last_followed_at=night - timedelta(days=1))
    CustomerPool.objects.create(
        tenant=tenant, region=org.shanghai, name="上海公海", return_after_days=30
    )
    CustomerSettings.objects.create(tenant=tenant, event_retention_days=365)
    for n, days_ago in enumerate([1, 20, 60, 400]):  # the last one is past retention
        CustomerEvent.objects.create(
            tenant=tenant,
            customer=loyal,
            kind="order",
            event_id=f"order-{n}",
            occurred_at=night - timedelta(days=days_ago),
            amount="199.00",
        )
    frequent = Tag.objects.create(
        tenant=tenant, group=TagGroup.objects.create(tenant=tenant, name="价值"), name="高频用户"
    )
    rule = TagRule.objects.create(
        tenant=tenant,
        name="近 90 天下单 ≥ 3 次",
        tag=frequent,
        conditions={"event": "order", "within_days": 90, "op": "gte", "value": 3},
    )
    ScoreSignal.objects.create(
        tenant=tenant, name="高频", conditions={"tag": frequent.pk}, points=25
    )

    timers.ensure_daily_timers(night - timedelta(hours=12))
    assert Timer.objects.get(tenant=tenant, kind="customers.daily").due_at == night.replace(
        second=0
    )
    assert timers.fire_due(now=night) >= 1
    ran = run_worker()

    assert [r.task_path for r in ran] == ["jingwei.customers.tasks.daily"]
    assert not CustomerEvent.objects.filter(event_id="order-3").exists()
    idle.refresh_from_db()
    loyal.refresh_from_db()
    assert idle.owner_id is None  # back in 上海公海
    assert OwnershipChange.objects.filter(customer=idle, kind="auto_return").exists()
    assert loyal.owner_id == admin.pk
    assert CustomerTag.objects.get(customer=loyal, tag=frequent).rule_id == rule.pk
    assert loyal.score == 25
    # And tomorrow night is booked.
    assert Timer.objects.get(tenant=tenant, kind="customers.daily").due_at == night.replace(
        second=0
    ) + timedelta(days=1)
