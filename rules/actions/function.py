"""The ``function`` action: the rule's output as the event of a local function.

Parameters read like AWS's ``lambda`` action: ``functionArn`` (its last ``:`` segment names
the function) or thingcore's ``functionName``; both are templates. Like Lambda's asynchronous
invocation, the handler's return value is not used; an error or a timeout is retried with the
outbox's backoff, then goes to the error action. The delivery's stable id is the context's
``message_id``, for handlers that must not act twice.

Beyond AWS, ``reply: true`` makes the function the responder of MQTT 5 request-response: when
the message that matched carried a response topic, the handler's return value is published
there as JSON (QoS 1) with the request's correlation data, so a device can call a function
and wait for its answer.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import Field, model_validator

from broker.properties import Properties
from rules.actions.base import (
    ParamsModel,
    Publish,
    Resolved,
    TargetEnv,
    exactly_one,
    last_segment,
    output_payload,
)
from rules.errors import TargetError
from rules.sql.compiler import substitute
from rules.sql.context import EvalContext

if TYPE_CHECKING:
    from rules.delivery import Delivery
    from rules.local.functions import FunctionRunner

KIND = "function"
FAILED_ACTION = "FunctionAction"


class FunctionAction(ParamsModel):
    function_name: str | None = Field(default=None, alias="functionName", min_length=1)
    function_arn: str | None = Field(default=None, alias="functionArn", min_length=1)
    reply: bool = False
    """Publish the return value to the request's MQTT 5 response topic (if it has one)."""

    @model_validator(mode="after")
    def _one_name(self) -> FunctionAction:
        exactly_one(self.function_name, self.function_arn, "functionName and functionArn")
        return self


Params = FunctionAction


def templates(params: FunctionAction) -> list[str]:
    return [params.function_name or params.function_arn or ""]


def resolve(params: FunctionAction, output: Any, ctx: EvalContext, version: str) -> Resolved:
    if params.function_name is not None:
        name = substitute(params.function_name, ctx, version)
    else:
        name = last_segment(substitute(params.function_arn or "", ctx, version), ":")
    params_out: dict[str, Any] = {"function": name}
    if params.reply:
        params_out["reply"] = True
    return Resolved(f"function:{name}", params_out, output_payload(output))


def event_of(body: bytes) -> Any:
    """The handler's event: the JSON output, or ``{"base64Payload": ...}`` for a binary one."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return {"base64Payload": base64.b64encode(body).decode("ascii")}


class FunctionTarget:
    def __init__(self, runner: FunctionRunner, name: str, publish: Publish | None = None) -> None:
        self._runner = runner
        self._name = name
        self._publish = publish
        try:
            self.batch_limit = runner.info(name).concurrency
        except TargetError:
            self.batch_limit = 1  # not there (yet): each delivery fails on its own

    async def _invoke(self, delivery: Delivery) -> TargetError | None:
        try:
            answer = await self._runner.invoke(
                self._name,
                event_of(delivery.body),
                request_id=delivery.message_id,
                message_id=delivery.message_id,
            )
        except TargetError as exc:
            return exc
        origin = delivery.origin
        if delivery.params.get("reply") and origin.response_topic and self._publish is not None:
            properties = Properties(
                payload_format_indicator=1,
                content_type="application/json",
                correlation_data=origin.correlation_data,
            )
            try:
                self._publish(
                    origin.response_topic,
                    orjson.dumps(answer.value),
                    1,
                    properties,
                    delivery.depth,
                )
            except Exception as exc:  # noqa: BLE001 - an invalid response topic, say
                return TargetError(
                    f"function {self._name} answered, but its reply to "
                    f"{origin.response_topic!r} could not be published: {exc}"
                )
        return None

    async def deliver(self, batch: Sequence[Delivery]) -> list[TargetError | None]:
        # Up to the function's concurrency at once, as Lambda runs concurrent invocations.
        return list(await asyncio.gather(*(self._invoke(d) for d in batch)))

    async def aclose(self) -> None:
        return None


def open_target(key: str, env: TargetEnv) -> FunctionTarget:
    return FunctionTarget(env.functions(), key.partition(":")[2], env.publish)


def resource(params: dict[str, Any]) -> str:
    return str(params.get("function", ""))
