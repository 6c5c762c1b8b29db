"""What a rule sees when it evaluates one message: ``EvalContext``.

Built once per message (cheaply: the payload is parsed once, lazily, and shared by every rule
that matches), read by the compiled closures and the functions.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from rules.sql.values import UNDEFINED

ShadowReader = Callable[[str, str | None], Any]
"""(thing, shadow name or None) -> the shadow's get document as a dict, or UNDEFINED."""
LambdaInvoker = Callable[[str, Any], Any]
"""``aws_lambda``: (function ARN, JSON-ready event) -> the function's decoded JSON answer;
raises ``rules.errors.ExternalCallError`` when the call fails. Called in a worker thread."""
TraceSource = Callable[[], str]
"""Where ``traceid()`` comes from when the message has one: asked only if a rule calls it
(making a UUID for every message would cost more than evaluating its rules)."""


@dataclass(slots=True)
class EvalContext:
    topic: str
    """The topic as published; for Basic Ingest the ``$aws/rules/<rule>/`` prefix is already
    stripped (``topic()`` never shows it)."""
    payload: bytes
    client_id: str | None = None
    principal: str | None = None
    trace_id: str | None = None
    trace_source: TraceSource | None = None
    received_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    """``timestamp()``: when the rules engine received the message, epoch milliseconds."""
    account_id: str = "000000000000"
    rule_name: str = ""
    shadow_reader: ShadowReader | None = None
    """``get_thing_shadow``; None where no shadow store is attached (the function is then
    Undefined)."""
    response_topic: str | None = None
    correlation_data: bytes | None = None
    """An MQTT 5 request's: where a function action with ``reply`` publishes its answer."""
    lambda_invoker: LambdaInvoker | None = None
    """``aws_lambda``; None where no function can be called (``rules test``: Undefined)."""
    _document: Any = field(default=None, init=False, repr=False)
    _parsed: bool = field(default=False, init=False, repr=False)

    @property
    def document(self) -> Any:
        """The payload parsed as JSON, or UNDEFINED when it is not JSON (binary payloads:
        attribute access yields Undefined, ``*`` yields the raw bytes)."""
        if not self._parsed:
            self._parsed = True
            try:
                # orjson parses a typical reading in a sixth of json's time, and the parse is
                # most of what a message matching a rule costs; json still reads what orjson
                # refuses but Python accepts (integers beyond 64 bits).
                self._document = orjson.loads(self.payload)
            except orjson.JSONDecodeError:
                try:
                    self._document = json.loads(self.payload)
                except (ValueError, RecursionError):
                    self._document = UNDEFINED
        return self._document

    def topic_levels(self) -> list[str]:
        return self.topic.split("/")

    def has_trace(self) -> bool:
        return self.trace_id is not None or self.trace_source is not None

    def trace(self) -> str:
        if self.trace_id is None:
            source = self.trace_source
            self.trace_id = source() if source is not None else str(uuid.uuid4())
        return self.trace_id
