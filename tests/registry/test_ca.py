"""The development CA: files on disk, issuing, CSRs, the server certificate, CRLs, and real
TLS handshakes with Python's ``ssl`` as both server (the broker's own context) and client."""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.listeners import server_ssl_context
from registry.ca import (
    CLOCK_SKEW,
    CertificateError,
    DevelopmentCA,
    IssuedCertificate,
    certificate_id,
    is_ca_certificate,
    is_self_signed,
    is_signed_by,
    load_certificate,
    subject_common_name,
    write_private,
    write_public,
)

SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
_E = TypeVar("_E", bound=x509.ExtensionType)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _now() -> datetime:
    return datetime.now(UTC)


def _ext(cert: x509.Certificate, kind: type[_E]) -> _E:
    return cert.extensions.get_extension_for_class(kind).value


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> DevelopmentCA:
    """One CA for the tests that only read it; tests that change files make their own."""
    ca = DevelopmentCA.create(tmp_path_factory.mktemp("shared") / "var" / "ca")
    ca.ensure_server_certificate(SERVER_NAMES)
    return ca


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> DevelopmentCA:
    """Another CA with the same name: only the keys tell them apart."""
    return DevelopmentCA.create(tmp_path_factory.mktemp("other") / "ca")


@pytest.fixture(scope="module")
def rsa_device(ca: DevelopmentCA) -> IssuedCertificate:
    return ca.issue("dev-rsa")  # the default: 2048-bit RSA, as AWS issues


@pytest.fixture
def fresh_ca(tmp_path: Path) -> DevelopmentCA:
    return DevelopmentCA.create(tmp_path / "ca")  # EC P-256: milliseconds


def _ec_csr(common_name: str | None, **extensions: x509.ExtensionType) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = (
        [] if common_name is None else [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    for extension in extensions.values():
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


# --- files -----------------------------------------------------------------------------------


def test_create_writes_the_files_with_their_modes(tmp_path: Path) -> None:
    directory = tmp_path / "data" / "ca"
    ca = DevelopmentCA.create(directory)
    assert _mode(tmp_path / "data") == 0o700  # parents it created are private too
    assert _mode(directory) == 0o700
    assert _mode(ca.certfile) == 0o644
    assert _mode(ca.keyfile) == 0o600
    assert sorted(p.name for p in directory.iterdir()) == ["ca.crt", "ca.key"]  # no temp files
    assert ca.certfile.read_text() == ca.certificate_pem


def test_root_is_a_self_signed_ec_p256_ca(ca: DevelopmentCA) -> None:
    root = ca.certificate
    assert is_self_signed(root)
    assert is_ca_certificate(root)
    assert _ext(root, x509.BasicConstraints).path_length == 0  # signs leaves only
    usage = _ext(root, x509.KeyUsage)
    assert usage.key_cert_sign and usage.crl_sign
    key = root.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    assert subject_common_name(root) == "thingcore development CA"
    der = root.public_bytes(serialization.Encoding.DER)
    assert ca.certificate_id == hashlib.sha256(der).hexdigest()


def test_create_refuses_to_replace_a_ca_unless_forced(fresh_ca: DevelopmentCA) -> None:
    fresh_ca.ensure_server_certificate(SERVER_NAMES)
    fresh_ca.crl([])
    with pytest.raises(CertificateError, match="a CA already exists in .*; use --force"):
        DevelopmentCA.create(fresh_ca.directory)
    replaced = DevelopmentCA.create(fresh_ca.directory, force=True, common_name="second", days=30)
    assert replaced.certificate_id != fresh_ca.certificate_id
    assert subject_common_name(replaced.certificate) == "second"
    # What the old root signed went with it.
    assert not replaced.server_certfile.exists()
    assert not replaced.crlfile.exists()
    assert DevelopmentCA.load(fresh_ca.directory).certificate_id == replaced.certificate_id


def test_a_lone_key_counts_as_an_existing_ca(fresh_ca: DevelopmentCA) -> None:
    fresh_ca.certfile.unlink()
    assert DevelopmentCA.exists(fresh_ca.directory)
    with pytest.raises(CertificateError, match="already exists"):
        DevelopmentCA.create(fresh_ca.directory)


def test_load_reads_what_create_wrote(ca: DevelopmentCA) -> None:
    loaded = DevelopmentCA.load(ca.directory)
    assert loaded.certificate == ca.certificate
    # The loaded CA signs with the same key.
    assert is_signed_by(
        load_certificate(loaded.issue("x", key_type="ec").certificate_pem), ca.certificate
    )


def test_load_without_a_ca_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match=r"^no CA in .*: run `thingcore ca init`$"):
        DevelopmentCA.load(tmp_path / "nothing")


def test_load_refuses_a_key_that_does_not_match(
    fresh_ca: DevelopmentCA, other_ca: DevelopmentCA
) -> None:
    shutil.copyfile(other_ca.certfile, fresh_ca.certfile)
    with pytest.raises(CertificateError, match=r"ca\.key is not the key of .*ca\.crt"):
        DevelopmentCA.load(fresh_ca.directory)


@pytest.mark.parametrize(
    ("missing", "message"),
    [("ca.crt", r"ca\.crt is missing"), ("ca.key", r"ca\.key is missing, so the CA cannot sign")],
)
def test_load_names_a_missing_half(fresh_ca: DevelopmentCA, missing: str, message: str) -> None:
    (fresh_ca.directory / missing).unlink()
    with pytest.raises(CertificateError, match=message):
        DevelopmentCA.load(fresh_ca.directory)


def test_load_refuses_damaged_or_encrypted_files(fresh_ca: DevelopmentCA) -> None:
    good_key = fresh_ca.keyfile.read_bytes()
    key = serialization.load_pem_private_key(good_key, None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    write_private(fresh_ca.keyfile, encrypted)
    with pytest.raises(CertificateError, match="is encrypted: thingcore needs it unencrypted"):
        DevelopmentCA.load(fresh_ca.directory)
    write_private(fresh_ca.keyfile, "garbage")
    with pytest.raises(CertificateError, match="is not a PEM private key"):
        DevelopmentCA.load(fresh_ca.directory)
    write_private(fresh_ca.keyfile, good_key)
    write_public(fresh_ca.certfile, "garbage")
    with pytest.raises(CertificateError, match=r"ca\.crt: not a PEM certificate"):
        DevelopmentCA.load(fresh_ca.directory)


def test_load_or_create_is_idempotent(tmp_path: Path) -> None:
    first, created = DevelopmentCA.load_or_create(tmp_path / "ca")
    assert created
    before = {p.name: (p.stat().st_ino, p.read_bytes()) for p in first.directory.iterdir()}
    second, created_again = DevelopmentCA.load_or_create(tmp_path / "ca")
    assert not created_again
    assert second.certificate_id == first.certificate_id
    after = {p.name: (p.stat().st_ino, p.read_bytes()) for p in second.directory.iterdir()}
    assert after == before  # not rewritten


def test_write_errors_become_certificate_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(CertificateError, match="cannot write the CA to .*file/ca"):
        DevelopmentCA.create(tmp_path / "file" / "ca")


def test_write_private_and_public_are_atomic_with_exact_modes(tmp_path: Path) -> None:
    secret = tmp_path / "a" / "b" / "device.key"
    old_umask = os.umask(0o077)  # the modes must not depend on the umask
    try:
        write_private(secret, "key one")
        public = tmp_path / "a" / "device.crt"
        write_public(public, b"cert")
    finally:
        os.umask(old_umask)
    assert (_mode(tmp_path / "a"), _mode(tmp_path / "a" / "b")) == (0o700, 0o700)
    assert (_mode(secret), _mode(public)) == (0o600, 0o644)
    public.chmod(0o666)
    write_public(public, "cert two")  # replacing resets the mode
    write_private(secret, b"key two")
    assert (public.read_text(), _mode(public)) == ("cert two", 0o644)
    assert (secret.read_bytes(), _mode(secret)) == (b"key two", 0o600)
    assert sorted(p.name for p in secret.parent.iterdir()) == ["device.key"]


# --- issuing ---------------------------------------------------------------------------------


def test_issue_defaults_to_an_rsa_2048_client_certificate(
    ca: DevelopmentCA, rsa_device: IssuedCertificate
) -> None:
    cert = load_certificate(rsa_device.certificate_pem)
    assert (
        rsa_device.certificate_id
        == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    )
    assert rsa_device.serial_number == cert.serial_number
    assert subject_common_name(cert) == "dev-rsa"
    assert is_signed_by(cert, ca.certificate)
    assert not is_ca_certificate(cert)
    assert rsa_device.private_key_pem is not None
    key = serialization.load_pem_private_key(rsa_device.private_key_pem.encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    public = serialization.load_pem_public_key(rsa_device.public_key_pem.encode())
    assert public == key.public_key() == cert.public_key()
    assert _ext(cert, x509.ExtendedKeyUsage) == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    usage = _ext(cert, x509.KeyUsage)
    assert usage.digital_signature and usage.key_encipherment and not usage.key_cert_sign
    assert (
        _ext(cert, x509.AuthorityKeyIdentifier).key_identifier
        == _ext(ca.certificate, x509.SubjectKeyIdentifier).digest
    )
    assert _ext(cert, x509.SubjectKeyIdentifier).digest  # present
    # Valid from a little in the past (clock skew) for a year.
    now = _now()
    assert now - CLOCK_SKEW - timedelta(minutes=1) <= rsa_device.not_before <= now - CLOCK_SKEW
    assert (rsa_device.not_after - now) - timedelta(days=365) < timedelta(minutes=1)


def test_issue_ec(ca: DevelopmentCA) -> None:
    issued = ca.issue("dev-ec", key_type="ec", days=30)
    cert = load_certificate(issued.certificate_pem)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert not _ext(cert, x509.KeyUsage).key_encipherment  # EC keys only sign
    assert timedelta(days=29) < issued.not_after - issued.not_before <= timedelta(days=31)


def test_serials_are_random_and_ids_unique(ca: DevelopmentCA) -> None:
    issued = [ca.issue(f"dev-{i}", key_type="ec") for i in range(5)]
    assert len({i.serial_number for i in issued}) == 5
    assert len({i.certificate_id for i in issued}) == 5


def test_issue_expired_and_not_yet_valid(ca: DevelopmentCA) -> None:
    now = _now().replace(microsecond=0)
    expired = ca.issue(
        "old", key_type="ec", not_before=now - timedelta(days=10), not_after=now - timedelta(days=1)
    )
    assert (expired.not_before, expired.not_after) == (
        now - timedelta(days=10),
        now - timedelta(days=1),
    )
    future = ca.issue("future", key_type="ec", days=5, not_before=now + timedelta(days=1))
    assert future.not_before == now + timedelta(days=1)
    assert future.not_after == now + timedelta(days=6)  # days count from not_before


def test_issue_is_cut_at_the_roots_expiry(tmp_path: Path) -> None:
    short = DevelopmentCA.create(tmp_path / "ca", days=30)
    issued = short.issue("dev", key_type="ec", days=365)
    assert issued.not_after == short.certificate.not_valid_after_utc


_LATER = datetime(2030, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (lambda ca: ca.issue("dev", days=0), "at least 1 day"),
        (lambda ca: ca.issue(""), "common name must be 1 to 64 characters"),
        (lambda ca: ca.issue("x" * 65), "common name must be 1 to 64 characters, not 65"),
        # Checked at run time too: the CLI and REST pass the user's string through.
        (lambda ca: ca.issue("dev", key_type="dsa"), "unknown key type 'dsa'"),
        (
            lambda ca: ca.issue("dev", not_before=_LATER, not_after=_LATER - timedelta(days=1)),
            "would expire .* before it becomes valid",
        ),
    ],
)
def test_issue_refuses_bad_requests(
    ca: DevelopmentCA, request_: Callable[[DevelopmentCA], object], message: str
) -> None:
    with pytest.raises(CertificateError, match=message):
        request_(ca)


def test_issue_wants_aware_datetimes(ca: DevelopmentCA) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ca.issue("dev", key_type="ec", not_before=datetime(2030, 1, 1))


# --- CSRs ------------------------------------------------------------------------------------


def test_sign_csr_keeps_the_requesters_key_and_subject(ca: DevelopmentCA) -> None:
    pem = _ec_csr("dev-csr")
    csr = x509.load_pem_x509_csr(pem)
    issued = ca.sign_csr(pem.decode(), days=10)
    cert = load_certificate(issued.certificate_pem)
    assert issued.private_key_pem is None
    assert cert.subject == csr.subject
    assert cert.public_key() == csr.public_key()
    assert is_signed_by(cert, ca.certificate)
    assert _ext(cert, x509.ExtendedKeyUsage) == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    assert issued.certificate_id == certificate_id(cert.public_bytes(serialization.Encoding.DER))


def test_sign_csr_ignores_requested_extensions(ca: DevelopmentCA) -> None:
    pem = _ec_csr("sneaky", bc=x509.BasicConstraints(ca=True, path_length=None))
    cert = load_certificate(ca.sign_csr(pem).certificate_pem)
    assert not is_ca_certificate(cert)


def test_sign_csr_allows_an_empty_subject(ca: DevelopmentCA) -> None:
    cert = load_certificate(ca.sign_csr(_ec_csr(None)).certificate_pem)
    assert cert.subject == x509.Name([])
    assert is_signed_by(cert, ca.certificate)


def test_sign_csr_refuses_an_altered_request(ca: DevelopmentCA) -> None:
    der = x509.load_pem_x509_csr(_ec_csr("dev-1")).public_bytes(serialization.Encoding.DER)
    tampered = x509.load_der_x509_csr(der.replace(b"dev-1", b"dev-2"))
    with pytest.raises(
        CertificateError, match="the CSR's signature does not verify: was it altered"
    ):
        ca.sign_csr(tampered.public_bytes(serialization.Encoding.PEM))


def test_sign_csr_refuses_what_is_not_a_csr(
    ca: DevelopmentCA, rsa_device: IssuedCertificate
) -> None:
    with pytest.raises(CertificateError, match="not a PEM certificate signing request"):
        ca.sign_csr("garbage")
    with pytest.raises(CertificateError, match="this is a certificate, not a request"):
        ca.sign_csr(rsa_device.certificate_pem)


def test_sign_csr_refuses_a_weak_key(ca: DevelopmentCA) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(CertificateError, match="1024-bit RSA key is too weak"):
        ca.sign_csr(csr.public_bytes(serialization.Encoding.PEM))


# --- the server certificate ------------------------------------------------------------------


def _sans(ca: DevelopmentCA) -> set[str]:
    cert = load_certificate(ca.server_certfile.read_bytes())
    return {str(n.value) for n in _ext(cert, x509.SubjectAlternativeName)}


def test_server_certificate_is_issued_once(fresh_ca: DevelopmentCA) -> None:
    assert fresh_ca.ensure_server_certificate(SERVER_NAMES)
    cert = load_certificate(fresh_ca.server_certfile.read_bytes())
    assert subject_common_name(cert) == "localhost"
    assert _sans(fresh_ca) == {"localhost", "127.0.0.1", "::1"}
    assert _ext(cert, x509.ExtendedKeyUsage) == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH]
    )
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert (_mode(fresh_ca.server_keyfile), _mode(fresh_ca.server_certfile)) == (0o600, 0o644)
    before = fresh_ca.server_certfile.read_bytes()
    # Same names in another order, another case, repeated: nothing to do.
    assert not fresh_ca.ensure_server_certificate(["::1", "LOCALHOST", "127.0.0.1", "localhost"])
    assert not DevelopmentCA.load(fresh_ca.directory).ensure_server_certificate(SERVER_NAMES)
    assert fresh_ca.server_certfile.read_bytes() == before


def test_server_certificate_is_reissued_when_names_change(fresh_ca: DevelopmentCA) -> None:
    fresh_ca.ensure_server_certificate(SERVER_NAMES)
    assert fresh_ca.ensure_server_certificate([*SERVER_NAMES, "pi.local", "192.168.1.20"])
    assert _sans(fresh_ca) == {"localhost", "127.0.0.1", "::1", "pi.local", "192.168.1.20"}
    assert fresh_ca.ensure_server_certificate(["localhost"])  # fewer names count as a change
    assert _sans(fresh_ca) == {"localhost"}


def test_server_certificate_is_reissued_when_expiring(fresh_ca: DevelopmentCA) -> None:
    fresh_ca.ensure_server_certificate(SERVER_NAMES, days=10)
    cert = load_certificate(fresh_ca.server_certfile.read_bytes())
    assert fresh_ca.server_renewal_reason(cert, SERVER_NAMES) == "expires soon"
    assert fresh_ca.ensure_server_certificate(SERVER_NAMES)
    assert not fresh_ca.ensure_server_certificate(SERVER_NAMES)


def test_server_certificate_is_not_renewed_forever_when_the_root_ends_first(
    tmp_path: Path,
) -> None:
    short = DevelopmentCA.create(tmp_path / "ca", days=10)
    assert short.ensure_server_certificate(SERVER_NAMES)
    assert not short.ensure_server_certificate(SERVER_NAMES)


def test_server_certificate_from_another_ca_is_replaced(
    fresh_ca: DevelopmentCA, ca: DevelopmentCA
) -> None:
    shutil.copyfile(ca.server_certfile, fresh_ca.server_certfile)
    shutil.copyfile(ca.server_keyfile, fresh_ca.server_keyfile)
    assert fresh_ca.ensure_server_certificate(SERVER_NAMES)
    assert is_signed_by(
        load_certificate(fresh_ca.server_certfile.read_bytes()), fresh_ca.certificate
    )


@pytest.mark.parametrize("damaged", ["server.key", "server.crt"])
def test_damaged_server_files_are_replaced(fresh_ca: DevelopmentCA, damaged: str) -> None:
    fresh_ca.ensure_server_certificate(SERVER_NAMES)
    (fresh_ca.directory / damaged).write_text("damaged")
    assert fresh_ca.ensure_server_certificate(SERVER_NAMES)
    assert not fresh_ca.ensure_server_certificate(SERVER_NAMES)


def test_a_key_from_another_pair_is_replaced(fresh_ca: DevelopmentCA) -> None:
    fresh_ca.ensure_server_certificate(SERVER_NAMES)
    shutil.copyfile(fresh_ca.keyfile, fresh_ca.server_keyfile)  # a crash between two writes
    assert fresh_ca.ensure_server_certificate(SERVER_NAMES)


@pytest.mark.parametrize("names", [[], ["bad name"], ["ünïcode.local"], [""]])
def test_server_names_are_checked(fresh_ca: DevelopmentCA, names: list[str]) -> None:
    with pytest.raises(CertificateError, match="server"):
        fresh_ca.ensure_server_certificate(names)


def test_a_long_first_name_is_not_the_common_name(fresh_ca: DevelopmentCA) -> None:
    long_name = ("a" * 60) + ".example.com"
    assert fresh_ca.ensure_server_certificate([long_name, "localhost"])
    cert = load_certificate(fresh_ca.server_certfile.read_bytes())
    assert subject_common_name(cert) == "thingcore server"
    assert long_name in _sans(fresh_ca)


# --- CRL -------------------------------------------------------------------------------------


def test_crl_lists_serials_and_verifies_with_the_root(fresh_ca: DevelopmentCA) -> None:
    a, b = fresh_ca.issue("a", key_type="ec"), fresh_ca.issue("b", key_type="ec")
    first = datetime(2026, 1, 1, tzinfo=UTC)
    pem = fresh_ca.crl(
        [
            (a.serial_number, first),
            (b.serial_number, first + timedelta(hours=1)),
            (a.serial_number, first + timedelta(days=1)),
        ]
    )
    crl = x509.load_pem_x509_crl(pem.encode())
    public_key = fresh_ca.certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(public_key)
    assert crl.issuer == fresh_ca.certificate.subject
    assert {r.serial_number for r in crl} == {a.serial_number, b.serial_number}
    entry = crl.get_revoked_certificate_by_serial_number(a.serial_number)
    assert entry is not None and entry.revocation_date_utc == first  # the earliest time wins
    assert crl.next_update_utc is not None
    assert timedelta(days=7) - (crl.next_update_utc - _now()) < timedelta(minutes=1)
    assert fresh_ca.crlfile.read_text() == pem
    assert _mode(fresh_ca.crlfile) == 0o644
    numbers = [_ext_crl_number(crl)]
    for _ in range(2):
        numbers.append(_ext_crl_number(x509.load_pem_x509_crl(fresh_ca.crl([]).encode())))
    assert numbers == [1, 2, 3]  # RFC 5280 5.2.3: increasing


def _ext_crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_crl_refuses_bad_entries(ca: DevelopmentCA) -> None:
    with pytest.raises(ValueError, match="positive"):
        ca.crl([(0, _now())])
    with pytest.raises(ValueError, match="timezone-aware"):
        ca.crl([(1, datetime(2026, 1, 1))])


# --- real TLS handshakes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """A device's certificate and key files, as a device SDK is configured with them."""

    certfile: Path
    keyfile: Path
    certificate_id: str


def _device_files(directory: Path, name: str, issued: IssuedCertificate, key_pem: str) -> Device:
    write_public(directory / f"{name}.crt", issued.certificate_pem)
    write_private(directory / f"{name}.key", key_pem)
    return Device(directory / f"{name}.crt", directory / f"{name}.key", issued.certificate_id)


def _issued_device(directory: Path, name: str, issued: IssuedCertificate) -> Device:
    assert issued.private_key_pem is not None
    return _device_files(directory, name, issued, issued.private_key_pem)


def _client_context(ca: DevelopmentCA, device: Device) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.certfile))
    # What Python 3.13's default context checks: the certificates must be well-formed, not
    # merely trusted (AKI, key usage, critical basic constraints...).
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_cert_chain(device.certfile, device.keyfile)
    return context


def _server_context(ca: DevelopmentCA) -> ssl.SSLContext:
    # The broker's own TLS listener context: the real path.
    return server_ssl_context(ca.server_certfile, ca.server_keyfile, ca.certfile)


def _handshake(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, hostname: str = "localhost"
) -> bytes:
    """Run a TLS handshake in memory; returns the client certificate the server verified.

    Raises:
        ssl.SSLError: from whichever side refused the other.
    """
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_server, from_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, from_client, server_hostname=hostname)
    server = server_context.wrap_bio(to_server, from_server, server_side=True)
    pending = [client, server]
    for _ in range(10):  # a TLS 1.3 handshake takes three flights
        for side in list(pending):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                continue
            pending.remove(side)
        to_server.write(from_client.read())
        to_client.write(from_server.read())
        if not pending:
            break
    assert not pending, "handshake did not finish"
    der = server.getpeercert(binary_form=True)
    assert der is not None
    return der


@pytest.fixture(scope="module")
def devices(
    tmp_path_factory: pytest.TempPathFactory,
    ca: DevelopmentCA,
    other_ca: DevelopmentCA,
    rsa_device: IssuedCertificate,
) -> dict[str, Device]:
    directory = tmp_path_factory.mktemp("devices")
    now = _now()
    csr_key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev-csr")]))
        .sign(csr_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    csr_key_pem = csr_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "rsa": _issued_device(directory, "rsa", rsa_device),
        "ec": _issued_device(directory, "ec", ca.issue("dev-ec", key_type="ec")),
        "csr": _device_files(directory, "csr", ca.sign_csr(csr), csr_key_pem),
        "stranger": _issued_device(directory, "stranger", other_ca.issue("dev-x", key_type="ec")),
        "expired": _issued_device(
            directory,
            "expired",
            ca.issue(
                "old",
                key_type="ec",
                not_before=now - timedelta(days=2),
                not_after=now - timedelta(days=1),
            ),
        ),
        "future": _issued_device(
            directory, "future", ca.issue("new", key_type="ec", not_before=now + timedelta(days=1))
        ),
    }


@pytest.mark.parametrize("kind", ["rsa", "ec", "csr"])
@pytest.mark.parametrize("hostname", SERVER_NAMES)
def test_handshake_with_an_issued_client_certificate(
    ca: DevelopmentCA, devices: dict[str, Device], kind: str, hostname: str
) -> None:
    device = devices[kind]
    der = _handshake(_server_context(ca), _client_context(ca, device), hostname)
    assert certificate_id(der) == device.certificate_id  # what the broker will look up


@pytest.mark.parametrize("kind", ["stranger", "expired", "future"])
def test_handshake_refuses_client_certificates_it_must_not_trust(
    ca: DevelopmentCA, devices: dict[str, Device], kind: str
) -> None:
    with pytest.raises(ssl.SSLError, match="certificate verify failed"):
        _handshake(_server_context(ca), _client_context(ca, devices[kind]))


def test_a_device_trusting_another_ca_refuses_the_server(
    ca: DevelopmentCA, other_ca: DevelopmentCA, devices: dict[str, Device]
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(_server_context(ca), _client_context(other_ca, devices["stranger"]))


def test_the_server_certificate_names_are_checked_by_clients(
    ca: DevelopmentCA, devices: dict[str, Device]
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch|IP address mismatch"):
        _handshake(_server_context(ca), _client_context(ca, devices["ec"]), "other.example")


@pytest.fixture
def revoked_setup(tmp_path: Path, fresh_ca: DevelopmentCA) -> tuple[DevelopmentCA, Device, Device]:
    """A CA whose CRL revokes one of two devices."""
    fresh_ca.ensure_server_certificate(SERVER_NAMES)
    good = fresh_ca.issue("good", key_type="ec")
    bad = fresh_ca.issue("bad", key_type="ec")
    fresh_ca.crl([(bad.serial_number, _now() - timedelta(minutes=1))])
    return fresh_ca, _issued_device(tmp_path, "good", good), _issued_device(tmp_path, "bad", bad)


def test_the_crl_refuses_revoked_certificates_in_a_handshake(
    revoked_setup: tuple[DevelopmentCA, Device, Device],
) -> None:
    ca, good, bad = revoked_setup
    server = _server_context(ca)
    server.load_verify_locations(cafile=str(ca.crlfile))  # a PEM CRL loads like a CA file
    server.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    assert certificate_id(_handshake(server, _client_context(ca, good))) == good.certificate_id
    with pytest.raises(ssl.SSLError, match="certificate revoked"):
        _handshake(server, _client_context(ca, bad))
