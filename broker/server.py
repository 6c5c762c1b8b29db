"""The broker: sessions, routing, retained messages, listeners and their lifecycle.

``Broker`` assembles the parts (router, retained store, sessions, listeners, housekeeping,
snapshots) and owns the decisions that span connections: client-id takeover, wills, session
clean-up. Packet handling lives in ``connection``, per-client delivery state in ``session``.

Shutdown order: stop accepting, close every connection (wills are not published for
connections the server closes at shutdown), write the final snapshot, stop background tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Literal

from broker import snapshot
from broker.auth import AllowAll, AuthHooks, Identity
from broker.bus import InProcessBus
from broker.config import BrokerSettings
from broker.connection import Connection
from broker.lifecycle import Lifecycle
from broker.listeners import (
    Listener,
    ListenerSpec,
    StaticTlsContext,
    TlsContextSource,
    server_ssl_context,
    start_listener,
)
from broker.message import Message
from broker.properties import Properties
from broker.reason_codes import ReasonCode
from broker.router import RetainedStore, Router
from broker.session import Inflight, Session
from broker.stats import BrokerStats, RateLimitedLog
from broker.topics import TopicLimits, parse_shared
from thingcore.errors import ConfigError

log = logging.getLogger("broker")

_TOPIC_CACHE_SIZE = 50_000
_PROPERTY_CACHE_SIZE = 10_000
_PROPERTY_CACHE_BLOCK = 512  # bytes; longer blocks (big correlation data) are decoded each time


class Broker:
    """An MQTT broker; use as ``async with Broker(settings) as broker``."""

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        data_dir: Path | None = None,
        hooks: AuthHooks | None = None,
        tls: TlsContextSource | None = None,
    ) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.hooks: AuthHooks = hooks if hooks is not None else AllowAll()
        self.tls = tls
        """Server TLS contexts for the TLS listener; None builds one from the tls_* settings."""
        self.stats = BrokerStats()
        self.log = RateLimitedLog(settings.log_interval)
        self.router = Router()
        self.retained = RetainedStore(settings.max_retained_messages)
        self.sessions: dict[str, Session] = {}
        self.connections: set[Connection] = set()
        self.topic_limits = TopicLimits(settings.max_topic_length, settings.max_topic_levels)
        self.topic_cache: dict[bytes, str] = {}
        self.ack_holds: list[asyncio.Future[None]] | None = None
        """Set by a service while a PUBLISH is routed when that message's acknowledgement must
        wait (the rules outbox's commit with ``puback_after_commit``); taken by the connection."""
        self.property_cache: dict[bytes, tuple[Properties, Properties | None]] = {}
        self.bus = InProcessBus(self)
        self.lifecycle = Lifecycle(
            self, enabled=settings.lifecycle_events, version_ttl=settings.lifecycle_version_ttl
        )
        self.ports: dict[str, int] = {}
        """Bound port per listener name ("mqtt", "mqtts"), known once started."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: list[Listener] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._handshakes: set[asyncio.Task[None]] = set()
        self._dirty: list[Connection] = []
        self._expiring: set[Session] = set()
        """Offline sessions with a finite expiry interval, checked by housekeeping."""
        self._flush_scheduled = False
        self._stopping = False
        self._drained = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the broker has not been started")
        return self._loop

    async def __aenter__(self) -> Broker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.settings.persistence and self.data_dir is not None:
            self._restore()
        try:
            for spec in self._listener_specs():
                server = await start_listener(self, spec)
                self._servers.append(server)
                self.ports[spec.name] = server.sockets[0].getsockname()[1]
        except BaseException:
            await self._close_servers()
            raise
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="broker-housekeeping"))
        if self._snapshot_path() is not None and self.settings.snapshot_interval > 0:
            self._tasks.append(asyncio.create_task(self._snapshots(), name="broker-snapshots"))

    def _listener_specs(self) -> list[ListenerSpec]:
        s = self.settings
        specs = []
        if s.port is not None:
            specs.append(ListenerSpec("mqtt", s.host, s.port))
        if s.tls_port is not None:
            source = self.tls
            if source is None:
                if s.tls_certfile is None:
                    raise ConfigError(
                        "tls_port is set but tls_certfile is not: give the server certificate"
                    )
                source = StaticTlsContext(
                    server_ssl_context(
                        s.tls_certfile,
                        s.tls_keyfile,
                        s.tls_client_cafile,
                        session_tickets=s.tls_session_tickets,
                    )
                )
            specs.append(ListenerSpec("mqtts", s.host, s.tls_port, source))
        return specs

    def spawn_handshake(self, handshake: Coroutine[None, None, None]) -> None:
        """Run a TLS handshake task that ``stop`` cancels if it is still going."""
        task = self.loop.create_task(handshake)
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        await self._close_servers()
        for handshake in list(self._handshakes):
            handshake.cancel()
        for session in self.sessions.values():
            if session.will_timer is not None:
                session.will_timer.cancel()
                session.will_timer = None
                session.pending_will = None
        for conn in list(self.connections):
            conn.will = None  # a server shutting down is not the client's failure
            conn.close("SERVER_INITIATED_DISCONNECT", ReasonCode.SERVER_SHUTTING_DOWN)
        if self.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), self.settings.shutdown_timeout)
        for conn in list(self.connections):
            conn.abort("SERVER_INITIATED_DISCONNECT")
        await asyncio.sleep(0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._snapshot_path() is not None:
            await self.save_snapshot()

    async def _close_servers(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    # -- output batching -------------------------------------------------------------------

    def mark_dirty(self, conn: Connection) -> None:
        """Queue ``conn`` for the once-per-loop-pass flush."""
        self._dirty.append(conn)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty = self._dirty
        self._dirty = []
        for conn in dirty:
            try:
                conn.flush()
            except Exception:  # noqa: BLE001 - one connection's failure must not strand others
                log.exception("flushing output to %s failed; closing it", conn.describe())
                conn.abort("SERVER_ERROR")

    # -- connections and sessions ----------------------------------------------------------

    def connection_made(self, conn: Connection) -> None:
        if self._stopping or len(self.connections) >= self.settings.max_connections:
            self.stats.connections_refused += 1
            self.log.warning(
                "max_connections",
                "refusing a connection from %s: %d connections is the limit (max_connections)",
                conn.describe(),
                self.settings.max_connections,
            )
            conn.abort("SERVER_ERROR")
            return
        self.connections.add(conn)
        self.stats.connections_accepted += 1
        self.stats.connections_current = len(self.connections)

    def connection_lost(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self.stats.connections_current = len(self.connections)
        if self._stopping and not self.connections:
            self._drained.set()
        self._end_connection(conn)

    def _end_connection(self, conn: Connection) -> None:
        session = conn.session
        if session is None:
            return
        conn.session = None
        self.lifecycle.disconnected(
            session.client_id, session.identity.principal, conn.disconnect_reason
        )
        will = conn.will
        conn.will = None
        if session.connection is conn:
            if session.expiry_interval == 0:
                self._discard_session(session)
            else:
                session.detach(self.loop.time())
                if session.expiry_interval is not None:
                    self._expiring.add(session)
        if will is not None and not conn.graceful:
            # [3.1.2-8] the will is published when the connection ends without DISCONNECT.
            delay = conn.limits.will_delay if conn.limits is not None else 0.0
            if delay > 0 and session.client_id in self.sessions:
                # [3.1.3.2.2] MQTT 5 Will Delay: wait, unless the client comes back or the
                # session ends first (then it is published at once, see _discard_session).
                session.pending_will = will
                session.will_timer = self.loop.call_later(
                    delay, self._publish_delayed_will, session
                )
            else:
                self._publish_will(session, will)

    def _publish_will(self, session: Session, will: Message) -> None:
        # With the same authority as any publish by that client, checked now rather than at
        # CONNECT, so a permission revoked meanwhile is honoured.
        if will.properties is not None and will.properties.message_expiry_interval is not None:
            # [3.1.3.2.4] a will's expiry counts from when it is published, not from CONNECT.
            will = Message(
                will.topic,
                will.payload,
                will.qos,
                will.retain,
                client_id=will.client_id,
                principal=will.principal,
                thing=will.thing,
                properties=will.properties,
            )
        if self.hooks.may_publish(session.identity, will.topic, will.retain):
            self.stats.wills_published += 1
            self.publish(will)
        else:
            self.stats.messages_dropped_not_authorized += 1

    def _publish_delayed_will(self, session: Session) -> None:
        session.will_timer = None
        will, session.pending_will = session.pending_will, None
        if will is not None:
            self._publish_will(session, will)

    def attach(
        self,
        conn: Connection,
        client_id: str,
        clean: bool,
        identity: Identity,
        expiry_interval: float | None | Literal["default"] = "default",
    ) -> tuple[Session, bool]:
        """Bind ``conn`` to the session of ``client_id``; returns it and "session present".

        ``clean`` discards an existing session (3.1.1 Clean Session, 5.0 Clean Start);
        ``expiry_interval`` is how long the session outlives this connection ("default": 0
        for a clean 3.1.1 session, ``session_expiry`` for a persistent one).
        """
        existing = self.sessions.get(client_id)
        if existing is not None and existing.connection is not None:
            # [3.1.4-2] a second connection with the same client id takes over.
            old = existing.connection
            self.stats.takeovers += 1
            old.send_disconnect(ReasonCode.SESSION_TAKEN_OVER)  # MQTT 5 only
            old.disconnect_reason = "DUPLICATE_CLIENTID"
            self._end_connection(old)
            if old.limits is not None:
                old.close("DUPLICATE_CLIENTID")
            else:
                old.abort("DUPLICATE_CLIENTID")
            # Ending the old connection discards its session if that one was clean.
            existing = self.sessions.get(client_id)
        if existing is not None and clean:
            self._discard_session(existing)
            existing = None
        if existing is None:
            session = Session(client_id, clean, self.settings, self.stats, self.hooks)
            self.sessions[client_id] = session
            present = False
        else:
            session = existing
            present = True
        session.identity = identity
        if session.will_timer is not None:
            # [3.1.3.2.2] the client is back before its will delay passed: no will.
            session.will_timer.cancel()
            session.will_timer = None
            session.pending_will = None
        if expiry_interval == "default":
            expiry_interval = 0.0 if clean else self.settings.session_expiry
        session.expiry_interval = expiry_interval
        self._expiring.discard(session)
        session.attach(conn)
        return session, present

    def _discard_session(self, session: Session) -> None:
        self._expiring.discard(session)
        timer = session.will_timer
        if timer is not None:
            # [3.1.3.2.2] the session ends before the will delay: publish the will now.
            timer.cancel()
            session.will_timer = None
            will, session.pending_will = session.pending_will, None
            if will is not None:
                self._publish_will(session, will)
        for topic_filter in list(session.subscriptions):
            self.unsubscribe(session, topic_filter)
        session.queue.clear()
        session.inflight.clear()
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]

    def subscribe(self, session: Session, topic_filter: str, qos: int) -> None:
        shared = parse_shared(topic_filter, self.topic_limits)
        if shared is None:
            self.router.subscribe(session, topic_filter, qos)
        else:
            self.router.subscribe(session, shared.filter, qos, share_group=shared.group)
        session.subscriptions[topic_filter] = qos

    def unsubscribe(self, session: Session, topic_filter: str) -> bool:
        if session.subscriptions.pop(topic_filter, None) is None:
            return False
        shared = parse_shared(topic_filter, self.topic_limits)
        if shared is None:
            return self.router.unsubscribe(session, topic_filter)
        return self.router.unsubscribe(session, shared.filter, share_group=shared.group)

    # -- messages --------------------------------------------------------------------------

    def publish(self, message: Message) -> int:
        """Store if retained, then route to every matching subscriber; returns how many."""
        if message.retain and not self.retained.store(message):
            self.stats.retained_dropped_store_full += 1
            self.log.warning(
                "retained_full",
                "retained message on %r not kept: %d retained messages is the limit",
                message.topic,
                self.settings.max_retained_messages,
            )
        return self.router.route(message)

    def hold_ack(self, waiter: asyncio.Future[None]) -> None:
        """Make the PUBACK (or PUBREC) of the PUBLISH being routed wait for ``waiter``."""
        if self.ack_holds is None:
            self.ack_holds = [waiter]
        else:
            self.ack_holds.append(waiter)

    def take_ack_holds(self) -> list[asyncio.Future[None]] | None:
        holds = self.ack_holds
        if holds is not None:
            self.ack_holds = None
        return holds

    def wall_clock(self) -> float:
        return time.time()

    def remember_properties(
        self, block: bytes, decoded: tuple[Properties, Properties | None]
    ) -> None:
        """Cache a validated MQTT 5 PUBLISH property block (short ones only) by its bytes."""
        if len(block) > _PROPERTY_CACHE_BLOCK:
            return
        cache = self.property_cache
        if len(cache) >= _PROPERTY_CACHE_SIZE:
            cache.clear()
        cache[block] = decoded

    def remember_topic(self, topic_bytes: bytes, topic: str) -> None:
        """Cache a validated topic so its next PUBLISH skips decoding and validation."""
        cache = self.topic_cache
        if len(cache) >= _TOPIC_CACHE_SIZE:
            cache.clear()
        cache[topic_bytes] = topic

    # -- housekeeping ----------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        interval = self.settings.housekeeping_interval
        while True:
            await asyncio.sleep(interval)
            self.check_timeouts()

    def check_timeouts(self) -> None:
        """Drop connections that never sent CONNECT or went silent; expire old sessions."""
        s = self.settings
        now = self.loop.time()
        for conn in list(self.connections):
            if conn.session is None:
                if now - conn.connected_at > s.connect_timeout:
                    self.stats.connect_timeouts += 1
                    self.log.warning(
                        "connect_timeout",
                        "closing %s: no CONNECT within %.1f s",
                        conn.describe(),
                        s.connect_timeout,
                    )
                    conn.abort("CLIENT_ERROR")
            elif conn.keep_alive and now - conn.last_activity > conn.keep_alive * s.keepalive_grace:
                # [3.1.2-24] nothing received for 1.5 keep-alive periods.
                self.stats.keepalive_timeouts += 1
                if conn.limits is not None:
                    conn.close("MQTT_KEEP_ALIVE_TIMEOUT", ReasonCode.KEEP_ALIVE_TIMEOUT)
                else:
                    conn.abort("MQTT_KEEP_ALIVE_TIMEOUT")
            elif (
                conn.congested_since is not None
                and now - conn.congested_since > s.slow_reader_timeout
            ):
                self.stats.slow_reader_disconnects += 1
                self.log.warning(
                    "slow_reader",
                    "closing %s: its output stayed over %d bytes for %.0f s (slow_reader_timeout)",
                    conn.describe(),
                    s.max_output_buffer,
                    s.slow_reader_timeout,
                )
                conn.abort("CLIENT_ERROR")
        for session in list(self._expiring):
            gone = session.disconnected_at
            expiry = session.expiry_interval
            if (
                session.connection is None
                and gone is not None
                and expiry is not None
                and now - gone > expiry
            ):
                self.stats.sessions_expired += 1
                self._discard_session(session)
        self.lifecycle.prune()

    def recheck_sessions(self) -> int:
        """Disconnect every session the auth hooks no longer admit (a revoked or deactivated
        certificate, a detached policy); MQTT 5 clients get 0x98 Administrative action.
        Returns how many were disconnected."""
        kicked = 0
        for conn in list(self.connections):
            session = conn.session
            if session is None:
                continue
            why = self.hooks.recheck(session.identity)
            if why is None:
                continue
            kicked += 1
            self.stats.kicked_by_policy += 1
            log.warning("disconnecting %s: %s", conn.describe(), why)
            conn.will = None  # the principal is no longer trusted to publish it
            conn.close("AUTH_ERROR", ReasonCode.ADMINISTRATIVE_ACTION, why)
        return kicked

    # -- snapshots -------------------------------------------------------------------------

    def _snapshot_path(self) -> Path | None:
        if not self.settings.persistence or self.data_dir is None:
            return None
        return self.data_dir / self.settings.snapshot_file

    async def _snapshots(self) -> None:
        while True:
            await asyncio.sleep(self.settings.snapshot_interval)
            try:
                await self.save_snapshot()
            except OSError as exc:
                log.error("snapshot failed, will retry: %s", exc)

    def take_snapshot(self) -> snapshot.Snapshot:
        sessions = [
            snapshot.SessionState(
                client_id=s.client_id,
                principal=s.identity.principal,
                thing=s.identity.thing,
                subscriptions=dict(s.subscriptions),
                inflight=[
                    (pid, e.state, e.qos, e.retain, e.message, e.identifiers)
                    for pid, e in s.inflight.items()
                ],
                expiry_interval=s.expiry_interval,
                queue=list(s.queue),
                inbound_qos2=sorted(s.inbound_qos2),
            )
            for s in self.sessions.values()
            if s.expiry_interval != 0
        ]
        return snapshot.Snapshot(sessions, self.retained.messages())

    async def save_snapshot(self) -> None:
        path = self._snapshot_path()
        if path is None:
            return
        doc = snapshot.to_json(self.take_snapshot())
        await asyncio.to_thread(snapshot.write_atomic, path, doc)

    def _restore(self) -> None:
        path = self._snapshot_path()
        if path is None:
            return
        state = snapshot.read(path)
        if state is None:
            return
        now = self.loop.time()
        for message in state.retained:
            self.retained.store(message)
        for saved in state.sessions:
            session = Session(saved.client_id, False, self.settings, self.stats, self.hooks)
            session.identity = Identity(saved.client_id, saved.principal, saved.thing)
            session.disconnected_at = now
            self.sessions[saved.client_id] = session
            for topic_filter, qos in saved.subscriptions.items():
                self.subscribe(session, topic_filter, qos)
            session.expiry_interval = saved.expiry_interval
            if saved.expiry_interval is not None:
                self._expiring.add(session)
            for pid, st, qos, retain, message, identifiers in saved.inflight:
                session.inflight[pid] = Inflight(message, qos, retain, st, identifiers)
            session.queue.extend(saved.queue)
            session.inbound_qos2.update(saved.inbound_qos2)
        log.info(
            "restored %d sessions and %d retained messages from %s",
            len(state.sessions),
            len(state.retained),
            path,
        )
