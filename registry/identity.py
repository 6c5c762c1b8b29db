"""The identity service: registry, development CA, TLS trust and the change feed, for a server.

It prepares everything the broker's TLS listener and auth hooks need before the broker starts
(the CA and server certificate on first start, the database schema, the default anonymous
policy, the first ``IdentityIndex``), then follows the ``changes`` table: each batch of changes
reloads the index, rebuilds the TLS trust if CAs or self-signed certificates changed, and asks
the broker to disconnect sessions that are no longer admitted, all within
``change_poll_interval`` of the change being committed (by this process or by the CLI).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from broker.listeners import server_ssl_context
from registry.authorizer import ANONYMOUS_POLICY_DOCUMENT, RegistryAuthorizer
from registry.ca import DevelopmentCA
from registry.config import DEFAULT_ANONYMOUS_POLICY, RegistrySettings
from registry.index import IdentityIndex, load_index
from registry.service import Registry

if TYPE_CHECKING:
    from broker.server import Broker

log = logging.getLogger("thingcore.identity")

CHANGE_RETENTION = 3600.0
"""Seconds change rows are kept: long enough for any follower that briefly fell behind."""

SERVICE_KINDS = frozenset({"shadow"})
"""Change kinds that concern other services only: they do not reload the identity index."""

ChangeListener = Callable[[set[str], dict[str, set[str]]], Awaitable[None]]
"""Called with the kinds of a batch of changes and, per kind, the keys that changed."""


def server_names(settings: RegistrySettings, host: str) -> list[str]:
    """Names the server certificate covers: loopback, this host, the configured extras."""
    names = ["localhost", "127.0.0.1", "::1"]
    hostname = socket.gethostname()
    if hostname:
        names.append(hostname)
    if host not in ("0.0.0.0", "::", "", *names):  # noqa: S104 - compared, not bound
        names.append(host)
    for name in settings.server_names:
        if name not in names:
            names.append(name)
    return names


class IdentityService:
    """Owns the registry for a running server; use ``async with``."""

    def __init__(
        self,
        settings: RegistrySettings,
        data_dir: Path,
        *,
        host: str,
        session_tickets: int | None = None,
    ) -> None:
        self.settings = settings
        self.session_tickets = session_tickets
        self.registry = Registry(settings, data_dir)
        self.host = host
        self.ca: DevelopmentCA | None = None
        self.authorizer = RegistryAuthorizer(settings, IdentityIndex())
        self._context: ssl.SSLContext | None = None
        self._anchors = ""
        self._last_change = 0
        self._broker: Broker | None = None
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.listening = asyncio.Event()
        """Set while a PostgreSQL notification channel is open."""
        self.reloads = 0
        self.notifications = 0
        self._listeners: list[ChangeListener] = []

    def add_listener(self, listener: ChangeListener) -> None:
        """Also tell ``listener`` about each batch of changes (after the index is swapped,
        so it sees the registry as the changes left it)."""
        self._listeners.append(listener)

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> IdentityService:
        await asyncio.to_thread(self._prepare)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_following()
        await asyncio.to_thread(self.registry.close)

    async def stop_following(self) -> None:
        for task in (self._task, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._listener = None
        self._broker = None

    def _prepare(self) -> None:
        registry = self.registry
        registry.open()
        ca, created = DevelopmentCA.load_or_create(registry.ca_dir)
        if created:
            log.info("created the development CA in %s", registry.ca_dir)
        if ca.ensure_server_certificate(server_names(self.settings, self.host)):
            log.info("issued the server certificate %s", ca.server_certfile)
        self.ca = ca
        registry.certs.register_development_ca(ca)
        if self.settings.anonymous_policy == DEFAULT_ANONYMOUS_POLICY:
            registry.policies.ensure(DEFAULT_ANONYMOUS_POLICY, ANONYMOUS_POLICY_DOCUMENT)
        self._last_change = registry.last_change()
        index = self._load()
        self.authorizer.swap(index)
        self._context = self._build_context(index)
        self._anchors = index.trust_anchors()

    def _load(self) -> IdentityIndex:
        with self.registry.db.session() as session:
            index = load_index(session)
        for name, why in index.broken_policies.items():
            log.error("policy %r cannot be used (it allows nothing): %s", name, why)
        return index

    def _build_context(self, index: IdentityIndex) -> ssl.SSLContext:
        ca = self.ca
        if ca is None:  # pragma: no cover - _prepare sets it first
            raise RuntimeError("the identity service has not been prepared")
        return server_ssl_context(
            ca.server_certfile,
            ca.server_keyfile,
            client_cadata=index.trust_anchors(),
            check_client_time=False,
            session_tickets=self.session_tickets,
        )

    # -- what the broker uses --------------------------------------------------------------

    def current(self) -> ssl.SSLContext:
        """The TLS context for the next handshake (``broker.listeners.TlsContextSource``)."""
        if self._context is None:  # pragma: no cover - prepared before the broker starts
            raise RuntimeError("the identity service has not been prepared")
        return self._context

    def follow(self, broker: Broker) -> None:
        """Start following the change feed for ``broker``."""
        self._broker = broker
        self._task = asyncio.create_task(self._follow(), name="identity-change-feed")
        if not self.registry.db.is_sqlite:
            self._listener = asyncio.create_task(self._listen(), name="identity-change-notify")

    async def _listen(self) -> None:
        """PostgreSQL: wake the follower as soon as a change commits (migration 0002)."""
        import psycopg

        url = self.registry.db.url.replace("postgresql+psycopg://", "postgresql://", 1)
        schema = self.registry.db.schema or "public"
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute("LISTEN thingcore_changes")
                    self.listening.set()
                    self._wake.set()  # changes made while not listening are read now
                    async for notify in conn.notifies():
                        if notify.payload in (schema, ""):
                            self.notifications += 1
                            self._wake.set()
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                log.warning("listening for registry changes failed (%s); polling meanwhile", exc)
                await asyncio.sleep(max(1.0, self.settings.change_poll_interval))

    async def _follow(self) -> None:
        interval = self.settings.change_poll_interval
        pruned_at = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            try:
                await self.poll()
                if time.monotonic() - pruned_at > CHANGE_RETENTION / 4:
                    pruned_at = time.monotonic()
                    horizon = time.time() - CHANGE_RETENTION
                    await asyncio.to_thread(self.registry.prune_changes, horizon)
            except Exception:  # noqa: BLE001 - a database hiccup must not stop the feed
                log.exception("reading the registry's change feed failed; retrying")

    async def poll(self) -> int:
        """Apply changes committed since the last poll; returns how many there were."""
        changes = await asyncio.to_thread(self.registry.changes_after, self._last_change)
        if not changes:
            return 0
        kinds = {c.kind for c in changes}
        if kinds - SERVICE_KINDS:
            await self._reload()
        last = changes[-1].id
        self._last_change = last if last is not None else self._last_change
        if self._listeners:
            keys: dict[str, set[str]] = {}
            for change in changes:
                keys.setdefault(change.kind, set()).add(change.key)
            for listener in self._listeners:
                try:
                    await listener(kinds, keys)
                except Exception:  # noqa: BLE001 - one service's failure must not stop the feed
                    log.exception("a change listener failed on changes %s", sorted(kinds))
        return len(changes)

    async def _reload(self) -> None:
        index = await asyncio.to_thread(self._load)
        anchors = index.trust_anchors()
        context = self._context
        if anchors != self._anchors:
            context = await asyncio.to_thread(self._build_context, index)
        # Only now, with everything built, is the batch applied and marked read: a failure
        # above leaves it unread, so the next poll retries it.
        self.authorizer.swap(index)
        if anchors != self._anchors:
            self._context = context
            self._anchors = anchors
            log.info("TLS trust updated: %d registered CAs", len(index.cas))
        self.reloads += 1
        if self._broker is not None:
            kicked = self._broker.recheck_sessions()
            if kicked:
                log.info("disconnected %d sessions after registry changes", kicked)

    def thing(self, name: str) -> tuple[bool, str | None]:
        """Whether ``name`` is a registered thing, and its type (from the current index)."""
        info = self.authorizer.index.things.get(name)
        return (False, None) if info is None else (True, info.thing_type)
