"""Two people completing the same task at the same moment: one wins, the other is told clearly,
and the flow moves exactly once. Real threads, each with its own database connection."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from django.db import connection, connections

from jingwei.core.errors import Conflict
from jingwei.flows import services
from jingwei.flows.models import FlowEvent, Task, TaskStatus
from jingwei.org.permissions import PERMISSIONS
from jingwei.org.scope import actor_for

from ..factories import EmployeeFactory, grant

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.django_db(transaction=True)
def test_two_people_completing_one_task_at_once_move_the_flow_once(org):
    if connection.vendor != "postgresql":
        pytest.skip(
            "row locks under real concurrency are a PostgreSQL property (SQLite serialises writers)"
        )
    boss = EmployeeFactory(tenant=org.tenant, department=org.hq)
    grant(boss, sorted(PERMISSIONS), "tenant")
    applicant = EmployeeFactory(tenant=org.tenant, region=org.shanghai, manager=boss)
    grant(applicant, ["flow.start", "flow.view"], "self")
    actor = actor_for(boss)
    services.definition_save(
        actor=actor,
        key="approval",
        name="审批",
        xml=(FIXTURES / "approval_by_amount.bpmn").read_text(),
    )
    services.definition_publish(actor=actor, key="approval")
    instance = services.instance_start(
        actor=actor_for(applicant), key="approval", data={"amount": 100}
    )
    task = Task.objects.get(instance=instance, status=TaskStatus.OPEN)
    assert task.assignee_id == boss.pk

    barrier = threading.Barrier(2)
    results: list[str] = []

    def finish() -> None:
        try:
            barrier.wait()
            services.task_complete(actor=actor_for(boss), task_id=task.pk, outcome="approve")
            results.append("ok")
        except Conflict as exc:
            results.append(exc.code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=finish) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert sorted(results) == ["ok", "task_closed"]
    assert FlowEvent.objects.filter(instance=instance, kind="task.completed").count() == 1
