"""``thingcore policies``: AWS IoT policies, their versions and attachments, and a tester."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.json import JSON
from rich.text import Text

from registry.authorizer import RegistryAuthorizer
from registry.index import load_index
from registry.policies import Decision, RequestContext, Statement
from registry.service import Registry
from thingcore.cli.common import (
    DataDir,
    Json,
    iso,
    key_values,
    listing,
    open_registry,
    print_json,
    read_input,
    resolve_cert_id,
    stdout_console,
    subtyper,
)
from thingcore.errors import ThingcoreError

app = subtyper(
    "Policies: what certificates and thing groups may do, and a tester.\n\n"
    "Policies are AWS IoT policy documents with up to five versions, attached to certificates "
    "and thing groups; `thingcore policies test` explains a decision.\n\n"
    "Example: `thingcore policies create dev-policy policy.json`"
)

Name = Annotated[str, typer.Argument(help="The policy's name.")]
Version = Annotated[int, typer.Argument(help="A version id (see `thingcore policies versions`).")]
Document = Annotated[str, typer.Argument(help="JSON policy document file, or - for stdin.")]
CertOption = Annotated[
    str | None,
    typer.Option("--cert", help="A certificate: id, ARN, or a unique prefix of 8+ hex digits."),
]
GroupOption = Annotated[str | None, typer.Option("--group", help="A thing group's name.")]
TargetOption = Annotated[
    str | None,
    typer.Option("--target", help="A certificate or thing group ARN."),
]


def _target(
    registry: Registry, cert: str | None, group: str | None, target: str | None
) -> tuple[str, str]:
    """``(target type, key)`` from exactly one of --cert, --group and --target."""
    given = [v for v in (cert, group, target) if v is not None]
    if len(given) != 1:
        raise ThingcoreError("give exactly one of --cert, --group or --target")
    if cert is not None:
        return "cert", resolve_cert_id(registry, cert)
    if group is not None:
        return "thinggroup", group
    return registry.policies.parse_target(given[0])


def _described(target_type: str, key: str) -> str:
    return f"certificate {key}" if target_type == "cert" else f"thing group {key}"


# -- renderers -----------------------------------------------------------------------------------


def render_policy(policy: dict[str, Any]) -> RenderableType:
    version = policy.get("policyVersionId", policy["defaultVersionId"])
    default = policy.get("isDefaultVersion", True)
    header = key_values(
        [
            ("Name", policy["policyName"]),
            ("ARN", policy["policyArn"]),
            ("Version", f"{version}{' (default)' if default else ''}"),
            ("Last changed", iso(policy["lastModifiedDate"])),
        ]
    )
    return Group(header, JSON(policy["policyDocument"]))


def render_policies(items: list[dict[str, Any]]) -> RenderableType:
    return listing(
        ["Name", "ARN"], ([p["policyName"], p["policyArn"]] for p in items), fold=["ARN"]
    )


def render_versions(items: list[dict[str, Any]]) -> RenderableType:
    return listing(
        ["Version", "Default", "Created"],
        (
            [v["versionId"], "yes" if v["isDefaultVersion"] else "", iso(v["createDate"])]
            for v in items
        ),
    )


def render_targets(items: list[dict[str, str]]) -> RenderableType:
    kinds = {"cert": "certificate", "thinggroup": "thing group"}
    return listing(
        ["Kind", "Target"], ([kinds[t["type"]], t["target"]] for t in items), fold=["Target"]
    )


def statement_json(statement: Statement) -> dict[str, Any]:
    """The statement that decided, as ``policies test --json`` reports it."""
    result: dict[str, Any] = {
        "index": statement.index,
        "sid": statement.sid,
        "effect": statement.effect,
        "actions": list(statement.actions),
        "resources": list(statement.resources),
    }
    if statement.not_actions:
        result["notActions"] = list(statement.not_actions)
    if statement.not_resources:
        result["notResources"] = list(statement.not_resources)
    if statement.conditions:
        conditions: dict[str, dict[str, list[str]]] = {}
        for condition in statement.conditions:
            conditions.setdefault(condition.operator, {})[condition.key] = list(condition.values)
        result["conditions"] = conditions
    return result


def explanation_json(
    decision: Decision,
    context: RequestContext,
    *,
    action: str,
    resource: str,
    policies: list[str],
    certificate_problem: str | None,
) -> dict[str, Any]:
    return {
        "allowed": decision.allowed,
        "reason": decision.reason,
        "policy": decision.policy,
        "statement": None if decision.statement is None else statement_json(decision.statement),
        "context": {
            "action": action,
            "resource": resource,
            "clientId": context.client_id,
            "principal": context.principal,
            "certificateProblem": certificate_problem,
            "thingName": context.thing_name,
            "thingResolved": context.thing_name is not None,
            "thingTypeName": context.thing_type,
            "thingAttributes": dict(context.thing_attributes),
            "policies": policies,
        },
    }


def render_explanation(result: dict[str, Any]) -> RenderableType:
    """ALLOWED or DENIED, why, the deciding statement, and who was asking."""
    verdict = (
        Text("ALLOWED", style="bold green")
        if result["allowed"]
        else Text("DENIED", style="bold red")
    )
    parts: list[RenderableType] = [verdict, Text(result["reason"])]
    if result["statement"] is not None:
        parts.append(Text(f"Decided by policy {result['policy']!r}:"))
        parts.append(JSON(json.dumps(result["statement"])))
    context = result["context"]
    if context["principal"] is None:
        who = "anonymous (the plain listener's anonymous policy)"
    else:
        who = f"certificate {context['principal']}"
        if context["certificateProblem"] is not None:
            who += f" (it could not connect now: {context['certificateProblem']})"
    if context["thingResolved"]:
        thing = f"{context['thingName']} (the certificate is attached to it)"
    elif context["principal"] is None:
        thing = "not resolved (anonymous clients have no thing)"
    else:
        thing = (
            f"not resolved: the certificate is not attached to a thing named "
            f"{context['clientId']!r}, so iot:Connection.Thing.* variables match nothing"
        )
    parts.append(
        key_values(
            [
                ("Action", context["action"]),
                ("Resource", context["resource"]),
                ("Client id", context["clientId"]),
                ("Principal", who),
                ("Thing", thing),
                ("Policies", ", ".join(context["policies"]) or "none"),
            ]
        )
    )
    return Group(*parts)


# -- commands ----------------------------------------------------------------------------------


def create(name: Name, file: Document, data_dir: DataDir = None, as_json: Json = False) -> None:
    """Create a policy from a JSON document (version 1, the default).

    Example: `thingcore policies create dev-policy policy.json`
    """
    document = read_input(file, "policy document")
    with open_registry(data_dir) as registry:
        created = registry.policies.create(name, document)
    if as_json:
        print_json(created)
    else:
        stdout_console().print(f"Created policy {name} ({created['policyArn']})")


def create_version(
    name: Name,
    file: Document,
    set_default: Annotated[
        bool, typer.Option("--set-default", help="Make the new version the default.")
    ] = False,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Add a version to a policy (at most five are kept).

    Example: `thingcore policies create-version dev-policy policy-v2.json --set-default`
    """
    document = read_input(file, "policy document")
    with open_registry(data_dir) as registry:
        created = registry.policies.create_version(name, document, set_as_default=set_default)
    if as_json:
        print_json(created)
    else:
        default = " (the default)" if set_default else ""
        stdout_console().print(
            f"Created version {created['policyVersionId']} of policy {name}{default}"
        )


def set_default(name: Name, version: Version, data_dir: DataDir = None) -> None:
    """Make a version the policy's default: the one that is enforced.

    Example: `thingcore policies set-default dev-policy 2`
    """
    with open_registry(data_dir) as registry:
        registry.policies.set_default_version(name, version)
    stdout_console().print(f"Version {version} is the default of policy {name}")


def versions(name: Name, data_dir: DataDir = None, as_json: Json = False) -> None:
    """List a policy's versions, newest first.

    Example: `thingcore policies versions dev-policy`
    """
    with open_registry(data_dir) as registry:
        items = registry.policies.list_versions(name)
    if as_json:
        print_json({"policyVersions": items})
    else:
        stdout_console().print(render_versions(items))


def delete_version(name: Name, version: Version, data_dir: DataDir = None) -> None:
    """Delete a version that is not the default.

    Example: `thingcore policies delete-version dev-policy 1`
    """
    with open_registry(data_dir) as registry:
        registry.policies.delete_version(name, version)
    stdout_console().print(f"Deleted version {version} of policy {name}")


def show(
    name: Name,
    version: Annotated[
        int | None, typer.Option("--version", help="This version instead of the default.")
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Show a policy's document (the default version unless `--version` says otherwise).

    Example: `thingcore policies show dev-policy --version 1`
    """
    with open_registry(data_dir) as registry:
        policy = registry.policies.get(name, version)
    if as_json:
        print_json(policy)
    else:
        stdout_console().print(render_policy(policy))


def list_policies(data_dir: DataDir = None, as_json: Json = False) -> None:
    """List policies, by name.

    Example: `thingcore policies list --json`
    """
    with open_registry(data_dir) as registry:
        items = registry.policies.list_policies()
    if as_json:
        print_json({"policies": items})
    else:
        stdout_console().print(render_policies(items))


def delete(name: Name, data_dir: DataDir = None) -> None:
    """Delete a policy that is attached to nothing and has only its default version.

    Example: `thingcore policies delete dev-policy`
    """
    with open_registry(data_dir) as registry:
        registry.policies.delete(name)
    stdout_console().print(f"Deleted policy {name}")


def attach(
    name: Name,
    cert: CertOption = None,
    group: GroupOption = None,
    target: TargetOption = None,
    data_dir: DataDir = None,
) -> None:
    """Attach a policy to a certificate or a thing group; a running server applies it within
    a second.

    Example: `thingcore policies attach dev-policy --cert 3f2a9c01`
    """
    with open_registry(data_dir) as registry:
        target_type, key = _target(registry, cert, group, target)
        registry.policies.attach(name, target_type, key)
    stdout_console().print(f"Attached policy {name} to {_described(target_type, key)}")


def detach(
    name: Name,
    cert: CertOption = None,
    group: GroupOption = None,
    target: TargetOption = None,
    data_dir: DataDir = None,
) -> None:
    """Detach a policy from a certificate or a thing group.

    Example: `thingcore policies detach dev-policy --group lab`
    """
    with open_registry(data_dir) as registry:
        target_type, key = _target(registry, cert, group, target)
        registry.policies.detach(name, target_type, key)
    stdout_console().print(f"Detached policy {name} from {_described(target_type, key)}")


def targets(name: Name, data_dir: DataDir = None, as_json: Json = False) -> None:
    """List the certificates and thing groups a policy is attached to.

    Example: `thingcore policies targets dev-policy --json`
    """
    with open_registry(data_dir) as registry:
        items = registry.policies.targets(name)
    if as_json:
        print_json({"targets": [t["arn"] for t in items]})
    else:
        stdout_console().print(render_targets(items))


def attached(
    cert: CertOption = None,
    group: GroupOption = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """List the policies attached to a certificate or a thing group.

    Example: `thingcore policies attached --cert 3f2a9c01`
    """
    if (cert is None) == (group is None):
        raise ThingcoreError("give exactly one of --cert or --group")
    with open_registry(data_dir) as registry:
        if cert is not None:
            items = registry.policies.attached_to("cert", resolve_cert_id(registry, cert))
        elif group is not None:
            registry.things.describe_group(group)
            items = registry.policies.attached_to("thinggroup", group)
    if as_json:
        print_json({"policies": items})
    else:
        stdout_console().print(render_policies(items))


def check(
    client_id: Annotated[str, typer.Option("--client-id", help="The MQTT client id.")],
    action: Annotated[
        str,
        typer.Option("--action", help="iot:Connect, iot:Publish, iot:Subscribe, iot:Receive, ..."),
    ],
    cert: CertOption = None,
    anonymous: Annotated[
        bool,
        typer.Option("--anonymous", help="A client of the plain listener (no certificate)."),
    ] = False,
    resource: Annotated[
        str | None,
        typer.Option(
            "--resource",
            help="An ARN, or short: topic/a/b, topicfilter/a/#, client/x, thing/x "
            "(default for iot:Connect: client/CLIENT_ID).",
        ),
    ] = None,
    topic: Annotated[
        str | None, typer.Option("--topic", help="Same as --resource topic/T.")
    ] = None,
    topic_filter: Annotated[
        str | None,
        typer.Option("--topic-filter", help="Same as --resource topicfilter/F."),
    ] = None,
    data_dir: DataDir = None,
    as_json: Json = False,
) -> None:
    """Answer "may this client do ACTION on RESOURCE?" and show the statement that decided.

    The principal is a certificate (`--cert`) or an anonymous plain-listener client
    (`--anonymous`); its thing is resolved as at connect time (the certificate must be
    attached to a thing named like the client id). It answers with exit code 0 either way.

    Example:
    `thingcore policies test --client-id dev-1 --cert 3f2a9c01 --action iot:Publish --topic a/b`
    """
    if (cert is None) == (not anonymous):
        raise ThingcoreError("give exactly one of --cert or --anonymous")
    if sum(v is not None for v in (resource, topic, topic_filter)) > 1:
        raise ThingcoreError("give at most one of --resource, --topic or --topic-filter")
    if ":" not in action and action != "*":
        action = f"iot:{action}"  # `--action Publish` is what people type
    with open_registry(data_dir) as registry:
        cert_id = resolve_cert_id(registry, cert) if cert is not None else None
        if topic is not None:
            resource = f"topic/{topic}"
        elif topic_filter is not None:
            resource = f"topicfilter/{topic_filter}"
        elif resource is None:
            if action.lower() != "iot:connect":
                raise ThingcoreError(
                    f"{action} needs a resource: give --topic, --topic-filter or --resource"
                )
            resource = f"client/{client_id}"
        if not resource.startswith("arn:"):
            resource = f"arn:aws:iot:{registry.arns.region}:{registry.arns.account}:{resource}"
        with registry.db.session() as session:
            index = load_index(session)
        authorizer = RegistryAuthorizer(registry.settings, index)
        decision, context = authorizer.explain(client_id, cert_id, action, resource)
        policies = [p.name for p in authorizer.policies_for(context)]
        problem = authorizer.certificate_problem(cert_id) if cert_id is not None else None
    result = explanation_json(
        decision,
        context,
        action=action,
        resource=resource,
        policies=policies,
        certificate_problem=problem,
    )
    if as_json:
        print_json(result)
    else:
        stdout_console().print(render_explanation(result))


app.command("create")(create)
app.command("create-version")(create_version)
app.command("set-default")(set_default)
app.command("versions")(versions)
app.command("delete-version")(delete_version)
app.command("show")(show)
app.command("list")(list_policies)
app.command("delete")(delete)
app.command("attach")(attach)
app.command("detach")(detach)
app.command("targets")(targets)
app.command("attached")(attached)
app.command("test")(check)
