"""The ``s3`` action through the engine: to moto's S3 server (``aws_targets`` "aws"), to the
local bucket of the same name (no endpoint configured), through an outage, and its parameters
refused at rule creation."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from broker.server import Broker
from rules.definition import missing_extras, parse_definition
from rules.engine import RulesEngine
from rules.errors import RuleError
from rules.local.buckets import BucketStore
from rules.sql.errors import RuleSqlError
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


@pytest.fixture
def bucket(name: str) -> str:
    """An S3 bucket name unique to the test (lower case, at most 63 characters)."""
    return name.lower()


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
    async with RulesEngine(aws_settings(moto.url), broker.bus, data_dir=tmp_path) as engine:
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
    async with RulesEngine(aws_settings(moto.url), broker.bus, data_dir=tmp_path) as engine:
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
    config = aws_settings(moto.url)
    rules, _ = await run_rules(config, broker, tmp_path, [definition], [("in/x", {"n": 1})])
    [payload] = queue_bodies(tmp_path, "errors")
    assert error_origin(payload) == ErrorOrigin("archive", "in/x", "dev-1", {"n": 1})
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
    local = aws_settings(None, aws_targets=None)
    assert local.aws_mode("s3") == "local"
    definition = rule("archive", "SELECT n FROM 'sensors/+/t'", [action])
    message = ("sensors/kitchen/t", {"n": 7})
    rules, targets = await run_rules(local, broker, tmp_path, [definition], [message])
    body, info = BucketStore(tmp_path / "buckets").get(bucket, "kitchen/7.json")
    assert json.loads(body) == {"n": 7}
    assert info.content_type == "application/json"
    assert info.metadata["canned-acl"] == "private"
    assert rules["archive"].delivered == 1
    assert targets[f"s3:{bucket}"][0].delivered == 1


async def test_s3_down_for_a_while_gets_every_object_in_order_when_back(
    moto: MotoServer, moto_proxy: TcpProxy, broker: Broker, tmp_path: Path, bucket: str
) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    actions = [
        {"s3": {"bucketName": bucket, "key": "each/${n}.json"}},
        {"s3": {"bucketName": bucket, "key": "latest.json"}},
    ]
    definition = rule("archive", "SELECT n FROM 'in'", actions)
    outage = await through_an_outage(
        broker, tmp_path, moto_proxy, definition, 30, lambda: moto_keys(s3, bucket)
    )
    assert outage.seen_while_down == []
    assert outage.owed_after == 0
    assert outage.total.retried > 0
    assert (outage.total.delivered, outage.total.failed) == (60, 0)
    assert moto_keys(s3, bucket) == sorted([f"each/{n}.json" for n in range(30)] + ["latest.json"])
    assert [v["n"] for v in versions(s3, bucket, "latest.json")] == list(range(30))


def moto_keys(s3: Any, bucket: str) -> list[str]:
    found = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(o["Key"] for o in found)


# -- rule creation -------------------------------------------------------------------------------


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
    message = refusal("s3", params, RuleError)
    assert "rule r: actions[0] (s3)" in message
    assert expected in message


def test_a_key_template_that_does_not_compile_is_refused() -> None:
    with pytest.raises(RuleSqlError):
        parse_definition("r", one_action("s3", {"bucketName": "readings", "key": "${topic(}"}))


def test_a_templated_bucket_name_is_checked_when_delivered_not_before() -> None:
    parsed = parse_definition("r", one_action("s3", {"bucketName": "b-${topic()}", "key": "k"}))
    assert parsed.actions[0].params.bucket_name == "b-${topic()}"


def test_boto3_is_needed_only_where_the_action_goes_to_aws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed = parse_definition("r", one_action("s3", {"bucketName": "readings", "key": "k"}))
    monkeypatch.setitem(sys.modules, "boto3", None)  # as if it were not installed
    assert missing_extras(parsed, aws_settings(None, aws_targets=None)) == []
    [problem] = missing_extras(parsed, aws_settings("http://127.0.0.1:9", aws_targets=None))
    assert "boto3" in problem and "pip install 'thingcore[aws]'" in problem
