"""Timer handlers for the timer tests, registered on import.

`test.probe` writes one audit event per firing (action "test.fired", subject_id = payload["n"],
data["pid"] = the firing process) and then, when the payload asks, sleeps inside the claiming
transaction — so a loop killed during the sleep dies with an uncommitted firing.
`test.failing` writes an event too, then raises: its write must roll back with the failure.
"""

from __future__ import annotations

import os
import time

from django.utils import timezone

from jingwei.audit.models import AuditEvent
from jingwei.core.models import Timer
from jingwei.core.timers import timer_handler

PROBE = "test.probe"
FAILING = "test.failing"
FIRED_ACTION = "test.fired"


def _record(timer: Timer) -> None:
    AuditEvent.objects.create(
        tenant_id=timer.tenant_id,
        at=timezone.now(),
        action=FIRED_ACTION,
        subject_type="core.timer",
        subject_id=str(timer.payload.get("n", "")),
        data={"pid": os.getpid(), "timer_id": timer.pk},
    )


@timer_handler(PROBE)
def on_probe(timer: Timer) -> None:
    _record(timer)
    if delay := float(timer.payload.get("sleep", 0)):
        time.sleep(delay)


@timer_handler(FAILING)
def on_failing(timer: Timer) -> None:
    _record(timer)
    raise RuntimeError(f"probe failure #{timer.attempts}")
