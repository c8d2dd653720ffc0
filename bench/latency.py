"""Single-change latency, measured the same way by every benchmark: make one change, poll until the
other CRM shows it, repeat; report p50, p95 and max."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def measure(samples: int, change: Callable[[int], object], applied: Callable[[int], bool],
            what: str, timeout: float = 30.0) -> list[float]:
    """Seconds from ``change(n)`` until ``applied(n)`` holds, for n in range(samples), sorted."""
    latencies = []
    for n in range(samples):
        started = time.perf_counter()
        change(n)
        while not applied(n):
            if time.perf_counter() - started > timeout:
                raise SystemExit(f"{what} #{n} not applied within {timeout:.0f} s")
            time.sleep(0.01)
        latencies.append(time.perf_counter() - started)
    return sorted(latencies)


def summary(latencies: list[float]) -> dict[str, float | int]:
    """p50, p95 and max (seconds) of sorted latencies, and how many there were."""
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    return {"samples": len(latencies), "p50_seconds": round(statistics.median(latencies), 3),
            "p95_seconds": round(p95, 3), "max_seconds": round(latencies[-1], 3)}


def report(label: str, latencies: list[float]) -> dict[str, float | int]:
    """Print the summary under ``label`` and return it."""
    figures = summary(latencies)
    print(f"{label}, {len(latencies)} samples")
    print(f"  p50 {figures['p50_seconds']:.3f} s   p95 {figures['p95_seconds']:.3f} s   "
          f"max {figures['max_seconds']:.3f} s")
    return figures
