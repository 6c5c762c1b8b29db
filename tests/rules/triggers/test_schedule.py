"""``rules.triggers.schedule``: EventBridge's rate and cron expressions, parsed and walked.

The examples are AWS's; the properties draw cron expressions together with what each field
means (a set of values, or a test of a date written here from the definitions, not from the
module) and check ``next_after`` against a brute-force scan: minute by minute over a day, and
day by day over fifteen years.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.triggers.schedule import (
    CronSchedule,
    RateSchedule,
    ScheduleError,
    parse_schedule,
)

MONDAY = datetime(2024, 5, 6, 10, 0, 30, tzinfo=UTC)
"""A Monday morning, half a minute past ten."""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- AWS's examples ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cron-expressions.html
        ("cron(0 10 * * ? *)", MONDAY, "2024-05-07T10:00"),
        ("cron(15 12 * * ? *)", MONDAY, "2024-05-06T12:15"),
        ("cron(0 18 ? * MON-FRI *)", MONDAY, "2024-05-06T18:00"),
        ("cron(0 18 ? * MON-FRI *)", at("2024-05-10T18:00"), "2024-05-13T18:00"),
        ("cron(0 8 1 * ? *)", MONDAY, "2024-06-01T08:00"),
        ("cron(0/15 * * * ? *)", MONDAY, "2024-05-06T10:15"),
        ("cron(0/10 * ? * MON-FRI *)", MONDAY, "2024-05-06T10:10"),
        ("cron(0/10 * ? * MON-FRI *)", at("2024-05-10T23:55"), "2024-05-13T00:00"),
        ("cron(0/5 8-17 ? * MON-FRI *)", MONDAY, "2024-05-06T10:05"),
        ("cron(0/5 8-17 ? * MON-FRI *)", at("2024-05-06T17:55"), "2024-05-07T08:00"),
        ("cron(0 9 ? * 2#1 *)", MONDAY, "2024-06-03T09:00"),
        ("cron(0 0 1 1 ? *)", MONDAY, "2025-01-01T00:00"),
        ("cron(1/10 * * * ? *)", MONDAY, "2024-05-06T10:01"),
        ("rate(5 minutes)", MONDAY, "2024-05-06T10:05"),
        ("rate(1 minute)", MONDAY, "2024-05-06T10:01"),
        ("rate(1 hour)", MONDAY, "2024-05-06T11:00"),
        ("rate(1 day)", MONDAY, "2024-05-07T00:00"),
        # The epoch was a Thursday.
        ("rate(7 days)", MONDAY, "2024-05-09T00:00"),
    ],
)
def test_aws_examples(expression: str, after: datetime, expected: str) -> None:
    schedule = parse_schedule(expression)
    found = schedule.next_after(after)
    assert found == at(expected)
    assert found.tzinfo is UTC
    assert schedule.matches(found)
    assert str(schedule) == expression


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # June 2024 begins on a Saturday: 1W is Monday the 3rd (the Friday is in May).
        ("cron(0 0 1W * ? *)", "2024-05-31T12:00", "2024-06-03T00:00"),
        # September 2024 begins on a Sunday: 1W is Monday the 2nd.
        ("cron(0 0 1W * ? *)", "2024-08-31T12:00", "2024-09-02T00:00"),
        # Saturday the 15th: the Friday before.
        ("cron(0 0 15W * ? *)", "2024-06-01T00:00", "2024-06-14T00:00"),
        # Sunday the 30th, the last day: the Friday before (Monday is in July).
        ("cron(0 0 30W * ? *)", "2024-06-01T00:00", "2024-06-28T00:00"),
        # June has no 31st: July 31st, a Wednesday.
        ("cron(0 0 31W * ? *)", "2024-06-01T00:00", "2024-07-31T00:00"),
        ("cron(0 0 LW * ? *)", "2024-08-01T00:00", "2024-08-30T00:00"),
        ("cron(0 0 LW * ? *)", "2024-03-01T00:00", "2024-03-29T00:00"),
        ("cron(0 0 lw * ? *)", "2024-03-01T00:00", "2024-03-29T00:00"),
        ("cron(0 0 15w * ? *)", "2024-06-01T00:00", "2024-06-14T00:00"),
        ("cron(0 0 L * ? *)", "2024-02-01T00:00", "2024-02-29T00:00"),
        ("cron(0 0 L * ? *)", "2023-02-01T00:00", "2023-02-28T00:00"),
        ("cron(0 0 ? * 6L *)", "2024-02-01T00:00", "2024-02-23T00:00"),
        ("cron(0 0 ? * FRIL *)", "2024-02-01T00:00", "2024-02-23T00:00"),
        ("cron(0 0 ? * fril *)", "2024-02-01T00:00", "2024-02-23T00:00"),
        ("cron(0 0 ? * fri#5 *)", "2024-01-01T00:00", "2024-03-29T00:00"),
        ("cron(0 0 ? * 1L *)", "2024-03-01T00:00", "2024-03-31T00:00"),
        # Neither January nor February 2024 has a fifth Friday; March does.
        ("cron(0 0 ? * 6#5 *)", "2024-01-01T00:00", "2024-03-29T00:00"),
        ("cron(0 12 ? * TUE#2 *)", "2024-06-01T00:00", "2024-06-11T12:00"),
        # L alone in day-of-week: the last day of the week, Saturday.
        ("cron(0 0 ? * L *)", "2024-05-06T00:00", "2024-05-11T00:00"),
        ("cron(0 0 29 2 ? *)", "2024-03-01T00:00", "2028-02-29T00:00"),
        ("cron(30 6 ? jan-mar sun 2030)", "2024-03-01T00:00", "2030-01-06T06:30"),
        ("cron(0 0 1 1 ? 2000/50)", "2024-03-01T00:00", "2050-01-01T00:00"),
    ],
)
def test_special_days(expression: str, after: str, expected: str) -> None:
    schedule = parse_schedule(expression)
    found = schedule.next_after(at(after))
    assert found == at(expected)
    assert schedule.matches(found)


def test_schedules_that_end_give_none() -> None:
    assert parse_schedule("cron(0 0 30 2 ? *)").next_after(MONDAY) is None
    assert parse_schedule("cron(0 0 * * ? 2020)").next_after(MONDAY) is None
    assert parse_schedule("cron(0 0 ? * 2#5 2199)").next_after(at("2199-12-31T00:00")) is None
    assert parse_schedule("cron(0 0 * * ? *)").next_after(datetime.max.replace(tzinfo=UTC)) is None
    assert parse_schedule("rate(1 day)").next_after(datetime.max.replace(tzinfo=UTC)) is None


@pytest.mark.timeout(5)
def test_rare_schedules_are_found_by_skipping_not_scanning() -> None:
    # A minute scan from 2024 to 2196 (90 million steps) would not finish in time.
    assert parse_schedule("cron(59 23 29 2 ? 2196)").next_after(MONDAY) == at("2196-02-29T23:59")
    for _ in range(200):
        assert parse_schedule("cron(0 0 31 2,4,6,9,11 ? *)").next_after(MONDAY) is None


def test_next_after_is_strictly_after_and_takes_any_timezone() -> None:
    schedule = parse_schedule("cron(0 10 * * ? *)")
    ten = at("2024-05-06T10:00")
    assert schedule.next_after(ten) == at("2024-05-07T10:00")
    assert schedule.next_after(ten - timedelta(microseconds=1)) == ten
    india = timezone(timedelta(hours=5, minutes=30))
    assert schedule.next_after(datetime(2024, 5, 6, 15, 29, tzinfo=india)) == ten
    assert not schedule.matches(ten + timedelta(seconds=1))
    assert parse_schedule("rate(1 hour)").next_after(ten) == at("2024-05-06T11:00")
    for expression in ("cron(0 10 * * ? *)", "rate(1 hour)"):
        with pytest.raises(ValueError, match="aware datetime"):
            parse_schedule(expression).next_after(datetime(2024, 5, 6))


def test_parsed_fields() -> None:
    cron = parse_schedule("cron(5,0-10/5 */6 ? JUL-sep,1 MON,wed-FRI 2024-2026)")
    assert isinstance(cron, CronSchedule)
    assert cron.minutes == (0, 5, 10)
    assert cron.hours == (0, 6, 12, 18)
    assert cron.months == (1, 7, 8, 9)
    assert cron.years == (2024, 2025, 2026)
    # ``a/s`` runs to the end of the field, ``a-b/s`` to b.
    ends = parse_schedule("cron(50/3 5-23/6 1/10 11/1 ? 2190/3)")
    assert isinstance(ends, CronSchedule)
    assert ends.minutes == (50, 53, 56, 59)
    assert ends.hours == (5, 11, 17, 23)
    assert ends.day.days(2024, 1) == (1, 11, 21, 31)
    assert ends.months == (11, 12)
    assert ends.years == (2190, 2193, 2196, 2199)
    rate = parse_schedule("  rate(2 hours) ")
    assert rate == RateSchedule("rate(2 hours)", timedelta(hours=2))


# -- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "field", "column", "message"),
    [
        ("rate(1 hours)", "rate", 8, "a rate of 1 takes the singular unit: rate(1 hour)"),
        ("rate(5 minute)", "rate", 8, "a rate of 5 takes the plural unit: rate(5 minutes)"),
        ("rate(0 minutes)", "rate", 6, "a whole number from 1 to 1000000, not '0'"),
        ("rate(-5 minutes)", "rate", 6, "a whole number from 1 to 1000000, not '-5'"),
        ("rate(1.5 hours)", "rate", 6, "not '1.5'"),
        ("rate(5 weeks)", "rate", 8, "second(s), minute(s), hour(s) or day(s), not 'weeks'"),
        ("rate(1 seconds)", "rate", 8, "a rate of 1 takes the singular unit: rate(1 second)"),
        ("rate(5)", "rate", 1, "rate takes a value and a unit"),
        ("rate(5 minutes later)", "rate", 1, "rate takes a value and a unit"),
        ("every 5 minutes", "", 1, "a schedule is rate(value unit)"),
        ("cron 0 10 * * ? *", "", 1, "a schedule is rate(value unit)"),
        ("CRON(0 10 * * ? *)", "", 1, "a schedule is rate(value unit)"),
        ("cron(0 10 * * ?)", "", 1, "cron takes 6 fields"),
        ("cron(0 10 * * ? * *)", "", 1, "cron takes 6 fields"),
        (
            "cron(60 10 * * ? *)",
            "minutes",
            6,
            "minutes '60': 60 is out of range (minutes takes 0-59 with , - * /)",
        ),
        ("cron(0 24 * * ? *)", "hours", 8, "hours '24': 24 is out of range"),
        ("cron(0 10 0 * ? *)", "day-of-month", 11, "0 is out of range (day-of-month takes 1-31"),
        ("cron(0 10 * 13 ? *)", "month", 13, "13 is out of range (month takes 1-12 or JAN-DEC"),
        ("cron(0 10 * JUNE ? *)", "month", 13, "'JUNE' is not a value"),
        (
            "cron(0 10 ? * 0 *)",
            "day-of-week",
            15,
            "0 is out of range (day-of-week takes 1-7 or SUN-SAT",
        ),
        ("cron(0 10 ? * 8 *)", "day-of-week", 15, "8 is out of range"),
        ("cron(0 10 * * ? 1969)", "year", 17, "1969 is out of range (year takes 1970-2199"),
        ("cron(0 10 * * ? 2200)", "year", 17, "2200 is out of range"),
        ("cron(0 10 * * * *)", "day-of-month", 11, "exactly one of day-of-month and day-of-week"),
        ("cron(0 10 1 * MON *)", "day-of-month", 11, "exactly one of day-of-month and"),
        ("cron(0 10 ? * ? *)", "day-of-week", 15, "exactly one of day-of-month and day-of-week"),
        ("cron(0 ? * * ? *)", "hours", 8, "? must be the whole field"),
        ("cron(0 10 ?,1 * ? *)", "day-of-month", 11, "? must be the whole field"),
        ("cron(0 10 ? * ?,1 *)", "day-of-week", 15, "? must be the whole field"),
        ("cron(0 22-2 * * ? *)", "hours", 8, "the range 22-2 goes backwards"),
        ("cron(0 10 ? * FRI-MON *)", "day-of-week", 15, "the range FRI-MON goes backwards"),
        ("cron(0,,5 10 * * ? *)", "minutes", 8, "an empty item"),
        ("cron(0, 10 * * ? *)", "minutes", 8, "an empty item"),
        ("cron(0/0 10 * * ? *)", "minutes", 8, "the increment after / must be a whole number"),
        ("cron(0/61 10 * * ? *)", "minutes", 8, "the increment 61 is larger than the field's 60"),
        ("cron(0/x 10 * * ? *)", "minutes", 8, "not 'x'"),
        ("cron(0 10 ? * 1/2 *)", "day-of-week", 16, "day-of-week takes no / increments"),
        ("cron(0 10 L,1 * ? *)", "day-of-month", 11, "L, LW and nW must be the whole field"),
        ("cron(0 10 1-5W * ? *)", "day-of-month", 11, "nW takes a single day 1-31 before W"),
        ("cron(0 10 32W * ? *)", "day-of-month", 11, "nW takes a single day 1-31 before W"),
        ("cron(0 10 L-3 * ? *)", "day-of-month", 11, "L, LW and nW must be the whole field"),
        ("cron(0 10 ? * 2#1,3#2 *)", "day-of-week", 16, "n#k must be the whole field"),
        ("cron(0 10 ? * 2#6 *)", "day-of-week", 17, "the k of n#k must be 1-5, not '6'"),
        ("cron(0 10 ? * 8#1 *)", "day-of-week", 15, "8 is out of range"),
        ("cron(0 10 ? * 5L,6 *)", "day-of-week", 16, "L and nL must be the whole field"),
        ("cron(0 10 ? * 1-5L *)", "day-of-week", 18, "nL must be the whole field"),
        ("cron(L 10 * * ? *)", "minutes", 6, "L cannot be used here"),
        ("cron(0 10 * * ? 2024#1)", "year", 17, "'2024#1' is not a value"),
    ],
)
def test_refusals_name_field_column_and_what_is_allowed(
    expression: str, field: str, column: int, message: str
) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(expression)
    error = caught.value
    assert isinstance(error, ValueError)
    assert message in str(error)
    assert str(error).startswith(f"invalid schedule {expression.strip()!r}")
    assert (error.field, error.column) == (field, column)
    if column > 1:
        assert f"at column {column}:" in str(error)


def test_not_a_string() -> None:
    with pytest.raises(ScheduleError, match="must be a string"):
        parse_schedule(5)  # type: ignore[arg-type]


# -- properties ----------------------------------------------------------------------------------

MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]

Field = tuple[str, frozenset[int]]
DayTest = Callable[[date], bool]


@st.composite
def items(
    draw: st.DrawFn,
    low: int,
    high: int,
    *,
    names: list[str] | None = None,
    steps: bool = True,
    window: tuple[int, int] | None = None,
) -> Field:
    """One item of a list: its text and the values it means (from the definition of each
    form); values drawn from ``window`` when given (the years)."""
    first, last = window or (low, high)

    def show(value: int) -> str:
        if names is not None and draw(st.booleans()):
            name = names[value - low]
            return name.lower() if draw(st.booleans()) else name
        return str(value)

    kind = draw(
        st.sampled_from(["*", "value", "range", "step"] if steps else ["*", "value", "range"])
    )
    if kind == "*":
        return "*", frozenset(range(low, high + 1))
    a = draw(st.integers(first, last))
    if kind == "value":
        return show(a), frozenset({a})
    b = draw(st.integers(a, last))
    if kind == "range":
        return f"{show(a)}-{show(b)}", frozenset(range(a, b + 1))
    step = draw(st.integers(1, high - low + 1))
    form = draw(st.sampled_from(["*/s", "a/s", "a-b/s"]))
    if form == "*/s":
        return f"*/{step}", frozenset(range(low, high + 1, step))
    if form == "a/s":
        return f"{show(a)}/{step}", frozenset(range(a, high + 1, step))
    return f"{show(a)}-{show(b)}/{step}", frozenset(range(a, b + 1, step))


@st.composite
def fields(
    draw: st.DrawFn,
    low: int,
    high: int,
    *,
    names: list[str] | None = None,
    steps: bool = True,
    window: tuple[int, int] | None = None,
) -> Field:
    parts = draw(
        st.lists(items(low, high, names=names, steps=steps, window=window), min_size=1, max_size=3)
    )
    return ",".join(text for text, _ in parts), frozenset().union(*(v for _, v in parts))


def month_length(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def aws_weekday(day: date) -> int:
    """1 = Sunday ... 7 = Saturday."""
    return day.isoweekday() % 7 + 1


def is_weekday(day: date) -> bool:
    return day.isoweekday() <= 5


def days_of_month(day: date) -> list[date]:
    return [day.replace(day=d) for d in range(1, month_length(day) + 1)]


@st.composite
def day_fields(draw: st.DrawFn) -> tuple[str, str, DayTest]:
    """Day-of-month and day-of-week (one of them ?), and whether a date matches."""
    kind = draw(st.sampled_from(["month days", "L", "LW", "nW", "weekdays", "dow L", "nL", "n#k"]))
    if kind == "month days":
        text, values = draw(fields(1, 31))
        return text, "?", lambda d: d.day in values
    if kind == "L":
        return "L", "?", lambda d: d.day == month_length(d)
    if kind == "LW":
        return "LW", "?", lambda d: d == max(x for x in days_of_month(d) if is_weekday(x))
    if kind == "nW":
        n = draw(st.integers(1, 31))

        def nearest(d: date) -> bool:
            if n > month_length(d):
                return False
            return d == min(
                (x for x in days_of_month(d) if is_weekday(x)), key=lambda x: abs(x.day - n)
            )

        return f"{n}W", "?", nearest
    weekday = draw(st.integers(1, 7))
    shown = DAY_NAMES[weekday - 1] if draw(st.booleans()) else str(weekday)
    if kind == "weekdays":
        text, values = draw(fields(1, 7, names=DAY_NAMES, steps=False))
        return "?", text, lambda d: aws_weekday(d) in values
    if kind == "dow L":
        return "?", "L", lambda d: aws_weekday(d) == 7
    if kind == "nL":
        return "?", f"{shown}L", lambda d: aws_weekday(d) == weekday and d.day + 7 > month_length(d)
    nth = draw(st.integers(1, 5))
    return (
        "?",
        f"{shown}#{nth}",
        lambda d: aws_weekday(d) == weekday and (d.day - 1) // 7 + 1 == nth,
    )


@dataclass(frozen=True)
class Cron:
    """A drawn cron expression and its meaning."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    years: frozenset[int]
    day: DayTest

    def date_matches(self, day: date) -> bool:
        return day.year in self.years and day.month in self.months and self.day(day)

    def matches(self, moment: datetime) -> bool:
        return (
            moment.second == 0
            and moment.microsecond == 0
            and moment.minute in self.minutes
            and moment.hour in self.hours
            and self.date_matches(moment.date())
        )


@st.composite
def crons(draw: st.DrawFn) -> Cron:
    minutes, minute_values = draw(fields(0, 59))
    hours, hour_values = draw(fields(0, 23))
    months, month_values = draw(fields(1, 12, names=MONTH_NAMES))
    if draw(st.integers(0, 3)):
        years, year_values = "*", frozenset(range(1970, 2200))
    else:
        years, year_values = draw(fields(1970, 2199, window=(2018, 2032)))
    day_of_month, day_of_week, day = draw(day_fields())
    text = f"cron({minutes} {hours} {day_of_month} {months} {day_of_week} {years})"
    return Cron(text, minute_values, hour_values, month_values, year_values, day)


ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)
MOMENTS = st.datetimes(
    min_value=datetime(2019, 1, 1), max_value=datetime(2031, 12, 31), timezones=ZONES
)
MINUTE = timedelta(minutes=1)
HORIZON_DAYS = 15 * 366


def first_minute_after(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0) + MINUTE


def reference_next(cron: Cron, moment: datetime) -> datetime | None:
    """The first match after ``moment``, day by day over ``HORIZON_DAYS`` (None: none there)."""
    start = first_minute_after(moment)
    day = start.date()
    for _ in range(HORIZON_DAYS):
        if cron.date_matches(day):
            for hour in sorted(cron.hours):
                for minute in sorted(cron.minutes):
                    candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                    if candidate >= start:
                        return candidate
        day += timedelta(days=1)
    return None


@settings(max_examples=300, deadline=None)
@given(cron=crons(), moment=MOMENTS)
def test_cron_next_after_is_the_first_match(cron: Cron, moment: datetime) -> None:
    schedule = parse_schedule(cron.text)
    found = schedule.next_after(moment)
    if found is not None:
        assert found > moment
        assert found.tzinfo is UTC
        assert cron.matches(found), f"{cron.text} does not fire at {found}"
        assert schedule.matches(found)
        # Nothing fires between ``moment`` and ``found``: minute by minute over a day ...
    scan = first_minute_after(moment)
    end = min(found or scan + timedelta(days=1), scan + timedelta(days=1))
    while scan < end:
        assert not cron.matches(scan), f"{cron.text} fires at {scan}, before {found}"
        scan += MINUTE
    # ... and day by day over fifteen years.
    expected = reference_next(cron, moment)
    if expected is not None:
        assert found == expected
    else:
        horizon = datetime.combine(
            first_minute_after(moment).date() + timedelta(days=HORIZON_DAYS),
            datetime.min.time(),
            UTC,
        )
        assert found is None or found >= horizon


@settings(max_examples=300, deadline=None)
@given(cron=crons(), moment=MOMENTS)
def test_cron_matches_agrees_with_the_definition(cron: Cron, moment: datetime) -> None:
    schedule = parse_schedule(cron.text)
    minute = moment.astimezone(UTC).replace(second=0, microsecond=0)
    assert schedule.matches(minute) == cron.matches(minute)
    assert schedule.matches(moment) == cron.matches(moment.astimezone(UTC))


@settings(max_examples=200, deadline=None)
@given(cron=crons(), moment=MOMENTS)
def test_cron_walking_fire_by_fire(cron: Cron, moment: datetime) -> None:
    """Each fire time found again from just before it; the next one from it is later."""
    schedule = parse_schedule(cron.text)
    current: datetime | None = moment
    for _ in range(5):
        assert current is not None
        following = schedule.next_after(current)
        if following is None:
            return
        assert following > current
        assert schedule.next_after(following - timedelta(microseconds=1)) == following
        current = following


UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def test_seconds_are_thingcores_own_unit() -> None:
    ten = datetime(2024, 5, 6, 10, 0, 3, tzinfo=UTC)
    assert parse_schedule("rate(10 seconds)").next_after(ten) == ten.replace(second=10)
    assert parse_schedule("rate(1 second)").next_after(ten) == ten.replace(second=4)


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(st.integers(1, 120), st.integers(1, 1_000_000)),
    unit=st.sampled_from(sorted(UNITS)),
    moment=MOMENTS,
)
def test_rate_fires_on_its_grid(value: int, unit: str, moment: datetime) -> None:
    schedule = parse_schedule(f"rate({value} {unit}{'' if value == 1 else 's'})")
    interval = timedelta(seconds=value * UNITS[unit])
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    found = schedule.next_after(moment)
    assert found is not None
    assert found > moment
    assert found - interval <= moment  # no grid point between moment and found
    assert (found - epoch) % interval == timedelta(0)
    assert schedule.matches(found)
    if interval > timedelta(seconds=1):
        assert not schedule.matches(found + timedelta(seconds=1))
    if interval <= timedelta(hours=2):
        # Brute force: no whole minute between moment and found is on the grid.
        scan = first_minute_after(moment)
        while scan < found:
            assert (scan - epoch) % interval != timedelta(0)
            scan += MINUTE
