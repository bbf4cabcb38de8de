"""Durable timers: the scheduling rules, retries, grant expiry, and — with real processes on the
real database — that concurrent or killed loops fire every timer exactly once."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from django.db import connection, transaction
from django.utils import timezone

from jingwei.audit.models import AuditEvent
from jingwei.core import timers
from jingwei.core.models import Timer, TimerStatus
from jingwei.core.timers import fire_due, fire_next, timer_cancel, timer_schedule
from jingwei.org.models import Employee, RoleAssignment, Tenant
from jingwei.org.scope import actor_for
from jingwei.org.services import GRANT_EXPIRY_TIMER, assignment_create, assignment_revoke

from ..conftest import Org
from ..factories import EmployeeFactory, TenantFactory, make_role
from .processes import running, start_timer_loop, wait_ready, wait_until
from .timer_probe import FAILING, FIRED_ACTION, PROBE


def _new_tenant() -> Tenant:
    return cast(Tenant, TenantFactory())


@pytest.fixture
def tenant(db: None) -> Tenant:
    return _new_tenant()


def _firings() -> Counter[str]:
    return Counter(
        AuditEvent.objects.filter(action=FIRED_ACTION).values_list("subject_id", flat=True)
    )


def _schedule_probes(tenant: Tenant, count: int, *, sleep: float = 0) -> None:
    """`count` due probe timers, committed together so every loop sees them at once."""
    due = timezone.now() - timedelta(seconds=1)
    with transaction.atomic():
        for n in range(count):
            timer_schedule(
                tenant_id=tenant.pk,
                kind=PROBE,
                key=f"probe:{n}",
                due_at=due,
                payload={"n": n, "sleep": sleep},
            )


def _pending() -> int:
    # The loop also books each tenant's daily housekeeping (key "daily"): not counted here.
    return Timer.objects.filter(status=TimerStatus.PENDING).exclude(key="daily").count()


def _assert_each_fired_exactly_once(count: int) -> None:
    assert _firings() == Counter({str(n): 1 for n in range(count)})
    assert Counter(Timer.objects.exclude(key="daily").values_list("status", "attempts")) == Counter(
        {(TimerStatus.FIRED, 1): count}
    )


# --- scheduling rules ----------------------------------------------------------------------


def test_scheduling_an_unregistered_kind_is_refused(tenant: Tenant) -> None:
    with pytest.raises(ValueError, match="no timer handler registered"):
        timer_schedule(tenant_id=tenant.pk, kind="test.nobody_handles_this", due_at=timezone.now())
    assert not Timer.objects.exists()


def test_scheduling_with_a_naive_datetime_is_refused(tenant: Tenant) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        timer_schedule(tenant_id=tenant.pk, kind=PROBE, due_at=datetime.now())
    assert not Timer.objects.exists()


def test_scheduling_again_with_the_same_key_replaces_the_pending_timer(tenant: Tenant) -> None:
    # Given a pending timer with a key
    now = timezone.now()
    first = timer_schedule(
        tenant_id=tenant.pk, kind=PROBE, key="k", due_at=now + timedelta(hours=1), payload={"n": 1}
    )
    # When it is scheduled again with the same key
    second = timer_schedule(
        tenant_id=tenant.pk, kind=PROBE, key="k", due_at=now + timedelta(hours=2), payload={"n": 2}
    )
    # Then there is still one timer, with the new moment and payload
    assert second.pk == first.pk
    timer = Timer.objects.get()
    assert (timer.due_at, timer.payload, timer.status) == (
        now + timedelta(hours=2),
        {"n": 2},
        TimerStatus.PENDING,
    )
    # And it no longer fires at the old moment, only at the new one
    assert fire_next(now=now + timedelta(hours=1, minutes=30)) is None
    assert fire_next(now=now + timedelta(hours=2)) is not None
    assert _firings() == Counter({"2": 1})


def test_scheduling_a_fired_key_again_makes_a_new_pending_timer(tenant: Tenant) -> None:
    # Given a keyed timer that has fired
    now = timezone.now()
    timer_schedule(tenant_id=tenant.pk, kind=PROBE, key="k", due_at=now, payload={"n": 1})
    assert fire_next(now=now) is not None
    # When the key is scheduled again
    timer_schedule(
        tenant_id=tenant.pk, kind=PROBE, key="k", due_at=now + timedelta(hours=1), payload={"n": 2}
    )
    # Then one pending timer stands for the key, and it fires in its turn
    assert list(Timer.objects.values_list("status", flat=True)) == [TimerStatus.PENDING]
    assert fire_next(now=now + timedelta(hours=1)) is not None
    assert _firings() == Counter({"1": 1, "2": 1})


def test_scheduling_a_cancelled_key_again_makes_it_pending_afresh(tenant: Tenant) -> None:
    # Given a keyed timer that failed once and was then cancelled
    now = timezone.now()
    timer_schedule(tenant_id=tenant.pk, kind=PROBE, key="k", due_at=now, payload={"n": 1})
    Timer.objects.update(attempts=1, last_error="RuntimeError: earlier")
    timer_cancel(tenant_id=tenant.pk, kind=PROBE, key="k")
    # When the key is scheduled again
    later = now + timedelta(hours=1)
    timer_schedule(tenant_id=tenant.pk, kind=PROBE, key="k", due_at=later, payload={"n": 2})
    # Then one timer stands for the key: pending, with a clean slate, and it fires in its turn
    timer = Timer.objects.get()
    assert (timer.status, timer.due_at, timer.attempts, timer.last_error, timer.fired_at) == (
        TimerStatus.PENDING,
        later,
        0,
        "",
        None,
    )
    assert fire_next(now=later) is not None
    assert _firings() == Counter({"2": 1})


def test_a_key_scheduled_and_fired_by_others_meanwhile_is_scheduled_again(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given that, just before our insert, another process schedules the same key and a loop fires it
    now = timezone.now()

    class RacingTransaction:
        @staticmethod
        def atomic() -> Any:
            Timer.objects.create(
                tenant=tenant,
                kind=PROBE,
                key="k",
                due_at=now,
                payload={"n": 1},
                status=TimerStatus.FIRED,
                fired_at=now,
                attempts=1,
            )
            monkeypatch.undo()
            return transaction.atomic()

    monkeypatch.setattr(timers, "transaction", RacingTransaction)
    # When we schedule the key (our insert collides with theirs)
    later = now + timedelta(hours=1)
    timer_schedule(tenant_id=tenant.pk, kind=PROBE, key="k", due_at=later, payload={"n": 2})
    # Then our schedule stands: the timer is pending again at our moment, and it fires then
    timer = Timer.objects.get()
    assert (timer.status, timer.due_at, timer.payload, timer.attempts, timer.fired_at) == (
        TimerStatus.PENDING,
        later,
        {"n": 2},
        0,
        None,
    )
    assert fire_next(now=later) is not None
    assert _firings() == Counter({"2": 1})


def test_cancelled_timer_never_fires(tenant: Tenant) -> None:
    # Given a pending keyed timer
    now = timezone.now()
    timer_schedule(tenant_id=tenant.pk, kind=PROBE, key="k", due_at=now, payload={"n": 1})
    # When it is cancelled
    assert timer_cancel(tenant_id=tenant.pk, kind=PROBE, key="k") == 1
    # Then it is marked cancelled and nothing fires, however late it gets
    assert Timer.objects.get().status == TimerStatus.CANCELLED
    assert fire_due(now=now + timedelta(days=365)) == 0
    assert _firings() == Counter()


def test_cancelling_touches_only_the_callers_tenant(tenant: Tenant) -> None:
    # Given the same key scheduled in two tenants
    other = _new_tenant()
    now = timezone.now()
    for t in (tenant, other):
        timer_schedule(tenant_id=t.pk, kind=PROBE, key="k", due_at=now, payload={"n": t.pk})
    # When one tenant cancels it
    timer_cancel(tenant_id=tenant.pk, kind=PROBE, key="k")
    # Then the other tenant's timer still fires
    assert fire_due(now=now) == 1
    assert _firings() == Counter({str(other.pk): 1})


def test_timer_does_not_fire_before_it_is_due(tenant: Tenant) -> None:
    now = timezone.now()
    timer_schedule(tenant_id=tenant.pk, kind=PROBE, due_at=now, payload={"n": 1})
    assert fire_next(now=now - timedelta(seconds=1)) is None
    assert Timer.objects.get().status == TimerStatus.PENDING
    assert fire_next(now=now) is not None
    timer = Timer.objects.get()
    assert (timer.status, timer.fired_at, timer.attempts) == (TimerStatus.FIRED, now, 1)


# --- failures and retries ------------------------------------------------------------------


def test_failing_handler_is_retried_with_backoff_then_marked_failed(
    tenant: Tenant, settings: Any
) -> None:
    settings.TIMER_MAX_ATTEMPTS = 3
    t0 = timezone.now()
    timer_schedule(tenant_id=tenant.pk, kind=FAILING, due_at=t0, payload={"n": 1})

    # When the first firing fails
    fire_next(now=t0)
    # Then the timer is pending again, 10 s later, with the error kept and the handler's writes undone
    timer = Timer.objects.get()
    assert (timer.status, timer.attempts, timer.due_at, timer.fired_at) == (
        TimerStatus.PENDING,
        1,
        t0 + timedelta(seconds=10),
        None,
    )
    assert timer.last_error == "RuntimeError: probe failure #1"
    assert _firings() == Counter()
    # And it is not retried before then
    assert fire_next(now=t0 + timedelta(seconds=9)) is None

    # When the retry fails too, the wait doubles
    t1 = t0 + timedelta(seconds=10)
    fire_next(now=t1)
    timer.refresh_from_db()
    assert (timer.status, timer.attempts, timer.due_at) == (
        TimerStatus.PENDING,
        2,
        t1 + timedelta(seconds=20),
    )
    assert timer.last_error == "RuntimeError: probe failure #2"

    # When the last allowed attempt fails, the timer is failed for good, its error kept
    t2 = t1 + timedelta(seconds=20)
    fire_next(now=t2)
    timer.refresh_from_db()
    assert (timer.status, timer.attempts, timer.fired_at) == (TimerStatus.FAILED, 3, t2)
    assert timer.last_error == "RuntimeError: probe failure #3"
    assert fire_due(now=t2 + timedelta(days=365)) == 0
    assert _firings() == Counter()


def test_timer_whose_kind_has_no_handler_fails_at_once(tenant: Tenant) -> None:
    # Given a stored timer whose handler is gone (e.g. removed in a later release)
    now = timezone.now()
    Timer.objects.create(tenant=tenant, kind="test.retired_kind", due_at=now)
    # When it comes due, it is failed without retries, saying why
    fire_next(now=now)
    timer = Timer.objects.get()
    assert (timer.status, timer.attempts) == (TimerStatus.FAILED, 1)
    assert timer.last_error.startswith("LookupError: no timer handler registered")


def test_failing_timer_does_not_hold_up_the_others(tenant: Tenant) -> None:
    now = timezone.now()
    timer_schedule(tenant_id=tenant.pk, kind=FAILING, due_at=now - timedelta(minutes=1))
    timer_schedule(tenant_id=tenant.pk, kind=PROBE, due_at=now, payload={"n": 7})
    assert fire_due(now=now) == 2
    assert _firings() == Counter({"7": 1})
    assert Timer.objects.get(kind=FAILING).status == TimerStatus.PENDING


# --- temporary grants ----------------------------------------------------------------------


def _temporary_grant(org: Org, admin: Employee) -> tuple[Employee, RoleAssignment, datetime]:
    employee = cast(
        Employee,
        EmployeeFactory(tenant=org.tenant, department=org.east_dept, region=org.shanghai),
    )
    role = make_role(org.tenant, "临时审计", ["audit.view"])
    expires_at = timezone.now() + timedelta(hours=2)
    assignment = assignment_create(
        actor=actor_for(admin),
        employee_id=employee.pk,
        role_id=role.pk,
        scope="self",
        expires_at=expires_at,
        reason="季度审计",
    )
    return employee, assignment, expires_at


def test_temporary_grant_stops_on_its_own_and_its_timer_records_the_expiry(
    org: Org, admin: Employee
) -> None:
    # Given a temporary grant of audit.view
    employee, assignment, expires_at = _temporary_grant(org, admin)
    after = expires_at + timedelta(seconds=1)

    # Then it holds until it expires, and stops by itself afterwards
    assert actor_for(employee).has_perm("audit.view")
    assert not actor_for(employee, at=after).has_perm("audit.view")

    # And a timer is set for the moment it expires
    timer = Timer.objects.get(kind=GRANT_EXPIRY_TIMER)
    assert (timer.key, timer.due_at, timer.status) == (
        f"assignment:{assignment.pk}",
        expires_at,
        TimerStatus.PENDING,
    )
    assert fire_due(now=expires_at - timedelta(seconds=1)) == 0

    # When the timer fires after expiry, the end of the grant is in the audit log
    assert fire_due(now=after) == 1
    event = AuditEvent.objects.get(action="org.grant.expired")
    assert (event.subject_type, event.subject_id, event.actor_id, event.tenant_id) == (
        "org.roleassignment",
        str(assignment.pk),
        None,
        org.tenant.pk,
    )
    assert event.data == {"employee_id": employee.pk, "role_id": assignment.role_id}
    assert Timer.objects.get(pk=timer.pk).status == TimerStatus.FIRED


def test_revoked_temporary_grant_cancels_its_expiry_timer(org: Org, admin: Employee) -> None:
    # Given a temporary grant, revoked early
    _, assignment, expires_at = _temporary_grant(org, admin)
    assignment_revoke(actor=actor_for(admin), assignment_id=assignment.pk, reason="提前收回")
    # Then its expiry timer is cancelled and no expiry is recorded
    assert Timer.objects.get(kind=GRANT_EXPIRY_TIMER).status == TimerStatus.CANCELLED
    assert fire_due(now=expires_at + timedelta(seconds=1)) == 0
    assert not AuditEvent.objects.filter(action="org.grant.expired").exists()


# --- real loops on the real database ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_timer_loops_fire_every_timer_exactly_once(tmp_path: Path) -> None:
    count = 300
    tenant = _new_tenant()
    # Given two timer loop processes, both up and polling
    loops = [start_timer_loop(tmp_path / f"loop-{i}.log") for i in range(2)]
    with running(*loops):
        wait_ready(*loops)
        # When a few hundred timers come due at once
        _schedule_probes(tenant, count, sleep=0.005)
        wait_until(lambda: _pending() == 0, what="every timer to fire", procs=loops)
        # Then both loops stop cleanly on SIGTERM
        codes = [loop.stop() for loop in loops]
        assert codes == [0, 0], "\n".join(loop.output() for loop in loops)

    # And every timer fired exactly once
    _assert_each_fired_exactly_once(count)
    pids = Counter(
        e["pid"]
        for e in AuditEvent.objects.filter(action=FIRED_ACTION).values_list("data", flat=True)
    )
    assert set(pids) <= {loop.pid for loop in loops}
    if connection.vendor == "postgresql":
        # With SKIP LOCKED the two loops really share the work (SQLite serialises them instead).
        assert set(pids) == {loop.pid for loop in loops}, pids


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kill_point", ["before_write", "after_write"])
def test_timer_loop_killed_mid_batch_and_restarted_loses_and_repeats_nothing(
    tmp_path: Path, kill_point: str
) -> None:
    count, held = 150, 40
    tenant = _new_tenant()
    hold_file = tmp_path / "holding"
    # Given a batch of due timers, fired in order, whose handler for timer #40 stops
    # (inside its firing transaction, before or after writing its event) until killed
    _schedule_probes(tenant, count, sleep=0.005)
    Timer.objects.filter(payload__n=held).update(
        payload={"n": held, "hold": {"at": kill_point, "file": str(hold_file)}}
    )
    first = start_timer_loop(tmp_path / "loop-1.log")
    with running(first):
        # When the loop is killed with SIGKILL while firing it
        wait_until(hold_file.exists, what=f"the loop to reach timer #{held}", procs=[first])
        first.kill()

    # Then the timers before it are fired whole, and the one it was firing left no trace
    fired = Timer.objects.filter(status=TimerStatus.FIRED)
    assert sorted(fired.values_list("payload__n", flat=True)) == list(range(held))
    assert _firings() == Counter({str(n): 1 for n in range(held)})
    assert _pending() == count - held

    # When a new loop is started, it finishes the rest
    second = start_timer_loop(tmp_path / "loop-2.log")
    with running(second):
        wait_until(lambda: _pending() == 0, what="the rest to fire", procs=[second])
        assert second.stop() == 0, second.output()

    # Then every timer fired exactly once, and none is left pending
    _assert_each_fired_exactly_once(count)
    assert not Timer.objects.exclude(status=TimerStatus.FIRED).exclude(key="daily").exists()
