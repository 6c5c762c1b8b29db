"""Local functions: Python handlers run in warm worker processes, as AWS Lambda runs them.

A function is ``<directory>/<name>.py`` defining ``handler(event, context)``; an optional
sidecar ``<directory>/<name>.toml`` overrides its settings::

    handler = "main"        # the attribute to call (default "handler")
    timeout = 10.0          # seconds before the worker is killed
    memory_mb = 256         # address-space limit of its workers (RLIMIT_AS)
    concurrency = 2         # workers at most; further invocations wait

    [environment]           # variables set in its workers
    GREETING = "hello"

    [[events]]              # what invokes it besides rules (``rules.triggers.config``)
    schedule = "rate(1 hour)"

Modules whose names begin with ``_`` are helpers the handlers may import, not functions.

``FunctionRunner`` lives in the server's event loop and never blocks it: each worker is a
``python -m rules.local.function_worker`` process spoken to over asyncio pipes (the protocol is
described in that module). Workers start on first use, import the module once and stay warm;
an invocation takes an idle worker or starts one, up to the function's concurrency. A changed
``.py`` or ``.toml`` (its mtime or size) retires the function's workers: the next invocation
gets a fresh one. A worker that times out is killed (its whole process group); one that ran out
of memory or died is replaced.

Each function's output goes to ``<log_dir>/<name>.log`` in Lambda's shape (``START``, the
handler's prints and logging, ``END``, ``REPORT``), rotated to ``<name>.log.1`` at
``log_max_bytes``. Log lines are small appends made on the event loop, like the logging module's.

Failures are ``FunctionError`` with an ``error_type`` and ``retryable``:

=====================  =========  ==========================================================
error_type             retryable  when
=====================  =========  ==========================================================
NotFound, InvalidName  no         no ``<name>.py`` (the message lists the functions there)
InvalidConfig          no         the sidecar ``.toml`` is invalid (file and problem)
InvalidEvent           no         the event is not JSON-serialisable or over 6 MiB
UserCodeSyntaxError,   no         the module does not load (``file:line``) or lacks the
ImportModuleError,                handler
HandlerNotFound
InvalidReturn          no         the handler returned something that is not JSON (or too big)
<exception class>      yes        the handler raised (``function X failed: ValueError: ...``)
Timeout                yes        the handler ran longer than its timeout
OutOfMemory            yes        a MemoryError under the memory limit
WorkerDied, ExitError  yes        the worker process died or the handler called exit()
=====================  =========  ==========================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import struct
import sys
import tomllib
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from rules.errors import TargetError
from rules.triggers.config import Event, describe_event, parse_events

if TYPE_CHECKING:
    from rules.config import LocalTargetSettings

FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Lambda's function-name characters (and length)."""

HANDLER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HEADER = struct.Struct(">I")
MAX_EVENT = 6 * 1024 * 1024
"""Bytes of JSON an event may take: Lambda's synchronous request limit."""
MAX_FRAME = MAX_EVENT + 64 * 1024
"""A frame from a worker larger than this breaks the protocol (the worker caps returns)."""
MIN_MEMORY_MB = 32
INIT_TIMEOUT = 10.0
"""Seconds a worker may take to start and import its module (Lambda's init phase limit); the
function's timeout applies to each invocation after that, when it is longer."""
REPORT_WAIT = 1.0
"""Seconds to wait for a worker's REPORT line after its answer (it is written first)."""
LOG_DRAIN = 1.0
"""Seconds to wait for a killed worker's last output (a child it forked may hold the pipe)."""
LOG_MAX_BYTES = 10 * 1024 * 1024
MAX_LOG_LINE = 64 * 1024
"""Longer lines are split: a handler printing without newlines must not grow a buffer."""
SIDECAR_KEYS = ("handler", "timeout", "memory_mb", "concurrency", "environment", "events")

_REPORT = b"REPORT RequestId: "


class FunctionError(TargetError):
    """An invocation of a local function failed, or the function cannot be used.

    ``error_type`` names the failure: the handler's exception class name when it raised, else
    one of ``NotFound``, ``InvalidName``, ``InvalidConfig``, ``InvalidEvent``,
    ``UserCodeSyntaxError``, ``ImportModuleError``, ``HandlerNotFound``, ``InvalidReturn``,
    ``Timeout``, ``OutOfMemory``, ``WorkerDied``, ``ExitError``, ``Closed``.
    """

    def __init__(self, message: str, *, error_type: str, retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable)
        self.error_type = error_type


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    """One function as its files define it (runner defaults, overridden by its sidecar)."""

    name: str
    path: Path
    handler: str
    timeout: float
    memory_mb: int | None
    concurrency: int
    environment: tuple[tuple[str, str], ...] = ()
    """Variables from the sidecar's ``[environment]`` table, in file order."""
    events: tuple[Event, ...] = ()
    """What invokes it besides rules: the sidecar's ``[[events]]`` (``rules.triggers``)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "functionName": self.name,
            "file": str(self.path),
            "handler": self.handler,
            "timeout": self.timeout,
            "memoryMb": self.memory_mb,
            "concurrency": self.concurrency,
            "environment": dict(self.environment),
            "events": [describe_event(e) for e in self.events],
        }


@dataclass(frozen=True, slots=True)
class Invocation:
    """A handler's successful answer."""

    value: Any
    """What the handler returned (decoded from JSON)."""
    duration_ms: float
    """Time spent in the handler, measured in the worker."""
    request_id: str


# -- the log of one function ---------------------------------------------------------------------


class _FunctionLog:
    """``<name>.log``, appended to, rotated to ``<name>.log.1`` when it reaches ``max_bytes``.

    The server and a CLI ``invoke`` may append to the same file: appends are O_APPEND, and a
    rotation first checks that the file at the path is still the one open here.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._file: IO[bytes] | None = None
        self._size = 0
        self._shut = False

    def write(self, data: bytes) -> None:
        if self._shut:
            return  # the runner closed: an invocation it cut short has nothing more to say
        try:
            if self._file is None:
                self._open()
            elif self._size >= self.max_bytes:
                self._rotate()
            if self._file is not None:
                self._file.write(data)
                self._file.flush()
                self._size += len(data)
        except OSError:
            # A full disk or a removed directory must not fail the invocation; the next write
            # tries again from a fresh open.
            self.close()

    def line(self, text: str) -> None:
        self.write(text.encode("utf-8", "backslashreplace") + b"\n")

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def shut(self) -> None:
        """Close for good: later writes are dropped."""
        self._shut = True
        self.close()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open across writes
        self._size = os.fstat(self._file.fileno()).st_size

    def _rotate(self) -> None:
        if self._file is None:
            return
        mine = os.fstat(self._file.fileno())
        self._size = mine.st_size
        if self._size < self.max_bytes:
            return  # another process rotated it: this file is a fresh one
        try:
            current = self.path.stat()
        except FileNotFoundError:
            current = None
        if current is not None and (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev):
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self.close()
        self._open()


# -- one worker process --------------------------------------------------------------------------


class _Worker:
    """A worker process, its frames, and the task copying its output to the log."""

    def __init__(self, process: asyncio.subprocess.Process, log: _FunctionLog, name: str) -> None:
        self.process = process
        self.name = name
        self._log = log
        self._reports: dict[str, asyncio.Future[None]] = {}
        self.tail: deque[str] = deque(maxlen=5)
        self._exit_code: int | None = None
        self._copier = asyncio.create_task(self._copy_output(), name=f"function {name} output")

    @property
    def pid(self) -> int:
        return self.process.pid

    async def send(self, frame: bytes) -> None:
        stdin = self.process.stdin
        if stdin is None:  # pragma: no cover - always piped
            raise ConnectionError("worker has no stdin")
        stdin.write(HEADER.pack(len(frame)) + frame)
        await stdin.drain()

    async def receive(self) -> dict[str, Any]:
        """The next frame; IncompleteReadError when the worker exits, ValueError if garbled."""
        stdout = self.process.stdout
        if stdout is None:  # pragma: no cover - always piped
            raise ConnectionError("worker has no stdout")
        (size,) = HEADER.unpack(await stdout.readexactly(HEADER.size))
        if size > MAX_FRAME:
            raise ValueError(f"the worker sent a frame of {size} bytes")
        frame = json.loads(await stdout.readexactly(size))
        if not isinstance(frame, dict):
            raise ValueError("the worker sent a frame that is not a JSON object")
        return frame

    def expect_report(self, request_id: str) -> asyncio.Future[None]:
        """A future resolved when the worker's REPORT line for ``request_id`` has been logged."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reports[request_id] = future
        return future

    async def reported(self, request_id: str, future: asyncio.Future[None]) -> None:
        try:
            async with asyncio.timeout(REPORT_WAIT):
                await future
        except TimeoutError:
            pass
        finally:
            self._reports.pop(request_id, None)

    def kill(self) -> None:
        """SIGKILL the worker and anything it started (it leads its own process group)."""
        if self.process.returncode is not None:
            return
        try:
            if hasattr(os, "killpg"):
                os.killpg(self.process.pid, signal.SIGKILL)
            else:  # pragma: no cover - not POSIX
                self.process.kill()
        except ProcessLookupError:
            pass

    async def finish(self) -> int:
        """Kill, reap and drain the worker's output; its exit code (negative: the signal)."""
        if self._exit_code is not None:
            return self._exit_code
        self.kill()
        stdin = self.process.stdin
        if stdin is not None:
            stdin.close()
            with contextlib.suppress(ConnectionError):
                await stdin.wait_closed()
        code = await self.process.wait()
        done, _ = await asyncio.wait({self._copier}, timeout=LOG_DRAIN)
        if not done:
            self._copier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._copier
        self._exit_code = code
        return code

    async def _copy_output(self) -> None:
        stderr = self.process.stderr
        if stderr is None:  # pragma: no cover - always piped
            return
        pending = b""
        try:
            while chunk := await stderr.read(65536):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                if len(pending) > MAX_LOG_LINE:
                    lines.append(pending)
                    pending = b""
                self._log.write(b"".join(line + b"\n" for line in lines))
                for line in lines:
                    self._seen(line)
            if pending:
                self._log.write(pending + b"\n")
                self._seen(pending)
        finally:
            for future in self._reports.values():
                if not future.done():
                    future.set_result(None)

    def _seen(self, line: bytes) -> None:
        if line.strip():
            self.tail.append(line.decode("utf-8", "backslashreplace"))
        if line.startswith(_REPORT):
            request_id = line[len(_REPORT) :].split(b"\t", 1)[0].decode("utf-8", "replace")
            future = self._reports.get(request_id)
            if future is not None and not future.done():
                future.set_result(None)


@dataclass(eq=False)
class _Pool:
    """The warm workers of one revision of one function."""

    info: FunctionInfo
    revision: tuple[int, ...]
    semaphore: asyncio.Semaphore
    idle: list[_Worker] = field(default_factory=list)
    load_error: FunctionError | None = None
    """A load failure that the same files will always repeat (syntax, missing handler)."""
    retired: bool = False


# -- the runner ----------------------------------------------------------------------------------


class FunctionRunner:
    """Runs the functions of one directory in warm worker processes.

    Use it as an async context manager: leaving it kills every worker. ``functions`` and
    ``info`` only read files and need no entering.

    Args:
        directory: Where ``<name>.py`` handlers (and ``<name>.toml`` sidecars) live.
        timeout: Default seconds an invocation may run before its worker is killed.
        memory_mb: Default address-space limit per worker in MiB (None: no limit).
        concurrency: Default workers per function at most.
        log_dir: Where ``<name>.log`` files go (default ``<directory>/logs``).
        idempotency_path: The SQLite file behind ``context.once`` / ``@idempotent``
            (default ``<directory>/.idempotency.sqlite``).
        region: For ``context.invoked_function_arn``.
        account_id: For ``context.invoked_function_arn``.
        log_max_bytes: Size at which a function's log is rotated to ``<name>.log.1``.
        environment: Variables every worker gets (the server gives the local stores' paths,
            ``THINGCORE_BUCKETS_DIR`` and ``THINGCORE_QUEUES_PATH``, so handlers can write
            objects and messages); a function's own ``[environment]`` wins.
    """

    def __init__(
        self,
        directory: Path,
        *,
        timeout: float = 3.0,
        memory_mb: int | None = None,
        concurrency: int = 4,
        log_dir: Path | None = None,
        idempotency_path: Path | None = None,
        region: str = "us-east-1",
        account_id: str = "000000000000",
        log_max_bytes: int = LOG_MAX_BYTES,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be greater than 0")
        if memory_mb is not None and memory_mb < MIN_MEMORY_MB:
            raise ValueError(f"memory_mb must be at least {MIN_MEMORY_MB} (or None)")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.directory = directory.absolute()
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.concurrency = concurrency
        self.log_dir = (log_dir or self.directory / "logs").absolute()
        self.idempotency_path = (
            idempotency_path or self.directory / ".idempotency.sqlite"
        ).absolute()
        self.region = region
        self.account_id = account_id
        self.log_max_bytes = log_max_bytes
        self.environment = dict(environment or {})
        self._infos: dict[str, tuple[FunctionInfo, tuple[int, ...]]] = {}
        self._pools: dict[str, _Pool] = {}
        self._workers: set[_Worker] = set()
        self._logs: dict[str, _FunctionLog] = {}
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        settings: LocalTargetSettings,
        data_dir: Path,
        *,
        region: str = "us-east-1",
        account_id: str = "000000000000",
    ) -> FunctionRunner:
        return cls(
            settings.functions(data_dir),
            timeout=settings.function_timeout,
            memory_mb=settings.function_memory_mb,
            concurrency=settings.function_concurrency,
            region=region,
            account_id=account_id,
            environment={
                "THINGCORE_DATA_DIR": str(data_dir.absolute()),
                "THINGCORE_BUCKETS_DIR": str(settings.buckets(data_dir).absolute()),
                "THINGCORE_QUEUES_PATH": str(settings.queues(data_dir).absolute()),
            },
        )

    async def __aenter__(self) -> FunctionRunner:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Kill every worker, wait for them, and close the logs; later invocations fail."""
        self._closed = True
        workers = list(self._workers)
        for worker in workers:
            worker.kill()
        await asyncio.gather(*(worker.finish() for worker in workers))
        self._workers.clear()
        for pool in self._pools.values():
            pool.retired = True
            pool.idle.clear()
        for log in self._logs.values():
            log.shut()

    # -- what is there -----------------------------------------------------------------------

    def functions(self) -> list[FunctionInfo]:
        """Every function in the directory, by name (FunctionError for an invalid sidecar)."""
        return [self.info(name) for name in self.names()]

    def info(self, name: str) -> FunctionInfo:
        """The function ``name`` as its files define it now."""
        return self._describe(name)[0]

    def log_path(self, name: str) -> Path:
        """Where function ``name``'s log is (``.1`` appended: its rotated part)."""
        _check_name(name)
        return self.log_dir / f"{name}.log"

    def names(self) -> list[str]:
        """The functions in the directory (their files are not read)."""
        try:
            entries = list(self.directory.iterdir())
        except OSError:  # missing, not a directory, unreadable: no functions to offer
            return []
        return sorted(
            p.stem
            for p in entries
            if p.suffix == ".py"
            and FUNCTION_NAME.fullmatch(p.stem)
            and not p.stem.startswith("_")
            and p.is_file()
        )

    def _describe(self, name: str) -> tuple[FunctionInfo, tuple[int, ...]]:
        """The function's info and its files' revision (re-read only when that changes)."""
        _check_name(name)
        path = self.directory / f"{name}.py"
        sidecar = path.with_suffix(".toml")
        try:
            stat = path.stat() if not name.startswith("_") else None
        except (FileNotFoundError, NotADirectoryError):
            stat = None
        except OSError as exc:
            raise FunctionError(
                f"cannot read function {name} ({path}): {exc.strerror or exc}",
                error_type="NotFound",
                retryable=True,
            ) from None
        if stat is None:
            raise self._not_found(name)
        revision: tuple[int, ...] = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        try:
            side = sidecar.stat()
            revision += (side.st_mtime_ns, side.st_size, side.st_ino)
        except (FileNotFoundError, NotADirectoryError):
            side = None
        except OSError as exc:
            raise _config_error(sidecar, exc.strerror or str(exc)) from None
        cached = self._infos.get(name)
        if cached is not None and cached[1] == revision:
            return cached
        info = self._read_info(name, path, sidecar if side is not None else None)
        self._infos[name] = (info, revision)
        return info, revision

    def _read_info(self, name: str, path: Path, sidecar: Path | None) -> FunctionInfo:
        overrides = _read_sidecar(sidecar) if sidecar is not None else {}
        environment = overrides.get("environment", {})
        return FunctionInfo(
            name=name,
            path=path,
            handler=overrides.get("handler", "handler"),
            timeout=overrides.get("timeout", self.timeout),
            memory_mb=overrides.get("memory_mb", self.memory_mb),
            concurrency=overrides.get("concurrency", self.concurrency),
            environment=tuple(environment.items()),
            events=overrides.get("events", ()),
        )

    def _not_found(self, name: str) -> FunctionError:
        names = self.names()
        if names:
            there = f"functions there: {', '.join(names)}"
        elif self.directory.is_dir():
            there = "it has none"
        else:
            there = "it does not exist"
        return FunctionError(
            f"no function named {name!r} in {self.directory} ({there}); a function is "
            f"{self.directory / name}.py defining handler(event, context)",
            error_type="NotFound",
        )

    # -- invoking ------------------------------------------------------------------------------

    async def invoke(
        self,
        name: str,
        event: Any,
        *,
        request_id: str | None = None,
        message_id: str | None = None,
    ) -> Invocation:
        """Run function ``name`` on ``event`` (anything JSON-serialisable) in a warm worker.

        ``request_id`` becomes ``context.aws_request_id`` and names the invocation in the log
        (a fresh UUID by default); ``message_id`` is ``context.message_id``, the stable id of a
        delivery that ``context.once`` and ``@idempotent`` key on.

        Raises:
            FunctionError: The invocation failed; ``error_type`` and ``retryable`` say how.
        """
        request_id = request_id or str(uuid.uuid4())
        while True:
            if self._closed:
                raise FunctionError(
                    f"function {name} not invoked: the function runner is closed",
                    error_type="Closed",
                    retryable=True,
                )
            info, revision = self._describe(name)
            frame = _request_frame(info, event, request_id, message_id)
            pool = await self._pool(info, revision)
            async with pool.semaphore:
                if pool.retired:
                    continue  # the files changed while this invocation waited: use the new ones
                return await self._run(pool, frame, request_id)

    async def _pool(self, info: FunctionInfo, revision: tuple[int, ...]) -> _Pool:
        pool = self._pools.get(info.name)
        if pool is not None and pool.revision == revision:
            return pool
        fresh = _Pool(info, revision, asyncio.Semaphore(info.concurrency))
        self._pools[info.name] = fresh
        if pool is not None:
            # Busy workers of the old revision are disposed of when their invocations end.
            pool.retired = True
            stale, pool.idle = pool.idle, []
            for worker in stale:
                await self._dispose(worker)
        return fresh

    async def _run(self, pool: _Pool, frame: bytes, request_id: str) -> Invocation:
        if pool.load_error is not None:
            raise pool.load_error
        reply: dict[str, Any] | None = None
        while reply is None:
            reused = bool(pool.idle)
            worker = pool.idle.pop() if reused else await self._start(pool)
            keep = False
            try:
                # None: a warm worker died while idle, before the request reached it.
                reply = await self._call(pool.info, worker, frame, request_id, reused=reused)
                keep = reply is not None and (
                    reply.get("ok") is True
                    or reply.get("error_type") not in ("OutOfMemory", "ExitError")
                )
            finally:
                if keep and not pool.retired and not self._closed:
                    pool.idle.append(worker)
                else:
                    await self._dispose(worker)
        return _result(pool.info, reply, request_id)

    async def _start(self, pool: _Pool) -> _Worker:
        info = pool.info
        config = {
            "name": info.name,
            "path": str(info.path),
            "handler": info.handler,
            "memory_mb": info.memory_mb,
            "idempotency_path": str(self.idempotency_path),
            "region": self.region,
            "account_id": self.account_id,
        }
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",  # the functions directory must not shadow our modules (it is the cwd)
                "-m",
                "rules.local.function_worker",
                json.dumps(config),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.directory,
                env=self._environment(info),
                start_new_session=True,
            )
        except OSError as exc:
            raise FunctionError(
                f"function {info.name} cannot start a worker: {exc.strerror or exc}",
                error_type="WorkerDied",
                retryable=True,
            ) from None
        worker = _Worker(process, self._log(info.name), info.name)
        self._workers.add(worker)
        try:
            async with asyncio.timeout(max(INIT_TIMEOUT, info.timeout)):
                ready = await worker.receive()
        except TimeoutError:
            await self._dispose(worker)
            raise FunctionError(
                f"function {info.name} did not load within {max(INIT_TIMEOUT, info.timeout)} s",
                error_type="Timeout",
                retryable=True,
            ) from None
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            code = await self._dispose(worker)
            raise FunctionError(
                f"function {info.name}'s worker died while starting ({_exit(code)})"
                + _last_words(worker),
                error_type="WorkerDied",
                retryable=True,
            ) from None
        except BaseException:
            await self._dispose(worker)
            raise
        if ready.get("ready") is True:
            return worker
        await self._dispose(worker)
        error = FunctionError(
            f"function {info.name} cannot be loaded: {ready.get('message')}",
            error_type=str(ready.get("error_type", "ImportModuleError")),
        )
        if ready.get("cacheable"):
            pool.load_error = error
        raise error

    def _environment(self, info: FunctionInfo) -> dict[str, str]:
        # The worker inherits the server's environment (as any child process does) plus the
        # variables Lambda sets and the function's own; nothing here reads a setting from it.
        env = dict(os.environ)
        env.update(
            AWS_LAMBDA_FUNCTION_NAME=info.name,
            AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
            AWS_LAMBDA_LOG_GROUP_NAME=f"/aws/lambda/{info.name}",
            LAMBDA_TASK_ROOT=str(self.directory),
        )
        env.setdefault("AWS_REGION", self.region)
        if info.memory_mb is not None:
            env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(info.memory_mb)
        env.update(self.environment)
        env.update(info.environment)
        return env

    async def _call(
        self, info: FunctionInfo, worker: _Worker, frame: bytes, request_id: str, *, reused: bool
    ) -> dict[str, Any] | None:
        """The worker's reply; None if a ``reused`` worker was found dead before it got the
        request (a pipe to a dead process refuses the write, so the handler did not run)."""
        report = worker.expect_report(request_id)
        try:
            async with asyncio.timeout(info.timeout):
                try:
                    await worker.send(frame)
                except ConnectionError:
                    if reused:
                        return None
                    raise
                reply = await worker.receive()
        except TimeoutError:
            await self._dispose(worker)
            log = self._log(info.name)
            log.line(f"{request_id} Task timed out after {info.timeout:.2f} seconds")
            log.line(f"END RequestId: {request_id}")
            log.line(
                f"REPORT RequestId: {request_id}\tDuration: {info.timeout * 1000:.2f} ms"
                "\tStatus: timeout"
            )
            raise FunctionError(
                f"function {info.name} timed out after {info.timeout} s",
                error_type="Timeout",
                retryable=True,
            ) from None
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            code = await self._dispose(worker)
            raise self._died(info, worker, request_id, code, exc) from None
        await worker.reported(request_id, report)
        return reply

    def _died(
        self, info: FunctionInfo, worker: _Worker, request_id: str, code: int, exc: Exception
    ) -> FunctionError:
        how = str(exc) if isinstance(exc, ValueError) else _exit(code)
        log = self._log(info.name)
        log.line(f"RequestId: {request_id} Error: Runtime exited with error: {how}")
        log.line(f"END RequestId: {request_id}")
        log.line(f"REPORT RequestId: {request_id}\tStatus: error")
        last = _last_words(worker)
        out_of_memory = info.memory_mb is not None and any(
            marker in line
            for line in worker.tail
            for marker in ("MemoryError", "Cannot allocate memory", "out of memory")
        )
        if out_of_memory:
            return FunctionError(
                f"function {info.name} ran out of memory (limit {info.memory_mb} MB): its "
                f"worker died ({how}){last}",
                error_type="OutOfMemory",
                retryable=True,
            )
        return FunctionError(
            f"function {info.name}'s worker died during the invocation ({how}){last}",
            error_type="WorkerDied",
            retryable=True,
        )

    async def _dispose(self, worker: _Worker) -> int:
        try:
            return await worker.finish()
        finally:
            self._workers.discard(worker)

    def _log(self, name: str) -> _FunctionLog:
        log = self._logs.get(name)
        if log is None:
            log = self._logs[name] = _FunctionLog(self.log_path(name), self.log_max_bytes)
        return log


# -- pure helpers --------------------------------------------------------------------------------


def _check_name(name: str) -> None:
    if not FUNCTION_NAME.fullmatch(name):
        raise FunctionError(
            f"{name!r} is not a function name: 1 to 64 letters, digits, '-' or '_'",
            error_type="InvalidName",
        )


def _request_frame(
    info: FunctionInfo, event: Any, request_id: str, message_id: str | None
) -> bytes:
    request = {
        "request_id": request_id,
        "message_id": message_id,
        "timeout": info.timeout,
        "event": event,
    }
    try:
        data = json.dumps(request, allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise FunctionError(
            f"function {info.name} not invoked: the event is not JSON-serialisable: {exc}",
            error_type="InvalidEvent",
        ) from None
    if len(data) > MAX_EVENT:
        raise FunctionError(
            f"function {info.name} not invoked: the event is {len(data)} bytes of JSON, more "
            f"than the {MAX_EVENT} a function accepts",
            error_type="InvalidEvent",
        )
    return data


def _result(info: FunctionInfo, reply: dict[str, Any], request_id: str) -> Invocation:
    duration = float(reply.get("duration_ms", 0.0))
    if reply.get("ok") is True:
        return Invocation(reply.get("value"), duration, request_id)
    error_type = str(reply.get("error_type", "Unhandled"))
    message = str(reply.get("message", ""))
    if error_type == "InvalidReturn":
        raise FunctionError(
            f"function {info.name} returned an invalid value: {message}", error_type=error_type
        )
    if error_type == "OutOfMemory":
        raise FunctionError(
            f"function {info.name} ran out of memory: {message}",
            error_type=error_type,
            retryable=True,
        )
    raise FunctionError(
        f"function {info.name} failed: {message}", error_type=error_type, retryable=True
    )


def _exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _last_words(worker: _Worker) -> str:
    return f"; its last output: {worker.tail[-1]}" if worker.tail else ""


def _config_error(path: Path, problem: str) -> FunctionError:
    return FunctionError(
        f"invalid function settings in {path}: {problem}", error_type="InvalidConfig"
    )


def _read_sidecar(path: Path) -> dict[str, Any]:
    """The validated overrides of a ``<name>.toml`` sidecar."""
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise _config_error(path, str(exc)) from None
    except OSError as exc:
        raise _config_error(path, exc.strerror or str(exc)) from None
    unknown = sorted(set(data) - set(SIDECAR_KEYS))
    if unknown:
        raise _config_error(path, f"unknown key {unknown[0]!r} (known: {', '.join(SIDECAR_KEYS)})")
    overrides: dict[str, Any] = {}
    if "handler" in data:
        handler = data["handler"]
        if not isinstance(handler, str) or not HANDLER_NAME.fullmatch(handler):
            raise _config_error(path, f"handler must be a Python name, not {handler!r}")
        overrides["handler"] = handler
    if "timeout" in data:
        timeout = data["timeout"]
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise _config_error(path, f"timeout must be seconds greater than 0, not {timeout!r}")
        overrides["timeout"] = float(timeout)
    if "memory_mb" in data:
        memory = data["memory_mb"]
        if isinstance(memory, bool) or not isinstance(memory, int) or memory < MIN_MEMORY_MB:
            raise _config_error(
                path, f"memory_mb must be a whole number of MiB >= {MIN_MEMORY_MB}, not {memory!r}"
            )
        overrides["memory_mb"] = memory
    if "concurrency" in data:
        concurrency = data["concurrency"]
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise _config_error(
                path, f"concurrency must be a whole number >= 1, not {concurrency!r}"
            )
        overrides["concurrency"] = concurrency
    if "environment" in data:
        environment = data["environment"]
        if not isinstance(environment, dict):
            raise _config_error(path, "environment must be a table ([environment])")
        for key, value in environment.items():
            if not isinstance(value, str):
                raise _config_error(
                    path, f"environment variable {key} must be a string, not {value!r}"
                )
            if not key or "=" in key or "\0" in key or "\0" in value:
                raise _config_error(path, f"{key!r} cannot be an environment variable")
        overrides["environment"] = dict(environment)
    if "events" in data:
        try:
            overrides["events"] = parse_events(data["events"])
        except ValueError as exc:
            raise _config_error(path, str(exc)) from None
    return overrides
