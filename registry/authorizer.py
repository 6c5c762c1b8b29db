"""The broker's authentication and authorization hooks, answered from the registry.

Authentication: a TLS client's certificate (already chained to a registered CA, or itself a
registered self-signed certificate, by the handshake) must be registered, ACTIVE, within its
validity dates, and its CA ACTIVE; a plain-listener client gets the anonymous policy. Then
``iot:Connect`` on ``client/{clientId}`` must be allowed. Authorization evaluates the principal's
policies (its certificate's, plus its thing's groups' when the client id names an attached
thing) per action and caches each decision in the session until the registry changes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from broker.auth import ConnectionInfo, Identity
from broker.codec import Connect, ConnectReturnCode
from registry.arns import Arns
from registry.certificates import certificate_id, describe, load_certificate
from registry.config import RegistrySettings
from registry.index import IdentityIndex
from registry.policies import (
    CertificateFields,
    Decision,
    PolicyDocument,
    RequestContext,
    evaluate,
    parse_policy,
)

log = logging.getLogger("thingcore.auth")

ANONYMOUS_POLICY_DOCUMENT = """{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "LocalToolsMayDoAnything", "Effect": "Allow", "Action": "iot:*", "Resource": "*"},
    {"Sid": "ButNotReservedTopics", "Effect": "Deny",
     "Action": ["iot:Publish", "iot:Receive", "iot:RetainPublish"],
     "Resource": "arn:aws:iot:*:*:topic/$aws/*"},
    {"Sid": "NorReservedFilters", "Effect": "Deny", "Action": "iot:Subscribe",
     "Resource": "arn:aws:iot:*:*:topicfilter/$aws/*"}
  ]
}
"""
"""The default ``anonymous_policy``: plain-listener clients may do anything except use the
reserved ``$aws/...`` topics (DESIGN.md, defaults)."""

NOT_AUTHORIZED = ConnectReturnCode.NOT_AUTHORIZED
_CONNECT_CACHE_SIZE = 100_000


_NO_ATTRIBUTES: Mapping[str, str] = MappingProxyType({})
_NO_DECISIONS: dict[str, bool] = {}
"""Shared by every session until its first decision of a kind: four empty dicts per session
are a quarter of a kilobyte at 10,000 idle connections each. Only ``_decide_and_keep``
writes a cache, and it replaces this one first."""


def _no_decisions() -> dict[str, bool]:
    return _NO_DECISIONS


@dataclass(slots=True)
class SessionAuth:
    """Per-session authorization state: who it is, its policies and its decision caches."""

    context: RequestContext
    policies: tuple[PolicyDocument, ...]
    generation: int
    publish: dict[str, bool] = field(default_factory=_no_decisions)
    retain: dict[str, bool] = field(default_factory=_no_decisions)
    subscribe: dict[str, bool] = field(default_factory=_no_decisions)
    receive: dict[str, bool] = field(default_factory=_no_decisions)


class RegistryAuthorizer:
    """``broker.auth.AuthHooks`` backed by an ``IdentityIndex`` snapshot."""

    checks_receive = True

    def __init__(self, settings: RegistrySettings, index: IdentityIndex) -> None:
        self.settings = settings
        self.arns = Arns(settings.region, settings.account_id)
        self.index = index
        self.generation = 0
        self._fields: dict[str, CertificateFields] = {}
        self._connects: dict[
            tuple[str | None, str, str | None],
            tuple[int, RequestContext, tuple[PolicyDocument, ...], bool, str],
        ] = {}
        self._refusals: dict[str, float] = {}
        self._anonymous_default = parse_policy(ANONYMOUS_POLICY_DOCUMENT, "built-in anonymous")

    def swap(self, index: IdentityIndex) -> None:
        """Use a newer snapshot; every session's cached decisions are dropped lazily."""
        self.index = index
        self.generation += 1
        self._connects.clear()
        self._fields = {k: v for k, v in self._fields.items() if k in index.certs}

    # -- authentication --------------------------------------------------------------------

    def authenticate(self, info: ConnectionInfo, connect: Connect) -> Identity | ConnectReturnCode:
        client_id = connect.client_id
        if info.tls:
            der = info.peer_certificate
            if der is None:
                self._refuse("-", f"client {client_id!r} presented no certificate")
                return NOT_AUTHORIZED
            cert_id = certificate_id(der)
            problem = self.certificate_problem(cert_id, der)
            if problem is not None:
                self._refuse(cert_id, f"client {client_id!r} refused: {problem}")
                return NOT_AUTHORIZED
            principal: str | None = cert_id
        else:
            if not self.settings.anonymous_policy:
                self._refuse(
                    "anonymous",
                    f"client {client_id!r} refused: anonymous clients are not allowed "
                    "(anonymous_policy is unset); connect over TLS with a certificate",
                )
                return NOT_AUTHORIZED
            principal = None
        # Devices reconnect with the same id from the same place: the context, the policies
        # and the iot:Connect decision are reused until the registry changes (each session
        # still gets decision caches of its own).
        key = (principal, client_id, info.peer_address)
        cached = self._connects.get(key)
        if cached is None or cached[0] != self.generation:
            state = self._session_auth(client_id, principal, info.peer_address)
            decision = self._decide(state, "iot:Connect", self.arns.arn("client", client_id))
            if len(self._connects) >= _CONNECT_CACHE_SIZE:
                self._connects.clear()
            cached = self._connects[key] = (
                self.generation,
                state.context,
                state.policies,
                decision.allowed,
                decision.reason,
            )
        _, context, policies, allowed, reason = cached
        if not allowed:
            who = principal or "anonymous client"
            self._refuse(
                principal or "anonymous",
                f"client {client_id!r} ({who}) may not connect: {reason}",
            )
            return NOT_AUTHORIZED
        state = SessionAuth(context, policies, self.generation)
        return Identity(client_id, principal, context.thing_name, state)

    def certificate_problem(self, cert_id: str, der: bytes | None = None) -> str | None:
        """Why the certificate ``cert_id`` may not connect now, or None if it may."""
        cert = self.index.certs.get(cert_id)
        if cert is None:
            subject = ""
            if der is not None:
                try:
                    from cryptography import x509

                    subject = " " + describe(x509.load_der_x509_certificate(der))
                except ValueError:
                    subject = ""
            return (
                f"certificate {cert_id}{subject} is not registered "
                "(register it with `thingcore certs register`)"
            )
        label = f"certificate {cert_id} ({cert.subject})"
        if cert.status != "ACTIVE":
            return f"{label} is {cert.status}"
        now = time.time()
        if now < cert.not_before:
            return f"{label} is not valid until {_utc(cert.not_before)}"
        if now > cert.not_after:
            return f"{label} expired at {_utc(cert.not_after)}"
        if cert.ca_id is not None:
            ca = self.index.cas.get(cert.ca_id)
            if ca is None:
                return f"{label} was issued by CA {cert.ca_id}, which is no longer registered"
            if ca.status != "ACTIVE":
                return f"{label} was issued by CA {ca.id} ({ca.subject}), which is {ca.status}"
            if now > ca.not_after:
                return f"{label} was issued by CA {ca.id}, which expired at {_utc(ca.not_after)}"
        return None

    def _refuse(self, key: str, message: str) -> None:
        # One line per certificate per minute: a fleet retrying with a bad certificate must not
        # flood the log, but every distinct refusal is seen.
        key = f"{key} {message}"
        now = time.monotonic()
        if now - self._refusals.get(key, -1e9) < 60.0:
            return
        if len(self._refusals) > 10_000:
            self._refusals.clear()
        self._refusals[key] = now
        log.warning("%s", message)

    def _certificate_fields(self, cert_id: str) -> CertificateFields | None:
        fields = self._fields.get(cert_id)
        if fields is None:
            cert = self.index.certs.get(cert_id)
            if cert is None:
                return None
            from registry.certificates import certificate_der

            fields = CertificateFields.from_der(certificate_der(load_certificate(cert.pem)))
            self._fields[cert_id] = fields
        return fields

    def request_context(
        self,
        client_id: str,
        cert_id: str | None,
        source_ip: str | None = None,
        *,
        certificate: bool = True,
    ) -> RequestContext:
        """What policy variables see for this client id and certificate (reference 4.2).

        ``certificate=False`` leaves the certificate's fields out (``iot:Certificate.*``
        then resolve to nothing): they cost about a kilobyte per certificate, so sessions
        whose policies never read them go without.
        """
        index = self.index
        thing = None
        if cert_id is not None and client_id in index.cert_things.get(cert_id, ()):
            thing = index.things.get(client_id)
        return RequestContext(
            client_id=client_id,
            region=self.settings.region,
            account=self.settings.account_id,
            thing_name=thing.name if thing else None,
            thing_type=thing.thing_type if thing else None,
            thing_attributes=thing.attributes if thing else _NO_ATTRIBUTES,
            is_attached=thing is not None,
            certificate=self._certificate_fields(cert_id) if cert_id and certificate else None,
            source_ip=source_ip,
            principal=cert_id,
        )

    def policies_for(self, context: RequestContext) -> tuple[PolicyDocument, ...]:
        if context.principal is None:
            return self._anonymous_policies()
        return self.index.policies_for(context.principal, context.thing_name)

    def _anonymous_policies(self) -> tuple[PolicyDocument, ...]:
        name = self.settings.anonymous_policy
        if not name:
            return ()
        stored = self.index.policies.get(name)
        if stored is not None:
            return (stored,)
        from registry.config import DEFAULT_ANONYMOUS_POLICY

        # Until the default policy is in the database (thingcore serve creates it), the
        # built-in document stands in; a named policy that does not exist allows nothing.
        return (self._anonymous_default,) if name == DEFAULT_ANONYMOUS_POLICY else ()

    def _session_auth(
        self, client_id: str, cert_id: str | None, source_ip: str | None
    ) -> SessionAuth:
        context = self.request_context(client_id, cert_id, source_ip, certificate=False)
        policies = self.policies_for(context)
        if cert_id is not None and _reads_certificate(policies):
            context = self.request_context(client_id, cert_id, source_ip)
        return SessionAuth(context, policies, self.generation)

    def _state(self, identity: Identity) -> SessionAuth:
        state = identity.context
        if not isinstance(state, SessionAuth):
            # A session restored from a snapshot: rebuilt on each call until it reconnects.
            return self._session_auth(identity.client_id, identity.principal, None)
        if state.generation != self.generation:
            fresh = self._session_auth(
                state.context.client_id, state.context.principal, state.context.source_ip
            )
            state.context = fresh.context
            state.policies = fresh.policies
            state.generation = self.generation
            state.publish = state.retain = _NO_DECISIONS
            state.subscribe = state.receive = _NO_DECISIONS
        return state

    def _decide(self, state: SessionAuth, action: str, resource: str) -> Decision:
        return evaluate(state.policies, action, resource, state.context)

    # -- authorization (hot path) ----------------------------------------------------------

    def _decide_and_keep(
        self, state: SessionAuth, kind: str, key: str, action: str, arn: str
    ) -> bool:
        """Evaluate ``action`` on ``arn`` and remember it in the session's ``kind`` cache."""
        cache: dict[str, bool] = getattr(state, kind)
        if cache is _NO_DECISIONS or len(cache) >= self.settings.policy_cache_size:
            cache = {}
            setattr(state, kind, cache)
        allowed = cache[key] = self._decide(state, action, arn).allowed
        return allowed

    def may_publish(self, identity: Identity, topic: str, retain: bool) -> bool:
        state = self._state(identity)
        allowed = state.publish.get(topic)
        if allowed is None:
            arn = self.arns.arn("topic", topic)
            allowed = self._decide_and_keep(state, "publish", topic, "iot:Publish", arn)
        if allowed and retain:
            # iot:RetainPublish is needed in addition to iot:Publish (reference 4.3).
            kept = state.retain.get(topic)
            if kept is None:
                arn = self.arns.arn("topic", topic)
                kept = self._decide_and_keep(state, "retain", topic, "iot:RetainPublish", arn)
            return kept
        return allowed

    def may_subscribe(self, identity: Identity, topic_filter: str) -> bool:
        state = self._state(identity)
        allowed = state.subscribe.get(topic_filter)
        if allowed is None:
            arn = self.arns.arn("topicfilter", topic_filter)
            allowed = self._decide_and_keep(state, "subscribe", topic_filter, "iot:Subscribe", arn)
        return allowed

    def may_receive(self, identity: Identity, topic: str) -> bool:
        state = identity.context
        if (
            isinstance(state, SessionAuth)
            and state.generation == self.generation
            and (allowed := state.receive.get(topic)) is not None
        ):
            return allowed
        state = self._state(identity)
        arn = self.arns.arn("topic", topic)
        return self._decide_and_keep(state, "receive", topic, "iot:Receive", arn)

    def recheck(self, identity: Identity) -> str | None:
        """Why a connected session must go: certificate no longer usable, or no iot:Connect."""
        if identity.principal is not None:
            problem = self.certificate_problem(identity.principal)
            if problem is not None:
                return problem
        elif not self.settings.anonymous_policy:
            return "anonymous clients are no longer allowed"
        state = self._state(identity)
        decision = self._decide(state, "iot:Connect", self.arns.arn("client", identity.client_id))
        if not decision.allowed:
            return f"no longer allowed to connect: {decision.reason}"
        return None

    # -- explanations (CLI) ----------------------------------------------------------------

    def explain(
        self, client_id: str, cert_id: str | None, action: str, resource: str
    ) -> tuple[Decision, RequestContext]:
        """The decision for one request and the context it was made in (`policies test`)."""
        context = self.request_context(client_id, cert_id)
        return evaluate(self.policies_for(context), action, resource, context), context


_CERTIFICATE_VARIABLE = "iot:certificate."


def _reads_certificate(policies: tuple[PolicyDocument, ...]) -> bool:
    """Whether any statement mentions an ``iot:Certificate.*`` variable or condition key."""
    for policy in policies:
        for statement in policy.statements:
            texts = [*statement.resources, *statement.not_resources]
            for condition in statement.conditions:
                texts.append(condition.key)
                texts.extend(condition.values)
            if any(_CERTIFICATE_VARIABLE in text.lower() for text in texts):
                return True
    return False


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
