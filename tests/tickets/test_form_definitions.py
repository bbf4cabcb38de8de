"""check_definition: a designer's mistakes, each refused with the dotted path to it; the four
shipped forms; the normalised definition."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jingwei.core.errors import Invalid
from jingwei.tickets.forms import BUILTIN_FORMS, builtin_form, check_definition

from .helpers import single


def two(b_condition: Any, *, a: dict | None = None, a_widget: str = "select", **b: Any) -> dict:
    """Field a (a select of 售后服务/产品咨询 unless given) and field b shown by `b_condition`."""
    return {
        "schema": {
            "type": "object",
            "properties": {
                "a": a if a is not None else {"enum": ["售后服务", "产品咨询"]},
                "b": {**b, "x-visible-when": b_condition},
            },
            "required": ["b"],
        },
        "ui": {
            "a": {"label": "咨询类型", "widget": a_widget},
            "b": {"label": "故障现象", "widget": "text"},
        },
    }


def refused(definition: Any) -> Invalid:
    with pytest.raises(Invalid) as caught:
        check_definition(definition)
    assert caught.value.code == "invalid_form"
    return caught.value


def with_(path: str, value: Any, base: dict | None = None) -> dict:
    """A copy of a one-text-field definition (or `base`) with the value at a dotted path set."""
    data = copy.deepcopy(base if base is not None else single("text"))
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[last] = value
    return data


# --- mistakes in the definition, each with its path -------------------------------------------


@pytest.mark.parametrize(
    ("definition", "path", "words"),
    [
        ([], "", "对象"),
        ({"schema": {}, "ui": {}, "rules": []}, "rules", "rules"),
        ({"ui": {}}, "schema", "schema"),
        (with_("schema.allOf", []), "schema.allOf", "x-visible-when"),
        (with_("schema.$schema", "http://json-schema.org/draft-07/schema#"), "schema.$schema", ""),
        (with_("schema.additionalProperties", True), "schema.additionalProperties", ""),
        (with_("schema.properties", {}), "schema.properties", "至少"),
        (with_("schema.required", ["g"]), "schema.required.0", "不在"),
        (with_("schema.required", ["f", "f"]), "schema.required", "重复"),
        (with_("ui.g", {"label": "多余", "widget": "text"}), "ui.g", "不是"),
        (with_("ui.f", None), "ui.f", "ui"),
        (with_("ui.f.widget", "slider"), "ui.f.widget", "slider"),
        (with_("ui.f.widget", ["text"]), "ui.f.widget", "控件"),
        (with_("ui.f.label", " "), "ui.f.label", "不能为空"),
        (with_("ui.f.label", "字" * 51), "ui.f.label", "50"),
        (with_("ui.f.lable", "错别字"), "ui.f.lable", "x-"),
        (with_("ui.f.order", "1"), "ui.f.order", "整数"),
        (with_("ui.f.help", 3), "ui.f.help", "文字"),
        (with_("ui.f.options", {"a": "甲"}), "ui.f.options", "选项"),
        (with_("ui.f.pattern_message", "请输入工号"), "ui.f.pattern_message", "pattern"),
        (with_("schema.properties.f.allOf", []), "schema.properties.f.allOf", "allOf"),
        (with_("schema.properties.f.title", "故障"), "schema.properties.f.title", "ui"),
        (with_("schema.properties.f.type", "integer"), "schema.properties.f.type", "string"),
        (with_("schema.properties.f.maxLength", 1001), "schema.properties.f.maxLength", "1000"),
        (with_("schema.properties.f.maxLength", True), "schema.properties.f.maxLength", "整数"),
        (with_("schema.properties.f.minLength", -1), "schema.properties.f.minLength", ""),
        (single("text", minLength=5, maxLength=4), "schema.properties.f.minLength", "大于"),
        (single("number", minimum=5, maximum=4), "schema.properties.f.minimum", "大于"),
        (single("number", minimum="1"), "schema.properties.f.minimum", "数字"),
        (single("number", type="string"), "schema.properties.f.type", "number"),
        (single("money", minimum=0.001), "schema.properties.f.minimum", "两位小数"),
        (single("money", maximum=1e13), "schema.properties.f.maximum", ""),
        (single("date", formatMaximum="tomorrow"), "schema.properties.f.formatMaximum", "today"),
        (single("date", format="date-time"), "schema.properties.f.format", "date"),
        (
            single("datetime", formatMinimum="2025-01-01T00:00:00"),
            "schema.properties.f.formatMinimum",
            "now",
        ),
        (
            single("date", formatMinimum="2025-02-01", formatMaximum="2025-01-01"),
            "schema.properties.f.formatMinimum",
            "晚于",
        ),
        (single("select"), "schema.properties.f.enum", "选项"),
        (single("select", enum=[]), "schema.properties.f.enum", "选项"),
        (single("select", enum=["是", "否", "是"]), "schema.properties.f.enum.2", "重复"),
        (single("select", enum=["是", 1]), "schema.properties.f.enum.1", "文字"),
        (single("select", enum=["是"], ui_options={"否": "不是"}), "ui.f.options.否", "不是"),
        (
            single("multiselect", items={"enum": ["甲", "甲"]}),
            "schema.properties.f.items.enum.1",
            "",
        ),
        (
            single("multiselect", items={"type": "integer", "enum": [1]}),
            "schema.properties.f.items.type",
            "",
        ),
        (
            single("multiselect", items={"enum": ["甲", "乙"]}, minItems=2, maxItems=1),
            "schema.properties.f.minItems",
            "大于",
        ),
        (
            single("multiselect", items={"enum": ["甲", "乙"]}, uniqueItems=False),
            "schema.properties.f.uniqueItems",
            "true",
        ),
        (single("photo", maxItems=21), "schema.properties.f.maxItems", "20"),
        (single("signature", maxItems=2), "schema.properties.f.maxItems", ""),
        (single("region", items={"type": "integer"}), "schema.properties.f.items", ""),
        (single("product", maxItems=3), "schema.properties.f.maxItems", "array"),
        (single("photo", default=["ph1"]), "schema.properties.f.default", "默认值"),
        (single("select", enum=["是"], default="否"), "schema.properties.f.default", "选项无效"),
        (single("text", maxLength=2, default="三个字"), "schema.properties.f.default", "最多"),
        (single("text", pattern="(a+)+$"), "schema.properties.f.pattern", "嵌套"),
        (single("text", pattern="(a|aa)*"), "schema.properties.f.pattern", "嵌套"),
        (single("text", pattern="([A-Z]"), "schema.properties.f.pattern", "括号"),
        (single("text", pattern="(?=a)b"), "schema.properties.f.pattern", "(?="),
        (single("text", pattern="a" * 201), "schema.properties.f.pattern", "200"),
    ],
)
def test_definition_mistake_is_named_by_its_path(definition, path, words):
    error = refused(definition)
    assert error.field == path
    assert words in error.message


@pytest.mark.parametrize("key", ["故障现象", "Fault", "1st", "_x", "a-b", "a" * 41, "in", "true"])
def test_field_keys_are_lower_case_identifiers(key):
    definition = {
        "schema": {"type": "object", "properties": {key: {}}},
        "ui": {key: {"label": "故障现象", "widget": "text"}},
    }
    error = refused(definition)
    assert error.field == f"schema.properties.{key}" and "字段键" in error.message


def test_custom_ui_hints_with_x_prefix_are_kept():
    form = check_definition(with_("ui.f.x-span", 12))
    assert form.data["ui"]["f"]["x-span"] == 12


# --- conditions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "path", "words"),
    [
        ({"field": "nope", "op": "eq", "value": 1}, "x-visible-when.field", "nope"),
        ({"field": "a", "op": "gt", "value": "售后服务"}, "x-visible-when.op", "咨询类型"),
        ({"field": "a", "op": "eq", "value": "售后"}, "x-visible-when.value", "不是"),
        ({"field": "a", "op": "eq"}, "x-visible-when.value", "值"),
        ({"field": "a", "op": "in", "value": []}, "x-visible-when.value", "列表"),
        (
            {"field": "a", "op": "in", "value": ["售后服务", "售后服务"]},
            "x-visible-when.value",
            "重复",
        ),
        ({"field": "a", "op": "empty", "value": "x"}, "x-visible-when.value", "不需要"),
        ({"field": "a", "op": "eq", "value": "售后服务", "x": 1}, "x-visible-when", "x"),
        ({"all": []}, "x-visible-when.all", "非空"),
        ({"all": [{}], "any": [{}]}, "x-visible-when", "并列"),
        (
            {"all": [{"field": "a", "op": "not_empty"}, {"field": "zz", "op": "empty"}]},
            "x-visible-when.all.1.field",
            "zz",
        ),
        ("a == 1", "x-visible-when", "对象"),
        ({"field": "b", "op": "not_empty"}, "x-visible-when", "循环"),
    ],
)
def test_condition_mistake_is_named_by_its_path(condition, path, words):
    error = refused(two(condition))
    assert error.field == f"schema.properties.b.{path}"
    assert words in error.message


@pytest.mark.parametrize(
    ("a", "widget", "condition", "words"),
    [
        ({"type": "integer"}, "number", {"field": "a", "op": "gt", "value": "三"}, "数字"),
        ({}, "date", {"field": "a", "op": "lt", "value": "2025/01/01"}, "日期"),
        ({}, "datetime", {"field": "a", "op": "lt", "value": "2025-01-01T00:00:00"}, "时区"),
        ({}, "boolean", {"field": "a", "op": "eq", "value": "true"}, "true"),
        ({}, "phone", {"field": "a", "op": "eq", "value": "13812345678"}, "为空"),
        ({}, "text", {"field": "a", "op": "eq", "value": " "}, "文字"),
    ],
)
def test_condition_value_must_suit_the_field_it_names(a, widget, condition, words):
    error = refused(two(condition, a=a, a_widget=widget))
    assert error.field.startswith("schema.properties.b.x-visible-when")
    assert words in error.message


def test_condition_depth_and_size_are_bounded():
    leaf = {"field": "a", "op": "not_empty"}
    deep: Any = leaf
    for _ in range(5):
        deep = {"all": [deep]}
    assert "嵌套" in refused(two(deep)).message
    wide = {"any": [leaf] * 50}
    assert "过多" in refused(two(wide)).message


def test_cycle_is_refused_with_its_members():
    definition = {
        "schema": {
            "type": "object",
            "properties": {
                "a": {"x-visible-when": {"field": "c", "op": "not_empty"}},
                "b": {"x-visible-when": {"field": "a", "op": "not_empty"}},
                "c": {"x-visible-when": {"field": "b", "op": "not_empty"}},
            },
        },
        "ui": {k: {"label": k.upper(), "widget": "text"} for k in "abc"},
    }
    error = refused(definition)
    assert "循环" in error.message and all(k in error.message for k in "abc")


def test_required_field_whose_condition_contradicts_itself_is_refused():
    condition = {
        "all": [
            {"field": "a", "op": "eq", "value": "售后服务"},
            {"field": "a", "op": "eq", "value": "产品咨询"},
        ]
    }
    error = refused(two(condition))
    assert error.field == "schema.properties.b.x-visible-when"
    assert error.message == "必填字段“故障现象”的显示条件永远不会成立，它将无法填写"


def test_field_needing_an_answer_its_parent_hides_is_refused():
    # b is shown only for 售后服务; c asks for 产品咨询 *and* an answer to b: never both.
    definition = {
        "schema": {
            "type": "object",
            "properties": {
                "a": {"enum": ["售后服务", "产品咨询"]},
                "b": {"x-visible-when": {"field": "a", "op": "eq", "value": "售后服务"}},
                "c": {
                    "x-visible-when": {
                        "all": [
                            {"field": "a", "op": "eq", "value": "产品咨询"},
                            {"field": "b", "op": "not_empty"},
                        ]
                    }
                },
            },
        },
        "ui": {
            "a": {"label": "咨询类型", "widget": "select"},
            "b": {"label": "故障现象", "widget": "textarea"},
            "c": {"label": "型号", "widget": "text"},
        },
    }
    error = refused(definition)
    assert error.field == "schema.properties.c.x-visible-when" and "型号" in error.message


def test_field_depending_on_a_switch_being_both_on_and_empty_is_refused():
    condition = {"all": [{"field": "a", "op": "eq", "value": True}, {"field": "a", "op": "empty"}]}
    assert "永远不会成立" in refused(two(condition, a={}, a_widget="boolean")).message


def test_conditions_that_can_hold_are_not_refused():
    # a text field's value is unknown at design time: "eq x and ne y" can hold
    condition = {
        "all": [
            {"field": "a", "op": "eq", "value": "甲"},
            {"field": "a", "op": "ne", "value": "乙"},
        ]
    }
    check_definition(two(condition, a={}, a_widget="text"))
    check_definition(two({"field": "a", "op": "ne", "value": "售后服务"}))


# --- the normalised definition ---------------------------------------------------------------


def test_normalised_definition_states_every_implied_rule():
    form = check_definition(two({"field": "a", "op": "eq", "value": "售后服务"}))
    schema = form.data["schema"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert schema["properties"]["a"] == {"enum": ["售后服务", "产品咨询"], "type": "string"}
    assert schema["properties"]["b"]["maxLength"] == 200
    assert form.data["ui"]["b"]["order"] == 20
    assert check_definition(form.data).data == form.data
    assert check_definition(form) is form


def test_display_order_follows_ui_order_and_conditions_are_evaluated_first():
    definition = two({"field": "a", "op": "eq", "value": "售后服务"})
    definition["ui"]["a"]["order"] = 99
    form = check_definition(definition)
    assert [f.key for f in form.fields] == ["b", "a"]
    assert form.evaluation_order == ("a", "b")
    assert form["b"].depends_on == {"a"}


def test_the_definition_given_is_not_modified():
    definition = single("money")
    before = copy.deepcopy(definition)
    check_definition(definition)
    assert definition == before


# --- the four shipped forms ------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN_FORMS)
def test_shipped_form_passes_and_is_already_normal(name):
    form = check_definition(builtin_form(name))
    assert check_definition(form.data).data == form.data
    assert all(f.label and f.label == f.ui["label"] for f in form.fields)


@pytest.mark.parametrize("name", BUILTIN_FORMS)
def test_shipped_form_schema_is_valid_json_schema_2020_12(name):
    assert jsonschema_rs.meta.is_valid(check_definition(builtin_form(name)).data["schema"])


def test_shipped_forms_cover_the_issue():
    repair = check_definition(builtin_form("after_sales_repair"))
    assert repair["fault"].required and repair["fault"].condition is not None
    returns = check_definition(builtin_form("shop_return"))
    assert returns["tracking_no"].required and returns["tracking_no"].depends_on == {"request_type"}
    trial = check_definition(builtin_form("course_trial"))
    assert trial["courses"].kind == "multiselect" and trial["appointment"].kind == "datetime"
    complaint = check_definition(builtin_form("complaint"))
    assert complaint["urgency"].options == ("S", "A", "B")


# --- whatever a designer (or an attacker) sends, the answer is Invalid or a definition ---------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(BUILTIN_FORMS)), st.data(), JSON)
def test_a_mutated_shipped_form_is_refused_cleanly_or_accepted(name, data, replacement):
    definition = builtin_form(name)
    path = data.draw(st.sampled_from(_paths(definition)[1:]))
    node: Any = definition
    for part in path[:-1]:
        node = node[part]
    if data.draw(st.booleans()) and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = replacement
    try:
        form = check_definition(definition)
    except Invalid as error:
        assert error.code == "invalid_form" and isinstance(error.field, str)
    else:
        assert check_definition(form.data).data == form.data


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_random_json_is_refused_cleanly(data):
    with pytest.raises(Invalid):
        check_definition(data)
