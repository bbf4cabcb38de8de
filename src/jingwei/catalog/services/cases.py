"""Parts for a flow case (a ticket's after-sales SOP): reserve at dispatch, consume at completion.

These run inside the flow engine's transaction as the system (no actor). A shortage does not
stop the case: what can be reserved is, and the shortfall with suggestions goes into the case
data (the dispatcher sees it) and out as the event `catalog.parts_short`.

Reservations of a case carry ref ("flow_instance", instance id) and the ticket number as label,
so the catalog needs nothing from the tickets app.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.utils import timezone

from jingwei.audit.services import audit_record
from jingwei.core.errors import DomainError
from jingwei.flows.models import Instance
from jingwei.org.models import Employee, EmployeeStatus

from ..models import ZERO, Part, Reservation, ReservationStatus
from . import ledger
from .common import fmt, qty
from .nearest import reserve_nearest, short_text, suggestions, warehouse_chain

REF_TYPE = "flow_instance"


def case_lines(value: Any) -> tuple[dict[int, Decimal], list[Any]]:
    """The parts a form lists: ids (one each) or {"id": 5, "qty": 2} items; repeated parts add
    up. Returns the quantities by part id and the items that could not be read."""
    wanted: dict[int, Decimal] = defaultdict(lambda: ZERO)
    bad: list[Any] = []
    for item in value if isinstance(value, list) else []:
        raw_id: Any = item
        raw_qty: Any = 1
        if isinstance(item, dict):
            raw_id = item.get("id", item.get("part_id"))
            raw_qty = item.get("qty", item.get("quantity", 1))
        if isinstance(raw_id, str) and raw_id.strip().isdigit():
            raw_id = int(raw_id)
        if isinstance(raw_id, bool) or not isinstance(raw_id, int):
            bad.append(item)
            continue
        try:
            wanted[raw_id] += qty(raw_qty)
        except DomainError:
            bad.append(item)
    return dict(wanted), bad


def _answer(instance: Instance, field: str) -> Any:
    """A form answer: the dispatcher's step writes it at the top of the case data; the ticket's
    original answers are also kept under "form"."""
    if field in instance.data:
        return instance.data[field]
    form = instance.data.get("form")
    return form.get(field) if isinstance(form, dict) else None


def case_engineer(instance: Instance, field: str = "engineer") -> Employee | None:
    """The engineer picked at dispatch (employee number or id, as the flow's assignment reads
    it), else the case's owner."""
    active = Employee.objects.for_tenant(instance.tenant_id).filter(status=EmployeeStatus.ACTIVE)
    who = str(_answer(instance, field) or "").strip()
    if who:
        found = active.filter(employee_no=who).first()
        if found is None and who.isdigit():
            found = active.filter(pk=int(who)).first()
        if found is not None:
            return found
    if instance.owner_id is not None:
        return active.filter(pk=instance.owner_id).first()
    return None


def _open_reservations(instance: Instance) -> list[Reservation]:
    return list(
        Reservation.objects.select_for_update(of=("self",))
        .select_related("part", "location", "location__warehouse")
        .filter(
            tenant_id=instance.tenant_id,
            ref_type=REF_TYPE,
            ref_id=str(instance.pk),
            status=ReservationStatus.RESERVED,
        )
        .order_by("part_id", "location_id", "id")
    )


def line_cost(part: Part, quantity: Decimal) -> Decimal:
    """Cost of parts used, to the cent (half up: 0.5 kg at 12.25 costs 6.13)."""
    return (part.cost * quantity).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _line(reservation: Reservation, quantity: Decimal) -> dict[str, Any]:
    part = reservation.part
    return {
        "part_id": part.pk,
        "code": part.code,
        "name": part.name,
        "unit": part.unit,
        "quantity": fmt(quantity),
        "location_id": reservation.location_id,
        "location": str(reservation.location),
        "warehouse_id": reservation.location.warehouse_id,
        "reservation_id": reservation.pk,
    }


def reserve_for_case(instance: Instance, params: dict[str, Any]) -> dict[str, Any]:
    field = str(params.get("parts_field") or "parts")
    wanted, bad = case_lines(_answer(instance, field))
    engineer = case_engineer(instance, str(params.get("engineer_field") or "engineer"))
    chain = warehouse_chain(instance.tenant_id, engineer, instance.region_id)
    op = ledger.Op(
        tenant_id=instance.tenant_id,
        ref_type=REF_TYPE,
        ref_id=str(instance.pk),
        note=f"工单 {instance.business_key} 派单预留"[:200],
    )
    # Entering the step again (a re-dispatch) reserves only what the case does not hold yet.
    held: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for r in _open_reservations(instance):
        held[r.part_id] += r.open_quantity
    parts = {
        p.pk: p
        for p in Part.objects.for_tenant(instance.tenant_id).filter(
            pk__in=list(wanted), is_active=True
        )
    }
    reserved: list[dict[str, Any]] = []
    short: list[dict[str, Any]] = []
    for part_id in sorted(wanted):  # one lock order for every case
        part = parts.get(part_id)
        if part is None:
            short.append({"part_id": part_id, "reason": "unknown", "message": "备件不存在或已停用"})
            continue
        need = wanted[part_id] - held[part_id]
        if need <= 0:
            continue
        taken, missing = reserve_nearest(op, part, need, chain, instance.business_key, partial=True)
        reserved += [_line(r, r.quantity) for r in taken]
        if missing > 0:
            advice = suggestions(instance.tenant_id, part, missing, chain)
            short.append(
                {
                    "part_id": part.pk,
                    "code": part.code,
                    "name": part.name,
                    "wanted": fmt(need),
                    "reserved": fmt(need - missing),
                    "missing": fmt(missing),
                    "suggestions": advice,
                    "message": short_text(part, need, need - missing, advice),
                }
            )
    summary = {
        "at": timezone.now().isoformat(),
        "engineer_id": engineer.pk if engineer else None,
        "warehouses": [w.pk for w in chain],
        "reserved": reserved,
        "short": short,
        "unreadable": bad,
    }
    if reserved:
        audit_record(
            actor=None,
            tenant_id=instance.tenant_id,
            action="catalog.case_parts_reserved",
            subject=instance,
            data={"reserved": reserved},
        )
    if short:
        from jingwei.notify.services import event_publish

        event_publish(
            tenant_id=instance.tenant_id,
            name="catalog.parts_short",
            severity="warning",
            payload={
                "instance_id": instance.pk,
                "ticket_number": instance.business_key,
                "region_id": instance.region_id,
                "owner_id": instance.owner_id,
                "engineer_id": engineer.pk if engineer else None,
                "short": short,
                "message": "；".join(s["message"] for s in short),
            },
        )
    return {"parts_reservation": summary}


def consume_for_case(instance: Instance, params: dict[str, Any]) -> dict[str, Any]:
    """Consume what the case used and release the rest of its reservations. The parts used are
    the form's `used_field` (default "parts_used") when it has one; otherwise everything the
    case reserved counts as used. Used parts never reserved are issued from the engineer's
    nearest stock when there is some, and listed as not found otherwise."""
    used_field = str(params.get("used_field") or "parts_used")
    answer = _answer(instance, used_field)
    used = case_lines(answer)[0] if isinstance(answer, list) else None
    op = ledger.Op(
        tenant_id=instance.tenant_id,
        ref_type=REF_TYPE,
        ref_id=str(instance.pk),
        note=f"工单 {instance.business_key} 完工扣减"[:200],
    )
    consumed: list[dict[str, Any]] = []
    released: list[dict[str, Any]] = []
    left = dict(used or {})
    for reservation in _open_reservations(instance):
        open_qty = reservation.open_quantity
        take = open_qty if used is None else min(open_qty, left.get(reservation.part_id, ZERO))
        if used is not None and take > 0:
            left[reservation.part_id] -= take
        ledger.settle(op, reservation, consume=take, release=open_qty - take)
        if take > 0:
            consumed.append(
                {**_line(reservation, take), "cost": str(line_cost(reservation.part, take))}
            )
        if open_qty - take > 0:
            released.append(_line(reservation, open_qty - take))
    unreserved = _issue_unreserved(instance, op, {k: v for k, v in left.items() if v > 0})
    consumed += unreserved["issued"]
    summary = {
        "at": timezone.now().isoformat(),
        "consumed": consumed,
        "released": released,
        "not_found": unreserved["not_found"],
        "cost": str(sum((Decimal(c["cost"]) for c in consumed), Decimal("0.00"))),
    }
    if consumed or released:
        audit_record(
            actor=None,
            tenant_id=instance.tenant_id,
            action="catalog.case_parts_consumed",
            subject=instance,
            data={"consumed": consumed, "released": released},
        )
    return {"parts_consumption": summary}


def _issue_unreserved(
    instance: Instance, op: ledger.Op, extra: dict[int, Decimal]
) -> dict[str, list[dict[str, Any]]]:
    issued: list[dict[str, Any]] = []
    not_found: list[dict[str, Any]] = []
    if not extra:
        return {"issued": issued, "not_found": not_found}
    chain = warehouse_chain(instance.tenant_id, case_engineer(instance), instance.region_id)
    parts = Part.objects.for_tenant(instance.tenant_id).filter(pk__in=list(extra))
    for part in sorted(parts, key=lambda p: p.pk):
        taken, missing = reserve_nearest(
            op, part, extra[part.pk], chain, instance.business_key, partial=True
        )
        for reservation in taken:
            ledger.settle(op, reservation, consume=reservation.quantity)
            issued.append(
                {
                    **_line(reservation, reservation.quantity),
                    "cost": str(line_cost(part, reservation.quantity)),
                    "unreserved": True,
                }
            )
        if missing > 0:
            not_found.append({"part_id": part.pk, "code": part.code, "missing": fmt(missing)})
    for part_id in sorted(set(extra) - {p.pk for p in parts}):
        not_found.append({"part_id": part_id, "missing": fmt(extra[part_id])})
    return {"issued": issued, "not_found": not_found}
