"""The seed's story, through real HTTP to the simulators: an S-level ticket comes in at night;
the on-duty dispatcher is reached at once by WeCom, the 华东 DingTalk group hears of it, the
customer gets the 受理 SMS, an integration gets a signed webhook; the manager's daily digest
mail waits for the morning. Nothing arrives twice, even when the workers run again."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from jingwei.notify import delivery as runner
from jingwei.notify.models import Delivery, DeliveryStatus, Event
from jingwei.notify.services import config
from jingwei.org.scope import actor_for

from ..factories import EmployeeFactory
from ..tickets.test_tickets import answers, create
from .engine_helpers import at_shanghai, make_rule, make_template

pytestmark = pytest.mark.django_db


@pytest.fixture
def shipped(org: Any, admin: Any) -> dict[str, Any]:
    from jingwei.flows.demo import load_shipped_flows
    from jingwei.tickets.demo import load_shipped_templates

    load_shipped_flows(org.tenant.pk)
    return {t.key: t for t in load_shipped_templates(org.tenant.pk)}


def deliver_all() -> None:
    while runner.deliver_due():
        pass


@pytest.fixture
def channels(org, admin, wecom_provider, dingtalk_provider, sms_provider, webhook_provider):
    actor = actor_for(admin)
    for name, provider in (
        ("wecom", wecom_provider),
        ("dingtalk", dingtalk_provider),
        ("sms", sms_provider),
        ("webhook", webhook_provider),
    ):
        config.channel_config_save(actor=actor, channel=name, settings=provider.settings)
    return {
        "wecom": wecom_provider.sim,
        "dingtalk": dingtalk_provider.sim,
        "sms": sms_provider.sim,
        "webhook": webhook_provider.sim,
    }


def test_an_s_level_ticket_at_night_reaches_everyone_it_should_once(
    org, admin, shipped, channels, client_as
):
    dispatcher = EmployeeFactory(tenant=org.tenant, name="张伟", region=org.shanghai)
    config.preference_save(
        actor=actor_for(dispatcher),
        muted_channels=[],
        quiet_start=None,
        quiet_end=None,
        addresses={"wecom_userid": "ZhangWei"},
    )
    actor = actor_for(admin)
    roster = config.roster_save(actor=actor, name="华东调度值班", region_id=org.east.pk)
    config.shifts_add(
        actor=actor,
        roster_id=roster.pk,
        shifts=[(dispatcher.pk, at_shanghai(20), at_shanghai(8, day=25))],
    )
    alarm = make_template(
        admin,
        key="s-ticket",
        title="S 级工单 {{ ticket.number }}",
        text="{{ ticket.title }}，联系人 {{ customer.name }}",
    )
    make_rule(
        admin,
        alarm,
        name="S 级工单呼叫值班调度",
        event="ticket.created",
        condition='ticket.priority == "S"',
        recipients=[{"kind": "duty", "roster_id": roster.pk}],
        channels={"urgent": ["inapp", "wecom", "dingtalk", "webhook"]},
    )
    receipt = make_template(
        admin,
        key="received-sms",
        title="工单已受理",
        sms_template_code="SMS_1001",
        sms_params={"ticket": "{{ ticket.number }}", "customer": "{{ customer.name }}"},
    )
    make_rule(
        admin,
        receipt,
        name="受理短信",
        event="ticket.created",
        recipients=[{"kind": "customer"}],
        channels={"urgent": ["sms"], "info": ["sms"]},
    )
    digest = make_template(admin, key="digest", title="新工单 {{ ticket.number }}")
    make_rule(
        admin,
        digest,
        name="主管知悉",
        event="ticket.created",
        severity="info",
        recipients=[{"kind": "employee", "employee_id": admin.pk}],
        channels={"info": ["inapp"]},
    )

    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(23, 10)):
        ticket = create(client_as(admin), org, priority="S", answers=answers(org))
        deliver_all()
        deliver_all()  # a second worker pass finds nothing more to send

    number = ticket["number"]
    (wecom,) = channels["wecom"].messages
    assert wecom.touser == ("ZhangWei",)
    assert number in str(wecom.content)
    (robot,) = channels["dingtalk"].messages
    assert number in robot.title
    (sms,) = channels["sms"].messages
    assert sms.phone_numbers == (answers(org)["contact_phone"],)
    assert sms.template_param == {"ticket": number, "customer": "李雷"}
    (hook,) = channels["webhook"].messages
    assert hook["event"] == "ticket.created" and hook["payload"]["ticket"]["number"] == number
    assert channels["webhook"].duplicates == 0
    # The S-level alarm ignores the night; the manager's info notice waits for 08:00.
    waiting = Delivery.objects.get(rule__name="主管知悉")
    assert (waiting.status, waiting.not_before) == (DeliveryStatus.PENDING, at_shanghai(8, day=25))
    assert Event.objects.filter(name="ticket.created").count() == 1

    with mock.patch("django.utils.timezone.now", return_value=at_shanghai(8, day=25)):
        deliver_all()
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENT}


def test_assigning_and_closing_a_ticket_are_events_for_the_rules(org, admin, shipped, client_as):
    client = client_as(admin)
    ticket = create(client, org)
    colleague = EmployeeFactory(tenant=org.tenant, name="吴昊")
    from jingwei.org.models import RoleAssignment

    from ..factories import make_role

    RoleAssignment.objects.create(
        tenant=org.tenant,
        employee=colleague,
        role=make_role(org.tenant, "工程师", ["ticket.view", "ticket.handle"]),
        scope="tenant",
    )
    assigned = client.post(
        f"/api/tickets/{ticket['id']}/assign",
        {"owner_id": colleague.pk, "reason": "就近"},
        content_type="application/json",
    )
    assert assigned.status_code == 200, assigned.content
    closed = client.post(
        f"/api/tickets/{ticket['id']}/close", {"reason": "重复"}, content_type="application/json"
    )
    assert closed.status_code == 200, closed.content

    names = list(Event.objects.order_by("id").values_list("name", flat=True))
    assert names == ["ticket.created", "ticket.assigned", "ticket.closed"]
    assigned_event = Event.objects.get(name="ticket.assigned")
    assert assigned_event.payload["owner_id"] == colleague.pk
    assert assigned_event.payload["reason"] == "就近"
