"""A rule whose action needs a package that is not installed is refused when it is applied, with
the command that installs it; a server that loads such a stored rule reports it broken.

The package is hidden from a real ``thingcore`` process by an import blocker (a
``sitecustomize`` on PYTHONPATH), as on a machine where the extra was never installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rules.config import AwsSettings, RulesSettings
from rules.definition import missing_extras, parse_definition

S3_RULE = {
    "sql": "SELECT * FROM 'sensors/+/t'",
    "actions": [{"s3": {"bucketName": "readings", "key": "${topic(2)}/${timestamp()}.json"}}],
}


def run_cli(
    tmp_path: Path, *args: str, hidden: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    blocker = tmp_path / "blocker"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import sys

            class Hide:
                def find_spec(self, name, path=None, target=None):
                    if name == {hidden!r} or name.startswith({hidden!r} + "."):
                        raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                    return None

            sys.meta_path.insert(0, Hide())
            """
        )
    )
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "thingcore", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": f"{blocker}{os.pathsep}{root}",
            "THINGCORE_CONFIG": "",
            **env,
        },
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "archive.json").write_text(json.dumps(S3_RULE))
    return rules


def without_boto3(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``thingcore rules <args> --data-dir <tmp_path>/var`` where boto3 cannot be imported."""
    data_dir = str(tmp_path / "var")
    return run_cli(tmp_path, "rules", *args, "--data-dir", data_dir, hidden="boto3", env=env or {})


def test_an_s3_rule_bound_for_aws_without_boto3_is_refused_with_the_install_command(
    tmp_path: Path, folder: Path
) -> None:
    done = without_boto3(
        tmp_path, "apply", str(folder), env={"THINGCORE_RULES__AWS_TARGETS": "aws"}
    )
    assert done.returncode != 0, done.stdout
    assert "rule archive" in done.stderr
    assert "pip install 'thingcore[aws]'" in done.stderr
    listed = without_boto3(tmp_path, "list", "--json")
    assert json.loads(listed.stdout)["rules"] == []  # nothing was applied


def test_the_same_rule_applies_without_boto3_while_s3_maps_to_local_buckets(
    tmp_path: Path, folder: Path
) -> None:
    done = without_boto3(tmp_path, "apply", str(folder))
    assert done.returncode == 0, done.stderr
    assert "created archive" in " ".join(done.stdout.split())


def test_missing_extras_names_each_action_kind_once(monkeypatch: pytest.MonkeyPatch) -> None:
    definition = parse_definition(
        "r",
        {
            **S3_RULE,
            "actions": [*S3_RULE["actions"], *S3_RULE["actions"]],
            "errorAction": {"sqs": {"queueUrl": "https://sqs.us-east-1.amazonaws.com/1/e"}},
        },
    )
    aws = RulesSettings(aws_targets="aws")
    assert missing_extras(definition, aws) == []
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 now fails, as if absent
    problems = missing_extras(definition, aws)
    assert len(problems) == 2  # the two s3 actions once, the sqs error action
    assert all("pip install 'thingcore[aws]'" in p for p in problems)
    assert "s3" in problems[0] and "sqs" in problems[1]
    assert missing_extras(definition, RulesSettings()) == []  # local: boto3 is not needed
    only_s3 = RulesSettings(aws=AwsSettings(s3_endpoint_url="http://127.0.0.1:9"))
    assert missing_extras(definition, only_s3) != []
