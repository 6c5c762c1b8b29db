"""Fan-in behind a queue: each invocation gets a batch of readings (SQS's event shape) and
writes one summary per batch (count, mean and maximum per device) to the bucket `aggregates`.

The sidecar's concurrency of 1 is the load leveling: however fast devices publish, the
downstream (here the bucket; in life a database or an API with a rate limit) sees one batch at
a time, and the queue holds the rest.
"""

import json
import os
from pathlib import Path

from rules.local.buckets import BucketStore

BUCKETS = BucketStore(Path(os.environ["THINGCORE_BUCKETS_DIR"]))


def handler(event, context):
    per_device = {}
    for record in event["Records"]:
        reading = json.loads(record["body"])
        per_device.setdefault(reading["device"], []).append(reading["temp"])
    summary = {
        device: {"count": len(temps), "mean": sum(temps) / len(temps), "max": max(temps)}
        for device, temps in sorted(per_device.items())
    }
    # Keyed by the batch's first message: a batch handled again overwrites its own summary.
    first = event["Records"][0]["messageId"]
    BUCKETS.put("aggregates", f"batch-{first}.json", json.dumps(summary).encode())
    return {"readings": len(event["Records"])}
