"""registry/policy_store.py: policies, versions and attachments with AWS's shapes and errors
(reference sections 3.2 and 4.3)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from registry.errors import (
    DeleteConflict,
    InvalidRequest,
    LimitExceeded,
    MalformedPolicy,
    ResourceAlreadyExists,
    ResourceNotFound,
    VersionsLimitExceeded,
)
from registry.service import Registry
from tests.registry.conftest import ALLOW_ALL, SQLITE_ONLY, IssueCert, policy_document

ARN = "arn:aws:iot:us-east-1:000000000000"
PUBLISH_ONLY = policy_document({"Effect": "Allow", "Action": "iot:Publish", "Resource": "*"})


def _same_json(a: str, b: str) -> bool:
    return bool(json.loads(a) == json.loads(b))


def test_create_shape(registry: Registry) -> None:
    created = registry.policies.create("p", ALLOW_ALL)
    assert set(created) == {"policyName", "policyArn", "policyDocument", "policyVersionId"}
    assert created["policyName"] == "p"
    assert created["policyArn"] == f"{ARN}:policy/p"
    assert created["policyVersionId"] == "1"
    assert _same_json(created["policyDocument"], ALLOW_ALL)


def test_get_shape(registry: Registry) -> None:
    registry.policies.create("p", ALLOW_ALL)
    got = registry.policies.get("p")
    assert set(got) == {
        "policyName",
        "policyArn",
        "policyDocument",
        "defaultVersionId",
        "creationDate",
        "lastModifiedDate",
        "generationId",
    }
    assert (got["policyName"], got["policyArn"], got["defaultVersionId"]) == (
        "p",
        f"{ARN}:policy/p",
        "1",
    )
    assert _same_json(got["policyDocument"], ALLOW_ALL)
    assert isinstance(got["creationDate"], float)


def test_get_a_version(registry: Registry) -> None:
    registry.policies.create("p", ALLOW_ALL)
    registry.policies.create_version("p", PUBLISH_ONLY)
    got = registry.policies.get("p", 2)
    assert got["policyVersionId"] == "2"
    assert got["isDefaultVersion"] is False
    assert got["defaultVersionId"] == "1"
    assert _same_json(got["policyDocument"], PUBLISH_ONLY)
    with pytest.raises(ResourceNotFound, match="no version 9"):
        registry.policies.get("p", 9)


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("document", "where"),
    [
        ("{not json", "JSON"),
        (policy_document({"Effect": "allow", "Action": "iot:*", "Resource": "*"}), "Statement[0]"),
        (
            policy_document(
                {"Effect": "Allow", "Action": "iot:*", "Resource": "*"},
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
            ),
            "Statement[1]",
        ),
        (policy_document({"Effect": "Allow", "Action": "iot:*"}), "Statement[0]"),
    ],
    ids=["not-json", "bad-effect", "bad-action", "no-resource"],
)
def test_a_malformed_document_names_the_place(
    registry: Registry, document: str, where: str
) -> None:
    with pytest.raises(MalformedPolicy, match=f"policy 'p'.*{where}".replace("[", r"\[")):
        registry.policies.create("p", document)
    with pytest.raises(ResourceNotFound):
        registry.policies.get("p")


@SQLITE_ONLY
@pytest.mark.parametrize("name", ["", "has space", "slash/", "x" * 129])
def test_invalid_policy_names(registry: Registry, name: str) -> None:
    with pytest.raises(InvalidRequest, match="policy name"):
        registry.policies.create(name, ALLOW_ALL)


def test_policy_names_allow_awss_punctuation(registry: Registry) -> None:
    assert registry.policies.create("a+=,.@_-b", ALLOW_ALL)["policyName"] == "a+=,.@_-b"


def test_create_twice_already_exists(registry: Registry) -> None:
    registry.policies.create("p", ALLOW_ALL)
    with pytest.raises(ResourceAlreadyExists, match="create-version"):
        registry.policies.create("p", ALLOW_ALL)


def test_ensure_creates_once(registry: Registry) -> None:
    assert registry.policies.ensure("p", ALLOW_ALL) is True
    assert registry.policies.ensure("p", PUBLISH_ONLY) is False
    assert _same_json(registry.policies.get("p")["policyDocument"], ALLOW_ALL)


def test_list_policies(registry: Registry) -> None:
    for name in ("b", "a"):
        registry.policies.create(name, ALLOW_ALL)
    assert registry.policies.list_policies() == [
        {"policyName": "a", "policyArn": f"{ARN}:policy/a"},
        {"policyName": "b", "policyArn": f"{ARN}:policy/b"},
    ]


# -- versions ----------------------------------------------------------------------------------


def test_create_version_shape_and_default(registry: Registry) -> None:
    registry.policies.create("p", ALLOW_ALL)
    created = registry.policies.create_version("p", PUBLISH_ONLY)
    assert set(created) == {"policyArn", "policyDocument", "policyVersionId", "isDefaultVersion"}
    assert (created["policyVersionId"], created["isDefaultVersion"]) == ("2", False)
    assert registry.policies.get("p")["defaultVersionId"] == "1"
    created = registry.policies.create_version("p", PUBLISH_ONLY, set_as_default=True)
    assert (created["policyVersionId"], created["isDefaultVersion"]) == ("3", True)
    assert registry.policies.get("p")["defaultVersionId"] == "3"


def test_at_most_five_versions(registry: Registry) -> None:
    registry.policies.create("p", ALLOW_ALL)
    for _ in range(4):
        registry.policies.create_version("p", PUBLISH_ONLY)
    with pytest.raises(VersionsLimitExceeded, match="delete-version"):
        registry.policies.create_version("p", PUBLISH_ONLY)
    registry.policies.delete_version("p", 2)
    # Version ids are never reused (AWS).
    assert registry.policies.create_version("p", PUBLISH_ONLY)["policyVersionId"] == "6"


def test_list_versions_newest_first(registry: Registry) -> None:
    registry.policies.create("p", ALLOW_ALL)
    registry.policies.create_version("p", PUBLISH_ONLY)
    registry.policies.set_default_version("p", 2)
    versions = registry.policies.list_versions("p")
    assert [(v["versionId"], v["isDefaultVersion"]) for v in versions] == [
        ("2", True),
        ("1", False),
    ]
    assert isinstance(versions[0]["createDate"], float)


def test_set_default_version(registry: Registry) -> None:
    registry.policies.create("p", ALLOW_ALL)
    registry.policies.create_version("p", PUBLISH_ONLY)
    assert registry.policies.set_default_version("p", 2) == {}
    assert _same_json(registry.policies.get("p")["policyDocument"], PUBLISH_ONLY)
    with pytest.raises(ResourceNotFound, match="no version 7"):
        registry.policies.set_default_version("p", 7)


def test_the_default_version_cannot_be_deleted(registry: Registry) -> None:
    registry.policies.create("p", ALLOW_ALL)
    registry.policies.create_version("p", PUBLISH_ONLY)
    with pytest.raises(DeleteConflict, match="default"):
        registry.policies.delete_version("p", 1)
    assert registry.policies.delete_version("p", 2) == {}
    assert [v["versionId"] for v in registry.policies.list_versions("p")] == ["1"]
    with pytest.raises(ResourceNotFound):
        registry.policies.delete_version("p", 2)


def test_a_malformed_version_is_refused(registry: Registry) -> None:
    registry.policies.create("p", ALLOW_ALL)
    with pytest.raises(MalformedPolicy):
        registry.policies.create_version("p", "[]")
    assert len(registry.policies.list_versions("p")) == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.policies.get("ghost"),
        lambda r: r.policies.create_version("ghost", ALLOW_ALL),
        lambda r: r.policies.set_default_version("ghost", 1),
        lambda r: r.policies.list_versions("ghost"),
        lambda r: r.policies.delete_version("ghost", 1),
        lambda r: r.policies.delete("ghost"),
        lambda r: r.policies.targets("ghost"),
        lambda r: r.policies.attach("ghost", "thinggroup", "g"),
    ],
    ids=[
        "get",
        "create-version",
        "set-default",
        "versions",
        "delete-version",
        "delete",
        "targets",
        "attach",
    ],
)
def test_a_missing_policy_is_not_found(
    registry: Registry, call: Callable[[Registry], object]
) -> None:
    registry.things.create_group("g")
    with pytest.raises(ResourceNotFound, match="no policy named 'ghost'"):
        call(registry)


# -- attachments -------------------------------------------------------------------------------


def test_attach_to_a_certificate_and_a_group(registry: Registry, issue_cert: IssueCert) -> None:
    cert = issue_cert()
    registry.things.create_group("g")
    registry.policies.create("p", ALLOW_ALL)
    registry.policies.create("q", ALLOW_ALL)
    assert (
        registry.policies.attach("p", *registry.policies.parse_target(cert["certificateArn"])) == {}
    )
    registry.policies.attach("p", "cert", cert["certificateId"])  # idempotent
    registry.policies.attach("q", "cert", cert["certificateId"])
    registry.policies.attach("p", *registry.policies.parse_target(f"{ARN}:thinggroup/g"))
    assert registry.policies.attached_to("cert", cert["certificateArn"]) == [
        {"policyName": "p", "policyArn": f"{ARN}:policy/p"},
        {"policyName": "q", "policyArn": f"{ARN}:policy/q"},
    ]
    assert registry.policies.attached_to("thinggroup", "g") == [
        {"policyName": "p", "policyArn": f"{ARN}:policy/p"}
    ]
    assert sorted(registry.policies.targets("p"), key=lambda t: t["type"]) == [
        {"type": "cert", "target": cert["certificateId"], "arn": cert["certificateArn"]},
        {"type": "thinggroup", "target": "g", "arn": f"{ARN}:thinggroup/g"},
    ]


def test_detach(registry: Registry, issue_cert: IssueCert) -> None:
    cert = issue_cert()
    registry.policies.create("p", ALLOW_ALL)
    registry.policies.attach("p", "cert", cert["certificateId"])
    assert registry.policies.detach("p", "cert", cert["certificateArn"]) == {}
    assert registry.policies.attached_to("cert", cert["certificateId"]) == []
    with pytest.raises(ResourceNotFound, match="not attached"):
        registry.policies.detach("p", "cert", cert["certificateId"])


@pytest.mark.parametrize(
    ("target_type", "target", "error"),
    [
        ("cert", "0" * 64, ResourceNotFound),
        ("thinggroup", "ghost", ResourceNotFound),
        ("thing", "dev-1", InvalidRequest),
        ("cert", "not-an-id", InvalidRequest),
    ],
)
def test_attach_to_something_missing_or_unsupported(
    registry: Registry, target_type: str, target: str, error: type[Exception]
) -> None:
    registry.policies.create("p", ALLOW_ALL)
    with pytest.raises(error):
        registry.policies.attach("p", target_type, target)


def test_at_most_ten_policies_per_certificate(registry: Registry, issue_cert: IssueCert) -> None:
    cert_id = issue_cert()["certificateId"]
    for i in range(11):
        registry.policies.create(f"p{i}", ALLOW_ALL)
    for i in range(10):
        registry.policies.attach(f"p{i}", "cert", cert_id)
    with pytest.raises(LimitExceeded, match="10 policies"):
        registry.policies.attach("p10", "cert", cert_id)


def test_delete_rules(registry: Registry, issue_cert: IssueCert) -> None:
    cert_id = issue_cert()["certificateId"]
    registry.policies.create("p", ALLOW_ALL)
    registry.policies.attach("p", "cert", cert_id)
    with pytest.raises(DeleteConflict, match="detach it first"):
        registry.policies.delete("p")
    registry.policies.detach("p", "cert", cert_id)
    registry.policies.create_version("p", PUBLISH_ONLY)
    with pytest.raises(DeleteConflict, match="non-default"):
        registry.policies.delete("p")
    registry.policies.delete_version("p", 2)
    assert registry.policies.delete("p") == {}
    assert registry.policies.list_policies() == []
    registry.policies.create("p", ALLOW_ALL)  # the name is free again
    assert registry.policies.get("p")["defaultVersionId"] == "1"


def test_deleting_a_group_detaches_its_policies(registry: Registry) -> None:
    registry.things.create_group("g")
    registry.policies.create("p", ALLOW_ALL)
    registry.policies.attach("p", "thinggroup", "g")
    registry.things.delete_group("g")
    assert registry.policies.targets("p") == []
    registry.policies.delete("p")


CERT_ID = "ab" * 32


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (CERT_ID, ("cert", CERT_ID)),
        (CERT_ID.upper(), ("cert", CERT_ID)),
        ("0x" + CERT_ID, ("cert", CERT_ID)),
        (f"{ARN}:cert/{CERT_ID}", ("cert", CERT_ID)),
        (f"arn:aws:iot:eu-west-1:123456789012:cert/{CERT_ID}", ("cert", CERT_ID)),
        (f"{ARN}:thinggroup/my-group", ("thinggroup", "my-group")),
    ],
)
def test_parse_target(registry: Registry, target: str, expected: tuple[str, str]) -> None:
    assert registry.policies.parse_target(target) == expected


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("target", "message"),
    [
        (f"{ARN}:thing/dev-1", "not to a 'thing'"),
        ("arn:aws:s3:::bucket/key", "not an AWS IoT ARN"),
        ("arn:aws:iot:us-east-1:000000000000:nokind", "not an AWS IoT ARN"),
        ("my-group", "certificate id"),
    ],
)
def test_parse_target_refuses(registry: Registry, target: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        registry.policies.parse_target(target)


@SQLITE_ONLY
def test_documents_are_kept_as_sent_and_capped_at_awss_2048_characters(
    registry: Registry,
) -> None:
    sent = (
        '{"Version": "2012-10-17",\n'
        '  "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}'
    )
    registry.policies.create("as-sent", sent)
    assert registry.policies.get("as-sent")["policyDocument"] == sent
    # Whitespace does not count (AWS), so a well-indented policy is not penalised.
    padded = sent.replace("\n", "\n" + " " * 3000)
    registry.policies.create("padded", padded)
    resources = [f"arn:aws:iot:us-east-1:000000000000:topic/t{n:04}" for n in range(60)]
    too_long = policy_document({"Effect": "Allow", "Action": "iot:Publish", "Resource": resources})
    with pytest.raises(MalformedPolicy, match="2048"):
        registry.policies.create("too-long", too_long)
