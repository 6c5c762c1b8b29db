"""The ``amqp`` action against a real RabbitMQ, through the engine on a real Broker's Bus.

RabbitMQ is the one at amqp://guest:guest@127.0.0.1:5672/ (THINGCORE_TEST_AMQP_URL overrides);
each test declares its own exchanges and queues (named for the test) with aio-pika and deletes
them at the end. Outages are real ones: the action's url points at a TcpProxy in front of
RabbitMQ, which the test cuts and restores. Backoff and timeouts are in hundredths of a second.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest

from broker.server import Broker
from rules.actions import amqp
from rules.config import AmqpSettings, RulesSettings
from rules.definition import missing_extras, parse_definition
from rules.engine import RulesEngine
from rules.errors import RuleError
from rules.store import StoredRule
from tests.conftest import service_required
from tests.rules.engine_support import (
    ERROR_ACTION,
    ErrorOrigin,
    error_origin,
    error_payloads,
    fast_delivery,
    free_port,
    one_action,
    publish,
    refusal,
    rule,
    run_rules,
    until,
)
from tests.rules.targets.proxy import TcpProxy

AMQP_URL = os.environ.get("THINGCORE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def settings(
    url: str = AMQP_URL, *, connect_timeout: float = 2.0, **delivery: Any
) -> RulesSettings:
    return RulesSettings(
        delivery=fast_delivery(**delivery),
        amqp=AmqpSettings(url=url, connect_timeout=connect_timeout, confirm_timeout=2.0),
    )


def forward(action: dict[str, Any]) -> StoredRule:
    """Rule ``r``: the ``n`` of each ``in/+`` message to ``action``, failures republished to
    ``errors/...``."""
    return rule("r", "SELECT n FROM 'in/+'", [action], errorAction=ERROR_ACTION)


def proxied(proxy: TcpProxy) -> str:
    """AMQP_URL with its host and port replaced by the proxy's."""
    parts = urlsplit(AMQP_URL)
    userinfo = parts.netloc.rpartition("@")[0]
    return parts._replace(netloc=f"{userinfo}@{proxy.url_host}").geturl()


class Rabbit:
    """The test's own view of RabbitMQ: declares what a test needs, deletes it afterwards."""

    def __init__(self, connection: Any, channel: Any, prefix: str) -> None:
        self.connection = connection
        self.channel = channel
        self.prefix = prefix
        self.exchanges: list[str] = []
        self.queues: list[str] = []

    def name(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    async def exchange(self, suffix: str = "x", kind: str = "topic") -> str:
        name = self.name(suffix)
        await self.channel.declare_exchange(name, kind, auto_delete=False)
        if name not in self.exchanges:
            self.exchanges.append(name)
        return name

    async def queue(
        self,
        suffix: str = "q",
        *,
        bind: tuple[str, str] | None = None,
        arguments: dict[str, Any] | None = None,
    ) -> Any:
        name = self.name(suffix)
        queue = await self.channel.declare_queue(name, arguments=arguments)
        self.queues.append(name)
        if bind is not None:
            await queue.bind(bind[0], bind[1])
        return queue

    async def routed(
        self, routing_key: str = "k", arguments: dict[str, Any] | None = None
    ) -> tuple[str, Any]:
        """A topic exchange and a queue bound to it with ``routing_key``: (its name, queue)."""
        exchange = await self.exchange()
        return exchange, await self.queue(bind=(exchange, routing_key), arguments=arguments)

    async def take(self, queue: Any) -> list[Any]:
        """Every message in ``queue`` now (the outbox has drained: all are confirmed)."""
        messages = []
        while (message := await queue.get(no_ack=True, fail=False, timeout=5)) is not None:
            messages.append(message)
        return messages

    async def close(self) -> None:
        channel = await self.connection.channel()
        for queue in self.queues:
            await channel.queue_delete(queue)
        for exchange in self.exchanges:
            await channel.exchange_delete(exchange)
        await self.connection.close()


@pytest.fixture
async def rabbit(name: str) -> AsyncIterator[Rabbit]:
    try:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
    except (TimeoutError, *aio_pika.exceptions.CONNECTION_EXCEPTIONS) as exc:
        reason = (
            f"RabbitMQ is not reachable at {amqp.masked(AMQP_URL)} ({exc}); start it or set "
            "THINGCORE_TEST_AMQP_URL"
        )
        if service_required():
            pytest.fail(reason)
        pytest.skip(reason)
    channel = await connection.channel()
    # The test's name, and a part of this run's own: the same test may run twice at once.
    server = Rabbit(connection, channel, f"{name}-{uuid.uuid4().hex[:8]}")
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    parts = urlsplit(AMQP_URL)
    server = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    try:
        yield server
    finally:
        server.close()


def in_order_without_loss(messages: list[Any], expected: list[int]) -> None:
    """Every ``n`` in ``expected`` arrived, first copies in order; a copy repeats its id."""
    ids: dict[int, str] = {}
    firsts: list[int] = []
    for message in messages:
        n = json.loads(message.body)["n"]
        if n in ids:
            assert message.message_id == ids[n], f"message {n} came twice with two ids"
        else:
            ids[n] = message.message_id
            firsts.append(n)
    assert firsts == expected
    assert len(set(ids.values())) == len(expected)


# -- the path through the engine -----------------------------------------------------------------


async def test_messages_arrive_in_order_with_their_routing_key_headers_and_id(
    rabbit: Rabbit, broker: Broker, tmp_path: Path
) -> None:
    exchange = await rabbit.exchange()
    kitchen = await rabbit.queue("kitchen", bind=(exchange, "kitchen"))
    hall = await rabbit.queue("hall", bind=(exchange, "hall"))
    action = {
        "amqp": {
            "exchange": exchange,
            "routingKey": "${topic(2)}",
            "headers": {"device": "${clientid()}", "kind": "reading"},
        }
    }
    async with RulesEngine(settings(), broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("r", "SELECT n FROM 'sensors/+/t'", [action])])
        for n in range(40):
            publish(broker, "sensors/kitchen/t", {"n": n})
        publish(broker, "sensors/hall/t", {"n": 99}, client="dev-2")
        await engine.drain()
        rules, targets = engine.delivery.take_metrics()
        assert engine.delivery.outbox.count() == 0
    messages = await rabbit.take(kitchen)
    assert [json.loads(m.body) for m in messages] == [{"n": n} for n in range(40)]
    first = messages[0]
    assert first.routing_key == "kitchen"
    assert first.exchange == exchange
    assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert first.content_type == "application/json"
    assert first.app_id == "thingcore"
    assert first.headers == {
        "device": "dev-1",
        "kind": "reading",
        "x-thingcore-rule": "r",
        "x-thingcore-topic": "sensors/kitchen/t",
    }
    assert len({m.message_id for m in messages}) == 40 and all(m.message_id for m in messages)
    [other] = await rabbit.take(hall)
    assert json.loads(other.body) == {"n": 99}
    assert other.headers["device"] == "dev-2"
    assert other.headers["x-thingcore-topic"] == "sensors/hall/t"
    assert (rules["r"].delivered, rules["r"].retried, rules["r"].failed) == (41, 0, 0)
    # Without a url of its own the action uses rules.amqp.url; the lane is named for it.
    assert set(targets) == {f"amqp:default|{exchange}"}


async def test_a_binary_output_goes_raw_through_the_default_exchange_to_the_named_queue(
    rabbit: Rabbit, broker: Broker, tmp_path: Path
) -> None:
    queue = await rabbit.queue("raw")
    action = {"amqp": {"routingKey": queue.name, "persistent": False}}
    payload = bytes(range(256))
    definition = rule("r", "SELECT * FROM 'raw/+'", [action])
    await run_rules(settings(), broker, tmp_path, [definition], [("raw/a", payload)])
    [message] = await rabbit.take(queue)
    assert message.body == payload
    assert message.content_type == "application/octet-stream"
    assert message.delivery_mode == aio_pika.DeliveryMode.NOT_PERSISTENT
    assert message.exchange == ""
    assert message.routing_key == queue.name


async def test_a_message_no_queue_is_bound_for_goes_to_the_error_action(
    rabbit: Rabbit, broker: Broker, tmp_path: Path
) -> None:
    exchange, bound = await rabbit.routed("bound")
    errors = error_payloads(broker)
    action = {"amqp": {"exchange": exchange, "routingKey": "${topic(2)}"}}
    async with RulesEngine(settings(), broker.bus, data_dir=tmp_path) as engine:
        engine.install([forward(action)])
        publish(broker, "in/bound", {"n": 1})
        publish(broker, "in/nowhere", {"n": 2}, client="dev-7")
        publish(broker, "in/bound", {"n": 3})
        await engine.drain()
        rules, _ = engine.delivery.take_metrics()
    assert [json.loads(m.body)["n"] for m in await rabbit.take(bound)] == [1, 3]
    [payload] = errors
    assert error_origin(payload) == ErrorOrigin("r", "in/nowhere", "dev-7", {"n": 2})
    [failure] = payload["failures"]
    assert failure["failedAction"] == "AmqpAction"
    assert failure["failedResource"] == exchange
    assert "'nowhere'" in failure["errorMessage"] and "NO_ROUTE" in failure["errorMessage"]
    # Unroutable is not cured by waiting: no retries. (Delivered: two messages, one error.)
    assert (rules["r"].delivered, rules["r"].retried, rules["r"].failed) == (3, 0, 1)


async def test_without_mandatory_an_unroutable_message_is_dropped_by_the_broker(
    rabbit: Rabbit, broker: Broker, tmp_path: Path
) -> None:
    exchange = await rabbit.exchange()
    errors = error_payloads(broker)
    action = {"amqp": {"exchange": exchange, "routingKey": "nobody", "mandatory": False}}
    rules, _ = await run_rules(
        settings(), broker, tmp_path, [forward(action)], [("in/a", {"n": 1})]
    )
    assert errors == []
    assert (rules["r"].delivered, rules["r"].failed) == (1, 0)


async def test_a_missing_exchange_fails_clearly_and_works_once_it_is_declared(
    rabbit: Rabbit, broker: Broker, tmp_path: Path
) -> None:
    exchange = rabbit.name("later")
    errors = error_payloads(broker)
    action = {"amqp": {"exchange": exchange, "routingKey": "k"}}
    async with RulesEngine(settings(), broker.bus, data_dir=tmp_path) as engine:
        engine.install([forward(action)])
        for n in range(3):
            publish(broker, "in/a", {"n": n})
        await engine.drain()
        assert len(errors) == 3
        for payload in errors:
            [failure] = payload["failures"]
            assert failure["failedAction"] == "AmqpAction"
            assert failure["failedResource"] == exchange
            assert "NOT_FOUND" in failure["errorMessage"]
            assert "declare the exchange" in failure["errorMessage"]
        rules, _ = engine.delivery.take_metrics()
        assert (rules["r"].retried, rules["r"].failed) == (0, 3)
        # The same lane and target open a new channel for the next batch.
        lane = engine.delivery.lanes[f"amqp:default|{exchange}"]
        target = lane.target
        await rabbit.exchange("later")
        queue = await rabbit.queue(bind=(exchange, "k"))
        publish(broker, "in/a", {"n": 10})
        await engine.drain()
        rules, _ = engine.delivery.take_metrics()
        assert lane.target is target
    assert [json.loads(m.body)["n"] for m in await rabbit.take(queue)] == [10]
    assert (rules["r"].delivered, rules["r"].failed) == (1, 0)
    assert len(errors) == 3


async def test_an_exchange_deleted_under_a_live_channel_fails_its_messages_not_the_lane(
    rabbit: Rabbit, broker: Broker, tmp_path: Path
) -> None:
    exchange, queue = await rabbit.routed()
    errors = error_payloads(broker)
    action = {"amqp": {"exchange": exchange, "routingKey": "k"}}
    async with RulesEngine(settings(), broker.bus, data_dir=tmp_path) as engine:
        engine.install([forward(action)])
        publish(broker, "in/a", {"n": 0})
        await engine.drain()
        await rabbit.channel.exchange_delete(exchange)
        for n in range(1, 21):  # one batch, published at once into the deleted exchange
            publish(broker, "in/a", {"n": n})
        await engine.drain()
        assert sorted(error_origin(e).payload["n"] for e in errors) == list(range(1, 21))
        assert all("NOT_FOUND" in e["failures"][0]["errorMessage"] for e in errors)
        await rabbit.exchange()
        await queue.bind(exchange, "k")
        publish(broker, "in/a", {"n": 21})
        await engine.drain()
    assert [json.loads(m.body)["n"] for m in await rabbit.take(queue)] == [0, 21]


async def test_a_full_queue_that_rejects_publishes_nacks_and_those_deliveries_fail(
    rabbit: Rabbit, broker: Broker, tmp_path: Path
) -> None:
    exchange, queue = await rabbit.routed(
        arguments={"x-max-length": 3, "x-overflow": "reject-publish"}
    )
    errors = error_payloads(broker)
    action = {"amqp": {"exchange": exchange, "routingKey": "k"}}
    messages = [("in/a", {"n": n}) for n in range(5)]
    rules, _ = await run_rules(settings(), broker, tmp_path, [forward(action)], messages)
    assert [json.loads(m.body)["n"] for m in await rabbit.take(queue)] == [0, 1, 2]
    refused = [error_origin(e).payload["n"] for e in errors]
    assert refused == [3, 4]
    assert "basic.nack" in errors[0]["failures"][0]["errorMessage"]
    # Delivered: three messages and two error payloads.
    assert (rules["r"].delivered, rules["r"].retried, rules["r"].failed) == (5, 0, 2)


# -- outages ---------------------------------------------------------------------------------------


def outage_settings(proxy: TcpProxy) -> RulesSettings:
    # Enough attempts that nothing reaches the error action while the proxy is down.
    return settings(proxied(proxy), max_attempts=10_000)


async def test_rabbitmq_down_for_a_while_then_back_loses_nothing(
    rabbit: Rabbit, broker: Broker, tmp_path: Path, proxy: TcpProxy
) -> None:
    exchange, queue = await rabbit.routed()
    url = proxied(proxy)
    action = {"amqp": {"exchange": exchange, "routingKey": "k", "url": url}}
    key = f"amqp:{amqp.masked(url)}|{exchange}"
    async with RulesEngine(outage_settings(proxy), broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("r", "SELECT n FROM 'in/+'", [action])])
        for n in range(10):
            publish(broker, "in/a", {"n": n})
        await engine.drain()
        lane = engine.delivery.lanes[key]
        assert lane.counters.retried == 0
        await asyncio.to_thread(proxy.down)  # the lane's connection is cut, new ones refused
        for n in range(10, 30):
            publish(broker, "in/a", {"n": n})
        await until(lambda: lane.counters.retried >= 5, "deliveries retried while it is down")
        assert lane.depth == 20  # all still owed, none given up
        owed = await asyncio.to_thread(engine.delivery.outbox.load, key, 0, 100)
        ids = {json.loads(row.body)["n"]: row.message_id for row in owed}
        assert sorted(ids) == list(range(10, 30))
        await asyncio.to_thread(proxy.up)
        await engine.drain()
        rules, targets = engine.delivery.take_metrics()
    messages = await rabbit.take(queue)
    in_order_without_loss(messages, list(range(30)))
    # Each message carries its delivery's id, the same on every retry.
    assert {json.loads(m.body)["n"]: m.message_id for m in messages[10:]} == ids
    assert rules["r"].retried >= 5 and rules["r"].failed == 0
    assert targets[key][0].retried >= 5
    assert proxy.connections >= 2  # it connected again


async def test_rabbitmq_down_before_the_first_connection_then_back(
    rabbit: Rabbit, broker: Broker, tmp_path: Path, proxy: TcpProxy
) -> None:
    exchange, queue = await rabbit.routed()
    await asyncio.to_thread(proxy.down)
    action = {"amqp": {"exchange": exchange, "routingKey": "k"}}
    async with RulesEngine(outage_settings(proxy), broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("r", "SELECT n FROM 'in/+'", [action])])
        for n in range(10):
            publish(broker, "in/a", {"n": n})
        lane_key = f"amqp:default|{exchange}"
        await until(
            lambda: (
                lane_key in engine.delivery.lanes
                and engine.delivery.lanes[lane_key].counters.retried >= 3
            ),
            "connections refused and retried",
        )
        assert "cannot connect" in (engine.delivery.lanes[lane_key].last_error or "")
        await asyncio.to_thread(proxy.up)
        await engine.drain()
    in_order_without_loss(await rabbit.take(queue), list(range(10)))


async def test_a_connection_cut_while_messages_are_in_flight_loses_none(
    rabbit: Rabbit, broker: Broker, tmp_path: Path, proxy: TcpProxy
) -> None:
    exchange, queue = await rabbit.routed()
    received: list[Any] = []
    first = asyncio.Event()
    total = 700
    everything = asyncio.Event()

    seen: set[int] = set()

    async def arrived(message: Any) -> None:
        received.append(message)
        seen.add(json.loads(message.body)["n"])
        first.set()
        if len(seen) == total:
            everything.set()

    await queue.consume(arrived, no_ack=True)
    action = {"amqp": {"exchange": exchange, "routingKey": "k"}}
    async with RulesEngine(outage_settings(proxy), broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("r", "SELECT n FROM 'in/+'", [action])])
        for n in range(500):
            publish(broker, "in/a", {"n": n})
        # Cut as soon as the first message is through: the rest are on the wire or waiting.
        await asyncio.wait_for(first.wait(), 10)
        await asyncio.to_thread(proxy.down)
        for n in range(500, total):
            publish(broker, "in/a", {"n": n})
        lane = engine.delivery.lanes[f"amqp:default|{exchange}"]
        await until(lambda: lane.counters.retried > 0, "deliveries retried after the cut")
        await asyncio.to_thread(proxy.up)
        await engine.drain()
        rules, _ = engine.delivery.take_metrics()
    await asyncio.wait_for(everything.wait(), 10)
    in_order_without_loss(received, list(range(total)))
    assert rules["r"].retried > 0 and rules["r"].failed == 0
    assert rules["r"].delivered == total


async def test_an_unreachable_broker_is_retried_then_reported_without_its_password(
    broker: Broker, tmp_path: Path
) -> None:
    url = f"amqp://thing:s3cret-pw@127.0.0.1:{free_port()}/"
    errors = error_payloads(broker)
    action = {"amqp": {"exchange": "orders", "routingKey": "k", "url": url}}
    message = ("in/a", {"n": 1})
    rules, targets = await run_rules(settings(), broker, tmp_path, [forward(action)], [message])
    [payload] = errors
    [failure] = payload["failures"]
    assert failure["failedResource"] == "orders"
    message = failure["errorMessage"]
    assert "cannot connect" in message and "thing:***@127.0.0.1" in message
    assert "s3cret" not in json.dumps(errors)
    assert all("s3cret" not in key for key in targets)
    assert f"amqp:{amqp.masked(url)}|orders" in targets
    assert (rules["r"].retried, rules["r"].failed) == (2, 1)


async def test_a_wrong_password_is_retried_then_reported_without_the_password(
    rabbit: Rabbit, broker: Broker, tmp_path: Path
) -> None:
    exchange = await rabbit.exchange()
    parts = urlsplit(AMQP_URL)
    url = parts._replace(
        netloc=f"{parts.username}:wrong-pw-{uuid.uuid4().hex[:6]}@{parts.hostname}:{parts.port}"
    ).geturl()
    errors = error_payloads(broker)
    action = {"amqp": {"exchange": exchange, "routingKey": "k", "url": url}}
    rules, _ = await run_rules(
        settings(), broker, tmp_path, [forward(action)], [("in/a", {"n": 1})]
    )
    [payload] = errors
    message = payload["failures"][0]["errorMessage"]
    assert "cannot connect" in message and "ACCESS_REFUSED" in message
    assert "wrong-pw" not in json.dumps(payload)
    # Credentials can be fixed while deliveries wait: retried like an outage.
    assert (rules["r"].retried, rules["r"].failed) == (2, 1)


async def test_a_broker_that_accepts_but_never_answers_times_out_and_is_retried(
    broker: Broker, tmp_path: Path
) -> None:
    with socket.socket() as silent:
        # Listening without accepting: the TCP handshake completes, AMQP's never does.
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"amqp://guest:guest@127.0.0.1:{silent.getsockname()[1]}/"
        errors = error_payloads(broker)
        action = {"amqp": {"routingKey": "k", "url": url}}
        engine_settings = settings(connect_timeout=0.1, max_attempts=2)
        message = ("in/a", {"n": 1})
        rules, _ = await run_rules(engine_settings, broker, tmp_path, [forward(action)], [message])
    [payload] = errors
    assert "rules.amqp.connect_timeout" in payload["failures"][0]["errorMessage"]
    assert (rules["r"].retried, rules["r"].failed) == (1, 1)


# -- rule creation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"exchange": "x"}, "routingKey: Field required"),
        ({"routingKey": "k", "routing_key2": "k"}, "routing_key2: Extra inputs are not permitted"),
        ({"routingKey": "k", "url": "http://guest:pw@host/"}, "is not an AMQP URL"),
        ({"routingKey": "k", "url": "amqp://guest:pw@host:notaport/"}, "cannot be parsed"),
        (
            {"routingKey": "k", "persistent": "sometimes"},
            "persistent: Input should be a valid boolean",
        ),
        ({"routingKey": "k", "headers": {"x-thingcore-rule": "mine"}}, "set by thingcore itself"),
        ({"routingKey": "${topic(}"}, "expected an expression"),
    ],
)
def test_bad_parameters_are_refused_when_the_rule_is_created(
    params: dict[str, Any], expected: str
) -> None:
    message = refusal("amqp", params)  # a RuleError or a RuleSqlError
    assert expected in message
    assert "pw" not in message


def test_a_rule_error_names_the_action_and_parameter() -> None:
    message = refusal("amqp", {"exchange": "x"}, RuleError)
    assert "actions[0] (amqp): routingKey: Field required" in message


def test_templates_are_checked_and_nothing_is_missing_with_aio_pika_installed() -> None:
    params = {"exchange": "${topic()}", "routingKey": "k", "headers": {"a": "${clientid()}"}}
    parsed = parse_definition("r", one_action("amqp", params))
    assert missing_extras(parsed, RulesSettings()) == []
    assert sorted(amqp.templates(parsed.actions[0].params)) == ["${clientid()}", "${topic()}", "k"]


def test_masked_hides_only_the_password() -> None:
    assert amqp.masked("amqp://u:p@h:5672/v?heartbeat=5") == "amqp://u:***@h:5672/v?heartbeat=5"
    assert amqp.masked("amqps://u@h/") == "amqps://u@h/"
    assert amqp.masked("amqp://h:5672/") == "amqp://h:5672/"
