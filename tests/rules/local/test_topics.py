"""Local topics (``rules.local.topics``): real SQLite files under ``tmp_path``, publishing into
a real ``QueueStore``; the envelope's timestamp comes from a fake clock."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rules.config import LocalTargetSettings
from rules.local.queues import QueueError, QueueMessage, QueueStore
from rules.local.topics import (
    MAX_MESSAGE,
    TopicError,
    TopicInfo,
    TopicStore,
    TopicSubscription,
    check_topic_name,
)

NOW = 1_714_611_246.655  # 2024-05-02T00:54:06.655Z


@pytest.fixture
def queues(tmp_path: Path) -> Iterator[QueueStore]:
    with QueueStore(tmp_path / "queues.sqlite") as store:
        yield store


@pytest.fixture
def topics(tmp_path: Path, queues: QueueStore) -> Iterator[TopicStore]:
    with TopicStore(
        tmp_path / "topics.sqlite",
        queues,
        region="eu-west-1",
        account="123456789012",
        clock=lambda: NOW,
    ) as store:
        yield store


def only(queues: QueueStore, queue: str) -> QueueMessage:
    [message] = queues.peek(queue, limit=10)
    return message


def envelope(message: QueueMessage) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(message.body)
    return document


# -- fan-out ------------------------------------------------------------------------------------


def test_a_message_reaches_every_subscribed_queue(topics: TopicStore, queues: QueueStore) -> None:
    topics.create("alerts")
    for queue in ("pager", "audit", "mail"):
        assert topics.subscribe("alerts", queue, raw=True)
    topics.create("other")
    topics.subscribe("other", "elsewhere", raw=True)

    assert topics.publish("alerts", b'{"t": 99}', message_id="m-1") == 3

    for queue in ("pager", "audit", "mail"):
        message = only(queues, queue)
        assert (message.body, message.message_id) == (b'{"t": 99}', "m-1")
    assert "elsewhere" not in {q.name for q in queues.queues()}


def test_the_fan_out_is_one_transaction_all_queues_or_none(
    topics: TopicStore, queues: QueueStore, tmp_path: Path
) -> None:
    topics.create("alerts")
    for queue in ("a-first", "b-second", "z-last"):
        topics.subscribe("alerts", queue)
    # The queue file refuses the last queue's row (as a full disk would refuse a page): the
    # rows already added for the first two must go with it.
    with sqlite3.connect(tmp_path / "queues.sqlite") as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.queue = 'z-last' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    with pytest.raises(TopicError, match="topic alerts: .*refused"):
        topics.publish("alerts", b"x", message_id="m-1")
    assert [queues.depth(q) for q in ("a-first", "b-second", "z-last")] == [0, 0, 0]

    with sqlite3.connect(tmp_path / "queues.sqlite") as db:
        db.execute("DROP TRIGGER refuse")
    assert topics.publish("alerts", b"x", message_id="m-1") == 3
    assert [queues.depth(q) for q in ("a-first", "b-second", "z-last")] == [1, 1, 1]


def test_a_topic_without_subscribers_takes_the_message_and_delivers_it_nowhere(
    topics: TopicStore, queues: QueueStore
) -> None:
    topics.create("quiet")
    assert topics.publish("quiet", b"x", message_id="m-1") == 0
    assert queues.queues() == []


def test_a_redelivery_with_the_same_id_adds_nothing_to_a_queue_that_holds_it(
    topics: TopicStore, queues: QueueStore
) -> None:
    topics.create("alerts")
    topics.subscribe("alerts", "pager")
    topics.subscribe("alerts", "audit", raw=True)
    assert topics.publish("alerts", b"first", message_id="m-1") == 2
    # The outbox redelivers after a crash: the envelope's timestamp differs, the id does not.
    assert topics.publish("alerts", b"first", message_id="m-1") == 0
    assert (queues.depth("pager"), queues.depth("audit")) == (1, 1)

    # A consumer took it off one queue: a later copy is new there only (as for SQS).
    [taken] = queues.receive("pager")
    assert queues.delete("pager", taken.receipt_handle or "")
    assert topics.publish("alerts", b"first", message_id="m-1") == 1
    assert (queues.depth("pager"), queues.depth("audit")) == (1, 1)
    assert topics.publish("alerts", b"second", message_id="m-2") == 2


def test_publishing_from_several_threads_loses_nothing(
    topics: TopicStore, queues: QueueStore
) -> None:
    topics.create("alerts")
    topics.subscribe("alerts", "a", raw=True)
    topics.subscribe("alerts", "b")

    def publish(worker: int) -> None:
        for n in range(25):
            topics.publish("alerts", b"x", message_id=f"{worker}-{n}")

    threads = [threading.Thread(target=publish, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (queues.depth("a"), queues.depth("b")) == (100, 100)


# -- what subscribers get ---------------------------------------------------------------------


def test_a_subscription_gets_sns_envelope_and_a_raw_one_the_message_itself(
    topics: TopicStore, queues: QueueStore
) -> None:
    topics.create("alerts")
    topics.subscribe("alerts", "wrapped")
    topics.subscribe("alerts", "plain", raw=True)

    sent = topics.publish(
        "alerts",
        '{"temp": 99, "unit": "°C"}'.encode(),
        message_id="m-1",
        attributes={"severity": "high"},
        subject="Hot",
    )

    assert sent == 2
    wrapped = only(queues, "wrapped")
    assert envelope(wrapped) == {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:alerts",
        "Subject": "Hot",
        "Message": '{"temp": 99, "unit": "°C"}',
        "Timestamp": "2024-05-02T00:54:06.655Z",
        "MessageAttributes": {"severity": {"Type": "String", "Value": "high"}},
    }
    assert list(envelope(wrapped))[:3] == ["Type", "MessageId", "TopicArn"]
    assert wrapped.attributes == {}  # in the envelope instead
    assert wrapped.message_id == "m-1"

    plain = only(queues, "plain")
    assert plain.body == '{"temp": 99, "unit": "°C"}'.encode()
    assert plain.attributes == {"severity": "high"}


def test_an_envelope_without_subject_or_attributes_leaves_them_out(
    topics: TopicStore, queues: QueueStore
) -> None:
    topics.create("alerts")
    topics.subscribe("alerts", "wrapped")
    topics.publish("alerts", b"hello", message_id="m-1")
    document = envelope(only(queues, "wrapped"))
    assert set(document) == {"Type", "MessageId", "TopicArn", "Message", "Timestamp"}
    assert document["Message"] == "hello"


def test_subscribing_again_with_another_raw_changes_the_delivery(
    topics: TopicStore, queues: QueueStore
) -> None:
    topics.create("alerts")
    assert topics.subscribe("alerts", "q")
    assert not topics.subscribe("alerts", "q")
    assert topics.subscribe("alerts", "q", raw=True)
    assert topics.subscriptions("alerts") == [TopicSubscription("alerts", "q", True)]
    topics.publish("alerts", b"hello", message_id="m-1")
    assert only(queues, "q").body == b"hello"


# -- JSON message structure ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"default": "for all", "sqs": "for queues", "email": "for mail"}, "for queues"),
        ({"default": "for all", "http": "for web"}, "for all"),
    ],
)
def test_a_json_structured_message_gives_queues_their_own_text(
    topics: TopicStore, queues: QueueStore, document: dict[str, str], expected: str
) -> None:
    topics.create("alerts")
    topics.subscribe("alerts", "wrapped")
    topics.subscribe("alerts", "plain", raw=True)
    body = json.dumps(document).encode()
    assert topics.publish("alerts", body, message_id="m-1", json_structure=True) == 2
    assert envelope(only(queues, "wrapped"))["Message"] == expected
    assert only(queues, "plain").body == expected.encode()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'["default"]',
        b'{"sqs": "no default"}',
        b'{"default": {"not": "text"}}',
        b'{"default": "ok", "sqs": 5}',
    ],
)
def test_a_json_structured_message_of_another_shape_fails_for_good(
    topics: TopicStore, queues: QueueStore, body: bytes
) -> None:
    topics.create("alerts")
    topics.subscribe("alerts", "q")
    with pytest.raises(TopicError, match='"default"|"sqs"') as caught:
        topics.publish("alerts", body, message_id="m-1", json_structure=True)
    assert not caught.value.retryable
    assert queues.queues() == []
    # Without the JSON structure the same body is just a message.
    assert topics.publish("alerts", body, message_id="m-1") == 1


# -- errors -------------------------------------------------------------------------------------


def test_publishing_to_an_unknown_topic_fails_for_good_naming_the_fix(
    topics: TopicStore, queues: QueueStore
) -> None:
    with pytest.raises(TopicError) as caught:
        topics.publish("ghost", b"x", message_id="m-1")
    assert not caught.value.retryable
    assert str(caught.value) == (
        "no topic named ghost; there are no topics yet: create it with "
        "`thingcore topics create ghost`"
    )
    topics.create("alerts")
    topics.create("builds")
    with pytest.raises(TopicError, match=r"no topic named ghost; topics: alerts, builds \(create"):
        topics.publish("ghost", b"x", message_id="m-1")
    assert queues.queues() == []


def test_subscriptions_need_an_existing_topic(topics: TopicStore) -> None:
    for call in (
        lambda: topics.subscribe("ghost", "q"),
        lambda: topics.unsubscribe("ghost", "q"),
        lambda: topics.subscriptions("ghost"),
    ):
        with pytest.raises(TopicError, match="no topic named ghost.*thingcore topics create ghost"):
            call()
    assert topics.topics() == []
    assert not topics.delete("ghost")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"\xff\xfe binary", "must be UTF-8 text"),
        (b"", "the message is empty; SNS takes no empty messages"),
        (b"x" * (MAX_MESSAGE + 1), f"{MAX_MESSAGE + 1} bytes; a topic takes at most"),
        ("text", "must be bytes"),
    ],
)
def test_a_message_sns_would_refuse_is_refused_for_good(
    topics: TopicStore, queues: QueueStore, body: Any, match: str
) -> None:
    topics.create("alerts")
    topics.subscribe("alerts", "q")
    with pytest.raises(TopicError, match=match) as caught:
        topics.publish("alerts", body, message_id="m-1")
    assert not caught.value.retryable
    assert queues.queues() == []
    assert topics.publish("alerts", b"x" * MAX_MESSAGE, message_id="m-2") == 1


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"subject": ""}, "a subject must be 1 to 100"),
        ({"subject": "x" * 101}, "a subject must be 1 to 100"),
        ({"subject": "two\nlines"}, "without line breaks"),
        ({"attributes": {"AWS.reserved": "x"}}, "invalid attribute name 'AWS.reserved'"),
        ({"attributes": {"bad name": "x"}}, "invalid attribute name 'bad name'"),
        ({"attributes": {"n": 5}}, "attribute 'n' must be a string"),
        ({"attributes": {f"a{i}": "x" for i in range(11)}}, "at most 10 attributes"),
        ({"message_id": ""}, "a message id must be a string of 1 to"),
    ],
)
def test_bad_subjects_attributes_and_ids_are_refused(
    topics: TopicStore, queues: QueueStore, options: dict[str, Any], match: str
) -> None:
    topics.create("alerts")
    topics.subscribe("alerts", "q")
    call: dict[str, Any] = {"message_id": "m-1", **options}
    with pytest.raises(TopicError, match=match):
        topics.publish("alerts", b"x", **call)
    assert queues.queues() == []


# -- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "Alerts-2_b", "x" * 256, "orders.fifo", "x" * 251 + ".fifo"])
def test_sns_topic_names_are_accepted(topics: TopicStore, name: str) -> None:
    assert check_topic_name(name) == name
    assert topics.create(name)
    assert [t.name for t in topics.topics()] == [name]


@pytest.mark.parametrize(
    "name",
    ["", "x" * 257, "x" * 252 + ".fifo", ".fifo", "a.b", "a b", "a/b", "ünï", "a\n", None, 5],
)
def test_other_topic_names_are_refused_saying_what_is_valid(
    topics: TopicStore, name: object
) -> None:
    with pytest.raises(TopicError, match="use 1 to 256 letters, digits, '-' or '_'"):
        topics.create(name)  # type: ignore[arg-type]
    with pytest.raises(TopicError, match="invalid topic name"):
        topics.publish(name, b"x", message_id="m")  # type: ignore[arg-type]
    assert topics.topics() == []


def test_subscribed_queue_names_follow_the_queue_rules(topics: TopicStore) -> None:
    topics.create("alerts")
    with pytest.raises(QueueError, match="invalid queue name 'no/slash'"):
        topics.subscribe("alerts", "no/slash")


# -- topics and subscriptions ------------------------------------------------------------------


def test_topics_list_their_subscriptions_and_delete_takes_them_along(
    topics: TopicStore, queues: QueueStore
) -> None:
    assert topics.create("builds")
    assert topics.create("alerts")
    assert not topics.create("alerts")  # as SNS's CreateTopic: idempotent
    topics.subscribe("alerts", "pager", raw=True)
    topics.subscribe("alerts", "audit")

    assert topics.topics() == [
        TopicInfo(
            "alerts",
            "arn:aws:sns:eu-west-1:123456789012:alerts",
            (
                TopicSubscription("alerts", "audit", False),
                TopicSubscription("alerts", "pager", True),
            ),
        ),
        TopicInfo("builds", "arn:aws:sns:eu-west-1:123456789012:builds", ()),
    ]
    assert topics.topics()[0].as_dict() == {
        "name": "alerts",
        "topicArn": "arn:aws:sns:eu-west-1:123456789012:alerts",
        "subscriptions": [{"queue": "audit", "raw": False}, {"queue": "pager", "raw": True}],
    }

    assert topics.unsubscribe("alerts", "pager")
    assert not topics.unsubscribe("alerts", "pager")
    assert topics.publish("alerts", b"x", message_id="m-1") == 1
    assert "pager" not in {q.name for q in queues.queues()}

    assert topics.delete("alerts")
    assert not topics.delete("alerts")
    topics.create("alerts")
    assert topics.subscriptions("alerts") == []  # the old subscriptions went with it
    assert queues.depth("audit") == 1  # the queue and its messages stay


def test_topics_live_in_their_own_file_from_the_settings(
    tmp_path: Path, queues: QueueStore
) -> None:
    settings = LocalTargetSettings()
    with TopicStore.from_settings(settings, tmp_path / "var", queues) as store:
        store.create("alerts")
        store.subscribe("alerts", "q")
        assert store.arn("alerts") == "arn:aws:sns:us-east-1:000000000000:alerts"
    assert (tmp_path / "var" / "topics.sqlite").is_file()
    # Another process (the CLI) opening the file sees the same topics.
    with TopicStore.from_settings(settings, tmp_path / "var", queues) as again:
        assert again.subscriptions("alerts") == [TopicSubscription("alerts", "q", False)]

    elsewhere = LocalTargetSettings(topics_path=tmp_path / "other" / "t.sqlite")
    with TopicStore.from_settings(elsewhere, tmp_path / "var", queues) as moved:
        assert moved.topics() == []
    assert (tmp_path / "other" / "t.sqlite").is_file()


def test_a_closed_store_and_a_newer_file_are_clear_errors(
    tmp_path: Path, queues: QueueStore
) -> None:
    path = tmp_path / "t.sqlite"
    store = TopicStore(path, queues)
    store.close()
    store.close()
    with pytest.raises(TopicError, match="is closed"):
        store.topics()

    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(TopicError, match="written by a newer thingcore"):
        TopicStore(path, queues)


def test_the_arn_parts_are_checked(tmp_path: Path, queues: QueueStore) -> None:
    with pytest.raises(TopicError, match="invalid account id"):
        TopicStore(tmp_path / "t.sqlite", queues, account="42")
    with pytest.raises(TopicError, match="invalid region"):
        TopicStore(tmp_path / "t.sqlite", queues, region="Not A Region")
