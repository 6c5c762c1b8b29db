"""registry/thing_store.py: a thing type's shadow options (beyond AWS), stored as JSON text,
shown in its description and announced on the change feed, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from registry.errors import InvalidRequest, ResourceNotFound
from registry.service import Registry
from shadows.config import ShadowSettings
from shadows.options import DEFAULT, parse_options
from shadows.store import ShadowStore
from tests.registry.conftest import SQLITE_ONLY, changes_since

OPTIONS = {"history": 3, "rejections": {"enabled": True}}


def test_set_options_shows_them_in_the_description(registry: Registry) -> None:
    registry.things.create_type("sensor")
    assert "shadowOptions" not in registry.things.describe_type("sensor")
    described = registry.things.set_type_shadow_options("sensor", json.dumps(OPTIONS))
    assert described["shadowOptions"] == OPTIONS
    assert described["thingTypeName"] == "sensor"
    assert registry.things.describe_type("sensor")["shadowOptions"] == OPTIONS
    [listed] = registry.things.list_types().items
    assert listed["shadowOptions"] == OPTIONS


def test_none_removes_the_options(registry: Registry) -> None:
    registry.things.create_type("sensor")
    registry.things.set_type_shadow_options("sensor", json.dumps(OPTIONS))
    described = registry.things.set_type_shadow_options("sensor", None)
    assert "shadowOptions" not in described
    assert "shadowOptions" not in registry.things.describe_type("sensor")


def test_setting_options_is_a_type_change(registry: Registry) -> None:
    registry.things.create_type("sensor")
    mark = registry.last_change()
    registry.things.set_type_shadow_options("sensor", "{}")
    assert changes_since(registry, mark) == [("type", "sensor")]


def test_the_shadow_store_reads_them_for_things_of_the_type(registry: Registry) -> None:
    registry.things.create_type("sensor")
    registry.things.create("dev-1", thing_type="sensor")
    registry.things.create("dev-2")
    registry.things.set_type_shadow_options("sensor", parse_options(OPTIONS).to_json())
    store = ShadowStore(registry.db, ShadowSettings())
    options = store.options_for("dev-1")
    assert options.model.history == 3
    assert options.rules.record_rejections
    assert store.options_for("dev-2") is DEFAULT
    assert store.type_options()["sensor"].model.history == 3


def test_an_unknown_type_is_not_found(registry: Registry) -> None:
    with pytest.raises(ResourceNotFound, match="no thing type named 'ghost'"):
        registry.things.set_type_shadow_options("ghost", "{}")


@SQLITE_ONLY
@pytest.mark.parametrize("text", ["{", "[1]", '"history"', "null"])
def test_anything_but_a_json_object_is_refused(registry: Registry, text: str) -> None:
    registry.things.create_type("sensor")
    registry.things.set_type_shadow_options("sensor", '{"history": 1}')
    with pytest.raises(InvalidRequest, match="must be a JSON object"):
        registry.things.set_type_shadow_options("sensor", text)
    assert registry.things.describe_type("sensor")["shadowOptions"] == {"history": 1}
