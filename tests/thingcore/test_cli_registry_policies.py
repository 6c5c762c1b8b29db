"""``thingcore policies``: documents, versions, attachments and ``policies test``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.thingcore.test_cli_registry import POLICY, POLICY_TEXT, Cli, cli

__all__ = ["cli"]  # the fixture, imported from the main CLI test module


def document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


ALLOW_ALL = document({"Effect": "Allow", "Action": "iot:*", "Resource": "*"})


# -- documents and versions --------------------------------------------------------------------


def test_create_from_a_file_and_show(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(POLICY_TEXT)
    created = cli.json("policies", "create", "dev-policy", str(path))
    assert created["policyVersionId"] == "1"
    shown = cli.json("policies", "show", "dev-policy")
    assert json.loads(shown["policyDocument"]) == POLICY
    assert shown["defaultVersionId"] == "1"
    text = cli.ok("policies", "show", "dev-policy").text
    assert "PublishOwnTopics" in text
    assert "1 (default)" in text
    assert cli.json("policies", "list")["policies"] == [
        {"policyName": "dev-policy", "policyArn": created["policyArn"]}
    ]
    assert "dev-policy" in cli.ok("policies", "list").text


def test_create_from_stdin(cli: Cli) -> None:
    assert "Created policy p" in cli.ok("policies", "create", "p", "-", input=ALLOW_ALL).stdout
    assert json.loads(cli.json("policies", "show", "p")["policyDocument"]) == json.loads(ALLOW_ALL)


@pytest.mark.parametrize(
    ("text", "place"),
    [
        (document({"Effect": "allow", "Action": "iot:*", "Resource": "*"}), "Statement[0].Effect"),
        (
            document(
                {"Effect": "Allow", "Action": "iot:*", "Resource": "*"},
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
            ),
            "Statement[1].Action",
        ),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_malformed_policy_is_one_error_naming_the_place(cli: Cli, text: str, place: str) -> None:
    error = cli.fails("policies", "create", "broken", "-", input=text)
    assert error.startswith("error: policy 'broken': ")
    assert place in error
    assert cli.json("policies", "list")["policies"] == []


def test_an_unreadable_file_is_named(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    assert cli.fails("policies", "create", "p", str(missing)) == (
        f"error: cannot read the policy document: {missing} does not exist"
    )
    assert "is a directory" in cli.fails("policies", "create", "p", str(tmp_path))
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    assert "not UTF-8" in cli.fails("policies", "create", "p", str(binary))


def test_versions(cli: Cli) -> None:
    cli.policy("p", ALLOW_ALL)
    v2 = cli.json("policies", "create-version", "p", "-", input=POLICY_TEXT)
    assert v2 == {
        "policyArn": "arn:aws:iot:us-east-1:000000000000:policy/p",
        "policyDocument": v2["policyDocument"],
        "policyVersionId": "2",
        "isDefaultVersion": False,
    }
    assert (
        "(the default)"
        in cli.ok("policies", "create-version", "p", "-", "--set-default", input=ALLOW_ALL).stdout
    )
    versions = cli.json("policies", "versions", "p")["policyVersions"]
    assert [(v["versionId"], v["isDefaultVersion"]) for v in versions] == [
        ("3", True),
        ("2", False),
        ("1", False),
    ]
    assert json.loads(cli.json("policies", "show", "p", "--version", "2")["policyDocument"]) == (
        POLICY
    )
    cli.ok("policies", "set-default", "p", "2")
    assert cli.json("policies", "show", "p")["defaultVersionId"] == "2"
    assert "is the default" in cli.fails("policies", "delete-version", "p", "2")
    assert "has 3 versions" in cli.fails("policies", "delete", "p")
    cli.ok("policies", "delete-version", "p", "1")
    cli.ok("policies", "delete-version", "p", "3")
    assert "has no version 3" in cli.fails("policies", "show", "p", "--version", "3")
    assert "Deleted policy p" in cli.ok("policies", "delete", "p").stdout
    assert "no policy named 'p'" in cli.fails("policies", "show", "p")


# -- attachments -------------------------------------------------------------------------------


def test_attach_and_detach(cli: Cli) -> None:
    cli.policy("p", ALLOW_ALL)
    cert = cli.json("certs", "create")
    cert_id = cert["certificateId"]
    cli.ok("groups", "create", "lab")

    assert (
        f"certificate {cert_id}" in cli.ok("policies", "attach", "p", "--cert", cert_id[:8]).stdout
    )
    cli.ok("policies", "attach", "p", "--group", "lab")
    group_arn = "arn:aws:iot:us-east-1:000000000000:thinggroup/lab"
    assert sorted(cli.json("policies", "targets", "p")["targets"]) == sorted(
        [cert["certificateArn"], group_arn]
    )
    assert "thing group" in cli.ok("policies", "targets", "p").text
    assert [
        p["policyName"] for p in cli.json("policies", "attached", "--group", "lab")["policies"]
    ] == ["p"]
    assert "attached to" in cli.fails("policies", "delete", "p")

    cli.ok("policies", "detach", "p", "--target", cert["certificateArn"])
    cli.ok("policies", "detach", "p", "--group", "lab")
    assert cli.json("policies", "targets", "p")["targets"] == []
    assert cli.json("policies", "attached", "--cert", cert_id)["policies"] == []
    assert "is not attached" in cli.fails("policies", "detach", "p", "--group", "lab")
    cli.ok("policies", "attach", "p", "--target", group_arn)
    assert cli.json("policies", "targets", "p")["targets"] == [group_arn]


def test_attach_needs_exactly_one_target(cli: Cli) -> None:
    cli.policy("p", ALLOW_ALL)
    assert "exactly one of --cert, --group or --target" in cli.fails("policies", "attach", "p")
    assert "exactly one" in cli.fails("policies", "attach", "p", "--group", "a", "--target", "b")
    assert "no thing group named 'ghost'" in cli.fails(
        "policies", "attach", "p", "--group", "ghost"
    )
    assert "not to a 'thing'" in cli.fails(
        "policies", "attach", "p", "--target", "arn:aws:iot:us-east-1:000000000000:thing/x"
    )
    assert "exactly one of --cert or --group" in cli.fails("policies", "attached")


# -- policies test -----------------------------------------------------------------------------


@pytest.fixture
def device(cli: Cli) -> str:
    """A thing ``dev-1`` with a certificate carrying ``POLICY``; returns the certificate id."""
    cli.policy("dev-policy")
    return str(
        cli.json("things", "create", "dev-1", "--with-cert", "--policy", "dev-policy")[
            "certificateId"
        ]
    )


def test_policies_test_allowed_names_the_statement(cli: Cli, device: str) -> None:
    result = cli.json(
        "policies",
        "test",
        "--client-id",
        "dev-1",
        "--cert",
        device[:8],
        "--action",
        "iot:Publish",
        "--topic",
        "devices/dev-1/telemetry",
    )
    assert result["allowed"] is True
    assert result["policy"] == "dev-policy"
    assert (
        result["reason"] == "allowed by policy 'dev-policy' Statement[1] (Sid 'PublishOwnTopics')"
    )
    assert result["statement"] == {
        "index": 1,
        "sid": "PublishOwnTopics",
        "effect": "Allow",
        "actions": ["iot:Publish", "iot:Receive"],
        "resources": ["arn:aws:iot:*:*:topic/devices/${iot:Connection.Thing.ThingName}/*"],
    }
    context = result["context"]
    assert context["thingName"] == "dev-1"
    assert context["thingResolved"] is True
    assert context["principal"] == device
    assert context["resource"] == "arn:aws:iot:us-east-1:000000000000:topic/devices/dev-1/telemetry"
    assert context["policies"] == ["dev-policy"]

    ran = cli.ok(
        "policies",
        "test",
        "--client-id",
        "dev-1",
        "--cert",
        device,
        "--action",
        "Publish",
        "--topic",
        "devices/dev-1/telemetry",
    )
    assert ran.stdout.startswith("ALLOWED\n")
    assert "PublishOwnTopics" in ran.text
    assert "dev-1 (the certificate is attached to it)" in ran.text


def test_policies_test_denied_by_a_deny_statement(cli: Cli, device: str) -> None:
    args = ("--client-id", "dev-1", "--cert", device, "--action", "iot:Publish")
    result = cli.json("policies", "test", *args, "--topic", "devices/dev-1/admin")
    assert result["allowed"] is False
    assert result["statement"]["sid"] == "NeverAdmin"
    assert result["statement"]["effect"] == "Deny"
    ran = cli.ok("policies", "test", *args, "--topic", "devices/dev-1/admin")
    assert ran.code == 0
    assert ran.stdout.startswith("DENIED\n")
    assert "explicitly denied by policy 'dev-policy' Statement[2]" in ran.text


def test_policies_test_denied_by_default_when_the_thing_is_not_resolved(
    cli: Cli, device: str
) -> None:
    # Another client id: the certificate is not attached to a thing of that name, so the
    # thing-name variables match nothing and no statement allows.
    result = cli.json(
        "policies", "test", "--client-id", "intruder", "--cert", device, "--action", "iot:Connect"
    )
    assert result["allowed"] is False
    assert result["statement"] is None
    assert result["policy"] is None
    assert "denied by default" in result["reason"]
    assert result["context"]["resource"] == "arn:aws:iot:us-east-1:000000000000:client/intruder"
    assert result["context"]["thingResolved"] is False
    text = cli.ok(
        "policies", "test", "--client-id", "intruder", "--cert", device, "--action", "iot:Connect"
    ).text
    assert "not resolved" in text
    connect = cli.json(
        "policies", "test", "--client-id", "dev-1", "--cert", device, "--action", "iot:Connect"
    )
    assert connect["allowed"] is True
    assert connect["statement"]["sid"] == "ConnectAsThing"


def test_policies_test_reports_an_inactive_certificate(cli: Cli, device: str) -> None:
    cli.ok("certs", "deactivate", device)
    result = cli.json(
        "policies", "test", "--client-id", "dev-1", "--cert", device, "--action", "iot:Connect"
    )
    assert result["allowed"] is True  # the policy answer; the certificate is another matter
    assert "is INACTIVE" in result["context"]["certificateProblem"]


def test_policies_test_anonymous_and_full_arns(cli: Cli) -> None:
    result = cli.json(
        "policies",
        "test",
        "--client-id",
        "tool",
        "--anonymous",
        "--action",
        "iot:Subscribe",
        "--topic-filter",
        "$aws/things/#",
    )
    assert result["allowed"] is False
    assert result["statement"]["sid"] == "NorReservedFilters"
    assert result["context"]["principal"] is None
    arn = "arn:aws:iot:us-east-1:000000000000:topic/plain"
    allowed = cli.json(
        "policies", "test", "--client-id", "tool", "--anonymous", "--action", "iot:Publish",
        "--resource", arn,
    )  # fmt: skip
    assert allowed["allowed"] is True
    assert allowed["context"]["resource"] == arn


def test_policies_test_explains_usage_errors(cli: Cli, device: str) -> None:
    base = ("policies", "test", "--client-id", "dev-1")
    assert "exactly one of --cert or --anonymous" in cli.fails(*base, "--action", "iot:Connect")
    assert "exactly one of --cert or --anonymous" in cli.fails(
        *base, "--cert", device, "--anonymous", "--action", "iot:Connect"
    )
    assert "needs a resource" in cli.fails(*base, "--anonymous", "--action", "iot:Publish")
    assert "at most one of" in cli.fails(
        *base, "--anonymous", "--action", "iot:Publish", "--topic", "a", "--topic-filter", "b"
    )
