"""Patterns of text fields: the portable subset, its JavaScript meaning on the server, the guard
against catastrophic backtracking, and the time limit behind it."""

from __future__ import annotations

import time

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from jingwei.tickets.form_patterns import (
    Pattern,
    PatternError,
    PatternTimeout,
    compile_pattern,
)
from jingwei.tickets.forms import FormErrors, validate_answers

from .helpers import single


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        (r"^[A-Z]{2}\d{4}$", ["AB1234"], ["ab1234", "AB12345", "AB1234\n"]),
        (r"^1[3-9]\d{9}$", ["13812345678"], ["12812345678"]),
        (r"^[\u4e00-\u9fa5]{2,4}$", ["王建国"], ["王", "Wang"]),
        (r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", ["a@b.cn"], ["a @b.cn", "a@b"]),
        (r"^(京|沪|粤)[A-Z][A-Z0-9]{5}$", ["沪A12345"], ["苏A12345"]),
        (r"^\d{3}-?\d{4}$", ["123-4567", "1234567"], ["123--4567"]),
        (r"\bSN\b", ["SN 1", "a-SN"], ["SNX", "xSN"]),
        (r"a.c", ["abc", "a中c"], ["a\nc", "a\rc", "a\u2028c"]),
        (r"^\s$", [" ", "\u3000", "\u00a0", "\t"], ["x"]),
        (r"^\w$", ["a", "_", "9"], ["中", "é"]),
        (r"^\d$", ["7"], ["７", "٣"]),
        (r"[\d\-]", ["-", "5"], ["x"]),
        (r"^\$\{\}\(\)\[\]\|\/\.\*\+\?\^\\$", ["${}()[]|/.*+?^\\"], ["x"]),
        (r"^(?:ab)?c*?$", ["abccc", "", "c"], ["a"]),
        (r"\u{1F600}", ["😀"], [":)"]),
    ],
)
def test_pattern_means_what_it_means_in_javascript(pattern, yes, no):
    compiled = compile_pattern(pattern)
    assert all(compiled.search(text) for text in yes)
    assert not any(compiled.search(text) for text in no)


def test_chinese_next_to_latin_is_a_word_boundary_as_in_javascript():
    assert compile_pattern(r"\bSN").search("编号SN")  # 号 is not an ASCII word character


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("(a+)+$", "嵌套"),
        ("(a|aa)+", "嵌套"),
        (r"(\w+\.)+com", "嵌套"),
        ("(.*a){12}", "嵌套"),
        ("(a?b?)*", "嵌套"),
        ("((ab)*c)+", "嵌套"),
        ("(?=a)", "(?="),
        ("(?<name>a)", "(?="),
        ("(?i)a", "(?="),
        (r"(a)\1", "反向引用"),
        (r"\p{Han}", "\\p"),
        (r"\x41", "不支持的转义"),
        (r"\-", "不支持的转义"),
        ("a{2,1}", "上限"),
        ("a{1001}", "1000"),
        ("a{,3}", "{n}"),
        ("*a", "重复"),
        ("a**", "重复"),
        ("^*", "重复"),
        ("()*", "重复"),
        ("a]", "\\]"),
        ("a}", "\\}"),
        ("[z-a]", "颠倒"),
        (r"[\d-z]", "范围"),
        (r"[\D]", "[^"),
        ("[]", "空的字符集"),
        ("[a", "缺少"),
        ("(a", "右括号"),
        ("a)", "右括号"),
        ("a\\", "结尾"),
        (r"\u12", "十六进制"),
        (r"\u{110000}", "有效"),
        (r"\uD800", "有效"),
        ("", "非空"),
    ],
)
def test_pattern_outside_the_portable_subset_is_refused(pattern, words):
    with pytest.raises(PatternError) as caught:
        compile_pattern(pattern)
    assert words in caught.value.message


def test_catastrophic_pattern_is_refused_before_it_can_run():
    started = time.monotonic()
    with pytest.raises(PatternError):
        compile_pattern("(a+)+$")
    assert time.monotonic() - started < 1


def test_a_slow_pattern_the_guard_cannot_see_stops_at_the_time_limit():
    # Polynomial, not nested: allowed by the static rule, slow on a long answer.
    form = single("textarea", pattern=".*a.*a.*a.*a.*a.*a.*b", label="描述")
    started = time.monotonic()
    with pytest.raises(FormErrors) as caught:
        validate_answers(form, {"f": "a" * 1000})
    assert time.monotonic() - started < 3  # the limit is 0.25 s per form; the clock is coarse
    assert caught.value.codes == {"f": "pattern_timeout"}
    assert "描述" in caught.value.errors["f"]


def test_the_time_limit_holds_for_an_exponential_pattern_too():
    evil = Pattern("(a|aa)+$", "(a|aa)+$", regex.compile("^(a|aa)+$"))
    started = time.monotonic()
    with pytest.raises(PatternTimeout):
        evil.search("a" * 40 + "!", timeout=0.05)
    assert time.monotonic() - started < 2


# --- the same verdict as the console's RegExp(pattern, "u") ------------------------------------

PIECES = [
    "a",
    "b",
    "1",
    "中",
    " ",
    "-",
    "_",
    ".",
    r"\d",
    r"\w",
    r"\s",
    r"\D",
    r"\W",
    r"\S",
    r"\.",
    r"\-",
    "[a-c]",
    r"[^\d]",
    r"[\w-]",
    r"[\s中]",
    "^",
    "$",
    r"\b",
    r"\B",
    "(",
    ")",
    "(?:",
    "|",
    "*",
    "+",
    "?",
    "{2}",
    "{1,3}",
    "{0,}",
    "*?",
    "+?",
    r"\u4e2d",
    r"\n",
    "]",
    "{",
    r"\/",
]
ALPHABET = "ab1中 -_.\n\r\u3000\u00a0\u2028A９é"


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=8).map("".join),
    st.lists(st.text(alphabet=ALPHABET, max_size=10), min_size=1, max_size=6),
)
def test_every_accepted_pattern_matches_exactly_as_in_the_console(console, pattern, texts):
    try:
        compiled = compile_pattern(pattern)
    except PatternError:
        return  # outside the subset: refused when the form is checked
    answer = console.ask({"pattern": pattern, "inputs": texts})
    assert answer["ok"], f"{pattern!r} compiles here but not in JavaScript"
    assert [compiled.search(t) for t in texts] == answer["results"], pattern
