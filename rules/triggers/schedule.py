"""EventBridge schedule expressions: ``rate(value unit)`` and ``cron(6 fields)``, in UTC.

Pure: ``parse_schedule`` turns the text into a ``Schedule`` (or raises ``ScheduleError``, a
``ValueError`` that names the field, the column and what the field allows), and
``Schedule.next_after(moment)`` gives the first fire time strictly after ``moment``.

``rate(value unit)``: ``value`` a whole number from 1, ``unit`` ``minute``/``hour``/``day``
when the value is 1 and ``minutes``/``hours``/``days`` otherwise (AWS refuses ``rate(1
hours)`` and ``rate(5 minute)``). Beyond EventBridge, ``second``/``seconds`` are taken too
(``rate(10 seconds)``: device watchdogs and simulators want more than once a minute).
EventBridge counts a rate from the moment the rule is created;
a local server restarts often, so a rate here fires on a grid counted from the Unix epoch
(1970-01-01T00:00Z) instead: ``rate(5 minutes)`` at :00, :05, :10..., ``rate(1 hour)`` on the
hour, ``rate(1 day)`` at midnight UTC, ``rate(7 days)`` on Thursdays (the epoch's weekday).
The fire times do not depend on when the server started, so a restart neither shifts them nor
fires early.

``cron(minutes hours day-of-month month day-of-week year)``, as EventBridge's reference table
has it (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cron-expressions.html):

============  =====================  ===============
field         values                 wildcards
============  =====================  ===============
minutes       0-59                   , - * /
hours         0-23                   , - * /
day-of-month  1-31                   , - * ? / L W
month         1-12 or JAN-DEC        , - * /
day-of-week   1-7 or SUN-SAT (1=SUN) , - * ? L #
year          1970-2199              , - * /
============  =====================  ===============

Exactly one of day-of-month and day-of-week is ``?``. ``a/s`` is ``a``, ``a+s``... up to the
field's end (``*/s`` starts at its beginning, ``a-b/s`` stops at ``b``); ranges go upwards
(``22-2`` is refused: write ``22-23,0-2``). The special days, each the whole field as in AWS's
note on ``#``: day-of-month ``L`` (the last day), ``LW`` (the last weekday, Monday to Friday),
``nW`` (the weekday nearest day ``n`` within the same month: a Saturday moves to the Friday
before, a Sunday to the Monday after, unless that leaves the month, so ``1W`` on a Saturday is
Monday the 3rd; a month without day ``n`` has none); day-of-week ``L`` (Saturday, the last day
of the week), ``nL`` (the last weekday ``n`` of the month: ``6L`` the last Friday) and ``n#k``
(the ``k``-th, 1 to 5, weekday ``n``: ``2#1`` the first Monday; a month without a fifth has
none). Names are case-insensitive.

``next_after`` walks the fields from the year down, skipping whole years, months and days that
cannot match, so an expression that fires rarely (or never: ``cron(0 0 30 2 ? *)``, where it
returns None) costs at most a few thousand steps, never a minute-by-minute scan.
"""

from __future__ import annotations

import calendar
import re
from abc import ABC, abstractmethod
from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from thingcore.errors import ThingcoreError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Where the grid of a rate schedule starts."""
MAX_RATE = 1_000_000
"""The largest value of ``rate(value unit)``."""
FIRST_YEAR = 1970
LAST_YEAR = 2199

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
        start=1,
    )
}
_DAYS = {
    name: number
    for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)
}
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_NUMBER = re.compile(r"[0-9]+")
_TOKEN = re.compile(r"\S+")


class ScheduleError(ThingcoreError, ValueError):
    """A schedule expression that cannot be used.

    ``field`` names the cron field (or ``"rate"``, or ``""`` for the expression as a whole) and
    ``column`` is the 1-based position in ``expression`` of the text at fault.
    """

    def __init__(self, expression: str, message: str, *, field: str = "", column: int = 1) -> None:
        where = f" at column {column}" if column > 1 else ""
        super().__init__(f"invalid schedule {expression!r}{where}: {message}")
        self.expression = expression
        self.field = field
        self.column = column


# -- schedules -----------------------------------------------------------------------------------


class Schedule(ABC):
    """When a scheduled function fires; made by ``parse_schedule``."""

    __slots__ = ()

    expression: str

    @abstractmethod
    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after ``moment`` (an aware datetime), in UTC; None if
        the schedule never fires again (a cron whose years are over, or whose days never come).

        Raises:
            ValueError: ``moment`` is naive.
        """

    @abstractmethod
    def matches(self, moment: datetime) -> bool:
        """Whether ``moment`` (aware) is one of the schedule's fire times."""

    def __str__(self) -> str:
        return self.expression


@dataclass(frozen=True, slots=True)
class RateSchedule(Schedule):
    """``rate(value unit)``: every ``interval``, on a grid counted from ``EPOCH``."""

    expression: str
    interval: timedelta

    def next_after(self, moment: datetime) -> datetime | None:
        steps = (_utc(moment) - EPOCH) // self.interval + 1
        try:
            return EPOCH + steps * self.interval
        except OverflowError:
            return None

    def matches(self, moment: datetime) -> bool:
        return (_utc(moment) - EPOCH) % self.interval == timedelta(0)


@dataclass(frozen=True, slots=True)
class CronSchedule(Schedule):
    """``cron(...)``: the sorted values of each field, and the rule that picks the days."""

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    day: DayRule
    months: tuple[int, ...]
    years: tuple[int, ...]

    def next_after(self, moment: datetime) -> datetime | None:
        try:
            start = _utc(moment).replace(second=0, microsecond=0) + timedelta(minutes=1)
        except OverflowError:
            return None
        # Only the first candidate of each field is bounded by ``start``; once a field moves
        # past it, everything below starts from its first value, so this returns at the first
        # (year, month) that has a matching day after ``start``.
        for year in self.years[bisect_left(self.years, start.year) :]:
            same = year == start.year
            for month in self.months[bisect_left(self.months, start.month) if same else 0 :]:
                same_month = same and month == start.month
                days = self.day.days(year, month)
                for day in days[bisect_left(days, start.day) if same_month else 0 :]:
                    same_day = same_month and day == start.day
                    for hour in self.hours[
                        bisect_left(self.hours, start.hour) if same_day else 0 :
                    ]:
                        same_hour = same_day and hour == start.hour
                        index = bisect_left(self.minutes, start.minute) if same_hour else 0
                        if index < len(self.minutes):
                            return datetime(year, month, day, hour, self.minutes[index], tzinfo=UTC)
        return None

    def matches(self, moment: datetime) -> bool:
        at = _utc(moment)
        return (
            at.second == 0
            and at.microsecond == 0
            and at.minute in self.minutes
            and at.hour in self.hours
            and at.month in self.months
            and at.year in self.years
            and at.day in self.day.days(at.year, at.month)
        )


# -- the days of a month a cron fires on ---------------------------------------------------------


class DayRule(ABC):
    """The day-of-month or day-of-week field (whichever is not ``?``)."""

    __slots__ = ()

    @abstractmethod
    def days(self, year: int, month: int) -> tuple[int, ...]:
        """The days of ``month`` in ``year`` that match, in order."""


@dataclass(frozen=True, slots=True)
class MonthDays(DayRule):
    """Day-of-month values (``1,15``, ``1-5``, ``*``); days the month lacks never match."""

    values: tuple[int, ...]

    def days(self, year: int, month: int) -> tuple[int, ...]:
        length = calendar.monthrange(year, month)[1]
        return self.values[: bisect_left(self.values, length + 1)]


@dataclass(frozen=True, slots=True)
class LastDay(DayRule):
    """Day-of-month ``L``."""

    def days(self, year: int, month: int) -> tuple[int, ...]:
        return (calendar.monthrange(year, month)[1],)


@dataclass(frozen=True, slots=True)
class LastWeekday(DayRule):
    """Day-of-month ``LW``: the last Monday-to-Friday of the month."""

    def days(self, year: int, month: int) -> tuple[int, ...]:
        first, length = calendar.monthrange(year, month)
        weekday = (first + length - 1) % 7  # Python's: Monday 0 ... Sunday 6
        return (length - max(0, weekday - 4),)


@dataclass(frozen=True, slots=True)
class NearestWeekday(DayRule):
    """Day-of-month ``nW``: the Monday-to-Friday nearest day ``day``, in the same month."""

    day: int

    def days(self, year: int, month: int) -> tuple[int, ...]:
        first, length = calendar.monthrange(year, month)
        day = self.day
        if day > length:
            return ()
        weekday = (first + day - 1) % 7
        if weekday == calendar.SATURDAY:
            return (day - 1 if day > 1 else day + 2,)
        if weekday == calendar.SUNDAY:
            return (day + 1 if day < length else day - 2,)
        return (day,)


@dataclass(frozen=True, slots=True)
class Weekdays(DayRule):
    """Day-of-week values in AWS's numbering (1 = Sunday ... 7 = Saturday)."""

    values: frozenset[int]

    def days(self, year: int, month: int) -> tuple[int, ...]:
        first, length = calendar.monthrange(year, month)
        return tuple(
            day for day in range(1, length + 1) if _aws_weekday(first + day - 1) in self.values
        )


@dataclass(frozen=True, slots=True)
class LastOfWeekday(DayRule):
    """Day-of-week ``nL``: the last weekday ``weekday`` (AWS's number) of the month."""

    weekday: int

    def days(self, year: int, month: int) -> tuple[int, ...]:
        first, length = calendar.monthrange(year, month)
        last = (first + length - 1) % 7
        return (length - (last - _python_weekday(self.weekday)) % 7,)


@dataclass(frozen=True, slots=True)
class NthWeekday(DayRule):
    """Day-of-week ``n#k``: the ``nth`` weekday ``weekday`` (AWS's number) of the month."""

    weekday: int
    nth: int

    def days(self, year: int, month: int) -> tuple[int, ...]:
        first, length = calendar.monthrange(year, month)
        day = 1 + (_python_weekday(self.weekday) - first) % 7 + 7 * (self.nth - 1)
        return (day,) if day <= length else ()


def _aws_weekday(python_weekday: int) -> int:
    return (python_weekday + 1) % 7 + 1


def _python_weekday(aws_weekday: int) -> int:
    return (aws_weekday - 2) % 7


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"a schedule needs an aware datetime (UTC), not the naive {moment}")
    return moment.astimezone(UTC)


# -- parsing -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    wildcards: str
    names: dict[str, int] | None = None

    @property
    def allowed(self) -> str:
        values = f"{self.low}-{self.high}"
        if self.names is not None:
            keys = list(self.names)
            values += f" or {keys[0]}-{keys[-1]}"
        return f"{self.name} takes {values} with {' '.join(self.wildcards)}"


_MINUTES = _Field("minutes", 0, 59, ",-*/")
_HOURS = _Field("hours", 0, 23, ",-*/")
_DAY_OF_MONTH = _Field("day-of-month", 1, 31, ",-*?/LW")
_MONTH = _Field("month", 1, 12, ",-*/", _MONTHS)
_DAY_OF_WEEK = _Field("day-of-week", 1, 7, ",-*?L#", _DAYS)
_YEAR = _Field("year", FIRST_YEAR, LAST_YEAR, ",-*/")
_FIELDS = (_MINUTES, _HOURS, _DAY_OF_MONTH, _MONTH, _DAY_OF_WEEK, _YEAR)


class _Bad(Exception):
    """A problem in one field: its message and the offset of the part at fault in the field."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


def parse_schedule(text: str) -> Schedule:
    """The schedule ``text`` describes: ``rate(value unit)`` or ``cron(6 fields)``.

    Raises:
        ScheduleError: (a ``ValueError``) naming the field at fault and what it allows.
    """
    if not isinstance(text, str):
        raise ScheduleError(repr(text), "a schedule expression must be a string")
    expression = text.strip()
    for kind in ("rate", "cron"):
        if expression.startswith(f"{kind}(") and expression.endswith(")"):
            inner = expression[len(kind) + 1 : -1]
            offset = len(kind) + 1
            if kind == "rate":
                return _parse_rate(expression, inner, offset)
            return _parse_cron(expression, inner, offset)
    raise ScheduleError(
        expression,
        "a schedule is rate(value unit), as rate(5 minutes), or "
        "cron(minutes hours day-of-month month day-of-week year), as cron(0 10 * * ? *)",
    )


def _parse_rate(expression: str, inner: str, offset: int) -> RateSchedule:
    tokens = list(_TOKEN.finditer(inner))
    if len(tokens) != 2:
        raise ScheduleError(
            expression,
            "rate takes a value and a unit, as rate(5 minutes) or rate(1 hour)",
            field="rate",
        )
    value_token, unit_token = tokens
    value_text, unit = value_token.group(), unit_token.group()
    if not _NUMBER.fullmatch(value_text) or not 1 <= int(value_text) <= MAX_RATE:
        raise ScheduleError(
            expression,
            f"the rate value must be a whole number from 1 to {MAX_RATE}, not {value_text!r}",
            field="rate",
            column=offset + value_token.start() + 1,
        )
    value = int(value_text)
    singular = unit.removesuffix("s")
    column = offset + unit_token.start() + 1
    if singular not in _UNITS:
        raise ScheduleError(
            expression,
            f"the rate unit must be second(s), minute(s), hour(s) or day(s), not {unit!r}",
            field="rate",
            column=column,
        )
    if value == 1 and unit != singular:
        raise ScheduleError(
            expression,
            f"a rate of 1 takes the singular unit: rate(1 {singular})",
            field="rate",
            column=column,
        )
    if value > 1 and unit == singular:
        raise ScheduleError(
            expression,
            f"a rate of {value} takes the plural unit: rate({value} {singular}s)",
            field="rate",
            column=column,
        )
    return RateSchedule(expression, timedelta(seconds=value * _UNITS[singular]))


def _parse_cron(expression: str, inner: str, offset: int) -> CronSchedule:
    tokens = list(_TOKEN.finditer(inner))
    if len(tokens) != len(_FIELDS):
        raise ScheduleError(
            expression,
            f"cron takes 6 fields (minutes hours day-of-month month day-of-week year), "
            f"not {len(tokens)}",
        )
    texts = [token.group() for token in tokens]

    def fail(index: int, message: str, at: int = 0) -> ScheduleError:
        field = _FIELDS[index]
        return ScheduleError(
            expression,
            f"{field.name} {tokens[index].group()!r}: {message}",
            field=field.name,
            column=offset + tokens[index].start() + at + 1,
        )

    if (texts[2] == "?") == (texts[4] == "?"):
        raise fail(
            4 if texts[2] == "?" else 2,
            "exactly one of day-of-month and day-of-week must be ? (AWS takes one or the "
            "other: cron(0 10 * * ? *) or cron(0 10 ? * MON-FRI *))",
        )
    values: list[tuple[int, ...]] = []
    day: DayRule | None = None
    for index, (field, text) in enumerate(zip(_FIELDS, texts, strict=True)):
        try:
            if field is _DAY_OF_MONTH or field is _DAY_OF_WEEK:
                if text != "?":
                    day = (_day_of_month if field is _DAY_OF_MONTH else _day_of_week)(text)
                values.append(())
            else:
                values.append(_values(field, text))
        except _Bad as bad:
            raise fail(index, f"{bad} ({field.allowed})", bad.offset) from None
    minutes, hours, _, months, _, years = values
    if day is None:  # pragma: no cover - the ? check above leaves one day field
        raise ScheduleError(expression, "no day field")
    return CronSchedule(expression, minutes, hours, day, months, years)


def _day_of_month(text: str) -> DayRule:
    upper = _upper(text)
    if upper == "L":
        return LastDay()
    if upper == "LW":
        return LastWeekday()
    if upper.endswith("W"):
        day = text[:-1]
        if not _NUMBER.fullmatch(day) or not 1 <= int(day) <= 31:
            raise _Bad(f"nW takes a single day 1-31 before W, not {day!r}")
        return NearestWeekday(int(day))
    if "L" in upper or "W" in upper:
        at = min(i for i, c in enumerate(upper) if c in "LW")
        raise _Bad("L, LW and nW must be the whole field, not part of a list or range", at)
    return MonthDays(_values(_DAY_OF_MONTH, text))


def _day_of_week(text: str) -> DayRule:
    upper = _upper(text)
    if upper == "L":
        return Weekdays(frozenset({7}))  # the last day of the week: Saturday
    if "#" in text:
        weekday, _, nth = text.partition("#")
        if "," in text or "-" in text or "/" in text:
            raise _Bad("n#k must be the whole field (AWS: one # expression only)", text.index("#"))
        if not _NUMBER.fullmatch(nth) or not 1 <= int(nth) <= 5:
            raise _Bad(f"the k of n#k must be 1-5, not {nth!r}", len(weekday) + 1)
        return NthWeekday(_value(_DAY_OF_WEEK, weekday, 0), int(nth))
    if upper.endswith("L"):
        weekday = text[:-1]
        if "," in weekday or "-" in weekday or "/" in weekday:
            raise _Bad("nL must be the whole field, not part of a list or range", len(weekday))
        return LastOfWeekday(_value(_DAY_OF_WEEK, weekday, 0))
    if "L" in upper:
        raise _Bad("L and nL must be the whole field, not part of a list", upper.index("L"))
    return Weekdays(frozenset(_values(_DAY_OF_WEEK, text)))


def _upper(text: str) -> str:
    # Only ASCII is upper-cased, so that positions in the text stay where they were.
    return text.upper() if text.isascii() else text


def _values(field: _Field, text: str) -> tuple[int, ...]:
    """The sorted values of a field made of ``*``, numbers, names, ``,``, ``-`` and ``/``."""
    found: set[int] = set()
    start = 0
    for item in text.split(","):
        found.update(_item(field, item, start))
        start += len(item) + 1
    return tuple(sorted(found))


def _item(field: _Field, item: str, at: int) -> range:
    if not item:
        raise _Bad("an empty item (two commas, or a comma at an end)", at)
    base, slash, step_text = item.partition("/")
    if slash and "/" not in field.wildcards:
        raise _Bad(f"{field.name} takes no / increments", at + len(base))
    if base == "*":
        low, high = field.low, field.high
    elif base == "?":
        raise _Bad("? must be the whole field", at)
    else:
        first, dash, last = base.partition("-")
        low = _value(field, first, at)
        high = _value(field, last, at + len(first) + 1) if dash else low
        if high < low:
            raise _Bad(
                f"the range {base} goes backwards (write it as two ranges, as 22-23,0-2)", at
            )
        if slash and not dash:
            high = field.high  # ``a/s``: from a to the field's end
    step = 1
    if slash:
        step_at = at + len(base) + 1
        if not _NUMBER.fullmatch(step_text) or int(step_text) < 1:
            raise _Bad(
                f"the increment after / must be a whole number from 1, not {step_text!r}", step_at
            )
        step = int(step_text)
        span = field.high - field.low + 1
        if step > span:
            raise _Bad(f"the increment {step} is larger than the field's {span} values", step_at)
    return range(low, high + 1, step)


def _value(field: _Field, text: str, at: int) -> int:
    if field.names is not None and _upper(text) in field.names:
        return field.names[_upper(text)]
    if not _NUMBER.fullmatch(text):
        if not text:
            raise _Bad("a value is missing", at)
        if text[0] in "?LlWw#*":
            raise _Bad(f"{text[0]} cannot be used here", at)
        raise _Bad(f"{text!r} is not a value", at)
    value = int(text)
    if not field.low <= value <= field.high:
        raise _Bad(f"{value} is out of range", at)
    return value
