"""Who owns a customer (负责人), and every change of it.

Each change of owner writes an OwnershipChange row (claim, assign, release, auto_return, transfer,
resignation) in the transaction that makes it: the history a manager reads, and what the pool
rules count (claims today). The owner's follow-up reminder is keyed per customer and notifies
whoever owns the customer when it fires, so it follows the customer through any change of owner.

This module holds what the pool, handover and follow-up services share, and the direct
assignment by a manager (`customer_assign`).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from datetime import datetime, time, timedelta

from django.db import transaction
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from jingwei.core.errors import Conflict, NotFound
from jingwei.core.models import Timer, TimerStatus
from jingwei.notify.services import notification_send
from jingwei.org.models import Employee, EmployeeStatus, Tenant
from jingwei.org.scope import Actor

from ..identities import IdentityKind
from ..models import Customer, Identity, IdentityStatus, OwnershipChange, OwnershipChangeKind
from .common import ASSIGN, VIEW, customer_locked, record, survivor_id

REMINDER_TIMER = "customers.follow_up_reminder"


def reminder_key(customer_id: int) -> str:
    """The key of a customer's one follow-up reminder: scheduling it again moves it."""
    return f"customer:{customer_id}"


def reminders_cancel(tenant_id: int, customer_ids: Iterable[int]) -> int:
    """Cancel the pending follow-up reminders of these customers (one UPDATE)."""
    keys = [reminder_key(pk) for pk in customer_ids]
    if not keys:
        return 0
    return Timer.objects.filter(
        tenant_id=tenant_id, kind=REMINDER_TIMER, key__in=keys, status=TimerStatus.PENDING
    ).update(status=TimerStatus.CANCELLED)


def owner_change_record(
    customer: Customer,
    from_owner_id: int | None,
    *,
    actor: Actor | None,
    kind: str | None = None,
    reason: str = "",
) -> OwnershipChange:
    """Record that `customer.owner_id` was just set (from `from_owner_id`), in the caller's
    transaction. Without `kind`: an assignment, or a release when the owner was cleared."""
    if kind is None:
        kind = OwnershipChangeKind.ASSIGN if customer.owner_id else OwnershipChangeKind.RELEASE
    return OwnershipChange.objects.create(
        tenant_id=customer.tenant_id,
        customer=customer,
        kind=kind,
        from_owner_id=from_owner_id,
        to_owner_id=customer.owner_id,
        reason=reason[:200],
        by_id=actor.employee_id if actor else None,
        at=customer.owned_since or timezone.now(),
    )


def with_phones(qs: QuerySet[Customer]) -> QuerySet[Customer]:
    """Prefetch what the customer list schema shows: the active phones, oldest first (the main
    number) as `active_phones`, and the collaborators."""
    phones = Identity.objects.filter(kind=IdentityKind.PHONE, status=IdentityStatus.ACTIVE)
    return qs.prefetch_related(
        Prefetch("identities", queryset=phones.order_by("id"), to_attr="active_phones"),
        "collaborations",
    )


def employee_in_tenant(
    tenant_id: int, employee_id: int, *, field: str, active: bool = False
) -> Employee:
    """An employee of the tenant (another tenant's reads as missing); with `active`, one who has
    not left (customers are never handed to someone who cannot sign in)."""
    employee = (
        Employee.objects.filter(tenant_id=tenant_id, pk=employee_id)
        .select_related("region")
        .first()
    )
    if employee is None:
        raise NotFound("员工不存在", field=field)
    if active and employee.status != EmployeeStatus.ACTIVE:
        raise Conflict(f"{employee.name} 已离职，不能接手客户", code="employee_left", field=field)
    return employee


def time_zone_of(tenant_id: int, region_tz: str | None = None) -> zoneinfo.ZoneInfo:
    """The region's time zone when known, else the tenant's (business days are local days)."""
    name = (
        region_tz or Tenant.objects.filter(pk=tenant_id).values_list("timezone", flat=True).first()
    )
    try:
        return zoneinfo.ZoneInfo(name or "Asia/Shanghai")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("Asia/Shanghai")


def local_day(now: datetime, tz: zoneinfo.ZoneInfo) -> tuple[datetime, datetime]:
    """The start of `now`'s local day and the start of the next, as aware datetimes."""
    local = now.astimezone(tz)
    start = datetime.combine(local.date(), time.min, tzinfo=tz)
    following = datetime.combine(local.date() + timedelta(days=1), time.min, tzinfo=tz)
    return start, following


def customer_assign(
    *, actor: Actor, customer_id: int, employee_id: int, reason: str = ""
) -> Customer:
    """Make `employee_id` the owner (分配), from the pool or from another owner. Needs
    customer.assign with the customer in scope; the pool's claim limits do not apply (a manager
    decides). Assigning the current owner again changes nothing. The new owner is notified."""
    actor.require(ASSIGN)
    with transaction.atomic(durable=True):
        customer = customer_locked(actor, customer_id, Customer.objects.visible_to(actor, ASSIGN))
        employee = employee_in_tenant(
            actor.tenant_id, employee_id, field="employee_id", active=True
        )
        if customer.owner_id == employee.pk:
            return customer
        previous = customer.owner_id
        customer.owner_id = employee.pk
        customer.owned_since = timezone.now()
        customer.save(update_fields=["owner", "owned_since", "updated_at"])
        owner_change_record(
            customer, previous, actor=actor, kind=OwnershipChangeKind.ASSIGN, reason=reason
        )
        record(
            actor,
            "customers.customer.assigned",
            customer,
            before={"owner_id": previous},
            after={"owner_id": employee.pk},
            data={"reason": reason},
        )
        if employee.pk != actor.employee_id:
            notification_send(
                tenant_id=actor.tenant_id,
                recipient_ids=[employee.pk],
                kind="customers.assigned",
                title=f"{actor.name} 把客户「{customer.name}」分配给您",
                body=reason,
                data={"customer_id": customer.pk},
            )
        return customer


def ownership_history(actor: Actor, customer_id: int) -> QuerySet[OwnershipChange]:
    """Every change of the customer's owner, newest first (404 unless the actor may see it)."""
    actor.require(VIEW)
    target = survivor_id(actor.tenant_id, customer_id)
    if target is None or not Customer.objects.visible_to(actor, VIEW).filter(pk=target).exists():
        raise NotFound("客户不存在", field="customer_id")
    return (
        OwnershipChange.objects.filter(tenant_id=actor.tenant_id, customer_id=target)
        .select_related("from_owner", "to_owner", "by")
        .order_by("-at", "-id")
    )
