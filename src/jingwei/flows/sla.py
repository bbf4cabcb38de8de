"""SLAs on user tasks and the escalation chain that runs when one is breached.

A node's `sla` is {"duration": "PT2H", "calendar": "working" | "calendar", "escalations": [
{"after": "PT0M", "action": "remind", "target": "assignee"}, {"after": "PT30M", "action": "reassign",
"target": "supervisor"}, {"after": "PT1H", "action": "alert", "target": "manager"}]}. `after` counts
from the breach. One timer per task at a time (key task:<id>:sla) walks the chain step by step;
completing or cancelling the task cancels it.

Targets: assignee; supervisor (the assignee's manager); manager (the supervisor's manager);
role:<name> (holders of the role covering the case's region).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from jingwei.core.errors import DomainError
from jingwei.core.timers import timer_cancel, timer_schedule

from . import hooks
from .assignment import manager_of, role_holders
from .bpmn import parse_duration
from .models import Instance, Task, TaskStatus

SLA_TIMER = "flows.sla"


def duration(text: str) -> timedelta:
    try:
        return parse_duration(text or "")
    except ValueError as exc:
        raise DomainError(
            f"无法识别的时长 {text!r}（应为 ISO 8601，如 PT2H）", code="bad_duration"
        ) from exc


def add(instance: Instance, start: datetime, span: timedelta, mode: str) -> datetime:
    """`span` after `start`: in working time (the business calendar) or in plain calendar time."""
    if mode == "calendar":
        return start + span
    from .calendar import add_working_time, default_calendar

    return add_working_time(start, span, default_calendar())


def timer_due(instance: Instance, timer: dict[str, Any]) -> datetime:
    if timer.get("date"):
        moment = parse_datetime(str(timer["date"]))
        if moment is None or timezone.is_naive(moment):
            raise DomainError(f"无法识别的时间 {timer['date']!r}", code="bad_timer")
        return moment
    return add(
        instance,
        timezone.now(),
        duration(str(timer.get("duration") or "")),
        timer.get("calendar", "calendar"),
    )


def _key(task: Task) -> str:
    return f"task:{task.pk}:sla"


def arm(instance: Instance, task: Task, node: dict[str, Any]) -> None:
    spec = node.get("sla")
    if not spec:
        return
    task.due_at = add(
        instance, task.created_at, duration(spec["duration"]), spec.get("calendar", "working")
    )
    task.save(update_fields=["due_at"])
    _schedule_step(instance, task, spec, 0)


def _schedule_step(instance: Instance, task: Task, spec: dict[str, Any], step: int) -> None:
    steps = spec.get("escalations") or []
    assert task.due_at is not None
    if step == 0 and not steps:
        at = task.due_at  # no chain: only mark the breach
    elif step < len(steps):
        at = task.due_at + duration(steps[step].get("after") or "PT0S")
    else:
        return
    timer_schedule(
        tenant_id=instance.tenant_id,
        kind=SLA_TIMER,
        key=_key(task),
        due_at=at,
        payload={"task_id": task.pk, "step": step},
    )


def disarm(task: Task) -> None:
    timer_cancel(tenant_id=task.tenant_id, kind=SLA_TIMER, key=_key(task))


def _target(instance: Instance, task: Task, target: str) -> list[int]:
    if target.startswith("role:"):
        return role_holders(instance, target[5:], "region")
    people = {"assignee": task.assignee_id}
    people["supervisor"] = manager_of(people["assignee"])
    people["manager"] = manager_of(people["supervisor"])
    found = people.get(target)
    return [found] if found else []


def fire(payload: dict[str, Any]) -> None:
    """Timer handler body: run one step of the chain and schedule the next."""
    from .engine import event

    task = (
        Task.objects.select_for_update()
        .select_related("instance__version")
        .filter(pk=payload["task_id"], status=TaskStatus.OPEN)
        .first()
    )
    if task is None:
        return  # done or cancelled meanwhile
    instance = task.instance
    spec = instance.version.spec["nodes"][task.node_id].get("sla") or {}
    steps = spec.get("escalations") or []
    step = int(payload["step"])
    if step == 0:
        event(
            instance,
            "sla.breached",
            task.node_id,
            task=task,
            data={"due_at": task.due_at.isoformat() if task.due_at else None},
        )
    if step < len(steps):
        _escalate(instance, task, steps[step], step)
        _schedule_step(instance, task, spec, step + 1)


def _escalate(instance: Instance, task: Task, step: dict[str, Any], index: int) -> None:
    from .engine import event

    action = step.get("action") or "remind"
    people = _target(instance, task, str(step.get("target") or "assignee"))
    title = f"任务超时：{task.name}"
    if action == "reassign" and people:
        previous = task.assignee_id
        task.assignee_id = people[0]
        task.save(update_fields=["assignee_id"])
        hooks.alert(
            tenant_id=instance.tenant_id,
            recipient_ids=[people[0], previous],
            kind="flows.task_reassigned",
            title=f"任务超时已改派：{task.name}",
            data={"task_id": task.pk, "instance_id": instance.pk},
        )
    else:
        hooks.alert(
            tenant_id=instance.tenant_id,
            recipient_ids=people,
            kind=f"flows.sla_{action}",
            title=title,
            severity="urgent" if action == "alert" else "warning",
            data={"task_id": task.pk, "instance_id": instance.pk, "step": index},
        )
    event(
        instance,
        "sla.escalated",
        task.node_id,
        task=task,
        data={"step": index, "action": action, "target": step.get("target"), "people": people},
    )
