"""Helpers for the tests that run the rules engine on a real broker's Bus with a data directory
under tmp_path: stored rules and settings with backoff in hundredths of a second, publishing,
what local queues and error actions got, waiting on counters, and a remote target's outage
behind a TcpProxy.

The ``broker`` fixture of the target tests is in ``tests/rules/targets/conftest.py``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import textwrap
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import pytest

from broker.message import Message
from broker.server import Broker
from rules.config import AwsSettings, DeliverySettings, RulesSettings
from rules.definition import parse_definition
from rules.delivery import DeliveryCounters
from rules.engine import RulesEngine
from rules.local.queues import QueueStore
from rules.store import StoredRule
from thingcore.errors import ThingcoreError

if TYPE_CHECKING:
    from tests.moto_server import MotoServer
    from tests.rules.targets.proxy import TcpProxy

Metrics = tuple[dict[str, DeliveryCounters], dict[str, tuple[DeliveryCounters, int]]]
"""What ``engine.delivery.take_metrics()`` gives: counters per rule, per target with depth."""

# -- rules and settings ----------------------------------------------------------------------------


def rule(name: str, sql: str, actions: list[dict[str, Any]], **extra: Any) -> StoredRule:
    """A stored rule as the engine loads it (``extra``: ``errorAction``, say)."""
    payload = {"sql": sql, "awsIotSqlVersion": "2016-03-23", "actions": actions, **extra}
    return StoredRule(name, payload, False, 0.0, 0.0)


def one_action(kind: str, params: Any, sql: str = "SELECT * FROM 'in'") -> dict[str, Any]:
    """A rule definition whose one action is ``kind`` with ``params``."""
    return {"sql": sql, "actions": [{kind: params}]}


def refusal(kind: str, params: Any, error: type[ThingcoreError] = ThingcoreError) -> str:
    """The message of the ``error`` that refuses rule ``r`` with one ``kind`` action."""
    with pytest.raises(error) as caught:
        parse_definition("r", one_action(kind, params))
    return str(caught.value)


def fast_delivery(**overrides: Any) -> DeliverySettings:
    """Delivery with backoff in hundredths of a second and 3 attempts, unless overridden."""
    options: dict[str, Any] = {
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
        "backoff_jitter": 0.5,
        "max_attempts": 3,
        **overrides,
    }
    return DeliverySettings(**options)


def aws_settings(
    endpoint: str | None, *, aws_targets: Literal["local", "aws"] | None = "aws", **delivery: Any
) -> RulesSettings:
    """AWS actions to ``endpoint`` (moto, or a proxy in front of it) with short timeouts;
    ``aws_settings(None, aws_targets=None)`` maps them to the local targets."""
    return RulesSettings(
        aws=AwsSettings(endpoint_url=endpoint, connect_timeout=0.5, read_timeout=5.0),
        aws_targets=aws_targets,
        delivery=fast_delivery(**delivery),
    )


def free_port() -> int:
    """A loopback port nothing listens on (free when asked)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def function(data_dir: Path, name: str, body: str) -> None:
    """A local function ``name`` (``functions/<name>.py``) whose source is ``body``."""
    folder = data_dir / "functions"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


# -- messages in, what came out --------------------------------------------------------------------


def publish(
    broker: Broker, topic: str, payload: bytes | dict[str, Any], client: str = "dev-1"
) -> None:
    """A QoS 1 message from ``client``: ``payload`` as is, or as JSON."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    broker.publish(Message(topic, data, 1, False, client_id=client, received_at=0))


async def run_rules(
    config: RulesSettings,
    broker: Broker,
    data_dir: Path,
    rules: list[StoredRule],
    messages: Iterable[tuple[str, bytes | dict[str, Any]]],
    *,
    client: str = "dev-1",
    within: float = 10.0,
) -> Metrics:
    """An engine with ``rules`` installed gets ``messages`` (topic, payload) from ``client`` and
    drains (every delivery done or failed, within ``within`` seconds); the metrics it took
    before it stopped."""
    async with RulesEngine(config, broker.bus, data_dir=data_dir) as engine:
        engine.install(rules)
        for topic, payload in messages:
            publish(broker, topic, payload, client)
        await engine.drain(within)
        return engine.delivery.take_metrics()


def queue_bodies(data_dir: Path, queue: str) -> list[Any]:
    """The JSON bodies in the local ``queue``, in order; none where it was never made."""
    with QueueStore(data_dir / "queues.sqlite") as store:
        if queue not in {q.name for q in store.queues()}:
            return []
        return [json.loads(m.body) for m in store.peek(queue, limit=1000)]


ERROR_ACTION = {"republish": {"topic": "errors/${topic(2)}", "qos": 1}}
"""An error action that republishes AWS's error payload to ``errors/<topic(2)>``."""


def error_payloads(broker: Broker) -> list[dict[str, Any]]:
    """The error payloads ``ERROR_ACTION`` republishes from now on (the list fills in)."""
    errors: list[dict[str, Any]] = []
    broker.bus.subscribe("errors/#", lambda m: errors.append(json.loads(m.payload)))
    return errors


class ErrorOrigin(NamedTuple):
    """What an AWS IoT error payload says of the message that failed."""

    rule: str
    topic: str
    client: str
    payload: Any
    """The original payload, decoded from base64 and then from JSON."""


def error_origin(payload: dict[str, Any]) -> ErrorOrigin:
    """The rule, topic, client and (JSON) payload of the message an error payload is about."""
    original = json.loads(base64.b64decode(payload["base64OriginalPayload"]))
    return ErrorOrigin(payload["ruleName"], payload["topic"], payload["clientId"], original)


# -- waiting on counters, a remote target's outage, moto's Lambda ----------------------------------


async def until(condition: Callable[[], bool], what: str, within: float = 10.0) -> None:
    """Wait for ``condition`` (a lane's counters, say), failing after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def add(total: DeliveryCounters, engine: RulesEngine) -> None:
    """Add the engine's rule counters since the last call to ``total``."""
    rules, _ = engine.delivery.take_metrics()
    for counters in rules.values():
        total.delivered += counters.delivered
        total.retried += counters.retried
        total.failed += counters.failed


async def retried_while(engine: RulesEngine, total: DeliveryCounters, within: float = 10) -> None:
    """Wait (bounded) until the engine has retried at least once; counts go into ``total``."""
    deadline = asyncio.get_running_loop().time() + within
    while total.retried == 0:
        add(total, engine)
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("no delivery was retried while the target was down")
        await asyncio.sleep(0.01)


@dataclass
class Outage:
    """What ``through_an_outage`` saw."""

    total: DeliveryCounters
    """The rule counters over the whole run."""
    seen_while_down: Any
    """What the target had received while the proxy was down (after a retry)."""
    owed_after: int
    """Outbox rows left once the engine drained."""


async def through_an_outage(
    broker: Broker,
    data_dir: Path,
    proxy: TcpProxy,
    definition: StoredRule,
    count: int,
    seen: Callable[[], Any],
) -> Outage:
    """``definition`` runs against AWS at ``proxy`` (retrying for ever) while the proxy is down
    and ``{"n": 0}`` to ``{"n": count - 1}`` are published to ``in``; once a delivery has been
    retried, ``seen()`` looks at the target; the proxy comes back and the engine drains."""
    config = aws_settings(f"http://{proxy.url_host}", max_attempts=100_000)
    total = DeliveryCounters()
    async with RulesEngine(config, broker.bus, data_dir=data_dir) as engine:
        engine.install([definition])
        proxy.down()
        for n in range(count):
            publish(broker, "in", {"n": n})
        await retried_while(engine, total)
        seen_while_down = seen()
        proxy.up()
        await engine.drain(within=30)
        add(total, engine)
        owed_after = engine.delivery.outbox.count()
    return Outage(total, seen_while_down, owed_after)


def create_function(moto: MotoServer, name: str) -> str:
    """A function in moto (its code never runs: moto's Lambda without Docker); its ARN."""
    role = moto.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument="{}")
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    created = moto.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
    )
    arn: str = created["FunctionArn"]
    return arn
