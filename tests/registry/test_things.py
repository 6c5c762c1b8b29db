"""registry/thing_store.py: things, thing types and thing groups with AWS's shapes and rules
(reference sections 0 and 3), on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from typing import Any

import pytest

from registry.errors import (
    InvalidRequest,
    RegistryError,
    ResourceAlreadyExists,
    ResourceNotFound,
    VersionConflict,
)
from registry.service import Registry
from registry.thing_store import MAX_GROUP_DEPTH
from tests.registry.conftest import SQLITE_ONLY, IssueCert

ARN = "arn:aws:iot:us-east-1:000000000000"


def _all_names(registry: Registry, **filters: Any) -> list[str]:
    return [t["thingName"] for t in registry.things.list_things(**filters).items]


# -- things ------------------------------------------------------------------------------------


def test_create_returns_name_arn_and_id(registry: Registry) -> None:
    created = registry.things.create("dev-1")
    assert set(created) == {"thingName", "thingArn", "thingId"}
    assert created["thingName"] == "dev-1"
    assert created["thingArn"] == f"{ARN}:thing/dev-1"
    uuid.UUID(created["thingId"])


def test_arns_use_the_configured_region_and_account(registry: Registry) -> None:
    settings = replace(registry.settings, region="eu-west-1", account_id="123456789012")
    elsewhere = Registry(settings, registry.data_dir)
    try:
        created = elsewhere.things.create("dev-1")
        group = elsewhere.things.create_group("g")
    finally:
        elsewhere.close()
    assert created["thingArn"] == "arn:aws:iot:eu-west-1:123456789012:thing/dev-1"
    assert group["thingGroupArn"] == "arn:aws:iot:eu-west-1:123456789012:thinggroup/g"


def test_create_is_idempotent_for_the_same_configuration(registry: Registry) -> None:
    first = registry.things.create("dev-1", attributes={"a": "1"})
    assert registry.things.create("dev-1", attributes={"a": "1"}) == first


@pytest.mark.parametrize(
    ("thing_type", "attributes"),
    [(None, {"a": "2"}), (None, {}), ("sensor", {"a": "1"})],
    ids=["other-value", "no-attributes", "other-type"],
)
def test_create_with_a_different_configuration_already_exists(
    registry: Registry, thing_type: str | None, attributes: dict[str, str]
) -> None:
    registry.things.create_type("sensor")
    registry.things.create("dev-1", attributes={"a": "1"})
    with pytest.raises(ResourceAlreadyExists, match="things update"):
        registry.things.create("dev-1", thing_type=thing_type, attributes=attributes)


@SQLITE_ONLY
@pytest.mark.parametrize(
    "name", ["", "a" * 129, "has space", "dollar$", "slash/name", "dot.name", "é"]
)
def test_invalid_thing_names_say_the_rule(registry: Registry, name: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape("1-128 letters, digits, ':', '_' or '-'")):
        registry.things.create(name)


@pytest.mark.parametrize("name", ["a", "a" * 128, "A:b_c-D9"])
def test_valid_thing_names(registry: Registry, name: str) -> None:
    assert registry.things.create(name)["thingName"] == name


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"bad name": "v"}, "attribute name 'bad name' is invalid"),
        ({"a" * 129: "v"}, "is invalid"),
        ({"k": "no spaces"}, "invalid value"),
        ({"k": "x" * 801}, "up to 800"),
    ],
)
def test_invalid_attributes_say_the_rule(
    registry: Registry, attributes: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        registry.things.create("dev-1", attributes=attributes)


def test_a_thing_without_a_type_has_at_most_3_attributes(registry: Registry) -> None:
    three = {f"a{i}": "v" for i in range(3)}
    registry.things.create("three", attributes=three)
    with pytest.raises(InvalidRequest, match="at most 3 attributes.*thing type may have 50"):
        registry.things.create("four", attributes={**three, "a3": "v"})


def test_a_thing_with_a_type_has_at_most_50_attributes(registry: Registry) -> None:
    registry.things.create_type("sensor")
    fifty = {f"a{i}": "v" for i in range(50)}
    registry.things.create("fifty", thing_type="sensor", attributes=fifty)
    with pytest.raises(InvalidRequest, match="at most 50 attributes"):
        registry.things.create("many", thing_type="sensor", attributes={**fifty, "x": "v"})


def test_describe_shape(registry: Registry) -> None:
    registry.things.create_type("sensor")
    created = registry.things.create("dev-1", thing_type="sensor", attributes={"room": "k1"})
    assert registry.things.describe("dev-1") == {
        "defaultClientId": "dev-1",
        "thingName": "dev-1",
        "thingId": created["thingId"],
        "thingArn": f"{ARN}:thing/dev-1",
        "attributes": {"room": "k1"},
        "version": 1,
        "thingTypeName": "sensor",
    }


def test_describe_without_a_type_omits_thing_type_name(registry: Registry) -> None:
    registry.things.create("dev-1")
    described = registry.things.describe("dev-1")
    assert "thingTypeName" not in described
    assert described["attributes"] == {}


def test_describe_a_missing_thing_is_not_found(registry: Registry) -> None:
    with pytest.raises(ResourceNotFound, match="no thing named 'ghost'"):
        registry.things.describe("ghost")


def test_create_with_a_missing_or_deprecated_type(registry: Registry) -> None:
    with pytest.raises(ResourceNotFound, match="types create ghost"):
        registry.things.create("dev-1", thing_type="ghost")
    registry.things.create_type("old")
    registry.things.deprecate_type("old")
    with pytest.raises(InvalidRequest, match="deprecated"):
        registry.things.create("dev-1", thing_type="old")


def test_list_item_shape(registry: Registry) -> None:
    registry.things.create_type("sensor")
    registry.things.create("typed", thing_type="sensor", attributes={"a": "1"})
    registry.things.create("plain")
    page = registry.things.list_things()
    assert page.next_token is None
    assert page.items == [
        {"thingName": "plain", "thingArn": f"{ARN}:thing/plain", "attributes": {}, "version": 1},
        {
            "thingName": "typed",
            "thingArn": f"{ARN}:thing/typed",
            "attributes": {"a": "1"},
            "version": 1,
            "thingTypeName": "sensor",
        },
    ]


def test_list_pages_through_all_things_with_next_token(registry: Registry) -> None:
    names = [f"thing-{i}" for i in range(7)]
    for name in reversed(names):
        registry.things.create(name)
    pages, token = [], None
    while True:
        page = registry.things.list_things(max_results=3, next_token=token)
        pages.append([t["thingName"] for t in page.items])
        token = page.next_token
        if token is None:
            break
    assert pages == [names[0:3], names[3:6], names[6:7]]


def test_the_last_full_page_has_no_next_token(registry: Registry) -> None:
    for i in range(6):
        registry.things.create(f"thing-{i}")
    second = registry.things.list_things(
        max_results=3, next_token=registry.things.list_things(max_results=3).next_token
    )
    assert len(second.items) == 3
    assert second.next_token is None


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"thing_type": "sensor"}, ["s1", "s2"]),
        ({"attribute_name": "room"}, ["p1", "s1"]),
        ({"attribute_name": "room", "attribute_value": "k1"}, ["s1"]),
        ({"thing_type": "sensor", "attribute_name": "room"}, ["s1"]),
        ({"attribute_name": "nothing"}, []),
    ],
)
def test_list_filters(registry: Registry, filters: dict[str, str], expected: list[str]) -> None:
    registry.things.create_type("sensor")
    registry.things.create("s1", thing_type="sensor", attributes={"room": "k1"})
    registry.things.create("s2", thing_type="sensor")
    registry.things.create("p1", attributes={"room": "k2"})
    assert _all_names(registry, **filters) == expected


def test_filtered_pages(registry: Registry) -> None:
    for i in range(7):
        registry.things.create(f"t{i}", attributes={"odd": "yes"} if i % 2 else {})
    first = registry.things.list_things(attribute_name="odd", max_results=2)
    second = registry.things.list_things(
        attribute_name="odd", max_results=2, next_token=first.next_token
    )
    assert [t["thingName"] for t in first.items + second.items] == ["t1", "t3", "t5"]
    assert second.next_token is None


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("max_results", "token", "message"),
    [
        (0, None, "between 1 and 250"),
        (251, None, "between 1 and 250"),
        (None, "not-a-token", "next token"),
        (None, "eyJvIjogLTF9", "next token"),  # {"o": -1}
        (None, "WzFd", "next token"),  # [1]
    ],
)
def test_bad_paging_arguments(
    registry: Registry, max_results: int | None, token: str | None, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        registry.things.list_things(max_results=max_results, next_token=token)


def test_update_replaces_attributes_without_merge(registry: Registry) -> None:
    registry.things.create("dev-1", attributes={"a": "1", "b": "2"})
    assert registry.things.update("dev-1", attributes={"c": "3"}) == {}
    described = registry.things.describe("dev-1")
    assert described["attributes"] == {"c": "3"}
    assert described["version"] == 2


def test_update_merges_and_an_empty_value_removes(registry: Registry) -> None:
    registry.things.create("dev-1", attributes={"a": "1", "b": "2"})
    registry.things.update("dev-1", attributes={"a": "", "b": "20", "c": "3"}, merge=True)
    assert registry.things.describe("dev-1")["attributes"] == {"b": "20", "c": "3"}


def test_every_update_increments_the_version(registry: Registry) -> None:
    registry.things.create("dev-1")
    for expected in (2, 3, 4):
        registry.things.update("dev-1", attributes={"n": str(expected)}, merge=True)
        assert registry.things.describe("dev-1")["version"] == expected
    assert registry.things.list_things().items[0]["version"] == 4


def test_update_with_the_expected_version(registry: Registry) -> None:
    registry.things.create("dev-1")
    registry.things.update("dev-1", attributes={"a": "1"}, expected_version=1)
    with pytest.raises(VersionConflict, match="version 2, not 1"):
        registry.things.update("dev-1", attributes={"a": "2"}, expected_version=1)
    assert registry.things.describe("dev-1")["attributes"] == {"a": "1"}


def test_update_sets_and_removes_the_type(registry: Registry) -> None:
    registry.things.create_type("sensor")
    registry.things.create("dev-1")
    registry.things.update("dev-1", thing_type="sensor")
    assert registry.things.describe("dev-1")["thingTypeName"] == "sensor"
    registry.things.update("dev-1", remove_thing_type=True)
    assert "thingTypeName" not in registry.things.describe("dev-1")
    with pytest.raises(InvalidRequest, match="not both"):
        registry.things.update("dev-1", thing_type="sensor", remove_thing_type=True)


def test_removing_the_type_of_a_thing_with_many_attributes_is_refused(
    registry: Registry,
) -> None:
    registry.things.create_type("sensor")
    registry.things.create(
        "dev-1", thing_type="sensor", attributes={f"a{i}": "v" for i in range(4)}
    )
    with pytest.raises(InvalidRequest, match="at most 3 attributes"):
        registry.things.update("dev-1", remove_thing_type=True)
    assert registry.things.describe("dev-1")["version"] == 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"attributes": {"bad name": "v"}, "merge": True}, InvalidRequest),
        ({"attributes": {f"a{i}": "v" for i in range(4)}}, InvalidRequest),
        ({"thing_type": "ghost"}, ResourceNotFound),
    ],
    ids=["bad-attribute", "too-many", "missing-type"],
)
def test_a_refused_update_changes_nothing(
    registry: Registry, kwargs: dict[str, Any], error: type[RegistryError]
) -> None:
    registry.things.create("dev-1", attributes={"a": "1"})
    with pytest.raises(error):
        registry.things.update("dev-1", **kwargs)
    described = registry.things.describe("dev-1")
    assert (described["attributes"], described["version"]) == ({"a": "1"}, 1)


def test_update_a_missing_thing_is_not_found(registry: Registry) -> None:
    with pytest.raises(ResourceNotFound):
        registry.things.update("ghost", attributes={})


def test_delete_is_idempotent(registry: Registry) -> None:
    registry.things.create("dev-1")
    assert registry.things.delete("dev-1") == {}
    assert registry.things.delete("dev-1") == {}
    assert _all_names(registry) == []


def test_delete_with_the_expected_version(registry: Registry) -> None:
    registry.things.create("dev-1")
    registry.things.update("dev-1", attributes={"a": "1"})
    with pytest.raises(VersionConflict):
        registry.things.delete("dev-1", expected_version=1)
    registry.things.delete("dev-1", expected_version=2)
    assert _all_names(registry) == []


def test_delete_leaves_its_groups(registry: Registry) -> None:
    registry.things.create("dev-1")
    registry.things.create_group("g")
    registry.things.add_thing_to_group("g", "dev-1")
    registry.things.delete("dev-1")
    assert registry.things.list_things_in_group("g").items == []
    registry.things.create("dev-1")
    assert registry.things.list_groups_for_thing("dev-1") == []


def test_delete_is_refused_while_a_certificate_is_attached(
    registry: Registry, issue_cert: IssueCert
) -> None:
    cert = issue_cert()
    registry.things.create("dev-1")
    registry.certs.attach_thing("dev-1", cert["certificateArn"])
    with pytest.raises(InvalidRequest, match="detach them first"):
        registry.things.delete("dev-1")
    registry.certs.detach_thing("dev-1", cert["certificateId"])
    registry.things.delete("dev-1")


# -- thing types -------------------------------------------------------------------------------


def test_type_create_describe_and_list(registry: Registry) -> None:
    created = registry.things.create_type(
        "sensor", description="a sensor", searchable_attributes=["room"]
    )
    assert created == {
        "thingTypeName": "sensor",
        "thingTypeArn": f"{ARN}:thingtype/sensor",
        "thingTypeId": created["thingTypeId"],
    }
    described = registry.things.describe_type("sensor")
    metadata = described.pop("thingTypeMetadata")
    assert described == {
        "thingTypeName": "sensor",
        "thingTypeId": created["thingTypeId"],
        "thingTypeArn": f"{ARN}:thingtype/sensor",
        "thingTypeProperties": {
            "thingTypeDescription": "a sensor",
            "searchableAttributes": ["room"],
        },
    }
    assert metadata["deprecated"] is False
    assert "deprecationDate" not in metadata
    assert isinstance(metadata["creationDate"], float)
    assert [t["thingTypeName"] for t in registry.things.list_types().items] == ["sensor"]


def test_type_create_is_idempotent_and_conflicts_on_difference(registry: Registry) -> None:
    first = registry.things.create_type("sensor", description="d")
    assert registry.things.create_type("sensor", description="d") == first
    with pytest.raises(ResourceAlreadyExists):
        registry.things.create_type("sensor", description="other")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name"}, "thing type name 'bad name' is invalid"),
        ({"name": "t", "searchable_attributes": ["a", "b", "c", "d"]}, "at most 3 searchable"),
        ({"name": "t", "description": "x" * 2029}, "at most 2028"),
    ],
)
def test_invalid_types(registry: Registry, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        registry.things.create_type(**kwargs)


def test_deprecate_and_undo(registry: Registry) -> None:
    registry.things.create_type("sensor")
    registry.things.deprecate_type("sensor")
    metadata = registry.things.describe_type("sensor")["thingTypeMetadata"]
    assert metadata["deprecated"] is True
    assert isinstance(metadata["deprecationDate"], float)
    registry.things.deprecate_type("sensor", undo=True)
    metadata = registry.things.describe_type("sensor")["thingTypeMetadata"]
    assert metadata["deprecated"] is False
    assert "deprecationDate" not in metadata
    registry.things.create("dev-1", thing_type="sensor")


def test_a_deprecated_type_cannot_be_given_in_an_update(registry: Registry) -> None:
    registry.things.create_type("sensor")
    registry.things.create("dev-1")
    registry.things.deprecate_type("sensor")
    with pytest.raises(InvalidRequest, match="deprecated"):
        registry.things.update("dev-1", thing_type="sensor")


def test_delete_type_rules(registry: Registry) -> None:
    registry.things.create_type("sensor")
    registry.things.create("dev-1", thing_type="sensor")
    with pytest.raises(InvalidRequest, match="must be deprecated"):
        registry.things.delete_type("sensor")
    registry.things.deprecate_type("sensor")
    with pytest.raises(InvalidRequest, match="still used by thing 'dev-1'"):
        registry.things.delete_type("sensor")
    registry.things.update("dev-1", remove_thing_type=True)
    assert registry.things.delete_type("sensor") == {}
    with pytest.raises(ResourceNotFound):
        registry.things.describe_type("sensor")


def test_list_types_pages(registry: Registry) -> None:
    for i in range(5):
        registry.things.create_type(f"type-{i}")
    first = registry.things.list_types(max_results=3)
    second = registry.things.list_types(max_results=3, next_token=first.next_token)
    assert [t["thingTypeName"] for t in first.items + second.items] == [
        f"type-{i}" for i in range(5)
    ]
    assert second.next_token is None


# -- thing groups ------------------------------------------------------------------------------


def _chain(registry: Registry, depth: int) -> list[str]:
    names = [f"level-{i}" for i in range(1, depth + 1)]
    parent = None
    for name in names:
        registry.things.create_group(name, parent=parent)
        parent = name
    return names


def test_group_create_shape_and_idempotence(registry: Registry) -> None:
    created = registry.things.create_group("g", description="d", attributes={"k": "v"})
    assert created == {
        "thingGroupName": "g",
        "thingGroupArn": f"{ARN}:thinggroup/g",
        "thingGroupId": created["thingGroupId"],
    }
    assert registry.things.create_group("g", description="d", attributes={"k": "v"}) == created
    with pytest.raises(ResourceAlreadyExists):
        registry.things.create_group("g", description="other", attributes={"k": "v"})
    with pytest.raises(ResourceAlreadyExists):
        registry.things.create_group("g", description="d", attributes={"k": "w"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name"}, "thing group name"),
        ({"name": "g", "attributes": {"bad name": "v"}}, "attribute name"),
        ({"name": "g", "description": "x" * 2029}, "at most 2028"),
    ],
)
def test_invalid_groups(registry: Registry, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        registry.things.create_group(**kwargs)


def test_describe_group_shape(registry: Registry) -> None:
    root, middle = _chain(registry, 2)
    created = registry.things.create_group(
        "leaf", parent=middle, description="the leaf", attributes={"k": "v"}
    )
    described = registry.things.describe_group("leaf")
    metadata = described.pop("thingGroupMetadata")
    assert described == {
        "thingGroupName": "leaf",
        "thingGroupId": created["thingGroupId"],
        "thingGroupArn": f"{ARN}:thinggroup/leaf",
        "version": 1,
        "thingGroupProperties": {
            "thingGroupDescription": "the leaf",
            "attributePayload": {"attributes": {"k": "v"}},
        },
    }
    assert metadata["parentGroupName"] == middle
    assert metadata["rootToParentThingGroups"] == [
        {"groupName": root, "groupArn": f"{ARN}:thinggroup/{root}"},
        {"groupName": middle, "groupArn": f"{ARN}:thinggroup/{middle}"},
    ]
    assert isinstance(metadata["creationDate"], float)


def test_a_root_group_has_no_parent_in_its_metadata(registry: Registry) -> None:
    registry.things.create_group("root")
    metadata = registry.things.describe_group("root")["thingGroupMetadata"]
    assert "parentGroupName" not in metadata
    assert metadata["rootToParentThingGroups"] == []


def test_a_hierarchy_is_at_most_seven_levels_deep(registry: Registry) -> None:
    names = _chain(registry, MAX_GROUP_DEPTH)
    assert MAX_GROUP_DEPTH == 7
    metadata = registry.things.describe_group(names[-1])["thingGroupMetadata"]
    assert [g["groupName"] for g in metadata["rootToParentThingGroups"]] == names[:-1]
    with pytest.raises(InvalidRequest, match="would be 8 levels deep; the limit is 7"):
        registry.things.create_group("too-deep", parent=names[-1])


def test_a_missing_parent_is_not_found(registry: Registry) -> None:
    with pytest.raises(ResourceNotFound, match="ghost"):
        registry.things.create_group("g", parent="ghost")


def test_list_groups_all_and_by_parent(registry: Registry) -> None:
    registry.things.create_group("b-root")
    registry.things.create_group("a-child", parent="b-root")
    registry.things.create_group("c-other")
    assert [g["groupName"] for g in registry.things.list_groups().items] == [
        "a-child",
        "b-root",
        "c-other",
    ]
    assert registry.things.list_groups(parent="b-root").items == [
        {"groupName": "a-child", "groupArn": f"{ARN}:thinggroup/a-child"}
    ]


def test_membership(registry: Registry) -> None:
    registry.things.create("dev-1")
    registry.things.create_group("g1")
    registry.things.create_group("g2")
    assert registry.things.add_thing_to_group("g2", "dev-1") == {}
    registry.things.add_thing_to_group("g1", "dev-1")
    registry.things.add_thing_to_group("g1", "dev-1")  # idempotent
    assert registry.things.list_groups_for_thing("dev-1") == [
        {"groupName": "g1", "groupArn": f"{ARN}:thinggroup/g1"},
        {"groupName": "g2", "groupArn": f"{ARN}:thinggroup/g2"},
    ]
    assert registry.things.list_things_in_group("g1").items == [{"thingName": "dev-1"}]
    assert registry.things.remove_thing_from_group("g1", "dev-1") == {}
    registry.things.remove_thing_from_group("g1", "dev-1")  # idempotent
    assert [g["groupName"] for g in registry.things.list_groups_for_thing("dev-1")] == ["g2"]


@pytest.mark.parametrize(("group", "thing"), [("ghost", "dev-1"), ("g", "ghost")])
def test_membership_needs_both_to_exist(registry: Registry, group: str, thing: str) -> None:
    registry.things.create("dev-1")
    registry.things.create_group("g")
    with pytest.raises(ResourceNotFound, match="ghost"):
        registry.things.add_thing_to_group(group, thing)


def test_a_thing_is_in_at_most_ten_groups(registry: Registry) -> None:
    registry.things.create("dev-1")
    for i in range(11):
        registry.things.create_group(f"g{i}")
    for i in range(10):
        registry.things.add_thing_to_group(f"g{i}", "dev-1")
    with pytest.raises(InvalidRequest, match="already in 10 groups"):
        registry.things.add_thing_to_group("g10", "dev-1")


def test_a_thing_is_in_at_most_one_group_of_a_hierarchy(registry: Registry) -> None:
    root, child = _chain(registry, 2)
    registry.things.create_group("sibling", parent=root)
    registry.things.create_group("elsewhere")
    registry.things.create("dev-1")
    registry.things.add_thing_to_group(child, "dev-1")
    for group in (root, "sibling"):
        with pytest.raises(InvalidRequest, match="already in group 'level-2'"):
            registry.things.add_thing_to_group(group, "dev-1")
    registry.things.add_thing_to_group("elsewhere", "dev-1")


def test_list_things_in_group_recursive(registry: Registry) -> None:
    root, child, grandchild = _chain(registry, 3)
    registry.things.create_group("other")
    for thing, group in [("a", root), ("b", child), ("c", grandchild), ("d", "other")]:
        registry.things.create(thing)
        registry.things.add_thing_to_group(group, thing)

    def names(group: str, recursive: bool) -> list[str]:
        page = registry.things.list_things_in_group(group, recursive=recursive)
        return [t["thingName"] for t in page.items]

    assert names(root, False) == ["a"]
    assert names(root, True) == ["a", "b", "c"]
    assert names(child, True) == ["b", "c"]
    with pytest.raises(ResourceNotFound):
        names("ghost", True)


def test_list_things_in_group_pages(registry: Registry) -> None:
    registry.things.create_group("g")
    for i in range(5):
        registry.things.create(f"t{i}")
        registry.things.add_thing_to_group("g", f"t{i}")
    first = registry.things.list_things_in_group("g", max_results=2)
    second = registry.things.list_things_in_group("g", max_results=2, next_token=first.next_token)
    third = registry.things.list_things_in_group("g", max_results=2, next_token=second.next_token)
    assert [t["thingName"] for t in first.items + second.items + third.items] == [
        f"t{i}" for i in range(5)
    ]
    assert third.next_token is None


def test_delete_group_rules(registry: Registry) -> None:
    root, child = _chain(registry, 2)
    registry.things.create("dev-1")
    registry.things.add_thing_to_group(child, "dev-1")
    with pytest.raises(InvalidRequest, match="child groups"):
        registry.things.delete_group(root)
    assert registry.things.delete_group(child) == {}
    assert registry.things.list_groups_for_thing("dev-1") == []
    assert registry.things.delete_group(root) == {}
    assert registry.things.delete_group(root) == {}  # idempotent
    assert registry.things.list_groups().items == []
