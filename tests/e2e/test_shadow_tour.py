"""The README's shadow section, run literally: policy, thing, the SDK snippet, the CLI.

Like ``test_device_tour``, everything is read out of README.md, so the section cannot drift
from what works; only the TLS port is replaced by the free one the server listens on.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.e2e.test_device_tour import README, TLS_READY, run
from tests.thingcore.test_cli import ServeProcess, clean_env


def readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Device shadows")
    return text[start : text.index("\n## ", start + 1)]


def test_the_readme_shadow_section_works_as_written(tmp_path: Path) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    section = readme_section()
    policy = re.search(r"cat > shadow-policy\.json <<'JSON'\n(.*?)\nJSON\n", section, re.S)
    assert policy, "the README's shadow policy heredoc moved"
    (workdir / "shadow-policy.json").write_text(policy.group(1), encoding="utf-8")
    snippet = re.search(r"```python\n(from awscrt import.*?)```", section, re.S)
    assert snippet, "the README's shadow SDK example moved"
    commands = [
        shlex.split(line.removeprefix(".venv/bin/thingcore "))
        for line in section.splitlines()
        if line.startswith(".venv/bin/thingcore ")
    ]
    assert [c[:2] for c in commands] == [
        ["policies", "create"],
        ["things", "create"],
        ["shadows", "update"],
        ["shadows", "get"],
    ]
    with ServeProcess(workdir / "var", workdir) as server:
        tls_port = int(TLS_READY.search("".join(server.stderr)).group(1))  # type: ignore[union-attr]
        for command in commands[:2]:
            run([sys.executable, "-m", "thingcore", *command], workdir)
        device_dir = workdir / "var" / "things" / "thermostat"
        code = snippet.group(1).replace("port=8883", f"port={tls_port}")
        # The server reads the new registry rows within a second (change feed); the SDK's
        # request waits for the connection, so one run suffices once the device is admitted.
        for _ in range(10):
            done = run_device(code, device_dir)
            if done is not None:
                break
        assert done == "version 1\n"
        run([sys.executable, "-m", "thingcore", *commands[2]], workdir)
        shown = run([sys.executable, "-m", "thingcore", *commands[3]], workdir)
        document = json.loads(shown.stdout)
        assert document["version"] == 2
        assert document["state"]["reported"] == {"temperature": 21.5, "heater": "off"}
        assert document["state"]["delta"] == {"temperature": 23}
        assert server.interrupt() == 0


def run_device(code: str, cwd: Path) -> str | None:
    """The snippet's output, or None when the device was not admitted yet."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout if done.returncode == 0 else None
