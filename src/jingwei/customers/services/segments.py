"""Segments (人群): saved filters in the condition language, and their members.

A segment is one definition for the whole company, so only someone holding customer.manage for
the whole company writes it; anyone who sees customers reads it. Its members are counted and
listed afresh at every read, and only among the active customers the reader may see: the same
segment shows the 华东 manager fewer members than HQ. Later modules take `segment_members` as
an audience.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from jingwei.audit.services import audit_record, changed
from jingwei.core.errors import Conflict, Invalid, NotFound
from jingwei.org.scope import Actor

from .. import conditions, selectors
from ..models import Customer, CustomerKind, CustomerLevel, Segment
from .common import MANAGE, VIEW

SEGMENT_FIELDS = ("name", "description", "conditions")


def _snapshot(segment: Segment) -> dict[str, Any]:
    return {name: getattr(segment, name) for name in SEGMENT_FIELDS}


def _name_taken() -> Conflict:
    return Conflict("已有同名的分群，请换一个名称", code="segment_name_taken", field="name")


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise Invalid("名称不能为空", code="required", field="name")
    return name


def segment_list(*, actor: Actor) -> QuerySet[Segment]:
    actor.require(VIEW)
    return Segment.objects.filter(tenant_id=actor.tenant_id)


def _segment(*, actor: Actor, segment_id: int, lock: bool = False) -> Segment:
    """Another tenant's segment answers like a missing one (404)."""
    qs = Segment.objects.filter(tenant_id=actor.tenant_id, pk=segment_id)
    segment = (qs.select_for_update() if lock else qs).first()
    if segment is None:
        raise NotFound("分群不存在", field="segment_id")
    return segment


def segment_create(
    *, actor: Actor, name: str, conditions_data: Any, description: str = ""
) -> Segment:
    actor.require_tenant_wide(MANAGE)
    conditions.check(conditions_data, actor.tenant_id)
    with transaction.atomic(durable=True):
        try:
            with transaction.atomic():
                segment = Segment.objects.create(
                    tenant_id=actor.tenant_id,
                    name=_clean_name(name),
                    description=description,
                    conditions=conditions_data,
                    created_by_id=actor.employee_id,
                )
        except IntegrityError:
            raise _name_taken() from None
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="customers.segment.created",
            subject=segment,
            after=_snapshot(segment),
        )
        return segment


def segment_update(*, actor: Actor, segment_id: int, changes: dict[str, Any]) -> Segment:
    """`changes` holds any of name, description, conditions."""
    actor.require_tenant_wide(MANAGE)
    if "conditions" in changes:
        conditions.check(changes["conditions"], actor.tenant_id)
    with transaction.atomic(durable=True):
        segment = _segment(actor=actor, segment_id=segment_id, lock=True)
        before = _snapshot(segment)
        if "name" in changes:
            segment.name = _clean_name(changes["name"])
        for key in ("description", "conditions"):
            if key in changes:
                setattr(segment, key, changes[key])
        try:
            with transaction.atomic():
                segment.save()
        except IntegrityError:
            raise _name_taken() from None
        diff = changed(before, _snapshot(segment))
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="customers.segment.updated",
            subject=segment,
            before={k: before[k] for k in diff},
            after=diff,
        )
        return segment


def segment_delete(*, actor: Actor, segment_id: int) -> None:
    actor.require_tenant_wide(MANAGE)
    with transaction.atomic(durable=True):
        segment = _segment(actor=actor, segment_id=segment_id, lock=True)
        audit_record(
            actor=actor,
            tenant_id=actor.tenant_id,
            action="customers.segment.deleted",
            subject=segment,
            before=_snapshot(segment),
        )
        segment.delete()


# --- members ---------------------------------------------------------------------------------


def parsed_conditions(segment: Segment) -> conditions.Node:
    """The segment's stored conditions, checked again now: a tag, region or employee they name
    may have gone since. Then the segment cannot be used until someone fixes it (409, naming
    the part)."""
    try:
        return conditions.check(segment.conditions, segment.tenant_id)
    except Invalid as problem:
        raise Conflict(
            f"分群「{segment.name}」的条件已失效：{problem.message}。请修改分群条件",
            code="segment_conditions_invalid",
            field=problem.field,
        ) from None


def _members(actor: Actor, node: conditions.Node, now: datetime) -> QuerySet[Customer]:
    # The customer list's queryset (active, in the reader's scope, phones prefetched for the
    # list's fields), narrowed by the conditions.
    everyone = selectors.customer_list(actor, selectors.CustomerFilters())
    return everyone.filter(conditions.to_q(node, actor.tenant_id, now))


def segment_members(*, actor: Actor, segment_id: int) -> QuerySet[Customer]:
    """The active customers matching the segment now that the actor may see (customer.view), as
    a queryset: other modules use it as an audience."""
    actor.require(VIEW)
    segment = _segment(actor=actor, segment_id=segment_id)
    return _members(actor, parsed_conditions(segment), timezone.now())


@dataclass(frozen=True)
class SegmentCount:
    segment: Segment
    member_count: int | None  # None: the stored conditions no longer check
    conditions_text: str
    problem: str
    counted_at: datetime


def segment_read(*, actor: Actor, segment_id: int) -> SegmentCount:
    """The segment with its live member count for this reader. A segment whose conditions no
    longer check is still shown (so that it can be fixed), with the problem instead of a count."""
    actor.require(VIEW)
    segment = _segment(actor=actor, segment_id=segment_id)
    now = timezone.now()
    try:
        node = parsed_conditions(segment)
    except Conflict as problem:
        return SegmentCount(segment, None, "", problem.message, now)
    [text] = describe_conditions([node], actor.tenant_id)
    return SegmentCount(segment, _members(actor, node, now).count(), text, "", now)


def segment_preview(*, actor: Actor, conditions_data: Any) -> tuple[int, str]:
    """How many active customers the actor may see match these conditions now (nothing is
    saved), and the conditions in words."""
    actor.require(VIEW)
    node = conditions.check(conditions_data, actor.tenant_id)
    [text] = describe_conditions([node], actor.tenant_id)
    return _members(actor, node, timezone.now()).count(), text


# --- conditions in words ---------------------------------------------------------------------

_COMPARE_WORDS = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}
_TIME_FORMAT = "%Y-%m-%d %H:%M"


class _Names:
    """The names of the tags, regions, departments and employees conditions refer to, read in
    one query per kind for any number of conditions."""

    def __init__(self, nodes: list[conditions.Node], tenant_id: int):
        from jingwei.org.models import Department, Employee, Region

        from ..models import Tag

        wanted: dict[str, set[Any]] = {"tag": set(), "region": set(), "department": set()}
        wanted["owner"] = set()  # employee ids; regions and departments come as paths
        for node in nodes:
            for leaf in _leaves(node):
                if isinstance(leaf, conditions.TagLeaf):
                    wanted["tag"].add(leaf.tag_id)
                elif isinstance(leaf, conditions.FieldLeaf) and leaf.field in wanted and leaf.value:
                    wanted[leaf.field].update(leaf.value)
        scoped = {"tenant_id": tenant_id}
        self.tags = dict(
            Tag.objects.filter(pk__in=wanted["tag"], **scoped).values_list("pk", "name")
        )
        self.paths = {
            "region": dict(
                Region.objects.filter(path__in=wanted["region"], **scoped).values_list(
                    "path", "name"
                )
            ),
            "department": dict(
                Department.objects.filter(path__in=wanted["department"], **scoped).values_list(
                    "path", "name"
                )
            ),
        }
        self.people = dict(
            Employee.objects.filter(pk__in=wanted["owner"], **scoped).values_list("pk", "name")
        )


def _leaves(node: conditions.Node) -> list[conditions.Node]:
    if isinstance(node, conditions.Group):
        return [leaf for item in node.items for leaf in _leaves(item)]
    return [node]


def _choice_label(name: str, value: str) -> str:
    choices = CustomerKind if name == "kind" else CustomerLevel
    return str(choices(value).label)


def _field_words(leaf: conditions.FieldLeaf, names: _Names) -> str:
    spec = conditions.FIELDS[leaf.field]
    op, value = leaf.op, leaf.value
    if spec.kind == "tree":
        label = "区域" if leaf.field == "region" else "部门"
        if op in ("empty", "not_empty"):
            return f"{'没有' if op == 'empty' else '有'}{label}"
        listed = "、".join(names.paths[leaf.field].get(p, "（已删除）") for p in value)
        return f"{label}{'在' if op == 'in' else '不在'} {listed}（含下级）"
    if spec.kind == "person":
        if op in ("empty", "not_empty"):
            return "没有负责人" if op == "empty" else "有负责人"
        listed = "、".join(names.people.get(pk, f"员工 {pk}") for pk in value)
        return f"负责人{'是' if op == 'in' else '不是'} {listed}"
    label = spec.label
    if op == "empty":
        return f"{label}为空"
    if op == "not_empty":
        return f"{label}不为空"
    if spec.kind == "time":
        if op == "within_days":
            return f"{label}在近 {value} 天内"
        if op == "before_days":
            return f"{label}在 {value} 天以前"
        moment = timezone.localtime(value).strftime(_TIME_FORMAT)
        return f"{label}{'不早于' if op == 'after' else '早于'} {moment}"
    if spec.kind == "number":
        return f"{label} {_COMPARE_WORDS[op]} {value}"

    def shown(v: str) -> str:
        return _choice_label(leaf.field, v) if spec.kind == "choice" else f"「{v}」"

    if op in ("in", "not_in"):
        listed = "、".join(shown(v) for v in value)
        return (
            f"{label}{'是' if op == 'in' else '不是'} {listed}{' 之一' if len(value) > 1 else ''}"
        )
    if op == "contains":
        return f"{label}包含{shown(value)}"
    return f"{label}{'是' if op == 'eq' else '不是'} {shown(value)}"


def _event_words(leaf: conditions.EventLeaf) -> str:
    from ..models import EventKind

    what = "任意行为" if leaf.kind == "*" else EventKind(leaf.kind).label
    when = f"近 {leaf.within_days} 天" if leaf.within_days else "历史累计"
    where = f"（渠道 {leaf.channel}）" if leaf.channel else ""
    if leaf.measure == "amount":
        return f"{when}{what}{where}金额合计 {_COMPARE_WORDS[leaf.op]} {leaf.value:.2f}"
    return f"{when}{what}{where}次数 {_COMPARE_WORDS[leaf.op]} {int(leaf.value)}"


def _words(node: conditions.Node, names: _Names, nested: bool) -> str:
    if isinstance(node, conditions.Group):
        if node.op == "not":
            return f"并非（{_words(node.items[0], names, False)}）"
        joined = (" 且 " if node.op == "all" else " 或 ").join(
            _words(item, names, True) for item in node.items
        )
        return f"（{joined}）" if nested and len(node.items) > 1 else joined
    if isinstance(node, conditions.TagLeaf):
        tag = names.tags.get(node.tag_id, f"标签 {node.tag_id}")
        return f"{'有' if node.has else '没有'}标签「{tag}」"
    if isinstance(node, conditions.EventLeaf):
        return _event_words(node)
    return _field_words(node, names)


def describe_conditions(nodes: list[conditions.Node | None], tenant_id: int) -> list[str]:
    """Each condition in words a person reads, e.g. 「等级是 VIP 且 近 90 天订单次数 ≥ 3」
    ("" for None)."""
    present = [n for n in nodes if n is not None]
    names = _Names(present, tenant_id)
    return ["" if n is None else _words(n, names, False) for n in nodes]
