"""boto3 clients for the s3, sqs, sns and lambda actions, and what their errors mean.

boto3 is imported on first use only (the ``aws`` extra): a server whose rules stay local never
loads it. A client makes one attempt per call (boto3's own retries are off) so that every
retry goes through the outbox's backoff, whose durations are settings; ``target_error`` says
which failures a retry may cure.
"""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

from rules.config import AwsService, AwsSettings
from rules.errors import TargetError

EXTRAS: dict[str, tuple[str, str]] = {
    "boto3": ("boto3", "aws"),
    "aio_pika": ("aio-pika", "amqp"),
    "aiohttp": ("aiohttp", "http"),
}
"""Importable module -> (package on PyPI, thingcore extra that installs it)."""


def missing_extra(module: str, what: str) -> str | None:
    """None when ``module`` can be imported, else a message with the command that installs it."""
    try:
        if importlib.util.find_spec(module) is not None:
            return None
    except (ImportError, ValueError):  # a blocked import, or sys.modules[module] is None
        pass
    package, extra = EXTRAS[module]
    return f"{what} needs {package}, which is not installed: pip install 'thingcore[{extra}]'"


_RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "RequestTimeout",
        "RequestTimeoutException",
        "KMSThrottlingException",
        "EC2ThrottledException",
        "ResourceConflictException",  # a Lambda function being updated
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "KMSInternalException",
    }
)


def target_error(exc: BaseException, what: str) -> TargetError:
    """A boto3/botocore failure as a ``TargetError`` whose ``retryable`` says if waiting helps.

    Retryable: the endpoint cannot be reached or timed out, throttling, 5xx answers, expired or
    missing credentials (an operator can fix them while deliveries wait). Not retryable: what
    the request itself got wrong (no such bucket, access denied, a bad parameter).
    """
    import botocore.exceptions as bex

    if isinstance(exc, bex.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = error.get("Message") or code or str(exc)
        retryable = status >= 500 or status == 429 or code in _RETRYABLE_CODES
        return TargetError(f"{what}: {code}: {message}", retryable=retryable)
    if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
        return TargetError(
            f"{what}: no AWS credentials found (set them in the environment, a profile, or "
            "rules.aws.profile)",
            retryable=True,
        )
    if isinstance(exc, bex.NoRegionError):
        return TargetError(f"{what}: no AWS region (set rules.aws.region or AWS_REGION)")
    if isinstance(exc, bex.ParamValidationError):
        return TargetError(f"{what}: {exc}")
    if isinstance(exc, bex.BotoCoreError | OSError):
        # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError...
        return TargetError(f"{what}: {exc}", retryable=True)
    return TargetError(f"{what}: {type(exc).__name__}: {exc}", retryable=True)


class AwsClients:
    """One boto3 client per service, made on first use and shared by every target.

    botocore clients are thread-safe, so targets call them from ``asyncio.to_thread`` workers;
    making them (a boto3 Session is not thread-safe) happens under a lock.
    """

    def __init__(self, settings: AwsSettings) -> None:
        self.settings = settings
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._session: Any = None

    def client(self, service: AwsService) -> Any:
        """The client for ``service``; ``TargetError`` when boto3 is missing (not retryable)."""
        found = self._clients.get(service)
        if found is not None:
            return found
        with self._lock:
            found = self._clients.get(service)
            if found is None:
                found = self._clients[service] = self._make(service)
        return found

    def _make(self, service: AwsService) -> Any:
        problem = missing_extra("boto3", f"the {service} action (rules.aws_targets = 'aws')")
        if problem is not None:
            raise TargetError(problem)
        import boto3
        from botocore.config import Config

        if self._session is None:
            self._session = boto3.session.Session(profile_name=self.settings.profile)
        region = self.settings.region or self._session.region_name or "us-east-1"
        config = Config(
            connect_timeout=self.settings.connect_timeout,
            read_timeout=self.settings.read_timeout,
            retries={"total_max_attempts": 1},
            max_pool_connections=32,
        )
        return self._session.client(
            service,
            region_name=region,
            endpoint_url=self.settings.endpoint(service),
            config=config,
        )
