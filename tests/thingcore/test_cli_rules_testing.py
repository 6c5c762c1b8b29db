"""``thingcore rules test --cases``, ``thingcore rules replay`` and ``thingcore capture``."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from tests.broker.rawclient import wait_for
from tests.conftest import StartBroker
from tests.harness import PahoClient
from tests.identity.apphost import WAIT, RunningApp, own_topics_policy, provision
from tests.thingcore.test_cli_registry import Cli, Ran, cli
from tests.thingcore.test_cli_rules import EXAMPLES, folder_of_examples

__all__ = ["cli"]  # the fixture, imported from the main CLI test module

CASES = EXAMPLES / "cases"


def write_cases(folder: Path, name: str, cases: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(cases))
    return path


def hot_case(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "rule": "hot_readings",
        "topic": "sensors/kitchen/telemetry",
        "payload": {"temp": 61},
        "ignore": ["at"],
        **fields,
    }


def in_thread(cli: Cli, *args: str) -> Future[Ran]:
    """Run a command in a thread (for commands that wait for messages)."""
    done: Future[Ran] = Future()

    def run() -> None:
        try:
            done.set_result(cli.run(*args))
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            done.set_exception(exc)

    threading.Thread(target=run, name="cli", daemon=True).start()
    return done


# -- rules test --cases ------------------------------------------------------------------------


def test_the_examples_cases_pass_without_a_database(cli: Cli) -> None:
    ran = cli.ok("rules", "test", "--cases", str(CASES))
    lines = ran.stdout.splitlines()
    assert len(lines) == 8 and all(line.startswith("PASS ") for line in lines[:-1])
    assert "a reading above 50 becomes an alert for its device" in lines[0]
    assert lines[-1].startswith("7 passed in ")
    report = cli.json("rules", "test", "--cases", str(CASES))
    assert (report["passed"], report["failed"], report["errors"], report["ok"]) == (7, 0, 0, True)
    assert {c["rule"] for c in report["cases"]} == {"hot_readings", "shadow_reports"}
    # The cases name rule files only: nothing was opened or created.
    assert not cli.data_dir.exists()


def test_failing_cases_show_a_diff_and_exit_1(cli: Cli, tmp_path: Path) -> None:
    cli.ok("rules", "apply", str(folder_of_examples(tmp_path)))
    folder = tmp_path / "cases"
    write_cases(
        folder,
        "hot.json",
        [
            hot_case("passes", expect={"temp": 61, "device": "kitchen"}),
            hot_case("wrong temperature", expect={"temp": 60, "device": "kitchen"}),
            hot_case(
                "wrong target",
                expectActions=[{"action": "republish", "topic": "alerts/porch/hot"}],
            ),
            hot_case("no such rule", rule="not_there", expect=None),
        ],
    )
    ran = cli.run("rules", "test", "--cases", str(folder))
    assert ran.code == 1, ran.stderr
    out = ran.stdout
    assert "PASS  passes" in out
    assert "FAIL  wrong temperature" in out and "the output differs" in out
    assert '-  "temp": 60' in out and '+  "temp": 61' in out
    assert "FAIL  wrong target" in out and '+    "topic": "alerts/kitchen/hot"' in out
    assert "ERROR no such rule" in out and "rule 'not_there' does not exist" in out
    assert out.splitlines()[-1].startswith("1 passed, 2 failed, 1 error in ")
    as_json = cli.run("rules", "test", "--cases", str(folder), "--json")
    assert as_json.code == 1
    report = as_json.json()
    assert [c["status"] for c in report["cases"]] == ["pass", "fail", "fail", "error"]
    assert report["cases"][1]["diff"][:2] == ["--- expected output", "+++ actual output"]
    assert report["cases"][1]["output"]["temp"] == 61
    assert (report["passed"], report["failed"], report["errors"]) == (1, 2, 1)


def test_a_rule_file_next_to_the_cases_and_a_disabled_rule(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "cases"
    rule = json.loads((EXAMPLES / "hot_readings.json").read_text())
    write_cases(folder, "hot_readings.json", {**rule, "ruleDisabled": True})
    write_cases(
        folder,
        "cases.json",
        hot_case(
            "file next door", rule="hot_readings.json", expect={"temp": 61, "device": "kitchen"}
        ),
    )
    report = cli.json("rules", "test", "--cases", str(folder))
    assert [c["name"] for c in report["cases"]] == ["file next door"]


def test_a_broken_case_file_is_one_error_naming_the_file_and_the_case(
    cli: Cli, tmp_path: Path
) -> None:
    folder = tmp_path / "cases"
    write_cases(folder, "bad.json", [hot_case("typo", expected=None)])
    message = cli.fails("rules", "test", "--cases", str(folder))
    assert "bad.json: case 'typo': unknown key 'expected'" in message
    assert "is not a folder of case files" in cli.fails(
        "rules", "test", "--cases", str(tmp_path / "missing")
    )


def test_cases_and_a_single_message_do_not_mix(cli: Cli) -> None:
    both = cli.run("rules", "test", "hot_readings", "--cases", str(CASES))
    assert both.code == 2 and "--cases" in both.stderr
    assert cli.run("rules", "test", "--topic", "a", "--payload", "{}").code == 2
    missing = cli.run("rules", "test", str(EXAMPLES / "hot_readings.json"), "--payload", "{}")
    assert missing.code == 2 and "--topic" in missing.stderr
    # The single-message form reads Basic Ingest topics as the engine does.
    ingest = cli.json(
        "rules",
        "test",
        str(EXAMPLES / "hot_readings.json"),
        "--topic",
        "$aws/rules/hot_readings/sensors/porch/telemetry",
        "--payload",
        '{"temp": 80}',
    )
    assert ingest["output"]["device"] == "porch"
    assert ingest["actions"][0]["topic"] == "alerts/porch/hot"


# -- rules replay ----------------------------------------------------------------------------------


def capture_lines() -> list[dict[str, Any]]:
    base = 1_718_000_000_000
    return [
        {"t": base, "topic": "sensors/kitchen/telemetry", "payload": '{"temp": 61}'},
        {"t": base + 1, "topic": "sensors/kitchen/telemetry", "payload": '{"temp": 20}'},
        {"t": base + 2, "topic": "sensors/porch/telemetry", "payload": '{"temp": 70}'},
        {
            "t": base + 3,
            "topic": "$aws/things/lamp/shadow/update/accepted",
            "payload": '{"state": {"reported": {"on": true}}, "version": 4}',
        },
        {"t": base + 4, "topic": "sensors/kitchen/telemetry", "payloadBase64": "AAE="},
        {"t": base + 5, "topic": "unrelated", "payload": "hello"},
    ]


def write_capture(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_replay_with_rule_files(cli: Cli, tmp_path: Path) -> None:
    capture = write_capture(tmp_path / "traffic.jsonl", capture_lines())
    report = cli.json("rules", "replay", str(capture), "--rules", str(EXAMPLES), "--outputs", "1")
    assert (report["messages"], report["unmatched"]) == (6, 1)
    hot, shadow = report["rules"]
    assert (hot["ruleName"], hot["matched"], hot["passed"], hot["outputs"]) == (
        "hot_readings",
        4,
        2,
        2,
    )
    assert hot["firstOutputs"] == [
        {
            "t": 1_718_000_000_000,
            "topic": "sensors/kitchen/telemetry",
            "output": {"temp": 61, "device": "kitchen", "at": 1_718_000_000_000},
            "actions": [{"action": "republish", "topic": "alerts/kitchen/hot", "qos": 1}],
        }
    ]
    assert shadow["firstOutputs"][0]["output"] == {
        "reported": {"on": True},
        "thing": "lamp",
        "version": 4,
    }
    assert shadow["firstOutputs"][0]["actions"][0]["topic"] == "reports/lamp"
    text = cli.ok("rules", "replay", str(capture), "--rules", str(EXAMPLES)).text
    assert "Replayed 6 messages" in text and "1 reached no rule" in text
    assert "hot_readings: 2 outputs" in text and "republish to alerts/porch/hot (QoS 1)" in text
    single = cli.json(
        "rules", "replay", str(capture), "--rules", str(EXAMPLES / "hot_readings.json")
    )
    assert [r["ruleName"] for r in single["rules"]] == ["hot_readings"]


def test_the_examples_traffic_replays_through_the_examples_rules(cli: Cli) -> None:
    report = cli.json("rules", "replay", str(EXAMPLES / "traffic.jsonl"), "--rules", str(EXAMPLES))
    outputs = {r["ruleName"]: r["outputs"] for r in report["rules"]}
    assert outputs == {"hot_readings": 2, "shadow_reports": 1}
    assert all(r["failed"] == 0 for r in report["rules"]) and report["unmatched"] == 1


def test_replay_with_the_database_rules_skips_disabled_ones(cli: Cli, tmp_path: Path) -> None:
    capture = write_capture(tmp_path / "traffic.jsonl", capture_lines())
    assert "no rules to replay" in cli.fails("rules", "replay", str(capture))
    cli.ok("rules", "apply", str(folder_of_examples(tmp_path)))
    cli.ok("rules", "disable", "hot_readings")
    report = cli.json("rules", "replay", str(capture))
    by_name = {r["ruleName"]: r for r in report["rules"]}
    assert by_name["hot_readings"]["matched"] == 0 and by_name["hot_readings"]["ruleDisabled"]
    assert by_name["shadow_reports"]["outputs"] == 1
    assert report["unmatched"] == 5
    assert "(disabled: skipped)" in cli.ok("rules", "replay", str(capture)).text


def test_replay_errors_name_the_line(cli: Cli, tmp_path: Path) -> None:
    capture = write_capture(tmp_path / "traffic.jsonl", [*capture_lines(), {"payload": "x"}])
    message = cli.fails("rules", "replay", str(capture), "--rules", str(EXAMPLES))
    assert message == f'error: {capture}:7: "topic" is missing'
    assert "does not exist" in cli.fails(
        "rules", "replay", str(tmp_path / "nope.jsonl"), "--rules", str(EXAMPLES)
    )
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\n")
    assert "not UTF-8" in cli.fails("rules", "replay", str(binary), "--rules", str(EXAMPLES))


# -- capture ---------------------------------------------------------------------------------------


def test_capture_records_what_a_broker_delivers_and_replay_reads_it(
    cli: Cli, tmp_path: Path, start_broker: StartBroker, paho: Any, name: str
) -> None:
    broker = start_broker(lifecycle_events=True)
    publisher: PahoClient = paho(broker.port, f"{name}-pub")
    publisher.connect()
    capture_id = f"{name}-capture"
    assert publisher.subscribe(f"$aws/events/subscriptions/subscribed/{capture_id}", 1) == [1]
    out = tmp_path / "traffic.jsonl"
    running = in_thread(
        cli,
        "capture",
        str(out),
        "--topic",
        f"{name}/sensors/+/telemetry",
        "--topic",
        f"{name}/raw",
        "--port",
        str(broker.port),
        "--client-id",
        capture_id,
        "--count",
        "3",
        "--json",
    )
    [subscribed] = publisher.expect(1, timeout=WAIT)  # capture's subscriptions are in place
    assert json.loads(subscribed.payload)["topics"] == [
        f"{name}/sensors/+/telemetry",
        f"{name}/raw",
    ]
    publisher.publish(f"{name}/sensors/kitchen/telemetry", b'{"temp": 61}', qos=1)
    publisher.publish(f"{name}/elsewhere", b"not recorded", qos=1)
    publisher.publish(f"{name}/raw", b"\x00\xff", qos=0)
    publisher.publish(f"{name}/sensors/porch/telemetry", b'{"temp": 20}', qos=1)
    ran = running.result(timeout=WAIT)
    assert ran.code == 0, ran.stderr
    assert ran.json() == {
        "file": str(out),
        "messages": 3,
        "seconds": ran.json()["seconds"],
        "stoppedBy": "count",
    }
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["topic"], line["qos"], line["retain"]) for line in lines] == [
        (f"{name}/sensors/kitchen/telemetry", 1, False),
        (f"{name}/raw", 0, False),
        (f"{name}/sensors/porch/telemetry", 1, False),
    ]
    assert lines[0]["payload"] == '{"temp": 61}' and lines[0]["clientId"] is None
    assert lines[1]["payloadBase64"] == "AP8=" and "payload" not in lines[1]
    assert lines[0]["t"] <= lines[1]["t"] <= lines[2]["t"]
    # The recording replays through a rule on the same topics.
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "hot.json").write_text(
        json.dumps(
            {
                "sql": f"SELECT temp, timestamp() AS at FROM '{name}/sensors/+/telemetry' "
                "WHERE temp > 50"
            }
        )
    )
    report = cli.json("rules", "replay", str(out), "--rules", str(rules))
    [hot] = report["rules"]
    assert (hot["matched"], hot["outputs"]) == (2, 1)
    assert hot["firstOutputs"][0]["output"] == {"temp": 61, "at": lines[0]["t"]}


def test_capture_stops_after_its_duration(
    cli: Cli, tmp_path: Path, start_broker: StartBroker, name: str
) -> None:
    broker = start_broker()
    out = tmp_path / "quiet.jsonl"
    ran = cli.ok(
        "capture", str(out), "-t", f"{name}/#", "--port", str(broker.port), "--duration", "0.2"
    )
    assert ran.stdout.startswith(f"Recorded 0 messages to {out} in ")
    assert out.read_text() == ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_capture_errors_are_one_line(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "kept.jsonl"
    out.write_text("earlier\n")
    message = cli.fails("capture", str(out), "-t", "#", "--port", str(free_port()), "-c", "1")
    assert message.startswith("error: cannot connect to 127.0.0.1:")
    assert out.read_text() == "earlier\n"  # left as it was
    assert "--cert and --key go together" in cli.fails(
        "capture", str(out), "-t", "#", "--cert", str(out)
    )
    assert cli.run("capture", str(out)).code == 2  # --topic is required


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    running = RunningApp(tmp_path_factory.mktemp("capture") / "var")
    try:
        yield running
    finally:
        running.stop()


def test_capture_over_mutual_tls_with_a_device_certificate(
    cli: Cli, tmp_path: Path, app: RunningApp, paho: Any, name: str
) -> None:
    device = provision(app, name, policy=own_topics_policy(topics=f"{name}/*"))
    out = tmp_path / "tls.jsonl"
    running = in_thread(
        cli,
        "capture",
        str(out),
        "-t",
        f"{name}/#",
        "--host",
        "localhost",
        "--port",
        str(app.tls_port),
        "--cafile",
        str(device.root_ca),
        "--cert",
        str(device.cert),
        "--key",
        str(device.key),
        "--client-id",
        device.name,
        "-c",
        "1",
    )

    def subscribed() -> bool:
        def check() -> bool:
            session = app.app.broker.sessions.get(device.name)
            return session is not None and f"{name}/#" in session.subscriptions

        return app.call(check)

    wait_for(subscribed, WAIT, what="capture's subscription")
    publisher: PahoClient = paho(app.port, f"{name}-pub")
    publisher.connect()
    publisher.publish(f"{name}/kitchen", b'{"on": true}', qos=1)
    ran = running.result(timeout=WAIT)
    assert ran.code == 0, ran.stderr
    assert ran.stdout.startswith(f"Recorded 1 message to {out}")
    [line] = [json.loads(text) for text in out.read_text().splitlines()]
    assert (line["topic"], line["payload"]) == (f"{name}/kitchen", '{"on": true}')
