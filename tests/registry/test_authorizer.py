"""registry/authorizer.py over an IdentityIndex loaded from the registry (no sockets): who may
connect, publish, subscribe and receive (reference section 4), decision caching and swapping
in a newer index."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from broker.auth import ConnectionInfo, Identity
from broker.codec import Connect, ConnectReturnCode
from registry.authorizer import ANONYMOUS_POLICY_DOCUMENT, RegistryAuthorizer
from registry.config import DEFAULT_ANONYMOUS_POLICY, RegistrySettings
from registry.index import IdentityIndex, load_index
from registry.service import Registry
from tests.registry.conftest import (
    ALLOW_ALL,
    SQLITE_ONLY,
    IssueCert,
    RegisterIssued,
    policy_document,
)

THING = "${iot:Connection.Thing.ThingName}"
CONNECT_ANY = policy_document({"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"})
THING_POLICY = policy_document(
    {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"arn:aws:iot:*:*:client/{THING}"},
    {
        "Effect": "Allow",
        "Action": ["iot:Publish", "iot:Receive"],
        "Resource": f"arn:aws:iot:*:*:topic/things/{THING}/*",
    },
    {
        "Effect": "Allow",
        "Action": "iot:Subscribe",
        "Resource": f"arn:aws:iot:*:*:topicfilter/things/{THING}/*",
    },
)
NOT_AUTHORIZED = ConnectReturnCode.NOT_AUTHORIZED

# The authorizer reads only the IdentityIndex; test_index checks that it loads alike from both
# databases, and test_change_feed runs IdentityService.poll() on both.
pytestmark = SQLITE_ONLY


def _der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def _info(der: bytes | None, *, tls: bool = True) -> ConnectionInfo:
    return ConnectionInfo(
        listener="mqtts" if tls else "mqtt",
        peer_address="127.0.0.1",
        peer_port=1,
        tls=tls,
        peer_certificate=der,
    )


def _index(registry: Registry) -> IdentityIndex:
    with registry.db.session() as session:
        return load_index(session)


@dataclass
class Device:
    cert_id: str
    der: bytes


@pytest.fixture
def authorizer(registry: Registry) -> Callable[..., RegistryAuthorizer]:
    """An authorizer over the registry as it is now (call again after changes)."""

    def make(settings: RegistrySettings | None = None) -> RegistryAuthorizer:
        return RegistryAuthorizer(settings or registry.settings, _index(registry))

    return make


@pytest.fixture
def device(registry: Registry, issue_cert: IssueCert) -> Callable[..., Device]:
    """An ACTIVE development-CA certificate with the given policies, attached to ``thing``."""

    def make(*documents: str, thing: str | None = None, active: bool = True) -> Device:
        created = issue_cert(active=active)
        cert_id = created["certificateId"]
        for document in documents:
            name = f"p-{len(registry.policies.list_policies())}"
            registry.policies.create(name, document)
            registry.policies.attach(name, "cert", cert_id)
        if thing is not None:
            registry.things.create(thing)
            registry.certs.attach_thing(thing, cert_id)
        return Device(cert_id, _der(created["certificatePem"]))

    return make


def _connect(auth: RegistryAuthorizer, der: bytes | None, client_id: str) -> Any:
    return auth.authenticate(_info(der), Connect(client_id=client_id))


def _identity(auth: RegistryAuthorizer, der: bytes | None, client_id: str) -> Identity:
    result = _connect(auth, der, client_id)
    assert isinstance(result, Identity), f"refused: {result!r}"
    return result


# -- authentication ----------------------------------------------------------------------------


def test_an_active_certificate_with_connect_is_accepted(
    device: Callable[..., Device], authorizer: Callable[..., RegistryAuthorizer]
) -> None:
    dev = device(CONNECT_ANY)
    identity = _identity(authorizer(), dev.der, "any-client")
    assert (identity.client_id, identity.principal, identity.thing) == (
        "any-client",
        dev.cert_id,
        None,
    )


NOW = datetime.now(UTC)
Refusal = Callable[[Registry, RegisterIssued], bytes | None]


def _registered(**kwargs: Any) -> Callable[[Registry, RegisterIssued], bytes]:
    """A certificate registered with ``kwargs`` (status, validity) that may connect."""

    def make(registry: Registry, register: RegisterIssued) -> bytes:
        issued = register(**kwargs)
        registry.policies.ensure("connect", CONNECT_ANY)
        registry.policies.attach("connect", "cert", issued.certificate_id)
        return _der(issued.certificate_pem)

    return make


def _unregistered(registry: Registry, register: RegisterIssued) -> bytes:
    _registered()(registry, register)  # the CA is registered; this certificate is not
    ca = registry.certs.development_ca()
    return _der(ca.issue("stranger", key_type="ec").certificate_pem)


def _ca_inactive(registry: Registry, register: RegisterIssued) -> bytes:
    der = _registered()(registry, register)
    registry.certs.update_ca(registry.certs.list_cas()[0]["certificateId"], "INACTIVE")
    return der


def _no_connect_permission(registry: Registry, register: RegisterIssued) -> bytes:
    issued = register()
    registry.policies.create("publish-only", ALLOW_ALL.replace("iot:*", "iot:Publish"))
    registry.policies.attach("publish-only", "cert", issued.certificate_id)
    return _der(issued.certificate_pem)


REFUSALS: dict[str, tuple[Refusal, str]] = {
    "unregistered": (_unregistered, "is not registered"),
    "inactive": (_registered(status="INACTIVE"), "is INACTIVE"),
    "revoked": (_registered(status="REVOKED"), "is REVOKED"),
    "expired": (
        _registered(not_before=NOW - timedelta(days=2), not_after=NOW - timedelta(days=1)),
        "expired at",
    ),
    "not-yet-valid": (
        _registered(not_before=NOW + timedelta(days=1), not_after=NOW + timedelta(days=2)),
        "not valid until",
    ),
    "ca-inactive": (_ca_inactive, "which is INACTIVE"),
    "no-connect-permission": (_no_connect_permission, "may not connect"),
    "no-policy": (lambda r, register: _der(register().certificate_pem), "may not connect"),
    "no-certificate": (lambda r, register: None, "presented no certificate"),
}


@pytest.mark.parametrize(("make", "reason"), REFUSALS.values(), ids=REFUSALS.keys())
def test_refused_connections(
    registry: Registry,
    register_issued: RegisterIssued,
    authorizer: Callable[..., RegistryAuthorizer],
    caplog: pytest.LogCaptureFixture,
    make: Refusal,
    reason: str,
) -> None:
    der = make(registry, register_issued)
    with caplog.at_level(logging.WARNING, logger="thingcore.auth"):
        assert _connect(authorizer(), der, "dev-1") == NOT_AUTHORIZED
    assert reason in caplog.text


def test_the_thing_resolves_only_for_an_attached_certificate_and_its_client_id(
    registry: Registry,
    device: Callable[..., Device],
    authorizer: Callable[..., RegistryAuthorizer],
) -> None:
    attached = device(THING_POLICY, thing="dev-1")
    unattached = device(THING_POLICY)
    registry.things.create("dev-2")
    auth = authorizer()
    identity = _identity(auth, attached.der, "dev-1")
    assert identity.thing == "dev-1"
    assert auth.may_publish(identity, "things/dev-1/telemetry", retain=False)
    assert not auth.may_publish(identity, "things/dev-2/telemetry", retain=False)
    assert auth.may_subscribe(identity, "things/dev-1/commands")
    assert auth.may_receive(identity, "things/dev-1/commands")
    # The certificate is attached to dev-1, not to the thing this client id names.
    assert _connect(auth, attached.der, "dev-2") == NOT_AUTHORIZED
    # A thing of that name exists, but this certificate is not attached to it.
    assert _connect(auth, unattached.der, "dev-1") == NOT_AUTHORIZED


def test_the_context_carries_the_things_type_and_attributes(
    registry: Registry,
    device: Callable[..., Device],
    authorizer: Callable[..., RegistryAuthorizer],
) -> None:
    registry.things.create_type("sensor")
    registry.things.create("dev-1", thing_type="sensor", attributes={"room": "k1"})
    dev = device(
        policy_document(
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "iot:Connection.Thing.ThingTypeName": "sensor",
                        "iot:Connection.Thing.Attributes[room]": "k1",
                    }
                },
            }
        )
    )
    registry.certs.attach_thing("dev-1", dev.cert_id)
    decision, context = authorizer().explain(
        "dev-1", dev.cert_id, "iot:Connect", "arn:aws:iot:us-east-1:000000000000:client/dev-1"
    )
    assert decision.allowed, decision.reason
    assert (context.thing_name, context.thing_type, context.is_attached) == (
        "dev-1",
        "sensor",
        True,
    )
    assert dict(context.thing_attributes) == {"room": "k1"}
    assert _connect(authorizer(), dev.der, "other-client") == NOT_AUTHORIZED


def test_group_policies_apply_through_the_thing(
    registry: Registry,
    device: Callable[..., Device],
    authorizer: Callable[..., RegistryAuthorizer],
) -> None:
    dev = device(CONNECT_ANY, thing="dev-1")
    registry.things.create_group("fleet")
    registry.things.create_group("kitchen", parent="fleet")
    registry.things.add_thing_to_group("kitchen", "dev-1")
    registry.policies.create(
        "fleet-publish",
        policy_document(
            {
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": "arn:aws:iot:*:*:topic/fleet/*",
            }
        ),
    )
    registry.policies.attach("fleet-publish", "thinggroup", "fleet")
    auth = authorizer()
    as_thing = _identity(auth, dev.der, "dev-1")
    assert auth.may_publish(as_thing, "fleet/status", retain=False)
    # Same certificate, but the client id does not name its thing: no group policies.
    as_other = _identity(auth, dev.der, "not-the-thing")
    assert not auth.may_publish(as_other, "fleet/status", retain=False)


# -- anonymous clients -------------------------------------------------------------------------


@pytest.mark.parametrize("stored", [False, True], ids=["built-in", "stored"])
def test_anonymous_clients_get_the_default_policy(
    registry: Registry, authorizer: Callable[..., RegistryAuthorizer], stored: bool
) -> None:
    if stored:
        registry.policies.ensure(DEFAULT_ANONYMOUS_POLICY, ANONYMOUS_POLICY_DOCUMENT)
    auth = authorizer()
    identity = auth.authenticate(_info(None, tls=False), Connect(client_id="tool"))
    assert isinstance(identity, Identity)
    assert identity.principal is None
    assert auth.may_publish(identity, "a/b", retain=True)
    assert auth.may_subscribe(identity, "a/#")
    assert auth.may_receive(identity, "a/b")
    assert not auth.may_publish(identity, "$aws/things/x/shadow/update", retain=False)
    assert not auth.may_subscribe(identity, "$aws/things/x/shadow/#")
    assert not auth.may_receive(identity, "$aws/things/x/shadow/update/accepted")
    assert auth.recheck(identity) is None


def test_a_stored_anonymous_policy_replaces_the_built_in_one(
    registry: Registry, authorizer: Callable[..., RegistryAuthorizer]
) -> None:
    registry.policies.create(DEFAULT_ANONYMOUS_POLICY, CONNECT_ANY)
    auth = authorizer()
    identity = auth.authenticate(_info(None, tls=False), Connect(client_id="tool"))
    assert isinstance(identity, Identity)
    assert not auth.may_publish(identity, "a/b", retain=False)


@pytest.mark.parametrize("policy", [None, "missing-policy"])
def test_anonymous_clients_can_be_refused(
    registry: Registry, authorizer: Callable[..., RegistryAuthorizer], policy: str | None
) -> None:
    auth = authorizer(RegistrySettings(anonymous_policy=policy))
    result = auth.authenticate(_info(None, tls=False), Connect(client_id="tool"))
    assert result == NOT_AUTHORIZED


# -- authorization -----------------------------------------------------------------------------


TOPIC_POLICY = policy_document(
    {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"},
    {
        "Effect": "Allow",
        "Action": ["iot:Publish", "iot:Receive"],
        "Resource": "arn:aws:iot:*:*:topic/sensors/*",
    },
    {
        "Effect": "Allow",
        "Action": "iot:Subscribe",
        "Resource": "arn:aws:iot:*:*:topicfilter/sensors/+",
    },
    {"Effect": "Deny", "Action": "iot:Publish", "Resource": "arn:aws:iot:*:*:topic/sensors/admin"},
    {
        "Effect": "Allow",
        "Action": "iot:RetainPublish",
        "Resource": "arn:aws:iot:*:*:topic/sensors/kept",
    },
)

CHECKS: list[tuple[str, str, bool]] = [
    ("publish", "sensors/temp", True),
    ("publish", "sensors/a/b", True),  # '*' spans '/'
    ("publish", "other/temp", False),
    ("publish", "sensors/admin", False),  # an explicit Deny wins
    ("publish-retained", "sensors/kept", True),
    ("publish-retained", "sensors/temp", False),  # iot:RetainPublish is needed as well
    ("subscribe", "sensors/+", True),  # '+' in a topicfilter resource is literal
    ("subscribe", "sensors/temp", False),
    ("subscribe", "sensors/#", False),
    ("receive", "sensors/temp", True),
    ("receive", "other/temp", False),
]


@pytest.mark.parametrize(("action", "topic", "allowed"), CHECKS)
def test_publish_subscribe_receive(
    device: Callable[..., Device],
    authorizer: Callable[..., RegistryAuthorizer],
    action: str,
    topic: str,
    allowed: bool,
) -> None:
    dev = device(TOPIC_POLICY)
    auth = authorizer()
    identity = _identity(auth, dev.der, "client")
    ask: dict[str, Callable[[], bool]] = {
        "publish": lambda: auth.may_publish(identity, topic, retain=False),
        "publish-retained": lambda: auth.may_publish(identity, topic, retain=True),
        "subscribe": lambda: auth.may_subscribe(identity, topic),
        "receive": lambda: auth.may_receive(identity, topic),
    }
    assert ask[action]() is allowed
    assert ask[action]() is allowed  # the cached answer agrees


def test_decisions_are_cached_until_a_new_index_is_swapped_in(
    registry: Registry,
    device: Callable[..., Device],
    authorizer: Callable[..., RegistryAuthorizer],
) -> None:
    dev = device(ALLOW_ALL)
    auth = authorizer()
    identity = _identity(auth, dev.der, "client")
    assert auth.may_publish(identity, "a/b", retain=False)
    assert auth.may_receive(identity, "a/b")
    registry.policies.detach("p-0", "cert", dev.cert_id)
    assert auth.may_publish(identity, "a/b", retain=False)  # the old snapshot still holds
    auth.swap(_index(registry))
    assert not auth.may_publish(identity, "a/b", retain=False)
    assert not auth.may_subscribe(identity, "a/b")
    assert not auth.may_receive(identity, "a/b")
    reason = auth.recheck(identity)
    assert reason is not None
    assert "no longer allowed to connect" in reason


def test_a_swap_also_grants(
    registry: Registry,
    device: Callable[..., Device],
    authorizer: Callable[..., RegistryAuthorizer],
) -> None:
    dev = device(CONNECT_ANY)
    auth = authorizer()
    identity = _identity(auth, dev.der, "client")
    assert not auth.may_subscribe(identity, "a/b")
    registry.policies.create("subscribe", ALLOW_ALL.replace("iot:*", "iot:Subscribe"))
    registry.policies.attach("subscribe", "cert", dev.cert_id)
    auth.swap(_index(registry))
    assert auth.may_subscribe(identity, "a/b")
    assert auth.recheck(identity) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r, cert_id: r.certs.update_status(cert_id, "REVOKED"), "is REVOKED"),
        (lambda r, cert_id: r.certs.update_status(cert_id, "INACTIVE"), "is INACTIVE"),
        (
            lambda r, cert_id: r.certs.update_ca(
                r.certs.list_cas()[0]["certificateId"], "INACTIVE"
            ),
            "which is INACTIVE",
        ),
    ],
    ids=["revoked", "inactive", "ca-inactive"],
)
def test_recheck_says_why_a_session_must_go(
    registry: Registry,
    device: Callable[..., Device],
    authorizer: Callable[..., RegistryAuthorizer],
    change: Callable[[Registry, str], object],
    reason: str,
) -> None:
    dev = device(ALLOW_ALL)
    auth = authorizer()
    identity = _identity(auth, dev.der, "client")
    assert auth.recheck(identity) is None
    change(registry, dev.cert_id)
    auth.swap(_index(registry))
    problem = auth.recheck(identity)
    assert problem is not None
    assert reason in problem


def test_a_restored_session_is_authorized_without_its_cached_state(
    device: Callable[..., Device], authorizer: Callable[..., RegistryAuthorizer]
) -> None:
    dev = device(TOPIC_POLICY)
    auth = authorizer()
    restored = Identity("client", dev.cert_id, None, None)
    assert auth.may_publish(restored, "sensors/temp", retain=False)
    assert not auth.may_publish(restored, "other/temp", retain=False)
    assert auth.recheck(restored) is None


# -- certificate variables -------------------------------------------------------------------


def test_certificate_subject_variables_resolve_for_policies_that_use_them(
    registry: Registry,
    device: Callable[..., Device],
    authorizer: Callable[..., RegistryAuthorizer],
) -> None:
    by_common_name = policy_document(
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": "arn:aws:iot:*:*:client/${iot:Certificate.Subject.CommonName}",
        }
    )
    dev = device(by_common_name)
    common_name = (
        x509.load_der_x509_certificate(dev.der)
        .subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0]
        .value
    )
    auth = authorizer()
    identity = _identity(auth, dev.der, str(common_name))
    assert identity.context.context.certificate is not None
    assert _connect(auth, dev.der, f"{common_name}-other") == NOT_AUTHORIZED


def test_sessions_whose_policies_ignore_the_certificate_do_not_keep_its_fields(
    device: Callable[..., Device], authorizer: Callable[..., RegistryAuthorizer]
) -> None:
    dev = device(CONNECT_ANY)
    identity = _identity(authorizer(), dev.der, "any-client")
    # About a kilobyte per certificate saved at thousands of connections (bench mtls-idle).
    assert identity.context.context.certificate is None
