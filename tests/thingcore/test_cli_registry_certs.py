"""``thingcore certs`` and ``thingcore ca``: issuing, signing, registering, revoking."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.certs import CertificateAuthority
from tests.thingcore.test_cli_registry import Cli, cli, mode

__all__ = ["cli"]  # the fixture, imported from the main CLI test module


def self_signed(common_name: str) -> str:
    """A self-signed device certificate (not a CA), as a device maker might make one."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def csr_pem(common_name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def serial_of(pem: str | bytes) -> int:
    data = pem.encode() if isinstance(pem, str) else pem
    return x509.load_pem_x509_certificate(data).serial_number


# -- certs create ------------------------------------------------------------------------------


def test_certs_create_for_a_thing(cli: Cli) -> None:
    cli.ok("things", "create", "dev-1")
    policy = cli.policy()
    out = cli.json("certs", "create", "--thing", "dev-1", "--policy", policy, "--key-type", "ec")
    folder = cli.data_dir / "things" / "dev-1"
    assert Path(out["certificatePath"]) == folder / "certificate.pem.crt"
    assert mode(folder / "private.pem.key") == 0o600
    assert mode(folder / "public.pem.key") == 0o600
    assert mode(folder / "root-ca.pem") == 0o644
    assert out["status"] == "ACTIVE"
    cert = x509.load_pem_x509_certificate((folder / "certificate.pem.crt").read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dev-1"
    assert cli.json("things", "principals", "dev-1")["principals"] == [out["certificateArn"]]
    attached = cli.json("policies", "attached", "--cert", out["certificateId"])["policies"]
    assert [p["policyName"] for p in attached] == [policy]


def test_certs_create_without_a_thing_goes_under_certs(cli: Cli) -> None:
    out = cli.json("certs", "create", "--inactive", "--days", "10")
    folder = cli.data_dir / "certs" / out["certificateId"][:10]
    assert Path(out["privateKeyPath"]) == folder / "private.pem.key"
    described = cli.json("certs", "describe", out["certificateId"])["certificateDescription"]
    assert described["status"] == "INACTIVE"
    validity = described["validity"]
    assert 9 * 86400 < validity["notAfter"] - validity["notBefore"] <= 10 * 86400 + 600


def test_certs_create_checks_the_thing_and_policy_first(cli: Cli) -> None:
    assert "no thing named 'ghost'" in cli.fails("certs", "create", "--thing", "ghost")
    assert "no policy named 'ghost'" in cli.fails("certs", "create", "--policy", "ghost")
    assert cli.json("certs", "list")["certificates"] == []


def test_certs_list_and_describe(cli: Cli) -> None:
    first = cli.json("certs", "create")
    second = cli.json("certs", "create")
    listed = cli.json("certs", "list")["certificates"]
    assert [c["certificateId"] for c in listed] == [first["certificateId"], second["certificateId"]]
    table = cli.ok("certs", "list").text
    assert first["certificateId"][:12] in table
    assert "ACTIVE" in table
    ca_id = cli.json("ca", "show")["certificateId"]
    by_ca = cli.json("certs", "list", "--ca", ca_id[:8])["certificates"]
    assert len(by_ca) == 2
    text = cli.ok("certs", "describe", first["certificateId"][:9]).text
    assert first["certificateId"] in text
    assert ca_id in text


def test_certificate_ids_accept_prefixes_and_arns(cli: Cli) -> None:
    out = cli.json("certs", "create")
    cert_id = out["certificateId"]
    for form in (cert_id, cert_id.upper(), cert_id[:8], cert_id[:20], out["certificateArn"]):
        described = cli.json("certs", "describe", form)
        assert described["certificateDescription"]["certificateId"] == cert_id
    assert "at least 8 hex digits" in cli.fails("certs", "describe", cert_id[:7])
    other = "0" * 8 if not cert_id.startswith("0" * 8) else "f" * 8
    assert f"no certificate id starts with {other}" in cli.fails("certs", "describe", other)
    assert "no certificate" in cli.fails("certs", "describe", "0" * 63 + "1")


# -- status, revocation, deletion --------------------------------------------------------------


def test_status_changes(cli: Cli) -> None:
    cert_id = cli.json("certs", "create")["certificateId"]
    prefix = cert_id[:8]

    def status() -> str:
        return str(cli.json("certs", "describe", prefix)["certificateDescription"]["status"])

    assert "is INACTIVE" in cli.ok("certs", "deactivate", prefix).stdout
    assert status() == "INACTIVE"
    cli.ok("certs", "activate", prefix)
    assert status() == "ACTIVE"
    cli.ok("certs", "update", prefix, "--status", "inactive")
    assert status() == "INACTIVE"
    cli.ok("certs", "update", prefix, "--status", "REVOKED")
    assert status() == "REVOKED"
    assert "cannot be reactivated" in cli.fails("certs", "activate", prefix)


def test_revoke_writes_the_crl(cli: Cli) -> None:
    kept = cli.json("certs", "create")
    revoked = cli.json("certs", "create")
    text = cli.ok("certs", "revoke", revoked["certificateId"][:8]).text
    crl_path = cli.data_dir / "ca" / "crl.pem"
    assert str(crl_path) in text
    crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    root = x509.load_pem_x509_certificate(cli.ok("ca", "show", "--pem").stdout.encode())
    assert crl.is_signature_valid(root.public_key())
    revoked_serial = serial_of(Path(revoked["certificatePath"]).read_bytes())
    kept_serial = serial_of(Path(kept["certificatePath"]).read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(revoked_serial) is not None
    assert crl.get_revoked_certificate_by_serial_number(kept_serial) is None
    assert len(list(crl)) == 1


def test_ca_crl_prints_or_writes_the_list(cli: Cli, tmp_path: Path) -> None:
    cert = cli.json("certs", "create")
    cli.ok("certs", "update", cert["certificateId"], "--status", "REVOKED")
    printed = cli.ok("ca", "crl").stdout
    crl = x509.load_pem_x509_crl(printed.encode())
    serial = serial_of(Path(cert["certificatePath"]).read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    out = tmp_path / "exported" / "crl.pem"
    assert str(out) in cli.ok("ca", "crl", "--out", str(out)).text
    assert x509.load_pem_x509_crl(out.read_bytes()).get_revoked_certificate_by_serial_number(serial)


def test_delete_needs_an_inactive_certificate(cli: Cli) -> None:
    cli.ok("things", "create", "dev-1")
    out = cli.json("certs", "create", "--thing", "dev-1", "--policy", cli.policy())
    cert_id = out["certificateId"]
    assert "is ACTIVE" in cli.fails("certs", "delete", cert_id)
    cli.ok("certs", "deactivate", cert_id)
    error = cli.fails("certs", "delete", cert_id)
    assert "still attached to thing 'dev-1', policy 'dev-policy'" in error
    assert "Deleted certificate" in cli.ok("certs", "delete", cert_id[:8], "--force").stdout
    assert cli.json("certs", "list")["certificates"] == []
    assert cli.json("things", "principals", "dev-1")["principals"] == []


# -- CSRs and registration ---------------------------------------------------------------------


def test_create_from_csr_prints_or_writes_the_certificate(cli: Cli, tmp_path: Path) -> None:
    cli.ok("things", "create", "dev-1")
    printed = cli.ok("certs", "create-from-csr", "-", "--thing", "dev-1", input=csr_pem("dev-1"))
    cert = x509.load_pem_x509_certificate(printed.stdout.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dev-1"
    assert len(cli.json("things", "principals", "dev-1")["principals"]) == 1

    csr_file = tmp_path / "dev.csr"
    csr_file.write_text(csr_pem("dev-2"))
    target = tmp_path / "dev.crt"
    out = cli.json("certs", "create-from-csr", str(csr_file), "--out", str(target), "--inactive")
    assert Path(out["certificatePath"]) == target
    assert out["status"] == "INACTIVE"
    assert target.read_text() == out["certificatePem"]
    root = x509.load_pem_x509_certificate(cli.ok("ca", "show", "--pem").stdout.encode())
    x509.load_pem_x509_certificate(target.read_bytes()).verify_directly_issued_by(root)


def test_create_from_csr_explains_bad_input(cli: Cli, tmp_path: Path) -> None:
    assert "does not exist" in cli.fails("certs", "create-from-csr", str(tmp_path / "nope.csr"))
    error = cli.fails("certs", "create-from-csr", "-", input=self_signed("x"))
    assert "CSR" in error or "certificate signing request" in error


def test_register_self_signed_without_ca(cli: Cli, tmp_path: Path) -> None:
    pem_file = tmp_path / "device.crt"
    pem_file.write_text(self_signed("maker-device"))
    error = cli.fails("certs", "register", str(pem_file))
    assert "--without-ca" in error
    cli.ok("things", "create", "maker-device")
    out = cli.json("certs", "register", str(pem_file), "--without-ca", "--thing", "maker-device")
    assert out["status"] == "ACTIVE"
    described = cli.json("certs", "describe", out["certificateId"])["certificateDescription"]
    assert described["status"] == "ACTIVE"
    assert "caCertificateId" not in described
    assert cli.json("things", "principals", "maker-device")["principals"] == [out["certificateArn"]]
    assert "already registered" in cli.fails("certs", "register", str(pem_file), "--without-ca")


def test_register_with_an_external_ca(cli: Cli, tmp_path: Path) -> None:
    ca = CertificateAuthority("factory CA")
    device = ca.issue("factory-device", server=False)
    ca_file, device_file = tmp_path / "ca.pem", tmp_path / "device.pem"
    ca_file.write_bytes(ca.ca.cert_pem())
    device_file.write_bytes(device.cert_pem())

    assert "not signed by a registered CA" in cli.fails("certs", "register", str(device_file))
    registered_ca = cli.json("ca", "register", str(ca_file))
    ca_id = registered_ca["certificateId"]
    cas = cli.json("ca", "list")["certificates"]
    assert [c["certificateId"] for c in cas] == [ca_id]
    assert "external" in cli.ok("ca", "list").text

    out = cli.json(
        "certs", "register", str(device_file), "--ca-cert", str(ca_file), "--status", "INACTIVE"
    )
    described = cli.json("certs", "describe", out["certificateId"])["certificateDescription"]
    assert described["caCertificateId"] == ca_id
    assert described["status"] == "INACTIVE"
    assert [
        c["certificateId"] for c in cli.json("certs", "list", "--ca", ca_id)["certificates"]
    ] == [out["certificateId"]]

    # A CA goes only once it is INACTIVE and nothing refers to it.
    assert "is ACTIVE" in cli.fails("ca", "delete", ca_id[:8])
    cli.ok("ca", "update", ca_id[:8], "--status", "INACTIVE")
    assert cli.json("ca", "list")["certificates"][0]["status"] == "INACTIVE"
    assert "still has registered certificates" in cli.fails("ca", "delete", ca_id)
    cli.ok("certs", "delete", out["certificateId"])
    assert "Deleted CA" in cli.ok("ca", "delete", ca_id).stdout
    assert cli.json("ca", "list")["certificates"] == []


def test_register_refuses_a_non_ca_as_ca(cli: Cli, tmp_path: Path) -> None:
    leaf = tmp_path / "leaf.pem"
    leaf.write_text(self_signed("leaf"))
    assert "is not a CA certificate" in cli.fails("ca", "register", str(leaf))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    assert cli.fails("certs", "register", str(garbage)).startswith("error: ")


# -- the development CA ------------------------------------------------------------------------


def test_ca_init_show_and_pem(cli: Cli) -> None:
    assert "no CA in" in cli.fails("ca", "show", "--pem")
    info = cli.json("ca", "init")
    assert info["status"] == "ACTIVE"
    assert info["deactivated"] == []
    pem = cli.ok("ca", "show", "--pem").stdout
    root = x509.load_pem_x509_certificate(pem.encode())
    assert pem == (cli.data_dir / "ca" / "ca.crt").read_text()
    shown = cli.json("ca", "show")
    assert shown["certificateId"] == info["certificateId"]
    assert shown["subject"].startswith("CN=thingcore development CA")
    assert shown["notBefore"] == root.not_valid_before_utc.timestamp()
    assert shown["crlPath"] is None
    assert mode(cli.data_dir / "ca" / "ca.key") == 0o600
    text = cli.ok("ca", "show").text
    assert info["certificateId"] in text
    assert "ACTIVE" in text
    registered = cli.json("ca", "list")["certificates"]
    assert [(c["certificateId"], c["builtin"]) for c in registered] == [
        (info["certificateId"], True)
    ]


def test_ca_init_refuses_to_replace_without_force(cli: Cli) -> None:
    first = cli.json("ca", "init")
    assert "use --force" in cli.fails("ca", "init")
    second = cli.json("ca", "init", "--force")
    assert second["certificateId"] != first["certificateId"]
    assert second["deactivated"] == [first["certificateId"]]
    statuses = {c["certificateId"]: c["status"] for c in cli.json("ca", "list")["certificates"]}
    assert statuses == {first["certificateId"]: "INACTIVE", second["certificateId"]: "ACTIVE"}
    assert cli.ok("ca", "show", "--pem").stdout == (cli.data_dir / "ca" / "ca.crt").read_text()


def test_a_certificate_whose_files_cannot_be_written_is_not_kept(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    error = cli.fails("certs", "create", "--out", str(blocker / "creds"))
    assert error == f"error: cannot write {blocker / 'creds'}: Not a directory"
    assert cli.json("certs", "list")["certificates"] == []
