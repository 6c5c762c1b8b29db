"""IAM wildcard matching: ``*`` is any run of characters (``/`` included), ``?`` is one character.

Used for ``Action``, ``Resource``, ``StringLike`` and ``ArnLike``. MQTT's ``+`` and ``#`` mean
nothing here: AWS IoT treats them as literal characters in policies (reference section 4.3).

A pattern is a sequence of pieces; each is either policy text, where ``*`` and ``?`` are
wildcards, or a literal (the value of a policy variable, or ``${*}``), where they are not. A
client id of ``a*`` must not turn ``topic/${iot:ClientId}`` into a wildcard grant.

Why not ``re``: translating ``*`` to ``.*`` gives a backtracking regex whose cost grows as
``len(topic) ** stars``. Here the pattern is cut at each ``*`` into fixed-length segments; the
first must match at the start, the last at the end, and each middle segment at its leftmost
place after the previous one. Leftmost is always right because a star-free segment has a fixed
length, so taking the earliest place leaves the most room for the rest. That makes a match
``O(len(pattern) * len(text))`` at worst, and usually a few ``str.find`` calls in C.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

Piece = tuple[bool, str]
"""``(is_literal, text)``: literal text has no wildcards; other text is an IAM glob."""

# Compiled matchers are cached per distinct pattern, so the broker's hot path compiles each
# policy resource once, and each resolved ``${...}`` value once per client, not once per call.
_CACHE_SIZE = 8192


@dataclass(frozen=True, slots=True)
class _Segment:
    """A run of the pattern between two stars: fixed length, with ``?`` as any one character."""

    length: int
    text: str
    regex: re.Pattern[str] | None
    """Only when the segment holds a ``?``; plain segments use ``str`` methods, which are faster."""

    def match_at(self, subject: str, start: int) -> bool:
        regex = self.regex
        if regex is None:
            return subject.startswith(self.text, start)
        return regex.match(subject, start) is not None

    def find(self, subject: str, start: int, end: int) -> int:
        """The leftmost index ``i >= start`` with the whole segment inside ``[start, end)``."""
        regex = self.regex
        if regex is None:
            return subject.find(self.text, start, end)
        found = regex.search(subject, start, end)
        return -1 if found is None else found.start()


class Glob:
    """A compiled IAM wildcard pattern; build it with ``compile_glob`` or ``compile_pieces``."""

    __slots__ = ("_exact", "_min_length", "_segments", "pieces")

    def __init__(self, pieces: tuple[Piece, ...]) -> None:
        self.pieces = pieces
        segments = _segments(pieces)
        self._segments = segments
        self._min_length = sum(s.length for s in segments)
        # A pattern without ``*`` is one segment and matches text of exactly its length.
        self._exact = segments[0] if len(segments) == 1 else None

    def __repr__(self) -> str:
        return f"Glob({self.pieces!r})"

    def matches(self, subject: str) -> bool:
        """Whether ``subject`` matches the whole pattern (case-sensitive)."""
        exact = self._exact
        if exact is not None:
            if exact.regex is None:
                return subject == exact.text
            return len(subject) == exact.length and exact.match_at(subject, 0)
        if len(subject) < self._min_length:
            return False
        segments = self._segments
        first, last = segments[0], segments[-1]
        end = len(subject) - last.length
        if not first.match_at(subject, 0) or not last.match_at(subject, end):
            return False
        position = first.length
        for segment in segments[1:-1]:
            found = segment.find(subject, position, end)
            if found < 0:
                return False
            position = found + segment.length
        return True


def _segments(pieces: tuple[Piece, ...]) -> tuple[_Segment, ...]:
    """Cut the pattern at each wildcard ``*``; consecutive stars leave no empty middle segment."""
    runs: list[list[tuple[str, bool]]] = [[]]  # per segment: (character, is "any one character")
    for literal, text in pieces:
        if literal:
            runs[-1].extend((c, False) for c in text)
            continue
        for c in text:
            if c == "*":
                if runs[-1] or len(runs) == 1:
                    runs.append([])
            else:
                runs[-1].append((c, c == "?"))
    return tuple(_segment(run) for run in runs)


def _segment(run: list[tuple[str, bool]]) -> _Segment:
    text = "".join(c for c, _ in run)
    if not any(any_char for _, any_char in run):
        return _Segment(len(run), text, None)
    source = "".join("." if any_char else re.escape(c) for c, any_char in run)
    # DOTALL: ``?`` must match a newline too; MQTT topics may contain one.
    return _Segment(len(run), text, re.compile(source, re.DOTALL))


@lru_cache(maxsize=_CACHE_SIZE)
def compile_pieces(pieces: tuple[Piece, ...]) -> Glob:
    """The matcher for a pattern made of glob and literal pieces (cached per distinct pattern)."""
    return Glob(pieces)


@lru_cache(maxsize=_CACHE_SIZE)
def compile_glob(pattern: str) -> Glob:
    """The matcher for a pattern where every ``*`` and ``?`` is a wildcard (cached)."""
    return Glob(((False, pattern),))
