"""registry/service.py's change feed: every mutating operation writes its change row in its own
transaction; followers read them in commit order, ids are never reused after pruning, and a
server's IdentityService.poll() applies changes another process (the CLI) made."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Connection, text

from broker.auth import ConnectionInfo, Identity
from broker.codec import Connect
from registry.ca import DevelopmentCA
from registry.errors import RegistryError
from registry.identity import IdentityService
from registry.models import Change
from registry.service import Registry, record_change
from tests.certs import CertificateAuthority
from tests.registry.conftest import (
    ALLOW_ALL,
    IssueCert,
    MakeRegistry,
    changes_since,
    csr_pem,
    policy_document,
    self_signed_pem,
)


@dataclass
class World:
    """What the operations of one area act on (see ``world``)."""

    registry: Registry
    attached: str = ""
    spare: str = ""
    maker: CertificateAuthority | None = None
    maker_id: str = ""
    retired_id: str = ""

    def placeholders(self) -> dict[str, str]:
        return {
            "attached": self.attached,
            "spare": self.spare,
            "maker": self.maker_id,
            "retired": self.retired_id,
        }

    def maker_device(self) -> str:
        assert self.maker is not None
        return self.maker.issue("device", server=False).cert_pem().decode()


@pytest.fixture
def world(
    request: pytest.FixtureRequest, registry: Registry, ca: DevelopmentCA, issue_cert: IssueCert
) -> World:
    """The state one area's operations need (only that: building it is most of the cost).

    things: things ``t`` (type ``ty``, in group ``g``) and ``other``; types ``ty`` and ``old``
    (deprecated, unused); groups ``g`` and ``empty``.
    certs: things ``t`` and ``other``; an ACTIVE certificate ``attached`` to ``t`` and an
    INACTIVE ``spare``; CAs ``maker`` (ACTIVE) and ``retired`` (INACTIVE, unused).
    policies: policy ``p`` (versions 1 and 2, attached to certificate ``attached``) and
    ``unused``; group ``g``.
    """
    things, certs, policies = registry.things, registry.certs, registry.policies
    w = World(registry)
    if request.param == "things":
        things.create_type("ty")
        things.create_type("old")
        things.deprecate_type("old")
        things.create("t", thing_type="ty")
        things.create("other")
        things.create_group("g")
        things.create_group("empty")
        things.add_thing_to_group("g", "t")
    elif request.param == "certs":
        things.create("t")
        things.create("other")
        w.attached = issue_cert()["certificateId"]
        w.spare = issue_cert(active=False)["certificateId"]
        certs.attach_thing("t", w.attached)
        w.maker = CertificateAuthority("maker CA")
        w.maker_id = certs.register_ca(w.maker.ca.cert_pem().decode())["certificateId"]
        retired = CertificateAuthority("retired CA").ca.cert_pem().decode()
        w.retired_id = certs.register_ca(retired, set_active=False)["certificateId"]
    else:
        things.create_group("g")
        policies.create("p", ALLOW_ALL)
        policies.create_version("p", ALLOW_ALL)
        policies.create("unused", ALLOW_ALL)
        w.attached = issue_cert()["certificateId"]
        policies.attach("p", "cert", w.attached)
    return w


Action = Callable[[World], Any]
"""One registry call; if it returns a dict, its values may be named in the expected keys."""

Case = tuple[str, Action, list[tuple[str, str]]]
THING_CASES: list[Case] = [
    ("create-thing", lambda w: w.registry.things.create("new"), [("thing", "new")]),
    ("create-same-thing", lambda w: w.registry.things.create("other"), []),
    (
        "update-thing",
        lambda w: w.registry.things.update("t", attributes={"a": "1"}),
        [("thing", "t")],
    ),
    ("delete-thing", lambda w: w.registry.things.delete("other"), [("thing", "other")]),
    ("delete-missing-thing", lambda w: w.registry.things.delete("ghost"), []),
    ("create-type", lambda w: w.registry.things.create_type("ty2"), [("type", "ty2")]),
    ("deprecate-type", lambda w: w.registry.things.deprecate_type("ty"), [("type", "ty")]),
    ("delete-type", lambda w: w.registry.things.delete_type("old"), [("type", "old")]),
    (
        "create-group",
        lambda w: w.registry.things.create_group("g2", parent="g"),
        [("group", "g2")],
    ),
    ("delete-group", lambda w: w.registry.things.delete_group("g"), [("group", "g")]),
    (
        "add-to-group",
        lambda w: w.registry.things.add_thing_to_group("empty", "other"),
        [("group", "empty")],
    ),
    (
        "remove-from-group",
        lambda w: w.registry.things.remove_thing_from_group("g", "t"),
        [("group", "g")],
    ),
]
CERT_CASES: list[Case] = [
    (
        "create-keys-and-certificate",
        lambda w: w.registry.certs.create_keys_and_certificate(key_type="ec"),
        [("certificate", "{certificateId}")],
    ),
    (
        "create-from-csr",
        lambda w: w.registry.certs.create_from_csr(csr_pem()),
        [("certificate", "{certificateId}")],
    ),
    (
        "register",
        lambda w: w.registry.certs.register(w.maker_device()),
        [("certificate", "{certificateId}")],
    ),
    (
        "register-without-ca",
        lambda w: w.registry.certs.register_without_ca(self_signed_pem()),
        [("certificate", "{certificateId}")],
    ),
    (
        "update-certificate",
        lambda w: w.registry.certs.update_status(w.attached, "REVOKED"),
        [("certificate", "{attached}")],
    ),
    (
        "update-certificate-unchanged",
        lambda w: w.registry.certs.update_status(w.attached, "ACTIVE"),
        [],
    ),
    (
        "delete-certificate",
        lambda w: w.registry.certs.delete(w.spare),
        [("certificate", "{spare}")],
    ),
    (
        "register-ca",
        lambda w: w.registry.certs.register_ca(CertificateAuthority().ca.cert_pem().decode()),
        [("ca", "{certificateId}")],
    ),
    (
        "update-ca",
        lambda w: w.registry.certs.update_ca(w.maker_id, "INACTIVE"),
        [("ca", "{maker}")],
    ),
    ("update-ca-unchanged", lambda w: w.registry.certs.update_ca(w.maker_id, "ACTIVE"), []),
    ("delete-ca", lambda w: w.registry.certs.delete_ca(w.retired_id), [("ca", "{retired}")]),
    (
        "attach-thing",
        lambda w: w.registry.certs.attach_thing("other", w.spare),
        [("attachment", "{spare}")],
    ),
    (
        "detach-thing",
        lambda w: w.registry.certs.detach_thing("t", w.attached),
        [("attachment", "{attached}")],
    ),
]
POLICY_CASES: list[Case] = [
    ("create-policy", lambda w: w.registry.policies.create("q", ALLOW_ALL), [("policy", "q")]),
    (
        "create-version",
        lambda w: w.registry.policies.create_version("unused", ALLOW_ALL),
        [("policy", "unused")],
    ),
    (
        "set-default-version",
        lambda w: w.registry.policies.set_default_version("p", 2),
        [("policy", "p")],
    ),
    (
        "delete-version",
        lambda w: w.registry.policies.delete_version("p", 2),
        [("policy", "p")],
    ),
    (
        "attach-policy",
        lambda w: w.registry.policies.attach("p", "thinggroup", "g"),
        [("policy", "p")],
    ),
    (
        "detach-policy",
        lambda w: w.registry.policies.detach("p", "cert", w.attached),
        [("policy", "p")],
    ),
    ("delete-policy", lambda w: w.registry.policies.delete("unused"), [("policy", "unused")]),
]


@pytest.mark.parametrize(
    ("world", "action", "expected"),
    [
        pytest.param(area, action, expected, id=name)
        for area, cases in [
            ("things", THING_CASES),
            ("certs", CERT_CASES),
            ("policies", POLICY_CASES),
        ]
        for name, action, expected in cases
    ],
    indirect=["world"],
)
def test_every_change_writes_its_row(
    world: World, action: Action, expected: list[tuple[str, str]]
) -> None:
    mark = world.registry.last_change()
    result = action(world)
    names = world.placeholders() | (result if isinstance(result, dict) else {})
    assert changes_since(world.registry, mark) == [
        (kind, key.format(**names)) for kind, key in expected
    ]


def test_the_first_certificate_also_registers_the_development_ca(
    registry: Registry, ca: DevelopmentCA
) -> None:
    created = registry.certs.create_keys_and_certificate(key_type="ec")
    assert changes_since(registry, 0) == [
        ("ca", ca.certificate_id),
        ("certificate", created["certificateId"]),
    ]


@pytest.mark.parametrize(
    "refused",
    [
        lambda r: r.things.create("t", thing_type="ghost"),
        lambda r: r.things.update("t", attributes={"bad name": "x"}),
        lambda r: r.things.create_group("g", parent="ghost"),
        lambda r: r.policies.create("p", "{}"),
        lambda r: r.certs.update_status("0" * 64, "ACTIVE"),
    ],
    ids=["create-thing", "update-thing", "create-group", "create-policy", "update-certificate"],
)
def test_a_refused_operation_writes_no_row(
    registry: Registry, refused: Callable[[Registry], object]
) -> None:
    registry.things.create("t")
    mark = registry.last_change()
    with pytest.raises(RegistryError):
        refused(registry)
    assert changes_since(registry, mark) == []


def test_last_change_and_changes_after(registry: Registry) -> None:
    assert registry.last_change() == 0
    for name in ("a", "b", "c"):
        registry.things.create(name)
    changes = registry.changes_after(0)
    ids = [c.id or 0 for c in changes]
    assert [c.key for c in changes] == ["a", "b", "c"]
    assert ids == sorted(ids)
    assert registry.last_change() == ids[-1]
    assert [c.key for c in registry.changes_after(ids[0])] == ["b", "c"]
    assert [c.key for c in registry.changes_after(ids[0], limit=1)] == ["b"]
    assert registry.changes_after(ids[-1]) == []
    assert all(c.created_at == pytest.approx(time.time(), abs=60) for c in changes)


def test_a_change_made_through_another_registry_is_seen(
    registry: Registry, make_registry: MakeRegistry
) -> None:
    mark = registry.last_change()
    make_registry().things.create("from-the-cli")
    assert changes_since(registry, mark) == [("thing", "from-the-cli")]


def test_prune_deletes_only_old_rows(registry: Registry) -> None:
    with registry.db.session() as session:
        session.add(Change(kind="thing", key="old", created_at=100.0))
        session.add(Change(kind="thing", key="older", created_at=50.0))
    registry.things.create("new")
    assert registry.prune_changes(older_than=1000.0) == 2
    assert [c.key for c in registry.changes_after(0)] == ["new"]
    assert registry.prune_changes(older_than=1000.0) == 0


def test_ids_are_never_reused_after_pruning_everything(registry: Registry) -> None:
    registry.things.create("a")
    registry.things.create("b")
    follower_at = registry.last_change()
    assert registry.prune_changes(older_than=time.time() + 60) == 2
    assert registry.last_change() == 0
    registry.things.create("c")
    # A follower that had read up to ``follower_at`` must still see the new change.
    assert changes_since(registry, follower_at) == [("thing", "c")]


def _someone_waits_to_write_changes(conn: Connection) -> bool:
    query = text(
        "SELECT count(*) FROM pg_locks WHERE relation = 'changes'::regclass AND NOT granted"
    )
    return bool(conn.execute(query).scalar())


@pytest.mark.parametrize("backend", ["postgresql"], scope="session")
def test_postgresql_writers_of_changes_take_turns_until_commit(
    registry: Registry, make_registry: MakeRegistry
) -> None:
    """Otherwise a follower can read id N+1 before N commits, and never see N."""
    other = make_registry()
    done = threading.Event()
    errors: list[BaseException] = []

    def second_writer() -> None:
        try:
            other.things.create("second")
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)
        finally:
            done.set()

    mark = registry.last_change()
    thread = threading.Thread(target=second_writer)
    with registry.db.session() as first:
        record_change(first, "thing", "first")
        first.flush()  # "first" has its id now and is not committed
        thread.start()
        deadline = time.monotonic() + 10
        with registry.db.engine.connect() as conn:
            while not _someone_waits_to_write_changes(conn):
                assert not done.is_set(), "the second writer committed before the first"
                assert time.monotonic() < deadline, "the second writer never waited"
                time.sleep(0.005)
    thread.join(10)
    assert errors == []
    assert changes_since(registry, mark) == [("thing", "first"), ("thing", "second")]


async def test_poll_applies_changes_made_through_another_registry(
    registry: Registry, make_registry: MakeRegistry
) -> None:
    service = IdentityService(registry.settings, registry.data_dir, host="127.0.0.1")
    async with service:
        assert await service.poll() == 0
        cli = make_registry()  # what `thingcore things create` would open
        await asyncio.to_thread(cli.things.create, "made-by-the-cli")
        created = await asyncio.to_thread(
            cli.certs.create_keys_and_certificate, set_active=True, key_type="ec"
        )
        await asyncio.to_thread(
            cli.policies.create,
            "cli-policy",
            policy_document({"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}),
        )
        await asyncio.to_thread(cli.policies.attach, "cli-policy", "cert", created["certificateId"])
        assert await service.poll() == 4
        auth = service.authorizer
        assert "made-by-the-cli" in auth.index.things
        der = x509.load_pem_x509_certificate(created["certificatePem"].encode()).public_bytes(
            serialization.Encoding.DER
        )
        identity = auth.authenticate(
            ConnectionInfo("mqtts", "127.0.0.1", 1, True, der), Connect(client_id="anything")
        )
        assert isinstance(identity, Identity)
        assert identity.principal == created["certificateId"]
        await asyncio.to_thread(cli.certs.update_status, created["certificateId"], "REVOKED")
        assert await service.poll() == 1
        assert "REVOKED" in (auth.recheck(identity) or "")
        assert await service.poll() == 0
