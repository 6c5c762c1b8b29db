"""The ``lambda`` action through the engine: asynchronous invocations of moto's Lambda
(``aws_targets`` "aws"; moto runs without Docker and records every request), the local
function of the same name (no endpoint configured), an outage, and its parameters refused at
rule creation."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from broker.server import Broker
from rules.actions.lambda_ import function_name
from rules.definition import missing_extras, parse_definition
from rules.engine import RulesEngine
from rules.errors import RuleError
from tests.moto_server import MotoServer
from tests.rules.engine_support import (
    aws_settings,
    create_function,
    function,
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


def invocations(moto: MotoServer, function: str) -> list[dict[str, Any]]:
    """The invoke requests moto received for ``function`` (a name or an ARN), in order."""
    found = []
    for request in moto.recorded():
        path = unquote(urlsplit(request["url"]).path)
        if request["method"] == "POST" and path == f"/2015-03-31/functions/{function}/invocations":
            found.append(request)
    return found


def event(request: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(request["body"]))


async def test_each_output_is_an_asynchronous_invocation_with_it_as_the_event(
    moto: MotoServer, broker: Broker, tmp_path: Path, name: str
) -> None:
    arns = {room: create_function(moto, f"{name}-{room}") for room in "ab"}
    template = arns["a"].removesuffix("-a") + "-${topic(2)}"  # the function picked per message
    action = {"lambda": {"functionArn": template}}
    async with RulesEngine(aws_settings(moto.url), broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("fn", "SELECT n, topic() AS t FROM 'in/+'", [action])])
        for n in range(20):  # more than the 8 invocations at once of one target
            publish(broker, f"in/{'ab'[n % 2]}", {"n": n})
        await engine.drain()
        rules, targets = engine.delivery.take_metrics()
    assert (rules["fn"].delivered, rules["fn"].retried) == (20, 0)
    assert targets[f"lambda:{arns['b']}"][0].delivered == 10
    for index, room in enumerate("ab"):
        requests = invocations(moto, arns[room])
        assert sorted(event(r)["n"] for r in requests) == list(range(index, 20, 2))
        assert {event(r)["t"] for r in requests} == {f"in/{room}"}
        assert {r["headers"]["X-Amz-Invocation-Type"] for r in requests} == {"Event"}


async def test_a_binary_output_goes_to_the_error_action_with_the_advice_aws_gives(
    moto: MotoServer, broker: Broker, tmp_path: Path, name: str
) -> None:
    arn = create_function(moto, name)
    definition = rule(
        "fn",
        "SELECT * FROM 'raw'",
        [{"lambda": {"functionArn": arn}}],
        errorAction={"queue": {"queueName": "errors"}},
    )
    async with RulesEngine(aws_settings(moto.url), broker.bus, data_dir=tmp_path) as engine:
        engine.install([definition])
        publish(broker, "raw", b"\x00\xff binary")
        await engine.drain()
        publish(broker, "raw", {"json": True})  # SELECT * of a JSON payload is JSON
        await engine.drain()
        rules, _ = engine.delivery.take_metrics()
    [payload] = queue_bodies(tmp_path, "errors")
    [failure] = payload["failures"]
    assert failure["failedAction"] == "LambdaAction"
    assert failure["failedResource"] == arn
    assert "SELECT encode(*, 'base64') AS data" in failure["errorMessage"]
    assert (rules["fn"].retried, rules["fn"].failed, rules["fn"].error_actions) == (0, 1, 1)
    assert [event(r) for r in invocations(moto, arn)] == [{"json": True}]


async def test_without_an_endpoint_it_runs_the_local_function_of_that_name(
    broker: Broker, tmp_path: Path
) -> None:
    # A rule copied from AWS (a qualified ARN even), no endpoint, aws_targets unset: it works
    # offline with functions/enrich.py.
    seen = tmp_path / "seen.jsonl"
    function(
        tmp_path,
        "enrich",
        f"""
        import json

        def handler(event, context):
            with open({str(seen)!r}, "a") as f:
                f.write(json.dumps(event) + "\\n")
        """,
    )
    arn = "arn:aws:lambda:us-east-1:123456789012:function:enrich:prod"
    local = aws_settings(None, aws_targets=None)
    assert local.aws_mode("lambda") == "local"
    definition = rule("fn", "SELECT n FROM 'in'", [{"lambda": {"functionArn": arn}}])
    messages = [("in", {"n": n}) for n in range(3)]
    _, targets = await run_rules(local, broker, tmp_path, [definition], messages)
    events = [json.loads(line) for line in seen.read_text().splitlines()]
    assert sorted(e["n"] for e in events) == [0, 1, 2]
    assert targets[f"lambda:{arn}"][0].delivered == 3


async def test_lambda_down_for_a_while_gets_every_invocation_when_back(
    moto: MotoServer, moto_proxy: TcpProxy, broker: Broker, tmp_path: Path, name: str
) -> None:
    arn = create_function(moto, name)
    definition = rule("fn", "SELECT n FROM 'in'", [{"lambda": {"functionArn": arn}}])
    outage = await through_an_outage(
        broker, tmp_path, moto_proxy, definition, 20, lambda: invocations(moto, arn)
    )
    assert outage.seen_while_down == []
    assert outage.owed_after == 0
    assert outage.total.retried > 0
    assert (outage.total.delivered, outage.total.failed) == (20, 0)
    # Concurrent asynchronous invocations: every one exactly once, in no set order.
    assert sorted(event(r)["n"] for r in invocations(moto, arn)) == list(range(20))


# -- rule creation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, "functionArn: Field required"),
        ({"functionArn": ""}, "functionArn: String should have at least 1 character"),
        (
            {"functionArn": "arn:aws:sqs:us-east-1:123456789012:orders"},
            "is not a Lambda function ARN such as arn:aws:lambda:",
        ),
        ({"functionArn": "f", "functionName": "f"}, "functionName: Extra inputs"),
    ],
)
def test_bad_parameters_are_refused_when_the_rule_is_made(
    params: dict[str, Any], expected: str
) -> None:
    message = refusal("lambda", params, RuleError)
    assert "rule r: actions[0] (lambda)" in message
    assert expected in message


@pytest.mark.parametrize(
    ("arn", "name"),
    [
        ("arn:aws:lambda:us-east-1:123456789012:function:enrich", "enrich"),
        ("arn:aws:lambda:us-east-1:123456789012:function:enrich:prod", "enrich"),
        ("arn:aws:lambda:us-east-1:123456789012:function:function", "function"),
        ("123456789012:function:enrich", "enrich"),
        ("enrich", "enrich"),
    ],
)
def test_the_local_function_is_the_one_the_arn_names(arn: str, name: str) -> None:
    assert function_name(arn) == name


def test_boto3_is_needed_only_where_the_action_goes_to_aws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed = parse_definition("r", one_action("lambda", {"functionArn": "f"}))
    monkeypatch.setitem(sys.modules, "boto3", None)  # as if it were not installed
    assert missing_extras(parsed, aws_settings(None, aws_targets=None)) == []
    [problem] = missing_extras(parsed, aws_settings(None, aws_targets="aws"))
    assert "lambda action" in problem and "pip install 'thingcore[aws]'" in problem
