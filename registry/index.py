"""An in-memory snapshot of what authentication and authorization need from the registry.

The broker's hooks run on the event loop without awaiting (DESIGN.md), so they read this
snapshot rather than the database. It is loaded whole in a worker thread at start and again
whenever the change feed reports a change, then swapped in at once.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

from sqlmodel import Session, select

from registry.models import (
    CaCertificate,
    Certificate,
    Policy,
    PolicyTarget,
    PolicyVersion,
    Thing,
    ThingGroup,
    ThingGroupMember,
    ThingPrincipal,
)
from registry.policies import PolicyDocument, PolicyError, parse_policy


@dataclass(frozen=True, slots=True)
class CertInfo:
    id: str
    status: str
    ca_id: str | None
    not_before: float
    not_after: float
    subject: str
    pem: str


@dataclass(frozen=True, slots=True)
class CaInfo:
    id: str
    status: str
    not_after: float
    subject: str
    pem: str


@dataclass(frozen=True, slots=True)
class ThingInfo:
    name: str
    thing_type: str | None
    attributes: dict[str, str]


@dataclass(frozen=True, slots=True)
class IdentityIndex:
    certs: dict[str, CertInfo] = field(default_factory=dict)
    cas: dict[str, CaInfo] = field(default_factory=dict)
    things: dict[str, ThingInfo] = field(default_factory=dict)
    cert_things: dict[str, frozenset[str]] = field(default_factory=dict)
    thing_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Each thing's groups and all their ancestors."""
    policies: dict[str, PolicyDocument] = field(default_factory=dict)
    """Default version of every policy that parses."""
    cert_policies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    group_policies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    broken_policies: dict[str, str] = field(default_factory=dict)
    """Stored policies that no longer parse (only possible across versions), with why."""

    def trust_anchors(self) -> str:
        """PEMs the TLS listener trusts: every registered CA and every certificate registered
        without one. Inactive ones are included on purpose: their devices then complete the
        handshake and are refused at CONNECT with a log line that names them and says why."""
        pems = [ca.pem for ca in self.cas.values()]
        pems += [c.pem for c in self.certs.values() if c.ca_id is None]
        return "".join(p if p.endswith("\n") else p + "\n" for p in pems)

    def policies_for(self, cert_id: str | None, thing: str | None) -> tuple[PolicyDocument, ...]:
        names: list[str] = []
        if cert_id is not None:
            names.extend(self.cert_policies.get(cert_id, ()))
        if thing is not None:
            for group in self.thing_groups.get(thing, ()):
                names.extend(self.group_policies.get(group, ()))
        seen: set[str] = set()
        documents = []
        for name in names:
            if name not in seen and name in self.policies:
                seen.add(name)
                documents.append(self.policies[name])
        return tuple(documents)


def load_index(session: Session) -> IdentityIndex:
    certs = {
        c.id: CertInfo(c.id, c.status, c.ca_id, c.not_before, c.not_after, c.subject, c.pem)
        for c in session.exec(select(Certificate))
    }
    cas = {
        c.id: CaInfo(c.id, c.status, c.not_after, c.subject, c.pem)
        for c in session.exec(select(CaCertificate))
    }
    things = {
        t.name: ThingInfo(t.name, t.thing_type, json.loads(t.attributes))
        for t in session.exec(select(Thing))
    }
    cert_things: defaultdict[str, set[str]] = defaultdict(set)
    for link in session.exec(select(ThingPrincipal)):
        cert_things[link.principal].add(link.thing)
    parents = {g.name: g.parent for g in session.exec(select(ThingGroup))}
    direct: defaultdict[str, list[str]] = defaultdict(list)
    for member in session.exec(select(ThingGroupMember)):
        direct[member.thing].append(member.group)
    thing_groups: dict[str, tuple[str, ...]] = {}
    for thing, groups in direct.items():
        chain: list[str] = []
        for group in groups:
            current: str | None = group
            while current is not None and current not in chain:
                chain.append(current)
                current = parents.get(current)
        thing_groups[thing] = tuple(chain)
    defaults = {p.name: p.default_version for p in session.exec(select(Policy))}
    policies: dict[str, PolicyDocument] = {}
    broken: dict[str, str] = {}
    for version in session.exec(select(PolicyVersion)):
        if defaults.get(version.policy) != version.version:
            continue
        try:
            policies[version.policy] = parse_policy(version.document, version.policy)
        except PolicyError as exc:
            broken[version.policy] = str(exc)
    cert_policies: defaultdict[str, list[str]] = defaultdict(list)
    group_policies: defaultdict[str, list[str]] = defaultdict(list)
    for target in session.exec(select(PolicyTarget)):
        if target.target_type == "cert":
            cert_policies[target.target].append(target.policy)
        elif target.target_type == "thinggroup":
            group_policies[target.target].append(target.policy)
    return IdentityIndex(
        certs=certs,
        cas=cas,
        things=things,
        cert_things={k: frozenset(v) for k, v in cert_things.items()},
        thing_groups=thing_groups,
        policies=policies,
        cert_policies={k: tuple(sorted(v)) for k, v in cert_policies.items()},
        group_policies={k: tuple(sorted(v)) for k, v in group_policies.items()},
        broken_policies=broken,
    )
