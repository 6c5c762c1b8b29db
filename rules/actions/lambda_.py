"""The ``lambda`` action: the rule's output as the event of a Lambda function (AWS IoT's
``LambdaAction``).

The parameter is AWS's ``functionArn`` (a template). As AWS IoT does, the function is invoked
asynchronously (``InvocationType`` "Event"): Lambda queues the event and answers 202, the
function's own result is not waited for. Lambda takes a JSON event only: a binary output fails
with the advice AWS gives (``SELECT encode(*, 'base64') AS data``).

Where it goes follows ``rules.aws_targets``: to Lambda with boto3, or to the local function of
the same name (``rules.actions.function``), so a rule copied from AWS works offline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import Field, field_validator

from rules.actions.base import (
    ParamsModel,
    Resolved,
    Target,
    TargetEnv,
    last_segment,
    output_payload,
)
from rules.actions.function import FunctionTarget
from rules.aws import missing_extra, target_error
from rules.errors import TargetError
from rules.sql.compiler import substitute
from rules.sql.context import EvalContext

if TYPE_CHECKING:
    from rules.aws import AwsClients
    from rules.config import RulesSettings
    from rules.delivery import Delivery

KIND = "lambda"
FAILED_ACTION = "LambdaAction"

_EXAMPLE_ARN = "arn:aws:lambda:us-east-1:123456789012:function:my-function"


class LambdaAction(ParamsModel):
    function_arn: str = Field(alias="functionArn", min_length=1)

    @field_validator("function_arn")
    @classmethod
    def _arn(cls, value: str) -> str:
        # Lambda takes a name, an ARN or a partial ARN; an ARN of another service is a mistake
        # better caught now than at each delivery.
        if "${" not in value and value.startswith("arn:"):
            parts = value.split(":")
            if len(parts) < 7 or parts[2] != "lambda" or parts[5] != "function":
                raise ValueError(f"{value!r} is not a Lambda function ARN such as {_EXAMPLE_ARN}")
        return value


Params = LambdaAction


def templates(params: LambdaAction) -> list[str]:
    return [params.function_arn]


def function_name(arn: str) -> str:
    """The function an ARN names: ``arn:...:function:f`` and ``arn:...:function:f:prod`` (a
    qualified ARN) -> ``f``; a plain name stays as it is."""
    parts = arn.split(":")
    if "function" in parts[:-1]:
        return parts[parts.index("function") + 1]
    return last_segment(arn, ":")


def resolve(params: LambdaAction, output: Any, ctx: EvalContext, version: str) -> Resolved:
    arn = substitute(params.function_arn, ctx, version)
    # "function" is what the local function target's error payload names; "functionArn" Lambda's.
    resolved = {"functionArn": arn, "function": function_name(arn)}
    return Resolved(f"lambda:{arn}", resolved, output_payload(output))


class LambdaTarget:
    """Asynchronous invocations of one function, up to ``batch_limit`` at once (on threads of
    its own: a slow Lambda must not take the default executor the outbox commits on)."""

    batch_limit = 8

    def __init__(self, aws: AwsClients, arn: str) -> None:
        self._aws = aws
        self._arn = arn
        self._pool = ThreadPoolExecutor(self.batch_limit, thread_name_prefix="rules-lambda")

    def _invoke(self, delivery: Delivery) -> TargetError | None:
        what = f"lambda {self._arn}"
        try:
            orjson.loads(delivery.body)
        except orjson.JSONDecodeError:
            return TargetError(
                f"{what}: the rule's output is not JSON (a binary SELECT *?) and Lambda takes a "
                "JSON event: select the payload as base64 text, e.g. "
                "SELECT encode(*, 'base64') AS data"
            )
        try:
            client = self._aws.client("lambda")
            response = client.invoke(
                FunctionName=self._arn, InvocationType="Event", Payload=delivery.body
            )
            answer = response["Payload"].read()  # read: the connection goes back to the pool
        except TargetError as exc:  # boto3 is not installed
            return exc
        except Exception as exc:  # noqa: BLE001 - botocore's errors, classified by target_error
            return target_error(exc, what)
        status = int(response.get("StatusCode") or 0)
        function_error = response.get("FunctionError")
        if function_error:
            # The function ran and failed (asynchronous invocations do not report this; kept
            # for endpoints that run the function at once): retried, as a local function is.
            detail = answer[:500].decode("utf-8", "replace")
            return TargetError(
                f"{what}: the function failed ({function_error}): {detail}", retryable=True
            )
        if not 200 <= status < 300:
            return TargetError(
                f"{what}: Lambda answered status {status}", retryable=status >= 500 or status == 429
            )
        return None

    async def deliver(self, batch: Sequence[Delivery]) -> list[TargetError | None]:
        loop = asyncio.get_running_loop()
        # Lambda runs concurrent asynchronous invocations in no set order, as AWS IoT sends them.
        return list(
            await asyncio.gather(
                *(loop.run_in_executor(self._pool, self._invoke, d) for d in batch)
            )
        )

    async def aclose(self) -> None:
        # An invocation still running finishes on its own; its delivery is still owed.
        self._pool.shutdown(wait=False, cancel_futures=True)


def open_target(key: str, env: TargetEnv) -> Target:
    arn = key.partition(":")[2]
    if env.settings.aws_mode("lambda") == "local":
        return FunctionTarget(env.functions(), function_name(arn))
    return LambdaTarget(env.aws, arn)


def resource(params: dict[str, Any]) -> str:
    return str(params.get("functionArn", ""))


def needs(params: LambdaAction, settings: RulesSettings) -> str | None:
    if settings.aws_mode("lambda") == "local":
        return None
    return missing_extra("boto3", "the lambda action (to AWS)")
