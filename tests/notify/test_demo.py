"""The demo's notifications: loadable twice without change, someone on duty now, and an S-level
demo ticket reaches the on-duty dispatcher through the simulators the demo points at."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import serializers

from jingwei.flows.demo import load_shipped_flows
from jingwei.notify import delivery as runner
from jingwei.notify import demo as notify_demo
from jingwei.notify.models import (
    ChannelConfig,
    Delivery,
    MessageTemplate,
    Roster,
    Rule,
    Shift,
)
from jingwei.notify.services import config, event_publish
from jingwei.notify.simulators import Simulators, serve
from jingwei.org.demo import load_demo
from jingwei.org.models import Employee

pytestmark = pytest.mark.django_db


def dump() -> str:
    rows: list[Any] = []
    for model in (ChannelConfig, MessageTemplate, Roster, Shift, Rule):
        rows.extend(model.objects.order_by("pk"))
    return serializers.serialize("json", rows)


def test_the_demo_notifications_load_twice_without_change_and_someone_is_on_duty():
    tenant = load_demo()
    load_shipped_flows(tenant.pk)
    notify_demo.load_demo_notifications(tenant.pk)
    first = dump()
    notify_demo.load_demo_notifications(tenant.pk)
    assert dump() == first

    roster = Roster.objects.get(tenant=tenant, name="华东调度值班")
    (on_duty,) = config.on_duty(roster)
    assert Employee.objects.get(pk=on_duty).user.username in {"liuyang", "chenjing"}
    assert Rule.objects.filter(tenant=tenant).count() == 4


def test_an_s_level_demo_ticket_reaches_the_dispatcher_on_wecom_through_the_simulators(monkeypatch):
    sims = Simulators()
    with serve(sims.app()) as served:
        monkeypatch.setattr(notify_demo, "SIMULATORS_URL", served.url)
        tenant = load_demo()
        notify_demo.load_demo_notifications(tenant.pk)
        event_publish(
            tenant_id=tenant.pk,
            name="ticket.created",
            key="demo-s",
            severity="urgent",
            payload={
                "ticket": {"number": "GD20261125-0099", "title": "冷库停机", "priority": "S"},
                "customer": {"name": "王建国", "phone": "13912345678"},
            },
        )
        while runner.deliver_due():
            pass

    assert {d.channel: d.status for d in Delivery.objects.all()} == {
        "inapp": "sent",
        "wecom": "sent",
        "dingtalk": "sent",
        "sms": "sent",
    }
    (wecom,) = sims.wecom.messages
    assert "GD20261125-0099" in str(wecom.content)
    (sms,) = sims.sms.messages
    assert sms.phone_numbers == ("13912345678",)
