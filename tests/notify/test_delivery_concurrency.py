"""Several delivery workers at once on PostgreSQL: every delivery is claimed by one of them and
sent once (SKIP LOCKED), and one event fanned out by racing workers gives one delivery each."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from jingwei.notify import delivery as runner
from jingwei.notify.models import Delivery, DeliveryStatus, Notification
from jingwei.notify.services import event_publish

from ..concurrency import on_postgres, run_together
from ..factories import EmployeeFactory
from .engine_helpers import at_shanghai, make_rule, make_template
from .engine_helpers import recorder as recorder

pytestmark = [on_postgres, pytest.mark.django_db(transaction=True)]


def test_four_workers_send_each_of_two_hundred_deliveries_exactly_once(org, admin, recorder):
    people = [EmployeeFactory(tenant=org.tenant, name=f"接收人{i}") for i in range(4)]
    make_rule(
        admin,
        make_template(admin),
        recipients=[{"kind": "employee", "employee_id": p.pk} for p in people],
        channels={"urgent": ["inapp", "recorder"]},
    )
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(10)):
        for n in range(25):
            event_publish(
                tenant_id=org.tenant.pk, name="ticket.sla.breached", key=f"e{n}", severity="urgent"
            )

        def worker() -> int:
            total = 0
            while True:
                done = runner.deliver_due(limit=7)
                total += done
                if not done and not Delivery.objects.exclude(status=DeliveryStatus.SENT).exists():
                    return total

        results = run_together(worker, worker, worker, worker)

    assert all(isinstance(r, int) for r in results), results
    assert sum(results) == 200
    assert Delivery.objects.filter(status=DeliveryStatus.SENT).count() == 200
    assert Notification.objects.count() == 100
    uids = [m.delivery_uid for m in recorder.sent]
    assert len(uids) == 100 and len(set(uids)) == 100


def test_racing_fan_outs_of_one_event_give_one_delivery_per_recipient(org, admin):
    people = [EmployeeFactory(tenant=org.tenant) for _ in range(3)]
    make_rule(
        admin,
        make_template(admin),
        recipients=[{"kind": "employee", "employee_id": p.pk} for p in people],
    )
    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(10)):
        event_publish(tenant_id=org.tenant.pk, name="ticket.sla.breached", key="one")
        from jingwei.notify.services import events_fan_out

        results: list[Any] = run_together(events_fan_out, events_fan_out, events_fan_out)

    assert sorted(results) == [0, 0, 1]
    assert Delivery.objects.count() == 3
