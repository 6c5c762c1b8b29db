"""``thingcore certs``: device certificates, issued here or registered from elsewhere."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import RenderableType

from registry.ca import DevelopmentCA
from registry.service import Registry
from thingcore.cli.ca import ensure_development_ca, is_development_ca, write_crl
from thingcore.cli.common import (
    DataDir,
    Json,
    all_items,
    iso,
    key_values,
    listing,
    open_registry,
    print_json,
    read_input,
    resolve_ca_id,
    resolve_cert_id,
    short_id,
    stdout_console,
    subtyper,
    write_file,
)
from thingcore.errors import ThingcoreError

app = subtyper(
    "Device certificates: issue, sign CSRs, register, activate, revoke, delete.\n\n"
    "Certificates are issued by the development CA, or made elsewhere and registered (signed "
    "by a registered CA, or self-signed).\n\n"
    "Example: `thingcore certs create --thing dev-1 --policy dev-policy`"
)

CERTIFICATE_FILE = "certificate.pem.crt"
PRIVATE_KEY_FILE = "private.pem.key"
PUBLIC_KEY_FILE = "public.pem.key"
ROOT_CA_FILE = "root-ca.pem"
"""File names as the AWS console hands them out, so device samples find them."""

CertId = Annotated[
    str, typer.Argument(help="Certificate id, ARN, or a unique prefix of 8+ hex digits.")
]
Thing = Annotated[str | None, typer.Option("--thing", help="Attach the certificate to this thing.")]
Policy = Annotated[
    str | None, typer.Option("--policy", help="Attach this policy to the certificate.")
]


class KeyType(StrEnum):
    RSA = "rsa"
    EC = "ec"


class RegisterStatus(StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"


class CertStatus(StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    REVOKED = "REVOKED"


# -- issuing credentials (also `things create --with-cert`) --------------------------------------


def check_attachments(registry: Registry, *, thing: str | None, policy: str | None) -> None:
    """Fail before anything is created if the thing or the policy to attach does not exist."""
    if policy is not None:
        registry.policies.get(policy)
    if thing is not None:
        registry.things.describe(thing)


def credentials_dir(registry: Registry, thing: str | None, out: Path | None) -> Path | None:
    """Where a new certificate and key go (None: under ``certs/`` once the id is known);
    refuses a folder that already holds credentials, which would orphan a working key."""
    directory = (
        out if out is not None else (registry.data_dir / "things" / thing if thing else None)
    )
    if directory is not None:
        for name in (CERTIFICATE_FILE, PRIVATE_KEY_FILE):
            if (directory / name).exists():
                raise ThingcoreError(
                    f"{directory / name} already exists: remove the old credentials or "
                    "choose another folder with --out"
                )
    return directory


@dataclass(frozen=True, slots=True)
class Issued:
    certificate_id: str
    certificate_arn: str
    status: str
    certificate_path: Path
    private_key_path: Path
    public_key_path: Path
    root_ca_path: Path

    def as_json(self) -> dict[str, Any]:
        return {
            "certificateId": self.certificate_id,
            "certificateArn": self.certificate_arn,
            "status": self.status,
            "certificatePath": str(self.certificate_path),
            "privateKeyPath": str(self.private_key_path),
            "publicKeyPath": str(self.public_key_path),
            "rootCaPath": str(self.root_ca_path),
        }


def issue_credentials(
    registry: Registry,
    ca: DevelopmentCA,
    directory: Path | None,
    *,
    thing: str | None,
    policy: str | None,
    active: bool = True,
    key_type: str = "rsa",
    days: int = 365,
) -> Issued:
    """A key pair and certificate from the development CA, written to ``directory``, then
    attached to ``thing`` and given ``policy``."""
    # RFC 5280 caps a common name at 64 characters; thing names may be 128.
    common_name = thing[:64] if thing else None
    created = registry.certs.create_keys_and_certificate(
        set_active=active, common_name=common_name, key_type=key_type, days=days
    )
    cert_id = created["certificateId"]
    if directory is None:
        directory = registry.data_dir / "certs" / cert_id[:10]
    try:
        paths = (
            write_file(directory / CERTIFICATE_FILE, created["certificatePem"], private=True),
            write_file(
                directory / PRIVATE_KEY_FILE, created["keyPair"]["PrivateKey"], private=True
            ),
            write_file(directory / PUBLIC_KEY_FILE, created["keyPair"]["PublicKey"], private=True),
            write_file(directory / ROOT_CA_FILE, ca.certificate_pem, private=False),
        )
    except ThingcoreError:
        # The private key exists nowhere else: a registered certificate without it is useless,
        # and half-written credentials would block the next attempt.
        for name in (CERTIFICATE_FILE, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE):
            with contextlib.suppress(OSError):
                (directory / name).unlink(missing_ok=True)
        registry.certs.update_status(cert_id, "INACTIVE")
        registry.certs.delete(cert_id, force=True)
        raise
    attach(registry, cert_id, thing=thing, policy=policy)
    return Issued(
        cert_id,
        created["certificateArn"],
        "ACTIVE" if active else "INACTIVE",
        *paths,
    )


def attach(registry: Registry, cert_id: str, *, thing: str | None, policy: str | None) -> None:
    if thing is not None:
        registry.certs.attach_thing(thing, cert_id)
    if policy is not None:
        registry.policies.attach(policy, "cert", cert_id)


def refresh_crl(registry: Registry, cert_id: str) -> Path | None:
    """After a revocation: rewrite the CRL if the development CA issued ``cert_id``."""
    desc = registry.certs.describe(cert_id)["certificateDescription"]
    ca_id = desc.get("caCertificateId")
    if desc["status"] != "REVOKED" or ca_id is None:
        return None
    ca = is_development_ca(registry, ca_id)
    if ca is None:
        return None
    write_crl(registry, ca)
    return ca.crlfile.absolute()


# -- renderers -----------------------------------------------------------------------------------


def render_issued(issued: Issued, thing: str | None, policy: str | None) -> RenderableType:
    rows: list[tuple[str, RenderableType]] = [
        ("Certificate id", issued.certificate_id),
        ("Status", issued.status),
    ]
    if thing is not None:
        rows.append(("Thing", thing))
    if policy is not None:
        rows.append(("Policy", policy))
    rows += [
        ("Certificate", str(issued.certificate_path)),
        ("Private key", str(issued.private_key_path)),
        ("Public key", str(issued.public_key_path)),
        ("Root CA", str(issued.root_ca_path)),
    ]
    return key_values(rows)


def render_certificates(items: list[dict[str, Any]]) -> RenderableType:
    return listing(
        ["Id", "Status", "Subject", "Expires"],
        (
            [short_id(c["certificateId"]), c["status"], c["subject"], iso(c["notAfter"])]
            for c in items
        ),
        fold=["Subject"],
        caption="Ids are shortened: any unique prefix of 8 or more digits works.",
    )


def render_certificate(
    desc: dict[str, Any], things: list[str], policies: list[str]
) -> RenderableType:
    validity = desc["validity"]
    return key_values(
        [
            ("Certificate id", desc["certificateId"]),
            ("ARN", desc["certificateArn"]),
            ("Status", desc["status"]),
            ("Subject", desc.get("subject", "-")),
            ("Issued by CA", desc.get("caCertificateId", "none (registered without a CA)")),
            ("Valid", f"{iso(validity['notBefore'])} .. {iso(validity['notAfter'])}"),
            ("Registered", iso(desc["creationDate"])),
            ("Last changed", iso(desc["lastModifiedDate"])),
            ("Things", ", ".join(things) or "-"),
            ("Policies", ", ".join(policies) or "-"),
        ]
    )


# -- commands ----------------------------------------------------------------------------------


def create(
    thing: Thing = None,
    policy: Policy = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for the files (default <data dir>/things/THING/, or "
            "<data dir>/certs/ID/ without --thing).",
        ),
    ] = None,
    inactive: Annotated[
        bool, typer.Option("--inactive", help="Create it INACTIVE (default ACTIVE).")
    ] = False,
    key_type: Annotated[
        KeyType, typer.Option("--key-type", help="RSA 2048 (as AWS issues) or EC P-256.")
    ] = KeyType.RSA,
    days: Annotated[int, typer.Option("--days", min=1, help="Validity in days.")] = 365,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Issue a key pair and certificate from the development CA and register it.

    Writes `certificate.pem.crt`, `private.pem.key`, `public.pem.key` (0600) and
    `root-ca.pem` (0644), and prints their paths.

    Example: `thingcore certs create --thing dev-1 --policy dev-policy`
    """
    with open_registry(data_dir) as registry:
        check_attachments(registry, thing=thing, policy=policy)
        directory = credentials_dir(registry, thing, out)
        ca = ensure_development_ca(registry)
        issued = issue_credentials(
            registry,
            ca,
            directory,
            thing=thing,
            policy=policy,
            active=not inactive,
            key_type=key_type.value,
            days=days,
        )
    if as_json:
        print_json({**issued.as_json(), "thingName": thing, "policyName": policy})
        return
    console = stdout_console()
    console.print(f"Created certificate {issued.certificate_id}")
    console.print(render_issued(issued, thing, policy))


def create_from_csr(
    csr_file: Annotated[str, typer.Argument(help="PEM file of the CSR, or - for stdin.")],
    thing: Thing = None,
    policy: Policy = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the certificate here instead of printing it."),
    ] = None,
    inactive: Annotated[
        bool, typer.Option("--inactive", help="Create it INACTIVE (default ACTIVE).")
    ] = False,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Sign a certificate signing request with the development CA and register the result;
    the device keeps its private key.

    Example: `thingcore certs create-from-csr device.csr --thing dev-1 --out device.crt`
    """
    csr = read_input(csr_file, "CSR")
    with open_registry(data_dir) as registry:
        check_attachments(registry, thing=thing, policy=policy)
        ensure_development_ca(registry)
        created = registry.certs.create_from_csr(csr, set_active=not inactive)
        attach(registry, created["certificateId"], thing=thing, policy=policy)
    path = write_file(out, created["certificatePem"], private=False) if out else None
    if as_json:
        result = {**created, "status": "INACTIVE" if inactive else "ACTIVE"}
        if path is not None:
            result["certificatePath"] = str(path)
        print_json(result)
    elif path is None:
        sys.stdout.write(created["certificatePem"])
    else:
        stdout_console().print(f"Created certificate {created['certificateId']} in {path}")


def register(
    cert_file: Annotated[str, typer.Argument(help="PEM file of the certificate, or - for stdin.")],
    ca_cert: Annotated[
        str | None,
        typer.Option(
            "--ca-cert", help="PEM file of the (registered) CA that signed it; default: any."
        ),
    ] = None,
    without_ca: Annotated[
        bool,
        typer.Option(
            "--without-ca",
            help="Register a self-signed certificate, trusted on its own (AWS's register "
            "without CA).",
        ),
    ] = False,
    status: Annotated[
        RegisterStatus, typer.Option("--status", case_sensitive=False)
    ] = RegisterStatus.ACTIVE,
    thing: Thing = None,
    policy: Policy = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Register a certificate made elsewhere: signed by a registered CA, or self-signed with
    `--without-ca`.

    Example: `thingcore certs register device.crt --thing dev-1 --policy dev-policy`
    """
    if without_ca and ca_cert is not None:
        raise ThingcoreError("give --ca-cert or --without-ca, not both")
    pem = read_input(cert_file, "certificate")
    ca_pem = read_input(ca_cert, "CA certificate") if ca_cert is not None else None
    with open_registry(data_dir) as registry:
        check_attachments(registry, thing=thing, policy=policy)
        if without_ca:
            result = registry.certs.register_without_ca(pem, status=status.value)
        else:
            result = registry.certs.register(pem, ca_pem=ca_pem, status=status.value)
        attach(registry, result["certificateId"], thing=thing, policy=policy)
    if as_json:
        print_json({**result, "status": status.value})
    else:
        stdout_console().print(f"Registered certificate {result['certificateId']} ({status.value})")


def list_certificates(
    ca: Annotated[
        str | None, typer.Option("--ca", help="Only certificates signed by this CA.")
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """List the registered certificates, oldest first.

    Example: `thingcore certs list --json`
    """
    with open_registry(data_dir) as registry:
        ca_id = resolve_ca_id(registry, ca) if ca is not None else None
        items = all_items(
            lambda token: registry.certs.list_certificates(ca_id=ca_id, next_token=token)
        )
    if as_json:
        print_json({"certificates": items})
    else:
        stdout_console().print(render_certificates(items))


def describe(cert_id: CertId, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Show one certificate: status, subject, issuer, validity, things and policies.

    Example: `thingcore certs describe 3f2a9c01`
    """
    with open_registry(data_dir) as registry:
        full = resolve_cert_id(registry, cert_id)
        result = registry.certs.describe(full)
        things = registry.certs.principal_things(full)
        policies = [p["policyName"] for p in registry.policies.attached_to("cert", full)]
    if as_json:
        print_json(result)
    else:
        stdout_console().print(
            render_certificate(result["certificateDescription"], things, policies)
        )


def _set_status(data_dir: Path | None, cert_id: str, status: CertStatus) -> None:
    with open_registry(data_dir) as registry:
        full = resolve_cert_id(registry, cert_id)
        registry.certs.update_status(full, status.value)
        crl_path = refresh_crl(registry, full) if status is CertStatus.REVOKED else None
    console = stdout_console()
    console.print(f"Certificate {full} is {status.value}")
    if crl_path is not None:
        console.print(f"The development CA's revocation list {crl_path} lists it.")


def update(
    cert_id: CertId,
    status: Annotated[CertStatus, typer.Option("--status", case_sensitive=False)],
    data_dir: DataDir = None,
) -> None:
    """Set a certificate's status. A running server disconnects a device whose certificate is
    no longer ACTIVE within a second. REVOKED is final.

    Example: `thingcore certs update 3f2a9c01 --status INACTIVE`
    """
    _set_status(data_dir, cert_id, status)


def activate(cert_id: CertId, data_dir: DataDir = None) -> None:
    """Set a certificate ACTIVE: devices may connect with it.

    Example: `thingcore certs activate 3f2a9c01`
    """
    _set_status(data_dir, cert_id, CertStatus.ACTIVE)


def deactivate(cert_id: CertId, data_dir: DataDir = None) -> None:
    """Set a certificate INACTIVE: devices using it are refused (and disconnected).

    Example: `thingcore certs deactivate 3f2a9c01`
    """
    _set_status(data_dir, cert_id, CertStatus.INACTIVE)


def revoke(cert_id: CertId, data_dir: DataDir = None) -> None:
    """Revoke a certificate for good; if the development CA issued it, its CRL
    (`<data dir>/ca/crl.pem`) is rewritten to list it.

    Example: `thingcore certs revoke 3f2a9c01`
    """
    _set_status(data_dir, cert_id, CertStatus.REVOKED)


def delete(
    cert_id: CertId,
    force: Annotated[
        bool, typer.Option("--force", help="Detach it from its things and policies first.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Delete a certificate that is not ACTIVE (deactivate or revoke it first).

    Example: `thingcore certs delete 3f2a9c01 --force`
    """
    with open_registry(data_dir) as registry:
        full = resolve_cert_id(registry, cert_id)
        registry.certs.delete(full, force=force)
    stdout_console().print(f"Deleted certificate {full}")


app.command("create")(create)
app.command("create-from-csr")(create_from_csr)
app.command("register")(register)
app.command("list")(list_certificates)
app.command("describe")(describe)
app.command("update")(update)
app.command("activate")(activate)
app.command("deactivate")(deactivate)
app.command("revoke")(revoke)
app.command("delete")(delete)
