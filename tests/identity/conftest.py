"""Fixtures for the identity end-to-end tests: one running app per module, per-test names.

Tests in a module share the app (starting one costs a CA, a database and two listeners); they
stay independent because every thing, certificate, policy, client id and topic derives from
the test's own name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

import pytest

from tests.broker.raw5 import Pool5
from tests.identity.apphost import Clients, RunningApp


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    running = RunningApp(tmp_path_factory.mktemp("identity") / "var")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A thing name / client id unique to the test: ``[a-zA-Z0-9_-]``, at most 57 characters
    (it is also the certificate's common name, which may not exceed 64)."""
    node: str = request.node.nodeid
    readable = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:48]
    return f"{readable}-{hashlib.sha1(node.encode()).hexdigest()[:8]}"  # noqa: S324 - a label


@pytest.fixture
def clients() -> Iterator[Clients]:
    pool = Clients()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def pool() -> Iterator[Pool5]:
    """paho clients (3.1.1 and 5) that are all disconnected at teardown."""
    made = Pool5()
    try:
        yield made
    finally:
        made.close()
