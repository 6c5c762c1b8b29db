"""The one error a policy document can raise: AWS's ``MalformedPolicyException``."""

from __future__ import annotations

from thingcore.errors import ThingcoreError


class PolicyError(ThingcoreError):
    """A policy document AWS IoT would reject with ``MalformedPolicyException``.

    The message is one line that names the policy and the place, e.g.
    ``policy 'p1': Statement[0].Effect must be Allow or Deny, got 'allow'``.

    Attributes:
        policy: The policy name the document was loaded under ("" if none).
        detail: The message without the policy name.
    """

    def __init__(self, detail: str, *, policy: str = "") -> None:
        self.policy = policy
        self.detail = detail
        label = f"policy {policy!r}" if policy else "policy document"
        super().__init__(f"{label}: {detail}")
