"""A scheduled watchdog: every few seconds, find the devices whose last heartbeat is older than
SILENT_AFTER seconds and put one alert per silence in the queue `silent-devices`.

The alert's message id is the device and the time of its last heartbeat, so the queue takes
each silence once however many fires see it (a queue does not take an id twice), and a device
that comes back and falls silent again is alerted again.
"""

import json
import os
from datetime import datetime
from pathlib import Path

from rules.local.buckets import BucketStore, NoSuchBucket
from rules.local.queues import QueueStore, SendItem

BUCKETS = BucketStore(Path(os.environ["THINGCORE_BUCKETS_DIR"]))
QUEUES = QueueStore(Path(os.environ["THINGCORE_QUEUES_PATH"]))
SILENT_AFTER = float(os.environ.get("SILENT_AFTER", "30"))


def handler(event, context):
    # The fire's own time (EventBridge's "time"), not the clock: a retried fire decides alike.
    now = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()
    try:
        objects = BUCKETS.list("last-seen")
    except NoSuchBucket:
        return {"silent": []}
    alerts = []
    for info in objects:
        body, _ = BUCKETS.get("last-seen", info.key)
        seen = json.loads(body)
        quiet = now - seen["at"] / 1000
        if quiet > SILENT_AFTER:
            alert = {"device": seen["device"], "lastSeen": seen["at"], "quietSeconds": int(quiet)}
            alerts.append(
                SendItem(
                    "silent-devices",
                    json.dumps(alert).encode(),
                    f"{seen['device']}-{seen['at']}",
                )
            )
    if alerts:
        QUEUES.send_batch(alerts)
    return {"silent": [json.loads(a.body)["device"] for a in alerts]}
