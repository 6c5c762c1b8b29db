"""The ``s3`` action through the engine: to moto's S3 server (``aws_targets`` "aws"), to the
local bucket of the same name (no endpoint configured), through an outage, and its parameters
refused at rule creation."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.message import Message
from broker.server import Broker
from rules.config import AwsSettings, DeliverySettings, RulesSettings
from rules.definition import missing_extras, parse_definition
from rules.delivery import DeliveryCounters
from rules.engine import RulesEngine
from rules.errors import RuleError
from rules.local.buckets import BucketStore
from rules.local.queues import QueueStore
from rules.sql.errors import RuleSqlError
from rules.store import StoredRule
from tests.harness import make_settings
from tests.rules.targets.moto import MotoServer
from tests.rules.targets.proxy import TcpProxy

pytestmark = pytest.mark.usefixtures("aws_credentials")


def rule(name: str, sql: str, actions: list[dict[str, Any]], **extra: Any) -> StoredRule:
    payload = {"sql": sql, "awsIotSqlVersion": "2016-03-23", "actions": actions, **extra}
    return StoredRule(name, payload, False, 0.0, 0.0)


def settings(endpoint: str | None, *, aws_targets: Any = "aws", **delivery: Any) -> RulesSettings:
    options: dict[str, Any] = {
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
        "backoff_jitter": 0.5,
        "max_attempts": 3,
        **delivery,
    }
    return RulesSettings(
        aws=AwsSettings(endpoint_url=endpoint, connect_timeout=0.5, read_timeout=5.0),
        aws_targets=aws_targets,
        delivery=DeliverySettings(**options),
    )


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    yield Broker(make_settings(), data_dir=None)


@pytest.fixture
def bucket(name: str) -> str:
    """An S3 bucket name unique to the test (lower case, at most 63 characters)."""
    return name.lower()


def publish(broker: Broker, topic: str, payload: bytes | dict[str, Any]) -> None:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    broker.publish(Message(topic, data, 1, False, client_id="dev-1", received_at=0))


def queue_bodies(data_dir: Path, queue: str) -> list[Any]:
    with QueueStore(data_dir / "queues.sqlite") as store:
        return [json.loads(m.body) for m in store.peek(queue, limit=1000)]


def versions(s3: Any, bucket: str, key: str) -> list[Any]:
    """Every body written to ``key``, oldest first (the bucket has versioning on)."""
    listed = s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    # S3 lists a key's versions newest first.
    ids = [v["VersionId"] for v in reversed(listed) if v["Key"] == key]
    return [
        json.loads(s3.get_object(Bucket=bucket, Key=key, VersionId=v)["Body"].read()) for v in ids
    ]


async def test_objects_arrive_under_their_expanded_keys(
    moto: MotoServer, broker: Broker, tmp_path: Path, bucket: str
) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=bucket)
    action = {
        "s3": {
            "bucketName": bucket,
            "key": "${topic(2)}/${n}.json",
            "cannedAcl": "public-read",
            "roleArn": "arn:aws:iam::123456789012:role/iot",
        }
    }
    raw = {"s3": {"bucketName": bucket, "key": "raw/${topic(2)}.bin"}}
    async with RulesEngine(settings(moto.url), broker.bus, data_dir=tmp_path) as engine:
        engine.install(
            [
                rule("archive", "SELECT n, topic(2) AS room FROM 'sensors/+/t'", [action]),
                rule("blobs", "SELECT * FROM 'blobs/+'", [raw]),
            ]
        )
        for n in range(20):
            publish(broker, f"sensors/room{n % 3}/t", {"n": n})
        publish(broker, "blobs/cam", b"\x89PNG\x00\xff")
        await engine.drain()
        rules, _ = engine.delivery.take_metrics()
    assert rules["archive"].delivered == 20 and rules["archive"].retried == 0
    for n in range(20):
        found = s3.get_object(Bucket=bucket, Key=f"room{n % 3}/{n}.json")
        assert json.loads(found["Body"].read()) == {"n": n, "room": f"room{n % 3}"}
        assert found["ContentType"] == "application/json"
    grants = s3.get_object_acl(Bucket=bucket, Key="room0/0.json")["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") for g in grants)
    blob = s3.get_object(Bucket=bucket, Key="raw/cam.bin")
    assert blob["Body"].read() == b"\x89PNG\x00\xff"
    assert blob["ContentType"] == "application/octet-stream"


async def test_writes_to_one_key_keep_their_order(
    moto: MotoServer, broker: Broker, tmp_path: Path, bucket: str
) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    action = {"s3": {"bucketName": bucket, "key": "latest.json"}}
    async with RulesEngine(settings(moto.url), broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("latest", "SELECT n FROM 'in'", [action])])
        for n in range(40):  # several batches of 16, each put at once where keys differ
            publish(broker, "in", {"n": n})
        await engine.drain()
    assert json.loads(s3.get_object(Bucket=bucket, Key="latest.json")["Body"].read()) == {"n": 39}
    assert [v["n"] for v in versions(s3, bucket, "latest.json")] == list(range(40))


async def test_a_missing_bucket_goes_to_the_error_action_without_retries(
    moto: MotoServer, broker: Broker, tmp_path: Path, bucket: str
) -> None:
    action = {"s3": {"bucketName": bucket, "key": "${n}.json"}}
    definition = rule(
        "archive",
        "SELECT n FROM 'in/+'",
        [action],
        errorAction={"queue": {"queueName": "errors"}},
    )
    async with RulesEngine(settings(moto.url), broker.bus, data_dir=tmp_path) as engine:
        engine.install([definition])
        publish(broker, "in/x", {"n": 1})
        await engine.drain()
        rules, _ = engine.delivery.take_metrics()
    [payload] = queue_bodies(tmp_path, "errors")
    assert payload["ruleName"] == "archive"
    assert payload["topic"] == "in/x"
    assert json.loads(base64.b64decode(payload["base64OriginalPayload"])) == {"n": 1}
    [failure] = payload["failures"]
    assert failure["failedAction"] == "S3Action"
    assert failure["failedResource"] == bucket
    assert "NoSuchBucket" in failure["errorMessage"]
    assert f"s3://{bucket}/1.json" in failure["errorMessage"]
    counters = rules["archive"]
    assert (counters.retried, counters.failed, counters.error_actions) == (0, 1, 1)


async def test_without_an_endpoint_it_writes_to_the_local_bucket_of_that_name(
    broker: Broker, tmp_path: Path, bucket: str
) -> None:
    # A rule copied from AWS, no endpoint and aws_targets unset: it works offline.
    action = {"s3": {"bucketName": bucket, "key": "${topic(2)}/${n}.json", "cannedAcl": "private"}}
    local = settings(None, aws_targets=None)
    assert local.aws_mode("s3") == "local"
    async with RulesEngine(local, broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("archive", "SELECT n FROM 'sensors/+/t'", [action])])
        publish(broker, "sensors/kitchen/t", {"n": 7})
        await engine.drain()
        rules, targets = engine.delivery.take_metrics()
    body, info = BucketStore(tmp_path / "buckets").get(bucket, "kitchen/7.json")
    assert json.loads(body) == {"n": 7}
    assert info.content_type == "application/json"
    assert info.metadata["canned-acl"] == "private"
    assert rules["archive"].delivered == 1
    assert targets[f"s3:{bucket}"][0].delivered == 1


async def retried_while(engine: RulesEngine, total: DeliveryCounters, within: float = 10) -> None:
    """Wait (bounded) until the engine has retried at least once; counts go into ``total``."""
    deadline = asyncio.get_running_loop().time() + within
    while total.retried == 0:
        add(total, engine)
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("no delivery was retried while the target was down")
        await asyncio.sleep(0.01)


def add(total: DeliveryCounters, engine: RulesEngine) -> None:
    rules, _ = engine.delivery.take_metrics()
    for counters in rules.values():
        total.delivered += counters.delivered
        total.retried += counters.retried
        total.failed += counters.failed


@pytest.fixture
def proxy(moto: MotoServer) -> Iterator[TcpProxy]:
    proxy = TcpProxy("127.0.0.1", moto.port)
    try:
        yield proxy
    finally:
        proxy.close()


async def test_s3_down_for_a_while_gets_every_object_in_order_when_back(
    moto: MotoServer, proxy: TcpProxy, broker: Broker, tmp_path: Path, bucket: str
) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    actions = [
        {"s3": {"bucketName": bucket, "key": "each/${n}.json"}},
        {"s3": {"bucketName": bucket, "key": "latest.json"}},
    ]
    config = settings(f"http://{proxy.url_host}", max_attempts=100_000)
    total = DeliveryCounters()
    async with RulesEngine(config, broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("archive", "SELECT n FROM 'in'", actions)])
        proxy.down()
        for n in range(30):
            publish(broker, "in", {"n": n})
        await retried_while(engine, total)
        assert moto_keys(s3, bucket) == []
        proxy.up()
        await engine.drain(within=30)
        add(total, engine)
        assert engine.delivery.outbox.count() == 0
    assert total.retried > 0
    assert (total.delivered, total.failed) == (60, 0)
    assert moto_keys(s3, bucket) == sorted([f"each/{n}.json" for n in range(30)] + ["latest.json"])
    assert [v["n"] for v in versions(s3, bucket, "latest.json")] == list(range(30))


def moto_keys(s3: Any, bucket: str) -> list[str]:
    found = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(o["Key"] for o in found)


# -- rule creation -------------------------------------------------------------------------------


def definition(params: dict[str, Any]) -> dict[str, Any]:
    return {"sql": "SELECT * FROM 'in'", "actions": [{"s3": params}]}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"bucketName": "readings"}, "key: Field required"),
        ({"key": "k"}, "bucketName: Field required"),
        ({"bucketName": "Bad_Bucket", "key": "k"}, "invalid bucket name 'Bad_Bucket'"),
        ({"bucketName": "readings", "key": ""}, "key: String should have at least 1 character"),
        ({"bucketName": "readings", "key": "k", "cannedAcl": "everyone"}, "cannedAcl"),
        ({"bucketName": "readings", "key": "k", "metadata": {}}, "metadata: Extra inputs"),
    ],
)
def test_bad_parameters_are_refused_when_the_rule_is_made(
    params: dict[str, Any], expected: str
) -> None:
    with pytest.raises(RuleError) as caught:
        parse_definition("r", definition(params))
    assert "rule r: actions[0] (s3)" in str(caught.value)
    assert expected in str(caught.value)


def test_a_key_template_that_does_not_compile_is_refused() -> None:
    with pytest.raises(RuleSqlError):
        parse_definition("r", definition({"bucketName": "readings", "key": "${topic(}"}))


def test_a_templated_bucket_name_is_checked_when_delivered_not_before() -> None:
    parsed = parse_definition("r", definition({"bucketName": "b-${topic()}", "key": "k"}))
    assert parsed.actions[0].params.bucket_name == "b-${topic()}"


def test_boto3_is_needed_only_where_the_action_goes_to_aws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed = parse_definition("r", definition({"bucketName": "readings", "key": "k"}))
    monkeypatch.setitem(sys.modules, "boto3", None)  # as if it were not installed
    assert missing_extras(parsed, settings(None, aws_targets=None)) == []
    [problem] = missing_extras(parsed, settings("http://127.0.0.1:9", aws_targets=None))
    assert "boto3" in problem and "pip install 'thingcore[aws]'" in problem
