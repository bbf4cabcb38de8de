"""Region pools (公海) as people use them: managers set up a region's pool, agents see the pool of
their region and claim from it within its limits, owners put customers back, managers assign,
and customers nobody followed up go back by themselves."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jingwei.audit.models import AuditEvent
from jingwei.core.errors import Conflict
from jingwei.core.models import Timer, TimerStatus
from jingwei.customers import services
from jingwei.customers.identities import IdentityInput
from jingwei.customers.models import Customer, CustomerPool, OwnershipChange
from jingwei.customers.services import pools
from jingwei.notify.models import Notification
from jingwei.org.models import Employee
from jingwei.org.scope import actor_for

from ..concurrency import run_together
from ..factories import EmployeeFactory, grant, make_region
from .factories import make_customer

pytestmark = pytest.mark.django_db

JSON = "application/json"


def unclaimed(org: Any, name: str, phone: str, region: Any) -> Customer:
    """A customer nobody owns yet (registered by a channel, not a person)."""
    return services.customer_resolve(
        actor=None,
        tenant_id=org.tenant.pk,
        identities=[IdentityInput("phone", phone)],
        profile={"name": name, "region_id": region.pk},
    ).customer


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return [c["id"] for c in response.json()["items"]]


def make_pool(org: Any, region: Any, **rules: Any) -> CustomerPool:
    return CustomerPool.objects.create(
        tenant=org.tenant, region=region, name=f"{region.name}公海", **rules
    )


@pytest.fixture
def east_pool(org) -> CustomerPool:
    return make_pool(org, org.east, claim_limit=3, daily_claim_limit=2, return_after_days=30)


@pytest.fixture
def agent(shanghai_agent) -> Employee:
    """王芳, 上海 agent: views and edits only her own customers ("self" scope)."""
    grant(shanghai_agent, ["customer.edit"], "self")
    return shanghai_agent


@pytest.fixture
def south_agent(org) -> Employee:
    e = EmployeeFactory(
        tenant=org.tenant, name="陈强", department=org.south_dept, region=org.guangzhou
    )
    grant(e, ["customer.view", "customer.edit"], "self")
    return e


@pytest.fixture
def east_assigner(east_manager) -> Employee:
    """张伟 with customer.edit, customer.assign and customer.manage over 华东."""
    grant(east_manager, ["customer.edit", "customer.assign", "customer.manage"], "region")
    return east_manager


@pytest.fixture
def pool_book(org, east_pool) -> dict[str, Customer]:
    return {
        "pudong": unclaimed(org, "王建国", "13817450021", org.pudong),
        "shanghai": unclaimed(org, "李秀英", "13916620318", org.shanghai),
        "east": unclaimed(org, "赵敏", "13700001111", org.east),
        "guangzhou": unclaimed(org, "黄丽", "13926075512", org.guangzhou),
    }


# --- which pool --------------------------------------------------------------------------------


REGIONS = ("east", "shanghai", "pudong", "south", "guangzhou")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(with_pool=st.sets(st.sampled_from(REGIONS)))
def test_a_region_belongs_to_its_own_pool_else_to_the_nearest_above(org, with_pool):
    made = {name: make_pool(org, getattr(org, name)) for name in with_pool}
    try:
        mapping = pools.region_pools(org.tenant.pk)
        for name in REGIONS:
            region = getattr(org, name)
            # walk up by parent: the model's own notion of "above"
            expected, node = None, region
            while node is not None and expected is None:
                expected = next((p for n, p in made.items() if getattr(org, n) == node), None)
                node = node.parent
            found = pools.pool_of(org.tenant.pk, region.pk)
            assert found == expected, name
            assert mapping.get(region.pk) == (expected.pk if expected else None), name
    finally:
        CustomerPool.objects.filter(pk__in=[p.pk for p in made.values()]).delete()


# --- managing pools ----------------------------------------------------------------------------


def test_admin_opens_a_pool_named_after_its_region(admin, org, client_as):
    r = client_as(admin).post(
        "/api/customers/pools", {"region_id": org.shanghai.pk}, content_type=JSON
    )

    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["name"], body["region_name"], body["claim_limit"]) == ("上海公海", "上海", 50)
    assert body["unclaimed_count"] == 0
    assert AuditEvent.objects.filter(action="customers.pool.created").count() == 1


def test_a_region_has_only_one_pool(admin, org, east_pool, client_as):
    r = client_as(admin).post("/api/customers/pools", {"region_id": org.east.pk}, content_type=JSON)

    assert r.status_code == 409, r.content
    assert (r.json()["code"], r.json()["field"]) == ("pool_exists", "region_id")
    assert CustomerPool.objects.count() == 1


def test_regional_manager_manages_only_the_pools_of_their_regions(
    org, east_assigner, east_pool, client_as
):
    south_pool = make_pool(org, org.south)
    client = client_as(east_assigner)

    created = client.post("/api/customers/pools", {"region_id": org.pudong.pk}, content_type=JSON)
    refused = client.post(
        "/api/customers/pools", {"region_id": org.guangzhou.pk}, content_type=JSON
    )
    changed = client.patch(
        f"/api/customers/pools/{east_pool.pk}", {"claim_limit": 80}, content_type=JSON
    )
    hidden = client.patch(
        f"/api/customers/pools/{south_pool.pk}", {"claim_limit": 80}, content_type=JSON
    )
    not_deleted = client.delete(f"/api/customers/pools/{south_pool.pk}")

    assert created.status_code == 201, created.content
    assert (refused.status_code, refused.json()["field"]) == (403, "region_id")
    assert (changed.status_code, changed.json()["claim_limit"]) == (200, 80)
    assert hidden.status_code == not_deleted.status_code == 404
    south_pool.refresh_from_db()
    assert south_pool.claim_limit == 50


def test_manager_cannot_move_a_pool_out_of_their_regions(org, east_assigner, east_pool, client_as):
    r = client_as(east_assigner).patch(
        f"/api/customers/pools/{east_pool.pk}", {"region_id": org.south.pk}, content_type=JSON
    )

    assert (r.status_code, r.json()["field"]) == (403, "region_id")
    east_pool.refresh_from_db()
    assert east_pool.region_id == org.east.pk


def test_without_customer_manage_nobody_changes_a_pool(org, agent, east_pool, client_as):
    client = client_as(agent)

    assert (
        client.post(
            "/api/customers/pools", {"region_id": org.pudong.pk}, content_type=JSON
        ).status_code
        == 403
    )
    assert (
        client.patch(
            f"/api/customers/pools/{east_pool.pk}", {"enabled": False}, content_type=JSON
        ).status_code
        == 403
    )
    assert client.delete(f"/api/customers/pools/{east_pool.pk}").status_code == 403


def test_deleting_a_pool_leaves_its_customers_to_the_pool_above(admin, org, east_pool, client_as):
    shanghai_pool = make_pool(org, org.shanghai)
    customer = unclaimed(org, "王建国", "13817450021", org.pudong)
    assert pools.pool_of(org.tenant.pk, org.pudong.pk) == shanghai_pool

    r = client_as(admin).delete(f"/api/customers/pools/{shanghai_pool.pk}")

    assert r.status_code == 204
    assert pools.pool_of(org.tenant.pk, customer.region_id) == east_pool
    assert ids(client_as(admin).get(f"/api/customers/pools/{east_pool.pk}/customers")) == [
        customer.pk
    ]


def test_each_reader_sees_the_pools_of_their_region_and_those_above(
    org, admin, agent, south_agent, east_pool, client_as
):
    shanghai_pool = make_pool(org, org.shanghai)
    south_pool = make_pool(org, org.south)

    def names(employee: Employee) -> list[str]:
        r = client_as(employee).get("/api/customers/pools")
        assert r.status_code == 200, r.content
        return [p["name"] for p in r.json()["items"]]

    assert sorted(names(admin)) == sorted([east_pool.name, shanghai_pool.name, south_pool.name])
    assert sorted(names(agent)) == sorted([east_pool.name, shanghai_pool.name])
    assert names(south_agent) == [south_pool.name]


def test_another_tenant_never_sees_nor_changes_our_pools(east_pool, other_admin, client_as):
    client = client_as(other_admin)
    path = f"/api/customers/pools/{east_pool.pk}"

    assert ids(client.get("/api/customers/pools")) == []
    for r in (
        client.get(path),
        client.get(f"{path}/customers"),
        client.patch(path, {"claim_limit": 1}, content_type=JSON),
        client.delete(path),
    ):
        assert (r.status_code, r.json()["code"]) == (404, "not_found")
    east_pool.refresh_from_db()
    assert east_pool.claim_limit == 3


def test_a_pool_cannot_be_opened_on_another_tenants_region(admin, other_org, client_as):
    client = client_as(admin)

    foreign = client.post(
        "/api/customers/pools", {"region_id": other_org.east.pk}, content_type=JSON
    )
    missing = client.post("/api/customers/pools", {"region_id": 987654321}, content_type=JSON)

    assert foreign.status_code == missing.status_code == 400
    assert foreign.json() == missing.json()
    assert foreign.json()["field"] == "region_id"
    assert not CustomerPool.objects.exists()


# --- what is in a pool -------------------------------------------------------------------------


def test_the_pool_lists_its_unclaimed_customers_with_masked_phones(
    org, admin, agent, east_manager, pool_book, east_pool, client_as
):
    owned = make_customer(admin, "周杰", "13600002222", region_id=org.shanghai.pk)

    as_agent = client_as(agent).get(f"/api/customers/pools/{east_pool.pk}/customers")
    as_manager = client_as(east_manager).get(f"/api/customers/pools/{east_pool.pk}/customers")

    listed = {c["name"]: c for c in as_agent.json()["items"]}
    assert set(listed) == {"王建国", "李秀英", "赵敏"}  # not 广州's, not an owned one
    assert owned.pk not in ids(as_manager)
    assert listed["王建国"]["phone"] == "138****0021"
    assert {c["phone"] for c in as_manager.json()["items"]} >= {"13817450021"}


def test_a_sub_region_with_its_own_pool_keeps_its_customers_out_of_the_pool_above(
    org, admin, pool_book, east_pool, client_as
):
    shanghai_pool = make_pool(org, org.shanghai)
    client = client_as(admin)

    east = ids(client.get(f"/api/customers/pools/{east_pool.pk}/customers"))
    shanghai = ids(client.get(f"/api/customers/pools/{shanghai_pool.pk}/customers"))

    assert east == [pool_book["east"].pk]
    assert set(shanghai) == {pool_book["pudong"].pk, pool_book["shanghai"].pk}
    counts = {
        p["name"]: p["unclaimed_count"] for p in client.get("/api/customers/pools").json()["items"]
    }
    assert counts == {"华东公海": 1, "上海公海": 2}


def test_an_agent_of_another_region_cannot_open_the_pool(south_agent, east_pool, client_as):
    client = client_as(south_agent)

    for path in (
        f"/api/customers/pools/{east_pool.pk}",
        f"/api/customers/pools/{east_pool.pk}/customers",
    ):
        r = client.get(path)
        assert (r.status_code, r.json()["code"]) == (404, "not_found")


# --- claiming ----------------------------------------------------------------------------------


def test_an_agent_claims_a_customer_from_her_regions_pool(agent, pool_book, client_as):
    customer = pool_book["pudong"]

    r = client_as(agent).post(f"/api/customers/{customer.pk}/claim")

    assert r.status_code == 200, r.content
    assert (r.json()["owner_id"], r.json()["phone"]) == (agent.pk, "138****0021")
    customer.refresh_from_db()
    assert customer.owner_id == agent.pk and customer.owned_since is not None
    change = OwnershipChange.objects.get(customer=customer)
    assert (change.kind, change.from_owner_id, change.to_owner_id) == ("claim", None, agent.pk)
    assert ids(client_as(agent).get("/api/customers")) == [customer.pk]


def test_a_claimed_customer_is_no_longer_in_the_pool_and_cannot_be_claimed_again(
    org, agent, pool_book, east_pool, client_as
):
    colleague = EmployeeFactory(tenant=org.tenant, name="刘洋", region=org.shanghai)
    grant(colleague, ["customer.view", "customer.edit"], "self")
    customer = pool_book["shanghai"]
    client_as(agent).post(f"/api/customers/{customer.pk}/claim")

    again = client_as(colleague).post(f"/api/customers/{customer.pk}/claim")

    assert (again.status_code, again.json()["code"]) == (409, "already_owned")
    assert customer.pk not in ids(
        client_as(colleague).get(f"/api/customers/pools/{east_pool.pk}/customers")
    )


def test_an_agent_of_another_region_cannot_claim_and_learns_nothing(
    south_agent, pool_book, client_as
):
    r = client_as(south_agent).post(f"/api/customers/{pool_book['pudong'].pk}/claim")
    missing = client_as(south_agent).post("/api/customers/987654321/claim")

    assert r.status_code == 404
    assert r.json() == missing.json()
    assert Customer.objects.get(pk=pool_book["pudong"].pk).owner_id is None


def test_claiming_needs_customer_edit(shanghai_agent, pool_book, client_as):
    r = client_as(shanghai_agent).post(f"/api/customers/{pool_book['pudong'].pk}/claim")

    assert (r.status_code, r.json()["code"]) == (403, "permission_denied")


def test_another_tenant_cannot_claim_our_customer(other_admin, pool_book, client_as):
    r = client_as(other_admin).post(f"/api/customers/{pool_book['pudong'].pk}/claim")

    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    assert not OwnershipChange.objects.exists()


def test_a_disabled_pool_cannot_be_claimed_from(agent, pool_book, east_pool, client_as):
    east_pool.enabled = False
    east_pool.save()

    r = client_as(agent).post(f"/api/customers/{pool_book['pudong'].pk}/claim")

    assert (r.status_code, r.json()["code"]) == (409, "pool_disabled")
    assert "已停用" in r.json()["message"]


def test_a_customer_of_a_region_without_a_pool_is_not_claimable(admin, pool_book, client_as):
    r = client_as(admin).post(f"/api/customers/{pool_book['guangzhou'].pk}/claim")

    assert (r.status_code, r.json()["code"]) == (409, "not_in_pool")


def test_the_claim_limit_counts_the_pools_customers_the_agent_owns(
    org, agent, east_pool, client_as
):
    east_pool.claim_limit, east_pool.daily_claim_limit = 2, 0
    east_pool.save()
    make_customer(agent, "自己登记的客户", "13500000001", region_id=org.shanghai.pk)
    make_customer(agent, "广州的客户", "13500000002", region_id=org.guangzhou.pk)  # other pool
    first, second = (unclaimed(org, f"客户{i}", f"1380000000{i}", org.shanghai) for i in range(2))
    client = client_as(agent)

    assert client.post(f"/api/customers/{first.pk}/claim").status_code == 200
    refused = client.post(f"/api/customers/{second.pk}/claim")

    assert refused.status_code == 409
    body = refused.json()
    assert (body["code"], body["field"]) == ("claim_limit_reached", "claim_limit")
    assert "领取上限" in body["message"] and "2" in body["message"]
    assert Customer.objects.get(pk=second.pk).owner_id is None


def test_the_daily_limit_counts_todays_claims_even_if_given_back(org, agent, east_pool, client_as):
    east_pool.claim_limit, east_pool.daily_claim_limit = 0, 2
    east_pool.save()
    a, b, c = (unclaimed(org, f"客户{i}", f"1380000000{i}", org.shanghai) for i in range(3))
    client = client_as(agent)
    client.post(f"/api/customers/{a.pk}/claim")
    client.post(f"/api/customers/{b.pk}/claim")
    client.post(f"/api/customers/{b.pk}/release", {"reason": "客户无意向"}, content_type=JSON)

    refused = client.post(f"/api/customers/{c.pk}/claim")

    assert refused.status_code == 409
    assert (refused.json()["code"], refused.json()["field"]) == (
        "daily_claim_limit_reached",
        "daily_claim_limit",
    )
    assert "每日领取上限" in refused.json()["message"]


def test_the_day_of_the_daily_limit_is_the_regions_local_day(org, agent, east_pool):
    """23:30 in Shanghai and 00:30 the next morning are two days, though one UTC date."""
    east_pool.claim_limit, east_pool.daily_claim_limit = 0, 1
    east_pool.save()
    a, b, c = (unclaimed(org, f"客户{i}", f"1380000000{i}", org.shanghai) for i in range(3))
    actor = actor_for(agent)
    late = datetime(2030, 1, 1, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    services.customer_claim(actor=actor, customer_id=a.pk, now=late)

    with pytest.raises(Conflict) as same_day:
        services.customer_claim(actor=actor, customer_id=b.pk, now=late + timedelta(minutes=20))
    services.customer_claim(actor=actor, customer_id=c.pk, now=late + timedelta(hours=1))

    assert same_day.value.code == "daily_claim_limit_reached"
    assert Customer.objects.get(pk=c.pk).owner_id == agent.pk


def test_limits_of_zero_mean_no_limit(org, agent, east_pool):
    east_pool.claim_limit = east_pool.daily_claim_limit = 0
    east_pool.save()
    actor = actor_for(agent)
    for i in range(5):
        customer = unclaimed(org, f"客户{i}", f"1380000000{i}", org.shanghai)
        services.customer_claim(actor=actor, customer_id=customer.pk)

    assert Customer.objects.filter(owner=agent).count() == 5


def test_a_merged_customers_id_points_to_the_survivor(admin, agent, org, east_pool, client_as):
    keeper = unclaimed(org, "王建国", "13817450021", org.shanghai)
    duplicate = unclaimed(org, "王建国", "13817450022", org.shanghai)
    services.customer_merge(actor=actor_for(admin), target_id=keeper.pk, source_id=duplicate.pk)

    r = client_as(agent).post(f"/api/customers/{duplicate.pk}/claim")

    assert (r.status_code, r.json()["code"]) == (409, "customer_merged")
    assert str(keeper.pk) in r.json()["message"]


# --- releasing and assigning -------------------------------------------------------------------


def test_the_owner_puts_a_customer_back_with_a_reason(agent, pool_book, east_pool, client_as):
    customer = pool_book["pudong"]
    client = client_as(agent)
    client.post(f"/api/customers/{customer.pk}/claim")
    client.post(
        f"/api/customers/{customer.pk}/follow-ups",
        {"content": "电话未接通", "next_at": (timezone.now() + timedelta(days=1)).isoformat()},
        content_type=JSON,
    )

    r = client.post(
        f"/api/customers/{customer.pk}/release", {"reason": "客户已搬离上海"}, content_type=JSON
    )

    assert r.status_code == 200, r.content
    customer.refresh_from_db()
    assert (customer.owner_id, customer.owned_since, customer.next_follow_up_at) == (
        None,
        None,
        None,
    )
    change = OwnershipChange.objects.filter(customer=customer).first()
    assert (change.kind, change.reason, change.from_owner_id) == (
        "release",
        "客户已搬离上海",
        agent.pk,
    )
    assert Timer.objects.get(key=f"customer:{customer.pk}").status == TimerStatus.CANCELLED
    assert customer.pk in ids(client.get(f"/api/customers/pools/{east_pool.pk}/customers"))


def test_a_release_needs_a_reason(agent, pool_book, client_as):
    customer = pool_book["pudong"]
    client_as(agent).post(f"/api/customers/{customer.pk}/claim")

    r = client_as(agent).post(
        f"/api/customers/{customer.pk}/release", {"reason": "  "}, content_type=JSON
    )

    assert (r.status_code, r.json()["field"]) == (422, "reason")


def test_someone_who_only_sees_a_customer_cannot_release_it(
    admin, org, east_manager, pool_book, client_as
):
    grant(east_manager, ["customer.edit"], "region")
    customer = make_customer(admin, "李秀英", "13916620300", region_id=org.shanghai.pk)

    r = client_as(east_manager).post(
        f"/api/customers/{customer.pk}/release", {"reason": "清理"}, content_type=JSON
    )

    assert (r.status_code, r.json()["code"]) == (403, "permission_denied")
    assert Customer.objects.get(pk=customer.pk).owner_id == admin.pk


def test_a_manager_with_assign_releases_an_agents_customer_and_the_agent_is_told(
    org, agent, east_assigner, pool_book, client_as
):
    customer = pool_book["shanghai"]
    client_as(agent).post(f"/api/customers/{customer.pk}/claim")

    r = client_as(east_assigner).post(
        f"/api/customers/{customer.pk}/release", {"reason": "长期无进展"}, content_type=JSON
    )

    assert r.status_code == 200, r.content
    note = Notification.objects.get(recipient=agent, kind="customers.released")
    assert "李秀英" in note.title and note.body == "长期无进展"


def test_a_customer_outside_any_pool_cannot_be_released(admin, org, client_as):
    customer = make_customer(admin, "黄丽", "13926075512", region_id=org.guangzhou.pk)

    r = client_as(admin).post(
        f"/api/customers/{customer.pk}/release", {"reason": "无意向"}, content_type=JSON
    )

    assert (r.status_code, r.json()["code"]) == (409, "not_in_pool")


def test_an_agent_cannot_release_someone_elses_customer(admin, org, agent, east_pool, client_as):
    customer = make_customer(admin, "李秀英", "13916620318", region_id=org.shanghai.pk)

    r = client_as(agent).post(
        f"/api/customers/{customer.pk}/release", {"reason": "x"}, content_type=JSON
    )

    assert r.status_code == 404


def test_another_tenant_can_neither_release_nor_assign_our_customers(
    admin, org, other_admin, east_pool, client_as
):
    customer = make_customer(admin, "李秀英", "13916620318", region_id=org.shanghai.pk)
    client = client_as(other_admin)

    released = client.post(
        f"/api/customers/{customer.pk}/release", {"reason": "x"}, content_type=JSON
    )
    assigned = client.post(
        f"/api/customers/{customer.pk}/assign", {"employee_id": other_admin.pk}, content_type=JSON
    )

    for r in (released, assigned):
        assert (r.status_code, r.json()["code"]) == (404, "not_found")
    assert Customer.objects.get(pk=customer.pk).owner_id == admin.pk


def test_a_manager_assigns_a_pool_customer_to_an_agent_beyond_the_claim_limit(
    agent, east_assigner, pool_book, east_pool, client_as
):
    east_pool.claim_limit = 1
    east_pool.save()
    client_as(agent).post(f"/api/customers/{pool_book['east'].pk}/claim")

    r = client_as(east_assigner).post(
        f"/api/customers/{pool_book['pudong'].pk}/assign",
        {"employee_id": agent.pk, "reason": "浦东客户由王芳负责"},
        content_type=JSON,
    )

    assert r.status_code == 200, r.content
    assert r.json()["owner_id"] == agent.pk
    change = OwnershipChange.objects.filter(customer=pool_book["pudong"]).first()
    assert (change.kind, change.by_id, change.reason) == (
        "assign",
        east_assigner.pk,
        "浦东客户由王芳负责",
    )
    note = Notification.objects.get(recipient=agent, kind="customers.assigned")
    assert "王建国" in note.title


def test_assigning_is_scoped_and_needs_customer_assign(
    org, admin, agent, east_assigner, east_manager, pool_book, client_as
):
    south = pool_book["guangzhou"]
    body = {"employee_id": agent.pk}

    out_of_scope = client_as(east_assigner).post(
        f"/api/customers/{south.pk}/assign", body, content_type=JSON
    )
    no_permission = client_as(agent).post(
        f"/api/customers/{south.pk}/assign", body, content_type=JSON
    )

    assert out_of_scope.status_code == 404
    assert no_permission.status_code == 403
    assert Customer.objects.get(pk=south.pk).owner_id is None


def test_a_customer_is_never_assigned_to_someone_who_left_or_to_another_tenant(
    org, admin, other_admin, pool_book, client_as
):
    left = EmployeeFactory(tenant=org.tenant, name="离职员工", status="left")
    path = f"/api/customers/{pool_book['pudong'].pk}/assign"

    gone = client_as(admin).post(path, {"employee_id": left.pk}, content_type=JSON)
    foreign = client_as(admin).post(path, {"employee_id": other_admin.pk}, content_type=JSON)
    missing = client_as(admin).post(path, {"employee_id": 987654321}, content_type=JSON)

    assert (gone.status_code, gone.json()["code"]) == (409, "employee_left")
    assert (foreign.status_code, foreign.json()) == (missing.status_code, missing.json())
    assert foreign.json()["field"] == "employee_id"


def test_changing_the_owner_in_the_profile_is_recorded_as_an_assignment(
    admin, org, agent, client_as
):
    customer = make_customer(admin, "李秀英", "13916620318", region_id=org.shanghai.pk)
    created = OwnershipChange.objects.get(customer=customer)

    r = client_as(admin).patch(
        f"/api/customers/{customer.pk}", {"owner_id": agent.pk}, content_type=JSON
    )

    assert r.status_code == 200, r.content
    customer.refresh_from_db()
    latest = OwnershipChange.objects.filter(customer=customer).first()
    assert (created.kind, created.to_owner_id) == ("assign", admin.pk)
    assert (latest.kind, latest.from_owner_id, latest.to_owner_id) == ("assign", admin.pk, agent.pk)
    assert customer.owned_since == latest.at


# --- automatic return --------------------------------------------------------------------------


_phones = itertools.count(1)


def owned(
    org: Any,
    owner: Employee,
    name: str,
    region: Any,
    *,
    owned_days: float,
    followed_days: float | None,
) -> Customer:
    """A customer `owner` got `owned_days` ago and last followed up `followed_days` ago."""
    now = timezone.now()
    customer = unclaimed(org, name, f"139{next(_phones):08d}", region)
    Customer.objects.filter(pk=customer.pk).update(
        owner=owner,
        owned_since=now - timedelta(days=owned_days),
        last_followed_at=None if followed_days is None else now - timedelta(days=followed_days),
    )
    customer.refresh_from_db()
    return customer


def test_customers_nobody_followed_up_return_to_the_pool_and_each_owner_is_told_once(
    org, agent, admin, east_pool
):
    stale = [
        owned(org, agent, "四十天没跟进", org.shanghai, owned_days=90, followed_days=40),
        owned(org, agent, "领了就没管", org.pudong, owned_days=35, followed_days=None),
        owned(org, admin, "管理员的老客户", org.east, owned_days=200, followed_days=31),
    ]
    kept = [
        owned(org, agent, "上周跟进过", org.shanghai, owned_days=90, followed_days=7),
        owned(org, agent, "昨天刚领取", org.shanghai, owned_days=1, followed_days=60),
        owned(org, agent, "广州没有公海", org.guangzhou, owned_days=90, followed_days=90),
    ]

    returned = services.pools_return_stale(tenant_id=org.tenant.pk)

    assert returned == 3
    assert set(
        Customer.objects.filter(owner__isnull=True, region__isnull=False).values_list(
            "pk", flat=True
        )
    ) >= {c.pk for c in stale}
    assert all(Customer.objects.get(pk=c.pk).owner_id is not None for c in kept)
    changes = OwnershipChange.objects.filter(kind="auto_return")
    assert sorted(changes.values_list("customer_id", flat=True)) == sorted(c.pk for c in stale)
    assert all("30 天未跟进" in c.reason and c.by_id is None for c in changes)
    notes = Notification.objects.filter(kind="customers.pool.auto_returned")
    assert sorted((n.recipient_id, n.title) for n in notes) == sorted(
        [
            (agent.pk, "2 位客户因长期未跟进已退回公海"),
            (admin.pk, "1 位客户因长期未跟进已退回公海"),
        ]
    )


def test_disabled_pools_and_pools_without_a_period_keep_their_customers(org, agent, east_pool):
    shanghai_pool = make_pool(org, org.shanghai, return_after_days=0)
    south_pool = make_pool(org, org.south, return_after_days=10, enabled=False)
    customers = [
        owned(org, agent, "上海客户", org.shanghai, owned_days=400, followed_days=400),
        owned(org, agent, "广州客户", org.guangzhou, owned_days=400, followed_days=None),
    ]
    assert shanghai_pool.pk and south_pool.pk

    assert services.pools_return_stale(tenant_id=org.tenant.pk) == 0
    assert all(Customer.objects.get(pk=c.pk).owner_id == agent.pk for c in customers)


def test_returning_runs_in_chunks_and_its_queries_do_not_grow_with_the_customers(
    org, agent, east_pool, monkeypatch
):
    def stale(n: int, prefix: str) -> None:
        for i in range(n):
            owned(org, agent, f"{prefix}{i}", org.shanghai, owned_days=60, followed_days=45)

    stale(3, "小批")
    with CaptureQueriesContext(connection) as captured:
        services.pools_return_stale(tenant_id=org.tenant.pk)
    few = len(captured)
    stale(30, "大批")
    with CaptureQueriesContext(connection) as captured:
        services.pools_return_stale(tenant_id=org.tenant.pk)
    many = len(captured)
    monkeypatch.setattr(pools, "RETURN_CHUNK", 4)
    stale(10, "分块")

    assert services.pools_return_stale(tenant_id=org.tenant.pk) == 10
    assert 0 < many <= few + 2, (few, many)  # only bulk insert batches may add statements
    assert Customer.objects.filter(owner=agent).count() == 0
    last = Notification.objects.filter(recipient=agent).first()
    assert last.title == "10 位客户因长期未跟进已退回公海"  # one notice for all the chunks


def test_owners_are_warned_once_a_few_days_before_customers_return(org, agent, admin, east_pool):
    owned(org, agent, "还有三天", org.shanghai, owned_days=90, followed_days=27.5)
    owned(org, agent, "还有两天半", org.shanghai, owned_days=90, followed_days=27.2)
    owned(org, agent, "昨天已提醒", org.shanghai, owned_days=90, followed_days=28.5)
    owned(org, admin, "还早", org.shanghai, owned_days=90, followed_days=20)

    warned = services.pools_warn_stale(tenant_id=org.tenant.pk, days_before=3)

    assert warned == 1
    note = Notification.objects.get(kind="customers.pool.return_warning")
    assert (note.recipient_id, note.title) == (agent.pk, "2 位客户将在 3 天后退回公海")


# --- races (PostgreSQL) ------------------------------------------------------------------------


on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="overlapping writers are a PostgreSQL property (SQLite serialises them)",
)


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_two_agents_claiming_one_customer_at_once_one_wins_the_other_gets_409(org, agent):
    make_pool(org, org.east)
    colleague = EmployeeFactory(tenant=org.tenant, name="刘洋", region=org.shanghai)
    grant(colleague, ["customer.view", "customer.edit"], "self")
    customer = unclaimed(org, "王建国", "13817450021", org.shanghai)
    actors = [actor_for(agent), actor_for(colleague)]

    results = run_together(
        *(lambda a=a: services.customer_claim(actor=a, customer_id=customer.pk) for a in actors)
    )

    assert sorted(type(r).__name__ for r in results) == ["Conflict", "Customer"], results
    loser = next(r for r in results if isinstance(r, Conflict))
    assert loser.code == "already_owned"
    winner = next(r for r in results if isinstance(r, Customer))
    assert Customer.objects.get(pk=customer.pk).owner_id == winner.owner_id
    assert OwnershipChange.objects.filter(customer=customer, kind="claim").count() == 1


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_one_agent_claiming_two_customers_at_once_cannot_pass_the_limit(org, agent):
    make_pool(org, org.east, claim_limit=1, daily_claim_limit=0)
    a, b = (unclaimed(org, f"客户{i}", f"1380000000{i}", org.shanghai) for i in range(2))
    actor = actor_for(agent)

    results = run_together(
        lambda: services.customer_claim(actor=actor, customer_id=a.pk),
        lambda: services.customer_claim(actor=actor, customer_id=b.pk),
    )

    assert sorted(type(r).__name__ for r in results) == ["Conflict", "Customer"], results
    assert next(r for r in results if isinstance(r, Conflict)).code == "claim_limit_reached"
    assert Customer.objects.filter(owner=agent).count() == 1


def test_unknown_region_has_no_pool(org):
    region = make_region(org.tenant, "东南亚")

    assert pools.pool_of(org.tenant.pk, region.pk) is None
    assert pools.pool_of(org.tenant.pk, None) is None
