"""SLAs on user tasks and on waits (a call activity waiting for its sub-flow, a message catch
waiting for an outside signal), and the escalation chain that runs when one is breached.

A node's `sla` is {"duration": "PT2H", "calendar": "working" | "calendar", "escalations": [
{"after": "PT0M", "action": "remind", "target": "assignee"}, {"after": "PT30M", "action": "reassign",
"target": "supervisor"}, {"after": "PT1H", "action": "alert", "target": "manager"}]}. `after` counts
from the breach. One timer per task at a time (key task:<id>:sla; token:<id>:sla for a wait)
walks the chain step by step; completing or cancelling the task, or the wait ending, cancels it.

Targets: assignee; supervisor (the assignee's manager); manager (the supervisor's manager);
role:<name> (holders of the role covering the case's region). A wait has no assignee: the case
owner answers for it, and `reassign` on a wait alerts the target instead (nothing to hand over).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from jingwei.core.errors import DomainError
from jingwei.core.timers import timer_cancel, timer_create, timer_schedule

from . import hooks
from .assignment import manager_of, role_holders
from .bpmn import parse_duration
from .models import Instance, Task, TaskStatus, Token, TokenStatus

SLA_TIMER = "flows.sla"


def duration(text: str) -> timedelta:
    try:
        return parse_duration(text or "")
    except ValueError as exc:
        raise DomainError(
            f"无法识别的时长 {text!r}（应为 ISO 8601，如 PT2H）", code="bad_duration"
        ) from exc


def add(instance: Instance, start: datetime, span: timedelta, mode: str) -> datetime:
    """`span` after `start`: in working time (the business calendar of the case's region or
    tenant, `calendars.calendar_for`) or in plain calendar time."""
    if mode == "calendar":
        return start + span
    from .calendar import add_working_time
    from .calendars import calendar_for

    return add_working_time(start, span, calendar_for(instance.tenant_id, instance.region))


def timer_due(instance: Instance, timer: dict[str, Any], start: datetime | None = None) -> datetime:
    """When a BPMN timer set off at `start` (default: now) is due."""
    if timer.get("date"):
        moment = parse_datetime(str(timer["date"]))
        if moment is None or timezone.is_naive(moment):
            raise DomainError(f"无法识别的时间 {timer['date']!r}", code="bad_timer")
        return moment
    return add(
        instance,
        start or timezone.now(),
        duration(str(timer.get("duration") or "")),
        timer.get("calendar", "calendar"),
    )


@dataclass
class _Watched:
    """What an SLA watches: an open task, or a token waiting at a call activity or message."""

    instance: Instance
    node_id: str
    key: str
    payload: dict[str, Any]
    due_at: datetime
    task: Task | None = None

    @property
    def responsible(self) -> int | None:
        return self.task.assignee_id if self.task is not None else self.instance.owner_id

    @property
    def label(self) -> str:
        if self.task is not None:
            return self.task.name
        node = self.instance.version.spec["nodes"].get(self.node_id) or {}
        return str(node.get("name") or self.node_id)


def _task_watch(instance: Instance, task: Task) -> _Watched:
    assert task.due_at is not None
    return _Watched(
        instance, task.node_id, f"task:{task.pk}:sla", {"task_id": task.pk}, task.due_at, task
    )


def due(instance: Instance, node: dict[str, Any], start: datetime) -> datetime | None:
    """When a task (or wait) at `node` begun at `start` is due: None without an SLA."""
    spec = node.get("sla")
    if not spec:
        return None
    return add(instance, start, duration(spec["duration"]), spec.get("calendar", "working"))


def arm(instance: Instance, task: Task, node: dict[str, Any]) -> None:
    """Start the escalation chain of a new task (its due_at set from `due`)."""
    spec = node.get("sla")
    if spec and task.due_at is not None:
        _schedule_step(_task_watch(instance, task), spec, 0, new=True)


def arm_wait(instance: Instance, token: Token, node: dict[str, Any]) -> None:
    """Start the escalation chain of a token that has just begun waiting at `node`."""
    spec = node.get("sla")
    at = due(instance, node, token.arrived_at)
    if spec and at is not None:
        watch = _Watched(
            instance, token.node_id, f"token:{token.pk}:sla", {"token_id": token.pk}, at
        )
        _schedule_step(watch, spec, 0, new=True)


def _schedule_step(watch: _Watched, spec: dict[str, Any], step: int, *, new: bool = False) -> None:
    steps = spec.get("escalations") or []
    if step == 0 and not steps:
        at = watch.due_at  # no chain: only mark the breach
    elif step < len(steps):
        at = watch.due_at + duration(steps[step].get("after") or "PT0S")
    else:
        return
    # A new task's or wait's key cannot be taken yet; later steps reuse its one timer row.
    (timer_create if new else timer_schedule)(
        tenant_id=watch.instance.tenant_id,
        kind=SLA_TIMER,
        key=watch.key,
        due_at=at,
        payload={**watch.payload, "due_at": watch.due_at.isoformat(), "step": step},
    )


def disarm(task: Task, node: dict[str, Any]) -> None:
    if node.get("sla"):
        timer_cancel(tenant_id=task.tenant_id, kind=SLA_TIMER, key=f"task:{task.pk}:sla")


def disarm_wait(token: Token, node: dict[str, Any]) -> None:
    if node.get("sla") and node["type"] != "userTask":
        timer_cancel(tenant_id=token.tenant_id, kind=SLA_TIMER, key=f"token:{token.pk}:sla")


def _target(watch: _Watched, target: str) -> list[int]:
    if target.startswith("role:"):
        return role_holders(watch.instance, target[5:], "region")
    if target.startswith("duty:"):
        from jingwei.notify.services.config import on_duty_named

        return on_duty_named(watch.instance.tenant_id, target[5:])
    people = {"assignee": watch.responsible}
    people["supervisor"] = manager_of(people["assignee"])
    people["manager"] = manager_of(people["supervisor"])
    found = people.get(target)
    return [found] if found else []


def _watched(payload: dict[str, Any]) -> _Watched | None:
    """The still-open task or still-waiting token of a fired SLA timer, its instance locked
    first; None when it has moved on meanwhile."""
    from .engine import lock_instance

    if "token_id" in payload:
        instance = lock_instance(tokens__pk=payload["token_id"])
        token = (
            Token.objects.select_for_update()
            .filter(pk=payload["token_id"], status=TokenStatus.ACTIVE)
            .first()
        )
        if instance is None or token is None:
            return None
        at = parse_datetime(str(payload.get("due_at") or "")) or token.arrived_at
        return _Watched(
            instance, token.node_id, f"token:{token.pk}:sla", {"token_id": token.pk}, at
        )
    instance = lock_instance(tasks__pk=payload["task_id"])
    task = (
        Task.objects.select_for_update()
        .filter(pk=payload["task_id"], status=TaskStatus.OPEN)
        .first()
    )
    if instance is None or task is None or task.due_at is None:
        return None
    task.instance = instance
    return _task_watch(instance, task)


def fire(payload: dict[str, Any]) -> None:
    """Timer handler body: run one step of the chain and schedule the next."""
    from .engine import event, spec_of

    watch = _watched(payload)
    if watch is None:
        return  # done, cancelled or moved on meanwhile
    spec = spec_of(watch.instance)["nodes"][watch.node_id].get("sla") or {}
    if not spec:
        return  # the instance moved to a version without this SLA
    steps = spec.get("escalations") or []
    step = int(payload["step"])
    if step == 0:
        event(
            watch.instance,
            "sla.breached",
            watch.node_id,
            task=watch.task,
            data={"due_at": watch.due_at.isoformat()},
        )
    if step < len(steps):
        _escalate(watch, steps[step], step)
        _schedule_step(watch, spec, step + 1)


def _escalate(watch: _Watched, step: dict[str, Any], index: int) -> None:
    from .engine import event

    instance, task = watch.instance, watch.task
    action = step.get("action") or "remind"
    people = _target(watch, str(step.get("target") or "assignee"))
    refs = {"instance_id": instance.pk, **watch.payload}
    if action == "reassign" and people and task is not None:
        previous = task.assignee_id
        task.assignee_id = people[0]
        task.save(update_fields=["assignee_id"])
        hooks.alert(
            tenant_id=instance.tenant_id,
            region_id=instance.region_id,
            recipient_ids=[people[0], previous],
            kind="flows.task_reassigned",
            title=f"任务超时已改派：{watch.label}",
            data=refs,
        )
    else:
        hooks.alert(
            tenant_id=instance.tenant_id,
            region_id=instance.region_id,
            recipient_ids=people,
            kind=f"flows.sla_{'alert' if action == 'reassign' else action}",
            title=f"{'任务' if task is not None else '等待'}超时：{watch.label}",
            severity="urgent" if action in ("alert", "reassign") else "warning",
            data={**refs, "step": index},
        )
    event(
        instance,
        "sla.escalated",
        watch.node_id,
        task=task,
        data={"step": index, "action": action, "target": step.get("target"), "people": people},
    )
