"""AWS IoT policy documents: parse, validate and evaluate, with no IO.

The broker asks ``evaluate(policies, "iot:Publish", resource_arn("topic", ...), context)`` on its
hot path (callers cache decisions per session); the registry calls ``parse_policy`` when a policy
is created; ``thingcore policies test`` prints ``Decision.reason``.
"""

from __future__ import annotations

from registry.policies.actions import IotAction, resource_arn
from registry.policies.certificate import CertificateFields
from registry.policies.conditions import Condition
from registry.policies.context import RequestContext
from registry.policies.document import POLICY_VERSION, PolicyDocument, Statement, parse_policy
from registry.policies.errors import PolicyError
from registry.policies.evaluate import Decision, evaluate, statement_applies

__all__ = [
    "POLICY_VERSION",
    "CertificateFields",
    "Condition",
    "Decision",
    "IotAction",
    "PolicyDocument",
    "PolicyError",
    "RequestContext",
    "Statement",
    "evaluate",
    "parse_policy",
    "resource_arn",
    "statement_applies",
]
