"""Checking a form definition: the designer's mistakes, each named by its dotted path
(`schema.properties.fault.x-visible-when.value`), and the normalised definition that states every
implied rule, for storage and for the console."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from jingwei.core.errors import Invalid

from .form_conditions import (
    ABSENT,
    Cond,
    Subject,
    evaluation_order,
    fields_of,
    never_shown,
    parse_condition,
)
from .form_fields import (
    CENT,
    DECIMAL_DIGITS,
    DEFAULTABLE,
    FILE_ID_PATTERN,
    FILE_LIMITS,
    INT_LIMIT,
    KEY_RE,
    KEYWORDS,
    KINDS,
    MAX_FIELDS,
    MAX_HELP,
    MAX_LABEL,
    MAX_OPTION_LENGTH,
    MAX_OPTIONS,
    MAX_PLACEHOLDER,
    MONEY_MAX,
    NOUNS,
    PICKER_LIMITS,
    REGION_DEPTH,
    RESERVED_KEYS,
    SCHEMA_URI,
    TEXT_LIMITS,
    TOP_KEYS,
    UI_KEYS,
    Context,
    Field,
    Problem,
    clean,
    is_aware,
    parse_date,
    parse_datetime,
    parse_decimal,
)
from .form_patterns import PatternError, compile_pattern


@dataclass(frozen=True)
class FormDefinition:
    """A checked definition. `fields` in display order; `data` is the normalised JSON (every
    implied rule written out) to store and to send to the console."""

    fields: tuple[Field, ...]
    data: Mapping[str, Any]
    evaluation_order: tuple[str, ...]
    by_key: Mapping[str, Field] = field(repr=False)

    def __getitem__(self, key: str) -> Field:
        return self.by_key[key]


# --- checking a definition -------------------------------------------------------------------


def _fail(path: str, message: str) -> Invalid:
    return Invalid(message, code="invalid_form", field=path)


def _int_keyword(
    schema: Mapping[str, Any], name: str, path: str, low: int, high: int
) -> int | None:
    if name not in schema:
        return None
    value = schema[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(f"{path}.{name}", f"{name} 应为 {low}—{high} 的整数")
    return value


def _label_text(ui: Mapping[str, Any], name: str, path: str, limit: int, required: bool) -> str:
    value = ui.get(name, "")
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
        need = "不能为空，且" if required else ""
        raise _fail(f"{path}.{name}", f"{need}应为不超过 {limit} 个字的文字")
    return value.strip()


class _DefinitionChecker:
    def __init__(self, data: Any):
        self.data = data

    def check(self) -> FormDefinition:
        data = self.data
        if not isinstance(data, Mapping):
            raise _fail("", "表单定义应为对象")
        extra = [k for k in data if k not in ("schema", "ui")]
        if extra:
            raise _fail(str(extra[0]), f"表单定义不认识的键：{extra[0]}（只有 schema 与 ui）")
        schema = data.get("schema")
        ui = data.get("ui")
        if not isinstance(schema, Mapping):
            raise _fail("schema", "缺少 schema（JSON Schema 对象）")
        if not isinstance(ui, Mapping):
            raise _fail("ui", "缺少 ui（每个字段的标签与控件）")
        for key in schema:
            if key not in TOP_KEYS:
                raise _fail(
                    f"schema.{key}", f"不支持的关键字 {key}：字段间的联动请用 x-visible-when"
                )
        if schema.get("$schema", SCHEMA_URI) != SCHEMA_URI:
            raise _fail("schema.$schema", f"$schema 应为 {SCHEMA_URI}")
        if schema.get("type", "object") != "object":
            raise _fail("schema.type", "表单的 type 应为 object")
        if schema.get("additionalProperties", False) is not False:
            raise _fail("schema.additionalProperties", "additionalProperties 应为 false")
        for name in ("title", "description"):
            if name in schema and not isinstance(schema[name], str):
                raise _fail(f"schema.{name}", f"{name} 应为文字")
        properties = schema.get("properties")
        if not isinstance(properties, Mapping) or not properties:
            raise _fail("schema.properties", "表单至少要有一个字段")
        if len(properties) > MAX_FIELDS:
            raise _fail("schema.properties", f"一个表单最多 {MAX_FIELDS} 个字段")
        for key in properties:
            if not isinstance(key, str) or not KEY_RE.match(key) or key in RESERVED_KEYS:
                raise _fail(
                    f"schema.properties.{key}",
                    f"字段键“{key}”无效：应以小写英文字母开头，只含小写字母、数字、下划线，"
                    "不超过 40 个字符（如 fault_desc），且不是保留字",
                )
        for key in ui:
            if key not in properties:
                raise _fail(f"ui.{key}", f"ui 里的“{key}”不是 schema 中的字段")
        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(k, str) for k in required):
            raise _fail("schema.required", "required 应为字段键的列表")
        for i, key in enumerate(required):
            if key not in properties:
                raise _fail(f"schema.required.{i}", f"必填字段“{key}”不在 properties 中")
        if len(set(required)) != len(required):
            raise _fail("schema.required", "required 中有重复的字段")

        keys = list(properties)
        kinds: dict[str, str] = {}
        for key in keys:
            entry = ui.get(key)
            if not isinstance(entry, Mapping):
                raise _fail(f"ui.{key}", f"请为字段“{key}”设置 ui（标签与控件）")
            widget = entry.get("widget")
            if not isinstance(widget, str) or widget not in KINDS:
                raise _fail(f"ui.{key}.widget", f"不认识的控件“{widget}”，可用：{'、'.join(KINDS)}")
            kinds[key] = widget

        # The fields themselves (rules, labels) first; conditions need every field's type.
        normal: dict[str, dict[str, Any]] = {}
        parsed: dict[str, dict[str, Any]] = {}
        for position, key in enumerate(keys):
            normal[key], parsed[key] = self.field(
                key, kinds[key], properties[key], ui[key], position, key in required
            )
        subjects = {
            key: Subject(kinds[key], parsed[key]["label"], parsed[key].get("options", ()))
            for key in keys
        }
        conditions: dict[str, Cond | None] = {}
        for key in keys:
            raw = (
                properties[key].get("x-visible-when")
                if isinstance(properties[key], Mapping)
                else None
            )
            path = f"schema.properties.{key}.x-visible-when"
            if raw is None:
                conditions[key] = None
                continue
            conditions[key] = parse_condition(
                raw, path, subjects, lambda k, v: self.condition_value(kinds[k], v)
            )
        display = sorted(keys, key=lambda k: (parsed[k]["order"], keys.index(k)))
        depends = {k: fields_of(c) for k, c in conditions.items() if c is not None}
        order = evaluation_order(depends, display)
        for key in never_shown(conditions, subjects, order):
            label = parsed[key]["label"]
            need = "必填字段" if key in required else "字段"
            raise _fail(
                f"schema.properties.{key}.x-visible-when",
                f"{need}“{label}”的显示条件永远不会成立，它将无法填写",
            )
        fields = tuple(
            Field(
                key=k,
                kind=kinds[k],
                condition=conditions[k],
                schema=normal[k],
                ui=copy.deepcopy(dict(ui[k])),
                required=k in required,
                **parsed[k],
            )
            for k in display
        )
        for f in fields:
            if "default" in f.schema:
                self.check_default(f)
        out_schema: dict[str, Any] = {
            "$schema": SCHEMA_URI,
            "type": "object",
            **{k: copy.deepcopy(schema[k]) for k in ("title", "description") if k in schema},
            "properties": {k: normal[k] for k in keys},
            "required": list(required),
            "additionalProperties": False,
        }
        out_ui = {
            k: {
                **copy.deepcopy(dict(ui[k])),
                "label": parsed[k]["label"],
                "order": parsed[k]["order"],
            }
            for k in keys
        }
        out = {"schema": out_schema, "ui": out_ui}
        return FormDefinition(fields, out, tuple(order), {f.key: f for f in fields})

    # -- one field --

    def field(
        self,
        key: str,
        kind: str,
        prop: Any,
        ui: Mapping[str, Any],
        position: int,
        required: bool,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        path = f"schema.properties.{key}"
        upath = f"ui.{key}"
        if not isinstance(prop, Mapping):
            raise _fail(path, "字段定义应为对象")
        label = _label_text(ui, "label", upath, MAX_LABEL, True)
        for name in ui:
            if name not in UI_KEYS and not (isinstance(name, str) and name.startswith("x-")):
                raise _fail(f"{upath}.{name}", f"ui 不认识的键：{name}（自定义展示项请以 x- 开头）")
        order = ui.get("order", (position + 1) * 10)
        if isinstance(order, bool) or not isinstance(order, int) or abs(order) > 10**6:
            raise _fail(f"{upath}.order", "order 应为整数")
        _label_text(ui, "help", upath, MAX_HELP, False)
        _label_text(ui, "placeholder", upath, MAX_PLACEHOLDER, False)
        allowed = KEYWORDS[kind] | {"type", "default", "x-visible-when"}
        for name in prop:
            if name not in allowed:
                hint = "（标签、说明请写在 ui 中）" if name in ("title", "description") else ""
                raise _fail(f"{path}.{name}", f"{KINDS[kind]}字段不支持关键字 {name}{hint}")
        if "default" in prop and kind not in DEFAULTABLE:
            raise _fail(f"{path}.default", f"{KINDS[kind]}字段不能设置默认值")
        out: dict[str, Any] = {"label": label, "order": order}
        schema: dict[str, Any] = copy.deepcopy(dict(prop))
        schema.pop("x-visible-when", None)
        getattr(self, f"kind_{kind}", self.kind_plain)(kind, schema, ui, path, out)
        if "pattern_message" in ui:
            if "pattern" not in schema:
                raise _fail(
                    f"{upath}.pattern_message", "没有格式规则（pattern）时不需要 pattern_message"
                )
            out["pattern_message"] = _label_text(
                ui, "pattern_message", upath, MAX_PLACEHOLDER, True
            )
        if "options" in ui and kind not in ("select", "multiselect"):
            raise _fail(f"{upath}.options", "只有单选、多选字段有选项")
        if "x-visible-when" in prop:
            schema["x-visible-when"] = copy.deepcopy(prop["x-visible-when"])
        return schema, out

    def expect_type(self, schema: dict[str, Any], path: str, kind: str, *types: str) -> str:
        given = schema.setdefault("type", types[0])
        if given not in types:
            raise _fail(f"{path}.type", f"{KINDS[kind]}字段的 type 应为 {' 或 '.join(types)}")
        return str(given)

    def expect_fixed(self, schema: dict[str, Any], path: str, name: str, value: Any) -> None:
        if schema.setdefault(name, value) != value:
            raise _fail(f"{path}.{name}", f"{name} 应为 {json.dumps(value, ensure_ascii=False)}")

    def kind_plain(self, kind: str, schema: dict[str, Any], ui: Any, path: str, out: Any) -> None:
        self.expect_type(schema, path, kind, "boolean" if kind == "boolean" else "string")
        if kind == "email":
            self.expect_fixed(schema, path, "format", "email")

    def kind_text(self, kind: str, schema: dict[str, Any], ui: Any, path: str, out: Any) -> None:
        self.expect_type(schema, path, kind, "string")
        default, cap = TEXT_LIMITS[kind]
        low = _int_keyword(schema, "minLength", path, 0, cap)
        high = _int_keyword(schema, "maxLength", path, 1, cap)
        if high is None:
            high = schema["maxLength"] = default
        if low is not None and low > high:
            raise _fail(f"{path}.minLength", f"最少字数 {low} 大于最多字数 {high}")
        out.update(min_length=low, max_length=high)
        if "pattern" in schema:
            try:
                out["pattern"] = compile_pattern(schema["pattern"])
            except PatternError as exc:
                raise _fail(f"{path}.pattern", exc.message) from exc

    kind_textarea = kind_text

    def kind_number(self, kind: str, schema: dict[str, Any], ui: Any, path: str, out: Any) -> None:
        if kind == "money":
            self.expect_type(schema, path, kind, "string")
        else:
            out["integer"] = self.expect_type(schema, path, kind, "number", "integer") == "integer"
        bounds: dict[str, Decimal] = {}
        for name in ("minimum", "maximum"):
            if name not in schema:
                continue
            raw = schema[name]
            value = parse_decimal(raw) if isinstance(raw, int | float) else None
            if value is None:
                raise _fail(f"{path}.{name}", f"{name} 应为数字")
            if kind == "money" and (value != value.quantize(CENT) or abs(value) > MONEY_MAX):
                raise _fail(f"{path}.{name}", f"金额的 {name} 应为不超过 {MONEY_MAX} 的两位小数")
            if kind != "money" and (
                abs(value) > INT_LIMIT or len(value.as_tuple().digits) > DECIMAL_DIGITS
            ):
                raise _fail(f"{path}.{name}", f"{name} 超出范围")
            bounds[name] = value
        if kind == "money":  # money is never negative unless the designer says so
            bounds.setdefault("minimum", Decimal(0))
            bounds.setdefault("maximum", MONEY_MAX)
            schema.setdefault("minimum", 0)
            schema.setdefault("maximum", float(MONEY_MAX))
        low, high = bounds.get("minimum"), bounds.get("maximum")
        if low is not None and high is not None and low > high:
            raise _fail(f"{path}.minimum", f"最小值 {low} 大于最大值 {high}")
        out.update(minimum=low, maximum=high)

    kind_money = kind_number

    def kind_date(self, kind: str, schema: dict[str, Any], ui: Any, path: str, out: Any) -> None:
        self.expect_type(schema, path, kind, "string")
        self.expect_fixed(schema, path, "format", "date" if kind == "date" else "date-time")
        token = "today" if kind == "date" else "now"
        parse = parse_date if kind == "date" else parse_datetime
        example = "2025-01-31" if kind == "date" else "2025-01-31T09:30:00+08:00"
        for name, slot in (("formatMinimum", "earliest"), ("formatMaximum", "latest")):
            if name not in schema:
                continue
            raw = schema[name]
            value = token if raw == token else parse(raw)
            if value is None or (isinstance(value, datetime) and not is_aware(value)):
                raise _fail(f"{path}.{name}", f'{name} 应为 {example} 这样的值，或 "{token}"')
            out[slot] = value
        low, high = out.get("earliest"), out.get("latest")
        if low is not None and high is not None and low != token and high != token and low > high:
            raise _fail(f"{path}.formatMinimum", "最早时间晚于最晚时间")

    kind_datetime = kind_date

    def kind_select(self, kind: str, schema: dict[str, Any], ui: Any, path: str, out: Any) -> None:
        self.expect_type(schema, path, kind, "string")
        out["options"] = self.options(schema.get("enum"), f"{path}.enum", ui, path)

    def kind_multiselect(
        self, kind: str, schema: dict[str, Any], ui: Any, path: str, out: Any
    ) -> None:
        self.expect_type(schema, path, kind, "array")
        items = schema.get("items")
        if not isinstance(items, Mapping) or set(items) - {"type", "enum"}:
            raise _fail(
                f"{path}.items", '多选字段的 items 应为 {"type": "string", "enum": [选项…]}'
            )
        items = schema["items"] = dict(items)
        if items.setdefault("type", "string") != "string":
            raise _fail(f"{path}.items.type", "多选的选项应为文字（type: string）")
        out["options"] = self.options(items.get("enum"), f"{path}.items.enum", ui, path)
        self.expect_fixed(schema, path, "uniqueItems", True)
        self.items_range(schema, path, out, len(out["options"]), len(out["options"]))

    def options(self, enum: Any, path: str, ui: Mapping[str, Any], fpath: str) -> tuple[str, ...]:
        if not isinstance(enum, list) or not enum or len(enum) > MAX_OPTIONS:
            raise _fail(path, f"请列出 1—{MAX_OPTIONS} 个选项（enum）")
        for i, value in enumerate(enum):
            if not isinstance(value, str) or not value.strip() or len(value) > MAX_OPTION_LENGTH:
                raise _fail(f"{path}.{i}", f"选项应为不超过 {MAX_OPTION_LENGTH} 个字的非空文字")
        seen: set[str] = set()
        for i, value in enumerate(enum):
            if value in seen:
                raise _fail(f"{path}.{i}", f"选项“{value}”重复")
            seen.add(value)
        labels = ui.get("options", {})
        key = fpath.replace("schema.properties.", "ui.") + ".options"
        if not isinstance(labels, Mapping):
            raise _fail(key, "options 应为 {选项值: 显示文字}")
        for value, label in labels.items():
            if value not in seen:
                raise _fail(f"{key}.{value}", f"“{value}”不是该字段的选项")
            if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL:
                raise _fail(
                    f"{key}.{value}", f"选项的显示文字应为不超过 {MAX_LABEL} 个字的非空文字"
                )
        return tuple(enum)

    def items_range(
        self, schema: dict[str, Any], path: str, out: Any, default: int, cap: int
    ) -> None:
        low = _int_keyword(schema, "minItems", path, 0, cap)
        high = _int_keyword(schema, "maxItems", path, 1, cap)
        if high is None:
            high = schema["maxItems"] = default
        if low is not None and low > high:
            raise _fail(f"{path}.minItems", f"最少数量 {low} 大于最多数量 {high}")
        out.update(min_items=low, max_items=high)

    def kind_region(self, kind: str, schema: dict[str, Any], ui: Any, path: str, out: Any) -> None:
        self.expect_type(schema, path, kind, "array")
        self.expect_fixed(schema, path, "items", {"type": ["integer", "string"]})
        self.items_range(schema, path, out, REGION_DEPTH, REGION_DEPTH)

    def kind_files(self, kind: str, schema: dict[str, Any], ui: Any, path: str, out: Any) -> None:
        self.expect_type(schema, path, kind, "array")
        self.expect_fixed(schema, path, "items", {"type": "string", "pattern": FILE_ID_PATTERN})
        self.expect_fixed(schema, path, "uniqueItems", True)
        default, cap = FILE_LIMITS[kind]
        self.items_range(schema, path, out, default, cap)

    kind_attachment = kind_photo = kind_signature = kind_files

    def kind_picker(self, kind: str, schema: dict[str, Any], ui: Any, path: str, out: Any) -> None:
        if self.expect_type(schema, path, kind, "integer", "array") == "integer":
            for name in KEYWORDS[kind]:
                if name in schema:
                    raise _fail(
                        f"{path}.{name}",
                        f"单选的{NOUNS[kind]}字段不支持 {name}（多选请用 type: array）",
                    )
            return
        out["multiple"] = True
        self.expect_fixed(schema, path, "items", {"type": "integer"})
        self.expect_fixed(schema, path, "uniqueItems", True)
        self.items_range(schema, path, out, *PICKER_LIMITS)

    kind_customer = kind_product = kind_part = kind_project = kind_picker

    # -- values the designer writes: defaults and condition values --

    def condition_value(self, kind: str, raw: Any) -> Any:
        """A condition's value in the cleaned type of the field it is compared with."""
        if kind in ("number", "money"):
            value = parse_decimal(raw)
            if value is None:
                raise ValueError("应为数字")
            return value
        if kind == "date":
            day = parse_date(raw)
            if day is None:
                raise ValueError("应为日期，如 2025-01-31")
            return day
        if kind == "datetime":
            moment = parse_datetime(raw)
            if moment is None or not is_aware(moment):
                raise ValueError("应为带时区的时间，如 2025-01-31T09:30:00+08:00")
            return moment
        if kind == "boolean":
            if not isinstance(raw, bool):
                raise ValueError("应为 true 或 false")
            return raw
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError("应为非空文字")
        return raw.strip()

    def check_default(self, f: Field) -> None:
        try:
            value = clean(f, f.schema["default"], Context.fixed())
        except Problem as exc:
            raise _fail(
                f"schema.properties.{f.key}.default", f"默认值不符合字段规则：{exc.message}"
            ) from exc
        if value is ABSENT:
            raise _fail(f"schema.properties.{f.key}.default", "默认值不能为空")


def check_definition(definition: Any) -> FormDefinition:
    """The checked definition, or `Invalid` (code `invalid_form`) whose `field` is the dotted
    path of the designer's mistake, e.g. `schema.properties.fault.x-visible-when.value`."""
    if isinstance(definition, FormDefinition):
        return definition
    return _DefinitionChecker(definition).check()
