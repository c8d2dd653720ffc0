"""Salesforce record ids: key prefixes, the 15→18 character case-safe suffix, and an id factory.

An id is ``prefix(3) + pod(2) + reserved(1) + sequence(9)`` (15 case-sensitive characters) plus a
3-character suffix that encodes which of the 15 characters are upper case, so the 18-character form
is unique case-insensitively (reference §1.6).
"""

from __future__ import annotations

import itertools
import threading

KEY_PREFIXES: dict[str, str] = {
    "Organization": "00D",
    "User": "005",
    "Account": "001",
    "Contact": "003",
    "Opportunity": "006",
    "OpportunityContactRole": "00K",
    "OpportunityStage": "01J",
    "RecordType": "012",
    "BusinessProcess": "019",
    "OpportunityFieldHistory": "017",
}
PREFIX_TO_OBJECT: dict[str, str] = {prefix: name for name, prefix in KEY_PREFIXES.items()}

QUERY_LOCATOR_PREFIX = "01g"
BULK_JOB_PREFIX = "750"
OUTBOUND_ACTION_PREFIX = "04k"
OUTBOUND_NOTIFICATION_PREFIX = "04l"
RELAY_CHANNEL_PREFIX = "0YL"

MASTER_RECORD_TYPE_ID = "012000000000000AAA"

_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ALNUM = frozenset(_BASE62)


def checksum(id15: str) -> str:
    """The 3-character case-safe suffix of a 15-character id."""
    suffix = []
    for block in range(3):
        bits = 0
        for position, char in enumerate(id15[block * 5 : block * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix.append(_SUFFIX_ALPHABET[bits])
    return "".join(suffix)


def to18(id15: str) -> str:
    return id15 + checksum(id15)


_NORMALIZED: dict[str, str | None] = {}


def normalize_id(value: object) -> str | None:
    """The canonical 18-character form of a 15- or 18-character id, or None if it is not an id
    (memoised: the same ids are normalised over and over)."""
    if not isinstance(value, str):
        return None
    cached = _NORMALIZED.get(value, _MISSING)
    if cached is not _MISSING:
        return cached  # type: ignore[return-value]
    result = _normalize_id(value)
    if len(_NORMALIZED) > 500_000:
        _NORMALIZED.clear()
    _NORMALIZED[value] = result
    return result


_MISSING = object()


def _normalize_id(value: str) -> str | None:
    """The canonical 18-character form of a 15- or 18-character id, or None if it is not an id.

    An 18-character id is accepted in any letter case: its suffix says which characters are upper
    case, exactly as Salesforce reads it.
    """
    if len(value) not in (15, 18) or not set(value) <= _ALNUM:
        return None
    if len(value) == 15:
        return value + checksum(value)
    suffix = value[15:].upper()
    chars = list(value[:15])
    for block, code in enumerate(suffix):
        bits = _SUFFIX_ALPHABET.find(code)
        if bits < 0:
            return None
        for position in range(5):
            index = block * 5 + position
            char = chars[index]
            if bits & (1 << position):
                if not char.isalpha():
                    return None
                chars[index] = char.upper()
            elif char.isalpha():
                chars[index] = char.lower()
    id15 = "".join(chars)
    return id15 + checksum(id15)


def base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(_BASE62[remainder])
    text = "".join(reversed(digits)) or "0"
    if len(text) > width:
        raise ValueError(f"{number} does not fit in {width} base-62 digits")
    return text.rjust(width, "0")


class IdFactory:
    """Sequential ids per key prefix, like a single Salesforce pod hands them out."""

    def __init__(self, pod: str = "8d", start: int = 1) -> None:
        if len(pod) != 2 or not set(pod) <= _ALNUM:
            raise ValueError("pod must be two alphanumeric characters")
        self.pod = pod
        self._start = start
        self._counters: dict[str, itertools.count[int]] = {}
        self._lock = threading.Lock()

    def next(self, prefix: str) -> str:
        with self._lock:
            counter = self._counters.get(prefix)
            if counter is None:
                counter = self._counters[prefix] = itertools.count(self._start)
            number = next(counter)
        return to18(prefix + self.pod + "0" + base62(number, 9))

    def reset(self) -> None:
        with self._lock:
            self._counters.clear()

    def skip_past(self, id18: str) -> None:
        """Make sure ids given by a loader are never handed out again."""
        prefix, pod, body = id18[:3], id18[3:5], id18[6:15]
        if pod != self.pod or not set(body) <= _ALNUM:
            return
        number = 0
        for char in body:
            number = number * 62 + _BASE62.index(char)
        with self._lock:
            counter = self._counters.get(prefix)
            current = next(counter) if counter is not None else self._start
            self._counters[prefix] = itertools.count(max(current, number + 1))
