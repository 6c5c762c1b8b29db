"""The idempotent consumer: each order is charged once, however many times it arrives.

Duplicates come in two kinds, and each needs its own key:

- **The same delivery again** (the rules outbox retrying after a timeout, or redelivering after
  a crash): it has the same `context.message_id`. `@idempotent` runs the handler once per
  message id and answers a repeat with the first answer, without running the handler.
- **The same order in a new message** (a till that resends after a lost PUBACK, a user who
  taps twice): each MQTT message is a new delivery with a new `context.message_id`, so only
  the payload can tell. `context.once` and `@idempotent` key on the message id only, so the
  handler keeps its own record of charged orders, keyed by `orderId`, in an
  `IdempotencyStore` (a SQLite file in the data directory).

The effect is a payment: a message in the queue `payments` with a fresh id, standing for a call
to a payment provider that charges again each time it is called.
"""

import json
import os
import uuid
from pathlib import Path

from rules.local.function_worker import idempotent
from rules.local.idempotency import IdempotencyStore
from rules.local.queues import QueueStore, SendItem

DATA = Path(os.environ["THINGCORE_DATA_DIR"])
QUEUES = QueueStore(Path(os.environ["THINGCORE_QUEUES_PATH"]))
ORDERS = IdempotencyStore(DATA / "charged-orders.sqlite")


@idempotent  # the same delivery twice: answered from the first run
def handler(event, context):
    order = event["orderId"]
    if ORDERS.seen("charge", order):  # the same order in a new message
        print(f"order {order} from {event['device']} was charged already: not again")
        return {"orderId": order, "charged": False, "duplicate": True}
    payment = {
        "orderId": order,
        "amount": event["amount"],
        "device": event["device"],
        "paymentId": str(uuid.uuid4()),
    }
    # The payment provider: not idempotent (a fresh id each call, so the queue takes each).
    QUEUES.send_batch([SendItem("payments", json.dumps(payment).encode(), payment["paymentId"])])
    # Recorded after the charge: a crash in between charges again on the retry (at least
    # once); recorded before, it would risk never charging (at most once).
    ORDERS.record("charge", order)
    print(f"charged order {order}: {payment['amount']} ({payment['paymentId']})")
    return {"orderId": order, "charged": True, "paymentId": payment["paymentId"]}
