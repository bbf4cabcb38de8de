"""Stock movements as a storekeeper meets them: receive, transfer, reserve, consume, release,
return, adjust and stock-take change the balances; what would go negative is refused with nothing
written; retries with an idempotency key move stock once; the log cannot be edited; another
tenant's parts and bins are not found; low stock is announced; reorders are suggested."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone

from jingwei.audit.models import AuditEvent
from jingwei.catalog import services
from jingwei.catalog.models import Movement, Reservation, StockBalance
from jingwei.core.errors import Conflict, Forbidden, Invalid, NotFound
from jingwei.notify.models import Event
from jingwei.org.scope import actor_for

from ..factories import EmployeeFactory, grant
from .conftest import World, balance

D = Decimal


def test_receiving_puts_stock_on_hand_and_is_audited(world: World):
    movement = services.stock_receive(
        actor=world.keeper,
        part_id=world.compressor.pk,
        location_id=world.bins["C1"].pk,
        quantity="5",
        note="采购入库 PO-1",
    )
    assert balance(world.compressor, world.bins["C1"]) == (D(5), D(0))
    assert movement.kind == "receive" and movement.delta_on_hand == D(5)
    assert AuditEvent.objects.filter(action="catalog.stock_received").count() == 1


def test_parts_can_be_kept_in_metres(world: World):
    world.receive(world.filter, "C1", "12.5")
    services.stock_issue(
        actor=world.keeper,
        part_id=world.filter.pk,
        location_id=world.bins["C1"].pk,
        quantity="0.75",
    )
    assert balance(world.filter, world.bins["C1"]) == (D("11.75"), D(0))


def test_a_transfer_moves_stock_between_bins_in_one_go(world: World):
    world.receive(world.compressor, "C1", 5)
    out, into = services.stock_transfer(
        actor=world.keeper,
        part_id=world.compressor.pk,
        from_location_id=world.bins["C1"].pk,
        to_location_id=world.bins["V1"].pk,
        quantity=2,
    )
    assert (out.kind, into.kind) == ("transfer_out", "transfer_in")
    assert balance(world.compressor, world.bins["C1"]) == (D(3), D(0))
    assert balance(world.compressor, world.bins["V1"]) == (D(2), D(0))


def test_a_transfer_of_more_than_is_available_moves_nothing(world: World):
    world.receive(world.compressor, "C1", 1)
    with pytest.raises(Conflict) as refused:
        services.stock_transfer(
            actor=world.keeper,
            part_id=world.compressor.pk,
            from_location_id=world.bins["C1"].pk,
            to_location_id=world.bins["V1"].pk,
            quantity=2,
        )
    assert refused.value.code == "insufficient_stock"
    assert "CP-35" in refused.value.message and "中心仓/C1" in refused.value.message
    assert balance(world.compressor, world.bins["V1"]) == (D(0), D(0))
    assert Movement.objects.count() == 1  # the receipt only


def test_reserved_stock_stays_on_hand_but_is_no_longer_available(world: World):
    world.receive(world.compressor, "C1", 3)
    reservation = services.stock_reserve(
        actor=world.keeper,
        part_id=world.compressor.pk,
        location_id=world.bins["C1"].pk,
        quantity=2,
        ref_type="ticket",
        ref_id="42",
    )
    row = StockBalance.objects.get(part=world.compressor, location=world.bins["C1"])
    assert (row.on_hand, row.reserved, row.available) == (D(3), D(2), D(1))
    assert reservation.status == "reserved"
    with pytest.raises(Conflict) as refused:
        services.stock_issue(
            actor=world.keeper,
            part_id=world.compressor.pk,
            location_id=world.bins["C1"].pk,
            quantity=2,
        )
    assert refused.value.code == "insufficient_stock"
    assert "可用 1台" in refused.value.message


def test_consuming_a_reservation_takes_the_parts_off_hand(world: World):
    world.receive(world.compressor, "C1", 3)
    reservation = services.stock_reserve(
        actor=world.keeper, part_id=world.compressor.pk, location_id=world.bins["C1"].pk, quantity=2
    )
    done = services.reservation_consume(actor=world.keeper, reservation_id=reservation.pk)
    assert done.status == "consumed" and done.consumed == D(2)
    assert balance(world.compressor, world.bins["C1"]) == (D(1), D(0))


def test_part_of_a_reservation_can_be_used_and_the_rest_released(world: World):
    world.receive(world.compressor, "C1", 3)
    reservation = services.stock_reserve(
        actor=world.keeper, part_id=world.compressor.pk, location_id=world.bins["C1"].pk, quantity=3
    )
    services.reservation_consume(actor=world.keeper, reservation_id=reservation.pk, quantity=1)
    done = services.reservation_release(actor=world.keeper, reservation_id=reservation.pk)
    assert (done.status, done.consumed, done.released) == ("consumed", D(1), D(2))
    assert balance(world.compressor, world.bins["C1"]) == (D(2), D(0))
    with pytest.raises(Conflict) as closed:
        services.reservation_release(actor=world.keeper, reservation_id=reservation.pk)
    assert closed.value.code == "reservation_closed"


def test_a_released_reservation_makes_the_parts_available_again(world: World):
    world.receive(world.compressor, "C1", 1)
    reservation = services.stock_reserve(
        actor=world.keeper, part_id=world.compressor.pk, location_id=world.bins["C1"].pk, quantity=1
    )
    done = services.reservation_release(actor=world.keeper, reservation_id=reservation.pk)
    assert done.status == "released"
    assert balance(world.compressor, world.bins["C1"]) == (D(1), D(0))


def test_returned_parts_come_back_on_hand(world: World):
    world.receive(world.compressor, "V1", 1)
    services.stock_issue(
        actor=world.keeper, part_id=world.compressor.pk, location_id=world.bins["V1"].pk, quantity=1
    )
    services.stock_return(
        actor=world.keeper,
        part_id=world.compressor.pk,
        location_id=world.bins["V1"].pk,
        quantity=1,
        note="未使用，退回",
    )
    assert balance(world.compressor, world.bins["V1"]) == (D(1), D(0))


def test_an_adjustment_needs_a_reason(world: World):
    world.receive(world.compressor, "C1", 2)
    with pytest.raises(Invalid) as refused:
        services.stock_adjust(
            actor=world.keeper,
            part_id=world.compressor.pk,
            location_id=world.bins["C1"].pk,
            delta=-1,
            reason=" ",
        )
    assert refused.value.field == "reason"
    services.stock_adjust(
        actor=world.keeper,
        part_id=world.compressor.pk,
        location_id=world.bins["C1"].pk,
        delta=-1,
        reason="运输损坏",
    )
    assert balance(world.compressor, world.bins["C1"]) == (D(1), D(0))


def test_an_adjustment_below_zero_is_refused_and_writes_nothing(world: World):
    world.receive(world.compressor, "C1", 1)
    audits = AuditEvent.objects.count()
    with pytest.raises(Conflict) as refused:
        services.stock_adjust(
            actor=world.keeper,
            part_id=world.compressor.pk,
            location_id=world.bins["C1"].pk,
            delta="-2",
            reason="丢失",
        )
    assert refused.value.code == "insufficient_stock"
    assert "变频压缩机" in refused.value.message
    assert balance(world.compressor, world.bins["C1"]) == (D(1), D(0))
    assert Movement.objects.count() == 1
    assert AuditEvent.objects.count() == audits


def test_a_stock_take_books_the_difference(world: World):
    world.receive(world.compressor, "C1", 5)
    counted = services.stock_take(
        actor=world.keeper, part_id=world.compressor.pk, location_id=world.bins["C1"].pk, counted=3
    )
    assert (counted.kind, counted.quantity, counted.delta_on_hand) == ("count", D(3), D(-2))
    assert balance(world.compressor, world.bins["C1"]) == (D(3), D(0))


def test_a_stock_take_below_what_is_reserved_is_refused(world: World):
    world.receive(world.compressor, "C1", 5)
    services.stock_reserve(
        actor=world.keeper, part_id=world.compressor.pk, location_id=world.bins["C1"].pk, quantity=4
    )
    with pytest.raises(Conflict) as refused:
        services.stock_take(
            actor=world.keeper,
            part_id=world.compressor.pk,
            location_id=world.bins["C1"].pk,
            counted=3,
        )
    assert refused.value.code == "below_reserved"
    assert balance(world.compressor, world.bins["C1"]) == (D(5), D(4))


@pytest.mark.parametrize("quantity", [0, -1, "abc", "1.0001", 0.1, None])
def test_bad_quantities_are_refused_naming_the_field(world: World, quantity):
    with pytest.raises(Invalid) as refused:
        services.stock_receive(
            actor=world.keeper,
            part_id=world.compressor.pk,
            location_id=world.bins["C1"].pk,
            quantity=quantity,
        )
    assert refused.value.field == "quantity"
    assert not Movement.objects.exists()


# --- idempotency ----------------------------------------------------------------------------


def test_a_retried_receipt_with_the_same_key_moves_stock_once(world: World):
    calls = [
        services.stock_receive(
            actor=world.keeper,
            part_id=world.compressor.pk,
            location_id=world.bins["C1"].pk,
            quantity=4,
            idempotency_key="erp-grn-77",
        )
        for _ in range(2)
    ]
    assert calls[0].pk == calls[1].pk
    assert balance(world.compressor, world.bins["C1"]) == (D(4), D(0))


def test_a_retried_transfer_gives_back_both_lines(world: World):
    world.receive(world.compressor, "C1", 4)

    def transfer() -> tuple[Movement, Movement]:
        return services.stock_transfer(
            actor=world.keeper,
            part_id=world.compressor.pk,
            from_location_id=world.bins["C1"].pk,
            to_location_id=world.bins["E1"].pk,
            quantity=1,
            idempotency_key="move-1",
        )

    first, again = transfer(), transfer()
    assert [m.pk for m in first] == [m.pk for m in again]
    assert balance(world.compressor, world.bins["E1"]) == (D(1), D(0))


def test_a_retried_reservation_holds_the_parts_once(world: World):
    world.receive(world.compressor, "C1", 4)
    held = [
        services.stock_reserve(
            actor=world.keeper,
            part_id=world.compressor.pk,
            location_id=world.bins["C1"].pk,
            quantity=3,
            idempotency_key="dispatch-9",
        )
        for _ in range(2)
    ]
    assert held[0].pk == held[1].pk
    assert balance(world.compressor, world.bins["C1"]) == (D(4), D(3))


def test_a_key_reused_for_other_work_is_refused(world: World):
    world.receive(world.compressor, "C1", 4)
    services.stock_receive(
        actor=world.keeper,
        part_id=world.filter.pk,
        location_id=world.bins["C1"].pk,
        quantity=1,
        idempotency_key="k1",
    )
    with pytest.raises(Conflict) as refused:
        services.stock_receive(
            actor=world.keeper,
            part_id=world.compressor.pk,
            location_id=world.bins["C1"].pk,
            quantity=1,
            idempotency_key="k1",
        )
    assert refused.value.code == "idempotency_key_reused"


# --- the log is append-only -----------------------------------------------------------------


def test_a_movement_cannot_be_changed_or_deleted(world: World):
    world.receive(world.compressor, "C1", 2)
    movement = Movement.objects.get()
    movement.quantity = D(200)
    with pytest.raises(Conflict):
        movement.save()
    with pytest.raises(Conflict):
        movement.delete()
    with pytest.raises(Conflict):
        Movement.objects.filter(pk=movement.pk).update(quantity=D(0))
    with pytest.raises(Conflict):
        Movement.objects.filter(pk=movement.pk).delete()
    assert Movement.objects.get().quantity == D(2)


def test_no_catalog_code_updates_or_deletes_movements():
    source = Path(__file__).parents[2] / "src" / "jingwei" / "catalog"
    offending = []
    pattern = re.compile(r"Movement\.objects[^\n]*\.(update|delete|bulk_update)\(")
    for path in source.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        offending += [f"{path.name}: {m.group(0)}" for m in pattern.finditer(text)]
        offending += [
            f"{path.name}: {m.group(0)}"
            for m in re.finditer(r"movement\.(save|delete)\([^)]*\)", text)
        ]
    assert offending == []


# --- who may --------------------------------------------------------------------------------


def test_moving_stock_needs_catalog_manage(org, world: World, shanghai_agent):
    grant(shanghai_agent, ["catalog.view"], "tenant")
    with pytest.raises(Forbidden):
        services.stock_receive(
            actor=actor_for(shanghai_agent),
            part_id=world.compressor.pk,
            location_id=world.bins["C1"].pk,
            quantity=1,
        )
    assert not Movement.objects.exists()


def test_a_regional_storekeeper_reaches_only_his_regions_bins(org, world: World):
    south_keeper = EmployeeFactory(tenant=org.tenant, region=org.south)
    grant(south_keeper, ["catalog.manage"], "region")
    actor = actor_for(south_keeper)
    services.stock_receive(
        actor=actor, part_id=world.compressor.pk, location_id=world.bins["N1"].pk, quantity=1
    )
    with pytest.raises(NotFound):
        services.stock_receive(
            actor=actor, part_id=world.compressor.pk, location_id=world.bins["E1"].pk, quantity=1
        )


def test_master_data_of_parts_needs_tenant_wide_rights(org, world: World):
    regional = EmployeeFactory(tenant=org.tenant, region=org.south)
    grant(regional, ["catalog.manage"], "region")
    with pytest.raises(Forbidden):
        services.part_save(actor=actor_for(regional), code="X-1", name="新备件")


def test_another_tenants_parts_and_bins_are_not_found(world: World, other_org, other_admin):
    theirs = actor_for(other_admin)
    their_part = services.part_save(actor=theirs, code="CP-35", name="别家的压缩机")
    their_house = services.warehouse_save(actor=theirs, kind="central", name="别家仓")
    their_bin = services.location_save(actor=theirs, warehouse_id=their_house.pk, code="C1")
    with pytest.raises(NotFound) as part_missing:
        services.stock_receive(
            actor=world.keeper, part_id=their_part.pk, location_id=world.bins["C1"].pk, quantity=1
        )
    assert part_missing.value.field == "part_id"
    with pytest.raises(NotFound) as bin_missing:
        services.stock_receive(
            actor=world.keeper, part_id=world.compressor.pk, location_id=their_bin.pk, quantity=1
        )
    assert bin_missing.value.field == "location_id"
    world.receive(world.compressor, "C1", 1)
    reservation = services.stock_reserve(
        actor=world.keeper, part_id=world.compressor.pk, location_id=world.bins["C1"].pk, quantity=1
    )
    with pytest.raises(NotFound):
        services.reservation_consume(actor=theirs, reservation_id=reservation.pk)
    assert not Movement.objects.filter(tenant_id=other_org.tenant.pk).exists()


def test_the_same_part_code_is_refused_in_a_tenant(world: World):
    with pytest.raises(Conflict) as refused:
        services.part_save(actor=world.keeper, code="CP-35", name="另一个压缩机")
    assert refused.value.field == "code"


def test_a_van_needs_an_engineer_and_takes_his_region(org, world: World):
    with pytest.raises(Invalid) as refused:
        services.warehouse_save(actor=world.keeper, kind="van", name="无主车")
    assert refused.value.field == "owner_id"
    assert world.van.region_id == org.pudong.pk


# --- low stock and reorders -----------------------------------------------------------------


def test_dropping_below_the_line_is_announced_once(org, world: World):
    world.receive(world.compressor, "E1", 4)
    services.threshold_set(
        actor=world.keeper,
        part_id=world.compressor.pk,
        location_id=world.bins["E1"].pk,
        minimum=2,
    )

    def issue() -> None:
        services.stock_issue(
            actor=world.keeper,
            part_id=world.compressor.pk,
            location_id=world.bins["E1"].pk,
            quantity=1,
        )

    issue()
    issue()  # 2 left: at the line, not below
    assert not Event.objects.filter(name="catalog.stock_low").exists()
    issue()  # 1 left: below
    issue()  # still below: no second alert
    (event,) = Event.objects.filter(name="catalog.stock_low")
    assert event.severity == "warning"
    assert event.payload["region_id"] == org.east.pk
    assert event.payload["available"] == "1"
    assert event.payload["part"]["code"] == "CP-35"


def test_a_reservation_can_take_stock_below_the_line(world: World):
    world.receive(world.compressor, "V1", 2)
    services.threshold_set(
        actor=world.keeper,
        part_id=world.compressor.pk,
        location_id=world.bins["V1"].pk,
        minimum=2,
    )
    services.stock_reserve(
        actor=world.keeper, part_id=world.compressor.pk, location_id=world.bins["V1"].pk, quantity=1
    )
    (event,) = Event.objects.filter(name="catalog.stock_low")
    assert event.payload["owner_id"] == world.engineer.pk


def test_reorders_cover_lead_time_and_safety_stock(world: World):
    world.receive(world.compressor, "E1", 39)
    services.threshold_set(
        actor=world.keeper,
        part_id=world.compressor.pk,
        location_id=world.bins["E1"].pk,
        minimum=10,
        safety_stock=5,
    )
    services.stock_issue(
        actor=world.keeper,
        part_id=world.compressor.pk,
        location_id=world.bins["E1"].pk,
        quantity=33,
    )
    services.stock_return(
        actor=world.keeper, part_id=world.compressor.pk, location_id=world.bins["E1"].pk, quantity=3
    )
    (suggestion,) = services.reorder_suggestions(actor=world.keeper, days=30)
    # 30 used in 30 days = 1 a day; lead time 10 days + safety 5 = 15; 9 available -> order 6.
    assert suggestion.warehouse_id == world.east.pk
    assert suggestion.daily_consumption == D(1)
    assert suggestion.available == D(9)
    assert suggestion.suggested == D(6)


def test_nothing_is_suggested_while_stock_is_above_the_line(world: World):
    world.receive(world.compressor, "E1", 40)
    services.threshold_set(
        actor=world.keeper, part_id=world.compressor.pk, location_id=world.bins["E1"].pk, minimum=10
    )
    assert services.reorder_suggestions(actor=world.keeper) == []


def test_old_consumption_does_not_count(world: World):
    world.receive(world.compressor, "E1", 12)
    services.threshold_set(
        actor=world.keeper, part_id=world.compressor.pk, location_id=world.bins["E1"].pk, minimum=5
    )
    services.stock_issue(
        actor=world.keeper, part_id=world.compressor.pk, location_id=world.bins["E1"].pk, quantity=9
    )
    later = timezone.now() + timedelta(days=60)
    (suggestion,) = services.reorder_suggestions(actor=world.keeper, days=30, at=later)
    assert suggestion.daily_consumption == D(0)
    assert suggestion.suggested == D(2)  # back up to the line of 5


def test_reservations_are_listed_against_their_job(world: World):
    world.receive(world.compressor, "C1", 2)
    services.stock_reserve(
        actor=world.keeper,
        part_id=world.compressor.pk,
        location_id=world.bins["C1"].pk,
        quantity=1,
        ref_type="ticket",
        ref_id="7",
        ref_label="GD20260101-0007",
    )
    assert Reservation.objects.filter(ref_type="ticket", ref_id="7").count() == 1
