"""``thingcore types``: thing types, which describe a kind of device and allow 50 attributes."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import RenderableType

from thingcore.cli.common import (
    DataDir,
    Json,
    all_items,
    iso,
    key_values,
    listing,
    open_registry,
    print_json,
    stdout_console,
    subtyper,
)

app = subtyper(
    "Thing types: kinds of device.\n\n"
    "A thing with a type may have 50 attributes instead of 3; a type is deprecated before it "
    "is deleted.\n\n"
    "Example: `thingcore types create sensor --searchable site`"
)

Name = Annotated[str, typer.Argument(help="The thing type's name.")]


# -- renderers -----------------------------------------------------------------------------------


def render_types(items: list[dict[str, Any]]) -> RenderableType:
    return listing(
        ["Name", "Description", "Searchable", "Deprecated", "Created"],
        (
            [
                t["thingTypeName"],
                t["thingTypeProperties"].get("thingTypeDescription", "-"),
                ", ".join(t["thingTypeProperties"]["searchableAttributes"]) or "-",
                "yes" if t["thingTypeMetadata"]["deprecated"] else "no",
                iso(t["thingTypeMetadata"]["creationDate"]),
            ]
            for t in items
        ),
        fold=["Description", "Searchable"],
    )


def render_type(item: dict[str, Any]) -> RenderableType:
    properties, metadata = item["thingTypeProperties"], item["thingTypeMetadata"]
    deprecated = "no"
    if metadata["deprecated"]:
        deprecated = f"since {iso(metadata.get('deprecationDate'))}"
    return key_values(
        [
            ("Name", item["thingTypeName"]),
            ("Id", item["thingTypeId"]),
            ("ARN", item["thingTypeArn"]),
            ("Description", properties.get("thingTypeDescription", "-")),
            ("Searchable", ", ".join(properties["searchableAttributes"]) or "-"),
            ("Deprecated", deprecated),
            ("Created", iso(metadata["creationDate"])),
        ]
    )


# -- commands ----------------------------------------------------------------------------------


def create(
    name: Name,
    description: Annotated[
        str | None, typer.Option("--description", help="What the type is for.")
    ] = None,
    searchable: Annotated[
        list[str] | None,
        typer.Option(
            "--searchable",
            help="A searchable attribute name; repeat for up to 3.",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Create a thing type.

    Example: `thingcore types create sensor --description "Lab sensors" --searchable site`
    """
    with open_registry(data_dir) as registry:
        created = registry.things.create_type(
            name, description=description, searchable_attributes=searchable
        )
    if as_json:
        print_json(created)
    else:
        stdout_console().print(f"Created thing type {name} ({created['thingTypeArn']})")


def list_types(data_dir: DataDir = None, as_json: Json = False) -> None:
    """List thing types.

    Example: `thingcore types list --json`
    """
    with open_registry(data_dir) as registry:
        items = all_items(lambda token: registry.things.list_types(next_token=token))
    if as_json:
        print_json({"thingTypes": items})
    else:
        stdout_console().print(render_types(items))


def describe(name: Name, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Show a thing type.

    Example: `thingcore types describe sensor`
    """
    with open_registry(data_dir) as registry:
        item = registry.things.describe_type(name)
    if as_json:
        print_json(item)
    else:
        stdout_console().print(render_type(item))


def deprecate(
    name: Name,
    undo: Annotated[bool, typer.Option("--undo", help="Make the type usable again.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Deprecate a thing type: no new thing may use it, and it may then be deleted.

    Example: `thingcore types deprecate sensor`
    """
    with open_registry(data_dir) as registry:
        registry.things.deprecate_type(name, undo=undo)
    state = "no longer deprecated" if undo else "deprecated"
    stdout_console().print(f"Thing type {name} is {state}")


def delete(name: Name, data_dir: DataDir = None) -> None:
    """Delete a deprecated thing type that no thing uses.

    Example: `thingcore types delete sensor`
    """
    with open_registry(data_dir) as registry:
        registry.things.delete_type(name)
    stdout_console().print(f"Deleted thing type {name}")


app.command("create")(create)
app.command("list")(list_types)
app.command("describe")(describe)
app.command("deprecate")(deprecate)
app.command("delete")(delete)
