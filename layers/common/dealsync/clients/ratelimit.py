"""Client-side limits so dealsync stays under HubSpot's burst and search limits instead of collecting
429s (which HubSpot counts against an app), and the hooks through which the clients report what the
CRMs say about their daily allowances.

Two limiters share one interface (:class:`RequestLimiter`): :class:`SlidingWindowLimiter`, in-process,
for a client used alone; and the GCRA limiter of ``dealsync.services.budget``, shared by every worker
through DynamoDB, which :func:`gcra_parameters` sizes so that it can never exceed a rolling-window limit.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

BURST_PER_TEN_SECONDS = {"free": 100, "starter": 100, "professional": 190, "enterprise": 190}
BURST_INTERVAL_SECONDS = 10.0
SEARCH_PER_SECOND = 5
# Requests reach HubSpot a little later than they leave: keep a margin under the server's rolling window.
SAFETY_MARGIN = 0.9
BURST_FRACTION = 0.25  # back to back: a burst of changes (~26 calls for 1,000 records); the rest is paced

# The busy bucket's arrival time is a sum of emissions, its bound a product: compare with a microsecond's slack.
ROUNDING_SLACK = 1e-6

_SALESFORCE_USAGE = re.compile(r"(?:^|[,;\s])api-usage=(\d+)/(\d+)")


class RequestLimiter(Protocol):
    def acquire(self) -> float:
        """Take a slot, waiting as long as needed; returns how long it waited (seconds)."""
        ...


class SalesforceUsageListener(Protocol):
    def __call__(self, org_used: int | None, org_limit: int | None) -> None:
        """One Salesforce API request answered, with the org's usage from ``Sforce-Limit-Info`` if sent."""
        ...


class HubSpotUsageListener(Protocol):
    def answered(self, daily_limit: int | None, daily_remaining: int | None) -> None:
        """One HubSpot request answered, with the account's daily allowance from its headers if sent."""
        ...

    def daily_limit_reached(self) -> None:
        """A 429 of the DAILY policy: nothing more until the reset."""
        ...


class SlidingWindowLimiter:
    """At most ``limit`` acquisitions in any ``window_seconds``; acquire() waits for a free slot."""

    def __init__(self, limit: int, window_seconds: float) -> None:
        self.limit = limit
        self.window = window_seconds
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take a slot; returns how long it waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                while self._stamps and now - self._stamps[0] >= self.window:
                    self._stamps.popleft()
                if len(self._stamps) < self.limit:
                    self._stamps.append(now)
                    return waited
                pause = self.window - (now - self._stamps[0])
            time.sleep(pause)
            waited += pause


@dataclass(frozen=True)
class GcraParameters:
    """A generic cell rate algorithm: one request every ``emission`` seconds on average, up to
    ``burst`` of them back to back (``tolerance`` = (burst - 1) * emission)."""

    emission: float
    tolerance: float
    burst: int


def gcra_parameters(limit: int, interval: float, margin: float = SAFETY_MARGIN,
                    burst_fraction: float = BURST_FRACTION) -> GcraParameters:
    """Parameters under which no rolling ``interval`` ever holds more than ``limit`` requests.

    Past a burst of ``burst`` back to back, GCRA spaces requests ``emission`` apart, so a rolling
    (half-open) window of ``interval`` holds at most ``interval / emission + burst - 1`` of them; with
    ``emission = interval / (effective - burst + 1)`` that is ``effective`` = ``limit`` less a margin.
    (A fixed-window counter would allow twice the limit across a window boundary.)"""
    if limit < 1 or interval <= 0:
        raise ValueError("a rate limit needs a positive limit and interval")
    effective = max(1, int(limit * margin))
    burst = max(1, min(effective, int(effective * burst_fraction)))
    emission = interval / (effective - burst + 1)
    return GcraParameters(emission=emission, tolerance=(burst - 1) * emission, burst=burst)


def gcra_take(tat: float | None, now: float, emission: float, tolerance: float) -> float | None:
    """One GCRA decision: the new theoretical arrival time when a request may go at ``now``, else None.

    Idle bucket (``tat`` unset or in the past): the slot starts now. Busy (``now <= tat <= now +
    tolerance``): it follows the last one. Beyond the tolerance: full (wait until ``tat - tolerance``).
    The shared limiter makes the same decision with two conditional writes in DynamoDB."""
    if tat is None or tat < now:
        return now + emission
    if tat <= now + tolerance + ROUNDING_SLACK:
        return tat + emission
    return None


def parse_salesforce_limit_info(value: str | None) -> tuple[int, int] | None:
    """(used, allocation) from ``Sforce-Limit-Info: api-usage=18/5000`` (other parts ignored)."""
    match = _SALESFORCE_USAGE.search(value or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def parse_hubspot_daily(headers: Mapping[str, str] | None) -> tuple[int | None, int | None]:
    """(daily allowance, daily remaining) from ``X-HubSpot-RateLimit-Daily[-Remaining]`` (None if absent)."""
    lowered = {str(name).lower(): value for name, value in (headers or {}).items()}

    def number(name: str) -> int | None:
        value = lowered.get(name)
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    return number("x-hubspot-ratelimit-daily"), number("x-hubspot-ratelimit-daily-remaining")
