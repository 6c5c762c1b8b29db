"""Asynchronous request-reply: a device publishes a request with an MQTT 5 response topic and
correlation data; the rule's `function` action with `"reply": true` publishes this handler's
return value to that response topic, with the same correlation data, so the device matches the
answer to its question.
"""

PRICES = {"widget": 2.5, "gadget": 12.0}


def handler(event, context):
    item = event.get("item")
    if item not in PRICES:
        return {"item": item, "error": f"no price for {item!r}", "known": sorted(PRICES)}
    quantity = int(event.get("quantity", 1))
    return {
        "item": item,
        "quantity": quantity,
        "total": PRICES[item] * quantity,
        "for": event.get("asked_by"),
    }
