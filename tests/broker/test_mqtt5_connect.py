"""MQTT 5 CONNECT and CONNACK over real sockets: what the server announces, how it refuses,
session present / clean start, and the packets it does not support (AUTH) [3.1, 3.2, 4.12].

Spec references are to MQTT Version 5.0 (OASIS, 2019), section numbers in brackets.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from broker.auth import ConnectionInfo, Identity
from broker.codec import Auth, ConnAck, Connect, ConnectReturnCode, Disconnect, Will, frame
from broker.properties import Properties
from broker.reason_codes import ReasonCode
from tests.broker.raw5 import Pool5, pool5
from tests.broker.rawclient import ConnectionClosed, StartBroker, wait_offline
from tests.harness import RunningBroker


@pytest.fixture
def clients(start_broker: StartBroker) -> Iterator[Pool5]:
    with pool5() as pool:
        yield pool


# -- CONNACK properties [3.2.2.3] -----------------------------------------------------------


def test_connack_announces_the_configured_limits(
    start_broker: StartBroker, clients: Pool5, name: str
) -> None:
    broker = start_broker(max_inbound_qos2=7, max_topic_alias=5, max_packet_size=4096)
    raw = clients.raw5(broker.port)
    connack = raw.connect(name, keep_alive=30)
    assert (connack.session_present, connack.return_code) == (False, ReasonCode.SUCCESS)
    props = connack.properties
    assert props.receive_maximum == 7  # [3.2.2.3.3]
    assert props.topic_alias_maximum == 5  # [3.2.2.3.8]
    assert props.maximum_packet_size == 4096  # [3.2.2.3.6]
    # Defaults the client assumes when absent: QoS 2 [3.2.2.3.4], its own keep alive
    # [3.2.2.3.14], its own client id [3.2.2.3.7].
    assert props.maximum_qos is None
    assert props.server_keep_alive is None
    assert props.assigned_client_identifier is None
    # Capabilities are stated explicitly [3.2.2.3.5, 3.2.2.3.11-13].
    assert (
        props.retain_available,
        props.wildcard_subscription_available,
        props.subscription_identifier_available,
        props.shared_subscription_available,
    ) == (1, 1, 1, 1)


@pytest.mark.parametrize("max_qos", [0, 1])
def test_connack_announces_maximum_qos_below_2_and_suback_grants_no_more(
    start_broker: StartBroker, clients: Pool5, name: str, max_qos: int
) -> None:
    broker = start_broker(max_qos=max_qos)
    raw = clients.raw5(broker.port)
    connack = raw.connect(name)
    assert connack.return_code == 0
    assert connack.properties.maximum_qos == max_qos  # [3.2.2.3.4]
    assert raw.subscribe5((f"{name}/t", 2)) == [max_qos]  # [3.9.3] granted QoS


def test_server_keep_alive_sent_when_the_client_asks_for_more_than_allowed(
    start_broker: StartBroker, clients: Pool5, name: str
) -> None:
    broker = start_broker(max_keepalive=10)
    long = clients.raw5(broker.port).connect(f"{name}-long", keep_alive=60)
    assert long.properties.server_keep_alive == 10  # [3.2.2.3.14]
    short = clients.raw5(broker.port).connect(f"{name}-short", keep_alive=5)
    assert short.properties.server_keep_alive is None


@pytest.mark.parametrize("clean", [True, False], ids=["clean-start-1", "clean-start-0"])
def test_empty_client_id_gets_an_assigned_client_identifier(
    broker: RunningBroker, clients: Pool5, name: str, clean: bool
) -> None:
    # [3.1.3-6, 3.1.3-7] a zero-length ClientID is given a unique one, returned in CONNACK;
    # unlike 3.1.1, MQTT 5 allows it with Clean Start 0 too.
    first = clients.raw5(broker.port).connect("", clean=clean)
    second = clients.raw5(broker.port).connect("", clean=clean)
    assert (first.return_code, second.return_code) == (0, 0)
    ids = (
        first.properties.assigned_client_identifier,
        second.properties.assigned_client_identifier,
    )
    assert ids[0] and ids[1] and ids[0] != ids[1]
    assert broker.call(lambda: set(broker.broker.sessions) >= set(ids))


def test_assigned_client_identifier_resumes_its_session(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    raw = clients.raw5(broker.port)
    connack = raw.connect("", clean=False, properties=Properties(session_expiry_interval=60))
    assigned = connack.properties.assigned_client_identifier
    assert assigned
    assert raw.subscribe5((f"{name}/t", 1)) == [1]
    raw.disconnect5()
    wait_offline(broker, assigned)
    again = clients.raw5(broker.port)
    back = again.connect(assigned, clean=False, properties=Properties(session_expiry_interval=60))
    # [3.2.2.1.1] the session created under the assigned id is present, its subscription too.
    assert (back.session_present, back.properties.assigned_client_identifier) == (True, None)
    pub = clients.connected5(broker.port, f"{name}-pub")
    pub.publish5(f"{name}/t", b"kept", qos=1)
    assert again.recv_publish().payload == b"kept"


# -- refusals [3.2.2.2] ----------------------------------------------------------------------


def test_authentication_method_is_refused_with_0x8c_then_closed(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    # No enhanced authentication is offered: [4.12] "If the Server does not support the
    # Authentication Method ... it MAY send a CONNACK with 0x8C ... and MUST close".
    raw = clients.raw5(broker.port)
    connack = raw.connect(name, properties=Properties(authentication_method="SCRAM-SHA-1"))
    assert connack == ConnAck(False, ReasonCode.BAD_AUTHENTICATION_METHOD)
    raw.expect_closed()
    assert broker.stats()["connections_refused"] == 1
    assert not broker.call(lambda: name in broker.broker.sessions)


class RefusingHooks:
    """Refuses client ids ending in a 3.1.1 return code's name with that code."""

    checks_receive = False

    def __init__(self, name: str) -> None:
        self.name = name

    def authenticate(self, info: ConnectionInfo, connect: Connect) -> Identity | ConnectReturnCode:
        for code in ConnectReturnCode:
            if connect.client_id == f"{self.name}-{code.name}":
                return code
        return Identity(connect.client_id)

    def may_publish(self, identity: Identity, topic: str, retain: bool) -> bool:
        return True

    def may_subscribe(self, identity: Identity, topic_filter: str) -> bool:
        return True

    def may_receive(self, identity: Identity, topic: str) -> bool:
        return True


@pytest.mark.parametrize(
    ("refusal", "reason"),
    [
        (ConnectReturnCode.NOT_AUTHORIZED, ReasonCode.NOT_AUTHORIZED),
        (ConnectReturnCode.BAD_USERNAME_OR_PASSWORD, ReasonCode.BAD_USER_NAME_OR_PASSWORD),
        (ConnectReturnCode.IDENTIFIER_REJECTED, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID),
        (ConnectReturnCode.SERVER_UNAVAILABLE, ReasonCode.SERVER_UNAVAILABLE),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_hook_refusal_maps_to_the_mqtt5_reason_code(
    start_broker: StartBroker,
    clients: Pool5,
    name: str,
    refusal: ConnectReturnCode,
    reason: ReasonCode,
) -> None:
    broker = start_broker(hooks=RefusingHooks(name))
    raw = clients.raw5(broker.port)
    # [3.2.2.2] the 3.1.1 return code the hook gave becomes the MQTT 5 Connect Reason Code.
    assert raw.connect(f"{name}-{refusal.name}", username="u", password=b"p") == ConnAck(
        False, reason
    )
    raw.expect_closed()  # [3.2.2-7] a CONNACK with a code >= 0x80 is followed by a close
    assert clients.raw5(broker.port).connect(f"{name}-ok").return_code == 0


def test_client_id_over_the_limit_is_refused_with_0x85(
    start_broker: StartBroker, clients: Pool5, name: str
) -> None:
    broker = start_broker(max_client_id_length=8)
    raw = clients.raw5(broker.port)
    assert raw.connect("x" * 9) == ConnAck(False, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)
    raw.expect_closed()


# -- Clean Start and Session Present [3.1.2.4, 3.2.2.1.1] -----------------------------------


def test_clean_start_0_with_session_expiry_finds_the_session_present(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    keep = Properties(session_expiry_interval=60)
    first = clients.raw5(broker.port)
    assert first.connect(name, clean=False, properties=keep).session_present is False
    first.disconnect5()
    wait_offline(broker, name)
    again = clients.raw5(broker.port)
    assert again.connect(name, clean=False, properties=keep).session_present is True


def test_clean_start_1_discards_the_session(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    keep = Properties(session_expiry_interval=60)
    first = clients.connected5(broker.port, name, clean=False, properties=keep)
    assert first.subscribe5((f"{name}/t", 1)) == [1]
    first.disconnect5()
    wait_offline(broker, name)
    # [3.1.2-4] Clean Start 1: the existing session is discarded, Session Present is 0.
    again = clients.raw5(broker.port)
    assert again.connect(name, clean=True, properties=keep).session_present is False
    pub = clients.connected5(broker.port, f"{name}-pub")
    assert pub.publish5(f"{name}/t", b"x", qos=1) == ReasonCode.NO_MATCHING_SUBSCRIBERS
    again.expect_nothing(0.2)


def test_second_connect_is_a_protocol_error(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    raw = clients.connected5(broker.port, name)
    raw.send(Connect(name, protocol_level=5))
    # [3.1.0-2] a second CONNECT is a Protocol Error; MQTT 5 says so in a DISCONNECT [4.13].
    disconnect = raw.expect_disconnect(ReasonCode.PROTOCOL_ERROR)
    assert disconnect.properties.reason_string  # [3.14.2.2.3] problem information by default
    assert broker.stats()["protocol_violations"] == 1


# -- AUTH [3.15, 4.12] ------------------------------------------------------------------------


def test_auth_after_connect_is_a_protocol_error_0x82(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    watcher = clients.connected5(broker.port, f"{name}-watcher")
    assert watcher.subscribe5((f"{name}/will", 0)) == [0]
    raw = clients.connected5(broker.port, name, will=Will(f"{name}/will", b"gone"))
    # [4.12] a client whose CONNECT had no Authentication Method must not send AUTH (and a
    # CONNECT with one is refused, see above): a Protocol Error. Not 0x8C, which is a CONNACK
    # code but not a DISCONNECT one [3.14.2.1].
    raw.send(Auth(ReasonCode.RE_AUTHENTICATE, Properties(authentication_method="SCRAM-SHA-1")))
    disconnect = raw.expect_disconnect(ReasonCode.PROTOCOL_ERROR)
    assert disconnect.properties.reason_string  # [3.14.2.2.3] problem information by default
    assert broker.stats()["protocol_violations"] == 1  # counted once
    # Not a normal disconnection: the will is published [3.1.2.5].
    assert watcher.recv_publish().payload == b"gone"


def test_request_problem_information_0_leaves_out_the_reason_string(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    raw = clients.connected5(
        broker.port, name, properties=Properties(request_problem_information=0)
    )
    raw.send(Connect(name, protocol_level=5))
    disconnect = raw.expect_disconnect(ReasonCode.PROTOCOL_ERROR)
    assert disconnect.properties.reason_string is None  # [3.1.2.11.7]


def test_disconnect_reason_string_respects_the_client_maximum_packet_size(
    broker: RunningBroker, clients: Pool5, name: str
) -> None:
    raw = clients.connected5(broker.port, name, properties=Properties(maximum_packet_size=16))
    raw.send(Connect(name, protocol_level=5))  # a Protocol Error the server explains
    assert raw.recv(Disconnect).reason_code == ReasonCode.PROTOCOL_ERROR
    # [3.14.2-3] the Reason String is left out rather than exceed the client's maximum.
    assert raw.last_size <= 16
    raw.expect_closed()


def test_will_qos_above_maximum_qos_is_refused_with_0x9b(
    start_broker: StartBroker, clients: Pool5, name: str
) -> None:
    broker = start_broker(max_qos=1)
    raw = clients.raw5(broker.port)
    connack = raw.connect(name, will=Will(f"{name}/will", b"w", qos=2))
    # [3.2.2-12] a Will QoS above what the server supports refuses the connection.
    assert connack.return_code == ReasonCode.QOS_NOT_SUPPORTED
    raw.expect_closed()
    assert not broker.call(lambda: name in broker.broker.sessions)


# -- malformed CONNECT [3.1.2.11, 4.13] ------------------------------------------------------------


def connect_bytes(props: bytes, client_id: bytes) -> bytes:
    """An MQTT 5 CONNECT, Clean Start 1, with a hand-made property block."""
    header = b"\x00\x04MQTT\x05\x02\x00\x00"
    return frame(0x10, header + props + len(client_id).to_bytes(2, "big") + client_id)


@pytest.mark.parametrize(
    ("props", "counter"),
    [
        pytest.param(b"\x02\x7f\x00", "malformed_packets", id="unknown-property-id"),
        pytest.param(b"\x06\x21\x00\x05\x21\x00\x06", "protocol_violations", id="duplicate"),
        pytest.param(b"\x03\x21\x00\x00", "protocol_violations", id="receive-maximum-0"),
        pytest.param(b"\x03\x23\x00\x01", "protocol_violations", id="topic-alias-in-connect"),
        pytest.param(b"\x7f\x11\x00", "malformed_packets", id="length-past-end"),
    ],
)
def test_bad_connect_properties_close_the_connection(
    broker: RunningBroker, clients: Pool5, name: str, props: bytes, counter: str
) -> None:
    raw = clients.raw5(broker.port)
    raw.send(connect_bytes(props, name.encode()))
    # [4.13.1] before CONNACK the server MAY answer with a CONNACK reason code; it MUST close.
    try:
        connack = raw.recv(ConnAck, timeout=2)
    except ConnectionClosed:
        pass
    else:
        assert connack.return_code >= 0x80
        raw.expect_closed()
    assert broker.stats()[counter] == 1
    assert not broker.call(lambda: name in broker.broker.sessions)
    assert clients.raw5(broker.port).connect(name).return_code == 0
