"""Auto-tag rules: the two shipped rules against hand-made event histories (boundaries included),
on an event's arrival and in the batch alike; a person's tag never touched by a rule; single-choice
groups; the rule API with its checks, dry run and run; and the demo data."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from jingwei.audit.models import AuditEvent
from jingwei.customers import services
from jingwei.customers.demo import DEMO_TAG_RULES
from jingwei.customers.models import Customer, CustomerEvent, CustomerTag, Tag, TagGroup, TagRule
from jingwei.customers.services import tag_rules
from jingwei.org.scope import actor_for

from ..factories import grant
from .factories import make_customer

pytestmark = pytest.mark.django_db

JSON = "application/json"
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.get_fixed_timezone(480))


def post(client: Any, path: str, body: Any = None) -> Any:
    return client.post(path, json.dumps(body or {}), content_type=JSON)


@pytest.fixture
def shipped(org):
    """The shipped rules (潜在流失客户, 高频用户) on tags of 客户行为, plus 价值 (single choice)."""
    behaviour = TagGroup.objects.create(tenant=org.tenant, name="客户行为")
    value = TagGroup.objects.create(tenant=org.tenant, name="客户价值", choice="single", sort=1)
    tags = {
        name: Tag.objects.create(tenant=org.tenant, group=behaviour, name=name)
        for name in ("潜在流失客户", "高频用户")
    }
    tags.update(
        {
            name: Tag.objects.create(tenant=org.tenant, group=value, name=name)
            for name in ("高价值", "低价值")
        }
    )
    rules = {
        name: TagRule.objects.create(
            tenant=org.tenant, name=name, tag=tags[tag], conditions=conditions
        )
        for name, tag, conditions in DEMO_TAG_RULES
    }
    return tags, rules


def history(customer: Customer, *events: tuple[str, str, timedelta]) -> None:
    """Events (kind, channel, how long before NOW) written as the ingest would store them."""
    for i, (kind, channel, before) in enumerate(events):
        CustomerEvent.objects.create(
            tenant_id=customer.tenant_id,
            customer=customer,
            kind=kind,
            channel=channel,
            event_id=f"{customer.pk}-{i}-{kind}",
            occurred_at=NOW - before,
            amount=Decimal("100.00") if kind == "order" else None,
        )


def evaluate(customer: Customer, how: str) -> set[str]:
    if how == "on arrival":
        services.rules_apply_to_customer(
            tenant_id=customer.tenant_id, customer_id=customer.pk, now=NOW
        )
    else:
        services.rules_run_all(tenant_id=customer.tenant_id, now=NOW)
    return set(CustomerTag.objects.filter(customer=customer).values_list("tag__name", flat=True))


HOW = ["on arrival", "batch"]
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


# --- the shipped rules, at their boundaries --------------------------------------------------


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(
    "orders,tagged",
    [
        ([10 * DAY, 40 * DAY, 80 * DAY], True),
        ([10 * DAY, 40 * DAY], False),
        ([10 * DAY, 40 * DAY, 90 * DAY], True),  # the 90-day edge counts
        ([10 * DAY, 40 * DAY, 90 * DAY + SECOND], False),  # a second beyond it does not
        ([1 * DAY, 2 * DAY, 3 * DAY, 4 * DAY], True),
    ],
    ids=["three", "two", "third-at-90-days", "third-just-beyond-90-days", "four"],
)
def test_frequent_buyer_is_three_orders_in_90_days(shipped, admin, how, orders, tagged):
    wang = make_customer(admin, "王建国", "13817450021")
    history(wang, *[("order", "taobao", t) for t in orders], ("page_view", "web", DAY))

    assert ("高频用户" in evaluate(wang, how)) is tagged


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(
    "events,tagged",
    [
        ([("page_view", "miniprogram", h * DAY / 24) for h in (1, 20, 50)], True),
        ([("page_view", "miniprogram", h * DAY / 24) for h in (1, 20)], False),
        ([("page_view", "miniprogram", t) for t in (DAY / 24, DAY, 3 * DAY)], True),
        ([("page_view", "miniprogram", t) for t in (DAY / 24, DAY, 3 * DAY + SECOND)], False),
        (
            [
                ("page_view", "miniprogram", DAY / 24),
                ("page_view", "miniprogram", DAY),
                ("page_view", "web", DAY / 2),
            ],
            False,
        ),
        (
            [("page_view", "miniprogram", t * DAY) for t in (0.1, 1, 2)] + [("order", "", DAY)],
            False,
        ),
        (
            [("page_view", "miniprogram", t * DAY) for t in (0.1, 1, 2)] + [("order", "", 3 * DAY)],
            False,
        ),
        (
            [("page_view", "miniprogram", t * DAY) for t in (0.1, 1, 2)]
            + [("order", "", 3 * DAY + SECOND)],
            True,
        ),
    ],
    ids=[
        "three-views",
        "two-views",
        "third-view-at-3-days",
        "third-view-just-beyond",
        "one-of-three-from-the-web",
        "ordered-yesterday",
        "ordered-exactly-3-days-ago",
        "ordered-just-over-3-days-ago",
    ],
)
def test_likely_to_churn_is_three_mini_program_views_in_3_days_without_an_order(
    shipped, admin, how, events, tagged
):
    zhao = make_customer(admin, "赵敏", "13800000001")
    history(zhao, *events)

    assert ("潜在流失客户" in evaluate(zhao, how)) is tagged


@pytest.mark.parametrize("how", HOW)
def test_a_rule_takes_its_tag_off_when_the_customer_no_longer_matches(shipped, org, admin, how):
    _, rules = shipped
    wang = make_customer(admin, "王建国", "13817450021")
    history(wang, *[("order", "taobao", d * DAY) for d in (10, 40, 80)])
    assert "高频用户" in evaluate(wang, how)
    CustomerEvent.objects.filter(customer=wang, kind="order").update(occurred_at=NOW - 100 * DAY)

    assert "高频用户" not in evaluate(wang, how)
    rules["高频用户"].remove_unmatched = False
    rules["高频用户"].save()
    CustomerEvent.objects.filter(customer=wang, kind="order").update(occurred_at=NOW - DAY)
    assert "高频用户" in evaluate(wang, how)
    CustomerEvent.objects.filter(customer=wang, kind="order").delete()
    assert "高频用户" in evaluate(wang, how)  # kept: this rule does not remove


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("source", ["manual", "import", "integration"])
def test_a_tag_a_person_or_an_import_set_is_never_removed_by_a_rule(
    shipped, org, admin, how, source
):
    tags, _ = shipped
    li = make_customer(admin, "李秀英", "13916620318")
    CustomerTag.objects.create(
        tenant=org.tenant,
        customer=li,
        tag=tags["高频用户"],
        source=source,
        tagged_by=admin,
        tagged_at=NOW,
    )

    assert evaluate(li, how) == {"高频用户"}
    link = CustomerTag.objects.get(customer=li)
    assert (link.source, link.rule_id, link.tagged_by_id) == (source, None, admin.pk)


@pytest.mark.parametrize("how", HOW)
def test_in_a_single_choice_group_a_rule_replaces_a_rules_tag_but_not_a_persons(
    shipped, org, admin, how
):
    tags, _ = shipped
    big = TagRule.objects.create(
        tenant=org.tenant,
        name="大单客户",
        tag=tags["高价值"],
        conditions={"event": "order", "measure": "amount", "op": "gte", "value": "200"},
    )
    small = TagRule.objects.create(
        tenant=org.tenant,
        name="近半年未下单",
        tag=tags["低价值"],
        conditions={"event": "order", "within_days": 180, "op": "eq", "value": 0},
    )
    by_rule = make_customer(admin, "王建国", "13817450021")
    by_person = make_customer(admin, "李秀英", "13916620318")
    for customer in (by_rule, by_person):
        history(customer, ("order", "taobao", 200 * DAY), ("order", "taobao", 190 * DAY))
    CustomerTag.objects.create(
        tenant=org.tenant,
        customer=by_rule,
        tag=tags["低价值"],
        source="rule",
        rule=small,
        tagged_at=NOW,
    )
    CustomerTag.objects.create(
        tenant=org.tenant,
        customer=by_person,
        tag=tags["低价值"],
        source="manual",
        tagged_by=admin,
        tagged_at=NOW,
    )
    # Both rules match both customers: 大单客户, the earlier rule, outranks 近半年未下单.

    assert evaluate(by_rule, how) == {"高价值"}
    if how == "batch":
        stats = TagRule.objects.get(pk=big.pk).last_run_stats
        assert (stats["replaced"], stats["kept_by_person"]) == (1, 1)
        assert TagRule.objects.get(pk=small.pk).last_run_stats["kept_by_earlier_rule"] == 1
    assert evaluate(by_person, how) == {"低价值"}
    assert CustomerTag.objects.get(customer=by_rule).rule == big
    assert CustomerTag.objects.get(customer=by_person).source == "manual"
    # Evaluated again: the earlier rule keeps its tag, nothing flips.
    events = CustomerEvent.objects.count()
    assert evaluate(by_rule, how) == {"高价值"}
    assert CustomerEvent.objects.count() == events


def test_the_batch_reports_what_it_did_on_each_rule_and_a_rerun_changes_nothing(shipped, admin):
    _, rules = shipped
    wang = make_customer(admin, "王建国", "13817450021")
    zhao = make_customer(admin, "赵敏", "13800000001")
    history(wang, *[("order", "taobao", d * DAY) for d in (1, 2, 3)])
    history(zhao, *[("page_view", "miniprogram", d * DAY) for d in (0.1, 0.2, 0.3)])

    first = services.rules_run_all(tenant_id=admin.tenant_id, now=NOW)
    events = CustomerEvent.objects.count()
    second = services.rules_run_all(tenant_id=admin.tenant_id, now=NOW)

    assert (first["added"], first["removed"]) == (2, 0)
    assert (second["added"], second["removed"]) == (0, 0)
    assert CustomerEvent.objects.count() == events
    stats = TagRule.objects.get(pk=rules["高频用户"].pk).last_run_stats
    assert {k: stats[k] for k in ("matched", "added", "removed")} == {
        "matched": 1,
        "added": 0,
        "removed": 0,
    }
    assert TagRule.objects.get(pk=rules["高频用户"].pk).last_run_at == NOW
    timeline = CustomerEvent.objects.get(customer=wang, kind="system")
    assert timeline.title == "自动标签规则「高频用户」：添加标签「高频用户」"
    assert AuditEvent.objects.filter(action="customers.tag_rule.run").count() == 4


def test_a_merged_customer_is_neither_tagged_nor_untagged_by_the_batch(shipped, org, admin):
    tags, rules = shipped
    wang = make_customer(admin, "王建国", "13817450021")
    twin = make_customer(admin, "王建国", "13817450029")
    history(twin, *[("order", "taobao", d * DAY) for d in (1, 2, 3)])
    CustomerTag.objects.create(
        tenant=org.tenant,
        customer=wang,
        tag=tags["潜在流失客户"],
        source="rule",
        rule=rules["潜在流失客户"],
        tagged_at=NOW,
    )
    services.customer_merge(actor=actor_for(admin), target_id=wang.pk, source_id=twin.pk)

    services.rules_run_all(tenant_id=admin.tenant_id, now=NOW)

    assert {t.tag.name for t in CustomerTag.objects.filter(customer=wang)} == {"高频用户"}
    assert not CustomerTag.objects.filter(customer=twin).exists()


def test_a_rule_whose_conditions_no_longer_hold_is_skipped_and_reports_why(shipped, org, admin):
    tags, _ = shipped
    region = org.guangzhou
    broken = TagRule.objects.create(
        tenant=org.tenant,
        name="广州客户",
        tag=tags["高价值"],
        conditions={"field": "region", "op": "in", "value": [region.pk]},
    )
    TagRule.objects.filter(pk=broken.pk).update(
        conditions={"field": "region", "op": "in", "value": [987654321]}
    )
    wang = make_customer(admin, "王建国", "13817450021")
    history(wang, *[("order", "taobao", d * DAY) for d in (1, 2, 3)])

    services.rules_run_all(tenant_id=admin.tenant_id, now=NOW)

    assert "error" in TagRule.objects.get(pk=broken.pk).last_run_stats
    assert evaluate(wang, "on arrival") == {"高频用户"}


# --- the rule API ----------------------------------------------------------------------------


def test_a_manager_saves_a_rule_and_runs_it_for_everyone(shipped, admin, client_as):
    tags, _ = shipped
    client = client_as(admin)
    wang = make_customer(admin, "王建国", "13817450021", level="vip")

    created = post(
        client,
        "/api/customers/tag-rules",
        {
            "name": "VIP 即高价值",
            "tag_id": tags["高价值"].pk,
            "conditions": {"field": "level", "op": "eq", "value": "vip"},
        },
    )
    run = post(client, f"/api/customers/tag-rules/{created.json()['id']}/run")

    assert created.status_code == 201, created.content
    assert created.json()["tag_name"] == "高价值"
    assert created.json()["group_name"] == "客户价值"
    assert created.json()["last_run_at"] is None
    assert run.status_code == 200, run.content
    assert run.json()["last_run_stats"]["added"] == 1
    (tag,) = client.get(f"/api/customers/{wang.pk}/tags").json()
    assert (tag["tag_name"], tag["source"], tag["rule_name"], tag["tagged_by_id"]) == (
        "高价值",
        "rule",
        "VIP 即高价值",
        None,
    )


@pytest.mark.parametrize(
    "conditions,field",
    [
        (
            {
                "all": [
                    {"field": "level", "op": "eq", "value": "vip"},
                    {"field": "score", "op": "gt", "value": "x"},
                ]
            },
            "conditions.all.1.value",
        ),
        ({"event": "teleport", "op": "gte", "value": 1}, "conditions.event"),
        ({"tag": 987654321}, "conditions.tag"),
        ({"not": {"tag": "SELF"}}, "conditions"),
    ],
    ids=["bad-value", "unknown-event", "missing-tag", "tests-its-own-tag"],
)
def test_bad_conditions_are_refused_naming_the_part(shipped, admin, client_as, conditions, field):
    tags, _ = shipped
    text = json.dumps(conditions).replace('"SELF"', str(tags["高价值"].pk))

    r = post(
        client_as(admin),
        "/api/customers/tag-rules",
        {"name": "坏规则", "tag_id": tags["高价值"].pk, "conditions": json.loads(text)},
    )

    assert r.status_code == 422, r.content
    assert r.json()["field"] == field
    assert not TagRule.objects.filter(name="坏规则").exists()


def test_rule_names_are_unique_and_the_tag_of_a_rule_that_tagged_someone_stays(
    shipped, admin, client_as
):
    tags, rules = shipped
    client = client_as(admin)
    wang = make_customer(admin, "王建国", "13817450021")
    history(wang, *[("order", "taobao", d * DAY) for d in (1, 2, 3)])
    services.rules_run_all(tenant_id=admin.tenant_id)
    rule = rules["高频用户"]

    clash = client.patch(
        f"/api/customers/tag-rules/{rule.pk}", {"name": "潜在流失客户"}, content_type=JSON
    )
    retag = client.patch(
        f"/api/customers/tag-rules/{rule.pk}", {"tag_id": tags["高价值"].pk}, content_type=JSON
    )
    pause = client.patch(
        f"/api/customers/tag-rules/{rule.pk}", {"enabled": False}, content_type=JSON
    )
    disabled_run = post(client, f"/api/customers/tag-rules/{rule.pk}/run")

    assert (clash.status_code, clash.json()["field"]) == (409, "name")
    assert (retag.status_code, retag.json()["code"]) == (409, "rule_has_tagged")
    assert pause.json()["enabled"] is False
    assert (disabled_run.status_code, disabled_run.json()["code"]) == (409, "rule_disabled")


@pytest.mark.parametrize("remove_tags,left", [(False, {"高频用户"}), (True, set())])
def test_deleting_a_rule_keeps_its_tags_unless_asked(shipped, admin, client_as, remove_tags, left):
    _, rules = shipped
    wang = make_customer(admin, "王建国", "13817450021")
    history(wang, *[("order", "taobao", d * DAY) for d in (1, 2, 3)])
    services.rules_run_all(tenant_id=admin.tenant_id)

    r = client_as(admin).delete(
        f"/api/customers/tag-rules/{rules['高频用户'].pk}?remove_tags={str(remove_tags).lower()}"
    )

    assert r.status_code == 204
    assert {t.tag.name for t in CustomerTag.objects.filter(customer=wang)} == left
    if not remove_tags:
        assert CustomerTag.objects.get(customer=wang).rule is None  # 规则已删除


def test_the_dry_run_counts_and_lists_only_the_customers_the_reader_may_see(
    shipped, org, admin, east_manager, client_as
):
    grant(east_manager, ["customer.manage"], "region", region=org.east)
    for i, region in enumerate([org.pudong, org.shanghai, org.guangzhou]):
        make_customer(admin, f"VIP{i}", f"1380000000{i}", region_id=region.pk, level="vip")
    make_customer(admin, "普通", "13900000000", region_id=org.pudong.pk)
    body = {"conditions": {"field": "level", "op": "eq", "value": "vip"}}

    hq = post(client_as(admin), "/api/customers/tag-rules/preview", body).json()
    east = post(client_as(east_manager), "/api/customers/tag-rules/preview", body).json()
    bad = post(client_as(admin), "/api/customers/tag-rules/preview", {"conditions": {"x": 1}})

    assert hq["count"] == 3
    assert east["count"] == 2
    assert sorted(c["name"] for c in east["customers"]) == ["VIP0", "VIP1"]
    assert east["customers"][0]["phone"] == "13800000001"  # the manager may see PII
    assert (bad.status_code, bad.json()["field"]) == (422, "conditions")
    assert not CustomerTag.objects.exists()


def test_rules_are_for_customer_managers_of_the_tenant_only(
    shipped, org, east_manager, other_admin, client_as
):
    _, rules = shipped
    rule = rules["高频用户"]
    grant(east_manager, ["customer.manage"], "region", region=org.east)
    regional = client_as(east_manager)

    assert regional.get("/api/customers/tag-rules").status_code == 200
    assert post(regional, f"/api/customers/tag-rules/{rule.pk}/run").json()["code"] == (
        "scope_too_narrow"
    )
    foreign = client_as(other_admin)
    for method, path in [
        ("get", f"/api/customers/tag-rules/{rule.pk}"),
        ("post", f"/api/customers/tag-rules/{rule.pk}/run"),
        ("delete", f"/api/customers/tag-rules/{rule.pk}"),
    ]:
        r = getattr(foreign, method)(path, content_type=JSON)
        missing = getattr(foreign, method)(
            path.replace(str(rule.pk), "987654321"), content_type=JSON
        )
        assert r.status_code == 404
        assert r.json() == missing.json()
    assert foreign.get("/api/customers/tag-rules").json() == []
    assert TagRule.objects.filter(pk=rule.pk).exists()


def test_another_tenants_tag_cannot_be_the_rules_tag_or_in_its_conditions(
    shipped, other_org, admin, client_as
):
    foreign = Tag.objects.create(
        tenant=other_org.tenant,
        group=TagGroup.objects.create(tenant=other_org.tenant, name="外"),
        name="外标签",
    )
    tags, _ = shipped
    client = client_as(admin)
    base = {"name": "试", "conditions": {"field": "level", "op": "eq", "value": "vip"}}

    as_target = post(client, "/api/customers/tag-rules", {**base, "tag_id": foreign.pk})
    missing = post(client, "/api/customers/tag-rules", {**base, "tag_id": 987654321})
    in_conditions = post(
        client,
        "/api/customers/tag-rules",
        {**base, "tag_id": tags["高价值"].pk, "conditions": {"tag": foreign.pk}},
    )

    assert as_target.status_code == 404
    assert as_target.json() == missing.json()
    assert (in_conditions.status_code, in_conditions.json()["field"]) == (422, "conditions.tag")


def test_a_batch_run_with_very_many_changes_keeps_the_timelines_clean_and_says_so(
    shipped, admin, monkeypatch
):
    monkeypatch.setattr(tag_rules, "TIMELINE_MAX_CHANGES", 1)
    _, rules = shipped
    customers = [make_customer(admin, f"客户{i}", f"1380000000{i}") for i in range(2)]
    for c in customers:
        history(c, *[("order", "taobao", d * DAY) for d in (1, 2, 3)])

    services.rules_run_all(tenant_id=admin.tenant_id, now=NOW)

    stats = TagRule.objects.get(pk=rules["高频用户"].pk).last_run_stats
    assert (stats["added"], stats["timeline"]) == (2, False)
    assert CustomerTag.objects.filter(tag__name="高频用户").count() == 2
    assert not CustomerEvent.objects.filter(kind="system").exists()
    assert (
        AuditEvent.objects.get(
            action="customers.tag_rule.run", subject_id=str(rules["高频用户"].pk)
        ).data["added"]
        == 2
    )
