"""Canonical values: the one text form in which the sync compares and stores (shadows) a field value.

Every mapped field value is turned into canonical text, or None for blank, before it is compared
with the other side or with the shadow; that is what makes an echo look like "no change". Per kind:

- TEXT: the text with CR/CRLF turned into LF; written unchanged both ways.
- DATE: `YYYY-MM-DD`. In: a date; any ISO-8601 datetime (`Z`, `+00:00`, Salesforce's `+0000`) or
  epoch milliseconds as its UTC date. Out: Salesforce `YYYY-MM-DD` (a datetime field gets midnight
  UTC); HubSpot midnight UTC ISO-8601 `YYYY-MM-DDT00:00:00Z` (DESIGN 1.2), good for HubSpot date and
  datetime properties alike.
- DATETIME: `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC, written as is to both.
- NUMBER: plain decimal, no exponent, no trailing zeros (`"100"`, `"0.25"`). Out: HubSpot the
  canonical text; Salesforce an int, or a float when fractional (JSON numbers).
- BOOLEAN: `"true"`/`"false"`, never blank. Out: Salesforce bool, HubSpot `"true"`/`"false"`.
- PICKLIST: the Salesforce value. HubSpot values go through the value map (Salesforce value ->
  HubSpot value) both ways; without a map values pass unchanged.
- MULTIPICKLIST: the Salesforce values, de-duplicated, sorted, `;`-joined (order-insensitive);
  HubSpot multiple checkboxes use the same `a;b` form, through the value map item by item.
- REFERENCE: the id, 15-character Salesforce ids extended to 18.

Decisions worth knowing:
- "" and None (and whitespace-only text) are both blank: None.
- Numbers keep no trailing zeros, currency included: `1500`, `1500.0` and `1500.00` are one value, and
  HubSpot gets `"1500"` (its number properties carry no scale). HubSpot values are rounded to the
  Salesforce field's scale (ROUND_HALF_UP) before they are compared or written: see `fit_for_salesforce`.
- A HubSpot boolean that was never set is `"false"`: a Salesforce checkbox cannot be blank, so an unset
  HubSpot checkbox and an unchecked Salesforce one agree.
- HubSpot date values that are not at midnight UTC (deal `closedate` may be a datetime) become their UTC date.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum

from dealsync.models.domain import ErrorCategory, ShadowValue

# A value as a Salesforce REST body carries it.
SalesforceValue = str | int | float | bool | None

# Salesforce value -> HubSpot value (DESIGN 1.2 "value map"); None means the values pass unchanged.
ValueMap = Mapping[str, str]


class ValueKind(StrEnum):
    """How a mapped field's values are compared; derived from the Salesforce and HubSpot types."""

    TEXT = "text"
    DATE = "date"
    DATETIME = "datetime"
    NUMBER = "number"
    BOOLEAN = "boolean"
    PICKLIST = "picklist"
    MULTIPICKLIST = "multipicklist"
    REFERENCE = "reference"
    OWNER = "owner"  # OwnerId ⇄ hubspot_owner_id, matched by e-mail (owners.py)
    STAGE = "stage"  # StageName + RecordTypeId ⇄ dealstage + pipeline (stages.py)


class ConversionError(ValueError):
    """A value that cannot be carried to the other side; `category` is the sync-error category to record."""

    def __init__(self, message: str, *, category: ErrorCategory) -> None:
        super().__init__(message)
        self.message = message
        self.category = category


class UnmappedValueError(ConversionError):
    def __init__(self, message: str) -> None:
        super().__init__(message, category=ErrorCategory.UNMAPPED_VALUE)


@dataclass(frozen=True, eq=False)
class Unconvertible:
    """A side's current value that has no canonical form (e.g. an unmapped HubSpot option).

    It equals nothing (not even another Unconvertible), so a side holding one has always "changed";
    the sync can overwrite it but never copy it.
    """

    error: ConversionError


# What the sync compares per side: canonical text, None for blank, or a value it cannot carry.
FieldValue = ShadowValue | Unconvertible


def is_blank(value: FieldValue) -> bool:
    return value is None


# --- text -------------------------------------------------------------------------------------

def canonical_text(raw: object) -> ShadowValue:
    if raw is None:
        return None
    text = str(raw).replace("\r\n", "\n").replace("\r", "\n")
    return text if text.strip() else None


def truncate_text(value: ShadowValue, length: int | None) -> tuple[ShadowValue, bool]:
    """Cut text to a Salesforce field length; returns the text and whether it was cut."""
    if value is None or length is None or len(value) <= length:
        return value, False
    return value[:length], True


# --- ids --------------------------------------------------------------------------------------

_ID_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID15 = re.compile(r"^[a-zA-Z0-9]{15}$")


def sf_id_18(value: str) -> str:
    """The case-safe 18-character form of a Salesforce id; other strings are returned unchanged."""
    if not _ID15.match(value):
        return value
    suffix = ""
    for block in range(3):
        bits = 0
        for position, char in enumerate(value[block * 5 : block * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix += _ID_SUFFIX_ALPHABET[bits]
    return value + suffix


def canonical_reference(raw: object) -> ShadowValue:
    text = canonical_text(raw)
    return sf_id_18(text.strip()) if text is not None else None


# --- dates and datetimes ----------------------------------------------------------------------

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EPOCH_MS = re.compile(r"^-?\d+$")
# Salesforce writes offsets without a colon (`+0000`); fromisoformat wants `+00:00`.
_COLONLESS_OFFSET = re.compile(r"([+-]\d{2})(\d{2})$")


def parse_datetime(raw: object) -> datetime:
    """An aware UTC datetime from ISO-8601 (any offset, `Z`, `+0000`), epoch milliseconds, or a date."""
    if isinstance(raw, datetime):
        moment = raw
    elif isinstance(raw, bool):
        raise ValueError(f"not a date or time: {raw!r}")
    elif isinstance(raw, int):
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=raw)
    elif isinstance(raw, date):
        moment = datetime(raw.year, raw.month, raw.day, tzinfo=UTC)
    else:
        text = str(raw).strip()
        if _EPOCH_MS.match(text):
            moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(text))
        else:
            text = _COLONLESS_OFFSET.sub(r"\1:\2", text.replace("z", "Z"))
            moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def canonical_date(raw: object) -> ShadowValue:
    """`YYYY-MM-DD`: a date as is, any datetime or epoch-ms value as its UTC date."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, str) and _DATE_ONLY.match(raw.strip()):
        return date.fromisoformat(raw.strip()).isoformat()
    if isinstance(raw, date) and not isinstance(raw, datetime):
        return raw.isoformat()
    return parse_datetime(raw).date().isoformat()


def format_datetime(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC: valid for both Salesforce and HubSpot."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def canonical_datetime(raw: object) -> ShadowValue:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    return format_datetime(parse_datetime(raw))


def date_to_hubspot(value: str) -> str:
    """Midnight UTC as ISO-8601 (DESIGN 1.2), accepted by HubSpot date and datetime properties alike."""
    return f"{date.fromisoformat(value).isoformat()}T00:00:00Z"


def date_to_epoch_ms(value: str) -> int:
    day = date.fromisoformat(value)
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000


# --- numbers ----------------------------------------------------------------------------------

def parse_decimal(raw: object) -> Decimal:
    if isinstance(raw, bool):
        raise ValueError(f"not a number: {raw!r}")
    try:
        number = raw if isinstance(raw, Decimal) else Decimal(str(raw).strip())
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {raw!r}") from exc
    if not number.is_finite():
        raise ValueError(f"not a finite number: {raw!r}")
    return number


def format_decimal(number: Decimal) -> str:
    """Plain notation without trailing zeros or exponent; -0 is 0."""
    text = format(number.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def canonical_number(raw: object) -> ShadowValue:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    return format_decimal(parse_decimal(raw))


def round_to_scale(value: str, scale: int) -> str:
    quantum = Decimal(1).scaleb(-scale)
    return format_decimal(Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP))


def number_to_salesforce(value: str) -> int | float:
    number = Decimal(value)
    return int(number) if number == number.to_integral_value() else float(value)


# --- booleans ---------------------------------------------------------------------------------

def canonical_boolean(raw: object) -> str:
    """Never blank: an unset checkbox is unchecked."""
    if raw is None:
        return "false"
    if isinstance(raw, bool):
        return "true" if raw else "false"
    text = str(raw).strip().lower()
    if text in ("true", "false"):
        return text
    if text == "":
        return "false"
    raise ValueError(f"not a boolean: {raw!r}")


# --- picklists --------------------------------------------------------------------------------

def reverse_value_map(value_map: ValueMap) -> dict[str, str]:
    """HubSpot value -> Salesforce value; when two Salesforce values share one HubSpot value, the first wins."""
    reverse: dict[str, str] = {}
    for salesforce_value, hubspot_value in value_map.items():
        reverse.setdefault(hubspot_value, salesforce_value)
    return reverse


def picklist_to_hubspot(value: str, value_map: ValueMap | None, field: str = "") -> str:
    if value_map is None:
        return value
    if value not in value_map:
        raise UnmappedValueError(
            f"Salesforce value {value!r} of {field or 'the field'} has no HubSpot value in the value map")
    return value_map[value]


def picklist_from_hubspot(value: str, value_map: ValueMap | None, field: str = "") -> str:
    if value_map is None:
        return value
    reverse = reverse_value_map(value_map)
    if value not in reverse:
        raise UnmappedValueError(
            f"HubSpot value {value!r} of {field or 'the field'} has no Salesforce value in the value map")
    return reverse[value]


def split_multipicklist(value: str) -> list[str]:
    return [item.strip() for item in value.split(";") if item.strip()]


def join_multipicklist(items: list[str]) -> ShadowValue:
    """Order-insensitive: de-duplicated and sorted."""
    unique = sorted(set(items))
    return ";".join(unique) if unique else None


# --- by kind ----------------------------------------------------------------------------------

def canonical_from_salesforce(kind: ValueKind, raw: object) -> ShadowValue:
    """A Salesforce field value in canonical form (picklists are already in Salesforce's vocabulary)."""
    match kind:
        case ValueKind.DATE:
            return canonical_date(raw)
        case ValueKind.DATETIME:
            return canonical_datetime(raw)
        case ValueKind.NUMBER:
            return canonical_number(raw)
        case ValueKind.BOOLEAN:
            return canonical_boolean(raw)
        case ValueKind.MULTIPICKLIST:
            text = canonical_text(raw)
            return join_multipicklist(split_multipicklist(text)) if text is not None else None
        case ValueKind.REFERENCE | ValueKind.OWNER:
            return canonical_reference(raw)
        case ValueKind.PICKLIST:
            text = canonical_text(raw)
            return text.strip() if text is not None else None
        case _:
            return canonical_text(raw)


def canonical_from_hubspot(
    kind: ValueKind, raw: object, value_map: ValueMap | None = None, field: str = ""
) -> ShadowValue:
    """A HubSpot property value in canonical form; raises ValueError (UnmappedValueError for value maps)."""
    match kind:
        case ValueKind.PICKLIST:
            text = canonical_text(raw)
            return picklist_from_hubspot(text.strip(), value_map, field) if text is not None else None
        case ValueKind.MULTIPICKLIST:
            text = canonical_text(raw)
            if text is None:
                return None
            items = split_multipicklist(text)
            return join_multipicklist([picklist_from_hubspot(item, value_map, field) for item in items])
        case _:
            return canonical_from_salesforce(kind, raw)


def to_salesforce(kind: ValueKind, value: ShadowValue, *, salesforce_type: str = "") -> SalesforceValue:
    """A canonical value as a Salesforce REST body carries it (None clears the field)."""
    if value is None:
        return None
    match kind:
        case ValueKind.DATE:
            return f"{value}T00:00:00.000Z" if salesforce_type == "datetime" else value
        case ValueKind.NUMBER:
            return number_to_salesforce(value)
        case ValueKind.BOOLEAN:
            return value == "true"
        case _:
            return value


def to_hubspot(kind: ValueKind, value: ShadowValue, value_map: ValueMap | None = None, field: str = "") -> str:
    """A canonical value as a HubSpot property value ("" clears it); raises UnmappedValueError."""
    if value is None:
        return ""
    match kind:
        case ValueKind.DATE:
            return date_to_hubspot(value)
        case ValueKind.PICKLIST:
            return picklist_to_hubspot(value, value_map, field)
        case ValueKind.MULTIPICKLIST:
            items = [picklist_to_hubspot(item, value_map, field) for item in split_multipicklist(value)]
            return ";".join(sorted(set(items)))
        case _:
            return value


def fit_for_salesforce(
    kind: ValueKind, value: ShadowValue, *, length: int | None = None, scale: int | None = None
) -> tuple[ShadowValue, bool]:
    """What Salesforce would store for a value: text cut to the field length, numbers rounded to its scale.

    HubSpot values are fitted before they are compared, so a 150-character deal name equals the
    120-character opportunity name it was cut to and does not look like a change forever after.
    Returns the fitted value and whether text was truncated (which the sync reports as a warning).
    """
    if value is None:
        return None, False
    if kind is ValueKind.TEXT:
        return truncate_text(value, length)
    if kind is ValueKind.NUMBER and scale is not None:
        return round_to_scale(value, scale), False
    return value, False


_NUMBER_TYPES = frozenset({"double", "int", "currency", "percent", "long"})
_TEXT_TYPES = frozenset({"string", "textarea", "email", "phone", "url"})


def kind_for_types(salesforce_type: str, hubspot_type: str = "") -> ValueKind:
    """The kind a custom mapping compares in, from the Salesforce describe type and HubSpot property `type`.

    A Salesforce datetime mapped to a HubSpot `date` property compares as a date (its UTC date).
    """
    match salesforce_type:
        case "picklist":
            return ValueKind.PICKLIST
        case "multipicklist":
            return ValueKind.MULTIPICKLIST
        case "reference":
            return ValueKind.REFERENCE
        case "boolean":
            return ValueKind.BOOLEAN
        case "date":
            return ValueKind.DATE
        case "datetime":
            return ValueKind.DATE if hubspot_type == "date" else ValueKind.DATETIME
        case t if t in _NUMBER_TYPES:
            return ValueKind.NUMBER
        case t if t in _TEXT_TYPES:
            return ValueKind.TEXT
    raise ValueError(f"Salesforce type {salesforce_type!r} cannot be synced")
