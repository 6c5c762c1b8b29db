"""What every action kind shares: its parameter model's base, the resolved delivery it
produces on the dispatch path, and the target that carries deliveries out.

An action kind (one module in this package) has three parts: a pydantic model of its
parameters in AWS's names (validated when a rule is created), ``resolve`` (on the broker's
dispatch path, for one rule output: expand the substitution templates, pick the target, make
the body) and ``open_target`` (a ``Target`` for one resolved destination, which the outbox's
lane for that destination calls with batches).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from pydantic import BaseModel, ConfigDict

from rules.errors import TargetError

if TYPE_CHECKING:
    from broker.properties import Properties
    from rules.aws import AwsClients
    from rules.config import RulesSettings
    from rules.delivery import Delivery
    from rules.local.buckets import BucketStore
    from rules.local.functions import FunctionRunner
    from rules.local.queues import QueueStore
    from rules.local.topics import TopicStore


class ParamsModel(BaseModel):
    """Action parameters: AWS's camelCase names, unknown names refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


@dataclass(frozen=True, slots=True)
class Resolved:
    """One action's delivery for one rule output, with its templates already expanded."""

    target: str
    """The destination's key (``queue:orders``): deliveries with one key share a lane."""
    params: dict[str, Any]
    """What the target needs besides the body (JSON-able: it is stored in the outbox)."""
    body: bytes


class Target(Protocol):
    batch_limit: int
    """Deliveries per ``deliver`` call at most (a function's concurrency, a queue's batch)."""

    async def deliver(self, batch: Sequence[Delivery]) -> list[TargetError | None]:
        """Carry out ``batch``; per delivery, None when done or the error that stopped it."""
        ...

    async def aclose(self) -> None: ...


Publish = Callable[[str, bytes, int, "Properties | None", int], None]
"""(topic, payload, qos, properties, depth): how a republish reaches the Bus."""


@dataclass(slots=True)
class TargetEnv:
    """What targets deliver to: the local resources (opened on first use), the AWS clients and
    the settings of the remote targets."""

    publish: Publish
    queues: Callable[[], QueueStore]
    buckets: Callable[[], BucketStore]
    functions: Callable[[], FunctionRunner]
    topics: Callable[[], TopicStore]
    aws: AwsClients
    settings: RulesSettings


def output_payload(output: Any) -> bytes:
    """A rule's output as bytes: JSON, or the raw bytes of a binary ``SELECT *``."""
    if isinstance(output, bytes | bytearray):
        return bytes(output)
    try:
        # The same compact UTF-8 JSON as json.dumps, in a tenth of its time.
        return orjson.dumps(output)
    except TypeError:  # integers beyond 64 bits: json writes them
        return json.dumps(output, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def exactly_one(first: str | None, second: str | None, names: str) -> None:
    """AWS's ARN-or-name parameters: one of the two must be given, not both."""
    if (first is None) == (second is None):
        raise ValueError(f"give exactly one of {names}")


def last_segment(value: str, separator: str) -> str:
    """``arn:aws:lambda:...:function:f`` -> ``f``; ``https://.../queue`` -> ``queue``."""
    return value.rstrip(separator).rsplit(separator, 1)[-1]
