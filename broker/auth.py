"""The seam where identity plugs into the broker: authentication and authorization hooks.

The broker calls these synchronously on the hot path (DESIGN.md: no await per packet), so an
implementation answers from memory (cached policy decisions) and refreshes its caches off the
path. The default lets everyone do everything; the identity issue supplies X.509 + policies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from broker.codec import Connect, ConnectReturnCode


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What is known about a connection before CONNECT is accepted."""

    listener: str
    peer_address: str | None
    peer_port: int | None
    tls: bool
    peer_certificate: bytes | None
    """DER bytes of the verified client certificate (TLS listeners with client auth)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a session is, as authentication decided; passed to every authorization call."""

    client_id: str
    principal: str | None = None
    thing: str | None = None
    context: Any = field(default=None, compare=False)
    """The hooks' own per-session state (e.g. a policy decision cache); None after a restore."""


class AuthHooks(Protocol):
    checks_receive: bool
    """False lets the broker skip ``may_receive`` on every delivery."""

    def authenticate(self, info: ConnectionInfo, connect: Connect) -> Identity | ConnectReturnCode:
        """Accept the CONNECT with an identity, or refuse it with a CONNACK return code."""

    def may_publish(self, identity: Identity, topic: str, retain: bool) -> bool: ...

    def may_subscribe(self, identity: Identity, topic_filter: str) -> bool: ...

    def may_receive(self, identity: Identity, topic: str) -> bool: ...

    def recheck(self, identity: Identity) -> str | None:
        """Why a connected session may no longer stay connected (None: it may)."""


class AllowAll:
    """Every client may connect, publish, subscribe and receive (plain local broker)."""

    checks_receive = False

    def authenticate(self, info: ConnectionInfo, connect: Connect) -> Identity | ConnectReturnCode:
        return Identity(connect.client_id)

    def may_publish(self, identity: Identity, topic: str, retain: bool) -> bool:
        return True

    def may_subscribe(self, identity: Identity, topic_filter: str) -> bool:
        return True

    def may_receive(self, identity: Identity, topic: str) -> bool:
        return True

    def recheck(self, identity: Identity) -> str | None:
        return None
