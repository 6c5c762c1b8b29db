"""``thingcore ca``: the development CA and the external CAs devices' certificates chain to."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.text import Text

from registry.ca import DevelopmentCA
from registry.certificates import describe_name, validity
from registry.errors import ResourceNotFound
from registry.service import Registry
from thingcore.cli.common import (
    DataDir,
    Json,
    iso,
    key_values,
    listing,
    open_registry,
    print_json,
    read_input,
    resolve_ca_id,
    settings_for,
    short_id,
    stdout_console,
    subtyper,
    write_file,
)

app = subtyper(
    "Certificate authorities: the development CA and registered external CAs.\n\n"
    "The development CA issues device certificates and the server certificate; devices may "
    "also present certificates signed by an external CA registered here.\n\n"
    "Example: `thingcore ca show --pem > root-ca.pem`"
)


class CaStatus(StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"


# -- helpers other nouns use -------------------------------------------------------------------


def ensure_development_ca(registry: Registry) -> DevelopmentCA:
    """The development CA, created on first use and registered so what it issues is trusted."""
    ca, _created = DevelopmentCA.load_or_create(registry.ca_dir)
    registry.certs.register_development_ca(ca)
    return ca


def write_crl(registry: Registry, ca: DevelopmentCA) -> str:
    """Rewrite ``<data dir>/ca/crl.pem`` from the revoked certificates ``ca`` issued."""
    revoked = registry.certs.revoked_serials(ca.certificate_id)
    # The registry keeps epoch seconds; the CA signs aware datetimes.
    return ca.crl((serial, datetime.fromtimestamp(when, UTC)) for serial, when in revoked)


def is_development_ca(registry: Registry, ca_id: str) -> DevelopmentCA | None:
    """The development CA if ``ca_id`` is it (and it is on disk here), else None."""
    if not DevelopmentCA.exists(registry.ca_dir):
        return None
    ca = registry.certs.development_ca()
    return ca if ca.certificate_id == ca_id else None


# -- renderers -----------------------------------------------------------------------------------


def render_development_ca(info: dict[str, Any]) -> RenderableType:
    rows: list[tuple[str, RenderableType]] = [
        ("Certificate id", info["certificateId"]),
        ("Subject", info["subject"]),
        ("Valid", f"{iso(info['notBefore'])} .. {iso(info['notAfter'])}"),
        ("Status", info["status"] or "not registered (run `thingcore ca init`)"),
        ("Certificate", info["certificatePath"]),
        ("Private key", info["keyPath"]),
        ("CRL", info["crlPath"] or "none yet"),
    ]
    hint = Text("Devices must trust it: thingcore ca show --pem > root-ca.pem", style="dim")
    return Group(key_values(rows), hint)


def render_cas(items: list[dict[str, Any]]) -> RenderableType:
    return listing(
        ["Id", "Status", "Kind", "Subject", "Registered"],
        (
            [
                short_id(c["certificateId"]),
                c["status"],
                "development" if c["builtin"] else "external",
                c["subject"],
                iso(c["creationDate"]),
            ]
            for c in items
        ),
        fold=["Subject"],
        caption="Ids are shortened: any unique prefix of 8 or more digits works.",
    )


def _ca_info(registry: Registry, ca: DevelopmentCA) -> dict[str, Any]:
    not_before, not_after = validity(ca.certificate)
    try:
        status = registry.certs.describe_ca(ca.certificate_id)["certificateDescription"]["status"]
    except ResourceNotFound:
        status = None
    return {
        "certificateId": ca.certificate_id,
        "certificateArn": registry.arns.cacert(ca.certificate_id),
        "subject": describe_name(ca.certificate.subject),
        "notBefore": not_before.timestamp(),
        "notAfter": not_after.timestamp(),
        "status": status,
        "certificatePath": str(ca.certfile.absolute()),
        "keyPath": str(ca.keyfile.absolute()),
        "crlPath": str(ca.crlfile.absolute()) if ca.crlfile.exists() else None,
    }


# -- commands ----------------------------------------------------------------------------------


def init(
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an existing CA. Certificates it issued stop working: it is set INACTIVE.",
        ),
    ] = False,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Create the development CA under `<data dir>/ca/` and register it.

    `thingcore serve` and `thingcore certs create` create it on first use; this command is
    for doing it explicitly, or replacing it with `--force`.

    Example: `thingcore ca init`
    """
    with open_registry(data_dir) as registry:
        ca = DevelopmentCA.create(registry.ca_dir, force=force)
        retired = []
        for old in registry.certs.list_cas():
            stale = old["builtin"] and old["certificateId"] != ca.certificate_id
            if stale and old["status"] == "ACTIVE":
                registry.certs.update_ca(old["certificateId"], "INACTIVE")
                retired.append(old["certificateId"])
        registry.certs.register_development_ca(ca)
        info = _ca_info(registry, ca)
    if as_json:
        print_json({**info, "deactivated": retired})
        return
    console = stdout_console()
    console.print(f"Created the development CA in {ca.directory}")
    for old_id in retired:
        console.print(f"The previous development CA {short_id(old_id)} is now INACTIVE.")
    console.print(render_development_ca(info))


def show(
    pem: Annotated[
        bool, typer.Option("--pem", help="Print only the root certificate in PEM.")
    ] = False,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Show the development CA: id, subject, validity, files and status.

    With `--pem` print only the root certificate devices must trust.

    Example: `thingcore ca show --pem > root-ca.pem`
    """
    if pem:
        settings = settings_for(data_dir)
        ca = DevelopmentCA.load(settings.data_dir / "ca")
        sys.stdout.write(ca.certificate_pem)
        return
    with open_registry(data_dir) as registry:
        info = _ca_info(registry, registry.certs.development_ca())
    if as_json:
        print_json(info)
    else:
        stdout_console().print(render_development_ca(info))


def register(
    file: Annotated[str, typer.Argument(help="PEM file of the CA certificate, or - for stdin.")],
    inactive: Annotated[
        bool, typer.Option("--inactive", help="Register it INACTIVE (default ACTIVE).")
    ] = False,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Register an external CA: devices may then present certificates it signed, once those
    are registered with `thingcore certs register`.

    Example: `thingcore ca register my-ca.pem`
    """
    pem = read_input(file, "CA certificate")
    with open_registry(data_dir) as registry:
        result = registry.certs.register_ca(pem, set_active=not inactive)
    if as_json:
        print_json(result)
    else:
        status = "INACTIVE" if inactive else "ACTIVE"
        stdout_console().print(f"Registered CA {result['certificateId']} ({status})")


def list_cas(data_dir: DataDir = None, as_json: Json = False) -> None:
    """List the registered CA certificates.

    Example: `thingcore ca list --json`
    """
    with open_registry(data_dir) as registry:
        items = registry.certs.list_cas()
    if as_json:
        print_json({"certificates": items})
    else:
        stdout_console().print(render_cas(items))


def update(
    ca_id: Annotated[str, typer.Argument(help="CA id, ARN, or unique prefix (8+ digits).")],
    status: Annotated[CaStatus, typer.Option("--status", case_sensitive=False)],
    data_dir: DataDir = None,
) -> None:
    """Set a CA ACTIVE or INACTIVE; devices whose certificates it signed are refused while it
    is INACTIVE (a running server disconnects them).

    Example: `thingcore ca update 3f2a9c01 --status INACTIVE`
    """
    with open_registry(data_dir) as registry:
        full = resolve_ca_id(registry, ca_id)
        registry.certs.update_ca(full, status.value)
    stdout_console().print(f"CA {full} is {status.value}")


def delete(
    ca_id: Annotated[str, typer.Argument(help="CA id, ARN, or unique prefix (8+ digits).")],
    data_dir: DataDir = None,
) -> None:
    """Delete an INACTIVE CA that no registered certificate refers to.

    Example: `thingcore ca delete 3f2a9c01`
    """
    with open_registry(data_dir) as registry:
        full = resolve_ca_id(registry, ca_id)
        registry.certs.delete_ca(full)
    stdout_console().print(f"Deleted CA {full}")


def crl(
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the CRL to this file.")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Write the development CA's certificate revocation list from the revoked certificates.

    It always goes to `<data dir>/ca/crl.pem`; it is printed, or written to `--out` as well.

    Example: `thingcore ca crl --out crl.pem`
    """
    with open_registry(data_dir) as registry:
        ca = registry.certs.development_ca()
        pem = write_crl(registry, ca)
    if out is None:
        sys.stdout.write(pem)
        return
    path = write_file(out, pem, private=False)
    stdout_console().print(f"Wrote the CRL to {path}")


app.command("init")(init)
app.command("show")(show)
app.command("register")(register)
app.command("list")(list_cas)
app.command("update")(update)
app.command("delete")(delete)
app.command("crl")(crl)
