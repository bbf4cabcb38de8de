"""The customer score as people use it: score signals (conditions worth points), a customer's
score with its breakdown, the batch that writes every customer's score, the score in segment
conditions, and who may change the rules.

Property: for random customers, tags and events and random signals, the batch gives every
active customer exactly the sum of the points of the enabled signals a plain Python reading of
their conditions says it matches (and touches no merged customer)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jingwei.audit.models import AuditEvent
from jingwei.core.errors import Forbidden
from jingwei.customers import services
from jingwei.customers.demo import (
    DEMO_SCORE_SIGNALS,
    demo_score_signals,
    demo_tags,
    load_demo_customers,
)
from jingwei.customers.models import Customer, CustomerEvent, ScoreSignal, Tag, TagGroup
from jingwei.org.demo import load_demo
from jingwei.org.models import Region
from jingwei.org.scope import actor_for

from ..factories import EmployeeFactory, grant, make_region
from .factories import make_customer
from .test_conditions import (
    NOW,
    build_world,
    condition_trees,
    holds,
    in_savepoint,
    node_count,
)

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("JINGWEI_SCORING_EXAMPLES", "60"))
JSON = "application/json"
SIGNALS = "/api/customers/score-signals"

VIP = {"field": "level", "op": "in", "value": ["vip"]}
FREQUENT = {"event": "order", "within_days": 90, "op": "gte", "value": 3}
NOT_FOLLOWED = {"not": {"field": "last_followed_at", "op": "within_days", "value": 30}}


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


def signal(admin: Any, name: str, conditions: dict[str, Any], points: int, **extra: Any) -> Any:
    return services.score_signal_create(
        actor=actor_for(admin), name=name, conditions_data=conditions, points=points, **extra
    )


@pytest.fixture
def book(org, admin, shanghai_agent):
    """王建国 (浦东, VIP, three orders in 90 days, followed up last week), 李秀英 (上海, VIP, never
    followed up) and 黄丽 (广州, normal, never followed up)."""
    grant(shanghai_agent, ["customer.edit"], "self")
    wang = make_customer(
        shanghai_agent, "王建国", "13817450021", region_id=org.pudong.pk, level="vip"
    )
    Customer.objects.filter(pk=wang.pk).update(last_followed_at=timezone.now() - timedelta(days=7))
    for days in (3, 20, 60):
        order(wang, days)
    return {
        "pudong": wang,
        "shanghai": make_customer(
            admin, "李秀英", "13916620318", region_id=org.shanghai.pk, level="vip"
        ),
        "guangzhou": make_customer(admin, "黄丽", "13926075512", region_id=org.guangzhou.pk),
    }


@pytest.fixture
def signals(admin):
    return [
        signal(admin, "VIP 客户", VIP, 30, sort=1),
        signal(admin, "近 90 天下单 3 次及以上", FREQUENT, 25, sort=2),
        signal(admin, "30 天未跟进", NOT_FOLLOWED, -10, sort=3),
    ]


# --- signals ---------------------------------------------------------------------------------


def test_an_admin_adds_a_signal_and_it_is_audited(admin, client_as):
    r = client_as(admin).post(
        SIGNALS,
        {"name": "VIP 客户", "conditions": VIP, "points": 30, "sort": 1},
        content_type=JSON,
    )

    assert r.status_code == 201, r.content
    assert r.json() | {"id": 0, "created_at": "", "updated_at": ""} == {
        "id": 0,
        "name": "VIP 客户",
        "conditions": VIP,
        "points": 30,
        "enabled": True,
        "sort": 1,
        "created_at": "",
        "updated_at": "",
    }
    event = AuditEvent.objects.get(action="customers.score_signal.created")
    assert event.after["points"] == 30


@pytest.mark.parametrize(
    "body,field",
    [
        ({"name": "太多", "conditions": VIP, "points": 1001}, "points"),
        ({"name": "太少", "conditions": VIP, "points": -1001}, "points"),
        (
            {
                "name": "条件错",
                "conditions": {"field": "level", "op": "gt", "value": 1},
                "points": 5,
            },
            "conditions.op",
        ),
        (
            {
                "name": "循环",
                "conditions": {"all": [VIP, {"field": "score", "op": "gte", "value": 60}]},
                "points": 5,
            },
            "conditions.all.1.field",
        ),
    ],
)
def test_a_bad_signal_is_refused_naming_the_field(admin, client_as, body, field):
    r = client_as(admin).post(SIGNALS, body, content_type=JSON)

    assert r.status_code == 422, r.content
    assert r.json()["field"] == field
    assert not ScoreSignal.objects.exists()


def test_signal_names_are_unique_within_a_company(admin, other_admin, client_as):
    body = {"name": "VIP 客户", "conditions": VIP, "points": 30}
    assert client_as(admin).post(SIGNALS, body, content_type=JSON).status_code == 201

    again = client_as(admin).post(SIGNALS, body, content_type=JSON)

    assert again.status_code == 409
    assert again.json()["field"] == "name"
    assert client_as(other_admin).post(SIGNALS, body, content_type=JSON).status_code == 201


def test_changing_and_deleting_a_signal_is_audited(admin, client_as):
    client = client_as(admin)
    signal_id = client.post(
        SIGNALS, {"name": "VIP", "conditions": VIP, "points": 30}, content_type=JSON
    ).json()["id"]

    changed = client.patch(
        f"{SIGNALS}/{signal_id}", {"points": 40, "enabled": False}, content_type=JSON
    )
    deleted = client.delete(f"{SIGNALS}/{signal_id}")

    assert changed.status_code == 200
    assert (changed.json()["points"], changed.json()["enabled"]) == (40, False)
    assert deleted.status_code == 204
    update = AuditEvent.objects.get(action="customers.score_signal.updated")
    assert update.before == {"points": 30, "enabled": True}
    assert update.after == {"points": 40, "enabled": False}
    assert AuditEvent.objects.filter(action="customers.score_signal.deleted").exists()
    assert not ScoreSignal.objects.exists()


def test_changing_signals_and_scoring_everyone_take_company_wide_customer_manage(
    org, admin, east_manager, client_as
):
    existing = signal(admin, "VIP", VIP, 30)
    regional = EmployeeFactory(tenant=org.tenant, name="区域运营", region=org.east)
    grant(regional, ["customer.view", "customer.manage"], "region")

    for who in (east_manager, regional):
        client = client_as(who)
        refused = [
            client.post(SIGNALS, {"name": "x", "conditions": VIP, "points": 1}, content_type=JSON),
            client.patch(f"{SIGNALS}/{existing.pk}", {"points": 99}, content_type=JSON),
            client.delete(f"{SIGNALS}/{existing.pk}"),
            client.post(f"{SIGNALS}/recompute"),
        ]
        assert [r.status_code for r in refused] == [403, 403, 403, 403]
    existing.refresh_from_db()
    assert existing.points == 30
    assert client_as(east_manager).get(SIGNALS).json()["count"] == 1  # reading is allowed


# --- a customer's score ----------------------------------------------------------------------


def test_a_customers_score_is_the_sum_of_the_signals_it_matches_with_the_breakdown(
    book, signals, admin, client_as
):
    signal(admin, "已停用", {"field": "kind", "op": "eq", "value": "person"}, 50, enabled=False)

    r = client_as(admin).get(f"/api/customers/{book['pudong'].pk}/score")

    assert r.status_code == 200, r.content
    body = r.json()
    assert body["total"] == 55
    assert [
        (s["name"], s["points"], s["matched"], s["conditions_text"]) for s in body["signals"]
    ] == [
        ("VIP 客户", 30, True, "等级是 VIP"),
        ("近 90 天下单 3 次及以上", 25, True, "近 90 天订单次数 ≥ 3"),
        ("30 天未跟进", -10, False, "并非（最近跟进在近 30 天内）"),
    ]
    assert body["stored_score"] == 0 and body["scored_at"] is None  # not yet recomputed
    others = {
        key: client_as(admin).get(f"/api/customers/{book[key].pk}/score").json()["total"]
        for key in ("shanghai", "guangzhou")
    }
    assert others == {"shanghai": 20, "guangzhou": -10}


def test_the_breakdown_takes_the_same_queries_for_few_or_many_signals(book, admin, client_as):
    client = client_as(admin)
    path = f"/api/customers/{book['pudong'].pk}/score"
    signal(admin, "VIP", VIP, 30)
    client.get(path)

    with CaptureQueriesContext(connection) as few:
        client.get(path)
    for i in range(5):
        recent = {"event": "order", "within_days": i + 1, "op": "gte", "value": 1}
        signal(admin, f"近 {i + 1} 天有订单", recent, 5)
    with CaptureQueriesContext(connection) as many:
        assert len(client.get(path).json()["signals"]) == 6

    assert len(many) == len(few)


def test_each_reader_sees_the_score_only_of_customers_in_their_scope(
    book, signals, east_manager, shanghai_agent, client_as
):
    def status(who: Any, key: str) -> int:
        return client_as(who).get(f"/api/customers/{book[key].pk}/score").status_code

    assert [status(east_manager, k) for k in ("pudong", "shanghai", "guangzhou")] == [
        200,
        200,
        404,
    ]
    assert [status(shanghai_agent, k) for k in ("pudong", "shanghai", "guangzhou")] == [
        200,
        404,
        404,
    ]


def test_another_companys_customer_answers_404_like_a_missing_one(book, other_admin, client_as):
    client = client_as(other_admin)

    foreign = client.get(f"/api/customers/{book['pudong'].pk}/score")
    missing = client.get("/api/customers/987654321/score")

    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()


def test_another_companys_signals_are_neither_listed_nor_counted(
    book, signals, admin, other_admin, client_as
):
    theirs = signal(other_admin, "别家 VIP", VIP, 1000)

    listed = client_as(other_admin).get(SIGNALS).json()["items"]
    score = client_as(admin).get(f"/api/customers/{book['pudong'].pk}/score").json()

    assert [s["id"] for s in listed] == [theirs.pk]
    assert score["total"] == 55
    assert "别家 VIP" not in [s["name"] for s in score["signals"]]


def test_a_signal_whose_region_was_deleted_counts_for_nobody_and_says_why(
    book, org, admin, client_as
):
    gone = make_region(org.tenant, "临时区域", org.east)
    signal(admin, "临时区域客户", {"field": "region", "op": "in", "value": [gone.pk]}, 20)
    signal(admin, "VIP", VIP, 30)
    Region.objects.filter(pk=gone.pk).delete()

    body = client_as(admin).get(f"/api/customers/{book['pudong'].pk}/score").json()
    scored = services.scores_recompute(tenant_id=org.tenant.pk)

    assert body["total"] == 30
    assert body["signals"][0]["matched"] is False
    assert "区域不存在" in body["signals"][0]["problem"]
    assert scored == 3
    book["pudong"].refresh_from_db()
    assert book["pudong"].score == 30


# --- the batch -------------------------------------------------------------------------------


def test_recomputing_writes_every_active_customers_score(book, signals, org, admin, client_as):
    merged = make_customer(admin, "李秀英", "13916620319", region_id=org.shanghai.pk, level="vip")
    services.customer_merge(
        actor=actor_for(admin), target_id=book["shanghai"].pk, source_id=merged.pk, reason="重复"
    )

    r = client_as(admin).post(f"{SIGNALS}/recompute")

    assert r.status_code == 200, r.content
    assert r.json() == {"scored": 3}
    scores = dict(Customer.objects.values_list("name", "score").filter(merged_into=None))
    assert scores == {"王建国": 55, "李秀英": 20, "黄丽": -10}
    merged.refresh_from_db()
    assert (merged.score, merged.scored_at) == (0, None)
    assert all(c.scored_at for c in Customer.objects.filter(merged_into=None))
    event = AuditEvent.objects.get(action="customers.scores.recomputed")
    assert event.data == {"customers": 3, "signals": 3}


def test_recomputing_again_writes_only_the_scores_that_changed(book, signals, org, admin):
    services.scores_recompute(tenant_id=org.tenant.pk)
    first = dict(Customer.objects.values_list("pk", "scored_at"))

    unchanged = services.scores_recompute(tenant_id=org.tenant.pk)
    Customer.objects.filter(pk=book["guangzhou"].pk).update(level="vip")
    changed = services.scores_recompute(tenant_id=org.tenant.pk)

    assert (unchanged, changed) == (0, 1)
    after = dict(Customer.objects.values_list("pk", "scored_at"))
    assert after[book["pudong"].pk] == first[book["pudong"].pk]
    assert after[book["guangzhou"].pk] > first[book["guangzhou"].pk]
    assert Customer.objects.get(pk=book["guangzhou"].pk).score == 20


def test_the_stored_score_is_usable_in_segment_conditions(book, signals, org, admin, client_as):
    services.scores_recompute(tenant_id=org.tenant.pk)

    r = client_as(admin).post(
        "/api/customers/segments/preview",
        {"conditions": {"field": "score", "op": "gte", "value": 20}},
        content_type=JSON,
    )

    assert r.json() == {"member_count": 2, "conditions_text": "评分 ≥ 20"}


def test_scoring_in_a_transaction_refreshes_only_the_customers_named(book, signals, org):
    services.scores_refresh_in_transaction(
        tenant_id=org.tenant.pk, customer_ids=[book["pudong"].pk]
    )

    scores = dict(Customer.objects.values_list("name", "score"))
    assert scores == {"王建国": 55, "李秀英": 0, "黄丽": 0}


def test_a_reader_without_customer_view_cannot_read_signals_or_scores(book, org, client_as):
    outsider = EmployeeFactory(tenant=org.tenant)
    grant(outsider, ["org.view"], "tenant")

    assert client_as(outsider).get(SIGNALS).status_code == 403
    assert client_as(outsider).get(f"/api/customers/{book['pudong'].pk}/score").status_code == 403
    with pytest.raises(Forbidden):
        services.scores_recompute_requested(actor=actor_for(outsider))


# --- the demo --------------------------------------------------------------------------------


def test_the_demo_scores_wang_jianguo_60(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    tenant = load_demo()
    load_demo_customers(tenant.pk)
    demo_tags(tenant.pk)
    demo_score_signals(tenant.pk)  # after the demo orders arrived
    snapshot = dict(Customer.objects.filter(tenant=tenant).values_list("pk", "scored_at"))

    wang = Customer.objects.get(tenant=tenant, name="王建国", level="vip", merged_into=None)
    assert wang.score == 30 + 25 + 15 - 10
    assert ScoreSignal.objects.filter(tenant=tenant).count() == len(DEMO_SCORE_SIGNALS)
    demo_score_signals(tenant.pk)  # loading again changes nothing
    assert dict(Customer.objects.filter(tenant=tenant).values_list("pk", "scored_at")) == snapshot


# --- the property ----------------------------------------------------------------------------


@pytest.fixture
def staff(org, admin):
    return [admin, EmployeeFactory(tenant=org.tenant, name="李娜", department=org.east_dept)]


@pytest.fixture
def tags(org):
    group = TagGroup.objects.create(tenant=org.tenant, name="客户价值")
    return [
        Tag.objects.create(tenant=org.tenant, group=group, name="高价值"),
        Tag.objects.create(tenant=org.tenant, group=group, name="空调"),
    ]


def _mentions_score(data: dict[str, Any]) -> bool:
    if "all" in data or "any" in data:
        return any(_mentions_score(c) for c in data.get("all", data.get("any")))
    if "not" in data:
        return _mentions_score(data["not"])
    return data.get("field") == "score"


# The strategies are built from many small ones; their repr is long and of no use.
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_every_active_customer_scores_the_points_of_the_signals_it_matches(
    org, admin, staff, tags, data
):
    def example() -> None:
        world = build_world(data, org, staff, tags)
        before = dict(Customer.objects.values_list("pk", "score"))
        specs = data.draw(
            st.lists(
                st.tuples(
                    condition_trees(world, depth=3).filter(
                        lambda c: node_count(c) <= 20 and not _mentions_score(c)
                    ),
                    st.integers(-30, 40),
                    st.booleans() | st.just(True),
                ),
                max_size=4,
            ),
            label="signals",
        )
        for i, (conditions, points, enabled) in enumerate(specs):
            signal(admin, f"评分项{i}", conditions, points, enabled=enabled)

        services.scores_refresh_in_transaction(tenant_id=org.tenant.pk, now=NOW)

        scores = dict(Customer.objects.values_list("pk", "score"))
        for person in world.people:
            if person.merged:
                assert scores[person.pk] == before[person.pk]
                continue
            expected = sum(p for c, p, on in specs if on and holds(person, c))
            assert scores[person.pk] == expected, (person, specs)
        active = [p for p in world.people if not p.merged]
        if active:
            one = data.draw(st.sampled_from(active), label="breakdown")
            breakdown = services.customer_score(actor=actor_for(admin), customer_id=one.pk, now=NOW)
            assert breakdown.total == scores[one.pk]

    in_savepoint(example)
