"""Tags as people use them: a catalogue the managers keep (names unique, nothing in use deleted by
accident), tags put on and taken off customers by hand (who and when kept, single-choice groups
holding one tag), in bulk all-or-nothing, within the tagger's scope and tenant."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.utils import timezone

from jingwei.audit.models import AuditEvent
from jingwei.customers import services
from jingwei.customers.models import (
    CustomerEvent,
    CustomerTag,
    Segment,
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


def patch(client: Any, path: str, body: Any) -> Any:
    return client.patch(path, json.dumps(body), content_type=JSON)


@pytest.fixture
def catalogue(org):
    """客户价值 (single choice: 高价值 / 中价值 / 低价值) and 兴趣 (multi: 空调 / 冰箱)."""
    value = TagGroup.objects.create(tenant=org.tenant, name="客户价值", choice="single")
    interest = TagGroup.objects.create(tenant=org.tenant, name="兴趣", sort=1)
    tags = {
        name: Tag.objects.create(tenant=org.tenant, group=value, name=name, sort=i)
        for i, name in enumerate(["高价值", "中价值", "低价值"])
    }
    tags.update(
        {
            name: Tag.objects.create(tenant=org.tenant, group=interest, name=name)
            for name in ["空调", "冰箱"]
        }
    )
    return tags


@pytest.fixture
def book(admin, org, shanghai_agent):
    """王建国 (浦东, the agent's own), 李秀英 (上海), 黄丽 (广州)."""
    grant(shanghai_agent, ["customer.edit"], "self")
    return {
        "wang": make_customer(shanghai_agent, "王建国", "13817450021", region_id=org.pudong.pk),
        "li": make_customer(admin, "李秀英", "13916620318", region_id=org.shanghai.pk),
        "huang": make_customer(admin, "黄丽", "13926075512", region_id=org.guangzhou.pk),
    }


def tag_names(customer: Any) -> set[str]:
    return set(CustomerTag.objects.filter(customer=customer).values_list("tag__name", flat=True))


# --- the catalogue ---------------------------------------------------------------------------


def test_a_manager_builds_the_catalogue_and_everyone_who_sees_customers_reads_it(
    admin, shanghai_agent, client_as
):
    client = client_as(admin)
    group = post(client, "/api/customers/tag-groups", {"name": "客户价值", "choice": "single"})
    tag = post(
        client,
        f"/api/customers/tag-groups/{group.json()['id']}/tags",
        {"name": "高价值", "color": "#F56C6C"},
    )

    assert group.status_code == tag.status_code == 201
    listed = client_as(shanghai_agent).get("/api/customers/tag-groups").json()
    assert listed == [
        {
            "id": group.json()["id"],
            "name": "客户价值",
            "choice": "single",
            "description": "",
            "sort": 0,
            "tags": [{**tag.json(), "name": "高价值", "color": "#F56C6C"}],
        }
    ]
    assert AuditEvent.objects.filter(action="customers.tag.created", actor_id=admin.pk).exists()


def test_names_are_unique_per_tenant_and_group_and_a_clash_names_the_field(
    catalogue, admin, other_admin, client_as
):
    client = client_as(admin)
    value = catalogue["高价值"].group

    same_group = post(client, "/api/customers/tag-groups", {"name": "客户价值"})
    same_tag = post(client, f"/api/customers/tag-groups/{value.pk}/tags", {"name": "高价值"})
    renamed = patch(client, f"/api/customers/tags/{catalogue['中价值'].pk}", {"name": "高价值"})
    other_group = post(
        client, f"/api/customers/tag-groups/{catalogue['空调'].group_id}/tags", {"name": "高价值"}
    )
    other_tenant = post(client_as(other_admin), "/api/customers/tag-groups", {"name": "客户价值"})

    for r in (same_group, same_tag, renamed):
        assert (r.status_code, r.json()["code"], r.json()["field"]) == (409, "name_taken", "name")
    assert "高价值" in same_tag.json()["message"]
    assert other_group.status_code == other_tenant.status_code == 201


def test_catalogue_changes_need_customer_manage_for_the_whole_tenant(
    org, catalogue, east_manager, client_as
):
    client = client_as(east_manager)
    refused = post(client, "/api/customers/tag-groups", {"name": "新组"})
    grant(east_manager, ["customer.manage"], "region", region=org.east)
    too_narrow = post(client_as(east_manager), "/api/customers/tag-groups", {"name": "新组"})

    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")
    assert (too_narrow.status_code, too_narrow.json()["code"]) == (403, "scope_too_narrow")
    assert not TagGroup.objects.filter(name="新组").exists()


def test_another_tenants_group_and_tag_answer_like_missing_ones(catalogue, other_admin, client_as):
    client = client_as(other_admin)
    tag = catalogue["高价值"]

    for r, missing in [
        (
            patch(client, f"/api/customers/tags/{tag.pk}", {"name": "x"}),
            patch(client, "/api/customers/tags/987654321", {"name": "x"}),
        ),
        (
            client.delete(f"/api/customers/tag-groups/{tag.group_id}"),
            client.delete("/api/customers/tag-groups/987654321"),
        ),
        (
            post(client, f"/api/customers/tag-groups/{tag.group_id}/tags", {"name": "x"}),
            post(client, "/api/customers/tag-groups/987654321/tags", {"name": "x"}),
        ),
    ]:
        assert r.status_code == 404
        assert r.json() == missing.json()
    assert client.get("/api/customers/tag-groups").json() == []
    assert Tag.objects.get(pk=tag.pk).name == "高价值"


def test_a_tag_in_use_is_deleted_only_with_force_and_then_leaves_every_customer(
    catalogue, book, admin, client_as
):
    client = client_as(admin)
    tag = catalogue["空调"]
    services.customers_tag_bulk(
        actor=actor_for(admin),
        customer_ids=[book["wang"].pk, book["li"].pk],
        add_tag_ids=[tag.pk],
    )

    refused = client.delete(f"/api/customers/tags/{tag.pk}")
    forced = client.delete(f"/api/customers/tags/{tag.pk}?force=true")

    assert (refused.status_code, refused.json()["code"]) == (409, "tag_in_use")
    assert "2 位客户" in refused.json()["message"]
    assert forced.status_code == 204
    assert not Tag.objects.filter(pk=tag.pk).exists()
    assert not CustomerTag.objects.filter(tag_id=tag.pk).exists()
    event = AuditEvent.objects.get(action="customers.tag.deleted")
    assert event.data == {"removed_from_customers": 2}


def test_a_tag_a_rule_sets_or_a_condition_tests_cannot_be_deleted(org, catalogue, admin, client_as):
    client = client_as(admin)
    TagRule.objects.create(
        tenant=org.tenant,
        name="大客户",
        tag=catalogue["高价值"],
        conditions={"field": "level", "op": "eq", "value": "vip"},
    )
    Segment.objects.create(
        tenant=org.tenant,
        name="喜欢空调的人",
        conditions={
            "all": [{"tag": catalogue["空调"].pk}, {"field": "level", "op": "eq", "value": "vip"}]
        },
    )

    set_by_rule = client.delete(f"/api/customers/tags/{catalogue['高价值'].pk}?force=true")
    tested = client.delete(f"/api/customers/tags/{catalogue['空调'].pk}?force=true")

    assert (set_by_rule.status_code, set_by_rule.json()["code"]) == (409, "tag_has_rules")
    assert "大客户" in set_by_rule.json()["message"]
    assert (tested.status_code, tested.json()["code"]) == (409, "tag_referenced")
    assert "喜欢空调的人" in tested.json()["message"]
    assert client.delete(f"/api/customers/tags/{catalogue['冰箱'].pk}").status_code == 204


def test_a_group_is_deleted_only_when_empty(catalogue, admin, client_as):
    client = client_as(admin)
    group = catalogue["空调"].group

    refused = client.delete(f"/api/customers/tag-groups/{group.pk}")
    client.delete(f"/api/customers/tags/{catalogue['空调'].pk}")
    client.delete(f"/api/customers/tags/{catalogue['冰箱'].pk}")
    done = client.delete(f"/api/customers/tag-groups/{group.pk}")

    assert (refused.status_code, refused.json()["code"]) == (409, "group_not_empty")
    assert done.status_code == 204


def test_a_group_becomes_single_choice_only_if_nobody_holds_two_of_its_tags(
    catalogue, book, admin, client_as
):
    client = client_as(admin)
    group = catalogue["空调"].group
    services.customer_tags_add(
        actor=actor_for(admin),
        customer_id=book["li"].pk,
        tag_ids=[catalogue["空调"].pk, catalogue["冰箱"].pk],
    )

    refused = patch(client, f"/api/customers/tag-groups/{group.pk}", {"choice": "single"})
    client.delete(f"/api/customers/{book['li'].pk}/tags/{catalogue['冰箱'].pk}")
    done = patch(client, f"/api/customers/tag-groups/{group.pk}", {"choice": "single"})

    assert (refused.status_code, refused.json()["field"]) == (409, "choice")
    assert done.json()["choice"] == "single"


# --- tagging customers by hand ---------------------------------------------------------------


def test_tagging_a_customer_records_who_and_when_on_the_tags_the_audit_and_the_timeline(
    catalogue, book, shanghai_agent, client_as
):
    client = client_as(shanghai_agent)
    wang = book["wang"]
    before = timezone.now()

    r = post(client, f"/api/customers/{wang.pk}/tags", {"tag_ids": [catalogue["空调"].pk]})

    assert r.status_code == 200, r.content
    (tag,) = client.get(f"/api/customers/{wang.pk}/tags").json()
    assert (tag["tag_name"], tag["group_name"], tag["source"], tag["source_label"]) == (
        "空调",
        "兴趣",
        "manual",
        "手动",
    )
    assert (tag["tagged_by_id"], tag["tagged_by_name"], tag["rule_name"]) == (
        shanghai_agent.pk,
        "王芳",
        None,
    )
    assert tag["tagged_at"] >= before.isoformat()[:19]
    audit = AuditEvent.objects.get(action="customers.tags.changed", subject_id=str(wang.pk))
    assert audit.actor_id == shanghai_agent.pk
    assert audit.data["added"] == [{"id": catalogue["空调"].pk, "name": "空调", "group": "兴趣"}]
    event = CustomerEvent.objects.get(customer=wang, kind="system")
    assert event.title == "王芳：添加标签「空调」"


def test_a_single_choice_group_keeps_one_tag_and_the_replacement_is_logged(
    catalogue, book, admin, client_as
):
    client = client_as(admin)
    li = book["li"]
    post(client, f"/api/customers/{li.pk}/tags", {"tag_ids": [catalogue["高价值"].pk]})

    r = post(client, f"/api/customers/{li.pk}/tags", {"tag_ids": [catalogue["中价值"].pk]})
    both = post(
        client,
        f"/api/customers/{li.pk}/tags",
        {"tag_ids": [catalogue["空调"].pk, catalogue["低价值"].pk, catalogue["高价值"].pk]},
    )

    assert [t["tag_name"] for t in r.json()] == ["中价值"]
    assert CustomerEvent.objects.filter(customer=li, kind="system").first().title == (
        "周志远：添加标签「中价值」；移除标签「高价值」"
    )
    assert (both.status_code, both.json()["field"]) == (422, "tag_ids.2")
    assert tag_names(li) == {"中价值"}


def test_tagging_by_hand_a_tag_a_rule_set_makes_it_the_persons(org, catalogue, book, admin):
    rule = TagRule.objects.create(
        tenant=org.tenant,
        name="vip",
        tag=catalogue["空调"],
        conditions={"tag": catalogue["冰箱"].pk},
    )
    li = book["li"]
    CustomerTag.objects.create(
        tenant=org.tenant,
        customer=li,
        tag=catalogue["空调"],
        source="rule",
        rule=rule,
        tagged_at=timezone.now(),
    )

    services.customer_tags_add(
        actor=actor_for(admin), customer_id=li.pk, tag_ids=[catalogue["空调"].pk]
    )

    link = CustomerTag.objects.get(customer=li)
    assert (link.source, link.rule_id, link.tagged_by_id) == ("manual", None, admin.pk)
    services.rules_apply_to_customer(tenant_id=org.tenant.pk, customer_id=li.pk)
    assert tag_names(li) == {"空调"}  # no longer the rule's to remove


def test_removing_a_tag_takes_it_off_and_a_tag_not_held_changes_nothing(
    catalogue, book, admin, client_as
):
    client = client_as(admin)
    li = book["li"]
    post(client, f"/api/customers/{li.pk}/tags", {"tag_ids": [catalogue["空调"].pk]})

    gone = client.delete(f"/api/customers/{li.pk}/tags/{catalogue['空调'].pk}")
    again = client.delete(f"/api/customers/{li.pk}/tags/{catalogue['空调'].pk}")

    assert gone.status_code == again.status_code == 204
    assert tag_names(li) == set()
    assert AuditEvent.objects.filter(action="customers.tags.changed").count() == 2


def test_tags_of_a_merged_customer_read_on_its_survivor_and_cannot_be_edited_there(
    catalogue, book, admin, client_as
):
    client = client_as(admin)
    li, twin = book["li"], make_customer(admin, "李秀英", "13916620319")
    post(client, f"/api/customers/{twin.pk}/tags", {"tag_ids": [catalogue["冰箱"].pk]})
    services.customer_merge(actor=actor_for(admin), target_id=li.pk, source_id=twin.pk)

    read = client.get(f"/api/customers/{twin.pk}/tags")
    write = post(client, f"/api/customers/{twin.pk}/tags", {"tag_ids": [catalogue["空调"].pk]})

    assert [t["tag_name"] for t in read.json()] == ["冰箱"]
    assert (write.status_code, write.json()["code"]) == (409, "customer_merged")


def test_tagging_is_within_the_taggers_scope(
    catalogue, book, shanghai_agent, east_manager, client_as
):
    agent = client_as(shanghai_agent)
    body = {"tag_ids": [catalogue["空调"].pk]}

    own = post(agent, f"/api/customers/{book['wang'].pk}/tags", body)
    other = post(agent, f"/api/customers/{book['li'].pk}/tags", body)
    read_other = agent.get(f"/api/customers/{book['li'].pk}/tags")
    viewer = post(client_as(east_manager), f"/api/customers/{book['li'].pk}/tags", body)

    assert own.status_code == 200
    assert other.status_code == read_other.status_code == 404
    assert viewer.status_code == 403
    assert client_as(east_manager).get(f"/api/customers/{book['wang'].pk}/tags").status_code == 200
    assert not CustomerTag.objects.filter(customer=book["li"]).exists()


def test_another_tenants_customer_or_tag_answers_like_a_missing_one(
    catalogue, book, other_admin, other_org, admin, client_as
):
    foreign_tag = Tag.objects.create(
        tenant=other_org.tenant,
        group=TagGroup.objects.create(tenant=other_org.tenant, name="外"),
        name="外标签",
    )
    client = client_as(other_admin)
    mine = client_as(admin)
    wang = book["wang"]

    pairs = [
        (
            post(client, f"/api/customers/{wang.pk}/tags", {"tag_ids": [foreign_tag.pk]}),
            post(client, "/api/customers/987654321/tags", {"tag_ids": [foreign_tag.pk]}),
        ),
        (client.get(f"/api/customers/{wang.pk}/tags"), client.get("/api/customers/987654321/tags")),
        (
            client.delete(f"/api/customers/{wang.pk}/tags/{catalogue['空调'].pk}"),
            client.delete(f"/api/customers/987654321/tags/{catalogue['空调'].pk}"),
        ),
        (
            post(mine, f"/api/customers/{wang.pk}/tags", {"tag_ids": [foreign_tag.pk]}),
            post(mine, f"/api/customers/{wang.pk}/tags", {"tag_ids": [987654321]}),
        ),
    ]

    for r, missing in pairs:
        assert r.status_code == 404, r.content
        assert r.json() == missing.json()
    assert pairs[-1][0].json()["field"] == "tag_ids.0"
    assert not CustomerTag.objects.exists()


# --- bulk ------------------------------------------------------------------------------------


def test_bulk_tagging_changes_every_customer_or_none(
    catalogue, book, shanghai_agent, admin, client_as
):
    grant(shanghai_agent, ["customer.edit"], "self")
    mine_too = make_customer(shanghai_agent, "赵敏", "13800000001")
    body = {
        "customer_ids": [book["wang"].pk, book["li"].pk, mine_too.pk],
        "add_tag_ids": [catalogue["空调"].pk],
    }

    refused = post(client_as(shanghai_agent), "/api/customers/tags/bulk", body)
    done = post(client_as(admin), "/api/customers/tags/bulk", body)

    assert (refused.status_code, refused.json()["field"]) == (404, "customer_ids.1")
    assert done.json() == {"customers": 3, "changed": 3, "added": 3, "removed": 0}
    assert {c for c in CustomerTag.objects.values_list("customer_id", flat=True)} == {
        book["wang"].pk,
        book["li"].pk,
        mine_too.pk,
    }
    assert CustomerEvent.objects.filter(kind="system").count() == 3


def test_bulk_untagging_and_replacing_in_a_single_choice_group(catalogue, book, admin, client_as):
    client = client_as(admin)
    ids = [book["wang"].pk, book["li"].pk]
    post(
        client,
        "/api/customers/tags/bulk",
        {"customer_ids": ids, "add_tag_ids": [catalogue["高价值"].pk, catalogue["空调"].pk]},
    )

    r = post(
        client,
        "/api/customers/tags/bulk",
        {
            "customer_ids": ids,
            "add_tag_ids": [catalogue["低价值"].pk],
            "remove_tag_ids": [catalogue["空调"].pk],
        },
    )

    assert r.json() == {"customers": 2, "changed": 2, "added": 2, "removed": 4}
    assert tag_names(book["wang"]) == tag_names(book["li"]) == {"低价值"}


@pytest.mark.parametrize(
    "body,field",
    [
        ({"add_tag_ids": [], "remove_tag_ids": []}, "add_tag_ids"),
        ({"add_tag_ids": ["空调"], "remove_tag_ids": ["空调"]}, "remove_tag_ids.0"),
        ({"add_tag_ids": ["高价值", "中价值"]}, "add_tag_ids.1"),
        ({"remove_tag_ids": [987654321]}, "remove_tag_ids.0"),
    ],
)
def test_bad_bulk_requests_are_refused_naming_the_field(
    catalogue, book, admin, client_as, body, field
):
    resolved = {
        k: [catalogue[v].pk if isinstance(v, str) else v for v in vs] for k, vs in body.items()
    }

    r = post(
        client_as(admin), "/api/customers/tags/bulk", {"customer_ids": [book["li"].pk], **resolved}
    )

    assert 400 <= r.status_code < 500
    assert r.json()["field"] == field
    assert not CustomerTag.objects.exists()
