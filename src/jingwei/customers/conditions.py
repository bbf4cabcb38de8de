"""The condition language of auto-tag rules, segments and score signals: one JSON shape, one
checker, one translation to a database filter, so a segment and a rule that say the same thing
select the same customers.

A condition is a group or a leaf:

    {"all": [c, ...]}   every one holds        {"any": [c, ...]}   at least one holds
    {"not": c}          c does not hold

    {"field": "level", "op": "in", "value": ["vip"]}          an attribute of the customer
    {"tag": 12}  /  {"tag": 12, "has": false}                  has (or lacks) a tag
    {"event": "order", "within_days": 90, "op": "gte", "value": 3}
        events of a kind (or "*" for any touch except the product's own "system" entries) in the last N days (or ever, without within_days),
        optionally only from one `channel`; `measure` "count" (default) or "amount" (the sum of
        the events' amounts, a decimal string with at most two decimals).

Text `contains` ignores the case of Latin letters; times are ISO 8601 with a time zone.

An event condition that zero satisfies ("no ticket in 30 days": op eq, value 0) holds for
customers with no events at all, as a person reading it expects.

`check(data, tenant_id)` validates and returns the parsed tree, raising `Invalid` whose `field`
points at the offending part (e.g. `conditions.all.1.value`); `to_q(tree, now)` is the filter
over `Customer`. Neither runs user text: fields, operators and kinds come from fixed lists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, Round
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from jingwei.core.errors import Invalid

from .models import Customer, CustomerEvent, CustomerKind, CustomerLevel, CustomerTag, EventKind

MAX_NODES = 50  # conditions in one tree: enough for any real rule, bounded for the database
MAX_DEPTH = 5
MAX_LIST = 200  # values in one "in"
MAX_DAYS = 3650
MAX_TEXT = 200
CENT = Decimal("0.01")

TEXT_OPS = ("eq", "ne", "in", "not_in", "contains", "empty", "not_empty")
CHOICE_OPS = ("eq", "ne", "in", "not_in")
NUMBER_OPS = ("eq", "ne", "gt", "gte", "lt", "lte")
TIME_OPS = ("within_days", "before_days", "after", "before", "empty", "not_empty")
TREE_OPS = ("in", "not_in", "empty", "not_empty")  # region and department: subtrees
PERSON_OPS = ("in", "not_in", "empty", "not_empty")
COMPARE_OPS = ("eq", "ne", "gt", "gte", "lt", "lte")


@dataclass(frozen=True)
class _Field:
    label: str
    kind: str  # text | choice | number | time | tree | person
    ops: tuple[str, ...]
    choices: tuple[str, ...] = ()


FIELDS: dict[str, _Field] = {
    "kind": _Field("类型", "choice", CHOICE_OPS, tuple(CustomerKind.values)),
    "level": _Field("等级", "choice", CHOICE_OPS, tuple(CustomerLevel.values)),
    "name": _Field("名称", "text", TEXT_OPS),
    "company_name": _Field("公司名称", "text", TEXT_OPS),
    "source": _Field("来源渠道", "text", TEXT_OPS),
    "region": _Field("区域（含下级）", "tree", TREE_OPS),
    "department": _Field("部门（含下级）", "tree", TREE_OPS),
    "owner": _Field("负责人", "person", PERSON_OPS),
    "score": _Field("评分", "number", NUMBER_OPS),
    "created_at": _Field("创建时间", "time", TIME_OPS),
    "last_followed_at": _Field("最近跟进", "time", TIME_OPS),
    "next_follow_up_at": _Field("下次跟进", "time", TIME_OPS),
}
EVENT_KINDS = (*EventKind.values, "*")


# --- the parsed tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    op: str  # all | any | not
    items: tuple[Node, ...]


@dataclass(frozen=True)
class FieldLeaf:
    field: str
    op: str
    value: Any  # normalised: a tuple for in/not_in, region/department paths for trees


@dataclass(frozen=True)
class TagLeaf:
    tag_id: int
    has: bool


@dataclass(frozen=True)
class EventLeaf:
    kind: str
    channel: str
    within_days: int | None
    measure: str  # count | amount
    op: str
    value: Decimal


Node = Group | FieldLeaf | TagLeaf | EventLeaf


# --- checking --------------------------------------------------------------------------------


class _Checker:
    def __init__(self, tenant_id: int, root: str):
        self.tenant_id = tenant_id
        self.root = root
        self.nodes = 0

    def fail(self, path: str, message: str) -> Invalid:
        return Invalid(message, field=path, code="invalid_condition")

    def node(self, data: Any, path: str, depth: int) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(self.root, f"条件过多：一个规则最多 {MAX_NODES} 个条件")
        if depth > MAX_DEPTH:
            raise self.fail(path, f"条件嵌套过深：最多 {MAX_DEPTH} 层")
        if not isinstance(data, Mapping):
            raise self.fail(path, "条件应为对象")
        for group in ("all", "any"):
            if group in data:
                self._only(data, path, {group})
                items = data[group]
                if not isinstance(items, list) or not items:
                    raise self.fail(f"{path}.{group}", "应为非空的条件列表")
                return Group(
                    group,
                    tuple(
                        self.node(item, f"{path}.{group}.{i}", depth + 1)
                        for i, item in enumerate(items)
                    ),
                )
        if "not" in data:
            self._only(data, path, {"not"})
            return Group("not", (self.node(data["not"], f"{path}.not", depth + 1),))
        if "field" in data:
            return self.field_leaf(data, path)
        if "tag" in data:
            return self.tag_leaf(data, path)
        if "event" in data:
            return self.event_leaf(data, path)
        raise self.fail(path, "无法识别的条件：应含 all、any、not、field、tag 或 event 之一")

    def _only(self, data: Mapping[str, Any], path: str, allowed: set[str]) -> None:
        extra = sorted(set(data) - allowed)
        if extra:
            raise self.fail(f"{path}.{extra[0]}", f"条件中不应有 {extra[0]}")

    def field_leaf(self, data: Mapping[str, Any], path: str) -> FieldLeaf:
        self._only(data, path, {"field", "op", "value"})
        name = data["field"]
        spec = FIELDS.get(name) if isinstance(name, str) else None
        if spec is None:
            raise self.fail(f"{path}.field", f"未知字段：{name}；可用：{'、'.join(FIELDS)}")
        op = data.get("op")
        if op not in spec.ops:
            raise self.fail(
                f"{path}.op", f"字段「{spec.label}」不支持运算 {op}；可用：{', '.join(spec.ops)}"
            )
        vpath = f"{path}.value"
        if op in ("empty", "not_empty"):
            if data.get("value") is not None:
                raise self.fail(vpath, f"运算 {op} 不需要 value")
            return FieldLeaf(name, op, None)
        if "value" not in data:
            raise self.fail(vpath, "缺少 value")
        value = data["value"]
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not value or len(value) > MAX_LIST:
                raise self.fail(vpath, f"运算 {op} 的 value 应为 1–{MAX_LIST} 项的列表")
            items = tuple(self.scalar(spec, op, v, f"{vpath}.{i}") for i, v in enumerate(value))
            if spec.kind == "tree":
                items = self.tree_paths(name, items, vpath)
            elif spec.kind == "person":
                self.employees_exist(items, vpath)
            return FieldLeaf(name, op, items)
        return FieldLeaf(name, op, self.scalar(spec, op, value, vpath))

    def scalar(self, spec: _Field, op: str, value: Any, path: str) -> Any:
        if spec.kind in ("text", "choice"):
            if not _storable_text(value, MAX_TEXT):
                raise self.fail(path, f"应为不超过 {MAX_TEXT} 字的文本")
            if spec.kind == "choice" and value not in spec.choices:
                raise self.fail(
                    path, f"「{spec.label}」没有取值 {value}；可用：{'、'.join(spec.choices)}"
                )
            return value
        if spec.kind in ("tree", "person"):
            if type(value) is not int or not 1 <= value <= 2**31 - 1:
                raise self.fail(path, "应为编号（正整数）")
            return value
        if spec.kind == "number":
            if type(value) is not int or abs(value) > 10**9:
                raise self.fail(path, "应为整数")
            return value
        # time
        if op in ("within_days", "before_days"):
            if type(value) is not int or not 0 <= value <= MAX_DAYS:
                raise self.fail(path, f"天数应为 0–{MAX_DAYS} 的整数")
            return value
        moment = _moment(value)
        if moment is None:
            raise self.fail(
                path, "应为带时区的时间（1900—9000 年），例如 2026-11-01T00:00:00+08:00"
            )
        return moment

    def tree_paths(self, name: str, ids: tuple[Any, ...], path: str) -> tuple[str, ...]:
        from jingwei.org.models import Department, Region

        model = Region if name == "region" else Department
        found = dict(
            model.objects.filter(tenant_id=self.tenant_id, pk__in=ids).values_list("pk", "path")
        )
        for i, pk in enumerate(ids):
            if pk not in found:
                raise self.fail(
                    f"{path}.{i}", f"{'区域' if name == 'region' else '部门'}不存在：{pk}"
                )
        return tuple(found[pk] for pk in ids)

    def employees_exist(self, ids: tuple[Any, ...], path: str) -> None:
        from jingwei.org.models import Employee

        found = set(
            Employee.objects.filter(tenant_id=self.tenant_id, pk__in=ids).values_list(
                "pk", flat=True
            )
        )
        for i, pk in enumerate(ids):
            if pk not in found:
                raise self.fail(f"{path}.{i}", f"员工不存在：{pk}")

    def tag_leaf(self, data: Mapping[str, Any], path: str) -> TagLeaf:
        from .models import Tag

        self._only(data, path, {"tag", "has"})
        tag_id, has = data["tag"], data.get("has", True)
        if type(tag_id) is not int or not 1 <= tag_id <= 2**31 - 1:
            raise self.fail(f"{path}.tag", "应为标签编号")
        if type(has) is not bool:
            raise self.fail(f"{path}.has", "应为 true 或 false")
        if not Tag.objects.filter(tenant_id=self.tenant_id, pk=tag_id).exists():
            raise self.fail(f"{path}.tag", f"标签不存在：{tag_id}")
        return TagLeaf(tag_id, has)

    def event_leaf(self, data: Mapping[str, Any], path: str) -> EventLeaf:
        self._only(data, path, {"event", "channel", "within_days", "measure", "op", "value"})
        kind = data["event"]
        if kind not in EVENT_KINDS:
            raise self.fail(
                f"{path}.event", f"未知事件类型：{kind}；可用：{', '.join(EVENT_KINDS)}"
            )
        channel = data.get("channel", "")
        if not _storable_text(channel, 50):
            raise self.fail(f"{path}.channel", "渠道应为不超过 50 字的文本")
        days = data.get("within_days")
        if days is not None and (type(days) is not int or not 1 <= days <= MAX_DAYS):
            raise self.fail(f"{path}.within_days", f"天数应为 1–{MAX_DAYS} 的整数")
        measure = data.get("measure", "count")
        if measure not in ("count", "amount"):
            raise self.fail(f"{path}.measure", "measure 应为 count（次数）或 amount（金额合计）")
        op = data.get("op", "gte")
        if op not in COMPARE_OPS:
            raise self.fail(f"{path}.op", f"不支持运算 {op}；可用：{', '.join(COMPARE_OPS)}")
        raw = data.get("value")
        if measure == "count":
            if type(raw) is not int or not 0 <= raw <= 10**6:
                raise self.fail(f"{path}.value", "次数应为 0–1000000 的整数")
            return EventLeaf(kind, channel, days, measure, op, Decimal(raw))
        amount = _decimal(raw)
        if amount is None or abs(amount) >= Decimal(10) ** 12 or amount != amount.quantize(CENT):
            raise self.fail(f"{path}.value", '金额应为最多两位小数的数字字符串，例如 "1000.00"')
        return EventLeaf(kind, channel, days, measure, op, amount)


def _storable_text(value: Any, limit: int) -> bool:
    """Text both databases can compare: no NUL (PostgreSQL refuses it) and no lone surrogate
    (JSON may carry one, UTF-8 cannot)."""
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _moment(raw: Any) -> datetime | None:
    """An aware moment in UTC, or None. Years are kept to those SQLite's date functions shift,
    and the offset is folded into UTC (PostgreSQL refuses offsets of 16 hours and more)."""
    if not isinstance(raw, str) or len(raw) > 40:
        return None
    try:
        moment = parse_datetime(raw)
    except ValueError:  # well formed but not a date, e.g. 2026-02-30
        return None
    if moment is None or timezone.is_naive(moment):
        return None
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        return None
    return moment if 1900 <= moment.year <= 9000 else None


def _decimal(raw: Any) -> Decimal | None:
    if type(raw) not in (str, int) or (isinstance(raw, str) and len(raw) > 40):
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def check(data: Any, tenant_id: int, *, field: str = "conditions") -> Node:
    """The parsed condition, or `Invalid` naming the part that is wrong."""
    return _Checker(tenant_id, field).node(data, field, 1)


# --- translating to a filter -----------------------------------------------------------------

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}
_NEGATED = {"eq": "ne", "ne": "eq", "gt": "lte", "gte": "lt", "lt": "gte", "lte": "gt"}


def to_q(node: Node, tenant_id: int, now: datetime | None = None) -> Q:
    """The filter over Customer rows of `tenant_id` that `node` selects, as of `now`."""
    now = now or timezone.now()
    if isinstance(node, Group):
        parts = [to_q(item, tenant_id, now) for item in node.items]
        if node.op == "not":
            return ~parts[0]
        combined = parts[0]
        for part in parts[1:]:
            combined = (combined & part) if node.op == "all" else (combined | part)
        return combined
    if isinstance(node, FieldLeaf):
        return _field_q(node, tenant_id, now)
    if isinstance(node, TagLeaf):
        tagged = Exists(
            CustomerTag.objects.filter(
                tenant_id=tenant_id, tag_id=node.tag_id, customer_id=OuterRef("pk")
            )
        )
        return Q(tagged) if node.has else ~Q(tagged)
    return _event_q(node, tenant_id, now)


def _field_q(leaf: FieldLeaf, tenant_id: int, now: datetime) -> Q:
    name, op, value = leaf.field, leaf.op, leaf.value
    spec = FIELDS[name]
    column = f"{name}_id" if spec.kind in ("tree", "person") else name
    if op == "empty":
        return Q(**{f"{column}__isnull": True}) | (
            Q(**{column: ""}) if spec.kind == "text" else Q(pk__in=[])
        )
    if op == "not_empty":
        q = Q(**{f"{column}__isnull": False})
        return q & ~Q(**{column: ""}) if spec.kind == "text" else q
    if spec.kind == "tree":
        from jingwei.org.models import Department, Region

        # The subtrees' node ids as a subquery rather than a join, so that the filter also
        # works where joins are not allowed (the SET of an UPDATE: scoring's batch).
        model = Region if name == "region" else Department
        inside = Q(pk__in=[])
        for path in value:
            inside |= Q(path__startswith=path)
        q = Q(**{f"{column}__in": model.objects.filter(inside, tenant_id=tenant_id).values("pk")})
        # not_in keeps customers without a region: they are in none of the listed subtrees.
        return q if op == "in" else ~q | Q(**{f"{column}__isnull": True})
    if op == "in":
        return Q(**{f"{column}__in": value})
    if op == "not_in":
        return ~Q(**{f"{column}__in": value}) | (
            Q(**{f"{column}__isnull": True}) if spec.kind == "person" else Q(pk__in=[])
        )
    if op == "contains":
        # Without regard to the case of Latin letters, as people search (and as SQLite's LIKE
        # does anyway: the same condition must select the same customers on both databases).
        return Q(**{f"{column}__icontains": value})
    if op == "within_days":
        return Q(**{f"{column}__gte": now - timedelta(days=value)})
    if op == "before_days":
        return Q(**{f"{column}__lt": now - timedelta(days=value)})
    if op in ("after", "before"):
        return Q(**{f"{column}__{'gte' if op == 'after' else 'lt'}": value})
    if op == "ne":
        return ~Q(**{column: value})
    if op == "eq":
        return Q(**{column: value})
    return Q(**{f"{column}__{op}": value})


def _events(leaf: EventLeaf, tenant_id: int, now: datetime) -> QuerySet[CustomerEvent]:
    events = CustomerEvent.objects.filter(tenant_id=tenant_id)
    if leaf.kind != "*":
        events = events.filter(kind=leaf.kind)
    else:
        # Any touch, not the product's own bookkeeping (tag and ownership entries), which a big
        # batch run does not write and so would make "*" depend on how a tag was set.
        events = events.exclude(kind=EventKind.SYSTEM)
    if leaf.channel:
        events = events.filter(channel=leaf.channel)
    if leaf.within_days is not None:
        events = events.filter(occurred_at__gte=now - timedelta(days=leaf.within_days))
    return events


def _event_q(leaf: EventLeaf, tenant_id: int, now: datetime) -> Q:
    # Whether the customer has matching events whose measure holds; customers with none have
    # measure 0, so a condition that 0 satisfies is the negation of its opposite. Correlated
    # (EXISTS … WHERE customer = this customer) rather than `pk IN (all matching customers)`:
    # under OR, NOT or CASE PostgreSQL hashes an IN list only while it expects it to fit in
    # work_mem, and otherwise rescans the whole list for every customer (500,000 customers with
    # work_mem at 1 MB got exactly that plan, costed 10^10); EXISTS costs one index probe per
    # customer at worst. The same holds for tags above.
    zero_holds = _COMPARE[leaf.op](Decimal(0), leaf.value)
    op = _NEGATED[leaf.op] if zero_holds else leaf.op
    events = _events(leaf, tenant_id, now).filter(customer_id=OuterRef("pk"))
    if leaf.measure == "count" and (op, leaf.value) in (("gte", 1), ("gt", 0), ("ne", 0)):
        # "at least one": no counting needed, and PostgreSQL may hash a plain EXISTS
        some = Exists(events)
        return ~Q(some) if zero_holds else Q(some)
    if leaf.measure == "count":
        aggregate: Any = Count("id")
        value = leaf.value
    else:
        # Summed in whole cents: SQLite adds decimals as floating point, where 0.10 + 0.20 is
        # not 0.30. Amounts have two decimals, so cents are whole numbers and add up exactly.
        aggregate = Coalesce(Sum(Round(F("amount") * 100)), Decimal(0))
        value = leaf.value * 100
    grouped = events.values("customer_id").annotate(measure=aggregate)
    if op == "ne":
        grouped = grouped.exclude(measure=value)
    else:
        grouped = grouped.filter(**{"measure" if op == "eq" else f"measure__{op}": value})
    held = Exists(grouped)
    return ~Q(held) if zero_holds else Q(held)


def customers_matching(
    node: Node, tenant_id: int, now: datetime | None = None
) -> QuerySet[Customer]:
    """Every active customer of the tenant matching `node` (no data scope: callers narrow)."""
    return Customer.objects.filter(tenant_id=tenant_id, merged_into__isnull=True).filter(
        to_q(node, tenant_id, now)
    )


def evaluate(node: Node, customer: Customer, now: datetime | None = None) -> bool:
    """Whether one customer matches (one query)."""
    return (
        Customer.objects.filter(tenant_id=customer.tenant_id, pk=customer.pk)
        .filter(to_q(node, customer.tenant_id, now))
        .exists()
    )
