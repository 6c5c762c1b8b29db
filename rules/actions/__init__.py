"""Action kinds by name (STYLE.md habit 10): one module per kind, found when a rule is checked.

Each module has ``KIND``, ``FAILED_ACTION`` (the name in AWS's error payload), ``Params`` (the
pydantic parameter model), ``templates(params)``, ``resolve(params, output, ctx, version)``,
``open_target(key, env)`` and ``resource(resolved params)``.
"""

from __future__ import annotations

from types import ModuleType

from rules.actions import bucket, function, queue, republish

KINDS: dict[str, ModuleType] = {
    module.KIND: module for module in (republish, bucket, queue, function)
}


def kind(name: str) -> ModuleType:
    return KINDS[name]
