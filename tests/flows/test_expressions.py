"""The safe CEL evaluator behind sequence-flow conditions (jingwei.flows.expressions).

Database-free. Budgets are asserted with counters (the module's own step counter and an
independent count of interpreter node visits), never with wall-clock timing.
"""

from __future__ import annotations

import ast
import builtins
import datetime as dt
import inspect
import pickle
import string
from contextlib import contextmanager
from decimal import Decimal
from typing import Any
from unittest import mock

import lark.visitors
import pytest
from celpy.evaluation import Activation, Evaluator
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from jingwei.flows import expressions as ex
from jingwei.flows.expressions import (
    MAX_EXPRESSION_LENGTH,
    MAX_MACRO_NESTING,
    MAX_STEPS,
    EvaluationStats,
    Expression,
    ExpressionError,
    check,
    compile_expression,
    evaluate_condition,
)

UTC = dt.UTC
CST = dt.timezone(dt.timedelta(hours=8))

CASE: dict[str, Any] = {
    "amount": Decimal("5000.00"),
    "form": {"service_type": "售后服务", "客户名称": "张三", "discount": Decimal("0.95")},
    "customer": {"tier": "VIP", "name": "李四", "level": 3},
    "tags": ["冷链", "加急"],
    "parts": [{"sku": "A-1", "price": 50}, {"sku": "B-2", "price": 150}],
    "approved": True,
    "note": None,
    "created_at": dt.datetime(2025, 3, 1, 9, 30, tzinfo=CST),
    "sla": dt.timedelta(hours=4),
}


def run(text: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    return compile_expression(text).evaluate(CASE if data is None else data, **kwargs)


def error_of(text: str, data: dict[str, Any] | None = None, **kwargs: Any) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        run(text, data, **kwargs)
    return info.value


@contextmanager
def counting_visits() -> Any:
    """Independently count every node the interpreter visits (lark's dispatch)."""
    counter = {"visits": 0}
    original = lark.visitors.Interpreter._visit_tree

    def spy(self: Any, tree: Any) -> Any:
        counter["visits"] += 1
        return original(self, tree)

    with mock.patch.object(lark.visitors.Interpreter, "_visit_tree", spy):
        yield counter


# --------------------------------------------------------------------------- typical


class TestTypicalConditions:
    @pytest.mark.parametrize(
        ("service", "tier", "expected"),
        [
            ("售后服务", "VIP", True),
            ("售后服务", "普通", False),
            ("安装服务", "VIP", False),
            ("安装服务", "普通", False),
        ],
    )
    def test_after_sales_routing(self, service: str, tier: str, expected: bool) -> None:
        data = {"form": {"service_type": service}, "customer": {"tier": tier}}
        text = 'form.service_type == "售后服务" && customer.tier == "VIP"'
        assert evaluate_condition(text, data) is expected

    @pytest.mark.parametrize(
        ("amount", "small", "large"),
        [
            (Decimal("4999.99"), True, False),
            (Decimal("5000"), True, False),
            (Decimal("5000.00"), True, False),
            (Decimal("5000.000000001"), False, True),
            (Decimal("5000.01"), False, True),
            (Decimal("-1"), True, False),
        ],
    )
    def test_approval_threshold(self, amount: Decimal, small: bool, large: bool) -> None:
        data = {"amount": amount}
        assert evaluate_condition("amount <= 5000", data) is small
        assert evaluate_condition("amount > 5000", data) is large
        # The mirrored forms give the same answer (celpy alone gets these wrong).
        assert evaluate_condition("5000 >= amount", data) is small
        assert evaluate_condition("5000 < amount", data) is large

    def test_tags_and_parts(self) -> None:
        assert evaluate_condition('"冷链" in tags', CASE) is True
        assert evaluate_condition('"常温" in tags', CASE) is False
        assert evaluate_condition("size(parts) > 0", CASE) is True
        assert evaluate_condition("size(parts) > 0", {"parts": []}) is False
        assert evaluate_condition("parts.exists(p, p.price > 100)", CASE) is True
        assert evaluate_condition("parts.all(p, p.price > 100)", CASE) is False
        assert evaluate_condition('parts.exists_one(p, p.sku.startsWith("B"))', CASE) is True
        assert evaluate_condition("tags.size() == 2 && !approved == false", CASE) is True

    def test_chinese_strings_and_keys(self) -> None:
        assert run('form["客户名称"]') == "张三"
        assert run('customer.name + "先生"') == "李四先生"
        assert run('size("售后服务")') == 4
        assert evaluate_condition('form["客户名称"].startsWith("张")', CASE) is True
        assert evaluate_condition('"服务" in ["售后服务", "服务"]', CASE) is True
        assert evaluate_condition('form.service_type.contains("售后")', CASE) is True
        assert evaluate_condition('form.service_type.matches("^售后")', CASE) is True

    def test_computed_values_are_plain_python(self) -> None:
        assert run("size(parts) * 2") == 4
        assert type(run("size(parts) * 2")) is int
        assert run("parts.map(p, p.price)") == [50, 150]
        assert run("parts.filter(p, p.price > 100).map(p, p.sku)") == ["B-2"]
        assert run('{"total": amount, "vip": customer.tier == "VIP"}') == {
            "total": Decimal("5000.00"),
            "vip": True,
        }
        assert run("note") is None
        assert run("1.5 * 2.0") == 3.0
        assert run('b"abc"') == b"abc"
        assert run("customer.level > 2 ? 'high' : 'low'") == "high"

    def test_timestamps_and_durations(self) -> None:
        assert evaluate_condition('created_at < timestamp("2025-03-01T02:00:00Z")', CASE) is True
        assert run('created_at + duration("1h30m")') == dt.datetime(2025, 3, 1, 11, 0, tzinfo=CST)
        assert run("created_at + sla") == dt.datetime(2025, 3, 1, 13, 30, tzinfo=CST)
        assert run('duration("90m")') == dt.timedelta(minutes=90)
        assert run('duration("-1.5s")') == dt.timedelta(seconds=-1.5)
        assert run('created_at.getHours("Asia/Shanghai")') == 9
        assert run('created_at.getHours("+08:00")') == 9
        assert run("created_at.getHours()") == 1  # UTC
        result = run("created_at")
        assert result == CASE["created_at"]
        assert result.tzinfo is not None

    def test_logical_operators_follow_cel(self) -> None:
        # CEL's && and || are commutative with errors: a definite answer wins.
        assert evaluate_condition("false && missing_field", {}) is False
        assert evaluate_condition("missing_field && false", {}) is False
        assert evaluate_condition("true || missing_field", {}) is True
        assert evaluate_condition("missing_field || true", {}) is True
        with pytest.raises(ExpressionError):
            evaluate_condition("true && missing_field", {})

    def test_macros_follow_cel_error_rules(self) -> None:
        assert evaluate_condition("[1, 0].exists(x, 1 / x > 0)", {}) is True  # a true decides
        assert evaluate_condition("[0, 1].all(x, 1 / x < 0)", {}) is False  # a false decides
        assert error_of("[1, 0].all(x, 1 / x > 0)", {}).message == "除数不能为零"
        assert error_of("[1, 0].exists(x, 1 / x < 0)", {}).message == "除数不能为零"
        assert error_of("[1, 0].exists_one(x, 1 / x > 0)", {}).message == "除数不能为零"
        assert error_of("[1, 2].filter(x, x)", {}).kind == "type"
        assert error_of("[1, 2].all(x, x)", {}).kind == "type"
        assert error_of("[1, 0].map(x, 1 / x)", {}).message == "除数不能为零"
        assert run('{"a": 1, "b": 2}.map(k, k)', {}) == ["a", "b"]
        assert run("[].all(x, x)", {}) is True
        assert run("[].exists(x, x)", {}) is False
        # Strings are not lists (celpy would iterate their characters).
        assert error_of('"abc".exists(c, c == "a")', {}).kind == "type"
        assert error_of("string([1, 2])", {}).kind == "type"

    def test_failing_macro_elements_do_not_blow_up(self) -> None:
        # Regression: celpy's all()/exists() doubled the error text on every element.
        numbers = "[" + ",".join(str(i) for i in range(60)) + "]"
        stats = EvaluationStats()
        with counting_visits() as counter:
            error = error_of(f'{numbers}.all(v, double("x") > 0.0)', {}, stats=stats)
        assert len(str(error)) < 200
        assert counter["visits"] <= stats.steps <= MAX_STEPS

    def test_non_identifier_top_level_keys_are_invisible(self) -> None:
        data = {"客户": "x", "a-b": 1, "ok": True}
        assert evaluate_condition("ok", data) is True
        assert evaluate_condition("has(ok)", data) is True


# --------------------------------------------------------------------------- money


class TestMoney:
    def test_boundaries_are_exact(self) -> None:
        for text, amount, expected in [
            ("amount <= 5000", "5000.00", True),
            ("amount <= 5000", "5000.01", False),
            ("amount < 5000.01", "5000.00", True),
            ("amount < 5000.01", "5000.01", False),
            ("amount >= 5000.01", "5000.01", True),
            ("amount == 5000", "5000.00", True),
            ("amount != 5000", "5000.00", False),
            ("amount == 0.1 + 0.2", "0.3", False),  # 0.1 + 0.2 is a float sum; no magic
            ("amount == 0.3", "0.3", True),  # the literal as written, not the binary float
            ("amount in [5000, 6000]", "5000.00", True),
            ("amount in [5000.01, 6000]", "5000.00", False),
            ("amount == null", "1", False),
            ("amount != null", "1", True),
        ]:
            got = evaluate_condition(text, {"amount": Decimal(amount)})
            assert got is expected, (text, amount)

    def test_numbers_compare_across_kinds(self) -> None:
        assert evaluate_condition("amount <= 5000", {"amount": 5000.5}) is False
        assert evaluate_condition("amount <= 5000", {"amount": 4999.99}) is True
        assert evaluate_condition("1 == 1.0 && 2u > 1 && 1 < 1.5", {}) is True
        assert evaluate_condition("5000 in [4000.0, 5000.0]", {}) is True
        assert evaluate_condition("amount == 5000", {"amount": Decimal("5000.00")}) is True
        # Money stored as text (a JSONField with DjangoJSONEncoder) compares via decimal().
        assert evaluate_condition("decimal(amount) <= 5000", {"amount": "5000.01"}) is False
        assert evaluate_condition("decimal(amount) <= 5000", {"amount": "5000.00"}) is True

    def test_null_comparisons(self) -> None:
        assert evaluate_condition("note == null && customer.level != null", CASE) is True
        assert evaluate_condition("tags != null && form != null && amount != null", CASE) is True
        assert evaluate_condition("null == null", {}) is True

    def test_arithmetic_stays_decimal(self) -> None:
        data = {"amount": Decimal("5000.01"), "rate": Decimal("0.06")}
        assert run("amount + 0.01", data) == Decimal("5000.02")
        assert run("0.01 + amount", data) == Decimal("5000.02")
        assert run("amount * 3", data) == Decimal("15000.03")
        assert run("3 * amount", data) == Decimal("15000.03")
        assert run("amount - decimal('0.01')", data) == Decimal("5000.00")
        assert run("amount * rate", data) == Decimal("300.0006")
        assert run("amount * decimal('0.06')", data) == Decimal("300.0006")
        assert run("-amount", data) == Decimal("-5000.01")
        assert run("amount % 1000", data) == Decimal("0.01")
        assert run("amount / 4", data) == Decimal("1250.0025")
        for text in ["amount + 0.01", "amount * 3", "amount * rate", "-amount"]:
            assert isinstance(run(text, data), Decimal)
        # 0.1 + 0.2 in floats is 0.30000000000000004; with money it is exact.
        assert evaluate_condition("amount + 0.1 + 0.2 == 0.3", {"amount": Decimal(0)}) is True

    def test_conversions(self) -> None:
        data = {"amount": Decimal("5000.99")}
        assert run("string(amount)", data) == "5000.99"
        assert run("int(amount)", data) == 5000
        assert run("double(amount)", data) == 5000.99
        assert run("decimal('12.30')", data) == Decimal("12.30")
        assert run("decimal(12)", data) == Decimal(12)
        assert error_of("decimal('abc')", data).kind == "eval"
        assert error_of("decimal('NaN')", data).kind == "eval"

    @pytest.mark.parametrize(
        "text",
        ["amount + 'x'", "amount < '5000'", "amount == true", "amount * [1]", "amount > {}"],
    )
    def test_money_type_errors(self, text: str) -> None:
        error = error_of(text, {"amount": Decimal("1.00")})
        assert error.kind == "type"
        assert "类型不匹配" in error.message

    def test_division_by_zero(self) -> None:
        assert error_of("amount / 0", {"amount": Decimal(1)}).message == "除数不能为零"
        assert error_of("amount % 0", {"amount": Decimal(1)}).message == "除数不能为零"
        assert error_of("amount / 0", {"amount": Decimal(0)}).message == "除数不能为零"

    @settings(max_examples=200, deadline=None)
    @given(
        amount=st.decimals(min_value=-(10**9), max_value=10**9, places=2),
        threshold=st.integers(min_value=-(10**9), max_value=10**9),
    )
    def test_comparisons_agree_with_decimal(self, amount: Decimal, threshold: int) -> None:
        data = {"amount": amount}
        assert evaluate_condition(f"amount <= {threshold}", data) is (amount <= threshold)
        assert evaluate_condition(f"{threshold} < amount", data) is (threshold < amount)
        assert evaluate_condition(f"amount == {threshold}", data) is (amount == threshold)

    @settings(max_examples=200, deadline=None)
    @given(
        a=st.decimals(min_value=-(10**9), max_value=10**9, places=2),
        b=st.decimals(min_value=-(10**9), max_value=10**9, places=2),
    )
    def test_sums_are_exact(self, a: Decimal, b: Decimal) -> None:
        assert run("a + b", {"a": a, "b": b}) == a + b
        assert run("a - b", {"a": a, "b": b}) == a - b
        assert run(f"a + {b}", {"a": a}) == a + b  # a double literal means what it says


# --------------------------------------------------------------------------- errors


class TestMissingFields:
    def test_missing_variable_is_named(self) -> None:
        error = error_of("amount <= 5000", {})
        assert error.kind == "missing"
        assert "amount" in error.message
        assert (error.line, error.column) == (1, 1)

    def test_missing_nested_field_names_the_path(self) -> None:
        error = error_of('customer.tier == "VIP"', {"customer": {}})
        assert error.kind == "missing"
        assert "customer.tier" in error.message
        error = error_of('form["客户电话"] == "1"', {"form": {}})
        assert error.kind == "missing"
        assert "客户电话" in error.message

    def test_has_idiom(self) -> None:
        text = 'has(customer.tier) && customer.tier == "VIP"'
        assert evaluate_condition(text, {"customer": {}}) is False
        assert evaluate_condition(text, {"customer": {"tier": "VIP"}}) is True
        assert evaluate_condition('"tier" in customer', {"customer": {}}) is False
        assert evaluate_condition("has(amount)", {}) is False

    def test_index_out_of_range(self) -> None:
        assert "越界" in error_of("parts[5].price > 0").message
        assert "越界" in error_of("tags[-1]").message  # no Python negative indexing
        assert run("tags[1]") == "加急"

    def test_unsupported_data_only_fails_when_used(self) -> None:
        data = {
            "ok": True,
            "naive": dt.datetime(2025, 1, 1),
            "thing": object(),
            "huge": 2**70,
            "nan": Decimal("NaN"),
        }
        assert evaluate_condition("ok", data) is True
        for name in ["naive", "thing", "huge", "nan"]:
            error = error_of(f"{name} == 1", data)
            assert error.kind == "data"
            assert name in error.message

    def test_cyclic_data_is_cut(self) -> None:
        loop: dict[str, Any] = {}
        loop["self"] = loop
        assert evaluate_condition("has(loop.self)", {"loop": loop}) is True
        deep = "loop" + ".self" * 40
        assert error_of(f"{deep} == 1", {"loop": loop}).kind in {"data", "limit"}

    def test_data_must_be_a_mapping(self) -> None:
        with pytest.raises(ExpressionError):
            compile_expression("1 == 1").evaluate([1, 2])  # type: ignore[arg-type]


class TestTypeErrors:
    @pytest.mark.parametrize(
        "text",
        ['"a" + 1', '"a" < 1', "size(5)", "!5", "1 ? 2 : 3", "1 + 1.5", "tags.price", "-'x'"],
    )
    def test_type_mismatch(self, text: str) -> None:
        error = error_of(text)
        assert error.kind == "type", error
        assert error.line == 1

    @pytest.mark.parametrize(
        ("text", "kind"),
        [
            ("amount", "decimal"),
            ("1", "int"),
            ('"true"', "string"),
            ("tags", "list"),
            ("null", "null"),
            ("form", "map"),
        ],
    )
    def test_conditions_must_be_bool(self, text: str, kind: str) -> None:
        with pytest.raises(ExpressionError) as info:
            evaluate_condition(text, CASE)
        assert info.value.kind == "type"
        assert kind in info.value.message
        assert "true 或 false" in info.value.message

    def test_overflow(self) -> None:
        assert error_of("9223372036854775807 + 1").kind == "eval"
        assert error_of('int("' + "9" * 30 + '")').kind == "eval"

    def test_non_data_results(self) -> None:
        assert error_of("size").kind == "type"
        assert error_of("type(1)").kind == "type"
        assert evaluate_condition("type(1) == int", {}) is True


class TestSyntaxErrors:
    @pytest.mark.parametrize(
        ("text", "fragment", "column"),
        [
            ("amount <=", "不完整", 10),
            ("a = 1", "==", 3),
            ("a and b", "&&", 3),
            ("a or b", "||", 3),
            ("1 +* 2", "“*”", 4),
            ("@x", "“@”", 1),
            ('name == "张三', "结束引号", 9),
            ("a.b(", "不完整", 5),
            (")", "“)”", 1),
        ],
    )
    def test_messages_and_positions(self, text: str, fragment: str, column: int) -> None:
        with pytest.raises(ExpressionError) as info:
            compile_expression(text)
        error = info.value
        assert error.kind == "syntax"
        assert "语法错误" in error.message
        assert fragment in error.message
        assert (error.line, error.column) == (1, column)
        assert f"第 1 行第 {column} 列" in str(error)

    def test_multiline_position(self) -> None:
        with pytest.raises(ExpressionError) as info:
            compile_expression('amount > 1 &&\n  customer.tier = "VIP"')
        assert (info.value.line, info.value.column) == (2, 17)

    def test_empty_and_too_long(self) -> None:
        assert check("") == "表达式不能为空"
        assert check("   ") == "表达式不能为空"
        message = check("1 + " * 600 + "1")
        assert message is not None
        assert "过长" in message
        assert check(123) is not None  # type: ignore[arg-type]

    def test_check(self) -> None:
        assert check('form.service_type == "售后服务" && customer.tier == "VIP"') is None
        assert check("amount <= 5000") is None
        assert check("has(form.x) ? form.x > 1 : false") is None
        message = check("amount <=")
        assert message is not None
        assert "第 1 行" in message
        # check() is static: a missing field is not a syntax error.
        assert check("no_such_field > 1") is None
        assert check("no_such_function(1)") == "未知函数“no_such_function”（第 1 行第 1 列）"

    def test_errors_pickle_with_their_details(self) -> None:
        with pytest.raises(ExpressionError) as info:
            compile_expression("a = 1")
        copy = pickle.loads(pickle.dumps(info.value))
        assert isinstance(copy, ExpressionError)
        assert (copy.kind, copy.line, copy.column, str(copy)) == (
            "syntax",
            1,
            3,
            str(info.value),
        )

    def test_compiled_programs_are_cached(self) -> None:
        text = "amount <= 5000 && size(tags) >= 0"
        first = compile_expression(text)
        assert compile_expression(text) is first
        assert isinstance(first, Expression)
        assert first.evaluate_condition(CASE) is True


# --------------------------------------------------------------------------- safety

HOSTILE = [
    "__import__('os')",
    "__import__('os').system('ls')",
    "open('/etc/passwd')",
    "open('/etc/passwd').read()",
    "eval('1+1')",
    "exec('import os')",
    "compile('1', 'x', 'eval')",
    "getattr(form, '__class__')",
    "globals()",
    "locals()",
    "vars()",
    "dir()",
    "breakpoint()",
    "import os",
    "os.system('ls')",
    "os.environ",
    "environ['HOME']",
    "sys.modules",
    "__builtins__",
    "__builtins__.open('/etc/passwd')",
    "form.__class__",
    "form.__class__.__mro__",
    "form.__class__.__subclasses__()",
    "''.__class__.__mro__[1].__subclasses__()",
    "tags.__len__()",
    "size.__globals__",
    "size.__code__",
    "type(1).__name__",
    "type(form).__subclasses__()",
    "int.__dict__",
    "form['__class__']",
    "form.__dict__",
    "amount.__class__",
    "amount.as_tuple()",
    "customer.__getitem__('tier')",
    "tags.append('x')",
    "tags.pop()",
    "created_at.astimezone()",
    "created_at.replace(year=1)",
    "created_at.getHours('../../../../etc/passwd')",
    "created_at.getHours('/etc/passwd')",
    "created_at.getDate('..\\\\..\\\\windows')",
    "google.protobuf.Struct{fields: {}}",
    "int{}",
    ".open('/etc/passwd')",
    "[1,2,3].reduce(a, x, 0, a + x)",
    "[3,1].min()",
    "list([1])",
    "map({})",
    "null_type(1)",
    "dyn(open)",
    "has(open)",
    "timestamp('2025-01-01T00:00:00Z').__class__",
    "duration('" + "a" * 40 + "!')",
    "'" + "1h" * 30 + "'.duration()",
    "timestamp('" + "9" * 60 + "')",
    "'" + "a" * 30 + "!'.matches('(a+)+$')",
    "'x'.matches('(' * 10)",
    '"' + "\\\\" * 40,
    '"' + "\\a" * 40,
    "'''" + "\\a" * 40,
    'b"' + "\\\\" * 40,
    "(" * 10_000 + "1" + ")" * 10_000,
    "(" * 990 + "1" + ")" * 990,
    "!" * 1990 + "true",
    "-" * 1990 + "1",
    "[" * 600 + "]" * 600,
    "1" + " + 1" * 490,
    "a" + ".b" * 900,
    "[" + ",".join(["1"] * 900) + "]",
    "[1,2,3].map(x, " * 10 + "x" + ")" * 10,
    "{" + ",".join(f"'{i}': {i}" for i in range(300)) + "}",
    "true || [1,2].map(x, [1,2].map(y, [1,2].map(z, [1,2].map(w, w))))",
]


class TestHostileInputs:
    @pytest.mark.parametrize("text", HOSTILE)
    def test_refused_or_harmless(self, text: str) -> None:
        opened: list[Any] = []

        def no_open(*args: Any, **kwargs: Any) -> Any:
            opened.append(args)
            raise AssertionError("expression touched the file system")

        stats = EvaluationStats()
        with (
            mock.patch.object(builtins, "open", no_open),
            mock.patch("io.open", no_open),
            mock.patch("os.open", no_open),
            mock.patch("os.system", no_open),
            mock.patch.object(builtins, "eval", no_open),
            mock.patch.object(builtins, "exec", no_open),
            counting_visits() as counter,
        ):
            try:
                result = compile_expression(text).evaluate(CASE, stats=stats)
            except ExpressionError as error:
                assert error.kind in {"syntax", "limit", "missing", "type", "eval", "data"}
            else:
                # Whatever evaluated is plain data, never a Python object or module.
                assert result is None or isinstance(
                    result, (bool, int, float, str, bytes, Decimal, list, dict)
                )
        assert opened == []
        assert stats.steps <= MAX_STEPS
        assert counter["visits"] <= MAX_STEPS

    def test_dunder_access_is_a_missing_field(self) -> None:
        for text in ["form.__class__", "form['__class__']", "form.__dict__"]:
            assert error_of(text).kind == "missing"
        assert error_of("type(1).__name__").kind == "type"

    def test_unknown_functions_are_rejected_at_compile_time(self) -> None:
        for text, name in [
            ("__import__('os')", "__import__"),
            ("open('/etc/passwd')", "open"),
            ("eval('1')", "eval"),
        ]:
            message = check(text)
            assert message is not None
            assert f"未知函数“{name}”" in message

    def test_deep_nesting_is_refused_statically(self) -> None:
        for text in ["(" * 10_000 + "1" + ")" * 10_000, "(" * 990 + "1" + ")" * 990]:
            with pytest.raises(ExpressionError) as info:
                compile_expression(text)
            assert info.value.kind == "limit"
        assert len("(" * 990 + "1" + ")" * 990) <= MAX_EXPRESSION_LENGTH

    def test_macro_nesting_is_refused_statically(self) -> None:
        nested = "[1,2,3].map(x, " * (MAX_MACRO_NESTING + 1) + "x" + ")" * (MAX_MACRO_NESTING + 1)
        with pytest.raises(ExpressionError) as info:
            compile_expression(nested)
        assert info.value.kind == "limit"
        assert "嵌套" in info.value.message
        ok = "[1,2,3].map(x, " * MAX_MACRO_NESTING + "x" + ")" * MAX_MACRO_NESTING
        assert run(ok) == [[[1, 2, 3]] * 3] * 3

    def test_macro_explosion_is_stopped_by_the_budget(self) -> None:
        numbers = "[" + ",".join(str(i) for i in range(100)) + "]"
        text = f"{numbers}.map(a, {numbers}.map(b, {numbers}.map(c, a + b + c)))"
        stats = EvaluationStats()
        with counting_visits() as counter, pytest.raises(ExpressionError) as info:
            compile_expression(text).evaluate({}, stats=stats)
        assert info.value.kind == "limit"
        assert stats.steps == MAX_STEPS
        # 10**6 inner evaluations were requested; the walk really stopped at the budget.
        assert counter["visits"] <= MAX_STEPS

    def test_budget_is_configurable_and_exact(self) -> None:
        text = "[1,2,3,4,5,6,7,8,9,10].map(x, x * x)"
        stats = EvaluationStats()
        assert compile_expression(text).evaluate({}, stats=stats) == [i * i for i in range(1, 11)]
        needed = stats.steps
        assert compile_expression(text).evaluate({}, max_steps=needed) == [
            i * i for i in range(1, 11)
        ]
        with pytest.raises(ExpressionError) as info:
            compile_expression(text).evaluate({}, max_steps=needed - 1)
        assert info.value.kind == "limit"

    def test_limits_cannot_be_swallowed(self) -> None:
        numbers = "[" + ",".join(str(i) for i in range(60)) + "]"
        runaway = f"{numbers}.map(a, {numbers}.map(b, {numbers}.map(c, c)))"
        for text in [
            f"true || size({runaway}) > 0",
            f"has({runaway}.x)",
            f"false && {runaway}.exists(x, true)",
            f"{runaway}.exists(x, true) || true",
        ]:
            assert error_of(text, {}).kind == "limit", text

    def test_string_growth_is_capped(self) -> None:
        data = {"s": "长" * 60_000}
        assert run("size(s)", data) == 60_000  # case data itself is exempt
        assert error_of("s + s", data).kind == "limit"
        assert error_of("[s, s].map(x, x + x)", data).kind == "limit"

    def test_reference_multiplication_is_capped(self) -> None:
        numbers = "[" + ",".join(str(i) for i in range(100)) + "]"
        text = (
            f"{numbers}.map(x, {numbers}).map(y, [y, y, y, y, y, y, y, y])"
            ".map(z, [z, z, z, z, z, z, z, z]) == []"
        )
        assert error_of(text, {}).kind == "limit"
        # Large case data in a loop pays for every time it is touched.
        big = {"tags": [str(i) for i in range(5000)]}
        assert error_of("tags.all(t, t in tags)", big).kind == "limit"
        assert evaluate_condition('"4999" in tags', big) is True

    def test_stack_guard(self) -> None:
        """Deep expressions called from deep in the stack are refused, not a RecursionError."""
        text = "(" * 30 + "1" + ")" * 30
        assert run(text, {}) == 1

        def deep() -> Any:
            if ex.sys.getrecursionlimit() - ex._stack_depth() > 200:
                return deep()
            return run(text, {})

        with pytest.raises(ExpressionError) as info:
            deep()
        assert info.value.kind == "limit"

    def test_module_never_calls_dynamic_code(self) -> None:
        tree = ast.parse(inspect.getsource(ex))
        forbidden = {"eval", "exec", "compile", "__import__", "getattr", "setattr", "open"}
        called = {
            node.func.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        }
        # getattr is used once, on a lark Meta with a constant attribute name.
        assert called & forbidden <= {"getattr"}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "getattr"
            ):
                assert isinstance(node.args[1], ast.Constant)
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        # celpy's transpiling runner is the part that uses exec(); only the interpreter is used.
        assert not imported & {"CompiledRunner", "Transpiler", "Environment", "Runner"}


# --------------------------------------------------------------------------- fuzzing

TOKENS = [
    "amount",
    "form",
    "customer",
    "tags",
    "parts",
    "created_at",
    "x",
    "p",
    "__class__",
    "__import__",
    "__globals__",
    "open",
    "size",
    "has",
    "map",
    "filter",
    "all",
    "exists",
    "exists_one",
    "reduce",
    "int",
    "string",
    "double",
    "decimal",
    "duration",
    "timestamp",
    "type",
    "matches",
    "startsWith",
    "getHours",
    "true",
    "false",
    "null",
    "in",
    "0",
    "1",
    "-1",
    "5000",
    "5000.01",
    "1e308",
    "9223372036854775807",
    "18446744073709551615u",
    '"售后服务"',
    '"VIP"',
    '"冷链"',
    "'1h'",
    "'2025-01-01T00:00:00Z'",
    "b'x'",
    "r'\\d+'",
    '"',
    "'",
    '"""',
    "\\",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ".",
    ",",
    ":",
    "?",
    "!",
    "-",
    "+",
    "*",
    "/",
    "%",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "!=",
    "&&",
    "||",
    "=",
    "//",
    "\n",
]

FUZZ_DATA: dict[str, Any] = {
    **CASE,
    "x": [1, 2, 3],
    "p": {"price": Decimal("9.99"), "items": [[1], [2, [3]]]},
}


def _fuzz_evaluate(text: str, max_steps: int = 2_000) -> None:
    stats = EvaluationStats()
    with counting_visits() as counter:
        try:
            expression = compile_expression(text)
        except ExpressionError as error:
            assert error.kind in {"syntax", "limit"}
            assert check(text) == str(error)
            return
        assert check(text) is None
        try:
            expression.evaluate(FUZZ_DATA, max_steps=max_steps, stats=stats)
        except ExpressionError as error:
            assert error.message
    assert stats.steps <= max_steps
    assert counter["visits"] <= max_steps


FUZZ_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@FUZZ_SETTINGS
@given(st.text(max_size=200))
def test_fuzz_random_text(text: str) -> None:
    _fuzz_evaluate(text)


@FUZZ_SETTINGS
@given(st.text(alphabet=string.printable + "售后服务冷链“”（）", max_size=200))
def test_fuzz_printable_text(text: str) -> None:
    _fuzz_evaluate(text)


@FUZZ_SETTINGS
@given(
    st.lists(st.sampled_from(TOKENS), max_size=60),
    st.sampled_from(["", " "]),
)
def test_fuzz_token_soup(tokens: list[str], glue: str) -> None:
    _fuzz_evaluate(glue.join(tokens))


def _expressions() -> st.SearchStrategy[str]:
    atoms = st.sampled_from(
        [
            "amount",
            "customer.tier",
            "form.service_type",
            'form["客户名称"]',
            "tags",
            "parts",
            "x",
            "p.price",
            "p.items",
            "missing",
            "1",
            "0",
            "2.5",
            "5000",
            '"售后服务"',
            "true",
            "null",
            "[1, 2, 3]",
            '{"k": 1}',
            "created_at",
            'duration("1h")',
            "decimal('0.01')",
        ]
    )

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binary = st.tuples(
            inner,
            st.sampled_from(
                ["+", "-", "*", "/", "%", "<", "<=", "==", "!=", ">", "&&", "||", "in"]
            ),
            inner,
        ).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
        unary = st.tuples(st.sampled_from(["!", "-"]), inner).map(lambda t: f"{t[0]}({t[1]})")
        call = st.tuples(
            st.sampled_from(["size", "string", "int", "double", "has", "type", "dyn"]), inner
        ).map(lambda t: f"{t[0]}({t[1]})")
        macro = st.tuples(
            inner,
            st.sampled_from(["map", "filter", "all", "exists", "exists_one"]),
            inner,
        ).map(lambda t: f"{t[0]}.{t[1]}(v, {t[2]})")
        ternary = st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})")
        listing = st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]")
        index = st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]")
        return st.one_of(binary, unary, call, macro, ternary, listing, index)

    return st.recursive(atoms, extend, max_leaves=25)


@FUZZ_SETTINGS
@given(_expressions())
def test_fuzz_generated_expressions(text: str) -> None:
    assume(len(text) <= MAX_EXPRESSION_LENGTH)
    _fuzz_evaluate(text)


json_like = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True),
        st.decimals(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
        st.datetimes(timezones=st.sampled_from([None, UTC, CST])),
        st.timedeltas(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


@FUZZ_SETTINGS
@given(st.dictionaries(st.sampled_from(["amount", "form", "tags", "x", "y"]), json_like))
def test_fuzz_random_data(data: dict[str, Any]) -> None:
    for text in [
        "amount <= 5000",
        'form.service_type == "售后服务" && customer.tier == "VIP"',
        '"冷链" in tags',
        "size(tags) > 0",
        "x == y",
        "[x, y, amount].map(v, string(v))",
        "tags.exists(t, t == x)",
        "has(form.a) ? form.a : x",
    ]:
        stats = EvaluationStats()
        try:
            compile_expression(text).evaluate(data, max_steps=5_000, stats=stats)
        except ExpressionError as error:
            assert error.message
        assert stats.steps <= 5_000


# --------------------------------------------------------------------------- collapse

DIFFERENTIAL = [
    "1 + 2 * 3 - 4 / 2 % 3",
    "(1 + 2) * 3",
    "-(-(3))",
    "!(!(true))",
    "true && false || !false",
    "1 < 2 && 2 <= 2 && 3 > 2 && 3 >= 3 && 1 != 2 && 1 == 1",
    '"a" in ["a", "b"] && 2 in [1, 2]',
    "[1, 2, 3].map(x, x * 2).filter(y, y > 2)",
    "[1, 2, 3].all(x, x > 0) && [1, 2, 3].exists(x, x > 2)",
    "[1, 2, 3].exists_one(x, x == 2)",
    '{"a": {"b": [1, 2, {"c": "d"}]}}.a.b[2].c',
    '{"a": 1}["a"] + size("abc") + size([1]) + size({"x": 1})',
    "has({'a': 1}.a) && !has({'a': 1}.b)",
    "true ? 'yes' : 'no'",
    "1 > 2 ? 1 : 2 > 1 ? 3 : 4",
    "'abc'.startsWith('a') && 'abc'.endsWith('c') && 'abc'.contains('b')",
    "'abc'.matches('^a.c$')",
    "int('42') + int(2.9) + int(-2.9)",
    "string(42) + string(true) + string(1.5)",
    "double(1) + double('2.5')",
    "uint(3) + 2u",
    "type(1) == int && type('a') == string",
    "timestamp('2025-01-01T00:00:00Z') + duration('1h') > timestamp('2025-01-01T00:30:00Z')",
    "dyn(1) + 1",
    "[[1, 2], [3]].map(x, size(x))",
    "b'ab' + b'c' == b'abc'",
    "null == null",
    "1 / 0 == 1 || true",
    "tags.map(t, t + '!')",
    "customer.level * 2 + size(customer.name)",
]


@pytest.mark.parametrize("text", DIFFERENTIAL)
def test_collapsed_tree_evaluates_like_celpy(text: str) -> None:
    """Collapsing pass-through nodes must not change any result (compare with plain celpy)."""
    data = {"tags": ["冷链", "加急"], "customer": {"tier": "VIP", "name": "李四", "level": 3}}
    ours = run(text, data)
    raw_tree = ex._parser().parse(text)
    budget = ex._Budget(MAX_STEPS)
    plain = Evaluator(raw_tree, Activation(vars=ex._convert_data(data, budget))).evaluate()
    assert ours == ex._to_python(plain, text)
