"""Policies, their versions, and attachments to certificates and thing groups.

Documents are validated by the pure evaluator's parser before they are stored, so a malformed
policy is refused with the place of the mistake instead of failing later at connect time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from registry import names
from registry.clock import now
from registry.errors import (
    DeleteConflict,
    InvalidRequest,
    LimitExceeded,
    MalformedPolicy,
    ResourceAlreadyExists,
    ResourceNotFound,
    VersionsLimitExceeded,
)
from registry.models import Certificate, Policy, PolicyTarget, PolicyVersion, ThingGroup
from registry.policies import PolicyError, parse_policy
from registry.service import record_change

if TYPE_CHECKING:
    from registry.service import Registry

MAX_VERSIONS = 5
"""AWS keeps at most five versions of a policy."""
TARGET_TYPES = ("cert", "thinggroup")
MAX_POLICIES_PER_TARGET = 10
"""AWS: at most ten policies on a certificate (and on a thing group)."""


MAX_DOCUMENT_CHARS = 2048
"""AWS's limit on a policy document, counted without whitespace."""


def validate_document(document: str, name: str) -> str:
    """Parse ``document`` (raising ``MalformedPolicy``); return it as stored: as sent, since
    GetPolicy hands back exactly the document that was created (AWS)."""
    try:
        parse_policy(document, name, max_chars=MAX_DOCUMENT_CHARS)
    except PolicyError as exc:
        raise MalformedPolicy(str(exc)) from exc
    return document


class PolicyStore:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.arns = registry.arns

    def _policy(self, session: Session, name: str) -> Policy:
        row = session.get(Policy, name)
        if row is None:
            raise ResourceNotFound(f"no policy named {name!r} (see `thingcore policies list`)")
        return row

    def _version(self, session: Session, name: str, version: int) -> PolicyVersion:
        row = session.get(PolicyVersion, (name, version))
        if row is None:
            raise ResourceNotFound(f"policy {name!r} has no version {version}")
        return row

    def create(self, name: str, document: str) -> dict[str, Any]:
        names.policy_name(name)
        document = validate_document(document, name)
        with self.registry.db.session() as session:
            if session.get(Policy, name) is not None:
                raise ResourceAlreadyExists(
                    f"policy {name!r} already exists; add a version with "
                    f"`thingcore policies create-version {name} FILE`"
                )
            stamp = now()
            session.add(Policy(name=name, created_at=stamp, updated_at=stamp))
            session.flush()
            session.add(PolicyVersion(policy=name, version=1, document=document, created_at=stamp))
            record_change(session, "policy", name)
        return {
            "policyName": name,
            "policyArn": self.arns.policy(name),
            "policyDocument": document,
            "policyVersionId": "1",
        }

    def ensure(self, name: str, document: str) -> bool:
        """Create ``name`` with ``document`` unless it exists; True if created now."""
        with self.registry.db.session() as session:
            if session.get(Policy, name) is not None:
                return False
        try:
            self.create(name, document)
        except ResourceAlreadyExists:  # created meanwhile by another process
            return False
        return True

    def get(self, name: str, version: int | None = None) -> dict[str, Any]:
        with self.registry.db.session() as session:
            policy = self._policy(session, name)
            chosen = self._version(
                session, name, policy.default_version if version is None else version
            )
            result: dict[str, Any] = {
                "policyName": name,
                "policyArn": self.arns.policy(name),
                "policyDocument": chosen.document,
                "defaultVersionId": str(policy.default_version),
                "creationDate": policy.created_at,
                "lastModifiedDate": policy.updated_at,
                "generationId": f"{policy.default_version}-{int(policy.updated_at * 1000)}",
            }
            if version is not None:
                result["policyVersionId"] = str(version)
                result["isDefaultVersion"] = version == policy.default_version
            return result

    def list_policies(self) -> list[dict[str, Any]]:
        with self.registry.db.session() as session:
            rows = session.exec(select(Policy).order_by(col(Policy.name))).all()
            return [{"policyName": r.name, "policyArn": self.arns.policy(r.name)} for r in rows]

    def delete(self, name: str) -> dict[str, Any]:
        """DeletePolicy: only when nothing is attached and only the default version is left."""
        with self.registry.db.session() as session:
            policy = self._policy(session, name)
            target = session.exec(select(PolicyTarget).where(PolicyTarget.policy == name)).first()
            if target is not None:
                raise DeleteConflict(
                    f"policy {name!r} is attached to {target.target_type} {target.target}; "
                    f"detach it first (`thingcore policies detach {name} ...`)"
                )
            versions = session.exec(select(PolicyVersion).where(PolicyVersion.policy == name))
            rows = list(versions)
            if len(rows) > 1:
                raise DeleteConflict(
                    f"policy {name!r} has {len(rows)} versions; delete the non-default ones first"
                )
            for row in rows:
                session.delete(row)
            session.flush()
            session.delete(policy)
            record_change(session, "policy", name)
        return {}

    # -- versions --------------------------------------------------------------------------

    def create_version(
        self, name: str, document: str, *, set_as_default: bool = False
    ) -> dict[str, Any]:
        document = validate_document(document, name)
        with self.registry.db.session() as session:
            policy = self._policy(session, name)
            existing = session.exec(select(PolicyVersion).where(PolicyVersion.policy == name))
            if len(list(existing)) >= MAX_VERSIONS:
                raise VersionsLimitExceeded(
                    f"policy {name!r} already has {MAX_VERSIONS} versions; delete one first "
                    f"(`thingcore policies delete-version {name} VERSION`)"
                )
            version = policy.next_version
            stamp = now()
            session.add(
                PolicyVersion(policy=name, version=version, document=document, created_at=stamp)
            )
            policy.next_version += 1
            if set_as_default:
                policy.default_version = version
            policy.updated_at = stamp
            session.add(policy)
            record_change(session, "policy", name)
        return {
            "policyArn": self.arns.policy(name),
            "policyDocument": document,
            "policyVersionId": str(version),
            "isDefaultVersion": set_as_default,
        }

    def set_default_version(self, name: str, version: int) -> dict[str, Any]:
        with self.registry.db.session() as session:
            policy = self._policy(session, name)
            self._version(session, name, version)
            policy.default_version = version
            policy.updated_at = now()
            session.add(policy)
            record_change(session, "policy", name)
        return {}

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        with self.registry.db.session() as session:
            policy = self._policy(session, name)
            rows = session.exec(
                select(PolicyVersion)
                .where(PolicyVersion.policy == name)
                .order_by(col(PolicyVersion.version).desc())
            ).all()
            return [
                {
                    "versionId": str(r.version),
                    "isDefaultVersion": r.version == policy.default_version,
                    "createDate": r.created_at,
                }
                for r in rows
            ]

    def delete_version(self, name: str, version: int) -> dict[str, Any]:
        with self.registry.db.session() as session:
            policy = self._policy(session, name)
            row = self._version(session, name, version)
            if version == policy.default_version:
                raise DeleteConflict(
                    f"version {version} is the default of policy {name!r}; make another "
                    "version the default first"
                )
            session.delete(row)
            record_change(session, "policy", name)
        return {}

    # -- attachments -----------------------------------------------------------------------

    def parse_target(self, target: str) -> tuple[str, str]:
        """A certificate ARN or id, or a thing group ARN, to ``(type, key)``."""
        if target.startswith("arn:"):
            kind, name = self.arns.parse(target)
            if kind == "cert":
                return "cert", names.certificate_id(name)
            if kind == "thinggroup":
                return "thinggroup", name
            raise InvalidRequest(
                f"policies attach to certificates and thing groups, not to a {kind!r}"
            )
        return "cert", names.certificate_id(target)

    def attach(self, name: str, target_type: str, target: str) -> dict[str, Any]:
        with self.registry.db.session() as session:
            self._policy(session, name)
            target = self._existing_target(session, target_type, target)
            if session.get(PolicyTarget, (name, target_type, target)) is None:
                attached = session.exec(
                    select(PolicyTarget).where(
                        PolicyTarget.target_type == target_type, PolicyTarget.target == target
                    )
                ).all()
                if len(attached) >= MAX_POLICIES_PER_TARGET:
                    raise LimitExceeded(
                        f"{target_type} {target} already has {MAX_POLICIES_PER_TARGET} policies, "
                        "the limit; detach one first"
                    )
                session.add(PolicyTarget(policy=name, target_type=target_type, target=target))
                record_change(session, "policy", name)
        return {}

    def _existing_target(self, session: Session, target_type: str, target: str) -> str:
        if target_type == "cert":
            target = names.certificate_id(target)
            if session.get(Certificate, target) is None:
                raise ResourceNotFound(f"no certificate {target}")
        elif target_type == "thinggroup":
            if session.get(ThingGroup, target) is None:
                raise ResourceNotFound(f"no thing group named {target!r}")
        else:
            raise InvalidRequest(f"target type must be one of {', '.join(TARGET_TYPES)}")
        return target

    def detach(self, name: str, target_type: str, target: str) -> dict[str, Any]:
        if target_type == "cert":
            target = names.certificate_id(target)
        with self.registry.db.session() as session:
            link = session.get(PolicyTarget, (name, target_type, target))
            if link is None:
                raise ResourceNotFound(f"policy {name!r} is not attached to {target_type} {target}")
            session.delete(link)
            record_change(session, "policy", name)
        return {}

    def attached_to(self, target_type: str, target: str) -> list[dict[str, Any]]:
        """ListAttachedPolicies of a certificate or thing group."""
        if target_type == "cert":
            target = names.certificate_id(target)
        with self.registry.db.session() as session:
            rows = session.exec(
                select(PolicyTarget.policy)
                .where(PolicyTarget.target_type == target_type, PolicyTarget.target == target)
                .order_by(col(PolicyTarget.policy))
            ).all()
            return [{"policyName": p, "policyArn": self.arns.policy(p)} for p in rows]

    def targets(self, name: str) -> list[dict[str, str]]:
        """ListTargetsForPolicy: ARNs of the certificates and groups it is attached to."""
        with self.registry.db.session() as session:
            self._policy(session, name)
            rows = session.exec(select(PolicyTarget).where(PolicyTarget.policy == name)).all()
            return [
                {
                    "type": r.target_type,
                    "target": r.target,
                    "arn": self.arns.cert(r.target)
                    if r.target_type == "cert"
                    else self.arns.thing_group(r.target),
                }
                for r in rows
            ]
