"""``thingcore things``: devices in the registry, and the certificates attached to them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import RenderableType

from registry import names
from shadows.store import ShadowStore
from thingcore.cli.ca import ensure_development_ca
from thingcore.cli.certs import (
    check_attachments,
    credentials_dir,
    issue_credentials,
    render_issued,
)
from thingcore.cli.common import (
    DataDir,
    Json,
    all_items,
    attributes_text,
    key_values,
    listing,
    open_registry,
    parse_pairs,
    print_json,
    registry_for,
    resolve_cert_id,
    settings_for,
    short_id,
    stdout_console,
    subtyper,
)
from thingcore.errors import ThingcoreError

app = subtyper(
    "Things: the devices in the registry, their attributes and their certificates.\n\n"
    "Example: `thingcore things create dev-1 --with-cert --policy dev-policy`"
)

Name = Annotated[str, typer.Argument(help="The thing's name.")]
CertId = Annotated[
    str, typer.Argument(help="Certificate id, ARN, or a unique prefix of 8+ hex digits.")
]
Attrs = Annotated[
    list[str] | None,
    typer.Option("--attr", help="An attribute KEY=VALUE; repeat for more.", show_default=False),
]


# -- renderers -----------------------------------------------------------------------------------


def render_things(items: list[dict[str, Any]]) -> RenderableType:
    return listing(
        ["Name", "Type", "Attributes", "Version"],
        (
            [
                t["thingName"],
                t.get("thingTypeName", "-"),
                attributes_text(t["attributes"]),
                str(t["version"]),
            ]
            for t in items
        ),
        fold=["Attributes"],
    )


def render_thing(
    thing: dict[str, Any], certificates: list[str], groups: list[str]
) -> RenderableType:
    return key_values(
        [
            ("Name", thing["thingName"]),
            ("Id", thing["thingId"]),
            ("ARN", thing["thingArn"]),
            ("Type", thing.get("thingTypeName", "-")),
            ("Attributes", attributes_text(thing["attributes"])),
            ("Version", str(thing["version"])),
            ("Certificates", ", ".join(certificates) or "-"),
            ("Groups", ", ".join(groups) or "-"),
        ]
    )


def render_principals(certificates: list[dict[str, Any]]) -> RenderableType:
    return listing(
        ["Certificate id", "Status", "Subject"],
        ([short_id(c["certificateId"]), c["status"], c.get("subject", "-")] for c in certificates),
        fold=["Subject"],
        caption="Ids are shortened: any unique prefix of 8 or more digits works.",
    )


# -- commands ----------------------------------------------------------------------------------


def create(
    name: Name,
    thing_type: Annotated[str | None, typer.Option("--type", help="Its thing type.")] = None,
    attr: Attrs = None,
    with_cert: Annotated[
        bool,
        typer.Option(
            "--with-cert",
            help="Also issue a certificate from the development CA, attach it, and write "
            "the key and certificate files.",
        ),
    ] = False,
    policy: Annotated[
        str | None,
        typer.Option("--policy", help="With --with-cert: attach this policy to the certificate."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="With --with-cert: folder for the files (default <data dir>/things/NAME/).",
        ),
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Create a thing; with `--with-cert` also its certificate, ready to connect.

    The files are `certificate.pem.crt`, `private.pem.key`, `public.pem.key` (0600) and
    `root-ca.pem` (0644, the CA the device must trust).

    Example: `thingcore things create dev-1 --with-cert --policy dev-policy`
    """
    if not with_cert and (policy is not None or out is not None):
        raise ThingcoreError("--policy and --out need --with-cert")
    attributes = parse_pairs(attr)
    with open_registry(data_dir) as registry:
        directory = None
        ca = None
        if with_cert:
            # Everything that can be refused is checked before the thing is created.
            names.thing_name(name)
            check_attachments(registry, thing=None, policy=policy)
            directory = credentials_dir(registry, name, out)
            ca = ensure_development_ca(registry)
        created = registry.things.create(name, thing_type=thing_type, attributes=attributes)
        issued = None
        if ca is not None:
            issued = issue_credentials(registry, ca, directory, thing=name, policy=policy)
    console = stdout_console()
    if issued is None:
        if as_json:
            print_json(created)
        else:
            console.print(f"Created thing {name} ({created['thingArn']})")
        return
    if as_json:
        print_json(
            {
                **created,
                "certificateId": issued.certificate_id,
                "certificateArn": issued.certificate_arn,
                "certificatePath": str(issued.certificate_path),
                "privateKeyPath": str(issued.private_key_path),
                "publicKeyPath": str(issued.public_key_path),
                "rootCaPath": str(issued.root_ca_path),
            }
        )
        return
    console.print(f"Created thing {name} with certificate {issued.certificate_id}")
    console.print(render_issued(issued, name, policy))


def list_things(
    thing_type: Annotated[
        str | None, typer.Option("--type", help="Only things of this type.")
    ] = None,
    attr_name: Annotated[
        str | None, typer.Option("--attr-name", help="Only things with this attribute.")
    ] = None,
    attr_value: Annotated[
        str | None,
        typer.Option("--attr-value", help="With --attr-name: only things where it has this value."),
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """List things, by name.

    Example: `thingcore things list --attr-name site --attr-value lab`
    """
    if attr_value is not None and attr_name is None:
        raise ThingcoreError("--attr-value needs --attr-name")
    with open_registry(data_dir) as registry:
        items = all_items(
            lambda token: registry.things.list_things(
                thing_type=thing_type,
                attribute_name=attr_name,
                attribute_value=attr_value,
                next_token=token,
            )
        )
    if as_json:
        print_json({"things": items})
    else:
        stdout_console().print(render_things(items))


def describe(name: Name, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Show a thing: id, type, attributes, version, certificates and groups.

    Example: `thingcore things describe dev-1`
    """
    with open_registry(data_dir) as registry:
        thing = registry.things.describe(name)
        principals = registry.certs.thing_principals(name)
        groups = [g["groupName"] for g in registry.things.list_groups_for_thing(name)]
    if as_json:
        print_json(thing)
        return
    certificates = [short_id(arn.rsplit("/", 1)[1]) for arn in principals]
    stdout_console().print(render_thing(thing, certificates, groups))


def update(
    name: Name,
    thing_type: Annotated[str | None, typer.Option("--type", help="Give it this type.")] = None,
    remove_type: Annotated[
        bool, typer.Option("--remove-type", help="Remove its thing type.")
    ] = False,
    attr: Attrs = None,
    merge: Annotated[
        bool,
        typer.Option(
            "--merge",
            help="Merge --attr into its attributes (an empty value removes one) instead of "
            "replacing them all.",
        ),
    ] = False,
    expected_version: Annotated[
        int | None,
        typer.Option("--expected-version", help="Refuse unless the thing is at this version."),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Change a thing's type or attributes.

    Without `--merge`, `--attr` replaces all attributes.

    Example: `thingcore things update dev-1 --attr site=lab --merge`
    """
    attributes = parse_pairs(attr) if attr else None
    with open_registry(data_dir) as registry:
        registry.things.update(
            name,
            thing_type=thing_type,
            remove_thing_type=remove_type,
            attributes=attributes,
            merge=merge,
            expected_version=expected_version,
        )
        version = registry.things.describe(name)["version"]
    stdout_console().print(f"Updated thing {name} (now version {version})")


def delete(
    name: Name,
    force: Annotated[bool, typer.Option("--force", help="Detach its certificates first.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Delete a thing. Its certificates stay registered; `--force` detaches them first.

    Its shadows stay too (AWS behaviour), unless the setting `shadows.delete_with_thing` is on.

    Example: `thingcore things delete dev-1 --force`
    """
    settings = settings_for(data_dir)
    with registry_for(settings) as registry:
        registry.things.describe(name)  # a missing thing is an error here, not a no-op
        detached = []
        if force:
            for arn in registry.certs.thing_principals(name):
                registry.certs.detach_thing(name, arn)
                detached.append(arn.rsplit("/", 1)[1])
        registry.things.delete(name)
        shadows = None
        if settings.shadows.delete_with_thing:
            shadows = ShadowStore(registry.db, settings.shadows).delete_thing_shadows(name)
    console = stdout_console()
    for cert_id in detached:
        console.print(f"Detached certificate {cert_id}")
    console.print(f"Deleted thing {name}")
    if shadows is not None:
        console.print(f"Deleted {shadows} shadow{'' if shadows == 1 else 's'} of {name}")


def attach_cert(thing: Name, cert_id: CertId, data_dir: DataDir = None) -> None:
    """Attach a certificate to a thing: a device connecting with it under the thing's name
    as client id is that thing (policy variables, group policies).

    Example: `thingcore things attach-cert dev-1 3f2a9c01`
    """
    with open_registry(data_dir) as registry:
        full = resolve_cert_id(registry, cert_id)
        registry.certs.attach_thing(thing, full)
    stdout_console().print(f"Attached certificate {full} to thing {thing}")


def detach_cert(thing: Name, cert_id: CertId, data_dir: DataDir = None) -> None:
    """Detach a certificate from a thing.

    Example: `thingcore things detach-cert dev-1 3f2a9c01`
    """
    with open_registry(data_dir) as registry:
        full = resolve_cert_id(registry, cert_id)
        registry.certs.detach_thing(thing, full)
    stdout_console().print(f"Detached certificate {full} from thing {thing}")


def principals(thing: Name, data_dir: DataDir = None, as_json: Json = False) -> None:
    """List the certificates attached to a thing.

    Example: `thingcore things principals dev-1 --json`
    """
    with open_registry(data_dir) as registry:
        arns = registry.certs.thing_principals(thing)
        certificates = [registry.certs.describe(arn)["certificateDescription"] for arn in arns]
    if as_json:
        print_json({"principals": arns})
    else:
        stdout_console().print(render_principals(certificates))


app.command("create")(create)
app.command("list")(list_things)
app.command("describe")(describe)
app.command("update")(update)
app.command("delete")(delete)
app.command("attach-cert")(attach_cert)
app.command("detach-cert")(detach_cert)
app.command("principals")(principals)
