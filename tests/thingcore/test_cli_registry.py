"""The registry commands: things, types, groups, help texts and errors.

``Cli`` runs ``thingcore.cli.main`` in-process (typer's ``CliRunner`` isolation captures its
streams and sets the environment), so each test sees exactly what a shell would: the exit code,
standard output, and the one ``error:`` line. A few cases run ``python -m thingcore`` as a real
process. Certificates and CAs are in ``test_cli_registry_certs.py``, policies in
``test_cli_registry_policies.py``, the PostgreSQL runs in ``test_cli_registry_postgres.py``;
they import ``Cli`` and the ``cli`` fixture from here.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from cryptography import x509
from typer.testing import CliRunner

from thingcore.cli import app, main
from thingcore.cli.common import match_id

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "ConnectAsThing",
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}",
        },
        {
            "Sid": "PublishOwnTopics",
            "Effect": "Allow",
            "Action": ["iot:Publish", "iot:Receive"],
            "Resource": "arn:aws:iot:*:*:topic/devices/${iot:Connection.Thing.ThingName}/*",
        },
        {
            "Sid": "NeverAdmin",
            "Effect": "Deny",
            "Action": "iot:Publish",
            "Resource": "arn:aws:iot:*:*:topic/devices/*/admin",
        },
    ],
}
POLICY_TEXT = json.dumps(POLICY)

NOUNS = ("things", "types", "groups", "certs", "policies", "ca")


@dataclass(frozen=True)
class Ran:
    """What one ``thingcore ...`` invocation did."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def text(self) -> str:
        """Standard output with whitespace runs collapsed (tables pad and wrap)."""
        return " ".join(self.stdout.split())


class Cli:
    """``thingcore`` against one data directory (and optionally another database)."""

    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        # None unsets: THINGCORE_* settings of the developer's shell must not leak in.
        self.env: dict[str, str | None] = {
            k: None for k in os.environ if k.startswith("THINGCORE_")
        }
        self.env.update({"THINGCORE_DATA_DIR": str(data_dir), "COLUMNS": "200"})
        self.env.update(env or {})

    def run(self, *args: str, input: str | None = None) -> Ran:
        runner = CliRunner()
        code = 0
        with runner.isolation(input=input, env=self.env) as (out, err, _):
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
        return Ran(code, stdout, stderr)

    def ok(self, *args: str, input: str | None = None) -> Ran:
        ran = self.run(*args, input=input)
        assert ran.code == 0, f"thingcore {' '.join(args)} failed ({ran.code}): {ran.stderr}"
        assert ran.stderr == ""
        return ran

    def json(self, *args: str, input: str | None = None) -> Any:
        return self.ok(*args, "--json", input=input).json()

    def fails(self, *args: str, input: str | None = None) -> str:
        """The one error line of a command that must fail with exit code 1."""
        ran = self.run(*args, input=input)
        assert ran.code == 1, f"expected exit 1, got {ran.code}: {ran.stdout}{ran.stderr}"
        lines = ran.stderr.splitlines()
        assert len(lines) == 1, ran.stderr
        assert lines[0].startswith("error: "), ran.stderr
        return lines[0]

    def policy(self, name: str = "dev-policy", document: str = POLICY_TEXT) -> str:
        self.ok("policies", "create", name, "-", input=document)
        return name


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``thingcore`` with a fresh data directory, run from a folder without thingcore.toml."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return Cli(tmp_path / "var")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- things ------------------------------------------------------------------------------------


def test_things_create_describe_list_update_delete(cli: Cli) -> None:
    created = cli.json("things", "create", "dev-1", "--attr", "site=lab", "--attr", "floor=2")
    assert set(created) == {"thingName", "thingArn", "thingId"}
    assert created["thingArn"] == "arn:aws:iot:us-east-1:000000000000:thing/dev-1"
    assert "Created thing dev-2" in cli.ok("things", "create", "dev-2").stdout

    described = cli.json("things", "describe", "dev-1")
    assert described["attributes"] == {"site": "lab", "floor": "2"}
    assert described["version"] == 1
    assert described["thingId"] == created["thingId"]

    listed = cli.json("things", "list")
    assert [t["thingName"] for t in listed["things"]] == ["dev-1", "dev-2"]
    only_lab = cli.json("things", "list", "--attr-name", "site", "--attr-value", "lab")
    assert [t["thingName"] for t in only_lab["things"]] == ["dev-1"]
    table = cli.ok("things", "list").text
    assert "dev-1" in table
    assert "floor=2, site=lab" in table

    assert "version 2" in cli.ok("things", "update", "dev-1", "--attr", "floor=3", "--merge").stdout
    assert cli.json("things", "describe", "dev-1")["attributes"] == {"site": "lab", "floor": "3"}
    cli.ok("things", "update", "dev-1", "--attr", "only=this")
    assert cli.json("things", "describe", "dev-1")["attributes"] == {"only": "this"}
    conflict = cli.fails("things", "update", "dev-1", "--attr", "a=b", "--expected-version", "1")
    assert "version 3, not 1" in conflict

    assert "Deleted thing dev-2" in cli.ok("things", "delete", "dev-2").stdout
    assert [t["thingName"] for t in cli.json("things", "list")["things"]] == ["dev-1"]


def test_things_list_follows_every_page(cli: Cli) -> None:
    # The registry pages at 250; --json must hold them all.
    from registry.service import Registry
    from thingcore.config import load_settings

    registry = Registry(load_settings(data_dir=cli.data_dir).registry, cli.data_dir).open()
    try:
        for i in range(260):
            registry.things.create(f"bulk-{i:03d}")
    finally:
        registry.close()
    names = [t["thingName"] for t in cli.json("things", "list")["things"]]
    assert len(names) == 260
    assert names[0] == "bulk-000"
    assert names[-1] == "bulk-259"


def test_unknown_thing_is_one_error_line(cli: Cli) -> None:
    assert cli.fails("things", "describe", "ghost") == (
        "error: no thing named 'ghost' (see `thingcore things list`)"
    )
    assert "no thing named 'ghost'" in cli.fails("things", "delete", "ghost")
    assert "no thing named 'ghost'" in cli.fails("things", "principals", "ghost")


def test_invalid_input_is_one_error_line(cli: Cli) -> None:
    assert "is invalid" in cli.fails("things", "create", "bad name!")
    assert "NAME=VALUE" in cli.fails("things", "create", "dev-1", "--attr", "novalue")
    assert "at most 3 attributes" in cli.fails(
        "things", "create", "dev-1", *[f"--attr=a{i}=1" for i in range(4)]
    )
    assert "--with-cert" in cli.fails("things", "create", "dev-1", "--policy", "p")
    assert "no thing type named 'sensor'" in cli.fails("things", "create", "d", "--type", "sensor")


def test_data_dir_option_overrides_the_environment(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "other"
    cli.ok("things", "create", "elsewhere", "--data-dir", str(other))
    assert (other / "thingcore.db").exists()
    assert cli.json("things", "list")["things"] == []
    listed = cli.json("things", "list", "--data-dir", str(other))
    assert [t["thingName"] for t in listed["things"]] == ["elsewhere"]


def test_things_create_with_cert_writes_credentials_and_attaches_them(cli: Cli) -> None:
    cli.policy("dev-policy")
    out = cli.json("things", "create", "dev-1", "--with-cert", "--policy", "dev-policy")
    assert set(out) == {
        "thingName",
        "thingArn",
        "thingId",
        "certificateId",
        "certificateArn",
        "certificatePath",
        "privateKeyPath",
        "publicKeyPath",
        "rootCaPath",
    }
    folder = cli.data_dir / "things" / "dev-1"
    paths = {
        "certificatePath": folder / "certificate.pem.crt",
        "privateKeyPath": folder / "private.pem.key",
        "publicKeyPath": folder / "public.pem.key",
        "rootCaPath": folder / "root-ca.pem",
    }
    for key, path in paths.items():
        assert Path(out[key]) == path
        assert mode(path) == (0o644 if key == "rootCaPath" else 0o600), key

    cert = x509.load_pem_x509_certificate(paths["certificatePath"].read_bytes())
    root = x509.load_pem_x509_certificate(paths["rootCaPath"].read_bytes())
    cert.verify_directly_issued_by(root)
    assert paths["rootCaPath"].read_text() == cli.ok("ca", "show", "--pem").stdout
    assert "PRIVATE KEY" in paths["privateKeyPath"].read_text()

    cert_id = out["certificateId"]
    description = cli.json("certs", "describe", cert_id)["certificateDescription"]
    assert description["status"] == "ACTIVE"
    assert cli.json("things", "principals", "dev-1") == {"principals": [out["certificateArn"]]}
    attached = cli.json("policies", "attached", "--cert", cert_id)["policies"]
    assert [p["policyName"] for p in attached] == ["dev-policy"]


def test_things_create_with_cert_prints_the_paths(cli: Cli, tmp_path: Path) -> None:
    out_dir = tmp_path / "creds"
    text = cli.ok("things", "create", "dev-1", "--with-cert", "--out", str(out_dir)).text
    for name in ("certificate.pem.crt", "private.pem.key", "public.pem.key", "root-ca.pem"):
        assert str(out_dir / name) in text
        assert (out_dir / name).is_file()
    assert "ACTIVE" in text


def test_things_create_with_unknown_policy_creates_nothing(cli: Cli) -> None:
    error = cli.fails("things", "create", "dev-1", "--with-cert", "--policy", "missing")
    assert "no policy named 'missing'" in error
    assert cli.json("things", "list")["things"] == []
    assert cli.json("certs", "list")["certificates"] == []
    assert not (cli.data_dir / "things").exists()


def test_things_create_with_cert_refuses_to_overwrite_credentials(cli: Cli) -> None:
    first = cli.json("things", "create", "dev-1", "--with-cert")
    error = cli.fails("things", "create", "dev-1", "--with-cert")
    assert "certificate.pem.crt already exists" in error
    certs = cli.json("certs", "list")["certificates"]
    assert [c["certificateId"] for c in certs] == [first["certificateId"]]


def test_things_delete_force_detaches_certificates(cli: Cli) -> None:
    out = cli.json("things", "create", "dev-1", "--with-cert")
    error = cli.fails("things", "delete", "dev-1")
    assert "still has certificates attached" in error
    assert "--force" in error
    text = cli.ok("things", "delete", "dev-1", "--force").text
    assert f"Detached certificate {out['certificateId']}" in text
    assert cli.json("things", "list")["things"] == []
    # The certificate itself stays registered (and ACTIVE).
    assert cli.json("certs", "describe", out["certificateId"][:10])["certificateDescription"][
        "status"
    ] == ("ACTIVE")


def test_things_attach_and_detach_cert(cli: Cli) -> None:
    cert = cli.json("certs", "create")
    cli.ok("things", "create", "dev-1")
    prefix = cert["certificateId"][:8]
    assert cert["certificateId"] in cli.ok("things", "attach-cert", "dev-1", prefix).stdout
    assert cli.json("things", "principals", "dev-1")["principals"] == [cert["certificateArn"]]
    assert cert["certificateId"][:12] in cli.ok("things", "principals", "dev-1").text
    cli.ok("things", "detach-cert", "dev-1", cert["certificateArn"])
    assert cli.json("things", "principals", "dev-1")["principals"] == []
    assert "is not attached" in cli.fails("things", "detach-cert", "dev-1", prefix)


# -- types ---------------------------------------------------------------------------------------


def test_types_lifecycle(cli: Cli) -> None:
    created = cli.json(
        "types", "create", "sensor", "--description", "Lab sensors", "--searchable", "site"
    )
    assert created["thingTypeName"] == "sensor"
    described = cli.json("types", "describe", "sensor")
    assert described["thingTypeProperties"] == {
        "thingTypeDescription": "Lab sensors",
        "searchableAttributes": ["site"],
    }
    assert [t["thingTypeName"] for t in cli.json("types", "list")["thingTypes"]] == ["sensor"]
    assert "Lab sensors" in cli.ok("types", "list").text

    cli.ok("things", "create", "dev-1", "--type", "sensor", *[f"--attr=a{i}=1" for i in range(5)])
    assert cli.json("things", "list", "--type", "sensor")["things"][0]["thingName"] == "dev-1"

    assert "must be deprecated" in cli.fails("types", "delete", "sensor")
    cli.ok("types", "deprecate", "sensor")
    assert cli.json("types", "describe", "sensor")["thingTypeMetadata"]["deprecated"] is True
    assert "deprecated" in cli.fails("things", "create", "dev-2", "--type", "sensor")
    assert "still used by thing 'dev-1'" in cli.fails("types", "delete", "sensor")
    cli.ok("things", "update", "dev-1", "--remove-type", "--attr", "a=1")
    cli.ok("types", "deprecate", "sensor", "--undo")
    assert cli.json("types", "describe", "sensor")["thingTypeMetadata"]["deprecated"] is False
    cli.ok("types", "deprecate", "sensor")
    assert "Deleted thing type sensor" in cli.ok("types", "delete", "sensor").stdout
    assert "no thing type named 'sensor'" in cli.fails("types", "describe", "sensor")


# -- groups ------------------------------------------------------------------------------------


def test_groups_lifecycle(cli: Cli) -> None:
    cli.ok("groups", "create", "building")
    created = cli.json(
        "groups",
        "create",
        "lab",
        "--parent",
        "building",
        "--description",
        "Second floor",
        "--attr",
        "floor=2",
    )
    assert created["thingGroupArn"].endswith(":thinggroup/lab")
    described = cli.json("groups", "describe", "lab")
    assert described["thingGroupMetadata"]["parentGroupName"] == "building"
    assert described["thingGroupProperties"]["attributePayload"]["attributes"] == {"floor": "2"}
    assert "building / lab" in cli.ok("groups", "describe", "lab").text

    names = [g["groupName"] for g in cli.json("groups", "list")["thingGroups"]]
    assert names == ["building", "lab"]
    children = cli.json("groups", "list", "--parent", "building")["thingGroups"]
    assert [g["groupName"] for g in children] == ["lab"]

    cli.ok("things", "create", "dev-1")
    cli.ok("groups", "add-thing", "lab", "dev-1")
    assert cli.json("groups", "things", "lab") == {"things": ["dev-1"]}
    assert cli.json("groups", "things", "building") == {"things": []}
    assert cli.json("groups", "things", "building", "--recursive") == {"things": ["dev-1"]}
    assert "lab" in cli.ok("things", "describe", "dev-1").text

    assert "child groups" in cli.fails("groups", "delete", "building")
    cli.ok("groups", "remove-thing", "lab", "dev-1")
    assert cli.json("groups", "things", "lab") == {"things": []}
    cli.ok("groups", "delete", "lab")
    assert "no thing group named 'lab'" in cli.fails("groups", "delete", "lab")
    assert "no thing group named 'nowhere'" in cli.fails(
        "groups", "create", "orphan", "--parent", "nowhere"
    )


# -- help ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("noun", NOUNS)
def test_every_noun_help_has_an_example(cli: Cli, noun: str) -> None:
    text = cli.ok(noun, "--help").text
    assert "Example:" in text
    assert f"thingcore {noun} " in text


def test_every_command_help_has_an_example() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    missing = []
    for noun in NOUNS:
        group = root.commands[noun]
        assert isinstance(group, typer.core.TyperGroup)
        for name, command in group.commands.items():
            if "Example:" not in (command.help or ""):
                missing.append(f"{noun} {name}")
    assert missing == []


def test_root_help_lists_the_nouns(cli: Cli) -> None:
    text = cli.ok("--help").text
    for noun in NOUNS:
        assert noun in text


# -- certificate id prefixes (pure) ------------------------------------------------------------

IDS = ["ab" * 32, "abcdef01" + "0" * 56, "abcdef02" + "0" * 56]


def test_a_unique_prefix_names_one_id() -> None:
    assert match_id("abababab", "certificate", lambda: IDS, "x") == IDS[0]
    assert match_id("ABCDEF01", "certificate", lambda: IDS, "x") == IDS[1]


def test_a_full_id_or_arn_needs_no_lookup() -> None:
    def never() -> list[str]:
        raise AssertionError("looked up")

    assert match_id("0x" + "AB" * 32, "certificate", never, "x") == IDS[0]
    arn = "arn:aws:iot:us-east-1:000000000000:cert/" + IDS[1]
    assert match_id(arn, "certificate", never, "x") == IDS[1]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abcdef0", "not a certificate id"),
        ("zzzzzzzz", "not a certificate id"),
        ("abcdef", "at least 8 hex digits"),
        ("abcdef0f", "no certificate id starts with abcdef0f"),
        ("abcdef0", "see `x`"),
    ],
)
def test_bad_prefixes_are_explained(value: str, message: str) -> None:
    with pytest.raises(Exception, match=message.replace("`", "`?")):
        match_id(value, "certificate", lambda: IDS, "x")


def test_an_ambiguous_prefix_is_refused() -> None:
    from thingcore.errors import ThingcoreError

    twins = [*IDS, "abcdef01" + "1" * 56]
    with pytest.raises(ThingcoreError, match="ambiguous: it matches abcdef0100.*abcdef0111"):
        match_id("abcdef01", "certificate", lambda: twins, "x")
    assert match_id("abcdef011", "certificate", lambda: twins, "x") == twins[-1]


# -- as a real process ---------------------------------------------------------------------------


def run_process(*args: str, cwd: Path, data_dir: Path, input: str | None = None) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINGCORE_")}
    env["THINGCORE_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "thingcore", *args],
        cwd=cwd,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_process_errors_are_one_line_and_exit_1(tmp_path: Path) -> None:
    done = run_process("things", "describe", "ghost", cwd=tmp_path, data_dir=tmp_path / "var")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "error: no thing named 'ghost' (see `thingcore things list`)"
    ]


def test_process_registers_a_device_end_to_end(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    done = run_process(
        "policies", "create", "p", "-", cwd=tmp_path, data_dir=data_dir, input=POLICY_TEXT
    )
    assert done.returncode == 0, done.stderr
    done = run_process(
        "things",
        "create",
        "dev-1",
        "--with-cert",
        "--policy",
        "p",
        "--json",
        cwd=tmp_path,
        data_dir=data_dir,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    root = run_process("ca", "show", "--pem", cwd=tmp_path, data_dir=data_dir)
    assert root.returncode == 0, root.stderr
    assert root.stdout.startswith("-----BEGIN CERTIFICATE-----")
    cert = x509.load_pem_x509_certificate(Path(out["certificatePath"]).read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(root.stdout.encode()))
    malformed = run_process(
        "policies", "create", "bad", "-", cwd=tmp_path, data_dir=data_dir, input="{"
    )
    assert malformed.returncode == 1
    assert "Traceback" not in malformed.stderr
    [line] = malformed.stderr.splitlines()
    assert line.startswith("error: policy 'bad': not valid JSON")
