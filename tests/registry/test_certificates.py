"""The pure certificate helpers: ids, PEM parsing, who signed what, one-line descriptions."""

from __future__ import annotations

import datetime
import hashlib
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from registry.certificates import (
    CertificateError,
    certificate_der,
    certificate_id,
    certificate_pem,
    check_public_key,
    describe,
    describe_name,
    is_ca_certificate,
    is_self_signed,
    is_signed_by,
    load_certificate,
    load_certificates,
    load_csr,
    subject_common_name,
    validity,
)
from registry.errors import CertificateValidation
from tests.certs import CertificateAuthority, Issued
from thingcore.errors import ThingcoreError

_NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _name(common_name: str | None) -> x509.Name:
    if common_name is None:
        return x509.Name([])
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(
    subject: x509.Name,
    key: CertificateIssuerPrivateKeyTypes,
    *,
    issuer: x509.Name | None = None,
    signer: CertificateIssuerPrivateKeyTypes | None = None,
    ca: bool | None = None,
) -> x509.Certificate:
    """A certificate for ``key``, self-signed unless ``issuer``/``signer`` say otherwise.

    ``ca=None`` leaves BasicConstraints out altogether.
    """
    signer = signer or key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - datetime.timedelta(hours=1))
        .not_valid_after(_NOW + datetime.timedelta(days=1))
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, algorithm)


def _csr_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, common_name: str) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(common_name))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def authority() -> CertificateAuthority:
    return CertificateAuthority()


@pytest.fixture(scope="module")
def leaf(authority: CertificateAuthority) -> Issued:
    return authority.issue("device-1", server=False)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --- ids and encodings ---------------------------------------------------------------------


def test_certificate_id_is_lowercase_hex_sha256_of_der(leaf: Issued) -> None:
    der = certificate_der(leaf.cert)
    assert der == leaf.der
    cid = certificate_id(der)
    assert cid == hashlib.sha256(der).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)  # AWS: exactly 64 hex characters


def test_certificate_id_known_vector() -> None:
    assert certificate_id(b"") == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_pem_round_trips_as_text_and_bytes(leaf: Issued) -> None:
    pem = certificate_pem(leaf.cert)
    assert pem.startswith("-----BEGIN CERTIFICATE-----\n")
    assert pem.endswith("-----END CERTIFICATE-----\n")
    assert load_certificate(pem) == leaf.cert
    assert load_certificate(pem.encode()) == leaf.cert


def test_load_certificates_reads_a_chain_in_order_and_skips_other_blocks(
    authority: CertificateAuthority, leaf: Issued
) -> None:
    # A file as people keep them: key, leaf, then the CA.
    bundle = leaf.key_pem() + leaf.cert_pem() + authority.ca.cert_pem()
    assert load_certificates(bundle) == [leaf.cert, authority.ca.cert]
    assert load_certificate(bundle) == leaf.cert  # the first certificate is the leaf


def _garbage_cases() -> list[tuple[bytes | str, str]]:
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    cert = _cert(_name("x"), key)
    broken = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    return [
        (b"", "the input is empty"),
        ("   \n", "the input is empty"),
        ("hello", "no '-----BEGIN CERTIFICATE-----' block found"),
        (_csr_pem(key, "x"), "this is a certificate signing request"),
        (key_pem, "this is a private key, not a certificate"),
        (public_pem, "this is a public key, not a certificate"),
        (cert.public_bytes(serialization.Encoding.DER), "looks like DER"),
        (broken, "the CERTIFICATE block does not parse"),
        ("-----BEGIN CERTIFICATE-----\nMIIé\n", "non-ASCII character 'é'"),
    ]


@pytest.mark.parametrize(("data", "reason"), _garbage_cases())
def test_garbage_is_refused_with_a_reason(data: bytes | str, reason: str) -> None:
    with pytest.raises(CertificateError, match="^not a PEM certificate: ") as caught:
        load_certificate(data)
    assert reason in str(caught.value)


def test_certificate_error_maps_to_aws_certificate_validation() -> None:
    error = CertificateError("bad")
    assert isinstance(error, ThingcoreError)
    assert isinstance(error, CertificateValidation)
    assert error.aws_code == "CertificateValidationException"
    assert error.http_status == 400


# --- who signed what -----------------------------------------------------------------------


def test_root_is_self_signed_and_leaf_is_not(authority: CertificateAuthority, leaf: Issued) -> None:
    assert is_self_signed(authority.ca.cert)
    assert not is_self_signed(leaf.cert)


def test_self_signed_leaf_without_ca_flag_is_self_signed() -> None:
    # AWS "register without CA" takes such certificates.
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert(_name("lonely-device"), key)
    assert is_self_signed(cert)
    assert not is_ca_certificate(cert)


def test_same_name_as_issuer_is_not_enough_to_be_self_signed() -> None:
    # Issuer == subject, but another key signed it: a forgery, or a leaf named like its CA.
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    cert = _cert(_name("twin"), key, signer=other)
    assert cert.issuer == cert.subject
    assert not is_self_signed(cert)


def test_is_signed_by_matching_and_mismatched_pairs(
    authority: CertificateAuthority, leaf: Issued
) -> None:
    assert is_signed_by(leaf.cert, authority.ca.cert)
    assert is_signed_by(authority.ca.cert, authority.ca.cert)
    assert not is_signed_by(authority.ca.cert, leaf.cert)
    assert not is_signed_by(leaf.cert, leaf.cert)
    # Same name as the real CA, different key: the name matches, the signature does not.
    impostor = CertificateAuthority()
    assert impostor.ca.cert.subject == authority.ca.cert.subject
    assert not is_signed_by(leaf.cert, impostor.ca.cert)


def test_is_signed_by_checks_the_issuer_name() -> None:
    # Right key, wrong name: verifiers chain by name, so this is not "issued by".
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = _cert(_name("ca-a"), key, ca=True)
    leaf = _cert(
        _name("dev"), ec.generate_private_key(ec.SECP256R1()), issuer=_name("ca-b"), signer=key
    )
    assert not is_signed_by(leaf, issuer)


@pytest.mark.parametrize("kind", ["rsa", "ec", "ed25519"])
def test_is_signed_by_each_signature_algorithm(kind: str, rsa_key: rsa.RSAPrivateKey) -> None:
    issuer_key: CertificateIssuerPrivateKeyTypes
    if kind == "rsa":
        issuer_key = rsa_key  # PKCS#1 v1.5, what cryptography's builder signs with
    elif kind == "ec":
        issuer_key = ec.generate_private_key(ec.SECP384R1())
    else:
        issuer_key = ed25519.Ed25519PrivateKey.generate()
    issuer = _cert(_name(f"{kind} CA"), issuer_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert(_name("dev"), leaf_key, issuer=issuer.subject, signer=issuer_key)
    assert is_signed_by(leaf, issuer)
    assert is_self_signed(issuer)
    stranger = _cert(issuer.subject, ec.generate_private_key(ec.SECP256R1()), ca=True)
    assert not is_signed_by(leaf, stranger)


def test_is_ca_certificate(authority: CertificateAuthority, leaf: Issued) -> None:
    assert is_ca_certificate(authority.ca.cert)
    assert not is_ca_certificate(leaf.cert)
    no_constraints = _cert(_name("v1-style"), ec.generate_private_key(ec.SECP256R1()))
    assert not is_ca_certificate(no_constraints)


# --- reading fields ------------------------------------------------------------------------


def test_validity_is_aware_utc(leaf: Issued) -> None:
    not_before, not_after = validity(leaf.cert)
    assert not_before.tzinfo is not None and not_before.utcoffset() == datetime.timedelta(0)
    assert (not_before, not_after) == (
        leaf.cert.not_valid_before_utc,
        leaf.cert.not_valid_after_utc,
    )
    assert not_before < not_after


def test_subject_common_name(leaf: Issued) -> None:
    assert subject_common_name(leaf.cert) == "device-1"
    empty = _cert(_name(None), ec.generate_private_key(ec.SECP256R1()), issuer=_name("ca"))
    assert subject_common_name(empty) is None


def test_describe_is_one_readable_line(leaf: Issued) -> None:
    line = describe(leaf.cert)
    cid = certificate_id(leaf.der)
    not_before, not_after = validity(leaf.cert)
    assert line == (
        f"CN=device-1, O=thingcore tests (id {cid[:4]}…{cid[-2:]}, "
        f"valid {not_before:%Y-%m-%d} .. {not_after:%Y-%m-%d})"
    )


def test_describe_empty_subject() -> None:
    assert describe_name(x509.Name([])) == "(empty subject)"
    empty = _cert(_name(None), ec.generate_private_key(ec.SECP256R1()), issuer=_name("ca"))
    assert describe(empty).startswith("(empty subject) (id ")


# --- CSRs and keys -------------------------------------------------------------------------


def test_load_csr_accepts_a_signed_request() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = load_csr(_csr_pem(key, "dev-7").decode())
    assert csr.subject == _name("dev-7")


def test_load_csr_refuses_an_altered_request() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.load_pem_x509_csr(_csr_pem(key, "dev-1"))
    der = csr.public_bytes(serialization.Encoding.DER)
    tampered = x509.load_der_x509_csr(der.replace(b"dev-1", b"dev-2"))
    with pytest.raises(CertificateError, match="signature does not verify: was it altered"):
        load_csr(tampered.public_bytes(serialization.Encoding.PEM))


@pytest.mark.parametrize(
    "data",
    [
        "",
        "hello",
        "-----BEGIN CERTIFICATE REQUEST-----\nMIIé\n",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    ],
)
def test_load_csr_refuses_garbage(data: str) -> None:
    with pytest.raises(CertificateError, match="^not a PEM certificate signing request: "):
        load_csr(data)


def test_load_csr_says_what_is_missing() -> None:
    with pytest.raises(CertificateError, match="no '-----BEGIN CERTIFICATE REQUEST-----' block"):
        load_csr("hello")


def test_load_csr_says_when_given_a_certificate(leaf: Issued) -> None:
    with pytest.raises(CertificateError, match="this is a certificate, not a request"):
        load_csr(leaf.cert_pem())


def test_check_public_key_accepts_what_aws_accepts(rsa_key: rsa.RSAPrivateKey) -> None:
    check_public_key(rsa_key.public_key())
    for curve in (ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()):
        check_public_key(ec.generate_private_key(curve).public_key())


def test_check_public_key_refuses_weak_or_odd_keys() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(CertificateError, match="1024-bit RSA key is too weak"):
        check_public_key(weak.public_key())
    with pytest.raises(CertificateError, match="secp256k1 is not supported"):
        check_public_key(ec.generate_private_key(ec.SECP256K1()).public_key())
    with pytest.raises(CertificateError, match="keys are not supported: use RSA or EC"):
        check_public_key(ed25519.Ed25519PrivateKey.generate().public_key())
