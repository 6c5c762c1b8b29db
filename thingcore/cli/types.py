"""``thingcore types``: thing types, which describe a kind of device and allow 50 attributes."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import RenderableType

from shadows.options import parse_options
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
    stdout_console,
    subtyper,
)
from thingcore.errors import ThingcoreError

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
            ("Shadow options", shadow_options_text(item.get("shadowOptions"))),
        ]
    )


def shadow_options_text(options: dict[str, Any] | None) -> str:
    """Shadow options as compact JSON; "-" when the type has none (AWS behaviour)."""
    if not options:
        return "- (AWS behaviour)"
    return json.dumps(options, separators=(", ", ": "), sort_keys=True)


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


def update(
    name: Name,
    shadow_options: Annotated[
        str | None,
        typer.Option(
            "--shadow-options",
            metavar="FILE",
            help="A JSON file (or - for standard input) of shadow options for things of this "
            "type; replaces the ones it has.",
            show_default=False,
        ),
    ] = None,
    clear_shadow_options: Annotated[
        bool,
        typer.Option(
            "--clear-shadow-options", help="Remove its shadow options: AWS behaviour again."
        ),
    ] = False,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Change a thing type's shadow options (beyond AWS).

    Every option is off by default, so a type without options behaves exactly like AWS:

    - `clear_desired_on_match`: remove desired keys once reported matches them.
    - `push_delta_on_subscribe`: publish the delta when a thing subscribes to its delta topic.
    - `rejections`: `{"enabled": true, "desired": "clear"|"keep"}` records the desired values a
      device refuses in a top-level `rejected` object of its update
      (`thingcore shadows rejections`).
    - `history`: versions of each shadow kept, up to 1000 (`thingcore shadows history`).
    - `schema`: `{"desired": {...}, "reported": {...}}`, JSON Schemas (draft 2020-12) an update
      must leave the state matching, else it is rejected with 400.
    - `presence`: `{"enabled": true, "shadow": "presence"}` writes connection state to that
      named shadow when the thing connects or disconnects.

    A running server applies the change within its change-poll interval.

    Example: `thingcore types update sensor --shadow-options sensor-shadows.json`
    """
    if (shadow_options is None) == (not clear_shadow_options):
        raise ThingcoreError("give --shadow-options FILE or --clear-shadow-options")
    stored = None
    if shadow_options is not None:
        stored = parse_options(read_input(shadow_options, "shadow options")).to_json()
    with open_registry(data_dir) as registry:
        item = registry.things.set_type_shadow_options(name, stored)
    if as_json:
        print_json(item)
    elif stored is None:
        stdout_console().print(f"Thing type {name} has no shadow options (AWS behaviour)")
    else:
        stdout_console().print(f"Set the shadow options of thing type {name}: {stored}")


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
app.command("update")(update)
app.command("deprecate")(deprecate)
app.command("delete")(delete)
