"""The rules-delivery workload's RabbitMQ sink: a queue declared and consumed by the orchestrator.

`AmqpSink` declares a durable queue on the RabbitMQ at `amqp_url()` (THINGCORE_BENCH_AMQP_URL,
default guest/guest on 127.0.0.1:5672), consumes it (no acknowledgements: the broker pushes
every message as it routes it) on a thread of its own with its own event loop, and deletes
the queue when closed. Each message is timed on arrival with the monotonic clock the load
generator stamps its payloads with (`mqttwire.json_stamp`, one clock for the whole machine),
and counted by the stamp's step: so a run's arrivals, its last arrival and its PUBLISH ->
sink latency come out per run, like the other sinks'. Copies of one delivery (the same
`message_id`, which at-least-once delivery may bring) are counted apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psutil

from bench import mqttwire
from bench.stats import Histogram
from rules.actions.amqp import masked

if TYPE_CHECKING:
    from aiormq.abc import DeliveredMessage

URL_ENV = "THINGCORE_BENCH_AMQP_URL"
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
TIMEOUT = 5.0  # seconds to connect, declare, delete
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

monotonic_ns = time.monotonic_ns

# aio-pika and aiormq log what this module reports itself (a refused connection, the broker
# cancelling the consumer of the deleted queue): with no logging set up, Python's last-resort
# handler would print it in the middle of the run's output.
for _name in ("aio_pika", "aiormq"):
    logging.getLogger(_name).addHandler(logging.NullHandler())


def amqp_url() -> str:
    return os.environ.get(URL_ENV) or DEFAULT_URL


def _describe(exc: BaseException, url: str) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    with contextlib.suppress(ValueError):
        password = urlsplit(url).password
        if password:
            text = text.replace(password, "***")
    return text


def unreachable(url: str) -> str | None:
    """Why the RabbitMQ at `url` cannot be used (connecting and opening a channel), or None."""

    async def probe() -> None:
        import aio_pika

        connection = await aio_pika.connect(url, timeout=TIMEOUT)
        try:
            async with asyncio.timeout(TIMEOUT):
                await connection.channel()
        finally:
            await connection.close()

    try:
        asyncio.run(probe())
    except Exception as exc:  # noqa: BLE001 - any failure means: skip the variant
        return f"RabbitMQ at {masked(url)} unreachable: {_describe(exc, url)}"
    return None


@dataclass
class Arrivals:
    """What reached the queue's consumer for one run (step)."""

    count: int = 0  # messages, copies included
    last_ns: int = 0  # monotonic: the latest arrival
    latency: Histogram = field(default_factory=Histogram)  # PUBLISH stamp -> consumer, µs
    ids: set[str] = field(default_factory=set)  # distinct message_ids seen

    @property
    def distinct(self) -> int:
        """Messages without the copies (the count itself if messages carry no message_id)."""
        return len(self.ids) if self.ids else self.count


@dataclass(frozen=True)
class Snapshot:
    count: int
    distinct: int
    last_ns: int


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _stamp(body: bytes) -> tuple[int, int] | None:
    """(send time, step) from a JSON body: the fast path when the rule output kept the
    payload's compact form ("stamp" first), else parsed."""
    stamp = mqttwire.read_json_stamp(body)
    if stamp is not None:
        return stamp
    try:
        digits = json.loads(body)["stamp"]
        return int(digits[:16], 16), int(digits[16:], 16)
    except (ValueError, KeyError, TypeError):
        return None


class AmqpSink:
    """Declares `queue` (durable), consumes it on its own thread, deletes it when closed."""

    def __init__(self, url: str, queue: str) -> None:
        self.url, self.queue = url, queue
        self.error: str | None = None  # the consumer failed (before or after it started)
        self.unstamped = 0  # messages without a readable stamp
        self.server: str | None = None  # "RabbitMQ 3.x.y", from the connection's handshake
        self._steps: dict[int, Arrivals] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Connect, declare the queue and start consuming; raises RuntimeError (the reason)
        if that fails."""
        self._thread = threading.Thread(target=self._main, name="amqp-sink", daemon=True)
        self._thread.start()
        if not self._ready.wait(TIMEOUT * 3 + 5):
            self.error = f"RabbitMQ at {masked(self.url)}: no consumer after {TIMEOUT * 3:g} s"
        if self.error is not None:
            self.close()
            raise RuntimeError(self.error)

    def _main(self) -> None:
        try:
            asyncio.run(self._consume())
        except Exception as exc:  # noqa: BLE001 - reported through `error`
            self.error = self.error or _describe(exc, self.url)
        finally:
            self._ready.set()

    async def _consume(self) -> None:
        import aio_pika

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            connection = await aio_pika.connect(self.url, timeout=TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - the reason the variant is skipped
            self.error = f"RabbitMQ at {masked(self.url)} unreachable: {_describe(exc, self.url)}"
            return
        try:
            async with asyncio.timeout(TIMEOUT):
                channel = await connection.channel()
                queue = await channel.declare_queue(self.queue, durable=True)
                # aiormq's channel directly: one call per message, no aio-pika message object.
                raw = await channel.get_underlay_channel()
                await raw.basic_consume(self.queue, self._on_message, no_ack=True)
        except Exception as exc:  # noqa: BLE001 - the reason the variant is skipped
            self.error = f"RabbitMQ at {masked(self.url)}: {_describe(exc, self.url)}"
            with contextlib.suppress(Exception):
                await connection.close()
            return
        with contextlib.suppress(Exception):
            props = connection.transport.connection.server_properties  # type: ignore[union-attr]
            self.server = " ".join(_text(props.get(key, "?")) for key in ("product", "version"))
        self._ready.set()
        closed = asyncio.ensure_future(connection.closed())
        stop = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait([closed, stop], return_when=asyncio.FIRST_COMPLETED)
        if closed.done():
            reason = (
                "" if closed.cancelled() or not closed.exception() else f": {closed.exception()}"
            )
            self.error = f"RabbitMQ at {masked(self.url)}: the consumer's connection closed{reason}"
            stop.cancel()
            return
        closed.cancel()
        try:
            async with asyncio.timeout(TIMEOUT):
                await queue.delete(if_unused=False, if_empty=False)
        except Exception as exc:  # noqa: BLE001 - noted, the run is over anyway
            self.error = f"could not delete the queue {self.queue}: {_describe(exc, self.url)}"
        with contextlib.suppress(Exception):
            async with asyncio.timeout(TIMEOUT):
                await connection.close()

    async def _on_message(self, message: DeliveredMessage) -> None:
        now = monotonic_ns()
        stamp = _stamp(message.body)
        if stamp is None:
            self.unstamped += 1
            return
        message_id = message.header.properties.message_id
        with self._lock:
            arrivals = self._steps.get(stamp[1])
            if arrivals is None:
                arrivals = self._steps[stamp[1]] = Arrivals()
            arrivals.count += 1
            arrivals.last_ns = now
            arrivals.latency.add(max(0, now - stamp[0]) // 1000)
            if message_id is not None:
                arrivals.ids.add(message_id)

    def snapshot(self, step: int) -> Snapshot:
        with self._lock:
            a = self._steps.get(step) or Arrivals()
            return Snapshot(a.count, a.distinct, a.last_ns)

    def arrivals(self, step: int) -> Arrivals:
        with self._lock:
            return self._steps.get(step) or Arrivals()

    def close(self) -> None:
        """Stop consuming, delete the queue, close the connection (idempotent)."""
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            thread.join(TIMEOUT * 3)
        self._thread = None


class RabbitCpu:
    """CPU time of the local RabbitMQ (the Erlang VM running `rabbit`, and its children), if
    the sink's URL is on this machine and the process can be found; else always None."""

    def __init__(self, url: str) -> None:
        self.procs: list[psutil.Process] = []
        with contextlib.suppress(ValueError):
            if (urlsplit(url).hostname or "") not in LOOPBACK:
                return
        for proc in psutil.process_iter(["name", "cmdline"]):
            info: dict[str, Any] = proc.info
            if (info.get("name") or "").startswith("beam") and "rabbit" in " ".join(
                info.get("cmdline") or ()
            ):
                with contextlib.suppress(psutil.Error):
                    self.procs += [proc, *proc.children(recursive=True)]

    def seconds(self) -> float | None:
        if not self.procs:
            return None
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
        return total
