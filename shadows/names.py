"""Shadow topics and names (reference 0 and 1.1), validated once where they enter."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from registry import names as registry_names
from registry.errors import InvalidRequest
from thingcore.errors import ThingcoreError

_SHADOW = re.compile(r"[$a-zA-Z0-9:_-]{1,64}")

PREFIX = "$aws/things/"


class ShadowNameError(ThingcoreError):
    """A thing or shadow name AWS would not accept."""


def thing_name(name: str) -> str:
    try:
        return registry_names.thing_name(name)
    except InvalidRequest as exc:
        raise ShadowNameError(str(exc)) from None


def shadow_name(name: str) -> str:
    if not _SHADOW.fullmatch(name):
        raise ShadowNameError(
            f"shadow name {name!r} is invalid: use 1-64 letters, digits, '$', ':', '_' or '-'"
        )
    return name


class Operation(Enum):
    GET = "get"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class ShadowKey:
    """One shadow: a thing and a name (None for the classic shadow)."""

    thing: str
    name: str | None = None

    @classmethod
    def of(cls, thing: str, name: str | None = None) -> ShadowKey:
        return cls(thing_name(thing), None if name is None else shadow_name(name))

    @property
    def prefix(self) -> str:
        if self.name is None:
            return f"{PREFIX}{self.thing}/shadow"
        return f"{PREFIX}{self.thing}/shadow/name/{self.name}"

    @property
    def stored_name(self) -> str:
        """The name column: the classic shadow is stored as ''."""
        return "" if self.name is None else self.name

    def topic(self, suffix: str) -> str:
        return f"{self.prefix}/{suffix}"

    def __str__(self) -> str:
        return self.thing if self.name is None else f"{self.thing}~{self.name}"


@dataclass(frozen=True, slots=True)
class ShadowRequest:
    """A request topic taken apart; ``key`` is not validated yet (see ``validated``)."""

    key: ShadowKey
    operation: Operation

    def validated(self) -> ShadowKey:
        """The key with AWS's name rules checked; raises ``ShadowNameError``."""
        return ShadowKey.of(self.key.thing, self.key.name)


def parse_request_topic(topic: str) -> ShadowRequest | None:
    """``$aws/things/T/shadow[/name/N]/{get,update,delete}`` -> key and operation.

    None for any other topic. The names are checked later, by ``validated``, so a request
    with a name AWS would refuse still gets a rejection on its own ``/rejected`` topic.
    """
    if not topic.startswith(PREFIX):
        return None
    parts = topic[len(PREFIX) :].split("/")
    if len(parts) == 3 and parts[1] == "shadow":
        thing, name, op = parts[0], None, parts[2]
    elif len(parts) == 5 and parts[1] == "shadow" and parts[2] == "name":
        thing, name, op = parts[0], parts[3], parts[4]
    else:
        return None
    try:
        operation = Operation(op)
    except ValueError:
        return None
    return ShadowRequest(ShadowKey(thing, name), operation)
