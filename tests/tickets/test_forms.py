"""validate_answers, field type by field type, with the boundaries; the errors' shape; the E4
journey (咨询类型 = 售后服务 shows 故障现象 and requires it)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest

from jingwei.core.errors import Invalid
from jingwei.tickets.forms import (
    FormErrors,
    builtin_form,
    check_definition,
    to_json,
    validate_answers,
    visible_fields,
)

from .helpers import NOW, SHANGHAI, Refs, clean, error, regions, single

# --- text ------------------------------------------------------------------------------------


def test_text_of_exactly_max_length_is_accepted_and_one_more_is_refused():
    form = single("text", maxLength=5, label="工号")
    assert clean(form, "甲乙丙丁戊") == "甲乙丙丁戊"
    assert error(form, "甲乙丙丁戊己") == ("too_long", "工号最多 5 个字")


def test_text_length_counts_characters_not_utf16_units():
    form = single("text", maxLength=2)
    assert clean(form, "😀😀") == "😀😀"  # JavaScript's .length would say 4


def test_text_min_length_and_surrounding_space_trimmed():
    form = single("text", minLength=3, label="姓名")
    assert clean(form, "  王建国  ") == "王建国"
    assert error(form, " 王建 ") == ("too_short", "姓名至少 3 个字")


def test_text_has_a_default_max_length_written_into_the_definition():
    form = check_definition(single("text"))
    assert form.data["schema"]["properties"]["f"]["maxLength"] == 200
    assert error(form, "字" * 201)[0] == "too_long"


def test_single_line_text_refuses_line_breaks_but_long_text_keeps_them():
    assert error(single("text"), "第一行\n第二行")[0] == "format"
    assert clean(single("textarea"), "第一行\n第二行") == "第一行\n第二行"


def test_text_pattern_with_the_designers_message():
    form = single("text", pattern=r"^[A-Z]{2}\d{4}$", ui_pattern_message="工号如 AB1234")
    assert clean(form, "AB1234") == "AB1234"
    assert error(form, "ab1234") == ("pattern", "工号如 AB1234")


def test_text_pattern_applies_to_the_trimmed_answer_and_dollar_means_the_very_end():
    form = single("textarea", pattern=r"^\d{4}$", label="验证码")
    assert clean(form, "1234\n") == "1234"  # trimmed first
    assert error(form, "12345") == ("pattern", "验证码格式不正确")


def test_text_pattern_digits_are_ascii_as_in_the_console():
    form = single("text", pattern=r"^\d+$")
    assert error(form, "１２３")[0] == "pattern"  # full-width digits: not \d in JavaScript


def test_text_must_be_a_string():
    assert error(single("text", label="备注"), 12) == ("type", "备注应为文字")


# --- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [(3, 3), ("3", 3), (3.0, 3), (" 18 ", 18), (-0, 0)])
def test_integer_accepts_integral_values_in_any_representation(raw, expected):
    value = clean(single("number", type="integer"), raw)
    assert value == expected and type(value) is int


@pytest.mark.parametrize("raw", [3.5, "3.5", True, "三", [3], {"n": 3}])
def test_integer_refuses_other_values(raw):
    code, message = error(single("number", type="integer", label="年龄"), raw)
    assert code == "type" and message == "年龄应为整数"


def test_number_minimum_and_maximum_are_inclusive():
    form = single("number", type="integer", minimum=3, maximum=18, label="年龄")
    assert clean(form, 3) == 3 and clean(form, 18) == 18
    assert error(form, 2) == ("too_small", "年龄不能小于 3")
    assert error(form, 19) == ("too_large", "年龄不能大于 18")


def test_integer_beyond_javascripts_safe_range_is_refused():
    form = single("number", type="integer")
    assert clean(form, 2**53 - 1) == 2**53 - 1
    assert error(form, 2**53)[0] == "too_large"


def test_decimal_number_is_a_decimal_never_a_float():
    form = single("number", minimum=0.5, maximum=8.5, label="工时")
    assert clean(form, 1.5) == Decimal("1.5") and isinstance(clean(form, 1.5), Decimal)
    assert clean(form, "0.5") == Decimal("0.5")
    assert error(form, 8.51) == ("too_large", "工时不能大于 8.5")


def test_decimal_number_with_more_digits_than_the_console_can_hold_is_refused():
    form = single("number")
    assert clean(form, "1.23456789012345") == Decimal("1.23456789012345")
    assert error(form, "1.234567890123456")[0] == "format"


# --- money -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1234.50", "1234.50"),
        ("1234.5", "1234.50"),
        (1234, "1234.00"),
        (12.5, "12.50"),
        (0.1, "0.10"),
        ("1.500", "1.50"),  # trailing zeros are not extra decimals
        (Decimal("99.99"), "99.99"),
        ("0", "0.00"),
    ],
)
def test_money_becomes_a_two_place_decimal(raw, expected):
    value = clean(single("money"), raw)
    assert isinstance(value, Decimal) and str(value) == expected


@pytest.mark.parametrize("raw", ["12.345", 12.345, 0.1 + 0.2, "0.001", Decimal("1.005")])
def test_money_with_more_than_two_decimals_is_refused(raw):
    assert error(single("money", label="退款金额"), raw) == ("decimals", "退款金额最多两位小数")


@pytest.mark.parametrize("raw", ["abc", "1,234.50", "¥12", True, float("nan"), float("inf"), [1]])
def test_money_that_is_not_an_amount_is_refused(raw):
    code, message = error(single("money", label="退款金额"), raw)
    assert code == "type" and message.startswith("退款金额应为金额")


def test_money_is_not_negative_unless_the_designer_allows_it():
    assert error(single("money", label="金额"), "-0.01") == ("too_small", "金额不能小于 0.00")
    assert clean(single("money", minimum=-100), "-0.01") == Decimal("-0.01")


def test_money_bounds_are_inclusive_and_shown_with_two_decimals():
    form = single("money", minimum=0.01, maximum=5000, label="退款金额")
    assert clean(form, "0.01") == Decimal("0.01") and clean(form, 5000) == Decimal("5000.00")
    assert error(form, "0.00") == ("too_small", "退款金额不能小于 0.01")
    assert error(form, "5000.01") == ("too_large", "退款金额不能大于 5000.00")


def test_money_far_beyond_any_bound_is_refused_without_overflow():
    assert error(single("money"), Decimal("1E+40"))[0] == "too_large"
    assert error(single("money"), "9" * 20)[0] == "too_large"


# --- dates and times -------------------------------------------------------------------------


def test_date_is_an_iso_calendar_date():
    form = single("date", label="购买日期")
    assert clean(form, "2025-01-31") == date(2025, 1, 31)
    for raw in ("2025-02-30", "2025-1-5", "2025/01/31", "2025-01-31T00:00:00+08:00", 20250131):
        assert error(form, raw) == ("type", "购买日期应为日期，如 2025-01-31")


def test_date_up_to_today_uses_the_business_time_zone():
    form = single("date", formatMaximum="today", label="购买日期")
    late_evening_utc = datetime(2025, 5, 31, 17, 0, tzinfo=SHANGHAI) + timedelta(hours=8)
    # 2025-06-01 01:00 in Shanghai, still 2025-05-31 in UTC: "today" is the 1st.
    assert clean(form, "2025-06-01", now=late_evening_utc) == date(2025, 6, 1)
    assert error(form, "2025-06-02", now=late_evening_utc) == ("too_late", "购买日期不能晚于今天")


def test_date_with_fixed_bounds():
    form = single("date", formatMinimum="2025-01-01", formatMaximum="2025-12-31", label="日期")
    assert clean(form, "2025-01-01") == date(2025, 1, 1)
    assert error(form, "2024-12-31") == ("too_early", "日期不能早于 2025-01-01")


def test_datetime_must_carry_a_time_zone():
    form = single("datetime", label="预约时间")
    moment = clean(form, "2025-06-02T09:30:00+08:00")
    assert moment == datetime(2025, 6, 2, 9, 30, tzinfo=SHANGHAI)
    assert clean(form, "2025-06-02T01:30:00.000Z") == moment  # what the console's toISOString gives
    code, message = error(form, "2025-06-02T09:30:00")
    assert code == "naive_datetime" and "时区" in message and message.startswith("预约时间")
    assert error(form, datetime(2025, 6, 2, 9, 30))[0] == "naive_datetime"


def test_datetime_not_before_now():
    form = single("datetime", formatMinimum="now", label="预约时间")
    assert clean(form, NOW.isoformat()) == NOW
    assert error(form, (NOW - timedelta(minutes=1)).isoformat()) == (
        "too_early",
        "预约时间不能早于当前时间",
    )


@pytest.mark.parametrize("raw", ["明天上午", "2025-06-02T25:00:00+08:00", "2025-06-02T09:30+25:00"])
def test_datetime_that_is_not_a_time_is_refused(raw):
    assert error(single("datetime"), raw)[0] == "type"


# --- choices ---------------------------------------------------------------------------------

CHOICES = {"enum": ["产品咨询", "售后服务", "投诉建议"]}


def test_select_accepts_an_option_and_refuses_anything_else():
    form = single("select", label="咨询类型", **CHOICES)
    assert clean(form, "售后服务") == "售后服务"
    for raw in ("售后", " 售后服务", 1, ["售后服务"]):
        assert error(form, raw) == ("invalid_option", "咨询类型的选项无效")


def test_multiselect_comes_back_in_option_order():
    form = single("multiselect", items={"type": "string", **CHOICES})
    assert clean(form, ["投诉建议", "产品咨询"]) == ["产品咨询", "投诉建议"]


def test_multiselect_refuses_duplicates_and_unknown_options():
    form = single("multiselect", label="意向课程", items={"type": "string", **CHOICES})
    assert error(form, ["产品咨询", "产品咨询"]) == ("duplicate", "意向课程有重复的选项")
    assert error(form, ["产品咨询", "围棋"]) == ("invalid_option", "意向课程包含无效的选项")
    assert error(form, "产品咨询") == ("type", "意向课程应为选项列表")


def test_multiselect_item_count_boundaries():
    form = single("multiselect", label="课程", minItems=2, maxItems=2, items=dict(CHOICES))
    assert clean(form, ["产品咨询", "售后服务"]) == ["产品咨询", "售后服务"]
    assert error(form, ["产品咨询"]) == ("too_few", "课程至少选 2 项")
    assert error(form, ["产品咨询", "售后服务", "投诉建议"]) == ("too_many", "课程最多选 2 项")


def test_boolean_is_true_or_false_and_false_is_an_answer():
    form = single("boolean", required=True, label="需要回电")
    assert clean(form, False) is False
    assert error(form, "true") == ("type", "需要回电应为“是”或“否”")
    assert error(form, None) == ("required", "请选择需要回电")


# --- region ----------------------------------------------------------------------------------


def test_region_leaf_id_is_expanded_to_its_path():
    assert clean(single("region"), 3) == [1, 2, 3]


def test_region_path_must_be_the_real_path():
    form = single("region", label="上门地区")
    assert clean(form, [1, 2, 3]) == [1, 2, 3]
    assert error(form, [10, 2, 3]) == ("not_found", "上门地区：所选地区不存在")
    assert error(form, 404) == ("not_found", "上门地区：所选地区不存在")


def test_region_depth_is_checked_after_resolving_a_leaf():
    form = single("region", minItems=3, label="上门地区")
    assert clean(form, 4) == [1, 2, 3, 4]
    assert error(form, 2) == ("too_few", "上门地区请至少选到第 3 级")
    assert error(form, [1, 2]) == ("too_few", "上门地区请至少选到第 3 级")


def test_region_ids_have_a_shape():
    assert error(single("region"), [1, True])[0] == "type"
    assert error(single("region"), "../../etc")[0] == "type"


# --- phone and email -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("138 1234 5678", "13812345678"),
        ("+86 138-1234-5678", "13812345678"),
        ("１３８１２３４５６７８", "13812345678"),
        (13812345678, "13812345678"),
        ("021-6234-5678", "02162345678"),
        ("+86 21 6234 5678", "02162345678"),
        ("0755-1234567", "07551234567"),
    ],
)
def test_phone_is_normalised_like_customer_identities(raw, expected):
    assert clean(single("phone"), raw) == expected


@pytest.mark.parametrize("raw", ["62345678", "+65 9123 4567", "12812345678", "电话", "1381234567"])
def test_phone_that_is_not_a_mainland_mobile_or_landline_is_refused(raw):
    code, message = error(single("phone", label="联系电话"), raw)
    assert code == "format" and message.startswith("联系电话格式不正确")


def test_email_is_lower_cased_and_checked():
    assert clean(single("email"), " Wang@Example.COM ") == "wang@example.com"
    assert error(single("email", label="邮箱"), "wang@") == ("format", "邮箱格式不正确")


# --- files -----------------------------------------------------------------------------------


def test_photos_are_file_ids_checked_by_the_resolver():
    form = single("photo", label="故障照片")
    assert clean(form, ["ph1", "ph2"]) == ["ph1", "ph2"]
    assert clean(form, "ph1") == ["ph1"]
    assert error(form, ["ph1", "ph1"]) == ("duplicate", "故障照片有重复的文件")
    assert error(form, ["ph1", "nope"]) == ("not_found", "故障照片：所选文件不存在或已失效")
    assert error(form, ["../x"]) == ("type", "故障照片应为已上传文件的编号列表")


def test_file_count_boundaries():
    form = single("photo", maxItems=3, label="照片")
    assert clean(form, ["ph1", "ph2", "ph3"]) == ["ph1", "ph2", "ph3"]
    assert error(form, ["ph1", "ph2", "ph3", "ph4"]) == ("too_many", "照片最多上传 3 个")


def test_a_signature_is_one_file():
    form = check_definition(single("signature", required=True, label="客户签名"))
    assert form.data["schema"]["properties"]["f"]["maxItems"] == 1
    assert clean(form, "sig1") == ["sig1"]
    assert error(form, ["sig1", "sig2"])[0] == "too_many"
    assert error(form, []) == ("required", "请完成客户签名")


# --- pickers ---------------------------------------------------------------------------------


def test_picker_takes_an_id_and_checks_it_exists():
    form = single("product", label="产品型号")
    assert clean(form, 5) == 5 and clean(form, "6") == 6
    assert error(form, 8) == ("not_found", "产品型号：所选产品不存在或已失效")
    for raw in (0, -1, True, "abc", 1.5, [5]):
        assert error(form, raw) == ("type", "产品型号应为一个产品")


def test_another_tenants_id_reads_exactly_like_a_missing_one():
    form = single("customer", label="客户")
    assert error(form, 99) == error(form, 100_000)


def test_multiple_picker_and_one_resolver_call_per_kind():
    definition = {
        "schema": {
            "type": "object",
            "properties": {
                "parts": {"type": "array", "maxItems": 2},
                "spare": {"type": "array"},
                "product": {"type": "integer"},
            },
        },
        "ui": {
            "parts": {"label": "备件", "widget": "part"},
            "spare": {"label": "备用件", "widget": "part"},
            "product": {"label": "产品", "widget": "product"},
        },
    }
    refs = Refs()
    cleaned = validate_answers(
        definition, {"parts": [11, "12"], "spare": [13], "product": 5}, refs=refs
    )
    assert cleaned == {"parts": [11, 12], "spare": [13], "product": 5}
    assert sorted(refs.calls, key=lambda c: c[0]) == [
        ("part", frozenset({11, 12, 13})),
        ("product", frozenset({5})),
    ]
    with pytest.raises(FormErrors) as caught:
        validate_answers(definition, {"parts": [11, 12, 13]}, refs=refs)
    assert caught.value.errors == {"parts": "备件最多选 2 个"}


def test_a_form_with_references_needs_the_resolver():
    with pytest.raises(TypeError):
        validate_answers(single("product"), {"f": 5})
    assert validate_answers(single("product"), {}) == {}  # nothing to resolve


# --- required, unknown fields, the error object ----------------------------------------------


@pytest.mark.parametrize(
    ("widget", "extra", "message"),
    [
        ("text", {}, "请填写故障现象"),
        ("textarea", {}, "请填写故障现象"),
        ("money", {}, "请填写故障现象"),
        ("select", {"enum": ["是"]}, "请选择故障现象"),
        ("date", {}, "请选择故障现象"),
        ("product", {}, "请选择故障现象"),
        ("photo", {}, "请上传故障现象"),
    ],
)
@pytest.mark.parametrize("empty", [None, "", "   ", []])
def test_required_field_left_empty(widget, extra, message, empty):
    form = single(widget, required=True, label="故障现象", **extra)
    assert error(form, empty) == ("required", message)


def test_optional_field_left_empty_is_left_out():
    assert validate_answers(single("text"), {"f": "  "}) == {}


def test_unknown_answer_keys_are_errors():
    with pytest.raises(FormErrors) as caught:
        validate_answers(single("text"), {"f": "x", "typo": 1})
    assert caught.value.codes == {"typo": "unknown_field"}
    assert caught.value.errors["typo"] == "表单中没有字段“typo”"


def test_answers_must_be_an_object():
    with pytest.raises(Invalid) as caught:
        validate_answers(single("text"), ["f"])
    assert caught.value.field == "answers" and caught.value.code == "invalid_answers"


def test_form_errors_carry_every_field_at_once_in_display_order():
    definition = {
        "schema": {
            "type": "object",
            "properties": {
                "b": {"type": "string", "maxLength": 2},
                "a": {"type": "integer"},
                "c": {"type": "string"},
            },
            "required": ["a", "c"],
        },
        "ui": {
            "a": {"label": "年龄", "widget": "number", "order": 1},
            "b": {"label": "姓名", "widget": "text", "order": 2},
            "c": {"label": "电话", "widget": "phone", "order": 3},
        },
    }
    with pytest.raises(FormErrors) as caught:
        validate_answers(definition, {"a": "x", "b": "王建国"})
    exc = caught.value
    assert isinstance(exc, Invalid) and exc.status == 422 and exc.code == "form_invalid"
    assert list(exc.errors) == ["a", "b", "c"]
    assert exc.errors == {"a": "年龄应为整数", "b": "姓名最多 2 个字", "c": "请填写电话"}
    assert exc.field == "a" and exc.message == "年龄应为整数（另有 2 处需要修改）"
    assert exc.as_list("answers.")[1] == {
        "field": "answers.b",
        "code": "too_long",
        "message": "姓名最多 2 个字",
    }


# --- the E4 journey: a field shown by an answer, required when shown ---------------------------

REPAIR = builtin_form("after_sales_repair")
BASE = {
    "contact_name": "王建国",
    "contact_phone": "138 1234 5678",
    "product": 5,
}


def validate_repair(answers: dict) -> dict:
    return validate_answers(REPAIR, answers, refs=Refs(), regions=regions, now=NOW)


def test_e4_after_sales_shows_fault_and_requires_it():
    answers = {**BASE, "service_type": "售后服务"}
    assert "fault" in visible_fields(REPAIR, answers, now=NOW)
    with pytest.raises(FormErrors) as caught:
        validate_repair(answers)
    assert caught.value.errors["fault"] == "请填写故障现象"
    assert caught.value.codes["fault"] == "required"


def test_e4_other_choice_hides_fault_and_drops_its_answer():
    answers = {**BASE, "service_type": "产品咨询", "question": "有没有变频款？"}
    answers["fault"] = "开机后不制冷"  # typed before the choice was changed: not an error
    assert "fault" not in visible_fields(REPAIR, answers, now=NOW)
    cleaned = validate_repair(answers)
    assert "fault" not in cleaned and cleaned["question"] == "有没有变频款？"


def test_e4_complete_after_sales_answer():
    answers = {
        **BASE,
        "service_type": "售后服务",
        "fault": "开机后不制冷，室外机不转",
        "fault_tags": ["漏水", "不制冷"],
        "purchase_date": "2024-07-01",
        "warranty": "在保",
        "warranty_proof": ["ph1"],
        "service_region": 3,
        "service_address": "世纪大道 100 号 8 楼",
        "visit_time": "2025-06-02T09:00:00+08:00",
        "photos": ["ph2", "ph3"],
        "parts": [11, 12],
    }
    cleaned = validate_repair(answers)
    assert cleaned["fault_tags"] == ["不制冷", "漏水"]
    assert cleaned["service_region"] == [1, 2, 3]
    assert cleaned["contact_phone"] == "13812345678"
    assert list(cleaned) == visible_fields(REPAIR, answers, now=NOW)
    assert validate_repair(to_json(REPAIR, cleaned)) == cleaned


def test_e4_chain_hidden_parent_hides_the_child():
    answers = {**BASE, "service_type": "售后服务", "warranty": "在保"}
    assert "warranty_proof" in visible_fields(REPAIR, answers, now=NOW)
    answers["service_type"] = "产品咨询"  # warranty is hidden, so its answer counts as absent
    assert "warranty_proof" not in visible_fields(REPAIR, answers, now=NOW)


def test_an_invalid_answer_counts_as_absent_for_conditions():
    answers = {**BASE, "service_type": "售后服务 "}  # not an option
    shown = visible_fields(REPAIR, answers, now=NOW)
    assert "fault" not in shown and "question" not in shown


# --- to_json ---------------------------------------------------------------------------------


def test_to_json_writes_money_as_text_and_times_in_iso():
    definition = {
        "schema": {"type": "object", "properties": {"m": {}, "d": {}, "t": {}, "n": {}}},
        "ui": {
            "m": {"label": "金额", "widget": "money"},
            "d": {"label": "日期", "widget": "date"},
            "t": {"label": "时间", "widget": "datetime"},
            "n": {"label": "工时", "widget": "number"},
        },
    }
    cleaned = validate_answers(
        definition, {"m": 12.5, "d": "2025-01-31", "t": "2025-01-31T01:30:00Z", "n": 1.5}
    )
    assert to_json(definition, cleaned) == {
        "m": "12.50",
        "d": "2025-01-31",
        "t": "2025-01-31T01:30:00+00:00",
        "n": "1.5",
    }
