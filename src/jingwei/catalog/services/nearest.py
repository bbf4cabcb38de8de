"""Where an engineer's parts come from: his van first, then the regional warehouses of his region,
then of each parent region up the tree, then the central warehouses. When none of them has
enough, the answer says which warehouses have the part and suggests a transfer."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import F, Sum

from jingwei.audit.services import audit_record
from jingwei.core.errors import NotFound
from jingwei.org.models import Employee, Region, path_ids
from jingwei.org.scope import Actor

from ..models import ZERO, Part, Reservation, StockBalance, Warehouse, WarehouseKind
from . import ledger
from .common import MANAGE, ShortOfStock, fmt, part_of, qty


def warehouse_chain(
    tenant_id: int, engineer: Employee | None, region_id: int | None = None
) -> list[Warehouse]:
    """The active warehouses to take from, nearest first. The region is the engineer's own, or
    `region_id` (the case's) when he has none."""
    active = Warehouse.objects.for_tenant(tenant_id).filter(is_active=True)
    chain: list[Warehouse] = []
    if engineer is not None:
        chain += list(active.filter(kind=WarehouseKind.VAN, owner=engineer).order_by("id"))
        region_id = engineer.region_id or region_id
    path = (
        (
            Region.objects.for_tenant(tenant_id).filter(pk=region_id).values_list("path", flat=True)
        ).first()
        if region_id is not None
        else None
    )
    upward = list(reversed(path_ids(path))) if path else []
    regional = active.filter(kind=WarehouseKind.REGIONAL, region_id__in=upward)
    chain += sorted(regional, key=lambda w: (upward.index(w.region_id or 0), w.name, w.pk))
    chain += list(active.filter(kind=WarehouseKind.CENTRAL).order_by("name", "id"))
    return chain


def _locked_balances(tenant_id: int, part: Part, warehouse: Warehouse) -> list[StockBalance]:
    return list(
        StockBalance.objects.select_for_update(of=("self",))
        .select_related("location", "location__warehouse")
        .filter(
            tenant_id=tenant_id,
            part=part,
            location__warehouse=warehouse,
            location__is_active=True,
        )
        .order_by("location_id")
    )


def holdings(tenant_id: int, part: Part) -> list[dict[str, Any]]:
    """Every active warehouse holding some of the part available, most first."""
    rows = (
        StockBalance.objects.filter(
            tenant_id=tenant_id, part=part, location__warehouse__is_active=True
        )
        .values("location__warehouse_id", "location__warehouse__name", "location__warehouse__kind")
        .annotate(free=Sum(F("on_hand") - F("reserved")))
        .filter(free__gt=0)
        .order_by("-free", "location__warehouse_id")
    )
    return [
        {
            "warehouse_id": r["location__warehouse_id"],
            "warehouse": r["location__warehouse__name"],
            "kind": r["location__warehouse__kind"],
            "available": fmt(r["free"]),
        }
        for r in rows
    ]


def suggestions(
    tenant_id: int, part: Part, missing: Decimal, chain: list[Warehouse]
) -> dict[str, Any]:
    """Who has the part, and a transfer to the nearest warehouse from the one holding most."""
    have = holdings(tenant_id, part)
    target = chain[0] if chain else None
    transfer = None
    sources = [h for h in have if target is None or h["warehouse_id"] != target.pk]
    if target is not None and sources:
        source = sources[0]
        transfer = {
            "from_warehouse_id": source["warehouse_id"],
            "from_warehouse": source["warehouse"],
            "to_warehouse_id": target.pk,
            "to_warehouse": target.name,
            "quantity": fmt(min(missing, Decimal(source["available"]))),
        }
    return {"warehouses": have, "transfer": transfer}


def short_text(part: Part, wanted: Decimal, got: Decimal, advice: dict[str, Any]) -> str:
    text = (
        f"就近仓库没有足够的「{part.code} {part.name}」：需要 {fmt(wanted)}{part.unit}，"
        f"可预留 {fmt(got)}{part.unit}"
    )
    move = advice.get("transfer")
    if move:
        text += (
            f"；建议从「{move['from_warehouse']}」调拨 {move['quantity']}{part.unit}"
            f"到「{move['to_warehouse']}」"
        )
    elif not advice.get("warehouses"):
        text += "；所有仓库均无此备件，请采购"
    return text


def reserve_nearest(
    op: ledger.Op,
    part: Part,
    quantity: Decimal,
    chain: list[Warehouse],
    label: str,
    *,
    partial: bool,
) -> tuple[list[Reservation], Decimal]:
    """Reserve `quantity` at the nearest warehouse of the chain that has all of it (the engineer
    fetches from one place). When none has, `partial` reserves what the chain has, nearest first,
    and returns the quantity still missing; otherwise nothing is reserved and all is missing.

    Balance rows are locked warehouse by warehouse in chain order, which is the same relative
    order for every engineer (deeper region first, central last), so two dispatches cannot wait
    on each other in a circle."""
    per_warehouse = [_locked_balances(op.tenant_id, part, w) for w in chain]
    for balances in per_warehouse:
        if sum((b.available for b in balances), ZERO) >= quantity:
            return _take(op, part, balances, quantity, label), ZERO
    if not partial:
        return [], quantity
    taken: list[Reservation] = []
    left = quantity
    for balances in per_warehouse:
        taken += _take(op, part, balances, left, label)
        left = quantity - sum((r.quantity for r in taken), ZERO)
        if left <= 0:
            break
    return taken, left


def _take(
    op: ledger.Op, part: Part, balances: list[StockBalance], quantity: Decimal, label: str
) -> list[Reservation]:
    out: list[Reservation] = []
    left = quantity
    for balance in balances:
        take = min(left, balance.available)
        if take <= 0:
            continue
        out.append(ledger.reserve(op, part, balance.location, take, label))
        left -= take
        if left <= 0:
            break
    return out


def reserve_for_engineer(
    *,
    actor: Actor,
    part_id: int,
    quantity: Any,
    engineer_id: int,
    ref_type: str = "",
    ref_id: str = "",
    ref_label: str = "",
    idempotency_key: str = "",
) -> list[Reservation]:
    """Reserve for an engineer at the nearest warehouse that has the quantity. When none has:
    ShortOfStock (insufficient_stock) with the warehouses that hold the part and a suggested
    transfer, and nothing reserved."""
    actor.require(MANAGE)
    amount = qty(quantity)
    op = ledger.Op(
        tenant_id=actor.tenant_id,
        actor_id=actor.employee_id,
        key=idempotency_key.strip()[:200],
        ref_type=ref_type,
        ref_id=str(ref_id),
    )
    result: list[Reservation] = []

    def run() -> None:
        part = part_of(actor.tenant_id, part_id)
        engineer = Employee.objects.for_tenant(actor.tenant_id).filter(pk=engineer_id).first()
        if engineer is None:
            raise NotFound("工程师不存在", field="engineer_id")
        chain = warehouse_chain(actor.tenant_id, engineer)
        reachable = set(
            Warehouse.objects.visible_to(actor, MANAGE)
            .filter(pk__in=[w.pk for w in chain])
            .values_list("pk", flat=True)
        )
        chain = [w for w in chain if w.pk in reachable]
        taken, missing = reserve_nearest(op, part, amount, chain, ref_label, partial=False)
        if missing > 0:
            advice = suggestions(actor.tenant_id, part, missing, chain)
            raise ShortOfStock(short_text(part, amount, ZERO, advice), suggestions=advice)
        for reservation in taken:
            audit_record(
                actor=actor,
                tenant_id=actor.tenant_id,
                action="catalog.stock_reserved",
                subject=reservation,
                data={"part_id": part.pk, "quantity": fmt(reservation.quantity)},
            )
        result.extend(taken)

    again = ledger.once(op, run)
    if again is not None:
        return [m.reservation for m in again if m.reservation is not None]
    return result
