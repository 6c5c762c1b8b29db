from tests.harness import PahoClient, RunningBroker


def test_qos1_round_trip(broker: RunningBroker, name: str) -> None:
    sub = PahoClient(broker.port, f"{name}-sub")
    assert sub.connect() == (False, 0)
    assert sub.subscribe(f"{name}/+", 1) == [1]
    pub = PahoClient(broker.port, f"{name}-pub")
    pub.connect()
    pub.publish(f"{name}/x", b"hello", qos=1)
    [got] = sub.expect(1)
    assert (got.topic, got.payload, got.qos, got.retain) == (f"{name}/x", b"hello", 1, False)
    pub.disconnect()
    sub.disconnect()
