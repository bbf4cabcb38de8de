"""The condition language of tag rules, segments and score signals.

1. Property: for random customers (region, department, owner, level, texts, score, times), tags
   and behaviour events, and random condition trees using every field, operator and kind of
   leaf, the database filter (`customers_matching`) selects exactly the customers a plain Python
   reading of the condition selects. Runs on SQLite and PostgreSQL alike.
2. The checker: each kind of bad input is refused with `Invalid` naming the part that is wrong,
   and another tenant's tag, region or employee is refused exactly like a missing one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jingwei.core.errors import Invalid
from jingwei.customers import conditions
from jingwei.customers.models import Customer, CustomerEvent, CustomerTag, Tag, TagGroup

from ..factories import EmployeeFactory
from .factories import make_customer

EXAMPLES = int(os.environ.get("JINGWEI_CONDITION_EXAMPLES", "120"))
NOW = datetime(2026, 3, 15, 2, 30, tzinfo=UTC)

# --- the smoke test: each kind of condition, as a reader expects it ---------------------------


def test_each_kind_of_condition_selects_the_customers_a_reader_expects(org, admin):
    a = make_customer(admin, "甲", "13800000001", region_id=org.pudong.id)
    b = make_customer(admin, "乙", "13800000002", region_id=org.guangzhou.id)
    make_customer(admin, "丙", "13800000003")
    g = TagGroup.objects.create(tenant=org.tenant, name="价值")
    t = Tag.objects.create(tenant=org.tenant, group=g, name="高频用户")
    CustomerTag.objects.create(tenant=org.tenant, customer=a, tag=t, tagged_at=timezone.now())
    now = timezone.now()
    for i in range(3):
        CustomerEvent.objects.create(
            tenant=org.tenant,
            customer=b,
            kind="order",
            event_id=f"o{i}",
            occurred_at=now - timedelta(days=i),
            amount="100.50",
        )
    CustomerEvent.objects.create(
        tenant=org.tenant, customer=a, kind="ticket", event_id="t1", occurred_at=now
    )

    def ids(data):
        node = conditions.check(data, org.tenant.id)
        return set(
            conditions.customers_matching(node, org.tenant.id).values_list("name", flat=True)
        )

    assert ids({"field": "region", "op": "in", "value": [org.shanghai.id]}) == {"甲"}
    assert ids({"field": "region", "op": "not_in", "value": [org.shanghai.id]}) == {"乙", "丙"}
    assert ids({"tag": t.id}) == {"甲"}
    assert ids({"tag": t.id, "has": False}) == {"乙", "丙"}
    assert ids({"event": "order", "within_days": 90, "op": "gte", "value": 3}) == {"乙"}
    assert ids({"event": "ticket", "within_days": 30, "op": "eq", "value": 0}) == {"乙", "丙"}
    assert ids({"event": "order", "measure": "amount", "op": "gt", "value": "300"}) == {"乙"}
    assert ids({"event": "order", "measure": "amount", "op": "lt", "value": "300"}) == {"甲", "丙"}
    assert ids(
        {
            "all": [
                {"field": "region", "op": "in", "value": [org.east.id]},
                {"tag": t.id},
                {"not": {"event": "*", "op": "gte", "value": 2}},
            ]
        }
    ) == {"甲"}
    assert ids(
        {
            "any": [
                {"field": "owner", "op": "in", "value": [admin.id]},
                {"field": "name", "op": "contains", "value": "乙"},
            ]
        }
    ) == {"甲", "乙", "丙"}


# --- the world of one example ------------------------------------------------------------------

# Small pools, so that values collide: the same text in another case, amounts that add up to a
# threshold exactly (0.10 + 0.20 = 0.30), the same moment as a window's edge.
NAMES = ["王建国", "王芳", "Anna", "anna", "ANNA", "100%满意", "a_b"]
COMPANIES = ["", "海鸥电器", "Acme Ltd", "ACME"]
SOURCES = ["", "淘宝", "官网"]
TEXT_VALUES = [
    "王",
    "王建国",
    "an",
    "AN",
    "Anna",
    "acme",
    "Ltd",
    "%",
    "_",
    "a_",
    "海鸥电器",
    "淘宝",
    "",
]
KINDS = ["person", "company"]
LEVELS = ["vip", "normal", "potential"]
EVENT_KINDS = ["order", "ticket", "follow_up"]
CHANNELS = ["", "taobao", "wecom"]
AMOUNTS = [None, "0.10", "0.20", "0.30", "-0.10", "100.50", "0.00"]
THRESHOLDS = ["0", "0.10", "0.30", "0.40", "0.60", "-0.10", "0.01", "100.50", "100.60"]
# Days around the windows conditions use, so that boundaries (exactly 30 days ago) are hit.
DAYS = [0, 1, 7, 30, 90, 365]
NUDGES = [
    *[timedelta(0)] * 4,  # exactly on an edge, half the time
    timedelta(microseconds=1),
    timedelta(microseconds=-1),
    timedelta(hours=-3),
    timedelta(hours=5),
]


def moments() -> st.SearchStrategy[datetime]:
    """Moments around NOW: mostly in the past, sometimes ahead (a promised follow-up)."""
    return st.builds(
        lambda days, nudge, ahead: NOW + (1 if ahead else -1) * timedelta(days=days) + nudge,
        st.sampled_from(DAYS),
        st.sampled_from(NUDGES),
        st.sampled_from([False, False, False, True]),
    )


@dataclass
class Person:
    """A customer as the reference reads it: plain values, nothing from the database."""

    pk: int
    kind: str
    name: str
    company_name: str
    source: str
    region_path: str | None  # "/3/7/": the region and its ancestors
    department_path: str | None
    owner_id: int | None
    level: str
    score: int
    created_at: datetime
    last_followed_at: datetime | None
    next_follow_up_at: datetime | None
    merged: bool = False
    tags: set[int] = field(default_factory=set)
    events: list[tuple[str, str, Decimal | None, datetime]] = field(default_factory=list)


@dataclass
class World:
    people: list[Person]
    region_ids: list[int]
    department_ids: list[int]
    employee_ids: list[int]
    tag_ids: list[int]


def build_world(data: st.DataObject, org: Any, staff: list[Any], tags: list[Tag]) -> World:
    regions = [None, org.east, org.shanghai, org.pudong, org.south, org.guangzhou]
    departments = [None, org.hq, org.east_dept, org.south_dept]
    owners = [None, *staff]
    people: list[Person] = []
    count = data.draw(st.integers(0, 7), label="customers")
    for _ in range(count):
        region = data.draw(st.sampled_from(regions))
        department = data.draw(st.sampled_from(departments))
        owner = data.draw(st.sampled_from(owners))
        times = {
            "created_at": data.draw(moments()),
            "last_followed_at": data.draw(st.none() | moments()),
            "next_follow_up_at": data.draw(st.none() | moments()),
        }
        customer = Customer.objects.create(
            tenant=org.tenant,
            kind=data.draw(st.sampled_from(KINDS)),
            name=data.draw(st.sampled_from(NAMES)),
            company_name=data.draw(st.sampled_from(COMPANIES)),
            source=data.draw(st.sampled_from(SOURCES)),
            region=region,
            department=department,
            owner=owner,
            level=data.draw(st.sampled_from(LEVELS)),
            score=data.draw(st.sampled_from([0, 30, 59, 60, 61, -10]) | st.integers(-50, 100)),
            last_followed_at=times["last_followed_at"],
            next_follow_up_at=times["next_follow_up_at"],
        )
        Customer.objects.filter(pk=customer.pk).update(created_at=times["created_at"])
        person = Person(
            pk=customer.pk,
            kind=customer.kind,
            name=customer.name,
            company_name=customer.company_name,
            source=customer.source,
            region_path=region.path if region else None,
            department_path=department.path if department else None,
            owner_id=owner.pk if owner else None,
            level=customer.level,
            score=customer.score,
            **times,
        )
        for tag in data.draw(st.sets(st.sampled_from(tags), max_size=len(tags))):
            CustomerTag.objects.create(tenant=org.tenant, customer=customer, tag=tag, tagged_at=NOW)
            person.tags.add(tag.pk)
        events = data.draw(
            st.lists(
                st.tuples(
                    st.sampled_from(EVENT_KINDS),
                    st.sampled_from(CHANNELS),
                    st.sampled_from(AMOUNTS),
                    moments(),
                ),
                max_size=5,
            )
        )
        for j, (kind, channel, amount, at) in enumerate(events):
            CustomerEvent.objects.create(
                tenant=org.tenant,
                customer=customer,
                kind=kind,
                channel=channel,
                event_id=f"e{customer.pk}-{j}",
                amount=amount,
                occurred_at=at,
            )
            person.events.append((kind, channel, Decimal(amount) if amount else None, at))
        if people and data.draw(st.integers(0, 5)) == 0:
            # merged into an earlier one: never a member of anything
            Customer.objects.filter(pk=customer.pk).update(merged_into=people[0].pk)
            person.merged = True
        people.append(person)
    return World(
        people=people,
        region_ids=[r.pk for r in regions if r is not None],
        department_ids=[d.pk for d in departments if d is not None],
        employee_ids=[e.pk for e in staff],
        tag_ids=[t.pk for t in tags],
    )


# --- random conditions -------------------------------------------------------------------------


def pick(*options: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One of the options, each as likely as the others. (`st.one_of` flattens nested one_ofs into
    one list of branches, so a kind of leaf with many operators would crowd out the others.)"""
    return st.sampled_from(options).flatmap(lambda option: option)


def texts() -> st.SearchStrategy[str]:
    return st.sampled_from(TEXT_VALUES)


def time_values() -> st.SearchStrategy[str]:
    return moments().map(lambda m: m.astimezone(timezone.get_fixed_timezone(480)).isoformat())


def field_leaves(w: World) -> st.SearchStrategy[dict[str, Any]]:
    def leaf(name: str, op: str, value: st.SearchStrategy[Any] | None) -> Any:
        if value is None:
            return st.just({"field": name, "op": op})
        return value.map(lambda v: {"field": name, "op": op, "value": v})

    def listed(values: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
        return st.lists(values, min_size=1, max_size=3)

    by_field: list[st.SearchStrategy[Any]] = []
    for name, choices in (("kind", KINDS), ("level", LEVELS)):
        by_field.append(
            pick(
                *(leaf(name, op, st.sampled_from(choices)) for op in ("eq", "ne")),
                *(leaf(name, op, listed(st.sampled_from(choices))) for op in ("in", "not_in")),
            )
        )
    for name in ("name", "company_name", "source"):
        by_field.append(
            pick(
                *(leaf(name, op, texts()) for op in ("eq", "ne", "contains", "contains")),
                *(leaf(name, op, listed(texts())) for op in ("in", "not_in")),
                *(leaf(name, op, None) for op in ("empty", "not_empty")),
            )
        )
    for name, ids in (
        ("region", w.region_ids),
        ("department", w.department_ids),
        ("owner", w.employee_ids),
    ):
        by_field.append(
            pick(
                *(leaf(name, op, listed(st.sampled_from(ids))) for op in ("in", "not_in")),
                *(leaf(name, op, None) for op in ("empty", "not_empty")),
            )
        )
    scores = st.sampled_from([0, 30, 60, -10]) | st.integers(-60, 110)
    by_field.append(pick(*(leaf("score", op, scores) for op in conditions.NUMBER_OPS)))
    for name in ("created_at", "last_followed_at", "next_follow_up_at"):
        by_field.append(
            pick(
                *(leaf(name, op, st.sampled_from(DAYS)) for op in ("within_days", "before_days")),
                *(leaf(name, op, time_values()) for op in ("after", "before")),
                *(leaf(name, op, None) for op in ("empty", "not_empty")),
            )
        )
    return pick(*by_field)


def tag_leaves(w: World) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda tag, has, spelled: {"tag": tag, "has": has} if spelled or not has else {"tag": tag},
        st.sampled_from(w.tag_ids),
        st.booleans(),
        st.booleans(),
    )


def event_leaves() -> st.SearchStrategy[dict[str, Any]]:
    def build(
        kind: str, channel: str, days: int | None, measure: str, op: str, count: int, amount: str
    ) -> dict[str, Any]:
        leaf: dict[str, Any] = {"event": kind, "op": op}
        if channel:
            leaf["channel"] = channel
        if days is not None:
            leaf["within_days"] = days
        if measure == "amount":
            leaf["measure"] = "amount"
            leaf["value"] = amount
        else:
            leaf["value"] = count
        return leaf

    return st.builds(
        build,
        st.sampled_from([*EVENT_KINDS, "*", "chat"]),
        st.sampled_from(CHANNELS),
        st.none() | st.sampled_from([d for d in DAYS if d > 0]),
        st.sampled_from(["count", "amount"]),
        st.sampled_from(conditions.COMPARE_OPS),
        st.integers(0, 4),
        st.sampled_from(THRESHOLDS),
    )


def condition_trees(w: World, depth: int = 1) -> st.SearchStrategy[dict[str, Any]]:
    leaf = pick(field_leaves(w), tag_leaves(w), event_leaves())
    if depth >= conditions.MAX_DEPTH:
        return leaf
    below = st.deferred(lambda: condition_trees(w, depth + 1))
    return pick(
        leaf,
        leaf,
        st.lists(below, min_size=1, max_size=3).map(lambda items: {"all": items}),
        st.lists(below, min_size=1, max_size=3).map(lambda items: {"any": items}),
        below.map(lambda item: {"not": item}),
    )


def node_count(data: dict[str, Any]) -> int:
    if "all" in data or "any" in data:
        return 1 + sum(node_count(c) for c in data.get("all", data.get("any")))
    if "not" in data:
        return 1 + node_count(data["not"])
    return 1


# --- the reference: the condition read plainly, in Python ----------------------------------------

COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _in_subtree(path: str | None, node_id: int) -> bool:
    return path is not None and f"/{node_id}/" in path


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def holds(p: Person, c: dict[str, Any]) -> bool:
    if "all" in c:
        return all(holds(p, item) for item in c["all"])
    if "any" in c:
        return any(holds(p, item) for item in c["any"])
    if "not" in c:
        return not holds(p, c["not"])
    if "tag" in c:
        return (c["tag"] in p.tags) == c.get("has", True)
    if "event" in c:
        window = c.get("within_days")
        chosen = [
            (amount, at)
            for kind, channel, amount, at in p.events
            if c["event"] in ("*", kind)
            and (not c.get("channel") or channel == c["channel"])
            and (window is None or at >= NOW - timedelta(days=window))
        ]
        if c.get("measure") == "amount":
            measure = sum((a or Decimal(0) for a, _ in chosen), Decimal(0))
            return COMPARE[c["op"]](measure, Decimal(c["value"]))
        return COMPARE[c["op"]](len(chosen), c["value"])
    name, op, value = c["field"], c["op"], c.get("value")
    if name in ("region", "department"):
        path = p.region_path if name == "region" else p.department_path
        inside = any(_in_subtree(path, node) for node in value or [])
        return {
            "in": inside,
            "not_in": not inside,
            "empty": path is None,
            "not_empty": path is not None,
        }[op]
    actual = getattr(p, f"{name}_id" if name == "owner" else name)
    if op == "empty":
        return actual in (None, "")
    if op == "not_empty":
        return actual not in (None, "")
    if op == "in":
        return actual in value
    if op == "not_in":
        return actual not in value
    if op == "contains":
        # Letters compare without case (the way people search); Chinese as it is.
        return value.casefold() in actual.casefold()
    if op == "within_days":
        return actual is not None and actual >= NOW - timedelta(days=value)
    if op == "before_days":
        return actual is not None and actual < NOW - timedelta(days=value)
    if op == "after":
        return actual is not None and actual >= _moment(value)
    if op == "before":
        return actual is not None and actual < _moment(value)
    return COMPARE[op](actual, value)


# --- the property --------------------------------------------------------------------------------


class _Rollback(Exception):
    pass


def in_savepoint(body: Callable[[], None]) -> None:
    """One example in a savepoint that is always rolled back (marked like the test's own atomic
    block, so that services' durable transactions may open inside it)."""
    savepoint = transaction.atomic()
    savepoint._from_testcase = True  # type: ignore[attr-defined]
    try:
        with savepoint:
            body()
            raise _Rollback
    except _Rollback:
        pass


@pytest.fixture
def staff(org, admin):
    return [admin, EmployeeFactory(tenant=org.tenant, name="李娜", department=org.east_dept)]


@pytest.fixture
def tags(org):
    value = TagGroup.objects.create(tenant=org.tenant, name="客户价值", choice="single")
    interest = TagGroup.objects.create(tenant=org.tenant, name="兴趣")
    return [
        Tag.objects.create(tenant=org.tenant, group=value, name="高价值"),
        Tag.objects.create(tenant=org.tenant, group=value, name="低价值"),
        Tag.objects.create(tenant=org.tenant, group=interest, name="空调"),
    ]


# The strategies are built from many small ones; their repr is long and of no use.
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@pytest.mark.django_db
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_the_database_selects_exactly_the_customers_a_plain_reading_selects(org, staff, tags, data):
    def example() -> None:
        world = build_world(data, org, staff, tags)
        spec = data.draw(
            condition_trees(world).filter(lambda c: node_count(c) <= conditions.MAX_NODES),
            label="conditions",
        )
        node = conditions.check(spec, org.tenant.pk)

        found = set(
            conditions.customers_matching(node, org.tenant.pk, NOW).values_list("pk", flat=True)
        )

        expected = {p.pk for p in world.people if not p.merged and holds(p, spec)}
        assert found == expected, {
            p.pk: (p, holds(p, spec)) for p in world.people if p.pk in found ^ expected
        }
        active = [p for p in world.people if not p.merged]
        if active:
            one = data.draw(st.sampled_from(active), label="evaluated")
            customer = Customer.objects.get(pk=one.pk)
            assert conditions.evaluate(node, customer, NOW) == (one.pk in expected)

    in_savepoint(example)


# --- pinned cases the property found, and boundaries worth naming ---------------------------------


def _order(customer: Customer, amount: str | None, at: datetime, n: int, **extra: Any) -> None:
    CustomerEvent.objects.create(
        tenant=customer.tenant,
        customer=customer,
        kind=extra.pop("kind", "order"),
        event_id=f"pinned-{customer.pk}-{n}",
        amount=amount,
        occurred_at=at,
        **extra,
    )


def _names(org: Any, spec: dict[str, Any], now: datetime | None = None) -> set[str]:
    node = conditions.check(spec, org.tenant.pk)
    return set(
        conditions.customers_matching(node, org.tenant.pk, now).values_list("name", flat=True)
    )


def test_amount_sums_compare_exactly_to_the_cent(org, admin):
    # 0.10 + 0.20 is 0.30000000000000004 in floating point: the sum must still equal 0.30.
    wang = make_customer(admin, "王建国", "13800000011")
    _order(wang, "0.10", NOW, 1)
    _order(wang, "0.20", NOW, 2)

    assert _names(org, {"event": "order", "measure": "amount", "op": "eq", "value": "0.30"}) == {
        "王建国"
    }
    assert (
        _names(org, {"event": "order", "measure": "amount", "op": "gt", "value": "0.30"}) == set()
    )
    assert _names(org, {"event": "order", "measure": "amount", "op": "gte", "value": "0.3"}) == {
        "王建国"
    }


def test_contains_ignores_the_case_of_latin_letters_on_every_database(org, admin):
    make_customer(admin, "Anna Wang", "13800000012", company_name="ACME Ltd")
    make_customer(admin, "王芳", "13800000013")

    assert _names(org, {"field": "name", "op": "contains", "value": "anna"}) == {"Anna Wang"}
    assert _names(org, {"field": "company_name", "op": "contains", "value": "acme"}) == {
        "Anna Wang"
    }
    assert _names(org, {"field": "name", "op": "contains", "value": "100%"}) == set()


def test_a_window_of_30_days_includes_the_moment_exactly_30_days_ago(org, admin):
    edge = make_customer(admin, "刚好30天", "13800000014")
    outside = make_customer(admin, "30天零1微秒", "13800000015")
    _order(edge, None, NOW - timedelta(days=30), 1)
    _order(outside, None, NOW - timedelta(days=30, microseconds=1), 2)

    spec = {"event": "order", "within_days": 30, "op": "gte", "value": 1}
    assert _names(org, spec, NOW) == {"刚好30天"}


@pytest.mark.parametrize(
    "op,value,expected",
    [
        ("eq", 0, {"无订单", "只有工单"}),  # "no order in 90 days" includes who never ordered
        ("lt", 2, {"无订单", "只有工单", "一单"}),
        ("lte", 0, {"无订单", "只有工单"}),
        ("ne", 0, {"一单", "三单"}),
        ("gte", 3, {"三单"}),
        ("gt", 0, {"一单", "三单"}),
    ],
)
def test_counting_events_treats_customers_without_any_as_zero(org, admin, op, value, expected):
    make_customer(admin, "无订单", "13800000016")
    ticket_only = make_customer(admin, "只有工单", "13800000017")
    one = make_customer(admin, "一单", "13800000018")
    three = make_customer(admin, "三单", "13800000019")
    _order(ticket_only, None, NOW, 1, kind="ticket")
    _order(one, "10.00", NOW - timedelta(days=5), 2)
    for n in range(3):
        _order(three, "10.00", NOW - timedelta(days=n), 10 + n)
    _order(one, "10.00", NOW - timedelta(days=200), 20)  # outside the window

    spec = {"event": "order", "within_days": 90, "op": op, "value": value}
    assert _names(org, spec, NOW) == expected


def test_refunds_lower_the_amount_sum_below_zero(org, admin):
    buyer = make_customer(admin, "退款客户", "13800000020")
    make_customer(admin, "没买过", "13800000021")
    _order(buyer, "100.00", NOW, 1)
    _order(buyer, "-130.00", NOW, 2, kind="order")

    assert _names(org, {"event": "order", "measure": "amount", "op": "lt", "value": "0"}, NOW) == {
        "退款客户"
    }
    assert _names(org, {"event": "order", "measure": "amount", "op": "gte", "value": "0"}, NOW) == {
        "没买过"
    }


# --- the checker ----------------------------------------------------------------------------------


def refusal(data: Any, tenant_id: int) -> Invalid:
    with pytest.raises(Invalid) as caught:
        conditions.check(data, tenant_id)
    assert caught.value.code == "invalid_condition"
    assert caught.value.message
    return caught.value


def nested_nots(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"field": "level", "op": "eq", "value": "vip"}
    for _ in range(levels):
        node = {"not": node}
    return node


LEVEL_VIP = {"field": "level", "op": "eq", "value": "vip"}

BAD_CONDITIONS: list[tuple[str, Any, str]] = [
    ("not an object", ["level"], "conditions"),
    ("nothing recognisable", {"foo": 1}, "conditions"),
    ("empty group", {"all": []}, "conditions.all"),
    ("group not a list", {"any": {"field": "level"}}, "conditions.any"),
    ("two groups in one", {"all": [LEVEL_VIP], "any": [LEVEL_VIP]}, "conditions.any"),
    ("extra key on a leaf", {**LEVEL_VIP, "weight": 2}, "conditions.weight"),
    ("unknown field", {"field": "salary", "op": "eq", "value": 1}, "conditions.field"),
    ("field name not text", {"field": ["level"], "op": "eq", "value": 1}, "conditions.field"),
    ("unknown op", {"field": "level", "op": "like", "value": "vip"}, "conditions.op"),
    ("op of another type", {"field": "score", "op": "contains", "value": "6"}, "conditions.op"),
    ("missing value", {"field": "score", "op": "gte"}, "conditions.value"),
    ("value for empty", {"field": "source", "op": "empty", "value": "x"}, "conditions.value"),
    ("unknown choice", {"field": "level", "op": "eq", "value": "gold"}, "conditions.value"),
    ("in with no list", {"field": "level", "op": "in", "value": "vip"}, "conditions.value"),
    ("in with empty list", {"field": "level", "op": "in", "value": []}, "conditions.value"),
    (
        "in with too many",
        {"field": "name", "op": "in", "value": ["x"] * (conditions.MAX_LIST + 1)},
        "conditions.value",
    ),
    (
        "bad item in a list",
        {"field": "level", "op": "in", "value": ["vip", 3]},
        "conditions.value.1",
    ),
    ("text too long", {"field": "name", "op": "eq", "value": "长" * 201}, "conditions.value"),
    ("number as text", {"field": "score", "op": "gte", "value": "60"}, "conditions.value"),
    ("number as boolean", {"field": "score", "op": "gte", "value": True}, "conditions.value"),
    ("fraction for score", {"field": "score", "op": "gte", "value": 59.5}, "conditions.value"),
    ("huge score", {"field": "score", "op": "gte", "value": 10**12}, "conditions.value"),
    ("region id as text", {"field": "region", "op": "in", "value": ["1"]}, "conditions.value.0"),
    ("region id zero", {"field": "region", "op": "in", "value": [0]}, "conditions.value.0"),
    ("region id too big", {"field": "owner", "op": "in", "value": [2**31]}, "conditions.value.0"),
    (
        "days negative",
        {"field": "created_at", "op": "within_days", "value": -1},
        "conditions.value",
    ),
    (
        "days too many",
        {"field": "created_at", "op": "before_days", "value": conditions.MAX_DAYS + 1},
        "conditions.value",
    ),
    (
        "naive datetime",
        {"field": "created_at", "op": "after", "value": "2026-01-01T00:00:00"},
        "conditions.value",
    ),
    (
        "date that does not exist",
        {"field": "created_at", "op": "after", "value": "2026-02-30T00:00:00+08:00"},
        "conditions.value",
    ),
    (
        "year outside what the databases shift",
        {"field": "created_at", "op": "before", "value": "0001-01-01T00:00:00+14:00"},
        "conditions.value",
    ),
    (
        "datetime as number",
        {"field": "created_at", "op": "after", "value": 1700000000},
        "conditions.value",
    ),
    ("NUL in text", {"field": "name", "op": "contains", "value": "王\x00"}, "conditions.value"),
    (
        "NUL in a listed text",
        {"field": "source", "op": "in", "value": ["淘宝", "a\x00"]},
        "conditions.value.1",
    ),
    (
        "lone surrogate in text",
        {"field": "name", "op": "eq", "value": "王\ud800"},
        "conditions.value",
    ),
    ("NUL in a key", {**LEVEL_VIP, "op\x00": 1}, "conditions.op\x00"),
    ("tag id as text", {"tag": "12"}, "conditions.tag"),
    ("has not a boolean", {"tag": 1, "has": "no"}, "conditions.has"),
    ("unknown event kind", {"event": "purchase", "op": "gte", "value": 1}, "conditions.event"),
    ("event kind not text", {"event": ["order"], "op": "gte", "value": 1}, "conditions.event"),
    ("channel not text", {"event": "order", "channel": 5, "value": 1}, "conditions.channel"),
    ("NUL in channel", {"event": "order", "channel": "tb\x00", "value": 1}, "conditions.channel"),
    (
        "window of zero days",
        {"event": "order", "within_days": 0, "value": 1},
        "conditions.within_days",
    ),
    (
        "window as text",
        {"event": "order", "within_days": "30", "value": 1},
        "conditions.within_days",
    ),
    ("unknown measure", {"event": "order", "measure": "avg", "value": 1}, "conditions.measure"),
    ("unknown event op", {"event": "order", "op": "in", "value": 1}, "conditions.op"),
    ("count as fraction", {"event": "order", "op": "gte", "value": 1.5}, "conditions.value"),
    ("count negative", {"event": "order", "op": "gte", "value": -1}, "conditions.value"),
    ("count missing", {"event": "order", "op": "gte"}, "conditions.value"),
    (
        "amount as float",
        {"event": "order", "measure": "amount", "value": 100.5},
        "conditions.value",
    ),
    (
        "amount not a number",
        {"event": "order", "measure": "amount", "value": "一百"},
        "conditions.value",
    ),
    ("amount NaN", {"event": "order", "measure": "amount", "value": "NaN"}, "conditions.value"),
    (
        "amount infinite",
        {"event": "order", "measure": "amount", "value": "-Infinity"},
        "conditions.value",
    ),
    (
        "amount finer than a cent",
        {"event": "order", "measure": "amount", "value": "1E-99999"},
        "conditions.value",
    ),
    (
        "amount too large",
        {"event": "order", "measure": "amount", "value": "1E+12"},
        "conditions.value",
    ),
    ("too deep", nested_nots(conditions.MAX_DEPTH), "conditions" + ".not" * conditions.MAX_DEPTH),
    (
        "too many conditions",
        {"any": [LEVEL_VIP] * conditions.MAX_NODES},
        "conditions",
    ),
    (
        "deep inside a group",
        {"all": [LEVEL_VIP, {"any": [LEVEL_VIP, {"field": "score", "op": "gte"}]}]},
        "conditions.all.1.any.1.value",
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "data,path", [pytest.param(d, p, id=label) for label, d, p in BAD_CONDITIONS]
)
def test_bad_condition_is_refused_naming_the_part_that_is_wrong(org, data, path):
    assert refusal(data, org.tenant.pk).field == path


@pytest.mark.django_db
def test_the_deepest_and_largest_conditions_allowed_are_accepted(org):
    conditions.check(nested_nots(conditions.MAX_DEPTH - 1), org.tenant.pk)
    conditions.check({"any": [LEVEL_VIP] * (conditions.MAX_NODES - 1)}, org.tenant.pk)


@pytest.mark.django_db
def test_the_checker_names_the_field_it_was_given(org):
    assert refusal({"foo": 1}, org.tenant.pk).field == "conditions"
    with pytest.raises(Invalid) as caught:
        conditions.check({"all": [{"foo": 1}]}, org.tenant.pk, field="rules.0.conditions")
    assert caught.value.field == "rules.0.conditions.all.0"


@pytest.mark.django_db
def test_a_moment_with_a_far_utc_offset_means_that_moment(org, admin):
    # +20:00 is valid ISO 8601 but PostgreSQL refuses offsets of 16 hours and more: the checker
    # folds it into UTC, so the condition works on both databases.
    make_customer(admin, "王建国", "13800000022")
    created = Customer.objects.get().created_at

    before = {"field": "created_at", "op": "before", "value": "2999-01-01T00:00:00+20:00"}
    after = {"field": "created_at", "op": "after", "value": "2999-01-01T00:00:00+20:00"}

    assert conditions.check(before, org.tenant.pk).value == datetime(2998, 12, 31, 4, tzinfo=UTC)
    assert _names(org, before) == {"王建国"}
    assert _names(org, after) == set()
    assert created < datetime(2998, 12, 31, 4, tzinfo=UTC)


MISSING_ID = 987_654_321


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["tag", "region", "department", "owner"])
def test_another_tenants_reference_is_refused_exactly_like_a_missing_one(
    org, other_org, other_admin, kind
):
    group = TagGroup.objects.create(tenant=other_org.tenant, name="别家标签组")
    theirs = {
        "tag": Tag.objects.create(tenant=other_org.tenant, group=group, name="别家标签").pk,
        "region": other_org.shanghai.pk,
        "department": other_org.east_dept.pk,
        "owner": other_admin.pk,
    }[kind]

    own = {
        "region": org.east.pk,
        "department": org.hq.pk,
        "owner": EmployeeFactory(tenant=org.tenant).pk,
    }

    def spec(ref: int) -> dict[str, Any]:
        if kind == "tag":
            return {"all": [LEVEL_VIP, {"tag": ref}]}
        return {"all": [LEVEL_VIP, {"field": kind, "op": "in", "value": [own[kind], ref]}]}

    theirs_refused = refusal(spec(theirs), org.tenant.pk)
    missing_refused = refusal(spec(MISSING_ID), org.tenant.pk)

    assert theirs_refused.field == missing_refused.field
    expected = "conditions.all.1.tag" if kind == "tag" else "conditions.all.1.value.1"
    assert theirs_refused.field == expected
    assert theirs_refused.message.replace(str(theirs), "?") == missing_refused.message.replace(
        str(MISSING_ID), "?"
    )
