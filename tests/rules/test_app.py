"""Rules end to end in the running app: a paho client publishes, a republish rule transforms,
a subscriber receives; rules change through the database and reach the server by the feed."""

from __future__ import annotations

import json

from rules.definition import parse_definition
from rules.store import RuleStore
from tests.broker.rawclient import ClientPool, wait_for
from tests.identity.apphost import ARN, WAIT, RunningApp, own_topics_policy, provision
from tests.shadows.host import ShadowClient, shadow_device


def put_rule(app: RunningApp, rule: str, payload: dict[str, object]) -> None:
    RuleStore(app.registry.db).put(parse_definition(rule, payload))
    app.synced()


def rule_name(test_name: str) -> str:
    return test_name.replace("-", "_")[:100]


def test_a_republish_rule_transforms_what_a_device_publishes(
    app: RunningApp, name: str, clients: ClientPool
) -> None:
    put_rule(
        app,
        rule_name(name),
        {
            "sql": f"SELECT temp, topic(2) AS device FROM '{name}/+/telemetry' WHERE temp > 50",
            "awsIotSqlVersion": "2016-03-23",
            "actions": [{"republish": {"topic": f"{name}/alerts/${{topic(2)}}", "qos": 1}}],
        },
    )
    watcher = clients.connected(app.port, f"{name}-watcher")
    assert watcher.subscribe(f"{name}/alerts/#", 1) == [1]
    device = clients.connected(app.port, f"{name}-device")
    device.publish(f"{name}/kitchen/telemetry", json.dumps({"temp": 40}).encode(), qos=1)
    device.publish(f"{name}/kitchen/telemetry", json.dumps({"temp": 61, "x": 1}).encode(), qos=1)
    [alert] = watcher.expect(1, timeout=WAIT)
    assert alert.topic == f"{name}/alerts/kitchen"
    assert json.loads(alert.payload) == {"temp": 61, "device": "kitchen"}
    watcher.expect_nothing(0.3)


def test_a_rule_change_reaches_the_running_server(
    app: RunningApp, name: str, clients: ClientPool
) -> None:
    rule = rule_name(name)
    sql = f"SELECT VALUE count FROM '{name}/in'"
    put_rule(app, rule, {"sql": sql, "actions": [{"republish": {"topic": f"{name}/out/a"}}]})
    watcher = clients.connected(app.port, f"{name}-watcher")
    watcher.subscribe(f"{name}/out/#", 0)
    device = clients.connected(app.port, f"{name}-device")
    device.publish(f"{name}/in", b'{"count": 1}', qos=1)
    assert watcher.expect(1, timeout=WAIT)[0].topic == f"{name}/out/a"
    put_rule(app, rule, {"sql": sql, "actions": [{"republish": {"topic": f"{name}/out/b"}}]})
    device.publish(f"{name}/in", b'{"count": 2}', qos=1)
    got = watcher.expect(1, timeout=WAIT)[0]
    assert (got.topic, got.payload) == (f"{name}/out/b", b"2")
    RuleStore(app.registry.db).set_disabled(rule, True)
    app.synced()
    device.publish(f"{name}/in", b'{"count": 3}', qos=1)
    watcher.expect_nothing(0.3)


def test_basic_ingest_reaches_only_the_named_rule(
    app: RunningApp, name: str, clients: ClientPool
) -> None:
    rule = rule_name(name)
    put_rule(
        app,
        rule,
        {
            "sql": "SELECT *, topic() AS t FROM 'unused/filter'",
            "actions": [{"republish": {"topic": f"{name}/ingested"}}],
        },
    )
    policy = own_topics_policy(
        topics=f"{name}/*",
        extra=[
            {
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": f"{ARN}:topic/$aws/rules/{rule}/*",
            },
        ],
    )
    device = provision(app, name, policy=policy)
    client = clients.connected(app.tls_port, device.name, host="localhost", tls=device.paho_tls())
    client.subscribe(f"{name}/ingested", 0)
    client.publish(f"$aws/rules/{rule}/{name}/raw", b'{"v": 7}', qos=1)
    got = client.expect(1, timeout=WAIT)[0]
    assert json.loads(got.payload) == {"v": 7, "t": f"{name}/raw"}


def test_rules_see_what_the_shadow_service_publishes(
    app: RunningApp, name: str, clients: ClientPool
) -> None:
    put_rule(
        app,
        rule_name(name),
        {
            "sql": f"SELECT state.reported.temp AS temp, version "
            f"FROM '$aws/things/{name}/shadow/update/accepted'",
            "awsIotSqlVersion": "2016-03-23",
            "actions": [{"republish": {"topic": f"{name}/reports"}}],
        },
    )
    watcher = clients.connected(app.port, f"{name}-watcher")
    watcher.subscribe(f"{name}/reports", 0)
    shadow = ShadowClient(app, shadow_device(app, name))
    try:
        shadow.subscribe(f"{shadow.prefix}/update/accepted")
        shadow.request("update", {"state": {"reported": {"temp": 21}}})
        got = watcher.expect(1, timeout=WAIT)[0]
        assert json.loads(got.payload) == {"temp": 21, "version": 1}
    finally:
        shadow.close()


def test_counters_are_written_for_the_cli(app: RunningApp, name: str, clients: ClientPool) -> None:
    rule = rule_name(name)
    put_rule(app, rule, {"sql": f"SELECT * FROM '{name}/m' WHERE n > 1", "actions": []})
    device = clients.connected(app.port, f"{name}-device")
    for n in range(4):
        device.publish(f"{name}/m", json.dumps({"n": n}).encode(), qos=1)
    store = RuleStore(app.registry.db)

    def counted() -> bool:
        app.call(lambda: None)
        engine = app.app.rules
        assert engine is not None
        app.loop.call_soon_threadsafe(lambda: app.loop.create_task(engine.flush_metrics()))
        return store.metrics(rule)["matched"] == 4

    wait_for(counted, WAIT, what="rule counters flushed")
    metrics = store.metrics(rule)
    assert (metrics["passed"], metrics["outputs"], metrics["failed"]) == (2, 2, 0)
