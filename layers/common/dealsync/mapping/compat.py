"""HubSpot's compatibility table for custom mappings (DESIGN 1.2), checked when a mapping is created.

Inputs are plain dicts: a Salesforce describe field entry (`name, type, length, updateable,
createable, calculated, picklistValues`) and a HubSpot property (`name, type, fieldType, options,
calculated, referencedObjectType, modificationMetadata.readOnlyValue`), as HubSpot's JSON spells it or as
the SDK's `to_dict()` does (`field_type`, `modification_metadata.read_only_value`, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dealsync.mapping.fields import default_specs
from dealsync.mapping.values import ValueKind
from dealsync.models.domain import FieldMapping, SyncRule

# HubSpot fieldType -> the Salesforce types it can be mapped to.
COMPATIBLE_TYPES: dict[str, frozenset[str]] = {
    "select": frozenset({"picklist", "reference"}),
    "radio": frozenset({"picklist", "reference"}),
    "checkbox": frozenset({"multipicklist"}),
    "booleancheckbox": frozenset({"boolean"}),
    "number": frozenset({"double", "int", "currency", "percent"}),
    "text": frozenset({"string", "textarea", "email", "phone", "url"}),
    "textarea": frozenset({"textarea"}),
    "date": frozenset({"date", "datetime"}),
}
FIELD_TYPE_LABELS: dict[str, str] = {
    "select": "dropdown select",
    "radio": "radio select",
    "checkbox": "multiple checkboxes",
    "booleancheckbox": "single checkbox",
    "number": "number",
    "text": "single-line text",
    "textarea": "multi-line text",
    "date": "date picker",
}
# Written by the sync itself, never through a mapping.
RESERVED_SALESFORCE_FIELDS = frozenset({"id", "recordtypeid", "hubspot_deal_id__c", "systemmodstamp"})
RESERVED_HUBSPOT_PROPERTIES = frozenset({"hs_object_id", "pipeline", "salesforce_opportunity_id"})

_WRITES_SALESFORCE = frozenset({SyncRule.TWO_WAY, SyncRule.PREFER_SALESFORCE_UNLESS_BLANK})
_WRITES_HUBSPOT = frozenset({SyncRule.TWO_WAY, SyncRule.PREFER_SALESFORCE_UNLESS_BLANK, SyncRule.ALWAYS_SALESFORCE})


class MappingRefused(ValueError):  # noqa: N818 - the name says what happened to the request
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _hs(data: Mapping[str, Any], camel: str, snake: str) -> Any:
    """A HubSpot attribute under its JSON name or the SDK's snake_case one."""
    return data.get(camel, data.get(snake))


def hubspot_field_type(hs_property: Mapping[str, Any]) -> str:
    return str(_hs(hs_property, "fieldType", "field_type") or "")


def hubspot_is_read_only(hs_property: Mapping[str, Any]) -> bool:
    metadata = _hs(hs_property, "modificationMetadata", "modification_metadata") or {}
    return bool(
        _hs(metadata, "readOnlyValue", "read_only_value") or hs_property.get("calculated")
        or hubspot_field_type(hs_property) == "calculation_equation"
    )


def salesforce_is_writable(sf_field: Mapping[str, Any]) -> bool:
    return bool(sf_field.get("updateable")) and not sf_field.get("calculated")


def _is_user_property(hs_property: Mapping[str, Any]) -> bool:
    return str(_hs(hs_property, "referencedObjectType", "referenced_object_type") or "").upper() == "OWNER"


def check_mapping(
    mapping: FieldMapping,
    sf_field: Mapping[str, Any] | None,
    hs_property: Mapping[str, Any] | None,
    existing_mappings: Iterable[FieldMapping],
) -> None:
    """Refuse (MappingRefused, with a message for the operator) a mapping HubSpot would refuse.

    `sf_field`/`hs_property` are None when the field or property does not exist. `existing_mappings`
    are the stored ones; the default mappings are always counted as existing. Re-submitting an
    existing pair with another rule is a rule change and allowed (except owner: two-way only).
    """
    sf_name, hs_name, rule = mapping.salesforce_field, mapping.hubspot_property, mapping.rule
    builtin = {(spec.salesforce_field.lower(), spec.hubspot_property): spec
               for spec in default_specs(multi_currency=True)}
    builtin_spec = builtin.get((sf_name.lower(), hs_name))
    if builtin_spec is not None and builtin_spec.kind is ValueKind.OWNER and rule is not SyncRule.TWO_WAY:
        raise MappingRefused("The owner mapping (OwnerId ⇄ hubspot_owner_id) can only be two-way.")
    if sf_field is None:
        raise MappingRefused(f"Salesforce field {sf_name} does not exist on Opportunity or is not visible "
                             "to the integration user.")
    if hs_property is None:
        raise MappingRefused(f"HubSpot deal property {hs_name} does not exist.")
    if sf_name.lower() in RESERVED_SALESFORCE_FIELDS:
        raise MappingRefused(f"Salesforce field {sf_name} is managed by the sync and cannot be mapped.")
    if hs_name in RESERVED_HUBSPOT_PROPERTIES:
        raise MappingRefused(f"HubSpot property {hs_name} is managed by the sync and cannot be mapped.")

    _check_not_mapped_elsewhere(sf_name, hs_name, existing_mappings)
    if builtin_spec is None:
        _check_types(sf_name, hs_name, sf_field, hs_property)
    _check_directions(sf_name, hs_name, rule, sf_field, hs_property)


def _check_not_mapped_elsewhere(sf_name: str, hs_name: str, existing_mappings: Iterable[FieldMapping]) -> None:
    every = [*(spec.as_mapping() for spec in default_specs(multi_currency=True)), *existing_mappings]
    for other in every:
        same_sf = other.salesforce_field.lower() == sf_name.lower()
        same_hs = other.hubspot_property == hs_name
        if same_sf and same_hs:
            continue  # the same pair: a rule change
        if same_sf:
            raise MappingRefused(f"Salesforce field {sf_name} is already mapped to HubSpot property "
                                 f"{other.hubspot_property}.")
        if same_hs:
            raise MappingRefused(f"HubSpot property {hs_name} is already mapped to Salesforce field "
                                 f"{other.salesforce_field}.")


def _check_types(sf_name: str, hs_name: str, sf_field: Mapping[str, Any], hs_property: Mapping[str, Any]) -> None:
    field_type = hubspot_field_type(hs_property)
    sf_type = str(sf_field.get("type") or "")
    if _is_user_property(hs_property):
        raise MappingRefused(f"HubSpot property {hs_name} is a HubSpot user property; user properties cannot "
                             "be mapped.")
    allowed = COMPATIBLE_TYPES.get(field_type)
    if allowed is None:
        raise MappingRefused(f"HubSpot property {hs_name} has field type {field_type or 'unknown'}, which cannot "
                             "be mapped to Salesforce.")
    if sf_type not in allowed:
        label = FIELD_TYPE_LABELS[field_type]
        raise MappingRefused(f"HubSpot property {hs_name} ({label}) cannot be mapped to Salesforce field "
                             f"{sf_name} ({sf_type or 'unknown type'}): {label} maps to "
                             f"{' or '.join(sorted(allowed))} only.")


def _check_directions(
    sf_name: str, hs_name: str, rule: SyncRule, sf_field: Mapping[str, Any], hs_property: Mapping[str, Any]
) -> None:
    if rule in _WRITES_HUBSPOT and hubspot_is_read_only(hs_property):
        raise MappingRefused(f"HubSpot property {hs_name} is read-only, so rule {rule} cannot write Salesforce "
                             "values to it; use dont_sync.")
    if rule in _WRITES_SALESFORCE and not salesforce_is_writable(sf_field):
        raise MappingRefused(f"Salesforce field {sf_name} is read-only for the integration user, so rule {rule} "
                             "cannot write HubSpot values to it; use always_salesforce or dont_sync.")


# --- value maps (picklist ⇄ enumeration) --------------------------------------------------------

def salesforce_picklist_values(sf_field: Mapping[str, Any]) -> list[str]:
    """The active values of a Salesforce picklist (describe `picklistValues`), in Salesforce order."""
    return [str(entry["value"]) for entry in sf_field.get("picklistValues") or []
            if entry.get("active", True) and entry.get("value") is not None]


def hubspot_option_values(hs_property: Mapping[str, Any]) -> list[str]:
    """The option values of a HubSpot enumeration property, in display order (hidden options included:
    a record may still hold them)."""
    return [str(option["value"]) for option in hs_property.get("options") or [] if option.get("value") is not None]


def _match_key(text: object) -> str:
    return " ".join(str(text).split()).casefold()


def suggest_value_map(sf_field: Mapping[str, Any], hs_property: Mapping[str, Any]) -> dict[str, str]:
    """The value map a new picklist mapping starts with: each Salesforce value paired with the HubSpot option
    whose value, else label, is the same text (case and spacing aside). Values without a match stay
    unmapped (UNMAPPED_VALUE when met) until the operator maps them."""
    options = [option for option in hs_property.get("options") or [] if option.get("value") is not None]
    by_value = {_match_key(option["value"]): str(option["value"]) for option in reversed(options)}
    by_label = {_match_key(option.get("label") or ""): str(option["value"]) for option in reversed(options)}
    suggested: dict[str, str] = {}
    for entry in sf_field.get("picklistValues") or []:
        if not entry.get("active", True) or entry.get("value") is None:
            continue
        value = str(entry["value"])
        keys = [_match_key(value), _match_key(entry.get("label") or value)]
        match = next((by_value[key] for key in keys if key in by_value), None)
        match = match or next((by_label[key] for key in keys if key in by_label), None)
        if match is not None:
            suggested[value] = match
    return suggested


def check_value_pair(
    salesforce_field: str, hubspot_property: str, salesforce_value: str, hubspot_value: str,
    sf_field: Mapping[str, Any], hs_property: Mapping[str, Any],
) -> str:
    """Refuse a value-map entry naming a value that does not exist on either side; returns the HubSpot
    option value (the operator may give an option's label)."""
    sf_values = salesforce_picklist_values(sf_field)
    if salesforce_value not in sf_values:
        raise MappingRefused(f"{salesforce_value!r} is not a value of Salesforce picklist {salesforce_field} "
                             f"(values: {', '.join(sf_values) or 'none'}).")
    options = [option for option in hs_property.get("options") or [] if option.get("value") is not None]
    for option in options:
        if str(option["value"]) == hubspot_value:
            return hubspot_value
    for option in options:
        if str(option.get("label") or "") == hubspot_value:
            return str(option["value"])
    raise MappingRefused(f"{hubspot_value!r} is not an option of HubSpot property {hubspot_property} "
                         f"(options: {', '.join(str(option['value']) for option in options) or 'none'}).")
