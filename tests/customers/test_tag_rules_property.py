"""Property: the batch (`rules_run_all`, set-based) leaves every customer with exactly the tags
that evaluating the rules customer by customer (`rules_apply_to_customer`, as on an event's
arrival) gives, for any event histories and any tags already there, and neither ever touches a
tag a person set.

Each example builds two identical tenants (same rules, customers, events and starting tags) and
runs the batch on one and the per-customer evaluation on the other. The rules cover what can
interact: windows and counts, an amount sum, a zero-count rule ("no order in 180 days"), two rules
competing in one single-choice group, and a rule that tests a tag another rule sets."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jingwei.customers import services
from jingwei.customers.demo import DEMO_TAG_RULES
from jingwei.customers.models import Customer, CustomerEvent, CustomerTag, Tag, TagGroup, TagRule

from ..factories import TenantFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.get_fixed_timezone(480))
GROUPS = {
    "价值": ("single", ["高价值", "中价值", "低价值"]),
    "行为": ("multi", ["高频用户", "潜在流失客户", "忠实粉丝"]),
}
ALL_TAGS = [t for _, names in GROUPS.values() for t in names]
_tenants = itertools.count(1)


def rules_of(tags: dict[str, Tag]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        *DEMO_TAG_RULES,
        (
            "年消费满 300",
            "高价值",
            {
                "event": "order",
                "within_days": 365,
                "measure": "amount",
                "op": "gte",
                "value": "300",
            },
        ),
        ("三个月未下单", "低价值", {"event": "order", "within_days": 90, "op": "eq", "value": 0}),
        (
            "高频且常聊",
            "忠实粉丝",
            {
                "all": [
                    {"tag": tags["高频用户"].pk},
                    {"event": "chat", "within_days": 30, "op": "gte", "value": 1},
                ]
            },
        ),
    ]


RULE_NAMES = [name for name, _, _ in rules_of({"高频用户": Tag(pk=1)})]

event = st.tuples(
    st.sampled_from(["order", "page_view", "chat"]),
    st.sampled_from(["miniprogram", "web", "taobao"]),
    # Days before NOW, on and around the edges of every window the rules use (3, 30, 90, 365).
    st.sampled_from([0.05, 1, 2.5, 3, 3.5, 20, 29.9, 30.1, 60, 89.9, 90, 90.1, 200, 364, 366]),
    st.sampled_from(["120.00", "300.00"]),
)
start_tag = st.tuples(
    st.sampled_from(ALL_TAGS),
    st.sampled_from(["manual", "import", "rule"]),
    st.sampled_from(RULE_NAMES),
)
customer = st.tuples(
    st.lists(event, max_size=8), st.lists(start_tag, max_size=3, unique_by=lambda t: t[0])
)
world = st.tuples(
    st.lists(customer, min_size=1, max_size=5),
    st.lists(st.booleans(), min_size=len(RULE_NAMES), max_size=len(RULE_NAMES)),
)


def build(data: Any) -> tuple[int, list[int]]:
    """One tenant holding the world: (tenant id, customer ids in order)."""
    customers, removes = data
    tenant = TenantFactory(slug=f"prop-{next(_tenants)}")
    tags: dict[str, Tag] = {}
    for name, (choice, names) in GROUPS.items():
        group = TagGroup.objects.create(tenant=tenant, name=name, choice=choice)
        tags.update({n: Tag.objects.create(tenant=tenant, group=group, name=n) for n in names})
    rules = {
        name: TagRule.objects.create(
            tenant=tenant, name=name, tag=tags[tag], conditions=conditions, remove_unmatched=remove
        )
        for (name, tag, conditions), remove in zip(rules_of(tags), removes, strict=True)
    }
    ids = []
    for i, (events, start) in enumerate(customers):
        c = Customer.objects.create(tenant=tenant, name=f"客户{i}")
        ids.append(c.pk)
        CustomerEvent.objects.bulk_create(
            CustomerEvent(
                tenant=tenant,
                customer=c,
                kind=kind,
                channel=channel,
                event_id=f"{c.pk}-{j}",
                occurred_at=NOW - timedelta(days=days),
                amount=Decimal(amount) if kind == "order" else None,
            )
            for j, (kind, channel, days, amount) in enumerate(events)
        )
        single_seen: set[str] = set()
        for tag_name, source, rule_name in start:
            group = tags[tag_name].group
            if group.choice == "single":
                if group.name in single_seen:
                    continue  # a single-choice group starts with at most one tag
                single_seen.add(group.name)
            CustomerTag.objects.create(
                tenant=tenant,
                customer=c,
                tag=tags[tag_name],
                source=source,
                rule=rules[rule_name] if source == "rule" else None,
                tagged_at=NOW - timedelta(days=1),
            )
    return tenant.pk, ids


def tags_of(ids: list[int]) -> list[set[tuple[str, str, str | None]]]:
    return [
        {
            (link.tag.name, link.source, link.rule.name if link.rule else None)
            for link in CustomerTag.objects.filter(customer_id=pk).select_related("tag", "rule")
        }
        for pk in ids
    ]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(world)
# The interactions that matter, always tried besides the random worlds: both rules of the
# single-choice group match (the earlier one wins); a person's tag in that group blocks them;
# another rule's tag is replaced; a rule sees the tag an earlier rule set in the same pass.
@example(([([("order", "taobao", 200, "300.00")], [])], [True] * 5))
@example(([([("order", "taobao", 200, "300.00")], [("中价值", "manual", "高频用户")])], [True] * 5))
@example(
    ([([("order", "taobao", 1, "300.00")], [("低价值", "rule", "三个月未下单")])], [False] * 5)
)
@example(
    (
        [([("order", "jd", 1, "120.00")] * 3 + [("chat", "web", 2.5, "120.00")], [])],
        [True] * 5,
    )
)
def test_the_batch_gives_every_customer_the_tags_evaluating_it_alone_gives(data: Any) -> None:
    batch_tenant, batch_ids = build(data)
    alone_tenant, alone_ids = build(data)
    start = tags_of(batch_ids)

    services.rules_run_all(tenant_id=batch_tenant, now=NOW)
    for pk in alone_ids:
        services.rules_apply_to_customer(tenant_id=alone_tenant, customer_id=pk, now=NOW)

    batch, alone = tags_of(batch_ids), tags_of(alone_ids)
    assert batch == alone
    for before, after in zip(start, batch, strict=True):
        people = {t for t in before if t[1] != "rule"}
        assert people <= after  # a person's (or an import's) tag is never taken off
        value_tags = [t for t in after if t[0] in GROUPS["价值"][1]]
        assert len(value_tags) <= 1  # a single-choice group holds one tag
    # And a second batch changes nothing.
    services.rules_run_all(tenant_id=batch_tenant, now=NOW)
    assert tags_of(batch_ids) == batch
