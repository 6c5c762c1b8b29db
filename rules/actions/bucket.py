"""The ``bucket`` action: the rule's output as an object in a local bucket.

Parameters read like AWS's ``s3`` action: ``bucketName`` and ``key`` are templates (``key``
such as ``${topic(2)}/${timestamp()}.json``), ``cannedAcl`` is accepted and kept as metadata;
thingcore adds ``contentType`` (default ``application/json`` for JSON outputs,
``application/octet-stream`` for binary ones) and ``metadata`` (a map of templates). The key is
expanded once, when the message is matched, so a retried delivery writes the same object.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from rules.actions.base import ParamsModel, Resolved, TargetEnv, output_payload
from rules.errors import TargetError
from rules.sql.compiler import substitute
from rules.sql.context import EvalContext

if TYPE_CHECKING:
    from rules.delivery import Delivery
    from rules.local.buckets import BucketStore

KIND = "bucket"
FAILED_ACTION = "BucketAction"

CannedAcl = Literal[
    "private",
    "public-read",
    "public-read-write",
    "aws-exec-read",
    "authenticated-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
]


class BucketAction(ParamsModel):
    bucket_name: str = Field(alias="bucketName", min_length=1)
    key: str = Field(min_length=1)
    canned_acl: CannedAcl | None = Field(default=None, alias="cannedAcl")
    content_type: str | None = Field(default=None, alias="contentType")
    metadata: dict[str, str] | None = None
    role_arn: str | None = Field(default=None, alias="roleArn")


Params = BucketAction


def templates(params: BucketAction) -> list[str]:
    return [params.bucket_name, params.key, *(params.metadata or {}).values()]


def resolve(params: BucketAction, output: Any, ctx: EvalContext, version: str) -> Resolved:
    bucket = substitute(params.bucket_name, ctx, version)
    binary = isinstance(output, bytes | bytearray)
    metadata = {k: substitute(v, ctx, version) for k, v in (params.metadata or {}).items()}
    if params.canned_acl is not None:
        metadata.setdefault("canned-acl", params.canned_acl)
    resolved = {
        "bucket": bucket,
        "key": substitute(params.key, ctx, version),
        "contentType": params.content_type
        or ("application/octet-stream" if binary else "application/json"),
        "metadata": metadata,
    }
    return Resolved(f"bucket:{bucket}", resolved, output_payload(output))


class BucketTarget:
    batch_limit = 64

    def __init__(self, store: BucketStore) -> None:
        self._store = store

    def _put_all(self, batch: Sequence[Delivery]) -> list[TargetError | None]:
        results: list[TargetError | None] = []
        for d in batch:
            p = d.params
            try:
                self._store.put(
                    p["bucket"],
                    p["key"],
                    d.body,
                    content_type=p["contentType"],
                    metadata=p["metadata"],
                    message_id=d.message_id,
                )
            except TargetError as exc:
                results.append(exc)
            except OSError as exc:
                results.append(TargetError(f"bucket {p['bucket']}: {exc}", retryable=True))
            else:
                results.append(None)
        return results

    async def deliver(self, batch: Sequence[Delivery]) -> list[TargetError | None]:
        return await asyncio.to_thread(self._put_all, batch)

    async def aclose(self) -> None:
        return None


def open_target(key: str, env: TargetEnv) -> BucketTarget:
    return BucketTarget(env.buckets())


def resource(params: dict[str, Any]) -> str:
    return str(params.get("bucket", ""))
