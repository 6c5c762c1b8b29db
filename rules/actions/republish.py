"""The ``republish`` action: the rule's output as a new message through the Bus (reference 2.6).

The topic is a substitution template evaluated against the original message; ``$$`` at its
start stands for ``$`` (AWS's way to republish to reserved topics such as a shadow's
``update``). MQTT 5 headers become the message's properties.
"""

from __future__ import annotations

import base64
from typing import Any

from broker.bus import Bus
from broker.properties import Properties
from rules.definition import RepublishAction
from rules.sql.compiler import CompiledRule, substitute
from rules.sql.context import EvalContext


def target_topic(template: str, ctx: EvalContext, rule: CompiledRule) -> str:
    topic = substitute(template, ctx, rule.version.name)
    return "$" + topic[2:] if topic.startswith("$$") else topic


def republish(
    action: RepublishAction, output: Any, ctx: EvalContext, bus: Bus, rule: CompiledRule
) -> None:
    from rules.engine import output_payload

    topic = target_topic(action.topic, ctx, rule)
    properties = None
    headers = action.headers
    if headers is not None:
        version = rule.version.name

        def sub(value: str | None) -> str | None:
            return None if value is None else substitute(value, ctx, version)

        expiry = sub(headers.message_expiry)
        correlation = sub(headers.correlation_data)
        properties = Properties(
            payload_format_indicator=1 if headers.payload_format_indicator == "UTF8_DATA" else None,
            content_type=sub(headers.content_type),
            response_topic=sub(headers.response_topic),
            correlation_data=None if correlation is None else base64.b64decode(correlation),
            message_expiry_interval=int(expiry) if expiry and expiry.isdigit() else None,
            user_properties=[
                (p["key"], substitute(p["value"], ctx, version))
                for p in headers.user_properties or []
            ],
        )
    bus.publish(topic, output_payload(output), qos=action.qos, properties=properties)
