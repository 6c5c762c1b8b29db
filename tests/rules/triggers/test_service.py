"""TriggerService: one source per ``[[events]]`` entry, following the sidecars as they change;
and the engine running it, so that a rule's queue feeds a function in batches (queue-based
load leveling), through a real broker, outbox, queue file and worker processes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker.server import Broker
from rules.config import LocalTargetSettings, RulesSettings, TriggerSettings
from rules.engine import RulesEngine
from rules.local.functions import FunctionRunner
from rules.local.queues import QueueStore, SendItem
from rules.triggers.context import TriggerContext
from rules.triggers.service import TriggerService
from tests.harness import make_settings
from tests.rules.engine_support import fast_delivery, function, publish, rule, until

RECORDER = """
import json, os
from pathlib import Path

def handler(event, context):
    with Path(os.environ["SEEN"]).open("a") as f:
        f.write(json.dumps([r["body"] for r in event["Records"]]) + "\\n")
"""

FAST = TriggerSettings(scan_interval=0.05, poll_interval=0.02, backoff_initial=0.01)


def batches(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def sidecar(data_dir: Path, name: str, text: str, seen: Path) -> None:
    # Top-level keys first: after [environment] they would belong to that table.
    settings, _, events = text.partition("[[events]]")
    (data_dir / "functions" / f"{name}.toml").write_text(
        f'{settings}\n[environment]\nSEEN = "{seen}"\n\n[[events]]{events}'
    )


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[TriggerService]:
    function(tmp_path, "worker", RECORDER)
    queues = QueueStore(tmp_path / "queues.sqlite", visibility_timeout=5)
    async with FunctionRunner(tmp_path / "functions", timeout=5) as runner:
        context = TriggerContext(
            runner,
            lambda: queues,
            lambda: pytest.fail("no bucket is used here"),
            FAST,
            tmp_path,
        )
        async with TriggerService(context) as running:
            yield running
    queues.close()


async def test_sources_follow_the_sidecars(service: TriggerService, tmp_path: Path) -> None:
    seen = tmp_path / "seen.txt"
    assert service.sources() == []
    sidecar(tmp_path, "worker", '[[events]]\nqueue = "jobs"\nbatch_size = 3\n', seen)
    await until(lambda: len(service.running) == 1, "the queue source to start")
    assert service.sources() == [
        {"function": "worker", "queue": "jobs", "batch_size": 3, "batch_window": 0.0}
    ]
    queues = service.ctx.queues()
    queues.send_batch([SendItem("jobs", f"m{n}".encode(), f"id-{n}") for n in range(5)])
    await until(lambda: sum(map(len, batches(seen))) == 5, "every message to be handled")
    assert all(len(b) <= 3 for b in batches(seen))

    # A changed entry replaces its source; the new one takes the new batch size.
    sidecar(tmp_path, "worker", '[[events]]\nqueue = "jobs"\nbatch_size = 1\n', seen)
    await until(
        lambda: [s.get("batch_size") for s in service.sources()] == [1], "the source to change"
    )
    # A broken sidecar stops the function's sources and says why.
    sidecar(tmp_path, "worker", '[[events]]\nqueue = "jobs"\nbatch_size = 0\n', seen)
    await until(lambda: "worker" in service.broken, "the broken sidecar to be noticed")
    assert service.running == {}
    assert "batch_size must be 1 to 10000" in service.broken["worker"]
    # Removed: nothing runs, and messages sent now wait in the queue, not lost.
    (tmp_path / "functions" / "worker.toml").unlink()
    await until(lambda: not service.broken, "the function to be readable again")
    queues.send_batch([SendItem("jobs", b"later", "id-later")])
    assert queues.info("jobs").visible == 1


async def test_a_rule_feeds_a_queue_that_a_function_drains_in_batches(tmp_path: Path) -> None:
    seen = tmp_path / "seen.txt"
    function(tmp_path, "worker", RECORDER)
    sidecar(
        tmp_path,
        "worker",
        'concurrency = 1\n\n[[events]]\nqueue = "readings"\nbatch_size = 10\nbatch_window = 0.3\n',
        seen,
    )
    settings = RulesSettings(
        delivery=fast_delivery(),
        local=LocalTargetSettings(function_timeout=5.0),
        triggers=FAST,
    )
    broker = Broker(make_settings(), data_dir=None)
    async with RulesEngine(settings, broker.bus, data_dir=tmp_path) as engine:
        engine.install(
            [rule("level", "SELECT * FROM 'sensors/+'", [{"queue": {"queueName": "readings"}}])]
        )
        for n in range(25):
            publish(broker, "sensors/a", {"n": n})
        await engine.drain()
        await until(lambda: sum(map(len, batches(seen))) == 25, "the function to drain the queue")
    handled = [json.loads(body)["n"] for batch in batches(seen) for body in batch]
    assert sorted(handled) == list(range(25))
    assert all(len(b) <= 10 for b in batches(seen))
    assert len(batches(seen)) < 25  # batched, not one invocation per message
