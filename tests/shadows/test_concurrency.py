"""Concurrent shadow requests through the whole app: paho clients over mTLS, the broker, the
shadow service's queue and its group commit, SQLite.

Many devices race optimistic updates (``version``) on one shared shadow: each version is
accepted exactly once and every device's last write lands. One device pours updates without
versions as fast as paho sends them: they are accepted in the order sent, none lost, and the
service commits them in far fewer batches than requests.
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import paho.mqtt.client as mqtt

from tests.identity.apphost import WAIT, Device, RunningApp, device_files
from tests.shadows.host import ShadowClient, shadow_device, shadow_policy

WRITERS = 20
WRITES_EACH = 3
BURST = 200


def provision_sharing(app: RunningApp, thing: str, names: list[str]) -> list[Device]:
    """Things ``names``, each with a certificate under one policy on ``thing``'s shadow.

    Like ``provision`` but waits for the server once for all of them, not once each.
    """
    registry = app.registry
    registry.things.create(thing)
    policy = f"{thing}-sharing"
    registry.policies.create(policy, shadow_policy(thing))
    devices = []
    for device_name in names:
        registry.things.create(device_name)
        created = registry.certs.create_keys_and_certificate(
            set_active=True, common_name=device_name[:64], key_type="ec"
        )
        cert_id = created["certificateId"]
        registry.certs.attach_thing(device_name, cert_id)
        registry.policies.attach(policy, "cert", cert_id)
        cert, key = device_files(
            app, device_name, created["certificatePem"], created["keyPair"]["PrivateKey"]
        )
        devices.append(Device(device_name, cert_id, cert, key, app.root_ca, policy))
    app.synced()
    return devices


class SharedShadowClient(ShadowClient):
    """A ``ShadowClient`` on another thing's shadow. Every device subscribed to the shared
    response topics sees every answer, so it picks out its own by ``clientToken``, as the
    v2 SDK does."""

    def __init__(self, app: RunningApp, device: Device, thing: str) -> None:
        super().__init__(app, device)
        self.prefix = f"$aws/things/{thing}/shadow"
        self._tokens = itertools.count()

    def ask(self, op: str, payload: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Publish a request with a fresh token; its accepted or rejected answer."""
        token = f"{self.device.name[-4:]}-{next(self._tokens)}"
        self.client.publish(
            f"{self.prefix}/{op}", json.dumps({**(payload or {}), "clientToken": token}), qos=1
        )
        answers = f"{self.prefix}/{op}/"
        deadline = time.monotonic() + WAIT
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                topic, body = self.messages.get(timeout=remaining)
            except queue.Empty:
                break
            if topic.startswith(answers):
                document = json.loads(body)
                if document.get("clientToken") == token:
                    return topic[len(answers) :], document
        raise AssertionError(f"{self.device.name}: no answer to {op} {token}")


def connect_sharing(
    app: RunningApp, devices: list[Device], thing: str, made: list[ShadowClient], *filters: str
) -> list[SharedShadowClient]:
    clients = []
    for device in devices:
        client = SharedShadowClient(app, device, thing)
        made.append(client)
        client.subscribe(*(f"{client.prefix}/{suffix}" for suffix in filters))
        clients.append(client)
    return clients


def write_with_versions(client: SharedShadowClient, writes: int, start: threading.Barrier) -> int:
    """Write ``{<me>: 0..writes-1}`` into reported, each update carrying the version this
    client last saw; on 409 get the shadow and try again. Returns the conflicts met."""
    me = client.device.name
    outcome, document = client.ask("get")
    assert outcome == "accepted", document
    version = document["version"]
    # Everyone now holds the same version: of the first updates, exactly one can win.
    start.wait(WAIT)
    conflicts = 0
    for n in range(writes):
        for _attempt in range(10 * WRITERS):
            update = {"state": {"reported": {me: n}}, "version": version}
            outcome, document = client.ask("update", update)
            if outcome == "accepted":
                version = document["version"]
                break
            assert document["code"] == 409, document
            conflicts += 1
            outcome, document = client.ask("get")
            assert outcome == "accepted", document
            version = document["version"]
        else:
            raise AssertionError(f"{me} never got write {n} in")
    return conflicts


def test_racing_versioned_updates_accept_each_version_exactly_once(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    names = [f"{name}-w{i:02d}" for i in range(WRITERS)]
    devices = provision_sharing(app, name, [f"{name}-watch", *names])
    [watcher] = connect_sharing(app, devices[:1], name, shadow_clients, "update/accepted")
    writers = connect_sharing(
        app, devices[1:], name, shadow_clients, "get/+", "update/accepted", "update/rejected"
    )
    outcome, seeded = writers[0].ask("update", {"state": {"reported": {"seed": True}}})
    assert outcome == "accepted" and seeded["version"] == 1

    start = threading.Barrier(WRITERS)
    with ThreadPoolExecutor(WRITERS) as pool:
        futures = [pool.submit(write_with_versions, c, WRITES_EACH, start) for c in writers]
        conflicts = [future.result(timeout=60) for future in futures]
    assert sum(conflicts) >= WRITERS - 1

    total = 1 + WRITERS * WRITES_EACH
    seen = [watcher.expect(f"{watcher.prefix}/update/accepted") for _ in range(total)]
    # Published in commit order: versions 1..N, each once, no gaps.
    assert [document["version"] for document in seen] == list(range(1, total + 1))
    for me in names:
        mine = [d["state"]["reported"][me] for d in seen if me in d["state"]["reported"]]
        assert mine == list(range(WRITES_EACH)), me

    outcome, final = writers[0].ask("get")
    assert outcome == "accepted"
    assert final["version"] == total
    assert final["state"]["reported"] == {"seed": True, **{me: WRITES_EACH - 1 for me in names}}


def counters(app: RunningApp) -> tuple[int, int]:
    """The shadow service's (requests, batches), read on the app's loop."""

    def read() -> tuple[int, int]:
        service = app.app.shadows
        assert service is not None
        return service.requests, service.batches

    return app.call(read)


def burst(client: ShadowClient, count: int) -> list[dict[str, Any]]:
    """Publish ``count`` unversioned updates (QoS 1, without waiting between them) and
    return the accepted documents in the order they arrive."""
    accepted_topic = f"{client.prefix}/update/accepted"
    sent = [
        client.client.publish(
            f"{client.prefix}/update", json.dumps({"state": {"reported": {"seq": seq}}}), qos=1
        )
        for seq in range(count)
    ]
    answers: list[dict[str, Any]] = []
    deadline = time.monotonic() + WAIT + count / 50
    while len(answers) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{len(answers)} of {count} updates answered"
        try:
            topic, body = client.messages.get(timeout=remaining)
        except queue.Empty:
            continue
        assert topic == accepted_topic, (topic, body)
        answers.append(json.loads(body))
    for info in sent:
        info.wait_for_publish(WAIT)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS
    return answers


def bursting_client(app: RunningApp, name: str, made: list[ShadowClient]) -> ShadowClient:
    client = ShadowClient(app, shadow_device(app, name))
    made.append(client)
    answers = ("update/accepted", "update/rejected", "get/+")
    client.subscribe(*(f"{client.prefix}/{suffix}" for suffix in answers))
    return client


def test_a_burst_of_updates_is_accepted_in_order_with_nothing_lost(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    client = bursting_client(app, name, shadow_clients)
    answers = burst(client, BURST)
    assert [a["state"]["reported"]["seq"] for a in answers] == list(range(BURST))
    assert [a["version"] for a in answers] == list(range(1, BURST + 1))
    outcome, final = client.request("get")
    assert outcome == "accepted"
    assert final["version"] == BURST and final["state"]["reported"] == {"seq": BURST - 1}


def test_a_burst_of_updates_is_committed_in_fewer_batches_than_requests(
    app: RunningApp, name: str, shadow_clients: list[ShadowClient]
) -> None:
    client = bursting_client(app, name, shadow_clients)
    requests_before, batches_before = counters(app)
    burst(client, BURST)
    requests_after, batches_after = counters(app)
    assert requests_after - requests_before == BURST
    assert 1 <= batches_after - batches_before < BURST
