"""HubSpot's API limits for privately distributed apps (reference §4): a burst limit per app over a
rolling 10 seconds, a daily limit per account, and the search API's 5 requests per second."""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

# Burst per 10 s (per app) and daily (per account), reference §4.1.
TIER_LIMITS: dict[str, tuple[int, int]] = {
    "free": (100, 250_000),
    "starter": (100, 250_000),
    "professional": (190, 625_000),
    "enterprise": (190, 1_000_000),
}
INTERVAL_MS = 10_000
SEARCH_PER_SECOND = 5


@dataclass
class Decision:
    allowed: bool
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


def _limit_body(message: str, policy: str) -> dict[str, Any]:
    """The 429 body of the reference (§4.3): no ``category``, an ``errorType`` and a ``policyName``."""
    return {"status": "error", "message": message, "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()), "policyName": policy, "requestId": str(uuid.uuid4())}


class RateLimiter:
    def __init__(self, tier: str = "professional") -> None:
        self._lock = threading.Lock()
        self.enabled = True
        self.tier = tier
        self.burst_override: int | None = None
        self.daily_override: int | None = None
        self.search_per_second = SEARCH_PER_SECOND
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._windows: dict[str, deque[float]] = {}
            self._search: deque[float] = deque()
            self._daily_used = 0
            self._day = time.gmtime().tm_yday

    def reset_daily(self, used: int = 0) -> None:
        """Start a new day now (as midnight does), or set the day's count (control ``ratelimits/daily``)."""
        if used < 0:
            raise ValueError("daily_used must be zero or more")
        with self._lock:
            self._daily_used = used
            self._day = time.gmtime().tm_yday

    @property
    def burst_max(self) -> int:
        return self.burst_override if self.burst_override is not None else TIER_LIMITS[self.tier][0]

    @property
    def daily_max(self) -> int:
        return self.daily_override if self.daily_override is not None else TIER_LIMITS[self.tier][1]

    @property
    def daily_used(self) -> int:
        return self._daily_used

    def _headers(self, burst_remaining: int) -> dict[str, str]:
        return {
            "X-HubSpot-RateLimit-Daily": str(self.daily_max),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, self.daily_max - self._daily_used)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(INTERVAL_MS),
            "X-HubSpot-RateLimit-Max": str(self.burst_max),
            "X-HubSpot-RateLimit-Remaining": str(max(0, burst_remaining)),
        }

    def check(self, token: str, *, search: bool = False) -> Decision:
        """Count one request of ``token`` (refused requests are not counted)."""
        if not self.enabled:
            return Decision(True)
        now = time.monotonic()
        with self._lock:
            today = time.gmtime().tm_yday
            if today != self._day:  # the daily limit resets at midnight (UTC here)
                self._day = today
                self._daily_used = 0
            window = self._windows.setdefault(token, deque())
            while window and now - window[0] >= INTERVAL_MS / 1000:
                window.popleft()
            if self._daily_used >= self.daily_max:
                return Decision(False, {} if search else self._headers(self.burst_max - len(window)),
                                _limit_body("You have reached your daily limit.", "DAILY"))
            if search:
                # Search has its own limit and its responses carry no rate-limit headers (§3.3).
                while self._search and now - self._search[0] >= 1.0:
                    self._search.popleft()
                if len(self._search) >= self.search_per_second:
                    return Decision(False, {}, _limit_body("You have reached your secondly limit.", "SECONDLY"))
                self._search.append(now)
                self._daily_used += 1
                return Decision(True)
            if len(window) >= self.burst_max:
                return Decision(False, self._headers(0),
                                _limit_body("You have reached your ten_secondly_rolling limit.",
                                            "TEN_SECONDLY_ROLLING"))
            window.append(now)
            self._daily_used += 1
            return Decision(True, self._headers(self.burst_max - len(window)))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"tier": self.tier, "burst_max": self.burst_max, "daily_max": self.daily_max,
                    "daily_used": self._daily_used, "enabled": self.enabled,
                    "search_per_second": self.search_per_second}
