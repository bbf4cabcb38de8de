"""The balances are a cache of the movement log: after any sequence of operations (some refused),
every balance equals the sum of its movements and nothing is negative."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jingwei.catalog import services
from jingwei.catalog.models import Movement, Reservation, StockBalance
from jingwei.core.errors import DomainError

from .conftest import World

BINS = ["C1", "E1", "V1"]
OPS = ["receive", "issue", "return", "transfer", "adjust", "take", "reserve", "consume", "release"]

operation = st.tuples(
    st.sampled_from(OPS),
    st.sampled_from(["compressor", "filter"]),
    st.sampled_from(BINS),
    st.sampled_from(BINS),
    st.integers(min_value=1, max_value=6),
    st.sampled_from(["1", "0.5", "2.25"]),
)


def apply(world: World, op: tuple[str, str, str, str, int, str]) -> None:
    kind, part_name, here, there, whole, fraction = op
    part = getattr(world, part_name)
    amount = Decimal(whole) * Decimal(fraction)
    common: dict[str, Any] = {"actor": world.keeper, "part_id": part.pk}
    location = world.bins[here].pk
    if kind == "receive":
        services.stock_receive(**common, location_id=location, quantity=amount)
    elif kind == "issue":
        services.stock_issue(**common, location_id=location, quantity=amount)
    elif kind == "return":
        services.stock_return(**common, location_id=location, quantity=amount)
    elif kind == "transfer":
        services.stock_transfer(
            **common,
            from_location_id=location,
            to_location_id=world.bins[there].pk,
            quantity=amount,
        )
    elif kind == "adjust":
        services.stock_adjust(**common, location_id=location, delta=-amount, reason="随机调整")
    elif kind == "take":
        services.stock_take(**common, location_id=location, counted=amount)
    elif kind == "reserve":
        services.stock_reserve(**common, location_id=location, quantity=amount)
    else:
        open_one = Reservation.objects.filter(part=part, status="reserved").order_by("id").first()
        if open_one is None:
            return
        settle = services.reservation_consume if kind == "consume" else services.reservation_release
        settle(
            actor=world.keeper,
            reservation_id=open_one.pk,
            quantity=min(amount, open_one.open_quantity),
        )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operation, min_size=1, max_size=25))
def test_balances_always_equal_the_sum_of_the_log(world: World, ops):
    refused = 0
    for op in ops:
        try:
            apply(world, op)
        except DomainError:
            refused += 1  # e.g. insufficient stock: refused, and nothing half-written

    sums: dict[tuple[int, int], tuple[Decimal, Decimal]] = defaultdict(
        lambda: (Decimal(0), Decimal(0))
    )
    for row in Movement.objects.values("part_id", "location_id").annotate(
        on_hand=Sum("delta_on_hand"), reserved=Sum("delta_reserved")
    ):
        sums[(row["part_id"], row["location_id"])] = (row["on_hand"], row["reserved"])
    balances = {
        (b.part_id, b.location_id): (b.on_hand, b.reserved) for b in StockBalance.objects.all()
    }
    for key in set(sums) | set(balances):
        assert balances.get(key, (Decimal(0), Decimal(0))) == sums[key], key
    for on_hand, reserved in balances.values():
        assert on_hand >= 0 and reserved >= 0 and reserved <= on_hand
    # Open reservations are exactly what the balances hold reserved.
    held: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    for r in Reservation.objects.filter(status="reserved"):
        held[(r.part_id, r.location_id)] += r.open_quantity
    for key, (_, reserved) in balances.items():
        assert held.get(key, Decimal(0)) == reserved, key
