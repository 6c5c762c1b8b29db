"""A client's session: subscriptions, the outbound QoS 1/2 window, the offline queue [4.1].

A session outlives its connection when the client asked for a persistent one (clean session
0). It is the router's subscriber: ``deliver`` writes to the live connection, or queues while
the window is full or the client is away. All state changes are synchronous and bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING

from broker.auth import AuthHooks, Identity
from broker.config import BrokerSettings
from broker.message import Message
from broker.router import NO_LOCAL, RETAIN_AS_PUBLISHED, Options, option_identifier
from broker.stats import BrokerStats

if TYPE_CHECKING:
    from broker.connection import Connection

# Outbound in-flight states.
AWAIT_ACK = 0  # QoS 1 PUBLISH sent, waiting for PUBACK; or QoS 2 PUBLISH sent, waiting for PUBREC
AWAIT_COMP = 1  # QoS 2 PUBREL sent, waiting for PUBCOMP


Identifiers = tuple[int, ...]
"""MQTT 5 subscription identifiers a delivery carries (empty for most)."""
_NONE: Identifiers = ()


class Inflight:
    __slots__ = ("identifiers", "message", "qos", "retain", "state")

    def __init__(
        self,
        message: Message,
        qos: int,
        retain: bool,
        state: int = AWAIT_ACK,
        identifiers: Identifiers = _NONE,
    ) -> None:
        self.message = message
        self.qos = qos
        self.retain = retain
        self.state = state
        self.identifiers = identifiers


Queued = tuple[Message, int, bool, Identifiers]


class Session:
    """Per-client-id state that the broker keeps across connections when asked to."""

    __slots__ = (
        "_hooks",
        "_next_pid",
        "_settings",
        "_stats",
        "clean",
        "client_id",
        "connection",
        "disconnected_at",
        "expiry_interval",
        "identity",
        "inbound_qos2",
        "inflight",
        "queue",
        "receive_maximum",
        "subscriptions",
        "pending_will",
        "will_timer",
    )

    def __init__(
        self,
        client_id: str,
        clean: bool,
        settings: BrokerSettings,
        stats: BrokerStats,
        hooks: AuthHooks,
    ) -> None:
        self.client_id = client_id
        self.clean = clean
        self.identity = Identity(client_id)
        self.connection: Connection | None = None
        self.disconnected_at: float | None = None
        self.subscriptions: dict[str, int] = {}
        """Topic filters as the client wrote them (``$share/...`` included) -> granted QoS."""
        self.inflight: dict[int, Inflight] = {}
        self.queue: deque[Queued] = deque()
        self.receive_maximum = settings.max_inflight
        """Outbound QoS 1/2 window: ours, or less when an MQTT 5 client asks [3.3.4]."""
        self.expiry_interval: float | None = 0.0 if clean else settings.session_expiry
        """Seconds the session outlives its connection; None: until cleaned (MQTT 3.1.1)."""
        self.inbound_qos2: set[int] = set()
        self._next_pid = 0
        self.will_timer: asyncio.TimerHandle | None = None
        self.pending_will: Message | None = None
        """A delayed MQTT 5 will waiting to be published [3.1.3.2.2]."""
        self._settings = settings
        self._stats = stats
        self._hooks = hooks

    def __repr__(self) -> str:
        return f"Session({self.client_id!r}, clean={self.clean}, online={self.online})"

    @property
    def online(self) -> bool:
        return self.connection is not None

    # -- delivery --------------------------------------------------------------------------

    def deliver(self, message: Message, options: Options, retain: bool) -> None:
        if type(options) is int and options < 4:
            # A plain subscription (every MQTT 3.1.1 one): the options are the granted QoS.
            qos = options
            identifiers = _NONE
        else:
            resolved = self._resolve(message, options, retain)
            if resolved is None:
                return
            qos, retain, identifiers = resolved
        if message.qos < qos:
            qos = message.qos
        hooks = self._hooks
        if hooks.checks_receive and not hooks.may_receive(self.identity, message.topic):
            self._stats.messages_dropped_not_authorized += 1
            return
        conn = self.connection
        if conn is None:
            if qos == 0 and not self._settings.queue_qos0_offline:
                self._stats.messages_dropped_offline_qos0 += 1
                return
            self._enqueue(message, qos, retain, identifiers)
            return
        if qos == 0:
            if conn.congested_since is not None:
                # The client is not reading: QoS 0 is "at most once", drop rather than buffer.
                self._stats.messages_dropped_slow_reader += 1
                return
            if conn.send_publish(message, 0, 0, retain, False, identifiers):
                self._stats.messages_delivered += 1
        elif (
            not self.queue
            and len(self.inflight) < self.receive_maximum
            and conn.congested_since is None
        ):
            pid = self._allocate_pid()
            self.inflight[pid] = Inflight(message, qos, retain, AWAIT_ACK, identifiers)
            if conn.send_publish(message, qos, pid, retain, False, identifiers):
                self._stats.messages_delivered += 1
            else:
                del self.inflight[pid]  # not sendable to this client (size, expiry)
        else:
            self._enqueue(message, qos, retain, identifiers)

    def _resolve(
        self, message: Message, options: Options, retain: bool
    ) -> tuple[int, bool, Identifiers] | None:
        """QoS, RETAIN flag and identifiers for a delivery under MQTT 5 subscription options.

        None when every matching subscription has No Local and the message is our own [3.8.3.1].
        """
        entries = (options,) if isinstance(options, int) else options
        qos = -1
        as_published = False
        identifiers: list[int] = []
        own = message.client_id is not None and message.client_id == self.client_id
        for entry in entries:
            if entry & NO_LOCAL and own:
                continue
            if (entry & 3) > qos:
                qos = entry & 3
            if entry & RETAIN_AS_PUBLISHED:
                as_published = True
            identifier = option_identifier(entry)
            if identifier:
                identifiers.append(identifier)
        if qos < 0:
            return None
        # [3.3.1.3] a forwarded message has RETAIN 0 unless Retain As Published is set.
        flag = retain or (as_published and message.retain)
        return qos, flag, tuple(identifiers)

    def _enqueue(self, message: Message, qos: int, retain: bool, identifiers: Identifiers) -> None:
        if len(self.queue) >= self._settings.max_queued_messages:
            # Drop the newest, as Mosquitto does: what is queued keeps its order.
            self._stats.messages_dropped_queue_full += 1
            return
        self.queue.append((message, qos, retain, identifiers))

    def _allocate_pid(self) -> int:
        pid = self._next_pid
        inflight = self.inflight
        while True:
            pid = pid % 65535 + 1
            if pid not in inflight:
                self._next_pid = pid
                return pid

    def fill_window(self) -> None:
        """Move queued messages into the in-flight window while there is room."""
        conn = self.connection
        if conn is None:
            return
        queue = self.queue
        limit = self.receive_maximum
        while queue and conn.congested_since is None:
            message, qos, retain, identifiers = queue[0]
            if qos and len(self.inflight) >= limit:
                return
            queue.popleft()
            if message.expires_at is not None and message.expires_at <= time.time():
                # [3.3.2.3.3] an expired message is not delivered.
                self._stats.messages_expired += 1
                continue
            if qos == 0:
                sent = conn.send_publish(message, 0, 0, retain, False, identifiers)
            else:
                pid = self._allocate_pid()
                self.inflight[pid] = Inflight(message, qos, retain, AWAIT_ACK, identifiers)
                sent = conn.send_publish(message, qos, pid, retain, False, identifiers)
                if not sent:
                    del self.inflight[pid]
            if sent:
                self._stats.messages_delivered += 1

    # -- acknowledgements from the client ----------------------------------------------------

    def on_puback(self, pid: int) -> None:
        entry = self.inflight.get(pid)
        if entry is not None and entry.qos == 1:
            del self.inflight[pid]
            if self.queue:
                self.fill_window()

    def on_pubrec(self, pid: int) -> None:
        entry = self.inflight.get(pid)
        if entry is not None and entry.qos == 2:
            entry.state = AWAIT_COMP

    def on_pubrec_failed(self, pid: int) -> None:
        """An MQTT 5 PUBREC with an error code: the QoS 2 flow ends there [4.3.3]."""
        entry = self.inflight.get(pid)
        if entry is not None and entry.qos == 2 and entry.state == AWAIT_ACK:
            del self.inflight[pid]
            if self.queue:
                self.fill_window()

    def on_pubcomp(self, pid: int) -> None:
        entry = self.inflight.get(pid)
        if entry is not None and entry.state == AWAIT_COMP:
            del self.inflight[pid]
            if self.queue:
                self.fill_window()

    # -- connection changes -----------------------------------------------------------------

    def attach(self, connection: Connection) -> None:
        self.connection = connection
        self.disconnected_at = None

    def resume(self) -> None:
        """Retransmit the in-flight window, then drain the queue [4.4]."""
        conn = self.connection
        if conn is None:
            return
        for pid, entry in list(self.inflight.items()):
            if entry.state == AWAIT_ACK:
                if not conn.send_publish(
                    entry.message, entry.qos, pid, entry.retain, True, entry.identifiers
                ):
                    del self.inflight[pid]
            else:
                conn.send_pubrel(pid)
        self.fill_window()

    def detach(self, now: float) -> None:
        self.connection = None
        self.disconnected_at = now
