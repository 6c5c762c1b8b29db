"""Condition operators (registry/policies/conditions.py), one family per table."""

from __future__ import annotations

import json
from typing import Any

import pytest

from registry.policies import (
    CertificateFields,
    Condition,
    PolicyDocument,
    RequestContext,
    evaluate,
    parse_policy,
)

CLIENT = RequestContext("dev-1", source_ip="192.0.2.10")
ATTACHED = RequestContext(
    "dev-1",
    thing_name="dev-1",
    thing_type="sensor",
    thing_attributes={
        "site": "berlin",
        "floor": "3",
        "owner": "arn:aws:iot:us-east-1:123456789012:thing/t1",
        "odd": "arn:aws:iot:us-east-1:999:123456789012:thing/t1",
    },
    is_attached=True,
    source_ip="2001:db8::5",
)
CERT = CertificateFields(
    subject={"CommonName": ("dev-1",), "OrganizationalUnit": ("eng", "ops")},
    issuer={"CommonName": ("Root CA",)},
    san={"DNSName": ("a.example", "b.example")},
    serial_number="4660",
)
WITH_CERT = RequestContext("dev-1", certificate=CERT)
ODD_IP = RequestContext("dev-1", source_ip="not-an-ip")

CLIENT_ID = "iot:ClientId"
TYPE = "iot:Connection.Thing.ThingTypeName"
THING = "iot:Connection.Thing.ThingName"
ATTACHED_KEY = "iot:Connection.Thing.IsAttached"
FLOOR = "iot:Connection.Thing.Attributes[floor]"
SITE = "iot:Connection.Thing.Attributes[site]"
OWNER = "iot:Connection.Thing.Attributes[owner]"
ODD = "iot:Connection.Thing.Attributes[odd]"
OU_LIST = "iot:Certificate.Subject.OrganizationalUnit.List"
IP = "aws:SourceIp"


def holds(condition: dict[str, Any], ctx: RequestContext) -> bool:
    """Whether an Allow with ``condition`` lets ``ctx`` connect."""
    doc = parse_policy(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": {
                    "Effect": "Allow",
                    "Action": "iot:Connect",
                    "Resource": "*",
                    "Condition": condition,
                },
            }
        )
    )
    return evaluate([doc], "iot:Connect", "arn:aws:iot:us-east-1:1:client/dev-1", ctx).allowed


def case(operator: str, key: str, value: Any, ctx: RequestContext, expected: bool, id: str) -> Any:
    return pytest.param({operator: {key: value}}, ctx, expected, id=id)


# fmt: off
STRING_CASES = [
    case("StringEquals", CLIENT_ID, "dev-1", CLIENT, True, "equals"),
    case("StringEquals", CLIENT_ID, "dev-2", CLIENT, False, "equals-other"),
    case("StringEquals", CLIENT_ID, "DEV-1", CLIENT, False, "equals-case-sensitive"),
    case("StringEquals", CLIENT_ID, ["dev-2", "dev-1"], CLIENT, True, "equals-values-or"),
    case("StringEquals", "IOT:CLIENTID", "dev-1", CLIENT, True, "key-name-any-case"),
    case("StringEquals", THING, "dev-1", CLIENT, False, "equals-missing-key"),
    case("StringEquals", "iot:Unknown", "x", CLIENT, False, "equals-unknown-key"),
    case("StringNotEquals", CLIENT_ID, "dev-2", CLIENT, True, "not-equals"),
    case("StringNotEquals", CLIENT_ID, "dev-1", CLIENT, False, "not-equals-same"),
    case("StringNotEquals", CLIENT_ID, ["dev-2", "dev-1"], CLIENT, False, "not-equals-any-listed"),
    case("StringNotEquals", THING, "dev-1", CLIENT, True, "not-equals-missing-key-is-true"),
    case("StringEqualsIgnoreCase", CLIENT_ID, "DEV-1", CLIENT, True, "ignore-case"),
    case("StringEqualsIgnoreCase", CLIENT_ID, "dev-2", CLIENT, False, "ignore-case-other"),
    case("StringNotEqualsIgnoreCase", CLIENT_ID, "DEV-1", CLIENT, False, "not-ignore-case"),
    case("StringNotEqualsIgnoreCase", CLIENT_ID, "x", CLIENT, True, "not-ignore-case-other"),
    case("StringLike", CLIENT_ID, "dev-*", CLIENT, True, "like-star"),
    case("StringLike", CLIENT_ID, "dev-?", CLIENT, True, "like-question"),
    case("StringLike", CLIENT_ID, "DEV-*", CLIENT, False, "like-case-sensitive"),
    case("StringLike", CLIENT_ID, ["x*", "*-1"], CLIENT, True, "like-values-or"),
    case("StringNotLike", CLIENT_ID, "dev-*", CLIENT, False, "not-like"),
    case("StringNotLike", CLIENT_ID, "x*", CLIENT, True, "not-like-other"),
    case("StringNotLike", THING, "x*", CLIENT, True, "not-like-missing-key-is-true"),
    case("StringEquals", SITE, "berlin", ATTACHED, True, "attribute-key"),
    case("StringEquals", TYPE, "sensor", ATTACHED, True, "thing-type-key"),
    case("StringEquals", CLIENT_ID, "${iot:Connection.Thing.ThingName}", ATTACHED, True,
         "value-variable"),
    case("StringLike", "iot:Connection.Thing.Attributes[site]", "${iot:ClientId}*", ATTACHED,
         False, "like-value-variable-other"),
    case("StringEquals", CLIENT_ID, "${iot:Connection.Thing.ThingName}", CLIENT, False,
         "unresolved-value-matches-nothing"),
    case("StringNotEquals", CLIENT_ID, "${iot:Connection.Thing.ThingName}", CLIENT, True,
         "unresolved-value-not-equals-is-true"),
    case("StringEquals", CLIENT_ID, "dev${*}", RequestContext("dev*"), True, "escape-in-value"),
    case("StringLike", CLIENT_ID, "${iot:ClientId}", RequestContext("d*"), True,
         "like-variable-value-is-literal"),
]
# fmt: on


@pytest.mark.parametrize(("condition", "ctx", "expected"), STRING_CASES)
def test_string_operators(condition: dict[str, Any], ctx: RequestContext, expected: bool) -> None:
    assert holds(condition, ctx) is expected


def test_like_variable_value_does_not_glob() -> None:
    # The client id "d*" is literal inside the StringLike value: "dx" must not match it.
    condition = {"StringLike": {"iot:Connection.Thing.Attributes[peer]": "${iot:ClientId}"}}
    ctx = RequestContext("d*", thing_name="d*", thing_attributes={"peer": "dx"}, is_attached=True)
    assert not holds(condition, ctx)


# fmt: off
IF_EXISTS_CASES = [
    case("StringEqualsIfExists", TYPE, "sensor", ATTACHED, True, "present-and-equal"),
    case("StringEqualsIfExists", TYPE, "gateway", ATTACHED, False, "present-and-different"),
    case("StringEqualsIfExists", TYPE, "gateway", CLIENT, True, "absent"),
    case("StringLikeIfExists", TYPE, "s*", ATTACHED, True, "like-present"),
    case("NumericLessThanIfExists", FLOOR, 2, ATTACHED, False, "numeric-present"),
    case("NumericLessThanIfExists", FLOOR, 2, CLIENT, True, "numeric-absent"),
    case("IpAddressIfExists", IP, "10.0.0.0/8", RequestContext("x"), True, "ip-absent"),
]
# fmt: on


@pytest.mark.parametrize(("condition", "ctx", "expected"), IF_EXISTS_CASES)
def test_if_exists(condition: dict[str, Any], ctx: RequestContext, expected: bool) -> None:
    assert holds(condition, ctx) is expected


# fmt: off
BOOL_NULL_CASES = [
    case("Bool", ATTACHED_KEY, "true", ATTACHED, True, "bool-attached"),
    case("Bool", ATTACHED_KEY, "true", CLIENT, False, "bool-not-attached"),
    case("Bool", ATTACHED_KEY, True, ATTACHED, True, "bool-json-true"),
    case("Bool", ATTACHED_KEY, False, CLIENT, True, "bool-json-false"),
    case("Bool", ATTACHED_KEY, "TRUE", ATTACHED, True, "bool-any-case"),
    case("ForAnyValue:StringEquals", ATTACHED_KEY, "true", ATTACHED, True,
         "for-any-value-is-attached"),
    case("Null", THING, "true", CLIENT, True, "null-true-absent"),
    case("Null", THING, "true", ATTACHED, False, "null-true-present"),
    case("Null", THING, "false", ATTACHED, True, "null-false-present"),
    case("Null", THING, False, CLIENT, False, "null-false-absent"),
]
# fmt: on


@pytest.mark.parametrize(("condition", "ctx", "expected"), BOOL_NULL_CASES)
def test_bool_and_null(condition: dict[str, Any], ctx: RequestContext, expected: bool) -> None:
    assert holds(condition, ctx) is expected


# fmt: off
IP_CASES = [
    case("IpAddress", IP, "192.0.2.0/24", CLIENT, True, "in-range"),
    case("IpAddress", IP, "192.0.2.10", CLIENT, True, "single-address"),
    case("IpAddress", IP, "198.51.100.0/24", CLIENT, False, "out-of-range"),
    case("IpAddress", IP, ["198.51.100.0/24", "192.0.2.0/24"], CLIENT, True, "ranges-or"),
    case("IpAddress", IP, "192.0.2.1/24", CLIENT, True, "host-bits-set"),
    case("IpAddress", IP, "2001:db8::/32", ATTACHED, True, "ipv6"),
    case("IpAddress", IP, "2001:db8::/32", CLIENT, False, "ipv6-range-ipv4-client"),
    case("NotIpAddress", IP, "198.51.100.0/24", CLIENT, True, "not-out-of-range"),
    case("NotIpAddress", IP, "192.0.2.0/24", CLIENT, False, "not-in-range"),
    case("IpAddress", IP, "0.0.0.0/0", ODD_IP, False, "unparsable-client-address"),
    case("NotIpAddress", IP, "0.0.0.0/0", ODD_IP, False, "unparsable-client-address-not"),
    case("IpAddress", IP, "0.0.0.0/0", RequestContext("x"), False, "absent"),
    case("NotIpAddress", IP, "0.0.0.0/0", RequestContext("x"), True, "absent-not"),
]
# fmt: on


@pytest.mark.parametrize(("condition", "ctx", "expected"), IP_CASES)
def test_ip_operators(condition: dict[str, Any], ctx: RequestContext, expected: bool) -> None:
    assert holds(condition, ctx) is expected


# fmt: off
NUMERIC_CASES = [
    case("NumericEquals", FLOOR, "3", ATTACHED, True, "equals"),
    case("NumericEquals", FLOOR, 3, ATTACHED, True, "equals-json-number"),
    case("NumericEquals", FLOOR, "3.0", ATTACHED, True, "equals-decimal"),
    case("NumericEquals", FLOOR, "4", ATTACHED, False, "equals-other"),
    case("NumericNotEquals", FLOOR, "3", ATTACHED, False, "not-equals-same"),
    case("NumericNotEquals", FLOOR, ["4", "5"], ATTACHED, True, "not-equals-none-listed"),
    case("NumericLessThan", FLOOR, 4, ATTACHED, True, "less-than"),
    case("NumericLessThan", FLOOR, 3, ATTACHED, False, "less-than-equal"),
    case("NumericLessThanEquals", FLOOR, 3, ATTACHED, True, "less-than-equals"),
    case("NumericGreaterThan", FLOOR, 3, ATTACHED, False, "greater-than-equal"),
    case("NumericGreaterThan", FLOOR, -1.5, ATTACHED, True, "greater-than-negative"),
    case("NumericGreaterThanEquals", FLOOR, 3, ATTACHED, True, "greater-than-equals"),
    case("NumericEquals", SITE, 3, ATTACHED, False, "request-not-a-number"),
    case("NumericNotEquals", SITE, 3, ATTACHED, False, "request-not-a-number-not"),
    case("NumericEquals", FLOOR, 3, CLIENT, False, "absent"),
    case("NumericNotEquals", FLOOR, 3, CLIENT, True, "absent-not"),
]
# fmt: on


@pytest.mark.parametrize(("condition", "ctx", "expected"), NUMERIC_CASES)
def test_numeric_operators(condition: dict[str, Any], ctx: RequestContext, expected: bool) -> None:
    assert holds(condition, ctx) is expected


# fmt: off
ARN_CASES = [
    case("ArnEquals", OWNER, "arn:aws:iot:us-east-1:123456789012:thing/t1", ATTACHED, True,
         "equals"),
    case("ArnLike", OWNER, "arn:aws:iot:*:123456789012:thing/*", ATTACHED, True, "like"),
    case("ArnLike", OWNER, "arn:aws:iot:*:*:thing/t2", ATTACHED, False, "like-other"),
    case("ArnEquals", OWNER, "arn:aws:iot:*:*:thing/t?", ATTACHED, True, "equals-takes-globs"),
    case("ArnLike", OWNER, "*", ATTACHED, True, "star"),
    case("ArnNotLike", OWNER, "arn:aws:iot:*:*:thing/t2", ATTACHED, True, "not-like"),
    case("ArnNotEquals", OWNER, "arn:aws:iot:*:*:thing/t1", ATTACHED, False, "not-equals"),
    # Component-wise: the region's * must not swallow the ':' into the account component.
    case("ArnLike", OWNER, "arn:aws:iot:*:thing/t1", ATTACHED, False, "too-few-components"),
    case("ArnLike", OWNER, "arn:aws:iot:us-*:123456789012:thing/t1", ATTACHED, True,
         "star-within-component"),
    case("ArnLike", ODD, "arn:aws:iot:us-*:123456789012:thing/t1", ATTACHED, False,
         "star-stays-in-its-component"),
    case("StringLike", ODD, "arn:aws:iot:us-*:123456789012:thing/t1", ATTACHED, True,
         "string-like-star-crosses-colons"),
    case("ArnLike", OWNER, "arn:aws:iot:*:123456789012:thing/${iot:ClientId}", ATTACHED, False,
         "variable-in-resource-component"),
    case("ArnLike", SITE, "arn:*:*:*:*:*", ATTACHED, False, "request-not-an-arn"),
]
# fmt: on


@pytest.mark.parametrize(("condition", "ctx", "expected"), ARN_CASES)
def test_arn_operators(condition: dict[str, Any], ctx: RequestContext, expected: bool) -> None:
    assert holds(condition, ctx) is expected


# fmt: off
SET_CASES = [
    case("ForAnyValue:StringEquals", OU_LIST, "ops", WITH_CERT, True, "any-one-matches"),
    case("ForAnyValue:StringEquals", OU_LIST, "hr", WITH_CERT, False, "any-none-match"),
    case("ForAnyValue:StringEquals", OU_LIST, "ops", CLIENT, False, "any-absent-is-false"),
    case("ForAnyValue:StringNotEquals", OU_LIST, "eng", WITH_CERT, True, "any-not-one-differs"),
    case("ForAnyValue:StringLike", OU_LIST, "o*", WITH_CERT, True, "any-like"),
    case("ForAllValues:StringEquals", OU_LIST, ["eng", "ops", "hr"], WITH_CERT, True,
         "all-within-set"),
    case("ForAllValues:StringEquals", OU_LIST, "eng", WITH_CERT, False, "all-one-outside"),
    case("ForAllValues:StringEquals", OU_LIST, "eng", CLIENT, True, "all-absent-is-true"),
    case("ForAllValues:StringNotEquals", OU_LIST, "hr", WITH_CERT, True, "all-not-none-listed"),
    case("ForAllValues:StringNotEquals", OU_LIST, "eng", WITH_CERT, False, "all-not-one-listed"),
    case("ForAllValues:StringEqualsIfExists", OU_LIST, "eng", CLIENT, True, "all-if-exists"),
    case("ForAnyValue:StringEqualsIfExists", OU_LIST, "x", CLIENT, True, "any-if-exists-absent"),
    case("StringEquals", OU_LIST, "ops", WITH_CERT, True, "plain-on-list-is-any-value"),
    case("StringEquals", "iot:Certificate.Subject.OrganizationalUnit", "eng", WITH_CERT, True,
         "plain-name-is-first-value"),
    case("StringEquals", "iot:Certificate.Subject.OrganizationalUnit", "ops", WITH_CERT, False,
         "plain-name-is-only-first-value"),
    case("StringEquals", "iot:Certificate.Subject.OrganizationalUnit.2", "ops", WITH_CERT, True,
         "one-based-index"),
    case("StringEquals", "iot:Certificate.Subject.OrganizationalUnit.3", "ops", WITH_CERT, False,
         "index-past-end"),
    case("ForAnyValue:StringEquals", "iot:Certificate.Subject.AlternativeName.DNSName.List",
         "b.example", WITH_CERT, True, "san-list"),
    case("ForAnyValue:StringEquals", "iot:Certificate.AvailableKeys",
         "iot:Certificate.Subject.CommonName", WITH_CERT, True, "available-keys"),
]
# fmt: on


@pytest.mark.parametrize(("condition", "ctx", "expected"), SET_CASES)
def test_set_operators(condition: dict[str, Any], ctx: RequestContext, expected: bool) -> None:
    assert holds(condition, ctx) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        pytest.param(
            {"StringEquals": {CLIENT_ID: "dev-1", TYPE: "sensor"}}, True, id="keys-and-all-true"
        ),
        pytest.param(
            {"StringEquals": {CLIENT_ID: "dev-1", TYPE: "gateway"}}, False, id="keys-and-one-false"
        ),
        pytest.param(
            {"StringEquals": {CLIENT_ID: "dev-1"}, "Bool": {ATTACHED_KEY: "true"}},
            True,
            id="operators-and-all-true",
        ),
        pytest.param(
            {"StringEquals": {CLIENT_ID: "dev-1"}, "Bool": {ATTACHED_KEY: "false"}},
            False,
            id="operators-and-one-false",
        ),
        pytest.param({}, True, id="empty-condition-block"),
    ],
)
def test_conditions_and_together(condition: dict[str, Any], expected: bool) -> None:
    assert holds(condition, ATTACHED) is expected


def test_deny_with_condition() -> None:
    doc: PolicyDocument = parse_policy(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "iot:*", "Resource": "*"},
                    {
                        "Effect": "Deny",
                        "Action": "iot:Connect",
                        "Resource": "*",
                        "Condition": {"Bool": {ATTACHED_KEY: "false"}},
                    },
                ],
            }
        ),
        "attached-only",
    )
    resource = "arn:aws:iot:us-east-1:1:client/dev-1"
    assert evaluate([doc], "iot:Connect", resource, ATTACHED).allowed
    denied = evaluate([doc], "iot:Connect", resource, CLIENT)
    assert not denied.allowed
    assert denied.reason == "explicitly denied by policy 'attached-only' Statement[1]"


def test_condition_fields() -> None:
    condition = Condition.of("ForAllValues:StringLikeIfExists", OU_LIST, ("e*",))
    assert (condition.test, condition.set_operator, condition.if_exists) == (
        "StringLike",
        "ForAllValues",
        True,
    )
    assert condition.holds(WITH_CERT) is False
    assert condition.holds(CLIENT) is True
