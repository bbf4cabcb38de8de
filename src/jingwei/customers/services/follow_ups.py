"""Follow-ups (跟进记录) and the reminder of the next one.

Recording a follow-up updates the customer's last and next follow-up, writes a timeline event and
(re)schedules the customer's one reminder timer at the next follow-up. The reminder notifies
whoever owns the customer when it fires, so it follows a handover; it does nothing when it is
stale (the plan moved, was dropped, or the customer went back to the pool).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from jingwei.core.errors import Invalid, NotFound
from jingwei.core.timers import timer_schedule
from jingwei.notify.services import notification_send
from jingwei.org.models import Employee
from jingwei.org.scope import Actor

from ..models import Customer, EventKind, FollowUp, FollowUpKind
from .common import EDIT, VIEW, customer_for_write, record, survivor_id
from .ownership import (
    REMINDER_TIMER,
    local_day,
    reminder_key,
    reminders_cancel,
    time_zone_of,
    with_phones,
)
from .timeline import event_record

# A follow-up "now" from a device whose clock runs a little fast is still now.
CLOCK_SKEW = timedelta(minutes=5)
CONTENT_MAX = 2000


def follow_up_record(
    *,
    actor: Actor,
    customer_id: int,
    kind: str,
    content: str,
    happened_at: datetime | None = None,
    next_at: datetime | None = None,
) -> FollowUp:
    """Record a follow-up (customer.edit, customer in scope). The newest follow-up sets the
    plan: the customer's next follow-up becomes its `next_at` (none: no plan, the reminder is
    cancelled). A follow-up entered late, older than the last one, is kept but changes no plan."""
    actor.require(EDIT)
    now = timezone.now()
    happened_at = happened_at or now
    content = content.strip()
    if kind not in FollowUpKind.values:
        raise Invalid("跟进方式不在允许范围内", code="invalid_choice", field="kind")
    if not content:
        raise Invalid("请填写跟进内容", code="required", field="content")
    if len(content) > CONTENT_MAX:
        raise Invalid(f"跟进内容最多 {CONTENT_MAX} 字", code="too_long", field="content")
    if happened_at > now + CLOCK_SKEW:
        raise Invalid("跟进时间不能晚于现在", code="in_future", field="happened_at")
    if next_at is not None and next_at <= now:
        raise Invalid("下次跟进时间应晚于现在", code="not_in_future", field="next_at")
    with transaction.atomic(durable=True):
        customer = customer_for_write(actor, customer_id)
        follow_up = FollowUp.objects.create(
            tenant_id=actor.tenant_id,
            customer=customer,
            employee_id=actor.employee_id,
            kind=kind,
            content=content,
            happened_at=happened_at,
            next_at=next_at,
        )
        if customer.last_followed_at is None or happened_at >= customer.last_followed_at:
            customer.last_followed_at = happened_at
            customer.next_follow_up_at = next_at
            customer.save(update_fields=["last_followed_at", "next_follow_up_at", "updated_at"])
            _plan_reminder(customer)
        event_record(
            tenant_id=actor.tenant_id,
            customer_id=customer.pk,
            kind=EventKind.FOLLOW_UP,
            title=f"{FollowUpKind(kind).label}跟进（{actor.name}）：{content}",
            occurred_at=happened_at,
            data={
                "follow_up_id": follow_up.pk,
                "employee_id": actor.employee_id,
                "follow_up_kind": kind,
                "next_at": next_at.isoformat() if next_at else None,
            },
            event_id=f"follow_up:{follow_up.pk}",
        )
        record(
            actor,
            "customers.follow_up.recorded",
            customer,
            data={
                "follow_up_id": follow_up.pk,
                "kind": kind,
                "happened_at": happened_at.isoformat(),
                "next_at": next_at.isoformat() if next_at else None,
            },
        )
        return follow_up


def _plan_reminder(customer: Customer) -> None:
    """The customer's one reminder, at its next follow-up (the key makes a new plan move it)."""
    due = customer.next_follow_up_at
    if due is None:
        reminders_cancel(customer.tenant_id, [customer.pk])
        return
    timer_schedule(
        tenant_id=customer.tenant_id,
        kind=REMINDER_TIMER,
        due_at=due,
        key=reminder_key(customer.pk),
        payload={"customer_id": customer.pk, "due_at": due.isoformat()},
    )


def follow_up_remind(*, tenant_id: int, customer_id: int, due_at: datetime) -> bool:
    """Fire a reminder (from its timer, in the timer's transaction): notify the customer's
    current owner, if the customer still plans a follow-up at `due_at`. False when stale."""
    customer = Customer.objects.filter(tenant_id=tenant_id, pk=customer_id).first()
    if (
        customer is None
        or customer.merged_into_id is not None
        or customer.owner_id is None
        or customer.next_follow_up_at is None
        or abs(customer.next_follow_up_at - due_at) >= timedelta(seconds=1)
    ):
        return False
    region_tz = (
        Employee.objects.filter(pk=customer.owner_id).values_list("region__timezone", flat=True)
    ).first()
    local = due_at.astimezone(time_zone_of(tenant_id, region_tz))
    notification_send(
        tenant_id=tenant_id,
        recipient_ids=[customer.owner_id],
        kind="customers.follow_up_due",
        title=f"跟进提醒：客户「{customer.name}」",
        body=f"约定的跟进时间 {local:%Y-%m-%d %H:%M}，跟进后请记录跟进情况。",
        data={"customer_id": customer.pk, "due_at": due_at.isoformat()},
    )
    return True


# --- reads -------------------------------------------------------------------------------------


def follow_up_list(actor: Actor, customer_id: int) -> QuerySet[FollowUp]:
    """A customer's follow-ups, newest first (404 unless the actor may see the customer)."""
    actor.require(VIEW)
    target = survivor_id(actor.tenant_id, customer_id)
    if target is None or not Customer.objects.visible_to(actor, VIEW).filter(pk=target).exists():
        raise NotFound("客户不存在", field="customer_id")
    return (
        FollowUp.objects.filter(tenant_id=actor.tenant_id, customer_id=target)
        .select_related("employee")
        .order_by("-happened_at", "-id")
    )


def follow_ups_due(actor: Actor, *, now: datetime | None = None) -> QuerySet[Customer]:
    """The customers the actor owns whose next follow-up is due by the end of their local day
    (overdue ones included), soonest first."""
    actor.require(VIEW)
    region_tz = (
        Employee.objects.filter(pk=actor.employee_id)
        .values_list("region__timezone", flat=True)
        .first()
    )
    _, end = local_day(now or timezone.now(), time_zone_of(actor.tenant_id, region_tz))
    return with_phones(
        Customer.objects.visible_to(actor, VIEW)
        .active()
        .filter(owner_id=actor.employee_id, next_follow_up_at__lt=end)
        .order_by("next_follow_up_at", "id")
    )
