"""The ``sns`` action: the rule's output published to an SNS topic, or to a local topic.

Parameters are AWS's: ``targetArn`` (a template), ``roleArn`` (accepted, unused: credentials
come from boto3's chain), ``messageFormat`` ``RAW`` (the output as the message) or ``JSON``
(the output is SNS's ``MessageStructure=json`` document: ``{"default": ..., "sqs": ...}``).

Where it goes is ``settings.aws_mode("sns")``: to AWS through boto3 (an endpoint configured,
or ``rules.aws_targets = "aws"``), else to the local topic named by the ARN's last ``:``
segment (``rules.local.topics``), which fans out to its subscribed local queues. Locally the
delivery's stable id is the message id, so a redelivery after a crash adds nothing to a queue
that still holds it; SNS's Publish has no such id for standard topics, so a redelivery to AWS
may reach subscribers twice (at least once, as AWS IoT's own action).

Within a lane messages leave in order: a retryable failure stops the batch, and the messages
behind it wait with it rather than overtake it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from rules.actions.base import ParamsModel, Resolved, TargetEnv, last_segment, output_payload
from rules.aws import missing_extra, target_error
from rules.errors import TargetError
from rules.sql.compiler import substitute
from rules.sql.context import EvalContext

if TYPE_CHECKING:
    from rules.config import RulesSettings
    from rules.delivery import Delivery
    from rules.local.topics import TopicStore

KIND = "sns"
FAILED_ACTION = "SnsAction"

_ARN = re.compile(r"arn:[^:]+:sns:[^:]*:[^:]*:[^:]+")
"""An SNS topic's (or mobile endpoint's) ARN: ``arn:aws:sns:<region>:<account>:<name>``."""


class SnsAction(ParamsModel):
    target_arn: str = Field(alias="targetArn", min_length=1)
    role_arn: str | None = Field(default=None, alias="roleArn")
    message_format: Literal["RAW", "JSON"] = Field(default="RAW", alias="messageFormat")

    @field_validator("target_arn")
    @classmethod
    def _an_sns_arn(cls, value: str) -> str:
        # A template may make any part of the ARN (${topic(2)}): only a literal one is checked.
        if "${" not in value and not _ARN.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC)"
            )
        return value


Params = SnsAction


def templates(params: SnsAction) -> list[str]:
    return [params.target_arn]


def resolve(params: SnsAction, output: Any, ctx: EvalContext, version: str) -> Resolved:
    arn = substitute(params.target_arn, ctx, version)
    resolved = {"targetArn": arn, "messageFormat": params.message_format}
    return Resolved(f"sns:{arn}", resolved, output_payload(output))


def needs(params: SnsAction, settings: RulesSettings) -> str | None:
    if settings.aws_mode("sns") != "aws":
        return None  # a local topic: nothing to install
    return missing_extra("boto3", "the sns action to AWS (an SNS endpoint or aws_targets 'aws')")


def _in_order(
    batch: Sequence[Delivery], publish: Callable[[Delivery], None]
) -> list[TargetError | None]:
    """``publish`` each delivery in turn; after a retryable failure the rest wait with it, so
    no message overtakes one that failed."""
    results: list[TargetError | None] = []
    for index, delivery in enumerate(batch):
        try:
            publish(delivery)
        except TargetError as exc:
            results.append(exc)
            if exc.retryable:
                waiting = TargetError(f"not tried, an earlier one failed: {exc}", retryable=True)
                results.extend([waiting] * (len(batch) - index - 1))
                break
        else:
            results.append(None)
    return results


class LocalTopicTarget:
    """A local topic: each message added to its subscribed queues in one transaction."""

    batch_limit = 64

    def __init__(self, store: TopicStore, arn: str) -> None:
        self._store = store
        self._arn = arn
        self._topic = last_segment(arn, ":")

    def _publish(self, delivery: Delivery) -> None:
        self._store.publish(
            self._topic,
            delivery.body,
            message_id=delivery.message_id,
            json_structure=delivery.params.get("messageFormat") == "JSON",
        )

    async def deliver(self, batch: Sequence[Delivery]) -> list[TargetError | None]:
        return await asyncio.to_thread(_in_order, batch, self._publish)

    async def aclose(self) -> None:
        return None


class SnsTarget:
    """An SNS topic (or endpoint) in AWS: one Publish per message, from a worker thread."""

    batch_limit = 10

    def __init__(self, env: TargetEnv, arn: str) -> None:
        self._env = env
        self._arn = arn

    def _publish(self, delivery: Delivery) -> None:
        from rules.local.topics import TopicError, message_text, structured_text

        structured = delivery.params.get("messageFormat") == "JSON"
        try:
            text = message_text(delivery.body)
            if structured:
                # SNS refuses such a message too; checked here for a clear message (and because
                # some SNS look-alikes answer it with a server error, which would be retried).
                structured_text(text)
        except TopicError as exc:
            raise TargetError(f"sns {self._arn}: {exc}") from None
        request: dict[str, Any] = {"TargetArn": self._arn, "Message": text}
        if structured:
            request["MessageStructure"] = "json"
        client = self._env.aws.client("sns")
        try:
            client.publish(**request)
        except Exception as exc:  # noqa: BLE001 - botocore's errors, classified by target_error
            raise target_error(exc, f"sns {self._arn}") from exc

    async def deliver(self, batch: Sequence[Delivery]) -> list[TargetError | None]:
        return await asyncio.to_thread(_in_order, batch, self._publish)

    async def aclose(self) -> None:
        return None


def open_target(key: str, env: TargetEnv) -> LocalTopicTarget | SnsTarget:
    arn = key.partition(":")[2]
    if env.settings.aws_mode("sns") == "aws":
        return SnsTarget(env, arn)
    return LocalTopicTarget(env.topics(), arn)


def resource(params: dict[str, Any]) -> str:
    return str(params.get("targetArn", ""))
