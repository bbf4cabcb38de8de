"""SLAs on waits: a message catch waiting for an outside signal and a call activity waiting for
its sub-flow are watched like tasks — the case owner hears first, then the owner's manager — and
the watch ends when the wait does."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jingwei.core.models import Timer, TimerStatus
from jingwei.core.timers import fire_due
from jingwei.flows import services
from jingwei.flows.models import FlowEvent, Instance, InstanceStatus, Task, TaskStatus
from jingwei.notify.models import Notification
from jingwei.org.scope import actor_for

from ..factories import EmployeeFactory
from .test_engine import FIXTURES

pytestmark = pytest.mark.django_db

SLA = """<bpmn:extensionElements>
        <jw:sla duration="PT1H" calendar="calendar">
          <jw:escalation after="PT0M" action="remind" target="assignee" />
          <jw:escalation after="PT30M" action="reassign" target="supervisor" />
        </jw:sla>
      </bpmn:extensionElements>
      """
JW = 'xmlns:jw="http://jingwei.example/schema/bpmn"'


def with_sla(fixture: str, element: str) -> str:
    xml = (FIXTURES / fixture).read_text()
    if JW not in xml:
        xml = xml.replace('xmlns:bpmn="', f'{JW} xmlns:bpmn="', 1)
    opening = xml.index(f'id="{element}"')
    body = xml.index(">", opening) + 1
    return xml[:body] + "\n      " + SLA + xml[body:].lstrip()


def publish(admin, key: str, xml: str):
    actor = actor_for(admin)
    services.definition_save(actor=actor, key=key, name=key, xml=xml)
    return services.definition_publish(actor=actor, key=key)


@pytest.fixture
def owner(org):
    boss = EmployeeFactory(tenant=org.tenant, name="钱经理", region=org.east)
    return EmployeeFactory(tenant=org.tenant, name="孙专员", region=org.shanghai, manager=boss)


def later(minutes: int):
    return timezone.now() + timedelta(minutes=minutes)


def kinds(instance) -> list[str]:
    return list(FlowEvent.objects.filter(instance=instance).values_list("kind", flat=True))


def test_an_unanswered_message_wait_reminds_the_owner_then_alerts_the_manager(org, admin, owner):
    publish(admin, "pay", with_sla("wait_for_payment.bpmn", "Wait_Paid"))
    instance = services.instance_start(
        actor=actor_for(admin), key="pay", data={}, owner_id=owner.pk
    )

    assert fire_due(now=later(59)) == 0
    fire_due(now=later(61))
    assert kinds(instance).count("sla.breached") == 1
    remind = Notification.objects.get(kind="flows.sla_remind")
    assert remind.recipient_id == owner.pk
    assert "等待超时" in remind.title and "等待付款" in remind.title

    fire_due(now=later(91))  # +30 min: "reassign" on a wait has nothing to hand over: an alert
    alert = Notification.objects.get(kind="flows.sla_alert")
    assert alert.recipient_id == owner.manager_id
    assert alert.severity == "urgent"
    assert kinds(instance).count("sla.escalated") == 2


def test_the_message_arriving_ends_the_watch(org, admin, owner):
    publish(admin, "pay", with_sla("wait_for_payment.bpmn", "Wait_Paid"))
    instance = services.instance_start(
        actor=actor_for(admin), key="pay", data={}, owner_id=owner.pk
    )
    services.instance_message(actor=actor_for(admin), instance_id=instance.pk, message="paid")

    assert not Timer.objects.filter(kind="flows.sla", status=TimerStatus.PENDING).exists()
    fire_due(now=later(24 * 60))
    assert "sla.breached" not in kinds(instance)
    assert not Notification.objects.filter(kind__startswith="flows.sla").exists()


def test_a_slow_sub_flow_breaches_its_call_activity_and_finishing_ends_the_watch(org, admin, owner):
    publish(admin, "simple_linear", (FIXTURES / "simple_linear.bpmn").read_text())
    publish(admin, "call_parent", with_sla("call_parent.bpmn", "Call_Sub"))
    parent = services.instance_start(
        actor=actor_for(admin), key="call_parent", data={}, owner_id=owner.pk
    )
    sub = Instance.objects.get(parent_token__instance=parent)

    fire_due(now=later(61))
    breached = FlowEvent.objects.get(instance=parent, kind="sla.breached")
    assert breached.node_id == "Call_Sub"
    assert Notification.objects.get(kind="flows.sla_remind").recipient_id == owner.pk

    task = Task.objects.get(instance=sub, status=TaskStatus.OPEN)
    services.task_complete(actor=actor_for(admin), task_id=task.pk)
    parent.refresh_from_db()
    assert parent.status == InstanceStatus.COMPLETED
    assert not Timer.objects.filter(kind="flows.sla", status=TimerStatus.PENDING).exists()
    fire_due(now=later(120))
    assert kinds(parent).count("sla.escalated") == 1  # only the remind before it finished
