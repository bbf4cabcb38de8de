"""Opportunities (商机): made, listed by stage, moved along with an exact amount, made from a ticket
and linked both ways, and seen only within the viewer's data scope."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jingwei.core.errors import Invalid
from jingwei.org.scope import actor_for
from jingwei.tickets import services
from jingwei.tickets.models import Opportunity, Source, Ticket

from ..customers.factories import make_customer
from ..factories import grant
from .test_tickets import create, patch, post


@pytest.fixture
def customer(org, admin) -> Any:
    return make_customer(
        admin, "上海申通制冷设备有限公司", "13812345678", region_id=org.shanghai.pk
    )


@pytest.fixture
def south_customer(org, admin) -> Any:
    return make_customer(admin, "广州粤海贸易", "13922223333", region_id=org.guangzhou.pk)


def new(client: Any, customer: Any, *, status: int = 201, **body: Any) -> dict[str, Any]:
    body = {"title": "冷库机组更换", "customer_id": customer.pk, **body}
    r = post(client, "/api/opportunities", body)
    assert r.status_code == status, r.json()
    data: dict[str, Any] = r.json()
    return data


def titles(client: Any, **query: Any) -> list[str]:
    r = client.get("/api/opportunities", query)
    assert r.status_code == 200, r.json()
    return sorted(o["title"] for o in r.json()["items"])


def test_an_opportunity_is_made_with_its_customer_and_an_exact_amount(
    org, admin, customer, client_as
):
    made = new(client_as(admin), customer, amount="128000.50", stage="qualified")

    assert made["customer_id"] == customer.pk
    assert made["stage"] == "qualified"
    assert Decimal(made["amount"]) == Decimal("128000.50")
    assert made["currency"] == "CNY"
    assert made["owner_id"] == admin.pk
    assert made["region_id"] == org.shanghai.pk  # the customer's region
    assert made["ticket_ids"] == []
    assert Opportunity.objects.get().amount == Decimal("128000.50")


@pytest.mark.parametrize("amount", ["1.005", "0.001", "-1", "abc"])
def test_a_wrong_amount_is_refused(org, admin, customer, client_as, amount):
    r = post(
        client_as(admin),
        "/api/opportunities",
        {"title": "冷库", "customer_id": customer.pk, "amount": amount},
    )

    assert r.status_code == 422
    assert r.json()["field"] == "amount"
    assert not Opportunity.objects.exists()


@pytest.mark.parametrize("amount", [Decimal("1.005"), Decimal("-0.01"), Decimal("1e12")])
def test_the_service_refuses_amounts_the_api_would(org, admin, customer, amount):
    with pytest.raises(Invalid) as caught:
        services.opportunity_create(
            actor=actor_for(admin), customer_id=customer.pk, title="冷库", amount=amount
        )

    assert caught.value.field == "amount"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    amount=st.decimals(
        min_value=Decimal("-1000"),
        max_value=Decimal("999999999999.999"),
        places=3,
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_an_amount_is_kept_exactly_or_refused(org, admin, customer, amount):
    fits = amount >= 0 and amount == amount.quantize(Decimal("0.01")) and amount < Decimal("1e12")
    try:
        made = services.opportunity_create(
            actor=actor_for(admin), customer_id=customer.pk, title="冷库", amount=amount
        )
    except Invalid as exc:
        assert not fits
        assert exc.field == "amount"
    else:
        assert fits
        made.refresh_from_db()
        assert made.amount == amount


def test_another_tenants_customer_cannot_be_named(org, admin, other_org, other_admin, client_as):
    theirs = make_customer(other_admin, "别家客户", "13711112222")

    r = post(client_as(admin), "/api/opportunities", {"title": "挖墙脚", "customer_id": theirs.pk})

    assert r.status_code == 422
    assert r.json()["field"] == "customer_id"


def test_the_list_filters_by_stage(org, admin, customer, client_as):
    c = client_as(admin)
    new(c, customer, title="冷库")
    new(c, customer, title="空调", stage="won")
    new(c, customer, title="风机", stage="won")

    assert titles(c, stage="won") == ["空调", "风机"]
    assert titles(c, stage="lead") == ["冷库"]
    assert titles(c) == ["冷库", "空调", "风机"]
    assert c.get("/api/opportunities", {"stage": "maybe"}).status_code == 422


def test_stage_and_amount_are_updated(org, admin, customer, client_as):
    c = client_as(admin)
    made = new(c, customer, amount="1000")

    r = patch(c, f"/api/opportunities/{made['id']}", {"stage": "negotiation", "amount": "98765.43"})

    assert r.status_code == 200
    assert r.json()["stage"] == "negotiation"
    assert Decimal(r.json()["amount"]) == Decimal("98765.43")
    assert Opportunity.objects.get().amount == Decimal("98765.43")


def test_an_update_with_three_decimals_changes_nothing(org, admin, customer, client_as):
    c = client_as(admin)
    made = new(c, customer, amount="1000.00")

    r = patch(c, f"/api/opportunities/{made['id']}", {"stage": "won", "amount": "1000.005"})

    assert r.status_code == 422
    assert r.json()["field"] == "amount"
    row = Opportunity.objects.get()
    assert (row.stage, row.amount) == ("lead", Decimal("1000.00"))


def test_the_amount_can_be_cleared_and_the_title_cannot(org, admin, customer, client_as):
    c = client_as(admin)
    made = new(c, customer, amount="1000.00")

    cleared = patch(c, f"/api/opportunities/{made['id']}", {"amount": None})
    no_title = patch(c, f"/api/opportunities/{made['id']}", {"title": None})

    assert cleared.status_code == 200
    assert cleared.json()["amount"] is None
    assert no_title.status_code == 422
    assert Opportunity.objects.get().title == "冷库机组更换"


# --- from a ticket ----------------------------------------------------------------------------


def test_a_ticket_makes_an_opportunity_linked_both_ways(org, admin, customer, shipped, client_as):
    c = client_as(admin)
    ticket = create(c, org, region_id=org.shanghai.pk)
    assert ticket["customer_id"] == customer.pk

    r = post(c, f"/api/tickets/{ticket['id']}/opportunity", {"amount": "45000.00"})

    assert r.status_code == 201
    opportunity = c.get(f"/api/opportunities/{r.json()['id']}").json()
    assert opportunity["ticket_ids"] == [ticket["id"]]
    assert opportunity["from_ticket_id"] == ticket["id"]
    assert opportunity["customer_id"] == customer.pk
    assert opportunity["region_id"] == org.shanghai.pk
    assert ticket["number"] in opportunity["title"]
    assert ticket["number"] in opportunity["source"]
    assert Decimal(opportunity["amount"]) == Decimal("45000.00")
    assert c.get(f"/api/tickets/{ticket['id']}").json()["opportunity_id"] == r.json()["id"]
    timeline = c.get(f"/api/tickets/{ticket['id']}/timeline").json()
    assert "ticket.opportunity_created" in [i["kind"] for i in timeline]
    listed = c.get("/api/tickets", {"opportunity_id": r.json()["id"]}).json()["items"]
    assert [t["id"] for t in listed] == [ticket["id"]]


def test_a_ticket_makes_only_one_opportunity(org, admin, customer, shipped, client_as):
    c = client_as(admin)
    ticket = create(c, org)
    post(c, f"/api/tickets/{ticket['id']}/opportunity", {"title": "首个"})

    r = post(c, f"/api/tickets/{ticket['id']}/opportunity", {"title": "第二个"})

    assert (r.status_code, r.json()["code"]) == (409, "already_linked")
    assert Opportunity.objects.count() == 1


def test_a_ticket_without_a_customer_cannot_make_one(org, admin, shipped, client_as):
    made = services.ticket_create(
        actor=None,
        tenant_id=org.tenant.pk,
        new=services.NewTicket(
            template_key="after_sales_repair",
            answers={},
            source=Source.EMAIL,
            source_key="<no-sender@example.com>",
            form_pending=True,
        ),
    )
    assert made.ticket.customer_id is None

    r = post(client_as(admin), f"/api/tickets/{made.ticket.pk}/opportunity", {})

    assert (r.status_code, r.json()["code"]) == (409, "no_customer")
    assert not Opportunity.objects.exists()


def test_a_ticket_can_join_an_existing_opportunity(org, admin, customer, shipped, client_as):
    c = client_as(admin)
    opportunity = new(c, customer)

    first = create(c, org, opportunity_id=opportunity["id"])
    second = create(c, org)
    patch(c, f"/api/tickets/{second['id']}", {"opportunity_id": opportunity["id"]})

    linked = c.get(f"/api/opportunities/{opportunity['id']}").json()
    assert linked["ticket_ids"] == sorted([first["id"], second["id"]])
    assert Ticket.objects.filter(opportunity_id=opportunity["id"]).count() == 2


def test_making_one_from_a_ticket_needs_opportunity_rights(
    org, admin, shanghai_agent, customer, shipped, client_as
):
    grant(shanghai_agent, ["ticket.view", "ticket.handle"], "self")
    c = client_as(admin)
    ticket = create(c, org)
    post(c, f"/api/tickets/{ticket['id']}/assign", {"owner_id": shanghai_agent.pk})

    r = post(client_as(shanghai_agent), f"/api/tickets/{ticket['id']}/opportunity", {})

    assert r.status_code == 403
    assert not Opportunity.objects.exists()


# --- who sees which opportunity ---------------------------------------------------------------


@pytest.fixture
def pipeline(org, admin, shanghai_agent, customer, south_customer, client_as) -> dict[str, Any]:
    c = client_as(admin)
    return {
        "mine": new(c, customer, title="王芳的", owner_id=shanghai_agent.pk),
        "east": new(c, customer, title="华东的"),
        "south": new(c, south_customer, title="华南的"),
    }


def test_an_agent_with_self_scope_sees_only_their_opportunities(
    org, shanghai_agent, pipeline, client_as
):
    grant(shanghai_agent, ["opportunity.view"], "self")
    c = client_as(shanghai_agent)

    assert titles(c) == ["王芳的"]
    assert c.get(f"/api/opportunities/{pipeline['east']['id']}").status_code == 404


def test_a_regional_manager_sees_the_regions_opportunities(org, east_manager, pipeline, client_as):
    grant(east_manager, ["opportunity.view", "opportunity.edit"], "region")
    c = client_as(east_manager)

    assert titles(c) == ["华东的", "王芳的"]
    assert c.get(f"/api/opportunities/{pipeline['south']['id']}").status_code == 404
    r = patch(c, f"/api/opportunities/{pipeline['south']['id']}", {"stage": "lost"})
    assert r.status_code == 404
    assert Opportunity.objects.get(pk=pipeline["south"]["id"]).stage == "lead"


def test_a_regional_manager_cannot_move_an_opportunity_out_of_their_region(
    org, east_manager, pipeline, client_as
):
    grant(east_manager, ["opportunity.view", "opportunity.edit"], "region")
    c = client_as(east_manager)

    r = patch(c, f"/api/opportunities/{pipeline['east']['id']}", {"region_id": org.south.pk})

    assert (r.status_code, r.json()["code"], r.json()["field"]) == (
        403,
        "out_of_scope",
        "region_id",
    )
    assert Opportunity.objects.get(pk=pipeline["east"]["id"]).region_id == org.shanghai.pk
    moved = patch(c, f"/api/opportunities/{pipeline['east']['id']}", {"region_id": org.pudong.pk})
    assert moved.status_code == 200


def test_another_tenants_opportunity_is_not_found(org, pipeline, other_org, other_admin, client_as):
    c = client_as(other_admin)

    assert titles(c) == []
    for key in ("mine", "east", "south"):
        oid = pipeline[key]["id"]
        assert c.get(f"/api/opportunities/{oid}").status_code == 404
        assert patch(c, f"/api/opportunities/{oid}", {"stage": "lost"}).status_code == 404
    assert set(Opportunity.objects.values_list("stage", flat=True)) == {"lead"}


def test_viewing_opportunities_needs_the_permission(org, shanghai_agent, pipeline, client_as):
    assert client_as(shanghai_agent).get("/api/opportunities").status_code == 403
