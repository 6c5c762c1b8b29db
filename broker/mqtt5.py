"""MQTT 5 decisions that need no socket: what a CONNACK announces, how a refusal maps to a
reason code, what a CONNECT's properties mean for the session.

Pure functions over settings and packet properties; the connection applies the results.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.codec import Connect, ConnectReturnCode
from broker.config import BrokerSettings
from broker.properties import Properties
from broker.reason_codes import ReasonCode

NEVER_EXPIRES = 0xFFFFFFFF  # [3.1.2.11.2] a session expiry interval that means "never"
_CLIENT_RECEIVE_MAXIMUM_DEFAULT = 65535  # [3.1.2.11.3]

# MQTT 3.1.1 CONNACK return codes (what auth hooks answer) as MQTT 5 reason codes [3.2.2.2].
_REFUSALS = {
    ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION: ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
    ConnectReturnCode.IDENTIFIER_REJECTED: ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
    ConnectReturnCode.SERVER_UNAVAILABLE: ReasonCode.SERVER_UNAVAILABLE,
    ConnectReturnCode.BAD_USERNAME_OR_PASSWORD: ReasonCode.BAD_USER_NAME_OR_PASSWORD,
    ConnectReturnCode.NOT_AUTHORIZED: ReasonCode.NOT_AUTHORIZED,
}


def refusal_reason(code: int) -> int:
    """The MQTT 5 CONNACK reason code for a 3.1.1 return code (already-v5 codes pass)."""
    if code >= 0x80:
        return code
    return _REFUSALS.get(ConnectReturnCode(code), ReasonCode.UNSPECIFIED_ERROR)


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """What an MQTT 5 client's CONNECT asks of the server."""

    session_expiry: float | None
    """Seconds the session outlives the connection; None: never expires."""
    receive_maximum: int
    maximum_packet_size: int | None
    topic_alias_maximum: int
    problem_information: bool
    will_delay: float


def client_limits(connect: Connect) -> ClientLimits:
    props = connect.properties
    expiry = props.session_expiry_interval or 0
    will_delay = 0
    if connect.will is not None:
        will_delay = connect.will.properties.will_delay_interval or 0
    return ClientLimits(
        session_expiry=None if expiry == NEVER_EXPIRES else float(expiry),
        receive_maximum=props.receive_maximum or _CLIENT_RECEIVE_MAXIMUM_DEFAULT,
        maximum_packet_size=props.maximum_packet_size,
        topic_alias_maximum=props.topic_alias_maximum or 0,
        problem_information=props.request_problem_information != 0,
        will_delay=float(will_delay),
    )


def connack_properties(
    settings: BrokerSettings,
    *,
    assigned_client_id: str | None,
    requested_keep_alive: int,
    granted_keep_alive: int,
) -> Properties:
    """Properties of a successful CONNACK: every limit that differs from the spec default."""
    props = Properties(
        receive_maximum=settings.max_inbound_qos2 if settings.max_inbound_qos2 < 65535 else None,
        maximum_packet_size=settings.max_packet_size,
        topic_alias_maximum=settings.max_topic_alias or None,
        assigned_client_identifier=assigned_client_id,
        # Said explicitly although 1 is the default when absent: clients and operators
        # reading a capture should not have to know the defaults [3.2.2.3.5, .11-.13].
        retain_available=1,
        wildcard_subscription_available=1,
        subscription_identifier_available=1,
        shared_subscription_available=1,
    )
    if settings.max_qos < 2:
        props.maximum_qos = settings.max_qos
    if granted_keep_alive != requested_keep_alive:
        props.server_keep_alive = granted_keep_alive  # [3.2.2.3.14]
    return props


def disconnect_properties(reason: str | None, problem_information: bool) -> Properties | None:
    """A reason string only when the client did not opt out of problem information [3.1.2.11.7]."""
    if reason is None or not problem_information:
        return None
    return Properties(reason_string=reason[:200])
