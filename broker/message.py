"""``Message``: one application message as every part of thingcore sees it.

Immutable by contract (no setters); the broker attaches wire encodings to it lazily so a
message fanned out to many subscribers is encoded once per distinct (QoS, retain) form.
"""

from __future__ import annotations

import time
import uuid

from broker.codec import PacketType, publish_head
from broker.properties import Properties, encode_property_bytes


class Message:
    """An application message: topic, payload, QoS, retain flag and who published it."""

    __slots__ = (
        "_trace_id",
        "_v5_properties",
        "_wire",
        "client_id",
        "expires_at",
        "payload",
        "principal",
        "properties",
        "qos",
        "raw_qos0",
        "received_at",
        "retain",
        "thing",
        "topic",
        "topic_bytes",
    )

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        *,
        client_id: str | None = None,
        principal: str | None = None,
        thing: str | None = None,
        received_at: float | None = None,
        properties: Properties | None = None,
        trace_id: str | None = None,
        topic_bytes: bytes | None = None,
        raw_qos0: bytes | None = None,
        expires_at: float | None = None,
        v5_properties: bytes | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.client_id = client_id
        self.principal = principal
        self.thing = thing
        self.received_at = time.time() if received_at is None else received_at
        self.properties = properties
        self._trace_id = trace_id
        self.topic_bytes = topic.encode("utf-8") if topic_bytes is None else topic_bytes
        # The exact bytes of a received QoS 0, non-retained MQTT 3.1.1 PUBLISH: forwarded as
        # they are to QoS 0 subscribers, with no encoding at all.
        self.raw_qos0 = raw_qos0
        self._wire: dict[int, bytes] | None = None
        self._v5_properties = v5_properties
        """Encoded application properties, when the message arrived with exactly these."""
        if expires_at is None and properties is not None:
            interval = properties.message_expiry_interval
            if interval is not None:
                expires_at = self.received_at + interval
        self.expires_at = expires_at
        """Wall-clock time after which the message is not delivered (MQTT 5 message expiry)."""

    @property
    def trace_id(self) -> str:
        """A UUID naming this message in logs and rules (``traceid()``); made on first use."""
        if self._trace_id is None:
            self._trace_id = str(uuid.uuid4())
        return self._trace_id

    def wire_head(self, qos: int, retain: bool, dup: bool = False) -> bytes:
        """PUBLISH fixed header + topic for this message at ``qos``, cached per form."""
        key = qos | (4 if retain else 0) | (8 if dup else 0)
        wire = self._wire
        if wire is None:
            wire = self._wire = {}
        else:
            head = wire.get(key)
            if head is not None:
                return head
        head = wire[key] = publish_head(self.topic_bytes, len(self.payload), qos, retain, dup)
        return head

    def v5_properties(self) -> bytes:
        """The application properties encoded for an MQTT 5 PUBLISH (no length prefix), cached.

        Message expiry, subscription identifiers and topic aliases differ per delivery and
        are added by the connection.
        """
        encoded = self._v5_properties
        if encoded is None:
            props = self.properties
            if props is None:
                encoded = b""
            else:
                static = Properties(
                    payload_format_indicator=props.payload_format_indicator,
                    content_type=props.content_type,
                    response_topic=props.response_topic,
                    correlation_data=props.correlation_data,
                    user_properties=props.user_properties,
                )
                encoded = encode_property_bytes(static, PacketType.PUBLISH)
            self._v5_properties = encoded
        return encoded

    def __repr__(self) -> str:
        return (
            f"Message(topic={self.topic!r}, payload={self.payload[:32]!r}"
            f"{'...' if len(self.payload) > 32 else ''}, qos={self.qos}, retain={self.retain},"
            f" client_id={self.client_id!r})"
        )
