"""``thingcore targets`` and the delivery counters of ``thingcore rules show``, after a real
engine delivered to a local queue and left deliveries owed to a function that is down."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from broker.message import Message
from broker.server import Broker
from registry.config import RegistrySettings
from registry.service import Registry
from rules.config import DeliverySettings, RulesSettings
from rules.engine import RulesEngine
from rules.store import RuleStore
from tests.harness import make_settings
from tests.thingcore.test_cli_registry import Cli, cli

__all__ = ["cli"]

RULE = {
    "sql": "SELECT n FROM 'in'",
    "awsIotSqlVersion": "2016-03-23",
    "actions": [{"queue": {"queueName": "q"}}, {"function": {"functionName": "sink"}}],
}


async def run_engine(data_dir: Path) -> None:
    functions = data_dir / "functions"
    functions.mkdir(parents=True)
    (functions / "sink.py").write_text(
        "def handler(event, context):\n    raise ConnectionError('sink is down')\n"
    )
    settings = RulesSettings(
        delivery=DeliverySettings(backoff_initial=0.01, backoff_max=0.02, max_attempts=10_000)
    )
    registry = Registry(RegistrySettings(), data_dir).open()
    try:
        store = RuleStore(registry.db)
        broker = Broker(make_settings(), data_dir=None)
        async with RulesEngine(settings, broker.bus, store, data_dir=data_dir) as engine:
            for n in range(3):
                broker.publish(Message("in", json.dumps({"n": n}).encode(), 1, False))
            lanes = engine.delivery.lanes
            for _ in range(500):
                queue_done = "queue:q" in lanes and lanes["queue:q"].depth == 0
                if queue_done and lanes["function:sink"].counters.retried >= 3:
                    break
                await asyncio.sleep(0.01)
            await engine.flush_metrics()
    finally:
        registry.close()


def test_targets_show_what_is_owed_and_what_was_delivered(cli: Cli) -> None:
    folder = cli.data_dir.parent / "rules"
    folder.mkdir()
    (folder / "r.json").write_text(json.dumps(RULE))
    cli.ok("rules", "apply", str(folder))
    asyncio.run(run_engine(cli.data_dir))

    entries = {e["target"]: e for e in cli.json("targets")}
    assert entries["queue:q"]["delivered"] == 3 and entries["queue:q"]["owed"] == 0
    sink = entries["function:sink"]
    assert (sink["owed"], sink["delivered"], sink["kind"], sink["resource"]) == (
        3,
        0,
        "function",
        "sink",
    )
    assert sink["retried"] >= 3 and sink["oldestOwedSeconds"] >= 0

    text = cli.ok("targets").stdout
    assert "function:sink" in text and "queue:q" in text

    shown = cli.json("rules", "show", "r")
    assert shown["delivery"]["delivered"] == 3
    assert shown["delivery"]["retried"] >= 3
    assert "Dead-lettered" in cli.ok("rules", "show", "r").stdout


def test_targets_on_a_fresh_data_directory(cli: Cli) -> None:
    assert cli.json("targets") == []
    assert "No targets yet" in cli.ok("targets").stdout
