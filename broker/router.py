"""Subscription trie and message routing: which subscribers get a message, at which QoS.

Pure data structures, no IO: a subscriber is anything with ``deliver()``. Matching follows
[4.7]: ``+`` one level, ``#`` the rest including the parent level, and no leading wildcard
matches a ``$`` topic. Overlapping subscriptions of one subscriber yield one delivery [3.3.5];
a shared group (``$share/g/f``) delivers each message to one member.

A subscription's options are one int: the granted QoS in bits 0-1, MQTT 5's No Local (bit 2)
and Retain As Published (bit 3), and its subscription identifier from bit 8 up. A plain
subscription is therefore just its QoS (0-2), and overlapping plain subscriptions merge to the
highest; when options are involved the subscriber gets every matching subscription's options
as a tuple, because No Local and the identifiers are per subscription.
Results are cached per topic and the cache is dropped on any subscription change, so steady
traffic costs one dict lookup per message.
"""

from __future__ import annotations

from typing import Protocol, TypeAlias

from broker.message import Message

NO_LOCAL = 0x04
RETAIN_AS_PUBLISHED = 0x08
_SUBSCRIPTION_ID_SHIFT = 8
Options = int | tuple[int, ...]
"""One subscription's packed options, or those of several overlapping subscriptions."""


def pack_options(
    qos: int, *, no_local: bool = False, retain_as_published: bool = False, identifier: int = 0
) -> int:
    return (
        qos
        | (NO_LOCAL if no_local else 0)
        | (RETAIN_AS_PUBLISHED if retain_as_published else 0)
        | (identifier << _SUBSCRIPTION_ID_SHIFT)
    )


def option_identifier(options: int) -> int:
    return options >> _SUBSCRIPTION_ID_SHIFT


def _merge(previous: Options | None, options: int) -> Options:
    if previous is None:
        return options
    if isinstance(previous, int):
        if previous < 4 and options < 4:
            return previous if previous > options else options
        return (previous, options)
    return (*previous, options)


class Subscriber(Protocol):
    def deliver(self, message: Message, options: Options, retain: bool) -> None:
        """Take one message under subscription ``options``; must not block."""

    @property
    def online(self) -> bool:
        """Whether a delivery reaches a live client now (shared groups prefer those)."""


class SharedGroup:
    """The members of one ``$share/{group}/{filter}``; each message goes to one of them."""

    __slots__ = ("_next", "filter", "members", "name")

    def __init__(self, name: str, topic_filter: str) -> None:
        self.name = name
        self.filter = topic_filter
        self.members: dict[Subscriber, int] = {}
        """Member -> packed subscription options."""
        self._next = 0

    def pick(self) -> tuple[Subscriber, int]:
        """Round robin over members, skipping offline ones while any member is online."""
        members = list(self.members.items())
        count = len(members)
        start = self._next % count
        for step in range(count):
            candidate = members[(start + step) % count]
            if candidate[0].online:
                self._next = start + step + 1
                return candidate
        self._next = start + 1
        return members[start]


class _Node:
    __slots__ = ("children", "exclusive", "shared", "subs")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.subs: dict[Subscriber, int] = {}
        self.shared: dict[str, SharedGroup] = {}
        self.exclusive: dict[Subscriber, int] = {}

    def empty(self) -> bool:
        return not (self.children or self.subs or self.shared or self.exclusive)


Match = tuple[list[tuple[Subscriber, Options]], list[SharedGroup]]
_NO_MATCH: Match = ([], [])


class Router:
    """Holds every subscription and routes messages to the matching subscribers."""

    def __init__(self, cache_size: int = 100_000) -> None:
        self._root = _Node()
        self._cache: dict[str, Match] = {}
        self._cache_size = cache_size
        self.subscription_count = 0

    # -- changes -------------------------------------------------------------------------

    def subscribe(
        self,
        subscriber: Subscriber,
        topic_filter: str,
        options: int,
        *,
        share_group: str | None = None,
        exclusive: bool = False,
    ) -> bool:
        """Add or replace a subscription; returns True when it replaced an existing one."""
        node = self._root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        if share_group is not None:
            group = node.shared.get(share_group)
            if group is None:
                group = node.shared[share_group] = SharedGroup(share_group, topic_filter)
            table = group.members
        else:
            table = node.exclusive if exclusive else node.subs
        existed = subscriber in table
        table[subscriber] = options
        if not existed:
            self.subscription_count += 1
        self._cache.clear()
        return existed

    def unsubscribe(
        self,
        subscriber: Subscriber,
        topic_filter: str,
        *,
        share_group: str | None = None,
        exclusive: bool = False,
    ) -> bool:
        """Remove a subscription; returns False when there was none."""
        path = [self._root]
        for level in topic_filter.split("/"):
            child = path[-1].children.get(level)
            if child is None:
                return False
            path.append(child)
        node = path[-1]
        if share_group is not None:
            group = node.shared.get(share_group)
            if group is None or group.members.pop(subscriber, None) is None:
                return False
            if not group.members:
                del node.shared[share_group]
        else:
            table = node.exclusive if exclusive else node.subs
            if table.pop(subscriber, None) is None:
                return False
        self.subscription_count -= 1
        self._cache.clear()
        # Prune nodes left empty so a churn of unique filters does not grow the trie forever.
        levels = topic_filter.split("/")
        for depth in range(len(levels), 0, -1):
            if not path[depth].empty():
                break
            del path[depth - 1].children[levels[depth - 1]]
        return True

    # -- matching ------------------------------------------------------------------------

    def may_match_under(self, *levels: str) -> bool:
        """Whether some subscription could match a topic that begins with ``levels``
        (``"$aws", "events"``): a cheap test that lets a publisher skip building messages
        nobody receives, even while other services subscribe elsewhere under ``$aws``."""
        nodes = [self._root]
        for depth, level in enumerate(levels):
            following: list[_Node] = []
            # [4.7.2-1] wildcards at the first level do not match topics beginning with '$'.
            wild = depth > 0 or not level.startswith("$")
            for node in nodes:
                children = node.children
                if wild:
                    if "#" in children:
                        return True
                    plus = children.get("+")
                    if plus is not None:
                        following.append(plus)
                exact = children.get(level)
                if exact is not None:
                    following.append(exact)
            if not following:
                return False
            nodes = following
        return True

    def match(self, topic: str) -> Match:
        """Subscribers of ``topic`` with their QoS (deduplicated) and the shared groups."""
        found = self._cache.get(topic)
        if found is not None:
            return found
        found = self._match(topic)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[topic] = found
        return found

    def _match(self, topic: str) -> Match:
        best: dict[Subscriber, Options] = {}
        exclusive: dict[Subscriber, Options] = {}
        groups: list[SharedGroup] = []

        def take(node: _Node) -> None:
            for sub, options in node.subs.items():
                best[sub] = _merge(best.get(sub), options)
            for sub, options in node.exclusive.items():
                exclusive[sub] = _merge(exclusive.get(sub), options)
            if node.shared:
                groups.extend(node.shared.values())

        levels = topic.split("/")
        # [4.7.2-1] wildcards at the first level do not match topics beginning with '$'.
        wild_first = not topic.startswith("$")
        nodes = [self._root]
        for depth, level in enumerate(levels):
            following: list[_Node] = []
            wild = depth > 0 or wild_first
            for node in nodes:
                children = node.children
                if not children:
                    continue
                if wild:
                    rest = children.get("#")
                    if rest is not None:
                        take(rest)
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
            take(node)
            parent_match = node.children.get("#")  # 'a/#' matches 'a' [4.7.1-2]
            if parent_match is not None:
                take(parent_match)
        if exclusive:
            return list(exclusive.items()), []
        if not best and not groups:
            return _NO_MATCH
        return list(best.items()), groups

    def route(self, message: Message) -> int:
        """Deliver ``message`` to every matching subscriber; returns the number of deliveries."""
        subscribers, groups = self.match(message.topic)
        for subscriber, options in subscribers:
            subscriber.deliver(message, options, False)
        for group in groups:
            member, member_options = group.pick()
            member.deliver(message, member_options, False)
        return len(subscribers) + len(groups)


_Tree: TypeAlias = dict[str, "_Tree"]


class RetainedStore:
    """Retained messages by topic, in a trie so wildcard subscriptions find theirs quickly."""

    def __init__(self, max_messages: int) -> None:
        self._root: _Tree = {}
        self._by_topic: dict[str, Message] = {}
        self.max_messages = max_messages

    def __len__(self) -> int:
        return len(self._by_topic)

    def messages(self) -> list[Message]:
        return list(self._by_topic.values())

    def get(self, topic: str) -> Message | None:
        return self._by_topic.get(topic)

    def store(self, message: Message) -> bool:
        """Keep ``message`` as the topic's retained message; an empty payload clears it [3.3.1.3].

        Returns False when the store is full and the topic had no retained message yet.
        """
        topic = message.topic
        if not message.payload:
            self._remove(topic)
            return True
        if topic not in self._by_topic:
            if len(self._by_topic) >= self.max_messages:
                return False
            node = self._root
            for level in topic.split("/"):
                child = node.get(level)
                if child is None:
                    child = node[level] = {}
                node = child
        self._by_topic[topic] = message
        return True

    def _remove(self, topic: str) -> None:
        if self._by_topic.pop(topic, None) is None:
            return
        levels = topic.split("/")
        path: list[_Tree] = [self._root]
        for level in levels:
            path.append(path[-1][level])
        for depth in range(len(levels), 0, -1):
            # Keep a node with children, or whose own topic is still retained ('a' after 'a/b').
            if path[depth] or "/".join(levels[:depth]) in self._by_topic:
                break
            del path[depth - 1][levels[depth - 1]]

    def matching(self, topic_filter: str) -> list[Message]:
        """Retained messages whose topics match ``topic_filter``."""
        if "+" not in topic_filter and "#" not in topic_filter:
            found = self._by_topic.get(topic_filter)
            return [found] if found is not None else []
        out: list[str] = []
        self._walk(self._root, topic_filter.split("/"), 0, [], out)
        return [self._by_topic[t] for t in out]

    def _walk(
        self,
        node: _Tree,
        levels: list[str],
        depth: int,
        prefix: list[str],
        out: list[str],
    ) -> None:
        if depth == len(levels):
            topic = "/".join(prefix)
            if topic in self._by_topic:
                out.append(topic)
            return
        level = levels[depth]
        if level == "#":
            # The parent level itself ('a/#' matches 'a'), then everything below it.
            if depth > 0:
                parent = "/".join(prefix)
                if parent in self._by_topic:
                    out.append(parent)
            self._collect(node, prefix, depth == 0, out)
            return
        if level == "+":
            for name, child in node.items():
                if depth == 0 and name.startswith("$"):
                    continue
                self._walk(child, levels, depth + 1, [*prefix, name], out)
            return
        exact = node.get(level)
        if exact is not None:
            self._walk(exact, levels, depth + 1, [*prefix, level], out)

    def _collect(self, node: _Tree, prefix: list[str], skip_dollar: bool, out: list[str]) -> None:
        for name, child in node.items():
            if skip_dollar and name.startswith("$"):
                continue
            path = [*prefix, name]
            topic = "/".join(path)
            if topic in self._by_topic:
                out.append(topic)
            self._collect(child, path, False, out)
