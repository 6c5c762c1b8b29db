"""A rule copied from AWS, run by a real ``thingcore serve``: offline, its ``s3``, ``sqs``,
``sns`` and ``lambda`` actions land in the local bucket, queue, topic subscribers and function
of the same names; with an AWS endpoint configured (moto's server), the same rule file reaches
S3, SQS, SNS and Lambda through boto3. Devices publish with ``mosquitto_pub``; everything is
read back through the CLI or boto3.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.moto_server import ACCOUNT, CREDENTIALS, REGION, MotoServer
from tests.thingcore.test_cli import ServeProcess, run_cli

QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/hot-readings"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:alerts"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:notify"

# As `aws iot get-topic-rule` prints it (ruleName + topicRulePayload), with AWS's roleArns.
AWS_RULE = {
    "ruleName": "hot_to_aws",
    "topicRulePayload": {
        "sql": "SELECT temp, topic(2) AS device FROM 'sensors/+/telemetry' WHERE temp > 50",
        "awsIotSqlVersion": "2016-03-23",
        "ruleDisabled": False,
        "actions": [
            {
                "s3": {
                    "bucketName": "readings",
                    "key": "${topic(2)}/${temp}.json",
                    "roleArn": f"arn:aws:iam::{ACCOUNT}:role/iot-s3",
                }
            },
            {"sqs": {"queueUrl": QUEUE_URL, "useBase64": False, "roleArn": "r"}},
            {"sns": {"targetArn": TOPIC_ARN, "messageFormat": "RAW", "roleArn": "r"}},
            {"lambda": {"functionArn": FUNCTION_ARN}},
        ],
    },
}


def mosquitto_pub(port: int, topic: str, payload: dict[str, Any]) -> None:
    if shutil.which("mosquitto_pub") is None:
        pytest.fail("mosquitto_pub is missing: apt-get install mosquitto-clients")
    subprocess.run(  # noqa: S603 - the Mosquitto client against our own server
        ["mosquitto_pub", "-p", str(port), "-q", "1", "-t", topic, "-m", json.dumps(payload)],
        check=True,
        timeout=30,
    )


def until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def cli(workdir: Path, *args: str, **env: str) -> Any:
    done = run_cli(*args, "--json", cwd=workdir, env=env or None)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


@pytest.fixture
def rule_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "hot_to_aws.json").write_text(json.dumps(AWS_RULE, indent=2))
    return folder


def test_a_rule_copied_from_aws_works_offline(tmp_path: Path, rule_folder: Path) -> None:
    workdir, data = tmp_path, tmp_path / "var"
    (data / "functions").mkdir(parents=True)
    (data / "functions" / "notify.py").write_text(
        "def handler(event, context):\n"
        "    print(f\"notify {event['device']} {event['temp']} {context.invoked_function_arn}\")\n"
    )
    data_dir = ("--data-dir", str(data))
    cli(workdir, "topics", "create", "alerts", *data_dir)
    cli(workdir, "topics", "subscribe", "alerts", "pager", "--raw", *data_dir)
    applied = cli(workdir, "rules", "apply", str(rule_folder), *data_dir)
    assert applied["created"] == ["hot_to_aws"]
    with ServeProcess(data, workdir, THINGCORE_RULES__METRICS_FLUSH_INTERVAL="0.2") as server:
        mosquitto_pub(server.port, "sensors/kitchen/telemetry", {"temp": 61})
        mosquitto_pub(server.port, "sensors/kitchen/telemetry", {"temp": 20})  # WHERE: no

        def queued(queue: str) -> list[Any]:
            return [json.loads(m["body"]) for m in cli(workdir, "queues", "peek", queue, *data_dir)]

        expected = {"temp": 61, "device": "kitchen"}
        assert until("the sqs action's local queue", lambda: queued("hot-readings")) == [expected]
        assert until("the sns topic's subscriber", lambda: queued("pager")) == [expected]
        objects = until(
            "the s3 object",
            lambda: cli(workdir, "buckets", "ls", "readings", *data_dir)["Contents"],
        )
        assert [o["Key"] for o in objects] == ["kitchen/61.json"]
        log = data / "functions" / "logs" / "notify.log"
        until("the function's log", lambda: log.exists() and "notify kitchen 61" in log.read_text())
        assert ":function:notify" in log.read_text()

        def delivered() -> set[str]:
            return {t["target"] for t in cli(workdir, "targets", *data_dir) if t["delivered"]}

        wanted = {"s3:readings", f"sqs:{QUEUE_URL}", f"sns:{TOPIC_ARN}", f"lambda:{FUNCTION_ARN}"}
        until("the targets' counters", lambda: delivered() >= wanted)


def test_the_same_rule_reaches_aws_once_an_endpoint_is_configured(
    tmp_path: Path, rule_folder: Path, moto: MotoServer
) -> None:
    s3, sqs, sns = moto.client("s3"), moto.client("sqs"), moto.client("sns")
    s3.create_bucket(Bucket="readings")
    queue_url = sqs.create_queue(QueueName="hot-readings")["QueueUrl"]
    topic_arn = sns.create_topic(Name="alerts")["TopicArn"]
    inbox = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=inbox_arn["Attributes"]["QueueArn"],
        Attributes={"RawMessageDelivery": "true"},
    )
    workdir, data = tmp_path, tmp_path / "var"
    env = {**CREDENTIALS, "THINGCORE_RULES__AWS__ENDPOINT_URL": moto.url}
    cli(workdir, "rules", "apply", str(rule_folder), "--data-dir", str(data), **env)
    with ServeProcess(data, workdir, **env) as server:
        mosquitto_pub(server.port, "sensors/kitchen/telemetry", {"temp": 61})

        def received(url: str) -> list[Any]:
            answer = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
            return [json.loads(m["Body"]) for m in answer.get("Messages", [])]

        expected = {"temp": 61, "device": "kitchen"}
        assert until("the SQS message", lambda: received(queue_url)) == [expected]
        assert until("the SNS subscriber's message", lambda: received(inbox)) == [expected]
        body = until(
            "the S3 object",
            lambda: (
                s3.list_objects_v2(Bucket="readings").get("KeyCount")
                and s3.get_object(Bucket="readings", Key="kitchen/61.json")["Body"].read()
            ),
        )
        assert json.loads(body) == expected

        def invoked() -> list[Any]:
            return [
                r
                for r in moto.recorded()
                if r["url"].endswith("/invocations")
                and FUNCTION_ARN in urllib.parse.unquote(r["url"])
            ]

        [call] = until("the Lambda invocation", invoked)
        assert call["headers"]["X-Amz-Invocation-Type"] == "Event"
        assert json.loads(base64.b64decode(call["body"])) == expected
