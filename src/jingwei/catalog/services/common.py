"""What every catalog service shares: permission codes, lookups through the read gate, quantity
parsing and the shortage error."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from jingwei.core.errors import Conflict, Invalid, NotFound
from jingwei.org.scope import Actor

from ..models import Location, Part

VIEW = "catalog.view"
MANAGE = "catalog.manage"
QTY_PLACES = Decimal("0.001")


class ShortOfStock(Conflict):
    """Not enough stock where it was asked for. `suggestions` lists the warehouses that have the
    part (and how many) and a suggested transfer, for the dispatcher to act on."""

    default_code = "insufficient_stock"

    def __init__(self, message: str, *, suggestions: dict[str, Any] | None = None):
        super().__init__(message, field="quantity")
        self.suggestions = suggestions or {}


def fmt(quantity: Decimal) -> str:
    """A quantity as people write it: 2, 1.5, 0.25 (no trailing zeros, never 1E+1)."""
    text = f"{quantity.normalize():f}"
    return "0" if text in ("-0", "") else text


def qty(value: Any, *, field: str = "quantity", allow_zero: bool = False) -> Decimal:
    """A positive quantity with at most three decimals (metres, kilograms), or Invalid."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        # Floats are refused rather than rounded: 0.1 + 0.2 is how stock drifts.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise Invalid("数量应为数字（最多三位小数）", code="invalid_quantity", field=field)
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise Invalid("数量应为数字（最多三位小数）", code="invalid_quantity", field=field) from exc
    if not number.is_finite() or number != number.quantize(QTY_PLACES):
        raise Invalid("数量应为数字（最多三位小数）", code="invalid_quantity", field=field)
    if number < 0 or (number == 0 and not allow_zero):
        raise Invalid("数量应大于 0", code="invalid_quantity", field=field)
    if number >= Decimal("1e9"):
        raise Invalid("数量过大", code="invalid_quantity", field=field)
    return number.quantize(QTY_PLACES)


def part_of(tenant_id: int, part_id: Any, *, field: str = "part_id") -> Part:
    """An active part of the tenant; another tenant's id reads as missing."""
    found = (
        Part.objects.for_tenant(tenant_id).filter(pk=part_id).first()
        if isinstance(part_id, int) and not isinstance(part_id, bool)
        else None
    )
    if found is None:
        raise NotFound("备件不存在", field=field)
    return found


def location_for(
    actor: Actor | None,
    tenant_id: int,
    location_id: Any,
    *,
    perm: str = MANAGE,
    field: str = "location_id",
    incoming: bool = False,
) -> Location:
    """A location the actor's grant of `perm` reaches (any of the tenant's for the system);
    stock may only come into an active one."""
    if isinstance(location_id, bool) or not isinstance(location_id, int):
        raise NotFound("库位不存在", field=field)
    qs = (
        Location.objects.visible_to(actor, perm)
        if actor is not None
        else Location.objects.for_tenant(tenant_id)
    )
    found = qs.select_related("warehouse").filter(pk=location_id).first()
    if found is None:
        raise NotFound("库位不存在", field=field)
    if incoming and not (found.is_active and found.warehouse.is_active):
        raise Conflict(f"库位「{found}」已停用，不能入库", code="location_inactive", field=field)
    return found
