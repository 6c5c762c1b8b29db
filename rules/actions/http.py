"""The ``http`` action: the rule's output POSTed to a web endpoint, in AWS's ``HttpAction`` shape.

Parameters as AWS's: ``url`` (a template; one rule may post to many paths), ``headers`` (up to
100 ``{"key": ..., "value": template}``) and ``confirmationUrl``, which is accepted so AWS rule
JSON reads unchanged and otherwise unused: AWS sends it a confirmation request before it
delivers to a new destination; thingcore trusts the rule's author and confirms nothing.
AWS's ``auth`` (SigV4 signing) and batching (``enableBatching``, ``batchConfig``) are refused
with what to do instead.

Each output is one ``POST`` with AWS's default ``Content-Type`` (``application/json``, or
``application/octet-stream`` for a binary output, unless a header sets it), the rule's
headers, ``User-Agent: thingcore`` and ``x-thingcore-message-id``: the delivery's stable id,
repeated on every retry, so a receiver can drop the copies that at-least-once delivery may
bring. Only ``https://`` by default, with the server's certificate checked against the system's
trust and ``rules.http.ca_file``; ``http://`` needs ``rules.http.allow_insecure_http``.

Outcomes: 2xx is done. 5xx, 408, 429, timeouts (``rules.http.timeout``) and connections that
fail or break are retried with the outbox's backoff; any other status (redirects are not
followed), an unverifiable certificate or a URL that is not http(s) go to the error action at
once, with the status and the start of the response body in the error message.

One lane (and one connection pool) per endpoint, ``http:https://host:443``: the path may vary
per delivery. A lane sends up to ``rules.http.concurrency`` requests at once, so, as with
Lambda's concurrent invocations, outputs within one batch may arrive in any order; with
``concurrency = 1`` they arrive in the order the messages came.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from pydantic import Field, field_validator

from rules.actions.base import ParamsModel, Resolved, TargetEnv, output_payload
from rules.aws import missing_extra
from rules.config import HttpSettings, RulesSettings
from rules.errors import TargetError
from rules.sql.compiler import substitute
from rules.sql.context import EvalContext

if TYPE_CHECKING:
    import aiohttp

    from rules.delivery import Delivery

KIND = "http"
FAILED_ACTION = "HttpAction"

USER_AGENT = "thingcore"
MESSAGE_ID_HEADER = "x-thingcore-message-id"
JSON = "application/json"
BINARY = "application/octet-stream"
DEFAULT_PORTS = {"http": 80, "https": 443}
ERROR_BODY_BYTES = 200
"""How much of a failed response's body the error message quotes."""
DRAIN_BYTES = 64 * 1024
"""A success's body is read up to this much so its connection can be reused, then dropped."""

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An HTTP header name (RFC 9110 section 5.1: a token)."""
_RESERVED = frozenset({MESSAGE_ID_HEADER, "content-length", "transfer-encoding"})
"""Headers thingcore writes itself: the dedup id, and the body's framing."""
_BREAKS = re.compile(r"[\r\n\x00]")


class HttpActionHeader(ParamsModel):
    key: str = Field(min_length=1, max_length=256)
    value: str = Field(max_length=8192)
    """A substitution template (AWS)."""

    @field_validator("key")
    @classmethod
    def _name(cls, key: str) -> str:
        if not _TOKEN.fullmatch(key):
            raise ValueError(f"{key!r} is not an HTTP header name (no spaces, colons or quotes)")
        if key.lower() in _RESERVED:
            raise ValueError(f"{key!r} is set by thingcore itself and cannot be given")
        return key


class HttpAction(ParamsModel):
    url: str = Field(min_length=1, max_length=2000)
    """A substitution template; ``https://`` (``http://`` with rules.http.allow_insecure_http)."""
    confirmation_url: str | None = Field(default=None, alias="confirmationUrl", max_length=2000)
    """Accepted for AWS rule JSON and unused: thingcore confirms no destination."""
    headers: list[HttpActionHeader] = Field(default_factory=list, max_length=100)
    auth: dict[str, Any] | None = None
    enable_batching: bool = Field(default=False, alias="enableBatching")
    batch_config: dict[str, Any] | None = Field(default=None, alias="batchConfig")

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        problem = _static_problem(url)
        if problem is not None:
            raise ValueError(f"{url!r} {problem}")
        return url

    @field_validator("auth")
    @classmethod
    def _no_signing(cls, auth: dict[str, Any] | None) -> dict[str, Any] | None:
        if auth is not None:
            raise ValueError(
                "thingcore does not sign requests (AWS SigV4); send credentials in headers "
                'instead, e.g. {"key": "Authorization", "value": "Bearer <token>"}'
            )
        return auth

    @field_validator("enable_batching", "batch_config")
    @classmethod
    def _no_batching(cls, value: Any) -> Any:
        if value is not None and value is not False:
            raise ValueError(
                "batching (enableBatching, batchConfig) is not supported: each rule output is "
                "one request; remove the parameter"
            )
        return value


Params = HttpAction


def _static_problem(url: str) -> str | None:
    """What is wrong with ``url`` that no substitution can fix (rule creation), else None."""
    literal = url.partition("${")[0]
    if "://" not in literal:
        # Without a template this is no URL; with one, the scheme may come from it.
        return None if "${" in url else "is not a URL: give https://host/path"
    scheme = literal.partition("://")[0]
    if scheme.lower() not in DEFAULT_PORTS:
        return f"has the scheme {scheme!r}: the http action posts to https:// (or http://) URLs"
    if "${" not in url:
        return _url_problem(url)
    return None


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"cannot be parsed: {exc}"
    if parts.scheme.lower() not in DEFAULT_PORTS:
        return "is not an https:// (or http://) URL"
    if not parts.hostname:
        return "has no host"
    return None


def _origin(url: str) -> str | None:
    """``https://host:443`` for ``https://user@Host/path``: one endpoint, one lane."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"  # IPv6
    return f"{scheme}://{host}:{port or DEFAULT_PORTS[scheme]}"


def redact(url: str) -> str:
    """``url`` without the password of its user information (error payloads, logs)."""
    try:
        parts: SplitResult = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def templates(params: HttpAction) -> list[str]:
    found = [params.url, *(h.value for h in params.headers)]
    if params.confirmation_url is not None:
        found.append(params.confirmation_url)  # unused, but AWS compiles it too
    return found


def resolve(params: HttpAction, output: Any, ctx: EvalContext, version: str) -> Resolved:
    url = substitute(params.url, ctx, version)
    headers = [[h.key, substitute(h.value, ctx, version)] for h in params.headers]
    if not any(key.lower() == "content-type" for key, _ in headers):
        # AWS's default: JSON unless the output is binary; a content-type header wins.
        binary = isinstance(output, bytes | bytearray)
        headers.insert(0, ["Content-Type", BINARY if binary else JSON])
    # A URL that is no http(s) URL still needs a lane: its deliveries fail there, each with
    # the reason (resolve stays cheap and raises nothing for what a delivery can report).
    target = f"http:{_origin(url) or 'invalid-url'}"
    return Resolved(target, {"url": url, "headers": headers}, output_payload(output))


def _prepare(https: bool, ca_file: Path | None) -> ssl.SSLContext | None:
    """Off the event loop (it reads files): import aiohttp (the ``http`` extra) and, for an
    https endpoint, load the system's trust plus ``ca_file``, hostnames checked."""
    problem = missing_extra("aiohttp", "the http action")
    if problem is not None:
        raise TargetError(problem)
    import aiohttp  # noqa: F401 - imported here once, not on the event loop

    if not https:
        return None
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise TargetError(
                f"rules.http.ca_file {str(ca_file)!r} cannot be loaded as PEM certificates: {exc}"
            ) from None
    return context


async def _read_some(response: aiohttp.ClientResponse, limit: int) -> bytes:
    data = bytearray()
    while len(data) < limit:
        chunk = await response.content.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _status_error(url: str, response: aiohttp.ClientResponse, body: bytes) -> TargetError:
    status = response.status
    text = " ".join(body[:ERROR_BODY_BYTES].decode("utf-8", "replace").split())
    message = f"POST {redact(url)}: HTTP {status} {response.reason or ''}".rstrip()
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        message += f" (redirects are not followed; point the rule at {location or 'the new URL'})"
    if text:
        message += f": {text}"
    # 5xx, 408 and 429 say "not now"; any other status will be the same next time.
    return TargetError(message, retryable=status >= 500 or status in (408, 429))


class HttpTarget:
    """One endpoint's connection pool; ``batch_limit`` requests in flight at most."""

    def __init__(self, key: str, settings: HttpSettings) -> None:
        self.key = key
        self.batch_limit = settings.concurrency
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def _open(self) -> aiohttp.ClientSession:
        if self._session is not None:
            return self._session
        https = self.key.startswith("http:https://")
        context = await asyncio.to_thread(_prepare, https, self._settings.ca_file)
        import aiohttp

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context or True, limit=self.batch_limit),
            timeout=aiohttp.ClientTimeout(total=self._settings.timeout),
            headers={"User-Agent": USER_AGENT},
            # Webhooks carry no session state: one delivery's cookies must not reach another.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    def _refusal(self, delivery: Delivery) -> TargetError | None:
        url: str = delivery.params["url"]
        problem = _url_problem(url)
        if problem is not None:
            return TargetError(f"url {redact(url)!r} {problem}")
        if urlsplit(url).scheme.lower() == "http" and not self._settings.allow_insecure_http:
            return TargetError(
                f"POST {redact(url)}: plain http:// is refused (the rule's output would cross "
                "the network unencrypted); use https://, or set "
                "rules.http.allow_insecure_http = true"
            )
        for key, value in delivery.params["headers"]:
            if _BREAKS.search(value):
                return TargetError(
                    f"POST {redact(url)}: header {key!r} expands to a value with a line break "
                    "or NUL, which HTTP cannot carry"
                )
        return None

    async def _post(self, session: aiohttp.ClientSession, delivery: Delivery) -> TargetError | None:
        import aiohttp
        from multidict import CIMultiDict

        refused = self._refusal(delivery)
        if refused is not None:
            return refused
        url: str = delivery.params["url"]
        headers = CIMultiDict[str]((k, v) for k, v in delivery.params["headers"])
        headers[MESSAGE_ID_HEADER] = delivery.message_id
        try:
            async with session.post(
                url, data=delivery.body, headers=headers, allow_redirects=False
            ) as response:
                if 200 <= response.status < 300:
                    await _read_some(response, DRAIN_BYTES)
                    return None
                return _status_error(url, response, await _read_some(response, ERROR_BODY_BYTES))
        except TimeoutError:  # aiohttp's timeouts derive from it
            return TargetError(
                f"POST {redact(url)}: no complete answer within {self._settings.timeout} s "
                "(rules.http.timeout)",
                retryable=True,
            )
        except aiohttp.ClientConnectorCertificateError as exc:
            return TargetError(
                f"POST {redact(url)}: the server's certificate cannot be verified "
                f"({exc.certificate_error}); if a private CA issued it, trust that CA with "
                "rules.http.ca_file"
            )
        except aiohttp.InvalidURL as exc:
            return TargetError(f"url {redact(url)!r} is not valid: {exc}")
        except (aiohttp.ClientError, OSError) as exc:
            # Refused, reset, DNS failure, a dropped keep-alive connection: the endpoint may
            # be back later.
            return TargetError(f"POST {redact(url)}: {type(exc).__name__}: {exc}", retryable=True)
        except ValueError as exc:  # a header aiohttp cannot encode, say: the same next time
            return TargetError(f"POST {redact(url)}: {exc}")

    async def deliver(self, batch: Sequence[Delivery]) -> list[TargetError | None]:
        session = await self._open()
        return list(await asyncio.gather(*(self._post(session, d) for d in batch)))

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def open_target(key: str, env: TargetEnv) -> HttpTarget:
    return HttpTarget(key, env.settings.http)


def resource(params: dict[str, Any]) -> str:
    return redact(str(params.get("url", "")))


def needs(params: HttpAction, settings: RulesSettings) -> str | None:
    return missing_extra("aiohttp", "the http action")
