"""The registry commands against PostgreSQL, each test in a schema of its own.

``THINGCORE_TEST_DATABASE_URL`` names the server (default: the ``test`` database on
127.0.0.1:5432); the tests skip when it is unreachable, except under ``CI=true``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from registry.db import normalise_url
from tests.conftest import service_required
from tests.thingcore.test_cli_registry import POLICY_TEXT, Cli

DATABASE_URL = os.environ.get(
    "THINGCORE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def pg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    """``thingcore`` on PostgreSQL in a fresh schema, dropped afterwards."""
    engine = create_engine(normalise_url(DATABASE_URL), connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        engine.dispose()
        reason = f"PostgreSQL at {engine.url!r} is unreachable ({type(exc.orig).__name__})"
        if service_required():
            pytest.fail(f"{reason}; CI=true requires it")
        pytest.skip(f"{reason}; set THINGCORE_TEST_DATABASE_URL to run these tests")
    schema = f"tc_cli_{secrets.token_hex(6)}"
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    try:
        yield Cli(
            tmp_path / "var",
            {
                "THINGCORE_REGISTRY__DATABASE_URL": DATABASE_URL,
                "THINGCORE_REGISTRY__DATABASE_SCHEMA": schema,
            },
        )
    finally:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def test_things_and_groups_on_postgres(pg: Cli) -> None:
    pg.ok("things", "create", "dev-1", "--attr", "site=lab")
    pg.ok("groups", "create", "lab")
    pg.ok("groups", "add-thing", "lab", "dev-1")
    assert pg.json("groups", "things", "lab") == {"things": ["dev-1"]}
    assert pg.json("things", "describe", "dev-1")["attributes"] == {"site": "lab"}
    assert "no thing named 'ghost'" in pg.fails("things", "describe", "ghost")
    # Nothing went to a SQLite file in the data directory.
    assert not (pg.data_dir / "thingcore.db").exists()


def test_device_registration_and_policy_test_on_postgres(pg: Cli) -> None:
    pg.policy("dev-policy", POLICY_TEXT)
    out = pg.json("things", "create", "dev-1", "--with-cert", "--policy", "dev-policy")
    cert_id = out["certificateId"]
    result = pg.json(
        "policies",
        "test",
        "--client-id",
        "dev-1",
        "--cert",
        cert_id[:8],
        "--action",
        "iot:Publish",
        "--topic",
        "devices/dev-1/x",
    )
    assert result["allowed"] is True
    assert result["statement"]["sid"] == "PublishOwnTopics"
    pg.ok("certs", "revoke", cert_id)
    assert (pg.data_dir / "ca" / "crl.pem").is_file()
    assert pg.json("certs", "describe", cert_id)["certificateDescription"]["status"] == "REVOKED"


def test_malformed_policy_on_postgres(pg: Cli) -> None:
    error = pg.fails(
        "policies",
        "create",
        "bad",
        "-",
        input='{"Version": "2012-10-17", "Statement": [{"Effect": "Maybe"}]}',
    )
    assert "Statement[0].Effect" in error
    assert pg.json("policies", "list") == {"policies": []}
