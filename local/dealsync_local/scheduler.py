"""EventBridge schedules, locally: ``rate(...)`` and AWS's six-field ``cron(...)`` expressions (UTC),
each firing a callback with the scheduled-event envelope; any schedule can also be fired now."""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("localworld.scheduler")

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {name: index for index, name in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)}
_WEEKDAYS = {name: index for index, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], start=1)}


class ScheduleExpressionError(ValueError):
    pass


def rate_seconds(expression: str) -> float | None:
    """Seconds between runs of a ``rate(...)`` expression, or None when it is not one."""
    match = _RATE.match(expression.strip())
    if match is None:
        return None
    value = int(match.group(1))
    if value <= 0:
        raise ScheduleExpressionError(f"{expression}: the value must be positive")
    return float(value * _UNIT_SECONDS[match.group(2).rstrip("s")])


def _parse_number(token: str, names: dict[str, int] | None) -> int:
    upper = token.upper()
    if names and upper in names:
        return names[upper]
    if not token.isdigit():
        raise ScheduleExpressionError(f"bad value {token!r}")
    return int(token)


def _parse_set(text: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int]:
    """A cron field made of ``*``, lists, ranges and steps."""
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        has_step = "/" in part
        if has_step:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) <= 0:
                raise ScheduleExpressionError(f"bad step in {text!r}")
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = _parse_number(first, names), _parse_number(last, names)
        else:
            start = _parse_number(part, names)
            end = high if has_step else start
        if not (low <= start <= high and low <= end <= high):
            raise ScheduleExpressionError(f"{text!r} is outside {low}-{high}")
        # a range may wrap around (FRI-MON, 22-2)
        sequence = list(range(start, end + 1)) if start <= end else [*range(start, high + 1), *range(low, end + 1)]
        values.update(sequence[::step])
    return values


def _aws_weekday(day: dt.date) -> int:
    """1 = Sunday ... 7 = Saturday, as AWS cron counts."""
    return (day.isoweekday() % 7) + 1


def _nearest_weekday(year: int, month: int, day: int) -> int:
    last = calendar.monthrange(year, month)[1]
    day = min(day, last)
    weekday = dt.date(year, month, day).weekday()  # Monday = 0
    if weekday == 5:  # Saturday: Friday before, unless that leaves the month
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: Monday after, unless that leaves the month
        return day + 1 if day < last else day - 2
    return day


@dataclass(frozen=True)
class CronExpression:
    """``cron(Minutes Hours Day-of-month Month Day-of-week Year)``, in UTC, as EventBridge reads it."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    years: frozenset[int]
    day_of_month: str
    day_of_week: str

    @classmethod
    def parse(cls, expression: str) -> CronExpression:
        match = _CRON.match(expression.strip())
        if match is None:
            raise ScheduleExpressionError(f"{expression!r} is not a cron(...) expression")
        fields = match.group(1).split()
        if len(fields) != 6:
            raise ScheduleExpressionError(f"{expression!r}: cron needs six fields, got {len(fields)}")
        minute, hour, dom, month, dow, year = fields
        if (dom == "?") == (dow == "?"):
            raise ScheduleExpressionError(f"{expression!r}: exactly one of day-of-month and day-of-week must be '?'")
        parsed = cls(
            expression=expression,
            minutes=frozenset(_parse_set(minute, 0, 59)),
            hours=frozenset(_parse_set(hour, 0, 23)),
            months=frozenset(_parse_set(month, 1, 12, _MONTHS)),
            years=frozenset(_parse_set(year, 1970, 2199)),
            day_of_month=dom.upper(),
            day_of_week=dow.upper(),
        )
        parsed._matches_day(dt.date(2024, 1, 1))  # validate the day fields now
        return parsed

    def _matches_day(self, day: dt.date) -> bool:
        if self.day_of_month != "?":
            return self._matches_day_of_month(day)
        return self._matches_day_of_week(day)

    def _matches_day_of_month(self, day: dt.date) -> bool:
        last = calendar.monthrange(day.year, day.month)[1]
        text = self.day_of_month
        if text == "L":
            return day.day == last
        if text == "LW":
            return day.day == _nearest_weekday(day.year, day.month, last)
        if text.startswith("L-"):
            return day.day == last - int(text[2:])
        if text.endswith("W"):
            return day.day == _nearest_weekday(day.year, day.month, int(text[:-1]))
        return day.day in _parse_set(text, 1, 31)

    def _matches_day_of_week(self, day: dt.date) -> bool:
        text = self.day_of_week
        weekday = _aws_weekday(day)
        if text == "L":
            return weekday == 7
        if "#" in text:
            name, nth = text.split("#", 1)
            return weekday == _parse_number(name, _WEEKDAYS) and (day.day - 1) // 7 + 1 == int(nth)
        if text.endswith("L"):
            last = calendar.monthrange(day.year, day.month)[1]
            return weekday == _parse_number(text[:-1], _WEEKDAYS) and day.day > last - 7
        return weekday in _parse_set(text, 1, 7, _WEEKDAYS)

    def next_after(self, moment: dt.datetime) -> dt.datetime | None:
        """The first fire time strictly after ``moment`` (UTC), or None within the next 200 years."""
        moment = moment.astimezone(dt.UTC).replace(second=0, microsecond=0)
        day = moment.date()
        for _ in range(366 * 200):
            if day.year > 2199:
                return None
            if day.year not in self.years:
                day = dt.date(day.year + 1, 1, 1)
                continue
            if day.month in self.months and self._matches_day(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)
                        if candidate > moment:
                            return candidate
            day += dt.timedelta(days=1)
        return None


def parse_expression(expression: str) -> float | CronExpression:
    """A rate in seconds or a parsed cron expression; ``at(...)`` one-time schedules are refused."""
    seconds = rate_seconds(expression)
    if seconds is not None:
        return seconds
    if expression.strip().startswith("cron("):
        return CronExpression.parse(expression)
    raise ScheduleExpressionError(f"unsupported schedule expression {expression!r}")


@dataclass
class ScheduledJob:
    """One schedule: a rule (or a function's Schedule event) and what firing it does."""

    name: str
    expression: str
    fire: Callable[[dt.datetime], Any]  # called with the fire time; returns what was delivered
    enabled: bool = True
    interval_override: float | None = None  # seconds, replaces a rate(...) interval
    description: str = ""
    runs: int = 0
    last_run: dt.datetime | None = None
    last_result: Any = None
    last_error: str | None = None
    next_run: dt.datetime | None = field(default=None)

    def __post_init__(self) -> None:
        self.schedule = parse_expression(self.expression)

    @property
    def interval(self) -> float | None:
        if isinstance(self.schedule, float):
            return self.interval_override or self.schedule
        return None

    def compute_next(self, after: dt.datetime) -> dt.datetime | None:
        if not self.enabled:
            return None
        if isinstance(self.schedule, CronExpression):
            return self.schedule.next_after(after)
        assert self.interval is not None
        return after + dt.timedelta(seconds=self.interval)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expression": self.expression,
            "enabled": self.enabled,
            "interval_seconds": self.interval,
            "runs": self.runs,
            "last_run": self.last_run.isoformat() if self.last_run else None,
            "next_run": self.next_run.isoformat() if self.next_run else None,
            "last_error": self.last_error,
            "description": self.description,
        }


class UnknownScheduleError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown schedule"


class Scheduler:
    """A thread that fires each enabled job when it is due. ``rate(...)`` jobs first fire one
    interval after the start, as a new EventBridge rule does."""

    def __init__(self, jobs: Iterable[ScheduledJob], *, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.jobs: dict[str, ScheduledJob] = {job.name: job for job in jobs}
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> Scheduler:
        now = self._clock()
        for job in self.jobs.values():
            job.next_run = job.compute_next(now)
        self._thread = threading.Thread(target=self._run, name="dealsync-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def get(self, name: str) -> ScheduledJob:
        if name in self.jobs:
            return self.jobs[name]
        known = ", ".join(sorted(self.jobs)) or "none"
        raise UnknownScheduleError(f"unknown schedule {name!r}; known: {known}")

    def run_now(self, name: str) -> Any:
        """Fire one schedule now (on the caller's thread) and return what it delivered."""
        return self._fire(self.get(name), self._clock())

    def _fire(self, job: ScheduledJob, when: dt.datetime) -> Any:
        with self._lock:
            job.runs += 1
            job.last_run = when
        try:
            result = job.fire(when)
        except Exception as exc:
            job.last_error = f"{type(exc).__name__}: {exc}"
            logger.warning("schedule %s failed: %s", job.name, job.last_error)
            raise
        job.last_result = result
        job.last_error = None
        logger.debug("schedule %s fired", job.name)
        return result

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self._clock()
            due = [job for job in self.jobs.values() if job.next_run is not None and job.next_run <= now]
            for job in due:
                if self._stop.is_set():
                    return
                # a failed run is logged in _fire and must not stop the other schedules
                with contextlib.suppress(Exception):
                    self._fire(job, job.next_run or now)
                job.next_run = job.compute_next(max(now, job.next_run or now))
            upcoming = [job.next_run for job in self.jobs.values() if job.next_run is not None]
            wait = min((moment - self._clock()).total_seconds() for moment in upcoming) if upcoming else 3600.0
            self._wake.wait(max(0.05, min(wait, 3600.0)))
            self._wake.clear()
