"""Routing: which queue a new ticket goes to and who owns it, by rules tried in order.

A rule's conditions are JSON over the ticket's facts:

    {"field": "source", "op": "eq", "value": "email"}
    {"field": "region", "op": "within", "value": 12}         12 or any region below it
    {"field": "customer_level", "op": "eq", "value": "vip"}
    {"field": "answers.service_type", "op": "eq", "value": "售后服务"}
    {"all": [...]}, {"any": [...]}, {"not": {...}};  {} holds for every ticket

Fields: source, template (key), category, priority, customer_level (absent without a customer),
region, answers.<key>. Ops: eq, ne, in, not_in, within (region only), contains, gt, gte, lt,
lte (numbers and amounts, compared as decimals), empty, not_empty. On an absent fact `empty`,
`ne` and `not_in` hold and every other op fails.

Assignment: none (the queue's shared pool), user (employee_id), least_loaded (the queue member
with the fewest open tickets), round_robin (queue members in turn), customer_owner (the customer's
own advisor — VIPs to their dedicated advisor — falling back to `fallback` when there is none).

`route()` gives the decision and, for the dry run, why each rule held or did not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count

from jingwei.audit.services import audit_record, delete_recorded, snapshot
from jingwei.core.errors import Conflict, Invalid, NotFound
from jingwei.org.models import Employee, EmployeeStatus, Region, path_ids
from jingwei.org.scope import Actor

from ..models import Priority, Queue, QueueMember, RoutingRule, Source, Ticket, TicketStatus
from .common import MANAGE

FACTS = ("source", "template", "category", "priority", "customer_level", "region")
OPS = (
    "eq",
    "ne",
    "in",
    "not_in",
    "within",
    "contains",
    "gt",
    "gte",
    "lt",
    "lte",
    "empty",
    "not_empty",
)
OP_TEXT = {
    "eq": "等于",
    "ne": "不等于",
    "in": "属于",
    "not_in": "不属于",
    "within": "位于",
    "contains": "包含",
    "gt": "大于",
    "gte": "大于等于",
    "lt": "小于",
    "lte": "小于等于",
    "empty": "为空",
    "not_empty": "不为空",
}
FACT_TEXT = {
    "source": "来源",
    "template": "模板",
    "category": "工单类型",
    "priority": "优先级",
    "customer_level": "客户等级",
    "region": "区域",
}
ASSIGNMENTS = ("none", "user", "least_loaded", "round_robin", "customer_owner")
MAX_NODES = 50
_ABSENT = object()


# --- conditions ------------------------------------------------------------------------------


def check_conditions(tenant_id: int, data: Any, path: str = "conditions") -> None:
    """Refuse a malformed condition naming the path of the mistake (`conditions.all.1.op`)."""
    count = [0]

    def node(item: Any, where: str, depth: int) -> None:
        count[0] += 1
        if count[0] > MAX_NODES or depth > 6:
            raise Invalid(f"条件过多或嵌套过深（最多 {MAX_NODES} 个）", code="invalid", field=where)
        if not isinstance(item, Mapping):
            raise Invalid("条件应为对象", code="invalid", field=where)
        if not item and depth == 1:
            return  # {}: every ticket
        for group in ("all", "any"):
            if group in item:
                items = item[group]
                if set(item) != {group} or not isinstance(items, list) or not items:
                    raise Invalid(
                        f"{group} 应为唯一的键、值为非空列表", code="invalid", field=where
                    )
                for i, sub in enumerate(items):
                    node(sub, f"{where}.{group}.{i}", depth + 1)
                return
        if "not" in item:
            if set(item) != {"not"}:
                raise Invalid("not 应为唯一的键", code="invalid", field=where)
            node(item["not"], f"{where}.not", depth + 1)
            return
        leaf(item, where)

    def leaf(item: Mapping[str, Any], where: str) -> None:
        extra = set(item) - {"field", "op", "value"}
        if extra:
            raise Invalid(f"条件不认识的键：{', '.join(sorted(map(str, extra)))}", field=where)
        name = item.get("field")
        if not isinstance(name, str) or not (
            name in FACTS or (name.startswith("answers.") and len(name) > 8)
        ):
            raise Invalid(
                f"条件字段应为 {'、'.join(FACTS)} 或 answers.<字段>",
                code="invalid",
                field=f"{where}.field",
            )
        op = item.get("op")
        if op not in OPS:
            raise Invalid(f"不认识的条件运算：{op}", code="invalid", field=f"{where}.op")
        if op == "within" and name != "region":
            raise Invalid("within 只用于区域", code="invalid", field=f"{where}.op")
        if name == "region" and op not in ("within", "empty", "not_empty"):
            raise Invalid("区域条件用 within（位于）", code="invalid", field=f"{where}.op")
        if op in ("empty", "not_empty"):
            if "value" in item:
                raise Invalid("此条件不需要值", code="invalid", field=f"{where}.value")
            return
        if "value" not in item:
            raise Invalid("请填写条件的值", code="required", field=f"{where}.value")
        value = item["value"]
        if op in ("in", "not_in") and (
            not isinstance(value, list) or not value or len(value) > 100
        ):
            raise Invalid("值应为 1—100 项的列表", code="invalid", field=f"{where}.value")
        if op in ("gt", "gte", "lt", "lte") and _number(value) is None:
            raise Invalid("值应为数字", code="invalid", field=f"{where}.value")
        if name == "region":
            ids = value if isinstance(value, list) else [value]
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids) or not ids:
                raise Invalid("区域应为区域编号", code="invalid", field=f"{where}.value")
            found = Region.objects.filter(tenant_id=tenant_id, pk__in=ids).count()
            if found != len(set(ids)):
                raise Invalid("区域不存在", code="invalid_reference", field=f"{where}.value")
        if name == "source":
            for v in value if isinstance(value, list) else [value]:
                if v not in Source.values:
                    raise Invalid(f"不认识的来源：{v}", code="invalid", field=f"{where}.value")
        if name == "priority":
            for v in value if isinstance(value, list) else [value]:
                if v not in Priority.values:
                    raise Invalid(f"不认识的优先级：{v}", code="invalid", field=f"{where}.value")

    node(data, path, 1)


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value)) if isinstance(value, int | float | str | Decimal) else None
    except InvalidOperation:
        return None
    # "NaN" / "Infinity" parse but are no amount (and comparing NaN raises): not a number.
    return number if number is not None and number.is_finite() else None


def _fact(facts: Mapping[str, Any], name: str) -> Any:
    if name.startswith("answers."):
        value = facts.get("answers", {}).get(name[8:], _ABSENT)
    else:
        value = facts.get(name, _ABSENT)
    return _ABSENT if value is None or value == "" or value == [] else value


def _leaf_holds(op: str, actual: Any, value: Any) -> bool:
    if op == "empty":
        return actual is _ABSENT
    if op == "not_empty":
        return actual is not _ABSENT
    if op == "ne":
        return not _leaf_holds("eq", actual, value)
    if op == "not_in":
        return not _leaf_holds("in", actual, value)
    if actual is _ABSENT:
        return False
    many = actual if isinstance(actual, list) else [actual]
    if op == "within":  # actual: the region's path of ids
        wanted = value if isinstance(value, list) else [value]
        return any(v in many for v in wanted)
    if op == "eq":
        return value in many
    if op == "in":
        return any(v in many for v in value)
    if op == "contains":
        return any(str(value) in str(a) for a in many)
    left, right = _number(actual), _number(value)
    if left is None or right is None:
        return False
    return {"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op]


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "（空）"
    if isinstance(value, list):
        return "、".join(map(str, value))
    return str(value)


def evaluate(cond: Mapping[str, Any], facts: Mapping[str, Any], why: list[str]) -> bool:
    """Whether `cond` holds for the facts; appends one line per leaf to `why`."""
    if not cond:
        why.append("无条件：所有工单")
        return True
    if "all" in cond:
        return all([evaluate(c, facts, why) for c in cond["all"]])
    if "any" in cond:
        return any([evaluate(c, facts, why) for c in cond["any"]])
    if "not" in cond:
        inner: list[str] = []
        held = not evaluate(cond["not"], facts, inner)
        why.extend(f"非（{line}）" for line in inner)
        return held
    name, op = cond["field"], cond["op"]
    actual = _fact(facts, name)
    if name == "region":
        actual = facts.get("region_path") or _ABSENT
    held = _leaf_holds(op, actual, cond.get("value"))
    label = FACT_TEXT.get(name, name)
    shown = _show(facts.get("region_name", actual) if name == "region" else actual)
    expected = "" if op in ("empty", "not_empty") else f" {_show(cond.get('value'))}"
    why.append(f"{label} {OP_TEXT[op]}{expected}：实际为 {shown} → {'成立' if held else '不成立'}")
    return held


# --- deciding --------------------------------------------------------------------------------


@dataclass
class RuleTrace:
    rule_id: int
    name: str
    matched: bool
    reasons: list[str]


@dataclass
class Decision:
    rule: RoutingRule | None = None
    queue_id: int | None = None
    owner_id: int | None = None
    priority: str = ""
    assignment: str = "none"
    explanation: str = ""
    trace: list[RuleTrace] = field(default_factory=list)


def facts_for(
    *,
    tenant_id: int,
    source: str,
    template_key: str,
    category: str,
    priority: str,
    region_id: int | None,
    customer: Any,
    answers: Mapping[str, Any],
) -> dict[str, Any]:
    region_path: list[int] = []
    region_name = None
    if region_id is not None:
        region = Region.objects.filter(tenant_id=tenant_id, pk=region_id).first()
        if region is not None:
            region_path = path_ids(region.path)
            region_name = region.name
    return {
        "source": source,
        "template": template_key,
        "category": category,
        "priority": priority,
        "customer_level": getattr(customer, "level", None),
        "customer_owner_id": getattr(customer, "owner_id", None),
        "region_path": region_path,
        "region_name": region_name if region_name is not None else _ABSENT,
        "answers": dict(answers),
    }


def route(tenant_id: int, facts: Mapping[str, Any], *, lock: bool = True) -> Decision:
    """The first active rule whose conditions hold decides queue, owner and priority."""
    decision = Decision()
    for rule in RoutingRule.objects.filter(tenant_id=tenant_id, is_active=True).order_by(
        "position", "id"
    ):
        why: list[str] = []
        matched = evaluate(rule.conditions, facts, why)
        decision.trace.append(RuleTrace(rule.pk, rule.name, matched, why))
        if matched:
            decision.rule = rule
            decision.queue_id = rule.queue_id
            decision.priority = rule.priority
            decision.owner_id, decision.assignment = _assign(tenant_id, rule, facts, lock=lock)
            who = f"，负责人由“{decision.assignment}”规则选出" if decision.owner_id else ""
            decision.explanation = f"命中第 {rule.position} 条规则“{rule.name}”{who}"
            return decision
    decision.explanation = "没有规则命中：进入默认处理（无队列、无负责人）"
    return decision


def _active_members(tenant_id: int, queue_id: int | None) -> list[int]:
    if queue_id is None:
        return []
    return list(
        QueueMember.objects.filter(
            tenant_id=tenant_id, queue_id=queue_id, employee__status=EmployeeStatus.ACTIVE
        )
        .order_by("employee_id")
        .values_list("employee_id", flat=True)
    )


def _assign(
    tenant_id: int, rule: RoutingRule, facts: Mapping[str, Any], *, lock: bool
) -> tuple[int | None, str]:
    spec = rule.assignment or {}
    kind = spec.get("rule") or "none"
    if kind == "customer_owner":
        owner = facts.get("customer_owner_id")
        if (
            owner is not None
            and Employee.objects.filter(
                tenant_id=tenant_id, pk=owner, status=EmployeeStatus.ACTIVE
            ).exists()
        ):
            return owner, "客户专属顾问"
        kind = spec.get("fallback") or "none"
    if kind == "user":
        who = int(spec.get("employee_id") or 0)
        active = Employee.objects.filter(tenant_id=tenant_id, pk=who, status=EmployeeStatus.ACTIVE)
        return (who, "指定人员") if active.exists() else (None, "指定人员（已不在职）")
    members = _active_members(tenant_id, rule.queue_id)
    if not members:
        return None, "队列共享池"
    if kind == "least_loaded":
        load = dict(
            Ticket.objects.filter(
                tenant_id=tenant_id, owner_id__in=members, status=TicketStatus.OPEN
            )
            .values_list("owner_id")
            .annotate(n=Count("id"))
            .values_list("owner_id", "n")
        )
        return min(members, key=lambda m: (load.get(m, 0), m)), "最少负载"
    if kind == "round_robin":
        if lock:
            # Two tickets routed at once by the same rule queue up here, so they take turns.
            RoutingRule.objects.select_for_update().filter(pk=rule.pk).first()
        last = (
            Ticket.objects.filter(tenant_id=tenant_id, routing_rule=rule, owner_id__in=members)
            .order_by("-id")
            .values_list("owner_id", flat=True)
            .first()
        )
        later = [m for m in members if last is not None and m > last]
        return (later[0] if later else members[0]), "轮流分配"
    return None, "队列共享池"


# --- managing queues and rules ---------------------------------------------------------------


def _check_assignment(tenant_id: int, spec: Any) -> dict[str, Any]:
    if spec is None:
        return {"rule": "none"}
    if not isinstance(spec, Mapping):
        raise Invalid("分配应为对象", code="invalid", field="assignment")
    kind = spec.get("rule", "none")
    if kind not in ASSIGNMENTS:
        raise Invalid(
            f"分配规则应为 {'、'.join(ASSIGNMENTS)}", code="invalid", field="assignment.rule"
        )
    extra = set(spec) - {"rule", "employee_id", "fallback"}
    if extra:
        raise Invalid(f"分配不认识的键：{', '.join(sorted(extra))}", field="assignment")
    fallback = spec.get("fallback")
    if fallback is not None and (fallback not in ASSIGNMENTS or fallback == "customer_owner"):
        raise Invalid("后备分配规则无效", code="invalid", field="assignment.fallback")
    if kind == "user" or fallback == "user":
        who = spec.get("employee_id")
        if (
            isinstance(who, bool)
            or not isinstance(who, int)
            or not Employee.objects.filter(tenant_id=tenant_id, pk=who).exists()
        ):
            raise Invalid("员工不存在", code="invalid_reference", field="assignment.employee_id")
    return dict(spec)


def _queue_ref(tenant_id: int, queue_id: int | None) -> None:
    if queue_id is not None and not Queue.objects.filter(tenant_id=tenant_id, pk=queue_id).exists():
        raise Invalid("队列不存在", code="invalid_reference", field="queue_id")


def queue_save(
    *,
    actor: Actor,
    name: str,
    member_ids: Sequence[int],
    region_id: int | None = None,
    queue_id: int | None = None,
) -> Queue:
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        members = set(member_ids)
        found = set(
            Employee.objects.filter(tenant_id=actor.tenant_id, pk__in=members).values_list(
                "pk", flat=True
            )
        )
        if found != members:
            raise Invalid("成员不存在", code="invalid_reference", field="member_ids")
        if (
            region_id is not None
            and not Region.objects.filter(tenant_id=actor.tenant_id, pk=region_id).exists()
        ):
            raise Invalid("区域不存在", code="invalid_reference", field="region_id")
        if queue_id is None:
            queue = Queue(tenant_id=actor.tenant_id)
        else:
            found_queue = (
                Queue.objects.select_for_update()
                .filter(tenant_id=actor.tenant_id, pk=queue_id)
                .first()
            )
            if found_queue is None:
                raise NotFound("队列不存在", field="queue_id")
            queue = found_queue
        queue.name, queue.region_id = name, region_id
        try:
            with transaction.atomic():
                queue.save()
        except IntegrityError:
            raise Conflict("队列名称已存在", code="name_taken", field="name") from None
        QueueMember.objects.filter(queue=queue).exclude(employee_id__in=members).delete()
        have = set(QueueMember.objects.filter(queue=queue).values_list("employee_id", flat=True))
        QueueMember.objects.bulk_create(
            QueueMember(tenant_id=actor.tenant_id, queue=queue, employee_id=m)
            for m in sorted(members - have)
        )
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="tickets.queue.saved",
            subject=queue,
            after={"name": name, "members": sorted(members), "region": region_id},
        )
        return queue


def rule_save(
    *,
    actor: Actor,
    name: str,
    conditions: Any,
    queue_id: int | None,
    assignment: Any = None,
    priority: str = "",
    position: int | None = None,
    is_active: bool = True,
    rule_id: int | None = None,
) -> RoutingRule:
    """Create or replace a routing rule. Company-wide ticket.manage."""
    actor.require_tenant_wide(MANAGE)
    check_conditions(actor.tenant_id, conditions)
    if priority and priority not in Priority.values:
        raise Invalid("优先级应为 S、A、B 或 C", code="invalid", field="priority")
    with transaction.atomic(durable=True):
        _queue_ref(actor.tenant_id, queue_id)
        spec = _check_assignment(actor.tenant_id, assignment)
        if rule_id is None:
            last = (
                RoutingRule.objects.filter(tenant_id=actor.tenant_id)
                .order_by("-position")
                .values_list("position", flat=True)
                .first()
            )
            rule = RoutingRule(tenant_id=actor.tenant_id, position=position or (last or 0) + 10)
            before = None
        else:
            found = (
                RoutingRule.objects.select_for_update()
                .filter(tenant_id=actor.tenant_id, pk=rule_id)
                .first()
            )
            if found is None:
                raise NotFound("路由规则不存在", field="rule_id")
            rule = found
            before = snapshot(rule)
            if position is not None:
                rule.position = position
        rule.name, rule.conditions, rule.queue_id = name, conditions, queue_id
        rule.assignment, rule.priority, rule.is_active = spec, priority, is_active
        try:
            with transaction.atomic():
                rule.save()
        except IntegrityError:
            raise Conflict("规则名称已存在", code="name_taken", field="name") from None
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="tickets.routing_rule.saved",
            subject=rule,
            before=before,
            after=snapshot(rule),
        )
        return rule


def rule_delete(*, actor: Actor, rule_id: int) -> None:
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        delete_recorded(
            actor=actor,
            queryset=RoutingRule.objects,
            pk=rule_id,
            action="tickets.routing_rule.deleted",
            missing="路由规则不存在",
            field="rule_id",
        )


def rules_visible(actor: Actor) -> Any:
    actor.require(MANAGE)
    return RoutingRule.objects.filter(tenant_id=actor.tenant_id).select_related("queue")


def queues_visible(actor: Actor) -> Any:
    if not actor.has_perm(MANAGE):
        actor.require("ticket.view")
    return Queue.objects.filter(tenant_id=actor.tenant_id).prefetch_related("memberships")
