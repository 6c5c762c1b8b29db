"""Delivery through the durable outbox to real local targets: queues, buckets, functions.

Each test runs the engine on a real broker's Bus with a data directory under tmp_path, so the
outbox, the queue file, the bucket folder and the function workers are the real ones; backoff
and timeouts come from settings, in hundredths of a second.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from broker.server import Broker
from rules.config import LocalTargetSettings, RulesSettings
from rules.engine import RulesEngine
from rules.local.buckets import BucketStore
from rules.local.queues import QueueStore
from rules.outbox import Outbox
from tests.harness import make_settings
from tests.rules.engine_support import (
    ERROR_ACTION,
    ErrorOrigin,
    error_origin,
    error_payloads,
    fast_delivery,
    function,
    publish,
    queue_bodies,
    rule,
    until,
)


def settings(**delivery: Any) -> RulesSettings:
    return RulesSettings(
        delivery=fast_delivery(**delivery),
        local=LocalTargetSettings(function_timeout=5.0, function_concurrency=1),
    )


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    yield Broker(make_settings(), data_dir=None)


async def test_a_queue_gets_each_output_with_its_own_stable_id(
    broker: Broker, tmp_path: Path
) -> None:
    async with RulesEngine(settings(), broker.bus, data_dir=tmp_path) as engine:
        engine.install(
            [rule("hot", "SELECT * FROM 'sensors/+/t'", [{"queue": {"queueName": "q"}}])]
        )
        for n in range(50):
            publish(broker, "sensors/a/t", {"n": n})
        await engine.drain()
        assert engine.delivery.outbox.count() == 0
    with QueueStore(tmp_path / "queues.sqlite") as store:
        messages = store.peek("q", limit=100)
    assert [json.loads(m.body)["n"] for m in messages] == list(range(50))
    assert len({m.message_id for m in messages}) == 50
    assert messages[0].attributes["rule"] == "hot"
    assert messages[0].attributes["topic"] == "sensors/a/t"


async def test_a_bucket_object_per_output_under_its_key_template(
    broker: Broker, tmp_path: Path
) -> None:
    action = {
        "bucket": {
            "bucketName": "readings",
            "key": "${topic(2)}/${n}.json",
            "metadata": {"device": "${clientid()}"},
        }
    }
    async with RulesEngine(settings(), broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("archive", "SELECT n FROM 'sensors/+/t'", [action])])
        publish(broker, "sensors/kitchen/t", {"n": 7})
        await engine.drain()
    body, info = BucketStore(tmp_path / "buckets").get("readings", "kitchen/7.json")
    assert json.loads(body) == {"n": 7}
    assert info.content_type == "application/json"
    assert info.metadata["device"] == "dev-1"
    assert info.message_id is not None
    assert (tmp_path / "buckets" / "readings" / "kitchen" / "7.json").is_file()


async def test_a_function_that_fails_then_succeeds_is_retried_with_the_same_id(
    broker: Broker, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.txt"
    function(
        tmp_path,
        "flaky",
        f"""
        from pathlib import Path
        CALLS = Path({str(calls)!r})

        def handler(event, context):
            with CALLS.open("a") as f:
                f.write(context.message_id + "\\n")
            if len(CALLS.read_text().splitlines()) < 3:
                raise ConnectionError("backend not ready")
            return event
        """,
    )
    async with RulesEngine(settings(max_attempts=5), broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("r", "SELECT n FROM 'in'", [{"function": {"functionName": "flaky"}}])])
        publish(broker, "in", {"n": 1})
        await engine.drain()
        rules, targets = engine.delivery.take_metrics()
    ids = calls.read_text().splitlines()
    assert len(ids) == 3 and len(set(ids)) == 1
    assert (rules["r"].retried, rules["r"].delivered, rules["r"].failed) == (2, 1, 0)
    assert targets["function:flaky"][0].retried == 2
    assert not queue_bodies_exist(tmp_path, "r-dlq")


def queue_bodies_exist(data_dir: Path, queue: str) -> bool:
    path = data_dir / "queues.sqlite"
    if not path.exists():
        return False
    with QueueStore(path) as store:
        return any(info.name == queue and info.visible for info in store.queues())


async def test_a_function_that_always_fails_ends_in_the_error_action_with_aws_payload(
    broker: Broker, tmp_path: Path
) -> None:
    function(tmp_path, "broken", "def handler(event, context):\n    raise ValueError('bad')\n")
    errors = error_payloads(broker)
    definition = rule(
        "r",
        "SELECT n FROM 'in/+'",
        [{"function": {"functionArn": "arn:aws:lambda:us-east-1:1:function:broken"}}],
        errorAction=ERROR_ACTION,
    )
    async with RulesEngine(settings(), broker.bus, data_dir=tmp_path) as engine:
        engine.install([definition])
        publish(broker, "in/x", {"n": 1}, client="dev-9")
        await engine.drain()
        rules, _ = engine.delivery.take_metrics()
    [payload] = errors
    assert error_origin(payload) == ErrorOrigin("r", "in/x", "dev-9", {"n": 1})
    assert payload["cloudwatchTraceId"]
    [failure] = payload["failures"]
    assert failure["failedAction"] == "FunctionAction"
    assert failure["failedResource"] == "broken"
    assert "ValueError" in failure["errorMessage"] and "bad" in failure["errorMessage"]
    assert (rules["r"].retried, rules["r"].failed, rules["r"].error_actions) == (2, 1, 1)


async def test_without_an_error_action_failures_go_to_the_rule_dead_letter_queue(
    broker: Broker, tmp_path: Path
) -> None:
    action = {"bucket": {"bucketName": "b-1", "key": "${topic(2)}/../../escape"}}
    async with RulesEngine(settings(), broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("archive", "SELECT * FROM 'in/+'", [action])])
        publish(broker, "in/x", {"n": 1})
        await engine.drain()
        rules, _ = engine.delivery.take_metrics()
    [payload] = queue_bodies(tmp_path, "archive-dlq")
    assert payload["failures"][0]["failedAction"] == "BucketAction"
    assert payload["failures"][0]["failedResource"] == "b-1"
    # An invalid key can never succeed: no retries, straight to dead letters.
    assert (rules["archive"].retried, rules["archive"].dead_lettered) == (0, 1)
    assert not (tmp_path / "escape").exists()


async def test_one_error_payload_lists_every_failed_action_of_an_output(
    broker: Broker, tmp_path: Path
) -> None:
    function(tmp_path, "broken", "def handler(event, context):\n    raise KeyError('x')\n")
    actions = [
        {"queue": {"queueName": "ok"}},
        {"function": {"functionName": "broken"}},
        {"function": {"functionName": "missing"}},
        {"bucket": {"bucketName": "fine", "key": "k/${n}"}},
    ]
    async with RulesEngine(settings(), broker.bus, data_dir=tmp_path) as engine:
        engine.install(
            [
                rule(
                    "fan",
                    "SELECT n FROM 'in'",
                    actions,
                    errorAction={"queue": {"queueName": "errors"}},
                )
            ]
        )
        publish(broker, "in", {"n": 3})
        await engine.drain()
        assert engine.delivery.outbox.count() == 0
    assert queue_bodies(tmp_path, "ok") == [{"n": 3}]
    assert BucketStore(tmp_path / "buckets").get("fine", "k/3")[0] == b'{"n":3}'
    [payload] = queue_bodies(tmp_path, "errors")
    failed = sorted(f["failedResource"] for f in payload["failures"])
    assert failed == ["broken", "missing"]


async def test_a_slow_target_does_not_hold_up_another(broker: Broker, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    function(
        tmp_path,
        "slow",
        f"""
        import time
        from pathlib import Path

        def handler(event, context):
            while not Path({str(gate)!r}).exists():
                time.sleep(0.01)
        """,
    )
    async with RulesEngine(settings(), broker.bus, data_dir=tmp_path) as engine:
        engine.install(
            [
                rule("slow", "SELECT n FROM 'in'", [{"function": {"functionName": "slow"}}]),
                rule("fast", "SELECT n FROM 'in'", [{"queue": {"queueName": "fast"}}]),
            ]
        )
        for n in range(5):
            publish(broker, "in", {"n": n})
        for _ in range(500):
            if engine.delivery.lanes["queue:fast"].depth == 0:
                break
            await asyncio.sleep(0.01)
        assert queue_bodies(tmp_path, "fast") == [{"n": n} for n in range(5)]
        assert engine.delivery.lanes["function:slow"].depth == 5
        gate.touch()
        await engine.drain()


async def test_a_target_that_comes_back_gets_everything_in_order(
    broker: Broker, tmp_path: Path
) -> None:
    down = tmp_path / "down"
    seen = tmp_path / "seen.txt"
    down.touch()
    function(
        tmp_path,
        "sink",
        f"""
        from pathlib import Path

        def handler(event, context):
            if Path({str(down)!r}).exists():
                raise ConnectionRefusedError("sink is down")
            with open({str(seen)!r}, "a") as f:
                f.write(str(event["n"]) + "\\n")
        """,
    )
    # A small memory window: most of what waits stays in the outbox file (spilled).
    options = {"max_attempts": 1000, "batch_size": 2, "target_window": 4}
    async with RulesEngine(settings(**options), broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("r", "SELECT n FROM 'in'", [{"function": {"functionName": "sink"}}])])
        for n in range(30):
            publish(broker, "in", {"n": n})
        await asyncio.sleep(0.3)
        lane = engine.delivery.lanes["function:sink"]
        assert lane.depth == 30 and lane.retry_at is not None
        assert "sink is down" in (lane.last_error or "")
        down.unlink()
        await engine.drain()
        _, targets = engine.delivery.take_metrics()
    assert [int(n) for n in seen.read_text().split()] == list(range(30))
    assert targets["function:sink"][0].spilled > 0


async def test_a_target_that_owes_too_much_refuses_to_the_error_path(
    broker: Broker, tmp_path: Path
) -> None:
    function(tmp_path, "never", "def handler(event, context):\n    raise OSError('down')\n")
    options = {"max_attempts": 1000, "batch_size": 1, "target_window": 2, "max_target_depth": 2}
    async with RulesEngine(settings(**options), broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("r", "SELECT n FROM 'in'", [{"function": {"functionName": "never"}}])])
        for n in range(5):
            publish(broker, "in", {"n": n})
        await asyncio.sleep(0.1)
        dead = queue_bodies(tmp_path, "r-dlq")
        assert len(dead) == 3
        assert "already owes 2" in dead[0]["failures"][0]["errorMessage"]
        assert engine.delivery.lanes["function:never"].depth == 2


async def test_deliveries_owed_at_shutdown_are_delivered_after_a_restart(
    broker: Broker, tmp_path: Path
) -> None:
    down = tmp_path / "down"
    down.touch()
    function(
        tmp_path,
        "sink",
        f"""
        from pathlib import Path

        def handler(event, context):
            if Path({str(down)!r}).exists():
                raise ConnectionRefusedError("down")
            with open({str(tmp_path / "seen.txt")!r}, "a") as f:
                f.write(context.message_id + " " + str(event["n"]) + "\\n")
        """,
    )
    definition = rule("r", "SELECT n FROM 'in'", [{"function": {"functionName": "sink"}}])
    async with RulesEngine(settings(max_attempts=1000), broker.bus, data_dir=tmp_path) as engine:
        engine.install([definition])
        for n in range(10):
            publish(broker, "in", {"n": n})
        await asyncio.sleep(0.2)
    assert Outbox(tmp_path / "outbox.sqlite").count() == 10
    down.unlink()
    async with RulesEngine(settings(), broker.bus, data_dir=tmp_path) as engine:
        engine.install([definition])
        await engine.drain()
    lines = (tmp_path / "seen.txt").read_text().split("\n")[:-1]
    assert [int(line.split()[1]) for line in lines] == list(range(10))
    assert Outbox(tmp_path / "outbox.sqlite").count() == 0


async def test_an_invalid_queue_name_fails_alone_and_the_batch_goes_on(
    broker: Broker, tmp_path: Path
) -> None:
    action = {"queue": {"queueName": "q-${name}"}}
    async with RulesEngine(settings(), broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("r", "SELECT n FROM 'in'", [action])])
        for payload in ({"n": 1, "name": "a"}, {"n": 2, "name": "b.c"}, {"n": 3, "name": "a"}):
            publish(broker, "in", payload)
        await engine.drain()
    assert queue_bodies(tmp_path, "q-a") == [{"n": 1}, {"n": 3}]
    [dead] = queue_bodies(tmp_path, "r-dlq")
    assert dead["failures"][0]["failedResource"] == "q-b.c"
    assert "q-b.c" in dead["failures"][0]["errorMessage"]


async def test_a_service_publishing_while_a_message_routes_keeps_its_puback_hold(
    broker: Broker, tmp_path: Path
) -> None:
    # The shadow service answers a rejected update synchronously, inside the routing of the
    # device's message: that answer must not release the message's held PUBACK.
    async with RulesEngine(
        settings(puback_after_commit=True), broker.bus, data_dir=tmp_path
    ) as engine:
        engine.install([rule("r", "SELECT * FROM 'in/#'", [{"queue": {"queueName": "q"}}])])
        broker.bus.subscribe("in/#", lambda m: broker.bus.publish("answers", b"{}", qos=1))
        publish(broker, "in/x", {"n": 1})
        holds = broker.take_ack_holds()
        assert holds is not None and len(holds) == 1
        await asyncio.wait_for(holds[0], 5)
        assert engine.delivery.commits >= 1
        publish(broker, "elsewhere", {"n": 2})
        assert broker.take_ack_holds() is None
        await engine.drain()


async def test_removals_of_delivered_rows_wait_for_the_next_commit(
    broker: Broker, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.sqlite"
    async with RulesEngine(settings(completion_delay=5.0), broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("r", "SELECT n FROM 'in'", [{"queue": {"queueName": "q"}}])])
        publish(broker, "in", {"n": 1})
        await until(lambda: queue_bodies_exist(tmp_path, "q"), "the first delivery", within=5)
        await asyncio.sleep(0.1)
        # Delivered, but its row's removal waits for the next new rows (or the delay).
        assert Outbox(outbox).count() == 1 and engine.delivery.owed() == 0
        publish(broker, "in", {"n": 2})
        await until(lambda: len(queue_bodies(tmp_path, "q")) == 2, "the second", within=5)
        await asyncio.sleep(0.1)
        # The first row went with the second's commit; the second's removal waits now.
        [left] = Outbox(outbox).depths()
        assert (left.owed, left.last_id) == (1, 2)
    # Stopping commits what waits at once: nothing is owed, nothing is left behind.
    assert Outbox(outbox).count() == 0


async def test_an_error_action_that_fails_too_dead_letters_every_failure(
    broker: Broker, tmp_path: Path
) -> None:
    function(tmp_path, "broken", "def handler(event, context):\n    raise ValueError('bad')\n")
    definition = rule(
        "r",
        "SELECT n FROM 'in'",
        [{"function": {"functionName": "broken"}}],
        errorAction={"function": {"functionName": "absent"}},
    )
    async with RulesEngine(settings(), broker.bus, data_dir=tmp_path) as engine:
        engine.install([definition])
        publish(broker, "in", {"n": 5})
        await engine.drain()
        rules, _ = engine.delivery.take_metrics()
    [dead] = queue_bodies(tmp_path, "r-dlq")
    assert [f["failedResource"] for f in dead["failures"]] == ["broken", "absent"]
    assert "ValueError" in dead["failures"][0]["errorMessage"]
    assert json.loads(base64.b64decode(dead["base64OriginalPayload"])) == {"n": 5}
    assert (rules["r"].error_actions, rules["r"].dead_lettered) == (1, 1)
