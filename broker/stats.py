"""Broker counters and rate-limited logging of client misbehaviour.

Counting is a plain attribute increment; nothing on the per-message path logs. Bad input is
logged at most once per ``interval`` seconds per kind, with the number suppressed since.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

log = logging.getLogger("broker")


@dataclass(slots=True)
class BrokerStats:
    connections_accepted: int = 0
    connections_refused: int = 0
    connections_current: int = 0
    messages_received: int = 0
    messages_delivered: int = 0
    messages_dropped_queue_full: int = 0
    messages_dropped_offline_qos0: int = 0
    messages_dropped_not_authorized: int = 0
    messages_dropped_slow_reader: int = 0
    retained_dropped_store_full: int = 0
    malformed_packets: int = 0
    protocol_violations: int = 0
    oversize_packets: int = 0
    connect_timeouts: int = 0
    keepalive_timeouts: int = 0
    slow_reader_disconnects: int = 0
    takeovers: int = 0
    wills_published: int = 0
    sessions_expired: int = 0
    messages_expired: int = 0
    messages_dropped_too_large: int = 0
    bus_handler_errors: int = 0
    tls_handshake_failures: int = 0
    kicked_by_policy: int = 0
    lifecycle_events: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class RateLimitedLog:
    """Logs a warning per kind at most once per ``interval`` seconds."""

    def __init__(self, interval: float, logger: logging.Logger = log) -> None:
        self.interval = interval
        self._logger = logger
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> bool:
        """Log unless ``kind`` was logged less than ``interval`` ago; True when it logged."""
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return False
        self._last[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += " (%d similar suppressed)"
            args = (*args, suppressed)
        self._logger.warning(message, *args)
        return True
