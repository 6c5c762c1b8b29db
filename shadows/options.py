"""Beyond-AWS shadow options, stored per thing type as ``shadow_options`` (JSON).

Every option is off by default, so a thing without a type, or a type without options, gets
exactly AWS's behaviour. ``thingcore types update NAME --shadow-options FILE`` sets them; the
file is validated here (pydantic) before it is stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shadows.document import UpdateRules
from shadows.names import shadow_name
from thingcore.errors import ThingcoreError


class ShadowOptionsError(ThingcoreError):
    """A shadow options document that cannot be used."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RejectionOptions(_Model):
    enabled: bool = False
    """Record values a device refuses in a top-level ``rejected`` object of its update."""
    desired: Literal["clear", "keep"] = "clear"
    """What happens to a refused desired key: removed (no delta for it again) or kept."""


class PresenceOptions(_Model):
    enabled: bool = False
    """Write connection state to a named shadow when the thing's client connects or
    disconnects (the client id is the thing name, as AWS recommends)."""
    shadow: str = "presence"

    @field_validator("shadow")
    @classmethod
    def _name(cls, value: str) -> str:
        return shadow_name(value)


class SchemaOptions(_Model):
    desired: dict[str, Any] | None = None
    """A JSON Schema (draft 2020-12) that desired must satisfy after each update."""
    reported: dict[str, Any] | None = None


class ShadowOptionsModel(_Model):
    clear_desired_on_match: bool = False
    """Remove desired keys once reported matches them, so stale deltas never come back."""
    push_delta_on_subscribe: bool = False
    """Publish the current delta when the thing subscribes to its delta topic (after a
    reconnect), so the device needs no get."""
    rejections: RejectionOptions = RejectionOptions()
    history: int = Field(default=0, ge=0, le=1000)
    """Versions of each shadow kept, queryable with ``thingcore shadows history``."""
    schema_: SchemaOptions = Field(default=SchemaOptions(), alias="schema")
    presence: PresenceOptions = PresenceOptions()


@dataclass(frozen=True)
class ShadowOptions:
    """Validated options, with the compiled schema validators."""

    model: ShadowOptionsModel

    @property
    def rules(self) -> UpdateRules:
        return UpdateRules(
            clear_desired_on_match=self.model.clear_desired_on_match,
            record_rejections=self.model.rejections.enabled,
            clear_rejected=self.model.rejections.desired == "clear",
        )

    @cached_property
    def validators(self) -> dict[str, Any]:
        """Section name -> jsonschema validator, for the sections that have a schema."""
        from jsonschema import Draft202012Validator

        found = {}
        for section in ("desired", "reported"):
            schema = getattr(self.model.schema_, section)
            if schema is not None:
                found[section] = Draft202012Validator(schema)
        return found

    def to_json(self) -> str:
        return self.model.model_dump_json(by_alias=True, exclude_defaults=True)


DEFAULT = ShadowOptions(ShadowOptionsModel())


def parse_options(text: str | bytes | dict[str, Any]) -> ShadowOptions:
    """Validate a shadow options document (JSON text or an already-parsed object)."""
    try:
        raw = json.loads(text) if isinstance(text, str | bytes) else text
    except ValueError as exc:
        raise ShadowOptionsError(f"shadow options are not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ShadowOptionsError("shadow options must be a JSON object")
    try:
        model = ShadowOptionsModel.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise ShadowOptionsError(f"invalid shadow options: {problems}") from None
    options = ShadowOptions(model)
    from jsonschema import SchemaError

    try:
        for section in ("desired", "reported"):
            schema = getattr(model.schema_, section)
            if schema is not None:
                from jsonschema import Draft202012Validator

                Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ShadowOptionsError(f"invalid JSON Schema in shadow options: {exc.message}") from None
    return options
