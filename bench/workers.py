"""Load-generator processes, driven by the orchestrator over a pipe.

Each worker is a forked process pinned to the load CPU, with the open-file limit raised, uvloop
installed and the garbage collector paused while it measures. It connects its clients, replies
`Ready`, then answers commands (`Step`, `Collect`, `Ping`) until `Stop` or the pipe closes.
Four roles: clients (publishers, subscribers or both), idle connections, connection-rate
cycles, and shadow devices (`bench.shadowload`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import multiprocessing.connection
import signal
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import connrate, host, mqttwire, shadowload
from bench.loadgen import ClientError, IdleClient, MqttClient, PingTally, Publisher, Subscriber
from bench.stats import COARSE_NS, FINE_NS, Histogram, Recorder, StepStats

CONNECT_TIMEOUT = 10.0


class WorkerError(Exception):
    """A load-generator process failed or did not answer in time."""


# --- what the orchestrator asks for -------------------------------------------------------


@dataclass(frozen=True)
class PublisherSpec:
    host: str
    port: int
    client_ids: Sequence[str]
    topics: Sequence[str]
    qos: int
    payload_size: int
    window: int = 20
    keepalive: int = 300
    protocol: int = 4  # MQTT protocol level: 4 (3.1.1) or 5
    # Per client, (topic, JSON payload) pairs to publish in turn instead of the binary payload
    # on `topics` (`bench.mqttwire.json_payload`; every topic as long as the client's topic).
    json_messages: Sequence[Sequence[tuple[str, bytes]]] = ()


@dataclass(frozen=True)
class SubscriberSpec:
    host: str
    port: int
    client_ids: Sequence[str]
    topic_filter: str
    qos: int
    topic_len: int  # every topic the publishers use has this many bytes
    payload_size: int
    keepalive: int = 300
    coarse: bool = False  # read send stamps at 65.536 µs resolution (cheaper)
    protocol: int = 4  # MQTT protocol level: 4 (3.1.1) or 5
    json_stamp: bool = False  # the publishers send JSON payloads (`PublisherSpec.json_messages`)


@dataclass(frozen=True)
class IdleSpec:
    host: str
    port: int
    client_prefix: str
    count: int
    keepalive: int = 60
    concurrency: int = 256


@dataclass(frozen=True)
class ConnRateSpec:
    host: str
    port: int
    client_prefix: str
    concurrency: int
    duration: float


@dataclass(frozen=True)
class Step:
    """Publish at `rate` msg/s (all of this worker's publishers together) for `duration` s."""

    step: int
    rate: float
    duration: float
    tick: float


@dataclass(frozen=True)
class Collect:
    """Return what arrived for `step`: as soon as `expected` messages did, or once nothing new
    arrived for `settle` seconds, or after `max_wait` seconds."""

    step: int
    expected: int
    settle: float
    max_wait: float


@dataclass(frozen=True)
class Ping:
    timeout: float


@dataclass(frozen=True)
class Stop:
    pass


# --- what the workers answer ----------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    connected: int
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0


@dataclass(frozen=True)
class StepDone:
    offered: int  # messages due during the step
    sent: int  # messages written
    elapsed: float


@dataclass(frozen=True)
class Collected:
    stats: StepStats
    waited: float
    lost_connections: int
    foreign: int


@dataclass(frozen=True)
class Pinged:
    sent: int
    answered: int
    dropped: int  # connections the broker closed since CONNACK
    rtt: Histogram
    elapsed: float


@dataclass(frozen=True)
class Failed:
    message: str


# --- the worker side ------------------------------------------------------------------------


class Channel:
    """The worker's end of the pipe, readable from the event loop."""

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self.conn = conn
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        asyncio.get_running_loop().add_reader(conn.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            while self.conn.poll():
                self.queue.put_nowait(self.conn.recv())
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            self.queue.put_nowait(Stop())

    async def recv(self) -> object:
        return await self.queue.get()

    def send(self, obj: object) -> None:
        self.conn.send(obj)


async def connect_all(
    clients: Sequence[MqttClient],
    host_: str,
    port: int,
    *,
    concurrency: int,
    tolerate_failures: bool,
) -> Ready:
    """Open every client's connection (at most `concurrency` at a time) and await CONNACK."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    errors: Counter[str] = Counter()
    started = time.monotonic()

    async def one(client: MqttClient) -> bool:
        async with gate:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await loop.create_connection(lambda: client, host_, port)
                    await client.connected
            except (OSError, ClientError, TimeoutError) as exc:
                errors[_describe(exc)] += 1
                if client.transport is not None:
                    client.transport.abort()
                return False
            return True

    results = await asyncio.gather(*(one(c) for c in clients))
    ready = Ready(
        connected=sum(results),
        failed=len(results) - sum(results),
        errors=dict(errors),
        elapsed=time.monotonic() - started,
    )
    if ready.failed and not tolerate_failures:
        raise WorkerError(f"{ready.failed} of {len(clients)} clients failed to connect: {errors}")
    return ready


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ClientError):
        return str(exc).split(": ", 1)[-1]
    return type(exc).__name__


@dataclass(frozen=True)
class ClientsSpec:
    """Publishers, subscribers or both in one process (both: no cross-process wake-ups between
    sending and receiving, which is what the latency workload wants)."""

    publishers: PublisherSpec | None = None
    subscribers: SubscriberSpec | None = None


async def clients_role(spec: ClientsSpec, channel: Channel) -> None:
    coarse = spec.subscribers is not None and spec.subscribers.coarse
    recorder = Recorder(COARSE_NS if coarse else FINE_NS)
    subs: list[Subscriber] = []
    pubs: list[Publisher] = []
    if spec.subscribers is not None:
        subs = await _start_subscribers(spec.subscribers, recorder)
    if spec.publishers is not None:
        pubs = await _start_publishers(spec.publishers)
    channel.send(Ready(connected=len(subs) + len(pubs)))
    while not isinstance(command := await channel.recv(), Stop):
        if isinstance(command, Step) and pubs:
            gc.collect()  # never while messages may be in flight
            channel.send(await _publish_step(pubs, command))
        elif isinstance(command, Collect) and subs:
            waited = await _settle(recorder, command)
            stats = recorder.pop(command.step)
            recorder.steps.clear()  # stragglers of earlier steps; none is running now
            gc.collect()
            channel.send(
                Collected(
                    stats=stats,
                    waited=waited,
                    lost_connections=sum(1 for s in subs if s.lost.done()),
                    foreign=recorder.foreign,
                )
            )
        else:
            channel.send(Failed(f"cannot handle {command!r}"))
    for client in [*pubs, *subs]:
        client.close()
    await asyncio.sleep(0.1)


async def _start_publishers(spec: PublisherSpec) -> list[Publisher]:
    pubs = [
        Publisher(
            cid,
            topic,
            qos=spec.qos,
            payload_size=spec.payload_size,
            window=spec.window,
            keepalive=spec.keepalive,
            protocol=spec.protocol,
            json_messages=spec.json_messages[i] if spec.json_messages else (),
        )
        for i, (cid, topic) in enumerate(zip(spec.client_ids, spec.topics, strict=True))
    ]
    await connect_all(pubs, spec.host, spec.port, concurrency=64, tolerate_failures=False)
    return pubs


async def _start_subscribers(spec: SubscriberSpec, recorder: Recorder) -> list[Subscriber]:
    layout = mqttwire.PublishLayout(
        spec.topic_len,
        spec.payload_size,
        spec.qos,
        mqttwire.publish_properties(spec.protocol),
        json_stamp=spec.json_stamp,
    )
    subs = [
        Subscriber(
            cid,
            spec.topic_filter,
            qos=spec.qos,
            layout=layout,
            recorder=recorder,
            keepalive=spec.keepalive,
            coarse=spec.coarse,
            protocol=spec.protocol,
        )
        for cid in spec.client_ids
    ]
    await connect_all(subs, spec.host, spec.port, concurrency=64, tolerate_failures=False)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await asyncio.gather(*(s.subscribed for s in subs))
    except (ClientError, TimeoutError) as exc:
        raise WorkerError(f"SUBSCRIBE failed: {_describe(exc)}") from exc
    return subs


async def _publish_step(pubs: Sequence[Publisher], command: Step) -> StepDone:
    """Publish at the commanded rate. Each publisher's schedule is shifted by a fraction of its
    message interval, so that many slow publishers do not all fire in the same tick."""
    loop = asyncio.get_running_loop()
    count = len(pubs)
    per_client = command.rate / count
    # At most 100 ms of messages wait for a paused transport or a full window; beyond that
    # they are counted as offered but not sent.
    backlog_limit = max(1, int(per_client * 0.1))
    sent_before = sum(p.sent for p in pubs)
    for pub in pubs:
        pub.step = command.step
        pub.pending = 0
    phases = [i / count for i in range(count)]
    granted = [0] * count
    started = loop.time()
    while True:
        elapsed = min(loop.time() - started, command.duration)
        due = per_client * elapsed
        for i, pub in enumerate(pubs):
            target = int(due + phases[i])
            if target > granted[i]:
                pub.due(target - granted[i], backlog_limit)
                granted[i] = target
        if elapsed >= command.duration:
            break
        await asyncio.sleep(command.tick)
    for pub in pubs:
        pub.pending = 0
    return StepDone(
        offered=sum(granted),
        sent=sum(p.sent for p in pubs) - sent_before,
        elapsed=loop.time() - started,
    )


async def _settle(recorder: Recorder, command: Collect) -> float:
    loop = asyncio.get_running_loop()
    started = quiet_since = loop.time()
    last = recorder.received(command.step)
    while (now := loop.time()) - started < command.max_wait:
        if last >= command.expected or now - quiet_since >= command.settle:
            break
        await asyncio.sleep(0.02)
        current = recorder.received(command.step)
        if current != last:
            last, quiet_since = current, loop.time()
    return loop.time() - started


async def idle_role(spec: IdleSpec, channel: Channel) -> None:
    tally = PingTally()
    clients = [
        IdleClient(f"{spec.client_prefix}-{i}", spec.keepalive, tally) for i in range(spec.count)
    ]
    channel.send(
        await connect_all(
            clients, spec.host, spec.port, concurrency=spec.concurrency, tolerate_failures=True
        )
    )
    await serve_pings(clients, tally, channel)


async def serve_pings(clients: list[IdleClient], tally: PingTally, channel: Channel) -> None:
    """Answer each `Ping` command with a PINGREQ round on every live client until `Stop`."""
    while not isinstance(command := await channel.recv(), Stop):
        assert isinstance(command, Ping)
        gc.collect()
        started = time.monotonic()
        live = [c for c in clients if c.connected.done() and c.transport is not None]
        tally.reset(len(live))
        sent = sum(1 for c in live if c.ping())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(command.timeout):
                await tally.done.wait()
        rtt = Histogram()
        for ns in tally.rtts_ns:
            rtt.add(ns // 1000)
        channel.send(Pinged(sent, tally.count, tally.dropped, rtt, time.monotonic() - started))
    for client in clients:
        client.close()
    await asyncio.sleep(0.5)


def connrate_role(spec: ConnRateSpec, channel: multiprocessing.connection.Connection) -> None:
    channel.send(Ready(connected=0))
    result = connrate.run_cycles(
        spec.host,
        spec.port,
        concurrency=spec.concurrency,
        duration=spec.duration,
        client_prefix=spec.client_prefix,
    )
    channel.send(result)


async def shadow_role(spec: shadowload.ShadowSpec, channel: Channel) -> None:
    """Shadow devices: connect and subscribe them all, then `Begin`, `Mark` and `End` runs
    (closed loop or fixed rate) until `Stop`."""
    fleet = shadowload.Fleet(spec)
    try:
        await connect_all(
            fleet.devices, spec.host, spec.port, concurrency=64, tolerate_failures=False
        )
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await fleet.wait_subscribed()
        except (ClientError, TimeoutError) as exc:
            raise WorkerError(f"SUBSCRIBE to the shadow topics failed: {_describe(exc)}") from exc
        channel.send(Ready(connected=len(fleet.devices)))
        while not isinstance(command := await channel.recv(), Stop):
            if isinstance(command, shadowload.Begin):
                gc.collect()  # never while updates are in flight
                fleet.begin(command)
                channel.send(Ready(connected=sum(1 for d in fleet.devices if not d.lost.done())))
            elif isinstance(command, shadowload.Mark):
                channel.send(fleet.mark())
            elif isinstance(command, shadowload.End):
                ended = await fleet.end(command)
                gc.collect()
                channel.send(ended)
            else:
                channel.send(Failed(f"cannot handle {command!r}"))
    finally:
        await fleet.close()
    await asyncio.sleep(0.1)


AsyncRole = Callable[[Any, Channel], Awaitable[None]]
ASYNC_ROLES: dict[type, AsyncRole] = {
    ClientsSpec: clients_role,
    IdleSpec: idle_role,
    shadowload.ShadowSpec: shadow_role,
}


def _worker_main(
    spec: object, conn: multiprocessing.connection.Connection, cpu: int | None
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator handles Ctrl+C and stops us
    host.pin_to_cpu(cpu)
    host.raise_nofile_limit()
    gc.collect()
    gc.freeze()
    gc.disable()  # collected explicitly between steps, never while measuring
    try:
        if isinstance(spec, ConnRateSpec):
            connrate_role(spec, conn)
            return
        role = ASYNC_ROLES[type(spec)]

        async def main() -> None:
            await role(spec, Channel(conn))

        _run(main())
    except BaseException as exc:  # noqa: BLE001 - report any failure to the orchestrator
        if not isinstance(exc, WorkerError | ClientError):
            traceback.print_exc()
        with contextlib.suppress(OSError):
            conn.send(Failed(str(exc) or repr(exc)))
    finally:
        conn.close()


def _run(coro: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


# --- the orchestrator side ------------------------------------------------------------------


class Worker:
    """A running load-generator process; use as a context manager so it always stops."""

    def __init__(self, spec: object, cpu: int | None, name: str) -> None:
        ctx = multiprocessing.get_context("fork")
        self.name = name
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker_main, args=(spec, child, cpu), name=name, daemon=True
        )
        self.process.start()
        child.close()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def send(self, command: object) -> None:
        self.conn.send(command)

    def recv(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise WorkerError(f"{self.name}: no answer within {timeout:.0f} s")
        try:
            reply = self.conn.recv()
        except EOFError:
            raise WorkerError(f"{self.name}: exited unexpectedly") from None
        if isinstance(reply, Failed):
            raise WorkerError(f"{self.name}: {reply.message}")
        return reply

    def request(self, command: object, timeout: float) -> Any:
        self.send(command)
        return self.recv(timeout)

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(Stop())
        self.process.join(3)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
