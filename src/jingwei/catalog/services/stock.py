"""Manual stock operations: receive, transfer, adjust, stock-take, issue, return, reserve, release
and consume. Each is one durable transaction, needs catalog.manage over the locations it
touches, is audited, and takes an optional idempotency key: the same key again returns what the
first call did instead of moving stock twice."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jingwei.audit.services import audit_record
from jingwei.core.errors import Conflict, Invalid, NotFound
from jingwei.org.scope import Actor

from ..models import Movement, MovementKind, Reservation
from . import ledger
from .common import MANAGE, fmt, location_for, part_of, qty


def _op(actor: Actor, key: str, **extra: Any) -> ledger.Op:
    return ledger.Op(
        tenant_id=actor.tenant_id, actor_id=actor.employee_id, key=key.strip()[:200], **extra
    )


def _audit(actor: Actor, action: str, movement: Movement, **data: Any) -> None:
    audit_record(
        actor=actor,
        tenant_id=actor.tenant_id,
        action=action,
        subject=movement,
        data={
            "part_id": movement.part_id,
            "location_id": movement.location_id,
            "quantity": fmt(movement.quantity),
            "delta_on_hand": fmt(movement.delta_on_hand),
            "delta_reserved": fmt(movement.delta_reserved),
            **data,
        },
    )


def _single(
    actor: Actor,
    *,
    kind: str,
    action: str,
    part_id: int,
    location_id: int,
    quantity: Decimal,
    delta_on_hand: Decimal,
    note: str,
    ref_type: str,
    ref_id: str,
    idempotency_key: str,
    incoming: bool,
) -> Movement:
    actor.require(MANAGE)
    op = _op(actor, idempotency_key, note=note, ref_type=ref_type, ref_id=str(ref_id))

    def run() -> None:
        part = part_of(actor.tenant_id, part_id)
        location = location_for(actor, actor.tenant_id, location_id, incoming=incoming)
        movement = ledger.move(
            op, kind, part, location, quantity=quantity, delta_on_hand=delta_on_hand
        )
        _audit(actor, action, movement, note=note)

    again = ledger.once(op, run, same=(kind, part_id, location_id))
    return (again or op.moved)[0]


def stock_receive(
    *,
    actor: Actor,
    part_id: int,
    location_id: int,
    quantity: Any,
    note: str = "",
    ref_type: str = "",
    ref_id: str = "",
    idempotency_key: str = "",
) -> Movement:
    """Goods in (a purchase, a supplier delivery) at a location."""
    amount = qty(quantity)
    return _single(
        actor,
        kind=MovementKind.RECEIVE,
        action="catalog.stock_received",
        part_id=part_id,
        location_id=location_id,
        quantity=amount,
        delta_on_hand=amount,
        note=note,
        ref_type=ref_type,
        ref_id=ref_id,
        idempotency_key=idempotency_key,
        incoming=True,
    )


def stock_issue(
    *,
    actor: Actor,
    part_id: int,
    location_id: int,
    quantity: Any,
    note: str = "",
    ref_type: str = "",
    ref_id: str = "",
    idempotency_key: str = "",
) -> Movement:
    """Parts out without a reservation (a counter sale, a walk-in repair): from what is available,
    never from stock held for someone else."""
    amount = qty(quantity)
    return _single(
        actor,
        kind=MovementKind.ISSUE,
        action="catalog.stock_issued",
        part_id=part_id,
        location_id=location_id,
        quantity=amount,
        delta_on_hand=-amount,
        note=note,
        ref_type=ref_type,
        ref_id=ref_id,
        idempotency_key=idempotency_key,
        incoming=False,
    )


def stock_return(
    *,
    actor: Actor,
    part_id: int,
    location_id: int,
    quantity: Any,
    note: str = "",
    ref_type: str = "",
    ref_id: str = "",
    idempotency_key: str = "",
) -> Movement:
    """Parts brought back unused (or a customer's return) into stock."""
    amount = qty(quantity)
    return _single(
        actor,
        kind=MovementKind.RETURN,
        action="catalog.stock_returned",
        part_id=part_id,
        location_id=location_id,
        quantity=amount,
        delta_on_hand=amount,
        note=note,
        ref_type=ref_type,
        ref_id=ref_id,
        idempotency_key=idempotency_key,
        incoming=True,
    )


def stock_adjust(
    *,
    actor: Actor,
    part_id: int,
    location_id: int,
    delta: Any,
    reason: str,
    idempotency_key: str = "",
) -> Movement:
    """A correction (damage, loss, a found box) by `delta`, positive or negative; the reason is
    required because the log is what an auditor reads."""
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("请填写调整原因", code="required", field="reason")
    text = str(delta).strip()
    negative = text.startswith("-")
    amount = qty(text[1:] if negative else delta, field="delta")
    return _single(
        actor,
        kind=MovementKind.ADJUST,
        action="catalog.stock_adjusted",
        part_id=part_id,
        location_id=location_id,
        quantity=amount,
        delta_on_hand=-amount if negative else amount,
        note=reason,
        ref_type="",
        ref_id="",
        idempotency_key=idempotency_key,
        incoming=not negative,
    )


def stock_take(
    *,
    actor: Actor,
    part_id: int,
    location_id: int,
    counted: Any,
    note: str = "",
    idempotency_key: str = "",
) -> Movement:
    """A stock-take (盘点): the counted quantity becomes the quantity on hand, through one `count`
    movement of the difference (written even when there is none, as the record of the count).
    A count below what is reserved is refused: those reservations must be released first."""
    actor.require(MANAGE)
    counted_qty = qty(counted, field="counted", allow_zero=True)
    op = _op(actor, idempotency_key, note=note)

    def run() -> None:
        part = part_of(actor.tenant_id, part_id)
        location = location_for(actor, actor.tenant_id, location_id)
        balance = ledger.lock_balance(actor.tenant_id, part.pk, location.pk)
        if counted_qty < balance.reserved:
            raise Conflict(
                f"盘点数量 {fmt(counted_qty)} 少于已预留的 {fmt(balance.reserved)}："
                "请先释放相关工单的预留",
                code="below_reserved",
                field="counted",
            )
        movement = ledger.move(
            op,
            MovementKind.COUNT,
            part,
            location,
            quantity=counted_qty,
            delta_on_hand=counted_qty - balance.on_hand,
        )
        _audit(actor, "catalog.stock_counted", movement, note=note)

    again = ledger.once(op, run, same=(MovementKind.COUNT, part_id, location_id))
    return (again or op.moved)[0]


def stock_transfer(
    *,
    actor: Actor,
    part_id: int,
    from_location_id: int,
    to_location_id: int,
    quantity: Any,
    note: str = "",
    idempotency_key: str = "",
) -> tuple[Movement, Movement]:
    """Move stock between locations (central → regional → a van): out and in, one transaction."""
    actor.require(MANAGE)
    amount = qty(quantity)
    if from_location_id == to_location_id:
        raise Invalid("调出与调入库位不能相同", code="same_location", field="to_location_id")
    op = _op(actor, idempotency_key, note=note)

    def run() -> None:
        part = part_of(actor.tenant_id, part_id)
        source = location_for(actor, actor.tenant_id, from_location_id, field="from_location_id")
        target = location_for(
            actor, actor.tenant_id, to_location_id, field="to_location_id", incoming=True
        )
        for location_pk in sorted((source.pk, target.pk)):
            ledger.lock_balance(actor.tenant_id, part.pk, location_pk)
        out = ledger.move(
            op, MovementKind.TRANSFER_OUT, part, source, quantity=amount, delta_on_hand=-amount
        )
        ledger.move(
            op, MovementKind.TRANSFER_IN, part, target, quantity=amount, delta_on_hand=amount
        )
        _audit(actor, "catalog.stock_transferred", out, to_location_id=target.pk, note=note)

    again = ledger.once(op, run, same=(MovementKind.TRANSFER_OUT, part_id, from_location_id))
    first, second = (again or op.moved)[:2]
    return first, second


def stock_reserve(
    *,
    actor: Actor,
    part_id: int,
    location_id: int,
    quantity: Any,
    ref_type: str = "",
    ref_id: str = "",
    ref_label: str = "",
    idempotency_key: str = "",
) -> Reservation:
    """Hold stock at a location for a job: it stays on hand but is no longer available."""
    actor.require(MANAGE)
    amount = qty(quantity)
    op = _op(actor, idempotency_key, ref_type=ref_type, ref_id=str(ref_id))

    def run() -> None:
        part = part_of(actor.tenant_id, part_id)
        location = location_for(actor, actor.tenant_id, location_id)
        reservation = ledger.reserve(op, part, location, amount, ref_label)
        _audit(actor, "catalog.stock_reserved", op.moved[0], reservation_id=reservation.pk)

    again = ledger.once(op, run, same=(MovementKind.RESERVE, part_id, location_id))
    reservation = (again or op.moved)[0].reservation
    assert reservation is not None
    return reservation


def _reservation_for(actor: Actor, reservation_id: int) -> Reservation:
    found = (
        Reservation.objects.visible_to(actor, MANAGE)
        .select_for_update(of=("self",))
        .select_related("part", "location", "location__warehouse")
        .filter(pk=reservation_id)
        .first()
    )
    if found is None:
        raise NotFound("预留不存在", field="reservation_id")
    return found


def _settle_service(
    actor: Actor,
    reservation_id: int,
    quantity: Any,
    idempotency_key: str,
    *,
    consume: bool,
) -> Reservation:
    actor.require(MANAGE)
    op = _op(actor, idempotency_key)
    kind = MovementKind.ISSUE if consume else MovementKind.RELEASE
    holder: list[Reservation] = []

    def run() -> None:
        reservation = _reservation_for(actor, reservation_id)
        op.ref_type, op.ref_id = reservation.ref_type, reservation.ref_id
        amount = reservation.open_quantity if quantity is None else qty(quantity)
        if consume:
            ledger.settle(op, reservation, consume=amount)
        else:
            ledger.settle(op, reservation, release=amount)
        _audit(
            actor,
            "catalog.reservation_consumed" if consume else "catalog.reservation_released",
            op.moved[0],
            reservation_id=reservation.pk,
        )
        holder.append(reservation)

    again = ledger.once(op, run)
    if again is not None:
        if again[0].kind != kind or again[0].reservation_id != reservation_id:
            raise Conflict(
                "该幂等键已用于另一笔库存操作",
                code="idempotency_key_reused",
                field="idempotency_key",
            )
        return Reservation.objects.get(pk=reservation_id)
    return holder[0]


def reservation_consume(
    *, actor: Actor, reservation_id: int, quantity: Any = None, idempotency_key: str = ""
) -> Reservation:
    """Issue reserved parts (all that is still open, or `quantity` of them)."""
    return _settle_service(actor, reservation_id, quantity, idempotency_key, consume=True)


def reservation_release(
    *, actor: Actor, reservation_id: int, quantity: Any = None, idempotency_key: str = ""
) -> Reservation:
    """Give reserved parts back to what is available (all that is still open, or `quantity`)."""
    return _settle_service(actor, reservation_id, quantity, idempotency_key, consume=False)
