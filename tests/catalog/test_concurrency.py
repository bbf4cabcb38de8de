"""Dispatches racing for the same parts on PostgreSQL: the last unit goes to one of them, the
other hears clearly that there is none; many at once never reserve more than is there."""

from __future__ import annotations

from decimal import Decimal

import pytest

from jingwei.catalog import services
from jingwei.catalog.models import Movement, Reservation, StockBalance
from jingwei.core.errors import Conflict

from ..concurrency import on_postgres, run_together
from .conftest import World

pytestmark = [on_postgres, pytest.mark.django_db(transaction=True)]


def reserve_call(world: World, quantity: int = 1, bin_code: str = "V1"):
    def call() -> Reservation:
        return services.stock_reserve(
            actor=world.keeper,
            part_id=world.compressor.pk,
            location_id=world.bins[bin_code].pk,
            quantity=quantity,
        )

    return call


def test_two_dispatches_for_the_last_unit_one_wins(world: World):
    world.receive(world.compressor, "V1", 1)
    results = run_together(reserve_call(world), reserve_call(world))
    won = [r for r in results if isinstance(r, Reservation)]
    lost = [r for r in results if isinstance(r, Exception)]
    assert len(won) == 1 and len(lost) == 1
    assert isinstance(lost[0], Conflict) and lost[0].code == "insufficient_stock"
    assert "CP-35" in lost[0].message
    row = StockBalance.objects.get(part=world.compressor, location=world.bins["V1"])
    assert (row.on_hand, row.reserved) == (Decimal(1), Decimal(1))


def test_many_engineers_at_once_never_oversell(world: World):
    world.receive(world.compressor, "E1", 5)
    results = run_together(*[reserve_call(world, 1, "E1") for _ in range(12)])
    won = [r for r in results if isinstance(r, Reservation)]
    assert len(won) == 5
    assert all(
        isinstance(r, Conflict) and r.code == "insufficient_stock"
        for r in results
        if not isinstance(r, Reservation)
    )
    row = StockBalance.objects.get(part=world.compressor, location=world.bins["E1"])
    assert (row.on_hand, row.reserved) == (Decimal(5), Decimal(5))
    assert Movement.objects.filter(kind="reserve").count() == 5


def test_first_receipts_at_a_new_bin_both_count(world: World):
    def receive():
        return services.stock_receive(
            actor=world.keeper, part_id=world.filter.pk, location_id=world.bins["S1"].pk, quantity=2
        )

    results = run_together(receive, receive, receive)
    assert not [r for r in results if isinstance(r, Exception)]
    assert StockBalance.objects.get(part=world.filter, location=world.bins["S1"]).on_hand == 6


def test_the_same_idempotency_key_at_once_moves_stock_once(world: World):
    def receive():
        return services.stock_receive(
            actor=world.keeper,
            part_id=world.filter.pk,
            location_id=world.bins["C1"].pk,
            quantity=3,
            idempotency_key="grn-1",
        )

    results = run_together(receive, receive)
    assert not [r for r in results if isinstance(r, Exception)]
    assert results[0].pk == results[1].pk
    assert StockBalance.objects.get(part=world.filter, location=world.bins["C1"]).on_hand == 3


def test_dispatches_from_the_nearest_warehouse_race_without_overselling(world: World):
    world.receive(world.compressor, "S1", 2)
    world.receive(world.compressor, "C1", 1)

    def dispatch():
        return services.reserve_for_engineer(
            actor=world.keeper,
            part_id=world.compressor.pk,
            quantity=1,
            engineer_id=world.engineer.pk,
        )

    results = run_together(*[dispatch for _ in range(5)])
    won = [r for r in results if isinstance(r, list)]
    assert len(won) == 3
    assert sorted(r[0].location.code for r in won) == ["C1", "S1", "S1"]
    assert all(
        isinstance(r, Conflict) and r.code == "insufficient_stock"
        for r in results
        if not isinstance(r, list)
    )
