"""The timeline as a reader sees it (newest first, filtered, paged, including merged-in customers,
only within the reader's scope), the retention setting and the purge of old events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from jingwei.audit.models import AuditEvent
from jingwei.customers import services
from jingwei.customers.models import CustomerEvent, CustomerSettings
from jingwei.customers.services import events as event_services
from jingwei.customers.services.events import EventInput
from jingwei.org.scope import actor_for

from .factories import make_customer

pytestmark = pytest.mark.django_db

JSON = "application/json"


def send(by: Any, customer_id: int, event_id: str, kind: str, days: float, **extra: Any) -> None:
    services.event_ingest(
        actor=actor_for(by),
        event=EventInput(
            event_id=event_id,
            kind=kind,
            occurred_at=timezone.now() - timedelta(days=days),
            customer_id=customer_id,
            **extra,
        ),
    )


@pytest.fixture
def wang(admin, org):
    """王建国 of 浦东, with a mail, two orders and a survey."""
    customer = make_customer(admin, "王建国", "13817450021", region_id=org.pudong.pk)
    send(admin, customer.pk, "mail-1", "mail", 40, title="来信咨询空调保养")
    send(admin, customer.pk, "tb-1", "order", 30, title="淘宝订单", channel="taobao")
    send(admin, customer.pk, "tb-2", "order", 12, title="淘宝订单", channel="taobao")
    send(
        admin,
        customer.pk,
        "survey-1",
        "survey",
        2,
        title="回访 5 分",
        data={"score": 5, "phone": "13817450021"},
    )
    return customer


def titles(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [e["title"] for e in response.json()["items"]]


def test_the_timeline_lists_every_touch_newest_first(wang, admin, client_as):
    r = client_as(admin).get(f"/api/customers/{wang.pk}/timeline")

    assert titles(r) == ["回访 5 分", "淘宝订单", "淘宝订单", "来信咨询空调保养"]
    assert r.json()["count"] == 4


def test_the_timeline_filters_by_kind_channel_and_time_and_pages(wang, admin, client_as):
    client = client_as(admin)
    base = f"/api/customers/{wang.pk}/timeline"
    since = (timezone.now() - timedelta(days=35)).isoformat()
    until = (timezone.now() - timedelta(days=5)).isoformat()

    assert titles(client.get(base, {"kind": "mail"})) == ["来信咨询空调保养"]
    assert titles(client.get(base, {"channel": "taobao"})) == ["淘宝订单", "淘宝订单"]
    assert titles(client.get(base, {"since": since, "until": until})) == ["淘宝订单", "淘宝订单"]
    page = client.get(base, {"limit": 2, "offset": 2})
    assert titles(page) == ["淘宝订单", "来信咨询空调保养"]
    assert page.json()["count"] == 4


def test_phones_in_event_data_are_masked_without_view_pii(
    wang, admin, east_manager, shanghai_agent, client_as
):
    wang.owner = shanghai_agent
    wang.save()

    masked = client_as(shanghai_agent).get(f"/api/customers/{wang.pk}/timeline", {"kind": "survey"})
    full = client_as(east_manager).get(f"/api/customers/{wang.pk}/timeline", {"kind": "survey"})

    assert masked.json()["items"][0]["data"] == {"score": 5, "phone": "138****0021"}
    assert full.json()["items"][0]["data"] == {"score": 5, "phone": "13817450021"}


def test_a_merged_customers_events_show_on_the_survivors_timeline(wang, admin, client_as):
    duplicate = make_customer(admin, "王建国", "13817450029")
    send(admin, duplicate.pk, "call-1", "call", 1, title="来电报修")
    services.customer_merge(actor=actor_for(admin), target_id=wang.pk, source_id=duplicate.pk)

    on_survivor = client_as(admin).get(f"/api/customers/{wang.pk}/timeline")
    by_old_id = client_as(admin).get(f"/api/customers/{duplicate.pk}/timeline")

    assert titles(on_survivor)[0] == "来电报修"
    assert titles(by_old_id) == titles(on_survivor)


def test_the_timeline_is_only_for_customers_the_reader_may_see(
    wang, org, admin, east_manager, shanghai_agent, other_admin, client_as
):
    guangzhou = make_customer(admin, "黄丽", "13926075512", region_id=org.guangzhou.pk)

    assert client_as(east_manager).get(f"/api/customers/{wang.pk}/timeline").status_code == 200
    assert client_as(east_manager).get(f"/api/customers/{guangzhou.pk}/timeline").status_code == 404
    assert client_as(shanghai_agent).get(f"/api/customers/{wang.pk}/timeline").status_code == 404
    foreign = client_as(other_admin).get(f"/api/customers/{wang.pk}/timeline")
    missing = client_as(other_admin).get("/api/customers/987654321/timeline")
    assert foreign.status_code == 404
    assert foreign.json() == missing.json()


# --- settings --------------------------------------------------------------------------------


def test_retention_defaults_to_two_years_and_can_be_changed_by_a_manager(admin, client_as):
    client = client_as(admin)

    assert client.get("/api/customers/settings").json() == {"event_retention_days": 730}
    r = client.put("/api/customers/settings", {"event_retention_days": 365}, content_type=JSON)

    assert r.json() == {"event_retention_days": 365}
    assert CustomerSettings.objects.get().event_retention_days == 365
    event = AuditEvent.objects.get(action="customers.settings.updated")
    assert (event.before, event.after) == (
        {"event_retention_days": 730},
        {"event_retention_days": 365},
    )


@pytest.mark.parametrize("days,status", [(0, 200), (29, 422), (30, 200), (36500, 200)])
def test_retention_is_for_ever_or_at_least_30_days(admin, client_as, days, status):
    r = client_as(admin).put(
        "/api/customers/settings", {"event_retention_days": days}, content_type=JSON
    )

    assert r.status_code == status
    if status == 422:
        assert r.json()["field"] == "event_retention_days"


def test_settings_need_customer_manage(east_manager, other_admin, admin, client_as):
    assert client_as(east_manager).get("/api/customers/settings").status_code == 403
    r = client_as(east_manager).put(
        "/api/customers/settings", {"event_retention_days": 30}, content_type=JSON
    )
    assert r.status_code == 403
    client_as(other_admin).put(
        "/api/customers/settings", {"event_retention_days": 30}, content_type=JSON
    )
    assert client_as(admin).get("/api/customers/settings").json() == {"event_retention_days": 730}


# --- purge -----------------------------------------------------------------------------------


def _events_at(customer: Any, days: list[float]) -> None:
    now = timezone.now()
    CustomerEvent.objects.bulk_create(
        CustomerEvent(
            tenant_id=customer.tenant_id,
            customer=customer,
            kind="page_view",
            event_id=f"pv-{customer.pk}-{i}",
            occurred_at=now - timedelta(days=d),
        )
        for i, d in enumerate(days)
    )


def test_the_purge_deletes_exactly_the_events_older_than_the_retention(
    admin, other_admin, actor_of, monkeypatch
):
    monkeypatch.setattr(event_services, "PURGE_CHUNK", 2)  # several chunks
    mine = make_customer(admin, "王建国", "13817450021")
    theirs = make_customer(other_admin, "外人客户", "13700000009")
    _events_at(mine, [1, 29.9, 30.1, 45, 400, 800])
    _events_at(theirs, [45, 800])
    services.customer_settings_update(actor=actor_of(admin), event_retention_days=30)
    now = timezone.now()

    deleted = services.events_purge_expired(tenant_id=admin.tenant_id, now=now)

    assert deleted == 4
    kept = CustomerEvent.objects.filter(customer=mine).order_by("occurred_at")
    assert [(now - e.occurred_at).days for e in kept] == [29, 1]
    assert CustomerEvent.objects.filter(customer=theirs).count() == 2
    purge = AuditEvent.objects.get(action="customers.events.purged")
    assert purge.data["deleted"] == 4
    assert services.events_purge_expired(tenant_id=admin.tenant_id, now=now) == 0


def test_the_default_retention_keeps_two_years_and_zero_keeps_everything(admin, actor_of):
    mine = make_customer(admin, "王建国", "13817450021")
    _events_at(mine, [700, 760])

    assert services.events_purge_expired(tenant_id=admin.tenant_id) == 1
    services.customer_settings_update(actor=actor_of(admin), event_retention_days=0)
    _events_at(make_customer(admin, "李秀英", "13916620318"), [5000])
    assert services.events_purge_expired(tenant_id=admin.tenant_id) == 0
    assert CustomerEvent.objects.count() == 2
