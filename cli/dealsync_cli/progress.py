"""Pure helpers for the progress line of ``dealsync import ... --wait``: a bar, the rate over a recent
window and the ETA, formatted to fit a terminal line."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

BAR_WIDTH = 24


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``1h02m``; ``--`` when unknown."""
    if seconds is None or seconds < 0 or seconds != seconds:  # NaN
        return "--"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    filled = int(fraction * width)
    return "#" * filled + "-" * (width - filled)


@dataclass
class RateMeter:
    """Records per second over the last ``window`` seconds of samples (time, records processed)."""

    window: float = 30.0
    samples: deque[tuple[float, int]] = field(default_factory=deque)

    def add(self, moment: float, processed: int) -> None:
        self.samples.append((moment, processed))
        while len(self.samples) > 2 and moment - self.samples[0][0] > self.window:
            self.samples.popleft()

    @property
    def rate(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (start, first), (end, last) = self.samples[0], self.samples[-1]
        if end <= start:
            return None
        return max(last - first, 0) / (end - start)

    def eta(self, remaining: int) -> float | None:
        if remaining <= 0:
            return 0.0
        rate = self.rate
        return remaining / rate if rate else None


def progress_line(kind: str, status: str, done: int, failed: int, total: int, rate: float | None,
                  eta: float | None, enumerating: bool = False) -> str:
    """``opportunities [#####-----]  420/1000  42%  failed 3  12.5/s  ETA 46s  running``."""
    processed = done + failed
    if enumerating:
        counts = f"{processed}/{total}+"
        percent = "  ? "
        fraction = 0.0
    else:
        counts = f"{processed}/{total}"
        fraction = processed / total if total else (1.0 if status == "completed" else 0.0)
        percent = f"{fraction * 100:3.0f}%"
    speed = f"{rate:.1f}/s" if rate is not None else "--/s"
    return (f"{kind} [{bar(fraction)}] {counts} {percent}  failed {failed}  {speed}  "
            f"ETA {format_duration(eta)}  {status}")
