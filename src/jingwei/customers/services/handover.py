"""Handing many customers from one employee to another in one action: on resignation (离职继承)
or in service (在职转接).

All or nothing: every customer must be in the actor's customer.assign scope and owned by the
employee handing over. One Handover row, one OwnershipChange per customer, one audit event and
one notification to each side, written with a fixed number of statements whatever the number of
customers (set-based updates and bulk inserts). The customers' follow-up reminders need no
moving: a reminder notifies whoever owns the customer when it fires.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from jingwei.audit.services import audit_record
from jingwei.core.errors import Conflict, Forbidden, Invalid, NotFound
from jingwei.notify.services import notification_send
from jingwei.org.scope import Actor

from ..models import (
    Customer,
    CustomerCollaborator,
    Handover,
    OwnershipChange,
    OwnershipChangeKind,
)
from .common import ASSIGN, VIEW, lock_customers
from .ownership import employee_in_tenant, reminders_cancel
from .pools import region_pools

KINDS = (OwnershipChangeKind.TRANSFER, OwnershipChangeKind.RESIGNATION)
SHOWN_IDS = 20  # customer ids an error message lists before "…"


def _listed(ids: Sequence[int]) -> str:
    shown = "、".join(str(i) for i in ids[:SHOWN_IDS])
    return shown + (f" 等 {len(ids)} 位" if len(ids) > SHOWN_IDS else "")


def _in_scope(actor: Actor, ids: Sequence[int]) -> set[int]:
    return set(
        Customer.objects.visible_to(actor, ASSIGN).filter(pk__in=ids).values_list("pk", flat=True)
    )


def handover_create(
    *,
    actor: Actor,
    kind: str,
    from_employee_id: int,
    to_employee_id: int,
    reason: str,
    customer_ids: Sequence[int] | None = None,
    rest_to_pool: bool = False,
) -> Handover:
    """Hand customers of `from_employee_id` to `to_employee_id` (customer.assign).

    `customer_ids` None: all the employee's customers, which must all be in the actor's scope
    (403 saying how many are not). Listed ids must all be in scope (404 naming those that are
    not) and owned by the employee (409 naming those that are not). With `rest_to_pool`, the
    employee's other customers go back to their region's pool (those of a region without a pool
    go to the receiver, so nobody's customer is left without an owner). On resignation the
    employee's collaborator entries (协作人) within the actor's scope pass to the receiver too.
    """
    actor.require(ASSIGN)
    reason = reason.strip()
    if kind not in KINDS:
        raise Invalid("交接类型应为 resignation 或 transfer", code="invalid_choice", field="kind")
    if not reason:
        raise Invalid("请填写交接原因", code="required", field="reason")
    if from_employee_id == to_employee_id:
        raise Invalid("交出人和接手人不能是同一人", code="same_employee", field="to_employee_id")
    with transaction.atomic(durable=True):
        giver = employee_in_tenant(actor.tenant_id, from_employee_id, field="from_employee_id")
        taker = employee_in_tenant(
            actor.tenant_id, to_employee_id, field="to_employee_id", active=True
        )
        owned = list(
            Customer.objects.filter(
                tenant_id=actor.tenant_id, owner_id=giver.pk, merged_into__isnull=True
            ).values_list("pk", flat=True)
        )
        if customer_ids is None:
            chosen = sorted(owned)
        else:
            chosen = sorted(set(customer_ids))
            missing = sorted(set(chosen) - _in_scope(actor, chosen))
            if missing:
                raise NotFound(
                    f"客户 {_listed(missing)} 不存在或不在您的数据范围内",
                    field="customer_ids",
                )
        rest = sorted(set(owned) - set(chosen)) if rest_to_pool else []
        # customers the actor did not list but would move: all must be in scope too
        implied = [*rest, *(chosen if customer_ids is None else [])]
        outside = sorted(set(implied) - _in_scope(actor, implied))
        if outside:
            raise Forbidden(
                f"{giver.name} 有 {len(outside)} 位客户不在您的数据范围内，"
                "请由上级主管办理，或只交接您范围内的客户（指定 customer_ids）",
                code="out_of_scope",
                field="customer_ids",
            )
        locked = lock_customers([*chosen, *rest])
        if customer_ids is None:
            # "all of them" means those still theirs now that they are locked
            chosen = [pk for pk in chosen if pk in locked and locked[pk].owner_id == giver.pk]
        not_theirs = [
            pk
            for pk in chosen
            if pk not in locked
            or locked[pk].owner_id != giver.pk
            or locked[pk].merged_into_id is not None
        ]
        if not_theirs:
            raise Conflict(
                f"客户 {_listed(not_theirs)} 的负责人不是 {giver.name}",
                code="not_owner",
                field="customer_ids",
            )
        # a customer of the rest that changed hands before we locked it is no longer the rest
        rest = [pk for pk in rest if pk in locked and locked[pk].owner_id == giver.pk]
        pools = region_pools(actor.tenant_id) if rest else {}
        to_pool = [pk for pk in rest if pools.get(locked[pk].region_id or 0)]
        pooled = set(to_pool)
        to_taker = sorted([*chosen, *(pk for pk in rest if pk not in pooled)])

        now = timezone.now()
        handover = Handover.objects.create(
            tenant_id=actor.tenant_id,
            kind=kind,
            from_employee=giver,
            to_employee=taker,
            reason=reason[:200],
            customer_count=len(to_taker),
            by_id=actor.employee_id,
            at=now,
        )
        _move(actor, handover, to_taker, to_pool)
        collaborations = (
            _pass_collaborations(actor, giver.pk, taker.pk) if kind == "resignation" else 0
        )
        if not to_taker and not to_pool and not collaborations:
            raise Conflict(
                f"{giver.name} 名下没有可交接的客户",
                code="nothing_to_hand_over",
                field="customer_ids",
            )
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="customers.handover.created",
            # Filed under the employee handing over (their department and region place it);
            # the Handover itself declares no department, which audit_record mishandles.
            subject=giver,
            data={
                "handover_id": handover.pk,
                "kind": kind,
                "from_employee_id": giver.pk,
                "to_employee_id": taker.pk,
                "reason": reason,
                "customer_ids": to_taker,
                "returned_to_pool": to_pool,
                "collaborations_passed": collaborations,
            },
        )
        _notify(handover, giver.name, taker.name, returned=len(to_pool))
        return handover


def _move(actor: Actor, handover: Handover, to_taker: list[int], to_pool: list[int]) -> None:
    """Set-based: one UPDATE per destination, one bulk INSERT of the ownership changes."""
    now = handover.at
    changes = []
    if to_taker:
        Customer.objects.filter(pk__in=to_taker).update(
            owner_id=handover.to_employee_id, owned_since=now, updated_at=now
        )
        changes += [
            OwnershipChange(
                tenant_id=actor.tenant_id,
                customer_id=pk,
                kind=handover.kind,
                from_owner_id=handover.from_employee_id,
                to_owner_id=handover.to_employee_id,
                reason=handover.reason,
                handover=handover,
                by_id=actor.employee_id,
                at=now,
            )
            for pk in to_taker
        ]
    if to_pool:
        Customer.objects.filter(pk__in=to_pool).update(
            owner_id=None, owned_since=None, next_follow_up_at=None, updated_at=now
        )
        reminders_cancel(actor.tenant_id, to_pool)
        label = OwnershipChangeKind(handover.kind).label
        changes += [
            OwnershipChange(
                tenant_id=actor.tenant_id,
                customer_id=pk,
                kind=OwnershipChangeKind.RELEASE,
                from_owner_id=handover.from_employee_id,
                to_owner_id=None,
                reason=f"{label}，未交接的客户退回公海：{handover.reason}"[:200],
                handover=handover,
                by_id=actor.employee_id,
                at=now,
            )
            for pk in to_pool
        ]
    OwnershipChange.objects.bulk_create(changes)


def _pass_collaborations(actor: Actor, giver_id: int, taker_id: int) -> int:
    """The leaver's collaborator entries on customers in the actor's scope pass to the taker;
    where the taker already owns or collaborates on the customer, the entry is just dropped."""
    entries = CustomerCollaborator.objects.filter(
        tenant_id=actor.tenant_id,
        employee_id=giver_id,
        customer__in=Customer.objects.visible_to(actor, ASSIGN).values("pk"),
    )
    taker_has = CustomerCollaborator.objects.filter(
        tenant_id=actor.tenant_id, employee_id=taker_id
    ).values("customer_id")
    dropped, _ = entries.filter(
        Q(customer__owner_id=taker_id) | Q(customer_id__in=taker_has)
    ).delete()
    return dropped + entries.update(employee_id=taker_id)


def _notify(handover: Handover, giver: str, taker: str, *, returned: int) -> None:
    label = OwnershipChangeKind(handover.kind).label
    n = handover.customer_count
    extra = f"，另有 {returned} 位退回公海" if returned else ""
    data = {"handover_id": handover.pk, "count": n, "returned_to_pool": returned}
    notification_send(
        tenant_id=handover.tenant_id,
        recipient_ids=[handover.from_employee_id],
        kind="customers.handover.given",
        title=f"{label}：您的 {n} 位客户已交接给 {taker}{extra}",
        body=f"原因：{handover.reason}",
        data=data,
    )
    notification_send(
        tenant_id=handover.tenant_id,
        recipient_ids=[handover.to_employee_id],
        kind="customers.handover.received",
        title=f"{label}：{giver} 的 {n} 位客户已交接给您",
        body=f"原因：{handover.reason}。请尽快联系这些客户，待跟进的提醒会按时提醒您。",
        data=data,
    )


# --- reads -------------------------------------------------------------------------------------


def handover_list(
    actor: Actor, *, employee_id: int | None = None, kind: str | None = None
) -> QuerySet[Handover]:
    """Handovers the actor may see, newest first: all with company-wide customer.view; else those
    they took part in (gave, received or did) and those that moved a customer they may see."""
    actor.require(VIEW)
    qs = Handover.objects.filter(tenant_id=actor.tenant_id)
    if not any(g.scope == "tenant" for g in actor.grants_of(VIEW)):
        touched = OwnershipChange.objects.filter(
            tenant_id=actor.tenant_id,
            handover__isnull=False,
            customer__in=Customer.objects.visible_to(actor, VIEW).values("pk"),
        ).values("handover_id")
        me = actor.employee_id
        qs = qs.filter(
            Q(pk__in=touched) | Q(from_employee_id=me) | Q(to_employee_id=me) | Q(by_id=me)
        )
    if employee_id is not None:
        qs = qs.filter(Q(from_employee_id=employee_id) | Q(to_employee_id=employee_id))
    if kind:
        qs = qs.filter(kind=kind)
    return qs.select_related("from_employee", "to_employee", "by").order_by("-at", "-id")
