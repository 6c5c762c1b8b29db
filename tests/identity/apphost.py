"""End-to-end harness for device identity: the whole ``thingcore.app.App`` on real sockets.

``RunningApp`` runs the app (registry database, development CA, TLS listener, broker, change
feed) on a uvloop loop in a background thread, exactly as ``thingcore serve`` assembles it, and
opens a *separate* ``Registry`` on the same data directory so that a test changes the registry
the way the CLI does: through the database, the change reaching the server through the
``changes`` table. ``provision`` makes a device as an operator would (thing, certificate from
the development CA, policy, attachments) and writes the files a device needs.

``TlsRaw`` and ``TlsRaw5`` are the raw MQTT clients of ``tests/broker`` over a TLS socket, for
exact CONNACK/SUBACK/PUBACK codes; paho, the AWS IoT Device SDKs and Python's ``ssl`` are the
real clients. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.config import BrokerSettings
from registry.ca import DevelopmentCA
from registry.config import RegistrySettings
from registry.service import Registry, record_change
from shadows.config import ShadowSettings
from tests.broker.raw5 import Raw5Client
from tests.broker.rawclient import RawClient, wait_for
from thingcore.app import App
from thingcore.config import Settings

T = TypeVar("T")

REGION = "us-east-1"
ACCOUNT = "000000000000"
ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}"
THING = "${iot:Connection.Thing.ThingName}"

WAIT = 5.0
"""Seconds any single step may take before a test fails instead of hanging."""


class RunningApp:
    """``App(settings)`` serving in a background uvloop thread; ``stop()`` shuts it down."""

    def __init__(
        self, data_dir: Path, *, shadows: ShadowSettings | None = None, **registry_overrides: Any
    ) -> None:
        self.data_dir = data_dir
        self.settings = Settings(
            data_dir=data_dir,
            log_level="INFO",
            broker=BrokerSettings(
                host="127.0.0.1",
                port=0,
                tls_port=0,
                housekeeping_interval=0.05,
                connect_timeout=2.0,
                snapshot_interval=0,
                log_interval=0,
                lifecycle_events=True,
            ),
            registry=RegistrySettings(change_poll_interval=0.05, **registry_overrides),
            shadows=shadows or ShadowSettings(),
        )
        self.app = App(self.settings)
        self.loop = uvloop.new_event_loop()
        self._started: Future[None] = Future()
        self._stop: asyncio.Event | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="test-app", daemon=True)
        self._thread.start()
        self._started.result(timeout=30)
        # The CLI's view of the same installation: its own engine on the same database.
        self.registry = Registry(self.settings.registry, data_dir).open()
        self.ca = DevelopmentCA.load(self.registry.ca_dir)
        # What devices hold lives outside the server's data directory, as on real devices.
        self.clients_dir = data_dir.parent / "clients"
        self.root_ca = write_file(self.clients_dir / "root-ca.pem", self.ca.certificate_pem)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            if not self._started.done():
                self._started.set_exception(exc)
            else:
                raise
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self.app:
            self._started.set_result(None)
            await self._stop.wait()

    @property
    def port(self) -> int:
        return self.app.broker.ports["mqtt"]

    @property
    def tls_port(self) -> int:
        return self.app.broker.ports["mqtts"]

    def call(self, fn: Callable[[], T], timeout: float = WAIT) -> T:
        """Run ``fn`` on the app's loop (where the broker's state lives); return its result."""
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - reported to the test thread
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result(timeout)

    def stats(self) -> dict[str, int]:
        return self.call(self.app.broker.stats.as_dict)

    def synced(self, timeout: float = WAIT) -> None:
        """Wait until the server has fully applied every registry change committed so far.

        A device provisioned through ``self.registry`` is known to the server (its index, its
        TLS trust) only once the change feed has reloaded. The feed's position is private and
        advances when a poll *starts* applying a batch, before the index and the TLS context
        are rebuilt; so this commits a barrier change and waits until a poll has picked the
        barrier up: polls run one after another, so the one that applied our changes is then
        finished.
        """
        self.feed_position_at_least(self.registry.last_change(), timeout)
        with self.registry.db.session() as session:
            record_change(session, "test-barrier", "synced")
        self.feed_position_at_least(self.registry.last_change(), timeout)

    def feed_position_at_least(self, target: int, timeout: float = WAIT) -> None:
        def applied() -> bool:
            position: int = self.app.identity._last_change  # noqa: SLF001 - feed position
            return position >= target

        wait_for(lambda: self.call(applied), timeout, what=f"change {target} read by the feed")

    def online(self, client_id: str) -> bool:
        def check() -> bool:
            session = self.app.broker.sessions.get(client_id)
            return session is not None and session.connection is not None

        return self.call(check)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.registry.close()
        stop = self._stop
        if stop is not None:
            self.loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout=20)
        if self._thread.is_alive():
            raise RuntimeError("the app did not shut down within 20 s")


# -- devices --------------------------------------------------------------------------------


def write_file(path: Path, data: str | bytes, mode: int = 0o600) -> Path:
    """Write ``data`` to ``path`` (created with ``mode``, owner-only by default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(payload)
    os.chmod(path, mode)
    return path


@dataclass
class Device:
    """A thing's certificate and key on disk, as a device holds them."""

    name: str
    """Thing name and the client id the device uses."""
    cert_id: str
    cert: Path
    key: Path
    root_ca: Path
    policy: str | None = None

    def context(self, *, with_certificate: bool = True) -> ssl.SSLContext:
        """A client TLS context that trusts the development CA and presents this device."""
        context = ssl.create_default_context(cafile=str(self.root_ca))
        if with_certificate:
            context.load_cert_chain(str(self.cert), str(self.key))
        return context

    def paho_tls(self) -> dict[str, Any]:
        """``tls_set`` arguments for paho."""
        return {"ca_certs": str(self.root_ca), "certfile": str(self.cert), "keyfile": str(self.key)}


def own_topics_policy(
    *, topics: str = f"things/{THING}/*", extra: Iterable[dict[str, Any]] = ()
) -> str:
    """A device policy in AWS's usual shape: connect as your thing, publish, receive and
    subscribe under ``topics`` (by default ``things/<thing>/``)."""
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/{THING}"},
        {
            "Effect": "Allow",
            "Action": ["iot:Publish", "iot:Receive"],
            "Resource": f"{ARN}:topic/{topics}",
        },
        {
            "Effect": "Allow",
            "Action": "iot:Subscribe",
            "Resource": f"{ARN}:topicfilter/{topics}",
        },
        *extra,
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def device_files(app: RunningApp, name: str, cert_pem: str, key_pem: str) -> tuple[Path, Path]:
    directory = app.clients_dir / name
    return (
        write_file(directory / "certificate.pem.crt", cert_pem),
        write_file(directory / "private.pem.key", key_pem),
    )


def provision(
    app: RunningApp,
    name: str,
    *,
    policy: str | None = "default",
    key_type: str = "ec",
    status: str = "ACTIVE",
    attach_thing: bool = True,
) -> Device:
    """Create thing ``name``, a certificate for it, and a policy attached to the certificate.

    ``policy="default"`` attaches ``own_topics_policy()``; a JSON string attaches that
    document; None attaches nothing. Waits until the server has seen the changes.
    """
    registry = app.registry
    registry.things.create(name)
    created = registry.certs.create_keys_and_certificate(
        set_active=status == "ACTIVE", common_name=name[:64], key_type=key_type
    )
    cert_id = created["certificateId"]
    if status not in ("ACTIVE", "INACTIVE"):
        registry.certs.update_status(cert_id, status)
    if attach_thing:
        registry.certs.attach_thing(name, cert_id)
    policy_name = None
    if policy is not None:
        policy_name = f"{name}-policy"
        document = own_topics_policy() if policy == "default" else policy
        registry.policies.create(policy_name, document)
        registry.policies.attach(policy_name, "cert", cert_id)
    cert, key = device_files(app, name, created["certificatePem"], created["keyPair"]["PrivateKey"])
    app.synced()
    return Device(name, cert_id, cert, key, app.root_ca, policy_name)


def self_signed(common_name: str) -> tuple[str, str]:
    """A self-signed client certificate (not a CA) and its key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "self-signed device"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


# -- raw MQTT over TLS ----------------------------------------------------------------------


def tls_socket(
    port: int, context: ssl.SSLContext, server_hostname: str, timeout: float
) -> ssl.SSLSocket:
    """A TCP connection to 127.0.0.1:``port`` with the TLS handshake done.

    Raises ``ssl.SSLError``/``OSError`` when the handshake fails. With TLS 1.3 a refused client
    certificate only shows on the client's first read, as an alert or a closed connection.
    """
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return context.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise


class TlsRaw(RawClient):
    """``RawClient`` (MQTT 3.1.1) over TLS."""

    def __init__(
        self,
        port: int,
        context: ssl.SSLContext,
        *,
        server_hostname: str = "localhost",
        timeout: float = WAIT,
    ) -> None:
        self.sock = tls_socket(port, context, server_hostname, timeout)
        self._buf = bytearray()

    def _read(self, deadline: float) -> bytes:
        try:
            return super()._read(deadline)
        except ssl.SSLError:
            # A TLS alert (e.g. the server refusing the certificate under TLS 1.3) or a
            # connection cut without close_notify: either way the broker closed it.
            return b""


class TlsRaw5(Raw5Client):
    """``Raw5Client`` (MQTT 5) over TLS."""

    def __init__(
        self,
        port: int,
        context: ssl.SSLContext,
        *,
        server_hostname: str = "localhost",
        timeout: float = WAIT,
    ) -> None:
        self.sock = tls_socket(port, context, server_hostname, timeout)
        self._buf = bytearray()
        self.last_size = 0

    def _read(self, deadline: float) -> bytes:
        try:
            return super()._read(deadline)
        except ssl.SSLError:
            return b""


def raw_client(
    protocol: int, port: int, context: ssl.SSLContext, **kwargs: Any
) -> TlsRaw | TlsRaw5:
    return TlsRaw5(port, context, **kwargs) if protocol == 5 else TlsRaw(port, context, **kwargs)


class Clients:
    """Every raw client a test opens; closed at teardown."""

    def __init__(self) -> None:
        self._open: list[RawClient] = []

    def raw(self, protocol: int, port: int, context: ssl.SSLContext) -> TlsRaw | TlsRaw5:
        client = raw_client(protocol, port, context)
        self._open.append(client)
        return client

    def plain(self, port: int) -> RawClient:
        client = RawClient(port)
        self._open.append(client)
        return client

    def plain5(self, port: int) -> Raw5Client:
        client = Raw5Client(port)
        self._open.append(client)
        return client

    def close(self) -> None:
        for client in self._open:
            client.close()


# -- logs -----------------------------------------------------------------------------------


def wait_for_log(
    caplog: pytest.LogCaptureFixture,
    *needles: str,
    logger: str | None = None,
    timeout: float = WAIT,
) -> logging.LogRecord:
    """The first record (of ``logger`` or a child) whose message contains every needle."""

    def find() -> logging.LogRecord | None:
        for record in list(caplog.records):
            if logger is not None and not (
                record.name == logger or record.name.startswith(logger + ".")
            ):
                continue
            message = record.getMessage()
            if all(needle in message for needle in needles):
                return record
        return None

    found: logging.LogRecord = wait_for(find, timeout, what=f"a log line with {needles}")
    return found
