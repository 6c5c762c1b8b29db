"""Assembles the thingcore process and runs it until a signal says stop.

Start order: data directory, identity (database and migrations, the development CA and server
certificate, the first registry snapshot, in a worker thread), then the broker (restores its
snapshot and listens, with the identity service's auth hooks and TLS trust), then the change
feed, then the shadow service and the rules engine on the broker's Bus (both follow the same
change feed). Stop order is the reverse, written down by the ``AsyncExitStack``: the rules
engine stops matching and finishes its queued actions, the shadow service stops taking
requests and answers what it queued, the feed stops, the broker stops listening, disconnects
clients and writes its snapshot, then the database is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from types import TracebackType

from broker.server import Broker
from registry.identity import IdentityService
from rules.engine import RulesEngine
from rules.store import RuleStore
from shadows.document import get_document
from shadows.names import ShadowKey, ShadowNameError
from shadows.service import ShadowService
from shadows.store import ShadowStore
from thingcore.config import Settings

log = logging.getLogger("thingcore")


class App:
    """The running platform; ``async with App(settings) as app``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.identity = IdentityService(
            settings.registry,
            settings.data_dir,
            host=settings.broker.host,
            session_tickets=settings.broker.tls_session_tickets,
        )
        self.broker = Broker(
            settings.broker,
            data_dir=settings.data_dir,
            hooks=self.identity.authorizer,
            tls=self.identity,
        )
        self.shadows: ShadowService | None = None
        if settings.shadows.enabled:
            self.shadows = ShadowService(
                settings.shadows,
                ShadowStore(self.identity.registry.db, settings.shadows),
                self.broker.bus,
                things=self.identity.thing,
            )
        self.rules: RulesEngine | None = None
        if settings.rules.enabled:
            self.rules = RulesEngine(
                settings.rules,
                self.broker.bus,
                RuleStore(self.identity.registry.db),
                account_id=settings.registry.account_id,
                region=settings.registry.region,
                shadow_reader=self._read_shadow,
                data_dir=settings.data_dir,
            )
        self._stack = AsyncExitStack()

    def _read_shadow(self, thing: str, name: str | None) -> object:
        """``get_thing_shadow()`` in rules: the shadow's get document (worker threads only)."""
        from rules.sql.values import UNDEFINED

        store = ShadowStore(self.identity.registry.db, self.settings.shadows)
        try:
            key = ShadowKey.of(thing, name)
        except ShadowNameError:
            return UNDEFINED
        shadow = store.get(key)
        if shadow is None or not shadow.exists:
            return UNDEFINED
        return get_document(shadow, int(time.time()), None)

    async def __aenter__(self) -> App:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.identity)
            await stack.enter_async_context(self.broker)
            self.identity.follow(self.broker)
            stack.push_async_callback(self.identity.stop_following)
            if self.shadows is not None:
                await stack.enter_async_context(self.shadows)
                self.identity.add_listener(self.shadows.on_changes)
            if self.rules is not None:
                await stack.enter_async_context(self.rules)
                self.identity.add_listener(self.rules.on_changes)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()


def raise_open_file_limit() -> int:
    """Lift the soft open-file limit to the hard one: each client holds a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1_048_576
    if soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    return soft


async def serve(settings: Settings, on_ready: Callable[[App], None] | None = None) -> None:
    """Run until SIGINT or SIGTERM; a second SIGINT exits at once."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def request_stop(sig: signal.Signals) -> None:
        if stop.is_set():
            # Only a second Ctrl+C forces the exit: a supervisor may deliver SIGTERM twice
            # (to the process and to its group), and that must still shut down cleanly.
            if sig == signal.SIGINT:
                log.warning("second interrupt: exiting without a clean shutdown")
                sys.exit(130)
            return
        log.info("shutting down (press Ctrl+C again to force)")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop, sig)
    try:
        async with App(settings) as app:
            if on_ready is not None:
                on_ready(app)
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(settings: Settings, on_ready: Callable[[App], None] | None = None) -> None:
    """Run ``serve`` on uvloop when available (1.3-1.5x faster, DESIGN.md)."""
    raise_open_file_limit()
    loop_factory = None
    if settings.broker.use_uvloop:
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            log.warning("uvloop is not installed; using the slower stock asyncio loop")
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(settings, on_ready))
