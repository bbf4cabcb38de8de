"""The flows shipped for the built-in ticket templates — 退换货 (shop_return), 课程试听预约
(course_trial) and 客户投诉 (complaint) — publish cleanly, survive import → export → import with
their diagram, read only fields their ticket forms really have, and run as a ticket starts them:
the routed owner (`assignee`) when there is one, else a holder of the role in the ticket's region."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from jingwei.core.errors import DomainError
from jingwei.core.timers import fire_due
from jingwei.flows import services
from jingwei.flows.bpmn import (
    BUILTIN_ACTIONS,
    Bounds,
    Graph,
    ensure_layout,
    export_bpmn,
    load_bpmn,
    parse_bpmn,
)
from jingwei.flows.calendar import add_working_time, default_calendar
from jingwei.flows.demo import SHIPPED, shipped_xml
from jingwei.flows.expressions import check
from jingwei.flows.models import FlowEvent, Instance, InstanceStatus, Task, TaskStatus
from jingwei.notify.models import Notification
from jingwei.org.models import Employee
from jingwei.org.scope import actor_for

from .test_engine import complete, holder, open_task

pytestmark = pytest.mark.django_db

SH = ZoneInfo("Asia/Shanghai")
SATURDAY_NIGHT = datetime(2026, 11, 28, 23, 0, tzinfo=SH)  # no working time until Monday 09:00
FORMS = Path(__file__).parents[2] / "src" / "jingwei" / "tickets" / "builtin_forms"
NEW = ["shop_return", "course_trial", "complaint"]


# --- the files ----------------------------------------------------------------------------


def graph_of(key: str) -> Graph:
    return parse_bpmn(shipped_xml(key))


def form_schema(key: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((FORMS / f"{key}.json").read_text(encoding="utf-8"))[
        "schema"
    ]
    return schema


@pytest.mark.parametrize("key", NEW)
def test_shipped_and_publishable_without_problems(key: str) -> None:
    assert key in SHIPPED
    graph = load_bpmn(
        shipped_xml(key),
        known_form_keys={p.stem for p in FORMS.glob("*.json")},
        known_actions=set(BUILTIN_ACTIONS),
        check_expression=check,
    )
    assert graph.process_id == key
    assert not graph.unsupported and not graph.issues
    assert all(n.name for n in graph.nodes if n.type != "exclusiveGateway"), "中文节点名"


@pytest.mark.parametrize("key", NEW)
def test_import_export_import_keeps_the_graph_and_its_diagram(key: str) -> None:
    graph = graph_of(key)

    assert parse_bpmn(export_bpmn(graph)) == graph
    # every node and flow is drawn already: nothing for ensure_layout to add
    assert ensure_layout(graph) == graph


def _on_border(point: tuple[float, float], box: Bounds) -> bool:
    x, y = point
    inside = box.x <= x <= box.x + box.width and box.y <= y <= box.y + box.height
    edge = x in (box.x, box.x + box.width) or y in (box.y, box.y + box.height)
    return inside and edge


@pytest.mark.parametrize("key", NEW)
def test_every_edge_is_drawn_from_its_source_shape_to_its_target_shape(key: str) -> None:
    graph = graph_of(key)
    diagram = graph.diagrams[0]
    boxes = {s.element: s.bounds for s in diagram.shapes}
    flows = {f.id: f for f in graph.flows}
    for edge in diagram.edges:
        flow = flows[edge.element]
        assert _on_border(edge.waypoints[0], boxes[flow.source]), edge.id
        assert _on_border(edge.waypoints[-1], boxes[flow.target]), edge.id
        for a, b in zip(edge.waypoints, edge.waypoints[1:], strict=False):
            assert a[0] == b[0] or a[1] == b[1], f"{edge.id} 只走横竖线"


@pytest.mark.parametrize("key", NEW)
def test_conditions_read_fields_and_values_the_ticket_form_has(key: str) -> None:
    schema = form_schema(key)
    for flow in graph_of(key).flows:
        for field, value in re.findall(r'form\.(\w+) == "([^"]*)"', flow.condition or ""):
            assert field in schema["properties"], (flow.id, field)
            assert value in schema["properties"][field]["enum"], (flow.id, value)


def test_complaint_urgencies_are_the_ones_the_form_offers() -> None:
    offered = set(form_schema("complaint")["properties"]["urgency"]["enum"])
    tested = {
        value
        for flow in graph_of("complaint").flows
        for value in re.findall(r'priority == "(\w+)"', flow.condition or "")
    }
    assert tested == {"S", "A"} and tested < offered  # B (and a ticket's C) take the default


# --- running them -------------------------------------------------------------------------


@pytest.fixture
def at(monkeypatch):
    """Set the clock the engine reads (`django.utils.timezone.now`)."""

    def set_now(moment: datetime) -> datetime:
        monkeypatch.setattr(timezone, "now", lambda: moment)
        return moment

    return set_now


@pytest.fixture
def people(org) -> dict[str, Employee]:
    director = holder(org, "客服总监", region=None, name="孔总监")
    complaints_lead = holder(org, "客诉主管", region=org.shanghai, name="钱主管", manager=director)
    supervisor = holder(org, "客服组长", region=org.shanghai, name="高组长", manager=director)
    return {
        "客服": holder(org, "客服", region=org.shanghai, name="王客服", manager=supervisor),
        "广州客服": holder(org, "客服", region=org.guangzhou, name="吴客服"),
        "组长": supervisor,
        "客诉主管": complaints_lead,
        "总监": director,
        "财务": holder(org, "财务", region=None, name="高财务"),
        "顾问": holder(org, "课程顾问", region=org.shanghai, name="林顾问", manager=supervisor),
        "顾问2": holder(org, "课程顾问", region=org.east, name="何顾问", manager=supervisor),
        "路由负责人": holder(org, "店长", region=org.pudong, name="路店长", manager=supervisor),
    }


def ticket(priority: str = "B", assignee: Any = "", **answers: Any) -> dict[str, Any]:
    """Instance data as a ticket template starts a flow."""
    return {
        "ticket_number": "GD20261125-0001",
        "priority": priority,
        "source": "email",
        "category": "测试",
        "assignee": assignee,
        "form": answers,
        **answers,
    }


def start(admin, key: str, data: dict[str, Any], owner: Employee | None = None) -> Instance:
    actor = actor_for(admin)
    services.definition_save(actor=actor, key=key, name=SHIPPED[key][0], xml=shipped_xml(key))
    services.definition_publish(actor=actor, key=key)
    return services.instance_start(
        actor=actor,
        key=key,
        data=data,
        business_key=str(data["ticket_number"]),
        region_id=data.pop("_region", None),
        owner_id=owner.pk if owner else None,
    )


def in_pudong(org, data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "_region": org.pudong.pk}


def walk(instance: Instance, outcomes: dict[str, str] | None = None) -> list[str]:
    """Complete open tasks one by one (with the outcome given for their node) until none is left."""
    seen = []
    while Task.objects.filter(instance=instance, status=TaskStatus.OPEN).exists():
        task = open_task(instance)
        seen.append(task.node_id)
        complete(task, (outcomes or {}).get(task.node_id, ""))
    instance.refresh_from_db()
    return seen


def entered(instance: Instance) -> list[str]:
    return list(
        FlowEvent.objects.filter(instance=instance, kind="node.entered")
        .order_by("id")
        .values_list("node_id", flat=True)
    )


# complaint


def test_an_s_complaint_is_due_in_three_minutes_even_on_saturday_night(org, admin, people, at):
    created = at(SATURDAY_NIGHT)
    instance = start(admin, "complaint", in_pudong(org, ticket("S", urgency="S")))

    task = open_task(instance)
    assert (task.node_id, task.name) == ("Task_RespondS", "响应（S 级）")
    assert task.due_at == created + timedelta(minutes=3)
    assert task.assignee_id == people["客服"].pk  # least loaded 客服 covering 浦东, not 广州's


@pytest.mark.parametrize(
    ("priority", "node", "span", "due"),
    [
        ("A", "Task_RespondA", timedelta(minutes=30), datetime(2026, 11, 30, 9, 30, tzinfo=SH)),
        ("B", "Task_RespondB", timedelta(hours=4), datetime(2026, 11, 30, 14, 0, tzinfo=SH)),
        ("C", "Task_RespondB", timedelta(hours=4), datetime(2026, 11, 30, 14, 0, tzinfo=SH)),
    ],
)
def test_a_and_b_complaints_wait_for_working_hours(
    org, admin, people, at, priority, node, span, due
):
    created = at(SATURDAY_NIGHT)
    instance = start(admin, "complaint", in_pudong(org, ticket(priority, urgency="B")))

    task = open_task(instance)
    assert task.node_id == node
    assert task.due_at == due  # Monday morning, not Saturday night
    assert task.due_at == add_working_time(created, span, default_calendar())


def test_an_unanswered_s_complaint_goes_to_the_complaints_lead(org, admin, people, at):
    at(SATURDAY_NIGHT)
    instance = start(admin, "complaint", in_pudong(org, ticket("S", urgency="S")))
    task = open_task(instance)
    due = task.due_at
    assert due is not None

    assert fire_due(now=due - timedelta(seconds=1)) == 0
    fire_due(now=due + timedelta(seconds=1))  # at the breach: the agent is reminded
    assert Notification.objects.filter(recipient=people["客服"], kind="flows.sla_remind").exists()
    task.refresh_from_db()
    assert task.assignee_id == people["客服"].pk

    fire_due(now=due + timedelta(minutes=1, seconds=1))  # +1 min: handed to 客诉主管
    task.refresh_from_db()
    assert task.assignee_id == people["客诉主管"].pk
    assert task.status == TaskStatus.OPEN
    moved = Notification.objects.filter(kind="flows.task_reassigned")
    assert set(moved.values_list("recipient_id", flat=True)) == {
        people["客服"].pk,
        people["客诉主管"].pk,
    }

    fire_due(now=due + timedelta(minutes=2, seconds=1))  # +2 min: 钱主管's own manager hears
    alert = Notification.objects.get(kind="flows.sla_alert")
    assert alert.recipient_id == people["总监"].pk
    steps = list(
        FlowEvent.objects.filter(instance=instance, kind="sla.escalated")
        .order_by("id")
        .values_list("data__action", flat=True)
    )
    assert steps == ["remind", "reassign", "alert"]

    complete(task)  # the lead answers: on to 处理
    assert open_task(instance).node_id == "Task_Handle"


def test_the_routed_owner_gets_every_complaint_task(org, admin, people):
    owner = people["路由负责人"]
    instance = start(admin, "complaint", in_pudong(org, ticket("A", assignee=owner.pk)), owner)

    for node in ["Task_RespondA", "Task_Handle", "Task_CustomerConfirm"]:
        task = open_task(instance)
        assert (task.node_id, task.assignee_id) == (node, owner.pk)
        complete(task, "resolved" if node == "Task_CustomerConfirm" else "")

    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED


@pytest.mark.parametrize("as_text", [True, False])
def test_the_routed_owner_may_come_as_a_number_or_as_text(org, admin, people, as_text):
    owner = people["路由负责人"]
    assignee: Any = str(owner.pk) if as_text else owner.pk
    instance = start(admin, "complaint", in_pudong(org, ticket("B", assignee=assignee)))

    assert open_task(instance).assignee_id == owner.pk


def test_reopen_then_resolve_ends_the_complaint(org, admin, people):
    instance = start(admin, "complaint", in_pudong(org, ticket("B", urgency="B")))
    complete(open_task(instance))  # 响应
    complete(open_task(instance))  # 处理
    confirm = open_task(instance)
    assert confirm.node_id == "Task_CustomerConfirm"
    complete(confirm, "reopen")

    again = open_task(instance)
    assert again.node_id == "Task_Handle"  # back to 处理
    complete(again)
    complete(open_task(instance), "resolved")

    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED
    assert entered(instance)[-1] == "EndEvent_Resolved"
    assert entered(instance).count("Task_Handle") == 2


# shop_return


def test_a_rejected_return_tells_the_owner_to_inform_the_customer_and_ends(org, admin, people):
    owner = people["客服"]
    data = ticket("B", request_type="退货", order_no="TB123456", reason="不想要了")
    instance = start(admin, "shop_return", in_pudong(org, data), owner)

    review = open_task(instance)
    assert (review.node_id, review.name) == ("Task_Review", "受理审核")
    assert review.assignee_id == owner.pk  # round robin among 客服 covering 浦东: only 王客服
    assert review.due_at == add_working_time(
        review.created_at, timedelta(hours=4), default_calendar()
    )
    complete(review, "reject")

    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED
    assert entered(instance)[-2:] == ["Task_NotifyRejected", "EndEvent_Rejected"]
    note = Notification.objects.get(kind="flows.notify")
    assert note.recipient_id == owner.pk and "驳回" in note.title


@pytest.mark.parametrize(
    ("request_type", "node", "who"),
    [("换货", "Task_Exchange", "路由负责人"), ("退货", "Task_Refund", "财务")],
)
def test_an_approved_return_branches_on_the_form_answer(
    org, admin, people, request_type, node, who
):
    owner = people["路由负责人"]
    data = ticket("B", assignee=owner.employee_no, request_type=request_type, reason="发错货")
    instance = start(admin, "shop_return", in_pudong(org, data), owner)

    review = open_task(instance)
    assert review.assignee_id == owner.pk
    complete(review, "approve")

    task = open_task(instance)
    assert task.node_id == node
    assert task.assignee_id == people[who].pk  # refunds go to 财务, exchanges stay with the owner
    complete(task)
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.COMPLETED
    assert entered(instance)[-1] == "EndEvent_Done"
    other = "Task_Exchange" if node == "Task_Refund" else "Task_Refund"
    assert other not in entered(instance)


def test_a_review_must_approve_or_reject(org, admin, people):
    data = ticket("B", request_type="换货")
    instance = start(admin, "shop_return", in_pudong(org, data))
    review = open_task(instance)

    with pytest.raises(DomainError) as exc:
        complete(review)
    assert exc.value.code == "invalid_outcome"


# course_trial


def test_a_course_trial_runs_from_booking_to_follow_up(org, admin, people, at):
    created = at(datetime(2026, 11, 25, 10, 0, tzinfo=SH))  # a Wednesday morning
    data = ticket("B", student_name="小明", courses=["少儿编程"], campus="浦东校区")
    instance = start(admin, "course_trial", in_pudong(org, data))

    confirm = open_task(instance)
    assert (confirm.node_id, confirm.name) == ("Task_Confirm", "确认预约")
    assert confirm.due_at == datetime(2026, 11, 25, 12, 0, tzinfo=SH)  # 2 working hours
    assert confirm.due_at == add_working_time(created, timedelta(hours=2), default_calendar())
    consultants = {people["顾问"].pk, people["顾问2"].pk}
    assert confirm.assignee_id in consultants

    complete(confirm)
    seen = [confirm.node_id, *walk(instance)]
    assert seen == ["Task_Confirm", "Task_TrialFeedback", "Task_FollowUp"]
    names = list(
        Task.objects.filter(instance=instance).order_by("id").values_list("name", flat=True)
    )
    assert names == ["确认预约", "试听反馈", "回访"]
    assert instance.status == InstanceStatus.COMPLETED
    assert entered(instance)[-1] == "EndEvent_Done"


def test_course_trials_without_an_owner_take_turns_among_the_consultants(org, admin, people):
    first = start(admin, "course_trial", in_pudong(org, ticket("B", campus="线上")))
    second = start(admin, "course_trial", in_pudong(org, ticket("B", campus="线上")))

    assert {open_task(first).assignee_id, open_task(second).assignee_id} == {
        people["顾问"].pk,
        people["顾问2"].pk,
    }


def test_a_course_trial_with_a_routed_owner_stays_with_them(org, admin, people):
    owner = people["路由负责人"]
    instance = start(admin, "course_trial", in_pudong(org, ticket("B", assignee=owner.pk)), owner)

    assignees = set()
    while Task.objects.filter(instance=instance, status=TaskStatus.OPEN).exists():
        task = open_task(instance)
        assignees.add(task.assignee_id)
        complete(task)
    assert assignees == {owner.pk}


@pytest.mark.parametrize(("key", "hours"), [("shop_return", 4), ("course_trial", 2)])
def test_an_overdue_first_step_reminds_then_alerts_the_supervisor(org, admin, people, key, hours):
    instance = start(admin, key, in_pudong(org, ticket("B", request_type="退货")))
    task = open_task(instance)
    assert task.due_at is not None

    fire_due(now=task.due_at + timedelta(seconds=1))
    assert Notification.objects.filter(
        recipient_id=task.assignee_id, kind="flows.sla_remind"
    ).exists()
    fire_due(now=task.due_at + timedelta(hours=1, seconds=1))
    alert = Notification.objects.get(kind="flows.sla_alert")
    assert alert.recipient_id == people["组长"].pk
    task.refresh_from_db()
    assert task.status == TaskStatus.OPEN and task.assignee_id != people["组长"].pk
