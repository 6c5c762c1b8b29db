"""What policy variables can read from a client certificate (``iot:Certificate.*``).

Parsing a DER certificate is not IO, so this stays in the pure core; the broker passes the DER
bytes it got from the TLS handshake and builds ``CertificateFields`` once per connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cryptography import x509
from cryptography.x509.oid import NameOID

# Names as AWS spells them in ``iot:Certificate.Subject.<Field>`` (cert-policy-variables docs).
# Locality is not in AWS's list but costs nothing and is a common DN part.
NAME_FIELDS: Mapping[x509.ObjectIdentifier, str] = MappingProxyType(
    {
        NameOID.COMMON_NAME: "CommonName",
        NameOID.COUNTRY_NAME: "Country",
        NameOID.ORGANIZATION_NAME: "Organization",
        NameOID.ORGANIZATIONAL_UNIT_NAME: "OrganizationalUnit",
        NameOID.STATE_OR_PROVINCE_NAME: "State",
        NameOID.LOCALITY_NAME: "Locality",
        NameOID.SERIAL_NUMBER: "SerialNumber",
        NameOID.TITLE: "Title",
        NameOID.SURNAME: "Surname",
        NameOID.GIVEN_NAME: "GivenName",
        NameOID.INITIALS: "Initials",
        NameOID.PSEUDONYM: "Pseudonym",
        NameOID.GENERATION_QUALIFIER: "GenerationQualifier",
        NameOID.DN_QUALIFIER: "DistinguishedNameQualifier",
    }
)

ALTERNATIVE_NAME_KINDS = (
    "DNSName",
    "RFC822Name",
    "IPAddress",
    "UniformResourceIdentifier",
    "DirectoryName",
)

_EMPTY: Mapping[str, tuple[str, ...]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class CertificateFields:
    """The parts of a client certificate that ``iot:Certificate.*`` variables and keys read.

    Every mapping goes from AWS's field name to the field's values in certificate order; a field
    the certificate lacks is absent rather than empty.

    Attributes:
        subject: Subject DN fields, e.g. ``{"CommonName": ("device-1",)}``.
        issuer: Issuer DN fields, same names.
        san: Subject alternative names by kind (``DNSName``, ``RFC822Name``, ``IPAddress``,
            ``UniformResourceIdentifier``, ``DirectoryName``).
        serial_number: The certificate serial number as a decimal string. AWS does not document
            the format of ``iot:Certificate.SerialNumber``; decimal has one spelling per number,
            where hex forms differ between tools in case, colons and leading zeros.
        issuer_san: Issuer alternative names (``iot:Certificate.Issuer.AlternativeName.*``).
    """

    subject: Mapping[str, tuple[str, ...]]
    issuer: Mapping[str, tuple[str, ...]]
    san: Mapping[str, tuple[str, ...]]
    serial_number: str
    issuer_san: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: _EMPTY)

    @classmethod
    def from_der(cls, der: bytes) -> CertificateFields:
        """Read the fields of a DER-encoded X.509 certificate.

        Raises:
            ValueError: ``der`` is not a certificate ``cryptography`` can parse.
        """
        return cls.from_certificate(x509.load_der_x509_certificate(der))

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> CertificateFields:
        """Read the fields of a certificate that is already parsed."""
        return cls(
            subject=_name_fields(cert.subject),
            issuer=_name_fields(cert.issuer),
            san=_alternative_names(cert, x509.SubjectAlternativeName),
            serial_number=str(cert.serial_number),
            issuer_san=_alternative_names(cert, x509.IssuerAlternativeName),
        )


def _name_fields(name: x509.Name) -> Mapping[str, tuple[str, ...]]:
    values: dict[str, list[str]] = {}
    for attribute in name:
        label = NAME_FIELDS.get(attribute.oid)
        # Binary-valued attributes (X500UniqueIdentifier) have no text a policy could compare.
        if label is not None and isinstance(attribute.value, str):
            values.setdefault(label, []).append(attribute.value)
    return MappingProxyType({k: tuple(v) for k, v in values.items()})


def _alternative_names(
    cert: x509.Certificate,
    kind: type[x509.SubjectAlternativeName] | type[x509.IssuerAlternativeName],
) -> Mapping[str, tuple[str, ...]]:
    try:
        names = cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return _EMPTY
    found = {
        "DNSName": tuple(names.get_values_for_type(x509.DNSName)),
        "RFC822Name": tuple(names.get_values_for_type(x509.RFC822Name)),
        "IPAddress": tuple(str(ip) for ip in names.get_values_for_type(x509.IPAddress)),
        "UniformResourceIdentifier": tuple(
            names.get_values_for_type(x509.UniformResourceIdentifier)
        ),
        "DirectoryName": tuple(
            n.rfc4514_string() for n in names.get_values_for_type(x509.DirectoryName)
        ),
    }
    return MappingProxyType({k: v for k, v in found.items() if v})
