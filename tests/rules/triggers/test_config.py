"""A function sidecar's ``[[events]]``: each entry names one source, checked when read."""

from __future__ import annotations

from typing import Any

import pytest

from rules.triggers.config import (
    BucketEvent,
    QueueEvent,
    ScheduleEvent,
    describe_event,
    parse_events,
)


def test_each_kind_of_event_is_read_with_its_defaults() -> None:
    events = parse_events(
        [
            {"schedule": "rate(5 minutes)"},
            {"schedule": "cron(0 8 * * ? *)", "input": {"report": "daily"}},
            {"queue": "jobs"},
            {"queue": "jobs", "batch_size": 100, "batch_window": 2},
            {"bucket": "uploads"},
            {"bucket": "uploads", "prefix": "images/", "suffix": ".jpg"},
        ]
    )
    assert events == (
        ScheduleEvent("rate(5 minutes)"),
        ScheduleEvent("cron(0 8 * * ? *)", {"report": "daily"}),
        QueueEvent("jobs", 10, 0.0),
        QueueEvent("jobs", 100, 2.0),
        BucketEvent("uploads"),
        BucketEvent("uploads", "images/", ".jpg"),
    )
    # As the sidecar reads: describe_event gives back what parse_events takes.
    assert parse_events([describe_event(e) for e in events]) == events


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"queue": "jobs"}, "events must be an array of tables"),
        ([{"schedule": "rate(1 minute)"}] * 21, "at most 20 events"),
        (["jobs"], "events[0] must be a table"),
        ([{}], "must name exactly one source: schedule, queue or bucket (it names none)"),
        ([{"queue": "a", "bucket": "b"}], "(it names queue, bucket)"),
        ([{"queue": "jobs", "prefix": "x"}], "unknown key 'prefix' for a queue event"),
        ([{"queue": ""}], "events[0].queue must be a non-empty string"),
        ([{"queue": "no spaces"}], "events[0].queue"),
        ([{"queue": "jobs", "batch_size": 0}], "batch_size must be 1 to 10000, not 0"),
        ([{"queue": "jobs", "batch_size": True}], "batch_size must be 1 to 10000"),
        ([{"queue": "jobs", "batch_window": 301}], "batch_window must be 0 to 300 seconds"),
        ([{"queue": "jobs", "batch_window": float("nan")}], "batch_window"),
        ([{"bucket": "Not_A_Bucket"}], "events[0].bucket"),
        ([{"bucket": "uploads", "suffix": 3}], "prefix and suffix must be strings"),
        ([{"schedule": "every 5 minutes"}], "schedule"),
        ([{"schedule": 5}], "events[0].schedule must be a non-empty string"),
    ],
)
def test_a_wrong_event_says_which_entry_and_what(raw: Any, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_events(raw)
    assert message in str(refused.value)
