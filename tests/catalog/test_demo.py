"""The demo parts library loads on the demo tenant and loading it again changes nothing."""

from __future__ import annotations

from jingwei.catalog.demo import load_demo_catalog
from jingwei.catalog.models import Location, Movement, Part, StockBalance, Warehouse
from jingwei.catalog.services import warehouse_chain
from jingwei.org.demo import load_demo
from jingwei.org.models import Employee


def counts() -> list[int]:
    return [m.objects.count() for m in (Part, Warehouse, Location, Movement, StockBalance)]


def test_the_demo_catalog_loads_once(db):
    tenant = load_demo()
    load_demo_catalog(tenant.pk)
    first = counts()
    load_demo_catalog(tenant.pk)
    assert counts() == first
    assert first[0] == 10
    engineer = Employee.objects.get(tenant=tenant, user__username="yangfan")
    chain = [w.name for w in warehouse_chain(tenant.pk, engineer)]
    assert chain == ["杨帆的车载仓", "华东区域仓", "总部中心仓"]
