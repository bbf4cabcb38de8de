"""`jingwei run` (what `make run` starts): web, worker and timer loop together, stopped together."""

from __future__ import annotations

import socket
import subprocess
import urllib.request
from datetime import timedelta

import pytest
from django.utils import timezone

from jingwei.audit.models import AuditEvent
from jingwei.core.models import Timer, TimerStatus
from jingwei.core.timers import timer_schedule
from jingwei.org.models import RoleAssignment

from ..factories import EmployeeFactory, TenantFactory, make_role
from .processes import Proc, running, wait_until
from .sample_tasks import RAN_ACTION, leave_mark

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str, timeout: float = 1) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def test_run_serves_the_api_runs_jobs_fires_timers_and_stops_as_one(tmp_path):
    # Given a job queued and a timer due
    tenant = TenantFactory()
    employee = EmployeeFactory(tenant=tenant)
    assignment = RoleAssignment.objects.create(
        tenant=tenant,
        employee=employee,
        role=make_role(tenant, "临时", ["ticket.view"]),
        scope="self",
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    timer = timer_schedule(
        tenant_id=tenant.pk,
        kind="org.grant_expired",
        due_at=timezone.now(),
        payload={"assignment_id": assignment.pk},
    )
    leave_mark.enqueue(tenant.pk, "from-run")
    port, simulators_port = free_port(), free_port()
    # ... and a notification rule whose webhook points at the simulators `run` starts
    from jingwei.notify.models import ChannelConfig, Delivery, MessageTemplate, Rule
    from jingwei.notify.services import event_publish
    from jingwei.notify.simulators import Simulators

    ChannelConfig.objects.create(
        tenant=tenant,
        channel="webhook",
        settings=Simulators.channel_settings(f"http://127.0.0.1:{simulators_port}")["webhook"],
    )
    Rule.objects.create(
        tenant=tenant,
        name="推送",
        event="ticket.created",
        recipients=[{"kind": "employee", "employee_id": employee.pk}],
        channels={"urgent": ["webhook"]},
        template=MessageTemplate.objects.create(tenant=tenant, key="t", name="t", title="新工单"),
    )
    event_publish(tenant_id=tenant.pk, name="ticket.created", key="run-1", severity="urgent")

    # When `jingwei run` starts
    run = Proc(
        [
            *("-m", "jingwei.cli", "run", "--port", str(port), "--web-workers", "1"),
            *("--simulators-port", str(simulators_port)),
        ],
        tmp_path / "run.log",
        TIMER_INTERVAL="0.1",
    )
    with running(run):
        # Then the web answers, the worker ran the job and the timer loop fired the timer
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/healthz"), what="web", procs=[run])
        # The API document is built on first request (seconds for ~200 operations): wait for it.
        assert answers(f"http://127.0.0.1:{port}/api/openapi.json", timeout=30)
        wait_until(
            lambda: AuditEvent.objects.filter(action=RAN_ACTION, subject_id="from-run").exists(),
            what="the worker to run the job",
            procs=[run],
        )
        wait_until(
            lambda: Timer.objects.get(pk=timer.pk).status == TimerStatus.FIRED,
            what="the timer loop to fire the timer",
            procs=[run],
        )
        assert AuditEvent.objects.filter(
            action="org.grant.expired", subject_id=str(assignment.pk)
        ).exists()
        # The timer loop fanned the event out and sent it to the simulators' webhook receiver.
        wait_until(
            lambda: Delivery.objects.filter(status="sent").exists(),
            what="the notification to be delivered",
            procs=[run],
        )
        children = children_of(run.pid)
        assert len(children) == 4  # web, worker, timers, simulators

        # And SIGTERM stops them all
        assert run.stop() == 0
        assert not any(pid_alive(pid) for pid in children)
        assert not answers(f"http://127.0.0.1:{port}/healthz")


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
