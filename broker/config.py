"""The broker's settings: one frozen dataclass, built once at the edge and passed down.

``thingcore/config.py`` fills it from ``THINGCORE_BROKER__*`` variables and ``thingcore.toml``;
nothing in the broker reads the environment. Durations are seconds (floats) so tests can run
time-based behaviour (keep-alive, snapshots, connect timeouts) in fractions of a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    host: str = "127.0.0.1"
    """Address the plain MQTT listener binds (127.0.0.1: local tools only)."""
    port: int | None = 1884
    """Plain MQTT port; 1883 is left to a Mosquitto on the same machine. None disables it."""
    tls_port: int | None = 8883
    """MQTT over mutual TLS (devices, as on AWS IoT Core); None disables the TLS listener."""
    tls_certfile: Path | None = None
    """Server certificate for a broker run without the registry (``thingcore serve`` uses
    the development CA's and trusts the registered CAs instead)."""
    tls_keyfile: Path | None = None
    tls_session_tickets: int = 1
    """TLS 1.3 session tickets sent after each full handshake (OpenSSL sends 2). One lets a
    device resume its next connection; each ticket costs about a fifth of a handshake's CPU,
    and 0 (no resumption) makes full handshakes cheapest."""
    tls_shutdown_timeout: float = 0.5
    """Seconds a closing TLS connection waits for the client's close_notify before it is cut."""
    tls_client_cafile: Path | None = None
    """CA bundle that client certificates must chain to (broker without the registry)."""

    max_connections: int = 100_000
    max_packet_size: int = 1_048_576
    """Largest whole packet (header included) accepted from a client, in bytes; a larger one
    closes the connection."""
    max_topic_length: int = 65535
    max_topic_levels: int = 128
    max_client_id_length: int = 65535
    max_qos: int = 2
    """Highest QoS granted to subscriptions (the AWS profile grants at most 1)."""
    max_inflight: int = 20
    """Outbound QoS 1/2 messages awaiting acknowledgement per session (Mosquitto's default)."""
    max_topic_alias: int = 10
    """Topic aliases an MQTT 5 client may use towards the server (0: none) [3.2.2.3.8]."""
    max_inbound_qos2: int = 100
    """Inbound QoS 2 messages awaiting PUBREL per session; a client exceeding it is dropped."""
    max_queued_messages: int = 1000
    """Messages queued per session while offline or while the window is full; then dropped."""
    queue_qos0_offline: bool = False
    """Queue QoS 0 messages for offline persistent sessions too (Mosquitto's default: no)."""
    max_retained_messages: int = 1_000_000
    max_output_buffer: int = 8 * 1_048_576
    """Bytes waiting to be sent to one client before it counts as congested: QoS 0 messages
    to it are dropped and QoS 1/2 ones wait in its session queue until it drains."""
    slow_reader_timeout: float = 30.0
    """Seconds a client may stay congested before it is disconnected as a slow reader."""
    max_subscriptions_per_client: int = 10_000
    session_expiry: float | None = None
    """Seconds an offline persistent session is kept; None keeps it until cleaned (MQTT 3.1.1)."""

    connect_timeout: float = 10.0
    """Seconds a new connection may take to send CONNECT [3.1.4]."""
    keepalive_grace: float = 1.5
    """A client is dropped after this many keep-alive periods without a packet [3.1.2.10]."""
    max_keepalive: int = 65535
    housekeeping_interval: float = 1.0
    """How often keep-alive, connect timeouts and session expiry are checked."""

    persistence: bool = True
    """Snapshot sessions and retained messages to the data directory and restore them."""
    snapshot_interval: float = 300.0
    """Seconds between periodic snapshots (one is always written on clean shutdown)."""
    snapshot_file: str = "broker-snapshot.json"

    lifecycle_events: bool = True
    """Publish AWS's presence and subscription events on ``$aws/events/...``."""
    lifecycle_version_ttl: float = 3600.0
    """Seconds after a client's last disconnect when its event ``versionNumber`` restarts."""

    shutdown_timeout: float = 5.0
    log_interval: float = 10.0
    """Minimum seconds between two log lines about the same kind of bad client behaviour."""
    use_uvloop: bool = True

    def __post_init__(self) -> None:
        # ValueError: pydantic reports it against the field when settings are loaded.
        for name in ("port", "tls_port"):
            port = getattr(self, name)
            if port is not None and not 0 <= port <= 65535:
                raise ValueError(f"{name} must be between 0 and 65535 (0 picks a free port)")
        for name in (
            "max_connections",
            "max_packet_size",
            "max_topic_length",
            "max_topic_levels",
            "max_client_id_length",
            "max_inflight",
            "max_inbound_qos2",
            "max_output_buffer",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0 <= self.tls_session_tickets <= 8:
            raise ValueError("tls_session_tickets must be between 0 and 8")
        if self.max_qos not in (0, 1, 2):
            raise ValueError("max_qos must be 0, 1 or 2")
        if self.max_packet_size > 268_435_460:
            raise ValueError("max_packet_size cannot exceed MQTT's 268,435,460 bytes")
        for name in (
            "connect_timeout",
            "keepalive_grace",
            "housekeeping_interval",
            "tls_shutdown_timeout",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be greater than 0")
