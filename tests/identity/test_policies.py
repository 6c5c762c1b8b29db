"""Policy decisions as devices see them, through real TLS connections (reference 4.3, 4.4).

The device policy is AWS's usual shape, with ``${iot:Connection.Thing.ThingName}`` in the
``client/``, ``topic/`` and ``topicfilter/`` resources: a device may connect as its thing and
use ``things/<its thing>/...``. What a refusal looks like depends on the protocol: 3.1.1 has no
way to refuse one PUBLISH, so the connection is closed; a 3.1.1 SUBSCRIBE gets 0x80 for the
refused filter only; MQTT 5 answers 0x87 Not authorized and keeps the connection.
"""

from __future__ import annotations

import json

import pytest

from broker.codec import Publish
from tests.broker.raw5 import Pool5
from tests.broker.rawclient import RawClient
from tests.identity.apphost import (
    ARN,
    THING,
    Clients,
    RunningApp,
    TlsRaw,
    TlsRaw5,
    own_topics_policy,
    provision,
    wait_for_log,
)

PROTOCOLS = [pytest.param(3, id="v311"), pytest.param(5, id="v5")]
SUBACK_FAILURE = 0x80
NOT_AUTHORIZED = 0x87


def document(*statements: dict[str, object]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def test_device_publishes_and_subscribes_its_own_topics_with_paho(
    app: RunningApp, pool: Pool5, name: str
) -> None:
    device = provision(app, name)
    client = pool.paho(app.tls_port, device.name, tls=device.paho_tls(), host="localhost")
    assert client.connect() == (False, 0)
    assert client.subscribe(f"things/{name}/#", 1) == [1]
    client.publish(f"things/{name}/telemetry", b"21.5", qos=1)
    [got] = client.expect(1)
    assert (got.topic, got.payload, got.qos) == (f"things/{name}/telemetry", b"21.5", 1)


@pytest.mark.parametrize("qos", [0, 1])
def test_v311_publish_to_a_forbidden_topic_closes_the_connection(
    app: RunningApp, clients: Clients, name: str, qos: int, caplog: pytest.LogCaptureFixture
) -> None:
    device = provision(app, name)
    client = clients.raw(3, app.tls_port, device.context())
    assert client.connect(device.name).return_code == 0
    client.publish(f"things/{name}/allowed", b"fine", qos)
    # Sent without waiting for an acknowledgement: the answer is the closed connection.
    client.send(
        Publish(f"things/someone-else/{name}", b"no", qos, False, False, 7 if qos else None)
    )
    client.expect_closed(timeout=3.0)
    wait_for_log(caplog, device.name, "not authorized to publish", logger="broker")


def test_v311_subscribe_refuses_only_the_forbidden_filter(
    app: RunningApp, clients: Clients, name: str
) -> None:
    device = provision(app, name)
    client = clients.raw(3, app.tls_port, device.context())
    assert isinstance(client, TlsRaw)
    assert client.connect(device.name).return_code == 0
    codes = client.subscribe(
        (f"things/{name}/a", 1), (f"things/someone-else/{name}/#", 1), (f"things/{name}/b", 0)
    )
    assert codes == [1, SUBACK_FAILURE, 0]
    # The connection stays and the granted subscriptions work.
    client.ping()
    client.publish(f"things/{name}/b", b"still here", 0)
    assert client.recv_publish().payload == b"still here"


def test_v5_forbidden_publish_gets_puback_0x87_and_the_connection_stays(
    app: RunningApp, clients: Clients, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    device = provision(app, name)
    client = clients.raw(5, app.tls_port, device.context())
    assert isinstance(client, TlsRaw5)
    assert client.connect(device.name).return_code == 0
    assert client.publish5(f"things/someone-else/{name}", b"no", 1, packet_id=3) == NOT_AUTHORIZED
    client.ping()
    assert client.publish5(f"things/{name}/ok", b"yes", 1, packet_id=4) in (0x00, 0x10)


def test_v5_forbidden_subscribe_gets_suback_0x87(
    app: RunningApp, clients: Clients, name: str
) -> None:
    device = provision(app, name)
    client = clients.raw(5, app.tls_port, device.context())
    assert isinstance(client, TlsRaw5)
    assert client.connect(device.name).return_code == 0
    codes = client.subscribe5((f"things/{name}/#", 1), (f"things/someone-else/{name}", 1))
    assert codes == [1, NOT_AUTHORIZED]
    client.ping()


def test_receive_denied_means_not_delivered(app: RunningApp, clients: Clients, name: str) -> None:
    """iot:Receive is checked per delivery: the device may subscribe to all of its topics but
    only receive ``things/<thing>/in/...``."""
    device = provision(
        app,
        name,
        policy=document(
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/{THING}"},
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": f"{ARN}:topicfilter/things/{THING}/*",
            },
            {
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": f"{ARN}:topic/things/{THING}/in/*",
            },
        ),
    )
    sub = clients.raw(3, app.tls_port, device.context())
    assert sub.connect(device.name).return_code == 0
    assert sub.subscribe((f"things/{name}/#", 1)) == [1]
    # An anonymous local tool publishes both, the refused one first: messages from one
    # publisher reach one subscription in order, so the first delivery shows which got through.
    tool = clients.plain(app.port)
    assert tool.connect(f"{name}-tool").return_code == 0
    tool.publish(f"things/{name}/secret", b"not for you", 1, packet_id=1)
    tool.publish(f"things/{name}/in/cmd", b"for you", 1, packet_id=2)
    got = sub.recv_publish()
    assert (got.topic, got.payload) == (f"things/{name}/in/cmd", b"for you")
    sub.expect_nothing(within=0.2)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_client_id_not_allowed_by_iot_connect_is_refused(
    app: RunningApp,
    clients: Clients,
    name: str,
    protocol: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The client id is not the thing's name, so ``${iot:Connection.Thing.ThingName}`` does not
    resolve and ``client/...`` allows nothing (reference 4.2)."""
    device = provision(app, name)
    client = clients.raw(protocol, app.tls_port, device.context())
    other = f"{name}-impostor"
    assert client.connect(other).return_code == (NOT_AUTHORIZED if protocol == 5 else 5)
    client.expect_closed(timeout=3.0)
    wait_for_log(caplog, other, device.cert_id, "may not connect", logger="thingcore.auth")


def test_explicit_deny_in_another_policy_wins(app: RunningApp, clients: Clients, name: str) -> None:
    device = provision(app, name)  # allows everything under things/<thing>/
    deny = f"{name}-deny"
    app.registry.policies.create(
        deny,
        document(
            {
                "Effect": "Deny",
                "Action": "iot:Publish",
                "Resource": f"{ARN}:topic/things/{THING}/admin/*",
            },
            {
                "Effect": "Deny",
                "Action": "iot:Subscribe",
                "Resource": f"{ARN}:topicfilter/things/{THING}/admin/*",
            },
        ),
    )
    app.registry.policies.attach(deny, "cert", device.cert_id)
    app.synced()
    client = clients.raw(5, app.tls_port, device.context())
    assert isinstance(client, TlsRaw5)
    assert client.connect(device.name).return_code == 0
    assert client.publish5(f"things/{name}/admin/reboot", b"x", 1, packet_id=1) == NOT_AUTHORIZED
    assert client.publish5(f"things/{name}/status", b"x", 1, packet_id=2) in (0x00, 0x10)
    codes = client.subscribe5((f"things/{name}/admin/#", 1), (f"things/{name}/status", 1))
    assert codes == [NOT_AUTHORIZED, 1]


def test_anonymous_client_uses_normal_topics_but_not_reserved_ones(
    app: RunningApp, clients: Clients, name: str
) -> None:
    """The default anonymous policy (plain listener): anything but ``$aws/...``."""
    client: RawClient = clients.plain(app.port)
    assert client.connect(f"{name}-tool").return_code == 0
    codes = client.subscribe(
        (f"{name}/readings", 1),
        ("$aws/events/#", 1),
        (f"$aws/things/{name}/shadow/update/accepted", 0),
    )
    assert codes == [1, SUBACK_FAILURE, SUBACK_FAILURE]
    client.publish(f"{name}/readings", b"1", 0)
    assert client.recv_publish().payload == b"1"
    client.publish(f"$aws/things/{name}/shadow/update", b"{}", 0)
    client.expect_closed(timeout=3.0)

    v5 = clients.plain5(app.port)
    assert v5.connect(f"{name}-tool5").return_code == 0
    assert v5.publish5(f"$aws/things/{name}/shadow/update", b"{}", 1) == NOT_AUTHORIZED
    assert v5.subscribe5(("$aws/events/presence/#", 1)) == [NOT_AUTHORIZED]
    assert v5.publish5(f"{name}/readings", b"2", 1, packet_id=2) in (0x00, 0x10)


def test_own_topics_policy_is_what_provision_attaches(app: RunningApp, name: str) -> None:
    """Guards the fixture the other tests rely on: the stored document is the one above."""
    device = provision(app, name)
    assert device.policy is not None
    stored = json.loads(app.registry.policies.get(device.policy)["policyDocument"])
    assert stored == json.loads(own_topics_policy())


def test_thing_not_attached_to_the_certificate_is_refused(
    app: RunningApp, clients: Clients, name: str
) -> None:
    """The client id names a thing, but not one this certificate is attached to."""
    device = provision(app, name, attach_thing=False)
    client = clients.raw(5, app.tls_port, device.context())
    assert client.connect(device.name).return_code == NOT_AUTHORIZED


def test_new_default_policy_version_applies_to_a_connected_device(
    app: RunningApp, clients: Clients, name: str
) -> None:
    """Cached decisions are dropped when the registry changes, without reconnecting."""
    device = provision(app, name)
    assert device.policy is not None
    client = clients.raw(5, app.tls_port, device.context())
    assert isinstance(client, TlsRaw5)
    assert client.connect(device.name).return_code == 0
    assert client.publish5(f"things/{name}/a", b"1", 1, packet_id=1) in (0x00, 0x10)
    narrower = document(
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/{THING}"},
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{ARN}:topic/things/{THING}/b"},
    )
    app.registry.policies.create_version(device.policy, narrower, set_as_default=True)
    app.synced()
    assert client.publish5(f"things/{name}/a", b"2", 1, packet_id=2) == NOT_AUTHORIZED
    assert client.publish5(f"things/{name}/b", b"3", 1, packet_id=3) in (0x00, 0x10)
    app.registry.policies.set_default_version(device.policy, 1)
    app.synced()
    assert client.publish5(f"things/{name}/a", b"4", 1, packet_id=4) in (0x00, 0x10)


def test_thing_group_policy_applies_when_the_client_id_is_the_thing(
    app: RunningApp, clients: Clients, name: str
) -> None:
    device = provision(app, name)
    group = f"{name}-group"
    app.registry.things.create_group(group)
    app.registry.things.add_thing_to_group(group, device.name)
    app.registry.policies.create(
        group,
        document(
            {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{ARN}:topic/fleet/{group}/*"}
        ),
    )
    app.registry.policies.attach(group, "thinggroup", group)
    app.synced()
    client = clients.raw(5, app.tls_port, device.context())
    assert isinstance(client, TlsRaw5)
    assert client.connect(device.name).return_code == 0
    assert client.publish5(f"fleet/{group}/status", b"ok", 1, packet_id=1) in (0x00, 0x10)
    assert client.publish5(f"fleet/other-{group}/x", b"no", 1, packet_id=2) == NOT_AUTHORIZED
    # Removing the thing from the group withdraws the group's policy at once.
    app.registry.things.remove_thing_from_group(group, device.name)
    app.synced()
    assert client.publish5(f"fleet/{group}/status", b"no", 1, packet_id=3) == NOT_AUTHORIZED
