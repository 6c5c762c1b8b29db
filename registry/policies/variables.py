"""Policy variables: ``${...}`` in ``Resource`` entries and ``Condition`` values.

A string is parsed once (cached) into a ``Template``: policy text, where ``*`` and ``?`` keep
their wildcard meaning, literal text from the IAM escapes ``${*}``, ``${?}`` and ``${$}``, and
variables. Substitution turns a template into glob pieces where every variable value is literal,
so a client id ``a*`` cannot widen ``topic/${iot:ClientId}``.

A variable that does not resolve to exactly one value (an unattached client's thing name, a
missing attribute, an unknown name, a ``.List`` with several values) leaves the whole template
unresolved; the caller then treats that entry as matching nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from registry.policies.context import RequestContext
from registry.policies.glob import Glob, Piece, compile_pieces
from registry.policies.keys import Resolver, resolver

# IAM's escapes for characters that would otherwise be special (IAM policy variables docs).
_ESCAPES = {"*": "*", "?": "?", "$": "$"}


@dataclass(frozen=True, slots=True)
class Variable:
    """A ``${name}`` reference; ``read`` is the resolver for ``name``."""

    name: str
    read: Resolver


Part = Piece | Variable


@dataclass(frozen=True, slots=True)
class Template:
    """A string with its ``${...}`` references found; build it with ``parse_template``."""

    source: str
    parts: tuple[Part, ...]
    static: Glob | None
    """The compiled matcher when there are no variables: built once, not per request."""

    def pieces(self, context: RequestContext) -> tuple[Piece, ...] | None:
        """Glob pieces with every variable replaced by its literal value; None if one fails."""
        out: list[Piece] = []
        for part in self.parts:
            if isinstance(part, Variable):
                values = part.read(context)
                if len(values) != 1:
                    return None
                out.append((True, values[0]))
            else:
                out.append(part)
        return tuple(out)

    def glob(self, context: RequestContext) -> Glob | None:
        """The matcher for this template in ``context``; None if a variable does not resolve."""
        if self.static is not None:
            return self.static
        pieces = self.pieces(context)
        return None if pieces is None else compile_pieces(pieces)

    def text(self, context: RequestContext) -> str | None:
        """The substituted string with no wildcard meaning (for ``StringEquals`` and friends)."""
        pieces = self.pieces(context)
        return None if pieces is None else "".join(text for _, text in pieces)

    def matches(self, subject: str, context: RequestContext) -> bool:
        """Whether ``subject`` matches this template as a glob; False if it does not resolve."""
        glob = self.glob(context)
        return glob is not None and glob.matches(subject)


@lru_cache(maxsize=4096)
def parse_template(source: str) -> Template:
    """Find the ``${...}`` references in ``source`` (cached per distinct string).

    A ``${`` without a closing ``}`` is ordinary text: IAM documents no error for it, and
    rejecting it would refuse policies AWS accepts.
    """
    parts: list[Part] = []
    position = 0
    while True:
        start = source.find("${", position)
        close = source.find("}", start + 2) if start >= 0 else -1
        if close < 0:
            _append(parts, (False, source[position:]))
            break
        _append(parts, (False, source[position:start]))
        name = source[start + 2 : close]
        if name in _ESCAPES:
            _append(parts, (True, _ESCAPES[name]))
        else:
            parts.append(Variable(name, resolver(name.strip())))
        position = close + 1
    has_variables = any(isinstance(p, Variable) for p in parts)
    static = None
    if not has_variables:
        static = compile_pieces(tuple(p for p in parts if not isinstance(p, Variable)))
    return Template(source, tuple(parts), static)


def _append(parts: list[Part], piece: Piece) -> None:
    """Add a fixed piece, merging it into the previous one of the same kind."""
    if not piece[1]:
        return
    if parts and not isinstance(parts[-1], Variable) and parts[-1][0] == piece[0]:
        parts[-1] = (piece[0], parts[-1][1] + piece[1])
    else:
        parts.append(piece)
