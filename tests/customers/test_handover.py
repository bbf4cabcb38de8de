"""Handing customers over (离职继承 / 在职转接) and the history of owners, as a regional manager
does it: all of an advisor's customers in one action, both sides told, the reason kept, nothing
half done, and never a customer outside the manager's scope."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jingwei.audit.models import AuditEvent
from jingwei.core.models import Timer
from jingwei.core.timers import fire_due
from jingwei.customers import services
from jingwei.customers.models import (
    Customer,
    CustomerCollaborator,
    CustomerPool,
    Handover,
    OwnershipChange,
)
from jingwei.notify.models import Notification
from jingwei.org.models import Employee
from jingwei.org.scope import actor_for

from ..factories import EmployeeFactory, grant
from .factories import make_customer

pytestmark = pytest.mark.django_db

JSON = "application/json"


@pytest.fixture
def advisor(org) -> Employee:
    """陈静, 上海 customer advisor, leaving the company."""
    e = EmployeeFactory(
        tenant=org.tenant, name="陈静", department=org.east_dept, region=org.shanghai
    )
    grant(e, ["customer.view", "customer.edit"], "self")
    return e


@pytest.fixture
def successor(org) -> Employee:
    e = EmployeeFactory(
        tenant=org.tenant, name="刘洋", department=org.east_dept, region=org.shanghai
    )
    grant(e, ["customer.view", "customer.edit"], "self")
    return e


@pytest.fixture
def manager(east_manager) -> Employee:
    """张伟, 华东 manager, may assign and hand over 华东's customers."""
    grant(east_manager, ["customer.edit", "customer.assign"], "region")
    return east_manager


def book_of(employee: Employee, region: Any, count: int, prefix: str) -> list[Customer]:
    """`count` customers owned by `employee` (inserted in bulk: the handover is under test)."""
    now = timezone.now()
    rows = Customer.objects.bulk_create(
        Customer(
            tenant_id=employee.tenant_id,
            name=f"{prefix}{i:03d}",
            region=region,
            owner=employee,
            owned_since=now - timedelta(days=10),
        )
        for i in range(count)
    )
    return sorted(rows, key=lambda c: c.pk)


def hand_over(client: Any, **body: Any) -> Any:
    return client.post("/api/customers/handovers", body, content_type=JSON)


# --- journey D4 --------------------------------------------------------------------------------


def test_journey_d4_a_leaving_advisors_300_customers_go_to_a_colleague_in_one_action(
    org, admin, advisor, successor, manager, client_as
):
    """His advisor leaves: her 300 customers are handed to a colleague in one action (离职继承),
    both sides notified, the reason logged; unclaimed customers return to the region pool."""
    CustomerPool.objects.create(tenant=org.tenant, region=org.east, name="华东公海")
    kept = book_of(advisor, org.shanghai, 280, "上海客户") + book_of(
        advisor, org.pudong, 20, "浦东客户"
    )
    unclaimed = book_of(advisor, org.shanghai, 15, "沉睡客户")
    with_plan = kept[0]
    due = timezone.now() + timedelta(hours=3)
    services.follow_up_record(
        actor=actor_for(advisor),
        customer_id=with_plan.pk,
        kind="call",
        content="约好周五回访",
        next_at=due,
    )
    shared = make_customer(admin, "李秀英", "13916620318", region_id=org.shanghai.pk)
    CustomerCollaborator.objects.create(tenant=org.tenant, customer=shared, employee=advisor)
    client = client_as(manager)

    with CaptureQueriesContext(connection) as queries:
        r = hand_over(
            client,
            kind="resignation",
            from_employee_id=advisor.pk,
            to_employee_id=successor.pk,
            reason="陈静 3 月 31 日离职",
            customer_ids=[c.pk for c in kept],
            rest_to_pool=True,
        )
    statements = len(queries.captured_queries)  # now: a later request empties the log

    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["kind_label"], body["customer_count"], body["reason"]) == (
        "离职继承",
        300,
        "陈静 3 月 31 日离职",
    )
    assert (body["from_employee_name"], body["to_employee_name"]) == ("陈静", "刘洋")
    assert Customer.objects.filter(owner=successor).count() == 300
    assert Customer.objects.filter(pk__in=[c.pk for c in unclaimed], owner=None).count() == 15
    assert not Customer.objects.filter(owner=advisor).exists()
    # one notification to each side, with the count
    given = Notification.objects.get(recipient=advisor)
    received = Notification.objects.get(recipient=successor)
    assert "300 位客户已交接给 刘洋" in given.title and "15 位退回公海" in given.title
    assert "陈静 的 300 位客户已交接给您" in received.title
    assert "陈静 3 月 31 日离职" in received.body
    # the reason is logged: one handover row, a change per customer, an audit event
    handover = Handover.objects.get()
    assert handover.changes.filter(kind="resignation").count() == 300
    assert handover.changes.filter(kind="release").count() == 15
    event = AuditEvent.objects.get(action="customers.handover.created")
    assert (event.actor_id, event.data["reason"], len(event.data["customer_ids"])) == (
        manager.pk,
        "陈静 3 月 31 日离职",
        300,
    )
    # the unclaimed ones are in the pool for anyone of 华东 to claim
    pool = CustomerPool.objects.get()
    in_pool = client.get(f"/api/customers/pools/{pool.pk}/customers?limit=100")
    assert {c["id"] for c in in_pool.json()["items"]} == {c.pk for c in unclaimed}
    # her collaborations and her open reminder go to the successor
    assert CustomerCollaborator.objects.get(customer=shared).employee_id == successor.pk
    fire_due(now=due + timedelta(minutes=1))
    assert (
        Notification.objects.filter(recipient=successor, kind="customers.follow_up_due").count()
        == 1
    )
    assert not Notification.objects.filter(
        recipient=advisor, kind="customers.follow_up_due"
    ).exists()
    # one action, a bounded number of statements (not one per customer)
    assert statements <= 40, statements


def test_the_number_of_statements_does_not_grow_with_the_customers(
    org, advisor, successor, manager
):
    actor = actor_for(manager)
    other = EmployeeFactory(tenant=org.tenant, name="赵磊", region=org.shanghai)

    def measure(giver: Employee, count: int) -> int:
        book_of(giver, org.shanghai, count, giver.name)
        with CaptureQueriesContext(connection) as queries:
            services.handover_create(
                actor=actor,
                kind="transfer",
                from_employee_id=giver.pk,
                to_employee_id=successor.pk,
                reason="调岗",
            )
        return len(queries.captured_queries)

    few, many = measure(advisor, 5), measure(other, 350)

    assert few > 0 and many <= few + 4, (few, many)  # only bulk insert batches may add more


# --- all or nothing ----------------------------------------------------------------------------


def test_a_listed_customer_outside_the_managers_scope_is_named_and_nothing_moves(
    org, advisor, successor, manager, client_as
):
    east = book_of(advisor, org.shanghai, 3, "上海客户")
    south = book_of(advisor, org.guangzhou, 1, "广州客户")

    r = hand_over(
        client_as(manager),
        kind="transfer",
        from_employee_id=advisor.pk,
        to_employee_id=successor.pk,
        reason="调岗",
        customer_ids=[c.pk for c in east + south],
    )

    assert (r.status_code, r.json()["field"]) == (404, "customer_ids")
    assert str(south[0].pk) in r.json()["message"]
    assert Customer.objects.filter(owner=advisor).count() == 4
    assert not Handover.objects.exists() and not OwnershipChange.objects.exists()


def test_handing_over_everything_refuses_when_some_customers_are_beyond_the_managers_scope(
    org, advisor, successor, manager, client_as
):
    book_of(advisor, org.shanghai, 3, "上海客户")
    book_of(advisor, org.guangzhou, 2, "广州客户")

    r = hand_over(
        client_as(manager),
        kind="resignation",
        from_employee_id=advisor.pk,
        to_employee_id=successor.pk,
        reason="离职",
    )

    assert (r.status_code, r.json()["code"]) == (403, "out_of_scope")
    assert "2 位客户不在您的数据范围内" in r.json()["message"]
    assert Customer.objects.filter(owner=advisor).count() == 5
    assert not Notification.objects.exists()


def test_a_customer_the_employee_does_not_own_is_named(
    org, admin, advisor, successor, manager, client_as
):
    hers = book_of(advisor, org.shanghai, 2, "上海客户")
    not_hers = make_customer(admin, "李秀英", "13916620318", region_id=org.shanghai.pk)

    r = hand_over(
        client_as(manager),
        kind="transfer",
        from_employee_id=advisor.pk,
        to_employee_id=successor.pk,
        reason="调岗",
        customer_ids=[*(c.pk for c in hers), not_hers.pk],
    )

    assert (r.status_code, r.json()["code"]) == (409, "not_owner")
    assert str(not_hers.pk) in r.json()["message"] and "陈静" in r.json()["message"]
    assert Customer.objects.filter(owner=advisor).count() == 2


@pytest.mark.parametrize(
    "change,status,field",
    [
        ({"reason": "   "}, 422, "reason"),
        ({"to_employee_id": "from"}, 422, "to_employee_id"),  # to herself
        ({"to_employee_id": "left"}, 409, "to_employee_id"),
        ({"to_employee_id": 987654321}, 404, "to_employee_id"),
        ({"from_employee_id": 987654321}, 404, "from_employee_id"),
        ({"kind": "retire"}, 422, "kind"),
    ],
)
def test_a_handover_that_cannot_be_done_is_refused_naming_the_field(
    org, advisor, successor, manager, client_as, change, status, field
):
    book_of(advisor, org.shanghai, 2, "上海客户")
    left = EmployeeFactory(tenant=org.tenant, name="已离职", status="left")
    body = {
        "kind": "transfer",
        "from_employee_id": advisor.pk,
        "to_employee_id": successor.pk,
        "reason": "调岗",
        **change,
    }
    body = {
        k: {"from": advisor.pk, "left": left.pk}.get(v, v) if isinstance(v, str) else v
        for k, v in body.items()
    }

    r = hand_over(client_as(manager), **body)

    assert (r.status_code, r.json()["field"]) == (status, field), r.content
    assert Customer.objects.filter(owner=advisor).count() == 2


def test_employees_of_another_tenant_read_as_missing(
    org, advisor, successor, manager, other_admin, client_as
):
    book_of(advisor, org.shanghai, 1, "上海客户")
    base = {
        "kind": "transfer",
        "from_employee_id": advisor.pk,
        "to_employee_id": successor.pk,
        "reason": "调岗",
    }
    client = client_as(manager)

    foreign = hand_over(client, **{**base, "to_employee_id": other_admin.pk})
    missing = hand_over(client, **{**base, "to_employee_id": 987654321})

    assert (foreign.status_code, foreign.json()) == (missing.status_code, missing.json())


def test_another_tenants_customer_ids_read_as_missing(
    org, advisor, successor, manager, other_admin, client_as
):
    hers = book_of(advisor, org.shanghai, 1, "上海客户")
    foreign = book_of(other_admin, None, 1, "外企客户")
    base = {
        "kind": "transfer",
        "from_employee_id": advisor.pk,
        "to_employee_id": successor.pk,
        "reason": "调岗",
    }
    client = client_as(manager)

    theirs = hand_over(client, **base, customer_ids=[hers[0].pk, foreign[0].pk])
    missing = hand_over(client, **base, customer_ids=[hers[0].pk, 987654321])

    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["message"].replace(str(foreign[0].pk), "?") == missing.json()[
        "message"
    ].replace("987654321", "?")
    assert Customer.objects.get(pk=foreign[0].pk).owner_id == other_admin.pk
    assert not Handover.objects.exists()


def test_a_handover_needs_customer_assign(org, advisor, successor, client_as):
    book_of(advisor, org.shanghai, 1, "上海客户")

    r = hand_over(
        client_as(advisor),
        kind="transfer",
        from_employee_id=advisor.pk,
        to_employee_id=successor.pk,
        reason="我要休假",
    )

    assert (r.status_code, r.json()["code"]) == (403, "permission_denied")


def test_an_in_service_transfer_keeps_the_employees_collaborations(
    org, admin, advisor, successor, manager, client_as
):
    book_of(advisor, org.shanghai, 2, "上海客户")
    shared = make_customer(admin, "李秀英", "13916620318", region_id=org.shanghai.pk)
    CustomerCollaborator.objects.create(tenant=org.tenant, customer=shared, employee=advisor)

    r = hand_over(
        client_as(manager),
        kind="transfer",
        from_employee_id=advisor.pk,
        to_employee_id=successor.pk,
        reason="调往杭州",
    )

    assert r.status_code == 201, r.content
    assert CustomerCollaborator.objects.get(customer=shared).employee_id == advisor.pk
    assert OwnershipChange.objects.filter(kind="transfer").count() == 2


def test_a_resignation_drops_a_collaboration_the_successor_already_has(
    org, admin, advisor, successor, manager, client_as
):
    book_of(advisor, org.shanghai, 1, "上海客户")
    shared = make_customer(admin, "李秀英", "13916620318", region_id=org.shanghai.pk)
    for e in (advisor, successor):
        CustomerCollaborator.objects.create(tenant=org.tenant, customer=shared, employee=e)

    r = hand_over(
        client_as(manager),
        kind="resignation",
        from_employee_id=advisor.pk,
        to_employee_id=successor.pk,
        reason="离职",
    )

    assert r.status_code == 201, r.content
    assert list(
        CustomerCollaborator.objects.filter(customer=shared).values_list("employee_id", flat=True)
    ) == [successor.pk]


def test_an_employee_without_customers_has_nothing_to_hand_over(
    org, advisor, successor, manager, client_as
):
    r = hand_over(
        client_as(manager),
        kind="resignation",
        from_employee_id=advisor.pk,
        to_employee_id=successor.pk,
        reason="离职",
    )

    assert (r.status_code, r.json()["code"]) == (409, "nothing_to_hand_over")
    assert not Handover.objects.exists()


def test_rest_without_a_pool_goes_to_the_successor_rather_than_to_nobody(
    org, advisor, successor, manager, client_as
):
    listed = book_of(advisor, org.shanghai, 2, "上海客户")
    rest = book_of(advisor, org.shanghai, 3, "其余客户")  # 上海 has no pool here

    r = hand_over(
        client_as(manager),
        kind="resignation",
        from_employee_id=advisor.pk,
        to_employee_id=successor.pk,
        reason="离职",
        customer_ids=[c.pk for c in listed],
        rest_to_pool=True,
    )

    assert r.status_code == 201, r.content
    assert r.json()["customer_count"] == 5
    assert Customer.objects.filter(pk__in=[c.pk for c in rest], owner=successor).count() == 3


# --- reading handovers and owner history --------------------------------------------------------


def test_each_reader_sees_the_handovers_of_their_scope(
    org, admin, advisor, successor, manager, client_as, other_admin
):
    south_giver = EmployeeFactory(tenant=org.tenant, name="黄磊", region=org.guangzhou)
    south_taker = EmployeeFactory(tenant=org.tenant, name="吴昊", region=org.guangzhou)
    book_of(advisor, org.shanghai, 2, "上海客户")
    book_of(south_giver, org.guangzhou, 2, "广州客户")
    admin_actor = actor_for(admin)
    east = services.handover_create(
        actor=admin_actor,
        kind="transfer",
        from_employee_id=advisor.pk,
        to_employee_id=successor.pk,
        reason="调岗",
    )
    south = services.handover_create(
        actor=admin_actor,
        kind="resignation",
        from_employee_id=south_giver.pk,
        to_employee_id=south_taker.pk,
        reason="离职",
    )

    def listed(employee: Employee, query: str = "") -> list[int]:
        r = client_as(employee).get(f"/api/customers/handovers{query}")
        assert r.status_code == 200, r.content
        return [h["id"] for h in r.json()["items"]]

    assert listed(admin) == [south.pk, east.pk]
    assert listed(manager) == [east.pk]
    assert listed(successor) == [east.pk]
    assert listed(advisor) == [east.pk]  # she gave them, though she no longer sees them
    assert listed(other_admin) == []
    assert listed(admin, f"?employee_id={south_taker.pk}") == [south.pk]
    assert listed(admin, "?kind=transfer") == [east.pk]


def test_the_owner_history_lists_every_change_newest_first(
    org, admin, advisor, successor, manager, client_as
):
    CustomerPool.objects.create(tenant=org.tenant, region=org.east, name="华东公海")
    customer = make_customer(advisor, "王建国", "13817450021", region_id=org.shanghai.pk)
    services.customer_release(actor=actor_for(advisor), customer_id=customer.pk, reason="暂无意向")
    services.customer_claim(actor=actor_for(successor), customer_id=customer.pk)
    services.handover_create(
        actor=actor_for(manager),
        kind="transfer",
        from_employee_id=successor.pk,
        to_employee_id=advisor.pk,
        reason="客户要求换回原顾问",
    )

    r = client_as(manager).get(f"/api/customers/{customer.pk}/ownership")

    assert r.status_code == 200, r.content
    rows = [
        (c["kind"], c["from_owner_name"], c["to_owner_name"], c["reason"])
        for c in r.json()["items"]
    ]
    assert rows == [
        ("transfer", "刘洋", "陈静", "客户要求换回原顾问"),
        ("claim", "", "刘洋", ""),
        ("release", "陈静", "", "暂无意向"),
        ("assign", "", "陈静", ""),
    ]
    assert r.json()["items"][0]["handover_id"] == Handover.objects.get().pk


def test_owner_history_is_scoped_like_the_customer(admin, org, advisor, other_admin, client_as):
    theirs = make_customer(admin, "黄丽", "13926075512", region_id=org.guangzhou.pk)

    out_of_scope = client_as(advisor).get(f"/api/customers/{theirs.pk}/ownership")
    foreign = client_as(other_admin).get(f"/api/customers/{theirs.pk}/ownership")
    missing = client_as(other_admin).get("/api/customers/987654321/ownership")

    assert out_of_scope.status_code == foreign.status_code == 404
    assert foreign.json() == missing.json()


def test_timers_of_handed_over_customers_stay_keyed_per_customer(org, advisor, successor, manager):
    customer = book_of(advisor, org.shanghai, 1, "上海客户")[0]
    services.follow_up_record(
        actor=actor_for(advisor),
        customer_id=customer.pk,
        kind="wecom",
        content="企业微信沟通",
        next_at=timezone.now() + timedelta(days=1),
    )

    services.handover_create(
        actor=actor_for(manager),
        kind="resignation",
        from_employee_id=advisor.pk,
        to_employee_id=successor.pk,
        reason="离职",
    )

    timer = Timer.objects.get()
    assert (timer.key, timer.status) == (f"customer:{customer.pk}", "pending")
    customer.refresh_from_db()
    assert customer.next_follow_up_at is not None  # the plan is handed over with the customer
