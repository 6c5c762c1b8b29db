"""One report per batch of hot readings (SQS's event shape): how many, the hottest, and which
devices, written to the bucket named by REPORT_BUCKET (the app file's environment)."""

import json
import os
from pathlib import Path

from rules.local.buckets import BucketStore

BUCKETS = BucketStore(Path(os.environ["THINGCORE_BUCKETS_DIR"]))


def handler(event, context):
    readings = [json.loads(record["body"]) for record in event["Records"]]
    report = {
        "count": len(readings),
        "max": max(r["temp"] for r in readings),
        "devices": sorted({r["device"] for r in readings}),
    }
    # Keyed by the batch's first message: a batch handled again overwrites its own report.
    first = event["Records"][0]["messageId"]
    BUCKETS.put(os.environ["REPORT_BUCKET"], f"hot-{first}.json", json.dumps(report).encode())
    return report
