"""The facts about one request that policy variables and condition keys read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from registry.policies.certificate import CertificateFields


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who is asking: the connection a request arrives on, gathered by the caller.

    Attributes:
        client_id: The MQTT client id (``iot:ClientId``).
        region: Region of the ARNs the caller builds; not read by policy variables.
        account: Account of the ARNs the caller builds; not read by policy variables.
        thing_name: The thing named by ``client_id``, set only when the connecting certificate
            is attached to it (reference section 4.2). ``iot:Connection.Thing.*`` variables
            resolve only when this is set.
        thing_type: That thing's type name, if it has one.
        thing_attributes: That thing's attributes.
        is_attached: ``iot:Connection.Thing.IsAttached``; the caller sets it together with
            ``thing_name``.
        certificate: The client certificate's fields, for ``iot:Certificate.*``.
        source_ip: The client's IP address (``aws:SourceIp``).
        principal: The certificate id; carried for logging, not read by any variable.
    """

    client_id: str
    region: str = "us-east-1"
    account: str = "000000000000"
    thing_name: str | None = None
    thing_type: str | None = None
    thing_attributes: Mapping[str, str] = field(default_factory=dict)
    is_attached: bool = False
    certificate: CertificateFields | None = None
    source_ip: str | None = None
    principal: str | None = None
