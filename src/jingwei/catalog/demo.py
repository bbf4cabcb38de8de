"""Demo spare parts for 经纬设备服务 (air conditioning and cold-chain equipment): ten parts, a
central warehouse, the 华东 and 华南 regional warehouses, 杨帆's van (浦东 engineer), opening
stock and low-stock lines. Everything goes through the services as the demo admin; stock moves
carry idempotency keys, so loading twice changes nothing."""

from __future__ import annotations

from decimal import Decimal

from jingwei.org.models import Employee, Region
from jingwei.org.scope import actor_for

from . import services
from .models import Location, Part, StockThreshold, Warehouse, WarehouseKind

# code, name, model, specification, unit, cost, compatible equipment models, lead time (days)
PARTS: list[tuple[str, str, str, str, str, str, list[str], int]] = [
    (
        "CP-R410-35",
        "变频压缩机",
        "GMCC KTM240D57UMT",
        "R410A 1.5 匹",
        "台",
        "1280.00",
        ["KFR-35GW", "KFR-35GW/BP"],
        14,
    ),
    (
        "CP-R404-50",
        "冷库压缩机",
        "谷轮 ZB38KQE",
        "R404A 5 匹 涡旋",
        "台",
        "4650.00",
        ["LD-1200", "LD-2000"],
        21,
    ),
    (
        "FM-OUT-35",
        "室外风机电机",
        "YDK-35-6",
        "35W 6 极",
        "台",
        "268.00",
        ["KFR-35GW", "KFR-50LW"],
        7,
    ),
    ("FM-EVAP-300", "冷风机风扇", "FN300", "300mm 220V", "台", "185.00", ["LD-1200", "LD-2000"], 7),
    (
        "FT-HEPA-01",
        "高效过滤网",
        "HF-450",
        "450×450mm",
        "片",
        "42.00",
        ["KFR-35GW", "KFR-50LW", "KFR-72LW"],
        5,
    ),
    ("CAP-35UF", "启动电容", "CBB65", "35μF 450V", "个", "18.50", ["KFR-35GW", "KFR-50LW"], 5),
    (
        "VAL-EXP-2",
        "电子膨胀阀",
        "三花 DPF1.8",
        "1.8mm 口径",
        "个",
        "156.00",
        ["KFR-50LW", "LD-1200"],
        10,
    ),
    ("PCB-MAIN-35", "室内机主控板", "MB-35BP", "变频 1.5 匹", "块", "320.00", ["KFR-35GW/BP"], 10),
    (
        "REF-R410A",
        "R410A 制冷剂",
        "R410A",
        "10kg/瓶",
        "kg",
        "65.00",
        ["KFR-35GW", "KFR-50LW", "KFR-72LW"],
        3,
    ),
    (
        "PIPE-CU-9",
        "铜管",
        "TP2",
        "Φ9.52×0.75mm",
        "米",
        "28.00",
        ["KFR-35GW", "KFR-50LW", "LD-1200"],
        5,
    ),
]

# warehouse name, kind, region name, owner username, bins
WAREHOUSES: list[tuple[str, str, str | None, str | None, list[str]]] = [
    ("总部中心仓", WarehouseKind.CENTRAL, None, None, ["A-01", "A-02", "B-01"]),
    ("华东区域仓", WarehouseKind.REGIONAL, "华东", None, ["HD-01", "HD-02"]),
    ("华南区域仓", WarehouseKind.REGIONAL, "华南", None, ["HN-01"]),
    ("杨帆的车载仓", WarehouseKind.VAN, None, "yangfan", ["VAN"]),
]

# part code, warehouse name, bin, quantity
STOCK: list[tuple[str, str, str, str]] = [
    ("CP-R410-35", "总部中心仓", "A-01", "12"),
    ("CP-R404-50", "总部中心仓", "A-01", "4"),
    ("FM-OUT-35", "总部中心仓", "A-02", "20"),
    ("FM-EVAP-300", "总部中心仓", "A-02", "15"),
    ("FT-HEPA-01", "总部中心仓", "B-01", "200"),
    ("CAP-35UF", "总部中心仓", "B-01", "150"),
    ("VAL-EXP-2", "总部中心仓", "B-01", "30"),
    ("PCB-MAIN-35", "总部中心仓", "A-02", "10"),
    ("REF-R410A", "总部中心仓", "B-01", "80"),
    ("PIPE-CU-9", "总部中心仓", "B-01", "500"),
    ("CP-R410-35", "华东区域仓", "HD-01", "3"),
    ("FM-OUT-35", "华东区域仓", "HD-01", "6"),
    ("FT-HEPA-01", "华东区域仓", "HD-02", "40"),
    ("CAP-35UF", "华东区域仓", "HD-02", "30"),
    ("REF-R410A", "华东区域仓", "HD-02", "20"),
    ("FM-EVAP-300", "华南区域仓", "HN-01", "4"),
    ("CP-R404-50", "华南区域仓", "HN-01", "1"),
    ("CAP-35UF", "杨帆的车载仓", "VAN", "5"),
    ("FT-HEPA-01", "杨帆的车载仓", "VAN", "4"),
    ("REF-R410A", "杨帆的车载仓", "VAN", "2.5"),
]

# part code, warehouse name, bin, minimum, safety stock
THRESHOLDS: list[tuple[str, str, str, str, str]] = [
    ("CP-R410-35", "华东区域仓", "HD-01", "2", "1"),
    ("CAP-35UF", "杨帆的车载仓", "VAN", "3", "2"),
    ("CP-R404-50", "华南区域仓", "HN-01", "2", "1"),
]


def load_demo_catalog(tenant_id: int) -> None:
    """Parts, warehouses, bins, opening stock and low-stock lines of the demo tenant."""
    admin = actor_for(Employee.objects.get(tenant_id=tenant_id, user__username="admin"))
    parts: dict[str, Part] = {}
    for code, name, model, spec, unit, cost, fits, lead in PARTS:
        found = Part.objects.filter(tenant_id=tenant_id, code=code).first()
        parts[code] = found or services.part_save(
            actor=admin,
            code=code,
            name=name,
            model=model,
            specification=spec,
            unit=unit,
            cost=Decimal(cost),
            compatible_models=fits,
            lead_time_days=lead,
        )
    bins: dict[tuple[str, str], Location] = {}
    for wname, kind, region_name, owner_username, codes in WAREHOUSES:
        warehouse = Warehouse.objects.filter(tenant_id=tenant_id, name=wname).first()
        if warehouse is None:
            region = (
                Region.objects.get(tenant_id=tenant_id, name=region_name) if region_name else None
            )
            owner = (
                Employee.objects.get(tenant_id=tenant_id, user__username=owner_username)
                if owner_username
                else None
            )
            warehouse = services.warehouse_save(
                actor=admin,
                kind=kind,
                name=wname,
                region_id=region.pk if region else None,
                owner_id=owner.pk if owner else None,
            )
        for code in codes:
            location = Location.objects.filter(
                tenant_id=tenant_id, warehouse=warehouse, code=code
            ).first()
            bins[(wname, code)] = location or services.location_save(
                actor=admin, warehouse_id=warehouse.pk, code=code
            )
    for code, wname, bin_code, quantity in STOCK:
        location = bins[(wname, bin_code)]
        services.stock_receive(
            actor=admin,
            part_id=parts[code].pk,
            location_id=location.pk,
            quantity=Decimal(quantity),
            note="期初库存",
            idempotency_key=f"demo:opening:{code}:{location.pk}",
        )
    for code, wname, bin_code, minimum, safety in THRESHOLDS:
        location = bins[(wname, bin_code)]
        if not StockThreshold.objects.filter(
            tenant_id=tenant_id, part=parts[code], location=location
        ).exists():
            services.threshold_set(
                actor=admin,
                part_id=parts[code].pk,
                location_id=location.pk,
                minimum=Decimal(minimum),
                safety_stock=Decimal(safety),
            )
