"""Network listeners: plain TCP and TLS, each creating a ``Connection`` per client.

The TLS listener optionally requires a client certificate chaining to a configured CA; the
verified certificate's DER bytes reach the authentication hook with the CONNECT, which is where
the identity layer maps a certificate to a principal and its things.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from broker.connection import Connection
from thingcore.errors import ConfigError

if TYPE_CHECKING:
    from broker.server import Broker


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    name: str
    host: str
    port: int
    ssl_context: ssl.SSLContext | None = None


def server_ssl_context(
    certfile: Path, keyfile: Path | None = None, client_cafile: Path | None = None
) -> ssl.SSLContext:
    """A TLS 1.2+ server context; with ``client_cafile`` a client certificate is required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
        if client_cafile is not None:
            context.load_verify_locations(cafile=str(client_cafile))
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load TLS certificate or key ({certfile}, {keyfile}, {client_cafile}): {exc}"
        ) from exc
    return context


async def start_listener(broker: Broker, spec: ListenerSpec) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    tls = spec.ssl_context is not None
    try:
        return await loop.create_server(
            lambda: Connection(broker, spec.name, tls),
            spec.host,
            spec.port,
            ssl=spec.ssl_context,
            backlog=4096,
            reuse_address=True,
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {spec.host}:{spec.port} for {spec.name} ({exc.strerror}); "
            "is another broker using that port? Choose another with THINGCORE_BROKER__PORT"
        ) from exc
