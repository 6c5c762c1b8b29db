"""``thingcore capture``: record MQTT traffic into a JSON Lines file, for ``rules replay``.

Beyond AWS (issue 7). A plain paho-mqtt subscriber (MQTT 3.1.1, anonymous on the plain
listener, or with a device certificate on the mutual-TLS one) writes one
``rules.replay.CapturedMessage`` line per message it receives, until Ctrl+C, ``--count`` or
``--duration``. It works against any MQTT broker, not only thingcore.

paho runs its network loop in its own thread; the callbacks only put messages on a queue, and
this thread writes them, so a slow disk never blocks paho's keepalives.
"""

from __future__ import annotations

import contextlib
import queue
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any

import paho.mqtt.client as mqtt
import typer
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.text import Text

from rules.replay import CapturedMessage
from thingcore.cli.common import Json, print_json, stdout_console
from thingcore.errors import ThingcoreError

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for CONNACK and SUBACK."""
TICK = 0.1
"""Seconds between checks of --duration and refreshes of the live counter."""


class CaptureError(ThingcoreError):
    """The broker cannot be reached, refuses the connection or a subscription."""


@dataclass(slots=True)
class CaptureResult:
    file: Path
    messages: int
    seconds: float
    stopped_by: str
    """``count``, ``duration``, ``interrupt`` (Ctrl+C)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.file),
            "messages": self.messages,
            "seconds": round(self.seconds, 3),
            "stoppedBy": self.stopped_by,
        }


class Recorder:
    """A paho subscriber whose messages wait in a queue for the writing thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str,
        tls: dict[str, Any] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        if tls is not None:
            self.client.tls_set(**tls)
        self.messages: queue.Queue[CapturedMessage] = queue.Queue()
        self._connack: queue.Queue[tuple[bool, str]] = queue.Queue()
        self._suback: queue.Queue[list[bool]] = queue.Queue()
        self.lost = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    # paho's thread -------------------------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self._connack.put((bool(rc.is_failure), str(rc)))

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        self._suback.put([bool(c.is_failure) for c in codes])

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(
            CapturedMessage(
                t=int(time.time() * 1000),
                topic=msg.topic,
                payload=bytes(msg.payload),
                qos=msg.qos,
                retain=bool(msg.retain),
            )
        )

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.lost.set()

    # the command's thread ------------------------------------------------------------------

    def start(self, filters: list[str], qos: int) -> None:
        where = f"{self.host}:{self.port}"
        try:
            self.client.connect(self.host, self.port, keepalive=60)
        except ssl.SSLError as exc:
            raise CaptureError(f"TLS with {where} failed: {exc}") from None
        except OSError as exc:
            raise CaptureError(
                f"cannot connect to {where}: {exc.strerror or exc} (is a broker running there?)"
            ) from None
        self.client.loop_start()
        try:
            failed, reason = self._connack.get(timeout=CONNECT_TIMEOUT)
        except queue.Empty:
            raise CaptureError(
                f"{where} did not answer CONNECT within {CONNECT_TIMEOUT:g} s"
            ) from None
        if failed:
            raise CaptureError(f"{where} refused the connection: {reason}")
        self.client.subscribe([(f, qos) for f in filters])
        try:
            failures = self._suback.get(timeout=CONNECT_TIMEOUT)
        except queue.Empty:
            raise CaptureError(
                f"{where} did not answer SUBSCRIBE within {CONNECT_TIMEOUT:g} s"
            ) from None
        refused = [f for f, failed in zip(filters, failures, strict=False) if failed]
        if refused:
            hint = ""
            if any(f.startswith("$aws/") for f in refused):
                hint = (
                    "; thingcore keeps $aws/ topics from anonymous clients: use the TLS "
                    "port with --cafile, --cert and --key"
                )
            raise CaptureError(
                f"{where} refused the subscription to {', '.join(map(repr, refused))}{hint}"
            )

    def stop(self) -> None:
        with contextlib.suppress(Exception):  # the connection may already be gone
            self.client.disconnect()
        self.client.loop_stop()


def record(
    recorder: Recorder,
    out: IO[str],
    *,
    count: int | None,
    duration: float | None,
    on_message: Callable[[int], object] | None = None,
) -> tuple[int, str]:
    """Write the recorder's messages to ``out`` until ``count`` or ``duration``; returns how
    many were written and what stopped it. Ctrl+C stops it too."""
    written = 0
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while count is None or written < count:
            wait = TICK if deadline is None else min(TICK, deadline - time.monotonic())
            if wait <= 0:
                return written, "duration"
            try:
                message = recorder.messages.get(timeout=wait)
            except queue.Empty:
                if recorder.lost.is_set() and recorder.messages.empty():
                    out.flush()
                    raise CaptureError(
                        f"the broker closed the connection after {written} messages "
                        f"(they are in {getattr(out, 'name', 'the file')})"
                    ) from None
                continue
            out.write(message.to_line() + "\n")
            written += 1
            if recorder.messages.empty():
                out.flush()
            if on_message is not None:
                on_message(written)
    except KeyboardInterrupt:
        return written, "interrupt"
    finally:
        out.flush()
    return written, "count"


@contextlib.contextmanager
def live_counter(
    console: Console, filters: list[str], count: int | None, *, enabled: bool = True
) -> Iterator[Callable[[int], object] | None]:
    """A live count of the messages recorded (a bar towards --count), on a terminal only:
    yields what to call with the count so far (None when there is no display)."""
    if not enabled or not console.is_terminal:
        yield None
        return
    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if count is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    else:
        columns.append(TextColumn("{task.completed} messages"))
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"Recording {', '.join(filters)}", total=count)
        yield lambda n: progress.update(task, completed=n)


def capture_summary(result: CaptureResult) -> Text:
    why = {
        "count": "",
        "duration": f" in {result.seconds:.1f} s",
        "interrupt": " (stopped)",
    }[result.stopped_by]
    noun = "message" if result.messages == 1 else "messages"
    return Text(f"Recorded {result.messages} {noun} to {result.file}{why}")


def capture(
    file: Annotated[
        Path,
        typer.Argument(help="The JSON Lines file to write (replaced).", show_default=False),
    ],
    topics: Annotated[
        list[str],
        typer.Option(
            "--topic",
            "-t",
            help="A topic filter to record (repeat for more), e.g. 'sensors/#'.",
            show_default=False,
        ),
    ],
    host: Annotated[str, typer.Option("--host", help="The broker's address.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="The broker's MQTT port.")
    ] = 1884,
    count: Annotated[
        int | None,
        typer.Option("--count", "-c", min=1, help="Stop after this many messages."),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option("--duration", "-d", min=0, help="Stop after this many seconds."),
    ] = None,
    qos: Annotated[
        int, typer.Option("--qos", min=0, max=2, help="The subscriptions' maximum QoS.")
    ] = 1,
    client_id: Annotated[
        str | None,
        typer.Option("--client-id", help="The client id (default thingcore-capture-<random>)."),
    ] = None,
    cafile: Annotated[
        Path | None,
        typer.Option("--cafile", help="CA certificate to check the broker's TLS certificate."),
    ] = None,
    cert: Annotated[
        Path | None, typer.Option("--cert", help="Client certificate (mutual TLS).")
    ] = None,
    key: Annotated[Path | None, typer.Option("--key", help="The client certificate's key.")] = None,
    json_output: Json = False,
) -> None:
    """Record MQTT traffic into a file, to replay through rules.

    Subscribes to the `--topic` filters on a running thingcore (or any MQTT broker) and writes
    each message to FILE as one JSON line (`t` epoch ms, `topic`, `qos`, `retain`, `payload`
    as text or `payloadBase64`), until Ctrl+C, `--count` or `--duration`. Replay the file
    through rules with `thingcore rules replay FILE`.

    The plain listener takes anonymous clients; thingcore's `$aws/...` topics need a device
    certificate: `--port 8883 --cafile root-ca.pem --cert device.pem.crt --key
    private.pem.key`."""
    if (cert is None) != (key is None):
        raise CaptureError("--cert and --key go together (a certificate and its private key)")
    tls: dict[str, Any] | None = None
    if cafile is not None or cert is not None:
        for path in (cafile, cert, key):
            if path is not None and not path.is_file():
                raise CaptureError(f"cannot read {path}: no such file")
        tls = {
            "ca_certs": None if cafile is None else str(cafile),
            "certfile": None if cert is None else str(cert),
            "keyfile": None if key is None else str(key),
        }
    recorder = Recorder(
        host, port, client_id=client_id or f"thingcore-capture-{uuid.uuid4().hex[:8]}", tls=tls
    )
    console = stdout_console()
    try:
        # Connect first: a broker that cannot be reached leaves an earlier FILE as it was.
        recorder.start(topics, qos)
        started = time.monotonic()
        try:
            out = file.open("w", encoding="utf-8")
        except OSError as exc:
            raise CaptureError(f"cannot write {file}: {exc.strerror or exc}") from None
        with out, live_counter(console, topics, count, enabled=not json_output) as counter:
            written, stopped_by = record(
                recorder, out, count=count, duration=duration, on_message=counter
            )
    finally:
        recorder.stop()
    result = CaptureResult(file, written, time.monotonic() - started, stopped_by)
    if json_output:
        print_json(result.as_dict())
    else:
        console.print(capture_summary(result))
