"""The pattern examples (examples/fan-out, examples/priority, examples/idempotent), end to end
against a real ``thingcore serve`` on port 0, as their READMEs run them: functions copied into
the data directory, rules applied and topics made with the CLI, devices publishing with
``mosquitto_pub``, the results read back through the CLI's ``--json``. Trigger polling is made
fast through the environment, as a user could.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.e2e.example_support import (
    FAST,
    bodies,
    cli,
    function_log,
    install,
    mosquitto_pub,
    objects,
    peek,
    until,
)
from tests.thingcore.test_cli import ServeProcess


def test_fan_out_to_a_topic_and_a_bucket(tmp_path: Path) -> None:
    data = tmp_path / "var"
    install("fan-out", data)
    orders = {
        "store-1": [{"orderId": "A-1", "total": 30}, {"orderId": "A-2", "total": 12.5}],
        "store-2": [{"orderId": "B-1", "total": 7}],
    }
    with ServeProcess(data, tmp_path, **FAST) as server:
        # As the README: the topic and its two subscribers, made beside the running server.
        made = cli(data, "topics", "create", "orders")
        assert made["created"] and made["topicArn"].endswith(":orders")
        billing = cli(data, "topics", "subscribe", "orders", "billing", "--raw")
        shipping = cli(data, "topics", "subscribe", "orders", "shipping")
        assert (billing["raw"], shipping["raw"]) == (True, False)
        for store, placed in orders.items():
            lines = "\n".join(json.dumps(order) for order in placed)
            mosquitto_pub(server.port, f"orders/{store}/placed", "-l", lines=lines)

        def everywhere() -> bool:
            counts = (len(peek(data, "billing")), len(peek(data, "shipping")))
            return counts == (3, 3) and len(objects(data, "order-archive")) == 3

        until("every order in both queues and the archive", everywhere)
        # Nothing more arrives later (no duplicate from the fan-out).
        time.sleep(0.5)
        billed = bodies(data, "billing")
        envelopes = bodies(data, "shipping")
        archived = objects(data, "order-archive")

    sent = {o["orderId"]: {**o, "store": s} for s, placed in orders.items() for o in placed}

    def without_time(order: dict[str, Any]) -> dict[str, Any]:
        assert isinstance(order.pop("placedAt"), int)
        return order

    # billing (raw): the rule's output itself, every order once.
    assert {o["orderId"]: without_time(o) for o in billed} == sent
    # shipping: SNS's envelope around the same message, every order once.
    assert all(e["Type"] == "Notification" for e in envelopes)
    assert all(e["TopicArn"] == made["topicArn"] for e in envelopes)
    shipped = [json.loads(e["Message"]) for e in envelopes]
    assert {o["orderId"]: without_time(o) for o in shipped} == sent
    # The archive: one object per order under the store's name.
    assert sorted(o["Key"] for o in archived) == [
        "store-1/A-1.json",
        "store-1/A-2.json",
        "store-2/B-1.json",
    ]
    body = json.loads((data / "buckets" / "order-archive" / "store-2" / "B-1.json").read_text())
    assert without_time(body) == sent["B-1"]


def test_priority_alarm_overtakes_telemetry(tmp_path: Path) -> None:
    data = tmp_path / "var"
    install("priority", data)
    burst = 12
    with ServeProcess(data, tmp_path, **FAST) as server:
        lines = "\n".join(json.dumps({"n": n, "temp": 20 + n}) for n in range(1, burst + 1))
        mosquitto_pub(server.port, "plant/line-1/telemetry", "-l", lines=lines)
        mosquitto_pub(
            server.port, "plant/line-1/alarm", "-m", json.dumps({"alarm": "overpressure"})
        )
        # Each message takes the one consumer WORK_SECONDS (0.5 s): about 6.5 s in all.
        handled = until(
            "every message handled",
            lambda: (found := bodies(data, "handled")) and len(found) == burst + 1 and found,
            timeout=60,
        )
    kinds = [m["kind"] for m in handled]
    position = kinds.index("alarm")
    # The alarm was published after the whole burst, so in send order it would be handled
    # last (position 12). With priority 9 it waits only for what was under way when it came.
    assert position <= 3, kinds
    assert kinds.count("alarm") == 1 and kinds.count("telemetry") == burst
    # The telemetry, all priority 0, still goes in the order it was sent.
    assert [m["n"] for m in handled if m["kind"] == "telemetry"] == list(range(1, burst + 1))
    assert handled[position]["alarm"] == "overpressure"
    # The consumer really took one message at a time, in that order (its log says so).
    log = function_log(data, "worker")
    assert log.count("handled telemetry") == burst and log.count("handled alarm") == 1


def test_idempotent_consumer_charges_once(tmp_path: Path) -> None:
    data = tmp_path / "var"
    install("idempotent", data)
    with ServeProcess(data, tmp_path, **FAST) as server:
        # A till sends A-1, resends it (its PUBACK was lost: a new message, a new delivery
        # id, the same orderId), then sends B-2.
        for order in ({"orderId": "A-1", "amount": 30}, {"orderId": "A-1", "amount": 30}):
            mosquitto_pub(server.port, "shop/till-1/orders", "-m", json.dumps(order))
        mosquitto_pub(
            server.port, "shop/till-1/orders", "-m", json.dumps({"orderId": "B-2", "amount": 12})
        )
        until(
            "three invocations", lambda: function_log(data, "charge").count("REPORT RequestId") == 3
        )
        payments = bodies(data, "payments")
        assert sorted((p["orderId"], p["amount"]) for p in payments) == [("A-1", 30), ("B-2", 12)]
        assert function_log(data, "charge").count("was charged already") == 1

        # The same delivery twice (a retry: the same message id, here given by hand): the
        # handler runs once and the repeat gets the first answer back, the same paymentId.
        order = json.dumps({"orderId": "C-3", "amount": 5, "device": "till-9"})

        def invoke(message_id: str) -> Any:
            args = ("functions", "invoke", "charge", order, "--message-id", message_id)
            return cli(data, *args)["payload"]

        first, again = invoke("delivery-1"), invoke("delivery-1")
        assert first["charged"] is True and again == first
        # The same order in another delivery: the handler runs, and the order key stops it.
        assert invoke("delivery-2") == {"orderId": "C-3", "charged": False, "duplicate": True}
        payments = bodies(data, "payments")
    assert sorted(p["orderId"] for p in payments) == ["A-1", "B-2", "C-3"]
    [c3] = [p for p in payments if p["orderId"] == "C-3"]
    assert c3["paymentId"] == first["paymentId"]
    assert function_log(data, "charge").count("charged order C-3") == 1
