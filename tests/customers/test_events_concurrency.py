"""Events sent twice at the same moment (an integration retrying before the first answer came):
stored once, counted once, one customer registered. Real threads with their own connections on
PostgreSQL (SQLite serialises writers, so the race cannot happen there)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from jingwei.customers import services
from jingwei.customers.identities import IdentityInput
from jingwei.customers.models import Customer, CustomerEvent, CustomerTag, Tag, TagGroup, TagRule
from jingwei.customers.services import events as event_services
from jingwei.customers.services.events import EventInput
from jingwei.org.scope import actor_for

from ..concurrency import run_together
from .factories import make_customer

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="overlapping writers are a PostgreSQL property (SQLite serialises them)",
    ),
]


def order(event_id: str, **who: Any) -> EventInput:
    return EventInput(
        event_id=event_id,
        kind="order",
        channel="taobao",
        occurred_at=timezone.now() - timedelta(hours=1),
        amount=None,
        **who,
    )


@pytest.fixture
def frequent(org):
    group = TagGroup.objects.create(tenant=org.tenant, name="客户行为")
    tag = Tag.objects.create(tenant=org.tenant, group=group, name="高频用户")
    return TagRule.objects.create(
        tenant=org.tenant,
        name="高频用户",
        tag=tag,
        conditions={"event": "order", "within_days": 90, "op": "gte", "value": 2},
    )


def test_the_same_event_sent_twice_at_once_is_stored_once(admin, frequent):
    wang = make_customer(admin, "王建国", "13817450021")
    event = order("TB-race-1", customer_id=wang.pk)

    results = run_together(
        *[lambda: services.event_ingest(actor=actor_for(admin), event=event)] * 2
    )

    assert sorted(created for _, created in results) == [False, True], results
    assert results[0][0].pk == results[1][0].pk
    assert CustomerEvent.objects.filter(event_id="TB-race-1").count() == 1
    assert not CustomerTag.objects.filter(customer=wang).exists()  # one order, not two


def test_a_new_customers_event_sent_twice_at_once_registers_one_customer(
    admin, frequent, monkeypatch
):
    # Both requests look for the event before either stores it: the unique constraint decides.
    looked = threading.Barrier(2)
    stored = event_services._stored
    waited: set[int] = set()

    def gated(tenant_id: int, event_id: str) -> Any:
        found = stored(tenant_id, event_id)
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            looked.wait(timeout=10)
        return found

    monkeypatch.setattr(event_services, "_stored", gated)
    event = order(
        "mp-race-1",
        identities=[IdentityInput("wechat_unionid", "oUnionRace01")],
        customer_name="赵敏",
    )

    results = run_together(
        *[lambda: services.event_ingest(actor=actor_for(admin), event=event)] * 2
    )

    assert sorted(created for _, created in results) == [False, True], results
    assert Customer.objects.filter(name="赵敏").count() == 1
    assert CustomerEvent.objects.filter(event_id="mp-race-1").count() == 1


def test_two_orders_at_once_tag_the_customer_exactly_once(admin, frequent):
    wang = make_customer(admin, "王建国", "13817450021")

    results = run_together(
        lambda: services.event_ingest(
            actor=actor_for(admin), event=order("a", customer_id=wang.pk)
        ),
        lambda: services.event_ingest(
            actor=actor_for(admin), event=order("b", customer_id=wang.pk)
        ),
    )

    assert all(created for _, created in results), results
    link = CustomerTag.objects.get(customer=wang)
    assert link.rule_id == frequent.pk
    assert CustomerEvent.objects.filter(customer=wang, kind="system").count() == 1


def test_a_batch_run_and_arriving_events_at_once_leave_one_tag(admin, frequent):
    customers = [make_customer(admin, f"客户{i}", f"1380000000{i}") for i in range(5)]
    for c in customers:
        services.event_ingest(
            actor=actor_for(admin), event=order(f"first-{c.pk}", customer_id=c.pk)
        )

    run_together(
        lambda: services.rules_run_all(tenant_id=admin.tenant_id),
        *[
            (
                lambda c=c: services.event_ingest(
                    actor=actor_for(admin), event=order(f"second-{c.pk}", customer_id=c.pk)
                )
            )
            for c in customers
        ],
    )

    for c in customers:
        assert CustomerTag.objects.filter(customer=c).count() == 1
