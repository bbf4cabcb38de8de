"""Moving running instances to a newer version of their flow: only those whose every waiting node
still exists (as the same kind of node) in the target move, and each then runs on its new version;
the others stay — and keep running — on the old one, with the report naming what is missing."""

from __future__ import annotations

from typing import Any, cast

import pytest

from jingwei.audit.models import AuditEvent
from jingwei.core.errors import Forbidden, NotFound
from jingwei.flows import services
from jingwei.flows.models import (
    FlowEvent,
    Instance,
    InstanceStatus,
    ProcessVersion,
    Task,
    TaskStatus,
)
from jingwei.org.models import Employee
from jingwei.org.scope import actor_for

from ..conftest import Org
from ..factories import EmployeeFactory, grant

pytestmark = pytest.mark.django_db

KEY = "two_steps"

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:jw="http://jingwei.example/schema/bpmn" id="Defs_TwoSteps"
    targetNamespace="http://bpmn.io/schema/bpmn">
"""


def _task(node_id: str, name: str, incoming: str, outgoing: str) -> str:
    return f"""
    <bpmn:userTask id="{node_id}" name="{name}">
      <bpmn:extensionElements><jw:assignment rule="user" user="{{employee_no}}" /></bpmn:extensionElements>
      <bpmn:incoming>{incoming}</bpmn:incoming>
      <bpmn:outgoing>{outgoing}</bpmn:outgoing>
    </bpmn:userTask>"""


def _flow(flow_id: str, source: str, target: str) -> str:
    return f'\n    <bpmn:sequenceFlow id="{flow_id}" sourceRef="{source}" targetRef="{target}" />'


def _process(body: str, *, messages: str = "") -> str:
    return (
        HEAD
        + messages
        + '  <bpmn:process id="two_steps" name="两步流程" isExecutable="true">'
        + body
        + "\n  </bpmn:process>\n</bpmn:definitions>\n"
    )


START = '\n    <bpmn:startEvent id="Start"><bpmn:outgoing>Flow_1</bpmn:outgoing></bpmn:startEvent>'


def _end(incoming: str) -> str:
    return (
        f'\n    <bpmn:endEvent id="End"><bpmn:incoming>{incoming}</bpmn:incoming></bpmn:endEvent>'
    )


# v1: start → A → B → end
V1 = _process(
    START
    + _task("Task_A", "初审", "Flow_1", "Flow_2")
    + _task("Task_B", "复核", "Flow_2", "Flow_3")
    + _end("Flow_3")
    + _flow("Flow_1", "Start", "Task_A")
    + _flow("Flow_2", "Task_A", "Task_B")
    + _flow("Flow_3", "Task_B", "End")
)

# v2, A dropped: start → B → C → end (C only exists in v2, so reaching it shows v2 is running)
V2_WITHOUT_A = _process(
    START
    + _task("Task_B", "复核", "Flow_1", "Flow_3")
    + _task("Task_C", "归档", "Flow_3", "Flow_4")
    + _end("Flow_4")
    + _flow("Flow_1", "Start", "Task_B")
    + _flow("Flow_3", "Task_B", "Task_C")
    + _flow("Flow_4", "Task_C", "End")
)

# v2, A kept as an id but now a message catch: start → A (wait for "paid") → B → C → end
V2_A_RETYPED = _process(
    START
    + """
    <bpmn:intermediateCatchEvent id="Task_A" name="等待付款">
      <bpmn:incoming>Flow_1</bpmn:incoming>
      <bpmn:outgoing>Flow_2</bpmn:outgoing>
      <bpmn:messageEventDefinition id="MessageDef_Paid" messageRef="Message_Paid" />
    </bpmn:intermediateCatchEvent>"""
    + _task("Task_B", "复核", "Flow_2", "Flow_3")
    + _task("Task_C", "归档", "Flow_3", "Flow_4")
    + _end("Flow_4")
    + _flow("Flow_1", "Start", "Task_A")
    + _flow("Flow_2", "Task_A", "Task_B")
    + _flow("Flow_3", "Task_B", "Task_C")
    + _flow("Flow_4", "Task_C", "End"),
    messages='  <bpmn:message id="Message_Paid" name="paid" />\n',
)


def publish(admin: Employee, xml: str) -> ProcessVersion:
    actor = actor_for(admin)
    services.definition_save(
        actor=actor, key=KEY, name="两步流程", xml=xml.format(employee_no=admin.employee_no)
    )
    return services.definition_publish(actor=actor, key=KEY)


def open_task(instance: Instance) -> Task:
    tasks = list(Task.objects.filter(instance=instance, status=TaskStatus.OPEN))
    assert len(tasks) == 1, [t.node_id for t in tasks]
    return tasks[0]


def complete_open_task(admin: Employee, instance: Instance) -> str:
    """Complete the instance's one open task as its assignee; returns the node it was at."""
    task = open_task(instance)
    assert task.assignee_id == admin.pk
    services.task_complete(actor=actor_for(admin), task_id=task.pk)
    return task.node_id


def entered(instance: Instance) -> list[str]:
    return list(
        FlowEvent.objects.filter(instance=instance, kind="node.entered").values_list(
            "node_id", flat=True
        )
    )


@pytest.fixture
def v1_with_two_instances(admin: Employee) -> tuple[ProcessVersion, Instance, Instance]:
    """v1 published, one instance waiting at B (A completed) and one still at A."""
    v1 = publish(admin, V1)
    actor = actor_for(admin)
    at_b = services.instance_start(actor=actor, key=KEY, business_key="AT-B")
    at_a = services.instance_start(actor=actor, key=KEY, business_key="AT-A")
    assert complete_open_task(admin, at_b) == "Task_A"
    assert (open_task(at_b).node_id, open_task(at_a).node_id) == ("Task_B", "Task_A")
    return v1, at_b, at_a


@pytest.mark.parametrize("v2_xml", [V2_WITHOUT_A, V2_A_RETYPED], ids=["a_removed", "a_retyped"])
def test_only_instances_whose_node_exists_in_the_target_move_and_both_run_to_the_end(
    admin: Employee,
    v1_with_two_instances: tuple[ProcessVersion, Instance, Instance],
    v2_xml: str,
) -> None:
    v1, at_b, at_a = v1_with_two_instances
    task_b = open_task(at_b)
    # Given v2, where B still exists but A does not (or is no longer a user task)
    v2 = publish(admin, v2_xml)
    assert v2.number == 2

    # When the running v1 instances are migrated to v2
    report = services.instances_migrate(actor=actor_for(admin), key=KEY, from_number=1, to_number=2)

    # Then the one at B moves and the one at A is refused, naming the node v2 lacks
    assert report == {
        "moved": [at_b.pk],
        "refused": [{"instance_id": at_a.pk, "missing_nodes": ["Task_A"]}],
    }
    at_b.refresh_from_db()
    at_a.refresh_from_db()
    assert (at_b.version_id, at_a.version_id) == (v2.pk, v1.pk)
    # And only the moved one's log says so, with who moved it from where to where
    assert list(
        FlowEvent.objects.filter(kind="instance.migrated").values_list(
            "instance_id", "actor_id", "data"
        )
    ) == [(at_b.pk, admin.pk, {"from": 1, "to": 2})]
    audit = AuditEvent.objects.get(action="flows.instances.migrated")
    assert (audit.actor_id, audit.data) == (
        admin.pk,
        {"from": 1, "to": 2, "moved": 1, "refused": 1},
    )
    # And migrating again moves nothing more
    again = services.instances_migrate(actor=actor_for(admin), key=KEY, from_number=1, to_number=2)
    assert again == {"moved": [], "refused": report["refused"]}

    # When the moved instance goes on, it follows v2: its waiting task B leads to C, then the end
    assert open_task(at_b).pk == task_b.pk  # the same task, still in its assignee's list
    assert complete_open_task(admin, at_b) == "Task_B"
    assert complete_open_task(admin, at_b) == "Task_C"
    at_b.refresh_from_db()
    assert at_b.status == InstanceStatus.COMPLETED
    assert entered(at_b) == ["Start", "Task_A", "Task_B", "Task_C", "End"]

    # And the refused one still runs on v1 to its end: A, B, done — never C
    assert complete_open_task(admin, at_a) == "Task_A"
    assert complete_open_task(admin, at_a) == "Task_B"
    at_a.refresh_from_db()
    assert (at_a.status, at_a.version_id) == (InstanceStatus.COMPLETED, v1.pk)
    assert entered(at_a) == ["Start", "Task_A", "Task_B", "End"]


@pytest.mark.parametrize(("from_number", "to_number"), [(1, 3), (3, 1), (1, 0)])
def test_migrating_from_or_to_a_version_that_does_not_exist_is_not_found(
    admin: Employee,
    v1_with_two_instances: tuple[ProcessVersion, Instance, Instance],
    from_number: int,
    to_number: int,
) -> None:
    v1, _, _ = v1_with_two_instances
    publish(admin, V2_WITHOUT_A)

    with pytest.raises(NotFound) as refused:
        services.instances_migrate(
            actor=actor_for(admin), key=KEY, from_number=from_number, to_number=to_number
        )

    assert refused.value.code == "not_found"
    assert set(Instance.objects.values_list("version_id", flat=True)) == {v1.pk}
    assert not FlowEvent.objects.filter(kind="instance.migrated").exists()
    assert not AuditEvent.objects.filter(action="flows.instances.migrated").exists()


def test_migrating_another_tenants_flow_is_not_found(
    admin: Employee,
    other_admin: Employee,
    v1_with_two_instances: tuple[ProcessVersion, Instance, Instance],
) -> None:
    v1, _, _ = v1_with_two_instances
    publish(admin, V2_WITHOUT_A)

    with pytest.raises(NotFound):
        services.instances_migrate(
            actor=actor_for(other_admin), key=KEY, from_number=1, to_number=2
        )

    assert set(Instance.objects.values_list("version_id", flat=True)) == {v1.pk}


def _regional_flow_manager(org: Org) -> Employee:
    person = cast(
        Employee,
        EmployeeFactory(
            tenant=org.tenant, department=org.east_dept, region=org.east, name="区域流程管理员"
        ),
    )
    grant(person, ["flow.view", "flow.start", "flow.manage"], "region")
    return person


def _flow_user(org: Org) -> Employee:
    person = cast(
        Employee, EmployeeFactory(tenant=org.tenant, department=org.hq, name="流程使用者")
    )
    grant(person, ["flow.view", "flow.start", "flow.assign"], "tenant")
    return person


@pytest.mark.parametrize(
    ("make_actor", "code"),
    [(_regional_flow_manager, "scope_too_narrow"), (_flow_user, "permission_denied")],
    ids=["flow_manage_for_a_region_only", "no_flow_manage"],
)
def test_migrating_needs_flow_manage_for_the_whole_tenant(
    org: Org,
    admin: Employee,
    v1_with_two_instances: tuple[ProcessVersion, Instance, Instance],
    make_actor: Any,
    code: str,
) -> None:
    v1, _, _ = v1_with_two_instances
    publish(admin, V2_WITHOUT_A)
    person = make_actor(org)

    with pytest.raises(Forbidden) as refused:
        services.instances_migrate(actor=actor_for(person), key=KEY, from_number=1, to_number=2)

    assert refused.value.code == code
    assert set(Instance.objects.values_list("version_id", flat=True)) == {v1.pk}
    assert not FlowEvent.objects.filter(kind="instance.migrated").exists()


def _boundary(minutes: int) -> str:
    """An interrupting timer on B that sends the case to a late-handling task L."""
    return (
        f"""
    <bpmn:boundaryEvent id="Boundary_Late" attachedToRef="Task_B">
      <bpmn:outgoing>Flow_Late</bpmn:outgoing>
      <bpmn:timerEventDefinition id="TimerDef_Late">
        <bpmn:timeDuration>PT{minutes}M</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>"""
        + _task("Task_L", "超时处理", "Flow_Late", "Flow_LateEnd")
        + (
            '\n    <bpmn:endEvent id="End_Late"><bpmn:incoming>Flow_LateEnd</bpmn:incoming>'
            "</bpmn:endEvent>"
            + _flow("Flow_Late", "Boundary_Late", "Task_L")
            + _flow("Flow_LateEnd", "Task_L", "End_Late")
        )
    )


def _with_boundary(minutes: int | None) -> str:
    return _process(
        START
        + _task("Task_A", "初审", "Flow_1", "Flow_2")
        + _task("Task_B", "复核", "Flow_2", "Flow_3")
        + _end("Flow_3")
        + _flow("Flow_1", "Start", "Task_A")
        + _flow("Flow_2", "Task_A", "Task_B")
        + _flow("Flow_3", "Task_B", "End")
        + (_boundary(minutes) if minutes else "")
    )


@pytest.mark.parametrize(
    ("v1_minutes", "v2_minutes", "late_after"),
    [(60, None, None), (None, 30, 31), (60, 120, 121)],
    ids=["boundary_dropped", "boundary_added", "boundary_lengthened"],
)
def test_a_moved_waiting_task_follows_the_target_versions_boundary_timers(
    admin: Employee, v1_minutes: int | None, v2_minutes: int | None, late_after: int | None
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from jingwei.core.models import Timer, TimerStatus
    from jingwei.core.timers import fire_due

    publish(admin, _with_boundary(v1_minutes))
    instance = services.instance_start(actor=actor_for(admin), key=KEY)
    complete_open_task(admin, instance)  # now waiting at B
    publish(admin, _with_boundary(v2_minutes))
    services.instances_migrate(actor=actor_for(admin), key=KEY, from_number=1, to_number=2)

    now = timezone.now()
    fire_due(now=now + timedelta(minutes=(late_after or 24 * 60) - 2))
    assert open_task(instance).node_id == "Task_B"  # nothing fired early, nothing failed
    assert not Timer.objects.filter(status=TimerStatus.FAILED).exists()
    if late_after is None:
        fire_due(now=now + timedelta(days=7))
        assert open_task(instance).node_id == "Task_B"
        assert not Timer.objects.filter(status__in=["pending", "failed"]).exists()
    else:
        fire_due(now=now + timedelta(minutes=late_after))
        assert open_task(instance).node_id == "Task_L"
