"""The ``republish`` action: the rule's output as a new message through the Bus (reference 2.6).

The topic is a substitution template evaluated against the original message; ``$$`` at its
start stands for ``$`` (AWS's way to republish to reserved topics such as a shadow's
``update``). MQTT 5 headers become the message's properties.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field

from broker.properties import Properties
from rules.actions.base import ParamsModel, Publish, Resolved, TargetEnv, output_payload
from rules.errors import TargetError
from rules.sql.compiler import substitute
from rules.sql.context import EvalContext

if TYPE_CHECKING:
    from rules.delivery import Delivery

KIND = "republish"
FAILED_ACTION = "RepublishAction"


class RepublishHeaders(ParamsModel):
    payload_format_indicator: str | None = Field(default=None, alias="payloadFormatIndicator")
    content_type: str | None = Field(default=None, alias="contentType")
    response_topic: str | None = Field(default=None, alias="responseTopic")
    correlation_data: str | None = Field(default=None, alias="correlationData")
    message_expiry: str | None = Field(default=None, alias="messageExpiry")
    user_properties: list[dict[str, str]] | None = Field(default=None, alias="userProperties")


class RepublishAction(ParamsModel):
    topic: str = Field(min_length=1)
    """A substitution template; ``$$`` stands for a leading ``$`` (AWS)."""
    qos: int = Field(default=0, ge=0, le=1)
    role_arn: str | None = Field(default=None, alias="roleArn")
    """Accepted so AWS rule JSON reads unchanged; thingcore needs no role."""
    headers: RepublishHeaders | None = None


Params = RepublishAction


def templates(params: RepublishAction) -> list[str]:
    found = [params.topic]
    headers = params.headers
    if headers is not None:
        found += [
            v
            for v in (
                headers.content_type,
                headers.response_topic,
                headers.correlation_data,
                headers.message_expiry,
            )
            if v is not None
        ]
        found += [p.get("value", "") for p in headers.user_properties or []]
    return found


def target_topic(template: str, ctx: EvalContext, version: str) -> str:
    topic = substitute(template, ctx, version)
    return "$" + topic[2:] if topic.startswith("$$") else topic


def resolve(params: RepublishAction, output: Any, ctx: EvalContext, version: str) -> Resolved:
    resolved: dict[str, Any] = {
        "topic": target_topic(params.topic, ctx, version),
        "qos": params.qos,
    }
    headers = params.headers
    if headers is not None:

        def sub(value: str | None) -> str | None:
            return None if value is None else substitute(value, ctx, version)

        resolved["headers"] = {
            "utf8": headers.payload_format_indicator == "UTF8_DATA",
            "contentType": sub(headers.content_type),
            "responseTopic": sub(headers.response_topic),
            "correlationData": sub(headers.correlation_data),
            "messageExpiry": sub(headers.message_expiry),
            "userProperties": [
                [p["key"], substitute(p["value"], ctx, version)]
                for p in headers.user_properties or []
            ],
        }
    # One lane for every republish: the Bus never fails, and order per rule is kept.
    return Resolved("republish", resolved, output_payload(output))


def properties(headers: dict[str, Any] | None) -> Properties | None:
    if headers is None:
        return None
    expiry = headers.get("messageExpiry")
    correlation = headers.get("correlationData")
    return Properties(
        payload_format_indicator=1 if headers.get("utf8") else None,
        content_type=headers.get("contentType"),
        response_topic=headers.get("responseTopic"),
        correlation_data=None if correlation is None else base64.b64decode(correlation),
        message_expiry_interval=int(expiry) if expiry and expiry.isdigit() else None,
        user_properties=[(k, v) for k, v in headers.get("userProperties") or []],
    )


class RepublishTarget:
    batch_limit = 1024

    def __init__(self, publish: Publish) -> None:
        self._publish = publish

    async def deliver(self, batch: Sequence[Delivery]) -> list[TargetError | None]:
        results: list[TargetError | None] = []
        for delivery in batch:
            params = delivery.params
            try:
                props = properties(params.get("headers"))
                self._publish(params["topic"], delivery.body, params["qos"], props, delivery.depth)
            except Exception as exc:  # noqa: BLE001 - an invalid topic from a template, say
                results.append(TargetError(f"republish to {params['topic']!r} failed: {exc}"))
            else:
                results.append(None)
        return results

    async def aclose(self) -> None:
        return None


def open_target(key: str, env: TargetEnv) -> RepublishTarget:
    return RepublishTarget(env.publish)


def resource(params: dict[str, Any]) -> str:
    return str(params.get("topic", ""))
