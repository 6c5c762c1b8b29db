"""The public-key infrastructure of one benchmark run, for the mutual-TLS workloads.

`create` makes, in a directory of the run, with thingcore's own `registry.ca.DevelopmentCA`:

- the CA (EC P-256 root) and the server certificate (EC P-256) for exactly the names
  `thingcore serve` wants on this machine (`registry.identity.server_names`: localhost,
  127.0.0.1, ::1, the host name), so thingcore keeps it instead of issuing its own and both
  brokers present the same certificate;
- `clients` device certificates (EC P-256 by default, or 2048-bit RSA), each with its key, in
  `clients/NNNNN.crt` and `.key`;
- a thingcore data directory template (`thingcore-data/`): that CA under `ca/` and a registry
  database in which every client certificate is registered ACTIVE with the policy
  `bench-allow-all` (iot:* on *) attached. Each thingcore start copies the template, so no
  broker inherits another's state.

Mosquitto gets the same CA, server certificate and key (see `brokers.mosquitto`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from registry.ca import DevelopmentCA, KeyType
from registry.config import RegistrySettings
from registry.identity import server_names
from registry.service import Registry

POLICY_NAME = "bench-allow-all"
POLICY_DOCUMENT = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
    }
)
BROKER_HOST = "127.0.0.1"  # the address both brokers listen on (brokers.HOST)
KEY_DESCRIPTIONS = {"ec": "EC P-256", "rsa": "RSA 2048"}


@dataclass(frozen=True)
class ClientCert:
    certfile: Path
    keyfile: Path
    cert_id: str  # registry id: hex SHA-256 of the DER
    common_name: str


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    clients: tuple[ClientCert, ...]
    thingcore_data: Path  # data directory template: ca/ and the registry database
    key_type: KeyType
    server_names: tuple[str, ...]
    setup_seconds: float

    @property
    def client_key_description(self) -> str:
        return KEY_DESCRIPTIONS[self.key_type]

    def copy_thingcore_data(self, target: Path) -> None:
        """A fresh copy of the data directory template at `target` (which must not exist)."""
        shutil.copytree(self.thingcore_data, target)


def create(
    directory: Path,
    clients: int,
    *,
    key_type: KeyType = "ec",
    log: Callable[[str], None] | None = None,
) -> Pki:
    """Issue the CA, the server certificate and `clients` device certificates under
    `directory`, and register the devices in a thingcore data directory template."""
    if clients < 1:
        raise ValueError("at least one client certificate is needed")
    started = time.monotonic()
    data = directory / "thingcore-data"
    ca = DevelopmentCA.create(data / "ca", common_name="thingcore bench CA")
    names = tuple(server_names(RegistrySettings(), BROKER_HOST))
    ca.ensure_server_certificate(names)
    client_dir = directory / "clients"
    client_dir.mkdir(mode=0o700)
    issued = []
    for i in range(clients):
        name = f"bench-device-{i:05d}"
        cert = ca.issue(name, key_type=key_type)
        assert cert.private_key_pem is not None
        certfile, keyfile = client_dir / f"{i:05d}.crt", client_dir / f"{i:05d}.key"
        certfile.write_text(cert.certificate_pem)
        fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(cert.private_key_pem)
        issued.append((ClientCert(certfile, keyfile, cert.certificate_id, name), cert))
    if log is not None:
        log(f"  PKI: issued {clients:,} client certificates in {time.monotonic() - started:.1f} s")
    registry = Registry(RegistrySettings(), data).open()
    try:
        registry.certs.register_development_ca(ca)
        registry.policies.create(POLICY_NAME, POLICY_DOCUMENT)
        for client, cert in issued:
            cert_id = registry.certs.register(cert.certificate_pem, status="ACTIVE")[
                "certificateId"
            ]
            if cert_id != client.cert_id:
                raise RuntimeError(f"registry id {cert_id} != issued id {client.cert_id}")
            registry.policies.attach(POLICY_NAME, "cert", cert_id)
    finally:
        registry.close()
    elapsed = time.monotonic() - started
    if log is not None:
        log(f"  PKI: registered them ACTIVE with {POLICY_NAME} attached ({elapsed:.1f} s in all)")
    # Mosquitto reads the server files from here; thingcore from its own copy of the data.
    ca_dir = directory / "broker"
    ca_dir.mkdir(mode=0o700)
    for source in (ca.certfile, ca.server_certfile, ca.server_keyfile):
        shutil.copy2(source, ca_dir / source.name)
    return Pki(
        directory=directory,
        ca_cert=ca_dir / ca.certfile.name,
        server_cert=ca_dir / ca.server_certfile.name,
        server_key=ca_dir / ca.server_keyfile.name,
        clients=tuple(client for client, _ in issued),
        thingcore_data=data,
        key_type=key_type,
        server_names=names,
        setup_seconds=elapsed,
    )
