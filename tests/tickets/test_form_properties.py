"""Properties of the form engine over random definitions (conditional chains included) and random
answers, held against a reference written here from the documented rules — not from the code:

- a form is accepted exactly when every shown field passes its own check; the error on each field
  is the first rule it breaks (the codes agree with the reference);
- hidden fields never produce errors, and their answers never reach the cleaned result;
- visible_fields is a fixed point: dropping the hidden answers changes nothing;
- money never becomes a float; cleaned answers survive to_json and back; accepted answers, in
  their JSON form, satisfy the JSON Schema (2020-12) of the shown fields;
- every message is Chinese and names its field's label.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import jsonschema_rs
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from jingwei.core.errors import Invalid
from jingwei.tickets.forms import (
    FormDefinition,
    FormErrors,
    check_definition,
    to_json,
    validate_answers,
    visible_fields,
)

from .helpers import NOW, single

OPTIONS = ["甲", "乙", "丙"]
LABELS = ["咨询类型", "故障现象", "购买渠道", "联系人", "物流单号", "退款金额", "意向课程"]
TEXTS = ["甲", "AB12", "x"]
# Patterns of the portable subset, and what they mean over a trimmed one-line answer.
PATTERNS = {
    r"^[A-Z]{2}\d{2}$": re.compile(r"\A[A-Z]{2}[0-9]{2}\Z"),
    "甲": re.compile("甲"),
    r"^\w+$": re.compile(r"\A[A-Za-z0-9_]+\Z"),
}
KINDS = ["select", "multiselect", "boolean", "text", "integer", "money"]
ABSENT = object()
CJK = re.compile(r"[\u4e00-\u9fff]")

# --- random definitions ----------------------------------------------------------------------


@st.composite
def leaf(draw: st.DrawFn, key: str, spec: dict) -> dict:
    kind = spec["kind"]
    if draw(st.integers(0, 4)) == 0:
        return {"field": key, "op": draw(st.sampled_from(["empty", "not_empty"]))}
    if kind in ("select", "multiselect", "text"):
        pool = spec.get("enum", OPTIONS) if kind != "text" else TEXTS
        op = draw(st.sampled_from(["eq", "ne", "in", "not_in"]))
        if op in ("in", "not_in"):
            return {
                "field": key,
                "op": op,
                "value": draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True)),
            }
        return {"field": key, "op": op, "value": draw(st.sampled_from(pool))}
    if kind == "boolean":
        return {
            "field": key,
            "op": draw(st.sampled_from(["eq", "ne"])),
            "value": draw(st.booleans()),
        }
    op = draw(st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]))
    if kind == "integer":
        return {"field": key, "op": op, "value": draw(st.integers(-5, 5))}
    value = draw(st.decimals(min_value=0, max_value=10, places=2))
    return {"field": key, "op": op, "value": f"{value:f}"}


@st.composite
def condition(draw: st.DrawFn, earlier: dict[str, dict], depth: int = 0) -> dict:
    if depth < 2 and draw(st.integers(0, 3)) == 0:
        group = draw(st.sampled_from(["all", "any"]))
        return {group: draw(st.lists(condition(earlier, depth + 1), min_size=1, max_size=3))}
    key = draw(st.sampled_from(sorted(earlier)))
    return draw(leaf(key, earlier[key]))


@st.composite
def definitions(draw: st.DrawFn) -> tuple[dict, dict[str, dict]]:
    """A definition and, per field, the facts the reference needs."""
    n = draw(st.integers(1, 6))
    orders = draw(st.permutations(range(n)))
    properties: dict[str, dict] = {}
    ui: dict[str, dict] = {}
    specs: dict[str, dict] = {}
    required: list[str] = []
    for i in range(n):
        key = f"f{i}"
        kind = draw(st.sampled_from(KINDS))
        spec: dict[str, Any] = {"kind": kind, "label": LABELS[i]}
        prop: dict[str, Any] = {}
        if kind == "select":
            prop["enum"] = spec["enum"] = OPTIONS[: draw(st.integers(1, 3))]
        elif kind == "multiselect":
            prop["items"] = {"type": "string", "enum": OPTIONS}
            low, high = sorted(draw(st.lists(st.integers(0, 3), min_size=2, max_size=2)))
            prop["minItems"], prop["maxItems"] = spec["min"], spec["max"] = low, max(high, 1)
        elif kind == "text":
            low, high = sorted(draw(st.lists(st.integers(0, 6), min_size=2, max_size=2)))
            prop["minLength"], prop["maxLength"] = spec["min"], spec["max"] = low, max(high, 1)
            if draw(st.booleans()):
                prop["pattern"] = spec["pattern"] = draw(st.sampled_from(sorted(PATTERNS)))
        elif kind == "integer":
            prop["type"] = "integer"
            low, high = sorted(draw(st.lists(st.integers(-5, 5), min_size=2, max_size=2)))
            prop["minimum"], prop["maximum"] = spec["min"], spec["max"] = low, high
        elif kind == "money":
            low, high = sorted(draw(st.lists(st.decimals(0, 10, places=2), min_size=2, max_size=2)))
            prop["minimum"], prop["maximum"] = float(low), float(high)
            spec["min"], spec["max"] = low, high
        earlier = {k: specs[k] for k in specs}
        if earlier and draw(st.integers(0, 2)) > 0:
            prop["x-visible-when"] = spec["when"] = draw(condition(earlier))
        if draw(st.booleans()):
            required.append(key)
            spec["required"] = True
        properties[key] = prop
        widget = "number" if kind == "integer" else kind
        ui[key] = {"label": LABELS[i], "widget": widget, "order": orders[i]}
        specs[key] = spec
    definition = {
        "schema": {"type": "object", "properties": properties, "required": required},
        "ui": ui,
    }
    return definition, specs


def answer_for(spec: dict) -> st.SearchStrategy[Any]:
    kind = spec["kind"]
    empty = st.sampled_from([None, "", "  "])
    if kind == "select":
        return st.sampled_from([*OPTIONS, "丁", 1]) | empty
    if kind == "multiselect":
        return st.lists(st.sampled_from([*OPTIONS, "丁"]), max_size=4) | st.just("甲") | empty
    if kind == "boolean":
        return st.booleans() | st.just("true") | empty
    if kind == "text":
        return (
            st.text(alphabet="甲乙AB12 \n", max_size=8)
            | st.sampled_from(TEXTS)
            | st.just(5)
            | empty
        )
    if kind == "integer":
        return st.integers(-8, 8) | st.sampled_from(["3", 2.5, "x", True, 3.0]) | empty
    amounts = st.decimals(min_value=-1, max_value=12, places=3)
    return (
        amounts.map(lambda d: f"{d:f}")
        | amounts.map(float)
        | st.integers(-1, 12)
        | st.sampled_from(["abc", "1,000", True])
        | empty
    )


MATCHES = {
    r"^[A-Z]{2}\d{2}$": ["AB12", "ZZ00"],
    "甲": ["甲", "乙甲", "甲AB"],
    r"^\w+$": ["AB", "a_1"],
}


def valid_answer_for(spec: dict) -> st.SearchStrategy[Any]:
    kind = spec["kind"]
    if kind == "select":
        return st.sampled_from(spec["enum"])
    if kind == "multiselect":
        return st.lists(
            st.sampled_from(OPTIONS), unique=True, min_size=spec["min"], max_size=spec["max"]
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "text":
        if "pattern" in spec:
            fits = [t for t in MATCHES[spec["pattern"]] if spec["min"] <= len(t) <= spec["max"]]
            return st.sampled_from(fits) if fits else st.none()
        return st.text(alphabet="甲乙AB", min_size=max(spec["min"], 1), max_size=spec["max"])
    if kind == "integer":
        return st.integers(spec["min"], spec["max"])
    return st.decimals(spec["min"], spec["max"], places=2).map(lambda d: f"{d:f}")


@st.composite
def cases(
    draw: st.DrawFn, valid: bool = False, only_valid: bool = False
) -> tuple[FormDefinition, dict[str, dict], dict[str, Any]]:
    """A checked definition, its facts, and answers: any answers, or (valid=True) mostly valid
    ones, so that accepted forms are common, or (only_valid=True) valid or empty ones."""
    definition, specs = draw(definitions())
    try:
        form = check_definition(definition)
    except Invalid as error:
        if "永远不会成立" in error.message:  # a random contradiction: refused, rightly
            reject()
        raise
    answers: dict[str, Any] = {}
    for key, spec in specs.items():
        roll = draw(st.integers(0, 9))
        if only_valid and roll > 0:
            answers[key] = draw(valid_answer_for(spec) | st.sampled_from([None, ""]))
        elif valid and roll > 1:
            answers[key] = draw(valid_answer_for(spec))
        elif roll > 0 and not only_valid:
            answers[key] = draw(answer_for(spec))
    return form, specs, answers


# --- the reference: the documented rules, written independently -------------------------------


def is_empty(value: Any) -> bool:
    return value is None or value == [] or (isinstance(value, str) and not value.strip())


def as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
        return Decimal(value.strip())
    return None


def own_check(spec: dict, value: Any) -> tuple[str | None, Any]:
    """(error code or None, cleaned value or ABSENT), the order of rules as documented."""
    if is_empty(value):
        return ("required" if spec.get("required") else None), ABSENT
    kind = spec["kind"]
    if kind == "select":
        return (None, value) if value in spec["enum"] else ("invalid_option", None)
    if kind == "multiselect":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return "type", None
        if any(v not in OPTIONS for v in value):
            return "invalid_option", None
        if len(set(value)) != len(value):
            return "duplicate", None
        if len(value) < spec["min"]:
            return "too_few", None
        if len(value) > spec["max"]:
            return "too_many", None
        return None, [o for o in OPTIONS if o in value]
    if kind == "boolean":
        return (None, value) if isinstance(value, bool) else ("type", None)
    if kind == "text":
        if not isinstance(value, str):
            return "type", None
        text = value.strip()
        if "\n" in text:
            return "format", None
        if len(text) < spec["min"]:
            return "too_short", None
        if len(text) > spec["max"]:
            return "too_long", None
        if "pattern" in spec and not PATTERNS[spec["pattern"]].search(text):
            return "pattern", None
        return None, text
    amount = as_decimal(value)
    if kind == "integer":
        if amount is None or amount != amount.to_integral_value():
            return "type", None
        if amount < spec["min"]:
            return "too_small", None
        if amount > spec["max"]:
            return "too_large", None
        return None, int(amount)
    if amount is None:
        return "type", None
    if amount != amount.quantize(Decimal("0.01")):
        return "decimals", None
    if amount < spec["min"]:
        return "too_small", None
    if amount > spec["max"]:
        return "too_large", None
    return None, amount.quantize(Decimal("0.01"))


def cond_holds(cond: dict, effective: dict[str, Any], specs: dict[str, dict]) -> bool:
    if "all" in cond:
        return all(cond_holds(c, effective, specs) for c in cond["all"])
    if "any" in cond:
        return any(cond_holds(c, effective, specs) for c in cond["any"])
    op, present = cond["op"], cond["field"] in effective
    value = effective.get(cond["field"])
    if op in ("empty", "not_empty"):
        return present == (op == "not_empty")
    if op in ("ne", "not_in"):
        return not cond_holds({**cond, "op": {"ne": "eq", "not_in": "in"}[op]}, effective, specs)
    if not present:
        return False
    wanted = cond["value"] if op == "in" else [cond["value"]]
    if isinstance(value, list):
        return op in ("eq", "in") and any(w in value for w in wanted)
    if specs[cond["field"]]["kind"] in ("integer", "money"):
        value, wanted = Decimal(value), [Decimal(str(w)) for w in wanted]
    if op in ("eq", "in"):
        return value in wanted
    target = wanted[0]
    return {
        "gt": value > target,
        "gte": value >= target,
        "lt": value < target,
        "lte": value <= target,
    }[op]


def reference(specs: dict[str, dict], answers: dict[str, Any], display: list[str]):
    """(shown keys in display order, {key: error code}, cleaned) by the documented rules. Fields
    are generated so that a condition names only earlier fields: key order evaluates."""
    effective: dict[str, Any] = {}
    shown: set[str] = set()
    errors: dict[str, str] = {}
    for key, spec in specs.items():
        if "when" in spec and not cond_holds(spec["when"], effective, specs):
            continue
        shown.add(key)
        code, value = own_check(spec, answers.get(key))
        if code:
            errors[key] = code
        elif value is not ABSENT:
            effective[key] = value
    return [k for k in display if k in shown], errors, effective


def walk(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [x for v in value for x in walk(v)]
    return [value]


# --- the properties --------------------------------------------------------------------------

SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@SETTINGS
@given(st.booleans().flatmap(lambda valid: cases(valid=valid)))
def test_server_agrees_with_the_documented_rules(case):
    form, specs, answers = case
    display = [f.key for f in form.fields]
    shown, expected_errors, expected_clean = reference(specs, answers, display)

    assert visible_fields(form, answers, now=NOW) == shown
    try:
        cleaned = validate_answers(form, answers, now=NOW)
    except FormErrors as exc:
        assert expected_errors, f"refused, but the reference accepts: {exc.errors}"
        assert exc.codes == expected_errors
        assert set(exc.errors) <= set(shown)  # hidden fields never produce errors
        for key, message in exc.errors.items():
            assert form[key].label in message and CJK.search(message)
        return
    assert not expected_errors, f"accepted, but the reference refuses: {expected_errors}"
    assert cleaned == expected_clean
    assert list(cleaned) == [k for k in shown if k in cleaned]  # display order, hidden dropped
    for value in walk(list(cleaned.values())):
        assert not isinstance(value, float)
    for key, value in cleaned.items():
        if form[key].kind == "money":
            assert isinstance(value, Decimal) and value.as_tuple().exponent == -2


@SETTINGS
@given(cases())
def test_visible_fields_is_a_fixed_point(case):
    form, _specs, answers = case
    shown = visible_fields(form, answers, now=NOW)
    only_shown = {k: v for k, v in answers.items() if k in shown}
    assert visible_fields(form, only_shown, now=NOW) == shown
    # and the answers of hidden fields change nothing in the verdict either
    outcome = _outcome(form, answers)
    assert _outcome(form, only_shown) == outcome


def _outcome(form: FormDefinition, answers: dict) -> Any:
    try:
        return ("ok", validate_answers(form, answers, now=NOW))
    except FormErrors as exc:
        return ("errors", exc.errors)


@SETTINGS
@given(cases(valid=True))
def test_accepted_answers_round_trip_and_satisfy_the_shown_json_schema(case):
    form, _specs, answers = case
    try:
        cleaned = validate_answers(form, answers, now=NOW)
    except FormErrors:
        reject()
    stored = json.loads(json.dumps(to_json(form, cleaned)))
    assert validate_answers(form, stored, now=NOW) == cleaned
    shown = visible_fields(form, answers, now=NOW)
    schema = json.loads(json.dumps(form.data["schema"]))
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k in shown}
    for prop in schema["properties"].values():
        prop.pop("x-visible-when", None)
    schema["required"] = [k for k in schema["required"] if k in shown]
    validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
    assert validator.is_valid(stored), list(validator.iter_errors(stored))


@SETTINGS
@given(definitions())
def test_checked_definitions_are_already_normal(generated):
    definition, _ = generated
    try:
        form = check_definition(definition)
    except Invalid as error:
        assert "永远不会成立" in error.message
        return
    assert check_definition(form.data).data == form.data


@SETTINGS
@given(cases(only_valid=True))
def test_console_reference_shows_the_same_fields(console, case):
    """The TypeScript of docs/tickets-forms.md, run by node on the normalised definition, shows
    exactly the fields the server validates."""
    form, _specs, answers = case
    answer = console.ask({"definition": form.data, "answers": answers})
    assert answer["visible"] == visible_fields(form, answers, now=NOW), json.dumps(
        form.data, ensure_ascii=False
    )


# --- money -----------------------------------------------------------------------------------

MONEY = single("money", minimum=-(10**9), maximum=10**9)


@settings(max_examples=300, deadline=None)
@given(st.decimals(min_value=-(10**9), max_value=10**9, places=2))
def test_money_with_two_places_is_the_same_decimal_in_every_representation(amount):
    representations = [f"{amount:f}", amount]
    if amount == amount.to_integral_value():
        representations.append(int(amount))
    if Decimal(repr(float(amount))) == amount:
        representations.append(float(amount))
    for raw in representations:
        value = validate_answers(MONEY, {"f": raw})["f"]
        assert isinstance(value, Decimal) and value == amount and value.as_tuple().exponent == -2


@settings(max_examples=300, deadline=None)
@given(st.decimals(min_value=-(10**6), max_value=10**6, places=3))
def test_money_with_a_third_decimal_is_refused(amount):
    if amount == amount.quantize(Decimal("0.01")):
        return
    for raw in (f"{amount:f}", float(amount)):
        try:
            validate_answers(MONEY, {"f": raw})
        except FormErrors as exc:
            assert exc.codes == {"f": "decimals"}
        else:  # a float that does not print with 3 decimals would not be this amount
            assert isinstance(raw, float) and Decimal(repr(raw)) != amount
