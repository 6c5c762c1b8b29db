"""Things, thing types and thing groups (reference section 3), with AWS's response shapes."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from registry import names
from registry.clock import now
from registry.errors import (
    InvalidRequest,
    ResourceAlreadyExists,
    ResourceNotFound,
    VersionConflict,
)
from registry.models import Thing, ThingGroup, ThingGroupMember, ThingPrincipal, ThingType
from registry.service import Page, make_page, page_bounds, record_change

if TYPE_CHECKING:
    from registry.service import Registry

MAX_GROUP_DEPTH = 7
"""AWS: a thing group hierarchy is at most seven levels deep."""
MAX_GROUPS_PER_THING = 10
"""AWS: a thing is in at most ten (static) thing groups."""
MAX_DESCRIPTION = 2028
"""AWS: thingTypeDescription and thingGroupDescription are at most 2028 characters."""


def _description(description: str | None) -> None:
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise InvalidRequest(
            f"the description has {len(description)} characters; at most {MAX_DESCRIPTION} "
            "are allowed"
        )


class ThingStore:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.arns = registry.arns

    # -- things ----------------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        thing_type: str | None = None,
        attributes: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """CreateThing: idempotent for an identical thing, a conflict for a different one."""
        names.thing_name(name)
        attributes = names.attributes(dict(attributes or {}), typed=thing_type is not None)
        with self.registry.db.session() as session:
            existing = session.get(Thing, name)
            if existing is not None:
                if existing.thing_type == thing_type and json.loads(existing.attributes) == (
                    attributes
                ):
                    return self._created(existing)
                raise ResourceAlreadyExists(
                    f"thing {name!r} already exists with a different type or attributes; "
                    "use `thingcore things update` to change it"
                )
            if thing_type is not None:
                self._usable_type(session, thing_type)
            stamp = now()
            thing = Thing(
                name=name,
                thing_id=str(uuid.uuid4()),
                thing_type=thing_type,
                attributes=json.dumps(attributes, sort_keys=True),
                created_at=stamp,
                updated_at=stamp,
            )
            session.add(thing)
            record_change(session, "thing", name)
            return self._created(thing)

    def _created(self, thing: Thing) -> dict[str, Any]:
        return {
            "thingName": thing.name,
            "thingArn": self.arns.thing(thing.name),
            "thingId": thing.thing_id,
        }

    def describe(self, name: str) -> dict[str, Any]:
        with self.registry.db.session() as session:
            return self._describe(self._thing(session, name))

    def _describe(self, thing: Thing) -> dict[str, Any]:
        result: dict[str, Any] = {
            "defaultClientId": thing.name,
            "thingName": thing.name,
            "thingId": thing.thing_id,
            "thingArn": self.arns.thing(thing.name),
            "attributes": json.loads(thing.attributes),
            "version": thing.version,
        }
        if thing.thing_type is not None:
            result["thingTypeName"] = thing.thing_type
        return result

    def _thing(self, session: Session, name: str) -> Thing:
        thing = session.get(Thing, name)
        if thing is None:
            raise ResourceNotFound(f"no thing named {name!r} (see `thingcore things list`)")
        return thing

    def list_things(
        self,
        *,
        thing_type: str | None = None,
        attribute_name: str | None = None,
        attribute_value: str | None = None,
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> Page:
        offset, limit = page_bounds(next_token, max_results)
        with self.registry.db.session() as session:
            query = select(Thing).order_by(col(Thing.name))
            if thing_type is not None:
                query = query.where(Thing.thing_type == thing_type)
            rows = session.exec(query).all()
        items = []
        for thing in rows:
            attrs = json.loads(thing.attributes)
            if attribute_name is not None and (
                attribute_name not in attrs
                or (attribute_value is not None and attrs[attribute_name] != attribute_value)
            ):
                continue
            item: dict[str, Any] = {
                "thingName": thing.name,
                "thingArn": self.arns.thing(thing.name),
                "attributes": attrs,
                "version": thing.version,
            }
            if thing.thing_type is not None:
                item["thingTypeName"] = thing.thing_type
            items.append(item)
        return make_page(items[offset : offset + limit + 1], offset, limit)

    def update(
        self,
        name: str,
        *,
        thing_type: str | None = None,
        remove_thing_type: bool = False,
        attributes: dict[str, str] | None = None,
        merge: bool = False,
        expected_version: int | None = None,
    ) -> dict[str, Any]:
        """UpdateThing; with ``merge`` an empty value removes that attribute (AWS semantics)."""
        if thing_type is not None and remove_thing_type:
            raise InvalidRequest("give a new thing type or remove the type, not both")
        with self.registry.db.session() as session:
            thing = self._thing(session, name)
            if expected_version is not None and thing.version != expected_version:
                raise VersionConflict(
                    f"thing {name!r} is at version {thing.version}, not {expected_version}: "
                    "someone else changed it; describe it again and retry"
                )
            if thing_type is not None:
                self._usable_type(session, thing_type)
                thing.thing_type = thing_type
            elif remove_thing_type:
                thing.thing_type = None
            if attributes is not None:
                if merge:
                    merged = json.loads(thing.attributes)
                    for key, value in attributes.items():
                        if value == "":
                            merged.pop(key, None)
                        else:
                            merged[key] = value
                else:
                    merged = {k: v for k, v in attributes.items() if v != ""}
                thing.attributes = json.dumps(merged, sort_keys=True)
            names.attributes(json.loads(thing.attributes), typed=thing.thing_type is not None)
            thing.version += 1
            thing.updated_at = now()
            session.add(thing)
            record_change(session, "thing", name)
        return {}

    def delete(self, name: str, *, expected_version: int | None = None) -> dict[str, Any]:
        """DeleteThing: succeeds for a missing thing; refuses one that still has principals."""
        with self.registry.db.session() as session:
            thing = session.get(Thing, name)
            if thing is None:
                return {}
            if expected_version is not None and thing.version != expected_version:
                raise VersionConflict(
                    f"thing {name!r} is at version {thing.version}, not {expected_version}"
                )
            principals = session.exec(select(ThingPrincipal).where(ThingPrincipal.thing == name))
            if principals.first() is not None:
                raise InvalidRequest(
                    f"thing {name!r} still has certificates attached; detach them first "
                    f"(`thingcore things detach-cert {name} CERT_ID`) or delete with --force"
                )
            for member in session.exec(
                select(ThingGroupMember).where(ThingGroupMember.thing == name)
            ):
                session.delete(member)
            # Without relationships the unit of work does not order the deletes: the rows that
            # reference the thing must go first or the foreign key refuses the delete.
            session.flush()
            session.delete(thing)
            record_change(session, "thing", name)
        return {}

    # -- thing types -----------------------------------------------------------------------

    def _usable_type(self, session: Session, name: str) -> ThingType:
        thing_type = session.get(ThingType, name)
        if thing_type is None:
            raise ResourceNotFound(
                f"no thing type named {name!r}; create it with `thingcore types create {name}`"
            )
        if thing_type.deprecated:
            raise InvalidRequest(f"thing type {name!r} is deprecated: no new things may use it")
        return thing_type

    def create_type(
        self,
        name: str,
        *,
        description: str | None = None,
        searchable_attributes: list[str] | None = None,
    ) -> dict[str, Any]:
        names.thing_name(name, "thing type name")
        _description(description)
        searchable = list(searchable_attributes or [])
        if len(searchable) > 3:
            raise InvalidRequest("a thing type has at most 3 searchable attributes")
        with self.registry.db.session() as session:
            existing = session.get(ThingType, name)
            if existing is not None:
                if (
                    existing.description == description
                    and json.loads(existing.searchable_attributes) == searchable
                ):
                    return self._type_created(existing)
                raise ResourceAlreadyExists(f"thing type {name!r} already exists")
            row = ThingType(
                name=name,
                type_id=str(uuid.uuid4()),
                description=description,
                searchable_attributes=json.dumps(searchable),
                created_at=now(),
            )
            session.add(row)
            record_change(session, "type", name)
            return self._type_created(row)

    def _type_created(self, row: ThingType) -> dict[str, Any]:
        return {
            "thingTypeName": row.name,
            "thingTypeArn": self.arns.thing_type(row.name),
            "thingTypeId": row.type_id,
        }

    def _type(self, session: Session, name: str) -> ThingType:
        row = session.get(ThingType, name)
        if row is None:
            raise ResourceNotFound(f"no thing type named {name!r} (see `thingcore types list`)")
        return row

    def _describe_type(self, row: ThingType) -> dict[str, Any]:
        properties: dict[str, Any] = {"searchableAttributes": json.loads(row.searchable_attributes)}
        if row.description is not None:
            properties["thingTypeDescription"] = row.description
        metadata: dict[str, Any] = {"deprecated": row.deprecated, "creationDate": row.created_at}
        if row.deprecated_at is not None:
            metadata["deprecationDate"] = row.deprecated_at
        described: dict[str, Any] = {
            "thingTypeName": row.name,
            "thingTypeId": row.type_id,
            "thingTypeArn": self.arns.thing_type(row.name),
            "thingTypeProperties": properties,
            "thingTypeMetadata": metadata,
        }
        if row.shadow_options is not None:
            # Beyond AWS (DescribeThingType has no such field): boto3 ignores unknown keys.
            described["shadowOptions"] = json.loads(row.shadow_options)
        return described

    def describe_type(self, name: str) -> dict[str, Any]:
        with self.registry.db.session() as session:
            return self._describe_type(self._type(session, name))

    def list_types(self, *, max_results: int | None = None, next_token: str | None = None) -> Page:
        offset, limit = page_bounds(next_token, max_results)
        with self.registry.db.session() as session:
            rows = session.exec(
                select(ThingType).order_by(col(ThingType.name)).offset(offset).limit(limit + 1)
            ).all()
            return make_page([self._describe_type(r) for r in rows], offset, limit)

    def deprecate_type(self, name: str, *, undo: bool = False) -> dict[str, Any]:
        with self.registry.db.session() as session:
            row = self._type(session, name)
            row.deprecated = not undo
            row.deprecated_at = None if undo else now()
            session.add(row)
            record_change(session, "type", name)
        return {}

    def set_type_shadow_options(self, name: str, options_json: str | None) -> dict[str, Any]:
        """Store (or with None remove) a thing type's shadow options; returns its description.

        The options are validated by ``shadows.options.parse_options`` before they get here
        (the registry does not depend on the shadow service); this only insists on a JSON
        object, so the description can always show them.
        """
        if options_json is not None:
            try:
                parsed = json.loads(options_json)
            except ValueError:
                raise InvalidRequest("shadow options must be a JSON object") from None
            if not isinstance(parsed, dict):
                raise InvalidRequest("shadow options must be a JSON object")
        with self.registry.db.session() as session:
            row = self._type(session, name)
            row.shadow_options = options_json
            session.add(row)
            record_change(session, "type", name)
            return self._describe_type(row)

    def delete_type(self, name: str) -> dict[str, Any]:
        """Only a deprecated type that no thing uses may be deleted (AWS semantics)."""
        with self.registry.db.session() as session:
            row = self._type(session, name)
            if not row.deprecated:
                raise InvalidRequest(
                    f"thing type {name!r} must be deprecated before it is deleted "
                    f"(`thingcore types deprecate {name}`)"
                )
            user = session.exec(select(Thing).where(Thing.thing_type == name)).first()
            if user is not None:
                # InvalidRequestException: DeleteThingType has no conflict error (botocore).
                raise InvalidRequest(
                    f"thing type {name!r} is still used by thing {user.name!r} and maybe others; "
                    "remove the type from them first"
                )
            session.delete(row)
            record_change(session, "type", name)
        return {}

    # -- thing groups ----------------------------------------------------------------------

    def create_group(
        self,
        name: str,
        *,
        parent: str | None = None,
        description: str | None = None,
        attributes: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        names.thing_name(name, "thing group name")
        if parent is not None:
            names.thing_name(parent, "parent group name")
        _description(description)
        attrs = names.attributes(dict(attributes or {}), typed=True, what="a thing group")
        with self.registry.db.session() as session:
            existing = session.get(ThingGroup, name)
            if existing is not None:
                if (
                    existing.parent == parent
                    and existing.description == description
                    and json.loads(existing.attributes) == attrs
                ):
                    return self._group_created(existing)
                raise ResourceAlreadyExists(f"thing group {name!r} already exists")
            if parent is not None:
                depth = len(self._ancestors(session, parent)) + 1
                if depth > MAX_GROUP_DEPTH:
                    raise InvalidRequest(
                        f"thing group {name!r} would be {depth} levels deep; "
                        f"the limit is {MAX_GROUP_DEPTH}"
                    )
            stamp = now()
            row = ThingGroup(
                name=name,
                group_id=str(uuid.uuid4()),
                parent=parent,
                description=description,
                attributes=json.dumps(attrs, sort_keys=True),
                created_at=stamp,
                updated_at=stamp,
            )
            session.add(row)
            record_change(session, "group", name)
            return self._group_created(row)

    def _group_created(self, row: ThingGroup) -> dict[str, Any]:
        return {
            "thingGroupName": row.name,
            "thingGroupArn": self.arns.thing_group(row.name),
            "thingGroupId": row.group_id,
        }

    def _group(self, session: Session, name: str) -> ThingGroup:
        row = session.get(ThingGroup, name)
        if row is None:
            raise ResourceNotFound(f"no thing group named {name!r} (see `thingcore groups list`)")
        return row

    def _ancestors(self, session: Session, name: str) -> list[str]:
        """``name`` and its ancestors, nearest first."""
        chain = []
        current: str | None = name
        while current is not None:
            row = self._group(session, current)
            chain.append(row.name)
            current = row.parent
        return chain

    def describe_group(self, name: str) -> dict[str, Any]:
        with self.registry.db.session() as session:
            row = self._group(session, name)
            properties: dict[str, Any] = {
                "attributePayload": {"attributes": json.loads(row.attributes)}
            }
            if row.description is not None:
                properties["thingGroupDescription"] = row.description
            root = self._ancestors(session, name)
            metadata: dict[str, Any] = {
                "creationDate": row.created_at,
                "rootToParentThingGroups": [
                    {"groupName": g, "groupArn": self.arns.thing_group(g)}
                    for g in reversed(root[1:])
                ],
            }
            if row.parent is not None:
                metadata["parentGroupName"] = row.parent
            return {
                "thingGroupName": row.name,
                "thingGroupId": row.group_id,
                "thingGroupArn": self.arns.thing_group(row.name),
                "version": row.version,
                "thingGroupProperties": properties,
                "thingGroupMetadata": metadata,
            }

    def list_groups(
        self,
        *,
        parent: str | None = None,
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> Page:
        offset, limit = page_bounds(next_token, max_results)
        with self.registry.db.session() as session:
            query = select(ThingGroup).order_by(col(ThingGroup.name))
            if parent is not None:
                query = query.where(ThingGroup.parent == parent)
            rows = session.exec(query.offset(offset).limit(limit + 1)).all()
            items = [{"groupName": r.name, "groupArn": self.arns.thing_group(r.name)} for r in rows]
            return make_page(items, offset, limit)

    def delete_group(self, name: str) -> dict[str, Any]:
        with self.registry.db.session() as session:
            row = session.get(ThingGroup, name)
            if row is None:
                return {}
            child = session.exec(select(ThingGroup).where(ThingGroup.parent == name)).first()
            if child is not None:
                raise InvalidRequest(
                    f"thing group {name!r} has child groups ({child.name!r}...); delete them first"
                )
            for member in session.exec(
                select(ThingGroupMember).where(ThingGroupMember.group == name)
            ):
                session.delete(member)
            from registry.models import PolicyTarget

            for target in session.exec(
                select(PolicyTarget).where(
                    PolicyTarget.target_type == "thinggroup", PolicyTarget.target == name
                )
            ):
                session.delete(target)
            session.flush()  # the members first: they reference the group
            session.delete(row)
            record_change(session, "group", name)
        return {}

    def add_thing_to_group(self, group: str, thing: str) -> dict[str, Any]:
        with self.registry.db.session() as session:
            root = self._ancestors(session, group)[-1]
            self._thing(session, thing)
            if session.get(ThingGroupMember, (group, thing)) is None:
                current = session.exec(
                    select(ThingGroupMember.group).where(ThingGroupMember.thing == thing)
                ).all()
                if len(current) >= MAX_GROUPS_PER_THING:
                    raise InvalidRequest(
                        f"thing {thing!r} is already in {MAX_GROUPS_PER_THING} groups, the limit"
                    )
                for other in current:
                    # AWS: a thing is in at most one group of a hierarchy.
                    if self._ancestors(session, other)[-1] == root:
                        raise InvalidRequest(
                            f"thing {thing!r} is already in group {other!r} of the hierarchy "
                            f"under {root!r}; remove it from there first"
                        )
                session.add(ThingGroupMember(group=group, thing=thing))
                record_change(session, "group", group)
        return {}

    def remove_thing_from_group(self, group: str, thing: str) -> dict[str, Any]:
        with self.registry.db.session() as session:
            member = session.get(ThingGroupMember, (group, thing))
            if member is not None:
                session.delete(member)
                record_change(session, "group", group)
        return {}

    def list_things_in_group(
        self,
        group: str,
        *,
        recursive: bool = False,
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> Page:
        offset, limit = page_bounds(next_token, max_results)
        with self.registry.db.session() as session:
            self._group(session, group)
            groups = {group}
            if recursive:
                frontier = [group]
                while frontier:
                    children = session.exec(
                        select(ThingGroup.name).where(col(ThingGroup.parent).in_(frontier))
                    ).all()
                    frontier = [c for c in children if c not in groups]
                    groups.update(frontier)
            things = sorted(
                set(
                    session.exec(
                        select(ThingGroupMember.thing).where(
                            col(ThingGroupMember.group).in_(groups)
                        )
                    ).all()
                )
            )
        return make_page(
            [{"thingName": t} for t in things[offset : offset + limit + 1]], offset, limit
        )

    def list_groups_for_thing(self, thing: str) -> list[dict[str, Any]]:
        with self.registry.db.session() as session:
            self._thing(session, thing)
            rows = session.exec(
                select(ThingGroupMember.group)
                .where(ThingGroupMember.thing == thing)
                .order_by(col(ThingGroupMember.group))
            ).all()
            return [{"groupName": g, "groupArn": self.arns.thing_group(g)} for g in rows]
