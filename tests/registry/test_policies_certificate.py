"""Certificate fields for ``iot:Certificate.*`` (registry/policies/certificate.py)."""

from __future__ import annotations

import datetime
import ipaddress
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from registry.policies import CertificateFields, RequestContext, evaluate, parse_policy
from tests.certs import CertificateAuthority

PREFIX = "arn:aws:iot:us-east-1:123456789012:"
SERIAL = 0x1234_5678_9ABC


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority("policy test CA")


@pytest.fixture(scope="module")
def rich_der(ca: CertificateAuthority) -> bytes:
    """A client certificate with many subject fields, two OUs and every SAN kind."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Berlin"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Berlin"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "eng"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "ops"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-42"),
            x509.NameAttribute(NameOID.TITLE, "sensor"),
            x509.NameAttribute(NameOID.PSEUDONYM, "p"),
            x509.NameAttribute(NameOID.DN_QUALIFIER, "q"),
            x509.NameAttribute(NameOID.COMMON_NAME, "device-7"),
        ]
    )
    directory = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dir")])
    sans: list[x509.GeneralName] = [
        x509.DNSName("a.example"),
        x509.DNSName("b.example"),
        x509.RFC822Name("dev@example.com"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
        x509.UniformResourceIdentifier("urn:device:7"),
        x509.DirectoryName(directory),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(SERIAL)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.IssuerAlternativeName([x509.DNSName("ca.example")]), critical=False)
        .sign(ca.ca.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def rich(rich_der: bytes) -> CertificateFields:
    return CertificateFields.from_der(rich_der)


def test_subject_fields(rich: CertificateFields) -> None:
    assert dict(rich.subject) == {
        "Country": ("DE",),
        "State": ("Berlin",),
        "Locality": ("Berlin",),
        "Organization": ("Acme",),
        "OrganizationalUnit": ("eng", "ops"),
        "SerialNumber": ("SN-42",),
        "Title": ("sensor",),
        "Pseudonym": ("p",),
        "DistinguishedNameQualifier": ("q",),
        "CommonName": ("device-7",),
    }


def test_issuer_serial_and_alternative_names(rich: CertificateFields) -> None:
    assert dict(rich.issuer) == {
        "Organization": ("thingcore tests",),
        "CommonName": ("policy test CA",),
    }
    assert rich.serial_number == str(SERIAL)
    assert dict(rich.san) == {
        "DNSName": ("a.example", "b.example"),
        "RFC822Name": ("dev@example.com",),
        "IPAddress": ("192.0.2.7",),
        "UniformResourceIdentifier": ("urn:device:7",),
        "DirectoryName": ("CN=dir",),
    }
    assert dict(rich.issuer_san) == {"DNSName": ("ca.example",)}


def test_certificate_without_extensions(ca: CertificateAuthority) -> None:
    fields = CertificateFields.from_der(ca.issue("plain", server=False).der)
    assert dict(fields.subject) == {"Organization": ("thingcore tests",), "CommonName": ("plain",)}
    assert dict(fields.san) == {}
    assert dict(fields.issuer_san) == {}


def test_not_a_certificate() -> None:
    with pytest.raises(ValueError):
        CertificateFields.from_der(b"\x30\x03\x02\x01\x00")


def allowed(resource: str, requested: str, fields: CertificateFields) -> bool:
    doc = parse_policy(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": {"Effect": "Allow", "Action": "iot:*", "Resource": PREFIX + resource},
            }
        )
    )
    ctx = RequestContext("device-7", certificate=fields)
    return evaluate([doc], "iot:Publish", PREFIX + requested, ctx).allowed


# fmt: off
CERTIFICATE_VARIABLES = [
    pytest.param("topic/${iot:Certificate.Subject.CommonName}", "topic/device-7", True,
                 id="subject-cn"),
    pytest.param("topic/${iot:Certificate.Subject.CommonName}", "topic/device-8", False,
                 id="subject-cn-other"),
    pytest.param("topic/${iot:Certificate.subject.commonname}", "topic/device-7", True,
                 id="name-any-case"),
    pytest.param("topic/${iot:Certificate.Subject.OrganizationalUnit}", "topic/eng", True,
                 id="multi-valued-gives-first"),
    pytest.param("topic/${iot:Certificate.Subject.OrganizationalUnit.2}", "topic/ops", True,
                 id="one-based-index"),
    pytest.param("topic/${iot:Certificate.Subject.OrganizationalUnit.List}", "topic/eng", False,
                 id="list-of-two-does-not-resolve-in-resource"),
    pytest.param("topic/${iot:Certificate.Subject.Country.List}", "topic/DE", True,
                 id="list-of-one-resolves"),
    pytest.param("topic/${iot:Certificate.Subject.Surname}", "topic/", False,
                 id="field-absent"),
    pytest.param("topic/${iot:Certificate.Subject.Shoesize}", "topic/", False,
                 id="field-unknown"),
    pytest.param("topic/${iot:Certificate.Issuer.CommonName}", "topic/policy test CA", True,
                 id="issuer-cn"),
    pytest.param("topic/${iot:Certificate.Subject.AlternativeName.DNSName}", "topic/a.example",
                 True, id="san-dns-first"),
    pytest.param("topic/${iot:Certificate.Subject.AlternativeName.IPAddress}", "topic/192.0.2.7",
                 True, id="san-ip"),
    pytest.param("topic/${iot:Certificate.Subject.AlternativeName.RFC822Name}",
                 "topic/dev@example.com", True, id="san-email"),
    pytest.param("topic/${iot:Certificate.Issuer.AlternativeName.DNSName}", "topic/ca.example",
                 True, id="issuer-san"),
    pytest.param("topic/${iot:Certificate.SerialNumber}", f"topic/{SERIAL}", True,
                 id="serial-number-decimal"),
]
# fmt: on


@pytest.mark.parametrize(("resource", "requested", "expected"), CERTIFICATE_VARIABLES)
def test_certificate_variables(
    rich: CertificateFields, resource: str, requested: str, expected: bool
) -> None:
    assert allowed(resource, requested, rich) is expected


def test_no_certificate_means_unresolved() -> None:
    doc = parse_policy(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": {
                    "Effect": "Allow",
                    "Action": "iot:Connect",
                    "Resource": PREFIX + "client/${iot:Certificate.Subject.CommonName}",
                },
            }
        )
    )
    ctx = RequestContext("device-7")
    assert not evaluate([doc], "iot:Connect", PREFIX + "client/device-7", ctx).allowed


def test_client_id_must_equal_common_name(ca: CertificateAuthority) -> None:
    """A common pattern: a device may connect only as the CN of its certificate."""
    doc = parse_policy(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": {
                    "Effect": "Allow",
                    "Action": "iot:Connect",
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": {"iot:ClientId": "${iot:Certificate.Subject.CommonName}"}
                    },
                },
            }
        ),
        "cn-is-client-id",
    )
    fields = CertificateFields.from_der(ca.issue("sensor-3", server=False).der)
    resource = PREFIX + "client/x"
    assert evaluate(
        [doc], "iot:Connect", resource, RequestContext("sensor-3", certificate=fields)
    ).allowed
    assert not evaluate(
        [doc], "iot:Connect", resource, RequestContext("sensor-4", certificate=fields)
    ).allowed
