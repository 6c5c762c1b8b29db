"""``{"function": {..., "reply": true}}``: the handler's answer to an MQTT 5 request goes to the
request's response topic with its correlation data, also when the delivery comes back from the
outbox file after a restart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from broker.message import Message
from broker.properties import Properties
from broker.server import Broker
from rules.config import LocalTargetSettings, RulesSettings
from rules.delivery import Origin
from rules.engine import RulesEngine
from tests.rules.engine_support import fast_delivery, function, rule

QUOTE = """
def handler(event, context):
    return {"total": event["price"] * 2, "id": context.message_id}
"""


def settings() -> RulesSettings:
    return RulesSettings(delivery=fast_delivery(), local=LocalTargetSettings(function_timeout=5.0))


def request(broker: Broker, payload: dict[str, Any], properties: Properties | None) -> None:
    broker.publish(
        Message(
            "shop/price",
            json.dumps(payload).encode(),
            1,
            False,
            client_id="kiosk",
            received_at=0,
            properties=properties,
        )
    )


def listen(broker: Broker, topic_filter: str) -> list[Message]:
    got: list[Message] = []
    broker.bus.subscribe(topic_filter, got.append)
    return got


ACTION = {"function": {"functionName": "quote", "reply": True}}


async def test_the_answer_goes_to_the_response_topic_with_the_correlation_data(
    broker: Broker, tmp_path: Path
) -> None:
    function(tmp_path, "quote", QUOTE)
    replies = listen(broker, "replies/#")
    async with RulesEngine(settings(), broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("prices", "SELECT price FROM 'shop/price'", [ACTION])])
        request(
            broker,
            {"price": 21},
            Properties(response_topic="replies/kiosk", correlation_data=b"\x01q7"),
        )
        request(broker, {"price": 5}, None)  # no response topic: handled, nobody to answer
        await engine.drain()
    [reply] = replies
    assert reply.topic == "replies/kiosk"
    answer = json.loads(reply.payload)
    assert answer["total"] == 42 and answer["id"]
    assert reply.properties is not None
    assert reply.properties.correlation_data == b"\x01q7"
    assert reply.properties.content_type == "application/json"
    assert reply.qos == 1


async def test_without_reply_the_answer_is_not_published(broker: Broker, tmp_path: Path) -> None:
    function(tmp_path, "quote", QUOTE)
    replies = listen(broker, "replies/#")
    plain = {"function": {"functionName": "quote"}}
    async with RulesEngine(settings(), broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("prices", "SELECT price FROM 'shop/price'", [plain])])
        request(broker, {"price": 21}, Properties(response_topic="replies/kiosk"))
        await engine.drain()
    assert replies == []


def test_the_request_survives_the_outbox_row() -> None:
    origin = Origin("shop/price", b"{}", "kiosk", None, 1, "t", "replies/kiosk", b"\x00\xff")
    assert Origin.from_row(json.loads(json.dumps(origin.meta())), b"{}") == origin
    bare = Origin("shop/price", b"{}", "kiosk", None, 1, "t")
    assert "responseTopic" not in bare.meta()
    assert Origin.from_row(bare.meta(), b"{}") == bare
