"""Policy evaluation (registry/policies/evaluate.py): variables, wildcards, deny over allow."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.policies import (
    Decision,
    IotAction,
    PolicyDocument,
    RequestContext,
    evaluate,
    parse_policy,
    resource_arn,
    statement_applies,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
PREFIX = f"arn:aws:iot:{REGION}:{ACCOUNT}:"
THING = "${iot:Connection.Thing.ThingName}"
TYPE = "${iot:Connection.Thing.ThingTypeName}"
SITE = "${iot:Connection.Thing.Attributes[site]}"


def policy(*statements: dict[str, Any], name: str = "p") -> PolicyDocument:
    return parse_policy(json.dumps({"Version": "2012-10-17", "Statement": list(statements)}), name)


def allow(action: str | list[str], resource: str | list[str], **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: str | list[str], resource: str | list[str], **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def decide(
    policies: PolicyDocument | list[PolicyDocument],
    action: str,
    resource: str,
    ctx: RequestContext,
) -> Decision:
    """Evaluate ``resource`` given as ``kind/name`` (e.g. ``topic/a/b``) in the test account."""
    as_list = policies if isinstance(policies, list) else [policies]
    return evaluate(as_list, action, PREFIX + resource, ctx)


CLIENT = RequestContext("dev-1", source_ip="192.0.2.10")
ATTACHED = RequestContext(
    "dev-1",
    thing_name="dev-1",
    thing_type="sensor",
    thing_attributes={"site": "berlin", "floor": "3"},
    is_attached=True,
)
UNTYPED = RequestContext("dev-1", thing_name="dev-1", is_attached=True)


def test_resource_arn() -> None:
    assert resource_arn("topicfilter", "a/+/#", region="eu-west-1", account="1") == (
        "arn:aws:iot:eu-west-1:1:topicfilter/a/+/#"
    )


# ---------------------------------------------------------------------------------------------
# Policy variables in Resource

# fmt: off
VARIABLE_CASES = [
    pytest.param("client/${iot:ClientId}", CLIENT, "client/dev-1", True, id="client-id"),
    pytest.param("client/${iot:ClientId}", CLIENT, "client/dev-2", False, id="client-id-other"),
    pytest.param("client/${iot:clientid}", CLIENT, "client/dev-1", True, id="name-any-case"),
    pytest.param(f"client/{THING}", ATTACHED, "client/dev-1", True, id="thing-name-attached"),
    pytest.param(f"client/{THING}", CLIENT, "client/dev-1", False, id="thing-name-not-attached"),
    pytest.param(f"topic/t/{TYPE}/*", ATTACHED, "topic/t/sensor/x", True, id="thing-type"),
    pytest.param(f"topic/t/{TYPE}/*", UNTYPED, "topic/t//x", False, id="thing-type-none"),
    pytest.param(f"topic/t/{TYPE}/*", CLIENT, "topic/t/sensor/x", False, id="type-not-attached"),
    pytest.param(f"topic/s/{SITE}/*", ATTACHED, "topic/s/berlin/x", True, id="attribute"),
    pytest.param(f"topic/s/{SITE}/*", ATTACHED, "topic/s/paris/x", False, id="attribute-other"),
    pytest.param(f"topic/s/{SITE}/*", CLIENT, "topic/s/berlin/x", False, id="attr-not-attached"),
    pytest.param(
        "topic/s/${iot:Connection.Thing.Attributes[Site]}/*", ATTACHED, "topic/s/berlin/x", False,
        id="attribute-name-case-sensitive",
    ),
    pytest.param(
        "topic/s/${iot:Connection.Thing.Attributes[building]}/*", ATTACHED, "topic/s//x", False,
        id="attribute-missing",
    ),
    pytest.param(
        "topic/${iot:Connection.Thing.IsAttached}", ATTACHED, "topic/true", True,
        id="is-attached-true",
    ),
    pytest.param(
        "topic/${iot:Connection.Thing.IsAttached}", CLIENT, "topic/false", True,
        id="is-attached-false",
    ),
    pytest.param("topic/ip/${aws:SourceIp}", CLIENT, "topic/ip/192.0.2.10", True, id="source-ip"),
    pytest.param("topic/ip/${aws:SourceIp}", ATTACHED, "topic/ip/", False, id="source-ip-absent"),
    pytest.param("topic/${iot:Nope}", CLIENT, "topic/", False, id="unknown-variable"),
    pytest.param("topic/${}", CLIENT, "topic/", False, id="empty-variable"),
    pytest.param("topic/a${*}", CLIENT, "topic/a*", True, id="escape-star"),
    pytest.param("topic/a${*}", CLIENT, "topic/ab", False, id="escaped-star-is-literal"),
    pytest.param("topic/a${?}", CLIENT, "topic/ab", False, id="escaped-question-is-literal"),
    pytest.param("topic/${$}aws/x", CLIENT, "topic/$aws/x", True, id="escape-dollar"),
    pytest.param("topic/${iot:ClientId", CLIENT, "topic/${iot:ClientId", True, id="unterminated"),
    pytest.param(
        "topic/${iot:ClientId}/${iot:ClientId}", CLIENT, "topic/dev-1/dev-1", True,
        id="two-variables",
    ),
]
# fmt: on


@pytest.mark.parametrize(("pattern", "ctx", "requested", "expected"), VARIABLE_CASES)
def test_variables(pattern: str, ctx: RequestContext, requested: str, expected: bool) -> None:
    doc = policy(allow("iot:*", PREFIX + pattern))
    assert decide(doc, "iot:Publish", requested, ctx).allowed is expected


@pytest.mark.parametrize(
    ("client_id", "requested", "expected"),
    [
        pytest.param("dev*", "dev*", True, id="star-matches-itself"),
        pytest.param("dev*", "dev-1", False, id="star-is-not-a-glob"),
        pytest.param("dev?", "devX", False, id="question-is-not-a-glob"),
        pytest.param("a/+", "a/+", True, id="plus-literal"),
        pytest.param("#", "#", True, id="hash-literal"),
    ],
)
def test_variable_values_are_literal(client_id: str, requested: str, expected: bool) -> None:
    doc = policy(allow("iot:Connect", PREFIX + "client/${iot:ClientId}"))
    ctx = RequestContext(client_id)
    assert decide(doc, "iot:Connect", f"client/{requested}", ctx).allowed is expected


@given(st.text("ab*?/+#$", min_size=1, max_size=8), st.text("ab*?/+#$", max_size=8))
def test_client_id_variable_matches_only_itself(client_id: str, requested: str) -> None:
    doc = policy(allow("iot:Connect", PREFIX + "client/${iot:ClientId}"))
    decision = decide(doc, "iot:Connect", f"client/{requested}", RequestContext(client_id))
    assert decision.allowed == (requested == client_id)


@pytest.mark.parametrize(
    ("ctx", "expected"),
    [
        pytest.param(CLIENT, True, id="not-attached-deny-entry-matches-nothing"),
        pytest.param(ATTACHED, False, id="attached-deny-applies"),
    ],
)
def test_unresolved_variable_in_deny_matches_nothing(ctx: RequestContext, expected: bool) -> None:
    doc = policy(
        allow("iot:Publish", PREFIX + "topic/*"),
        deny("iot:Publish", PREFIX + f"topic/{THING}/locked"),
    )
    assert decide(doc, "iot:Publish", "topic/dev-1/locked", ctx).allowed is expected


# ---------------------------------------------------------------------------------------------
# Wildcards in Resource

# fmt: off
WILDCARD_CASES = [
    pytest.param("topic/a/*", "iot:Publish", "topic/a/b/c", True, id="star-spans-slash"),
    pytest.param("topic/a/*", "iot:Publish", "topic/a", False, id="star-needs-prefix"),
    pytest.param("topic/a/?", "iot:Publish", "topic/a/b", True, id="question"),
    pytest.param("topic/a/?", "iot:Publish", "topic/a/bc", False, id="question-one-char"),
    pytest.param("topic/A", "iot:Publish", "topic/a", False, id="case-sensitive"),
    pytest.param("topic/*", "iot:Publish", "topicfilter/a", False, id="other-resource-kind"),
    pytest.param("topicfilter/a/+", "iot:Subscribe", "topicfilter/a/+", True, id="plus-literal"),
    pytest.param("topicfilter/a/+", "iot:Subscribe", "topicfilter/a/b", False, id="plus-no-level"),
    pytest.param("topicfilter/a/#", "iot:Subscribe", "topicfilter/a/#", True, id="hash-literal"),
    pytest.param("topicfilter/a/#", "iot:Subscribe", "topicfilter/a/b", False, id="hash-no-tree"),
    pytest.param("topicfilter/a/*", "iot:Subscribe", "topicfilter/a/#", True, id="star-hash"),
    pytest.param("topicfilter/a/*", "iot:Subscribe", "topicfilter/a/+/c", True, id="star-plus"),
]
# fmt: on


@pytest.mark.parametrize(("pattern", "action", "requested", "expected"), WILDCARD_CASES)
def test_resource_wildcards(pattern: str, action: str, requested: str, expected: bool) -> None:
    doc = policy(allow(action, PREFIX + pattern))
    assert decide(doc, action, requested, CLIENT).allowed is expected


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        pytest.param("*", True, id="bare-star"),
        pytest.param("arn:aws:iot:*:*:topic/a", True, id="region-and-account-globs"),
        pytest.param("arn:aws:iot:us-east-?:1234567890??:topic/a", True, id="question-in-arn"),
        pytest.param("arn:aws:iot:us-east-1:999999999999:topic/a", False, id="other-account"),
        pytest.param("arn:aws:iot:eu-west-1:123456789012:topic/a", False, id="other-region"),
        pytest.param(["arn:aws:iot:*:*:topic/x", "arn:*:*:*:*:*"], True, id="any-entry-of-a-list"),
    ],
)
def test_resource_arn_parts(resource: str | list[str], expected: bool) -> None:
    doc = policy(allow("iot:Publish", resource))
    assert decide(doc, "iot:Publish", "topic/a", CLIENT).allowed is expected


# ---------------------------------------------------------------------------------------------
# Actions


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        pytest.param("iot:Publish", "iot:Publish", True, id="exact"),
        pytest.param("iot:publish", "iot:Publish", True, id="pattern-lower-case"),
        pytest.param("IOT:PUBLISH", "iot:Publish", True, id="pattern-upper-case"),
        pytest.param("iot:Publish", "IoT:publish", True, id="request-mixed-case"),
        pytest.param("iot:*", "iot:Receive", True, id="iot-star"),
        pytest.param("*", "iot:Subscribe", True, id="star"),
        pytest.param("iot:P*", "iot:Publish", True, id="prefix-glob"),
        pytest.param("iot:P*", "iot:Receive", False, id="prefix-glob-other"),
        pytest.param("iot:?ublish", "iot:Publish", True, id="question"),
        pytest.param("iot:Publish", "iot:RetainPublish", False, id="no-substring-match"),
        pytest.param("iot:*Publish", "iot:RetainPublish", True, id="suffix-glob"),
        pytest.param("iot:Pub", "iot:Publish", False, id="no-prefix-match"),
        pytest.param(["iot:Receive", "iot:Publish"], "iot:Publish", True, id="list"),
    ],
)
def test_actions(pattern: str | list[str], action: str, expected: bool) -> None:
    doc = policy(allow(pattern, "*"))
    assert decide(doc, action, "topic/a", CLIENT).allowed is expected


def test_action_enum_is_accepted() -> None:
    doc = policy(allow("iot:RetainPublish", "*"))
    assert decide(doc, IotAction.RETAIN_PUBLISH, "topic/a", CLIENT).allowed


# ---------------------------------------------------------------------------------------------
# Deny over allow, default deny, reasons

OPEN = policy(allow("iot:*", "*", Sid="Everything"), name="open")
LOCKED = policy(
    allow("iot:Receive", PREFIX + "topic/*"),
    deny(["iot:Publish", "iot:Receive"], PREFIX + "topic/secret/*", Sid="NoSecrets"),
    name="locked",
)
DENIED = "explicitly denied by policy 'locked' Statement[1] (Sid 'NoSecrets')"

# fmt: off
DECISION_CASES = [
    pytest.param([OPEN, LOCKED], "iot:Publish", "topic/secret/x", False, "locked", 1, DENIED,
                 id="deny-in-second-policy"),
    pytest.param([LOCKED, OPEN], "iot:Publish", "topic/secret/x", False, "locked", 1, DENIED,
                 id="deny-in-first-policy"),
    pytest.param([LOCKED, OPEN], "iot:Receive", "topic/public/x", True, "locked", 0,
                 "allowed by policy 'locked' Statement[0]", id="first-allow-decides"),
    pytest.param([OPEN, LOCKED], "iot:Publish", "topic/public/x", True, "open", 0,
                 "allowed by policy 'open' Statement[0] (Sid 'Everything')", id="allow-with-sid"),
    pytest.param([LOCKED], "iot:Publish", "topic/public/x", False, None, None,
                 f"no statement allows iot:Publish on {PREFIX}topic/public/x: denied by default",
                 id="default-deny"),
    pytest.param([], "iot:Connect", "client/c", False, None, None,
                 f"no statement allows iot:Connect on {PREFIX}client/c: denied by default",
                 id="no-policies"),
]
# fmt: on


@pytest.mark.parametrize(
    ("policies", "action", "requested", "allowed", "policy_name", "index", "reason"),
    DECISION_CASES,
)
def test_decisions(
    policies: list[PolicyDocument],
    action: str,
    requested: str,
    allowed: bool,
    policy_name: str | None,
    index: int | None,
    reason: str,
) -> None:
    decision = decide(policies, action, requested, CLIENT)
    assert decision.allowed is allowed
    assert decision.policy == policy_name
    assert (decision.statement.index if decision.statement else None) == index
    assert decision.reason == reason


def test_unnamed_policy_reason() -> None:
    doc = policy(deny("iot:*", "*"), name="")
    assert decide(doc, "iot:Connect", "client/c", CLIENT).reason == (
        "explicitly denied by an unnamed policy Statement[0]"
    )


@given(st.permutations([OPEN, LOCKED, policy(allow("iot:Publish", "*"), name="pub")]))
def test_policy_order_does_not_change_the_outcome(policies: list[PolicyDocument]) -> None:
    assert not decide(policies, "iot:Publish", "topic/secret/a", CLIENT).allowed
    assert decide(policies, "iot:Publish", "topic/public/a", CLIENT).allowed


# ---------------------------------------------------------------------------------------------
# NotAction / NotResource


def not_action(effect: str, actions: str | list[str]) -> dict[str, Any]:
    return {"Effect": effect, "NotAction": actions, "Resource": "*"}


def not_resource(effect: str, resources: str) -> dict[str, Any]:
    return {"Effect": effect, "Action": "iot:Publish", "NotResource": PREFIX + resources}


ALLOW_ALL = allow("iot:*", "*")

# fmt: off
NOT_CASES = [
    pytest.param([not_action("Allow", "iot:Publish")], "iot:Receive", "topic/a", True,
                 id="not-action-allows-others"),
    pytest.param([not_action("Allow", "iot:Publish")], "iot:Publish", "topic/a", False,
                 id="not-action-excludes-listed"),
    pytest.param([not_action("Allow", ["iot:P*", "iot:Receive"])], "iot:Subscribe", "topic/a",
                 True, id="not-action-glob-list"),
    pytest.param([not_action("Allow", ["iot:P*", "iot:Receive"])], "iot:publish", "topic/a",
                 False, id="not-action-case-insensitive"),
    pytest.param([ALLOW_ALL, not_action("Deny", "iot:Receive")], "iot:Publish", "topic/a", False,
                 id="deny-not-action"),
    pytest.param([ALLOW_ALL, not_action("Deny", "iot:Receive")], "iot:Receive", "topic/a", True,
                 id="deny-not-action-spares-listed"),
    pytest.param([not_resource("Allow", "topic/admin/*")], "iot:Publish", "topic/x", True,
                 id="not-resource-allows-others"),
    pytest.param([not_resource("Allow", "topic/admin/*")], "iot:Publish", "topic/admin/x", False,
                 id="not-resource-excludes-listed"),
    pytest.param([ALLOW_ALL, not_resource("Deny", "topic/ok/*")], "iot:Publish", "topic/x", False,
                 id="deny-not-resource"),
    pytest.param([ALLOW_ALL, not_resource("Deny", "topic/ok/*")], "iot:Publish", "topic/ok/1",
                 True, id="deny-not-resource-spares-listed"),
    # Documented consequence: an unresolved entry matches nothing, so it excludes nothing.
    pytest.param([ALLOW_ALL, not_resource("Deny", f"topic/{THING}/*")], "iot:Publish",
                 "topic/dev-1/x", False, id="unresolved-not-resource-excludes-nothing"),
]
# fmt: on


@pytest.mark.parametrize(("statements", "action", "requested", "expected"), NOT_CASES)
def test_not_action_not_resource(
    statements: list[dict[str, Any]], action: str, requested: str, expected: bool
) -> None:
    doc = policy(*statements)
    assert decide(doc, action, requested, CLIENT).allowed is expected


def test_statement_applies_ignores_effect() -> None:
    doc = policy(deny("iot:Publish", PREFIX + "topic/a"))
    statement = doc.statements[0]
    assert statement_applies(statement, "IOT:PUBLISH", PREFIX + "topic/a", CLIENT)
    assert not statement_applies(statement, "iot:Publish", PREFIX + "topic/b", CLIENT)


# ---------------------------------------------------------------------------------------------
# The example policy of reference section 4.3, verbatim.

AWS_EXAMPLE = parse_policy(
    """{
  "Version": "2012-10-17",
  "Statement": [
    { "Effect": "Allow", "Action": "iot:Connect",
      "Resource": "arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}" },
    { "Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
      "Resource": "arn:aws:iot:us-east-1:123456789012:topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*" },
    { "Effect": "Allow", "Action": "iot:Subscribe",
      "Resource": "arn:aws:iot:us-east-1:123456789012:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*" },
    { "Effect": "Deny", "Action": "iot:Publish",
      "Resource": "arn:aws:iot:us-east-1:123456789012:topic/admin/*" }
  ]
}""",  # noqa: E501
    "thing-policy",
)
T1 = RequestContext("t1", thing_name="t1", is_attached=True)
T1_UNATTACHED = RequestContext("t1")
SHADOW = "$aws/things/t1/shadow"

# fmt: off
AWS_EXAMPLE_CASES = [
    pytest.param("iot:Connect", "client/t1", T1, True, 0, id="connect-as-thing"),
    pytest.param("iot:Connect", "client/t1", T1_UNATTACHED, False, None, id="connect-unattached"),
    pytest.param("iot:Connect", "client/t2", T1, False, None, id="connect-other-client-id"),
    pytest.param("iot:Publish", f"topic/{SHADOW}/update", T1, True, 1, id="publish-own-shadow"),
    pytest.param("iot:Receive", f"topic/{SHADOW}/get/accepted", T1, True, 1,
                 id="receive-own-shadow"),
    pytest.param("iot:Publish", "topic/$aws/things/t2/shadow/update", T1, False, None,
                 id="publish-other-shadow"),
    pytest.param("iot:Publish", f"topic/{SHADOW}/update", T1_UNATTACHED, False, None,
                 id="publish-unattached"),
    pytest.param("iot:Subscribe", f"topicfilter/{SHADOW}/#", T1, True, 2,
                 id="subscribe-own-shadow-with-hash"),
    pytest.param("iot:Subscribe", "topicfilter/$aws/things/+/shadow/update", T1, False, None,
                 id="subscribe-every-thing"),
    pytest.param("iot:Subscribe", f"topic/{SHADOW}/update", T1, False, None,
                 id="subscribe-is-checked-on-topicfilter"),
    pytest.param("iot:Publish", "topic/admin/reboot", T1, False, 3, id="admin-explicitly-denied"),
]
# fmt: on


@pytest.mark.parametrize(("action", "requested", "ctx", "allowed", "index"), AWS_EXAMPLE_CASES)
def test_aws_example_policy(
    action: str, requested: str, ctx: RequestContext, allowed: bool, index: int | None
) -> None:
    decision = decide(AWS_EXAMPLE, action, requested, ctx)
    assert decision.allowed is allowed
    assert (decision.statement.index if decision.statement else None) == index
