"""The topic index: which rules' FROM filters match a topic (pure, no IO).

A trie of the filters' levels, walked once per distinct topic and cached, so matching costs
a dictionary lookup for a topic seen before and a walk proportional to the topic's depth
otherwise: never a loop over the rules. MQTT matching rules apply [MQTT 4.7]: ``+`` one level,
``#`` this level and everything below (including the parent: ``a/#`` matches ``a``), and
wildcards at the first level do not match topics that begin with ``$``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Node(Generic[T]):
    children: dict[str, _Node[T]] = field(default_factory=dict)
    here: list[T] = field(default_factory=list)
    """Entries whose filter ends at this node."""


class TopicIndex(Generic[T]):
    """Entries (rules) by topic filter; ``match(topic)`` lists those whose filter matches,
    in the order they were added, each once."""

    def __init__(self, entries: Iterable[tuple[str, T]] = (), *, cache_size: int = 100_000) -> None:
        self._root: _Node[T] = _Node()
        self._cache: dict[str, tuple[T, ...]] = {}
        self._cache_size = cache_size
        self._order: dict[int, int] = {}
        self._count = 0
        for topic_filter, entry in entries:
            self.add(topic_filter, entry)

    def __len__(self) -> int:
        return self._count

    def add(self, topic_filter: str, entry: T) -> None:
        node = self._root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        node.here.append(entry)
        self._order.setdefault(id(entry), len(self._order))
        self._count += 1
        self._cache.clear()

    def match(self, topic: str) -> tuple[T, ...]:
        found = self._cache.get(topic)
        if found is not None:
            return found
        found = self._match(topic)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[topic] = found
        return found

    def _match(self, topic: str) -> tuple[T, ...]:
        hits: list[T] = []
        levels = topic.split("/")
        nodes = [self._root]
        dollar = topic.startswith("$")
        for depth, level in enumerate(levels):
            following: list[_Node[T]] = []
            wild = depth > 0 or not dollar
            for node in nodes:
                children = node.children
                if not children:
                    continue
                if wild:
                    rest = children.get("#")
                    if rest is not None:
                        hits.extend(rest.here)
                    plus = children.get("+")
                    if plus is not None:
                        following.append(plus)
                exact = children.get(level)
                if exact is not None:
                    following.append(exact)
            nodes = following
            if not nodes:
                break
        for node in nodes:
            hits.extend(node.here)
            parent = node.children.get("#")  # 'a/#' matches 'a' [MQTT 4.7.1.2]
            if parent is not None:
                hits.extend(parent.here)
        if len(hits) < 2:
            return tuple(hits)
        # Each entry once, in the order the entries were added (rule order is stable).
        unique = {id(h): h for h in hits}
        order = self._order
        return tuple(sorted(unique.values(), key=lambda h: order[id(h)]))
