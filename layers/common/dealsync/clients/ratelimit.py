"""A client-side limiter so dealsync stays under HubSpot's burst and search limits instead of
collecting 429s (which HubSpot counts against an app). In-process; shared limits across
concurrent workers are a DynamoDB concern of the sync services."""

from __future__ import annotations

import threading
import time
from collections import deque

BURST_PER_TEN_SECONDS = {"free": 100, "starter": 100, "professional": 190, "enterprise": 190}
SEARCH_PER_SECOND = 5


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
