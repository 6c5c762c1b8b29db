"""The shadow service: AWS's shadow topics in, documents out, through the Bus.

Requests arrive as Bus messages on ``$aws/things/+/shadow[/name/+]/{get,update,delete}``. The
handler (synchronous, on the broker's dispatch path) parses and validates; a bad request is
answered at once, a good one is queued. One writer task takes everything queued, applies it
in a worker thread in one transaction (``ShadowStore.run``) and only after the commit publishes
the answers: so an ``accepted`` is never seen for an update a crash could lose, and a burst of
updates costs one commit, not one each (group commit).

Beyond AWS, per thing type (``shadows/options.py``): presence written to a named shadow from
the lifecycle events, and the delta pushed when a device subscribes to its delta topic.
Changes made outside MQTT (the CLI) arrive through the change feed as stored messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from broker.bus import Bus, Subscription
from broker.message import Message
from shadows.batch import Kind, Op, Result, rejected
from shadows.config import ShadowSettings
from shadows.document import UpdateRequest, parse_token_request, parse_update
from shadows.errors import ShadowError, ShadowErrorCode, bad_request
from shadows.names import Operation, ShadowKey, ShadowNameError, parse_request_topic
from shadows.options import DEFAULT, ShadowOptions
from shadows.store import SHADOW_CHANGE, ShadowStore

log = logging.getLogger("thingcore.shadows")

REQUEST_FILTERS = (
    "$aws/things/+/shadow/get",
    "$aws/things/+/shadow/update",
    "$aws/things/+/shadow/delete",
    "$aws/things/+/shadow/name/+/get",
    "$aws/things/+/shadow/name/+/update",
    "$aws/things/+/shadow/name/+/delete",
)
PRESENCE_FILTER = "$aws/events/presence/+/+"
SUBSCRIBED_FILTER = "$aws/events/subscriptions/subscribed/+"
MESSAGE_RETENTION = 3600.0

ThingLookup = Callable[[str], tuple[bool, str | None]]
"""Thing name -> (is it in the registry, its thing type)."""

_KINDS = {Operation.GET: Kind.GET, Operation.UPDATE: Kind.UPDATE, Operation.DELETE: Kind.DELETE}


def _no_registry(_thing: str) -> tuple[bool, str | None]:
    return False, None


class ShadowService:
    """Serves shadows on the Bus; use ``async with``."""

    def __init__(
        self,
        settings: ShadowSettings,
        store: ShadowStore,
        bus: Bus,
        *,
        things: ThingLookup = _no_registry,
    ) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.things = things
        self.limits = settings.limits
        self.type_options: dict[str, ShadowOptions] = {}
        self._queue: deque[Op] = deque()
        self._wake = asyncio.Event()
        self._subscriptions: list[Subscription] = []
        self._event_subscriptions: list[Subscription] = []
        self._writer: asyncio.Task[None] | None = None
        self._last_message = 0
        self._pruned_at = time.monotonic()
        self.requests = 0
        self.rejected = 0
        self.throttled = 0
        self.batches = 0
        self.idle = asyncio.Event()
        """Set while nothing is queued or being written (tests and shutdown wait on it)."""
        self.idle.set()

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> ShadowService:
        self.type_options = await asyncio.to_thread(self.store.type_options)
        self._last_message = await asyncio.to_thread(self.store.last_message_id)
        self._writer = asyncio.create_task(self._write_loop(), name="shadow-writer")
        for topic_filter in REQUEST_FILTERS:
            self._subscriptions.append(self.bus.subscribe(topic_filter, self._on_request))
        self._follow_events()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for subscription in (*self._subscriptions, *self._event_subscriptions):
            subscription.cancel()
        self._subscriptions.clear()
        self._event_subscriptions.clear()
        # Answer what was accepted into the queue before stopping (bounded by the queue size),
        # including a batch the writer has taken and is committing right now.
        if not self.idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), 10)
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None

    def _follow_events(self) -> None:
        """Listen to lifecycle events only while some thing type uses them: a subscription
        on ``$aws/events`` makes the broker build an event for every connect."""
        wanted = any(
            o.model.presence.enabled or o.model.push_delta_on_subscribe
            for o in self.type_options.values()
        )
        if wanted and not self._event_subscriptions:
            self._event_subscriptions = [
                self.bus.subscribe(PRESENCE_FILTER, self._on_presence),
                self.bus.subscribe(SUBSCRIBED_FILTER, self._on_subscribed),
            ]
        elif not wanted and self._event_subscriptions:
            for subscription in self._event_subscriptions:
                subscription.cancel()
            self._event_subscriptions = []

    def options_for(self, thing: str) -> tuple[bool, ShadowOptions]:
        exists, thing_type = self.things(thing)
        if thing_type is None:
            return exists, DEFAULT
        return exists, self.type_options.get(thing_type, DEFAULT)

    # -- requests --------------------------------------------------------------------------------

    def _on_request(self, message: Message) -> None:
        parsed = parse_request_topic(message.topic)
        if parsed is None:
            return
        self.requests += 1
        kind = _KINDS[parsed.operation]
        token: str | None = None
        try:
            try:
                key = parsed.validated()
            except ShadowNameError as exc:
                raise bad_request("Invalid thing or shadow name", detail=str(exc)) from None
            request: UpdateRequest | None = None
            if kind is Kind.UPDATE:
                request = parse_update(message.payload, self.limits)
                token = request.client_token
            else:
                token = parse_token_request(message.payload, self.limits)
            exists, options = self.options_for(key.thing)
            if self.settings.require_thing and not exists:
                raise ShadowError(ShadowErrorCode.NOT_FOUND, "Thing not found", token)
            self._enqueue(Op(kind, key, request, token, message.client_id, options))
        except ShadowError as exc:
            self._reject(parsed.key, kind, exc.with_token(token))

    def _reject(self, key: ShadowKey, kind: Kind, error: ShadowError) -> None:
        self.rejected += 1
        self._publish(rejected(key, kind, error, int(time.time())))

    def _enqueue(self, op: Op) -> None:
        if len(self._queue) >= self.settings.queue_size:
            self.throttled += 1
            raise ShadowError(ShadowErrorCode.TOO_MANY_REQUESTS, "Too Many Requests", op.token)
        self._queue.append(op)
        self.idle.clear()
        self._wake.set()

    def _publish(self, result: Result) -> None:
        for topic, payload in result.messages:
            self.bus.publish(topic, payload, qos=1)

    async def _write_loop(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                self.idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            take = min(len(queue), self.settings.max_batch)
            ops = [queue.popleft() for _ in range(take)]
            try:
                results = await asyncio.to_thread(self.store.run, ops)
            except Exception:  # noqa: BLE001 - one bad batch must not stop the service
                log.exception("applying %d shadow requests failed", len(ops))
                failure = ShadowError(ShadowErrorCode.INTERNAL, "Internal service failure")
                now = int(time.time())
                results = [
                    rejected(op.key, op.kind, failure.with_token(op.token), now) for op in ops
                ]
            self.batches += 1
            for result in results:
                if result.error is not None:
                    self.rejected += 1
                self._publish(result)

    async def drain(self) -> None:
        """Wait until every queued request has been committed and answered."""
        await self.idle.wait()

    # -- beyond AWS: presence and delta on subscribe ---------------------------------------------

    def _on_presence(self, message: Message) -> None:
        try:
            event = json.loads(message.payload)
            client_id = event["clientId"]
            connected = event["eventType"] == "connected"
        except (ValueError, KeyError, TypeError):
            return
        exists, options = self.options_for(client_id)
        presence = options.model.presence
        if not (exists and presence.enabled):
            return
        reported: dict[str, Any] = {
            "connected": connected,
            "since": event.get("timestamp"),
            "versionNumber": event.get("versionNumber"),
            "disconnectReason": None if connected else event.get("disconnectReason"),
        }
        key = ShadowKey(client_id, presence.shadow)
        request = UpdateRequest({"reported": reported})
        try:
            self._enqueue(Op(Kind.UPDATE, key, request, None, client_id, options))
        except ShadowError:
            log.warning("shadow queue full: presence of %s not written", client_id)

    def _on_subscribed(self, message: Message) -> None:
        try:
            event = json.loads(message.payload)
            topics = event["topics"]
            client_id = event["clientId"]
        except (ValueError, KeyError, TypeError):
            return
        for topic in topics if isinstance(topics, list) else ():
            if not isinstance(topic, str) or not topic.endswith("/update/delta"):
                continue
            parsed = parse_request_topic(topic[: -len("/delta")])
            if parsed is None:
                continue
            try:
                key = parsed.validated()
            except ShadowNameError:
                continue
            exists, options = self.options_for(key.thing)
            if not options.model.push_delta_on_subscribe:
                continue
            with contextlib.suppress(ShadowError):
                self._enqueue(Op(Kind.PUSH_DELTA, key, None, None, client_id, options))

    # -- the change feed -------------------------------------------------------------------------

    async def on_changes(self, kinds: set[str], keys: dict[str, set[str]]) -> None:
        """React to committed changes: publish messages stored by the CLI, reload thing type
        options, delete the shadows of deleted things (``delete_with_thing``)."""
        if SHADOW_CHANGE in kinds:
            await self._publish_stored()
        if "type" in kinds or "thing" in kinds:
            self.type_options = await asyncio.to_thread(self.store.type_options)
            self._follow_events()
        if self.settings.delete_with_thing and "thing" in kinds:
            for thing in keys.get("thing", set()):
                exists, _ = self.things(thing)
                if not exists:
                    removed = await asyncio.to_thread(self.store.delete_thing_shadows, thing)
                    if removed:
                        log.info("deleted %d shadows of deleted thing %s", removed, thing)
        if time.monotonic() - self._pruned_at > MESSAGE_RETENTION / 4:
            self._pruned_at = time.monotonic()
            await asyncio.to_thread(self.store.prune_messages, time.time() - MESSAGE_RETENTION)

    async def _publish_stored(self) -> None:
        while True:
            rows = await asyncio.to_thread(self.store.messages_after, self._last_message)
            for message_id, topic, payload in rows:
                self.bus.publish(topic, payload, qos=1)
                self._last_message = message_id
            if len(rows) < 1000:
                return
