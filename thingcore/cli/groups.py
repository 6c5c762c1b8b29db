"""``thingcore groups``: thing groups, a hierarchy whose policies apply to their things."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import RenderableType

from thingcore.cli.common import (
    DataDir,
    Json,
    all_items,
    attributes_text,
    iso,
    key_values,
    listing,
    open_registry,
    parse_pairs,
    print_json,
    stdout_console,
    subtyper,
)

app = subtyper(
    "Thing groups: nested groups of things; their policies apply to their members.\n\n"
    "Groups nest up to seven levels; a policy attached to a group applies to the things in it "
    "and in its subgroups, when they connect with their attached certificate.\n\n"
    "Example: `thingcore groups create lab --parent building-1`"
)

Group = Annotated[str, typer.Argument(help="The thing group's name.")]
Thing = Annotated[str, typer.Argument(help="The thing's name.")]


# -- renderers -----------------------------------------------------------------------------------


def render_groups(items: list[dict[str, Any]]) -> RenderableType:
    return listing(["Name", "ARN"], ([g["groupName"], g["groupArn"]] for g in items), fold=["ARN"])


def render_group(item: dict[str, Any]) -> RenderableType:
    properties, metadata = item["thingGroupProperties"], item["thingGroupMetadata"]
    path = [g["groupName"] for g in metadata["rootToParentThingGroups"]]
    return key_values(
        [
            ("Name", item["thingGroupName"]),
            ("Id", item["thingGroupId"]),
            ("ARN", item["thingGroupArn"]),
            ("Parent", metadata.get("parentGroupName", "-")),
            ("Path", " / ".join([*path, item["thingGroupName"]])),
            ("Description", properties.get("thingGroupDescription", "-")),
            ("Attributes", attributes_text(properties["attributePayload"]["attributes"])),
            ("Version", str(item["version"])),
            ("Created", iso(metadata["creationDate"])),
        ]
    )


def render_members(things: list[str]) -> RenderableType:
    return listing(["Thing"], ([t] for t in things))


# -- commands ----------------------------------------------------------------------------------


def create(
    name: Group,
    parent: Annotated[
        str | None, typer.Option("--parent", help="Make it a subgroup of this group.")
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="What the group is for.")
    ] = None,
    attr: Annotated[
        list[str] | None,
        typer.Option("--attr", help="An attribute KEY=VALUE; repeat for more.", show_default=False),
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Create a thing group.

    Example: `thingcore groups create lab --parent building-1 --attr floor=2`
    """
    attributes = parse_pairs(attr)
    with open_registry(data_dir) as registry:
        created = registry.things.create_group(
            name, parent=parent, description=description, attributes=attributes
        )
    if as_json:
        print_json(created)
    else:
        stdout_console().print(f"Created thing group {name} ({created['thingGroupArn']})")


def list_groups(
    parent: Annotated[
        str | None, typer.Option("--parent", help="Only the direct subgroups of this group.")
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """List thing groups, by name.

    Example: `thingcore groups list --parent building-1`
    """
    with open_registry(data_dir) as registry:
        items = all_items(
            lambda token: registry.things.list_groups(parent=parent, next_token=token)
        )
    if as_json:
        print_json({"thingGroups": items})
    else:
        stdout_console().print(render_groups(items))


def describe(name: Group, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Show a thing group: parent, path from the root, description and attributes.

    Example: `thingcore groups describe lab`
    """
    with open_registry(data_dir) as registry:
        item = registry.things.describe_group(name)
    if as_json:
        print_json(item)
    else:
        stdout_console().print(render_group(item))


def delete(name: Group, data_dir: DataDir = None) -> None:
    """Delete a thing group without subgroups; its things stay, its policies are detached.

    Example: `thingcore groups delete lab`
    """
    with open_registry(data_dir) as registry:
        registry.things.describe_group(name)  # a missing group is an error here, not a no-op
        registry.things.delete_group(name)
    stdout_console().print(f"Deleted thing group {name}")


def add_thing(group: Group, thing: Thing, data_dir: DataDir = None) -> None:
    """Add a thing to a group (a thing may be in up to 10 groups).

    Example: `thingcore groups add-thing lab dev-1`
    """
    with open_registry(data_dir) as registry:
        registry.things.add_thing_to_group(group, thing)
    stdout_console().print(f"Added thing {thing} to group {group}")


def remove_thing(group: Group, thing: Thing, data_dir: DataDir = None) -> None:
    """Remove a thing from a group.

    Example: `thingcore groups remove-thing lab dev-1`
    """
    with open_registry(data_dir) as registry:
        registry.things.describe_group(group)
        registry.things.describe(thing)
        registry.things.remove_thing_from_group(group, thing)
    stdout_console().print(f"Removed thing {thing} from group {group}")


def things(
    group: Group,
    recursive: Annotated[
        bool, typer.Option("--recursive", help="Include the things of its subgroups.")
    ] = False,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """List the things in a group.

    Example: `thingcore groups things building-1 --recursive`
    """
    with open_registry(data_dir) as registry:
        items = all_items(
            lambda token: registry.things.list_things_in_group(
                group, recursive=recursive, next_token=token
            )
        )
    names = [i["thingName"] for i in items]
    if as_json:
        print_json({"things": names})
    else:
        stdout_console().print(render_members(names))


app.command("create")(create)
app.command("list")(list_groups)
app.command("describe")(describe)
app.command("delete")(delete)
app.command("add-thing")(add_thing)
app.command("remove-thing")(remove_thing)
app.command("things")(things)
