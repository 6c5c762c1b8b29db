"""``examples/app`` end to end: ``thingcore apply`` of its app file into a fresh data directory,
a real ``thingcore serve`` on port 0, a device publishing with ``mosquitto_pub``, and the rule,
the queue-batch function, the bucket and the topic fan-out observed through the CLI; then a
change to the app file applied while the server runs, which the server picks up by itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.e2e.example_support import FAST, cli, mosquitto_pub, objects, until
from tests.thingcore.test_cli import ServeProcess

APP = Path(__file__).resolve().parents[2] / "examples" / "app"


def reports(data: Path) -> list[dict[str, Any]]:
    return [
        json.loads((data / "buckets" / "reports" / item["Key"]).read_text())
        for item in objects(data, "reports")
    ]


def test_app_file_applied_then_served(tmp_path: Path) -> None:
    project = tmp_path / "app"
    shutil.copytree(APP, project)
    data = tmp_path / "var"
    plan = cli(data, "apply", str(project / "thingcore-app.toml"))
    assert plan["applied"] and plan["counts"]["create"] == 9, plan
    assert not [
        c
        for c in cli(data, "apply", str(project / "thingcore-app.toml"))["changes"]
        if c["action"] != "unchanged"
    ]

    with ServeProcess(data, tmp_path, **FAST) as server:
        mosquitto_pub(server.port, "sensors/kitchen/telemetry", "-m", json.dumps({"temp": 61}))
        mosquitto_pub(server.port, "sensors/kitchen/telemetry", "-m", json.dumps({"temp": 20}))
        [report] = until("the batch report", lambda: reports(data))
        assert report == {"count": 1, "max": 61, "devices": ["kitchen"]}
        [audit] = until("the raw fan-out", lambda: cli(data, "queues", "peek", "audit"))
        [pager] = until("the enveloped fan-out", lambda: cli(data, "queues", "peek", "pager"))
        assert json.loads(audit["body"]) == {"temp": 61, "device": "kitchen"}
        envelope = json.loads(pager["body"])
        assert envelope["Type"] == "Notification"
        assert json.loads(envelope["Message"]) == {"temp": 61, "device": "kitchen"}

        # Versioned with the code: change the rule's threshold and apply while serving.
        app_file = project / "thingcore-app.toml"
        app_file.write_text(app_file.read_text().replace("temp > 50", "temp > 10"))
        changed = cli(data, "apply", str(app_file))
        assert [
            (c["action"], c["name"], c.get("fields"))
            for c in changed["changes"]
            if c["action"] != "unchanged"
        ] == [("change", "hot_readings", ["sql"])]

        def after_change() -> bool:
            mosquitto_pub(server.port, "sensors/porch/telemetry", "-m", json.dumps({"temp": 20}))
            return any("porch" in r["devices"] for r in reports(data))

        until("the changed rule at work", after_change)
