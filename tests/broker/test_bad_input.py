"""Bad input over raw sockets: every case closes that connection, is counted, harms nobody else.

MQTT 3.1.1 has no way to report most errors, so the broker closes the network connection [4.8].
After each case a fresh pair of clients must still get through the same broker.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

import pytest

from broker import codec
from broker.codec import (
    ConnAck,
    Connect,
    PingResp,
    Publish,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    Will,
)
from tests.broker.rawclient import (
    ClientPool,
    RawClient,
    StartBroker,
    assert_serves,
    client_pool,
    wait_for,
)
from tests.harness import RunningBroker

MALFORMED = "malformed_packets"
VIOLATION = "protocol_violations"


@pytest.fixture
def clients(start_broker: StartBroker) -> Iterator[ClientPool]:
    with client_pool() as pool:
        yield pool


def u16(n: int) -> bytes:
    return struct.pack(">H", n)


def s(text: bytes) -> bytes:
    """A length-prefixed string field from raw bytes (which need not be valid UTF-8)."""
    return u16(len(text)) + text


def connect_packet(
    flags: int = 0x02, payload: bytes = s(b"bad-client"), first: int = 0x10
) -> bytes:
    return codec.frame(first, s(b"MQTT") + bytes((4, flags)) + u16(0) + payload)


def publish_packet(
    topic: bytes, first: int = 0x30, pid: bytes = b"", payload: bytes = b"x"
) -> bytes:
    return codec.frame(first, s(topic) + pid + payload)


# Sent instead of CONNECT, on a fresh connection.
BEFORE_CONNECT = {
    "publish before connect": (codec.encode_packet(Publish("a/b", b"x")), VIOLATION),
    "subscribe before connect": (codec.encode_packet(Subscribe(1, [("a", 0)])), VIOLATION),
    "pingreq before connect": (codec.PINGREQ, VIOLATION),
    "reserved packet type 0": (b"\x00\x00", MALFORMED),
    "reserved packet type 15": (b"\xf0\x00", MALFORMED),
    "connect reserved flag bit": (connect_packet(flags=0x03), MALFORMED),
    "connect fixed-header flags": (connect_packet(first=0x12), MALFORMED),
    "unknown protocol name": (
        codec.frame(0x10, s(b"MQTX") + bytes((4, 2)) + u16(0) + s(b"c")),
        MALFORMED,
    ),
    "will qos 3": (connect_packet(0x02 | 0x04 | 0x18, s(b"c") + s(b"w") + s(b"x")), MALFORMED),
    "will retain without will flag": (connect_packet(0x02 | 0x20), MALFORMED),
    "password without user name": (connect_packet(0x02 | 0x40, s(b"c") + s(b"pw")), MALFORMED),
    "bytes after connect payload": (connect_packet(payload=s(b"c") + b"junk"), MALFORMED),
    "connect ends inside client id": (connect_packet(payload=u16(40) + b"short"), MALFORMED),
    "client id not utf-8": (connect_packet(payload=s(b"\xc3\x28")), MALFORMED),
    "will topic with wildcard": (
        codec.encode_packet(Connect("c", will=Will("a/#", b"x"))),
        VIOLATION,
    ),
    "remaining length in five bytes": (b"\x10\xff\xff\xff\xff\x7f", MALFORMED),
}

# Sent after a successful CONNECT.
AFTER_CONNECT = {
    "publish qos 3": (publish_packet(b"a/b", first=0x36, pid=u16(1)), MALFORMED),
    "publish dup at qos 0": (publish_packet(b"a/b", first=0x38), MALFORMED),
    "publish to '+' wildcard": (publish_packet(b"a/+"), VIOLATION),
    "publish to '#' wildcard": (publish_packet(b"a/#"), VIOLATION),
    "publish to empty topic": (publish_packet(b""), VIOLATION),
    "publish topic not utf-8": (publish_packet(b"a/\xff\xfe"), MALFORMED),
    "publish topic with U+0000": (publish_packet(b"a/\x00b"), MALFORMED),
    "publish topic surrogate (CESU)": (publish_packet(b"a/\xed\xa0\x80"), MALFORMED),
    "publish packet id 0": (publish_packet(b"a/b", first=0x32, pid=u16(0)), MALFORMED),
    "publish ends inside topic": (codec.frame(0x30, u16(30) + b"a/b"), MALFORMED),
    "publish ends inside packet id": (codec.frame(0x32, s(b"a/b") + b"\x01"), MALFORMED),
    "puback remaining length 3": (b"\x40\x03\x00\x01\x00", MALFORMED),
    "pubrel reserved flags 0": (b"\x60\x02\x00\x01", MALFORMED),
    "subscribe reserved flags 0": (
        b"\x80" + codec.encode_packet(Subscribe(1, [("a", 0)]))[1:],
        MALFORMED,
    ),
    "pingreq reserved flags 1": (b"\xc1\x00", MALFORMED),
    "pingreq with a body": (b"\xc0\x01\x00", MALFORMED),
    "subscribe qos 3": (codec.frame(0x82, u16(1) + s(b"a") + b"\x03"), MALFORMED),
    "subscribe without filters": (codec.frame(0x82, u16(1)), MALFORMED),
    "subscribe filter not utf-8": (codec.frame(0x82, u16(1) + s(b"\xff") + b"\x00"), MALFORMED),
    "subscribe packet id 0": (codec.frame(0x82, u16(0) + s(b"a") + b"\x00"), MALFORMED),
    "unsubscribe without filters": (codec.frame(0xA2, u16(1)), MALFORMED),
    "remaining length in five bytes": (b"\x30\xff\xff\xff\xff\x7f", MALFORMED),
    "second connect": (codec.encode_packet(Connect("again")), VIOLATION),
    "connack from client": (codec.encode_packet(ConnAck(False, 0)), VIOLATION),
    "suback from client": (codec.encode_packet(SubAck(1, [0])), VIOLATION),
    "unsuback from client": (codec.encode_packet(UnsubAck(1)), VIOLATION),
    "pingresp from client": (codec.encode_packet(PingResp()), VIOLATION),
}


def check_closed_and_counted(broker: RunningBroker, raw: RawClient, counter: str) -> None:
    raw.expect_closed()
    stats = broker.stats()
    assert stats[counter] == 1
    other = VIOLATION if counter == MALFORMED else MALFORMED
    assert stats[other] == 0


@pytest.mark.parametrize(("data", "counter"), BEFORE_CONNECT.values(), ids=BEFORE_CONNECT.keys())
def test_bad_first_packet_closes_the_connection(
    broker: RunningBroker, clients: ClientPool, name: str, data: bytes, counter: str
) -> None:
    raw = clients.raw(broker.port)
    raw.send(data)
    check_closed_and_counted(broker, raw, counter)
    assert_serves(clients, broker.port, name)


@pytest.mark.parametrize(("data", "counter"), AFTER_CONNECT.values(), ids=AFTER_CONNECT.keys())
def test_bad_packet_after_connect_closes_the_connection(
    broker: RunningBroker, clients: ClientPool, name: str, data: bytes, counter: str
) -> None:
    bystander = clients.raw(broker.port)
    bystander.connect(f"{name}-bystander")
    bystander.subscribe(("#", 0))
    raw = clients.raw(broker.port)
    assert raw.connect(f"{name}-bad").return_code == 0
    raw.send(data)
    check_closed_and_counted(broker, raw, counter)
    bystander.expect_nothing(0.05)  # nothing from the bad packet was routed
    bystander.ping()  # and the connection next to it is untouched
    assert_serves(clients, broker.port, name)


def connect_with_level(level: int) -> bytes:
    return codec.frame(0x10, s(b"MQTT") + bytes((level, 0x02)) + u16(0) + s(b"again"))


def test_second_connect_with_unsupported_level_is_a_protocol_violation(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    raw = clients.raw(broker.port)
    assert raw.connect(f"{name}-c").return_code == 0
    raw.send(connect_with_level(5))
    # [3.1.0-2] whatever the second CONNECT says, it is a protocol violation: no CONNACK.
    check_closed_and_counted(broker, raw, VIOLATION)
    assert broker.stats()["connections_refused"] == 0


def test_bad_packet_split_over_many_writes_still_detected(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    raw = clients.raw(broker.port)
    raw.connect(f"{name}-bad")
    data = publish_packet(b"a/\x00b", payload=b"y" * 300)
    for i in range(0, len(data), 7):
        if not raw.try_send(data[i : i + 7]):
            break
    check_closed_and_counted(broker, raw, MALFORMED)


@pytest.mark.parametrize("chunk", [1, 3, 1000, 70_000])
def test_good_packets_in_awkward_pieces_are_reassembled(
    broker: RunningBroker, clients: ClientPool, name: str, chunk: int
) -> None:
    """Everything in one stream, cut at arbitrary points: headers, lengths and bodies split."""
    sub = clients.raw(broker.port)
    sub.connect(f"{name}-sub")
    sub.subscribe((f"{name}/t", 1))
    # Remaining lengths of 1, 2 and 3 bytes; the last packets complete only with the last write.
    payloads = [b"s", b"m" * 200, b"L" * 20_000, b"x" * 127, b"y" * 16_383]
    stream = codec.encode_packet(Connect(f"{name}-pub")) + b"".join(
        codec.encode_packet(Publish(f"{name}/t", p, qos=1, packet_id=i + 1))
        for i, p in enumerate(payloads)
    )
    pub = clients.raw(broker.port)
    for i in range(0, len(stream), chunk):
        pub.send(stream[i : i + chunk])
    assert pub.recv_packet() == ConnAck(False, 0)
    assert [pub.recv_packet() for _ in payloads] == [
        codec.PubAck(i + 1) for i in range(len(payloads))
    ]
    got = [sub.recv_publish() for _ in payloads]
    assert [m.payload for m in got] == payloads
    stats = broker.stats()
    assert stats[MALFORMED] == stats[VIOLATION] == 0


def test_connection_that_never_sends_connect_closed_after_connect_timeout(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(connect_timeout=0.3)
    raw = clients.raw(broker.port)
    elapsed = raw.expect_closed(4.0)
    assert 0.25 <= elapsed <= 2.0, elapsed
    assert broker.stats()["connect_timeouts"] == 1
    assert_serves(clients, broker.port, name)


def test_partial_connect_closed_after_connect_timeout(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(connect_timeout=0.3)
    raw = clients.raw(broker.port)
    # An HTTP request parses as the start of a long packet that never completes.
    raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    raw.expect_closed(4.0)
    assert broker.stats()["connect_timeouts"] == 1
    assert_serves(clients, broker.port, name)


@pytest.mark.parametrize("seed", range(6))
def test_random_garbage_closes_the_connection(
    start_broker: StartBroker, clients: ClientPool, name: str, seed: int
) -> None:
    broker = start_broker(connect_timeout=0.3)
    garbage = random.Random(seed).randbytes(256)
    raw = clients.raw(broker.port)
    raw.try_send(garbage)
    raw.expect_closed(4.0, drain=True)
    stats = broker.stats()
    counted = ("malformed_packets", "protocol_violations", "connect_timeouts", "oversize_packets")
    assert sum(stats[c] for c in counted) == 1, stats
    assert_serves(clients, broker.port, name)


def flood_until(
    broker: RunningBroker, pub: RawClient, topic: str, counter: str, limit_bytes: int = 64 << 20
) -> int:
    """Publish 16 KiB QoS 0 messages until ``counter`` moves; returns how many were sent."""
    payload = b"f" * (16 << 10)
    packet = codec.encode_packet(Publish(topic, payload))
    sent = 0
    while sent * len(payload) < limit_bytes:
        for _ in range(16):
            pub.send(packet)
        sent += 16
        if broker.stats()[counter]:
            return sent
    raise AssertionError(f"{counter} never moved after {sent} messages")


def test_slow_reader_disconnected_after_slow_reader_timeout(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(max_output_buffer=64 << 10, slow_reader_timeout=0.5)
    other = clients.connected(broker.port, f"{name}-other")
    other.subscribe(f"{name}/other", 1)
    slow = clients.raw(broker.port, rcvbuf=4096)
    slow.connect(f"{name}-slow")
    slow.subscribe((f"{name}/flood", 0))
    pub = clients.raw(broker.port)
    pub.connect(f"{name}-pub")
    # Congested first: QoS 0 messages to it are dropped (counted) rather than buffered.
    flood_until(broker, pub, f"{name}/flood", "messages_dropped_slow_reader")
    wait_for(lambda: broker.stats()["slow_reader_disconnects"], what="slow_reader_disconnects")
    slow.expect_closed(5.0, drain=True)
    # Everyone else is unaffected.
    pub.publish(f"{name}/other", b"still fine", qos=1, packet_id=1)
    assert other.expect(1)[0].payload == b"still fine"
    assert not other.disconnected.is_set()
    assert_serves(clients, broker.port, name)
    assert broker.stats()["slow_reader_disconnects"] == 1


def test_briefly_slow_reader_loses_qos0_but_keeps_connection_and_qos1(
    start_broker: StartBroker, clients: ClientPool, name: str
) -> None:
    broker = start_broker(max_output_buffer=64 << 10, slow_reader_timeout=30)
    slow = clients.raw(broker.port, rcvbuf=4096)
    slow.connect(f"{name}-slow")
    slow.subscribe((f"{name}/flood", 1))
    pub = clients.raw(broker.port)
    pub.connect(f"{name}-pub")
    flood_until(broker, pub, f"{name}/flood", "messages_dropped_slow_reader")
    # While congested, QoS 1 waits in the session queue instead of being dropped.
    pub.publish(f"{name}/flood", b"marker", qos=1, packet_id=1)
    while (packet := slow.recv_publish(timeout=10)).payload != b"marker":
        assert packet.qos == 0
    slow.send(codec.PubAck(packet.packet_id or 0))
    slow.ping()
    stats = broker.stats()
    assert stats["slow_reader_disconnects"] == 0
    assert stats["messages_dropped_queue_full"] == 0
    # Drained, it gets live QoS 0 messages again.
    pub.publish(f"{name}/flood", b"after", qos=0)
    assert slow.recv_publish().payload == b"after"


def test_unsubscribe_of_unknown_filter_is_answered(
    broker: RunningBroker, clients: ClientPool, name: str
) -> None:
    raw = clients.raw(broker.port)
    raw.connect(f"{name}-c")
    # [3.10.4-5] UNSUBACK even when nothing matched: not an error.
    raw.send(Unsubscribe(5, [f"{name}/never"]))
    assert raw.recv_packet() == UnsubAck(5)
    raw.ping()
