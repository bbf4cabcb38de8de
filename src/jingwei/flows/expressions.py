"""Safe expressions over case data: conditions on sequence flows and computed values.

Expressions are CEL (Common Expression Language), parsed and *interpreted* with
``cel-python`` (``celpy``): the text is parsed with celpy's CEL grammar (a lark LALR
parser, iterative) and the tree is walked by a subclass of
``celpy.evaluation.Evaluator``.  Nothing here (and nothing on the interpreted path of
celpy) hands user text to Python ``eval``/``exec``/``compile``; celpy's
``CompiledRunner``/``Transpiler`` (which does use ``exec``) is never used.

Public API
==========

``compile_expression(text) -> Expression``
    Parse and statically check ``text``; compiled programs are kept in an LRU cache,
    so the same text returns the same (immutable, thread-safe) ``Expression``.
``Expression.evaluate(data, *, max_steps=MAX_STEPS, stats=None) -> Any``
    Evaluate over a JSON-like mapping; returns plain Python values (``bool``, ``int``,
    ``float``, ``str``, ``bytes``, ``Decimal``, ``list``, ``dict``, ``None``, aware
    ``datetime``, ``timedelta``).
``Expression.evaluate_condition(data) -> bool`` / ``evaluate_condition(text, data)``
    The result must be a real ``bool``; anything else is an ``ExpressionError``
    (no truthiness guessing).
``check(text) -> str | None``
    The error message for an invalid expression, ``None`` when it compiles (used by the
    BPMN validator).
``ExpressionError``
    The only exception any of these raise (a ``ValueError``).  ``message`` is Chinese;
    ``kind`` is one of ``syntax``, ``limit``, ``missing``, ``type``, ``eval``, ``data``;
    ``line``/``column`` (1-based) are set when a position is known (always for syntax
    errors) and are also appended to ``str(error)``.

Data and the language
=====================

Top-level keys of the data that are CEL identifiers (``[A-Za-z_][A-Za-z0-9_]*``) become
variables; other top-level keys are not visible (nest them and use ``form["客户名称"]``).
Only the top-level entries an expression names are converted for it (CEL has no dynamic
variable lookup), so a large unrelated entry costs nothing.
Maps support ``form.service_type`` and ``form["服务类型"]``.  Typical conditions::

    amount <= 5000
    form.service_type == "售后服务" && customer.tier == "VIP"
    "冷链" in tags
    size(parts) > 0 && parts.exists(p, p.price > 100)
    has(customer.tier) && customer.tier == "VIP"

Missing fields: reading an absent variable or map key is an ``ExpressionError`` of kind
``missing`` that names the field (``字段“customer.tier”不存在``).  Test for presence with
``has(customer.tier)`` (or ``"tier" in customer``).  CEL's ``&&``/``||`` are commutative
with errors: ``false && missing`` and ``missing && false`` are both ``false``.

Values in the data: ``str``, ``bool``, ``int`` (int64), ``float``, ``Decimal``, ``None``,
lists/tuples, mappings, aware ``datetime`` (CEL ``timestamp``), ``timedelta`` (CEL
``duration``), ``bytes``.  A value that cannot be represented (naive datetime, NaN
Decimal, an int beyond int64, an arbitrary object, nesting deeper than
``MAX_DATA_DEPTH``) does not break evaluation: it becomes an error value that only fails
an expression that actually uses it (kind ``data``).

Money (``Decimal``)
-------------------

celpy has no decimal type: left alone, ``amount <= 5000`` works by accident while
``5000 >= amount`` is a type error, and arithmetic mixes in floats.  Here ``Decimal``
values stay ``Decimal`` and the arithmetic/comparison operators are overridden so that
whenever one operand is a ``Decimal`` the other is converted exactly:

* ``int``/``uint`` -> ``Decimal(int)`` (exact);
* ``double`` -> ``Decimal(repr(x))``: the shortest decimal text of the float, i.e. the
  literal as written (``5000.01`` means ``Decimal("5000.01")``, not the binary float);
* ``Decimal`` vs anything else (string, bool, list...) is a type error.

Comparisons are exact (``Decimal("5000.01") <= 5000`` is ``false``).  ``+ - * / %`` and
unary ``-`` on money return ``Decimal`` computed in a fixed context (34 significant
digits, ROUND_HALF_EVEN, traps on overflow / invalid operation / division by zero, which
become errors).  Helpers: ``decimal("0.06")`` builds an exact amount from a string (or
int/decimal), ``string(amount)`` gives its canonical text, ``int(amount)`` truncates,
``double(amount)`` converts explicitly.  Money that arrives as a string (e.g. from a
JSONField encoded with ``DjangoJSONEncoder``) is compared exactly with
``decimal(amount) <= 5000``.

Other numbers compare across kinds as in current CEL (``1 == 1.0``; a float
``amount <= 5000`` works, using Python's exact int/float comparison), and
``x == null`` / ``x != null`` work for any ``x``.  Arithmetic between int and double
stays a type error, as in CEL.

Safety and limits
=================

*No Python reach.*  Identifiers resolve only to data values and a fixed function table;
``a.b`` on a map is a key lookup (never ``getattr``), on anything else an error; method
calls are looked up by name in the function table, never on the object.  So
``x.__class__``, ``__import__("os")`` or ``open("/etc/passwd")`` can only be
"missing field" or "unknown function".  Statically rejected: function and method names
outside an allow-list (so also celpy's non-standard ``reduce``/``min`` macros), message
construction ``T{...}``, leading-dot calls ``.f()``.  Time-zone arguments of
``getHours("...")`` and friends must look like an IANA name or ``±hh:mm`` (no path
characters), so they cannot be used to probe tz files on disk.

*Runaway expressions* are stopped in-process, without threads or processes (a worker
with a timeout per call is far too heavy for conditions that run on every gateway, and
a thread cannot be killed anyway).  Every source of work is bounded:

1. Before parsing: the text is at most ``MAX_EXPRESSION_LENGTH`` characters, and string
   literals are pre-scanned in linear time.  celpy 0.5's lexer regex for strings
   backtracks exponentially on an unterminated literal full of backslashes
   (``"\\\\\\\\...`` takes tens of seconds at 20 pairs), so such text never reaches it.
2. After parsing (at compile time): pass-through nodes of the parse tree are collapsed,
   then the tree must have at most ``MAX_AST_NODES`` nodes, depth at most
   ``MAX_NESTING_DEPTH`` (which also bounds interpreter recursion), and macros
   (``map/filter/all/exists/exists_one``) nested at most ``MAX_MACRO_NESTING`` deep.
3. During evaluation, a step budget (``MAX_STEPS``, per call) is charged *before* the
   work it pays for: one step per visited node (macro bodies are visited once per
   element, so nested macros pay for every iteration), plus the size ("weight") of the
   arguments of every operator/function call (comparing, searching, concatenating or
   formatting a list or string costs what it touches), plus the name-table size on
   every variable lookup and macro iteration.  When the budget is exhausted the walk
   stops with an ``ExpressionError`` of kind ``limit``.  ``stats.steps`` reports the
   count (it never exceeds ``max_steps``).
4. Values built by the expression are capped: strings at ``MAX_STRING_LENGTH``
   characters, lists/maps at a deep weight of ``MAX_VALUE_WEIGHT`` (elements counted
   recursively, strings by length/16), checked on every node result.  Values taken
   straight from the case data are exempt (the caller controls their size), but
   anything built around them counts them in full.
5. Known super-linear paths in celpy are bypassed: ``duration("...")`` (its regex is
   exponential: 24 characters already take a second) and ``timestamp("...")`` strings
   are parsed here with linear code; ``matches()`` uses RE2 (linear time); the
   comprehension macros are reimplemented (celpy's ``all()``/``exists()`` build error
   messages that double in size with every failing element, outside any node visit);
   error paths that would ``repr()`` the whole activation or a large operand are
   replaced by short messages; ``string()`` accepts scalars only.
6. Before walking, the remaining Python stack is checked against the expression's
   depth, so evaluation never dies with ``RecursionError`` half-way.

Any exception that still escapes celpy is reported as an ``ExpressionError`` (kind
``eval``); nothing else leaves this module.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import logging
import math
import operator
import re
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, cast

import celpy
import lark
import re2
from celpy import celtypes
from celpy.evaluation import (
    Activation,
    CELEvalError,
    Evaluator,
    Result,
    base_functions,
    function_size,
    operator_in,
)
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

__all__ = [
    "CACHE_SIZE",
    "MAX_AST_NODES",
    "MAX_DATA_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "MAX_MACRO_NESTING",
    "MAX_NESTING_DEPTH",
    "MAX_STEPS",
    "MAX_STRING_LENGTH",
    "MAX_VALUE_WEIGHT",
    "EvaluationStats",
    "Expression",
    "ExpressionError",
    "check",
    "compile_expression",
    "evaluate_condition",
]

# ---------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------

MAX_EXPRESSION_LENGTH = 2000
"""Longest accepted expression text, in characters."""
MAX_AST_NODES = 1000
"""Most nodes in the (collapsed) parse tree."""
MAX_NESTING_DEPTH = 64
"""Deepest (collapsed) parse tree; each level costs at most 7 Python frames to evaluate."""
MAX_MACRO_NESTING = 3
"""Most macros (map/filter/all/exists/exists_one) nested inside each other."""
MAX_STEPS = 20_000
"""Default evaluation budget per call (node visits + data touched by operators)."""
MAX_STRING_LENGTH = 100_000
"""Longest string an expression may build."""
MAX_VALUE_WEIGHT = 100_000
"""Largest list/map (deep weight) an expression may build."""
MAX_DATA_DEPTH = 32
"""Deepest nesting of the case data converted; deeper values become error values."""
CACHE_SIZE = 512
"""Compiled expressions kept in the LRU cache."""

# celpy's debug logging formats whole activations and operands; never let a global DEBUG
# configuration turn that on for every evaluation.
logging.getLogger("celpy").setLevel(logging.WARNING)

_FRAMES_PER_LEVEL = 8  # measured: at most 7 Python frames per (collapsed) tree level
_FRAMES_PER_MACRO = 12  # a macro body runs in a nested evaluator
_STACK_MARGIN = 60


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class ExpressionError(ValueError):
    """An expression is invalid, failed, or went over a limit (message in Chinese)."""

    def __init__(
        self,
        message: str,
        *,
        kind: str = "eval",
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.message = message
        self.kind = kind
        self.line = line
        self.column = column
        text = message
        if line is not None and column is not None:
            text = f"{message}（第 {line} 行第 {column} 列）"
        super().__init__(text)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep kind and position when pickled (e.g. into a task result).
        return (_restore_error, (self.message, self.kind, self.line, self.column))


def _restore_error(
    message: str, kind: str, line: int | None, column: int | None
) -> ExpressionError:
    return ExpressionError(message, kind=kind, line=line, column=column)


class _LimitExceeded(Exception):
    """Raised inside the walk to stop it.

    Deliberately *not* a ValueError/TypeError/KeyError: celpy turns those into CEL error
    values (which ``||``, ``has()`` etc. may swallow); this one must unwind everything.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _DataError(CELEvalError):
    """A data value that cannot be represented in CEL; fails only when used."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"unsupported data at {path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass
class EvaluationStats:
    """Filled in by ``Expression.evaluate(stats=...)``: the budget actually charged."""

    steps: int = 0
    max_steps: int = 0


# ---------------------------------------------------------------------------
# Budget
# ---------------------------------------------------------------------------


class _Budget:
    """Per-evaluation step counter plus the memo of value weights."""

    __slots__ = ("data_ids", "exceeded", "limit", "name_cost", "steps", "weights")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.steps = 0
        self.exceeded = False
        self.name_cost = 1
        # id -> (object, weight); the object is kept so the id cannot be reused.
        self.weights: dict[int, tuple[object, int]] = {}
        self.data_ids: set[int] = set()

    def charge(self, amount: int = 1) -> None:
        if self.steps + amount > self.limit:
            self.steps = self.limit
            self.exceeded = True
            raise _LimitExceeded(f"表达式计算量超出上限（{self.limit} 步），已停止求值")
        self.steps += amount

    def weight(self, value: object) -> int:
        """Deep size of a value: elements counted recursively, strings by length / 16.

        Containers are memoised by identity; computing a new container's weight is
        charged to the budget (one step per element looked at), so even this is bounded.
        """
        if isinstance(value, (str, bytes)):
            return 1 + len(value) // 16
        if not isinstance(value, (list, dict)):
            return 1
        memo = self.weights
        hit = memo.get(id(value))
        if hit is not None:
            return hit[1]
        stack: list[tuple[list[Any] | dict[Any, Any], bool]] = [(value, False)]
        while stack:
            node, ready = stack.pop()
            if id(node) in memo:
                continue
            children: Iterable[Any] = (
                node if isinstance(node, list) else (*node.keys(), *node.values())
            )
            if not ready:
                kids = list(children)
                self.charge(1 + len(kids))
                stack.append((node, True))
                for kid in kids:
                    if isinstance(kid, (list, dict)) and id(kid) not in memo:
                        stack.append((kid, False))
                continue
            total = 1
            for kid in children:
                if isinstance(kid, (list, dict)):
                    total += memo[id(kid)][1]
                elif isinstance(kid, (str, bytes)):
                    total += 1 + len(kid) // 16
                else:
                    total += 1
            memo[id(node)] = (node, total)
        return memo[id(value)][1]

    def charge_args(self, args: Iterable[object]) -> None:
        self.charge(sum(self.weight(a) for a in args))

    def check_result(self, value: object) -> None:
        if isinstance(value, (str, bytes)):
            if len(value) > MAX_STRING_LENGTH and id(value) not in self.data_ids:
                self.exceeded = True
                raise _LimitExceeded(
                    f"表达式生成的字符串过长（超过 {MAX_STRING_LENGTH} 个字符），已停止求值"
                )
        elif isinstance(value, (list, dict)):
            weight = self.weight(value)
            if weight > MAX_VALUE_WEIGHT and id(value) not in self.data_ids:
                self.exceeded = True
                raise _LimitExceeded(
                    f"表达式生成的列表或对象过大（超过 {MAX_VALUE_WEIGHT} 个元素），已停止求值"
                )


# ---------------------------------------------------------------------------
# Money
# ---------------------------------------------------------------------------

_MONEY_CONTEXT = decimal.Context(
    prec=34,
    rounding=decimal.ROUND_HALF_EVEN,
    Emax=6144,
    Emin=-6143,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)


def _is_decimal(value: object) -> bool:
    return isinstance(value, decimal.Decimal)


def _as_decimal(value: object) -> decimal.Decimal:
    """Exact conversion of a CEL number to Decimal (TypeError for anything else)."""
    if isinstance(value, decimal.Decimal):
        return value
    if isinstance(value, (celtypes.BoolType, bool)):
        raise TypeError("no such overload: decimal and bool")
    if isinstance(value, int):
        return decimal.Decimal(int(value))
    if isinstance(value, float):
        # The shortest text that round-trips: the literal as the user wrote it.
        return decimal.Decimal(repr(float(value)))
    raise TypeError(f"no such overload: decimal and {_type_name(value)}")


def _money_op(
    name: str, op: Callable[[decimal.Decimal, decimal.Decimal], decimal.Decimal]
) -> Callable[[Any, Any], Any]:
    fallback = base_functions[name]

    def money(left: Any, right: Any) -> Any:
        if isinstance(left, CELEvalError):
            return left
        if isinstance(right, CELEvalError):
            return right
        if not (_is_decimal(left) or _is_decimal(right)):
            return fallback(left, right)
        a, b = _as_decimal(left), _as_decimal(right)
        if name in ("_/_", "_%_") and b.is_zero():
            raise ZeroDivisionError("decimal division by zero")
        try:
            return op(a, b)
        except ZeroDivisionError as exc:  # DivisionByZero, DivisionUndefined
            raise ZeroDivisionError("decimal division by zero") from exc
        except decimal.DecimalException as exc:
            raise ValueError("decimal overflow or invalid operation") from exc

    money.__name__ = f"money{name}"
    return money


def _money_neg(value: Any) -> Any:
    if _is_decimal(value):
        try:
            return _MONEY_CONTEXT.minus(value)
        except decimal.DecimalException as exc:
            raise ValueError("decimal overflow") from exc
    return operator.neg(value)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, decimal.Decimal)) and not isinstance(
        value, celtypes.BoolType
    )


def _compare_numbers(left: Any, right: Any) -> int | None:
    """-1/0/1 comparing two numbers exactly; ``None`` when unordered (a NaN double).

    With a Decimal on either side both are compared as Decimals (a double by its
    shortest text); int against double uses Python's exact mixed comparison.
    """
    for side in (left, right):
        if isinstance(side, float) and math.isnan(side):
            return None
    if _is_decimal(left) or _is_decimal(right):
        a, b = _as_decimal(left), _as_decimal(right)
        return (a > b) - (a < b)
    x = float(left) if isinstance(left, float) else int(left)
    y = float(right) if isinstance(right, float) else int(right)
    return (x > y) - (x < y)


def _make_relation(name: str, test: Callable[[int], bool]) -> Callable[[Any, Any], Any]:
    """Comparison operators with CEL's cross-type numeric rules and exact money.

    Numbers of any kind (int, uint, double, decimal) compare by value (``1 == 1.0``,
    ``amount <= 5000``); ``x == null`` / ``x != null`` work for any x; everything else
    is celpy's strict same-type comparison.
    """
    fallback = base_functions[name]
    equality = name in ("_==_", "_!=_")

    def relation(left: Any, right: Any) -> Any:
        if isinstance(left, CELEvalError):
            return left
        if isinstance(right, CELEvalError):
            return right
        if equality and (left is None or right is None):
            return celtypes.BoolType((left is None and right is None) == (name == "_==_"))
        if _is_number(left) and _is_number(right):
            order = _compare_numbers(left, right)
            if order is None:
                return celtypes.BoolType(name == "_!=_")
            return celtypes.BoolType(test(order))
        if _is_decimal(left) or _is_decimal(right):
            raise TypeError("no such overload: decimal")
        return fallback(left, right)

    relation.__name__ = f"relation{name}"
    return relation


_EQ = _make_relation("_==_", lambda o: o == 0)


def _in(item: Any, container: Any) -> Any:
    """``x in list`` with the same equality as ``==``; maps and the rest as in celpy."""
    if isinstance(item, CELEvalError):
        return item
    if isinstance(container, CELEvalError):
        return container
    if not isinstance(container, celtypes.ListType):
        return operator_in(item, container)
    result: Any = celtypes.BoolType(False)
    for candidate in container:
        try:
            same = _EQ(candidate, item)
        except TypeError as exc:
            result = CELEvalError("no such overload", exc.__class__, exc.args)
            continue
        if isinstance(same, CELEvalError):
            result = same
        elif same:
            return celtypes.BoolType(True)
    return result


def _logical(name: str) -> Callable[[Any, Any], Any]:
    impl = base_functions[name]

    def logical(left: Any, right: Any) -> Any:
        # celpy's own TypeError message formats both operands with repr(): avoid that.
        if not isinstance(left, celtypes.BoolType) and not isinstance(right, celtypes.BoolType):
            raise TypeError("no such overload")
        return impl(left, right)

    logical.__name__ = f"logical{name}"
    return logical


def _index(container: Any, key: Any) -> Any:
    """``a[i]`` / ``m[k]``; unlike Python, a negative list index is out of range."""
    if isinstance(container, list) and isinstance(key, int) and key < 0:
        raise IndexError("negative index")
    return operator.getitem(container, key)


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # an invalid user pattern is an expression error, not a log line


def _matches(text: Any, pattern: Any) -> Any:
    """``s.matches(re)``: RE2 (linear time, no backtracking), like celpy, minus the logging."""
    if not isinstance(text, str) or not isinstance(pattern, str):
        raise TypeError("no such overload")
    try:
        compiled = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        raise ValueError("invalid regular expression") from exc
    return celtypes.BoolType(compiled.search(text) is not None)


def _decimal_function(value: Any) -> decimal.Decimal:
    """CEL ``decimal(x)``: exact money value from a string, int, double or decimal."""
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 64:
            raise ValueError("decimal text too long")
        try:
            result = decimal.Decimal(text)
        except decimal.InvalidOperation as exc:
            raise ValueError(f"invalid decimal {text!r}") from exc
        if not result.is_finite():
            raise ValueError("decimal must be finite")
        return result
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("decimal must be finite")
    return _as_decimal(value)


# ---------------------------------------------------------------------------
# The function table
# ---------------------------------------------------------------------------

_MACROS = frozenset({"map", "filter", "all", "exists", "exists_one"})
_TIMESTAMP_METHODS = frozenset(
    {
        "getDate",
        "getDayOfMonth",
        "getDayOfWeek",
        "getDayOfYear",
        "getFullYear",
        "getMonth",
        "getHours",
        "getMilliseconds",
        "getMinutes",
        "getSeconds",
    }
)
_CONVERSIONS = frozenset(
    {"int", "uint", "double", "string", "bool", "bytes", "duration", "timestamp", "decimal"}
)
_GLOBAL_FUNCTIONS = frozenset(
    {"has", "dyn", "size", "type", "contains", "startsWith", "endsWith", "matches"} | _CONVERSIONS
)
_METHODS = frozenset(
    {"size", "contains", "startsWith", "endsWith", "matches"} | _MACROS | _TIMESTAMP_METHODS
)
# Calls whose cost does not grow with their arguments (not charged per argument weight).
_CHEAP_CALLS = frozenset({"size", "type", "dyn", "has", "int", "uint", "double", "bool"})

# Operators: replaced by exact-money versions; metered in ``_make_functions``.
_OPERATORS: dict[str, Callable[..., Any]] = {
    "_+_": _money_op("_+_", _MONEY_CONTEXT.add),
    "_-_": _money_op("_-_", _MONEY_CONTEXT.subtract),
    "_*_": _money_op("_*_", _MONEY_CONTEXT.multiply),
    "_/_": _money_op("_/_", _MONEY_CONTEXT.divide),
    "_%_": _money_op("_%_", _MONEY_CONTEXT.remainder),
    "-_": _money_neg,
    "_<_": _make_relation("_<_", lambda o: o < 0),
    "_<=_": _make_relation("_<=_", lambda o: o <= 0),
    "_>_": _make_relation("_>_", lambda o: o > 0),
    "_>=_": _make_relation("_>=_", lambda o: o >= 0),
    "_==_": _EQ,
    "_!=_": _make_relation("_!=_", lambda o: o != 0),
    "_in_": _in,
    "_[_]": _index,
    "contains": base_functions["contains"],
    "startsWith": base_functions["startsWith"],
    "endsWith": base_functions["endsWith"],
    "matches": _matches,
}
_UNMETERED: dict[str, Any] = {
    "_&&_": _logical("_&&_"),
    "_||_": _logical("_||_"),
    "size": function_size,
    "decimal": _decimal_function,
}
# Names of celpy's table that must not be reachable at all (also rejected statically).
_BLOCKED = ("list", "map", "null_type")


def _make_functions(budget: _Budget) -> dict[str, Any]:
    """The function table for one evaluation: operators charge their arguments' weight."""

    def metered(fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            budget.charge_args(args)
            return fn(*args)

        call.__name__ = getattr(fn, "__name__", "fn")
        return call

    table: dict[str, Any] = {name: metered(fn) for name, fn in _OPERATORS.items()}
    table.update(_UNMETERED)
    for name in _BLOCKED:
        table[name] = _blocked
    return table


def _blocked(*args: Any) -> NoReturn:
    raise TypeError("function not available")


# ---------------------------------------------------------------------------
# Safe replacements for super-linear celpy parsing
# ---------------------------------------------------------------------------

_DURATION_RE = re.compile(r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|h|m|s|d))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|h|m|s|d)")
_DURATION_SCALE = {
    "ns": decimal.Decimal("1e-9"),
    "us": decimal.Decimal("1e-6"),
    "µs": decimal.Decimal("1e-6"),
    "ms": decimal.Decimal("1e-3"),
    "s": decimal.Decimal(1),
    "m": decimal.Decimal(60),
    "h": decimal.Decimal(3600),
    "d": decimal.Decimal(86400),
}
_DURATION_MAX_SECONDS = 315_576_000_000
_TZ_NAME = re.compile(
    r"[A-Za-z][A-Za-z0-9_+\-]{0,31}(?:/[A-Za-z0-9_+\-]{1,32}){0,2}|[+-]?\d{1,2}:\d{2}"
)


_STRINGABLE = (str, bytes, int, float, decimal.Decimal, datetime.datetime, datetime.timedelta)


def _parse_duration(text: str) -> datetime.timedelta:
    """Linear-time parser for CEL duration strings such as ``"1h30m"`` or ``"-1.5s"``."""
    if len(text) > 64 or not _DURATION_RE.fullmatch(text):
        raise ValueError("invalid duration")
    sign = -1 if text.startswith("-") else 1
    seconds = sum(
        (
            decimal.Decimal(number) * _DURATION_SCALE[unit]
            for number, unit in _DURATION_PART.findall(text)
        ),
        decimal.Decimal(0),
    )
    if seconds > _DURATION_MAX_SECONDS:
        raise ValueError("duration out of range")
    whole = int(seconds)
    micros = int((seconds - whole) * 1_000_000)
    return sign * datetime.timedelta(seconds=whole, microseconds=micros)


def _parse_timestamp(text: str) -> datetime.datetime:
    """RFC 3339 timestamps with an explicit offset (``2025-01-01T08:00:00+08:00``)."""
    if len(text) > 64:
        raise ValueError("invalid timestamp")
    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    parsed = datetime.datetime.fromisoformat(value)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("timestamp needs a time zone")
    return parsed


def _guard_arguments(name: str, args: list[Any]) -> list[Any] | CELEvalError:
    """Pre-process the arguments of calls that celpy would parse unsafely."""
    try:
        if name == "duration" and len(args) == 1 and isinstance(args[0], str):
            return [_parse_duration(args[0])]
        if name == "timestamp" and len(args) == 1 and isinstance(args[0], str):
            return [_parse_timestamp(args[0])]
        if name == "string" and len(args) == 1 and not isinstance(args[0], _STRINGABLE):
            return CELEvalError("no such overload", TypeError, ())
        if name in _TIMESTAMP_METHODS and len(args) >= 2:
            tz = args[1]
            if not isinstance(tz, str) or not _TZ_NAME.fullmatch(tz):
                raise ValueError("invalid time zone name")
    except ValueError as exc:
        return CELEvalError("return error for overflow", ValueError, exc.args)
    return args


# ---------------------------------------------------------------------------
# The evaluator
# ---------------------------------------------------------------------------


class _GuardedEvaluator(Evaluator):
    """celpy's tree-walking interpreter with a step budget and cheap error paths."""

    def __init__(self, ast: lark.Tree, activation: Activation, budget: _Budget) -> None:
        super().__init__(ast=ast, activation=activation)
        self._budget = budget

    def sub_evaluator(self, ast: lark.Tree) -> Evaluator:
        # Macro bodies run in nested evaluators: they share the budget.
        return _GuardedEvaluator(ast, self.activation, self._budget)

    def _visit_tree(self, tree: lark.Tree) -> Any:
        budget = self._budget
        budget.charge(1)
        result = super()._visit_tree(tree)
        budget.check_result(result)
        return result

    def set_activation(self, values: Any) -> Evaluator:
        # celpy clones the whole name table for every macro iteration.
        self._budget.charge(self._budget.name_cost)
        return super().set_activation(values)

    def ident_value(self, name: str, root_scope: bool = False) -> Any:
        # celpy lists the names of the table on every lookup.
        self._budget.charge(self._budget.name_cost)
        return super().ident_value(name, root_scope)

    def primary(self, tree: lark.Tree) -> Result:
        child = tree.children[0] if len(tree.children) == 1 else None
        if isinstance(child, lark.Tree) and child.data == "ident":
            # celpy's own message formats the whole activation (all the data) with repr().
            token = cast(lark.Token, child.children[0])
            try:
                return cast(Result, self.ident_value(token.value))
            except KeyError as exc:
                return CELEvalError(
                    f"undeclared reference to '{token.value}'", KeyError, exc.args, tree=tree
                )
        return super().primary(tree)

    def member_dot(self, tree: lark.Tree) -> Result:
        member_tree = cast(lark.Tree, tree.children[0])
        member = self.visit(member_tree)
        if isinstance(member, CELEvalError):
            return member
        if not isinstance(member, celtypes.MapType):
            # celpy's message includes repr(member): keep it cheap.
            return CELEvalError("field selection on a non-map", TypeError, (), tree=tree)
        name = cast(lark.Token, tree.children[1]).value
        try:
            return cast(Result, member[name])
        except KeyError:
            return CELEvalError(f"no such member in mapping: {name!r}", KeyError, None, tree=tree)

    def function_eval(
        self, name_token: lark.Token, exprlist: Iterable[Result] | None = None
    ) -> Result:
        if isinstance(exprlist, CELEvalError):
            return exprlist
        name = name_token.value
        args = list(exprlist or [])
        if name not in _CHEAP_CALLS:
            self._budget.charge_args(args)
        guarded = _guard_arguments(name, args)
        if isinstance(guarded, CELEvalError):
            guarded.token = name_token
            guarded.line, guarded.column = name_token.line, name_token.column
            return guarded
        return super().function_eval(name_token, guarded)

    def method_eval(
        self,
        object: Result,
        method_ident: lark.Token,
        exprlist: Iterable[Result] | None = None,
    ) -> Result:
        if isinstance(exprlist, CELEvalError):
            return exprlist
        name = method_ident.value
        args = [object, *(exprlist or [])]
        if name not in _CHEAP_CALLS:
            self._budget.charge_args(args)
        guarded = _guard_arguments(name, args)
        if isinstance(guarded, CELEvalError):
            guarded.token = method_ident
            guarded.line, guarded.column = method_ident.line, method_ident.column
            return guarded
        return super().method_eval(guarded[0], method_ident, guarded[1:])

    def member_dot_arg(self, tree: lark.Tree) -> Result:
        method = cast(lark.Token, tree.children[1]).value
        if method not in _MACROS:
            return super().member_dot_arg(tree)
        return self._macro(tree, method)

    def _macro(self, tree: lark.Tree, method: str) -> Result:
        """CEL's comprehension macros, replacing celpy's.

        celpy folds all()/exists() with ``reduce`` over ``eval_error(logical_and)``, whose
        error text embeds ``repr()`` of the previous error: the message doubles with every
        element (seconds and gigabytes for a 20-character string) outside any visit.  It
        also iterates strings character by character and treats an error as "true" in
        exists_one().  Here every element goes through the budgeted walk and errors follow
        CEL: ``all`` is false if any element is false, else an error if any failed;
        ``exists`` is true if any element is true, else an error if any failed.
        """
        target = self.visit(cast(lark.Tree, tree.children[0]))
        if isinstance(target, CELEvalError):
            return target
        if isinstance(target, celtypes.MapType):
            items: list[Any] = list(target.keys())
        elif isinstance(target, celtypes.ListType):
            items = list(target)
        else:
            return CELEvalError("no such overload", TypeError, (), tree=tree)
        exprlist = cast(lark.Tree, tree.children[2])
        var_tree, body = cast(tuple[lark.Tree, lark.Tree], tuple(exprlist.children))
        name = cast(lark.Token, next(var_tree.find_data("ident")).children[0]).value
        evaluator = self.sub_evaluator(body)

        def run(value: Any) -> Any:
            try:
                return evaluator.evaluate({name: value})
            except CELEvalError as error:
                return error

        def not_bool(result: Any) -> CELEvalError:
            if isinstance(result, CELEvalError):
                return result
            return CELEvalError("no such overload", TypeError, (), tree=body)

        if method == "map":
            mapped: list[Any] = []
            for value in items:
                result = run(value)
                if isinstance(result, CELEvalError):
                    return result
                mapped.append(result)
            return celtypes.ListType(mapped)
        if method == "filter":
            kept: list[Any] = []
            for value in items:
                result = run(value)
                if not isinstance(result, celtypes.BoolType):
                    return not_bool(result)
                if result:
                    kept.append(value)
            return celtypes.ListType(kept)
        if method == "exists_one":
            count = 0
            for value in items:
                result = run(value)
                if not isinstance(result, celtypes.BoolType):
                    return not_bool(result)
                count += bool(result)
            return celtypes.BoolType(count == 1)
        decisive = method == "exists"  # exists: a true decides; all: a false decides
        failure: CELEvalError | None = None
        for value in items:
            result = run(value)
            if isinstance(result, celtypes.BoolType):
                if bool(result) is decisive:
                    return celtypes.BoolType(decisive)
            elif failure is None:
                failure = not_bool(result)
        return failure if failure is not None else celtypes.BoolType(not decisive)


# ---------------------------------------------------------------------------
# Parsing and static checks
# ---------------------------------------------------------------------------

_PASS_THROUGH = frozenset(
    {
        "expr",
        "conditionalor",
        "conditionaland",
        "relation",
        "addition",
        "multiplication",
        "unary",
        "member",
    }
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _literal_keywords(token: lark.Token) -> lark.Token:
    """celpy's lexer callback, but keeping the token's position (for error messages)."""
    if token.value in ("true", "false"):
        return lark.Token.new_borrow_pos("BOOL_LIT", token.value, token)
    return token


@functools.cache
def _parser() -> lark.Lark:
    """celpy's CEL grammar and parser options (LALR: no recursion while parsing)."""
    grammar = (Path(celpy.__file__).parent / "cel.lark").read_text(encoding="utf-8")
    return lark.Lark(
        grammar,
        parser="lalr",
        start="expr",
        g_regex_flags=re.M,
        lexer_callbacks={"IDENT": _literal_keywords},
        propagate_positions=True,
        maybe_placeholders=False,
        priority="invert",
    )


def _scan_string_literals(text: str) -> None:
    """Reject unterminated string literals in linear time, before lark's lexer sees them.

    Mirrors the lexer: ``//`` comments, ``"``/``'`` strings (backslash escapes the next
    character; a newline ends a one-line string) and triple-quoted strings.
    """
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            if end < 0:
                return
            i = end + 1
            continue
        if ch not in "\"'":
            i += 1
            continue
        start = i
        if text.startswith(ch * 3, i):
            i += 3
            while True:
                if i >= n:
                    _raise_unterminated(text, start)
                if text.startswith(ch * 3, i):
                    i += 3
                    break
                i += 2 if text[i] == "\\" else 1
        else:
            i += 1
            while True:
                if i >= n or text[i] == "\n":
                    _raise_unterminated(text, start)
                c = text[i]
                if c == ch:
                    i += 1
                    break
                if c == "\\":
                    if i + 1 < n and text[i + 1] == "\n":
                        _raise_unterminated(text, start)
                    i += 2
                else:
                    i += 1


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def _raise_unterminated(text: str, start: int) -> NoReturn:
    line, column = _position(text, start)
    raise ExpressionError(
        "表达式语法错误：字符串缺少结束引号", kind="syntax", line=line, column=column
    )


_HINTS = {
    "=": "（比较相等请用 ==）",
    "and": "（逻辑“与”请用 &&）",
    "or": "（逻辑“或”请用 ||）",
    "not": "（逻辑“非”请用 !）",
    "AND": "（逻辑“与”请用 &&）",
    "OR": "（逻辑“或”请用 ||）",
    "&": "（逻辑“与”请用 &&）",
    "|": "（逻辑“或”请用 ||）",
}


def _syntax_error(exc: LarkError, text: str) -> ExpressionError:
    line: int | None = None
    column: int | None = None
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream
        char = text[pos] if pos is not None and 0 <= pos < len(text) else ""
        message = f"表达式语法错误：无法识别的字符“{char}”{_HINTS.get(char, '')}"
        line, column = exc.line, exc.column
    elif isinstance(exc, UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            message = "表达式语法错误：表达式不完整，在末尾意外结束"
            line, column = _position(text, len(text))
        else:
            message = (
                f"表达式语法错误：此处不应出现“{token.value}”{_HINTS.get(str(token.value), '')}"
            )
            line, column = exc.line, exc.column
    elif isinstance(exc, UnexpectedEOF):
        message = "表达式语法错误：表达式不完整，在末尾意外结束"
        line, column = _position(text, len(text))
    else:
        message = "表达式语法错误"
    if line is None or line < 1 or column is None or column < 1:
        line, column = _position(text, len(text))
    return ExpressionError(message, kind="syntax", line=line, column=column)


def _skip_pass_through(node: lark.Tree) -> lark.Tree:
    while (
        node.data in _PASS_THROUGH
        and len(node.children) == 1
        and isinstance(node.children[0], lark.Tree)
    ):
        node = node.children[0]
    return node


def _collapse(root: lark.Tree) -> lark.Tree:
    """Drop single-child precedence nodes (``expr -> conditionalor -> ... -> member``).

    Each parenthesis costs 11 tree levels in celpy's grammar; collapsed it costs 2. The
    evaluator handles every remaining node exactly as before (those rules only forward
    the value of their single child). Iterative: the raw tree may be thousands deep.
    """
    root = _skip_pass_through(root)
    stack = [root]
    while stack:
        node = stack.pop()
        children: list[Any] = []
        for child in node.children:
            if isinstance(child, lark.Tree):
                child = _skip_pass_through(child)
                stack.append(child)
            children.append(child)
        node.children = children
    return root


def _static_error(message: str, node: lark.Tree, kind: str = "syntax") -> ExpressionError:
    meta = node.meta
    line = getattr(meta, "line", None)
    column = getattr(meta, "column", None)
    return ExpressionError(message, kind=kind, line=line, column=column)


def _analyse(root: lark.Tree) -> tuple[int, int, frozenset[str]]:
    """Check limits and allowed constructs; return (depth, macro nesting, identifiers)."""
    nodes = 0
    max_depth = 0
    max_macros = 0
    names: set[str] = set()
    stack: list[tuple[lark.Tree, int, int]] = [(root, 1, 0)]
    while stack:
        node, depth, macros = stack.pop()
        nodes += 1
        if nodes > MAX_AST_NODES:
            raise _static_error(
                f"表达式过于复杂（语法节点超过 {MAX_AST_NODES} 个）", node, kind="limit"
            )
        if depth > MAX_NESTING_DEPTH:
            raise _static_error("表达式嵌套层次过深，请拆分或简化", node, kind="limit")
        max_depth = max(max_depth, depth)
        max_macros = max(max_macros, macros)
        kind = node.data
        args_macros = macros
        if kind in ("ident", "dot_ident"):
            names.add(str(node.children[0]))
        if kind == "member_object":
            raise _static_error("表达式不支持“类型{字段: 值}”形式的对象构造", node)
        if kind == "dot_ident_arg":
            raise _static_error("表达式不支持以“.”开头的函数调用", node)
        if kind == "ident_arg":
            name = str(node.children[0])
            if name not in _GLOBAL_FUNCTIONS:
                raise _static_error(f"未知函数“{name}”", node)
            arity = _arity(node, 1)
            if name in ("has", "dyn") and arity != 1:
                raise _static_error(f"{name}() 需要恰好一个参数", node)
        elif kind == "member_dot_arg":
            name = str(node.children[1])
            if name not in _METHODS:
                raise _static_error(f"未知方法“{name}”", node)
            if name in _MACROS:
                args_macros = macros + 1
                if args_macros > MAX_MACRO_NESTING:
                    raise _static_error(
                        f"宏（map/filter/all/exists）嵌套超过 {MAX_MACRO_NESTING} 层",
                        node,
                        kind="limit",
                    )
                _check_macro(node, name)
        for index, child in enumerate(node.children):
            if isinstance(child, lark.Tree):
                in_args = kind == "member_dot_arg" and index == 2
                stack.append((child, depth + 1, args_macros if in_args else macros))
    return max_depth, max_macros, frozenset(names)


def _arity(node: lark.Tree, index: int) -> int:
    if len(node.children) <= index:
        return 0
    exprlist = node.children[index]
    return len(exprlist.children) if isinstance(exprlist, lark.Tree) else 0


def _check_macro(node: lark.Tree, name: str) -> None:
    if _arity(node, 2) != 2:
        raise _static_error(f"{name}() 需要两个参数：变量名和表达式，如 {name}(x, x > 0)", node)
    exprlist = cast(lark.Tree, node.children[2])
    var = exprlist.children[0]
    if not (
        isinstance(var, lark.Tree)
        and var.data == "primary"
        and isinstance(var.children[0], lark.Tree)
        and var.children[0].data == "ident"
    ):
        raise _static_error(f"{name}() 的第一个参数必须是变量名，如 {name}(x, x > 0)", node)


# ---------------------------------------------------------------------------
# Data conversion
# ---------------------------------------------------------------------------


def _convert_data(
    data: Mapping[str, Any], budget: _Budget, names: Iterable[str] | None = None
) -> dict[str, Any]:
    """Convert the top-level entries the expression can name (all of them if ``names``
    is None). CEL has no dynamic lookup, so data an expression never names is skipped."""
    if not isinstance(data, Mapping):
        raise ExpressionError("表达式的数据必须是字典（映射）", kind="data")
    values: dict[str, Any] = {}
    keys = data.keys() if names is None else [n for n in names if n in data]
    for key in keys:
        if isinstance(key, str) and _IDENTIFIER.fullmatch(key):
            values[key] = _to_cel(data[key], key, 0, budget)
    budget.name_cost = 1 + len(values) // 32
    return values


def _to_cel(value: Any, path: str, depth: int, budget: _Budget) -> Any:
    """JSON-like Python value -> CEL value; records data identities and weights."""
    if depth > MAX_DATA_DEPTH:
        return _DataError(path, f"nesting deeper than {MAX_DATA_DEPTH}")
    result: Any
    if value is None:
        return None
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            return _DataError(path, "integer out of int64 range")
        return celtypes.IntType(value)
    if isinstance(value, float):
        return celtypes.DoubleType(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return _DataError(path, "decimal is not finite")
        return value
    if isinstance(value, str):
        result = celtypes.StringType(value)
        budget.data_ids.add(id(result))
        budget.weights[id(result)] = (result, 1 + len(result) // 16)
        return result
    if isinstance(value, (bytes, bytearray)):
        result = celtypes.BytesType(bytes(value))
        budget.data_ids.add(id(result))
        return result
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            return _DataError(path, "datetime without time zone")
        return celtypes.TimestampType(value)
    if isinstance(value, datetime.timedelta):
        try:
            return celtypes.DurationType(value)
        except ValueError:
            return _DataError(path, "duration out of range")
    if isinstance(value, (list, tuple)):
        items = [_to_cel(v, f"{path}[{i}]", depth + 1, budget) for i, v in enumerate(value)]
        result = celtypes.ListType(items)
        weight = 1 + sum(_known_weight(v, budget) for v in items)
    elif isinstance(value, Mapping):
        entries: dict[Any, Any] = {}
        weight = 1
        for k, v in value.items():
            if isinstance(k, bool):
                cel_key: Any = celtypes.BoolType(k)
            elif isinstance(k, int):
                cel_key = celtypes.IntType(k) if -(2**63) <= k < 2**63 else None
            elif isinstance(k, str):
                cel_key = celtypes.StringType(k)
            else:
                cel_key = None
            if cel_key is None:
                continue  # keys CEL cannot express are not visible
            item = _to_cel(v, f"{path}.{k}", depth + 1, budget)
            entries[cel_key] = item
            weight += _known_weight(cel_key, budget) + _known_weight(item, budget)
        result = celtypes.MapType(entries)
    else:
        return _DataError(path, f"unsupported type {type(value).__name__}")
    budget.data_ids.add(id(result))
    budget.weights[id(result)] = (result, weight)
    return result


def _known_weight(value: Any, budget: _Budget) -> int:
    if isinstance(value, (list, dict)):
        return budget.weights[id(value)][1]
    if isinstance(value, (str, bytes)):
        return 1 + len(value) // 16
    return 1


# ---------------------------------------------------------------------------
# Results and errors
# ---------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (celtypes.BoolType, bool)):
        return "bool"
    if isinstance(value, celtypes.UintType):
        return "uint"
    if isinstance(value, decimal.Decimal):
        return "decimal"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, datetime.datetime):
        return "timestamp"
    if isinstance(value, datetime.timedelta):
        return "duration"
    if isinstance(value, type):
        return "type"
    return type(value).__name__


def _to_python(value: Any, source: str, depth: int = 0) -> Any:
    if isinstance(value, CELEvalError):
        raise _translate(value, source)
    if depth > MAX_DATA_DEPTH + MAX_NESTING_DEPTH:
        raise ExpressionError("表达式结果嵌套过深", kind="limit")
    if value is None:
        return None
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, decimal.Decimal):
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, list):
        return [_to_python(v, source, depth + 1) for v in value]
    if isinstance(value, dict) and isinstance(value, celtypes.MapType):
        return {
            _to_python(k, source, depth + 1): _to_python(v, source, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, datetime.datetime):
        return datetime.datetime(
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
            tzinfo=value.tzinfo,
        )
    if isinstance(value, datetime.timedelta):
        return datetime.timedelta(
            days=value.days, seconds=value.seconds, microseconds=value.microseconds
        )
    raise ExpressionError(f"表达式的结果不是数据值（得到 {_type_name(value)}）", kind="type")


def _snippet(error: CELEvalError, source: str) -> str | None:
    tree = error.tree
    if tree is None:
        return None
    start = getattr(tree.meta, "start_pos", None)
    end = getattr(tree.meta, "end_pos", None)
    if start is None or end is None:
        return None
    text = source[start:end].strip()
    return text if len(text) <= 60 else text[:57] + "..."


def _translate(error: CELEvalError, source: str) -> ExpressionError:
    """A celpy error value -> ExpressionError with a Chinese message and position."""
    line, column = error.line, error.column
    if isinstance(error, _DataError):
        return ExpressionError(
            f"字段“{error.path}”的值无法用于表达式（{error.reason}）",
            kind="data",
            line=line,
            column=column,
        )
    raw = str(error.args[0]) if error.args else ""
    snippet = _snippet(error, source)
    cause = error.args[1] if len(error.args) > 1 else None
    if raw.startswith("undeclared reference to"):
        match = re.search(r"'([^']*)'", raw)
        name = match.group(1) if match else (snippet or "?")
        return ExpressionError(
            f"字段“{name}”不存在（可先用 has({name}) 判断）",
            kind="missing",
            line=line,
            column=column,
        )
    if raw.startswith("no such member in mapping") or raw == "no such key":
        if raw == "no such key" and len(error.args) > 2 and error.args[2]:
            key = error.args[2][0] if isinstance(error.args[2], tuple) else error.args[2]
            name = snippet or repr(key)
        else:
            match = re.search(r"'([^']*)'", raw)
            name = snippet or (match.group(1) if match else "?")
        return ExpressionError(
            f"字段“{name}”不存在（可先用 has({name}) 判断）",
            kind="missing",
            line=line,
            column=column,
        )
    if raw == "invalid_argument" or cause is IndexError:
        where = f"“{snippet}”" if snippet else ""
        return ExpressionError(f"列表下标越界{where}", kind="eval", line=line, column=column)
    if raw == "field selection on a non-map":
        return ExpressionError(
            f"“{snippet or '?'}”：该值不是对象，不能用“.”取字段",
            kind="type",
            line=line,
            column=column,
        )
    if "divide by zero" in raw or cause is ZeroDivisionError:
        return ExpressionError("除数不能为零", kind="eval", line=line, column=column)
    if "overload" in raw or cause is TypeError:
        if snippet:
            message = f"类型不匹配：无法计算“{snippet}”"
        elif error.token is not None:
            message = f"类型不匹配：“{error.token.value}”不支持这些参数"
        else:
            message = "类型不匹配"
        return ExpressionError(message, kind="type", line=line, column=column)
    if "overflow" in raw or cause in (ValueError, OverflowError):
        where = f"“{snippet or (error.token.value if error.token else '')}”"
        return ExpressionError(
            f"参数无效或数值超出范围：{where}", kind="eval", line=line, column=column
        )
    return ExpressionError(f"表达式求值失败：{raw}", kind="eval", line=line, column=column)


def _stack_depth() -> int:
    frame: types.FrameType | None = sys._getframe()
    depth = 0
    while frame is not None:
        depth += 1
        frame = frame.f_back
    return depth


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Expression:
    """A compiled, statically checked expression. Immutable; safe to share."""

    text: str
    _tree: lark.Tree = field(repr=False)
    depth: int = 0
    macro_nesting: int = 0
    names: frozenset[str] = frozenset()

    def evaluate(
        self,
        data: Mapping[str, Any],
        *,
        max_steps: int = MAX_STEPS,
        stats: EvaluationStats | None = None,
    ) -> Any:
        """Evaluate over ``data``; plain Python result or ExpressionError."""
        budget = _Budget(max_steps)
        try:
            values = _convert_data(data, budget, self.names)
            needed = (
                self.depth * _FRAMES_PER_LEVEL
                + self.macro_nesting * _FRAMES_PER_MACRO
                + _STACK_MARGIN
            )
            if _stack_depth() + needed > sys.getrecursionlimit():
                raise ExpressionError("调用栈空间不足，无法计算嵌套这么深的表达式", kind="limit")
            activation = Activation(vars=values, functions=_make_functions(budget))
            evaluator = _GuardedEvaluator(self._tree, activation, budget)
            try:
                value = evaluator.evaluate(None)
            except CELEvalError as error:
                raise _translate(error, self.text) from None
            if budget.exceeded:
                raise _LimitExceeded("表达式计算量超出上限，已停止求值")
            return _to_python(value, self.text)
        except ExpressionError:
            raise
        except _LimitExceeded as exc:
            raise ExpressionError(exc.message, kind="limit") from None
        except RecursionError:
            raise ExpressionError("表达式嵌套层次过深，请拆分或简化", kind="limit") from None
        except Exception as exc:
            raise ExpressionError(f"表达式求值出错（{type(exc).__name__}）", kind="eval") from exc
        finally:
            if stats is not None:
                stats.steps = budget.steps
                stats.max_steps = max_steps

    def evaluate_condition(
        self,
        data: Mapping[str, Any],
        *,
        max_steps: int = MAX_STEPS,
        stats: EvaluationStats | None = None,
    ) -> bool:
        """Evaluate as a condition: the result must be a bool."""
        value = self.evaluate(data, max_steps=max_steps, stats=stats)
        if not isinstance(value, bool):
            raise ExpressionError(
                f"条件表达式的结果必须是 true 或 false，实际是 {_type_name(value)}",
                kind="type",
            )
        return value


def compile_expression(text: str) -> Expression:
    """Parse and check ``text`` (cached). Raises ExpressionError."""
    if not isinstance(text, str):
        raise ExpressionError("表达式必须是字符串", kind="syntax")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"表达式过长（{len(text)} 个字符，最多 {MAX_EXPRESSION_LENGTH} 个）", kind="limit"
        )
    if not text.strip():
        raise ExpressionError("表达式不能为空", kind="syntax")
    return _compile_cached(text)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compile_cached(text: str) -> Expression:
    _scan_string_literals(text)
    try:
        tree = _parser().parse(text)
    except LarkError as exc:
        raise _syntax_error(exc, text) from None
    except RecursionError:
        raise ExpressionError("表达式嵌套层次过深，请拆分或简化", kind="limit") from None
    except Exception as exc:  # anything else from the parser is still just bad text
        raise ExpressionError(f"表达式语法错误（{type(exc).__name__}）", kind="syntax") from exc
    root = _collapse(tree)
    depth, macros, names = _analyse(root)
    return Expression(text=text, _tree=root, depth=depth, macro_nesting=macros, names=names)


def evaluate_condition(text: str, data: Mapping[str, Any]) -> bool:
    """Compile (cached) and evaluate ``text`` as a condition over ``data``."""
    return compile_expression(text).evaluate_condition(data)


def check(text: str) -> str | None:
    """The error message if ``text`` is not a valid expression, else None."""
    try:
        compile_expression(text)
    except ExpressionError as exc:
        return str(exc)
    return None
