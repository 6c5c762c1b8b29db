"""``thingcore targets``: where rules deliver, what each target still owes, and its counters.

Counters (delivered, retried, failed...) are what running servers last wrote to the database
(every ``rules.metrics_flush_interval`` seconds); "owed" is read from this data directory's
outbox file, so it is exact even while the server is stopped.
"""

from __future__ import annotations

import time
from typing import Any

from rich.table import Table

from rules.outbox import Outbox
from rules.store import RuleStore
from thingcore.cli.common import (
    DataDir,
    Json,
    print_json,
    registry_for,
    settings_for,
    stdout_console,
)


def gather(data_dir: Any) -> list[dict[str, Any]]:
    """One entry per target: stored counters joined with the outbox file's owed rows."""
    settings = settings_for(data_dir)
    with registry_for(settings) as registry:
        stored = {m["name"]: m for m in RuleStore(registry.db).delivery_metrics("target")}
    owed: dict[str, tuple[int, float | None]] = {}
    path = settings.data_dir / "outbox.sqlite"
    if path.exists():
        outbox = Outbox(path)
        try:
            owed = {d.target: (d.owed, d.oldest) for d in outbox.depths()}
        finally:
            outbox.close()
    now = time.time()
    entries = []
    for name in sorted(set(stored) | set(owed)):
        counters = stored.get(name, {})
        count, oldest = owed.get(name, (0, None))
        kind, _, resource = name.partition(":")
        entries.append(
            {
                "target": name,
                "kind": kind,
                "resource": resource or name,
                "owed": count,
                "oldestOwedSeconds": None if oldest is None else round(now - oldest, 1),
                "delivered": counters.get("delivered", 0),
                "retried": counters.get("retried", 0),
                "failed": counters.get("failed", 0),
                "refused": counters.get("refused", 0),
                "spilled": counters.get("spilled", 0),
                "meanLatencyMs": counters.get("meanLatencyMs"),
                "updatedAt": counters.get("updatedAt"),
            }
        )
    return entries


def targets(data_dir: DataDir = None, json_output: Json = False) -> None:
    """Rule targets: the queues, buckets, functions and topics rules deliver to, what each
    still owes in the outbox, and its delivered / retried / failed counts.

    Example: `thingcore targets`; a target whose "owed" grows and whose "retried" climbs is
    down or too slow: `thingcore rules show NAME` names the rule, and the rule's error action
    (or its dead-letter queue, `thingcore queues peek NAME-dlq`) gets what fails for good.
    """
    entries = gather(data_dir)
    if json_output:
        print_json(entries)
        return
    console = stdout_console()
    if not entries:
        console.print("No targets yet: rules with actions create them when they first match.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("Target", "Owed", "Oldest owed", "Delivered", "Retried", "Failed", "Latency"):
        table.add_column(column, justify="left" if column == "Target" else "right")
    for e in entries:
        oldest = e["oldestOwedSeconds"]
        latency = e["meanLatencyMs"]
        table.add_row(
            e["target"],
            str(e["owed"]),
            "-" if oldest is None else f"{oldest} s",
            str(e["delivered"]),
            str(e["retried"]),
            str(e["failed"]),
            "-" if latency is None else f"{latency} ms",
        )
    console.print(table)
