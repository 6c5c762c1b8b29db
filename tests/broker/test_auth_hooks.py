"""The AuthHooks seam: a custom implementation decides CONNECT, publish, subscribe and receive."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import pytest

from broker.auth import ConnectionInfo, Identity
from broker.codec import ConnAck, Connect, ConnectReturnCode, Publish, Will
from broker.message import Message
from tests.broker.rawclient import ClientPool, ConnectionClosed, RawClient, StartBroker, client_pool
from tests.harness import RunningBroker


@pytest.fixture
def clients(start_broker: StartBroker) -> Iterator[ClientPool]:
    with client_pool() as pool:
        yield pool


class PolicyHooks:
    """A small policy over the test's topics; records what the broker asked."""

    def __init__(self, name: str, *, checks_receive: bool = True) -> None:
        self.checks_receive = checks_receive
        self.refused_id = f"{name}-refused"
        self.forbidden_topic = f"{name}/forbidden"
        self.secret_prefix = f"{name}/secret"
        self.private_topic = f"{name}/private"
        self.connects: list[tuple[ConnectionInfo, Connect]] = []
        self.publish_checks: list[tuple[Identity, str, bool]] = []
        self.subscribe_checks: list[tuple[Identity, str]] = []
        self.receive_checks: list[tuple[Identity, str]] = []

    def authenticate(self, info: ConnectionInfo, connect: Connect) -> Identity | ConnectReturnCode:
        self.connects.append((info, connect))
        if connect.client_id == self.refused_id:
            return ConnectReturnCode.NOT_AUTHORIZED
        if connect.username is not None and connect.password != b"right":
            return ConnectReturnCode.BAD_USERNAME_OR_PASSWORD
        return Identity(
            connect.client_id, principal=connect.username, thing=f"thing-of-{connect.client_id}"
        )

    def may_publish(self, identity: Identity, topic: str, retain: bool) -> bool:
        self.publish_checks.append((identity, topic, retain))
        return topic != self.forbidden_topic

    def may_subscribe(self, identity: Identity, topic_filter: str) -> bool:
        self.subscribe_checks.append((identity, topic_filter))
        return self.secret_prefix not in topic_filter  # plain or inside $share/{group}/

    def may_receive(self, identity: Identity, topic: str) -> bool:
        self.receive_checks.append((identity, topic))
        return topic != self.private_topic


def connected(
    clients: ClientPool,
    broker: RunningBroker,
    client_id: str,
    *,
    username: str | None = None,
    password: bytes | None = None,
) -> RawClient:
    raw = clients.raw(broker.port)
    assert raw.connect(client_id, username=username, password=password).return_code == 0
    return raw


def test_refused_connect_gets_connack_5_and_is_closed(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    hooks = PolicyHooks(name)
    broker = start_broker(hooks=hooks)
    raw = clients.raw(broker.port)
    assert raw.connect(hooks.refused_id) == ConnAck(False, 5)
    raw.expect_closed()
    assert broker.stats()["connections_refused"] == 1
    # The refused client got no session: nothing to resume, nothing to take over.
    assert broker.call(lambda: hooks.refused_id in broker.broker.sessions) is False


def test_credentials_reach_the_hook_and_bad_ones_get_connack_4(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    hooks = PolicyHooks(name)
    broker = start_broker(hooks=hooks)
    bad = clients.raw(broker.port)
    assert bad.connect(f"{name}-a", username="alice", password=b"wrong") == ConnAck(False, 4)
    bad.expect_closed()
    good = clients.raw(broker.port)
    assert good.connect(f"{name}-a", username="alice", password=b"right") == ConnAck(False, 0)
    assert [(c.username, c.password) for _, c in hooks.connects] == [
        ("alice", b"wrong"),
        ("alice", b"right"),
    ]


def test_connection_info_carries_peer_address_and_no_tls(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    hooks = PolicyHooks(name)
    broker = start_broker(hooks=hooks)
    raw = connected(clients, broker, f"{name}-c")
    [(info, connect)] = hooks.connects
    assert info == ConnectionInfo(
        listener="mqtt",
        peer_address="127.0.0.1",
        peer_port=raw.local_port,
        tls=False,
        peer_certificate=None,
    )
    assert connect.client_id == f"{name}-c"


@pytest.mark.parametrize(
    ("qos", "retain"), [(0, False), (1, False), (2, False), (1, True)], ids=str
)
def test_denied_publish_closes_a_311_connection_and_is_not_routed(
    start_broker: StartBroker, clients: ClientPool, name: str, qos: int, retain: bool
) -> None:
    hooks = PolicyHooks(name)
    broker = start_broker(hooks=hooks)
    sub = connected(clients, broker, f"{name}-sub")
    sub.subscribe((f"{name}/#", 2))
    pub = connected(clients, broker, f"{name}-pub", username="bob", password=b"right")
    pub.publish(f"{name}/allowed", b"fine", qos=1, packet_id=4)
    got = sub.recv_publish()
    assert (got.topic, got.payload) == (f"{name}/allowed", b"fine")
    # AWS closes the connection (reference 4.4): MQTT 3.1.1 has no way to refuse one PUBLISH.
    pub.send(Publish(hooks.forbidden_topic, b"denied", qos=qos, packet_id=5, retain=retain))
    with pytest.raises(ConnectionClosed):
        pub.recv_packet()
    sub.expect_nothing(0.2)
    assert broker.stats()["messages_dropped_not_authorized"] == 1
    # The hook saw who published, as authenticate named them, and the retain flag.
    identity, topic, seen_retain = hooks.publish_checks[-1]
    assert (identity.client_id, identity.principal, topic, seen_retain) == (
        f"{name}-pub",
        "bob",
        hooks.forbidden_topic,
        retain,
    )
    # A denied retained publish is not stored either.
    late = connected(clients, broker, f"{name}-late")
    late.subscribe((f"{name}/#", 1))
    late.expect_nothing(0.2)


def test_denied_subscribe_gets_suback_failure_per_filter(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    hooks = PolicyHooks(name)
    broker = start_broker(hooks=hooks)
    sub = connected(clients, broker, f"{name}-sub")
    codes = sub.subscribe(
        (f"{hooks.secret_prefix}/#", 1), (f"{name}/ok", 1), (f"$share/g/{hooks.secret_prefix}", 0)
    )
    assert codes == [0x80, 1, 0x80]
    assert [f for _, f in hooks.subscribe_checks] == [
        f"{hooks.secret_prefix}/#",
        f"{name}/ok",
        f"$share/g/{hooks.secret_prefix}",  # the whole filter, as the client wrote it
    ]
    pub = connected(clients, broker, f"{name}-pub")
    pub.publish(f"{hooks.secret_prefix}/x", b"secret", qos=1, packet_id=1)
    pub.publish(f"{name}/ok", b"ok", qos=1, packet_id=2)
    assert sub.recv_publish().payload == b"ok"
    sub.expect_nothing(0.1)


def test_denied_receive_not_delivered(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    hooks = PolicyHooks(name)
    broker = start_broker(hooks=hooks)
    pub = connected(clients, broker, f"{name}-pub")
    pub.publish(hooks.private_topic, b"retained private", qos=1, packet_id=1, retain=True)
    sub = connected(clients, broker, f"{name}-sub")
    assert sub.subscribe((f"{name}/#", 1)) == [1]
    pub.publish(hooks.private_topic, b"live private", qos=1, packet_id=2)
    pub.publish(f"{name}/public", b"public", qos=1, packet_id=3)
    got = sub.recv_publish()
    assert (got.topic, got.payload) == (f"{name}/public", b"public")
    sub.expect_nothing(0.2)
    assert broker.stats()["messages_dropped_not_authorized"] == 2
    assert (f"{name}-sub", hooks.private_topic) in {
        (i.client_id, t) for i, t in hooks.receive_checks
    }


def test_receive_hook_skipped_when_checks_receive_is_false(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    hooks = PolicyHooks(name, checks_receive=False)
    broker = start_broker(hooks=hooks)
    sub = connected(clients, broker, f"{name}-sub")
    sub.subscribe((f"{name}/#", 1))
    pub = connected(clients, broker, f"{name}-pub")
    pub.publish(hooks.private_topic, b"private", qos=1)
    assert sub.recv_publish().payload == b"private"
    assert hooks.receive_checks == []


def test_identity_from_authenticate_travels_with_the_message(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    hooks = PolicyHooks(name)
    broker = start_broker(hooks=hooks)
    seen: queue.Queue[Message] = queue.Queue()
    broker.call(lambda: broker.broker.bus.subscribe(f"{name}/t", seen.put))
    pub = connected(clients, broker, f"{name}-pub", username="carol", password=b"right")
    pub.publish(f"{name}/t", b"x", qos=1)
    got = seen.get(timeout=5)
    assert (got.client_id, got.principal, got.thing) == (
        f"{name}-pub",
        "carol",
        f"thing-of-{name}-pub",
    )


def test_will_to_a_denied_topic_is_not_published(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    hooks = PolicyHooks(name)
    broker = start_broker(hooks=hooks)
    sub = connected(clients, broker, f"{name}-sub")
    sub.subscribe((f"{name}/#", 1))
    dev = clients.raw(broker.port)
    will = Will(hooks.forbidden_topic, b"sneaked through", qos=1, retain=True)
    # A client may not get a will published where it may not publish [3.1.2.5]; refusing the
    # CONNECT or dropping the will when it fires are both acceptable answers.
    if dev.connect(f"{name}-dev", will=will).return_code == 0:
        dev.abort()
    else:
        dev.expect_closed()
    sub.expect_nothing(0.5)
    late = connected(clients, broker, f"{name}-late")
    late.subscribe((f"{name}/#", 1))
    late.expect_nothing(0.1)  # nor was it retained
    assert broker.stats()["wills_published"] == 0
