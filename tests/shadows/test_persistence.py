"""Accepted shadow updates survive a killed server: ``thingcore serve`` as a real process,
killed with SIGKILL (no shutdown, no snapshot), started again on the same data directory.

The service publishes ``/update/accepted`` only after the batch's commit, so every update a
device saw accepted must be there after the restart, with the SQLite default
(``synchronous=NORMAL`` in WAL mode survives a killed process) and with ``FULL``.
"""

from __future__ import annotations

import json
import queue
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from registry.ca import DevelopmentCA
from registry.config import RegistrySettings
from registry.service import Registry
from tests.identity.apphost import WAIT, Device, RunningApp, write_file
from tests.shadows.host import ShadowClient, shadow_policy
from tests.thingcore.test_cli import EXIT_TIMEOUT, ServeProcess

TLS_READY = re.compile(r"mqtts on 127\.0\.0\.1:(\d+)")
UPDATES = 50
SYNCHRONOUS = ["NORMAL", "FULL"]


@dataclass(frozen=True)
class Listening:
    """The one thing ``ShadowClient`` needs of a server: the port devices connect to."""

    tls_port: int


def provision_before_start(data_dir: Path, name: str, synchronous: str) -> Device:
    """What an operator does with the CLI before the first ``serve``: the development CA, a
    thing with a certificate, AWS's usual shadow policy; the device's files outside
    ``data_dir``. The server reads all of it when it starts."""
    registry = Registry(RegistrySettings(sqlite_synchronous=synchronous), data_dir).open()
    try:
        ca, _created = DevelopmentCA.load_or_create(registry.ca_dir)
        registry.certs.register_development_ca(ca)
        registry.things.create(name)
        created = registry.certs.create_keys_and_certificate(
            set_active=True, common_name=name[:64], key_type="ec"
        )
        cert_id = created["certificateId"]
        registry.certs.attach_thing(name, cert_id)
        policy = f"{name}-policy"
        registry.policies.create(policy, shadow_policy())
        registry.policies.attach(policy, "cert", cert_id)
    finally:
        registry.close()
    device_dir = data_dir.parent / "clients" / name
    return Device(
        name,
        cert_id,
        write_file(device_dir / "certificate.pem.crt", created["certificatePem"]),
        write_file(device_dir / "private.pem.key", created["keyPair"]["PrivateKey"]),
        write_file(device_dir / "root-ca.pem", ca.certificate_pem),
        policy,
    )


class Server:
    """``thingcore serve`` on ``data_dir`` with the SQLite synchronous mode under test."""

    def __init__(self, tmp_path: Path, synchronous: str) -> None:
        self.data_dir = tmp_path / "var"
        self.workdir = tmp_path / "cwd"
        self.workdir.mkdir(exist_ok=True)
        self.env = {"THINGCORE_REGISTRY__SQLITE_SYNCHRONOUS": synchronous}

    def start(self) -> ServeProcess:
        return ServeProcess(self.data_dir, self.workdir, **self.env)


def connect(
    server: ServeProcess, device: Device, made: list[ShadowClient], *suffixes: str
) -> ShadowClient:
    match = TLS_READY.search("".join(server.stderr))
    assert match is not None, "".join(server.stderr)
    client = ShadowClient(cast(RunningApp, Listening(int(match.group(1)))), device)
    made.append(client)
    # Once the server is killed paho retries in the background; closing the client waits
    # out the current retry delay, 1 s by default.
    client.client.reconnect_delay_set(min_delay=0.01, max_delay=0.1)  # type: ignore[arg-type]
    client.subscribe(*(f"{client.prefix}/{suffix}" for suffix in suffixes))
    return client


def send_updates(client: ShadowClient, seqs: range, tag: str) -> None:
    """Publish the updates at QoS 1 without waiting for their answers."""
    for seq in seqs:
        update = {"state": {"reported": {"seq": seq, "tag": tag}}, "clientToken": f"u{seq}"}
        client.client.publish(f"{client.prefix}/update", json.dumps(update), qos=1)


def next_accepted(client: ShadowClient, timeout: float = WAIT) -> dict[str, Any]:
    topic, body = client.messages.get(timeout=timeout)
    assert topic == f"{client.prefix}/update/accepted", (topic, body)
    return dict(json.loads(body))


def kill(server: ServeProcess) -> None:
    """SIGKILL: no shutdown, nothing flushed on the way out."""
    server.proc.kill()
    server.proc.wait(EXIT_TIMEOUT)


def forget(client: ShadowClient, made: list[ShadowClient]) -> None:
    """Stop a client of the killed server: were the restarted server to get the same port,
    its retries (same client id) would take over the next client's session."""
    client.close()
    made.remove(client)


def stored_after_restart(
    server: Server, device: Device, made: list[ShadowClient]
) -> dict[str, Any]:
    """Start the server again and ``get`` the shadow; stop the server cleanly."""
    with server.start() as restarted:
        client = connect(restarted, device, made, "get/+")
        outcome, document = client.request("get", {"clientToken": "after-restart"})
        assert outcome == "accepted", document
        forget(client, made)
        assert restarted.interrupt() == 0, "".join(restarted.stderr)
    return document


@pytest.mark.parametrize("synchronous", SYNCHRONOUS)
def test_every_accepted_update_survives_sigkill(
    tmp_path: Path, name: str, synchronous: str, shadow_clients: list[ShadowClient]
) -> None:
    server = Server(tmp_path, synchronous)
    device = provision_before_start(server.data_dir, name, synchronous)
    with server.start() as serving:
        client = connect(serving, device, shadow_clients, "update/accepted", "update/rejected")
        send_updates(client, range(UPDATES), synchronous)
        answers = [next_accepted(client) for _ in range(UPDATES)]
        # The moment the last accepted has arrived.
        kill(serving)
        forget(client, shadow_clients)
    assert [a["version"] for a in answers] == list(range(1, UPDATES + 1))
    assert [a["clientToken"] for a in answers] == [f"u{seq}" for seq in range(UPDATES)]
    last = answers[-1]

    stored = stored_after_restart(server, device, shadow_clients)
    assert stored["version"] == last["version"] == UPDATES
    assert stored["state"] == {"reported": last["state"]["reported"]}
    assert stored["state"]["reported"] == {"seq": UPDATES - 1, "tag": synchronous}


def test_a_server_killed_mid_stream_keeps_every_update_it_answered(
    tmp_path: Path, name: str, shadow_clients: list[ShadowClient]
) -> None:
    """Killed as soon as the first answer arrives, with most updates still unsent, queued or
    being written: the stored version is at least the newest one the device saw accepted,
    and the stored state is exactly that version's (updates apply in order and each batch
    commits whole)."""
    server = Server(tmp_path, "NORMAL")
    device = provision_before_start(server.data_dir, name, "NORMAL")
    sent = 8 * UPDATES
    with server.start() as serving:
        client = connect(serving, device, shadow_clients, "update/accepted", "update/rejected")
        gone = threading.Event()
        client.client.on_disconnect = lambda *_args: gone.set()
        send_updates(client, range(sent), "mid-stream")
        answers = [next_accepted(client)]
        kill(serving)
        # paho reads in order: what arrived before the connection dropped is queued by now,
        # and was accepted too.
        assert gone.wait(WAIT), "the client never saw the server go"
        forget(client, shadow_clients)
        while True:
            try:
                answers.append(next_accepted(client, timeout=0))
            except queue.Empty:
                break
    assert [a["version"] for a in answers] == list(range(1, len(answers) + 1))

    stored = stored_after_restart(server, device, shadow_clients)
    assert len(answers) <= stored["version"] <= sent
    assert stored["state"]["reported"] == {"seq": stored["version"] - 1, "tag": "mid-stream"}
