"""The shipped after-sales SOP with real parts: the parts listed at 派单 are reserved at the
engineer's nearest warehouse, consumed when the work is accepted, and what was not used goes
back; a shortage does not stop the ticket but is shown to the dispatcher and announced."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jingwei.catalog.models import Movement, Reservation
from jingwei.flows import services as flows
from jingwei.flows.models import Instance
from jingwei.notify.models import Event
from jingwei.org.scope import actor_for
from jingwei.tickets.models import Ticket

from ..tickets.test_tickets import complete_step, create, open_tasks
from .conftest import World, balance

D = Decimal


def dispatch(admin: Any, ticket_id: int, **data: Any) -> Instance:
    (task,) = [t for t in open_tasks(ticket_id) if t.name == "派单"]
    flows.task_complete(actor=actor_for(admin), task_id=task.pk, data=data)
    return Instance.objects.get(pk=Ticket.objects.get(pk=ticket_id).instance_id)


def finish(admin: Any, ticket_id: int, **handled: Any) -> Instance:
    (task,) = [t for t in open_tasks(ticket_id) if t.name == "处理"]
    flows.task_complete(actor=actor_for(admin), task_id=task.pk, data=handled)
    complete_step(admin, ticket_id, "验收", outcome="approve")
    return Instance.objects.get(pk=Ticket.objects.get(pk=ticket_id).instance_id)


def test_listed_parts_are_reserved_at_dispatch_and_consumed_at_completion(
    shipped, org, admin, client_as, world: World
):
    world.receive(world.compressor, "V1", 1)
    world.receive(world.filter, "E1", 5)
    ticket = create(client_as(admin), org, region_id=org.pudong.pk)
    complete_step(admin, ticket["id"], "受理")

    instance = dispatch(
        admin,
        ticket["id"],
        engineer=world.engineer.employee_no,
        parts=[world.compressor.pk, {"id": world.filter.pk, "qty": 2}],
    )

    assert [t.name for t in open_tasks(ticket["id"])] == ["处理"]
    assert balance(world.compressor, world.bins["V1"]) == (D(1), D(1))
    assert balance(world.filter, world.bins["E1"]) == (D(5), D(2))
    summary = instance.data["parts_reservation"]
    assert summary["short"] == []
    assert {(r["code"], r["quantity"]) for r in summary["reserved"]} == {
        ("CP-35", "1"),
        ("FT-01", "2"),
    }
    assert {r.ref_label for r in Reservation.objects.all()} == {ticket["number"]}
    assert "deferred_actions" not in instance.data

    instance = finish(admin, ticket["id"])

    assert balance(world.compressor, world.bins["V1"]) == (D(0), D(0))
    assert balance(world.filter, world.bins["E1"]) == (D(3), D(0))
    assert set(Reservation.objects.values_list("status", flat=True)) == {"consumed"}
    consumed = instance.data["parts_consumption"]
    assert consumed["cost"] == "1364.00"  # 1280 + 2 × 42
    assert Ticket.objects.get(pk=ticket["id"]).stage == "等待 1 天"


def test_parts_reported_unused_are_released_at_completion(
    shipped, org, admin, client_as, world: World
):
    world.receive(world.filter, "V1", 4)
    ticket = create(client_as(admin), org, region_id=org.pudong.pk)
    complete_step(admin, ticket["id"], "受理")
    dispatch(
        admin,
        ticket["id"],
        engineer=world.engineer.employee_no,
        parts=[{"id": world.filter.pk, "qty": 3}],
    )

    instance = finish(admin, ticket["id"], parts_used=[world.filter.pk])

    assert balance(world.filter, world.bins["V1"]) == (D(3), D(0))
    (reservation,) = Reservation.objects.all()
    assert (reservation.consumed, reservation.released) == (D(1), D(2))
    assert [r["quantity"] for r in instance.data["parts_consumption"]["released"]] == ["2"]


def test_a_shortage_does_not_stop_the_ticket_and_is_announced(
    shipped, org, admin, client_as, world: World
):
    world.receive(world.compressor, "V1", 1)
    world.receive(world.compressor, "N1", 4)
    ticket = create(client_as(admin), org, region_id=org.pudong.pk)
    complete_step(admin, ticket["id"], "受理")

    instance = dispatch(
        admin,
        ticket["id"],
        engineer=world.engineer.employee_no,
        parts=[{"id": world.compressor.pk, "qty": 3}],
    )

    assert [t.name for t in open_tasks(ticket["id"])] == ["处理"]
    assert balance(world.compressor, world.bins["V1"]) == (D(1), D(1))  # what could be held
    assert balance(world.compressor, world.bins["N1"]) == (D(4), D(0))  # another region's
    (short,) = instance.data["parts_reservation"]["short"]
    assert (short["wanted"], short["reserved"], short["missing"]) == ("3", "1", "2")
    assert short["suggestions"]["transfer"]["from_warehouse"] == "华南仓"
    assert short["suggestions"]["transfer"]["to_warehouse"] == "杨帆车载仓"
    assert "建议从「华南仓」调拨 2台到「杨帆车载仓」" in short["message"]
    (event,) = Event.objects.filter(name="catalog.parts_short")
    assert event.payload["ticket_number"] == ticket["number"]
    assert event.payload["region_id"] == org.pudong.pk


def test_a_ticket_without_parts_moves_no_stock(shipped, org, admin, client_as, world: World):
    world.receive(world.compressor, "V1", 1)
    ticket = create(client_as(admin), org, region_id=org.pudong.pk)
    complete_step(admin, ticket["id"], "受理")
    dispatch(admin, ticket["id"], engineer=world.engineer.employee_no)
    finish(admin, ticket["id"])
    assert Movement.objects.count() == 1  # the receipt


def test_an_unknown_part_is_reported_not_fatal(shipped, org, admin, client_as, world: World):
    ticket = create(client_as(admin), org, region_id=org.pudong.pk)
    complete_step(admin, ticket["id"], "受理")
    instance = dispatch(admin, ticket["id"], engineer=world.engineer.employee_no, parts=[999999])
    assert instance.data["parts_reservation"]["short"][0]["reason"] == "unknown"
    assert [t.name for t in open_tasks(ticket["id"])] == ["处理"]


def test_parts_chosen_on_the_tickets_own_form_are_reserved_at_dispatch(
    shipped, org, admin, client_as, world: World
):
    from ..tickets.test_tickets import answers

    world.receive(world.filter, "V1", 3)
    ticket = create(
        client_as(admin),
        org,
        region_id=org.pudong.pk,
        answers=answers(org, parts=[world.filter.pk]),
    )
    complete_step(admin, ticket["id"], "受理")

    dispatch(admin, ticket["id"], engineer=world.engineer.employee_no)

    assert balance(world.filter, world.bins["V1"]) == (D(3), D(1))


def test_a_part_of_another_tenant_retired_or_missing_cannot_be_chosen_on_the_form(
    shipped, org, other_org, admin, client_as, world: World
):
    from jingwei.catalog.models import Part

    from ..tickets.test_tickets import answers

    theirs = Part.objects.create(tenant=other_org.tenant, code="X-1", name="别家的备件")
    retired = Part.objects.create(tenant=org.tenant, code="OLD-1", name="停用", is_active=False)
    for part_id in (theirs.pk, retired.pk, 987654321):
        answer = client_as(admin).post(
            "/api/tickets",
            {"template": "after_sales_repair", "answers": answers(org, parts=[part_id])},
            content_type="application/json",
        )
        assert answer.status_code == 422, part_id
        assert answer.json()["field"] == "parts"
    assert not Ticket.objects.exists()
