"""The engine runs the shipped definitions end to end: the 7-step after-sales SOP (with rework,
a parallel fork/join, a timer, SLA escalation) and the amount-based approval."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from jingwei.core.errors import Conflict, Forbidden
from jingwei.core.timers import fire_due
from jingwei.flows import engine, services
from jingwei.flows.models import FlowEvent, InstanceStatus, Task, TaskStatus
from jingwei.flows.spec import FlowDefinitionInvalid
from jingwei.notify.models import Notification
from jingwei.org.permissions import PERMISSIONS
from jingwei.org.scope import actor_for

from ..factories import EmployeeFactory, grant, make_role

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def domain_actions():
    """Stand-ins for the actions the parts and settlement modules register when they land."""
    calls: list[str] = []

    def record(name: str) -> Any:
        def run(instance: Any, node: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
            calls.append(name)
            return {f"{name}_done": True}

        return run

    names = ["reserve_parts", "consume_parts", "post_settlement_line"]
    before = {name: engine._actions.get(name) for name in names}
    for name in names:
        engine.action(name)(record(name))
    yield calls
    for name, previous in before.items():  # what was there (the tickets app's deferred steps)
        if previous is None:
            engine._actions.pop(name, None)
        else:
            engine._actions[name] = previous


def holder(org, role_name: str, *, region, name: str, manager=None):
    person = EmployeeFactory(
        tenant=org.tenant, name=name, region=region, department=org.east_dept, manager=manager
    )
    from jingwei.org.models import Role, RoleAssignment

    role = Role.objects.filter(tenant=org.tenant, name=role_name).first() or make_role(
        org.tenant, role_name, ["flow.view"]
    )
    RoleAssignment.objects.create(tenant=org.tenant, employee=person, role=role, scope="self")
    return person


@pytest.fixture
def team(org, admin):
    supervisor = holder(org, "调度主管", region=org.east, name="刘主管")
    return {
        "客服": holder(org, "客服", region=org.shanghai, name="王客服"),
        "调度员": holder(org, "调度员", region=org.shanghai, name="陈调度", manager=supervisor),
        "调度员2": holder(org, "调度员", region=org.east, name="李调度", manager=supervisor),
        "质检员": holder(org, "质检员", region=org.shanghai, name="赵质检"),
        "工程师": holder(org, "工程师", region=org.pudong, name="杨工程师"),
        "调度主管": supervisor,
        "广州调度": holder(org, "调度员", region=org.guangzhou, name="吴调度"),
        "结算专员": holder(org, "结算专员", region=org.east, name="孙结算"),
    }


def publish(admin, key: str, fixture: str):
    actor = actor_for(admin)
    services.definition_save(actor=actor, key=key, name=key, xml=(FIXTURES / fixture).read_text())
    return services.definition_publish(actor=actor, key=key)


def open_task(instance) -> Task:
    tasks = list(Task.objects.filter(instance=instance, status=TaskStatus.OPEN))
    assert len(tasks) == 1, [t.node_id for t in tasks]
    return tasks[0]


def complete(task: Task, outcome: str = "", data: dict | None = None) -> None:
    from jingwei.org.models import Employee

    person = Employee.objects.get(pk=task.assignee_id) if task.assignee_id else None
    if person is None:  # a shared pool: the first candidate claims it
        person = Employee.objects.get(pk=task.candidate_ids[0])
        services.task_claim(actor=actor_for(person), task_id=task.pk)
    services.task_complete(
        actor=actor_for(person), task_id=task.pk, outcome=outcome, data=data or {}
    )


def test_after_sales_sop_runs_end_to_end_with_rework(org, admin, team, domain_actions):
    publish(admin, "after_sales", "after_sales_sop.bpmn")
    instance = services.instance_start(
        actor=actor_for(admin),
        key="after_sales",
        data={"priority": "normal", "engineer": team["工程师"].employee_no},
        business_key="GD20261124-0001",
        region_id=org.pudong.pk,
    )

    accept = open_task(instance)
    assert (accept.node_id, accept.assignee_id) == ("Task_Accept", team["客服"].pk)
    complete(accept)

    dispatch = open_task(instance)
    # least loaded among the dispatchers covering 浦东 (上海 and 华东), never 广州's
    assert dispatch.assignee_id in {team["调度员"].pk, team["调度员2"].pk}
    assert dispatch.due_at is not None
    complete(dispatch)

    # the parallel branches ran and joined before 处理
    assert sorted(domain_actions) == ["reserve_parts"]
    handle = open_task(instance)
    assert (handle.node_id, handle.assignee_id) == ("Task_Handle", team["工程师"].pk)
    complete(handle)

    inspect = open_task(instance)
    complete(inspect, "reject")
    rework = open_task(instance)
    assert rework.node_id == "Task_Handle"  # back to 处理 on rejection
    complete(rework)
    complete(open_task(instance), "approve")

    # consumed, then waiting a day before 回访
    assert "consume_parts" in domain_actions
    assert not Task.objects.filter(instance=instance, status=TaskStatus.OPEN).exists()
    fire_due(now=timezone.now() + timedelta(days=1, minutes=1))
    complete(open_task(instance))  # 回访
    complete(open_task(instance))  # 结算

    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED
    assert "post_settlement_line" in domain_actions
    kinds = list(FlowEvent.objects.filter(instance=instance).values_list("kind", flat=True))
    assert kinds[0] == "instance.started" and kinds[-1] == "instance.completed"
    assert kinds.count("task.completed") == 8  # 受理 派单 处理 验收(驳回) 处理 验收 回访 结算


@pytest.mark.parametrize(
    ("amount", "path"),
    [(5000, ["Task_TeamLead"]), (5001, ["Task_RegionalManager", "Task_Finance"])],
)
def test_approval_branches_by_amount(org, admin, amount, path):
    publish(admin, "approval", "approval_by_amount.bpmn")
    applicant = EmployeeFactory(tenant=org.tenant, region=org.shanghai, manager=admin)
    grant(applicant, ["flow.start", "flow.view"], "self")
    manager = holder(org, "区域经理", region=org.east, name="张经理")
    holder(org, "财务", region=None, name="高财务")
    instance = services.instance_start(
        actor=actor_for(applicant),
        key="approval",
        data={"amount": amount},
        region_id=org.shanghai.pk,
    )

    seen = []
    while Task.objects.filter(instance=instance, status=TaskStatus.OPEN).exists():
        task = open_task(instance)
        seen.append(task.node_id)
        if task.node_id == "Task_RegionalManager":
            assert task.assignee_id == manager.pk
        complete(task, "approve")

    instance.refresh_from_db()
    assert seen == path
    assert instance.status == InstanceStatus.COMPLETED


def test_a_task_cannot_be_completed_twice(org, admin, team, domain_actions):
    publish(admin, "after_sales", "after_sales_sop.bpmn")
    instance = services.instance_start(
        actor=actor_for(admin),
        key="after_sales",
        data={"priority": "normal"},
        region_id=org.pudong.pk,
    )
    task = open_task(instance)
    complete(task)

    with pytest.raises(Conflict) as exc:
        services.task_complete(actor=actor_for(team["客服"]), task_id=task.pk)

    assert exc.value.code == "task_closed"
    assert Task.objects.filter(instance=instance, node_id="Task_Dispatch").count() == 1


def test_someone_elses_task_cannot_be_completed(org, admin, team, domain_actions):
    publish(admin, "after_sales", "after_sales_sop.bpmn")
    instance = services.instance_start(
        actor=actor_for(admin),
        key="after_sales",
        data={"priority": "normal"},
        region_id=org.pudong.pk,
    )
    task = open_task(instance)

    with pytest.raises((Forbidden, Exception)) as exc:
        services.task_complete(actor=actor_for(team["工程师"]), task_id=task.pk)

    assert getattr(exc.value, "code", "") in {"not_your_task", "not_found"}
    task.refresh_from_db()
    assert task.status == TaskStatus.OPEN


def test_an_unanswered_dispatch_escalates_step_by_step(org, admin, team, domain_actions):
    publish(admin, "after_sales", "after_sales_sop.bpmn")
    instance = services.instance_start(
        actor=actor_for(admin),
        key="after_sales",
        data={"priority": "normal"},
        region_id=org.pudong.pk,
    )
    complete(open_task(instance))
    dispatch = open_task(instance)
    first = dispatch.assignee_id
    assert dispatch.due_at is not None

    # at the breach: the assignee is reminded
    fire_due(now=dispatch.due_at + timedelta(seconds=1))
    assert Notification.objects.filter(recipient_id=first, kind="flows.sla_remind").exists()
    # +30 min: the supervisor is alerted
    fire_due(now=dispatch.due_at + timedelta(minutes=31))
    assert Notification.objects.filter(
        recipient_id=team["调度主管"].pk, kind="flows.sla_alert"
    ).exists()
    # +1 h: the task moves to the 调度主管 role
    fire_due(now=dispatch.due_at + timedelta(hours=1, seconds=1))
    dispatch.refresh_from_db()
    assert dispatch.assignee_id == team["调度主管"].pk
    steps = list(
        FlowEvent.objects.filter(instance=instance, kind="sla.escalated").values_list(
            "data__action", flat=True
        )
    )
    assert steps == ["remind", "alert", "reassign"]


def test_an_escalation_can_alert_whoever_is_on_duty(org, admin, team, domain_actions):
    from jingwei.notify.services import config as notify_config

    xml = (FIXTURES / "after_sales_sop.bpmn").read_text()
    actor = actor_for(admin)
    services.definition_save(
        actor=actor,
        key="after_sales",
        name="after_sales",
        xml=xml.replace('target="supervisor"', 'target="duty:夜间调度值班"'),
    )
    services.definition_publish(actor=actor, key="after_sales")
    night = EmployeeFactory(tenant=org.tenant, name="夜班 李娜")
    roster = notify_config.roster_save(actor=actor, name="夜间调度值班")
    instance = services.instance_start(
        actor=actor, key="after_sales", data={"priority": "normal"}, region_id=org.pudong.pk
    )
    complete(open_task(instance))
    dispatch = open_task(instance)
    alarm_at = dispatch.due_at + timedelta(minutes=31)
    notify_config.shifts_add(
        actor=actor,
        roster_id=roster.pk,
        shifts=[(night.pk, alarm_at - timedelta(hours=1), alarm_at + timedelta(hours=1))],
    )

    fire_due(now=dispatch.due_at + timedelta(seconds=1))
    with mock.patch("django.utils.timezone.now", return_value=alarm_at):
        fire_due(now=alarm_at)

    assert Notification.objects.filter(recipient=night, kind="flows.sla_alert").exists()


def test_completing_a_task_cancels_its_escalation(org, admin, team, domain_actions):
    publish(admin, "after_sales", "after_sales_sop.bpmn")
    instance = services.instance_start(
        actor=actor_for(admin),
        key="after_sales",
        data={"priority": "normal"},
        region_id=org.pudong.pk,
    )
    complete(open_task(instance))
    dispatch = open_task(instance)
    complete(dispatch)

    fire_due(now=dispatch.due_at + timedelta(days=1))

    assert not FlowEvent.objects.filter(
        instance=instance, kind="sla.escalated", task=dispatch
    ).exists()


def test_publishing_a_broken_draft_lists_every_problem_with_its_element(org, admin):
    actor = actor_for(admin)
    services.definition_save(
        actor=actor,
        key="bad",
        name="坏流程",
        xml=(FIXTURES / "unsupported_elements.bpmn").read_text(),
    )

    with pytest.raises(FlowDefinitionInvalid) as exc:
        services.definition_publish(actor=actor, key="bad")

    assert exc.value.problems
    assert all(p["element_id"] for p in exc.value.problems)
    assert {p["code"] for p in exc.value.problems} >= {"unsupported"}


def test_instances_keep_their_version_and_move_only_when_asked(org, admin, team, domain_actions):
    first = publish(admin, "after_sales", "after_sales_sop.bpmn")
    old = services.instance_start(
        actor=actor_for(admin),
        key="after_sales",
        data={"priority": "normal"},
        region_id=org.pudong.pk,
    )
    second = services.definition_publish(actor=actor_for(admin), key="after_sales")
    new = services.instance_start(
        actor=actor_for(admin),
        key="after_sales",
        data={"priority": "normal"},
        region_id=org.pudong.pk,
    )

    assert (old.version_id, new.version_id) == (first.pk, second.pk)
    report = services.instances_migrate(
        actor=actor_for(admin), key="after_sales", from_number=1, to_number=2
    )
    old.refresh_from_db()
    assert report["moved"] == [old.pk] and old.version_id == second.pk


def test_a_user_without_flow_rights_cannot_design_or_start(org, shanghai_agent):
    actor = actor_for(shanghai_agent)
    with pytest.raises(Forbidden):
        services.definition_save(actor=actor, key="x", name="x", xml="<x/>")
    with pytest.raises(Forbidden):
        services.instance_start(actor=actor, key="x")


def test_every_permission_code_used_by_the_engine_is_in_the_catalogue():
    assert {services.MANAGE, services.START, services.ASSIGN, services.VIEW} <= set(PERMISSIONS)


def test_shipped_definitions_are_the_tested_ones_and_load_once(org):
    from jingwei.flows.demo import SHIPPED, load_shipped_flows, shipped_xml
    from jingwei.flows.models import ProcessVersion

    for key, (_name, file) in SHIPPED.items():
        assert shipped_xml(key) == (FIXTURES / file).read_text(encoding="utf-8")

    load_shipped_flows(org.tenant.pk)
    load_shipped_flows(org.tenant.pk)

    assert ProcessVersion.objects.filter(tenant=org.tenant).count() == len(SHIPPED)


def test_an_inspection_left_seven_days_is_taken_as_passed(org, admin, team, domain_actions):
    publish(admin, "after_sales", "after_sales_sop.bpmn")
    instance = services.instance_start(
        actor=actor_for(admin),
        key="after_sales",
        data={"priority": "normal", "engineer": team["工程师"].employee_no},
        region_id=org.pudong.pk,
    )
    for _ in range(3):  # 受理, 派单, 处理
        complete(open_task(instance))
    inspect = open_task(instance)
    assert inspect.node_id == "Task_Inspect"

    fire_due(now=timezone.now() + timedelta(days=7, minutes=1))

    inspect.refresh_from_db()
    assert inspect.status == TaskStatus.CANCELLED  # interrupting: the task is withdrawn
    assert "consume_parts" in domain_actions  # and the flow went on along the boundary path
    assert FlowEvent.objects.filter(
        instance=instance, kind="timer.fired", node_id="Boundary_InspectTimeout"
    ).exists()


def test_an_overdue_finance_approval_reminds_without_withdrawing(org, admin):
    publish(admin, "approval", "approval_by_amount.bpmn")
    applicant = EmployeeFactory(tenant=org.tenant, region=org.shanghai, manager=admin)
    grant(applicant, ["flow.start", "flow.view"], "self")
    holder(org, "区域经理", region=org.east, name="张经理")
    finance = holder(org, "财务", region=None, name="高财务")
    instance = services.instance_start(
        actor=actor_for(applicant), key="approval", data={"amount": 9000}, region_id=org.shanghai.pk
    )
    complete(open_task(instance), "approve")  # 区域经理
    finance_task = open_task(instance)

    fire_due(now=timezone.now() + timedelta(days=2, minutes=1))

    finance_task.refresh_from_db()
    assert finance_task.status == TaskStatus.OPEN  # non-interrupting: still waiting for finance
    assert FlowEvent.objects.filter(
        instance=instance, kind="action.ran", node_id="Task_RemindFinance"
    ).exists()
    services.task_complete(actor=actor_for(finance), task_id=finance_task.pk, outcome="approve")
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED


def test_pooled_tasks_are_claimed_released_delegated_and_transferred_on_the_log(
    org, admin, team, domain_actions
):
    publish(admin, "after_sales", "after_sales_sop.bpmn")
    second_inspector = holder(org, "质检员", region=org.shanghai, name="钱质检")
    instance = services.instance_start(
        actor=actor_for(admin),
        key="after_sales",
        data={"priority": "normal", "engineer": team["工程师"].employee_no},
        region_id=org.pudong.pk,
    )
    for _ in range(3):
        complete(open_task(instance))
    inspect = open_task(instance)
    assert inspect.assignee_id is None  # two inspectors: a shared pool
    assert set(inspect.candidate_ids) == {team["质检员"].pk, second_inspector.pk}

    services.task_claim(actor=actor_for(team["质检员"]), task_id=inspect.pk)
    with pytest.raises(Conflict):
        services.task_claim(actor=actor_for(second_inspector), task_id=inspect.pk)
    services.task_release(actor=actor_for(team["质检员"]), task_id=inspect.pk, reason="外出")
    services.task_claim(actor=actor_for(second_inspector), task_id=inspect.pk)
    services.task_delegate(
        actor=actor_for(second_inspector),
        task_id=inspect.pk,
        assignee_id=team["质检员"].pk,
        reason="请代验",
    )
    services.task_transfer(
        actor=actor_for(admin),
        task_id=inspect.pk,
        assignee_id=second_inspector.pk,
        reason="调度改派",
    )

    inspect.refresh_from_db()
    assert inspect.assignee_id == second_inspector.pk
    log = list(
        FlowEvent.objects.filter(instance=instance, task=inspect)
        .exclude(kind="task.created")
        .values_list("kind", "data__reason")
    )
    assert log == [
        ("task.claimed", ""),
        ("task.released", "外出"),
        ("task.claimed", ""),
        ("task.delegated", "请代验"),
        ("task.transferred", "调度改派"),
    ]


def test_node_statistics_flag_a_slow_dispatch_as_a_bottleneck(org, admin, team, domain_actions):
    from jingwei.flows.models import Token
    from jingwei.flows.selectors import node_statistics

    version = publish(admin, "after_sales", "after_sales_sop.bpmn")
    for _ in range(3):
        instance = services.instance_start(
            actor=actor_for(admin),
            key="after_sales",
            data={"priority": "normal"},
            region_id=org.pudong.pk,
        )
        complete(open_task(instance))
        complete(open_task(instance))
    # make every 派单 have taken 3 working hours (a Monday 09:00–12:00) against its 2-hour target
    monday_nine = datetime(2026, 11, 23, 9, tzinfo=ZoneInfo("Asia/Shanghai"))
    Token.objects.filter(instance__version=version, node_id="Task_Dispatch").update(
        arrived_at=monday_nine, left_at=monday_nine + timedelta(hours=3)
    )

    stats = {row["node_id"]: row for row in node_statistics(version)}

    dispatch = stats["Task_Dispatch"]
    assert dispatch["count"] == 3
    assert dispatch["average_seconds"] == pytest.approx(3 * 3600)
    assert dispatch["p90_seconds"] == pytest.approx(3 * 3600)
    assert dispatch["target_seconds"] == 2 * 3600
    assert dispatch["bottleneck"] is True
    assert stats["Task_Accept"]["bottleneck"] is False


def test_a_flow_waits_for_its_message_and_goes_on_when_it_arrives(org, admin):
    publish(admin, "pay", "wait_for_payment.bpmn")
    instance = services.instance_start(actor=actor_for(admin), key="pay", data={})
    assert not Task.objects.filter(instance=instance).exists()

    with pytest.raises(Conflict):
        services.instance_message(
            actor=actor_for(admin), instance_id=instance.pk, message="refunded"
        )
    services.instance_message(
        actor=actor_for(admin), instance_id=instance.pk, message="paid", data={"paid_amount": 100}
    )

    instance.refresh_from_db()
    assert instance.data["paid_amount"] == 100
    assert open_task(instance).node_id == "Task_Ship"


def test_a_call_activity_starts_the_sub_flow_and_waits_for_it(org, admin):
    from jingwei.flows.models import Instance

    publish(admin, "simple_linear", "simple_linear.bpmn")
    publish(admin, "call_parent", "call_parent.bpmn")
    parent = services.instance_start(actor=actor_for(admin), key="call_parent", data={"case": "A1"})
    sub = Instance.objects.get(parent_token__instance=parent)
    assert sub.data == {"case": "A1"}
    assert not Task.objects.filter(instance=parent).exists()

    task = open_task(sub)
    services.task_complete(actor=actor_for(admin), task_id=task.pk, data={"result": "done"})

    parent.refresh_from_db()
    sub.refresh_from_db()
    assert sub.status == parent.status == InstanceStatus.COMPLETED
    assert parent.data["result"] == "done"  # the sub-flow's data comes back
