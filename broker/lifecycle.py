"""Lifecycle events on AWS's reserved topics (reference section 5.1).

``$aws/events/presence/connected|disconnected/{clientId}`` and
``$aws/events/subscriptions/subscribed|unsubscribed/{clientId}``, with AWS's fields. They are
published by the broker itself (no policy check on publishing; subscribers still need
``iot:Subscribe``/``iot:Receive``), synchronously on the event loop, so beyond AWS they reach
every subscriber in the order they happened for a client.

``versionNumber`` grows with every connection of a client id; a connect and its disconnect
share it, so consumers can discard a stale disconnect. It restarts at 0 once a client has been
gone for ``lifecycle_version_ttl`` seconds, as AWS's does after about an hour.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from broker.message import Message

if TYPE_CHECKING:
    from broker.server import Broker

PRESENCE = "$aws/events/presence/"
MAX_TRACKED_CLIENTS = 100_000
"""Clients whose event numbering is remembered; beyond, the oldest disconnected are forgotten
(their next connection is numbered from 0 again, as after AWS's hour)."""
SUBSCRIPTIONS = "$aws/events/subscriptions/"


@dataclass(slots=True)
class _Presence:
    version: int
    connected: bool
    changed_at: float
    session_identifier: str = ""
    """Made when an event first needs it, so connects nobody watches cost no uuid."""

    def identifier(self) -> str:
        if not self.session_identifier:
            self.session_identifier = uuid.uuid4().hex
        return self.session_identifier


def _millis() -> int:
    return int(time.time() * 1000)


class Lifecycle:
    """Publishes a client's presence and subscription changes through the broker."""

    def __init__(self, broker: Broker, *, enabled: bool, version_ttl: float) -> None:
        self.broker = broker
        self.enabled = enabled
        self.version_ttl = version_ttl
        self._clients: dict[str, _Presence] = {}

    @staticmethod
    def _silent(client_id: str) -> bool:
        # AWS: clients whose id contains a wildcard get no lifecycle events (the id would make
        # the event topic a filter).
        return "#" in client_id or "+" in client_id

    def _watched(self) -> bool:
        # Only filters that can match "$aws/events/..." can receive an event [4.7.2]: with
        # none, the JSON is not even built (connection churn is a hot path). The shadow
        # service's "$aws/things/..." subscriptions do not count.
        return self.broker.router.may_match_under("$aws", "events")

    def _publish(self, topic: str, event: dict[str, object]) -> None:
        payload = json.dumps(event, separators=(",", ":")).encode()
        self.broker.stats.lifecycle_events += 1
        self.broker.publish(Message(topic, payload, 1, False))

    def connected(self, client_id: str, principal: str | None, address: str | None) -> None:
        if not self.enabled or self._silent(client_id):
            return
        clients = self._clients
        state = clients.get(client_id)
        version = 0 if state is None else state.version + 1
        if state is None and len(clients) >= MAX_TRACKED_CLIENTS:
            self._forget_oldest()
        state = clients[client_id] = _Presence(version, True, time.monotonic())
        if not self._watched():
            return
        event: dict[str, object] = {
            "clientId": client_id,
            "timestamp": _millis(),
            "eventType": "connected",
            "sessionIdentifier": state.identifier(),
            "principalIdentifier": principal or "anonymous",
            "versionNumber": version,
        }
        if address is not None:
            event["ipAddress"] = address
        self._publish(f"{PRESENCE}connected/{client_id}", event)

    def disconnected(self, client_id: str, principal: str | None, reason: str) -> None:
        if not self.enabled or self._silent(client_id):
            return
        state = self._clients.get(client_id)
        if state is None or not state.connected:
            return
        state.connected = False
        state.changed_at = time.monotonic()
        if not self._watched():
            return
        self._publish(
            f"{PRESENCE}disconnected/{client_id}",
            {
                "clientId": client_id,
                "timestamp": _millis(),
                "eventType": "disconnected",
                "sessionIdentifier": state.identifier(),
                "principalIdentifier": principal or "anonymous",
                "clientInitiatedDisconnect": reason == "CLIENT_INITIATED_DISCONNECT",
                "disconnectReason": reason,
                "versionNumber": state.version,
            },
        )

    def subscriptions(
        self, client_id: str, principal: str | None, topics: list[str], subscribed: bool
    ) -> None:
        if not self.enabled or not topics or self._silent(client_id) or not self._watched():
            return
        state = self._clients.get(client_id)
        kind = "subscribed" if subscribed else "unsubscribed"
        self._publish(
            f"{SUBSCRIPTIONS}{kind}/{client_id}",
            {
                "clientId": client_id,
                "timestamp": _millis(),
                "eventType": kind,
                "sessionIdentifier": state.identifier() if state else uuid.uuid4().hex,
                "principalIdentifier": principal or "anonymous",
                "topics": topics,
            },
        )

    def _forget_oldest(self) -> None:
        """Bound the numbering table under churn of unique client ids (auto-assigned ones,
        say): forget the longest-known disconnected clients, a tenth of the table at once."""
        excess = len(self._clients) - int(MAX_TRACKED_CLIENTS * 0.9)
        stale: list[str] = []
        for client, state in self._clients.items():
            if len(stale) >= excess:
                break
            if not state.connected:
                stale.append(client)
        for client in stale:
            del self._clients[client]

    def prune(self) -> None:
        """Forget clients gone longer than the TTL: their numbering starts again at 0."""
        if not self._clients:
            return
        horizon = time.monotonic() - self.version_ttl
        stale = [
            client
            for client, state in self._clients.items()
            if not state.connected and state.changed_at < horizon
        ]
        for client in stale:
            del self._clients[client]
