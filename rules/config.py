"""The rules engine's settings (composed into ``thingcore.config.Settings`` as ``rules``).

Durations are settings so tests run retries, timeouts and backoff in fractions of a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

AwsService = Literal["s3", "sqs", "sns", "lambda"]
AWS_SERVICES: tuple[AwsService, ...] = ("s3", "sqs", "sns", "lambda")


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """How rule outputs reach their targets (the durable outbox, DESIGN.md durability levels)."""

    puback_after_commit: bool = False
    """Hold a QoS 1 PUBACK until the outbox rows the message produced are committed, so an
    acknowledged message is never lost to a crash (costs a group commit of latency)."""
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    """SQLite ``synchronous`` of the outbox: NORMAL survives a killed process, FULL a power loss."""
    max_attempts: int = 5
    """Tries per delivery for retryable failures before the error action (or dead-letter queue)."""
    backoff_initial: float = 0.5
    """Seconds before the first retry; doubled after each failure up to ``backoff_max``."""
    backoff_max: float = 60.0
    backoff_jitter: float = 0.2
    """Each wait is drawn from [wait * (1 - jitter), wait]: targets that failed together do not
    all come back at once."""
    batch_size: int = 256
    """Deliveries handed to a target in one call (one transaction for a local queue)."""
    target_window: int = 10_000
    """Deliveries per target held in memory; more stay in the outbox file until the target
    catches up (counted as spilled)."""
    max_target_depth: int = 1_000_000
    """Deliveries owed to one target before new ones fail at once to the error action (counted
    as refused): a target that is down for days must not fill the disk unnoticed."""
    completion_delay: float = 0.05
    """Seconds the removal of delivered rows may wait to share the next new rows' commit (0:
    commit them at once); a crash in between only delivers those again, with their ids."""
    dead_letter_suffix: str = "-dlq"
    """A rule without an ``errorAction`` dead-letters to the local queue ``<rule><suffix>``."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_initial <= 0 or self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_initial must be > 0 and at most backoff_max")
        if not 0 <= self.backoff_jitter <= 1:
            raise ValueError("backoff_jitter must be between 0 and 1")
        if self.batch_size < 1 or self.target_window < self.batch_size:
            raise ValueError("batch_size must be at least 1 and at most target_window")
        if not 0 <= self.completion_delay <= 10:
            raise ValueError("completion_delay must be between 0 and 10 seconds")
        if self.max_target_depth < self.target_window:
            raise ValueError("max_target_depth must be at least target_window")


@dataclass(frozen=True, slots=True)
class LocalTargetSettings:
    """The local buckets, queues and functions (paths default to the data directory)."""

    buckets_dir: Path | None = None
    """Default ``<data dir>/buckets``."""
    queues_path: Path | None = None
    """The queues' SQLite file; default ``<data dir>/queues.sqlite``."""
    functions_dir: Path | None = None
    """Where ``<name>.py`` handlers live; default ``<data dir>/functions``."""
    topics_path: Path | None = None
    """The local (SNS-like) topics and their subscriptions; default ``<data dir>/topics.sqlite``."""
    queue_visibility_timeout: float = 30.0
    """Seconds a received message stays hidden before another receive may take it (as SQS)."""
    queue_max_receives: int = 5
    """Receives after which a message moves to the queue's dead-letter queue ``<queue>-dlq``."""
    function_timeout: float = 3.0
    """Seconds a handler may run before its worker is killed (Lambda's default)."""
    function_memory_mb: int | None = None
    """Address-space limit per worker process in MiB; None for no limit."""
    function_concurrency: int = 4
    """Worker processes per function at most."""
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    """SQLite ``synchronous`` of the queues file."""

    def __post_init__(self) -> None:
        if self.queue_visibility_timeout < 0:
            raise ValueError("queue_visibility_timeout must not be negative")
        if self.queue_max_receives < 1:
            raise ValueError("queue_max_receives must be at least 1")
        if self.function_timeout <= 0:
            raise ValueError("function_timeout must be greater than 0")
        if self.function_memory_mb is not None and self.function_memory_mb < 32:
            raise ValueError("function_memory_mb must be at least 32 (or unset)")
        if self.function_concurrency < 1:
            raise ValueError("function_concurrency must be at least 1")

    def buckets(self, data_dir: Path) -> Path:
        return self.buckets_dir or data_dir / "buckets"

    def queues(self, data_dir: Path) -> Path:
        return self.queues_path or data_dir / "queues.sqlite"

    def functions(self, data_dir: Path) -> Path:
        return self.functions_dir or data_dir / "functions"

    def topics(self, data_dir: Path) -> Path:
        return self.topics_path or data_dir / "topics.sqlite"


@dataclass(frozen=True, slots=True)
class AwsSettings:
    """How the ``s3``, ``sqs``, ``sns`` and ``lambda`` actions reach AWS (with ``aws_targets``
    "aws"). Credentials come from boto3's standard chain (environment, profile, instance role)."""

    region: str | None = None
    """Default: the standard chain's region (``AWS_REGION``, the profile), else us-east-1."""
    profile: str | None = None
    """A named profile of ``~/.aws/config``; default the standard chain's."""
    endpoint_url: str | None = None
    """One endpoint for every service (a LocalStack or moto server, say)."""
    s3_endpoint_url: str | None = None
    sqs_endpoint_url: str | None = None
    sns_endpoint_url: str | None = None
    lambda_endpoint_url: str | None = None
    """Per service; each wins over ``endpoint_url``."""
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    """Seconds; a call that times out is retried with the outbox's backoff."""

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("connect_timeout and read_timeout must be greater than 0")

    def endpoint(self, service: AwsService) -> str | None:
        own: str | None = getattr(self, f"{service}_endpoint_url")
        return own or self.endpoint_url


@dataclass(frozen=True, slots=True)
class AmqpSettings:
    """The ``amqp`` action's broker (RabbitMQ or any AMQP 0-9-1 broker)."""

    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    """Used by actions that name no ``url`` of their own (keeps passwords out of rules)."""
    connect_timeout: float = 5.0
    confirm_timeout: float = 10.0
    """Seconds to wait for the broker's publisher confirm before the delivery is retried."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("amqp://", "amqps://")):
            raise ValueError("url must be an amqp:// or amqps:// URL")
        if self.connect_timeout <= 0 or self.confirm_timeout <= 0:
            raise ValueError("connect_timeout and confirm_timeout must be greater than 0")


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The ``http`` action's client."""

    allow_insecure_http: bool = False
    """Allow plain ``http://`` URLs (rule output would cross the network unencrypted)."""
    timeout: float = 10.0
    """Seconds for one request, connect to last byte; a timeout is retried."""
    ca_file: Path | None = None
    """PEM certificates trusted besides the system's (a private CA's endpoints)."""
    concurrency: int = 16
    """Requests in flight per URL at most."""

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError("timeout must be greater than 0")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")


@dataclass(frozen=True, slots=True)
class TriggerSettings:
    """Functions invoked by schedules, queue batches and bucket writes (``rules.triggers``)."""

    enabled: bool = True
    scan_interval: float = 2.0
    """Seconds between looks at the functions folder for added, changed or removed events."""
    poll_interval: float = 0.5
    """Seconds an idle queue or bucket source waits before it looks for new work again."""
    max_attempts: int = 3
    """Tries of a scheduled or bucket-triggered invocation (Lambda's asynchronous invocation:
    the first and two retries); then the event goes to the local queue ``<function>-dlq``."""
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    """Seconds between those tries, doubling (queue batches wait out their visibility timeout
    instead, as SQS does)."""
    bucket_events_retention: float = 86_400.0
    """Seconds a bucket's object-created events are kept for sources that have not read them."""

    def __post_init__(self) -> None:
        if self.scan_interval <= 0 or self.poll_interval <= 0:
            raise ValueError("scan_interval and poll_interval must be greater than 0")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_initial <= 0 or self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_initial must be > 0 and at most backoff_max")
        if self.bucket_events_retention <= 0:
            raise ValueError("bucket_events_retention must be greater than 0")


@dataclass(frozen=True, slots=True)
class RulesSettings:
    enabled: bool = True
    """Evaluate the rules stored in the database against every published message."""
    action_queue_size: int = 100_000
    """Rule outputs waiting for the outbox; beyond it an output is refused and counted (and,
    with ``delivery.puback_after_commit``, the PUBACK waits instead)."""
    metrics_flush_interval: float = 5.0
    """Seconds between writes of the per-rule counters to the database (for the CLI)."""
    max_rules: int = 100_000
    max_republish_depth: int = 8
    """A message republished by a rule that triggers a republish that triggers... is dropped
    (and counted) after this many hops, so a rule that matches its own output cannot spin."""
    external_concurrency: int = 8
    """Rules calling an external function (``aws_lambda``, ``get_thing_shadow``) evaluated at
    once, off the dispatch path; their outputs still leave in the order messages came."""
    aws_targets: Literal["local", "aws"] | None = None
    """Where ``s3``/``sqs``/``sns``/``lambda`` actions go: "local" (buckets, queues, topics and
    functions of the same names), "aws" (boto3), or unset: to AWS for each service that has an
    endpoint configured in ``aws``, locally for the others, so a rule copied from AWS works
    offline."""
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    local: LocalTargetSettings = field(default_factory=LocalTargetSettings)
    aws: AwsSettings = field(default_factory=AwsSettings)
    amqp: AmqpSettings = field(default_factory=AmqpSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    triggers: TriggerSettings = field(default_factory=TriggerSettings)

    def __post_init__(self) -> None:
        if self.action_queue_size < 1:
            raise ValueError("action_queue_size must be at least 1")
        if self.max_republish_depth < 1:
            raise ValueError("max_republish_depth must be at least 1")
        if self.metrics_flush_interval <= 0:
            raise ValueError("metrics_flush_interval must be greater than 0")
        if self.external_concurrency < 1:
            raise ValueError("external_concurrency must be at least 1")

    def aws_mode(self, service: AwsService) -> Literal["local", "aws"]:
        """Where the ``service`` action delivers (see ``aws_targets``)."""
        if self.aws_targets is not None:
            return self.aws_targets
        return "aws" if self.aws.endpoint(service) else "local"
