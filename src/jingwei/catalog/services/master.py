"""Master data: parts, warehouses, bin locations and low-stock lines. Parts are the tenant's
shared catalogue (tenant-wide catalog.manage); warehouses and their bins may be kept by whoever's
catalog.manage grant reaches their region."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction

from jingwei.audit.services import audit_record
from jingwei.core.errors import Conflict, Invalid, NotFound
from jingwei.org.models import Employee, EmployeeStatus, Region
from jingwei.org.scope import Actor

from ..models import Location, Part, StockThreshold, Warehouse, WarehouseKind
from .common import MANAGE, fmt, location_for, part_of, qty

PART_FIELDS = ("code", "name", "model", "specification", "unit", "cost", "currency")


def _text(value: Any, field: str, label: str, *, limit: int, required: bool = False) -> str:
    text = "" if value is None else str(value).strip()
    if required and not text:
        raise Invalid(f"请填写{label}", code="required", field=field)
    if len(text) > limit:
        raise Invalid(f"{label}不能超过 {limit} 个字", code="too_long", field=field)
    return text


def _money(value: Any) -> Decimal:
    if isinstance(value, (bool, float)):
        raise Invalid("成本价应为金额，如 128.50", code="invalid_amount", field="cost")
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise Invalid("成本价应为金额，如 128.50", code="invalid_amount", field="cost") from exc
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise Invalid(
            "成本价应为不小于 0 的金额，最多两位小数", code="invalid_amount", field="cost"
        )
    if amount >= Decimal("1e10"):
        raise Invalid("成本价过大", code="invalid_amount", field="cost")
    return amount.quantize(Decimal("0.01"))


def _models(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid("适用设备型号应为型号名称的列表", code="invalid", field="compatible_models")
    out: list[str] = []
    for v in value:
        name = v.strip()
        if name and name not in out:
            out.append(name[:100])
    return out


@transaction.atomic(durable=True)
def part_save(
    *,
    actor: Actor,
    part_id: int | None = None,
    code: str,
    name: str,
    model: str = "",
    specification: str = "",
    unit: str = "件",
    cost: Any = "0",
    currency: str = "CNY",
    compatible_models: list[str] | None = None,
    lead_time_days: int = 7,
    is_active: bool = True,
) -> Part:
    """Create a part (part_id None) or change one; the code is unique in the tenant."""
    actor.require_tenant_wide(MANAGE)
    values: dict[str, Any] = {
        "code": _text(code, "code", "备件编码", limit=40, required=True),
        "name": _text(name, "name", "名称", limit=100, required=True),
        "model": _text(model, "model", "型号", limit=100),
        "specification": _text(specification, "specification", "规格", limit=200),
        "unit": _text(unit, "unit", "单位", limit=10, required=True),
        "cost": _money(cost),
        "currency": _text(currency, "currency", "币种", limit=3, required=True).upper(),
        "compatible_models": _models(compatible_models),
        "lead_time_days": lead_time_days,
        "is_active": bool(is_active),
    }
    if isinstance(lead_time_days, bool) or not isinstance(lead_time_days, int):
        raise Invalid("采购周期应为天数", code="invalid", field="lead_time_days")
    if not 0 <= lead_time_days <= 365:
        raise Invalid("采购周期应在 0–365 天之间", code="invalid", field="lead_time_days")
    taken = Part.objects.for_tenant(actor.tenant_id).filter(code=values["code"])
    if part_id is None:
        part = Part(tenant_id=actor.tenant_id)
        before = None
    else:
        found = (
            Part.objects.for_tenant(actor.tenant_id).select_for_update().filter(pk=part_id).first()
        )
        if found is None:
            raise NotFound("备件不存在", field="part_id")
        part = found
        before = {f: str(getattr(part, f)) for f in PART_FIELDS}
        taken = taken.exclude(pk=part.pk)
    if taken.exists():
        raise Conflict(f"备件编码 {values['code']} 已存在", code="duplicate_code", field="code")
    for key, value in values.items():
        setattr(part, key, value)
    try:
        with transaction.atomic():
            part.save()
    except IntegrityError as exc:  # the same code created concurrently
        raise Conflict(
            f"备件编码 {values['code']} 已存在", code="duplicate_code", field="code"
        ) from exc
    audit_record(
        actor=actor,
        tenant_id=actor.tenant_id,
        action="catalog.part_created" if before is None else "catalog.part_updated",
        subject=part,
        before=before,
        after={f: str(getattr(part, f)) for f in PART_FIELDS},
    )
    return part


@transaction.atomic(durable=True)
def warehouse_save(
    *,
    actor: Actor,
    warehouse_id: int | None = None,
    kind: str,
    name: str,
    region_id: int | None = None,
    owner_id: int | None = None,
    is_active: bool = True,
) -> Warehouse:
    """Create or change a warehouse: central (no region), regional (a region), or an engineer's
    van (its owner; its region is the engineer's). The actor's grant must reach the result."""
    actor.require(MANAGE)
    if kind not in WarehouseKind.values:
        raise Invalid("仓库类型应为中心仓、区域仓或车载仓", code="invalid", field="kind")
    name = _text(name, "name", "仓库名称", limit=100, required=True)
    region = None
    owner = None
    if kind == WarehouseKind.REGIONAL:
        region = Region.objects.for_tenant(actor.tenant_id).filter(pk=region_id or 0).first()
        if region is None:
            raise Invalid("区域仓须选择所属区域", code="required", field="region_id")
    elif kind == WarehouseKind.VAN:
        owner = (
            Employee.objects.for_tenant(actor.tenant_id)
            .filter(pk=owner_id or 0, status=EmployeeStatus.ACTIVE)
            .first()
        )
        if owner is None:
            raise Invalid("车载仓须选择在职的工程师", code="required", field="owner_id")
        region = owner.region
    if warehouse_id is None:
        warehouse = Warehouse(tenant_id=actor.tenant_id)
    else:
        found = (
            Warehouse.objects.visible_to(actor, MANAGE)
            .select_for_update()
            .filter(pk=warehouse_id)
            .first()
        )
        if found is None:
            raise NotFound("仓库不存在", field="warehouse_id")
        warehouse = found
    warehouse.kind, warehouse.name, warehouse.is_active = kind, name, bool(is_active)
    warehouse.region, warehouse.owner = region, owner
    try:
        with transaction.atomic():
            warehouse.save()
    except IntegrityError as exc:
        message = "该工程师已有车载仓" if kind == WarehouseKind.VAN else f"仓库名称 {name} 已存在"
        raise Conflict(message, code="duplicate", field="name") from exc
    # Re-checked after writing: nobody creates (or moves) a warehouse outside their own reach.
    if not Warehouse.objects.visible_to(actor, MANAGE).filter(pk=warehouse.pk).exists():
        raise NotFound("仓库不存在", field="region_id")
    audit_record(
        actor=actor,
        tenant_id=actor.tenant_id,
        action="catalog.warehouse_saved",
        subject=warehouse,
        after={"kind": kind, "name": name, "region_id": warehouse.region_id},
    )
    return warehouse


@transaction.atomic(durable=True)
def location_save(
    *,
    actor: Actor,
    location_id: int | None = None,
    warehouse_id: int,
    code: str,
    name: str = "",
    is_active: bool = True,
) -> Location:
    """Create or change a bin location; its code is unique in its warehouse."""
    actor.require(MANAGE)
    warehouse = Warehouse.objects.visible_to(actor, MANAGE).filter(pk=warehouse_id).first()
    if warehouse is None:
        raise NotFound("仓库不存在", field="warehouse_id")
    code = _text(code, "code", "库位编码", limit=40, required=True)
    if location_id is None:
        location = Location(tenant_id=actor.tenant_id, warehouse=warehouse)
    else:
        location = location_for(actor, actor.tenant_id, location_id)
        if location.warehouse_id != warehouse.pk:
            raise Invalid("库位不能改到其他仓库", code="invalid", field="warehouse_id")
    location.code, location.name = code, _text(name, "name", "名称", limit=100)
    location.is_active = bool(is_active)
    try:
        with transaction.atomic():
            location.save()
    except IntegrityError as exc:
        raise Conflict(
            f"库位编码 {code} 在该仓库已存在", code="duplicate_code", field="code"
        ) from exc
    audit_record(
        actor=actor,
        tenant_id=actor.tenant_id,
        action="catalog.location_saved",
        subject=location,
        after={"warehouse_id": warehouse.pk, "code": code},
    )
    return location


@transaction.atomic(durable=True)
def threshold_set(
    *,
    actor: Actor,
    part_id: int,
    location_id: int,
    minimum: Any,
    safety_stock: Any = "0",
) -> StockThreshold:
    """Set the low-stock line of a part at a location (and the safety stock reorders keep)."""
    actor.require(MANAGE)
    part = part_of(actor.tenant_id, part_id)
    location = location_for(actor, actor.tenant_id, location_id)
    line = qty(minimum, field="minimum", allow_zero=True)
    safety = qty(safety_stock, field="safety_stock", allow_zero=True)
    found, _ = StockThreshold.objects.update_or_create(
        tenant_id=actor.tenant_id,
        part=part,
        location=location,
        defaults={"minimum": line, "safety_stock": safety},
    )
    audit_record(
        actor=actor,
        tenant_id=actor.tenant_id,
        action="catalog.threshold_set",
        subject=location,
        data={"part_id": part.pk, "minimum": fmt(line), "safety_stock": fmt(safety)},
    )
    return found
