"""Priority queue: one slow consumer of the queue `work`, where alarms (priority 9) and routine
telemetry (priority 0) wait together. Each invocation gets one message (`batch_size = 1`), and
the queue hands out the highest priority first, so an alarm that arrives behind a backlog of
telemetry is the next message handled.

Each handled message is appended, in the order handled, to the queue `handled` (a log you can
read with `thingcore queues peek handled`); its message id is the work message's, so a retried
invocation does not log the same message twice.
"""

import json
import os
import time
from pathlib import Path

from rules.local.queues import QueueStore, SendItem

QUEUES = QueueStore(Path(os.environ["THINGCORE_QUEUES_PATH"]))
WORK_SECONDS = float(os.environ.get("WORK_SECONDS", "0.5"))


def handler(event, context):
    for record in event["Records"]:
        message = json.loads(record["body"])
        time.sleep(WORK_SECONDS)  # the slow part: a call to a plant system, say
        print(f"handled {message['kind']} from {message['device']}: {record['body']}")
        QUEUES.send_batch([SendItem("handled", record["body"].encode(), record["messageId"])])
    return {"handled": len(event["Records"])}
