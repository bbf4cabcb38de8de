"""Behaviour events as an integration sends them: stored once whatever the retries, landing on the
right customer (found or created by identity, merged ones on their survivor), tagging by rule on
arrival, refused item by item in a batch, within the sender's data scope and tenant."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from jingwei.audit.models import AuditEvent
from jingwei.customers import services
from jingwei.customers.models import (
    Customer,
    CustomerEvent,
    CustomerTag,
    Identity,
    Tag,
    TagGroup,
    TagRule,
)
from jingwei.org.scope import actor_for

from ..factories import grant
from .factories import make_customer

pytestmark = pytest.mark.django_db

JSON = "application/json"


def post(client: Any, path: str, body: Any) -> Any:
    return client.post(path, json.dumps(body), content_type=JSON)


def ago(**delta: float) -> str:
    return (timezone.now() - timedelta(**delta)).isoformat()


def order(customer_id: int | None, event_id: str, days: float = 1, **extra: Any) -> dict[str, Any]:
    body = {
        "event_id": event_id,
        "kind": "order",
        "channel": "taobao",
        "occurred_at": ago(days=days),
        "title": "淘宝订单：空调清洗",
        "amount": "199.00",
        "data": {"order_no": event_id, "items": [{"sku": "AC-CLEAN", "qty": 1}]},
        **extra,
    }
    if customer_id is not None:
        body["customer_id"] = customer_id
    return body


@pytest.fixture
def wang(admin, org):
    return make_customer(admin, "王建国", "13817450021", region_id=org.pudong.pk)


@pytest.fixture
def frequent_rule(org):
    group = TagGroup.objects.create(tenant=org.tenant, name="客户行为")
    tag = Tag.objects.create(tenant=org.tenant, group=group, name="高频用户")
    return TagRule.objects.create(
        tenant=org.tenant,
        name="高频用户",
        tag=tag,
        conditions={"event": "order", "within_days": 90, "op": "gte", "value": 3},
    )


# --- idempotency -----------------------------------------------------------------------------


def test_the_same_event_sent_twice_is_stored_once_and_answered_200_the_second_time(
    wang, admin, client_as
):
    client = client_as(admin)
    body = order(wang.pk, "TB20261101001")

    first = post(client, "/api/customers/events", body)
    again = post(client, "/api/customers/events", body)

    assert first.status_code == 201, first.content
    assert again.status_code == 200, again.content
    assert again.json() == first.json()
    assert first.json()["amount"] == "199.00"
    assert first.json()["kind_label"] == "订单"
    assert CustomerEvent.objects.filter(event_id="TB20261101001").count() == 1


def test_a_different_event_under_a_used_id_is_409_naming_event_id_and_what_differs(
    wang, admin, client_as
):
    client = client_as(admin)
    body = order(wang.pk, "TB20261101002")
    post(client, "/api/customers/events", body)

    r = post(client, "/api/customers/events", {**body, "amount": "299.00", "title": "改过的"})

    assert r.status_code == 409
    assert r.json()["field"] == "event_id"
    assert r.json()["code"] == "event_id_conflict"
    assert "amount" in r.json()["message"] and "title" in r.json()["message"]
    assert CustomerEvent.objects.get(event_id="TB20261101002").amount == 199


def test_a_repeated_order_does_not_count_twice_for_a_rule(wang, frequent_rule, admin, client_as):
    client = client_as(admin)
    post(client, "/api/customers/events", order(wang.pk, "o-1", days=30))
    body = order(wang.pk, "o-2-retried", days=10)

    for _ in range(3):
        post(client, "/api/customers/events", body)

    assert not CustomerTag.objects.filter(customer=wang).exists()  # two orders, not four
    post(client, "/api/customers/events", order(wang.pk, "o-3", days=5))
    assert CustomerTag.objects.filter(customer=wang).exists()


def test_an_event_id_of_a_customer_out_of_the_senders_scope_reveals_nothing(
    org, admin, shanghai_agent, client_as
):
    grant(shanghai_agent, ["customer.edit"], "self")
    theirs = make_customer(admin, "黄丽", "13926075512", region_id=org.guangzhou.pk)
    mine = make_customer(shanghai_agent, "李秀英", "13916620318", region_id=org.shanghai.pk)
    post(client_as(admin), "/api/customers/events", order(theirs.pk, "shared-id"))

    r = post(client_as(shanghai_agent), "/api/customers/events", order(mine.pk, "shared-id"))

    assert r.status_code == 409
    assert "黄丽" not in r.content.decode() and str(theirs.pk) not in r.json()["message"]
    assert CustomerEvent.objects.filter(event_id="shared-id").get().customer_id == theirs.pk


def test_event_ids_are_per_tenant(wang, admin, other_admin, other_org, client_as):
    foreign = make_customer(other_admin, "外人客户", "13700000009")

    ours = post(client_as(admin), "/api/customers/events", order(wang.pk, "same-id"))
    theirs = post(client_as(other_admin), "/api/customers/events", order(foreign.pk, "same-id"))

    assert ours.status_code == theirs.status_code == 201
    assert ours.json()["id"] != theirs.json()["id"]


# --- whose event -----------------------------------------------------------------------------


def test_an_unknown_identity_creates_the_customer_through_resolution(admin, client_as):
    body = order(
        None,
        "mp-view-1",
        kind="page_view",
        channel="miniprogram",
        amount=None,
        identities=[{"kind": "wechat_unionid", "value": "oUnionZhaoMin01"}],
        customer_name="赵敏",
    )

    r = post(client_as(admin), "/api/customers/events", body)

    assert r.status_code == 201, r.content
    customer = Customer.objects.get(pk=r.json()["customer_id"])
    assert customer.name == "赵敏"
    assert customer.owner_id == admin.pk
    assert customer.identities.get().value == "oUnionZhaoMin01"
    assert customer.identities.get().source == "event:miniprogram"
    # Sent again: recognised as the same event before resolving, nobody registered twice.
    assert post(client_as(admin), "/api/customers/events", body).status_code == 200
    assert Customer.objects.filter(name="赵敏").count() == 1


def test_a_known_identity_lands_on_its_customer(wang, admin, client_as):
    body = order(None, "by-phone", identities=[{"kind": "phone", "value": "+86 138 1745 0021"}])

    r = post(client_as(admin), "/api/customers/events", body)

    assert r.json()["customer_id"] == wang.pk


def test_a_merged_customers_id_lands_on_the_survivor(wang, admin, client_as):
    duplicate = make_customer(admin, "王建国", "13817450029")
    services.customer_merge(actor=actor_for(admin), target_id=wang.pk, source_id=duplicate.pk)

    r = post(client_as(admin), "/api/customers/events", order(duplicate.pk, "after-merge"))

    assert r.status_code == 201
    assert r.json()["customer_id"] == wang.pk


@pytest.mark.parametrize(
    "change,field",
    [
        ({"customer_id": None}, "customer_id"),
        ({"identities": [{"kind": "phone", "value": "13800000001"}]}, "customer_id"),
        ({"event_id": "jw:abc"}, "event_id"),
        ({"occurred_at": "2999-01-01T00:00:00+08:00"}, "occurred_at"),
        ({"occurred_at": "2026-01-01T00:00:00"}, "occurred_at"),
        ({"kind": "system"}, "kind"),
        ({"amount": "12.345"}, "amount"),
        ({"data": {"note": "含\x00字符"}}, "data"),
        ({"data": {"blob": "长" * 9000}}, "data"),
        ({"data": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}}, "data"),
    ],
)
def test_bad_events_are_refused_naming_the_field_and_nothing_is_stored(
    wang, admin, client_as, change, field
):
    body = {k: v for k, v in {**order(wang.pk, "bad-1"), **change}.items() if v is not None}

    r = post(client_as(admin), "/api/customers/events", body)

    assert r.status_code == 422, r.content
    assert r.json()["field"] == field
    assert not CustomerEvent.objects.exists()


def test_an_event_older_than_the_retention_is_refused(wang, admin, client_as, actor_of):
    services.customer_settings_update(actor=actor_of(admin), event_retention_days=30)

    r = post(client_as(admin), "/api/customers/events", order(wang.pk, "old", days=31))

    assert r.status_code == 422
    assert (r.json()["code"], r.json()["field"]) == ("event_expired", "occurred_at")


# --- rules on arrival ------------------------------------------------------------------------


def test_the_third_order_in_90_days_tags_the_customer_and_says_which_rule(
    wang, frequent_rule, admin, client_as
):
    client = client_as(admin)
    post(client, "/api/customers/events", order(wang.pk, "o-1", days=80))
    post(client, "/api/customers/events", order(wang.pk, "o-2", days=40))
    assert not CustomerTag.objects.filter(customer=wang).exists()

    post(client, "/api/customers/events", order(wang.pk, "o-3", days=1))

    tags = client.get(f"/api/customers/{wang.pk}/tags").json()
    assert [(t["tag_name"], t["source"], t["rule_name"]) for t in tags] == [
        ("高频用户", "rule", "高频用户")
    ]
    timeline = client.get(f"/api/customers/{wang.pk}/timeline").json()["items"]
    assert timeline[0]["kind"] == "system"
    assert timeline[0]["title"] == "自动标签规则「高频用户」：添加标签「高频用户」"
    assert AuditEvent.objects.filter(
        action="customers.tags.changed", subject_id=str(wang.pk), actor_id=None
    ).exists()


def test_a_batch_tags_once_per_customer_on_all_its_new_events(
    wang, frequent_rule, admin, client_as
):
    items = [order(wang.pk, f"batch-{i}", days=10 + i) for i in range(3)]

    r = post(client_as(admin), "/api/customers/events/batch", {"items": items})

    assert r.json()["created"] == 3
    assert CustomerTag.objects.get(customer=wang).rule == frequent_rule
    assert CustomerEvent.objects.filter(customer=wang, kind="system").count() == 1


# --- batches ---------------------------------------------------------------------------------


def test_one_bad_item_does_not_sink_the_others_and_each_says_what_happened(
    org, wang, admin, client_as
):
    client = client_as(admin)
    sent_before = order(wang.pk, "sent-before")
    post(client, "/api/customers/events", sent_before)
    foreign_scope = make_customer(admin, "黄丽", "13926075512", region_id=org.guangzhou.pk)
    items = [
        order(wang.pk, "new-1"),
        sent_before,
        {**order(wang.pk, "bad-kind"), "kind": "teleport"},
        {k: v for k, v in order(wang.pk, "no-who").items() if k != "customer_id"},
        order(wang.pk, "bad-phone", identities=[{"kind": "phone", "value": "abc"}]),
        {**order(None, "by-identity"), "identities": [{"kind": "email", "value": "zm@qq.com"}]},
        order(foreign_scope.pk, "new-2"),
    ]

    r = post(client, "/api/customers/events/batch", {"items": items})

    assert r.status_code == 200, r.content
    data = r.json()
    assert (data["created"], data["duplicates"], data["errors"]) == (3, 1, 3)
    results = data["results"]
    assert [x["status"] for x in results] == [
        "created",
        "duplicate",
        "error",
        "error",
        "error",
        "created",
        "created",
    ]
    assert results[2]["field"] == "items.2.kind"
    assert results[3]["field"] == "items.3.customer_id"
    assert results[4]["field"] == "items.4.customer_id"  # both given: one of the two only
    assert results[1]["id"] == CustomerEvent.objects.get(event_id="sent-before").pk
    assert set(CustomerEvent.objects.values_list("event_id", flat=True)) == {
        "sent-before",
        "new-1",
        "by-identity",
        "new-2",
    }


def test_a_batch_within_a_narrow_scope_stores_only_the_senders_customers(
    org, admin, shanghai_agent, client_as
):
    grant(shanghai_agent, ["customer.edit"], "self")
    mine = make_customer(shanghai_agent, "李秀英", "13916620318", region_id=org.shanghai.pk)
    not_mine = make_customer(admin, "黄丽", "13926075512", region_id=org.guangzhou.pk)

    r = post(
        client_as(shanghai_agent),
        "/api/customers/events/batch",
        {"items": [order(mine.pk, "a"), order(not_mine.pk, "b")]},
    )

    results = r.json()["results"]
    assert [x["status"] for x in results] == ["created", "error"]
    assert (results[1]["code"], results[1]["field"]) == ("not_found", "items.1.customer_id")
    assert list(CustomerEvent.objects.values_list("event_id", flat=True)) == ["a"]


def test_a_batch_over_500_items_is_refused_whole(wang, admin, client_as):
    items = [order(wang.pk, f"x{i}") for i in range(501)]

    r = post(client_as(admin), "/api/customers/events/batch", {"items": items})

    assert r.status_code == 422
    assert r.json()["field"] == "items"


# --- who may send ----------------------------------------------------------------------------


def test_ingest_needs_edit_rights_on_the_customer(
    org, wang, admin, east_manager, shanghai_agent, other_admin, client_as
):
    grant(shanghai_agent, ["customer.edit"], "self")
    mine = make_customer(shanghai_agent, "李秀英", "13916620318", region_id=org.shanghai.pk)

    viewer = post(client_as(east_manager), "/api/customers/events", order(wang.pk, "v"))
    own = post(client_as(shanghai_agent), "/api/customers/events", order(mine.pk, "s1"))
    others = post(client_as(shanghai_agent), "/api/customers/events", order(wang.pk, "s2"))
    foreign = post(client_as(other_admin), "/api/customers/events", order(wang.pk, "f"))
    missing = post(client_as(other_admin), "/api/customers/events", order(987654321, "f"))

    assert viewer.status_code == 403
    assert own.status_code == 201
    assert others.status_code == 404
    assert foreign.status_code == 404
    assert foreign.json() == missing.json()
    assert list(CustomerEvent.objects.values_list("event_id", flat=True)) == ["s1"]


def test_ingesting_by_identity_of_someone_elses_customer_is_refused_without_writing(
    wang, shanghai_agent, client_as
):
    grant(shanghai_agent, ["customer.edit"], "self")
    body = order(None, "x", identities=[{"kind": "phone", "value": "13817450021"}])

    r = post(client_as(shanghai_agent), "/api/customers/events", body)

    assert r.status_code == 409
    assert r.json()["code"] == "customer_exists_elsewhere"
    assert not CustomerEvent.objects.exists()
    assert Identity.objects.count() == 1
