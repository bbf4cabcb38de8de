"""Timer handlers for the timer tests, registered on import.

`test.probe` writes one audit event per firing (action "test.fired", subject_id = payload["n"],
data["pid"] = the firing process), then sleeps `payload["sleep"]` seconds if asked, inside the
claiming transaction. A payload `hold` makes the handler stop for good at a known point —
"before_write" or "after_write" its event — after creating the file `hold["file"]`, so a test can
kill the loop at exactly that point. It holds only once: a later firing finds the file and runs on.

`test.failing` writes an event too, then raises: its write must roll back with the failure.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from django.utils import timezone

from jingwei.audit.models import AuditEvent
from jingwei.core.models import Timer
from jingwei.core.timers import timer_handler

PROBE = "test.probe"
FAILING = "test.failing"
FIRED_ACTION = "test.fired"
HOLD_SECONDS = 120  # far longer than any test waits: the loop is killed while holding


def _record(timer: Timer) -> None:
    AuditEvent.objects.create(
        tenant_id=timer.tenant_id,
        at=timezone.now(),
        action=FIRED_ACTION,
        subject_type="core.timer",
        subject_id=str(timer.payload.get("n", "")),
        data={"pid": os.getpid(), "timer_id": timer.pk},
    )


def _hold(timer: Timer, point: str) -> None:
    hold = timer.payload.get("hold")
    if not hold or hold["at"] != point:
        return
    flag = Path(hold["file"])
    if flag.exists():
        return
    flag.touch()
    time.sleep(HOLD_SECONDS)


@timer_handler(PROBE)
def on_probe(timer: Timer) -> None:
    _hold(timer, "before_write")
    _record(timer)
    _hold(timer, "after_write")
    if delay := float(timer.payload.get("sleep", 0)):
        time.sleep(delay)


@timer_handler(FAILING)
def on_failing(timer: Timer) -> None:
    _record(timer)
    raise RuntimeError(f"probe failure #{timer.attempts}")
