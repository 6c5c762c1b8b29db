"""MQTT 5 reason codes [2.4], the set each packet type may carry, and the codec's errors.

The errors live here rather than in ``codec`` because each one *is* a reason code with a
message: the server answers a decoding failure with ``exc.reason_code`` in its CONNACK or
DISCONNECT [4.13]. Keeping them in this leaf module lets ``properties`` and ``codec`` both raise
them without importing each other; ``codec`` re-exports them under their usual names.

Spec references are to MQTT Version 5.0 (OASIS, 2019), section numbers in brackets.
"""

from __future__ import annotations

import enum

from thingcore.errors import ThingcoreError


class ReasonCode(enum.IntEnum):
    """Every MQTT 5 reason code by its spec name [2.4, Table 2-6].

    Several names share a value (0x00 is Success, Normal disconnection and Granted QoS 0);
    the later names are aliases of ``SUCCESS``.
    """

    SUCCESS = 0x00
    NORMAL_DISCONNECTION = 0x00
    GRANTED_QOS_0 = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL_MESSAGE = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


_RC = ReasonCode

_PUBACK_PUBREC = frozenset(
    {
        _RC.SUCCESS,
        _RC.NO_MATCHING_SUBSCRIBERS,
        _RC.UNSPECIFIED_ERROR,
        _RC.IMPLEMENTATION_SPECIFIC_ERROR,
        _RC.NOT_AUTHORIZED,
        _RC.TOPIC_NAME_INVALID,
        _RC.PACKET_IDENTIFIER_IN_USE,
        _RC.QUOTA_EXCEEDED,
        _RC.PAYLOAD_FORMAT_INVALID,
    }
)
_PUBREL_PUBCOMP = frozenset({_RC.SUCCESS, _RC.PACKET_IDENTIFIER_NOT_FOUND})

# The reason codes each packet type may carry, keyed by packet type number (CONNACK = 2 ...
# AUTH = 15). "The Client or Server sending the <packet> MUST use one of the <packet> Reason
# Codes" [3.2.2-8, 3.4.2-1, 3.5.2-1, 3.6.2-1, 3.7.2-1, 3.9.3-2, 3.11.3-2, 3.14.2-1, 3.15.2-1];
# the decoder refuses any other value as a Protocol Error.
VALID_IN: dict[int, frozenset[int]] = {
    2: frozenset(  # CONNACK [3.2.2.2]
        {
            _RC.SUCCESS,
            _RC.UNSPECIFIED_ERROR,
            _RC.MALFORMED_PACKET,
            _RC.PROTOCOL_ERROR,
            _RC.IMPLEMENTATION_SPECIFIC_ERROR,
            _RC.UNSUPPORTED_PROTOCOL_VERSION,
            _RC.CLIENT_IDENTIFIER_NOT_VALID,
            _RC.BAD_USER_NAME_OR_PASSWORD,
            _RC.NOT_AUTHORIZED,
            _RC.SERVER_UNAVAILABLE,
            _RC.SERVER_BUSY,
            _RC.BANNED,
            _RC.BAD_AUTHENTICATION_METHOD,
            _RC.TOPIC_NAME_INVALID,
            _RC.PACKET_TOO_LARGE,
            _RC.QUOTA_EXCEEDED,
            _RC.PAYLOAD_FORMAT_INVALID,
            _RC.RETAIN_NOT_SUPPORTED,
            _RC.QOS_NOT_SUPPORTED,
            _RC.USE_ANOTHER_SERVER,
            _RC.SERVER_MOVED,
            _RC.CONNECTION_RATE_EXCEEDED,
        }
    ),
    4: _PUBACK_PUBREC,  # PUBACK [3.4.2.1]
    5: _PUBACK_PUBREC,  # PUBREC [3.5.2.1]
    6: _PUBREL_PUBCOMP,  # PUBREL [3.6.2.1]
    7: _PUBREL_PUBCOMP,  # PUBCOMP [3.7.2.1]
    9: frozenset(  # SUBACK [3.9.3]
        {
            _RC.GRANTED_QOS_0,
            _RC.GRANTED_QOS_1,
            _RC.GRANTED_QOS_2,
            _RC.UNSPECIFIED_ERROR,
            _RC.IMPLEMENTATION_SPECIFIC_ERROR,
            _RC.NOT_AUTHORIZED,
            _RC.TOPIC_FILTER_INVALID,
            _RC.PACKET_IDENTIFIER_IN_USE,
            _RC.QUOTA_EXCEEDED,
            _RC.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
            _RC.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
            _RC.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
        }
    ),
    11: frozenset(  # UNSUBACK [3.11.3]
        {
            _RC.SUCCESS,
            _RC.NO_SUBSCRIPTION_EXISTED,
            _RC.UNSPECIFIED_ERROR,
            _RC.IMPLEMENTATION_SPECIFIC_ERROR,
            _RC.NOT_AUTHORIZED,
            _RC.TOPIC_FILTER_INVALID,
            _RC.PACKET_IDENTIFIER_IN_USE,
        }
    ),
    14: frozenset(  # DISCONNECT [3.14.2.1]
        {
            _RC.NORMAL_DISCONNECTION,
            _RC.DISCONNECT_WITH_WILL_MESSAGE,
            _RC.UNSPECIFIED_ERROR,
            _RC.MALFORMED_PACKET,
            _RC.PROTOCOL_ERROR,
            _RC.IMPLEMENTATION_SPECIFIC_ERROR,
            _RC.NOT_AUTHORIZED,
            _RC.SERVER_BUSY,
            _RC.SERVER_SHUTTING_DOWN,
            # Missing from the table of [3.14.2.1] but listed for DISCONNECT in the table of all
            # reason codes [2.4, Table 2-6]; "does not match the authentication method currently
            # in use" only makes sense after CONNACK, during re-authentication [4.12.1].
            _RC.BAD_AUTHENTICATION_METHOD,
            _RC.KEEP_ALIVE_TIMEOUT,
            _RC.SESSION_TAKEN_OVER,
            _RC.TOPIC_FILTER_INVALID,
            _RC.TOPIC_NAME_INVALID,
            _RC.RECEIVE_MAXIMUM_EXCEEDED,
            _RC.TOPIC_ALIAS_INVALID,
            _RC.PACKET_TOO_LARGE,
            _RC.MESSAGE_RATE_TOO_HIGH,
            _RC.QUOTA_EXCEEDED,
            _RC.ADMINISTRATIVE_ACTION,
            _RC.PAYLOAD_FORMAT_INVALID,
            _RC.RETAIN_NOT_SUPPORTED,
            _RC.QOS_NOT_SUPPORTED,
            _RC.USE_ANOTHER_SERVER,
            _RC.SERVER_MOVED,
            _RC.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
            _RC.CONNECTION_RATE_EXCEEDED,
            _RC.MAXIMUM_CONNECT_TIME,
            _RC.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
            _RC.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
        }
    ),
    15: frozenset(
        {_RC.SUCCESS, _RC.CONTINUE_AUTHENTICATION, _RC.RE_AUTHENTICATE}
    ),  # AUTH [3.15.2.1]
}


def describe(code: int) -> str:
    """``"0x87 NOT_AUTHORIZED"``, or just the hex for a value that names no reason code."""
    try:
        return f"{code:#04x} {ReasonCode(code).name}"
    except ValueError:
        return f"{code:#04x}"


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class CodecError(ThingcoreError):
    """Bytes that are not a valid MQTT packet, or a packet that cannot be encoded.

    ``reason_code`` is what an MQTT 5 server sends back for it (CONNACK or DISCONNECT) [4.13].
    """

    reason_code: int = ReasonCode.UNSPECIFIED_ERROR


class MalformedPacket(CodecError):
    """The packet violates the wire format and cannot be parsed; close the connection [4.13]."""

    reason_code: int = ReasonCode.MALFORMED_PACKET


class ProtocolError(CodecError):
    """The packet parses but breaks a rule of the protocol [1.2 "Protocol Error", 4.13].

    Most carry 0x82 Protocol Error; a few rules name a more precise code (a Topic Alias of 0
    is 0x94 Topic Alias invalid), passed as ``reason_code``.
    """

    reason_code: int = ReasonCode.PROTOCOL_ERROR

    def __init__(self, message: str, reason_code: int = ReasonCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.reason_code = reason_code
