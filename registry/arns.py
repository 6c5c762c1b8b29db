"""ARNs in AWS's form, for the configured region and account (reference section 0)."""

from __future__ import annotations

from dataclasses import dataclass

from registry.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class Arns:
    region: str = "us-east-1"
    account: str = "000000000000"

    def arn(self, kind: str, name: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.account}:{kind}/{name}"

    def thing(self, name: str) -> str:
        return self.arn("thing", name)

    def thing_type(self, name: str) -> str:
        return self.arn("thingtype", name)

    def thing_group(self, name: str) -> str:
        return self.arn("thinggroup", name)

    def cert(self, certificate_id: str) -> str:
        return self.arn("cert", certificate_id)

    def cacert(self, certificate_id: str) -> str:
        return self.arn("cacert", certificate_id)

    def policy(self, name: str) -> str:
        return self.arn("policy", name)

    def parse(self, arn: str) -> tuple[str, str]:
        """``arn:aws:iot:r:a:kind/name`` to ``(kind, name)``; any region and account accepted."""
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[0] != "arn" or parts[2] != "iot" or "/" not in parts[5]:
            raise InvalidRequest(f"{arn!r} is not an AWS IoT ARN (arn:aws:iot:REGION:ACCOUNT:...)")
        kind, name = parts[5].split("/", 1)
        return kind, name
