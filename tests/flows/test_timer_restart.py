"""Flow timers under a crash: the real timer loop, killed with SIGKILL while it fires one flow's
timer (before or after that flow has moved on, inside the firing transaction) and then restarted,
leaves every case exactly where a user expects it — one task waiting at the step after the timer,
one `timer.fired` on its log — with nothing lost and nothing done twice.

Real processes against the test database (see tests.core.processes): `django_db(transaction=True)`.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from django.utils import timezone

from jingwei.core.models import Timer, TimerStatus
from jingwei.flows import engine, services
from jingwei.flows.models import (
    FlowEvent,
    Instance,
    InstanceStatus,
    Task,
    TaskStatus,
    Token,
    TokenStatus,
)
from jingwei.org.models import Employee
from jingwei.org.scope import actor_for

from ..core.processes import Proc, running, wait_until

KEY = "wait_then_handle"
TIMER_NODE = "Timer_Wait"
TASK_NODE = "Task_Handle"

FLOW_XML = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:jw="http://jingwei.example/schema/bpmn" id="Defs_WaitThenHandle"
    targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="wait_then_handle" name="等一秒再处理" isExecutable="true">
    <bpmn:startEvent id="Start"><bpmn:outgoing>Flow_1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:intermediateCatchEvent id="Timer_Wait" name="等待 1 秒">
      <bpmn:incoming>Flow_1</bpmn:incoming>
      <bpmn:outgoing>Flow_2</bpmn:outgoing>
      <bpmn:timerEventDefinition id="TimerDef_Wait">
        <bpmn:timeDuration xsi:type="bpmn:tFormalExpression">PT1S</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:userTask id="Task_Handle" name="处理">
      <bpmn:extensionElements>
        <jw:assignment rule="user" user="{employee_no}" />
      </bpmn:extensionElements>
      <bpmn:incoming>Flow_2</bpmn:incoming>
      <bpmn:outgoing>Flow_3</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="End"><bpmn:incoming>Flow_3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="Flow_1" sourceRef="Start" targetRef="Timer_Wait" />
    <bpmn:sequenceFlow id="Flow_2" sourceRef="Timer_Wait" targetRef="Task_Handle" />
    <bpmn:sequenceFlow id="Flow_3" sourceRef="Task_Handle" targetRef="End" />
  </bpmn:process>
</bpmn:definitions>
"""

# The real timer loop (`core.timers.run_loop`), with the real flows.timer handler wrapped so that a
# timer whose payload carries `hold` stops for good at a known point inside its firing transaction
# — the mechanism of tests.core.timer_probe (`_hold`: create the flag file, then sleep until killed).
# "after_write" stops once the flow has moved on: token left, task created, events written.
LOOP_SCRIPT = """
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jingwei.settings")
django.setup()

from jingwei.core.timers import run_loop, timer_handler
from jingwei.flows.engine import TIMER_KIND
from jingwei.flows.timer_handlers import on_flow_timer
from tests.core.timer_probe import _hold


@timer_handler(TIMER_KIND)
def on_flow_timer_with_hold(timer):
    _hold(timer, "before_write")
    on_flow_timer(timer)
    _hold(timer, "after_write")


run_loop(interval=float(os.environ["TIMER_INTERVAL"]))
"""


def start_flow_timer_loop(log: Path) -> Proc:
    return Proc(["-c", LOOP_SCRIPT], log, TIMER_INTERVAL="0.05")


def _flow_timers_in_firing_order() -> list[Timer]:
    """The loop fires the most overdue first (due_at, then id): the order of the instances' starts."""
    return list(Timer.objects.filter(kind=engine.TIMER_KIND).order_by("due_at", "id"))


def _pending() -> int:
    # The loop also books each tenant's daily housekeeping (key "daily"): not counted here.
    return Timer.objects.filter(status=TimerStatus.PENDING).exclude(key="daily").count()


def _events(kind: str, node_id: str) -> Counter[int]:
    """How many events of `kind` at `node_id` each instance has."""
    return Counter(
        FlowEvent.objects.filter(kind=kind, node_id=node_id).values_list("instance_id", flat=True)
    )


def _open_tasks() -> Counter[tuple[int, str, int | None]]:
    return Counter(
        Task.objects.filter(status=TaskStatus.OPEN).values_list(
            "instance_id", "node_id", "assignee_id"
        )
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kill_point", ["before_write", "after_write"])
def test_flow_timers_fired_by_a_loop_killed_mid_batch_and_restarted_move_each_case_once(
    tmp_path: Path, admin: Employee, kill_point: str
) -> None:
    count, held = 40, 17
    actor = actor_for(admin)
    services.definition_save(
        actor=actor,
        key=KEY,
        name="等一秒再处理",
        xml=FLOW_XML.format(employee_no=admin.employee_no),
    )
    services.definition_publish(actor=actor, key=KEY)

    # Given 40 cases waiting at a one-second timer, all of it committed
    instance_ids = [
        services.instance_start(actor=actor, key=KEY, business_key=f"WT-{n:03d}").pk
        for n in range(count)
    ]
    timers = _flow_timers_in_firing_order()
    assert [t.payload["instance_id"] for t in timers] == instance_ids
    assert Counter(t.status for t in timers) == Counter({TimerStatus.PENDING: count})
    assert not Task.objects.exists()
    # ... every timer due by the time the loop starts, so the loop takes them in a known order
    time.sleep(max(0.0, (timers[-1].due_at - timezone.now()).total_seconds()) + 0.05)

    # And the flow timer #17's firing stops (before or after its case moved on) until killed
    hold_file = tmp_path / "holding"
    target = timers[held]
    Timer.objects.filter(pk=target.pk).update(
        payload={**target.payload, "hold": {"at": kill_point, "file": str(hold_file)}}
    )

    # When the real timer loop is killed with SIGKILL while firing it
    first = start_flow_timer_loop(tmp_path / "loop-1.log")
    with running(first):
        wait_until(hold_file.exists, what=f"the loop to reach flow timer #{held}", procs=[first])
        first.kill()

    # Then the cases before it moved on whole, and the one it was firing shows no trace of it
    before = set(instance_ids[:held])
    assert _events("timer.fired", TIMER_NODE) == Counter({pk: 1 for pk in before})
    assert _events("node.entered", TASK_NODE) == Counter({pk: 1 for pk in before})
    assert _open_tasks() == Counter({(pk, TASK_NODE, admin.pk): 1 for pk in before})
    assert Token.objects.get(instance_id=instance_ids[held], status=TokenStatus.ACTIVE).node_id == (
        TIMER_NODE
    )
    assert _pending() == count - held

    # When a new loop is started, it fires the rest
    second = start_flow_timer_loop(tmp_path / "loop-2.log")
    with running(second):
        wait_until(lambda: _pending() == 0, what="the rest of the flow timers", procs=[second])
        assert second.stop() == 0, second.output()

    # Then every case waits at 处理, in its handler's task list, exactly once
    everyone = set(instance_ids)
    assert _open_tasks() == Counter({(pk, TASK_NODE, admin.pk): 1 for pk in everyone})
    assert Task.objects.count() == count  # no cancelled or duplicate task left behind either
    assert Counter(
        Token.objects.filter(status=TokenStatus.ACTIVE).values_list("instance_id", "node_id")
    ) == Counter({(pk, TASK_NODE): 1 for pk in everyone})
    # And each log shows the timer firing once and the case entering 处理 once
    assert _events("timer.fired", TIMER_NODE) == Counter({pk: 1 for pk in everyone})
    assert _events("node.entered", TASK_NODE) == Counter({pk: 1 for pk in everyone})
    assert _events("task.created", TASK_NODE) == Counter({pk: 1 for pk in everyone})
    # And no timer is left: each fired once, none pending, failed or retried
    assert Counter(
        Timer.objects.exclude(key="daily").values_list("kind", "status", "attempts")
    ) == Counter({(engine.TIMER_KIND, TimerStatus.FIRED, 1): count})

    # And the handler can finish every case
    for task in Task.objects.filter(status=TaskStatus.OPEN):
        services.task_complete(actor=actor, task_id=task.pk)
    assert Counter(Instance.objects.values_list("status", flat=True)) == Counter(
        {InstanceStatus.COMPLETED: count}
    )
