"""Routing: rules tried in order (first match wins), the condition language over a ticket's facts,
the dry run that explains and creates nothing, the assignment kinds, and references that must
stay within the tenant. `evaluate` is checked against an independent reference evaluator."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, cast

import pytest
from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from jingwei.audit.models import AuditEvent
from jingwei.customers.models import Customer
from jingwei.org.models import Employee, EmployeeStatus
from jingwei.tickets.models import RoutingRule, Source, Ticket, TicketEvent
from jingwei.tickets.services.routing import evaluate

from ..conftest import Org
from ..factories import EmployeeFactory, grant

RULES = "/api/tickets/routing-rules"
DRY_RUN = f"{RULES}/dry-run"
QUEUES = "/api/tickets/queues"
MISSING_ID = 2_000_000_000


# --- helpers ---------------------------------------------------------------------------------


def post(client: Client, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, body, content_type="application/json")


def make_rule(
    client: Client,
    name: str,
    conditions: dict[str, Any],
    *,
    queue_id: int | None = None,
    assignment: dict[str, Any] | None = None,
    priority: str = "",
    position: int | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "conditions": conditions, "priority": priority}
    if queue_id is not None:
        body["queue_id"] = queue_id
    if assignment is not None:
        body["assignment"] = assignment
    if position is not None:
        body["position"] = position
    r = post(client, RULES, body)
    assert r.status_code == 201, r.json()
    rule: dict[str, Any] = r.json()
    return rule


def make_queue(client: Client, name: str, members: list[Employee], region: Any = None) -> int:
    body: dict[str, Any] = {"name": name, "member_ids": [m.pk for m in members]}
    if region is not None:
        body["region_id"] = region.pk
    r = post(client, QUEUES, body)
    assert r.status_code == 201, r.json()
    queue_id: int = r.json()["id"]
    return queue_id


def dry(client: Client, **payload: Any) -> dict[str, Any]:
    payload.setdefault("template", "after_sales_repair")
    r = post(client, DRY_RUN, payload)
    assert r.status_code == 200, r.json()
    body: dict[str, Any] = r.json()
    return body


def consult(**extra: Any) -> dict[str, Any]:
    return {
        "contact_name": "王先生",
        "contact_phone": "13800001111",
        "service_type": "产品咨询",
        "question": "空调遥控器怎么设置定时",
        **extra,
    }


def complaint(compensation: str) -> dict[str, Any]:
    return {
        "urgency": "B",
        "target": "门店",
        "description": "门店服务态度很差，而且一直拖延处理",
        "expectation": "赔偿",
        "compensation": compensation,
        "contact_phone": "13900001234",
        "callback": False,
    }


def new_ticket(client: Client, template: str = "after_sales_repair", **body: Any) -> dict[str, Any]:
    body.setdefault("answers", consult())
    r = post(client, "/api/tickets", {"template": template, **body})
    assert r.status_code == 201, r.json()
    ticket: dict[str, Any] = r.json()
    return ticket


@pytest.fixture
def hq(shipped: dict[str, Any], admin: Employee, client_as: Any) -> Client:
    """The HQ admin's client, in a tenant with the shipped flows and templates."""
    client: Client = client_as(admin)
    return client


@pytest.fixture
def staff(org: Org) -> list[Employee]:
    """Three 华东 service engineers, in the order of their ids."""
    return [
        cast(
            Employee,
            EmployeeFactory(
                tenant=org.tenant, name=name, department=org.east_dept, region=org.east
            ),
        )
        for name in ("陈静", "刘洋", "赵磊")
    ]


def leave(employee: Employee) -> None:
    Employee.objects.filter(pk=employee.pk).update(status=EmployeeStatus.LEFT)


# --- order and the dry run --------------------------------------------------------------------


def test_rules_are_tried_in_order_and_the_first_match_wins(hq: Client, org: Org) -> None:
    catch_all = make_queue(hq, "综合受理", [])
    email = make_queue(hq, "邮件组", [])
    everything = make_rule(hq, "兜底", {}, queue_id=catch_all, position=20)
    by_mail = make_rule(
        hq,
        "邮件来单",
        {"field": "source", "op": "eq", "value": "email"},
        queue_id=email,
        position=10,
    )

    mail = dry(hq, source="email")
    assert (mail["rule_id"], mail["queue_id"]) == (by_mail["id"], email)
    assert [t["name"] for t in mail["trace"]] == ["邮件来单"]  # the first match decides

    console = dry(hq, source="console")
    assert (console["rule_id"], console["queue_id"]) == (everything["id"], catch_all)
    assert [(t["name"], t["matched"]) for t in console["trace"]] == [
        ("邮件来单", False),
        ("兜底", True),
    ]
    assert console["trace"][0]["reasons"] == ["来源 等于 email：实际为 console → 不成立"]
    assert "兜底" in console["explanation"]

    # Moving the catch-all first makes it win for mail too.
    body = {**everything, "position": 5}
    body.pop("id")
    r = hq.put(f"{RULES}/{everything['id']}", body, content_type="application/json")
    assert r.status_code == 200, r.json()
    assert dry(hq, source="email")["rule_id"] == everything["id"]
    listed = hq.get(RULES).json()
    assert [r["name"] for r in listed] == ["兜底", "邮件来单"]


def test_an_inactive_rule_is_skipped(hq: Client) -> None:
    off = make_rule(hq, "停用的规则", {})
    body = {k: v for k, v in off.items() if k != "id"} | {"is_active": False}
    r = hq.put(f"{RULES}/{off['id']}", body, content_type="application/json")
    assert r.status_code == 200, r.json()
    result = dry(hq)
    assert result["rule_id"] is None
    assert result["trace"] == []
    assert "没有规则命中" in result["explanation"]


def test_the_dry_run_explains_each_condition_and_creates_nothing(
    hq: Client, org: Org, staff: list[Employee]
) -> None:
    queue = make_queue(hq, "华东售后", staff, org.east)
    rule = make_rule(
        hq,
        "华东售后",
        {
            "all": [
                {"field": "region", "op": "within", "value": org.shanghai.pk},
                {"field": "answers.service_type", "op": "eq", "value": "售后服务"},
                {"not": {"field": "source", "op": "in", "value": ["email", "wecom"]}},
            ]
        },
        queue_id=queue,
        assignment={"rule": "round_robin"},
        priority="A",
    )
    counts = (Ticket.objects.count(), TicketEvent.objects.count(), AuditEvent.objects.count())

    hit = dry(hq, region_id=org.pudong.pk, answers={"service_type": "售后服务"})
    assert (hit["rule_id"], hit["queue_id"], hit["priority"]) == (rule["id"], queue, "A")
    assert hit["owner_id"] == staff[0].pk
    assert hit["trace"][0]["matched"] is True
    assert hit["trace"][0]["reasons"] == [
        f"区域 位于 {org.shanghai.pk}：实际为 浦东 → 成立",
        "answers.service_type 等于 售后服务：实际为 售后服务 → 成立",
        "非（来源 属于 email、wecom：实际为 console → 不成立）",
    ]

    miss = dry(hq, region_id=org.guangzhou.pk, answers={"service_type": "售后服务"})
    assert miss["rule_id"] is None and miss["queue_id"] is None and miss["owner_id"] is None
    assert miss["trace"][0]["matched"] is False
    assert miss["trace"][0]["reasons"][0] == f"区域 位于 {org.shanghai.pk}：实际为 广州 → 不成立"

    # Asking again gives the same answer: a dry run does not take round-robin turns.
    assert dry(hq, region_id=org.pudong.pk, answers={"service_type": "售后服务"}) == hit
    assert (
        Ticket.objects.count(),
        TicketEvent.objects.count(),
        AuditEvent.objects.count(),
    ) == counts


# --- the conditions ---------------------------------------------------------------------------

# (condition built from the org, a dry-run payload where it holds, one where it does not)
CASES: dict[str, tuple[Callable[[Org], dict[str, Any]], dict[str, Any], dict[str, Any]]] = {
    "source": (
        lambda o: {"field": "source", "op": "eq", "value": "email"},
        {"source": "email"},
        {"source": "public_form"},
    ),
    "region within 上海 matches 浦东": (
        lambda o: {"field": "region", "op": "within", "value": o.shanghai.pk},
        {"region_id": "pudong"},
        {"region_id": "guangzhou"},
    ),
    "region within 上海 does not match 华东 above it": (
        lambda o: {"field": "region", "op": "within", "value": o.shanghai.pk},
        {"region_id": "shanghai"},
        {"region_id": "east"},
    ),
    "region absent": (
        lambda o: {"field": "region", "op": "empty"},
        {},
        {"region_id": "pudong"},
    ),
    "template": (
        lambda o: {"field": "template", "op": "eq", "value": "complaint"},
        {"template": "complaint"},
        {"template": "after_sales_repair"},
    ),
    "category": (
        lambda o: {"field": "category", "op": "in", "value": ["售后", "退换货"]},
        {"template": "shop_return"},
        {"template": "course_trial"},
    ),
    "priority": (
        lambda o: {"field": "priority", "op": "in", "value": ["S", "A"]},
        {"priority": "S"},
        {"priority": "B"},
    ),
    "answer equals": (
        lambda o: {"field": "answers.service_type", "op": "eq", "value": "售后服务"},
        {"answers": {"service_type": "售后服务"}},
        {"answers": {"service_type": "产品咨询"}},
    ),
    "multi-select answer contains a choice": (
        lambda o: {"field": "answers.fault_tags", "op": "eq", "value": "漏水"},
        {"answers": {"fault_tags": ["噪音大", "漏水"]}},
        {"answers": {"fault_tags": ["噪音大"]}},
    ),
    "money answer gte (equal)": (
        lambda o: {"field": "answers.compensation", "op": "gte", "value": 5000},
        {"answers": {"compensation": "5000.00"}},
        {"answers": {"compensation": "4999.99"}},
    ),
    "money answer lt": (
        lambda o: {"field": "answers.compensation", "op": "lt", "value": "100.5"},
        {"answers": {"compensation": "100.49"}},
        {"answers": {}},
    ),
    "text contains": (
        lambda o: {"field": "answers.question", "op": "contains", "value": "漏水"},
        {"answers": {"question": "室内机漏水了"}},
        {"answers": {"question": "不制冷"}},
    ),
    "answer not empty": (
        lambda o: {"field": "answers.photos", "op": "not_empty"},
        {"answers": {"photos": ["ph1"]}},
        {"answers": {"photos": []}},
    ),
    "ne holds on an absent answer": (
        lambda o: {"field": "answers.warranty", "op": "ne", "value": "在保"},
        {"answers": {}},
        {"answers": {"warranty": "在保"}},
    ),
    "any / not": (
        lambda o: {
            "any": [
                {"field": "source", "op": "eq", "value": "wecom"},
                {"not": {"field": "priority", "op": "in", "value": ["B", "C"]}},
            ]
        },
        {"priority": "A"},
        {"priority": "C"},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_condition_holds_where_it_should_and_not_elsewhere(
    case: str, hq: Client, org: Org
) -> None:
    build, holds, fails = CASES[case]
    rule = make_rule(hq, "规则", build(org))

    def payload(given: dict[str, Any]) -> dict[str, Any]:
        out = dict(given)
        if "region_id" in out:
            out["region_id"] = getattr(org, out["region_id"]).pk
        return out

    assert dry(hq, **payload(holds))["rule_id"] == rule["id"]
    assert dry(hq, **payload(fails))["rule_id"] is None


def test_a_customer_tier_condition_reads_the_ticket_customer(hq: Client, org: Org) -> None:
    make_rule(hq, "VIP", {"field": "customer_level", "op": "eq", "value": "vip"})
    vip = Customer.objects.create(tenant=org.tenant, name="李总", level="vip")
    normal = Customer.objects.create(tenant=org.tenant, name="王先生", level="normal")
    assert dry(hq, customer_id=vip.pk)["rule_name"] == "VIP"
    assert dry(hq, customer_id=normal.pk)["rule_name"] is None
    assert dry(hq)["trace"][0]["reasons"] == ["客户等级 等于 vip：实际为 （空） → 不成立"]


def test_money_answers_route_by_amount_on_real_tickets(hq: Client, org: Org) -> None:
    big = make_queue(hq, "大额客诉", [])
    make_rule(
        hq,
        "大额赔偿",
        {
            "all": [
                {"field": "template", "op": "eq", "value": "complaint"},
                {"field": "answers.compensation", "op": "gte", "value": "5000"},
            ]
        },
        queue_id=big,
        priority="A",
    )
    at_limit = new_ticket(hq, "complaint", answers=complaint("5000"))
    below = new_ticket(hq, "complaint", answers=complaint("4999.99"))
    assert (at_limit["queue_id"], at_limit["routing"]["rule"]) == (big, "大额赔偿")
    assert (below["queue_id"], below["routing"]["rule"]) == (None, None)
    assert at_limit["answers"]["compensation"] == "5000.00"


def test_a_numeric_condition_on_text_that_is_not_a_finite_number_does_not_hold(
    hq: Client, org: Org
) -> None:
    # A public form lets anyone type "NaN" or "Infinity" into a text field.
    make_rule(hq, "数量多", {"field": "answers.question", "op": "gte", "value": 100})
    for text in ("NaN", "sNaN", "Infinity", "-Infinity", "很多"):
        result = dry(hq, answers={"question": text})
        assert result["rule_id"] is None, text
    assert dry(hq, answers={"question": "120"})["rule_name"] == "数量多"


@pytest.mark.parametrize(
    ("conditions", "field", "code"),
    [
        ({"field": "colour", "op": "eq", "value": 1}, "conditions.field", "invalid"),
        ({"field": "answers.", "op": "eq", "value": 1}, "conditions.field", "invalid"),
        (
            {
                "all": [
                    {"field": "source", "op": "eq", "value": "email"},
                    {"field": "source", "op": "like", "value": "mail"},
                ]
            },
            "conditions.all.1.op",
            "invalid",
        ),
        ({"any": []}, "conditions", "invalid"),
        ({"all": [{}]}, "conditions.all.0.field", "invalid"),
        ({"all": [], "any": []}, "conditions", "invalid"),
        (
            {"not": {"field": "answers.amount", "op": "gt", "value": "很多"}},
            "conditions.not.value",
            "invalid",
        ),
        ({"field": "answers.amount", "op": "gte", "value": "NaN"}, "conditions.value", "invalid"),
        ({"field": "region", "op": "eq", "value": 1}, "conditions.op", "invalid"),
        ({"field": "region", "op": "within", "value": "华东"}, "conditions.value", "invalid"),
        ({"field": "source", "op": "within", "value": 1}, "conditions.op", "invalid"),
        ({"field": "source", "op": "eq", "value": "fax"}, "conditions.value", "invalid"),
        ({"field": "priority", "op": "in", "value": ["S", "Z"]}, "conditions.value", "invalid"),
        ({"field": "source", "op": "in", "value": []}, "conditions.value", "invalid"),
        ({"field": "answers.x", "op": "empty", "value": 1}, "conditions.value", "invalid"),
        ({"field": "answers.x", "op": "eq"}, "conditions.value", "required"),
        ({"field": "source", "op": "eq", "value": "email", "note": 1}, "conditions", "invalid"),
        (
            {"not": {"not": {"not": {"not": {"not": {"not": {"field": "source"}}}}}}},
            "conditions.not.not.not.not.not.not",
            "invalid",
        ),
    ],
)
def test_a_malformed_condition_is_refused_naming_the_path(
    conditions: dict[str, Any], field: str, code: str, hq: Client
) -> None:
    r = post(hq, RULES, {"name": "坏规则", "conditions": conditions})
    assert r.status_code == 422, r.json()
    assert (r.json()["field"], r.json()["code"]) == (field, code)
    assert not RoutingRule.objects.exists()


def test_too_many_conditions_are_refused(hq: Client) -> None:
    leaf = {"field": "source", "op": "eq", "value": "email"}
    r = post(hq, RULES, {"name": "太长", "conditions": {"any": [leaf] * 60}})
    assert r.status_code == 422, r.json()
    assert r.json()["field"].startswith("conditions.any.")


@pytest.mark.parametrize(
    ("assignment", "field"),
    [
        ({"rule": "magic"}, "assignment.rule"),
        ({"rule": "user"}, "assignment.employee_id"),
        ({"rule": "user", "employee_id": "1"}, "assignment.employee_id"),
        ({"rule": "customer_owner", "fallback": "customer_owner"}, "assignment.fallback"),
        ({"rule": "customer_owner", "fallback": "user"}, "assignment.employee_id"),
        ({"rule": "none", "who": 1}, "assignment"),
    ],
)
def test_a_malformed_assignment_is_refused_naming_the_path(
    assignment: dict[str, Any], field: str, hq: Client
) -> None:
    r = post(hq, RULES, {"name": "坏分配", "conditions": {}, "assignment": assignment})
    assert r.status_code == 422, r.json()
    assert r.json()["field"] == field
    assert not RoutingRule.objects.exists()


# --- who owns the ticket ----------------------------------------------------------------------


@pytest.fixture
def vip_setup(hq: Client, org: Org, staff: list[Employee]) -> dict[str, Any]:
    """A VIP rule sending VIP customers to their dedicated advisor, else to the least loaded of
    the VIP desk; the advisor is not a member of the desk."""
    advisor = cast(
        Employee, EmployeeFactory(tenant=org.tenant, name="专属顾问", region=org.shanghai)
    )
    desk = make_queue(hq, "VIP 专线", staff[:2])
    make_rule(
        hq,
        "VIP 客户交专属顾问",
        {"field": "customer_level", "op": "eq", "value": "vip"},
        queue_id=desk,
        assignment={"rule": "customer_owner", "fallback": "least_loaded"},
        priority="A",
    )
    vip = Customer.objects.create(
        tenant=org.tenant, name="李总", level="vip", owner=advisor, region=org.pudong
    )
    return {"advisor": advisor, "desk": desk, "vip": vip}


def test_a_vip_customer_goes_to_their_dedicated_advisor(
    hq: Client, vip_setup: dict[str, Any], org: Org
) -> None:
    t = new_ticket(hq, customer_id=vip_setup["vip"].pk)
    assert (t["owner_id"], t["queue_id"], t["priority"]) == (
        vip_setup["advisor"].pk,
        vip_setup["desk"],
        "A",
    )
    assert t["region_id"] == org.pudong.pk  # the customer's region
    assert t["routing"]["rule"] == "VIP 客户交专属顾问"
    assert dry(hq, customer_id=vip_setup["vip"].pk)["owner_id"] == vip_setup["advisor"].pk


def test_a_vip_whose_advisor_has_left_falls_back_to_the_least_loaded(
    hq: Client, vip_setup: dict[str, Any], staff: list[Employee]
) -> None:
    leave(vip_setup["advisor"])
    first = new_ticket(hq, customer_id=vip_setup["vip"].pk)
    second = new_ticket(hq, customer_id=vip_setup["vip"].pk)
    assert first["owner_id"] == staff[0].pk
    assert second["owner_id"] == staff[1].pk
    assert first["queue_id"] == vip_setup["desk"]


def test_a_vip_without_an_advisor_falls_back_too(
    hq: Client, vip_setup: dict[str, Any], staff: list[Employee]
) -> None:
    Customer.objects.filter(pk=vip_setup["vip"].pk).update(owner=None)
    assert dry(hq, customer_id=vip_setup["vip"].pk)["owner_id"] == staff[0].pk


def test_a_customer_owner_rule_without_fallback_leaves_the_ticket_in_the_queue(
    hq: Client, org: Org, staff: list[Employee]
) -> None:
    pool = make_queue(hq, "共享池", staff)
    make_rule(hq, "顾问", {}, queue_id=pool, assignment={"rule": "customer_owner"})
    t = new_ticket(hq)  # a walk-in: the customer made from the phone has no owner
    assert (t["owner_id"], t["queue_id"]) == (None, pool)


def test_least_loaded_picks_the_member_with_fewest_open_tickets(
    hq: Client, org: Org, staff: list[Employee]
) -> None:
    a, b = staff[0], staff[1]
    queue = make_queue(hq, "华东售后", [a, b], org.east)
    make_rule(hq, "华东", {}, queue_id=queue, assignment={"rule": "least_loaded"})
    owners = [new_ticket(hq)["owner_id"] for _ in range(3)]
    assert owners == [a.pk, b.pk, a.pk]  # ties go to the lower id

    # Closed tickets do not count: with A's two closed, A (0 open) takes the next over B (1).
    for ticket in Ticket.objects.filter(owner=a):
        r = post(hq, f"/api/tickets/{ticket.pk}/close", {"reason": "重复工单"})
        assert r.status_code == 200, r.json()
    assert new_ticket(hq)["owner_id"] == a.pk

    # A member who has left takes nothing.
    leave(a)
    assert new_ticket(hq)["owner_id"] == b.pk


def test_round_robin_takes_members_in_turn(hq: Client, org: Org, staff: list[Employee]) -> None:
    queue = make_queue(hq, "轮值", staff)
    make_rule(hq, "轮流", {}, queue_id=queue, assignment={"rule": "round_robin"})
    owners = [new_ticket(hq)["owner_id"] for _ in range(4)]
    assert owners == [staff[0].pk, staff[1].pk, staff[2].pk, staff[0].pk]
    leave(staff[1])
    assert [new_ticket(hq)["owner_id"] for _ in range(2)] == [staff[2].pk, staff[0].pk]


def test_a_user_assignment_names_the_person_while_they_are_employed(
    hq: Client, staff: list[Employee]
) -> None:
    make_rule(hq, "指定", {}, assignment={"rule": "user", "employee_id": staff[2].pk})
    assert new_ticket(hq)["owner_id"] == staff[2].pk
    leave(staff[2])
    t = new_ticket(hq)
    assert t["owner_id"] is None
    assert t["routing"]["rule"] == "指定"


def test_a_queue_without_active_members_leaves_tickets_unassigned(
    hq: Client, staff: list[Employee]
) -> None:
    queue = make_queue(hq, "空队列", [staff[0]])
    make_rule(hq, "空", {}, queue_id=queue, assignment={"rule": "least_loaded"})
    leave(staff[0])
    t = new_ticket(hq)
    assert (t["owner_id"], t["queue_id"]) == (None, queue)


def test_a_deleted_rule_stops_matching(hq: Client) -> None:
    rule = make_rule(hq, "临时", {})
    assert dry(hq)["rule_id"] == rule["id"]
    assert hq.delete(f"{RULES}/{rule['id']}").status_code == 204
    assert dry(hq)["rule_id"] is None
    assert hq.delete(f"{RULES}/{rule['id']}").status_code == 404


def test_rule_names_are_unique(hq: Client) -> None:
    make_rule(hq, "同名", {})
    r = post(hq, RULES, {"name": "同名", "conditions": {}})
    assert r.status_code == 409
    assert (r.json()["code"], r.json()["field"]) == ("name_taken", "name")


# --- who may manage, and other tenants -------------------------------------------------------


def test_only_company_wide_ticket_managers_manage_routing(
    hq: Client, org: Org, east_manager: Employee, shanghai_agent: Employee, client_as: Any
) -> None:
    grant(east_manager, ["ticket.manage", "ticket.view"], "region")
    grant(shanghai_agent, ["ticket.create"], "self")
    rule = make_rule(hq, "规则", {})
    for who in (east_manager, shanghai_agent):
        client = client_as(who)
        assert post(client, RULES, {"name": "越权", "conditions": {}}).status_code == 403
        assert post(client, QUEUES, {"name": "越权", "member_ids": []}).status_code == 403
        assert client.delete(f"{RULES}/{rule['id']}").status_code == 403
    assert post(client_as(shanghai_agent), DRY_RUN, {"template": "complaint"}).status_code == 403
    assert Client().post(DRY_RUN, {"template": "complaint"}, "application/json").status_code == 401
    assert RoutingRule.objects.count() == 1


def refused_alike(
    client: Client, url: str, foreign: dict[str, Any], missing: dict[str, Any]
) -> Any:
    """Both bodies are refused with the same status, code and field; returns that triple."""
    answers = []
    for body in (foreign, missing):
        r = post(client, url, body)
        answers.append((r.status_code, r.json()["code"], r.json()["field"]))
    assert answers[0] == answers[1]
    return answers[0]


def test_another_tenants_ids_in_rules_are_refused_like_missing_ones(
    hq: Client, org: Org, other_org: Org, other_admin: Employee, client_as: Any
) -> None:
    stranger = client_as(other_admin)
    foreign_queue = make_queue(stranger, "别家队列", [other_admin])

    def rule(**body: Any) -> dict[str, Any]:
        return {"name": "引用", "conditions": {}, **body}

    assert refused_alike(hq, RULES, rule(queue_id=foreign_queue), rule(queue_id=MISSING_ID)) == (
        422,
        "invalid_reference",
        "queue_id",
    )
    within = {"field": "region", "op": "within"}
    assert refused_alike(
        hq,
        RULES,
        rule(conditions={**within, "value": other_org.east.pk}),
        rule(conditions={**within, "value": MISSING_ID}),
    ) == (422, "invalid_reference", "conditions.value")
    assert refused_alike(
        hq,
        RULES,
        rule(assignment={"rule": "user", "employee_id": other_admin.pk}),
        rule(assignment={"rule": "user", "employee_id": MISSING_ID}),
    ) == (422, "invalid_reference", "assignment.employee_id")
    assert refused_alike(
        hq,
        QUEUES,
        {"name": "队列", "member_ids": [other_admin.pk]},
        {"name": "队列", "member_ids": [MISSING_ID]},
    ) == (422, "invalid_reference", "member_ids")
    assert refused_alike(
        hq,
        QUEUES,
        {"name": "队列", "member_ids": [], "region_id": other_org.east.pk},
        {"name": "队列", "member_ids": [], "region_id": MISSING_ID},
    ) == (422, "invalid_reference", "region_id")
    assert not RoutingRule.objects.filter(tenant=org.tenant).exists()


def test_another_tenants_rules_queues_and_customers_read_as_missing(
    hq: Client, org: Org, other_org: Org, other_admin: Employee, client_as: Any
) -> None:
    stranger = client_as(other_admin)
    foreign_rule = make_rule(stranger, "别家规则", {})
    foreign_queue = make_queue(stranger, "别家队列", [])
    body = {"name": "改别家", "conditions": {}}
    assert hq.put(f"{RULES}/{foreign_rule['id']}", body, "application/json").status_code == 404
    assert hq.delete(f"{RULES}/{foreign_rule['id']}").status_code == 404
    queue_body = {"name": "改别家", "member_ids": []}
    r = hq.put(f"{QUEUES}/{foreign_queue}", queue_body, "application/json")
    assert r.status_code == 404
    assert RoutingRule.objects.get(pk=foreign_rule["id"]).name == "别家规则"
    assert "别家规则" not in [r["name"] for r in hq.get(RULES).json()]

    foreign_customer = Customer.objects.create(tenant=other_org.tenant, name="别家客户")
    r = post(hq, DRY_RUN, {"template": "after_sales_repair", "customer_id": foreign_customer.pk})
    missing = post(hq, DRY_RUN, {"template": "after_sales_repair", "customer_id": MISSING_ID})
    assert r.status_code == missing.status_code == 422
    assert r.json() == missing.json()
    r = post(hq, DRY_RUN, {"template": "after_sales_repair", "region_id": other_org.east.pk})
    missing = post(hq, DRY_RUN, {"template": "after_sales_repair", "region_id": MISSING_ID})
    assert r.status_code == missing.status_code == 422
    assert r.json() == missing.json()
    assert r.json()["field"] == "region_id"
    # Our dry run never shows the other tenant's rule.
    assert dry(hq)["trace"] == []


# --- evaluate against a reference evaluator --------------------------------------------------

REGION_PATHS = [[], [1], [1, 2], [1, 2, 3], [10], [10, 11]]
SCALARS = ["售后服务", "产品咨询", "漏水", "", "NaN", "Infinity", "1e3", "100", "100.00", "99.99"]
NUMBERS = [5, 100, 10000, -3, 99.5, 1000.0, "100", "100.0", "99.99", "1e3", "-0.5"]
ANSWER_KEYS = ["service_type", "amount", "tags", "agree", "note"]

scalar = st.sampled_from(SCALARS) | st.sampled_from(NUMBERS)
answer_value = (
    scalar
    | st.none()
    | st.booleans()
    | st.lists(st.sampled_from(["噪音大", "漏水", "100", "售后服务"]), max_size=3)
)
facts_strategy = st.fixed_dictionaries(
    {
        "source": st.sampled_from(Source.values),
        "template": st.sampled_from(["after_sales_repair", "complaint"]),
        "category": st.sampled_from(["售后", "投诉", ""]),
        "priority": st.sampled_from(["S", "A", "B", "C", ""]),
        "customer_level": st.sampled_from(["vip", "normal", None]),
        "region_path": st.sampled_from(REGION_PATHS),
        "answers": st.dictionaries(st.sampled_from(ANSWER_KEYS), answer_value, max_size=5),
    }
)


def _values_for(name: str) -> st.SearchStrategy[Any]:
    if name == "source":
        return st.sampled_from(Source.values)
    if name == "priority":
        return st.sampled_from(["S", "A", "B", "C"])
    if name == "customer_level":
        return st.sampled_from(["vip", "normal", "potential"])
    if name in ("template", "category"):
        return st.sampled_from(["after_sales_repair", "complaint", "售后", "投诉"])
    return scalar | st.booleans()


@st.composite
def leaf(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(
        st.sampled_from(
            ["source", "template", "category", "priority", "customer_level", "region"]
            + [f"answers.{k}" for k in ANSWER_KEYS]
        )
    )
    if name == "region":
        op = draw(st.sampled_from(["within", "empty", "not_empty"]))
        if op != "within":
            return {"field": name, "op": op}
        ids = st.sampled_from([1, 2, 3, 10, 11, 99])
        return {"field": name, "op": op, "value": draw(ids | st.lists(ids, min_size=1, max_size=3))}
    op = draw(
        st.sampled_from(
            ["eq", "ne", "in", "not_in", "contains", "gt", "gte", "lt", "lte", "empty", "not_empty"]
        )
    )
    if op in ("empty", "not_empty"):
        return {"field": name, "op": op}
    if op in ("gt", "gte", "lt", "lte"):
        return {"field": name, "op": op, "value": draw(st.sampled_from(NUMBERS))}
    if op in ("in", "not_in"):
        return {
            "field": name,
            "op": op,
            "value": draw(st.lists(_values_for(name), min_size=1, max_size=3)),
        }
    return {"field": name, "op": op, "value": draw(_values_for(name))}


conditions_strategy = st.recursive(
    leaf(),
    lambda inner: (
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3))
        | st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3))
        | st.builds(lambda x: {"not": x}, inner)
    ),
    max_leaves=8,
)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def _decimal(x: Any) -> Decimal | None:
    if isinstance(x, bool) or not isinstance(x, int | float | str):
        return None
    try:
        d = Decimal(str(x))
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def reference(cond: dict[str, Any], facts: dict[str, Any]) -> bool:
    """What the documented condition language means, written from its description."""
    if not cond:
        return True
    if "all" in cond:
        return all(reference(c, facts) for c in cond["all"])
    if "any" in cond:
        return any(reference(c, facts) for c in cond["any"])
    if "not" in cond:
        return not reference(cond["not"], facts)
    name, op, value = cond["field"], cond["op"], cond.get("value")
    if name == "region":
        actual: Any = facts["region_path"]
    elif name.startswith("answers."):
        actual = facts["answers"].get(name.removeprefix("answers."))
    else:
        actual = facts.get(name)
    present = actual not in (None, "", [])
    items = actual if isinstance(actual, list) else [actual]
    if op == "empty":
        return not present
    if op == "not_empty":
        return present
    if op in ("ne", "not_in"):
        return not reference({**cond, "op": {"ne": "eq", "not_in": "in"}[op]}, facts)
    if not present:
        return False
    wanted = value if isinstance(value, list) else [value]
    if op in ("eq", "in", "within"):
        return any(_same(w, item) for w in wanted for item in items)
    if op == "contains":
        return any(str(value) in str(item) for item in items)
    left, right = _decimal(actual), _decimal(value)
    if left is None or right is None:
        return False
    return {"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op]


def _leaves(cond: dict[str, Any]) -> int:
    if not cond:
        return 1
    for group in ("all", "any"):
        if group in cond:
            return sum(_leaves(c) for c in cond[group])
    if "not" in cond:
        return _leaves(cond["not"])
    return 1


def test_the_reference_reads_ne_and_not_in_as_negations() -> None:
    facts = {"answers": {}, "region_path": [], "source": "email"}
    assert reference({"field": "source", "op": "ne", "value": "console"}, facts)
    assert not reference({"field": "source", "op": "not_in", "value": ["email"]}, facts)
    assert reference({"field": "answers.x", "op": "not_in", "value": ["a"]}, facts)


@settings(max_examples=400, deadline=None)
@given(cond=conditions_strategy | st.just({}), facts=facts_strategy)
def test_evaluate_agrees_with_the_reference_evaluator(
    cond: dict[str, Any], facts: dict[str, Any]
) -> None:
    why: list[str] = []
    assert evaluate(cond, facts, why) is reference(cond, facts)
    # One explanation line per condition, every one of them evaluated.
    assert len(why) == _leaves(cond)
