"""Parsing and validating policy documents (registry/policies/document.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.policies import POLICY_VERSION, PolicyError, parse_policy


def doc(*statements: Any, **top: Any) -> str:
    return json.dumps({"Version": POLICY_VERSION, "Statement": list(statements), **top})


def stmt(**fields: Any) -> dict[str, Any]:
    """An Allow-everything statement with ``fields`` replaced (None removes a field)."""
    base: dict[str, Any] = {"Effect": "Allow", "Action": "iot:*", "Resource": "*"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def cond(condition: Any) -> str:
    return doc(stmt(Condition=condition))


def test_single_statement_object() -> None:
    text = json.dumps(
        {
            "Version": "2012-10-17",
            "Id": "example",
            "Statement": {"Sid": "One", "Effect": "Deny", "NotAction": "iot:Connect",
                          "NotResource": ["arn:aws:iot:*:*:client/admin"]},
        }
    )  # fmt: skip
    policy = parse_policy(text, "p")
    assert policy.name == "p"
    assert policy.version == "2012-10-17"
    (statement,) = policy.statements
    assert statement.index == 0
    assert statement.sid == "One"
    assert statement.effect == "Deny"
    assert statement.actions == ()
    assert statement.not_actions == ("iot:Connect",)
    assert statement.resources == ()
    assert statement.not_resources == ("arn:aws:iot:*:*:client/admin",)
    assert statement.conditions == ()
    assert statement.label == "Statement[0] (Sid 'One')"


def test_statement_list_and_condition_values() -> None:
    text = doc(
        stmt(Action=["iot:Publish", "IOT:receive"]),
        stmt(
            Condition={
                "Bool": {"iot:Connection.Thing.IsAttached": True},
                "NumericLessThan": {"iot:Connection.Thing.Attributes[n]": [10, 2.5]},
                "ForAnyValue:StringLike": {"iot:ClientId": ["a*", "b*"]},
            }
        ),
    )
    first, second = parse_policy(text).statements
    assert first.index == 0
    assert first.actions == ("iot:Publish", "IOT:receive")
    assert second.index == 1
    assert [(c.operator, c.key, c.values) for c in second.conditions] == [
        ("Bool", "iot:Connection.Thing.IsAttached", ("true",)),
        ("NumericLessThan", "iot:Connection.Thing.Attributes[n]", ("10", "2.5")),
        ("ForAnyValue:StringLike", "iot:ClientId", ("a*", "b*")),
    ]


def test_size_limit_ignores_whitespace() -> None:
    compact = doc(stmt())
    size = len(compact.replace(" ", ""))
    assert parse_policy(compact, max_chars=size).statements
    assert parse_policy(compact.replace(" ", "\n    "), max_chars=size).statements
    with pytest.raises(PolicyError) as caught:
        parse_policy(compact, "big", max_chars=size - 1)
    assert str(caught.value) == (
        f"policy 'big': document has {size} characters not counting whitespace; "
        f"the limit is {size - 1}"
    )


def test_error_without_a_name() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy("[]")
    assert str(caught.value) == "policy document: the document must be a JSON object, got a list []"
    assert caught.value.policy == ""
    assert caught.value.detail == "the document must be a JSON object, got a list []"


ALLOWED_TOP = "allowed: Version, Statement, Id"
ALLOWED_STATEMENT = "allowed: Sid, Effect, Action, NotAction, Resource, NotResource, Condition"
BAD_RESOURCE = "must be '*' or an ARN like 'arn:aws:iot:us-east-1:123456789012:topic/sensors/*'"
BAD_ACTION = (
    "is not an AWS IoT action; write 'iot:<Action>' such as 'iot:Publish', a pattern such as "
    "'iot:Get*', 'iot:*' or '*'"
)

# fmt: off
MALFORMED = [
    # The document
    pytest.param("{", "not valid JSON: Expecting property name enclosed in double quotes at line 1 "
                 "column 2", id="not-json"),
    pytest.param('"text"', "the document must be a JSON object, got 'text'", id="not-an-object"),
    pytest.param(doc(stmt(), Statements=[]), f"the document has unknown key 'Statements'; "
                 f"{ALLOWED_TOP}", id="unknown-top-key"),
    pytest.param(json.dumps({"version": POLICY_VERSION, "Statement": []}),
                 "the document has key 'version'; keys are case-sensitive: use 'Version'",
                 id="top-key-case"),
    pytest.param(json.dumps({"Statement": [stmt()]}),
                 'Version is missing; add "Version": "2012-10-17"', id="no-version"),
    pytest.param(json.dumps({"Version": "2008-10-17", "Statement": [stmt()]}),
                 "Version must be \"2012-10-17\" (AWS IoT supports no other), got '2008-10-17'",
                 id="old-version"),
    pytest.param(json.dumps({"Version": 2012, "Statement": [stmt()]}),
                 'Version must be "2012-10-17" (AWS IoT supports no other), got a number 2012',
                 id="version-number"),
    pytest.param(doc(stmt(), Id=5), "Id must be a string, got a number 5", id="id-not-string"),
    pytest.param(json.dumps({"Version": POLICY_VERSION}),
                 "Statement is missing; it must be an object or a list of objects",
                 id="no-statement"),
    pytest.param(json.dumps({"Version": POLICY_VERSION, "Statement": "Allow"}),
                 "Statement must be an object or a list of objects, got 'Allow'",
                 id="statement-string"),
    pytest.param(doc(), "Statement must not be empty", id="statement-empty"),
    pytest.param(doc(stmt(), ["x"]), 'Statement[1] must be an object, got a list ["x"]',
                 id="statement-not-object"),
    pytest.param('{"Version": "2012-10-17", "Version": "2012-10-17", "Statement": []}',
                 "key 'Version' appears twice in one JSON object", id="duplicate-key"),
    # Statement keys
    pytest.param(doc(stmt(Conditions={})), f"Statement[0] has unknown key 'Conditions'; "
                 f"{ALLOWED_STATEMENT}", id="unknown-statement-key"),
    pytest.param(doc(stmt(Effect=None, effect="Allow")),
                 "Statement[0] has key 'effect'; keys are case-sensitive: use 'Effect'",
                 id="statement-key-case"),
    pytest.param(doc(stmt(Principal={"AWS": "*"})), "Statement[0] has Principal, which AWS IoT "
                 "policies do not take: the principal is whatever certificate the policy is "
                 "attached to", id="principal"),
    pytest.param(doc(stmt(Sid=1)), "Statement[0].Sid must be a string, got a number 1",
                 id="sid-not-string"),
    # Effect
    pytest.param(doc(stmt(Effect=None)), "Statement[0].Effect is missing; it must be Allow or Deny",
                 id="no-effect"),
    pytest.param(doc(stmt(Effect="allow")),
                 "Statement[0].Effect must be Allow or Deny, got 'allow'", id="effect-lower-case"),
    pytest.param(doc(stmt(), stmt(Effect=True)),
                 "Statement[1].Effect must be Allow or Deny, got a boolean true",
                 id="effect-boolean"),
    # Action
    pytest.param(doc(stmt(NotAction="iot:Publish")),
                 "Statement[0] has both Action and NotAction; use one", id="action-and-not"),
    pytest.param(doc(stmt(Action=None)), "Statement[0] needs Action or NotAction", id="no-action"),
    pytest.param(doc(stmt(Action=[])), "Statement[0].Action must not be an empty list",
                 id="action-empty-list"),
    pytest.param(doc(stmt(Action={"iot": "Publish"})), "Statement[0].Action must be a string or "
                 'a list of strings, got an object {"iot": "Publish"}', id="action-object"),
    pytest.param(doc(stmt(Action=["iot:Publish", 5])),
                 "Statement[0].Action[1] must be a string, got a number 5",
                 id="action-item-not-string"),
    pytest.param(doc(stmt(Action="s3:GetObject")), f"Statement[0].Action: 's3:GetObject' "
                 f"{BAD_ACTION}", id="action-other-service"),
    pytest.param(doc(stmt(Action=["iot:Publish", "iot:"])), f"Statement[0].Action[1]: 'iot:' "
                 f"{BAD_ACTION}", id="action-no-name"),
    pytest.param(doc(stmt(Action=None, NotAction="Publish")), f"Statement[0].NotAction: "
                 f"'Publish' {BAD_ACTION}", id="not-action-no-prefix"),
    # Resource
    pytest.param(doc(stmt(NotResource="*")),
                 "Statement[0] has both Resource and NotResource; use one", id="resource-and-not"),
    pytest.param(doc(stmt(Resource=None)), "Statement[0] needs Resource or NotResource",
                 id="no-resource"),
    pytest.param(doc(stmt(Resource="topic/a")), f"Statement[0].Resource {BAD_RESOURCE}, got "
                 "'topic/a'", id="resource-not-arn"),
    pytest.param(doc(stmt(Resource=["*", ""])), f"Statement[0].Resource[1] {BAD_RESOURCE}, got "
                 "''", id="resource-empty-string"),
    pytest.param(doc(stmt(Resource="arn:aws:iot:topic/a")), f"Statement[0].Resource "
                 f"{BAD_RESOURCE}, got 'arn:aws:iot:topic/a'", id="resource-short-arn"),
    pytest.param(doc(stmt(Resource=None, NotResource=[])),
                 "Statement[0].NotResource must not be an empty list", id="not-resource-empty"),
    # Condition
    pytest.param(cond("StringEquals"), "Statement[0].Condition must be an object like "
                 '{"StringEquals": {key: value}}, got \'StringEquals\'', id="condition-string"),
    pytest.param(cond({"StringEqual": {"iot:ClientId": "a"}}), "Statement[0].Condition: unknown "
                 "condition operator 'StringEqual'; did you mean 'StringEquals'?",
                 id="operator-typo"),
    pytest.param(cond({"stringlike": {"iot:ClientId": "a"}}), "Statement[0].Condition: unknown "
                 "condition operator 'stringlike'; did you mean 'StringLike'?", id="operator-case"),
    pytest.param(cond({"Frobnicate": {"iot:ClientId": "a"}}), "Statement[0].Condition: unknown "
                 "condition operator 'Frobnicate'", id="operator-unknown"),
    pytest.param(cond({"ForSomeValues:StringEquals": {"k": "a"}}), "Statement[0].Condition: "
                 "unknown set operator 'ForSomeValues' in 'ForSomeValues:StringEquals'; use "
                 "ForAnyValue: or ForAllValues:", id="set-operator-unknown"),
    pytest.param(cond({"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}),
                 "Statement[0].Condition: condition operator 'DateLessThan' is not supported by "
                 "thingcore", id="operator-unsupported"),
    pytest.param(cond({"NullIfExists": {"k": "true"}}), "Statement[0].Condition: 'NullIfExists': "
                 "Null takes no set operator and no IfExists", id="null-if-exists"),
    pytest.param(cond({"StringEquals": "a"}), "Statement[0].Condition.StringEquals must be an "
                 "object of condition keys, got 'a'", id="operator-block-not-object"),
    pytest.param(cond({"StringEquals": {}}),
                 "Statement[0].Condition.StringEquals must name at least one condition key",
                 id="operator-block-empty"),
    pytest.param(cond({"StringEquals": {"iot:ClientId": []}}),
                 'Statement[0].Condition.StringEquals["iot:ClientId"] must not be an empty list',
                 id="values-empty"),
    pytest.param(cond({"StringEquals": {"iot:ClientId": {"a": 1}}}),
                 'Statement[0].Condition.StringEquals["iot:ClientId"] values must be strings, '
                 'numbers or booleans, got an object {"a": 1}', id="value-object"),
    pytest.param(cond({"StringEquals": {"iot:ClientId": [None]}}),
                 'Statement[0].Condition.StringEquals["iot:ClientId"] values must be strings, '
                 "numbers or booleans, got null", id="value-null"),
    pytest.param(cond({"NumericEquals": {"k": "ten"}}), 'Statement[0].Condition.NumericEquals'
                 '["k"]: must be a number like 10 or 2.5, got \'ten\'', id="numeric-not-number"),
    pytest.param(cond({"NumericEquals": {"k": "nan"}}), 'Statement[0].Condition.NumericEquals'
                 '["k"]: must be a number like 10 or 2.5, got \'nan\'', id="numeric-nan"),
    pytest.param(cond({"IpAddress": {"aws:SourceIp": "10.0.0.0/33"}}),
                 'Statement[0].Condition.IpAddress["aws:SourceIp"]: must be an IP address or CIDR '
                 "range like '203.0.113.0/24', got '10.0.0.0/33'", id="ip-bad-range"),
    pytest.param(cond({"Bool": {"iot:Connection.Thing.IsAttached": "yes"}}),
                 'Statement[0].Condition.Bool["iot:Connection.Thing.IsAttached"]: must be true '
                 "or false, got 'yes'", id="bool-not-boolean"),
    pytest.param(cond({"Null": {"iot:ClientId": 1}}), 'Statement[0].Condition.Null'
                 '["iot:ClientId"]: must be true or false, got \'1\'', id="null-not-boolean"),
]
# fmt: on


@pytest.mark.parametrize(("text", "detail"), MALFORMED)
def test_malformed(text: str, detail: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p1")
    assert str(caught.value) == f"policy 'p1': {detail}"
    assert caught.value.detail == detail
    assert caught.value.policy == "p1"


def test_deep_nesting_is_a_policy_error() -> None:
    with pytest.raises(PolicyError, match="nested too deeply"):
        parse_policy("[" * 100_000 + "]" * 100_000)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
keys = st.sampled_from(["Effect", "Action", "NotAction", "Resource", "Condition", "Sid"])
statement_like = st.dictionaries(keys, json_values | st.sampled_from(["Allow", "*", "iot:*"]))


@given(st.lists(statement_like, max_size=3))
def test_any_json_is_parsed_or_rejected_with_policy_error(statements: list[Any]) -> None:
    text = json.dumps({"Version": POLICY_VERSION, "Statement": statements})
    try:
        parse_policy(text)
    except PolicyError as exc:
        assert "\n" not in str(exc)
