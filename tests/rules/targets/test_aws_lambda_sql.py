"""``aws_lambda()`` in rule SQL: evaluated off the dispatch path, through a local function while
Lambda maps to local functions, through Lambda's synchronous invoke (moto's server) otherwise.

A call that fails is retried with the outbox's backoff; one that keeps failing sends AWS's error
payload to the rule's error action, so the message is not lost silently.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from broker.server import Broker
from rules.config import AwsSettings, LocalTargetSettings, RulesSettings
from rules.engine import RulesEngine
from tests.moto_server import MotoServer
from tests.rules.engine_support import (
    ErrorOrigin,
    create_function,
    error_origin,
    fast_delivery,
    function,
    publish,
    queue_bodies,
    rule,
    run_rules,
)

ARN = "arn:aws:lambda:us-east-1:123456789012:function:enrich"


def settings(**options: Any) -> RulesSettings:
    return RulesSettings(
        delivery=fast_delivery(),
        local=LocalTargetSettings(function_timeout=5.0, function_concurrency=4),
        **options,
    )


SQL = f"SELECT n, aws_lambda('{ARN}', {{\"n\": n, \"device\": topic(2)}}) AS enriched FROM 'd/+'"


async def test_a_local_function_answers_aws_lambda_and_outputs_keep_message_order(
    broker: Broker, tmp_path: Path
) -> None:
    # Later messages answer sooner: with several evaluated at once, order must still hold.
    function(
        tmp_path,
        "enrich",
        """
        import time

        def handler(event, context):
            time.sleep(0.05 * (5 - event["n"] % 5) / 5)
            return {"label": f"{event['device']}-{event['n']}", "arn": context.invoked_function_arn}
        """,
    )
    definition = rule("enrich", SQL, [{"queue": {"queueName": "out"}}])
    messages = [("d/kitchen", {"n": n}) for n in range(20)]
    await run_rules(settings(), broker, tmp_path, [definition], messages, within=20)
    bodies = queue_bodies(tmp_path, "out")
    assert [b["n"] for b in bodies] == list(range(20))
    assert bodies[3]["enriched"]["label"] == "kitchen-3"
    assert bodies[3]["enriched"]["arn"].endswith(":function:enrich")


async def test_slow_functions_are_evaluated_concurrently_off_the_dispatch_path(
    broker: Broker, tmp_path: Path
) -> None:
    function(
        tmp_path,
        "enrich",
        """
        import time

        def handler(event, context):
            time.sleep(0.3)
            return event["n"]
        """,
    )
    async with RulesEngine(
        settings(external_concurrency=4), broker.bus, data_dir=tmp_path
    ) as engine:
        engine.install([rule("enrich", SQL, [{"queue": {"queueName": "out"}}])])
        started = time.monotonic()
        for n in range(4):
            publish(broker, "d/a", {"n": n})
        dispatch = time.monotonic() - started
        await engine.drain(20)
        elapsed = time.monotonic() - started
    assert dispatch < 0.1  # publishing never waited for a function
    assert [b["enriched"] for b in queue_bodies(tmp_path, "out")] == [0, 1, 2, 3]
    # Four 0.3 s calls one after another would take 1.2 s; four at once about 0.3 s (plus the
    # workers' start): well under the serial time.
    assert elapsed < 1.0


async def test_a_failing_call_is_retried_then_its_payload_goes_to_the_error_action(
    broker: Broker, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.txt"
    function(
        tmp_path,
        "enrich",
        f"""
        from pathlib import Path

        def handler(event, context):
            with Path({str(calls)!r}).open("a") as f:
                f.write("x")
            raise ConnectionError("enrichment backend down")
        """,
    )
    error_action = {"queue": {"queueName": "errors"}}
    async with RulesEngine(settings(), broker.bus, data_dir=tmp_path) as engine:
        engine.install(
            [
                rule(
                    "enrich",
                    SQL,
                    [{"queue": {"queueName": "out"}}],
                    errorAction=error_action,
                )
            ]
        )
        publish(broker, "d/a", {"n": 1})
        await engine.drain(20)
        counters = engine.rules["enrich"].counters
    assert calls.read_text() == "xxx"  # max_attempts 3
    assert counters.failed == 1 and counters.passed == 0
    assert queue_bodies(tmp_path, "out") == []
    [error] = queue_bodies(tmp_path, "errors")
    assert error_origin(error) == ErrorOrigin("enrich", "d/a", "dev-1", {"n": 1})
    [failure] = error["failures"]
    assert failure["failedAction"] == "aws_lambda"
    assert failure["failedResource"] == ARN
    assert "enrichment backend down" in failure["errorMessage"]


async def test_a_missing_function_is_not_retried_and_dead_letters_without_an_error_action(
    broker: Broker, tmp_path: Path
) -> None:
    definition = rule("enrich", SQL, [{"queue": {"queueName": "out"}}])
    await run_rules(settings(), broker, tmp_path, [definition], [("d/a", {"n": 1})], within=20)
    [dead] = queue_bodies(tmp_path, "enrich-dlq")
    assert dead["failures"][0]["failedAction"] == "aws_lambda"
    assert "enrich" in dead["failures"][0]["errorMessage"]


@pytest.mark.usefixtures("aws_credentials")
async def test_aws_lambda_calls_lambda_synchronously_through_boto3(
    broker: Broker, tmp_path: Path, moto: MotoServer
) -> None:
    arn = create_function(moto, "enrich")
    moto.queue_lambda_result({"label": "from-lambda"})
    options = settings(aws=AwsSettings(endpoint_url=moto.url), aws_targets="aws")
    sql = f"SELECT n, aws_lambda('{arn}', {{\"n\": n}}) AS enriched FROM 'd/+'"
    definition = rule("enrich", sql, [{"queue": {"queueName": "out"}}])
    await run_rules(options, broker, tmp_path, [definition], [("d/a", {"n": 41})], within=20)
    assert queue_bodies(tmp_path, "out") == [{"n": 41, "enriched": {"label": "from-lambda"}}]
    [call] = [
        r
        for r in moto.recorded()
        if r["url"].endswith("/invocations") and "enrich" in urllib.parse.unquote(r["url"])
    ]
    assert json.loads(base64.b64decode(call["body"])) == {"n": 41}
    assert call["headers"]["X-Amz-Invocation-Type"] == "RequestResponse"


@pytest.mark.usefixtures("aws_credentials")
async def test_an_unreachable_lambda_endpoint_goes_to_the_error_action(
    broker: Broker, tmp_path: Path
) -> None:
    aws = AwsSettings(endpoint_url="http://127.0.0.1:9", connect_timeout=0.2, read_timeout=0.2)
    async with RulesEngine(
        settings(aws=aws, aws_targets="aws"), broker.bus, data_dir=tmp_path
    ) as engine:
        engine.install(
            [
                rule(
                    "enrich",
                    SQL,
                    [{"queue": {"queueName": "out"}}],
                    errorAction={"queue": {"queueName": "errors"}},
                )
            ]
        )
        publish(broker, "d/a", {"n": 1})
        await asyncio.wait_for(engine.drain(20), 30)
    [error] = queue_bodies(tmp_path, "errors")
    assert error["failures"][0]["failedResource"] == ARN
    assert "Could not connect" in error["failures"][0]["errorMessage"]
