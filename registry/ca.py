"""The built-in development CA: a root under ``<data dir>/ca/`` that keeps its key on disk.

It signs the broker's TLS server certificate and, by default, device certificates (issued
with a fresh key like AWS CreateKeysAndCertificate, or from a CSR like
CreateCertificateFromCsr), and publishes a CRL of revoked serials. Layout of the directory
(0700)::

    ca.crt      the root a device must trust (0644)
    ca.key      its private key, PEM PKCS#8 unencrypted (0600)
    server.crt  the broker's certificate, signed by the root (0644)
    server.key  its private key (0600)
    crl.pem     the last CRL written by ``DevelopmentCA.crl`` (0644)

Every file is written atomically (temporary file in the same directory, fsync, rename), so a
crash never leaves half a key; a crash *between* two files can leave a key that does not match
its certificate, which ``load`` reports and ``ensure_server_certificate`` repairs.

The root and the server use EC P-256 keys (fast handshakes); device keys default to 2048-bit
RSA, what AWS hands out. Creating the CA is not guarded against two processes doing it at the
same moment: ``thingcore serve`` creates it once at first start and ``ca init`` is an operator's
deliberate act.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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

__all__ = [
    "CLOCK_SKEW",
    "SERVER_RENEW_BEFORE",
    "CertificateError",
    "DevelopmentCA",
    "IssuedCertificate",
    "KeyType",
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
    "write_private",
    "write_public",
]

KeyType: TypeAlias = Literal["rsa", "ec"]
SigningKey: TypeAlias = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)
_SIGNING_KEY_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)

CLOCK_SKEW = timedelta(minutes=5)
"""Certificates start this long before they are issued, so a device whose clock is a little
behind does not reject a certificate fresh from the CA as not yet valid."""
SERVER_RENEW_BEFORE = timedelta(days=30)
"""``ensure_server_certificate`` renews a server certificate that expires within this."""

RSA_KEY_BITS = 2048  # what AWS CreateKeysAndCertificate hands out
ORGANIZATION = "thingcore"
_MAX_COMMON_NAME = 64  # RFC 5280 ub-common-name; cryptography refuses longer values

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "server.crt"
SERVER_KEY_FILE = "server.key"
CRL_FILE = "crl.pem"

_REPLACE_HINT = (
    "replace the CA with `thingcore ca init --force` (devices issued by the old one stop working)"
)


# --- files -------------------------------------------------------------------------------


def _make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and any missing parents, each 0700; existing ones are left alone."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue  # made by someone else meanwhile: not ours to chmod
        # mkdir's mode is filtered by the umask; set it exactly, so an odd umask such as 0277
        # cannot leave us a directory we cannot write into.
        os.chmod(path, 0o700)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable. Some filesystems refuse to fsync a directory (EINVAL);
    # the data is then as durable as that filesystem allows, which is all we can do.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(path: Path, data: bytes | str, mode: int) -> None:
    payload = data.encode("utf-8") if isinstance(data, str) else data
    _make_private_dirs(path.parent)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # Created 0600 and exclusively: the secret is never readable by others, not even for the
    # moment between creation and chmod, and a planted file or symlink makes this fail.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)  # exact, whatever the umask
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        # Only still there if something above failed.
        temporary.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def write_private(path: Path, data: bytes | str) -> None:
    """Atomically write a secret (a private key) readable by its owner only (0600).

    Missing parent directories are created 0700.

    Raises:
        OSError: the file or a directory cannot be written.
    """
    _write_atomic(path, data, 0o600)


def write_public(path: Path, data: bytes | str) -> None:
    """Atomically write a file anyone may read (a certificate, a CRL): 0644.

    Missing parent directories are created 0700 (they sit next to private keys).

    Raises:
        OSError: the file or a directory cannot be written.
    """
    _write_atomic(path, data, 0o644)


@contextlib.contextmanager
def _file_errors(doing: str) -> Iterator[None]:
    """Turn an OSError into a CertificateError that names the file: a user can fix those."""
    try:
        yield
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise CertificateError(f"cannot {doing}{where}: {exc.strerror or exc}") from exc


def _read(path: Path) -> bytes | None:
    """The file's bytes, or None if it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


# --- keys and names ----------------------------------------------------------------------


def _private_key_pem(key: SigningKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _public_key_pem(key: CertificatePublicKeyTypes) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _same_public_key(a: CertificatePublicKeyTypes, b: CertificatePublicKeyTypes) -> bool:
    encoding, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(encoding, spki) == b.public_bytes(encoding, spki)


def _load_signing_key(data: bytes, path: Path) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # cryptography raises TypeError for "password was not given but key is encrypted".
        raise CertificateError(
            f"{path} is encrypted: thingcore needs it unencrypted "
            f"(`openssl pkey -in {path} -out {path}.plain`, then replace it)"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"{path} is not a PEM private key: {exc}") from None
    if not isinstance(key, _SIGNING_KEY_TYPES):
        raise CertificateError(f"{path} holds a key that cannot sign certificates: use RSA or EC")
    return key


def _generate_key(key_type: str, *, rsa_bits: int = RSA_KEY_BITS) -> SigningKey:
    # key_type is checked at run time too: the CLI and REST pass strings from users.
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise CertificateError(f"unknown key type {key_type!r}: use 'rsa' or 'ec'")


def _signature_hash(key: SigningKey) -> hashes.SHA256 | None:
    # EdDSA hashes internally and must be given no digest; RSA and ECDSA sign SHA-256.
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    return hashes.SHA256()


def _name(common_name: str) -> x509.Name:
    if not common_name or len(common_name) > _MAX_COMMON_NAME:
        raise CertificateError(
            f"a common name must be 1 to {_MAX_COMMON_NAME} characters, not {len(common_name)}"
        )
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _now() -> datetime:
    # Whole seconds: certificates store no fractions, and comparisons with stored dates
    # should not depend on microseconds that were thrown away.
    return datetime.now(UTC).replace(microsecond=0)


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (e.g. datetime.now(UTC))")
    return value.astimezone(UTC)


# A DNS name as a TLS client compares it: ASCII labels (punycode for others), an optional
# leading wildcard label. Underscores are tolerated because real host names contain them.
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
# Labels are joined by mandatory dots, so a long run of letters cannot be split into labels in
# exponentially many ways (catastrophic backtracking).
_DNS_NAME = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*\.?$")


def _subject_alt_names(names: Sequence[str]) -> list[x509.GeneralName]:
    """SAN entries for ``names`` (IP addresses and DNS names mixed), duplicates removed."""
    result: list[x509.GeneralName] = []
    seen: set[tuple[str, bytes | str]] = set()
    for raw in names:
        name = raw.strip()
        entry: x509.GeneralName
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            if len(name) > 253 or not _DNS_NAME.match(name):
                raise CertificateError(
                    f"server name {raw!r} is neither an IP address nor a DNS name "
                    "(write non-ASCII names in their xn-- form)"
                ) from None
            key: tuple[str, bytes | str] = ("dns", name.lower())
            entry = x509.DNSName(name)
        else:
            key = ("ip", address.packed)
            entry = x509.IPAddress(address)
        if key not in seen:
            seen.add(key)
            result.append(entry)
    if not result:
        raise CertificateError("the server certificate needs at least one name")
    return result


def _san_keys(sans: Iterable[x509.GeneralName]) -> set[tuple[str, bytes | str]]:
    """A comparable form of SAN entries: DNS names case-insensitive, addresses by bytes."""
    keys: set[tuple[str, bytes | str]] = set()
    for entry in sans:
        if isinstance(entry, x509.DNSName):
            keys.add(("dns", entry.value.lower()))
        elif isinstance(entry, x509.IPAddress) and isinstance(
            entry.value, ipaddress.IPv4Address | ipaddress.IPv6Address
        ):
            keys.add(("ip", entry.value.packed))
        else:
            keys.add((type(entry).__name__, str(entry.value)))
    return keys


# --- the CA ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate the CA just signed, in the shapes the CLI and the AWS API hand out."""

    certificate_pem: str
    private_key_pem: str | None
    """PEM PKCS#8; None when signed from a CSR (the requester keeps the key)."""
    public_key_pem: str
    """PEM SubjectPublicKeyInfo, AWS's ``keyPair.PublicKey``."""
    certificate_id: str
    not_before: datetime
    not_after: datetime
    serial_number: int
    """What a CRL lists when the certificate is revoked."""


def _issued(cert: x509.Certificate, private_key: SigningKey | None) -> IssuedCertificate:
    not_before, not_after = validity(cert)
    return IssuedCertificate(
        certificate_pem=certificate_pem(cert),
        private_key_pem=None if private_key is None else _private_key_pem(private_key),
        public_key_pem=_public_key_pem(cert.public_key()),
        certificate_id=certificate_id(certificate_der(cert)),
        not_before=not_before,
        not_after=not_after,
        serial_number=cert.serial_number,
    )


class DevelopmentCA:
    """The development root CA under ``<data_dir>/ca/``.

    Files: ``ca.crt`` (0644), ``ca.key`` (0600), ``server.crt``, ``server.key``, ``crl.pem``.
    Get one with ``create``, ``load`` or ``load_or_create``; the constructor trusts that the
    key belongs to the certificate.
    """

    def __init__(self, directory: Path, certificate: x509.Certificate, key: SigningKey) -> None:
        self.directory = directory
        self.certificate = certificate
        """The root certificate."""
        self._key = key

    def __repr__(self) -> str:
        return f"DevelopmentCA({str(self.directory)!r}, {describe(self.certificate)!r})"

    @property
    def certificate_pem(self) -> str:
        """The root in PEM: what a device must trust (``thingcore ca show --pem``)."""
        return certificate_pem(self.certificate)

    @property
    def certificate_id(self) -> str:
        """The root's certificate id (hex SHA-256 of its DER), as AWS names CAs."""
        return certificate_id(certificate_der(self.certificate))

    @property
    def certfile(self) -> Path:
        return self.directory / CA_CERT_FILE

    @property
    def keyfile(self) -> Path:
        return self.directory / CA_KEY_FILE

    @property
    def server_certfile(self) -> Path:
        return self.directory / SERVER_CERT_FILE

    @property
    def server_keyfile(self) -> Path:
        return self.directory / SERVER_KEY_FILE

    @property
    def crlfile(self) -> Path:
        return self.directory / CRL_FILE

    def is_issuer_of(self, cert: x509.Certificate) -> bool:
        """Whether this CA signed ``cert``."""
        return is_signed_by(cert, self.certificate)

    # --- creating and loading ------------------------------------------------------------

    @classmethod
    def exists(cls, directory: Path) -> bool:
        """Whether ``directory`` holds a CA, or part of one (which ``create`` will not replace).

        A lone certificate or key still counts: the certificate may be on devices already,
        and replacing it must be a deliberate ``--force``.
        """
        return (directory / CA_CERT_FILE).exists() or (directory / CA_KEY_FILE).exists()

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        common_name: str = "thingcore development CA",
        days: int = 3650,
        force: bool = False,
    ) -> DevelopmentCA:
        """Make a new root (EC P-256, self-signed) and write it to ``directory``.

        With ``force`` an existing CA is replaced, and the server certificate and CRL it
        signed are removed with it.

        Raises:
            CertificateError: a CA exists and ``force`` is false; the files cannot be written.
        """
        if days < 1:
            raise CertificateError("the CA must be valid for at least 1 day")
        if not force and cls.exists(directory):
            raise CertificateError(
                f"a CA already exists in {directory}; use --force to replace it "
                "(devices issued by the old one stop working)"
            )
        name = _name(common_name)
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + timedelta(days=days))
            # path_length=0: this root signs leaves only, never another CA.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        with _file_errors("write the CA to"):
            _make_private_dirs(directory)
            os.chmod(directory, 0o700)
            # Whatever the old root signed is worthless now; a stale server certificate
            # would only fail handshakes until ensure_server_certificate noticed.
            for stale in (SERVER_CERT_FILE, SERVER_KEY_FILE, CRL_FILE):
                (directory / stale).unlink(missing_ok=True)
            # Key first: a crash between the two leaves a mismatch that load reports,
            # never an old key paired with a certificate devices will be told to trust.
            write_private(directory / CA_KEY_FILE, _private_key_pem(key))
            write_public(directory / CA_CERT_FILE, certificate_pem(cert))
        return cls(directory, cert, key)

    @classmethod
    def load(cls, directory: Path) -> DevelopmentCA:
        """Read the CA in ``directory`` and check that its key belongs to its certificate.

        Raises:
            CertificateError: there is no CA, a file is missing or unreadable, or the key
                does not match the certificate; the message says what to do.
        """
        certfile, keyfile = directory / CA_CERT_FILE, directory / CA_KEY_FILE
        with _file_errors("read"):
            cert_data, key_data = _read(certfile), _read(keyfile)
        if cert_data is None and key_data is None:
            raise CertificateError(f"no CA in {directory}: run `thingcore ca init`")
        if cert_data is None:
            raise CertificateError(
                f"{certfile} is missing but its key is there: restore it, or {_REPLACE_HINT}"
            )
        if key_data is None:
            raise CertificateError(
                f"{keyfile} is missing, so the CA cannot sign: restore it, or {_REPLACE_HINT}"
            )
        try:
            cert = load_certificate(cert_data)
        except CertificateError as exc:
            raise CertificateError(f"{certfile}: {exc}") from None
        key = _load_signing_key(key_data, keyfile)
        if not _same_public_key(key.public_key(), cert.public_key()):
            raise CertificateError(
                f"{keyfile} is not the key of {certfile}: restore the matching pair, "
                f"or {_REPLACE_HINT}"
            )
        if not is_ca_certificate(cert):
            raise CertificateError(
                f"{certfile} is not a CA certificate (its BasicConstraints lack CA:TRUE): "
                f"{_REPLACE_HINT}"
            )
        return cls(directory, cert, key)

    @classmethod
    def load_or_create(cls, directory: Path) -> tuple[DevelopmentCA, bool]:
        """The CA in ``directory``, created first if there is none; the flag says it was.

        Raises:
            CertificateError: as ``load`` does for a broken CA (it is never replaced here).
        """
        if cls.exists(directory):
            return cls.load(directory), False
        return cls.create(directory), True

    # --- signing --------------------------------------------------------------------------

    def _authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        # Copy the root's own SKI when it has one: verifiers match AKI to SKI byte for byte,
        # and a root made elsewhere may compute its SKI differently from ours.
        try:
            ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound:
            return x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key())
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)

    def _validity(
        self, days: int, not_before: datetime | None, not_after: datetime | None
    ) -> tuple[datetime, datetime]:
        if days < 1:
            raise CertificateError("a certificate must be valid for at least 1 day")
        now = _now()
        start = now - CLOCK_SKEW if not_before is None else _aware(not_before, "not_before")
        if not_after is not None:
            end = _aware(not_after, "not_after")
        else:
            ca_end = self.certificate.not_valid_after_utc
            if ca_end <= now:
                raise CertificateError(
                    f"the CA expired on {ca_end:%Y-%m-%d}: create a new one with "
                    "`thingcore ca init --force`"
                )
            # A certificate cannot usefully outlive its issuer: once the root expires,
            # verifiers reject the chain whatever the leaf says.
            end = min(max(start, now) + timedelta(days=days), ca_end)
        if end <= start:
            raise CertificateError(
                f"the certificate would expire ({end:%Y-%m-%d %H:%M:%S}) before it becomes "
                f"valid ({start:%Y-%m-%d %H:%M:%S})"
            )
        return start, end

    def _sign(
        self,
        *,
        subject: x509.Name,
        public_key: CertificatePublicKeyTypes,
        not_before: datetime,
        not_after: datetime,
        usage: x509.ObjectIdentifier,
        alt_names: list[x509.GeneralName] | None = None,
    ) -> x509.Certificate:
        """A leaf certificate: not a CA, one extended key usage, AKI/SKI, a random serial."""
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    # RSA key exchange (TLS 1.2 RSA suites) encrypts with the certificate's
                    # key; EC keys only ever sign.
                    key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(self._authority_key_identifier(), critical=False)
        )
        if alt_names:
            # RFC 5280 4.2.1.6: with an empty subject the SAN carries the identity and must
            # be critical.
            builder = builder.add_extension(
                x509.SubjectAlternativeName(alt_names), critical=not subject.rdns
            )
        return builder.sign(self._key, _signature_hash(self._key))

    def issue(
        self,
        common_name: str,
        *,
        days: int = 365,
        key_type: KeyType = "rsa",
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> IssuedCertificate:
        """A device certificate with a fresh key pair, like AWS CreateKeysAndCertificate.

        Args:
            common_name: the subject's CN (1 to 64 characters), usually the thing name.
            days: validity from now (or from ``not_before``), cut at the root's expiry.
            key_type: ``"rsa"`` (2048-bit, what AWS issues) or ``"ec"`` (P-256).
            not_before: start of validity; default now minus ``CLOCK_SKEW``.
            not_after: end of validity, taken as given (tests make expired certificates).

        Raises:
            CertificateError: a bad name, key type or validity; the CA has expired.
        """
        subject = _name(common_name)
        start, end = self._validity(days, not_before, not_after)
        key = _generate_key(key_type)
        cert = self._sign(
            subject=subject,
            public_key=key.public_key(),
            not_before=start,
            not_after=end,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        return _issued(cert, key)

    def sign_csr(self, csr_pem: bytes | str, *, days: int = 365) -> IssuedCertificate:
        """A device certificate for the key in a CSR, like AWS CreateCertificateFromCsr.

        The subject is copied from the CSR (an empty one is allowed, as AWS allows it). The
        extensions the CSR asks for are ignored: a requester must not be able to get
        CA:TRUE or a server certificate out of a device CA.

        Raises:
            CertificateError: not a PEM CSR, its signature does not verify, or its key is
                one AWS would refuse.
        """
        csr = load_csr(csr_pem)
        try:
            public_key = csr.public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise CertificateError(f"the CSR's public key cannot be read: {exc}") from None
        check_public_key(public_key)
        start, end = self._validity(days, None, None)
        cert = self._sign(
            subject=csr.subject,
            public_key=public_key,
            not_before=start,
            not_after=end,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        return _issued(cert, None)

    # --- the server certificate -----------------------------------------------------------

    def _current_server_certificate(self) -> x509.Certificate | None:
        """The server certificate on disk if it is readable and its key matches it."""
        try:
            cert = load_certificate(self.server_certfile.read_bytes())
            key = _load_signing_key(self.server_keyfile.read_bytes(), self.server_keyfile)
        except (OSError, CertificateError):
            return None  # missing or damaged: reissuing is the repair
        return cert if _same_public_key(key.public_key(), cert.public_key()) else None

    def server_renewal_reason(
        self, cert: x509.Certificate | None, names: Sequence[str]
    ) -> str | None:
        """Why ``cert`` cannot serve as the server certificate for ``names``, or None if it can.

        Raises:
            CertificateError: a name is neither an IP address nor a DNS name.
        """
        wanted = _san_keys(_subject_alt_names(names))
        if cert is None:
            return "missing, unreadable or not matching its key"
        if not self.is_issuer_of(cert):
            return "not signed by this CA"
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return "no subject alternative names"
        if _san_keys(sans) != wanted:
            return "its names differ"
        now = _now()
        not_before, not_after = validity(cert)
        if not_before > now:
            return "not valid yet"
        # Renewing cannot help when the root itself ends first: the new certificate would be
        # cut at the same date, and reissuing at every start would change nothing.
        if (
            not_after - now < SERVER_RENEW_BEFORE
            and not_after < self.certificate.not_valid_after_utc
        ):
            return "expires soon"
        return None

    def ensure_server_certificate(self, names: Sequence[str], *, days: int = 825) -> bool:
        """Make sure ``server.crt``/``server.key`` serve ``names``; (re)issue them if not.

        Reissues when the files are missing or damaged, when the certificate's SANs differ
        from ``names`` (order and DNS case do not matter), when it expires within
        ``SERVER_RENEW_BEFORE``, or when this CA did not sign it.

        Args:
            names: DNS names and IP addresses mixed, e.g. ``localhost``, ``127.0.0.1``,
                ``::1``, the host name. The first one is also the subject's CN.
            days: validity of a new certificate; 825 is the most Apple's TLS clients accept.

        Returns:
            True if a new certificate was written.

        Raises:
            CertificateError: a name is neither an IP address nor a DNS name; the files
                cannot be written.
        """
        if isinstance(names, str):
            names = (names,)  # one name, not a sequence of one-letter names
        alt_names = _subject_alt_names(names)
        if self.server_renewal_reason(self._current_server_certificate(), names) is None:
            return False
        first = names[0].strip()
        # The CN is informational (clients match the SANs), but it is what people see.
        common_name = first if len(first) <= _MAX_COMMON_NAME else "thingcore server"
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = self._validity(days, None, None)
        cert = self._sign(
            subject=_name(common_name),
            public_key=key.public_key(),
            not_before=start,
            not_after=end,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            alt_names=alt_names,
        )
        with _file_errors("write the server certificate to"):
            # Key first: after a crash in between, the old certificate does not match the
            # new key, and the next call reissues.
            write_private(self.server_keyfile, _private_key_pem(key))
            write_public(self.server_certfile, certificate_pem(cert))
        return True

    # --- revocation ------------------------------------------------------------------------

    def _previous_crl_number(self) -> int:
        try:
            previous = x509.load_pem_x509_crl(self.crlfile.read_bytes())
            if not previous.is_signature_valid(self._key.public_key()):
                return 0
            number = previous.extensions.get_extension_for_class(x509.CRLNumber).value
        except (OSError, ValueError, TypeError, UnsupportedAlgorithm, x509.ExtensionNotFound):
            return 0  # none yet, damaged, or not ours: start again
        return number.crl_number

    def crl(self, revoked: Iterable[tuple[int, datetime]], *, next_update_days: int = 7) -> str:
        """A CRL signed by the root listing ``(serial, revocation time)``; also ``crl.pem``.

        A serial listed twice keeps its earliest time. Each CRL's number is one more than
        the last one written, as RFC 5280 5.2.3 asks.

        Returns:
            The CRL in PEM.

        Raises:
            ValueError: a serial is not positive or a time is not timezone-aware.
            CertificateError: ``crl.pem`` cannot be written.
        """
        if next_update_days < 1:
            raise CertificateError("next_update_days must be at least 1")
        entries: dict[int, datetime] = {}
        for serial, when in revoked:
            if serial <= 0:
                raise ValueError(f"certificate serial numbers are positive, not {serial}")
            at = _aware(when, "revocation time")
            entries[serial] = min(at, entries.get(serial, at))
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now)
            .next_update(now + timedelta(days=next_update_days))
            .add_extension(x509.CRLNumber(self._previous_crl_number() + 1), critical=False)
            .add_extension(self._authority_key_identifier(), critical=False)
        )
        for serial, at in sorted(entries.items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(at).build()
            )
        pem = (
            builder.sign(self._key, _signature_hash(self._key))
            .public_bytes(serialization.Encoding.PEM)
            .decode("ascii")
        )
        with _file_errors("write the CRL to"):
            write_public(self.crlfile, pem)
        return pem
