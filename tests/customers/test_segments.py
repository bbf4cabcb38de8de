"""Segments (人群) as people use them: saved conditions whose member count is live and counts only
the customers the reader may see, members listed like the customer list (phones masked without
customer.view_pii), counting unsaved conditions, and who may write them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jingwei.audit.models import AuditEvent
from jingwei.core.errors import Forbidden, NotFound
from jingwei.customers import services
from jingwei.customers.models import Customer, CustomerEvent, Segment, Tag, TagGroup
from jingwei.org.scope import actor_for

from ..factories import EmployeeFactory, grant, make_region
from .factories import make_customer

pytestmark = pytest.mark.django_db

JSON = "application/json"


def order(customer: Customer, days_ago: int, amount: str = "199.00") -> None:
    CustomerEvent.objects.create(
        tenant=customer.tenant,
        customer=customer,
        kind="order",
        channel="taobao",
        event_id=f"order-{customer.pk}-{CustomerEvent.objects.count()}",
        amount=amount,
        occurred_at=timezone.now() - timedelta(days=days_ago),
    )


@pytest.fixture
def book(org, admin, shanghai_agent):
    """VIP customers of 浦东 (the agent's own), 上海 and 广州, and a normal one of 上海; 王建国 has
    three Taobao orders in the last 90 days."""
    grant(shanghai_agent, ["customer.edit"], "self")
    people = {
        "pudong": make_customer(
            shanghai_agent,
            "王建国",
            "13817450021",
            emails=("wangjianguo@163.com",),
            region_id=org.pudong.pk,
            level="vip",
        ),
        "shanghai": make_customer(
            admin, "李秀英", "13916620318", region_id=org.shanghai.pk, level="vip"
        ),
        "guangzhou": make_customer(
            admin, "黄丽", "13926075512", region_id=org.guangzhou.pk, level="vip"
        ),
        "normal": make_customer(admin, "陈晓东", "13764128850", region_id=org.shanghai.pk),
    }
    for days in (3, 20, 60):
        order(people["pudong"], days)
    return people


VIP = {"field": "level", "op": "in", "value": ["vip"]}


def create(client: Any, conditions: dict[str, Any], name: str = "VIP 客户") -> Any:
    return client.post(
        "/api/customers/segments",
        {"name": name, "description": "全部 VIP", "conditions": conditions},
        content_type=JSON,
    )


def member_ids(response: Any) -> set[int]:
    assert response.status_code == 200, response.content
    return {c["id"] for c in response.json()["items"]}


# --- creating and counting -----------------------------------------------------------------


def test_an_admin_saves_a_segment_and_sees_how_many_customers_it_holds(book, admin, client_as):
    r = create(client_as(admin), VIP)

    assert r.status_code == 201, r.content
    body = r.json()
    assert body["name"] == "VIP 客户"
    assert body["member_count"] == 3
    assert body["conditions_text"] == "等级是 VIP"
    assert body["conditions"] == VIP
    segment = Segment.objects.get(pk=body["id"])
    assert segment.created_by_id == admin.pk
    event = AuditEvent.objects.get(action="customers.segment.created", subject_id=str(segment.pk))
    assert event.after["conditions"] == VIP


def test_the_same_segment_shows_each_reader_only_the_members_they_may_see(
    book, admin, east_manager, shanghai_agent, client_as
):
    segment_id = create(client_as(admin), VIP).json()["id"]
    path = f"/api/customers/segments/{segment_id}"

    counts = {
        who.name: client_as(who).get(path).json()["member_count"]
        for who in (admin, east_manager, shanghai_agent)
    }

    assert counts == {admin.name: 3, east_manager.name: 2, shanghai_agent.name: 1}
    assert member_ids(client_as(east_manager).get(f"{path}/members")) == {
        book["pudong"].pk,
        book["shanghai"].pk,
    }
    assert member_ids(client_as(shanghai_agent).get(f"{path}/members")) == {book["pudong"].pk}


def test_journey_d_shanghai_frequent_buyers_without_a_recent_ticket(book, org, admin, client_as):
    """上海 · 三个月下单 3 次以上 · 30 天没有工单: counted at once, as the journey tells."""
    conditions = {
        "all": [
            {"field": "region", "op": "in", "value": [org.shanghai.pk]},
            {"event": "order", "within_days": 90, "op": "gte", "value": 3},
            {"event": "ticket", "within_days": 30, "op": "eq", "value": 0},
        ]
    }
    client = client_as(admin)
    body = create(client, conditions, name="上海 · 高频用户 · 30 天无工单").json()

    assert body["member_count"] == 1
    assert body["conditions_text"] == (
        "区域在 上海（含下级） 且 近 90 天订单次数 ≥ 3 且 近 30 天工单次数 = 0"
    )
    CustomerEvent.objects.create(
        tenant=org.tenant,
        customer=book["pudong"],
        kind="ticket",
        event_id="ticket-1",
        occurred_at=timezone.now() - timedelta(days=2),
    )
    again = client.get(f"/api/customers/segments/{body['id']}").json()
    assert again["member_count"] == 0  # live: a ticket two days ago takes him out


def test_the_count_follows_the_customers_without_saving_the_segment_again(
    book, org, admin, client_as
):
    client = client_as(admin)
    segment_id = create(client, VIP).json()["id"]
    make_customer(admin, "周婷", "13611112222", region_id=org.pudong.pk, level="vip")

    assert client.get(f"/api/customers/segments/{segment_id}").json()["member_count"] == 4


def test_merged_customers_are_never_members(book, admin, client_as):
    services.customer_merge(
        actor=actor_for(admin),
        target_id=book["shanghai"].pk,
        source_id=book["guangzhou"].pk,
        reason="同一人",
    )
    segment_id = create(client_as(admin), VIP).json()["id"]

    r = client_as(admin).get(f"/api/customers/segments/{segment_id}/members")

    assert member_ids(r) == {book["pudong"].pk, book["shanghai"].pk}
    assert r.json()["count"] == 2


def test_members_read_like_the_customer_list_with_phones_masked_without_view_pii(
    book, admin, east_manager, shanghai_agent, client_as
):
    segment_id = create(client_as(admin), VIP).json()["id"]
    path = f"/api/customers/segments/{segment_id}/members"

    masked = client_as(shanghai_agent).get(path).json()["items"][0]
    full = next(
        c for c in client_as(east_manager).get(path).json()["items"] if c["name"] == "王建国"
    )
    listed = client_as(east_manager).get("/api/customers", {"q": "王建国"}).json()["items"][0]

    assert masked["phone"] == "138****0021"
    assert full["phone"] == "13817450021"
    assert full == listed  # the very fields of the customer list


def test_listing_members_takes_the_same_queries_for_few_or_many(book, org, admin, client_as):
    segment_id = create(client_as(admin), VIP).json()["id"]
    path = f"/api/customers/segments/{segment_id}/members"
    client = client_as(admin)
    client.get(path)  # warm up the session

    with CaptureQueriesContext(connection) as few:
        client.get(path)
    for i in range(6):
        make_customer(admin, f"新客户{i}", f"1360000000{i}", region_id=org.pudong.pk, level="vip")
    with CaptureQueriesContext(connection) as many:
        assert client.get(path).json()["count"] == 9

    assert len(many) == len(few)


def test_preview_counts_unsaved_conditions_for_the_reader_and_saves_nothing(
    book, east_manager, client_as
):
    r = client_as(east_manager).post(
        "/api/customers/segments/preview",
        {"conditions": {"any": [VIP, {"event": "order", "op": "gte", "value": 1}]}},
        content_type=JSON,
    )

    assert r.status_code == 200, r.content
    assert r.json() == {
        "member_count": 2,
        "conditions_text": "等级是 VIP 或 历史累计订单次数 ≥ 1",
    }
    assert not Segment.objects.exists()


def test_segment_members_is_an_audience_other_modules_can_use(book, admin, east_manager):
    segment = services.segment_create(actor=actor_for(admin), name="VIP", conditions_data=VIP)

    audience = services.segment_members(actor=actor_for(east_manager), segment_id=segment.pk)

    assert set(audience.values_list("pk", flat=True)) == {book["pudong"].pk, book["shanghai"].pk}
    assert set(audience.filter(region__name="浦东").values_list("name", flat=True)) == {"王建国"}


# --- bad conditions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "conditions,field",
    [
        ({"all": [VIP, {"field": "score", "op": "gte", "value": "60"}]}, "conditions.all.1.value"),
        ({"field": "salary", "op": "gt", "value": 1}, "conditions.field"),
        ({"event": "order", "within_days": 0, "value": 1}, "conditions.within_days"),
        (
            {"field": "created_at", "op": "after", "value": "2026-11-01T00:00:00"},
            "conditions.value",
        ),
        ({"field": "name", "op": "contains", "value": "王\x00"}, "conditions.value"),
    ],
)
def test_bad_conditions_are_refused_naming_the_part_and_nothing_is_saved(
    admin, client_as, conditions, field
):
    r = create(client_as(admin), conditions)

    assert r.status_code == 422, r.content
    assert r.json()["field"] == field
    assert r.json()["code"] == "invalid_condition"
    assert not Segment.objects.exists()


def test_another_tenants_tag_in_the_conditions_is_refused_like_a_missing_one(
    org, other_org, admin, client_as
):
    group = TagGroup.objects.create(tenant=other_org.tenant, name="别家")
    theirs = Tag.objects.create(tenant=other_org.tenant, group=group, name="别家标签")
    client = client_as(admin)

    foreign = create(client, {"all": [VIP, {"tag": theirs.pk}]}).json()
    missing = create(client, {"all": [VIP, {"tag": 987654321}]}).json()

    assert foreign["field"] == missing["field"] == "conditions.all.1.tag"
    assert foreign["message"].replace(str(theirs.pk), "?") == missing["message"].replace(
        "987654321", "?"
    )


def test_a_segment_whose_region_was_deleted_says_so_instead_of_counting(org, admin, client_as):
    gone = make_region(org.tenant, "临时区域", org.east)
    client = client_as(admin)
    body = create(client, {"field": "region", "op": "in", "value": [gone.pk]}).json()
    gone.delete()

    detail = client.get(f"/api/customers/segments/{body['id']}").json()
    members = client.get(f"/api/customers/segments/{body['id']}/members")

    assert detail["member_count"] is None
    assert "区域不存在" in detail["problem"]
    assert members.status_code == 409
    assert members.json()["code"] == "segment_conditions_invalid"
    assert members.json()["field"] == "conditions.value.0"


# --- changing and deleting -------------------------------------------------------------------


def test_names_are_unique_within_a_company_only(admin, other_admin, client_as):
    assert create(client_as(admin), VIP).status_code == 201

    again = create(client_as(admin), {"field": "level", "op": "eq", "value": "normal"})
    elsewhere = create(client_as(other_admin), VIP)

    assert again.status_code == 409
    assert again.json()["field"] == "name"
    assert elsewhere.status_code == 201


def test_updating_a_segment_changes_its_members_and_is_audited(book, org, admin, client_as):
    client = client_as(admin)
    segment_id = create(client, VIP).json()["id"]

    r = client.patch(
        f"/api/customers/segments/{segment_id}",
        {"conditions": {"all": [VIP, {"field": "region", "op": "in", "value": [org.south.pk]}]}},
        content_type=JSON,
    )

    assert r.status_code == 200, r.content
    assert r.json()["member_count"] == 1
    assert r.json()["name"] == "VIP 客户"
    event = AuditEvent.objects.get(action="customers.segment.updated")
    assert set(event.after) == {"conditions"}
    assert event.before["conditions"] == VIP


@pytest.mark.parametrize("field", ["name", "conditions", "description"])
def test_a_patch_cannot_empty_a_field_with_null(admin, client_as, field):
    client = client_as(admin)
    segment_id = create(client, VIP).json()["id"]

    r = client.patch(f"/api/customers/segments/{segment_id}", {field: None}, content_type=JSON)

    assert r.status_code == 422
    assert r.json()["field"] == field


def test_deleting_a_segment_is_audited(admin, client_as):
    client = client_as(admin)
    segment_id = create(client, VIP).json()["id"]

    assert client.delete(f"/api/customers/segments/{segment_id}").status_code == 204

    assert not Segment.objects.exists()
    event = AuditEvent.objects.get(action="customers.segment.deleted")
    assert event.before["name"] == "VIP 客户"
    assert client.get(f"/api/customers/segments/{segment_id}").status_code == 404


# --- who may do what -------------------------------------------------------------------------


def test_writing_segments_takes_customer_manage_for_the_whole_company(
    org, admin, east_manager, client_as
):
    segment_id = create(client_as(admin), VIP).json()["id"]
    regional = EmployeeFactory(tenant=org.tenant, name="区域运营", region=org.east)
    grant(regional, ["customer.view", "customer.manage"], "region")

    for who in (east_manager, regional):
        client = client_as(who)
        refused = [
            create(client, VIP, name="另一个"),
            client.patch(
                f"/api/customers/segments/{segment_id}", {"name": "改名"}, content_type=JSON
            ),
            client.delete(f"/api/customers/segments/{segment_id}"),
        ]
        assert [r.status_code for r in refused] == [403, 403, 403]
    assert Segment.objects.get().name == "VIP 客户"
    # …but both read it
    assert client_as(east_manager).get(f"/api/customers/segments/{segment_id}").status_code == 200


def test_reading_segments_takes_customer_view(org, admin, client_as):
    segment_id = create(client_as(admin), VIP).json()["id"]
    outsider = EmployeeFactory(tenant=org.tenant, name="行政")
    grant(outsider, ["org.view"], "tenant")
    client = client_as(outsider)

    assert client.get("/api/customers/segments").status_code == 403
    assert client.get(f"/api/customers/segments/{segment_id}").status_code == 403
    assert client.get(f"/api/customers/segments/{segment_id}/members").status_code == 403
    r = client.post("/api/customers/segments/preview", {"conditions": VIP}, content_type=JSON)
    assert r.status_code == 403


@pytest.mark.parametrize(
    "method,suffix",
    [("get", ""), ("patch", ""), ("delete", ""), ("get", "/members"), ("post", "/export")],
)
def test_another_companys_segment_answers_404_like_a_missing_one(
    book, admin, other_admin, client_as, method, suffix
):
    theirs = services.segment_create(actor=actor_for(other_admin), name="别家", conditions_data=VIP)
    client = client_as(admin)

    def call(segment_id: int) -> Any:
        return getattr(client, method)(
            f"/api/customers/segments/{segment_id}{suffix}",
            {"name": "改名"} if method == "patch" else None,
            content_type=JSON,
        )

    foreign, missing = call(theirs.pk), call(987654321)

    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()
    theirs.refresh_from_db()
    assert theirs.name == "别家"


def test_another_companys_segments_are_not_listed_and_theirs_hold_none_of_ours(
    book, admin, other_admin, client_as
):
    ours = create(client_as(admin), VIP).json()["id"]
    theirs = create(client_as(other_admin), VIP, name="别家 VIP").json()

    listed = client_as(admin).get("/api/customers/segments").json()["items"]

    assert [s["id"] for s in listed] == [ours]
    assert theirs["member_count"] == 0
    with pytest.raises(NotFound):
        services.segment_members(actor=actor_for(admin), segment_id=theirs["id"])


def test_segment_members_needs_customer_view(org, admin):
    segment = services.segment_create(actor=actor_for(admin), name="VIP", conditions_data=VIP)
    outsider = EmployeeFactory(tenant=org.tenant)
    grant(outsider, ["org.view"], "tenant")

    with pytest.raises(Forbidden):
        services.segment_members(actor=actor_for(outsider), segment_id=segment.pk)
