"""Pure X.509 helpers: parse PEM, compute certificate ids, check who signed what.

Nothing here touches the disk or reads the clock: the CA that keeps keys on disk is
``registry/ca.py``. A certificate's id is AWS's: the lowercase hex SHA-256 of its DER bytes
(reference section 0), so ids computed here match the ones AWS and moto report.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from registry.errors import CertificateValidation

__all__ = [
    "CertificateError",
    "certificate_der",
    "certificate_id",
    "certificate_pem",
    "check_public_key",
    "describe",
    "describe_name",
    "is_ca_certificate",
    "is_self_signed",
    "is_signed_by",
    "load_certificate",
    "load_certificates",
    "load_csr",
    "subject_common_name",
    "validity",
]


class CertificateError(CertificateValidation):
    """A certificate, key or CSR is unusable: bad PEM, bad signature, wrong CA, missing CA.

    A subclass of the registry's ``CertificateValidation`` so the REST layer answers with
    AWS's ``CertificateValidationException`` (400); the message says what to do about it.
    """


_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"

# PEM labels people paste by mistake, and what to tell them (first match wins).
_WRONG_PEM_LABELS: tuple[tuple[bytes, str], ...] = (
    (b"-----BEGIN CERTIFICATE REQUEST-----", "this is a certificate signing request (CSR)"),
    (b"-----BEGIN NEW CERTIFICATE REQUEST-----", "this is a certificate signing request (CSR)"),
    (b"PRIVATE KEY-----", "this is a private key, not a certificate"),
    (b"-----BEGIN PUBLIC KEY-----", "this is a public key, not a certificate"),
    (b"-----BEGIN X509 CRL-----", "this is a certificate revocation list"),
)


def _as_bytes(pem: bytes | str, what: str = "certificate") -> bytes:
    if isinstance(pem, str):
        # PEM is ASCII; anything else cannot be a certificate, and cryptography would only
        # say "unable to load" without pointing at the stray character.
        try:
            return pem.encode("ascii")
        except UnicodeEncodeError as exc:
            raise CertificateError(
                f"not a PEM {what}: non-ASCII character {pem[exc.start]!r} at position {exc.start}"
            ) from None
    return pem


def _not_a_certificate(data: bytes, detail: str | None = None) -> CertificateError:
    """An error that says what ``data`` looks like instead, so the user knows what to fix."""
    if not data.strip():
        reason = "the input is empty"
    elif data[:1] == b"\x30" and b"-----BEGIN" not in data:
        # 0x30 is an ASN.1 SEQUENCE: almost certainly a DER certificate given as raw bytes.
        reason = (
            "this looks like DER (binary); convert it with "
            "`openssl x509 -inform der -in FILE -out FILE.pem`"
        )
    elif _PEM_CERTIFICATE not in data:
        reason = next(
            (why for label, why in _WRONG_PEM_LABELS if label in data),
            "no '-----BEGIN CERTIFICATE-----' block found",
        )
    else:
        reason = f"the CERTIFICATE block does not parse ({detail or 'malformed'})"
    return CertificateError(f"not a PEM certificate: {reason}")


def load_certificates(pem: bytes | str) -> list[x509.Certificate]:
    """Every certificate in a PEM text, in order (a chain, a CA bundle).

    Blocks with other labels (a private key next to the certificate) are skipped.

    Raises:
        CertificateError: there is no certificate, or a CERTIFICATE block is malformed.
    """
    data = _as_bytes(pem)
    if _PEM_CERTIFICATE not in data:
        raise _not_a_certificate(data)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise _not_a_certificate(data, str(exc)) from None
    if not certificates:  # pragma: no cover - a BEGIN line without a parsable block raises
        raise _not_a_certificate(data)
    return certificates


def load_certificate(pem: bytes | str) -> x509.Certificate:
    """The first certificate in a PEM text (the leaf, when the text is a chain).

    Raises:
        CertificateError: ``"not a PEM certificate: ..."`` saying what the input looks like.
    """
    return load_certificates(pem)[0]


def load_csr(pem: bytes | str) -> x509.CertificateSigningRequest:
    """A certificate signing request whose self-signature verifies.

    The signature proves the requester holds the private key and that nobody altered the
    subject or key on the way (AWS CreateCertificateFromCsr checks the same).

    Raises:
        CertificateError: the text is not a PEM CSR, or its signature does not verify.
    """
    data = _as_bytes(pem, "certificate signing request")
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in data and b"-----BEGIN NEW" not in data:
        what = (
            "this is a certificate, not a request"
            if _PEM_CERTIFICATE in data
            else "no '-----BEGIN CERTIFICATE REQUEST-----' block found"
        )
        raise CertificateError(f"not a PEM certificate signing request: {what}")
    try:
        csr = x509.load_pem_x509_csr(data)
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"not a PEM certificate signing request: {exc}") from None
    if not valid:
        raise CertificateError("the CSR's signature does not verify: was it altered?")
    return csr


# What AWS IoT accepts for device keys; anything weaker would work here and then fail there.
_EC_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_MIN_RSA_BITS = 2048


def check_public_key(key: CertificatePublicKeyTypes) -> None:
    """Refuse device keys AWS IoT refuses: RSA under 2048 bits, curves but P-256/384/521.

    Raises:
        CertificateError: naming the key and what to use instead.
    """
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise CertificateError(
                f"a {key.key_size}-bit RSA key is too weak: use at least {_MIN_RSA_BITS} bits"
            )
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _EC_CURVES):
            raise CertificateError(
                f"the elliptic curve {key.curve.name} is not supported: use P-256, P-384 or P-521"
            )
        return
    raise CertificateError(
        f"{type(key).__name__.removeprefix('_')} keys are not supported: use RSA or EC (P-256)"
    )


def certificate_der(cert: x509.Certificate) -> bytes:
    """The DER encoding: the bytes a TLS peer sends and the id is computed from."""
    return cert.public_bytes(serialization.Encoding.DER)


def certificate_pem(cert: x509.Certificate) -> str:
    """The PEM encoding as text, ending with a newline."""
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def certificate_id(der: bytes) -> str:
    """AWS's certificate id: the lowercase hex SHA-256 of the DER bytes (64 characters)."""
    return hashlib.sha256(der).hexdigest()


def is_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` signed ``cert``: names match and the signature verifies.

    Handles RSA (PKCS#1 v1.5 and PSS), ECDSA, Ed25519 and Ed448 signatures. Validity dates
    and extensions are not checked here: this answers "who signed it", not "is it valid".
    """
    try:
        # Checks issuer name == issuer's subject first, then the signature with its key.
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def is_self_signed(cert: x509.Certificate) -> bool:
    """Whether ``cert`` names itself as issuer and its signature verifies with its own key.

    A matching name alone is not enough: a leaf issued by a CA that happens to use the same
    name as the leaf is not self-signed (its signature does not verify with its own key).
    """
    return cert.issuer == cert.subject and is_signed_by(cert, cert)


def is_ca_certificate(cert: x509.Certificate) -> bool:
    """Whether the certificate's BasicConstraints say it is a CA (absent means it is not)."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca


def validity(cert: x509.Certificate) -> tuple[datetime, datetime]:
    """``(not_before, not_after)`` as timezone-aware UTC datetimes."""
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def subject_common_name(cert: x509.Certificate) -> str | None:
    """The subject's first common name, or None when it has none (AWS allows that)."""
    for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return None


def describe_name(name: x509.Name) -> str:
    """A distinguished name most-specific first, as people read it: ``CN=dev-1, O=thingcore``."""
    if not name.rdns:
        return "(empty subject)"
    # RFC 4514 order (reversed from the encoding): the common name usually comes first.
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(name.rdns))


def describe(cert: x509.Certificate) -> str:
    """One line for logs and the CLI, e.g.

    ``CN=dev-1, O=thingcore (id 3f2a…9b, valid 2026-11-01 .. 2027-11-01)``.
    """
    cid = certificate_id(certificate_der(cert))
    not_before, not_after = validity(cert)
    return (
        f"{describe_name(cert.subject)} (id {cid[:4]}…{cid[-2:]}, "
        f"valid {not_before:%Y-%m-%d} .. {not_after:%Y-%m-%d})"
    )
