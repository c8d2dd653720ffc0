"""HubSpot's compatibility table for custom mappings (DESIGN 1.2), checked when a mapping is created.

Inputs are plain dicts: a Salesforce describe field entry (`name, type, length, updateable,
createable, calculated, picklistValues`) and a HubSpot property (`name, type, fieldType, options,
calculated, referencedObjectType, modificationMetadata.readOnlyValue`).
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


def hubspot_is_read_only(hs_property: Mapping[str, Any]) -> bool:
    metadata = hs_property.get("modificationMetadata") or {}
    return bool(
        metadata.get("readOnlyValue") or hs_property.get("calculated")
        or hs_property.get("fieldType") == "calculation_equation"
    )


def salesforce_is_writable(sf_field: Mapping[str, Any]) -> bool:
    return bool(sf_field.get("updateable")) and not sf_field.get("calculated")


def _is_user_property(hs_property: Mapping[str, Any]) -> bool:
    return str(hs_property.get("referencedObjectType") or "").upper() == "OWNER"


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
    field_type = str(hs_property.get("fieldType") or "")
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
