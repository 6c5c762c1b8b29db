"""The TLS listener with a throwaway CA: client certificates required, verified and handed on.

paho-mqtt talks to the TLS port for the message flows; the refusals use a bare ``ssl`` socket,
which shows exactly where the broker stopped the client (a TLS 1.3 client only learns that its
certificate was refused when it next reads).
"""

from __future__ import annotations

import socket
import ssl
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from broker.auth import ConnectionInfo, Identity
from broker.codec import Connect, ConnectReturnCode
from broker.server import Broker
from tests.certs import TlsFiles, write_tls_files
from tests.conftest import StartBroker
from tests.harness import PahoClient, RunningBroker, make_settings
from thingcore.errors import ConfigError

CONNACK_ACCEPTED = b"\x20\x02\x00\x00"


class RecordingHooks:
    """Lets everyone in and records what ``authenticate`` was given."""

    checks_receive = False

    def __init__(self) -> None:
        self.connects: list[tuple[ConnectionInfo, str]] = []

    def authenticate(self, info: ConnectionInfo, connect: Connect) -> Identity | ConnectReturnCode:
        self.connects.append((info, connect.client_id))
        return Identity(connect.client_id)

    def may_publish(self, identity: Identity, topic: str, retain: bool) -> bool:
        return True

    def may_subscribe(self, identity: Identity, topic_filter: str) -> bool:
        return True

    def may_receive(self, identity: Identity, topic: str) -> bool:
        return True

    def info_for(self, client_id: str) -> ConnectionInfo:
        [info] = [info for info, cid in self.connects if cid == client_id]
        return info


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return write_tls_files(tmp_path / "pki")


def start_tls_broker(
    start_broker: StartBroker, tls: TlsFiles, *, require_client_cert: bool = True, **kw: Any
) -> RunningBroker:
    return start_broker(
        tls_port=0,
        tls_certfile=tls.server_cert,
        tls_keyfile=tls.server_key,
        tls_client_cafile=tls.ca_cert if require_client_cert else None,
        **kw,
    )


def connect_packet(client_id: str) -> bytes:
    """An MQTT 3.1.1 CONNECT with a clean session and a 60 s keep-alive."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body


def mqtt_connect_over_tls(
    port: int,
    cafile: Path,
    client_id: str,
    *,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    server_hostname: str = "localhost",
) -> bytes:
    """Open TLS to 127.0.0.1:port, send CONNECT and return the first 4 bytes read (CONNACK).

    Raises ``ssl.SSLError`` or ``OSError`` when the broker refuses the client's TLS.
    """
    context = ssl.create_default_context(cafile=str(cafile))
    if certfile is not None:
        context.load_cert_chain(str(certfile), str(keyfile))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as conn,
    ):
        conn.sendall(connect_packet(client_id))
        got = b""
        while len(got) < 4:
            chunk = conn.recv(4 - len(got))
            if not chunk:
                raise ConnectionResetError("the broker closed the connection")
            got += chunk
        return got


def test_cert_files_are_private(tls: TlsFiles) -> None:
    for path in tls.paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_mutual_tls_qos1_exchange(
    start_broker: StartBroker, tls: TlsFiles, paho: Callable[..., PahoClient], name: str
) -> None:
    broker = start_tls_broker(start_broker, tls)
    client_tls = {
        "ca_certs": str(tls.ca_cert),
        "certfile": str(tls.client_cert),
        "keyfile": str(tls.client_key),
    }
    sub = paho(broker.tls_port, f"{name}-sub", tls=client_tls)
    assert sub.connect() == (False, 0)
    assert sub.subscribe(f"{name}/+", 1) == [1]
    pub = paho(broker.tls_port, f"{name}-pub", tls=client_tls)
    assert pub.connect() == (False, 0)
    pub.publish(f"{name}/a", b"over tls", qos=1)
    [got] = sub.expect(1)
    assert (got.topic, got.payload, got.qos, got.retain) == (f"{name}/a", b"over tls", 1, False)
    stats = broker.stats()
    assert stats["connections_accepted"] == 2
    assert stats["messages_delivered"] >= 1


def test_server_certificate_names_localhost(
    start_broker: StartBroker, tls: TlsFiles, name: str
) -> None:
    """The client checks the server certificate against the name it dialled (DNS SAN)."""
    broker = start_tls_broker(start_broker, tls)
    got = mqtt_connect_over_tls(
        broker.tls_port,
        tls.ca_cert,
        name,
        certfile=tls.client_cert,
        keyfile=tls.client_key,
        server_hostname="localhost",
    )
    assert got == CONNACK_ACCEPTED


def test_client_without_certificate_is_refused(
    start_broker: StartBroker, tls: TlsFiles, name: str
) -> None:
    hooks = RecordingHooks()
    broker = start_tls_broker(start_broker, tls, hooks=hooks)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        mqtt_connect_over_tls(broker.tls_port, tls.ca_cert, name)
    # The handshake failed, so no MQTT connection ever existed.
    assert broker.stats()["connections_accepted"] == 0
    assert hooks.connects == []


def test_client_certificate_from_another_ca_is_refused(
    start_broker: StartBroker, tls: TlsFiles, tmp_path: Path, name: str
) -> None:
    hooks = RecordingHooks()
    broker = start_tls_broker(start_broker, tls, hooks=hooks)
    other = write_tls_files(tmp_path / "other-pki", prefix="other-")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        mqtt_connect_over_tls(
            broker.tls_port,
            tls.ca_cert,  # the server is genuine; only the client's certificate is foreign
            name,
            certfile=other.client_cert,
            keyfile=other.client_key,
        )
    assert broker.stats()["connections_accepted"] == 0
    assert hooks.connects == []
    # The same broker still accepts a certificate from its own CA.
    good = mqtt_connect_over_tls(
        broker.tls_port, tls.ca_cert, name, certfile=tls.client_cert, keyfile=tls.client_key
    )
    assert good == CONNACK_ACCEPTED


def test_hooks_receive_tls_flag_and_client_certificate(
    start_broker: StartBroker, tls: TlsFiles, paho: Callable[..., PahoClient], name: str
) -> None:
    hooks = RecordingHooks()
    broker = start_tls_broker(start_broker, tls, hooks=hooks)
    secure = paho(
        broker.tls_port,
        f"{name}-tls",
        tls={
            "ca_certs": str(tls.ca_cert),
            "certfile": str(tls.client_cert),
            "keyfile": str(tls.client_key),
        },
    )
    assert secure.connect() == (False, 0)
    plain = paho(broker.port, f"{name}-plain")
    assert plain.connect() == (False, 0)

    info = hooks.info_for(f"{name}-tls")
    assert info.listener == "mqtts"
    assert info.tls is True
    assert info.peer_certificate == tls.client_der
    assert info.peer_address == "127.0.0.1"

    info = hooks.info_for(f"{name}-plain")
    assert (info.listener, info.tls, info.peer_certificate) == ("mqtt", False, None)


def test_tls_without_client_ca_accepts_clients_without_certificates(
    start_broker: StartBroker, tls: TlsFiles, paho: Callable[..., PahoClient], name: str
) -> None:
    hooks = RecordingHooks()
    broker = start_tls_broker(start_broker, tls, require_client_cert=False, hooks=hooks)
    sub = paho(broker.tls_port, f"{name}-sub", tls={"ca_certs": str(tls.ca_cert)})
    assert sub.connect() == (False, 0)
    assert sub.subscribe(f"{name}/t", 1) == [1]
    pub = paho(broker.tls_port, f"{name}-pub", tls={"ca_certs": str(tls.ca_cert)})
    assert pub.connect() == (False, 0)
    pub.publish(f"{name}/t", b"no client cert", qos=1)
    [got] = sub.expect(1)
    assert (got.topic, got.payload) == (f"{name}/t", b"no client cert")
    info = hooks.info_for(f"{name}-sub")
    assert (info.listener, info.tls, info.peer_certificate) == ("mqtts", True, None)


@pytest.mark.parametrize("missing", ["tls_certfile", "tls_keyfile", "tls_client_cafile"])
async def test_missing_tls_file_is_a_config_error_naming_it(
    tls: TlsFiles, tmp_path: Path, missing: str
) -> None:
    files: dict[str, Path] = {
        "tls_certfile": tls.server_cert,
        "tls_keyfile": tls.server_key,
        "tls_client_cafile": tls.ca_cert,
    }
    absent = tmp_path / "no-such-dir" / f"{missing}.pem"
    files[missing] = absent
    broker = Broker(make_settings(tls_port=0, **files))
    with pytest.raises(ConfigError) as caught:
        await broker.start()
    assert str(absent) in str(caught.value)
    assert broker.ports == {}  # nothing left listening


async def test_tls_port_without_certificate_is_a_config_error() -> None:
    broker = Broker(make_settings(tls_port=0))
    with pytest.raises(ConfigError, match="tls_certfile"):
        await broker.start()
    assert broker.ports == {}
