"""Registry fixtures: an empty registry on SQLite and on PostgreSQL (test ids ``sqlite`` and
``postgresql``), brand-new databases for the migration tests, a shared development CA, and
small factories for certificates and policies.

PostgreSQL comes from ``THINGCORE_TEST_DATABASE_URL`` (default: the local server's ``test``
database), in schemas named ``tc_test_<random>`` that are dropped at teardown. Without a
reachable server the PostgreSQL variants are skipped, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import text
from sqlmodel import SQLModel

from registry.ca import DevelopmentCA, IssuedCertificate
from registry.config import RegistrySettings
from registry.db import Database, sqlite_url
from registry.service import Registry
from tests.conftest import service_required

POSTGRES_URL = os.environ.get(
    "THINGCORE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgresql"]

MakeRegistry = Callable[[], Registry]

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], scope="session")
"""For tests whose outcome is decided before any SQL runs (input validation) or that read
only the in-memory index: running them on PostgreSQL too would only cost time."""

ALLOW_ALL = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
    }
)


def _postgres_missing(reason: str) -> None:
    if service_required():
        pytest.fail(f"PostgreSQL is required under CI=true: {reason}")
    pytest.skip(f"PostgreSQL is not reachable: {reason} (set THINGCORE_TEST_DATABASE_URL)")


@pytest.fixture(scope="session")
def postgres_problem() -> str | None:
    """Why the test PostgreSQL cannot be used (None: it can), probed once per run."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"{Database(POSTGRES_URL).safe_url}: {str(exc).strip().splitlines()[0]}"
    return None


def postgres_settings() -> RegistrySettings:
    """Settings for a fresh, unique schema in the test PostgreSQL database."""
    return RegistrySettings(
        database_url=POSTGRES_URL, database_schema="tc_test_" + secrets.token_hex(6)
    )


def drop_schema(registry: Registry) -> None:
    schema = registry.settings.database_schema
    if schema is not None:
        with registry.db.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _settings_for(backend: str, folder: Path, request: pytest.FixtureRequest) -> RegistrySettings:
    if backend == "sqlite":
        return RegistrySettings(database_url=sqlite_url(folder / "thingcore.db"))
    problem = request.getfixturevalue("postgres_problem")
    if problem is not None:
        _postgres_missing(problem)
    return postgres_settings()


@pytest.fixture(scope="session")
def shared_database(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Registry]:
    """One database per backend for the whole run, migrated once by ``Registry.open()``.

    A fresh schema per test costs 80 ms of DDL on PostgreSQL (30 ms on SQLite), and a fresh
    engine per test compiles every statement again: together they would double the suite's
    time. The tests about creating a schema use ``fresh_registry`` instead.
    """
    folder = tmp_path_factory.mktemp(f"registry-{backend}")
    owner = Registry(_settings_for(backend, folder, request), folder).open()
    try:
        yield owner
    finally:
        drop_schema(owner)
        owner.close()


def empty_tables(registry: Registry) -> None:
    """Delete every row, children first. Change ids keep growing, as in a long-lived
    installation whose old changes were pruned."""
    with registry.db.session() as session:
        for table in reversed(SQLModel.metadata.sorted_tables):
            session.exec(table.delete())


@pytest.fixture
def make_registry(shared_database: Registry, tmp_path: Path) -> Iterator[MakeRegistry]:
    """Make ``Registry`` objects on the shared database, emptied for this test.

    The first shares the run's engine (its compiled statements and connections); each further
    call gives a ``Registry`` with its own engine on the same database, as the CLI opens one
    while a server runs. None is ``open()``ed again: the database is migrated already, and
    Alembic compiles its scripts on every ``open()``.
    """
    empty_tables(shared_database)
    made: list[Registry] = []

    def make() -> Registry:
        registry = Registry(shared_database.settings, tmp_path)
        if not made:
            registry.db.dispose()
            registry.db = shared_database.db
        made.append(registry)
        return registry

    try:
        yield make
    finally:
        for registry in made[1:]:
            registry.close()


@pytest.fixture
def registry(make_registry: MakeRegistry) -> Registry:
    """An empty, migrated registry, once on SQLite and once on PostgreSQL."""
    return make_registry()


@pytest.fixture
def fresh_registry(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Registry]:
    """A ``Registry`` on a brand-new empty database (SQLite file or PostgreSQL schema), not
    yet opened; a PostgreSQL schema is dropped at teardown."""
    registry = Registry(_settings_for(backend, tmp_path, request), tmp_path)
    try:
        yield registry
    finally:
        if backend == "postgresql":
            drop_schema(registry)
        registry.close()


@pytest.fixture(scope="session")
def shared_ca(tmp_path_factory: pytest.TempPathFactory) -> DevelopmentCA:
    """One development CA for the whole run; tests get a copy in their registry's CA folder."""
    return DevelopmentCA.create(tmp_path_factory.mktemp("shared-ca") / "ca")


@pytest.fixture
def ca(registry: Registry, shared_ca: DevelopmentCA) -> DevelopmentCA:
    """The development CA in ``registry.ca_dir`` (not registered until a certificate is)."""
    shutil.copytree(shared_ca.directory, registry.ca_dir)
    return DevelopmentCA.load(registry.ca_dir)


IssueCert = Callable[..., dict[str, Any]]


@pytest.fixture
def issue_cert(registry: Registry, ca: DevelopmentCA) -> IssueCert:
    """Create keys and a certificate with the development CA (EC keys: RSA is slow)."""

    def issue(*, active: bool = True, common_name: str | None = None) -> dict[str, Any]:
        return registry.certs.create_keys_and_certificate(
            set_active=active, common_name=common_name, key_type="ec"
        )

    return issue


RegisterIssued = Callable[..., IssuedCertificate]


@pytest.fixture
def register_issued(registry: Registry, ca: DevelopmentCA) -> RegisterIssued:
    """Issue a certificate with explicit validity dates and register it under the CA."""

    def register(
        common_name: str = "device",
        *,
        status: str = "ACTIVE",
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> IssuedCertificate:
        registry.certs.register_development_ca(ca)
        issued = ca.issue(common_name, key_type="ec", not_before=not_before, not_after=not_after)
        registry.certs.register(issued.certificate_pem, status=status)
        return issued

    return register


def self_signed_pem(common_name: str = "lonely-device") -> str:
    """A self-signed device certificate (not a CA), as RegisterCertificateWithoutCA takes."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def csr_pem(common_name: str = "csr-device") -> str:
    """A certificate signing request for a new EC P-256 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def policy_document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def changes_since(registry: Registry, mark: int) -> list[tuple[str, str]]:
    """``(kind, key)`` of every change after ``mark``, oldest first."""
    return [(c.kind, c.key) for c in registry.changes_after(mark)]
