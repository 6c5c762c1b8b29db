"""moto's server (``moto_server``) as a real AWS endpoint on a free loopback port.

Started by the test as a separate process and stopped by its PID, as the brief asks; boto3
clients reach it over HTTP with ``endpoint_url``. Lambda runs without Docker (moto's "simple"
Lambda: an invocation is recorded and answers with its payload, or with a result the test
queued), and the request recorder lets a test read every call moto received.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.rules.engine_support import free_port

REGION = "us-east-1"
ACCOUNT = "123456789012"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


class MotoServer:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        executable = shutil.which("moto_server", path=str(Path(sys.executable).parent))
        command = ([executable] if executable else [sys.executable, "-m", "moto.server"]) + [
            "-H",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]
        self._log = (workdir / f"moto-{self.port}.log").open("wb")
        env = {**os.environ, **CREDENTIALS, "MOTO_ENABLE_RECORDING": "true"}
        self.process = subprocess.Popen(  # noqa: S603 - our own test server
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=workdir
        )
        self._wait_ready()
        self._post("/moto-api/config", {"lambda": {"use_docker": False}})
        self._post("/moto-api/recorder/start-recording", None)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):  # noqa: S310
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto_server did not start within 30 s")

    def _post(self, path: str, body: Any) -> bytes:
        data = b"" if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return bytes(response.read())

    def client(self, service: str, endpoint_url: str | None = None) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=endpoint_url or self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def queue_lambda_result(self, result: Any) -> None:
        """The next invocation of the (Docker-free) Lambda answers ``result`` (JSON)."""
        self._post(
            "/moto-api/static/lambda-simple/response",
            {"results": [json.dumps(result)], "region": REGION, "account_id": ACCOUNT},
        )

    def recorded(self) -> list[dict[str, Any]]:
        """Every request moto received since it started, in order (moto's recorder)."""
        with urllib.request.urlopen(  # noqa: S310
            f"{self.url}/moto-api/recorder/download-recording", timeout=10
        ) as response:
            text = response.read().decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
