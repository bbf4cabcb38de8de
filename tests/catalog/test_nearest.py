"""Where an engineer's parts are reserved: his van, then his region's warehouse, then the parent
regions' up the tree, then central; with a clear refusal and suggestions when none has enough."""

from __future__ import annotations

from decimal import Decimal

import pytest

from jingwei.catalog import services
from jingwei.catalog.models import Reservation, StockBalance

from .conftest import World

D = Decimal


def reserve(world: World, quantity: int = 1) -> list[Reservation]:
    return services.reserve_for_engineer(
        actor=world.keeper,
        part_id=world.compressor.pk,
        quantity=quantity,
        engineer_id=world.engineer.pk,
    )


def test_the_chain_runs_van_then_regions_upward_then_central(world: World):
    chain = services.warehouse_chain(world.keeper.tenant_id, world.engineer)
    assert [w.name for w in chain] == ["杨帆车载仓", "上海仓", "华东仓", "中心仓"]


@pytest.mark.parametrize(
    ("stocked", "expected"),
    [
        (["V1", "S1", "E1", "C1"], "V1"),
        (["S1", "E1", "C1"], "S1"),
        (["E1", "C1"], "E1"),
        (["C1", "N1"], "C1"),
    ],
)
def test_parts_come_from_the_nearest_warehouse_that_has_them(world: World, stocked, expected):
    for code in stocked:
        world.receive(world.compressor, code, 2)
    (reservation,) = reserve(world)
    assert reservation.location == world.bins[expected]


def test_a_warehouse_with_too_few_is_passed_over_for_one_with_enough(world: World):
    world.receive(world.compressor, "V1", 1)
    world.receive(world.compressor, "E1", 3)
    (reservation,) = reserve(world, 2)
    assert (reservation.location, reservation.quantity) == (world.bins["E1"], D(2))


def test_another_regions_warehouse_is_not_used_but_suggested(world: World):
    world.receive(world.compressor, "N1", 5)
    with pytest.raises(services.ShortOfStock) as short:
        reserve(world, 2)
    assert short.value.code == "insufficient_stock"
    assert "华南仓" in short.value.message and "杨帆车载仓" in short.value.message
    advice = short.value.suggestions
    assert advice["warehouses"] == [
        {
            "warehouse_id": world.south.pk,
            "warehouse": "华南仓",
            "kind": "regional",
            "available": "5",
        }
    ]
    assert advice["transfer"] == {
        "from_warehouse_id": world.south.pk,
        "from_warehouse": "华南仓",
        "to_warehouse_id": world.van.pk,
        "to_warehouse": "杨帆车载仓",
        "quantity": "2",
    }
    assert not Reservation.objects.exists()
    assert not StockBalance.objects.filter(reserved__gt=0).exists()


def test_a_part_nobody_has_says_to_buy_it(world: World):
    with pytest.raises(services.ShortOfStock) as short:
        reserve(world)
    assert "请采购" in short.value.message
    assert short.value.suggestions == {"warehouses": [], "transfer": None}


def test_an_engineer_without_a_van_starts_at_his_regions_warehouse(org, world: World):
    chain = services.warehouse_chain(world.keeper.tenant_id, None, org.guangzhou.pk)
    assert [w.name for w in chain] == ["华南仓", "中心仓"]


def test_a_retried_dispatch_reservation_holds_the_parts_once(world: World):
    world.receive(world.compressor, "S1", 2)
    calls = [
        services.reserve_for_engineer(
            actor=world.keeper,
            part_id=world.compressor.pk,
            quantity=1,
            engineer_id=world.engineer.pk,
            idempotency_key="dispatch-GD-1",
        )
        for _ in range(2)
    ]
    assert [r.pk for r in calls[0]] == [r.pk for r in calls[1]]
    assert StockBalance.objects.get(part=world.compressor, location=world.bins["S1"]).reserved == 1
