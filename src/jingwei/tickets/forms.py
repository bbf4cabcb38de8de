"""The form engine of ticket templates: a form definition, its check, and the validation of answers.
Pure: no models, no database; references (customers, products, parts, projects, files, regions)
are checked through resolvers the caller passes in. For form designers: docs/tickets-forms.md.

A definition (JSON)::

    {"schema": {                                   # JSON Schema 2020-12, a documented subset
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
          "service_type": {"type": "string", "enum": ["产品咨询", "售后服务"]},
          "fault": {"type": "string", "maxLength": 2000,
                    "x-visible-when": {"field": "service_type", "op": "eq", "value": "售后服务"}}
        },
        "required": ["service_type", "fault"],     # required *when shown*
        "additionalProperties": false},
     "ui": {"service_type": {"label": "咨询类型", "widget": "select", "order": 10},
            "fault": {"label": "故障现象", "widget": "textarea", "order": 20, "help": "…"}}}

Decisions (each one so that the console, which evaluates the same definition in TypeScript,
accepts and refuses exactly the answers the server does):

- Field keys are lower-case ASCII identifiers (`^[a-z][a-z0-9_]{0,39}$`): stable when a label is
  renamed, and usable as `form.fault` in flow expressions (CEL). Labels are Chinese, in `ui`.
- `ui.<key>.widget` is the field's type (`KINDS`); each type fixes the JSON Schema `type` and
  `format`, and the keywords it may carry. `check_definition` fills what a type implies (`type`,
  `format`, `items`, default length and count limits, money bounds) so that
  `FormDefinition.data` — what is stored and sent to the console — states every rule explicitly.
  Keywords outside the subset (`allOf`, `if`, `oneOf`, …) are refused rather than ignored.
- Conditions are one custom keyword, `x-visible-when`, on the field they show (see
  form_conditions). A field listed in `required` is required only while shown. A hidden field's
  answer is dropped from the cleaned answers (not an error: the console keeps what was typed
  when a choice is changed back and forth) and counts as absent for other conditions, so chains
  (C shown by B shown by A) behave as on screen. An answer with an error also counts as absent.
- `visible_fields` is the function `validate_answers` uses to decide what is shown.
- Errors: all fields at once, one per field, Chinese, naming the label. Order within a field:
  required, type, format, range — except that text length is checked before its pattern (a
  pattern never runs on an over-long answer). Unknown answer keys are errors (`unknown_field`).
- Inputs are lenient in representation, never in value: money as "1234.50", 1234 or 1234.5
  (floats are read through their shortest repr, so 0.1 is 0.1; more than 2 decimals is refused);
  numbers as JSON numbers or numeric strings. Outputs: `Decimal` for money and decimal numbers
  (never float), `int` for integers and picker ids, `date`, aware `datetime`, `list` for
  multi-valued fields (multi-select in option order). `to_json` gives the stored JSON form, and
  validating it again gives the same cleaned answers.
- Lengths count characters (code points), as JSON Schema does; the console uses `[...s].length`.
- Patterns: a portable ECMAScript subset with a backtracking guard and a time limit
  (form_patterns). Dates bounded by "today" / "now" are evaluated in the caller's time zone
  (Asia/Shanghai by default).
- Another tenant's customer/product/part/project id is reported exactly like a missing one: the
  resolver only ever returns ids the caller may see. Existence is checked after visibility (one
  `refs` call per kind for the whole form), so it never changes what is shown.

Layout: this module is the public API; form_definition checks definitions, form_fields holds the
field types and cleans one answer, form_conditions parses and evaluates `x-visible-when`,
form_patterns makes `pattern` safe and portable. The shipped forms are JSON in builtin_forms/.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

from jingwei.core.errors import Invalid

from .form_conditions import ABSENT, holds
from .form_definition import FormDefinition, check_definition
from .form_fields import (
    CENT,
    DEFAULT_TZ,
    KINDS,
    NOUNS,
    PATTERN_BUDGET,
    REF_KINDS,
    Context,
    Field,
    Problem,
    RefResolver,
    RegionResolver,
    check_region_depth,
    clean,
    is_aware,
    required_message,
)


class FormErrors(Invalid):
    """The answers have mistakes: `errors` maps each field key to one Chinese message (display
    order), `codes` to a stable code. `message` and `field` name the first, for clients that
    read only those."""

    status = 422
    default_code = "form_invalid"

    def __init__(self, errors: Mapping[str, str], codes: Mapping[str, str]):
        self.errors = dict(errors)
        self.codes = dict(codes)
        first = next(iter(self.errors))
        message = self.errors[first]
        if len(self.errors) > 1:
            message += f"（另有 {len(self.errors) - 1} 处需要修改）"
        super().__init__(message, code=self.default_code, field=first)

    def error_list(self) -> list[dict[str, str]]:
        return self.as_list("answers.")

    def as_list(self, prefix: str = "") -> list[dict[str, str]]:
        """The API's `errors` shape: [{"field", "code", "message"}]."""
        return [
            {"field": prefix + key, "code": self.codes[key], "message": message}
            for key, message in self.errors.items()
        ]


# --- the public functions --------------------------------------------------------------------


@dataclass
class _Pass:
    """One pass over the answers: what is shown, each shown field's value or problem."""

    visible: list[str]
    values: dict[str, Any]
    problems: dict[str, Problem]


def _walk(form: FormDefinition, answers: Mapping[str, Any], ctx: Context) -> _Pass:
    effective: dict[str, Any] = {}
    problems: dict[str, Problem] = {}
    shown: set[str] = set()
    for key in form.evaluation_order:
        f = form[key]
        if f.condition is not None and not holds(f.condition, effective):
            continue
        shown.add(key)
        try:
            value = clean(f, answers.get(key), ctx)
        except Problem as problem:
            problems[key] = problem
            continue
        if value is ABSENT:
            if f.required:
                problems[key] = Problem("required", required_message(f))
        else:
            effective[key] = value
    visible = [f.key for f in form.fields if f.key in shown]
    return _Pass(visible, effective, problems)


def _context(now: datetime | None, tz: tzinfo | None) -> Context:
    moment = now if now is not None else datetime.now(tz or DEFAULT_TZ)
    if not is_aware(moment):
        raise ValueError("now must be an aware datetime")
    return Context(moment, tz or DEFAULT_TZ, time.monotonic() + PATTERN_BUDGET)


def visible_fields(
    definition: FormDefinition | Mapping[str, Any],
    answers: Mapping[str, Any],
    *,
    now: datetime | None = None,
    tz: tzinfo | None = None,
) -> list[str]:
    """The keys of the fields shown for these answers, in display order (what the console shows,
    and what `validate_answers` validates)."""
    form = check_definition(definition)
    return _walk(form, answers if isinstance(answers, Mapping) else {}, _context(now, tz)).visible


def validate_answers(
    definition: FormDefinition | Mapping[str, Any],
    answers: Any,
    *,
    refs: RefResolver | None = None,
    regions: RegionResolver | None = None,
    now: datetime | None = None,
    tz: tzinfo | None = None,
) -> dict[str, Any]:
    """The cleaned answers of the shown fields (display order; empty optional answers left out),
    or `FormErrors` with every field's first mistake. `refs` checks customer/product/part/project
    ids and file ids (kinds in `REF_KINDS`), `regions` resolves region ids; a form that has such
    fields and an answer for them needs the resolver (a `TypeError` otherwise: a bug, not bad
    input). `now` and `tz` decide "today" and "now" in date limits."""
    form = check_definition(definition)
    if not isinstance(answers, Mapping):  # the request's shape, not a field's mistake
        raise Invalid("表单内容应为对象", code="invalid_answers", field="answers")
    ctx = _context(now, tz)
    result = _walk(form, answers, ctx)
    problems = result.problems
    values = result.values
    _check_references(form, values, problems, refs, regions)
    errors: dict[str, str] = {}
    codes: dict[str, str] = {}
    for key in result.visible:
        if key in problems:
            errors[key], codes[key] = problems[key].message, problems[key].code
    unknown = [k for k in answers if k not in form.by_key]
    for key in unknown[:20]:
        name = str(key)[:50]
        errors[name], codes[name] = f"表单中没有字段“{name}”", "unknown_field"
    if errors:
        raise FormErrors(errors, codes)
    return {key: values[key] for key in result.visible if key in values}


def _check_references(
    form: FormDefinition,
    values: dict[str, Any],
    problems: dict[str, Problem],
    refs: RefResolver | None,
    regions: RegionResolver | None,
) -> None:
    wanted: dict[str, set[Any]] = {}
    for key, value in list(values.items()):
        f = form[key]
        if f.kind in REF_KINDS:
            ids = value if isinstance(value, list) else [value]
            wanted.setdefault(f.kind, set()).update(ids)
        elif f.kind == "region":
            if regions is None:
                raise TypeError(f"validate_answers: field {key!r} needs a regions resolver")
            path = regions(value[-1])
            path = list(path) if path is not None else None
            if path is None or (len(value) > 1 and path != value):
                problems[key] = Problem("not_found", f"{f.label}：所选地区不存在")
                del values[key]
                continue
            try:
                check_region_depth(f, len(path))
            except Problem as problem:
                problems[key] = problem
                del values[key]
                continue
            values[key] = path
    if not wanted:
        return
    if refs is None:
        raise TypeError("validate_answers: this form references objects; pass refs=")
    found = {kind: set(refs(kind, frozenset(ids))) for kind, ids in wanted.items()}
    for key, value in list(values.items()):
        f = form[key]
        if f.kind not in REF_KINDS:
            continue
        ids = value if isinstance(value, list) else [value]
        if any(i not in found[f.kind] for i in ids):
            noun = NOUNS.get(f.kind, "文件")
            problems[key] = Problem("not_found", f"{f.label}：所选{noun}不存在或已失效")
            del values[key]


def to_json(
    definition: FormDefinition | Mapping[str, Any], cleaned: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON form of cleaned answers (to store): money and decimals as strings ("1234.50"),
    dates and times in ISO 8601. `validate_answers` of it gives the same cleaned answers."""
    form = check_definition(definition)
    out: dict[str, Any] = {}
    for key, value in cleaned.items():
        kind = form[key].kind
        if isinstance(value, Decimal):
            out[key] = f"{value:f}" if kind != "money" else f"{value.quantize(CENT):f}"
        elif isinstance(value, date | datetime):
            out[key] = value.isoformat()
        elif isinstance(value, list):
            out[key] = list(value)
        else:
            out[key] = value
    return out


# --- the forms shipped with the product ------------------------------------------------------

BUILTIN_DIR = Path(__file__).parent / "builtin_forms"
BUILTIN_FORMS: dict[str, str] = {
    "after_sales_repair": "售后报修",
    "shop_return": "退换货",
    "course_trial": "课程试听预约",
    "complaint": "客户投诉",
}


def builtin_form(name: str) -> dict[str, Any]:
    """A shipped definition (JSON under builtin_forms/), as data: check it before use."""
    if name not in BUILTIN_FORMS:
        raise KeyError(name)
    text = (BUILTIN_DIR / f"{name}.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


__all__ = [
    "BUILTIN_FORMS",
    "KINDS",
    "Field",
    "FormDefinition",
    "FormErrors",
    "builtin_form",
    "check_definition",
    "to_json",
    "validate_answers",
    "visible_fields",
]
