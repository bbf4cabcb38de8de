"""A small parts world in the test tenant: a central warehouse, 华东 / 上海 / 华南 regional
warehouses, and the van of 浦东 engineer 杨帆, each with bins; two parts; a storekeeper with
catalog.manage for the whole tenant."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from jingwei.catalog import services
from jingwei.catalog.models import Location, Part, StockBalance, Warehouse
from jingwei.org.models import Employee
from jingwei.org.scope import Actor, actor_for

from ..factories import EmployeeFactory, grant


@dataclass
class World:
    keeper: Actor
    engineer: Employee
    compressor: Part
    filter: Part
    central: Warehouse
    east: Warehouse
    shanghai: Warehouse
    south: Warehouse
    van: Warehouse
    bins: dict[str, Location]

    def receive(self, part: Part, bin_code: str, quantity: Any) -> None:
        services.stock_receive(
            actor=self.keeper,
            part_id=part.pk,
            location_id=self.bins[bin_code].pk,
            quantity=quantity,
        )


def balance(part: Part, location: Location) -> tuple[Decimal, Decimal]:
    """(on hand, reserved) of a part at a location; (0, 0) when nothing ever moved there."""
    found = StockBalance.objects.filter(part=part, location=location).first()
    return (found.on_hand, found.reserved) if found else (Decimal(0), Decimal(0))


@pytest.fixture
def keeper(org: Any) -> Employee:
    e = EmployeeFactory(tenant=org.tenant, name="仓管员", department=org.hq)
    grant(e, ["catalog.view", "catalog.manage"], "tenant")
    return e


@pytest.fixture
def pudong_engineer(org: Any) -> Employee:
    return EmployeeFactory(
        tenant=org.tenant, name="杨帆", department=org.east_dept, region=org.pudong
    )


@pytest.fixture
def world(org: Any, keeper: Employee, pudong_engineer: Employee) -> World:
    actor = actor_for(keeper)
    compressor = services.part_save(
        actor=actor,
        code="CP-35",
        name="变频压缩机",
        model="KTM240",
        specification="R410A 1.5 匹",
        unit="台",
        cost=Decimal("1280.00"),
        compatible_models=["KFR-35GW"],
        lead_time_days=10,
    )
    filter_part = services.part_save(
        actor=actor, code="FT-01", name="过滤网", unit="片", cost=Decimal("42.00")
    )

    def house(kind: str, name: str, *, region: Any = None, owner: Any = None) -> Warehouse:
        return services.warehouse_save(
            actor=actor,
            kind=kind,
            name=name,
            region_id=region.pk if region else None,
            owner_id=owner.pk if owner else None,
        )

    central = house("central", "中心仓")
    east = house("regional", "华东仓", region=org.east)
    shanghai = house("regional", "上海仓", region=org.shanghai)
    south = house("regional", "华南仓", region=org.south)
    van = house("van", "杨帆车载仓", owner=pudong_engineer)
    bins = {}
    for warehouse, codes in (
        (central, ["C1", "C2"]),
        (east, ["E1"]),
        (shanghai, ["S1"]),
        (south, ["N1"]),
        (van, ["V1"]),
    ):
        for code in codes:
            bins[code] = services.location_save(actor=actor, warehouse_id=warehouse.pk, code=code)
    return World(
        actor,
        pudong_engineer,
        compressor,
        filter_part,
        central,
        east,
        shanghai,
        south,
        van,
        bins,
    )


@pytest.fixture
def shipped(org: Any, admin: Any) -> dict[str, Any]:
    """The shipped flows and ticket templates in the test tenant (as tests/tickets has it)."""
    from jingwei.flows.demo import load_shipped_flows
    from jingwei.tickets.demo import load_shipped_templates

    load_shipped_flows(org.tenant.pk)
    return {t.key: t for t in load_shipped_templates(org.tenant.pk)}
