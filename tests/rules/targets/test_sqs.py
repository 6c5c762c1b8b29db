"""The ``sqs`` action through the engine: to moto's SQS server (``aws_targets`` "aws"), to the
local queue the URL names (no endpoint configured), through an outage, and its parameters
refused at rule creation."""

from __future__ import annotations

import base64
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from broker.server import Broker
from rules.actions.sqs import SqsTarget
from rules.aws import AwsClients
from rules.config import AwsSettings
from rules.definition import missing_extras, parse_definition
from rules.delivery import Delivery, Origin
from rules.engine import RulesEngine
from rules.errors import RuleError
from rules.local.queues import QueueStore
from tests.moto_server import MotoServer
from tests.rules.engine_support import (
    ErrorOrigin,
    aws_settings,
    error_origin,
    one_action,
    publish,
    queue_bodies,
    refusal,
    rule,
    run_rules,
    through_an_outage,
)
from tests.rules.targets.proxy import TcpProxy

pytestmark = pytest.mark.usefixtures("aws_credentials")


def receive_all(sqs: Any, url: str, count: int, within: float = 10) -> list[dict[str, Any]]:
    """``count`` messages of ``url`` in the order SQS gives them (each deleted once received,
    so that a FIFO group's next messages become visible)."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while len(found) < count and time.monotonic() < deadline:
        answer = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        for message in answer.get("Messages", []):
            found.append(message)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def left(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


async def test_messages_arrive_with_their_bodies_and_attributes(
    moto: MotoServer, broker: Broker, tmp_path: Path, name: str
) -> None:
    sqs = moto.client("sqs")
    urls = {room: sqs.create_queue(QueueName=f"{name}-{room}")["QueueUrl"] for room in "ab"}
    template = urls["a"].removesuffix("-a") + "-${topic(2)}"  # the queue picked per message
    action = {"sqs": {"queueUrl": template, "roleArn": "arn:aws:iam::123456789012:role/iot"}}
    async with RulesEngine(aws_settings(moto.url), broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("fwd", "SELECT n FROM 'sensors/+'", [action])])
        for n in range(50):  # more than one batch of ten per queue
            publish(broker, f"sensors/{'ab'[n % 2]}", {"n": n})
        await engine.drain()
        rules, targets = engine.delivery.take_metrics()
    assert (rules["fwd"].delivered, rules["fwd"].retried) == (50, 0)
    assert targets[f"sqs:{urls['a']}"][0].delivered == 25
    for index, room in enumerate("ab"):
        messages = receive_all(sqs, urls[room], 25)
        assert sorted(json.loads(m["Body"])["n"] for m in messages) == list(range(index, 50, 2))
        attributes = messages[0]["MessageAttributes"]
        assert attributes["rule"] == {"DataType": "String", "StringValue": "fwd"}
        assert attributes["topic"] == {"DataType": "String", "StringValue": f"sensors/{room}"}
        assert left(sqs, urls[room]) == 0


async def test_use_base64_sends_a_binary_output_as_base64_text(
    moto: MotoServer, broker: Broker, tmp_path: Path, name: str
) -> None:
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    action = {"sqs": {"queueUrl": url, "useBase64": True}}
    async with RulesEngine(aws_settings(moto.url), broker.bus, data_dir=tmp_path) as engine:
        engine.install(
            [
                rule("raw", "SELECT * FROM 'raw'", [action]),
                rule("json", "SELECT n FROM 'json'", [action]),
            ]
        )
        publish(broker, "raw", b"\x00\xff\xfe binary")
        await engine.drain()
        publish(broker, "json", {"n": 1})
        await engine.drain()
    first, second = receive_all(sqs, url, 2)
    assert base64.b64decode(first["Body"]) == b"\x00\xff\xfe binary"
    assert json.loads(base64.b64decode(second["Body"])) == {"n": 1}


async def test_a_binary_output_without_use_base64_fails_saying_to_set_it(
    moto: MotoServer, broker: Broker, tmp_path: Path, name: str
) -> None:
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    definition = rule(
        "raw",
        "SELECT * FROM 'raw'",
        [{"sqs": {"queueUrl": url}}],
        errorAction={"queue": {"queueName": "errors"}},
    )
    messages = [("raw", b"\x00\xff\xfe binary"), ("raw", b"plain text is fine")]
    rules, _ = await run_rules(aws_settings(moto.url), broker, tmp_path, [definition], messages)
    [payload] = queue_bodies(tmp_path, "errors")
    [failure] = payload["failures"]
    assert failure["failedAction"] == "SqsAction"
    assert failure["failedResource"] == url
    assert "set useBase64 to true" in failure["errorMessage"]
    assert base64.b64decode(payload["base64OriginalPayload"]) == b"\x00\xff\xfe binary"
    # Delivered: the text message and the error action's message; failed at once: the binary.
    assert (rules["raw"].retried, rules["raw"].delivered, rules["raw"].failed) == (0, 2, 1)
    [message] = receive_all(sqs, url, 1)
    assert message["Body"] == "plain text is fine"


async def test_a_fifo_queue_gets_the_rule_as_group_and_the_delivery_id_for_dedup(
    moto: MotoServer, broker: Broker, tmp_path: Path, name: str
) -> None:
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=f"{name}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    async with RulesEngine(aws_settings(moto.url), broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("ordered", "SELECT n FROM 'in'", [{"sqs": {"queueUrl": url}}])])
        for n in range(25):
            publish(broker, "in", {"n": n})
        await engine.drain()
    messages = receive_all(sqs, url, 25)
    assert [json.loads(m["Body"])["n"] for m in messages] == list(range(25))
    assert {m["Attributes"]["MessageGroupId"] for m in messages} == {"ordered"}
    dedup = [m["Attributes"]["MessageDeduplicationId"] for m in messages]
    assert len(set(dedup)) == 25
    assert all(uuid.UUID(d).version == 4 for d in dedup)  # the deliveries' message ids


def delivery(n: int, url: str, message_id: str) -> Delivery:
    origin = Origin("in", b"{}", "dev-1", None, 0, str(uuid.uuid4()))
    params = {"url": url, "queue": "q", "priority": 0}
    return Delivery(
        n, message_id, str(n), "ordered", 0, 1, "sqs", f"sqs:{url}", params,
        json.dumps({"n": n}).encode(), origin, 0, 0.0,
    )  # fmt: skip


async def test_a_redelivery_after_a_crash_is_not_queued_twice_on_a_fifo_queue(
    moto: MotoServer, name: str
) -> None:
    # After a crash the outbox delivers again what it had not marked done, with the same ids:
    # the target is handed the same deliveries a second time.
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=f"{name}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    target = SqsTarget(AwsClients(AwsSettings(endpoint_url=moto.url)), url)
    batch = [delivery(n, url, str(uuid.uuid4())) for n in range(12)]
    try:
        assert await target.deliver(batch) == [None] * 12
        assert await target.deliver(batch[5:]) == [None] * 7
        assert await target.deliver([delivery(12, url, str(uuid.uuid4()))]) == [None]
    finally:
        await target.aclose()
    messages = receive_all(sqs, url, 13)
    assert [json.loads(m["Body"])["n"] for m in messages] == list(range(13))
    assert left(sqs, url) == 0


async def test_a_queue_that_does_not_exist_goes_to_the_error_action_without_retries(
    moto: MotoServer, broker: Broker, tmp_path: Path, name: str
) -> None:
    url = f"{moto.url}/123456789012/{name}"
    definition = rule(
        "fwd",
        "SELECT n FROM 'in/+'",
        [{"sqs": {"queueUrl": url}}],
        errorAction={"queue": {"queueName": "errors"}},
    )
    config = aws_settings(moto.url)
    rules, _ = await run_rules(config, broker, tmp_path, [definition], [("in/x", {"n": 1})])
    [payload] = queue_bodies(tmp_path, "errors")
    assert error_origin(payload) == ErrorOrigin("fwd", "in/x", "dev-1", {"n": 1})
    [failure] = payload["failures"]
    assert failure["failedAction"] == "SqsAction"
    assert failure["failedResource"] == url
    assert "NonExistentQueue" in failure["errorMessage"]
    assert "does not exist" in failure["errorMessage"]
    assert (rules["fwd"].retried, rules["fwd"].failed, rules["fwd"].error_actions) == (0, 1, 1)


async def test_without_an_endpoint_it_sends_to_the_local_queue_the_url_names(
    broker: Broker, tmp_path: Path
) -> None:
    # A rule copied from AWS, no endpoint and aws_targets unset: it works offline.
    base = "https://sqs.us-east-1.amazonaws.com/123456789012"
    actions = [
        {"sqs": {"queueUrl": f"{base}/orders"}},
        {"sqs": {"queueUrl": f"{base}/jobs.fifo", "useBase64": True}},
    ]
    local = aws_settings(None, aws_targets=None)
    assert local.aws_mode("sqs") == "local"
    async with RulesEngine(local, broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("fwd", "SELECT n FROM 'in'", actions)])
        for n in range(3):
            publish(broker, "in", {"n": n})
        await engine.drain()
    assert queue_bodies(tmp_path, "orders") == [{"n": 0}, {"n": 1}, {"n": 2}]
    with QueueStore(tmp_path / "queues.sqlite") as store:
        [first, *_] = store.peek("jobs", limit=10)
    assert json.loads(base64.b64decode(first.body)) == {"n": 0}
    assert first.attributes == {"rule": "fwd", "topic": "in"}


async def test_sqs_down_for_a_while_gets_every_message_in_order_when_back(
    moto: MotoServer, moto_proxy: TcpProxy, broker: Broker, tmp_path: Path, name: str
) -> None:
    sqs = moto.client("sqs")
    # The queue's URL names moto itself; the endpoint (the proxy) is where requests go.
    url = sqs.create_queue(QueueName=f"{name}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    definition = rule("ordered", "SELECT n FROM 'in'", [{"sqs": {"queueUrl": url}}])
    outage = await through_an_outage(
        broker, tmp_path, moto_proxy, definition, 60, lambda: left(sqs, url)
    )
    assert outage.seen_while_down == 0
    assert outage.owed_after == 0
    assert outage.total.retried > 0
    assert (outage.total.delivered, outage.total.failed) == (60, 0)
    messages = receive_all(sqs, url, 60)
    assert [json.loads(m["Body"])["n"] for m in messages] == list(range(60))
    assert left(sqs, url) == 0


# -- rule creation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, "queueUrl: Field required"),
        ({"queueUrl": "orders"}, "'orders' is not a queue URL"),
        ({"queueUrl": "https://sqs.us-east-1.amazonaws.com/"}, "has no queue name"),
        ({"queueUrl": "ftp://example.com/q"}, "is not a queue URL"),
        ({"queueName": "orders"}, "queueName: Extra inputs are not permitted"),
        ({"queueUrl": "https://h/1/q", "useBase64": "maybe"}, "useBase64"),
    ],
)
def test_bad_parameters_are_refused_when_the_rule_is_made(
    params: dict[str, Any], expected: str
) -> None:
    message = refusal("sqs", params, RuleError)
    assert "rule r: actions[0] (sqs)" in message
    assert expected in message


def test_a_templated_url_is_checked_when_delivered_not_before() -> None:
    parsed = parse_definition("r", one_action("sqs", {"queueUrl": "${queue}"}))
    assert parsed.actions[0].params.queue_url == "${queue}"


def test_boto3_is_needed_only_where_the_action_goes_to_aws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed = parse_definition("r", one_action("sqs", {"queueUrl": "https://h/1/q"}))
    monkeypatch.setitem(sys.modules, "boto3", None)  # as if it were not installed
    assert missing_extras(parsed, aws_settings(None, aws_targets=None)) == []
    [problem] = missing_extras(parsed, aws_settings(None, aws_targets="aws"))
    assert "sqs action" in problem and "pip install 'thingcore[aws]'" in problem
