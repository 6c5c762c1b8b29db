"""The actions the broker asks about and the ARNs of what they act on (reference 4.3)."""

from __future__ import annotations

from enum import StrEnum


class IotAction(StrEnum):
    """AWS IoT policy actions, spelled as AWS does; ``evaluate`` compares them case-insensitively.

    The comment on each says the resource kind it is checked against.
    """

    CONNECT = "iot:Connect"  # client/{clientId}
    PUBLISH = "iot:Publish"  # topic/{topic}
    RETAIN_PUBLISH = "iot:RetainPublish"  # topic/{topic}, in addition to Publish
    RECEIVE = "iot:Receive"  # topic/{topic}, on every delivery
    SUBSCRIBE = "iot:Subscribe"  # topicfilter/{filter}, the literal filter string
    GET_RETAINED_MESSAGE = "iot:GetRetainedMessage"  # topic/{topic}
    LIST_RETAINED_MESSAGES = "iot:ListRetainedMessages"  # *
    GET_THING_SHADOW = "iot:GetThingShadow"  # thing/{thingName}
    UPDATE_THING_SHADOW = "iot:UpdateThingShadow"  # thing/{thingName}
    DELETE_THING_SHADOW = "iot:DeleteThingShadow"  # thing/{thingName}
    LIST_NAMED_SHADOWS_FOR_THING = "iot:ListNamedShadowsForThing"  # thing/{thingName}


def resource_arn(kind: str, name: str, *, region: str, account: str) -> str:
    """The ARN a policy ``Resource`` is matched against.

    Args:
        kind: ``client``, ``topic``, ``topicfilter``, ``thing``...
        name: The client id, topic name, topic filter or thing name, used as is: MQTT ``+`` and
            ``#`` stay literal characters.
        region: The region the server presents as.
        account: The account id the server presents as.

    Returns:
        ``arn:aws:iot:{region}:{account}:{kind}/{name}``.
    """
    return f"arn:aws:iot:{region}:{account}:{kind}/{name}"
