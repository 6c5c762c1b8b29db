"""The ``sns`` action through the engine: to local topics (fanned out to local queues) and to
SNS in moto's server (fanned out to SQS queues there), including an outage of the endpoint.

The engine runs on a real broker's Bus with a data directory under tmp_path; backoff is in
hundredths of a second, and ``engine.drain()`` waits until every delivery is done or failed.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from broker.server import Broker
from rules.actions.sns import _in_order
from rules.config import AwsSettings, RulesSettings
from rules.definition import missing_extras, parse_definition
from rules.engine import RulesEngine
from rules.errors import TargetError
from rules.local.queues import QueueStore
from rules.local.topics import TopicStore
from rules.store import StoredRule
from tests.moto_server import MotoServer
from tests.rules.engine_support import (
    ERROR_ACTION,
    ErrorOrigin,
    aws_settings,
    error_origin,
    error_payloads,
    fast_delivery,
    one_action,
    publish,
    refusal,
    rule,
    run_rules,
    until,
)
from tests.rules.targets.proxy import TcpProxy

LOCAL_ARN = "arn:aws:sns:us-east-1:123456789012:${topic(2)}"


def settings(endpoint: str | None = None, **delivery: Any) -> RulesSettings:
    """Local topics without an endpoint; SNS at ``endpoint`` (moto, or a proxy) with one."""
    if endpoint is None:
        return RulesSettings(delivery=fast_delivery(**delivery))
    return aws_settings(endpoint, **delivery)


def to_local_topics(sql: str) -> StoredRule:
    """Rule ``r``: ``sql``'s outputs to the local topic that ``topic(2)`` names, failures
    republished to ``errors/...``."""
    return rule("r", sql, [{"sns": {"targetArn": LOCAL_ARN}}], errorAction=ERROR_ACTION)


# -- local topics -------------------------------------------------------------------------------


@pytest.fixture
def local_topic(tmp_path: Path) -> Iterator[TopicStore]:
    """Topic ``alerts`` with queue ``pager`` (raw) and ``audit`` (envelope), made the way the
    CLI makes them: in the data directory's files, before the server starts."""
    with (
        QueueStore(tmp_path / "queues.sqlite") as queues,
        TopicStore(tmp_path / "topics.sqlite", queues) as topics,
    ):
        topics.create("alerts")
        topics.subscribe("alerts", "pager", raw=True)
        topics.subscribe("alerts", "audit")
        yield topics


async def test_local_mode_fans_each_output_out_to_the_subscribed_queues(
    broker: Broker, tmp_path: Path, local_topic: TopicStore
) -> None:
    action = {"sns": {"targetArn": LOCAL_ARN, "roleArn": "arn:aws:iam::1:role/r"}}
    definition = rule("fan", "SELECT n FROM 'sensors/+/t'", [action])
    messages = [("sensors/alerts/t", {"n": n}) for n in range(20)]
    rules, targets = await run_rules(settings(), broker, tmp_path, [definition], messages)
    assert (rules["fan"].delivered, rules["fan"].failed) == (20, 0)
    assert list(targets) == ["sns:arn:aws:sns:us-east-1:123456789012:alerts"]

    with QueueStore(tmp_path / "queues.sqlite") as queues:
        raw = queues.peek("pager", limit=100)
        wrapped = queues.peek("audit", limit=100)
    assert [json.loads(m.body) for m in raw] == [{"n": n} for n in range(20)]
    envelopes = [json.loads(m.body) for m in wrapped]
    assert [json.loads(e["Message"]) for e in envelopes] == [{"n": n} for n in range(20)]
    assert all(e["Type"] == "Notification" for e in envelopes)
    assert all(e["TopicArn"].startswith("arn:aws:sns:us-east-1:") for e in envelopes)
    assert all(e["TopicArn"].endswith(":alerts") for e in envelopes)
    # One message, one id: the delivery's stable id, in both queues and in the envelope.
    assert [m.message_id for m in raw] == [m.message_id for m in wrapped]
    assert [e["MessageId"] for e in envelopes] == [m.message_id for m in wrapped]
    assert len({m.message_id for m in raw}) == 20


async def test_local_mode_json_format_gives_queues_the_sqs_text(
    broker: Broker, tmp_path: Path, local_topic: TopicStore
) -> None:
    action = {"sns": {"targetArn": LOCAL_ARN, "messageFormat": "JSON"}}
    sql = "SELECT 'for everyone' AS default, concat('t=', t) AS sqs FROM 'sensors/+/t'"
    definition = rule("structured", sql, [action])
    await run_rules(settings(), broker, tmp_path, [definition], [("sensors/alerts/t", {"t": 21})])
    with QueueStore(tmp_path / "queues.sqlite") as queues:
        [raw] = queues.peek("pager")
        [wrapped] = queues.peek("audit")
    assert raw.body == b"t=21"
    assert json.loads(wrapped.body)["Message"] == "t=21"


async def test_an_unknown_local_topic_goes_to_the_error_action_with_aws_payload(
    broker: Broker, tmp_path: Path, local_topic: TopicStore
) -> None:
    errors = error_payloads(broker)
    definition = to_local_topics("SELECT n FROM 'sensors/+/t'")
    message = ("sensors/ghost/t", {"n": 1})
    rules, _ = await run_rules(
        settings(), broker, tmp_path, [definition], [message], client="dev-9"
    )
    [payload] = errors
    assert error_origin(payload) == ErrorOrigin("r", "sensors/ghost/t", "dev-9", {"n": 1})
    [failure] = payload["failures"]
    assert failure["failedAction"] == "SnsAction"
    assert failure["failedResource"] == "arn:aws:sns:us-east-1:123456789012:ghost"
    assert "no topic named ghost" in failure["errorMessage"]
    assert "thingcore topics create ghost" in failure["errorMessage"]
    # SNS's NotFound cannot pass by waiting: no retries.
    assert (rules["r"].retried, rules["r"].failed, rules["r"].error_actions) == (0, 1, 1)


async def test_a_binary_output_to_a_local_topic_fails_for_good_saying_how_to_send_it(
    broker: Broker, tmp_path: Path, local_topic: TopicStore
) -> None:
    errors = error_payloads(broker)
    definition = to_local_topics("SELECT * FROM 'sensors/+/t'")
    await run_rules(settings(), broker, tmp_path, [definition], [("sensors/alerts/t", b"\xff\x00")])
    [payload] = errors
    assert "must be UTF-8 text" in payload["failures"][0]["errorMessage"]
    assert "encode(*, 'base64')" in payload["failures"][0]["errorMessage"]


def test_after_a_retryable_failure_the_rest_of_the_batch_waits_behind_it() -> None:
    # Pure ordering logic of both targets: a message must not overtake one that will be retried.
    tried: list[str] = []

    def publish(delivery: Any) -> None:
        tried.append(delivery)
        if delivery == "bad":
            raise TargetError("no such topic")
        if delivery == "busy":
            raise TargetError("throttled", retryable=True)

    results = _in_order(["a", "bad", "b", "busy", "c", "d"], publish)  # type: ignore[list-item]
    assert tried == ["a", "bad", "b", "busy"]
    assert [None if r is None else (str(r), r.retryable) for r in results] == [
        None,
        ("no such topic", False),  # fails for good: the others go on
        None,
        ("throttled", True),
        ("not tried, an earlier one failed: throttled", True),
        ("not tried, an earlier one failed: throttled", True),
    ]


# -- parameters ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "actions[0] (sns): targetArn: Field required"),
        ({"targetArn": "alerts"}, "'alerts' is not an SNS topic ARN"),
        ({"targetArn": "arn:aws:sqs:us-east-1:1:q"}, "is not an SNS topic ARN"),
        (
            {"targetArn": "arn:aws:sns:us-east-1:1:t", "messageFormat": "XML"},
            "messageFormat: Input should be 'RAW' or 'JSON'",
        ),
        ({"targetArn": "arn:aws:sns:us-east-1:1:t", "topic": "x"}, "topic: Extra inputs"),
        ({"targetArn": "arn:aws:sns:us-east-1:1:${nope("}, "unterminated ${ in the template"),
    ],
)
def test_bad_parameters_are_refused_when_the_rule_is_made(
    params: dict[str, Any], message: str
) -> None:
    assert message in refusal("sns", params)


def test_boto3_is_needed_only_where_the_action_goes_to_aws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    definition = parse_definition("r", one_action("sns", {"targetArn": LOCAL_ARN}))
    monkeypatch.setitem(sys.modules, "boto3", None)  # as if it were not installed
    assert missing_extras(definition, settings()) == []
    [problem] = missing_extras(definition, settings("http://127.0.0.1:9"))
    assert "needs boto3" in problem
    assert "pip install 'thingcore[aws]'" in problem
    # An endpoint for SNS alone sends SNS to AWS; another service's endpoint does not.
    only_s3 = RulesSettings(aws=AwsSettings(s3_endpoint_url="http://127.0.0.1:9"))
    assert missing_extras(definition, only_s3) == []
    only_sns = RulesSettings(aws=AwsSettings(sns_endpoint_url="http://127.0.0.1:9"))
    assert len(missing_extras(definition, only_sns)) == 1


# -- SNS in moto's server ----------------------------------------------------------------------


class MotoFanOut:
    """An SNS topic in moto with an SQS queue subscribed to it (envelope or raw)."""

    def __init__(self, moto: MotoServer, name: str, *, raw: bool = False) -> None:
        self.sns = moto.client("sns")
        self.sqs = moto.client("sqs")
        self.arn: str = self.sns.create_topic(Name=name)["TopicArn"]
        self.queue_url: str = self.sqs.create_queue(QueueName=f"{name}-q")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        self.sns.subscribe(
            TopicArn=self.arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true" if raw else "false"},
        )

    def received(self, count: int) -> list[str]:
        """The next ``count`` bodies of the SQS queue (fails if fewer arrive)."""
        bodies: list[str] = []
        for _ in range(count + 5):
            answer = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            bodies.extend(m["Body"] for m in answer.get("Messages", []))
            if len(bodies) >= count:
                break
        assert len(bodies) == count, bodies
        leftover = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
        assert "Messages" not in leftover  # nothing twice
        return bodies


def published_requests(moto: MotoServer, arn: str) -> list[dict[str, list[str]]]:
    """The Publish requests moto received for ``arn``, as query parameters."""
    found = []
    for request in moto.recorded():
        body = base64.b64decode(request.get("body") or b"").decode("utf-8", "replace")
        params = parse_qs(body) if body else parse_qs(urlsplit(request.get("url", "")).query)
        if params.get("Action") == ["Publish"] and arn in params.get("TargetArn", []):
            found.append(params)
    return found


@pytest.mark.usefixtures("aws_credentials")
async def test_aws_mode_publishes_to_the_sns_topic_and_its_sqs_subscriber_gets_it(
    broker: Broker, tmp_path: Path, moto: MotoServer, name: str
) -> None:
    fan = MotoFanOut(moto, name)
    action = {"sns": {"targetArn": fan.arn}}
    definition = rule("r", "SELECT n FROM 'sensors/+/t'", [action])
    messages = [("sensors/a/t", {"n": n}) for n in range(12)]
    rules, _ = await run_rules(settings(moto.url), broker, tmp_path, [definition], messages)
    assert (rules["r"].delivered, rules["r"].failed) == (12, 0)
    envelopes = [json.loads(body) for body in fan.received(12)]
    assert [json.loads(e["Message"]) for e in envelopes] == [{"n": n} for n in range(12)]
    assert {e["TopicArn"] for e in envelopes} == {fan.arn}
    # The request AWS IoT's action makes: Publish with TargetArn, no message structure.
    requests = published_requests(moto, fan.arn)
    assert len(requests) == 12
    assert all("MessageStructure" not in r for r in requests)
    # Nothing went to a local topic.
    assert not (tmp_path / "topics.sqlite").exists()


@pytest.mark.usefixtures("aws_credentials")
async def test_aws_mode_json_format_sends_a_message_structure(
    broker: Broker, tmp_path: Path, moto: MotoServer, name: str
) -> None:
    fan = MotoFanOut(moto, name, raw=True)
    errors = error_payloads(broker)
    action = {"sns": {"targetArn": fan.arn, "messageFormat": "JSON"}}
    sql = "SELECT 'for everyone' AS default, concat('t=', t) AS sqs FROM 'sensors/+/t'"
    async with RulesEngine(settings(moto.url), broker.bus, data_dir=tmp_path) as engine:
        engine.install(
            [
                rule("structured", sql, [action]),
                rule(
                    "shapeless",
                    "SELECT t FROM 'other/+/t'",
                    [action],
                    errorAction=ERROR_ACTION,
                ),
            ]
        )
        publish(broker, "sensors/a/t", {"t": 21})
        publish(broker, "other/b/t", {"t": 22})
        await engine.drain()
        rules, _ = engine.delivery.take_metrics()
    assert fan.received(1) == ["t=21"]
    [request] = published_requests(moto, fan.arn)
    assert request["MessageStructure"] == ["json"]
    # An output that is not SNS's structure fails for good, before any request.
    [payload] = errors
    assert payload["failures"][0]["failedResource"] == fan.arn
    assert '"default"' in payload["failures"][0]["errorMessage"]
    assert (rules["shapeless"].retried, rules["shapeless"].failed) == (0, 1)


@pytest.mark.usefixtures("aws_credentials")
async def test_aws_mode_an_unknown_topic_is_not_found_and_not_retried(
    broker: Broker, tmp_path: Path, moto: MotoServer, name: str
) -> None:
    errors = error_payloads(broker)
    arn = f"arn:aws:sns:us-east-1:123456789012:{name}-missing"
    definition = rule(
        "r", "SELECT n FROM 'sensors/+/t'", [{"sns": {"targetArn": arn}}], errorAction=ERROR_ACTION
    )
    message = ("sensors/a/t", {"n": 1})
    rules, _ = await run_rules(settings(moto.url), broker, tmp_path, [definition], [message])
    [payload] = errors
    [failure] = payload["failures"]
    assert failure["failedAction"] == "SnsAction"
    assert failure["failedResource"] == arn
    assert failure["errorMessage"].startswith(f"sns {arn}: NotFound")
    assert (rules["r"].retried, rules["r"].failed) == (0, 1)


@pytest.mark.usefixtures("aws_credentials")
async def test_aws_mode_an_outage_loses_nothing_and_keeps_the_order(
    broker: Broker, tmp_path: Path, moto: MotoServer, moto_proxy: TcpProxy, name: str
) -> None:
    fan = MotoFanOut(moto, name)
    options = settings(f"http://{moto_proxy.url_host}", max_attempts=1000)
    action = {"sns": {"targetArn": fan.arn}}
    async with RulesEngine(options, broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("r", "SELECT n FROM 'sensors/+/t'", [action])])
        publish(broker, "sensors/a/t", {"n": 0})
        await engine.drain()  # a first message opens the client's connection

        moto_proxy.down()
        for n in range(1, 16):
            publish(broker, "sensors/a/t", {"n": n})
        lane = engine.delivery.lanes[f"sns:{fan.arn}"]
        # The lane signals nothing on a retry: its counter is polled, with a deadline.
        await until(lambda: lane.counters.retried >= 3, "deliveries retried while it is down")
        assert engine.delivery.owed() == 15  # all waiting, none given up
        moto_proxy.up()
        await engine.drain()
        rules, _ = engine.delivery.take_metrics()
    assert rules["r"].failed == 0
    assert rules["r"].delivered == 16
    assert rules["r"].retried >= 3
    envelopes = [json.loads(body) for body in fan.received(16)]
    assert [json.loads(e["Message"])["n"] for e in envelopes] == list(range(16))
