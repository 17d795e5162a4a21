"""Cron expressions of five fields (minute hour day month weekday): checked, read, explained.

The orchestrators that run schedules (Kubeflow's and Kubernetes' Go cron,
Airflow's croniter) all read this common ground: numbers, ``*``, ranges,
lists, steps, and the names of months and weekdays. Times are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .errors import StackmagicError

_MONTHS = tuple("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())
_DAYS = tuple("SUN MON TUE WED THU FRI SAT".split())
_DAY_NAMES = "Sunday Monday Tuesday Wednesday Thursday Friday Saturday".split()
_MONTH_NAMES = (
    "January February March April May June July August September October November December"
).split()

#: (name, lowest, highest, names from ``lowest`` on)
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("weekday", 0, 6, _DAYS),
)

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_EXAMPLE = 'five fields: minute hour day month weekday, e.g. "0 3 * * *" for 03:00 UTC daily'


@dataclass(frozen=True)
class Cron:
    """A checked expression: its text and the values each field allows."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    #: the day and weekday fields as written: cron runs on either when both are restricted
    any_day: bool
    any_weekday: bool

    def next_after(self, moment: datetime) -> datetime:
        """The first time after ``moment`` (UTC) the expression matches."""
        start = moment.astimezone(timezone.utc).replace(second=0, microsecond=0)
        start += timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for _ in range(366 * 8):  # Feb 29 on a given weekday comes back within 28 years
            if self._matches_day(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
        raise StackmagicError(f'cron "{self.text}" never matches a date; fix its day and month')

    def _matches_day(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        by_day = day.day in self.days
        by_weekday = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return by_day and by_weekday
        return by_day or by_weekday

    def words(self) -> str | None:
        """The common shapes in words ("at 03:00 UTC every day"); None for the rest."""
        fields = self.text.split()
        when = _time_words(fields[0], fields[1], self)
        if when is None or fields[3] != "*":
            return None
        if self.any_day and self.any_weekday:
            return when if when.startswith("every") else f"{when} every day"
        if self.any_day:
            return f"{when} on {_list_words(self.weekdays, _DAY_NAMES)}"
        if self.any_weekday and len(self.days) == 1:
            return f"{when} on day {min(self.days)} of each month"
        return None


def parse_cron(text: str) -> Cron:
    """Check a cron expression; raise a one-line :class:`StackmagicError` saying what is wrong."""
    given = " ".join(text.split())
    expanded = _MACROS.get(given.lower(), given)
    fields = expanded.split()
    if len(fields) != 5:
        raise StackmagicError(f'cron "{given}" has {len(fields)} fields; give {_EXAMPLE}')
    values = [_field(part, spec, given) for part, spec in zip(fields, _FIELDS)]
    return Cron(
        text=expanded,
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=values[4],
        # as the engines read it: "*/2" restricts (the day OR the weekday matches), "*/1" not
        any_day=fields[2] in ("*", "*/1"),
        any_weekday=fields[4] in ("*", "*/1"),
    )


def _field(part: str, spec: tuple[str, int, int, tuple[str, ...]], given: str) -> frozenset[int]:
    name, low, high, names = spec
    allowed: set[int] = set()
    for item in part.split(","):
        body, _, step_text = item.partition("/")
        step = _number(step_text, name, given, 1, None, ()) if step_text else 1
        if step < 1:
            raise StackmagicError(f'cron "{given}": the {name} step must be 1 or more')
        if body == "*":
            first, last = low, high
        elif "-" in body:
            start, _, end = body.partition("-")
            first = _number(start, name, given, low, high, names)
            last = _number(end, name, given, low, high, names)
            if first > last:
                raise StackmagicError(
                    f'cron "{given}": the {name} range {body} runs backwards; write it low-high'
                )
        else:
            first = _number(body, name, given, low, high, names)
            last = high if step_text else first
        allowed.update(range(first, last + 1, step))
    return frozenset(allowed)


def _number(
    text: str, name: str, given: str, low: int, high: int | None, names: tuple[str, ...]
) -> int:
    if text.upper() in names:
        return names.index(text.upper()) + low
    if not text.isdigit():
        raise StackmagicError(f'cron "{given}": {text!r} is no {name}; give {_EXAMPLE}')
    value = int(text)
    if high is not None and not low <= value <= high:
        extra = " (0 is Sunday)" if name == "weekday" else ""
        raise StackmagicError(
            f'cron "{given}": {name} {value} is not in {low}-{high}{extra}; give {_EXAMPLE}'
        )
    return value


def _time_words(minute: str, hour: str, cron: Cron) -> str | None:
    if minute.isdigit() and hour.isdigit():
        return f"at {int(hour):02d}:{int(minute):02d} UTC"
    if minute.isdigit() and hour == "*":
        return f"every hour at minute {int(minute)}"
    if minute.startswith("*/") and hour == "*":
        return f"every {minute[2:]} minutes"
    return None


def _list_words(values: frozenset[int], names: list[str]) -> str:
    ordered = sorted(values)
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{names[ordered[0]]} to {names[ordered[-1]]}"
    return ", ".join(names[value] for value in ordered)
