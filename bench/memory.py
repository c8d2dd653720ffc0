"""Peak memory of one phase of a benchmark: the process's peak resident set size (VmHWM), reset at the
start of the phase so the seeding before it does not count.

Linux resets VmHWM when "5" is written to /proc/self/clear_refs. Where that is not possible the figure is
the process's lifetime peak (``ru_maxrss``) and says so. Either way it is the whole process: in the local
world that is the emulators, moto and every handler together, not dealsync's code alone."""

from __future__ import annotations

import re
import resource
from dataclasses import dataclass
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        found = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) if found else None


@dataclass
class PhasePeak:
    """Start with :meth:`start`; :meth:`figures` gives the phase's peak RSS and its growth over the start."""

    reset: bool = False
    start_bytes: int = 0

    @classmethod
    def start(cls) -> PhasePeak:
        try:
            _CLEAR_REFS.write_text("5")
            reset = True
        except OSError:
            reset = False
        current = _status_kib("VmRSS")
        return cls(reset=reset, start_bytes=(current or 0) * 1024)

    def peak_bytes(self) -> int:
        high_water = _status_kib("VmHWM") if self.reset else None
        if high_water is not None:
            return high_water * 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def figures(self) -> dict[str, object]:
        peak = self.peak_bytes()
        return {"peak_rss_bytes": peak, "rss_growth_bytes": max(0, peak - self.start_bytes),
                "peak_rss_measure": "VmHWM reset at the phase start" if self.reset else "ru_maxrss (process lifetime)"}
