"""The one place stock changes: a movement appended to the log and the same change applied to the
balance row, under a row lock, in the caller's transaction. Nothing here opens a transaction;
the services in `stock` and the flow actions do.

Locking: the balance row of (part, location) is read with SELECT … FOR UPDATE before its numbers
are checked, so two reservations of the last unit queue on the row and the second sees none
left. A missing row is first inserted with ON CONFLICT DO NOTHING (two first receipts at a new
location then both find the one row) and locked after. Callers that touch several rows lock them
in (part id, location id) order so two operations never wait on each other in a circle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from jingwei.core.errors import Conflict

from ..models import (
    ZERO,
    Location,
    Movement,
    MovementKind,
    Part,
    Reservation,
    ReservationStatus,
    StockBalance,
    StockThreshold,
)
from .common import ShortOfStock, fmt


@dataclass
class Op:
    """One operation: who does it (None: the system, e.g. a flow step), its idempotency key, and
    the movements it wrote (numbered by `seq` under the key)."""

    tenant_id: int
    actor_id: int | None = None
    key: str = ""
    note: str = ""
    ref_type: str = ""
    ref_id: str = ""
    moved: list[Movement] = field(default_factory=list)


def lock_balance(tenant_id: int, part_id: int, location_id: int) -> StockBalance:
    qs = StockBalance.objects.select_for_update().filter(
        tenant_id=tenant_id, part_id=part_id, location_id=location_id
    )
    found = qs.first()
    if found is None:
        StockBalance.objects.bulk_create(
            [StockBalance(tenant_id=tenant_id, part_id=part_id, location_id=location_id)],
            ignore_conflicts=True,
        )
        found = qs.get()
    return found


def short_message(part: Part, location: Location, available: Decimal, wanted: Decimal) -> str:
    return (
        f"备件「{part.code} {part.name}」在「{location}」库存不足："
        f"可用 {fmt(available)}{part.unit}，需要 {fmt(wanted)}{part.unit}"
    )


def move(
    op: Op,
    kind: str,
    part: Part,
    location: Location,
    *,
    quantity: Decimal,
    delta_on_hand: Decimal = ZERO,
    delta_reserved: Decimal = ZERO,
    reservation: Reservation | None = None,
) -> Movement:
    """Append one movement and apply it to the balance; refuse (ShortOfStock, nothing written)
    when it would leave less than nothing on hand, or more reserved than on hand."""
    balance = lock_balance(op.tenant_id, part.pk, location.pk)
    before = balance.available
    on_hand = balance.on_hand + delta_on_hand
    reserved = balance.reserved + delta_reserved
    if on_hand < 0 or reserved < 0 or reserved > on_hand:
        wanted = max(-delta_on_hand, delta_reserved, ZERO)
        raise ShortOfStock(short_message(part, location, before, wanted))
    balance.on_hand, balance.reserved = on_hand, reserved
    balance.save(update_fields=["on_hand", "reserved", "updated_at"])
    movement = Movement.objects.create(
        tenant_id=op.tenant_id,
        kind=kind,
        part=part,
        location=location,
        quantity=quantity,
        delta_on_hand=delta_on_hand,
        delta_reserved=delta_reserved,
        ref_type=op.ref_type,
        ref_id=op.ref_id,
        reservation=reservation,
        actor_id=op.actor_id,
        at=timezone.now(),
        note=op.note[:200],
        idempotency_key=op.key,
        seq=len(op.moved),
    )
    op.moved.append(movement)
    if balance.available < before:
        _warn_if_low(op, movement, balance, before)
    return movement


def _warn_if_low(op: Op, movement: Movement, balance: StockBalance, before: Decimal) -> None:
    """Publish `catalog.stock_low` when this movement takes the available quantity below the
    location's line: once per crossing, not on every movement while it stays low."""
    line = (
        StockThreshold.objects.filter(
            tenant_id=op.tenant_id, part_id=movement.part_id, location_id=movement.location_id
        )
        .values_list("minimum", flat=True)
        .first()
    )
    if line is None or not (balance.available < line <= before):
        return
    from jingwei.notify.services import event_publish

    part, location = movement.part, movement.location
    event_publish(
        tenant_id=op.tenant_id,
        name="catalog.stock_low",
        key=f"catalog.stock_low:{movement.pk}",
        severity="warning",
        payload={
            "part": {"id": part.pk, "code": part.code, "name": part.name, "unit": part.unit},
            "location": {"id": location.pk, "code": location.code},
            "warehouse": {"id": location.warehouse_id, "name": location.warehouse.name},
            "available": fmt(balance.available),
            "on_hand": fmt(balance.on_hand),
            "minimum": fmt(line),
            "region_id": location.warehouse.region_id,
            "owner_id": location.warehouse.owner_id,
            "message": (
                f"备件「{part.code} {part.name}」在「{location}」可用库存 "
                f"{fmt(balance.available)}{part.unit}，低于预警线 {fmt(line)}{part.unit}"
            ),
        },
    )


def reserve(op: Op, part: Part, location: Location, quantity: Decimal, label: str) -> Reservation:
    # The lock comes before the reservation row, so a refused reservation leaves nothing behind.
    balance = lock_balance(op.tenant_id, part.pk, location.pk)
    if balance.available < quantity:
        raise ShortOfStock(short_message(part, location, balance.available, quantity))
    reservation = Reservation.objects.create(
        tenant_id=op.tenant_id,
        part=part,
        location=location,
        quantity=quantity,
        ref_type=op.ref_type,
        ref_id=op.ref_id,
        ref_label=label[:100],
        created_at=timezone.now(),
    )
    move(
        op,
        MovementKind.RESERVE,
        part,
        location,
        quantity=quantity,
        delta_reserved=quantity,
        reservation=reservation,
    )
    return reservation


def settle(
    op: Op, reservation: Reservation, *, consume: Decimal = ZERO, release: Decimal = ZERO
) -> None:
    """Consume (issue) and/or release parts of an open reservation; closes it when nothing of it
    is left open. The reservation must be locked by the caller."""
    if reservation.status != ReservationStatus.RESERVED:
        raise Conflict("该预留已结束，不能再领用或释放", code="reservation_closed")
    if consume + release > reservation.open_quantity:
        raise Conflict(
            f"超出预留数量：尚余 {fmt(reservation.open_quantity)}", code="over_reservation"
        )
    part, location = reservation.part, reservation.location
    if consume > 0:
        move(
            op,
            MovementKind.ISSUE,
            part,
            location,
            quantity=consume,
            delta_on_hand=-consume,
            delta_reserved=-consume,
            reservation=reservation,
        )
    if release > 0:
        move(
            op,
            MovementKind.RELEASE,
            part,
            location,
            quantity=release,
            delta_reserved=-release,
            reservation=reservation,
        )
    reservation.consumed += consume
    reservation.released += release
    fields = ["consumed", "released"]
    if reservation.open_quantity == 0:
        reservation.status = (
            ReservationStatus.CONSUMED if reservation.consumed > 0 else ReservationStatus.RELEASED
        )
        reservation.closed_at = timezone.now()
        fields += ["status", "closed_at"]
    reservation.save(update_fields=fields)


def earlier(tenant_id: int, key: str) -> list[Movement]:
    if not key:
        return []
    return list(
        Movement.objects.filter(tenant_id=tenant_id, idempotency_key=key)
        .select_related("part", "location", "reservation")
        .order_by("seq")
    )


def once(
    op: Op, run: Callable[[], Any], *, same: tuple[str, int, int] | None = None
) -> list[Movement] | None:
    """Run `run` in its own durable transaction unless the idempotency key already moved stock.
    Returns the earlier movements of a replay (None when `run` ran now). `same` (kind, part id,
    location id of the first line) tells a genuine retry from the key reused for other work."""

    def check(found: list[Movement]) -> list[Movement]:
        first = found[0]
        if same is not None and (first.kind, first.part_id, first.location_id) != same:
            raise Conflict(
                "该幂等键已用于另一笔库存操作",
                code="idempotency_key_reused",
                field="idempotency_key",
            )
        return found

    found = earlier(op.tenant_id, op.key)
    if found:
        return check(found)
    try:
        with transaction.atomic(durable=True):
            run()
    except IntegrityError:
        # A concurrent retry with the same key committed first: its lines are the answer.
        found = earlier(op.tenant_id, op.key)
        if not found:
            raise
        return check(found)
    return None
