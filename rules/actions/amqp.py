"""The ``amqp`` action (thingcore's own): the rule's output as a message on a RabbitMQ exchange.

Parameters: ``exchange`` (a template; "" is the default exchange, which routes to the queue
named by the routing key), ``routingKey`` (a template), ``url`` (an ``amqp://`` or ``amqps://``
URL; default ``rules.amqp.url``, which keeps passwords out of rules), ``persistent`` (delivery
mode 2; default true), ``contentType`` (default ``application/json``, or
``application/octet-stream`` for a binary output), ``headers`` (a map of templates) and
``mandatory`` (default true: a message that no queue is bound for comes back from the broker
and goes to the error action instead of being dropped without a word).

Each message carries the delivery's stable id as ``message_id`` (a retry after a lost
confirm repeats it, so consumers can drop the copies at-least-once delivery may bring),
``app_id`` "thingcore", and the headers ``x-thingcore-rule`` and ``x-thingcore-topic``.

A lane (``amqp:<url, password masked>|<exchange>``, or ``amqp:default|<exchange>`` for
``rules.amqp.url``) owns one connection and one channel with publisher confirms, opened when it
first delivers; a new channel first checks that its exchange exists (a passive declare, which
needs no configure permission; the action never creates exchanges). A batch is published at
once and every message's confirm awaited (``rules.amqp.confirm_timeout``); on one channel the
broker routes and confirms in publishing order, so the lane's order holds. Outcomes, per
message: an ack is done; a nack (a queue full with ``x-overflow: reject-publish``), a return
(unroutable and mandatory), a missing exchange (the broker closes the channel with 404
NOT_FOUND; the next batch opens a new one) or refused access go to the error action at once. A
refused or lost connection and timeouts are retried with the outbox's backoff, and the
connection is dropped so that the next batch connects again: reconnecting is on demand, not
aio-pika's ``connect_robust`` loop, which would hide an outage from the lane (and its counters)
and replay nothing that was in flight anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from rules.actions.base import ParamsModel, Resolved, TargetEnv, output_payload
from rules.aws import missing_extra
from rules.config import AmqpSettings, RulesSettings
from rules.errors import TargetError
from rules.sql.compiler import substitute
from rules.sql.context import EvalContext

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

    from rules.delivery import Delivery

KIND = "amqp"
FAILED_ACTION = "AmqpAction"

APP_ID = "thingcore"
RULE_HEADER = "x-thingcore-rule"
TOPIC_HEADER = "x-thingcore-topic"
JSON = "application/json"
BINARY = "application/octet-stream"
DEFAULT_URL = "default"
"""The lane key's URL part for actions without ``url`` (``rules.amqp.url`` at delivery time)."""
MAX_NAME_BYTES = 255
"""Exchange names and routing keys are AMQP short strings (AMQP 0-9-1 section 4.2.5.3)."""
MASK = "***"


def masked(url: str) -> str:
    """``url`` with its password replaced by ``***``: for lane keys, logs and error messages."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:{MASK}@{host}{slash}{tail}"


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password or None
    except ValueError:
        return None


class AmqpAction(ParamsModel):
    exchange: str = Field(default="", max_length=MAX_NAME_BYTES * 4)
    """A substitution template; "" is the default exchange."""
    routing_key: str = Field(alias="routingKey", max_length=MAX_NAME_BYTES * 4)
    """A substitution template (required; "" is a valid key for fanout exchanges)."""
    url: str | None = Field(default=None, min_length=1, max_length=2000)
    persistent: bool = True
    content_type: str | None = Field(default=None, alias="contentType", min_length=1)
    headers: dict[str, str] | None = Field(default=None, max_length=100)
    """Header name -> substitution template."""
    mandatory: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as exc:
            raise ValueError(f"{masked(url)!r} cannot be parsed: {exc}") from None
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise ValueError(
                f"{masked(url)!r} is not an AMQP URL: give amqp://user:password@host:5672/vhost "
                "(or amqps://), or leave url out to use rules.amqp.url"
            )
        return url

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str] | None) -> dict[str, str] | None:
        for name in headers or {}:
            if not name:
                raise ValueError("a header name cannot be empty")
            if name.lower().startswith("x-thingcore-"):
                raise ValueError(f"{name!r}: x-thingcore-* headers are set by thingcore itself")
        return headers


Params = AmqpAction


def needs(params: AmqpAction, settings: RulesSettings) -> str | None:
    return missing_extra("aio_pika", "the amqp action")


def templates(params: AmqpAction) -> list[str]:
    found = [params.routing_key, *(params.headers or {}).values()]
    if params.exchange:
        found.append(params.exchange)
    return found


def _short(value: str, what: str) -> str:
    if len(value.encode("utf-8")) > MAX_NAME_BYTES:
        raise TargetError(f"the {what} {value[:40]!r}... is longer than {MAX_NAME_BYTES} bytes")
    return value


def resolve(params: AmqpAction, output: Any, ctx: EvalContext, version: str) -> Resolved:
    exchange = _short(substitute(params.exchange, ctx, version), "exchange name")
    routing_key = _short(substitute(params.routing_key, ctx, version), "routing key")
    binary = isinstance(output, bytes | bytearray)
    resolved = {
        "url": params.url,
        "exchange": exchange,
        "routingKey": routing_key,
        "persistent": params.persistent,
        "contentType": params.content_type or (BINARY if binary else JSON),
        "headers": {k: substitute(v, ctx, version) for k, v in (params.headers or {}).items()},
        "mandatory": params.mandatory,
    }
    where = masked(params.url) if params.url is not None else DEFAULT_URL
    return Resolved(f"amqp:{where}|{exchange}", resolved, output_payload(output))


def _describe(exchange: str) -> str:
    return f"exchange {exchange!r}" if exchange else "the default exchange"


class AmqpTarget:
    """One lane's connection and confirming channel, (re)opened when a batch needs them."""

    batch_limit = 256

    def __init__(self, settings: AmqpSettings) -> None:
        self._settings = settings
        self._connection: AbstractConnection | None = None
        self._url: str | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None

    async def deliver(self, batch: Sequence[Delivery]) -> list[TargetError | None]:
        results: list[TargetError | None] = []
        start = 0
        while start < len(batch):
            # A lane has one masked URL and one exchange, so this is one run unless two
            # rules name the same user@host with different passwords.
            where = self._where(batch[start])
            end = start + 1
            while end < len(batch) and self._where(batch[end]) == where:
                end += 1
            outcomes = await self._deliver_run(*where, batch[start:end])
            results += outcomes
            start = end
            failed = next((e for e in outcomes if e is not None and e.retryable), None)
            if failed is not None and start < len(batch):
                # Keep the lane's order: what follows a retried message waits for it.
                results += [failed] * (len(batch) - start)
                break
        return results

    def _where(self, delivery: Delivery) -> tuple[str, str]:
        return delivery.params.get("url") or self._settings.url, delivery.params["exchange"]

    async def _deliver_run(
        self, url: str, exchange_name: str, run: Sequence[Delivery]
    ) -> list[TargetError | None]:
        name = f"{_describe(exchange_name)} at {masked(url)}"
        try:
            exchange = await self._open(url, exchange_name, name)
        except TargetError as exc:
            if exc.retryable:
                await self._drop()
            return [exc] * len(run)
        outcomes = await asyncio.gather(
            *(self._publish(exchange, d) for d in run), return_exceptions=True
        )
        password = _password(url)
        results: list[TargetError | None] = [
            None if outcome is None else _error(outcome, name, password) for outcome in outcomes
        ]
        missing = next((e for e in results if e is not None and _is_missing(e)), None)
        if missing is not None:
            # The broker closed the channel for the missing exchange: the messages published
            # after that one failed with "channel closed", for the same reason.
            results = [
                missing if e is not None and e.retryable and _channel_gone(o) else e
                for e, o in zip(results, outcomes, strict=True)
            ]
        if any(e is not None and e.retryable for e in results):
            await self._drop()
        return results

    async def _open(self, url: str, exchange_name: str, name: str) -> AbstractExchange:
        """The exchange to publish to, on a connection and channel that are open."""
        import aio_pika
        from aio_pika.exceptions import CONNECTION_EXCEPTIONS

        password = _password(url)
        if self._connection is not None and (self._url != url or self._connection.is_closed):
            await self._drop()
        timeout = self._settings.connect_timeout
        if self._connection is None:
            try:
                self._connection = await aio_pika.connect(url, timeout=timeout)
            except TimeoutError:
                raise TargetError(
                    f"{name}: cannot connect within {timeout:g} s (rules.amqp.connect_timeout)",
                    retryable=True,
                ) from None
            except CONNECTION_EXCEPTIONS as exc:
                # Refused, unreachable, wrong credentials or vhost: an operator can fix each
                # while the deliveries wait.
                raise TargetError(
                    f"{name}: cannot connect: {_text(exc, password)}", retryable=True
                ) from None
            except ValueError as exc:  # a URL aio-pika cannot use (rules.amqp.url, say)
                raise TargetError(f"{name}: invalid URL: {_text(exc, password)}") from None
            self._url = url
        channel_open = self._channel is not None and not self._channel.is_closed
        if channel_open and self._exchange is not None and self._exchange.name == exchange_name:
            return self._exchange
        self._channel = self._exchange = None
        try:
            async with asyncio.timeout(timeout):
                channel = await self._connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
                if exchange_name:
                    # Checked once per channel, so that a missing exchange fails with a clear
                    # message before anything is published into the void.
                    exchange = await channel.get_exchange(exchange_name, ensure=True)
                else:
                    exchange = channel.default_exchange
        except TimeoutError:
            raise TargetError(
                f"{name}: no channel within {timeout:g} s (rules.amqp.connect_timeout)",
                retryable=True,
            ) from None
        except Exception as exc:  # noqa: BLE001 - aio-pika's failures, classified in _error
            raise _error(exc, name, password) from None
        self._channel, self._exchange = channel, exchange
        return exchange

    async def _publish(self, exchange: AbstractExchange, delivery: Delivery) -> None:
        from aio_pika import DeliveryMode, Message

        params = delivery.params
        headers: dict[str, Any] = dict(params.get("headers") or {})
        headers[RULE_HEADER] = delivery.rule
        headers[TOPIC_HEADER] = delivery.origin.topic
        message = Message(
            delivery.body,
            headers=headers,
            content_type=params["contentType"],
            delivery_mode=(
                DeliveryMode.PERSISTENT if params["persistent"] else DeliveryMode.NOT_PERSISTENT
            ),
            message_id=delivery.message_id,
            app_id=APP_ID,
        )
        # The timeout covers the wait for the channel and for the broker's confirm.
        await exchange.publish(
            message,
            params["routingKey"],
            mandatory=params["mandatory"],
            timeout=self._settings.confirm_timeout,
        )

    async def _drop(self) -> None:
        """Forget the connection (the next batch connects again) and close it if it can be."""
        connection = self._connection
        self._connection = self._channel = self._exchange = None
        self._url = None
        if connection is None:
            return
        try:
            async with asyncio.timeout(self._settings.connect_timeout):
                await connection.close()
        except Exception:  # noqa: BLE001, S110 - it is broken already; nothing else to do
            pass

    async def aclose(self) -> None:
        await self._drop()


def _text(exc: BaseException, password: str | None) -> str:
    text = str(exc) or type(exc).__name__
    if password:
        text = text.replace(password, MASK)
    return text


class _Missing(TargetError):
    """The exchange does not exist (404 NOT_FOUND): the channel is gone for every message."""


def _is_missing(error: TargetError) -> bool:
    return isinstance(error, _Missing)


def _channel_gone(outcome: BaseException | None) -> bool:
    from aiormq.exceptions import ChannelClosed, ChannelInvalidStateError

    return isinstance(outcome, ChannelClosed | ChannelInvalidStateError | asyncio.CancelledError)


def _error(exc: BaseException, name: str, password: str | None) -> TargetError:
    """What one failed publish (or channel open) means for its delivery, and if waiting helps."""
    from aiormq.exceptions import (
        AMQPConnectionError,
        ChannelAccessRefused,
        ChannelClosed,
        ChannelNotFoundEntity,
        DeliveryError,
        PublishError,
    )
    from pamqp.commands import Basic

    if isinstance(exc, PublishError):
        frame = exc.frame
        if isinstance(frame, Basic.Return):
            return TargetError(
                f"{name}: no queue is bound for routing key {frame.routing_key!r}: the broker "
                f"returned the message ({frame.reply_code} {frame.reply_text}); bind a queue, "
                'or set "mandatory": false to let such messages be dropped'
            )
        return TargetError(f"{name}: the broker returned the message: {exc}")
    if isinstance(exc, DeliveryError):
        return TargetError(
            f"{name}: the broker refused the message (basic.nack): a queue it routes to is "
            "full and rejects publishes (x-overflow: reject-publish), or could not store it"
        )
    if isinstance(exc, ChannelNotFoundEntity):
        return _Missing(
            f"{name}: {_text(exc, password)}; declare the exchange (the amqp action does not "
            "create exchanges)"
        )
    if isinstance(exc, ChannelAccessRefused):
        return TargetError(f"{name}: access refused: {_text(exc, password)}")
    if isinstance(exc, TimeoutError):
        return TargetError(
            f"{name}: no confirm from the broker within the confirm timeout "
            "(rules.amqp.confirm_timeout)",
            retryable=True,
        )
    if isinstance(exc, AMQPConnectionError | ConnectionError | OSError):
        return TargetError(f"{name}: connection lost: {_text(exc, password)}", retryable=True)
    if isinstance(exc, ChannelClosed):
        # 406 PRECONDITION_FAILED (a message over the broker's size limit, say) and the like:
        # retried a few times, as the cause may be one message of the batch.
        return TargetError(f"{name}: channel closed: {_text(exc, password)}", retryable=True)
    return TargetError(f"{name}: {type(exc).__name__}: {_text(exc, password)}", retryable=True)


def open_target(key: str, env: TargetEnv) -> AmqpTarget:
    return AmqpTarget(env.settings.amqp)


def resource(params: dict[str, Any]) -> str:
    """The exchange; for the default exchange, the routing key (the queue it routes to)."""
    return str(params.get("exchange") or params.get("routingKey", ""))
