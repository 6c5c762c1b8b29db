"""registry/index.py: the in-memory snapshot the broker's hooks read, loaded from the registry."""

from __future__ import annotations

import pytest

from registry.ca import DevelopmentCA
from registry.index import CaInfo, CertInfo, IdentityIndex, ThingInfo, load_index
from registry.models import PolicyVersion
from registry.service import Registry
from tests.certs import CertificateAuthority
from tests.registry.conftest import IssueCert, policy_document, self_signed_pem


def _load(registry: Registry) -> IdentityIndex:
    with registry.db.session() as session:
        return load_index(session)


def _actions(index: IdentityIndex, policy: str) -> list[str]:
    return [a for s in index.policies[policy].statements for a in s.actions]


def _allow(action: str) -> str:
    return policy_document({"Effect": "Allow", "Action": action, "Resource": "*"})


def test_an_empty_registry_gives_an_empty_index(registry: Registry) -> None:
    index = _load(registry)
    assert index == IdentityIndex()
    assert index.trust_anchors() == ""
    assert index.policies_for("0" * 64, "thing") == ()


def test_certificates_cas_and_things(
    registry: Registry, ca: DevelopmentCA, issue_cert: IssueCert
) -> None:
    registry.things.create_type("sensor")
    registry.things.create("dev-1", thing_type="sensor", attributes={"room": "k1"})
    created = issue_cert(active=False, common_name="dev-1")
    index = _load(registry)
    described = registry.certs.describe(created["certificateId"])["certificateDescription"]
    assert index.certs == {
        created["certificateId"]: CertInfo(
            id=created["certificateId"],
            status="INACTIVE",
            ca_id=ca.certificate_id,
            not_before=described["validity"]["notBefore"],
            not_after=described["validity"]["notAfter"],
            subject=described["subject"],
            pem=created["certificatePem"],
        )
    }
    assert index.cas == {
        ca.certificate_id: CaInfo(
            id=ca.certificate_id,
            status="ACTIVE",
            not_after=ca.certificate.not_valid_after_utc.timestamp(),
            subject=ca.certificate.subject.rfc4514_string(),
            pem=ca.certificate_pem,
        )
    }
    assert index.things == {"dev-1": ThingInfo("dev-1", "sensor", {"room": "k1"})}


def test_cert_things(registry: Registry, issue_cert: IssueCert) -> None:
    shared, single, loose = issue_cert(), issue_cert(), issue_cert()
    for thing in ("a", "b"):
        registry.things.create(thing)
        registry.certs.attach_thing(thing, shared["certificateId"])
    registry.certs.attach_thing("a", single["certificateId"])
    index = _load(registry)
    assert index.cert_things == {
        shared["certificateId"]: frozenset({"a", "b"}),
        single["certificateId"]: frozenset({"a"}),
    }
    assert loose["certificateId"] not in index.cert_things


def test_thing_groups_include_ancestors_nearest_first(registry: Registry) -> None:
    registry.things.create_group("root")
    registry.things.create_group("mid", parent="root")
    registry.things.create_group("leaf", parent="mid")
    registry.things.create_group("elsewhere")
    for thing in ("deep", "shallow", "loner"):
        registry.things.create(thing)
    registry.things.add_thing_to_group("leaf", "deep")
    registry.things.add_thing_to_group("elsewhere", "deep")
    registry.things.add_thing_to_group("root", "shallow")
    index = _load(registry)
    assert set(index.thing_groups) == {"deep", "shallow"}
    deep = index.thing_groups["deep"]
    assert sorted(deep) == ["elsewhere", "leaf", "mid", "root"]
    assert deep.index("leaf") < deep.index("mid") < deep.index("root")
    assert index.thing_groups["shallow"] == ("root",)


def test_only_the_default_version_of_a_policy_is_loaded(registry: Registry) -> None:
    registry.policies.create("p", _allow("iot:Publish"))
    registry.policies.create_version("p", _allow("iot:Subscribe"))
    assert _actions(_load(registry), "p") == ["iot:Publish"]
    registry.policies.set_default_version("p", 2)
    index = _load(registry)
    assert _actions(index, "p") == ["iot:Subscribe"]
    assert index.policies["p"].name == "p"


def test_a_stored_policy_that_no_longer_parses_is_reported_not_loaded(
    registry: Registry,
) -> None:
    registry.policies.create("p", _allow("iot:Publish"))
    with registry.db.session() as session:
        # Only possible across versions (an older parser accepted it); written directly here.
        session.add(PolicyVersion(policy="p", version=2, document="{}", created_at=0.0))
    registry.policies.set_default_version("p", 2)
    index = _load(registry)
    assert "p" not in index.policies
    assert "policy 'p'" in index.broken_policies["p"]


def test_policy_attachments_and_policies_for(registry: Registry, issue_cert: IssueCert) -> None:
    cert = issue_cert()["certificateId"]
    other = issue_cert()["certificateId"]
    for name in ("b-cert", "a-cert", "root-p", "leaf-p", "shared"):
        registry.policies.create(name, _allow("iot:Connect"))
    registry.things.create_group("root")
    registry.things.create_group("leaf", parent="root")
    registry.things.create("dev-1")
    registry.things.add_thing_to_group("leaf", "dev-1")
    for policy, target_type, target in [
        ("b-cert", "cert", cert),
        ("a-cert", "cert", cert),
        ("shared", "cert", cert),
        ("root-p", "thinggroup", "root"),
        ("leaf-p", "thinggroup", "leaf"),
        ("shared", "thinggroup", "leaf"),
    ]:
        registry.policies.attach(policy, target_type, target)
    index = _load(registry)
    assert index.cert_policies == {cert: ("a-cert", "b-cert", "shared")}
    assert index.group_policies == {"root": ("root-p",), "leaf": ("leaf-p", "shared")}

    def names(cert_id: str | None, thing: str | None) -> list[str]:
        return [p.name for p in index.policies_for(cert_id, thing)]

    assert names(cert, None) == ["a-cert", "b-cert", "shared"]
    assert names(cert, "dev-1") == ["a-cert", "b-cert", "shared", "leaf-p", "root-p"]
    assert names(other, "dev-1") == ["leaf-p", "shared", "root-p"]
    assert names(None, None) == []


def test_trust_anchors(registry: Registry, ca: DevelopmentCA, issue_cert: IssueCert) -> None:
    issued = issue_cert()
    external = CertificateAuthority("inactive external CA")
    external_pem = external.ca.cert_pem().decode()
    registry.certs.register_ca(external_pem, set_active=False)
    device = external.issue("external-device", server=False).cert_pem().decode()
    registry.certs.register(device)
    lonely = self_signed_pem("lonely")
    registry.certs.register_without_ca(lonely, status="INACTIVE")
    anchors = _load(registry).trust_anchors()
    for pem in (ca.certificate_pem, external_pem, lonely):
        assert pem in anchors
    for pem in (issued["certificatePem"], device):
        assert pem not in anchors
    assert anchors.count("-----BEGIN CERTIFICATE-----") == 3
    assert anchors.endswith("-----END CERTIFICATE-----\n")


@pytest.mark.parametrize("status", ["ACTIVE", "REVOKED"])
def test_status_changes_show_in_the_next_load(
    registry: Registry, issue_cert: IssueCert, status: str
) -> None:
    cert = issue_cert(active=False)["certificateId"]
    registry.certs.update_status(cert, status)
    assert _load(registry).certs[cert].status == status
