"""Every runnable example in examples/ (but the rules folder, run by the rules tests), end to end
against a real ``thingcore serve`` on port 0: its functions copied into the data directory, its
rules applied with the CLI, devices publishing with ``mosquitto_pub``, the results read back
through the CLI. Trigger polling is made fast through the environment, as a user could.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.e2e.example_support import (
    FAST,
    bodies,
    install,
    mosquitto_pub,
    objects,
    until,
)
from tests.thingcore.test_cli import ServeProcess


def test_upload_to_thumbnail(tmp_path: Path) -> None:
    data = tmp_path / "var"
    install("thumbnail", data)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (640, 480), "teal").save(photo)
    with ServeProcess(data, tmp_path, **FAST) as server:
        mosquitto_pub(server.port, "cameras/door/image", "-f", str(photo))
        [upload] = until("the upload", lambda: objects(data, "uploads"))
        assert upload["Key"].startswith("door/") and upload["Key"].endswith(".png")
        assert upload["ContentType"] == "image/png"
        [thumb] = until("the thumbnail", lambda: objects(data, "thumbnails"))
    assert thumb["Key"] == upload["Key"]
    assert thumb["Metadata"] == {"source": f"uploads/{upload['Key']}", "size": "64x48"}
    body = (data / "buckets" / "thumbnails" / thumb["Key"]).read_bytes()
    assert Image.open(io.BytesIO(body)).size == (64, 48)


def test_load_leveling_and_fan_in(tmp_path: Path) -> None:
    data = tmp_path / "var"
    install("load-leveling", data)
    readings = [{"temp": n % 40} for n in range(1, 201)]
    with ServeProcess(data, tmp_path, **FAST) as server:
        lines = "\n".join(json.dumps(r) for r in readings)
        mosquitto_pub(server.port, "sensors/boiler/reading", "-l", lines=lines)

        def summaries() -> list[dict[str, Any]]:
            found = []
            for item in objects(data, "aggregates"):
                path = data / "buckets" / "aggregates" / item["Key"]
                found.append(json.loads(path.read_text())["boiler"])
            return found

        until("every reading summarised", lambda: sum(s["count"] for s in summaries()) == 200)
    batches = summaries()
    assert all(s["count"] <= 50 for s in batches)  # batch_size
    assert len(batches) >= 4  # 200 readings in batches of 50 at most
    assert max(s["max"] for s in batches) == 39
    total = sum(s["mean"] * s["count"] for s in batches)
    assert total == pytest.approx(sum(r["temp"] for r in readings))


def test_request_reply_over_mqtt5(tmp_path: Path) -> None:
    data = tmp_path / "var"
    install("request-reply", data)
    if shutil.which("mosquitto_rr") is None:
        pytest.fail("mosquitto_rr is missing: apt-get install mosquitto-clients")
    with ServeProcess(data, tmp_path, **FAST) as server:
        # As the README: mosquitto_rr sends an MQTT 5 request and prints the reply.
        asked = subprocess.run(  # noqa: S603 - the Mosquitto client against our own server
            [
                *("mosquitto_rr", "-p", str(server.port), "-V", "5", "-i", "till-7"),
                *("-t", "shop/price", "-e", "replies/till-7", "-W", "20"),
                *("-m", json.dumps({"item": "widget", "quantity": 4})),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert asked.returncode == 0, asked.stderr
        assert json.loads(asked.stdout) == {
            "item": "widget",
            "quantity": 4,
            "total": 10.0,
            "for": "till-7",
        }
        answers = paho_request(server.port, {"item": "gizmo"}, correlation=b"\x00q-42")
    assert answers == [
        (
            b"\x00q-42",
            {"item": "gizmo", "error": "no price for 'gizmo'", "known": ["gadget", "widget"]},
        )
    ]


def paho_request(port: int, request: dict[str, Any], correlation: bytes) -> list[Any]:
    """A request from paho-mqtt (MQTT 5), its answer with the correlation data it carried."""
    import queue
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    got: queue.Queue[tuple[bytes, Any]] = queue.Queue()
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, "kiosk-1", protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: got.put(
        (m.properties.CorrelationData, json.loads(m.payload))
    )
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.subscribe("replies/kiosk-1", qos=1)
        assert subscribed.wait(10), "no SUBACK"
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = "replies/kiosk-1"
        properties.CorrelationData = correlation
        client.publish("shop/price", json.dumps(request), qos=1, properties=properties)
        return [got.get(timeout=20)]
    finally:
        client.loop_stop()
        client.disconnect()


def test_scheduled_watchdog(tmp_path: Path) -> None:
    data = tmp_path / "var"
    install("watchdog", data)
    # The example's own schedule; only the silence threshold is shortened, as its README says.
    sidecar = data / "functions" / "watchdog.toml"
    sidecar.write_text(sidecar.read_text().replace('SILENT_AFTER = "30"', 'SILENT_AFTER = "2"'))
    with ServeProcess(data, tmp_path, **FAST) as server:
        mosquitto_pub(server.port, "devices/pump-1/heartbeat", "-m", "{}")

        def silent() -> list[Any]:
            return bodies(data, "silent-devices")

        def fires() -> int:
            log = data / "functions" / "logs" / "watchdog.log"
            return log.read_text().count("START") if log.exists() else 0

        def beating_until(what: str, done: Callable[[], Any]) -> Any:
            # pump-2 keeps beating while pump-1 stays quiet.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                found = done()
                if found:
                    return found
                mosquitto_pub(server.port, "devices/pump-2/heartbeat", "-m", "{}")
                time.sleep(0.5)
            raise AssertionError(f"timed out waiting for {what}")

        [alert] = beating_until("pump-1's silence", silent)
        assert alert["device"] == "pump-1" and alert["quietSeconds"] >= 2
        # A later fire sees the same silence: the queue takes its id once.
        seen = fires()
        beating_until("another fire", lambda: fires() > seen)
        assert [a["device"] for a in silent()] == ["pump-1"]
