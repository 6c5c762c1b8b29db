"""Rule definitions in AWS's TopicRulePayload shape: what is accepted and what is refused."""

from __future__ import annotations

import re
from typing import Any

import pytest

from rules.actions.republish import RepublishAction
from rules.definition import MAX_ACTIONS, parse_definition
from rules.errors import RuleError
from rules.sql.errors import RuleSqlError

AWS_RULE: dict[str, Any] = {
    "sql": "SELECT temp, topic(2) AS device FROM 'sensors/+/telemetry' WHERE temp > 50",
    "description": "hot readings",
    "awsIotSqlVersion": "2016-03-23",
    "ruleDisabled": False,
    "actions": [
        {
            "republish": {
                "topic": "alerts/${topic(2)}",
                "qos": 1,
                "roleArn": "arn:aws:iam::123456789012:role/r",
            }
        }
    ],
}


def test_a_rule_copied_from_aws_is_accepted_as_written() -> None:
    definition = parse_definition("hot_readings", AWS_RULE)
    [action] = definition.actions
    assert isinstance(action.params, RepublishAction)
    assert (action.kind, action.params.topic, action.params.qos) == (
        "republish",
        "alerts/${topic(2)}",
        1,
    )
    assert definition.compiled.topic_filter == "sensors/+/telemetry"
    assert definition.to_dict() == AWS_RULE
    assert parse_definition("hot_readings", definition.to_json()).to_dict() == AWS_RULE


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("bad-name", AWS_RULE, "rule name 'bad-name' is invalid"),
        ("x" * 129, AWS_RULE, "is invalid"),
        ("r", "{not json", "not valid JSON"),
        ("r", {"actions": []}, "sql: Field required"),
        ("r", {**AWS_RULE, "colour": 1}, "colour: Extra inputs are not permitted"),
        ("r", {**AWS_RULE, "actions": [{}]}, "exactly one action kind"),
        (
            "r",
            {**AWS_RULE, "actions": [{"republish": {"topic": "a"}, "s3": {}}]},
            "exactly one action kind",
        ),
        (
            "r",
            {**AWS_RULE, "actions": [{"dynamoDB": {}}]},
            "'dynamoDB' is an AWS IoT action that thingcore does not implement",
        ),
        ("r", {**AWS_RULE, "actions": [{"kinesis": {}}]}, "thingcore does not implement"),
        ("r", {**AWS_RULE, "actions": [{"timestream": {}}]}, "thingcore does not implement"),
        ("r", {**AWS_RULE, "actions": [{"carrierPigeon": {}}]}, "no action kind 'carrierPigeon'"),
        ("r", {**AWS_RULE, "actions": [{"republish": {}}]}, "topic: Field required"),
        ("r", {**AWS_RULE, "actions": [{"republish": {"topic": "a", "qos": 2}}]}, "qos"),
        (
            "r",
            {**AWS_RULE, "actions": [{"republish": {"topic": "a"}}] * (MAX_ACTIONS + 1)},
            "at most 10 actions",
        ),
        ("r", {**AWS_RULE, "errorAction": {"s3": {"bucketName": "b"}}}, "errorAction"),
    ],
)
def test_refused_definitions_say_why(name: str, payload: Any, message: str) -> None:
    with pytest.raises(RuleError) as refused:
        parse_definition(name, payload)
    assert message in str(refused.value)


def test_an_unsupported_aws_action_lists_every_supported_kind() -> None:
    with pytest.raises(RuleError) as refused:
        parse_definition("r", {**AWS_RULE, "actions": [{"firehose": {"deliveryStreamName": "s"}}]})
    listed = str(refused.value).split("the supported actions are: ")[1].split(" (")[0]
    assert set(listed.split(", ")) == {
        *("republish", "s3", "sqs", "sns", "lambda", "http", "amqp"),
        *("bucket", "queue", "function"),
    }


def test_broken_sql_and_templates_point_at_the_error() -> None:
    with pytest.raises(RuleSqlError) as broken:
        parse_definition("r", {**AWS_RULE, "sql": "SELECT temp FROM 'a' WHERE"})
    assert broken.value.line == 1 and "^" in str(broken.value)
    with pytest.raises(RuleSqlError) as template:
        parse_definition(
            "r", {**AWS_RULE, "actions": [{"republish": {"topic": "a/${nosuchfn(1)}"}}]}
        )
    assert "nosuchfn" in str(template.value)
    with pytest.raises(RuleSqlError) as unsupported:
        parse_definition("r", {**AWS_RULE, "sql": "SELECT get_secret('a','b','c','d') FROM 'a'"})
    assert "thingcore does not have" in str(unsupported.value)


@pytest.mark.parametrize(
    ("action", "problem"),
    [
        ({"queue": {}}, "give exactly one of queueName and queueUrl"),
        ({"queue": {"queueName": "a", "queueUrl": "http://x/a"}}, "exactly one of queueName"),
        ({"queue": {"queueName": "a", "priority": 10}}, "priority"),
        ({"function": {}}, "give exactly one of functionName and functionArn"),
        ({"bucket": {"bucketName": "b"}}, "key"),
        ({"bucket": {"bucketName": "b", "key": "k", "cannedAcl": "open"}}, "cannedAcl"),
        ({"bucket": {"bucketName": "b", "key": "${nope(}"}}, "expected an expression after '('"),
    ],
)
def test_local_actions_refuse_bad_parameters_when_the_rule_is_made(
    action: dict[str, Any], problem: str
) -> None:
    with pytest.raises((RuleError, RuleSqlError), match=re.escape(problem)):
        parse_definition("r", {"sql": "SELECT * FROM 'a'", "actions": [action]})


def test_local_actions_take_aws_arns_and_urls() -> None:
    definition = parse_definition(
        "r",
        {
            "sql": "SELECT * FROM 'a'",
            "actions": [
                {"queue": {"queueUrl": "https://sqs.us-east-1.amazonaws.com/1/orders"}},
                {"function": {"functionArn": "arn:aws:lambda:us-east-1:1:function:f"}},
            ],
            "errorAction": {"bucket": {"bucketName": "errs", "key": "${topic()}/${newuuid()}"}},
        },
    )
    assert [a.kind for a in definition.actions] == ["queue", "function"]
    assert definition.error_action is not None and definition.error_action.kind == "bucket"
