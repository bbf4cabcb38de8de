"""Text patterns of form fields (`"pattern"` in a field's schema), safe to run on the server and
identical in meaning in the console.

JSON Schema says a pattern is an ECMA-262 regular expression; the console tests it with
``new RegExp(pattern, "u")``. Python's ``re`` means something else by several of the same
characters (``\\d`` matches "１" and "٣", ``$`` matches before a final newline, ``.`` matches
"\\r"), and neither engine stops on a pattern that backtracks for ever. So a pattern is accepted
only in a small portable subset, parsed here and translated into an explicit Python pattern with
the JavaScript meaning spelled out; the result runs on the `regex` package with a time limit.

The subset (what a form designer needs for 工号, 订单号, 车牌, 邮编…):

- literal characters (Chinese included); ``\\uXXXX`` and ``\\u{X…}`` escapes; ``\\n \\r \\t \\f \\v \\0``;
  the syntax characters escaped: ``\\^ \\$ \\\\ \\. \\* \\+ \\? \\( \\) \\[ \\] \\{ \\} \\| \\/`` (and ``\\-`` in a set)
- ``.`` (any character but a line break), ``\\d \\D \\w \\W \\s \\S`` (ASCII digits and word characters,
  JavaScript's white space), sets ``[a-z0-9_]`` and ``[^…]`` (with ``\\d \\w \\s`` inside)
- anchors ``^ $``, word boundaries ``\\b \\B`` (ASCII words, as in JavaScript)
- groups ``( … )`` and ``(?: … )``, alternation ``|``
- quantifiers ``* + ? {n} {n,} {n,m}`` (n, m ≤ 1000), each optionally lazy (``*?``)

Refused, with a Chinese message: look-around, back-references, named groups, inline flags,
``\\p{…}``, and — the catastrophic-backtracking guard — a group repeated more than once whose
inside repeats or alternates (``(a+)+``, ``(a|aa)*``, ``(\\w+\\.)+``, ``(.*a){12}``): such a pattern
can take exponential time on a short answer. Write ``(a+)+`` as ``a+``; ``(\\d{3}-){2}`` as
``\\d{3}-\\d{3}-``. What the static rule cannot see (polynomial blow-ups such as ``.*.*.*x``) the
time limit stops: ``search`` raises `PatternTimeout` instead of hanging a worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import regex

MAX_PATTERN_LENGTH = 200
MAX_REPEAT = 1000
TIMEOUT_SECONDS = 0.05  # per search; `regex` checks the clock coarsely, so allow ~3x in practice

_SYNTAX = set("^$\\.*+?()[]{}|/")
_LINE_BREAKS = "\n\r\u2028\u2029"
# ECMAScript WhiteSpace and LineTerminator: what `\s` means in the console.
_JS_SPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_CLASS_BODY = {"d": "0-9", "w": "A-Za-z0-9_", "s": "".join(f"\\U{ord(c):08x}" for c in _JS_SPACE)}
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "f": "\f", "v": "\v"}


class PatternError(ValueError):
    """A pattern outside the portable subset; `message` is Chinese and says what to change."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class PatternTimeout(Exception):
    """The pattern took longer than its time limit on this answer."""


@dataclass(frozen=True)
class Pattern:
    source: str  # as the designer wrote it (what the console compiles)
    python: str  # the translation the server runs
    compiled: regex.Pattern[str]

    def search(self, text: str, timeout: float = TIMEOUT_SECONDS) -> bool:
        """Whether the pattern occurs in `text` (JSON Schema: not anchored unless ^ $ say so)."""
        try:
            return self.compiled.search(text, timeout=max(timeout, 0.001)) is not None
        except TimeoutError as exc:
            raise PatternTimeout(self.source) from exc


def _char(c: str) -> str:
    """One literal character in the Python pattern: escaped unless a letter or digit."""
    if c.isascii() and c.isalnum():
        return c
    return f"\\U{ord(c):08x}"


@dataclass
class _Node:
    """What the backtracking guard needs to know about a parsed piece."""

    repeats: bool = False  # contains a quantifier
    alternates: bool = False  # contains |
    width: int = 0  # 0 for assertions: nothing to repeat


class _Parser:
    def __init__(self, source: str):
        self.s = source
        self.i = 0

    def fail(self, message: str) -> PatternError:
        return PatternError(f"格式规则第 {self.i + 1} 个字符处：{message}")

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def take(self) -> str:
        c = self.peek()
        self.i += 1
        return c

    # pattern := alternative ('|' alternative)*
    def disjunction(self) -> tuple[str, _Node]:
        parts: list[str] = []
        info = _Node(width=0)
        while True:
            text, alt = self.alternative()
            parts.append(text)
            info.repeats |= alt.repeats
            info.alternates |= alt.alternates
            info.width = max(info.width, alt.width)
            if self.peek() != "|":
                break
            self.take()
            info.alternates = True
        return "|".join(parts), info

    def alternative(self) -> tuple[str, _Node]:
        out: list[str] = []
        info = _Node(width=0)
        while self.peek() not in ("", "|", ")"):
            text, atom = self.term()
            out.append(text)
            info.repeats |= atom.repeats
            info.alternates |= atom.alternates
            info.width += atom.width
        return "".join(out), info

    def term(self) -> tuple[str, _Node]:
        start = self.i
        text, atom, quantifiable = self.atom()
        if self.peek() in ("*", "+", "?", "{"):
            if not quantifiable:
                self.i = start
                raise self.fail("这里没有可以重复的内容")
            q_text, high = self.quantifier()
            if high > 1 and (atom.repeats or atom.alternates):
                raise PatternError(
                    "格式规则里有嵌套的重复（如 (a+)+ 或 (a|b)*），可能让校验极慢，"
                    "请改写为不嵌套的形式（如 a+）"
                )
            return text + q_text, _Node(repeats=True, alternates=atom.alternates, width=1)
        return text, atom

    def quantifier(self) -> tuple[str, int]:
        c = self.take()
        if c == "*":
            text, high = "*", MAX_REPEAT + 1
        elif c == "+":
            text, high = "+", MAX_REPEAT + 1
        elif c == "?":
            text, high = "?", 1
        else:
            low = self.number()
            high_n: int | None = low
            if self.peek() == ",":
                self.take()
                high_n = self.number() if self.peek().isdigit() else None
            if self.take() != "}":
                raise self.fail("重复次数应写成 {n}、{n,} 或 {n,m}")
            if high_n is not None and high_n < low:
                raise self.fail("重复次数的上限小于下限")
            if max(low, high_n or 0) > MAX_REPEAT:
                raise self.fail(f"重复次数不能超过 {MAX_REPEAT}")
            text = f"{{{low},{'' if high_n is None else high_n}}}"
            high = MAX_REPEAT + 1 if high_n is None else high_n
        if self.peek() == "?":
            self.take()
            text += "?"
        return text, high

    def number(self) -> int:
        start = self.i
        while self.peek().isascii() and self.peek().isdigit():
            self.take()
        if start == self.i:
            raise self.fail("重复次数应写成 {n}、{n,} 或 {n,m}（需要转义的花括号写成 \\{）")
        if self.i - start > 4:
            raise self.fail(f"重复次数不能超过 {MAX_REPEAT}")
        return int(self.s[start : self.i])

    def atom(self) -> tuple[str, _Node, bool]:
        c = self.take()
        if c == "^":
            return "^", _Node(), False
        if c == "$":
            return r"\Z", _Node(), False  # JavaScript's $ without the m flag: the very end
        if c == ".":
            return "[^" + "".join(_char(x) for x in _LINE_BREAKS) + "]", _Node(width=1), True
        if c == "(":
            if self.peek() == "?":
                self.take()
                if self.take() != ":":
                    raise self.fail("不支持 (?= (?! (?<= (?<! (?<名称> 等写法，只支持 ( ) 与 (?: )")
            text, inner = self.disjunction()
            if self.take() != ")":
                raise self.fail("缺少右括号 )")
            return f"(?:{text})", inner, inner.width > 0
        if c == ")":
            raise self.fail("多余的右括号 )")
        if c == "[":
            return self.char_class(), _Node(width=1), True
        if c == "\\":
            return self.escape()
        if c in ("*", "+", "?", "{"):
            self.i -= 1
            raise self.fail("这里没有可以重复的内容")
        if c in ("]", "}"):
            self.i -= 1
            raise self.fail(f"字符 {c} 需要写成 \\{c}")
        if 0xD800 <= ord(c) <= 0xDFFF:
            raise self.fail("不支持的字符")
        return _char(c), _Node(width=1), True

    def escape(self) -> tuple[str, _Node, bool]:
        c = self.take()
        if c in ("b", "B"):
            return "\\" + c, _Node(), False
        if c in ("d", "w", "s"):
            return f"[{_CLASS_BODY[c]}]", _Node(width=1), True
        if c in ("D", "W", "S"):
            return f"[^{_CLASS_BODY[c.lower()]}]", _Node(width=1), True
        return _char(self.literal_escape(c, in_class=False)), _Node(width=1), True

    def literal_escape(self, c: str, *, in_class: bool) -> str:
        """The character an escape such as \\n, \\u4e00 or \\. stands for."""
        if c in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[c]
        if c == "0" and not self.peek().isdigit():
            return "\0"
        if c == "u":
            return self.unicode_escape()
        if c in _SYNTAX or (in_class and c == "-"):
            return c
        if c == "":
            raise self.fail("格式规则不能以 \\ 结尾")
        if c.isdigit() or c == "k":
            raise self.fail("不支持反向引用（\\1、\\k<名称>）")
        if c in ("p", "P"):
            raise self.fail("不支持 \\p{…}，汉字请写成 [\\u4e00-\\u9fa5]")
        raise self.fail(f"不支持的转义 \\{c}")

    def unicode_escape(self) -> str:
        if self.peek() == "{":
            self.take()
            end = self.s.find("}", self.i)
            digits = self.s[self.i : end] if end > 0 else ""
            self.i = end + 1 if end > 0 else len(self.s)
        else:
            digits = self.s[self.i : self.i + 4]
            self.i += 4
            if len(digits) != 4:
                raise self.fail("\\u 后应为 4 位十六进制数")
        try:
            code = int(digits, 16) if digits and len(digits) <= 6 else -1
        except ValueError:
            code = -1
        if not (0 <= code <= 0x10FFFF) or 0xD800 <= code <= 0xDFFF:
            raise self.fail("\\u 转义不是有效的字符")
        return chr(code)

    def char_class(self) -> str:
        negate = self.peek() == "^"
        if negate:
            self.take()
        body: list[str] = []
        if self.peek() == "]":
            raise self.fail("空的字符集 []；字符 ] 需要写成 \\]")
        while True:
            c = self.peek()
            if c == "":
                raise self.fail("字符集缺少 ]")
            if c == "]":
                self.take()
                break
            low, low_class = self.class_atom()
            if self.peek() == "-" and self.s[self.i + 1 : self.i + 2] not in ("]", ""):
                self.take()
                high, high_class = self.class_atom()
                if low_class is not None or high_class is not None:
                    raise self.fail("字符集的范围两端不能是 \\d \\w \\s")
                assert low is not None and high is not None
                if ord(low) > ord(high):
                    raise self.fail(f"字符集的范围 {low}-{high} 顺序颠倒")
                body.append(f"{_char(low)}-{_char(high)}")
            elif low_class is not None:
                body.append(low_class)
            else:
                assert low is not None
                body.append(_char(low))
        return "[" + ("^" if negate else "") + "".join(body) + "]"

    def class_atom(self) -> tuple[str | None, str | None]:
        """(a literal character, None) or (None, the body of \\d \\w \\s)."""
        c = self.take()
        if c == "[":
            raise self.fail("字符集里的 [ 需要写成 \\[")
        if 0xD800 <= ord(c) <= 0xDFFF:
            raise self.fail("不支持的字符")
        if c != "\\":
            return c, None
        e = self.take()
        if e in ("d", "w", "s"):
            return None, _CLASS_BODY[e]
        if e in ("D", "W", "S"):
            raise self.fail(f"字符集里不支持 \\{e}，请改用 [^…]")
        if e == "b":
            raise self.fail("字符集里不支持 \\b")
        return self.literal_escape(e, in_class=True), None


def compile_pattern(source: str) -> Pattern:
    """Parse a designer's pattern, refuse what is outside the subset, compile its translation."""
    if not isinstance(source, str) or not source:
        raise PatternError("格式规则应为非空文字")
    if len(source) > MAX_PATTERN_LENGTH:
        raise PatternError(f"格式规则不能超过 {MAX_PATTERN_LENGTH} 个字符")
    parser = _Parser(source)
    text, _ = parser.disjunction()
    if parser.i < len(source):  # only a stray ")" stops the top-level disjunction early
        raise parser.fail("多余的右括号 )")
    try:
        # ASCII: \b and \B see ASCII word characters, as JavaScript does; \d \w \s are spelled out.
        compiled = regex.compile(text, regex.ASCII | regex.VERSION0)
    except regex.error as exc:  # pragma: no cover - the parser accepts only what compiles
        raise PatternError("格式规则无法解析") from exc
    return Pattern(source, text, compiled)
