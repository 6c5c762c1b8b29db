"""IAM wildcard matching (registry/policies/glob.py): tables and a brute-force reference."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.policies.glob import Piece, compile_glob, compile_pieces

# ---------------------------------------------------------------------------------------------
# Reference: a direct recursive reading of the IAM rules, slow but obviously right.

Token = tuple[str, str]  # ("run", "") for *, ("one", "") for ?, ("char", c) for a literal


def tokens(pieces: tuple[Piece, ...]) -> tuple[Token, ...]:
    out: list[Token] = []
    for literal, text in pieces:
        for c in text:
            if literal:
                out.append(("char", c))
            elif c == "*":
                out.append(("run", ""))
            elif c == "?":
                out.append(("one", ""))
            else:
                out.append(("char", c))
    return tuple(out)


def reference(pattern: tuple[Token, ...], text: str) -> bool:
    @cache
    def match(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(text)
        kind, c = pattern[i]
        if kind == "run":
            return match(i + 1, j) or (j < len(text) and match(i, j + 1))
        if j == len(text):
            return False
        return (kind == "one" or c == text[j]) and match(i + 1, j + 1)

    return match(0, 0)


# ---------------------------------------------------------------------------------------------
# Tables


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        pytest.param("*", "", True, id="star-matches-empty"),
        pytest.param("*", "a/b/c", True, id="star-matches-everything"),
        pytest.param("a/*", "a/", True, id="trailing-star-matches-empty-rest"),
        pytest.param("a/*", "a/b/c", True, id="star-spans-slash"),
        pytest.param("a/*", "a", False, id="prefix-must-be-whole"),
        pytest.param("*/c", "a/b/c", True, id="leading-star"),
        pytest.param("a*b*c", "aXbYc", True, id="two-stars"),
        pytest.param("a*b*c", "acb", False, id="two-stars-wrong-order"),
        pytest.param("a*a", "a", False, id="segments-must-not-overlap"),
        pytest.param("a**b", "ab", True, id="double-star"),
        pytest.param("a?c", "abc", True, id="question-one-char"),
        pytest.param("a?c", "ac", False, id="question-not-zero-chars"),
        pytest.param("a?c", "abbc", False, id="question-not-two-chars"),
        pytest.param("a?c", "a/c", True, id="question-matches-slash"),
        pytest.param("a?", "a\n", True, id="question-matches-newline"),
        pytest.param("*?b?*", "xxbx", True, id="question-between-stars"),
        pytest.param("*?b?*", "b", False, id="question-between-stars-too-short"),
        pytest.param("a/+", "a/+", True, id="plus-is-literal"),
        pytest.param("a/+", "a/b", False, id="plus-is-not-a-level-wildcard"),
        pytest.param("a/#", "a/#", True, id="hash-is-literal"),
        pytest.param("a/#", "a/b/c", False, id="hash-is-not-a-multilevel-wildcard"),
        pytest.param("a/*", "a/#", True, id="star-covers-hash-filter"),
        pytest.param("Topic", "topic", False, id="case-sensitive"),
        pytest.param("", "", True, id="empty-matches-empty"),
        pytest.param("", "a", False, id="empty-matches-only-empty"),
    ],
)
def test_glob(pattern: str, text: str, expected: bool) -> None:
    assert compile_glob(pattern).matches(text) is expected


@pytest.mark.parametrize(
    ("pieces", "text", "expected"),
    [
        pytest.param(((True, "a*"),), "a*", True, id="literal-star-matches-star"),
        pytest.param(((True, "a*"),), "ab", False, id="literal-star-is-not-a-wildcard"),
        pytest.param(((True, "a?"),), "ab", False, id="literal-question-is-not-a-wildcard"),
        pytest.param(((False, "t/"), (True, "x*"), (False, "/*")), "t/x*/a/b", True, id="mixed"),
        pytest.param(((False, "t/"), (True, "x*"), (False, "/*")), "t/xy/a", False, id="mixed-no"),
        pytest.param(((False, "*"), (True, "?"), (False, "*")), "a?b", True, id="literal-in-run"),
        pytest.param(((False, "*"), (True, "?"), (False, "*")), "ab", False, id="literal-absent"),
    ],
)
def test_pieces(pieces: tuple[Piece, ...], text: str, expected: bool) -> None:
    assert compile_pieces(pieces).matches(text) is expected


def test_compiled_once_per_pattern() -> None:
    assert compile_glob("cache/*/check") is compile_glob("cache/*/check")


def test_many_stars_do_not_backtrack() -> None:
    # A translated regex (.*a.*a...) would take on the order of len**stars steps here.
    assert not compile_glob("*a*a*a*a*a*a*a*b").matches("a" * 20_000)
    assert compile_glob("*a*a*a*a*a*a*a*b").matches("a" * 20_000 + "b")


# ---------------------------------------------------------------------------------------------
# Properties

ALPHABET = "ab*?/+#"
patterns = st.text(ALPHABET, max_size=10)
subjects = st.text(ALPHABET, max_size=12)
pieces_strategy = st.lists(st.tuples(st.booleans(), st.text(ALPHABET, max_size=4)), max_size=4)


@given(patterns, subjects)
def test_glob_agrees_with_reference(pattern: str, text: str) -> None:
    assert compile_glob(pattern).matches(text) == reference(tokens(((False, pattern),)), text)


@st.composite
def pattern_and_instance(draw: st.DrawFn) -> tuple[str, str]:
    """A pattern and a string built to match it, so that matches are not rare."""
    pattern = draw(patterns)
    out = []
    for c in pattern:
        if c == "*":
            out.append(draw(st.text(ALPHABET, max_size=3)))
        elif c == "?":
            out.append(draw(st.sampled_from(ALPHABET)))
        else:
            out.append(c)
    text = "".join(out)
    # Sometimes damage it by one character, to probe near misses.
    if text and draw(st.booleans()):
        i = draw(st.integers(0, len(text) - 1))
        text = text[:i] + draw(st.sampled_from(ALPHABET)) + text[i + 1 :]
    return pattern, text


@given(pattern_and_instance())
def test_glob_agrees_with_reference_near_matches(case: tuple[str, str]) -> None:
    pattern, text = case
    assert compile_glob(pattern).matches(text) == reference(tokens(((False, pattern),)), text)


@given(pieces_strategy, subjects)
def test_pieces_agree_with_reference(pieces: list[tuple[bool, str]], text: str) -> None:
    as_tuple = tuple(pieces)
    assert compile_pieces(as_tuple).matches(text) == reference(tokens(as_tuple), text)


@given(st.text(ALPHABET, max_size=8), subjects)
def test_literal_piece_matches_only_itself(literal: str, text: str) -> None:
    assert compile_pieces(((True, literal),)).matches(text) == (text == literal)
