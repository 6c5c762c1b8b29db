"""Topic names and topic filters: validation and matching, pure [4.7].

``TopicFilter`` and ``TopicName`` validate once at construction; everything after trusts them.
The router keeps filters split into levels, so matching here is for single checks and tests;
the router's trie does the bulk work with the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from thingcore.errors import ThingcoreError

SHARE_PREFIX = "$share/"


class TopicError(ThingcoreError):
    """A topic name or filter that the MQTT specification does not allow."""


@dataclass(frozen=True, slots=True)
class TopicLimits:
    """Server limits beyond the specification's own (lengths in UTF-8 bytes)."""

    max_length: int = 65535
    max_levels: int = 128


DEFAULT_LIMITS = TopicLimits()


def _check_common(text: str, what: str, limits: TopicLimits) -> None:
    if not text:
        raise TopicError(f"{what} must be at least one character long [4.7.3-1]")
    if len(text) > limits.max_length // 4 and len(text.encode("utf-8")) > limits.max_length:
        raise TopicError(f"{what} is longer than {limits.max_length} bytes")
    if text.count("/") >= limits.max_levels:
        raise TopicError(f"{what} has more than {limits.max_levels} levels")


def validate_topic_name(text: str, limits: TopicLimits = DEFAULT_LIMITS) -> None:
    """A topic name a client may PUBLISH to: no wildcards [4.7.1-1], not empty [4.7.3-1]."""
    _check_common(text, "topic name", limits)
    if "+" in text or "#" in text:
        raise TopicError(f"topic name {text!r} contains a wildcard character [4.7.1-1]")


def validate_topic_filter(text: str, limits: TopicLimits = DEFAULT_LIMITS) -> None:
    """A filter a client may SUBSCRIBE to [4.7.1-2, 4.7.1-3]."""
    _check_common(text, "topic filter", limits)
    levels = text.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if level == "#":
            if i != last:
                raise TopicError(f"'#' must be the last level of {text!r} [4.7.1-2]")
        elif level == "+":
            continue
        elif "#" in level or "+" in level:
            raise TopicError(f"a wildcard must occupy a whole level in {text!r} [4.7.1-3]")


@dataclass(frozen=True, slots=True)
class SharedFilter:
    """``$share/{group}/{filter}`` split into its parts."""

    group: str
    filter: str


def parse_shared(text: str, limits: TopicLimits = DEFAULT_LIMITS) -> SharedFilter | None:
    """Return the parts of a shared subscription filter, or None for an ordinary filter."""
    if not text.startswith(SHARE_PREFIX):
        return None
    rest = text[len(SHARE_PREFIX) :]
    group, sep, inner = rest.partition("/")
    if not sep or not group or not inner:
        raise TopicError(f"shared subscription {text!r} must be $share/<group>/<filter>")
    if "+" in group or "#" in group:
        raise TopicError(f"shared subscription group {group!r} contains a wildcard")
    validate_topic_filter(inner, limits)
    return SharedFilter(group, inner)


def matches(topic_filter: str, topic: str) -> bool:
    """True when ``topic`` matches ``topic_filter`` under [4.7]'s rules.

    ``#`` also matches the parent level (``a/#`` matches ``a``), and a filter starting with a
    wildcard does not match a topic starting with ``$`` [4.7.2-1].
    """
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    flevels = topic_filter.split("/")
    tlevels = topic.split("/")
    for i, f in enumerate(flevels):
        if f == "#":
            return True
        if i >= len(tlevels):
            return False
        if f != "+" and f != tlevels[i]:
            return False
    return len(flevels) == len(tlevels)


def has_wildcard(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter
