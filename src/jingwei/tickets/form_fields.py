"""Field types of ticket forms: what each type accepts, and how one answer is cleaned.

`clean(field, raw, ctx)` is a field's own check — type, format, range — and nothing else: whether
the field is shown and required is decided by forms.validate_answers, whether a referenced object
exists by the resolvers it is given. Messages are Chinese and name the field's label.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from jingwei.core.errors import Invalid
from jingwei.customers.identities import normalise_email, normalise_phone

from .form_conditions import ABSENT, Cond, fields_of
from .form_patterns import Pattern, PatternTimeout

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"
DEFAULT_TZ = ZoneInfo("Asia/Shanghai")

KINDS: dict[str, str] = {
    "text": "单行文字",
    "textarea": "多行文字",
    "number": "数字",
    "money": "金额",
    "date": "日期",
    "datetime": "日期时间",
    "select": "单选",
    "multiselect": "多选",
    "boolean": "是/否",
    "region": "地区（级联）",
    "phone": "电话",
    "email": "邮箱",
    "attachment": "附件",
    "photo": "照片",
    "signature": "签名",
    "customer": "客户",
    "product": "产品",
    "part": "备件",
    "project": "项目",
}
PICKERS = ("customer", "product", "part", "project")
FILES = ("attachment", "photo", "signature")
REF_KINDS = PICKERS + FILES  # what `refs(kind, ids)` is asked about

KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}\Z")
RESERVED_KEYS = frozenset(  # CEL reserved words: `form.in` would not parse in a flow expression
    [
        "as",
        "break",
        "const",
        "continue",
        "else",
        "false",
        "for",
        "function",
        "if",
        "import",
        "in",
        "let",
        "loop",
        "package",
        "namespace",
        "null",
        "return",
        "true",
        "var",
    ]
)
FILE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_FILE_ID = re.compile(FILE_ID_PATTERN.replace("$", r"\Z"))
_REGION_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}\Z")
_DECIMAL_TEXT = re.compile(r"^-?\d{1,20}(\.\d{1,20})?\Z")
_INT_TEXT = re.compile(r"^\d{1,19}\Z")
_DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")
_DATETIME_TEXT = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)(Z|[+-]\d{2}:\d{2})?\Z"
)
_MOBILE = re.compile(r"^1[3-9]\d{9}\Z")
_LANDLINE = re.compile(r"^0[1-9]\d{8,10}\Z")

MAX_FIELDS = 200
MAX_OPTIONS = 500
MAX_OPTION_LENGTH = 100
MAX_LABEL = 50
MAX_HELP = 500
MAX_PLACEHOLDER = 100
TEXT_LIMITS = {"text": (200, 1000), "textarea": (2000, 20000)}  # (default maxLength, cap)
FILE_LIMITS = {"attachment": (9, 20), "photo": (9, 20), "signature": (1, 1)}  # maxItems
PICKER_LIMITS = (20, 100)  # maxItems of a multiple picker: default, cap
REGION_DEPTH = 6
INT_LIMIT = 2**53 - 1  # JavaScript's safe integers: the console must hold the same number
DECIMAL_DIGITS = 15  # significant digits a JavaScript number keeps exactly
MONEY_MAX = Decimal("999999999999.99")
CENT = Decimal("0.01")
PATTERN_BUDGET = 0.25  # seconds of pattern matching per validation, all fields together

NOUNS = {"customer": "客户", "product": "产品", "part": "备件", "project": "项目"}
TEXT_LIKE = ("text", "textarea", "number", "money", "phone", "email")
UPLOADS = FILES

# Keywords a field's schema may carry beyond `type`, `default` and `x-visible-when`.
KEYWORDS: dict[str, frozenset[str]] = {
    "text": frozenset({"minLength", "maxLength", "pattern"}),
    "textarea": frozenset({"minLength", "maxLength", "pattern"}),
    "number": frozenset({"minimum", "maximum"}),
    "money": frozenset({"minimum", "maximum"}),
    "date": frozenset({"format", "formatMinimum", "formatMaximum"}),
    "datetime": frozenset({"format", "formatMinimum", "formatMaximum"}),
    "select": frozenset({"enum"}),
    "multiselect": frozenset({"items", "uniqueItems", "minItems", "maxItems"}),
    "boolean": frozenset(),
    "region": frozenset({"items", "minItems", "maxItems"}),
    "phone": frozenset(),
    "email": frozenset({"format"}),
    **{k: frozenset({"items", "uniqueItems", "minItems", "maxItems"}) for k in FILES},
    **{k: frozenset({"items", "uniqueItems", "minItems", "maxItems"}) for k in PICKERS},
}
DEFAULTABLE = ("text", "textarea", "number", "money", "select", "multiselect", "boolean")
UI_KEYS = frozenset(
    {"label", "widget", "order", "help", "placeholder", "options", "pattern_message"}
)
TOP_KEYS = frozenset(
    {"$schema", "type", "properties", "required", "additionalProperties", "title", "description"}
)

RegionResolver = Callable[[int | str], Sequence[int | str] | None]
"""A region id -> the ids from the root down to it, or None when unknown (or not the caller's)."""
RefResolver = Callable[[str, frozenset[Any]], Collection[Any]]
"""(kind, ids) -> the ids among them that exist and the caller may use."""


class Problem(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Field:
    """One field, parsed: its type, rules and condition."""

    key: str
    kind: str
    label: str
    order: int
    required: bool
    condition: Cond | None
    schema: Mapping[str, Any]
    ui: Mapping[str, Any]
    min_length: int | None = None
    max_length: int | None = None
    pattern: Pattern | None = None
    pattern_message: str = ""
    integer: bool = False
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    min_items: int | None = None
    max_items: int | None = None
    multiple: bool = False
    options: tuple[str, ...] = ()
    earliest: Any = None  # date / datetime, or "today" / "now"
    latest: Any = None

    @property
    def depends_on(self) -> frozenset[str]:
        return frozenset(fields_of(self.condition)) if self.condition else frozenset()


# --- values shared by answers, defaults and condition values ---------------------------------


def parse_decimal(raw: Any) -> Decimal | None:
    """An exact Decimal from an int, a float (its shortest repr), a Decimal or a numeric string;
    None when it is not a finite number."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, float):
        return Decimal(repr(raw)) if math.isfinite(raw) else None
    if isinstance(raw, Decimal):
        return raw if raw.is_finite() else None
    if isinstance(raw, str) and _DECIMAL_TEXT.match(raw.strip()):
        return Decimal(raw.strip())
    return None


def parse_date(raw: Any) -> date | None:
    if isinstance(raw, date) and not isinstance(raw, datetime):
        return raw
    if isinstance(raw, str) and _DATE_TEXT.match(raw.strip()):
        try:
            return date.fromisoformat(raw.strip())
        except ValueError:
            return None
    return None


def parse_datetime(raw: Any) -> datetime | None:
    """An aware datetime; a naive one is returned naive (the caller refuses it by name)."""
    if isinstance(raw, datetime):
        return raw
    if not isinstance(raw, str):
        return None
    m = _DATETIME_TEXT.match(raw.strip())
    if not m:
        return None
    day, clock, zone = m.groups()
    text = f"{day}T{clock}" + ("" if zone is None else "+00:00" if zone == "Z" else zone)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def is_aware(value: datetime) -> bool:
    return value.tzinfo is not None and value.utcoffset() is not None


def show_number(value: Decimal, kind: str) -> str:
    if kind == "money":
        return f"{value.quantize(CENT):f}"
    return f"{value.normalize():f}" if value == value.to_integral_value() else f"{value:f}"


# --- cleaning one answer ---------------------------------------------------------------------


@dataclass
class Context:
    now: datetime
    tz: tzinfo
    deadline: float  # time.monotonic() after which patterns stop (a time-out error)

    @classmethod
    def fixed(cls) -> Context:
        return cls(datetime(2000, 1, 1, tzinfo=DEFAULT_TZ), DEFAULT_TZ, time.monotonic() + 1)


def _is_empty(raw: Any) -> bool:
    return (
        raw is None
        or (isinstance(raw, str) and not raw.strip())
        or (isinstance(raw, list | tuple) and not raw)
    )


def required_message(f: Field) -> str:
    if f.kind in TEXT_LIKE:
        return f"请填写{f.label}"
    if f.kind == "signature":
        return f"请完成{f.label}"
    if f.kind in UPLOADS:
        return f"请上传{f.label}"
    return f"请选择{f.label}"


def clean(f: Field, raw: Any, ctx: Context) -> Any:
    """The cleaned value, ABSENT for an empty answer, or `Problem` (its own checks only: not
    `required`, not existence of referenced objects)."""
    if _is_empty(raw):
        return ABSENT
    cleaner = _CLEANERS[f.kind]
    return cleaner(f, raw, ctx)


def _clean_text(f: Field, raw: Any, ctx: Context) -> Any:
    if not isinstance(raw, str):
        raise Problem("type", f"{f.label}应为文字")
    text = raw.strip()
    if f.kind == "text" and any(c in text for c in "\n\r\u2028\u2029"):
        raise Problem("format", f"{f.label}不能换行")
    if f.min_length is not None and len(text) < f.min_length:
        raise Problem("too_short", f"{f.label}至少 {f.min_length} 个字")
    if f.max_length is not None and len(text) > f.max_length:
        raise Problem("too_long", f"{f.label}最多 {f.max_length} 个字")
    if f.pattern is not None:
        try:
            matched = f.pattern.search(text, timeout=ctx.deadline - time.monotonic())
        except PatternTimeout as exc:
            raise Problem(
                "pattern_timeout", f"{f.label}的格式规则过于复杂，无法校验，请联系管理员修改表单"
            ) from exc
        if not matched:
            raise Problem("pattern", f.pattern_message or f"{f.label}格式不正确")
    return text


def _range(f: Field, value: Decimal) -> None:
    if f.minimum is not None and value < f.minimum:
        raise Problem("too_small", f"{f.label}不能小于 {show_number(f.minimum, f.kind)}")
    if f.maximum is not None and value > f.maximum:
        raise Problem("too_large", f"{f.label}不能大于 {show_number(f.maximum, f.kind)}")


def _clean_number(f: Field, raw: Any, ctx: Context) -> Any:
    noun = "整数" if f.integer else "数字"
    value = parse_decimal(raw)
    if value is None:
        raise Problem("type", f"{f.label}应为{noun}")
    if f.integer:
        if value != value.to_integral_value():
            raise Problem("type", f"{f.label}应为整数")
        if abs(value) > INT_LIMIT:
            raise Problem("too_large", f"{f.label}数值过大")
        _range(f, value)
        return int(value)
    if abs(value) > INT_LIMIT:
        raise Problem("too_large", f"{f.label}数值过大")
    if len(value.normalize().as_tuple().digits) > DECIMAL_DIGITS:
        raise Problem("format", f"{f.label}最多 {DECIMAL_DIGITS} 位有效数字")
    _range(f, value)
    return value


def _clean_money(f: Field, raw: Any, ctx: Context) -> Any:
    value = parse_decimal(raw)
    if value is None:
        raise Problem("type", f"{f.label}应为金额，如 1234.50")
    if abs(value) > MONEY_MAX * 1000:
        raise Problem(
            "too_large", f"{f.label}不能大于 {show_number(f.maximum or MONEY_MAX, 'money')}"
        )
    cents = value.quantize(CENT)
    if cents != value:
        raise Problem("decimals", f"{f.label}最多两位小数")
    _range(f, cents)
    return cents


def _clean_date(f: Field, raw: Any, ctx: Context) -> Any:
    if f.kind == "date":
        value: Any = parse_date(raw)
        if value is None:
            raise Problem("type", f"{f.label}应为日期，如 2025-01-31")
        today = ctx.now.astimezone(ctx.tz).date()
        low = today if f.earliest == "today" else f.earliest
        high = today if f.latest == "today" else f.latest
    else:
        value = parse_datetime(raw)
        if value is None:
            raise Problem("type", f"{f.label}应为时间，如 2025-01-31T09:30:00+08:00")
        if not is_aware(value):
            raise Problem("naive_datetime", f"{f.label}须带时区，如 2025-01-31T09:30:00+08:00")
        low = ctx.now if f.earliest == "now" else f.earliest
        high = ctx.now if f.latest == "now" else f.latest
    if low is not None and value < low:
        raise Problem("too_early", f"{f.label}不能早于{_show_moment(f.earliest, low, ctx)}")
    if high is not None and value > high:
        raise Problem("too_late", f"{f.label}不能晚于{_show_moment(f.latest, high, ctx)}")
    return value


def _show_moment(bound: Any, value: Any, ctx: Context) -> str:
    if bound == "today":
        return "今天"
    if bound == "now":
        return "当前时间"
    if isinstance(value, datetime):
        return " " + value.astimezone(ctx.tz).strftime("%Y-%m-%d %H:%M")
    return f" {value.isoformat()}"


def _clean_select(f: Field, raw: Any, ctx: Context) -> Any:
    if not isinstance(raw, str) or raw not in f.options:
        raise Problem("invalid_option", f"{f.label}的选项无效")
    return raw


def _items_range(f: Field, count: int, verb: str, unit: str) -> None:
    if f.min_items is not None and count < f.min_items:
        raise Problem("too_few", f"{f.label}至少{verb} {f.min_items} {unit}")
    if f.max_items is not None and count > f.max_items:
        raise Problem("too_many", f"{f.label}最多{verb} {f.max_items} {unit}")


def _clean_multiselect(f: Field, raw: Any, ctx: Context) -> Any:
    if not isinstance(raw, list | tuple) or not all(isinstance(v, str) for v in raw):
        raise Problem("type", f"{f.label}应为选项列表")
    allowed = set(f.options)  # a set: a long list of answers costs one pass
    if any(v not in allowed for v in raw):
        raise Problem("invalid_option", f"{f.label}包含无效的选项")
    if len(set(raw)) != len(raw):
        raise Problem("duplicate", f"{f.label}有重复的选项")
    _items_range(f, len(raw), "选", "项")
    chosen = set(raw)
    return [option for option in f.options if option in chosen]


def _clean_boolean(f: Field, raw: Any, ctx: Context) -> Any:
    if not isinstance(raw, bool):
        raise Problem("type", f"{f.label}应为“是”或“否”")
    return raw


def _region_id(raw: Any) -> int | str | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if 0 < raw <= 2**63 - 1 else None
    if isinstance(raw, str) and _REGION_ID.match(raw):
        return raw
    return None


def _clean_region(f: Field, raw: Any, ctx: Context) -> Any:
    items = list(raw) if isinstance(raw, list | tuple) else [raw]
    ids = [_region_id(item) for item in items]
    if len(ids) > REGION_DEPTH or any(i is None for i in ids):
        raise Problem("type", f"{f.label}应为地区编号或从上到下的地区编号列表")
    if len(items) > 1:  # a single id is a leaf: its depth is known once it is resolved
        check_region_depth(f, len(ids))
    return ids


def check_region_depth(f: Field, depth: int) -> None:
    if f.min_items is not None and depth < f.min_items:
        raise Problem("too_few", f"{f.label}请至少选到第 {f.min_items} 级")
    if f.max_items is not None and depth > f.max_items:
        raise Problem("too_many", f"{f.label}最多选到第 {f.max_items} 级")


def _clean_phone(f: Field, raw: Any, ctx: Context) -> Any:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        raise Problem("type", f"{f.label}应为文字")
    try:
        digits = normalise_phone(raw)
    except Invalid:
        digits = ""
    if not (_MOBILE.match(digits) or _LANDLINE.match(digits)):
        raise Problem("format", f"{f.label}格式不正确：请填写 11 位手机号或带区号的座机号")
    return digits


def _clean_email(f: Field, raw: Any, ctx: Context) -> Any:
    if not isinstance(raw, str):
        raise Problem("type", f"{f.label}应为文字")
    try:
        return normalise_email(raw)
    except Invalid as exc:
        raise Problem("format", f"{f.label}格式不正确") from exc


def _clean_files(f: Field, raw: Any, ctx: Context) -> Any:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple) or not all(
        isinstance(i, str) and _FILE_ID.match(i) for i in items
    ):
        raise Problem("type", f"{f.label}应为已上传文件的编号列表")
    if len(set(items)) != len(items):
        raise Problem("duplicate", f"{f.label}有重复的文件")
    _items_range(f, len(items), "上传", "个")
    return list(items)


def _picker_id(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str) and _INT_TEXT.match(raw.strip()):
        raw = int(raw.strip())
    if isinstance(raw, int) and 0 < raw <= 2**63 - 1:
        return raw
    return None


def _clean_picker(f: Field, raw: Any, ctx: Context) -> Any:
    noun = NOUNS[f.kind]
    if not f.multiple:
        value = _picker_id(raw)
        if value is None:
            raise Problem("type", f"{f.label}应为一个{noun}")
        return value
    if not isinstance(raw, list | tuple):
        raise Problem("type", f"{f.label}应为{noun}列表")
    ids = [_picker_id(item) for item in raw]
    if any(i is None for i in ids):
        raise Problem("type", f"{f.label}应为{noun}列表")
    if len(set(ids)) != len(ids):
        raise Problem("duplicate", f"{f.label}有重复的{noun}")
    _items_range(f, len(ids), "选", "个")
    return ids


_CLEANERS: dict[str, Callable[[Field, Any, Context], Any]] = {
    "text": _clean_text,
    "textarea": _clean_text,
    "number": _clean_number,
    "money": _clean_money,
    "date": _clean_date,
    "datetime": _clean_date,
    "select": _clean_select,
    "multiselect": _clean_multiselect,
    "boolean": _clean_boolean,
    "region": _clean_region,
    "phone": _clean_phone,
    "email": _clean_email,
    **{k: _clean_files for k in FILES},
    **{k: _clean_picker for k in PICKERS},
}
