"""Bounded fuzzing of the MQTT decoder: whatever bytes arrive, the only exception it may raise
is ``CodecError`` (``MalformedPacket``, ``ProtocolError`` or ``UnsupportedProtocol``), because
the connection turns exactly those into a clean disconnect [4.8] and anything else would be a
crash. Every test runs for MQTT 3.1.1 and MQTT 5 (valid packets from test_codec_v5, with
generated properties); property blocks are also fuzzed on their own.

``THINGCORE_FUZZ_EXAMPLES`` sets the examples per test: a few hundred for ``make test``,
20,000 for ``make fuzz``.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.codec import (
    MQTT_5,
    MQTT_311,
    CodecError,
    Packet,
    decode_packet,
    decode_stream,
    encode_packet,
    frame,
    peek_remaining_length,
    split_packet,
)
from broker.properties import decode_properties, encode_properties
from tests.broker.test_codec import packets
from tests.broker.test_codec_v5 import packets as packets_v5
from tests.broker.test_properties import PACKET_TYPES

FUZZ_EXAMPLES = int(os.environ.get("THINGCORE_FUZZ_EXAMPLES", "300"))

fuzz = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


VERSIONS = pytest.mark.parametrize("version", [MQTT_311, MQTT_5], ids=["v311", "v5"])


def decode_stream_or_error(
    data: bytes, version: int = MQTT_311
) -> tuple[list[Packet], int] | CodecError:
    """decode_stream's result, or the CodecError it raised; any other exception propagates."""
    try:
        return decode_stream(data, version)
    except CodecError as exc:
        return exc


def check_stream(data: bytes, version: int = MQTT_311) -> tuple[list[Packet], int] | CodecError:
    result = decode_stream_or_error(data, version)
    if isinstance(result, CodecError):
        return result
    found, used = result
    assert 0 <= used <= len(data)
    # What was consumed decodes alone to the same packets; what is left is an incomplete packet.
    assert decode_stream(data[:used], version) == (found, used)
    assert split_packet(data, used) is None
    return result


def check_packet(first: int, body: bytes, version: int = MQTT_311) -> None:
    try:
        packet = decode_packet(first, body, version)
    except CodecError:
        return
    if version == MQTT_5:
        # MQTT 5 has several forms of one packet (properties in any order, optional reason
        # codes), so re-encoding gives the shortest form, not the same bytes; but whatever the
        # decoder accepts the encoder can write, and it decodes to the same packet.
        again = encode_packet(packet, version)
        assert len(again) <= len(frame(first, body))
        assert decode_stream(again, version) == ([packet], len(again))
        return
    # The decoder accepts only canonical forms: re-encoding gives back the very same bytes.
    assert encode_packet(packet) == frame(first, body)


@st.composite
def mutated_streams(draw: st.DrawFn, version: int = MQTT_311) -> bytes:
    """Valid packets, encoded and concatenated, then damaged in one to four places."""
    batch = draw(st.lists(packets_v5 if version == MQTT_5 else packets, min_size=1, max_size=3))
    data = bytearray(b"".join(encode_packet(p, version) for p in batch))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "splice"]))
        if not data:
            data.append(draw(st.integers(0, 255)))
            continue
        i = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[i] = draw(st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x7F, 0x80, 0xC0, 0xFF]))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del data[i : i + draw(st.integers(1, 4))]
        elif kind == "truncate":
            del data[i:]
        else:
            j = draw(st.integers(i, len(data)))
            data[i:i] = data[i:j]
    return bytes(data)


@VERSIONS
@fuzz
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_codec_errors(version: int, data: bytes) -> None:
    check_stream(data, version)


@VERSIONS
@fuzz
@given(first=st.integers(0, 255), body=st.binary(max_size=200))
def test_decode_packet_on_arbitrary_body_raises_only_codec_errors(
    version: int, first: int, body: bytes
) -> None:
    check_packet(first, body, version)


@VERSIONS
@fuzz
@given(data=st.data())
def test_mutated_packets_raise_only_codec_errors(version: int, data: st.DataObject) -> None:
    stream = data.draw(mutated_streams(version))
    check_stream(stream, version)
    # Also hand each framed body straight to decode_packet, and the bytes after a two-byte
    # header regardless of the length they declare.
    if len(stream) >= 2:
        check_packet(stream[0], stream[2:], version)
    pos = 0
    while True:
        try:
            found = split_packet(stream, pos)
        except CodecError:
            break
        if found is None:
            break
        first, start, end = found
        check_packet(first, stream[start:end], version)
        pos = end


@VERSIONS
@fuzz
@given(data=st.data())
def test_mutated_stream_fed_byte_by_byte_agrees_with_whole(
    version: int, data: st.DataObject
) -> None:
    stream = data.draw(mutated_streams(version))
    whole = decode_stream_or_error(stream, version)
    buf = bytearray()
    out: list[Packet] = []
    error: CodecError | None = None
    for byte in stream:
        buf.append(byte)
        result = decode_stream_or_error(bytes(buf), version)
        if isinstance(result, CodecError):
            error = result
            break
        got, used = result
        out.extend(got)
        del buf[:used]
    if isinstance(whole, CodecError):
        assert error is not None
        assert type(error) is type(whole)
    else:
        assert error is None
        assert out == whole[0]


@fuzz
@given(st.binary(max_size=12), st.integers(0, 14))
def test_framing_functions_return_bounds_or_raise_codec_error(data: bytes, pos: int) -> None:
    try:
        found = split_packet(data, pos)
    except CodecError:
        found = None
    else:
        if found is not None:
            first, start, end = found
            assert first == data[pos]
            assert pos + 2 <= start <= end <= len(data)
    try:
        length = peek_remaining_length(data, pos)
    except CodecError:
        return
    if found is not None:
        assert length == found[2] - found[1]
    if length is not None:
        assert 0 <= length <= 268_435_455


@fuzz
@given(st.sampled_from(PACKET_TYPES), st.binary(max_size=120))
def test_arbitrary_property_blocks_raise_only_codec_errors(packet_type: int, data: bytes) -> None:
    try:
        props, end = decode_properties(data, 0, packet_type)
    except CodecError:
        return
    assert 0 < end <= len(data)
    # Whatever decodes re-encodes (in identifier order) to a block that decodes the same.
    again = encode_properties(props, packet_type)
    assert len(again) <= end
    assert decode_properties(again, 0, packet_type) == (props, len(again))
