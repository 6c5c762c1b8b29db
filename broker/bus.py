"""The Bus: how services (shadows, rules) subscribe and publish without a socket.

In one process it is the broker's own router (``InProcessBus``); in scale-out it will be an
MQTT 5 client on an external broker. Handlers are synchronous and must return quickly; a
handler that needs IO puts work on its own bounded queue served by its own task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from broker.message import Message
from broker.properties import Properties
from broker.router import Options
from broker.topics import validate_topic_filter, validate_topic_name

if TYPE_CHECKING:
    from broker.server import Broker

log = logging.getLogger("broker.bus")

Handler = Callable[[Message], None]


class Subscription(Protocol):
    def cancel(self) -> None:
        """Stop delivering to this subscription's handler."""


class Bus(Protocol):
    def subscribe(
        self,
        topic_filter: str,
        handler: Handler,
        *,
        group: str | None = None,
        exclusive: bool = False,
    ) -> Subscription: ...

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None: ...

    def hold_ack(self, waiter: asyncio.Future[None]) -> None:
        """Make the acknowledgement of the client PUBLISH being routed wait for ``waiter``
        (a service's own commit); a bus without clients ignores it."""


class _HandlerSubscriber:
    """Adapts a handler to the router's subscriber interface."""

    __slots__ = ("_bus", "errors", "handler")
    online = True

    def __init__(self, bus: InProcessBus, handler: Handler) -> None:
        self._bus = bus
        self.handler = handler
        self.errors = 0

    def deliver(self, message: Message, options: Options, retain: bool) -> None:
        try:
            self.handler(message)
        except Exception:  # noqa: BLE001 - a service handler is code the router does not control
            self.errors += 1
            self._bus.broker.stats.bus_handler_errors += 1
            log.exception("bus handler %r failed on topic %r", self.handler, message.topic)


class InProcessSubscription:
    __slots__ = ("_active", "_bus", "_exclusive", "_filter", "_group", "subscriber")

    def __init__(
        self,
        bus: InProcessBus,
        subscriber: _HandlerSubscriber,
        topic_filter: str,
        group: str | None,
        exclusive: bool,
    ) -> None:
        self._bus = bus
        self.subscriber = subscriber
        self._filter = topic_filter
        self._group = group
        self._exclusive = exclusive
        self._active = True

    def cancel(self) -> None:
        if self._active:
            self._active = False
            self._bus.broker.router.unsubscribe(
                self.subscriber, self._filter, share_group=self._group, exclusive=self._exclusive
            )


class InProcessBus:
    """The Bus over the broker's router: no sockets, no copies, no policy checks."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def subscribe(
        self,
        topic_filter: str,
        handler: Handler,
        *,
        group: str | None = None,
        exclusive: bool = False,
    ) -> InProcessSubscription:
        validate_topic_filter(topic_filter, self.broker.topic_limits)
        subscriber = _HandlerSubscriber(self, handler)
        # Services take messages at QoS 1: in process nothing is lost between router and handler.
        self.broker.router.subscribe(
            subscriber, topic_filter, 1, share_group=group, exclusive=exclusive
        )
        return InProcessSubscription(self, subscriber, topic_filter, group, exclusive)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        validate_topic_name(topic, self.broker.topic_limits)
        broker = self.broker
        # No client waits for an acknowledgement of a service's message, but a service may
        # publish while a client's message is routed (a shadow's rejection): keep that
        # message's holds, and drop only what this one's routing added.
        saved = broker.ack_holds
        broker.ack_holds = None
        broker.publish(Message(topic, payload, qos, retain, properties=properties))
        broker.ack_holds = saved

    def hold_ack(self, waiter: asyncio.Future[None]) -> None:
        """Make the acknowledgement of the client PUBLISH being routed wait for ``waiter``."""
        self.broker.hold_ack(waiter)
