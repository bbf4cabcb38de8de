"""Display conditions of form fields (`"x-visible-when"`): parsing, evaluation, and the checks a
definition must pass (unknown fields, cycles, a field that can never be shown).

A condition is a leaf or a group, the same JSON shape as the customer conditions:

    {"field": "service_type", "op": "eq", "value": "售后服务"}
    {"all": [c, ...]}   every one holds        {"any": [c, ...]}   at least one holds

Evaluation is over the *effective* answers: the cleaned answer of every field that is shown and
passes its own checks; a hidden field, an empty answer and an answer with an error are all absent.
On an absent answer `empty` and the negations (`ne`, `not_in`) hold, every other operator fails.
On a multi-select answer `eq v` means "v is among the chosen", `in [..]` "any of them is chosen".
That is the whole semantics: a dozen lines in TypeScript (docs/tickets-forms.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jingwei.core.errors import Invalid

MAX_NODES = 50
MAX_DEPTH = 5
MAX_LIST = 100
MAX_WORLDS = 1024  # per field, for the "can this field ever be shown" search
MAX_WORLDS_TOTAL = 50_000  # per definition

CHOICE_OPS = ("eq", "ne", "in", "not_in", "empty", "not_empty")
ORDER_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "empty", "not_empty")
PRESENCE_OPS = ("empty", "not_empty")
OPS_BY_KIND: dict[str, tuple[str, ...]] = {
    "text": CHOICE_OPS,
    "textarea": CHOICE_OPS,
    "select": CHOICE_OPS,
    "multiselect": CHOICE_OPS,
    "boolean": ("eq", "ne", "empty", "not_empty"),
    "number": ORDER_OPS,
    "money": ORDER_OPS,
    "date": ORDER_OPS,
    "datetime": ORDER_OPS,
}
OP_LABELS = {
    "eq": "等于",
    "ne": "不等于",
    "in": "属于",
    "not_in": "不属于",
    "gt": "大于",
    "gte": "大于等于",
    "lt": "小于",
    "lte": "小于等于",
    "empty": "为空",
    "not_empty": "不为空",
}


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class Leaf:
    field: str
    op: str
    value: Any  # the field's cleaned type; a tuple for in / not_in; None for empty / not_empty


@dataclass(frozen=True)
class Group:
    op: str  # all | any
    items: tuple[Cond, ...]


Cond = Leaf | Group


@dataclass(frozen=True)
class Subject:
    """What a condition may know about the field it names."""

    kind: str
    label: str
    options: tuple[str, ...] = ()


def _fail(path: str, message: str) -> Invalid:
    return Invalid(message, code="invalid_form", field=path)


class _Parser:
    def __init__(self, subjects: Mapping[str, Subject], coerce: Callable[[str, Any], Any]):
        self.subjects = subjects
        self.coerce = coerce  # (field key, designer's value) -> cleaned value, or ValueError
        self.nodes = 0

    def node(self, data: Any, path: str, depth: int) -> Cond:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _fail(path, f"显示条件过多：一个字段最多 {MAX_NODES} 个条件")
        if depth > MAX_DEPTH:
            raise _fail(path, f"显示条件嵌套过深：最多 {MAX_DEPTH} 层")
        if not isinstance(data, Mapping):
            raise _fail(path, "显示条件应为对象")
        for group in ("all", "any"):
            if group in data:
                if set(data) != {group}:
                    raise _fail(path, f"条件组 {group} 不能与其他键并列")
                items = data[group]
                if not isinstance(items, list) or not items:
                    raise _fail(f"{path}.{group}", "应为非空的条件列表")
                return Group(
                    group,
                    tuple(
                        self.node(item, f"{path}.{group}.{i}", depth + 1)
                        for i, item in enumerate(items)
                    ),
                )
        return self.leaf(data, path)

    def leaf(self, data: Mapping[str, Any], path: str) -> Leaf:
        extra = set(data) - {"field", "op", "value"}
        if extra:
            raise _fail(path, f"显示条件不认识的键：{', '.join(sorted(map(str, extra)))}")
        key = data.get("field")
        if not isinstance(key, str) or key not in self.subjects:
            raise _fail(f"{path}.field", f"显示条件引用了不存在的字段：{key}")
        subject = self.subjects[key]
        ops = OPS_BY_KIND.get(subject.kind, PRESENCE_OPS)
        op = data.get("op")
        if op not in ops:
            allowed = "、".join(f"{o}（{OP_LABELS[o]}）" for o in ops)
            raise _fail(f"{path}.op", f"字段“{subject.label}”的条件只能用：{allowed}")
        if op in PRESENCE_OPS:
            if "value" in data:
                raise _fail(f"{path}.value", f"条件“{OP_LABELS[op]}”不需要值")
            return Leaf(key, op, None)
        if "value" not in data:
            raise _fail(f"{path}.value", "请填写条件的值")
        raw = data["value"]
        if op in ("in", "not_in"):
            if not isinstance(raw, list) or not raw or len(raw) > MAX_LIST:
                raise _fail(f"{path}.value", f"条件“{OP_LABELS[op]}”的值应为 1—{MAX_LIST} 项的列表")
            values = tuple(
                self.value(subject, key, v, f"{path}.value.{i}") for i, v in enumerate(raw)
            )
            if len(set(values)) != len(values):
                raise _fail(f"{path}.value", "条件的值有重复")
            return Leaf(key, op, values)
        return Leaf(key, op, self.value(subject, key, raw, f"{path}.value"))

    def value(self, subject: Subject, key: str, raw: Any, path: str) -> Any:
        if subject.kind in ("select", "multiselect"):
            if raw not in subject.options or not isinstance(raw, str):
                raise _fail(path, f"“{raw}”不是字段“{subject.label}”的选项")
            return raw
        try:
            return self.coerce(key, raw)
        except ValueError as exc:
            raise _fail(path, f"条件的值不适用于字段“{subject.label}”：{exc}") from exc


def parse_condition(
    data: Any, path: str, subjects: Mapping[str, Subject], coerce: Callable[[str, Any], Any]
) -> Cond:
    """The parsed condition, or `Invalid` whose `field` is the dotted path of the mistake."""
    return _Parser(subjects, coerce).node(data, path, 1)


def fields_of(cond: Cond) -> set[str]:
    if isinstance(cond, Leaf):
        return {cond.field}
    return set().union(*(fields_of(item) for item in cond.items))


# --- evaluation ------------------------------------------------------------------------------


def holds(cond: Cond, answers: Mapping[str, Any]) -> bool:
    """Whether `cond` holds over the effective answers (absent fields are simply missing)."""
    if isinstance(cond, Group):
        results = (holds(item, answers) for item in cond.items)
        return all(results) if cond.op == "all" else any(results)
    return leaf_holds(cond, answers.get(cond.field, ABSENT))


def leaf_holds(leaf: Leaf, value: Any) -> bool:
    op = leaf.op
    if op == "empty":
        return value is ABSENT
    if op == "not_empty":
        return value is not ABSENT
    if op == "ne":
        return not leaf_holds(Leaf(leaf.field, "eq", leaf.value), value)
    if op == "not_in":
        return not leaf_holds(Leaf(leaf.field, "in", leaf.value), value)
    if value is ABSENT:
        return False
    if isinstance(value, list):  # multi-select: membership
        if op == "eq":
            return leaf.value in value
        if op == "in":
            return any(v in value for v in leaf.value)
        return False
    if op == "eq":
        return bool(value == leaf.value)
    if op == "in":
        return value in leaf.value
    try:
        if op == "gt":
            return bool(value > leaf.value)
        if op == "gte":
            return bool(value >= leaf.value)
        if op == "lt":
            return bool(value < leaf.value)
        if op == "lte":
            return bool(value <= leaf.value)
    except TypeError:  # pragma: no cover - values are coerced to the field's type when checked
        return False
    raise ValueError(op)  # pragma: no cover


# --- checks on the whole definition ----------------------------------------------------------


def evaluation_order(depends: Mapping[str, Iterable[str]], order: list[str]) -> list[str]:
    """Fields in an order where each comes after the fields its condition names (display order
    otherwise); `Invalid` naming the cycle if there is one."""
    result: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(key: str, trail: list[str]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            cycle = [*trail[trail.index(key) :], key]
            raise _fail(
                f"schema.properties.{key}.x-visible-when",
                f"显示条件形成循环：{' → '.join(cycle)}",
            )
        state[key] = 1
        for dep in sorted(depends.get(key, ()), key=order.index):
            visit(dep, [*trail, key])
        state[key] = 2
        result.append(key)

    for key in order:
        visit(key, [])
    return result


_ANY: Any = object()  # a value the search does not enumerate: present, but unknown


def _tri_leaf(leaf: Leaf, values: Iterable[Any]) -> bool | None:
    results = set()
    for value in values:
        if value is _ANY:
            results.add(True if leaf.op == "not_empty" else False if leaf.op == "empty" else None)
        else:
            results.add(leaf_holds(leaf, value))
    return results.pop() if len(results) == 1 else None


def _tri(cond: Cond, possible: Mapping[str, tuple[Any, ...]]) -> bool | None:
    if isinstance(cond, Leaf):
        return _tri_leaf(cond, possible[cond.field])
    results = [_tri(item, possible) for item in cond.items]
    if cond.op == "all":
        return False if False in results else True if all(r is True for r in results) else None
    return True if True in results else False if all(r is False for r in results) else None


def never_shown(
    conditions: Mapping[str, Cond | None],
    subjects: Mapping[str, Subject],
    order: list[str],
) -> list[str]:
    """Fields whose condition cannot hold for any answers (e.g. it asks a select for two values
    at once, or needs a field that itself is never shown). A search over the values of the
    selects and switches the conditions name (and "answered or not" for other fields); when the
    search would be too large the field is assumed showable, so nothing valid is refused."""
    budget = MAX_WORLDS_TOTAL
    dead: list[str] = []
    for target in order:
        if conditions.get(target) is None:
            continue
        closure: set[str] = set()
        stack = [target]
        while stack:
            cond = conditions.get(stack.pop())
            for dep in fields_of(cond) if cond else ():
                if dep not in closure:
                    closure.add(dep)
                    stack.append(dep)
        names = [k for k in order if k in closure]
        domains = [_domain(subjects[k]) for k in names]
        size = 1
        for d in domains:
            size *= len(d)
        if size > MAX_WORLDS or size > budget:
            continue
        budget -= size
        chain = [k for k in order if k in closure or k == target]
        if not any(
            _shown_in(world, names, chain, conditions, target)
            for world in itertools.product(*domains)
        ):
            dead.append(target)
    return dead


def _domain(subject: Subject) -> tuple[Any, ...]:
    if subject.kind == "select":
        return (*subject.options, ABSENT)
    if subject.kind == "boolean":
        return (True, False, ABSENT)
    return (_ANY, ABSENT)


def _shown_in(
    world: tuple[Any, ...],
    names: list[str],
    chain: list[str],
    conditions: Mapping[str, Cond | None],
    target: str,
) -> bool:
    assigned = dict(zip(names, world, strict=True))
    possible: dict[str, tuple[Any, ...]] = {}
    for key in chain:  # evaluation order: dependencies first
        cond = conditions.get(key)
        shown = True if cond is None else _tri(cond, possible)
        if key == target:
            return shown is not False
        value = assigned[key]
        possible[key] = (
            (value,) if shown is True else (ABSENT,) if shown is False else (value, ABSENT)
        )
    return True  # pragma: no cover - the target is in the chain
