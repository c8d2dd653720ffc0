"""Property definitions, property groups and value validation (HubSpot's properties API and the
rules it applies to every write)."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dealsync_local.hubspot.common import (
    COMPANIES,
    CONTACTS,
    DEALS,
    HubSpotError,
    ObjectType,
    PropertyProblem,
    iso,
    parse_timestamp,
)

TYPES = ("bool", "date", "datetime", "enumeration", "number", "phone_number", "string")
FIELD_TYPES_BY_TYPE: dict[str, tuple[str, ...]] = {
    "string": ("text", "textarea", "html", "phonenumber", "file"),
    "number": ("number", "calculation_equation"),
    "enumeration": ("select", "radio", "checkbox", "booleancheckbox"),
    "bool": ("booleancheckbox", "radio", "select"),
    "date": ("date",),
    "datetime": ("date",),
    "phone_number": ("phonenumber", "text"),
}
ROLLUP_PROPERTIES = ("num_associated_deals", "first_deal_created_date", "recent_deal_close_date",
                     "recent_deal_amount", "total_revenue")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class InvalidValue(Exception):  # noqa: N818 - carries a PropertyProblem, not a Python error
    def __init__(self, problem: PropertyProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclass
class Option:
    label: str
    value: str
    display_order: int = 0
    hidden: bool = False
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "value": self.value, "displayOrder": self.display_order,
                "hidden": self.hidden, "description": self.description}

    @classmethod
    def from_json(cls, data: dict[str, Any], position: int) -> Option:
        if not isinstance(data, dict) or "label" not in data or "value" not in data:
            raise HubSpotError(400, "Each option needs a label and a value", "VALIDATION_ERROR")
        return cls(str(data["label"]), str(data["value"]), int(data.get("displayOrder", position)),
                   bool(data.get("hidden", False)), str(data.get("description") or ""))


@dataclass
class PropertyDef:
    name: str
    label: str
    type: str
    field_type: str
    group_name: str
    description: str = ""
    options: list[Option] = field(default_factory=list)
    display_order: int = -1
    has_unique_value: bool = False
    hidden: bool = False
    hubspot_defined: bool = True
    calculated: bool = False
    read_only_value: bool = False
    read_only_definition: bool = True
    archivable: bool = False
    form_field: bool = False
    external_options: bool = False
    referenced_object_type: str | None = None
    dynamic: str | None = None  # "pipeline" | "dealstage" | "owner": options live elsewhere
    number_display_hint: str | None = None
    created_ms: int = 0
    updated_ms: int = 0
    archived: bool = False
    archived_ms: int | None = None

    def to_json(self, options: list[Option] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name, "label": self.label, "type": self.type, "fieldType": self.field_type,
            "description": self.description, "groupName": self.group_name,
            "options": [o.to_json() for o in (options if options is not None else self.options)],
            "displayOrder": self.display_order, "calculated": self.calculated,
            "externalOptions": self.external_options, "hasUniqueValue": self.has_unique_value,
            "hidden": self.hidden, "hubspotDefined": self.hubspot_defined,
            "modificationMetadata": {"archivable": self.archivable,
                                     "readOnlyDefinition": self.read_only_definition,
                                     "readOnlyValue": self.read_only_value},
            "formField": self.form_field, "dataSensitivity": "non_sensitive",
            "createdAt": iso(self.created_ms), "updatedAt": iso(self.updated_ms), "archived": self.archived,
        }
        if self.referenced_object_type:
            body["referencedObjectType"] = self.referenced_object_type
        if self.number_display_hint:
            body["numberDisplayHint"] = self.number_display_hint
        if self.archived_ms is not None:
            body["archivedAt"] = iso(self.archived_ms)
        return body


@dataclass
class PropertyGroup:
    name: str
    label: str
    display_order: int = -1
    archived: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "displayOrder": self.display_order,
                "archived": self.archived}


def _opts(*pairs: tuple[str, str]) -> list[Option]:
    return [Option(label, value, i) for i, (value, label) in enumerate(pairs)]


CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD", "JPY", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF",
              "NZD", "SGD", "HKD", "CNY", "INR", "BRL", "MXN", "ZAR", "ILS", "AED", "KRW", "TRY")
LIFECYCLE_STAGES = (("subscriber", "Subscriber"), ("lead", "Lead"),
                    ("marketingqualifiedlead", "Marketing Qualified Lead"),
                    ("salesqualifiedlead", "Sales Qualified Lead"), ("opportunity", "Opportunity"),
                    ("customer", "Customer"), ("evangelist", "Evangelist"), ("other", "Other"))


def _p(name: str, label: str, type_: str, field_type: str, group: str, **kw: Any) -> PropertyDef:
    return PropertyDef(name, label, type_, field_type, group, **kw)


def default_properties(object_type: ObjectType, created_ms: int, *, closedate_type: str = "datetime",
                       readonly_rollups: bool = False) -> dict[str, PropertyDef]:
    """HubSpot's default properties of an object type (the subset dealsync and the demos use)."""
    ro = {"read_only_value": True, "calculated": False}
    calc = {"read_only_value": True, "calculated": True}
    defs: list[PropertyDef]
    owner = _p("hubspot_owner_id", "Owner", "enumeration", "select", "", dynamic="owner",
               external_options=True, referenced_object_type="OWNER", form_field=True)
    if object_type is DEALS:
        g = "dealinformation"
        defs = [
            _p("dealname", "Deal Name", "string", "text", g, form_field=True),
            _p("amount", "Amount", "number", "number", g, number_display_hint="currency", form_field=True),
            _p("closedate", "Close Date", closedate_type, "date", g, form_field=True),
            _p("dealstage", "Deal Stage", "enumeration", "radio", g, dynamic="dealstage", form_field=True),
            _p("pipeline", "Pipeline", "enumeration", "select", g, dynamic="pipeline", form_field=True),
            _p("dealtype", "Deal Type", "enumeration", "radio", g, form_field=True,
               options=_opts(("newbusiness", "New Business"), ("existingbusiness", "Existing Business"))),
            _p("description", "Deal Description", "string", "textarea", g, form_field=True),
            _p("deal_currency_code", "Currency", "enumeration", "select", g,
               options=_opts(*((c, c) for c in CURRENCIES))),
            _p("closed_won_reason", "Closed Won Reason", "string", "textarea", g),
            _p("closed_lost_reason", "Closed Lost Reason", "string", "textarea", g),
            _p("hs_priority", "Priority", "enumeration", "select", g,
               options=_opts(("low", "Low"), ("medium", "Medium"), ("high", "High"))),
            _p("createdate", "Create Date", "datetime", "date", g),
            _p("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", g, **ro),
            _p("hs_object_id", "Record ID", "number", "number", g, **ro),
            _p("hs_is_closed", "Is Deal Closed?", "bool", "booleancheckbox", g, **calc,
               options=_opts(("true", "True"), ("false", "False"))),
            _p("hs_is_closed_won", "Is Closed Won", "bool", "booleancheckbox", g, **calc,
               options=_opts(("true", "True"), ("false", "False"))),
            _p("hs_is_closed_lost", "Is Closed Lost", "bool", "booleancheckbox", g, **calc,
               options=_opts(("true", "True"), ("false", "False"))),
            _p("hs_deal_stage_probability", "Deal probability", "number", "number", g, **calc),
            _p("num_associated_contacts", "Number of Associated Contacts", "number", "number", g, **calc),
            _p("hs_merged_object_ids", "Merged Deal IDs", "enumeration", "checkbox", g, **ro),
        ]
        owner.group_name = g
        owner.label = "Deal owner"
        defs.insert(5, owner)
    elif object_type is CONTACTS:
        g = "contactinformation"
        rollup = {"read_only_value": readonly_rollups, "calculated": readonly_rollups}
        defs = [
            _p("email", "Email", "string", "text", g, has_unique_value=True, form_field=True),
            _p("firstname", "First Name", "string", "text", g, form_field=True),
            _p("lastname", "Last Name", "string", "text", g, form_field=True),
            _p("phone", "Phone Number", "string", "phonenumber", g, form_field=True),
            _p("company", "Company Name", "string", "text", g, form_field=True),
            _p("jobtitle", "Job Title", "string", "text", g, form_field=True),
            _p("lifecyclestage", "Lifecycle Stage", "enumeration", "radio", g,
               options=_opts(*LIFECYCLE_STAGES)),
            _p("num_associated_deals", "Number of Associated Deals", "number", "number", "deal_information",
               **rollup),
            _p("first_deal_created_date", "First Deal Created Date", "datetime", "date", "deal_information",
               **rollup),
            _p("recent_deal_close_date", "Recent Deal Close Date", "datetime", "date", "deal_information",
               **rollup),
            _p("recent_deal_amount", "Recent Deal Amount", "number", "number", "deal_information",
               number_display_hint="currency", **rollup),
            _p("total_revenue", "Total Revenue", "number", "number", "deal_information",
               number_display_hint="currency", **rollup),
            _p("createdate", "Create Date", "datetime", "date", g),
            _p("lastmodifieddate", "Last Modified Date", "datetime", "date", g, **ro),
            _p("hs_lastmodifieddate", "Object last modified date/time", "datetime", "date", g, **ro),
            _p("hs_object_id", "Record ID", "number", "number", g, **ro),
            _p("hs_merged_object_ids", "Merged Contact IDs", "enumeration", "checkbox", g, **ro),
        ]
        owner.group_name = g
        owner.label = "Contact owner"
        defs.insert(7, owner)
    elif object_type is COMPANIES:
        g = "companyinformation"
        defs = [
            _p("name", "Company name", "string", "text", g, form_field=True),
            _p("domain", "Company Domain Name", "string", "text", g, form_field=True),
            _p("phone", "Phone Number", "string", "phonenumber", g),
            _p("city", "City", "string", "text", g),
            _p("country", "Country/Region", "string", "text", g),
            _p("industry", "Industry", "string", "text", g),
            _p("createdate", "Create Date", "datetime", "date", g),
            _p("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", g, **ro),
            _p("hs_object_id", "Record ID", "number", "number", g, **ro),
            _p("hs_merged_object_ids", "Merged Company IDs", "enumeration", "checkbox", g, **ro),
        ]
        owner.group_name = g
        owner.label = "Company owner"
        defs.insert(2, owner)
    else:  # pragma: no cover - only the three types exist
        raise ValueError(object_type.name)
    out: dict[str, PropertyDef] = {}
    for order, prop in enumerate(defs):
        prop.display_order = order
        prop.created_ms = prop.updated_ms = created_ms
        out[prop.name] = prop
    return out


def default_groups(object_type: ObjectType) -> dict[str, PropertyGroup]:
    groups = {
        DEALS.name: [PropertyGroup("dealinformation", "Deal information", 0)],
        CONTACTS.name: [PropertyGroup("contactinformation", "Contact information", 0),
                        PropertyGroup("deal_information", "Deal information", 1)],
        COMPANIES.name: [PropertyGroup("companyinformation", "Company information", 0)],
    }[object_type.name]
    return {g.name: g for g in groups}


# --- values --------------------------------------------------------------------------------------


def _fail(name: str, code: str, message: str) -> InvalidValue:
    return InvalidValue(PropertyProblem(name, code, message))


def raw_to_text(raw: Any) -> str:
    if raw is None:
        return ""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw)


def normalize_value(prop: PropertyDef, raw: Any,
                    options: Callable[[], Iterable[str]] | None = None) -> str:
    """The value HubSpot stores for ``raw`` written to ``prop``; raises :class:`InvalidValue`.

    An empty value clears the property. Enumerations with dynamic options (owners, pipelines,
    stages) are checked by the store, not here, unless ``options`` is given.
    """
    text = raw_to_text(raw)
    name = prop.name
    if text == "":
        return ""
    kind = prop.type
    if kind == "number":
        stripped = text.strip()
        if not _NUMBER.match(stripped) or not math.isfinite(float(stripped)):
            raise _fail(name, "INVALID_INTEGER" if "." not in stripped else "INVALID_DOUBLE",
                        f"{text} was not a valid number.")
        return stripped
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise _fail(name, "INVALID_BOOLEAN", f"{text} was not a valid boolean (true or false).")
        return lowered
    if kind == "datetime":
        ms = parse_timestamp(text)
        if ms is None:
            raise _fail(name, "INVALID_DATETIME",
                        f"{text} was not a valid datetime. Use ISO 8601 or epoch milliseconds.")
        return iso(ms)
    if kind == "date":
        ms = parse_timestamp(text)
        if ms is None:
            raise _fail(name, "INVALID_DATE", f"{text} was not a valid date. Use YYYY-MM-DD or epoch milliseconds "
                                              "at midnight UTC.")
        rest = ms % 86_400_000
        if rest:
            hours, rem = divmod(rest, 3_600_000)
            minutes, rem = divmod(rem, 60_000)
            seconds, millis = divmod(rem, 1000)
            raise _fail(name, "INVALID_DATE",
                        f"{text} is at {hours}:{minutes}:{seconds}.{millis} UTC, not midnight!")
        return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).date().isoformat()
    if kind == "enumeration":
        allowed: Iterable[str] | None = None
        if options is not None:
            allowed = list(options())
        elif prop.dynamic is None:
            allowed = [o.value for o in prop.options]
        if allowed is None:
            return text
        allowed_set = set(allowed)
        parts = text.split(";") if prop.field_type == "checkbox" else [text]
        for part in parts:
            if part not in allowed_set:
                shown = ", ".join(list(allowed)[:50])
                raise _fail(name, "INVALID_OPTION", f"{part} was not one of the allowed options: [{shown}]")
        return text
    if name == "email":
        lowered = text.strip().lower()
        if not _EMAIL.match(lowered):
            raise _fail(name, "INVALID_EMAIL", f"Email address {text} is invalid")
        return lowered
    return text


def check_definition(type_: str, field_type: str) -> None:
    if type_ not in TYPES:
        raise HubSpotError(400, f"Invalid property type '{type_}'. Valid types: {', '.join(TYPES)}",
                           "VALIDATION_ERROR")
    if field_type not in FIELD_TYPES_BY_TYPE[type_]:
        raise HubSpotError(
            400, f"Property fieldType '{field_type}' is not compatible with type '{type_}'. Compatible "
                 f"field types: {', '.join(FIELD_TYPES_BY_TYPE[type_])}", "VALIDATION_ERROR")
