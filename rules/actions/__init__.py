"""Action kinds by name (STYLE.md habit 10): one module per kind, found when a rule is checked.

Each module has ``KIND``, ``FAILED_ACTION`` (the name in AWS's error payload), ``Params`` (the
pydantic parameter model), ``templates(params)``, ``resolve(params, output, ctx, version)``,
``open_target(key, env)`` and ``resource(resolved params)``; a kind that needs an optional
package also has ``needs(params, settings)``: the message naming the extra to install when it
is missing, else None.
"""

from __future__ import annotations

from types import ModuleType

from rules.actions import (
    amqp,
    bucket,
    function,
    http,
    lambda_,
    queue,
    republish,
    s3,
    sns,
    sqs,
)

KINDS: dict[str, ModuleType] = {
    module.KIND: module
    for module in (republish, bucket, queue, function, s3, sqs, sns, lambda_, amqp, http)
}

AWS_ONLY = (
    "cloudwatchAlarm",
    "cloudwatchLogs",
    "cloudwatchMetric",
    "dynamoDB",
    "dynamoDBv2",
    "elasticsearch",
    "firehose",
    "iotAnalytics",
    "iotEvents",
    "iotSiteWise",
    "kafka",
    "kinesis",
    "location",
    "openSearch",
    "salesforce",
    "stepFunctions",
    "timestream",
)
"""AWS IoT's action kinds that thingcore does not implement: a rule naming one is refused with
a message saying so (and what is supported), not with "unknown kind"."""
