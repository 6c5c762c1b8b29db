"""A client's session: subscriptions, the outbound QoS 1/2 window, the offline queue [4.1].

A session outlives its connection when the client asked for a persistent one (clean session
0). It is the router's subscriber: ``deliver`` writes to the live connection, or queues while
the window is full or the client is away. All state changes are synchronous and bounded.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from broker.auth import AuthHooks, Identity
from broker.config import BrokerSettings
from broker.message import Message
from broker.stats import BrokerStats

if TYPE_CHECKING:
    from broker.connection import Connection

# Outbound in-flight states.
AWAIT_ACK = 0  # QoS 1 PUBLISH sent, waiting for PUBACK; or QoS 2 PUBLISH sent, waiting for PUBREC
AWAIT_COMP = 1  # QoS 2 PUBREL sent, waiting for PUBCOMP


class Inflight:
    __slots__ = ("message", "qos", "retain", "state")

    def __init__(self, message: Message, qos: int, retain: bool, state: int = AWAIT_ACK) -> None:
        self.message = message
        self.qos = qos
        self.retain = retain
        self.state = state


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
        "identity",
        "inbound_qos2",
        "inflight",
        "queue",
        "subscriptions",
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
        self.queue: deque[tuple[Message, int, bool]] = deque()
        self.inbound_qos2: set[int] = set()
        self._next_pid = 0
        self._settings = settings
        self._stats = stats
        self._hooks = hooks

    def __repr__(self) -> str:
        return f"Session({self.client_id!r}, clean={self.clean}, online={self.online})"

    @property
    def online(self) -> bool:
        return self.connection is not None

    # -- delivery --------------------------------------------------------------------------

    def deliver(self, message: Message, qos: int, retain: bool) -> None:
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
            self._enqueue(message, qos, retain)
            return
        if qos == 0:
            if conn.congested_since is not None:
                # The client is not reading: QoS 0 is "at most once", drop rather than buffer.
                self._stats.messages_dropped_slow_reader += 1
                return
            conn.send_publish(message, 0, 0, retain, False)
            self._stats.messages_delivered += 1
        elif (
            not self.queue
            and len(self.inflight) < self._settings.max_inflight
            and conn.congested_since is None
        ):
            pid = self._allocate_pid()
            self.inflight[pid] = Inflight(message, qos, retain)
            conn.send_publish(message, qos, pid, retain, False)
            self._stats.messages_delivered += 1
        else:
            self._enqueue(message, qos, retain)

    def _enqueue(self, message: Message, qos: int, retain: bool) -> None:
        if len(self.queue) >= self._settings.max_queued_messages:
            # Drop the newest, as Mosquitto does: what is queued keeps its order.
            self._stats.messages_dropped_queue_full += 1
            return
        self.queue.append((message, qos, retain))

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
        limit = self._settings.max_inflight
        while queue and conn.congested_since is None:
            message, qos, retain = queue[0]
            if qos and len(self.inflight) >= limit:
                return
            queue.popleft()
            if qos == 0:
                conn.send_publish(message, 0, 0, retain, False)
            else:
                pid = self._allocate_pid()
                self.inflight[pid] = Inflight(message, qos, retain)
                conn.send_publish(message, qos, pid, retain, False)
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
        for pid, entry in self.inflight.items():
            if entry.state == AWAIT_ACK:
                conn.send_publish(entry.message, entry.qos, pid, entry.retain, True)
            else:
                conn.send_pubrel(pid)
        self.fill_window()

    def detach(self, now: float) -> None:
        self.connection = None
        self.disconnected_at = now
