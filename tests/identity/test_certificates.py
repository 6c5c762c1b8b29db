"""Which client certificates get in, over a real TLS handshake and a real MQTT CONNECT.

The TLS handshake only asks "does this chain to something registered" (a registered CA, or a
registered self-signed certificate); validity dates, status and registration of the
certificate itself are checked at CONNECT, so the device gets a CONNACK refusal (5 in 3.1.1,
0x87 in MQTT 5) and the server logs which certificate was refused and why (reference 4.1).
"""

from __future__ import annotations

import datetime
import ssl
import stat
import time

import pytest

from broker.codec import ConnAck
from registry.ca import DevelopmentCA
from tests.broker.rawclient import ConnectionClosed, wait_for
from tests.certs import CertificateAuthority
from tests.identity.apphost import (
    Clients,
    Device,
    RunningApp,
    TlsRaw,
    TlsRaw5,
    device_files,
    own_topics_policy,
    provision,
    self_signed,
    wait_for_log,
)

REFUSED = {3: 5, 5: 0x87}
"""CONNACK return code 5 Not authorized (3.1.1) / reason 0x87 Not authorized (5)."""
PROTOCOLS = [pytest.param(3, id="v311"), pytest.param(5, id="v5")]


def connect(clients: Clients, app: RunningApp, device: Device, protocol: int) -> ConnAck:
    """Handshake with the device's certificate and send CONNECT with the thing's name."""
    client = clients.raw(protocol, app.tls_port, device.context())
    return client.connect(device.name, timeout=3.0)


def refused_at_connect(clients: Clients, app: RunningApp, device: Device, protocol: int) -> float:
    """The CONNACK refuses, the broker then closes; returns how long the refusal took."""
    start = time.monotonic()
    client = clients.raw(protocol, app.tls_port, device.context())
    connack = client.connect(device.name, timeout=3.0)
    assert connack.return_code == REFUSED[protocol], connack
    client.expect_closed(timeout=3.0)
    return time.monotonic() - start


def refused_in_handshake(app: RunningApp, context: ssl.SSLContext, client_id: str) -> None:
    """The TLS handshake fails: no CONNACK ever arrives and the broker counts the failure."""
    before = app.stats()
    start = time.monotonic()
    with pytest.raises((ssl.SSLError, ConnectionError, ConnectionClosed)):
        # TLS 1.2 fails in wrap_socket; under TLS 1.3 the client finishes its side first and
        # learns of the refusal when it reads (an alert or a closed connection).
        client = TlsRaw(app.tls_port, context, timeout=3.0)
        try:
            client.connect(client_id, timeout=3.0)
        finally:
            client.close()
    assert time.monotonic() - start < 3.0, "the broker took too long to refuse the handshake"
    wait_for(
        lambda: app.stats()["tls_handshake_failures"] > before["tls_handshake_failures"],
        what="the broker counting the failed handshake",
    )
    assert app.stats()["connections_accepted"] == before["connections_accepted"]


def dev_ca(app: RunningApp) -> DevelopmentCA:
    return DevelopmentCA.load(app.registry.ca_dir)


def register_issued(
    app: RunningApp, name: str, *, not_before: datetime.datetime, not_after: datetime.datetime
) -> Device:
    """A certificate from the development CA with the given dates, registered ACTIVE."""
    issued = dev_ca(app).issue(name[:64], key_type="ec", not_before=not_before, not_after=not_after)
    assert issued.private_key_pem is not None
    app.registry.things.create(name)
    cert_id = app.registry.certs.register(issued.certificate_pem, status="ACTIVE")["certificateId"]
    app.registry.certs.attach_thing(name, cert_id)
    policy = f"{name}-policy"
    app.registry.policies.create(policy, own_topics_policy())
    app.registry.policies.attach(policy, "cert", cert_id)
    cert, key = device_files(app, name, issued.certificate_pem, issued.private_key_pem)
    app.synced()
    return Device(name, cert_id, cert, key, app.root_ca, policy)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_registered_active_certificate_is_accepted(
    app: RunningApp, clients: Clients, name: str, protocol: int, key_type: str
) -> None:
    device = provision(app, name, key_type=key_type)
    connack = connect(clients, app, device, protocol)
    assert connack.return_code == 0, connack


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_expired_certificate_is_refused_at_connect(
    app: RunningApp, clients: Clients, name: str, protocol: int, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    device = register_issued(app, name, not_before=now - datetime.timedelta(days=10), not_after=now)
    assert refused_at_connect(clients, app, device, protocol) < 2.0
    wait_for_log(caplog, device.cert_id, "expired at", logger="thingcore.auth")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_not_yet_valid_certificate_is_refused_at_connect(
    app: RunningApp, clients: Clients, name: str, protocol: int, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    device = register_issued(
        app,
        name,
        not_before=now + datetime.timedelta(days=1),
        not_after=now + datetime.timedelta(days=10),
    )
    assert refused_at_connect(clients, app, device, protocol) < 2.0
    wait_for_log(caplog, device.cert_id, "not valid until", logger="thingcore.auth")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unregistered_certificate_from_the_development_ca_is_refused_at_connect(
    app: RunningApp, clients: Clients, name: str, protocol: int, caplog: pytest.LogCaptureFixture
) -> None:
    issued = dev_ca(app).issue(name[:64], key_type="ec")
    assert issued.private_key_pem is not None
    cert, key = device_files(app, name, issued.certificate_pem, issued.private_key_pem)
    device = Device(name, issued.certificate_id, cert, key, app.root_ca)
    assert refused_at_connect(clients, app, device, protocol) < 2.0
    wait_for_log(caplog, device.cert_id, "is not registered", logger="thingcore.auth")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("status", ["REVOKED", "INACTIVE"])
def test_certificate_not_active_is_refused_at_connect(
    app: RunningApp,
    clients: Clients,
    name: str,
    protocol: int,
    status: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    device = provision(app, name, status=status)
    assert refused_at_connect(clients, app, device, protocol) < 2.0
    wait_for_log(caplog, device.cert_id, f"is {status}", logger="thingcore.auth")


def test_registered_self_signed_certificate_is_accepted(
    app: RunningApp, clients: Clients, name: str
) -> None:
    cert_pem, key_pem = self_signed(name)
    cert_id = app.registry.certs.register_without_ca(cert_pem, status="ACTIVE")["certificateId"]
    app.registry.things.create(name)
    app.registry.certs.attach_thing(name, cert_id)
    app.registry.policies.create(f"{name}-policy", own_topics_policy())
    app.registry.policies.attach(f"{name}-policy", "cert", cert_id)
    cert, key = device_files(app, name, cert_pem, key_pem)
    # The server's TLS trust is rebuilt by the change feed; the next handshake uses it.
    app.synced()
    device = Device(name, cert_id, cert, key, app.root_ca)
    for protocol in (3, 5):
        assert connect(clients, app, device, protocol).return_code == 0


def test_unregistered_self_signed_certificate_fails_the_handshake(
    app: RunningApp, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    cert_pem, key_pem = self_signed(name)
    cert, key = device_files(app, name, cert_pem, key_pem)
    device = Device(name, "-", cert, key, app.root_ca)
    refused_in_handshake(app, device.context(), name)
    wait_for_log(caplog, "TLS handshake", "failed", logger="broker")


def test_certificate_from_an_unregistered_ca_fails_the_handshake(
    app: RunningApp, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    foreign = CertificateAuthority(f"{name} CA").issue(name, server=False)
    cert, key = device_files(app, name, foreign.cert_pem().decode(), foreign.key_pem().decode())
    device = Device(name, "-", cert, key, app.root_ca)
    refused_in_handshake(app, device.context(), name)
    wait_for_log(caplog, "TLS handshake", "not signed by a registered CA", logger="broker")


def test_client_without_certificate_fails_the_handshake(
    app: RunningApp, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    context = ssl.create_default_context(cafile=str(app.root_ca))
    refused_in_handshake(app, context, name)
    wait_for_log(caplog, "TLS handshake", "no certificate", logger="broker")


def test_certificate_from_a_registered_ca_follows_the_ca_status(
    app: RunningApp, clients: Clients, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A CA registered while the server runs is trusted by the next handshake; setting it
    INACTIVE disconnects its devices and refuses them at CONNECT, naming the CA."""
    authority = CertificateAuthority(f"{name} CA")
    ca_id = app.registry.certs.register_ca(authority.ca.cert_pem().decode())["certificateId"]
    issued = authority.issue(name, server=False)
    cert_id = app.registry.certs.register(issued.cert_pem().decode(), status="ACTIVE")[
        "certificateId"
    ]
    app.registry.things.create(name)
    app.registry.certs.attach_thing(name, cert_id)
    app.registry.policies.create(f"{name}-policy", own_topics_policy())
    app.registry.policies.attach(f"{name}-policy", "cert", cert_id)
    cert, key = device_files(app, name, issued.cert_pem().decode(), issued.key_pem().decode())
    app.synced()
    device = Device(name, cert_id, cert, key, app.root_ca)
    connected = clients.raw(5, app.tls_port, device.context())
    assert connected.connect(name).return_code == 0

    app.registry.certs.update_ca(ca_id, "INACTIVE")
    assert isinstance(connected, TlsRaw5)
    connected.expect_disconnect(0x98, timeout=2.0)
    assert refused_at_connect(clients, app, device, 5) < 2.0
    wait_for_log(caplog, cert_id, ca_id, "INACTIVE", logger="thingcore.auth")


def test_broker_still_serves_after_every_refusal(
    app: RunningApp, clients: Clients, name: str
) -> None:
    """After the refusals above (same app): nothing was left half-open or stuck."""
    device = provision(app, name)
    client = TlsRaw5(app.tls_port, device.context())
    try:
        assert client.connect(device.name).return_code == 0
        assert client.subscribe5((f"things/{name}/t", 1)) == [1]
        client.publish5(f"things/{name}/t", b"ok", 0)
        assert client.recv_publish().payload == b"ok"
    finally:
        client.close()
    wait_for(
        lambda: app.call(lambda: len(app.app.broker.connections)) == 0,
        what="every connection closed",
    )


def test_device_files_are_owner_only(app: RunningApp, name: str) -> None:
    device = provision(app, name)
    for path in (device.cert, device.key, device.root_ca):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
