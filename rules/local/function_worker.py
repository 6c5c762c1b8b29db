"""The worker process of a local function: imports one handler module, then runs invocations.

Started by ``rules.local.functions.FunctionRunner`` as
``python -P -m rules.local.function_worker CONFIG_JSON`` and kept warm between invocations, as
Lambda keeps an execution environment. The protocol runs over the process's original standard
input and output: frames of a 4-byte big-endian length and a UTF-8 JSON object.

- worker -> runner, once after import: ``{"ready": true, "pid": N}`` or
  ``{"ready": false, "error_type": ..., "message": ..., "cacheable": bool}``;
- runner -> worker, per invocation: ``{"request_id", "event", "message_id", "timeout"}``;
- worker -> runner, per invocation: ``{"ok": true, "value": ..., "duration_ms": ...}`` or
  ``{"ok": false, "error_type": ..., "message": ..., "duration_ms": ..., "exit": bool}``.

The handler must not be able to write into that channel, so at start the worker moves it to
private descriptors and points descriptors 0 at ``/dev/null`` and 1 at 2: everything the
handler prints or logs (even from C code) goes to standard error, which the runner copies to
the function's log. The worker writes Lambda's ``START``/``END``/``REPORT`` lines there too,
in order with the handler's output, and flushes them before it answers.

Handlers use two things from here: the ``context`` object they receive, and ``idempotent``::

    from rules.local.function_worker import idempotent

    @idempotent
    def handler(event, context):
        ...  # runs once per delivery (context.message_id); duplicates get the first result

or, for one step of a handler, ``context.once(send_email, event["to"])``.

Importing this module has no side effects; ``main`` does the work.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import json
import logging
import os
import resource
import signal
import struct
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

if TYPE_CHECKING:
    from rules.local.idempotency import IdempotencyStore

P = ParamSpec("P")
R = TypeVar("R")

HEADER = struct.Struct(">I")
MAX_RESPONSE = 6 * 1024 * 1024
"""Bytes a handler's encoded return value may take: Lambda's synchronous response limit."""
VERSION = "$LATEST"
ORPHAN_GRACE = 5.0
"""Seconds past its timeout after which a worker ends itself (see ``_Worker.invoke``)."""

_LOG_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s"


class Context:
    """What a handler gets as ``context``: Lambda's context object plus thingcore's additions.

    Attributes:
        function_name: The function's name (its file name without ``.py``).
        function_version: Always ``"$LATEST"``.
        invoked_function_arn: ``arn:aws:lambda:<region>:<account>:function:<name>``.
        memory_limit_in_mb: The worker's address-space limit, or None without one.
        aws_request_id: This invocation's id (also in the log's START/END/REPORT lines).
        log_group_name: ``/aws/lambda/<name>``.
        log_stream_name: Names this worker process, as a Lambda log stream names its
            execution environment.
        message_id: The stable id of the rule delivery being made, the same on every retry of
            it (None when invoked without one, e.g. from the CLI without ``--message-id``).
    """

    __slots__ = (
        "_deadline",
        "_worker",
        "aws_request_id",
        "function_name",
        "function_version",
        "invoked_function_arn",
        "log_group_name",
        "log_stream_name",
        "memory_limit_in_mb",
        "message_id",
    )

    def __init__(
        self,
        worker: _Worker,
        request_id: str,
        message_id: str | None,
        deadline: float,
    ) -> None:
        self._worker = worker
        self._deadline = deadline
        self.function_name = worker.name
        self.function_version = VERSION
        self.invoked_function_arn = worker.arn
        self.memory_limit_in_mb = worker.memory_mb
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{worker.name}"
        self.log_stream_name = worker.log_stream
        self.message_id = message_id

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the runner kills this invocation (never negative)."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def once(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``fn(*args, **kwargs)``, run only the first time this message id is seen.

        A duplicate delivery of the same ``message_id`` (a retry after a timeout, a redelivery
        after a crash) returns the result recorded the first time instead of running ``fn``
        again. The record is made after ``fn`` returns, so a call that raised runs again on the
        retry; results must be JSON-serialisable to be replayed (others replay as None). Without
        a message id ``fn`` simply runs. Records are kept per function, for the idempotency
        store's retention (7 days by default).
        """
        if self.message_id is None:
            return fn(*args, **kwargs)
        store = self._worker.idempotency()
        consumer = self.function_name
        if store.seen(consumer, self.message_id):
            recorded = store.result(consumer, self.message_id)
            return cast(R, None if recorded is None else json.loads(recorded))
        result = fn(*args, **kwargs)
        try:
            encoded: bytes | None = json.dumps(result, allow_nan=False).encode()
        except (TypeError, ValueError, RecursionError):
            encoded = None
        store.record(consumer, self.message_id, encoded)
        return result


def idempotent(handler: Callable[[Any, Context], R]) -> Callable[[Any, Context], R]:
    """Decorate a (synchronous) handler so each ``context.message_id`` runs it only once.

    Example::

        @idempotent
        def handler(event, context):
            charge(event["order"])
            return {"charged": True}

    See ``Context.once`` for what a duplicate gets.
    """

    @functools.wraps(handler)
    def once(event: Any, context: Context) -> R:
        return context.once(handler, event, context)

    return once


class _RequestIdFilter(logging.Filter):
    """Puts the current request id on every log record, as Lambda's Python runtime does."""

    def __init__(self) -> None:
        super().__init__()
        self.request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


class _Worker:
    """One warm function: its handler, its protocol channel, and its log stream."""

    def __init__(self, config: dict[str, Any], channel_in: IO[bytes], channel_out: IO[bytes]):
        self.name: str = config["name"]
        self.path = Path(config["path"])
        self.handler_name: str = config["handler"]
        self.memory_mb: int | None = config.get("memory_mb")
        self.arn = (
            f"arn:aws:lambda:{config.get('region', 'us-east-1')}:"
            f"{config.get('account_id', '000000000000')}:function:{self.name}"
        )
        self.idempotency_path = Path(config["idempotency_path"])
        self.log_stream = f"{time.strftime('%Y/%m/%d')}/[{VERSION}]{uuid.uuid4().hex}"
        self._in = channel_in
        self._out = channel_out
        self._store: IdempotencyStore | None = None
        self._init_ms: float | None = None
        self._request_filter = _RequestIdFilter()
        self.handler: Callable[..., Any] | None = None

    # -- the channel ---------------------------------------------------------------------------

    def send(self, frame: dict[str, Any]) -> None:
        """One frame; a ``value_json`` key is spliced in as ``value`` (encoded only once)."""
        value_json = frame.pop("value_json", None)
        text = json.dumps(frame, allow_nan=False)
        if value_json is not None:
            text = f'{text[:-1]}, "value": {value_json}}}'
        data = text.encode()
        self._out.write(HEADER.pack(len(data)) + data)
        self._out.flush()

    def receive(self) -> dict[str, Any] | None:
        header = _read_exactly(self._in, HEADER.size)
        if header is None:
            return None  # the runner closed our stdin: time to go
        (size,) = HEADER.unpack(header)
        data = _read_exactly(self._in, size)
        if data is None:
            return None
        frame: dict[str, Any] = json.loads(data)
        return frame

    # -- setup ---------------------------------------------------------------------------------

    def setup_logging(self) -> None:
        """Lambda's Python runtime's log format on the root logger, at INFO."""
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_LOG_FORMAT, "%Y-%m-%dT%H:%M:%S"))
        handler.formatter.converter = time.gmtime  # type: ignore[union-attr]
        handler.addFilter(self._request_filter)
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)

    def limit_memory(self) -> None:
        """Cap the address space (before the handler's module loads, so imports count)."""
        if self.memory_mb is None:
            return
        limit = self.memory_mb * 1024 * 1024
        try:
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        except (ValueError, OSError, AttributeError) as exc:
            _log(f"[WARNING] cannot limit memory to {self.memory_mb} MB on this platform: {exc}")

    def load(self) -> dict[str, Any]:
        """Import the module and find the handler: the ready frame to send."""
        started = time.perf_counter()
        module_name = self.name if self.name not in sys.modules else f"_function_{self.name}"
        directory = str(self.path.parent)
        if directory not in sys.path:
            # Like Lambda's task root: a handler may import helper modules beside it.
            sys.path.insert(0, directory)
        try:
            spec = importlib.util.spec_from_file_location(module_name, self.path)
            if spec is None or spec.loader is None:
                return _not_ready("ImportModuleError", f"{self.path}: not a Python module", True)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        except SyntaxError as exc:
            where = f"{exc.filename or self.path}:{exc.lineno}"
            detail = f"{where}: SyntaxError: {exc.msg}"
            _log(f"[ERROR] Runtime.UserCodeSyntaxError: {detail}")
            return _not_ready("UserCodeSyntaxError", detail, True)
        except MemoryError:
            return _not_ready(
                "OutOfMemory",
                f"{self.path}: MemoryError while importing (limit {self.memory_mb} MB)",
                False,
            )
        except BaseException as exc:  # noqa: BLE001 - the user's module may raise anything
            where = _user_frame(exc, self.path)
            detail = f"{where}: {type(exc).__name__}: {exc}"
            _log(f"[ERROR] Runtime.ImportModuleError: {detail}")
            _log("".join(traceback.format_exception(exc)).rstrip("\n"))
            return _not_ready("ImportModuleError", detail, False)
        handler = getattr(module, self.handler_name, None)
        if not callable(handler):
            what = "is not callable" if handler is not None else "is not defined"
            detail = (
                f"{self.path}: handler {self.handler_name!r} {what}; define "
                f"def {self.handler_name}(event, context) in the module"
            )
            _log(f"[ERROR] Runtime.HandlerNotFound: {detail}")
            return _not_ready("HandlerNotFound", detail, True)
        self.handler = handler
        self._init_ms = (time.perf_counter() - started) * 1000
        return {"ready": True, "pid": os.getpid()}

    def idempotency(self) -> IdempotencyStore:
        if self._store is None:
            # Imported here so a worker whose handler never asks pays nothing for SQLite.
            from rules.local.idempotency import IdempotencyStore

            self._store = IdempotencyStore(self.idempotency_path)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- one invocation ------------------------------------------------------------------------

    def invoke(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run the handler on one request frame; the response frame."""
        if self.handler is None:
            raise RuntimeError("invoke before load")
        request_id = str(request["request_id"])
        timeout = float(request["timeout"])
        deadline = time.monotonic() + timeout
        # The runner kills us at the timeout; should it be gone (killed itself), SIGALRM's
        # default action ends a handler that never returns instead of leaving it orphaned.
        signal.setitimer(signal.ITIMER_REAL, timeout + ORPHAN_GRACE)
        context = Context(self, request_id, request.get("message_id"), deadline)
        self._request_filter.request_id = request_id
        _log(f"START RequestId: {request_id} Version: {VERSION}")
        started = time.perf_counter()
        response: dict[str, Any]
        try:
            value = self.handler(request.get("event"), context)
            if inspect.isawaitable(value):
                value = _run_async(value)
        except MemoryError as exc:
            response = self._failed(request_id, "OutOfMemory", exc, exit_after=True)
        except SystemExit as exc:
            response = self._failed(request_id, "ExitError", exc, exit_after=True)
        except BaseException as exc:  # noqa: BLE001 - the handler may raise anything
            response = self._failed(request_id, type(exc).__name__, exc, exit_after=False)
        else:
            response = self._returned(request_id, value)
        signal.setitimer(signal.ITIMER_REAL, 0)
        duration_ms = (time.perf_counter() - started) * 1000
        response["duration_ms"] = duration_ms
        self._report(request_id, duration_ms)
        self._request_filter.request_id = ""
        return response

    def _returned(self, request_id: str, value: Any) -> dict[str, Any]:
        try:
            value_json = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            message = f"the handler returned a value that is not JSON-serialisable: {exc}"
            _log(f"[ERROR] InvalidReturn: {message}")
            return {"ok": False, "error_type": "InvalidReturn", "message": message}
        size = len(value_json.encode())
        if size > MAX_RESPONSE:
            message = (
                f"the handler returned {size} bytes of JSON, more than the {MAX_RESPONSE} "
                "a function may return"
            )
            _log(f"[ERROR] InvalidReturn: {message}")
            return {"ok": False, "error_type": "InvalidReturn", "message": message}
        return {"ok": True, "value_json": value_json}

    def _failed(
        self, request_id: str, error_type: str, exc: BaseException, *, exit_after: bool
    ) -> dict[str, Any]:
        try:
            if isinstance(exc, SystemExit):
                message = f"the handler called exit({exc.code!r})"
            elif isinstance(exc, MemoryError):
                limit = f"{self.memory_mb} MB" if self.memory_mb is not None else "no limit"
                message = f"MemoryError (memory limit {limit})"
            else:
                message = f"{type(exc).__name__}: {exc}"
            _log(f"[ERROR] {message}")
            _log("".join(traceback.format_exception(exc)).rstrip("\n"))
        except MemoryError:
            message = "MemoryError"
        # The traceback holds the handler's frames and whatever they allocated.
        exc.__traceback__ = None
        return {"ok": False, "error_type": error_type, "message": message, "exit": exit_after}

    def _report(self, request_id: str, duration_ms: float) -> None:
        sys.stdout.flush()
        max_mb = _peak_rss_mb()
        fields = [f"REPORT RequestId: {request_id}", f"Duration: {duration_ms:.2f} ms"]
        if self.memory_mb is not None:
            fields.append(f"Memory Size: {self.memory_mb} MB")
        fields.append(f"Max Memory Used: {max_mb} MB")
        if self._init_ms is not None:
            fields.append(f"Init Duration: {self._init_ms:.2f} ms")
            self._init_ms = None  # only the first invocation of an environment reports it
        _log(f"END RequestId: {request_id}")
        _log("\t".join(fields))
        sys.stderr.flush()


def _peak_rss_mb() -> int:
    """The worker's peak resident memory in MiB (Lambda's "Max Memory Used")."""
    # Linux's ru_maxrss also counts the parent's memory copied by the fork before our exec
    # (execve folds the old address space's peak into it); VmHWM is this program's own peak.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is KiB on Linux and bytes on macOS.
    return usage // (1024 * 1024) if sys.platform == "darwin" else usage // 1024


def _not_ready(error_type: str, message: str, cacheable: bool) -> dict[str, Any]:
    """A failed load; ``cacheable`` when the same file will always fail the same way."""
    return {"ready": False, "error_type": error_type, "message": message, "cacheable": cacheable}


def _user_frame(exc: BaseException, path: Path) -> str:
    """``file:line`` where the module's import failed: its own deepest frame if any."""
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if Path(frame.filename) == path:
            return f"{frame.filename}:{frame.lineno}"
    if frames:
        return f"{frames[-1].filename}:{frames[-1].lineno}"
    return str(path)


def _run_async(awaitable: Any) -> Any:
    import asyncio  # only async handlers pay for it

    async def wait() -> Any:
        return await awaitable

    return asyncio.run(wait())


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _take_stdio() -> tuple[IO[bytes], IO[bytes]]:
    """The protocol channel on private descriptors; 0 from /dev/null, 1 onto 2 (the log)."""
    channel_in = os.fdopen(os.dup(0), "rb", buffering=0)
    channel_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    sys.stdout.reconfigure(line_buffering=True, errors="backslashreplace")  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True, errors="backslashreplace")  # type: ignore[union-attr]
    return channel_in, channel_out


def main(argv: list[str] | None = None) -> int:
    """Serve invocations until standard input closes; the exit code."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m rules.local.function_worker CONFIG_JSON", file=sys.stderr)
        return 2
    config = json.loads(args[0])
    channel_in, channel_out = _take_stdio()
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    worker = _Worker(config, channel_in, channel_out)
    worker.setup_logging()
    worker.limit_memory()
    ready = worker.load()
    worker.send(ready)
    if not ready["ready"]:
        return 1
    try:
        while (request := worker.receive()) is not None:
            response = worker.invoke(request)
            exit_after = bool(response.pop("exit", False))
            worker.send(response)
            if exit_after:
                return 1
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
