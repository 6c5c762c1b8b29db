"""The ``http`` action against real aiohttp servers on 127.0.0.1 (plain and TLS, port 0).

Each test runs the engine on a real broker's Bus with a data directory under tmp_path; the
receiving server records every request it gets (before it answers, so requests that time out
are seen too) and answers from a script. TLS uses a throwaway CA trusted through
``rules.http.ca_file``. Backoff and timeouts come from settings, in hundredths of a second.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from broker.server import Broker
from rules.config import HttpSettings, RulesSettings
from rules.definition import missing_extras, parse_definition
from rules.engine import RulesEngine
from rules.store import StoredRule
from tests.certs import TlsFiles, write_tls_files
from tests.rules.engine_support import (
    ERROR_ACTION,
    ErrorOrigin,
    error_origin,
    error_payloads,
    fast_delivery,
    free_port,
    one_action,
    publish,
    refusal,
    rule,
    run_rules,
    until,
)
from thingcore.errors import ThingcoreError

MESSAGE_ID = "x-thingcore-message-id"


@dataclass
class Seen:
    method: str
    path: str
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def message_id(self) -> str:
        return self.headers[MESSAGE_ID]

    def json(self) -> Any:
        return json.loads(self.body)


Answer = Callable[[Seen], Awaitable[web.StreamResponse]]


async def ok(_: Seen) -> web.StreamResponse:
    return web.Response(text="ok")


def status(code: int, body: bytes = b"") -> Answer:
    async def answer(_: Seen) -> web.StreamResponse:
        return web.Response(status=code, body=body)

    return answer


def slow(seconds: float) -> Answer:
    async def answer(_: Seen) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.Response(text="late")

    return answer


class Receiver:
    """A real HTTP(S) server recording every request; ``script`` answers them in turn (then
    200). ``stop`` and ``start`` take it down and bring it back on the same port."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.requests: list[Seen] = []
        self.script: list[Answer] = []
        self.port = 0
        self._runner: web.ServerRunner | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        seen = Seen(request.method, request.path_qs, request.headers, await request.read())
        self.requests.append(seen)
        answer = self.script.pop(0) if self.script else ok
        return await answer(seen)

    async def start(self) -> None:
        # A client that gives up (a timeout) cancels its handler, so none outlives the test.
        server = web.Server(self._handle, handler_cancellation=True)
        self._runner = web.ServerRunner(server, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context)
        await site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return write_tls_files(tmp_path / "tls")


@pytest.fixture
async def receivers(tls: TlsFiles) -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    started: list[Receiver] = []

    async def start(*, secure: bool = True) -> Receiver:
        context = None
        if secure:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls.server_cert, tls.server_key)
        receiver = Receiver(context)
        started.append(receiver)
        await receiver.start()
        return receiver

    yield start
    for receiver in started:
        await receiver.stop()


@pytest.fixture
async def receiver(receivers: Callable[..., Awaitable[Receiver]]) -> Receiver:
    """A TLS receiver (its certificate signed by ``tls.ca_cert``), started."""
    return await receivers()


def settings(
    *,
    ca_file: Path | None = None,
    insecure: bool = False,
    timeout: float = 5.0,
    concurrency: int = 4,
    **delivery: Any,
) -> RulesSettings:
    http = HttpSettings(
        allow_insecure_http=insecure, timeout=timeout, ca_file=ca_file, concurrency=concurrency
    )
    return RulesSettings(delivery=fast_delivery(**delivery), http=http)


def hook(url: str) -> StoredRule:
    """Rule ``r``: the ``n`` of each ``in/+`` message posted to ``url``, failures republished
    to ``errors/...``."""
    return rule("r", "SELECT n FROM 'in/+'", [{"http": {"url": url}}], errorAction=ERROR_ACTION)


# -- the real path -----------------------------------------------------------------------------


async def test_a_post_arrives_with_its_body_expanded_headers_and_message_id(
    broker: Broker, tmp_path: Path, tls: TlsFiles, receiver: Receiver
) -> None:
    action = {
        "http": {
            "url": receiver.url("/devices/${topic(2)}?from=${clientid()}"),
            "confirmationUrl": receiver.url("/"),
            "headers": [
                {"key": "X-Device", "value": "${topic(2)}-${n}"},
                {"key": "Authorization", "value": "Bearer s3cret"},
            ],
        }
    }
    errors = error_payloads(broker)
    async with RulesEngine(settings(ca_file=tls.ca_cert), broker.bus, data_dir=tmp_path) as engine:
        engine.install([rule("hook", "SELECT n, topic(2) AS room FROM 'sensors/+/t'", [action])])
        publish(broker, "sensors/kitchen/t", {"n": 1})
        publish(broker, "sensors/hall/t", {"n": 2}, client="dev-2")
        await engine.drain()
        rules, _ = engine.delivery.take_metrics()
        lanes = [key for key in engine.delivery.lanes if key.startswith("http:")]
    assert errors == []
    assert rules["hook"].delivered == 2
    # One endpoint, one lane, whatever the path.
    assert lanes == [f"http:https://127.0.0.1:{receiver.port}"]
    by_path = {seen.path: seen for seen in receiver.requests}
    assert sorted(by_path) == ["/devices/hall?from=dev-2", "/devices/kitchen?from=dev-1"]
    kitchen = by_path["/devices/kitchen?from=dev-1"]
    assert kitchen.method == "POST"
    assert kitchen.json() == {"n": 1, "room": "kitchen"}
    assert kitchen.headers["Content-Type"] == "application/json"
    assert kitchen.headers["X-Device"] == "kitchen-1"
    assert kitchen.headers["Authorization"] == "Bearer s3cret"
    assert kitchen.headers["User-Agent"] == "thingcore"
    assert by_path["/devices/hall?from=dev-2"].headers["X-Device"] == "hall-2"
    ids = {seen.message_id for seen in receiver.requests}
    assert len(ids) == 2
    for message_id in ids:
        uuid.UUID(message_id)


async def test_a_binary_output_is_octet_stream_unless_a_header_sets_the_type(
    broker: Broker, tmp_path: Path, tls: TlsFiles, receiver: Receiver
) -> None:
    typed = {"key": "content-TYPE", "value": "image/${topic(2)}"}
    actions = [
        {"http": {"url": receiver.url("/plain")}},
        {"http": {"url": receiver.url("/typed"), "headers": [typed]}},
    ]
    definition = rule("raw", "SELECT * FROM 'cam/+'", actions)
    config = settings(ca_file=tls.ca_cert)
    await run_rules(config, broker, tmp_path, [definition], [("cam/png", b"\x89PNG\x00\xff")])
    by_path = {seen.path: seen for seen in receiver.requests}
    assert by_path["/plain"].body == b"\x89PNG\x00\xff"
    assert by_path["/plain"].headers["Content-Type"] == "application/octet-stream"
    assert by_path["/typed"].body == b"\x89PNG\x00\xff"
    assert by_path["/typed"].headers.getall("Content-Type") == ["image/png"]


async def test_https_without_trusting_the_ca_fails_verification_to_the_error_action(
    broker: Broker, tmp_path: Path, receiver: Receiver
) -> None:
    url = receiver.url("/in/${topic(2)}")
    errors = error_payloads(broker)
    message = ("in/x", {"n": 1})
    config = settings(max_attempts=5)
    rules, _ = await run_rules(config, broker, tmp_path, [hook(url)], [message], client="dev-9")
    assert receiver.requests == []
    [payload] = errors
    assert error_origin(payload) == ErrorOrigin("r", "in/x", "dev-9", {"n": 1})
    [failure] = payload["failures"]
    assert failure["failedAction"] == "HttpAction"
    assert failure["failedResource"] == receiver.url("/in/x")
    assert "certificate" in failure["errorMessage"]
    assert "rules.http.ca_file" in failure["errorMessage"]
    # A certificate that cannot be verified will not verify later: no retries.
    assert (rules["r"].retried, rules["r"].failed, rules["r"].error_actions) == (0, 1, 1)


async def test_a_ca_file_that_cannot_be_loaded_is_named_in_the_error(
    broker: Broker, tmp_path: Path, receiver: Receiver
) -> None:
    url = receiver.url("/hook")
    errors = error_payloads(broker)
    options = settings(ca_file=tmp_path / "missing.pem", max_attempts=5)
    rules, _ = await run_rules(options, broker, tmp_path, [hook(url)], [("in/x", {"n": 1})])
    assert receiver.requests == []
    [failure] = errors[0]["failures"]
    assert "rules.http.ca_file" in failure["errorMessage"]
    assert "missing.pem" in failure["errorMessage"]
    assert rules["r"].retried == 0


async def test_plain_http_is_refused_unless_allow_insecure_http(
    broker: Broker, tmp_path: Path, receivers: Any
) -> None:
    receiver: Receiver = await receivers(secure=False)
    definition = hook(receiver.url("/hook"))
    errors = error_payloads(broker)
    refused = tmp_path / "refused"
    rules, _ = await run_rules(settings(), broker, refused, [definition], [("in/x", {"n": 1})])
    assert receiver.requests == []
    [failure] = errors[0]["failures"]
    assert failure["failedResource"] == receiver.url("/hook")
    assert "rules.http.allow_insecure_http" in failure["errorMessage"]
    assert rules["r"].retried == 0

    errors.clear()
    allowed = settings(insecure=True)
    await run_rules(allowed, broker, tmp_path / "allowed", [definition], [("in/x", {"n": 2})])
    assert errors == []
    [seen] = receiver.requests
    assert seen.path == "/hook" and seen.json() == {"n": 2}


async def test_a_5xx_is_retried_and_delivered_once_with_the_same_message_id(
    broker: Broker, tmp_path: Path, tls: TlsFiles, receiver: Receiver
) -> None:
    receiver.script = [status(503, b"busy"), status(500)]
    errors = error_payloads(broker)
    options = settings(ca_file=tls.ca_cert, max_attempts=5)
    definition = hook(receiver.url("/hook"))
    rules, targets = await run_rules(options, broker, tmp_path, [definition], [("in/x", {"n": 1})])
    assert errors == []
    assert len(receiver.requests) == 3
    assert len({seen.message_id for seen in receiver.requests}) == 1
    assert all(seen.json() == {"n": 1} for seen in receiver.requests)
    assert (rules["r"].retried, rules["r"].delivered, rules["r"].failed) == (2, 1, 0)
    assert targets[f"http:https://127.0.0.1:{receiver.port}"][0].retried == 2


async def test_a_404_is_not_retried_and_quotes_the_start_of_the_body(
    broker: Broker, tmp_path: Path, tls: TlsFiles, receiver: Receiver
) -> None:
    receiver.script = [status(404, b"no such device: " + b"x" * 1000)]
    errors = error_payloads(broker)
    # Credentials in the URL reach the server but never the error payload.
    url = receiver.url("/hook").replace("://", "://hook:pa55word@")
    options = settings(ca_file=tls.ca_cert, max_attempts=5)
    rules, _ = await run_rules(options, broker, tmp_path, [hook(url)], [("in/x", {"n": 1})])
    [seen] = receiver.requests
    assert seen.headers["Authorization"] == "Basic " + base64.b64encode(b"hook:pa55word").decode()
    [failure] = errors[0]["failures"]
    assert failure["failedResource"] == url.replace("pa55word", "***")
    message = failure["errorMessage"]
    assert "HTTP 404" in message and "no such device: xxx" in message
    assert "x" * 300 not in message  # about the first 200 bytes only
    assert "pa55word" not in json.dumps(errors)
    assert (rules["r"].retried, rules["r"].failed) == (0, 1)


async def test_a_timeout_is_retried_with_the_same_message_id(
    broker: Broker, tmp_path: Path, tls: TlsFiles, receiver: Receiver
) -> None:
    receiver.script = [slow(1.0), slow(1.0)]
    errors = error_payloads(broker)
    options = settings(ca_file=tls.ca_cert, timeout=0.2, max_attempts=5)
    async with RulesEngine(options, broker.bus, data_dir=tmp_path) as engine:
        engine.install([hook(receiver.url("/hook"))])
        started = time.monotonic()
        publish(broker, "in/x", {"n": 1})
        await engine.drain()
        elapsed = time.monotonic() - started
        rules, _ = engine.delivery.take_metrics()
        lane = engine.delivery.lanes[f"http:https://127.0.0.1:{receiver.port}"]
        assert "rules.http.timeout" in (lane.last_error or "")
    assert errors == []
    assert len(receiver.requests) == 3
    assert len({seen.message_id for seen in receiver.requests}) == 1
    assert (rules["r"].retried, rules["r"].delivered) == (2, 1)
    assert elapsed < 1.5  # each slow answer was given up after 0.2 s, not waited for


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_an_endpoint_down_for_a_while_gets_every_delivery_when_back(
    broker: Broker, tmp_path: Path, tls: TlsFiles, receiver: Receiver, concurrency: int
) -> None:
    errors = error_payloads(broker)
    options = settings(ca_file=tls.ca_cert, concurrency=concurrency, max_attempts=1000)
    async with RulesEngine(options, broker.bus, data_dir=tmp_path) as engine:
        engine.install([hook(receiver.url("/n/${n}"))])
        publish(broker, "in/x", {"n": 0})
        await engine.drain()  # a keep-alive connection is pooled now
        await receiver.stop()
        for n in range(1, 21):
            publish(broker, "in/x", {"n": n})
        lane = engine.delivery.lanes[f"http:https://127.0.0.1:{receiver.port}"]
        await until(lambda: lane.counters.retried >= 3, "retries while it is down", within=5.0)
        assert lane.depth == 20 and lane.retry_at is not None
        await receiver.start()  # the same port
        await engine.drain()
    assert errors == []
    got = [seen.json()["n"] for seen in receiver.requests]
    assert sorted(got) == list(range(21))  # none lost, none twice
    assert len({seen.message_id for seen in receiver.requests}) == 21
    if concurrency == 1:
        assert got == list(range(21))  # one at a time: in the order messages came


async def test_an_unreachable_endpoint_ends_in_the_error_action_after_its_retries(
    broker: Broker, tmp_path: Path, tls: TlsFiles
) -> None:
    url = f"https://127.0.0.1:{free_port()}/hook"  # a port where nothing listens
    errors = error_payloads(broker)
    options = settings(ca_file=tls.ca_cert, max_attempts=3)
    rules, _ = await run_rules(options, broker, tmp_path, [hook(url)], [("in/x", {"n": 1})])
    [failure] = errors[0]["failures"]
    assert failure["failedResource"] == url
    assert "Cannot connect" in failure["errorMessage"]
    assert (rules["r"].retried, rules["r"].failed) == (2, 1)


async def test_concurrency_bounds_the_requests_in_flight(
    broker: Broker, tmp_path: Path, tls: TlsFiles, receiver: Receiver
) -> None:
    in_flight = 0
    most = 0
    full = asyncio.Event()

    async def hold(_: Seen) -> web.StreamResponse:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        if in_flight == 3:
            full.set()
        try:
            await asyncio.wait_for(full.wait(), 1.0)
        except TimeoutError:
            pass
        in_flight -= 1
        return web.Response(text="ok")

    receiver.script = [hold] * 9
    options = settings(ca_file=tls.ca_cert, concurrency=3)
    definition = rule("r", "SELECT n FROM 'in/+'", [{"http": {"url": receiver.url("/")}}])
    messages = [("in/x", {"n": n}) for n in range(9)]
    await run_rules(options, broker, tmp_path, [definition], messages)
    assert len(receiver.requests) == 9
    assert most == 3


async def test_what_a_template_makes_unsendable_fails_alone_without_retries(
    broker: Broker, tmp_path: Path, tls: TlsFiles, receiver: Receiver
) -> None:
    actions = [
        {"http": {"url": "${target}"}},
        {"http": {"url": receiver.url("/ok"), "headers": [{"key": "X-Name", "value": "${name}"}]}},
    ]
    errors = error_payloads(broker)
    definition = rule("r", "SELECT n FROM 'in/+'", actions, errorAction=ERROR_ACTION)
    messages = [
        ("in/x", {"n": 1, "target": "ftp://files/x", "name": "a\r\nX-Evil: 1"}),
        ("in/y", {"n": 2, "target": receiver.url("/t"), "name": "fine"}),
    ]
    config = settings(ca_file=tls.ca_cert)
    rules, _ = await run_rules(config, broker, tmp_path, [definition], messages)
    assert sorted(seen.path for seen in receiver.requests) == ["/ok", "/t"]
    assert "X-Evil" not in receiver.requests[0].headers
    [payload] = errors
    messages = {f["failedResource"]: f["errorMessage"] for f in payload["failures"]}
    assert "not an https:// (or http://) URL" in messages["ftp://files/x"]
    assert "line break" in messages[receiver.url("/ok")]
    assert rules["r"].retried == 0


# -- rule creation -----------------------------------------------------------------------------


def definition(params: Any) -> Any:
    return parse_definition("r", one_action("http", params, sql="SELECT * FROM 'a/+'"))


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({}, "url: Field required"),
        ({"url": "ftp://host/x"}, "url: Value error, 'ftp://host/x' has the scheme 'ftp'"),
        ({"url": "ftp://host/${topic(2)}"}, "scheme 'ftp'"),
        ({"url": "host/path"}, "is not a URL"),
        ({"url": "https:///path"}, "has no host"),
        ({"url": "https://host:port/x"}, "cannot be parsed"),
        (
            {"url": "https://h/x", "auth": {"sigv4": {"signingRegion": "us-east-1"}}},
            "auth: Value error, thingcore does not sign requests",
        ),
        ({"url": "https://h/x", "enableBatching": True}, "enableBatching: Value error, batching"),
        ({"url": "https://h/x", "batchConfig": {}}, "batchConfig: Value error, batching"),
        ({"url": "https://h/x", "headers": [{"key": "bad key", "value": "v"}]}, "header name"),
        ({"url": "https://h/x", "headers": [{"key": "k"}]}, "headers.0.value: Field required"),
        ({"url": "https://h/x", "headers": {"k": "v"}}, "headers: Input should be a valid list"),
        ({"url": "https://h/x", "headers": [{"key": MESSAGE_ID, "value": "v"}]}, "thingcore"),
        ({"url": "https://h/x", "headers": [{"key": "Content-Length", "value": "1"}]}, "itself"),
        (
            {"url": "https://h/x", "headers": [{"key": f"k{i}", "value": "v"} for i in range(101)]},
            "at most 100",
        ),
        ({"url": "https://h/x", "method": "PUT"}, "method: Extra inputs are not permitted"),
        ({"url": "https://h/" + "x" * 2000}, "at most 2000"),
    ],
)
def test_bad_parameters_are_refused_when_the_rule_is_created(params: Any, problem: str) -> None:
    message = refusal("http", params)
    assert problem in message
    assert "(http)" in message


def test_a_bad_template_is_refused_when_the_rule_is_created() -> None:
    with pytest.raises(ThingcoreError, match="topic"):
        definition({"url": "https://h/${topic(2}"})
    with pytest.raises(ThingcoreError):
        definition({"url": "https://h/x", "headers": [{"key": "k", "value": "${"}]})


@pytest.mark.parametrize(
    "params",
    [
        {"url": "https://example.com/hook"},
        {"url": "http://example.com/hook"},  # refused per delivery, by the setting
        {"url": "${topic(2)}"},  # the scheme comes from the message
        {
            "url": "https://example.com/${topic(2)}",
            "confirmationUrl": "https://example.com/",
            "headers": [{"key": "X-Trace", "value": "${traceid()}"}],
            "enableBatching": False,
        },
    ],
)
def test_aws_shaped_parameters_are_accepted(params: Any) -> None:
    definition(params)


def test_a_missing_aiohttp_is_named_with_its_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed = definition({"url": "https://example.com/hook"})
    assert missing_extras(parsed, RulesSettings()) == []
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # as if it were not installed
    [problem] = missing_extras(parsed, RulesSettings())
    assert "the http action" in problem and "pip install 'thingcore[http]'" in problem
