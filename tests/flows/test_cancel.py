"""Withdrawing a running instance (its case was cancelled): tasks, timers and sub-flows stop."""

from __future__ import annotations

import pytest

from jingwei.audit.models import AuditEvent
from jingwei.core.errors import Conflict, DomainError, Forbidden
from jingwei.core.models import Timer, TimerStatus
from jingwei.flows import services
from jingwei.flows.models import FlowEvent, Instance, InstanceStatus, Task, TaskStatus, Token
from jingwei.org.scope import actor_for

from .test_engine import domain_actions, publish, team  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db


def test_cancelling_stops_open_tasks_and_their_timers(org, admin, team, domain_actions):  # noqa: F811
    publish(admin, "after_sales", "after_sales_sop.bpmn")
    instance = services.instance_start(
        actor=actor_for(admin),
        key="after_sales",
        data={"priority": "normal", "engineer": team["工程师"].employee_no},
        region_id=org.pudong.pk,
    )
    accept = Task.objects.get(instance=instance, status=TaskStatus.OPEN)
    assert Timer.objects.filter(key=f"task:{accept.pk}:sla", status=TimerStatus.PENDING).exists()

    services.instance_cancel(actor=actor_for(admin), instance_id=instance.pk, reason="客户撤单")

    instance.refresh_from_db()
    accept.refresh_from_db()
    assert instance.status == InstanceStatus.CANCELLED and instance.ended_at is not None
    assert accept.status == TaskStatus.CANCELLED
    assert not Timer.objects.filter(tenant=org.tenant, status=TimerStatus.PENDING).exists()
    assert not Token.objects.filter(instance=instance, status="active").exists()
    cancelled = FlowEvent.objects.get(instance=instance, kind="instance.cancelled")
    assert cancelled.data == {"reason": "客户撤单"} and cancelled.actor_id == admin.pk
    assert AuditEvent.objects.filter(action="flows.instance.cancelled").count() == 1

    with pytest.raises(Conflict) as again:
        services.instance_cancel(actor=actor_for(admin), instance_id=instance.pk, reason="再撤")
    assert again.value.code == "instance_not_running"


def test_cancelling_a_parent_cancels_the_sub_flow_it_waits_for(org, admin):
    publish(admin, "simple_linear", "simple_linear.bpmn")
    publish(admin, "call_parent", "call_parent.bpmn")
    parent = services.instance_start(actor=actor_for(admin), key="call_parent", data={})
    sub = Instance.objects.get(parent_token__instance=parent)

    services.instance_cancel(actor=actor_for(admin), instance_id=parent.pk, reason="合并到其他工单")

    sub.refresh_from_db()
    assert sub.status == InstanceStatus.CANCELLED
    assert not Task.objects.filter(instance=sub, status=TaskStatus.OPEN).exists()
    assert FlowEvent.objects.filter(instance=sub, kind="instance.cancelled").exists()


def test_cancelling_needs_a_reason_and_flow_manage(org, admin, shanghai_agent):
    publish(admin, "simple_linear", "simple_linear.bpmn")
    instance = services.instance_start(actor=actor_for(admin), key="simple_linear", data={})
    with pytest.raises(DomainError) as blank:
        services.instance_cancel(actor=actor_for(admin), instance_id=instance.pk, reason="  ")
    assert blank.value.field == "reason"
    with pytest.raises(Forbidden):
        services.instance_cancel(
            actor=actor_for(shanghai_agent), instance_id=instance.pk, reason="试试"
        )
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.RUNNING
