"""Follow-ups (跟进记录) as an agent records them, and the reminder of the next one: it reaches
whoever owns the customer when it is due, moves when a newer follow-up moves the date, and says
nothing when it has gone stale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from jingwei.audit.models import AuditEvent
from jingwei.core.models import Timer, TimerStatus
from jingwei.core.timers import fire_due
from jingwei.customers import services
from jingwei.customers.models import Customer, CustomerEvent, CustomerPool, FollowUp
from jingwei.customers.services import follow_ups
from jingwei.notify.models import Notification
from jingwei.org.models import Employee
from jingwei.org.scope import actor_for

from ..factories import EmployeeFactory, grant
from .factories import make_customer

pytestmark = pytest.mark.django_db

JSON = "application/json"
REMINDER = "customers.follow_up_due"


def later(**delta: float) -> datetime:
    return timezone.now() + timedelta(**delta)


@pytest.fixture
def agent(shanghai_agent) -> Employee:
    grant(shanghai_agent, ["customer.edit"], "self")
    return shanghai_agent


@pytest.fixture
def colleague(org) -> Employee:
    e = EmployeeFactory(
        tenant=org.tenant, name="刘洋", department=org.east_dept, region=org.shanghai
    )
    grant(e, ["customer.view", "customer.edit"], "self")
    return e


@pytest.fixture
def customer(agent, org) -> Customer:
    return make_customer(agent, "王建国", "13817450021", region_id=org.shanghai.pk)


def follow_up(client: Any, customer: Customer, **body: Any) -> Any:
    payload = {"kind": "call", "content": "电话沟通空调维修方案", **body}
    for name in ("happened_at", "next_at"):
        if isinstance(payload.get(name), datetime):
            payload[name] = payload[name].isoformat()
    return client.post(f"/api/customers/{customer.pk}/follow-ups", payload, content_type=JSON)


def reminders(employee: Employee) -> list[Notification]:
    return list(Notification.objects.filter(recipient=employee, kind=REMINDER))


# --- recording ---------------------------------------------------------------------------------


def test_an_agent_records_a_follow_up_with_the_next_one(agent, customer, client_as):
    happened, next_at = later(minutes=-30), later(days=2)

    r = follow_up(client_as(agent), customer, kind="visit", happened_at=happened, next_at=next_at)

    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["kind_label"], body["employee_name"], body["content"]) == (
        "上门拜访",
        "王芳",
        "电话沟通空调维修方案",
    )
    customer.refresh_from_db()
    assert (customer.last_followed_at, customer.next_follow_up_at) == (happened, next_at)
    event = CustomerEvent.objects.get(customer=customer, kind="follow_up")
    assert event.occurred_at == happened and "上门拜访跟进（王芳）" in event.title
    assert AuditEvent.objects.filter(action="customers.follow_up.recorded").count() == 1
    timer = Timer.objects.get(kind="customers.follow_up_reminder")
    assert (timer.key, timer.due_at, timer.status) == (
        f"customer:{customer.pk}",
        next_at,
        "pending",
    )


def test_happened_at_defaults_to_now(agent, customer, client_as):
    before = timezone.now()

    r = follow_up(client_as(agent), customer)

    assert r.status_code == 201
    assert before <= FollowUp.objects.get().happened_at <= timezone.now()
    assert not Timer.objects.exists()  # no next follow-up promised, no reminder


@pytest.mark.parametrize(
    "field,value",
    [
        ("next_at", -1),  # the next follow-up lies in the past
        ("happened_at", 1),  # a follow-up that has not happened yet
    ],
)
def test_a_follow_up_with_impossible_times_is_refused_naming_the_field(
    agent, customer, client_as, field, value
):
    r = follow_up(client_as(agent), customer, **{field: later(days=value)})

    assert (r.status_code, r.json()["field"]) == (422, field)
    assert not FollowUp.objects.exists()


def test_the_schema_refuses_an_unknown_kind_and_an_empty_content(agent, customer, client_as):
    kind = follow_up(client_as(agent), customer, kind="飞鸽传书")
    empty = follow_up(client_as(agent), customer, content="   ")

    assert (kind.status_code, kind.json()["field"]) == (422, "kind")
    assert (empty.status_code, empty.json()["field"]) == (422, "content")


def test_a_late_entry_of_an_older_follow_up_changes_no_plan(agent, customer, client_as):
    client = client_as(agent)
    follow_up(client, customer, happened_at=later(hours=-1), next_at=later(days=3))

    r = follow_up(client, customer, happened_at=later(days=-5), next_at=later(days=1))

    assert r.status_code == 201
    customer.refresh_from_db()
    assert customer.next_follow_up_at > later(days=2)
    assert customer.last_followed_at > later(hours=-2)
    assert Timer.objects.get().due_at == customer.next_follow_up_at


def test_follow_ups_are_listed_newest_first(agent, customer, client_as):
    client = client_as(agent)
    follow_up(client, customer, content="第一次", happened_at=later(days=-3))
    follow_up(client, customer, content="第二次", happened_at=later(days=-1))

    r = client.get(f"/api/customers/{customer.pk}/follow-ups")

    assert r.status_code == 200
    assert [f["content"] for f in r.json()["items"]] == ["第二次", "第一次"]


# --- who may ------------------------------------------------------------------------------------


def test_an_agent_cannot_follow_up_or_read_someone_elses_customer(admin, org, agent, client_as):
    theirs = make_customer(admin, "李秀英", "13916620318", region_id=org.shanghai.pk)
    client = client_as(agent)

    wrote = follow_up(client, theirs)
    read = client.get(f"/api/customers/{theirs.pk}/follow-ups")
    missing = client.get("/api/customers/987654321/follow-ups")

    assert wrote.status_code == read.status_code == 404
    assert read.json() == missing.json()
    assert not FollowUp.objects.exists()


def test_the_regional_manager_reads_but_needs_edit_to_record(east_manager, customer, client_as):
    client = client_as(east_manager)

    assert client.get(f"/api/customers/{customer.pk}/follow-ups").status_code == 200
    r = follow_up(client, customer)

    assert (r.status_code, r.json()["code"]) == (403, "permission_denied")


def test_another_tenant_finds_neither_the_customer_nor_its_follow_ups(
    other_admin, agent, customer, client_as
):
    follow_up(client_as(agent), customer)
    client = client_as(other_admin)

    for r in (client.get(f"/api/customers/{customer.pk}/follow-ups"), follow_up(client, customer)):
        assert (r.status_code, r.json()["code"]) == (404, "not_found")
    assert FollowUp.objects.count() == 1


# --- the reminder ------------------------------------------------------------------------------


def test_the_reminder_reaches_the_owner_when_due_and_not_before(agent, customer, client_as):
    due = later(hours=2)
    follow_up(client_as(agent), customer, next_at=due)

    fire_due(now=due - timedelta(minutes=1))
    early = reminders(agent)
    fire_due(now=due + timedelta(minutes=1))

    assert early == []
    [note] = reminders(agent)
    assert "王建国" in note.title and note.data["customer_id"] == customer.pk


def test_a_newer_follow_up_moves_the_reminder(agent, customer, client_as):
    client = client_as(agent)
    first, second = later(hours=2), later(days=1)
    follow_up(client, customer, next_at=first)
    follow_up(client, customer, content="客户说明天再联系", next_at=second)

    fire_due(now=first + timedelta(minutes=1))
    at_first = reminders(agent)
    fire_due(now=second + timedelta(minutes=1))

    assert at_first == []
    assert len(reminders(agent)) == 1
    assert Timer.objects.filter(kind="customers.follow_up_reminder").count() == 1


def test_a_follow_up_without_a_next_date_cancels_the_reminder(agent, customer, client_as):
    client = client_as(agent)
    follow_up(client, customer, next_at=later(hours=2))

    follow_up(client, customer, content="已签约，无需再跟进")

    assert Timer.objects.get().status == TimerStatus.CANCELLED
    fire_due(now=later(days=1))
    assert reminders(agent) == []


def test_a_stale_reminder_does_nothing(agent, customer, client_as):
    """A timer still pending for a date the customer no longer plans (say, the plan was changed
    by a path that could not move the timer) fires silently."""
    due = later(hours=2)
    follow_up(client_as(agent), customer, next_at=due)
    Customer.objects.filter(pk=customer.pk).update(next_follow_up_at=due + timedelta(days=3))

    fire_due(now=due + timedelta(minutes=1))

    assert reminders(agent) == []
    assert Timer.objects.get().status == TimerStatus.FIRED


def test_the_reminder_follows_the_customer_to_its_new_owner(
    admin, agent, colleague, customer, client_as
):
    due = later(hours=2)
    follow_up(client_as(agent), customer, next_at=due)
    services.customer_assign(
        actor=actor_for(admin), customer_id=customer.pk, employee_id=colleague.pk
    )

    fire_due(now=due + timedelta(minutes=1))

    assert reminders(agent) == []
    assert len(reminders(colleague)) == 1


def test_a_customer_put_back_in_the_pool_reminds_nobody(org, agent, customer, client_as):
    CustomerPool.objects.create(tenant=org.tenant, region=org.east, name="华东公海")
    due = later(hours=2)
    client = client_as(agent)
    follow_up(client, customer, next_at=due)
    client.post(f"/api/customers/{customer.pk}/release", {"reason": "无意向"}, content_type=JSON)
    Timer.objects.update(status=TimerStatus.PENDING)  # even if the cancel were lost

    fire_due(now=due + timedelta(minutes=1))

    assert Notification.objects.filter(kind=REMINDER).count() == 0


# --- my due follow-ups -------------------------------------------------------------------------


def plan(customer: Customer, when: datetime | None) -> None:
    Customer.objects.filter(pk=customer.pk).update(next_follow_up_at=when)


def test_due_today_means_before_the_end_of_the_owners_local_day(agent, org):
    now = datetime(2030, 1, 1, 20, 0, tzinfo=UTC)  # 04:00 on 2 January in Shanghai
    make = [
        make_customer(agent, f"客户{i}", f"1380000000{i}", region_id=org.shanghai.pk)
        for i in range(4)
    ]
    plan(make[0], now - timedelta(days=3))  # overdue
    plan(make[1], datetime(2030, 1, 2, 15, 0, tzinfo=UTC))  # 23:00 on 2 January, Shanghai
    plan(make[2], datetime(2030, 1, 2, 17, 0, tzinfo=UTC))  # 01:00 on 3 January, Shanghai
    plan(make[3], None)

    due = follow_ups.follow_ups_due(actor_for(agent), now=now)

    assert list(due) == [make[0], make[1]]


def test_my_due_follow_ups_lists_only_my_customers_soonest_first(admin, org, agent, client_as):
    mine_overdue = make_customer(agent, "逾期客户", "13800000001", region_id=org.shanghai.pk)
    mine_today = make_customer(agent, "今天客户", "13800000002", region_id=org.shanghai.pk)
    mine_later = make_customer(agent, "下周客户", "13800000003", region_id=org.shanghai.pk)
    theirs = make_customer(admin, "别人的客户", "13800000004", region_id=org.shanghai.pk)
    plan(mine_overdue, later(days=-2))
    plan(mine_today, later(seconds=-1))
    plan(mine_later, later(days=7))
    plan(theirs, later(days=-1))

    r = client_as(agent).get("/api/customers/follow-ups/due")

    assert r.status_code == 200, r.content
    items = r.json()["items"]
    assert [c["name"] for c in items] == ["逾期客户", "今天客户"]
    assert items[0]["phone"] == "138****0001" and items[0]["next_follow_up_at"]


def test_another_tenants_due_list_holds_none_of_ours(other_admin, agent, customer, client_as):
    plan(customer, later(days=-1))

    r = client_as(other_admin).get("/api/customers/follow-ups/due")

    assert (r.status_code, r.json()["items"]) == (200, [])
