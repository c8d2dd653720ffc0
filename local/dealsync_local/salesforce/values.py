"""Value formats: how the emulator stores field values and how each API renders them.

Stored values are already in REST JSON form: text as ``str``, numbers as ``float``/``int``, booleans,
dates as ``YYYY-MM-DD`` and datetimes as ``YYYY-MM-DDTHH:MM:SS.000+0000`` in UTC (second precision,
as Salesforce keeps them), so both compare correctly as strings.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from typing import Any

from dealsync_local.salesforce.schema import FieldDef

UTC = dt.UTC
_EPOCH_DATE = dt.date(1970, 1, 1)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)


class Clock:
    """Wall-clock time in UTC, second precision, with an adjustable offset for tests and demos."""

    def __init__(self, offset_seconds: float = 0.0) -> None:
        self.offset_seconds = offset_seconds
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            offset = self.offset_seconds
        moment = dt.datetime.now(UTC) + dt.timedelta(seconds=offset)
        return moment.replace(microsecond=0)

    def now_precise(self) -> dt.datetime:
        with self._lock:
            offset = self.offset_seconds
        return dt.datetime.now(UTC) + dt.timedelta(seconds=offset)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.offset_seconds += seconds


def format_datetime(moment: dt.datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> dt.datetime:
    """Parse the datetime forms Salesforce accepts (``...Z``, ``+hh:mm``, ``+hhmm``, ``.SSS``)."""
    match = _DATETIME_RE.match(text.strip())
    if not match:
        raise ValueError(text)
    day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    moment = dt.datetime.fromisoformat(day).replace(
        hour=int(hour), minute=int(minute), second=int(second or 0), microsecond=micro
    )
    if zone in (None, "Z"):
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        tz = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    return moment.replace(tzinfo=tz).astimezone(UTC)


def canonical_datetime(text: str) -> str:
    return format_datetime(parse_datetime(text))


def canonical_date(text: str) -> str:
    if not _DATE_RE.match(text):
        raise ValueError(text)
    return dt.date.fromisoformat(text).isoformat()


def datetime_from_stored(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")


_EPOCH_MS: dict[str, int] = {}


def epoch_ms(value: str) -> int:
    """Epoch milliseconds of a stored datetime (memoised: many records share a second)."""
    cached = _EPOCH_MS.get(value)
    if cached is None:
        moment = dt.datetime(int(value[0:4]), int(value[5:7]), int(value[8:10]), int(value[11:13]),
                             int(value[14:16]), int(value[17:19]), int(value[20:23]) * 1000, tzinfo=UTC)
        cached = int(moment.timestamp() * 1000)
        if len(_EPOCH_MS) > 100_000:
            _EPOCH_MS.clear()
        _EPOCH_MS[value] = cached
    return cached


def epoch_days(value: str) -> int:
    return (dt.date.fromisoformat(value) - _EPOCH_DATE).days


def soap_value(fdef: FieldDef, value: Any) -> str:
    """A value as text in a SOAP (Outbound Message) element."""
    if fdef.type == "boolean":
        return "true" if value else "false"
    if fdef.type == "datetime":
        return str(value)[:23] + "Z"
    return str(value)


def csv_value(fdef: FieldDef | None, value: Any) -> str:
    """A value in a Bulk API 2.0 CSV result."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if fdef is not None and fdef.type == "datetime":
        return str(value)[:23] + "Z"
    return str(value)


def cdc_value(fdef: FieldDef, value: Any) -> Any:
    """A value in a change event payload (Event Relay JSON from the Avro record): datetimes as epoch
    milliseconds, dates as days since the epoch, everything else as is."""
    if value is None:
        return None
    if fdef.type == "datetime":
        return epoch_ms(value)
    if fdef.type == "date":
        return epoch_days(value)
    return value
