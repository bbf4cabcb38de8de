"""Durable timers: schedule a handler for a moment, and the loop that fires due ones.

Each timer fires in its own transaction: the row is claimed (FOR UPDATE SKIP LOCKED where the
database has it, and a guarded UPDATE everywhere), the handler runs, and the row is marked fired —
all or nothing. A loop killed mid-batch rolls back the timer it was firing, which stays pending
for the next loop: nothing is lost, and nothing a handler writes to the database happens twice.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from datetime import time as time_of_day
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from .models import Timer, TimerStatus

log = logging.getLogger("jingwei.timers")

Handler = Callable[[Timer], None]
_handlers: dict[str, Handler] = {}


def timer_handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function that fires timers of `kind`. It runs inside the claiming transaction."""

    def register(fn: Handler) -> Handler:
        _handlers[kind] = fn
        return fn

    return register


_daily: dict[str, time_of_day] = {}
_pollers: dict[str, Callable[[], int]] = {}


def loop_poller(name: str) -> Callable[[Callable[[], int]], Callable[[], int]]:
    """Register work the timer loop does on every turn besides firing timers (the notification
    runner's due deliveries). The function returns how much it did; 0 lets the loop sleep."""

    def register(fn: Callable[[], int]) -> Callable[[], int]:
        _pollers[name] = fn
        return fn

    return register


def daily_timer(kind: str, at: time_of_day) -> Callable[[Handler], Handler]:
    """Register a handler that runs once a day at `at`, the tenant's local time, for every active
    tenant (housekeeping: retention, pools, batch rules). The next day's run is scheduled in the
    same transaction as the handler's work, so a run is never skipped nor doubled; the timer
    loop schedules the first run of each tenant (`ensure_daily_timers`)."""

    def register(fn: Handler) -> Handler:
        def run(timer: Timer) -> None:
            fn(timer)
            # From when it ran, not when it was due: days the loop was down are not caught up.
            _schedule_daily(
                timer.tenant_id, kind, at, after=max(timer.due_at, timer.fired_at or timer.due_at)
            )

        _handlers[kind] = run
        _daily[kind] = at
        return fn

    return register


def _next_daily(tz_name: str, at: time_of_day, after: datetime) -> datetime:
    tz = ZoneInfo(tz_name)
    local = after.astimezone(tz)
    due = datetime.combine(local.date(), at, tzinfo=tz)
    while due <= after:
        due = datetime.combine(due.date() + timedelta(days=1), at, tzinfo=tz)
    return due


def _schedule_daily(tenant_id: int, kind: str, at: time_of_day, *, after: datetime) -> None:
    from django.apps import apps

    tz_name = (
        apps.get_model("org", "Tenant").objects.values_list("timezone", flat=True).get(pk=tenant_id)
    )
    timer_schedule(
        tenant_id=tenant_id, kind=kind, key="daily", due_at=_next_daily(tz_name, at, after)
    )


def ensure_daily_timers(now: datetime | None = None) -> int:
    """Schedule the next run of every daily timer for each active tenant that has none pending
    (a new tenant, a fresh database, a timer that failed for good). Returns how many it made."""
    from django.apps import apps

    now = now or timezone.now()
    made = 0
    tenants = apps.get_model("org", "Tenant").objects.filter(is_active=True)
    for kind, at in _daily.items():
        pending = Timer.objects.filter(kind=kind, key="daily", status=TimerStatus.PENDING)
        for tenant_id, tz_name in tenants.exclude(pk__in=pending.values("tenant_id")).values_list(
            "pk", "timezone"
        ):
            with transaction.atomic():
                timer_schedule(
                    tenant_id=tenant_id,
                    kind=kind,
                    key="daily",
                    due_at=_next_daily(tz_name, at, now),
                )
            made += 1
    return made


def registered_kinds() -> list[str]:
    return sorted(_handlers)


def timer_schedule(
    *,
    tenant_id: int,
    kind: str,
    due_at: datetime,
    payload: dict[str, Any] | None = None,
    key: str = "",
) -> Timer:
    """Schedule `kind` at `due_at`. With a `key`, the latest schedule stands: the key's one timer
    is made pending again at `due_at`, whether it was pending, fired, failed or cancelled."""
    if kind not in _handlers:
        raise ValueError(f"no timer handler registered for {kind!r}")
    if timezone.is_naive(due_at):
        raise ValueError("due_at must be timezone-aware")
    payload = payload or {}
    keyed = Timer.objects.filter(tenant_id=tenant_id, kind=kind, key=key)
    if key and _reschedule(keyed, due_at, payload):
        return keyed.get()
    try:
        with transaction.atomic():
            return Timer.objects.create(
                tenant_id=tenant_id, kind=kind, key=key, due_at=due_at, payload=payload
            )
    except IntegrityError:
        # Someone scheduled the same key meanwhile (and a loop may have fired it already).
        _reschedule(keyed, due_at, payload)
        return keyed.get()


def timer_create(
    *,
    tenant_id: int,
    kind: str,
    due_at: datetime,
    payload: dict[str, Any] | None = None,
    key: str = "",
) -> Timer:
    """Schedule a new timer whose key (if any) the caller knows is unused, e.g. one named after a
    row just inserted: one INSERT, where timer_schedule first tries to take the key over. A used
    key raises IntegrityError."""
    if kind not in _handlers:
        raise ValueError(f"no timer handler registered for {kind!r}")
    if timezone.is_naive(due_at):
        raise ValueError("due_at must be timezone-aware")
    return Timer.objects.create(
        tenant_id=tenant_id, kind=kind, key=key, due_at=due_at, payload=payload or {}
    )


def _reschedule(keyed: QuerySet[Timer], due_at: datetime, payload: dict[str, Any]) -> int:
    return keyed.update(
        due_at=due_at,
        payload=payload,
        status=TimerStatus.PENDING,
        fired_at=None,
        attempts=0,
        last_error="",
    )


def timer_cancel(*, tenant_id: int, kind: str, key: str) -> int:
    return Timer.objects.filter(
        tenant_id=tenant_id, kind=kind, key=key, status=TimerStatus.PENDING
    ).update(status=TimerStatus.CANCELLED)


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(3600, 10 * 2 ** max(0, attempts - 1)))


def fire_next(now: datetime | None = None) -> Timer | None:
    """Fire the most overdue pending timer. Returns it, or None when nothing is due (or all are taken).

    Contract: a timer's handler and its `fired` mark commit together or not at all.
    """
    now = now or timezone.now()
    with transaction.atomic():
        due = Timer.objects.filter(status=TimerStatus.PENDING, due_at__lte=now).order_by(
            "due_at", "id"
        )
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        timer = due.first()
        if timer is None:
            return None
        # The guarded UPDATE is what makes the claim safe on SQLite too (no row locks there,
        # but IMMEDIATE transactions serialise writers): we own the timer only if one row changed.
        claimed = Timer.objects.filter(pk=timer.pk, status=TimerStatus.PENDING).update(
            status=TimerStatus.FIRED, fired_at=now, attempts=F("attempts") + 1
        )
        if claimed != 1:
            return timer
        timer.refresh_from_db()
        handler = _handlers.get(timer.kind)
        try:
            if handler is None:
                raise LookupError(f"no timer handler registered for {timer.kind!r}")
            with transaction.atomic():
                handler(timer)
        except Exception as exc:
            log.exception("timer %s (%s) failed", timer.pk, timer.kind)
            failed = timer.attempts >= settings.TIMER_MAX_ATTEMPTS or handler is None
            Timer.objects.filter(pk=timer.pk).update(
                status=TimerStatus.FAILED if failed else TimerStatus.PENDING,
                due_at=timer.due_at if failed else now + _backoff(timer.attempts),
                fired_at=None if not failed else now,
                last_error=f"{type(exc).__name__}: {exc}"[:2000],
            )
        return timer


def fire_due(limit: int | None = None, now: datetime | None = None) -> int:
    """Fire up to `limit` due timers, one transaction each. Returns how many were taken."""
    limit = limit or settings.TIMER_BATCH
    count = 0
    while count < limit and fire_next(now) is not None:
        count += 1
    return count


def run_loop(*, interval: float | None = None, stop: threading.Event | None = None) -> None:
    """Fire due timers until stopped (SIGTERM/SIGINT, or `stop` set)."""
    interval = settings.TIMER_INTERVAL if interval is None else interval
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    log.info("timer loop started (handlers: %s)", ", ".join(registered_kinds()) or "none")
    next_check = 0.0
    while not stop.is_set():
        try:
            if time.monotonic() >= next_check:  # new tenants get their daily timers within the hour
                ensure_daily_timers()
                next_check = time.monotonic() + 3600
            fired = fire_due()
            for name, poll in _pollers.items():
                try:
                    fired += poll()
                except Exception:
                    log.exception("timer loop: %s failed; retrying", name)
        except Exception:
            log.exception("timer loop iteration failed; retrying")
            fired = 0
        if fired == 0:
            stop.wait(interval)
    log.info("timer loop stopped")
