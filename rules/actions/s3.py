"""The ``s3`` action: the rule's output as an object in an S3 bucket (AWS IoT's ``S3Action``).

Parameters are AWS's: ``bucketName`` and ``key`` (templates, such as
``${topic(2)}/${timestamp()}.json``), ``cannedAcl``, ``roleArn`` (accepted, unused: the
credentials are boto3's standard chain); thingcore adds ``contentType``, as the local
``bucket`` action has. The key is expanded once, when the message is matched, so a retried
delivery writes the same object.

Where it goes follows ``rules.aws_targets``: to S3 with boto3, or to the local bucket of the
same name (``rules.actions.bucket``), so a rule copied from AWS works offline. The resolved
parameters suit both targets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from rules.actions.base import ParamsModel, Resolved, Target, TargetEnv, output_payload
from rules.actions.bucket import BucketTarget, CannedAcl
from rules.aws import missing_extra, target_error
from rules.errors import TargetError
from rules.local.buckets import check_bucket
from rules.sql.compiler import substitute
from rules.sql.context import EvalContext

if TYPE_CHECKING:
    from rules.aws import AwsClients
    from rules.config import RulesSettings
    from rules.delivery import Delivery

KIND = "s3"
FAILED_ACTION = "S3Action"


class S3Action(ParamsModel):
    bucket_name: str = Field(alias="bucketName", min_length=1)
    key: str = Field(min_length=1)
    canned_acl: CannedAcl | None = Field(default=None, alias="cannedAcl")
    content_type: str | None = Field(default=None, alias="contentType", min_length=1)
    """thingcore's: default ``application/json``, ``application/octet-stream`` when binary."""
    role_arn: str | None = Field(default=None, alias="roleArn")
    """Accepted so AWS rule JSON reads unchanged; boto3's credential chain is used."""

    @field_validator("bucket_name")
    @classmethod
    def _bucket(cls, value: str) -> str:
        # A literal name is checked now; a template's value is checked by S3 when delivered.
        if "${" not in value:
            try:
                check_bucket(value)
            except TargetError as exc:
                raise ValueError(str(exc)) from None
        return value


Params = S3Action


def templates(params: S3Action) -> list[str]:
    return [params.bucket_name, params.key]


def resolve(params: S3Action, output: Any, ctx: EvalContext, version: str) -> Resolved:
    bucket = substitute(params.bucket_name, ctx, version)
    binary = isinstance(output, bytes | bytearray)
    resolved = {
        "bucket": bucket,
        "key": substitute(params.key, ctx, version),
        "contentType": params.content_type
        or ("application/octet-stream" if binary else "application/json"),
        # The local bucket keeps the ACL as metadata (as the bucket action does); S3 gets ACL.
        "metadata": {} if params.canned_acl is None else {"canned-acl": params.canned_acl},
        "cannedAcl": params.canned_acl,
    }
    return Resolved(f"s3:{bucket}", resolved, output_payload(output))


class S3Target:
    """``put_object`` to one bucket: up to ``batch_limit`` objects at once, on threads of its
    own (a slow S3 must not take the default executor the outbox commits on); the writes of
    one key keep their order, so the last message's object is the one that stays."""

    batch_limit = 16

    def __init__(self, aws: AwsClients, bucket: str) -> None:
        self._aws = aws
        self._pool = ThreadPoolExecutor(self.batch_limit, thread_name_prefix=f"rules-s3 {bucket}")

    def _put(self, delivery: Delivery) -> TargetError | None:
        params = delivery.params
        where = f"s3://{params['bucket']}/{params['key']}"
        request: dict[str, Any] = {
            "Bucket": params["bucket"],
            "Key": params["key"],
            "Body": delivery.body,
            "ContentType": params["contentType"],
        }
        if params.get("cannedAcl"):
            request["ACL"] = params["cannedAcl"]
        try:
            # Made on first use, here on a worker thread: loading a client takes a while.
            self._aws.client("s3").put_object(**request)
        except TargetError as exc:  # boto3 is not installed
            return exc
        except Exception as exc:  # noqa: BLE001 - botocore's errors, classified by target_error
            return target_error(exc, where)
        return None

    def _put_in_order(self, chain: list[Delivery]) -> list[TargetError | None]:
        """One key's objects in order; after a write that will be retried the later ones wait
        for it (written now, they would be overwritten by the older body on the retry)."""
        results: list[TargetError | None] = []
        blocked: TargetError | None = None
        for delivery in chain:
            if blocked is not None:
                results.append(blocked)
                continue
            error = self._put(delivery)
            if error is not None and error.retryable:
                blocked = TargetError(
                    f"not written before an earlier object of the same key ({error})",
                    retryable=True,
                )
            results.append(error)
        return results

    async def deliver(self, batch: Sequence[Delivery]) -> list[TargetError | None]:
        chains: dict[str, list[int]] = {}
        for index, delivery in enumerate(batch):
            chains.setdefault(delivery.params["key"], []).append(index)
        loop = asyncio.get_running_loop()
        outcomes = await asyncio.gather(
            *(
                loop.run_in_executor(self._pool, self._put_in_order, [batch[i] for i in chain])
                for chain in chains.values()
            )
        )
        results: list[TargetError | None] = [None] * len(batch)
        for chain, outcome in zip(chains.values(), outcomes, strict=True):
            for index, error in zip(chain, outcome, strict=True):
                results[index] = error
        return results

    async def aclose(self) -> None:
        # A put still running finishes on its own; its delivery is still owed (at least once).
        self._pool.shutdown(wait=False, cancel_futures=True)


def open_target(key: str, env: TargetEnv) -> Target:
    if env.settings.aws_mode("s3") == "local":
        return BucketTarget(env.buckets())
    return S3Target(env.aws, key.partition(":")[2])


def resource(params: dict[str, Any]) -> str:
    return str(params.get("bucket", ""))


def needs(params: S3Action, settings: RulesSettings) -> str | None:
    if settings.aws_mode("s3") == "local":
        return None
    return missing_extra("boto3", "the s3 action (to AWS)")
