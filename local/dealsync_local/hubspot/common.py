"""Primitives shared by the HubSpot emulator's modules: object types, time formats, change sources,
change records and HubSpot's error bodies."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

# --- object types ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectType:
    name: str  # plural path name: "deals"
    singular: str  # "deal" (webhook subscription prefix, v3 association names)
    type_id: str  # "0-3"
    label: str  # "DEAL" (error messages, webhook association types)
    plural_label: str  # "Deals"
    modified_property: str  # the property holding the last-modified timestamp
    default_properties: tuple[str, ...]
    searchable: tuple[str, ...]  # properties the free-text ``query`` of search looks at
    id_base: int  # first id handed out


DEALS = ObjectType(
    "deals", "deal", "0-3", "DEAL", "Deals", "hs_lastmodifieddate",
    ("amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate", "hs_object_id",
     "pipeline"),
    ("dealname",), 9_000_000_001,
)
CONTACTS = ObjectType(
    "contacts", "contact", "0-1", "CONTACT", "Contacts", "lastmodifieddate",
    ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
    ("firstname", "lastname", "email", "phone", "company"), 1_001,
)
COMPANIES = ObjectType(
    "companies", "company", "0-2", "COMPANY", "Companies", "hs_lastmodifieddate",
    ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
    ("name", "domain", "phone"), 2_000_001,
)
OBJECT_TYPES: tuple[ObjectType, ...] = (DEALS, CONTACTS, COMPANIES)
_BY_ALIAS: dict[str, ObjectType] = {}
for _t in OBJECT_TYPES:
    for _alias in (_t.name, _t.singular, _t.type_id, _t.label.lower()):
        _BY_ALIAS[_alias] = _t


def find_object_type(alias: str) -> ObjectType | None:
    return _BY_ALIAS.get(alias.lower())


def object_type(alias: str) -> ObjectType:
    """The object type named by a path segment, or HubSpot's error for an unknown one."""
    found = find_object_type(alias)
    if found is None:
        raise HubSpotError(400, f"Unable to infer object type from: {alias}", "VALIDATION_ERROR")
    return found


# --- time ----------------------------------------------------------------------------------------

_clock_lock = threading.Lock()
_last_ms = 0


def now_ms() -> int:
    """Wall-clock milliseconds, strictly increasing within the process, so that two writes never
    share a timestamp (the sync compares them to decide which change is later)."""
    global _last_ms
    with _clock_lock:
        current = int(time.time() * 1000)
        if current <= _last_ms:
            current = _last_ms + 1
        _last_ms = current
        return current


def iso(ms: int) -> str:
    """ISO-8601 with milliseconds and ``Z``, as HubSpot writes timestamps."""
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_timestamp(value: str) -> int | None:
    """Epoch milliseconds from an epoch-ms string or an ISO-8601 date/datetime, else None."""
    text = value.strip()
    if not text:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            moment = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        else:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return round(moment.timestamp() * 1000)


# --- who changed something -------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A change source as HubSpot records it in property histories and webhook events."""

    change_source: str  # INTEGRATION | CRM_UI | IMPORT | CALCULATED
    source_id: str
    user_id: int | None = None

    @classmethod
    def integration(cls, app_id: int) -> Source:
        return cls("INTEGRATION", str(app_id))

    @classmethod
    def person(cls, user_id: int) -> Source:
        return cls("CRM_UI", f"userId:{user_id}", user_id)


IMPORT_SOURCE = Source("IMPORT", "")
CALCULATED_SOURCE = Source("CALCULATED", "")


@dataclass
class Change:
    """Something that happened to a record; the webhook dispatcher turns these into events."""

    kind: str  # creation | propertyChange | deletion | restore | merge | associationChange
    object_type: ObjectType
    object_id: int
    occurred_ms: int
    source: Source
    property_name: str | None = None
    property_value: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --- errors ------------------------------------------------------------------------------------

_STATUS_CATEGORY = {
    400: "VALIDATION_ERROR",
    401: "INVALID_AUTHENTICATION",
    403: "MISSING_SCOPES",
    404: "OBJECT_NOT_FOUND",
    405: "VALIDATION_ERROR",
    409: "CONFLICT",
    429: "RATE_LIMITS",
}


def default_category(status: int) -> str:
    return _STATUS_CATEGORY.get(status, "INTERNAL_ERROR" if status >= 500 else "VALIDATION_ERROR")


def correlation_id() -> str:
    return str(uuid.uuid4())


class HubSpotError(Exception):
    """An error HubSpot answers with: the status and the body fields of its ``Error`` schema."""

    def __init__(self, status: int, message: str, category: str | None = None, *,
                 sub_category: str | None = None, errors: list[dict[str, Any]] | None = None,
                 context: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.category = category or default_category(status)
        self.sub_category = sub_category
        self.errors = errors
        self.context = context

    def body(self) -> dict[str, Any]:
        """The top-level error body (spec schema ``Error``)."""
        body: dict[str, Any] = {"status": "error", "message": self.message,
                                "correlationId": correlation_id(), "category": self.category}
        if self.sub_category:
            body["subCategory"] = self.sub_category
        if self.errors:
            body["errors"] = self.errors
        if self.context:
            body["context"] = self.context
        return body

    def standard_error(self, trace_id: str | None = None) -> dict[str, Any]:
        """The error as an entry of a batch response's ``errors`` (spec schema ``StandardError``)."""
        context = dict(self.context or {})
        if trace_id is not None:
            context["objectWriteTraceId"] = [trace_id]
        entry: dict[str, Any] = {"status": "error", "category": self.category, "message": self.message,
                                 "context": context, "errors": list(self.errors or []), "links": {}}
        if self.sub_category:
            entry["subCategory"] = self.sub_category
        return entry


@dataclass(frozen=True)
class PropertyProblem:
    """One invalid property value, in the shape HubSpot lists inside "Property values were not valid"."""

    name: str
    code: str  # PROPERTY_DOESNT_EXIST | INVALID_OPTION | INVALID_DATE | READ_ONLY_VALUE | ...
    message: str


def property_error(problems: list[PropertyProblem], portal_id: int) -> HubSpotError:
    listed = [
        {"isValid": False, "message": p.message, "error": p.code, "name": p.name,
         "localizedErrorMessage": p.message, "portalId": portal_id}
        for p in problems
    ]
    message = "Property values were not valid: " + json.dumps(listed, separators=(",", ":"))
    details = [{"message": p.message, "code": p.code, "context": {"propertyName": [p.name]}} for p in problems]
    return HubSpotError(400, message, "VALIDATION_ERROR", errors=details)


def not_found(object_type: ObjectType, object_id: str) -> HubSpotError:
    return HubSpotError(404, "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND",
                        context={"id": [object_id], "objectType": [object_type.label]})
