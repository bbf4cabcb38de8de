"""Reorder suggestions from consumption: per part and warehouse, the average daily consumption
over the last `days` days, and — where the available quantity is below the warehouse's low-stock
lines — how much to order so the stock lasts the part's lead time and keeps its safety stock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal

from django.db.models import F, Sum
from django.utils import timezone

from jingwei.core.errors import Invalid
from jingwei.org.scope import Actor

from ..models import ZERO, Movement, MovementKind, Part, StockBalance, StockThreshold, Warehouse
from .common import VIEW


@dataclass(frozen=True)
class ReorderSuggestion:
    part_id: int
    part_code: str
    part_name: str
    unit: str
    warehouse_id: int
    warehouse_name: str
    available: Decimal
    minimum: Decimal
    safety_stock: Decimal
    daily_consumption: Decimal
    lead_time_days: int
    suggested: Decimal


def reorder_suggestions(
    *, actor: Actor, days: int = 30, at: datetime | None = None
) -> list[ReorderSuggestion]:
    """Suggested = max(daily consumption × lead time + safety stock, low-stock line) − available,
    rounded up to a whole unit; only for (part, warehouse) pairs below their line. Consumption
    is what was issued less what came back, in the warehouses the actor may see."""
    actor.require(VIEW)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365:
        raise Invalid("统计天数应在 1–365 之间", code="invalid", field="days")
    since = (at or timezone.now()) - timedelta(days=days)
    warehouses = {w.pk: w for w in Warehouse.objects.visible_to(actor, VIEW).filter(is_active=True)}
    lines: dict[tuple[int, int], tuple[Decimal, Decimal]] = {}
    for row in (
        StockThreshold.objects.for_tenant(actor.tenant_id)
        .filter(location__warehouse_id__in=list(warehouses))
        .values("part_id", "location__warehouse_id")
        .annotate(minimum=Sum("minimum"), safety=Sum("safety_stock"))
    ):
        lines[(row["part_id"], row["location__warehouse_id"])] = (row["minimum"], row["safety"])
    if not lines:
        return []
    available = {
        (r["part_id"], r["location__warehouse_id"]): r["free"]
        for r in StockBalance.objects.for_tenant(actor.tenant_id)
        .filter(location__warehouse_id__in=list(warehouses))
        .values("part_id", "location__warehouse_id")
        .annotate(free=Sum(F("on_hand") - F("reserved")))
    }
    used = {
        (r["part_id"], r["location__warehouse_id"]): -r["net"]
        for r in Movement.objects.for_tenant(actor.tenant_id)
        .filter(
            kind__in=[MovementKind.ISSUE, MovementKind.RETURN],
            at__gte=since,
            location__warehouse_id__in=list(warehouses),
        )
        .values("part_id", "location__warehouse_id")
        .annotate(net=Sum("delta_on_hand"))
    }
    parts = {p.pk: p for p in Part.objects.for_tenant(actor.tenant_id).filter(is_active=True)}
    out = []
    for (part_id, warehouse_id), (minimum, safety) in sorted(lines.items()):
        part = parts.get(part_id)
        have = available.get((part_id, warehouse_id), ZERO)
        if part is None or have >= minimum:
            continue
        daily = (max(used.get((part_id, warehouse_id), ZERO), ZERO) / days).quantize(
            Decimal("0.001")
        )
        target = max(daily * part.lead_time_days + safety, minimum)
        suggested = max(target - have, ZERO).to_integral_value(rounding=ROUND_CEILING)
        out.append(
            ReorderSuggestion(
                part_id=part_id,
                part_code=part.code,
                part_name=part.name,
                unit=part.unit,
                warehouse_id=warehouse_id,
                warehouse_name=warehouses[warehouse_id].name,
                available=have,
                minimum=minimum,
                safety_stock=safety,
                daily_consumption=daily,
                lead_time_days=part.lead_time_days,
                suggested=suggested,
            )
        )
    return out
