"""The README's device section, run literally: a policy, a thing with a certificate, a device.

The policy document, the CLI commands, the ``mosquitto_pub`` line and the AWS IoT Device SDK
snippet are read out of README.md itself, so the README cannot drift from what works. Only the
ports differ: the server here listens on free ones (``--port 0 --tls-port 0``).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_tour import WAIT, mosquitto_clients  # noqa: F401 - fixture
from tests.thingcore.test_cli import ServeProcess, clean_env

README = Path(__file__).resolve().parents[2] / "README.md"
TLS_READY = re.compile(r"mqtts on 127\.0\.0\.1:(\d+)")


def readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Devices: certificates and policies")
    return text[start : text.index("\n## ", start + 1)]


def policy_document(section: str) -> str:
    match = re.search(r"cat > sensor-policy\.json <<'JSON'\n(.*?)\nJSON\n", section, re.S)
    assert match, "the README's policy heredoc moved"
    return match.group(1)


def cli_lines(section: str) -> list[list[str]]:
    return [
        shlex.split(line.removeprefix(".venv/bin/thingcore "))
        for line in section.splitlines()
        if line.startswith(".venv/bin/thingcore ")
    ]


def mosquitto_pub_line(section: str, tls_port: int) -> list[str]:
    match = re.search(r"(mosquitto_pub -h localhost -p 8883 .*?)\n```", section, re.S)
    assert match, "the README's mosquitto_pub example moved"
    command = match.group(1).replace("\\\n", " ").replace("-p 8883", f"-p {tls_port}")
    return shlex.split(command)


def sdk_snippet(section: str, tls_port: int) -> str:
    match = re.search(r"```python\n(from awsiot import.*?)```", section, re.S)
    assert match, "the README's SDK example moved"
    return match.group(1).replace("port=8883", f"port={tls_port}")


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def subscriber(port: int) -> subprocess.Popen[str]:
    # The plain listener is for local tools: anonymous, under the default policy.
    return subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", "sensors/#", "-v", "-C", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def deliver_until_received(plain_port: int, publisher: list[str], cwd: Path) -> str:
    """Run ``publisher`` until a fresh ``mosquitto_sub`` prints a message; return its output."""
    sub = subscriber(plain_port)
    failures: list[str] = []
    for _ in range(int(WAIT / 0.5)):
        done = subprocess.run(
            publisher,
            cwd=cwd,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            failures.append(done.stderr.strip())
        try:
            out, err = sub.communicate(timeout=0.5)
        except subprocess.TimeoutExpired:
            continue
        assert sub.returncode == 0, err
        # At most the first second may be refused: the server had not yet read the registry.
        assert len(failures) <= 2, failures
        return out
    sub.kill()
    raise AssertionError(f"no reading arrived; publisher errors: {failures}")


@pytest.mark.usefixtures("mosquitto_clients")
def test_the_readme_device_section_works_as_written(tmp_path: Path) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    section = readme_section()
    (workdir / "sensor-policy.json").write_text(policy_document(section), encoding="utf-8")
    with ServeProcess(workdir / "var", workdir) as server:
        tls_port = int(TLS_READY.search("".join(server.stderr)).group(1))  # type: ignore[union-attr]
        commands = cli_lines(section)
        assert [c[:2] for c in commands] == [["policies", "create"], ["things", "create"]]
        for command in commands:
            run([sys.executable, "-m", "thingcore", *command], workdir)
        device_dir = workdir / "var" / "things" / "kitchen"
        for name in ("certificate.pem.crt", "private.pem.key", "public.pem.key", "root-ca.pem"):
            assert (device_dir / name).is_file(), name
        assert (device_dir / "private.pem.key").stat().st_mode & 0o777 == 0o600

        # The CLI wrote the registry; the server applies it within a second (change feed).
        # mosquitto_sub is subscribed only once it has connected. So publish again until the
        # subscriber has the reading, for a bounded time, rather than guessing either delay.
        pub = mosquitto_pub_line(section, tls_port)
        assert deliver_until_received(server.port, pub, device_dir) == (
            "sensors/kitchen/temperature 21.5\n"
        )
        sdk = [sys.executable, "-c", sdk_snippet(section, tls_port)]
        assert deliver_until_received(server.port, sdk, device_dir) == (
            "sensors/kitchen/temperature 21.5\n"
        )
        assert server.interrupt() == 0
