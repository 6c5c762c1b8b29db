"""registry/cert_store.py: issuing, registering and managing certificates and CA certificates,
and attaching certificates to things, with AWS's shapes and errors (reference section 3)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from registry.ca import DevelopmentCA
from registry.errors import (
    CertificateState,
    CertificateValidation,
    DeleteConflict,
    InvalidRequest,
    RegistryError,
    ResourceAlreadyExists,
    ResourceNotFound,
)
from registry.service import Registry
from tests.certs import CertificateAuthority, Issued
from tests.registry.conftest import (
    ALLOW_ALL,
    SQLITE_ONLY,
    IssueCert,
    csr_pem,
    self_signed_pem,
)

ARN = "arn:aws:iot:us-east-1:000000000000"


def _der_id(pem: str | bytes) -> str:
    data = pem.encode() if isinstance(pem, str) else pem
    cert = x509.load_pem_x509_certificate(data)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _status(registry: Registry, cert_id: str) -> str:
    return str(registry.certs.describe(cert_id)["certificateDescription"]["status"])


@pytest.fixture(scope="module")
def external_ca() -> CertificateAuthority:
    """A CA from elsewhere (a manufacturer's), not the development CA."""
    return CertificateAuthority("manufacturer CA")


def _pem(issued: Issued) -> str:
    return issued.cert_pem().decode()


# -- issuing with the development CA -----------------------------------------------------------


@pytest.mark.parametrize(("active", "status"), [(True, "ACTIVE"), (False, "INACTIVE")])
def test_create_keys_and_certificate(
    registry: Registry, ca: DevelopmentCA, active: bool, status: str
) -> None:
    created = registry.certs.create_keys_and_certificate(set_active=active, key_type="ec")
    assert set(created) == {"certificateArn", "certificateId", "certificatePem", "keyPair"}
    assert set(created["keyPair"]) == {"PublicKey", "PrivateKey"}
    assert "PRIVATE KEY" in created["keyPair"]["PrivateKey"]
    assert created["certificateId"] == _der_id(created["certificatePem"])
    assert created["certificateArn"] == f"{ARN}:cert/{created['certificateId']}"
    assert _status(registry, created["certificateId"]) == status
    described = registry.certs.describe(created["certificateId"])["certificateDescription"]
    assert described["caCertificateId"] == ca.certificate_id


def test_the_default_key_is_2048_bit_rsa_as_in_aws(registry: Registry, ca: DevelopmentCA) -> None:
    created = registry.certs.create_keys_and_certificate()
    key = x509.load_pem_x509_certificate(created["certificatePem"].encode()).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 2048


def test_issuing_registers_the_development_ca_once(
    registry: Registry, ca: DevelopmentCA, issue_cert: IssueCert
) -> None:
    issue_cert()
    issue_cert()
    cas = registry.certs.list_cas()
    assert [(c["certificateId"], c["builtin"], c["status"]) for c in cas] == [
        (ca.certificate_id, True, "ACTIVE")
    ]


def test_issuing_without_a_ca_says_how_to_make_one(registry: Registry) -> None:
    with pytest.raises(CertificateValidation, match="thingcore ca init"):
        registry.certs.create_keys_and_certificate(key_type="ec")


def test_create_from_csr(registry: Registry, ca: DevelopmentCA) -> None:
    request = csr_pem("from-csr")
    created = registry.certs.create_from_csr(request, set_active=True)
    assert set(created) == {"certificateArn", "certificateId", "certificatePem"}
    cert = x509.load_pem_x509_certificate(created["certificatePem"].encode())
    csr = x509.load_pem_x509_csr(request.encode())
    assert cert.public_key() == csr.public_key()
    assert cert.subject == csr.subject
    assert created["certificateId"] == _der_id(created["certificatePem"])
    assert _status(registry, created["certificateId"]) == "ACTIVE"


@pytest.mark.parametrize("text", ["not a csr", "-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_create_from_a_bad_csr(registry: Registry, ca: DevelopmentCA, text: str) -> None:
    with pytest.raises(CertificateValidation, match="certificate signing request"):
        registry.certs.create_from_csr(text)


# -- registering -------------------------------------------------------------------------------


def test_register_with_a_registered_ca(
    registry: Registry, external_ca: CertificateAuthority
) -> None:
    ca_pem = _pem(external_ca.ca)
    ca_created = registry.certs.register_ca(ca_pem)
    ca_id = _der_id(ca_pem)
    assert ca_created == {"certificateArn": f"{ARN}:cacert/{ca_id}", "certificateId": ca_id}
    device = external_ca.issue("device-1", server=False)
    created = registry.certs.register(_pem(device))
    cert_id = _der_id(_pem(device))
    assert created == {"certificateArn": f"{ARN}:cert/{cert_id}", "certificateId": cert_id}
    described = registry.certs.describe(cert_id)["certificateDescription"]
    assert described["status"] == "INACTIVE"
    assert described["caCertificateId"] == ca_id
    # Naming the CA explicitly works too (AWS's caCertificatePem).
    other = external_ca.issue("device-2", server=False)
    registry.certs.register(_pem(other), ca_pem=ca_pem, status="ACTIVE")
    assert _status(registry, _der_id(_pem(other))) == "ACTIVE"


def test_register_without_its_ca_registered_says_register_the_ca(
    registry: Registry, external_ca: CertificateAuthority
) -> None:
    device = _pem(external_ca.issue("device-1", server=False))
    with pytest.raises(CertificateValidation, match="thingcore ca register"):
        registry.certs.register(device)
    with pytest.raises(CertificateValidation, match="thingcore ca register"):
        registry.certs.register(device, ca_pem=_pem(external_ca.ca))
    with pytest.raises(ResourceNotFound):
        registry.certs.describe(_der_id(device))


def test_register_twice_already_exists(
    registry: Registry, external_ca: CertificateAuthority
) -> None:
    registry.certs.register_ca(_pem(external_ca.ca))
    device = _pem(external_ca.issue("device-1", server=False))
    registry.certs.register(device)
    with pytest.raises(ResourceAlreadyExists):
        registry.certs.register(device)


def test_register_a_self_signed_certificate_points_to_without_ca(registry: Registry) -> None:
    with pytest.raises(CertificateValidation, match="--without-ca"):
        registry.certs.register(self_signed_pem())


def test_register_without_ca(registry: Registry) -> None:
    pem = self_signed_pem()
    created = registry.certs.register_without_ca(pem, status="ACTIVE")
    cert_id = _der_id(pem)
    assert created == {"certificateArn": f"{ARN}:cert/{cert_id}", "certificateId": cert_id}
    described = registry.certs.describe(cert_id)["certificateDescription"]
    assert described["status"] == "ACTIVE"
    assert "caCertificateId" not in described


def test_register_without_ca_refuses_a_ca_signed_certificate(
    registry: Registry, external_ca: CertificateAuthority
) -> None:
    device = _pem(external_ca.issue("device-1", server=False))
    with pytest.raises(CertificateValidation, match="only a self-signed certificate"):
        registry.certs.register_without_ca(device)
    with pytest.raises(CertificateValidation, match="ca register"):
        registry.certs.register_without_ca(_pem(external_ca.ca))


@SQLITE_ONLY
@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.certs.register("garbage"),
        lambda r: r.certs.register_without_ca("garbage"),
        lambda r: r.certs.register_ca("garbage"),
    ],
    ids=["register", "without-ca", "ca"],
)
def test_garbage_is_a_certificate_validation_error(
    registry: Registry, call: Callable[[Registry], object]
) -> None:
    with pytest.raises(CertificateValidation, match="not a PEM certificate"):
        call(registry)


@SQLITE_ONLY
@pytest.mark.parametrize("status", ["PENDING_TRANSFER", "PENDING_ACTIVATION", "nonsense"])
def test_register_with_a_status_aws_refuses(registry: Registry, status: str) -> None:
    with pytest.raises(InvalidRequest, match="ACTIVE, INACTIVE, REVOKED"):
        registry.certs.register_without_ca(self_signed_pem(), status=status)


# -- describing and listing --------------------------------------------------------------------


def test_describe_shape(registry: Registry, ca: DevelopmentCA, issue_cert: IssueCert) -> None:
    created = issue_cert(common_name="shape")
    described = registry.certs.describe(created["certificateArn"])["certificateDescription"]
    cert = x509.load_pem_x509_certificate(created["certificatePem"].encode())
    assert described == {
        "certificateArn": created["certificateArn"],
        "certificateId": created["certificateId"],
        "caCertificateId": ca.certificate_id,
        "status": "ACTIVE",
        "certificatePem": created["certificatePem"],
        "ownedBy": "000000000000",
        "creationDate": described["creationDate"],
        "lastModifiedDate": described["lastModifiedDate"],
        "customerVersion": 1,
        "validity": {
            "notBefore": cert.not_valid_before_utc.timestamp(),
            "notAfter": cert.not_valid_after_utc.timestamp(),
        },
        "certificateMode": "DEFAULT",
        "subject": cert.subject.rfc4514_string(),
    }
    assert isinstance(described["creationDate"], float)


@SQLITE_ONLY
@pytest.mark.parametrize("cert_id", ["abc", "g" * 64, "0x" + "0" * 63])
def test_a_malformed_certificate_id_is_invalid(registry: Registry, cert_id: str) -> None:
    with pytest.raises(InvalidRequest, match="64 hex digits"):
        registry.certs.describe(cert_id)


def test_ids_are_accepted_in_any_case_with_0x_or_as_arns(
    registry: Registry, issue_cert: IssueCert
) -> None:
    created = issue_cert()
    cert_id = created["certificateId"]
    for form in (cert_id.upper(), "0x" + cert_id, created["certificateArn"]):
        assert registry.certs.describe(form)["certificateDescription"]["certificateId"] == cert_id


def test_describe_a_missing_certificate(registry: Registry) -> None:
    with pytest.raises(ResourceNotFound, match="certs list"):
        registry.certs.describe("0" * 64)


def test_list_certificates_pages_and_filters_by_ca(
    registry: Registry, issue_cert: IssueCert, external_ca: CertificateAuthority
) -> None:
    issued = [issue_cert()["certificateId"] for _ in range(3)]
    registry.certs.register_without_ca(self_signed_pem())
    first = registry.certs.list_certificates(max_results=2)
    second = registry.certs.list_certificates(max_results=2, next_token=first.next_token)
    assert second.next_token is None
    listed = [c["certificateId"] for c in first.items + second.items]
    assert len(listed) == len(set(listed)) == 4
    assert set(first.items[0]) == {
        "certificateArn",
        "certificateId",
        "status",
        "subject",
        "certificateMode",
        "creationDate",
        "notAfter",
    }
    ca_id = registry.certs.list_cas()[0]["certificateId"]
    by_ca = registry.certs.list_certificates(ca_id=ca_id).items
    assert sorted(c["certificateId"] for c in by_ca) == sorted(issued)


# -- status ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "new", "error"),
    [
        ("ACTIVE", "INACTIVE", None),
        ("INACTIVE", "ACTIVE", None),
        ("ACTIVE", "ACTIVE", None),
        ("ACTIVE", "REVOKED", None),
        ("INACTIVE", "REVOKED", None),
        ("REVOKED", "REVOKED", None),
        ("REVOKED", "ACTIVE", CertificateState),
        ("REVOKED", "INACTIVE", CertificateState),
        ("ACTIVE", "PENDING_TRANSFER", InvalidRequest),
        ("ACTIVE", "REGISTER_INACTIVE", InvalidRequest),
    ],
)
def test_status_transitions(
    registry: Registry,
    issue_cert: IssueCert,
    start: str,
    new: str,
    error: type[RegistryError] | None,
) -> None:
    cert_id = issue_cert(active=start == "ACTIVE")["certificateId"]
    if start == "REVOKED":
        registry.certs.update_status(cert_id, "REVOKED")
    if error is None:
        assert registry.certs.update_status(cert_id, new) == {}
        assert _status(registry, cert_id) == new
    else:
        with pytest.raises(error):
            registry.certs.update_status(cert_id, new)
        assert _status(registry, cert_id) == start


def test_status_is_case_insensitive(registry: Registry, issue_cert: IssueCert) -> None:
    cert_id = issue_cert()["certificateId"]
    registry.certs.update_status(cert_id, "inactive")
    assert _status(registry, cert_id) == "INACTIVE"


def test_revoked_serials_are_the_cas_crl(
    registry: Registry, ca: DevelopmentCA, issue_cert: IssueCert
) -> None:
    certs = [issue_cert() for _ in range(3)]
    for cert in certs[:2]:
        registry.certs.update_status(cert["certificateId"], "REVOKED")
    serials = {
        x509.load_pem_x509_certificate(c["certificatePem"].encode()).serial_number
        for c in certs[:2]
    }
    revoked = registry.certs.revoked_serials(ca.certificate_id)
    assert {serial for serial, _ in revoked} == serials
    assert all(isinstance(when, float) for _, when in revoked)
    assert registry.certs.revoked_serials("0" * 64) == []


# -- deleting ----------------------------------------------------------------------------------


def test_an_active_certificate_cannot_be_deleted(registry: Registry, issue_cert: IssueCert) -> None:
    cert_id = issue_cert()["certificateId"]
    with pytest.raises(CertificateState, match="deactivate or revoke it first"):
        registry.certs.delete(cert_id)
    with pytest.raises(CertificateState):
        registry.certs.delete(cert_id, force=True)


@pytest.mark.parametrize("attached", ["thing", "policy"])
def test_an_attached_certificate_is_deleted_only_with_force(
    registry: Registry, issue_cert: IssueCert, attached: str
) -> None:
    cert_id = issue_cert(active=False)["certificateId"]
    registry.things.create("dev-1")
    registry.policies.create("p", ALLOW_ALL)
    if attached == "thing":
        registry.certs.attach_thing("dev-1", cert_id)
    else:
        registry.policies.attach("p", "cert", cert_id)
    with pytest.raises(DeleteConflict, match=f"{attached} .*--force"):
        registry.certs.delete(cert_id)
    assert registry.certs.delete(cert_id, force=True) == {}
    with pytest.raises(ResourceNotFound):
        registry.certs.describe(cert_id)
    assert registry.certs.thing_principals("dev-1") == []
    assert registry.policies.targets("p") == []


def test_a_revoked_unattached_certificate_is_deleted(
    registry: Registry, issue_cert: IssueCert
) -> None:
    cert_id = issue_cert()["certificateId"]
    registry.certs.update_status(cert_id, "REVOKED")
    assert registry.certs.delete(cert_id) == {}
    with pytest.raises(ResourceNotFound):
        registry.certs.delete(cert_id)


# -- CA certificates ---------------------------------------------------------------------------


def test_register_ca_rules(registry: Registry, external_ca: CertificateAuthority) -> None:
    with pytest.raises(CertificateValidation, match="not a CA certificate"):
        registry.certs.register_ca(_pem(external_ca.issue("leaf", server=False)))
    registry.certs.register_ca(_pem(external_ca.ca), set_active=False)
    with pytest.raises(ResourceAlreadyExists):
        registry.certs.register_ca(_pem(external_ca.ca))
    assert registry.certs.list_cas()[0]["status"] == "INACTIVE"


def test_describe_ca_shape(registry: Registry, external_ca: CertificateAuthority) -> None:
    ca_pem = _pem(external_ca.ca)
    ca_id = registry.certs.register_ca(ca_pem)["certificateId"]
    described = registry.certs.describe_ca(f"{ARN}:cacert/{ca_id}")["certificateDescription"]
    cert = external_ca.ca.cert
    assert described == {
        "certificateArn": f"{ARN}:cacert/{ca_id}",
        "certificateId": ca_id,
        "status": "ACTIVE",
        "certificatePem": ca_pem,
        "ownedBy": "000000000000",
        "creationDate": described["creationDate"],
        "lastModifiedDate": described["lastModifiedDate"],
        "autoRegistrationStatus": "DISABLE",
        "validity": {
            "notBefore": cert.not_valid_before_utc.timestamp(),
            "notAfter": cert.not_valid_after_utc.timestamp(),
        },
        "certificateMode": "DEFAULT",
        "subject": cert.subject.rfc4514_string(),
        "builtin": False,
    }
    with pytest.raises(ResourceNotFound, match="ca list"):
        registry.certs.describe_ca("0" * 64)


def test_update_ca_status(registry: Registry, external_ca: CertificateAuthority) -> None:
    ca_id = registry.certs.register_ca(_pem(external_ca.ca))["certificateId"]
    assert registry.certs.update_ca(ca_id, "INACTIVE") == {}
    assert registry.certs.describe_ca(ca_id)["certificateDescription"]["status"] == "INACTIVE"
    with pytest.raises(InvalidRequest, match="ACTIVE, INACTIVE"):
        registry.certs.update_ca(ca_id, "REVOKED")


def test_delete_ca_rules(registry: Registry, external_ca: CertificateAuthority) -> None:
    ca_id = registry.certs.register_ca(_pem(external_ca.ca))["certificateId"]
    device = registry.certs.register(_pem(external_ca.issue("d", server=False)))
    with pytest.raises(CertificateState, match="set it INACTIVE first"):
        registry.certs.delete_ca(ca_id)
    registry.certs.update_ca(ca_id, "INACTIVE")
    with pytest.raises(CertificateState, match="still has registered certificates"):
        registry.certs.delete_ca(ca_id)
    registry.certs.delete(device["certificateId"])
    assert registry.certs.delete_ca(ca_id) == {}
    assert registry.certs.list_cas() == []


# -- things <-> certificates -------------------------------------------------------------------


def test_attach_and_detach_thing_principals(registry: Registry, issue_cert: IssueCert) -> None:
    first, second = issue_cert(), issue_cert()
    registry.things.create("dev-1")
    registry.things.create("dev-2")
    assert registry.certs.attach_thing("dev-1", first["certificateArn"]) == {}
    registry.certs.attach_thing("dev-1", first["certificateId"])  # idempotent
    registry.certs.attach_thing("dev-1", second["certificateId"])
    registry.certs.attach_thing("dev-2", first["certificateId"])
    assert registry.certs.thing_principals("dev-1") == sorted(
        [first["certificateArn"], second["certificateArn"]]
    )
    assert registry.certs.principal_things(first["certificateArn"]) == ["dev-1", "dev-2"]
    assert registry.certs.detach_thing("dev-1", first["certificateArn"]) == {}
    assert registry.certs.thing_principals("dev-1") == [second["certificateArn"]]
    with pytest.raises(ResourceNotFound, match="not attached"):
        registry.certs.detach_thing("dev-1", first["certificateId"])


def test_attach_needs_the_thing_and_the_certificate(
    registry: Registry, issue_cert: IssueCert
) -> None:
    cert_id = issue_cert()["certificateId"]
    registry.things.create("dev-1")
    with pytest.raises(ResourceNotFound, match="ghost"):
        registry.certs.attach_thing("ghost", cert_id)
    with pytest.raises(ResourceNotFound, match="no certificate"):
        registry.certs.attach_thing("dev-1", "0" * 64)
    with pytest.raises(ResourceNotFound, match="ghost"):
        registry.certs.thing_principals("ghost")
