"""Small builders for form tests: a one-field definition, fake resolvers, a fixed clock."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from jingwei.tickets.forms import FormErrors, validate_answers

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 6, 1, 10, 0, tzinfo=SHANGHAI)

# What "our tenant" may see. Id 99 exists in another tenant: the resolver never returns it.
EXISTING: dict[str, set[Any]] = {
    "customer": {1, 2},
    "product": {5, 6, 7},
    "part": {11, 12, 13},
    "project": {21},
    "attachment": {"att-1", "att-2", "att-3"},
    "photo": {"ph1", "ph2", "ph3", "ph4"},
    "signature": {"sig1", "sig2"},
}
# A region tree: 华东(1) > 上海(2) > 浦东(3) > 陆家嘴(4); 华南(10) > 广州(11).
REGION_PATHS: dict[Any, list[Any]] = {
    1: [1],
    2: [1, 2],
    3: [1, 2, 3],
    4: [1, 2, 3, 4],
    10: [10],
    11: [10, 11],
}


class Refs:
    """A resolver that records its calls, answering from EXISTING."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, frozenset[Any]]] = []

    def __call__(self, kind: str, ids: frozenset[Any]) -> Collection[Any]:
        self.calls.append((kind, ids))
        return {i for i in ids if i in EXISTING[kind]}


def regions(region_id: int | str) -> list[Any] | None:
    return REGION_PATHS.get(region_id)


def single(widget: str, *, required: bool = False, label: str = "测试字段", **schema: Any) -> dict:
    """A definition with one field `f`; `ui` keys can be passed as ui_<name>."""
    ui = {"label": label, "widget": widget}
    for name in [k for k in schema if k.startswith("ui_")]:
        ui[name[3:]] = schema.pop(name)
    return {
        "schema": {
            "type": "object",
            "properties": {"f": schema},
            "required": ["f"] if required else [],
        },
        "ui": {"f": ui},
    }


def clean(definition: Any, value: Any, **kwargs: Any) -> Any:
    """The cleaned value of `f` (None when left out), or AssertionError on a form error."""
    kwargs.setdefault("refs", Refs())
    kwargs.setdefault("regions", regions)
    kwargs.setdefault("now", NOW)
    return validate_answers(definition, {"f": value}, **kwargs).get("f")


def error(definition: Any, value: Any, **kwargs: Any) -> tuple[str, str]:
    """(code, message) of the error on `f`; fails the test if the value is accepted."""
    kwargs.setdefault("refs", Refs())
    kwargs.setdefault("regions", regions)
    kwargs.setdefault("now", NOW)
    try:
        validate_answers(definition, {"f": value}, **kwargs)
    except FormErrors as exc:
        return exc.codes["f"], exc.errors["f"]
    raise AssertionError(f"{value!r} was accepted")
