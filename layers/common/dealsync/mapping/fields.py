"""The field mappings in force: DESIGN 1.2's defaults merged with the operator's stored mappings.

A `FieldSpec` is a mapping plus what the sync needs to compare and write its values: the kind
(values.ValueKind), the Salesforce length/scale to fit HubSpot values into, and the value map.
Shadows are keyed by `FieldSpec.key` (the Salesforce field name).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dealsync.mapping.values import ValueKind, ValueMap, kind_for_types
from dealsync.models.domain import FieldMapping, SyncRule

OPPORTUNITY_TYPE_VALUE_MAP: dict[str, str] = {
    "New Business": "newbusiness",
    "Existing Business": "existingbusiness",
}
OWNER_FIELD = "OwnerId"
STAGE_FIELD = "StageName"
RECORD_TYPE_FIELD = "RecordTypeId"
AMOUNT_FIELD = "Amount"
CURRENCY_FIELD = "CurrencyIsoCode"
# Read with every opportunity: Salesforce ignores Amount writes on opportunities with products.
HAS_PRODUCTS_FIELD = "HasOpportunityLineItem"


@dataclass(frozen=True)
class FieldSpec:
    salesforce_field: str
    hubspot_property: str
    kind: ValueKind
    rule: SyncRule = SyncRule.TWO_WAY
    length: int | None = None  # Salesforce text length: longer HubSpot text is cut, with a warning
    scale: int | None = None  # Salesforce decimal places: HubSpot numbers are rounded to it
    value_map: ValueMap | None = None  # Salesforce value -> HubSpot value; None passes values unchanged
    salesforce_type: str = ""  # describe type, where the write format depends on it (datetime)
    required: bool = False  # cannot be blank in Salesforce: a HubSpot clearing resets HubSpot instead
    builtin: bool = False

    @property
    def key(self) -> str:
        """The shadow key."""
        return self.salesforce_field

    @property
    def salesforce_fields(self) -> tuple[str, ...]:
        """Every Salesforce field this mapping reads and writes."""
        return (STAGE_FIELD, RECORD_TYPE_FIELD) if self.kind is ValueKind.STAGE else (self.salesforce_field,)

    @property
    def hubspot_properties(self) -> tuple[str, ...]:
        return ("dealstage", "pipeline") if self.kind is ValueKind.STAGE else (self.hubspot_property,)

    def as_mapping(self) -> FieldMapping:
        return FieldMapping(salesforce_field=self.salesforce_field, hubspot_property=self.hubspot_property,
                            rule=self.rule, builtin=self.builtin)


DEFAULT_SPECS: tuple[FieldSpec, ...] = (
    FieldSpec(OWNER_FIELD, "hubspot_owner_id", ValueKind.OWNER, builtin=True),
    FieldSpec("CloseDate", "closedate", ValueKind.DATE, salesforce_type="date", required=True, builtin=True),
    FieldSpec("Name", "dealname", ValueKind.TEXT, length=120, required=True, builtin=True),
    FieldSpec("Type", "dealtype", ValueKind.PICKLIST, value_map=OPPORTUNITY_TYPE_VALUE_MAP, builtin=True),
    FieldSpec("Description", "description", ValueKind.TEXT, length=32000, builtin=True),
    FieldSpec(AMOUNT_FIELD, "amount", ValueKind.NUMBER, scale=2, builtin=True),
    FieldSpec(STAGE_FIELD, "dealstage", ValueKind.STAGE, required=True, builtin=True),
)
CURRENCY_SPEC = FieldSpec(CURRENCY_FIELD, "deal_currency_code", ValueKind.PICKLIST, builtin=True)


def default_specs(*, multi_currency: bool) -> list[FieldSpec]:
    return [*DEFAULT_SPECS, *([CURRENCY_SPEC] if multi_currency else [])]


def default_mappings(*, multi_currency: bool) -> list[FieldMapping]:
    return [spec.as_mapping() for spec in default_specs(multi_currency=multi_currency)]


def _by_field(mappings: Mapping[str, FieldMapping] | Iterable[FieldMapping]) -> dict[str, FieldMapping]:
    if isinstance(mappings, Mapping):
        return {mapping.salesforce_field: mapping for mapping in mappings.values()}
    return {mapping.salesforce_field: mapping for mapping in mappings}


def effective_mappings(
    stored: Mapping[str, FieldMapping] | Iterable[FieldMapping], *, multi_currency: bool
) -> list[FieldMapping]:
    """The defaults, each replaced by a stored mapping of the same Salesforce field, then the custom ones.

    The owner mapping stays two-way whatever is stored (HubSpot: "can only be mapped two-way").
    """
    stored_by_field = _by_field(stored)
    merged: list[FieldMapping] = []
    for spec in default_specs(multi_currency=multi_currency):
        mapping = stored_by_field.pop(spec.salesforce_field, spec.as_mapping())
        if spec.kind is ValueKind.OWNER and mapping.rule is not SyncRule.TWO_WAY:
            mapping = mapping.model_copy(update={"rule": SyncRule.TWO_WAY})
        merged.append(mapping)
    return merged + list(stored_by_field.values())


@dataclass(frozen=True)
class FieldSpecSet:
    specs: tuple[FieldSpec, ...]
    problems: tuple[str, ...] = ()  # stored mappings that cannot be used, e.g. a field deleted since

    def by_key(self) -> dict[str, FieldSpec]:
        return {spec.key: spec for spec in self.specs}


def _merged_value_map(spec_map: ValueMap | None, stored: ValueMap | None) -> ValueMap | None:
    if spec_map is None and stored is None:
        return None
    return {**(spec_map or {}), **(stored or {})}


def build_field_specs(
    stored_mappings: Mapping[str, FieldMapping] | Iterable[FieldMapping],
    value_maps: Mapping[str, ValueMap] | None = None,
    *,
    multi_currency: bool,
    salesforce_fields: Mapping[str, Mapping[str, Any]] | None = None,
    hubspot_properties: Mapping[str, Mapping[str, Any]] | None = None,
) -> FieldSpecSet:
    """The specs in force. Custom mappings need the Salesforce describe fields and HubSpot properties
    (by name) for their types; a custom mapping whose field or property is missing is left out and
    named in `problems`. A stored value map extends the default one (`Type`)."""
    value_maps = value_maps or {}
    salesforce_fields = salesforce_fields or {}
    hubspot_properties = hubspot_properties or {}
    defaults = {spec.salesforce_field: spec for spec in default_specs(multi_currency=multi_currency)}
    specs: list[FieldSpec] = []
    problems: list[str] = []
    for mapping in effective_mappings(stored_mappings, multi_currency=multi_currency):
        field = mapping.salesforce_field
        stored_map = value_maps.get(field)
        default = defaults.get(field)
        describe = salesforce_fields.get(field)
        if default is not None and default.hubspot_property == mapping.hubspot_property:
            specs.append(FieldSpec(
                field, default.hubspot_property, default.kind, rule=mapping.rule,
                length=_length(describe, default.kind, default.length),
                scale=_scale(describe, default.kind, default.scale),
                value_map=_merged_value_map(default.value_map, stored_map),
                salesforce_type=default.salesforce_type, required=default.required, builtin=True,
            ))
            continue
        hs_property = hubspot_properties.get(mapping.hubspot_property)
        if describe is None or hs_property is None:
            missing = (f"Salesforce field {field}" if describe is None
                       else f"HubSpot property {mapping.hubspot_property}")
            problems.append(f"mapping {field} ⇄ {mapping.hubspot_property} skipped: {missing} not found")
            continue
        salesforce_type = str(describe.get("type", ""))
        try:
            kind = kind_for_types(salesforce_type, str(hs_property.get("type", "")))
        except ValueError as exc:
            problems.append(f"mapping {field} ⇄ {mapping.hubspot_property} skipped: {exc}")
            continue
        specs.append(FieldSpec(
            field, mapping.hubspot_property, kind, rule=mapping.rule,
            length=_length(describe, kind, None),
            scale=_scale(describe, kind, None),
            value_map=stored_map if kind in (ValueKind.PICKLIST, ValueKind.MULTIPICKLIST) else None,
            salesforce_type=salesforce_type,
            # describe: nillable false means required, except checkboxes, which are never blank anyway
            required=describe.get("nillable") is False and kind is not ValueKind.BOOLEAN,
        ))
    return FieldSpecSet(tuple(specs), tuple(problems))


def _describe_int(describe: Mapping[str, Any] | None, key: str) -> int | None:
    value = describe.get(key) if describe is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _length(describe: Mapping[str, Any] | None, kind: ValueKind, fallback: int | None) -> int | None:
    if kind is not ValueKind.TEXT:
        return None
    length = _describe_int(describe, "length")
    return length if length else fallback  # describe reports 0 for fields without a length


def _scale(describe: Mapping[str, Any] | None, kind: ValueKind, fallback: int | None) -> int | None:
    if kind is not ValueKind.NUMBER:
        return None
    scale = _describe_int(describe, "scale")
    return scale if scale is not None else fallback


def salesforce_fields_to_read(specs: Sequence[FieldSpec]) -> list[str]:
    """The Opportunity fields a worker must select so that every spec can be decided."""
    names: dict[str, None] = {"Id": None, "SystemModstamp": None}
    for spec in specs:
        names.update(dict.fromkeys(spec.salesforce_fields))
        if spec.salesforce_field == AMOUNT_FIELD:
            names[HAS_PRODUCTS_FIELD] = None
    return list(names)


def hubspot_properties_to_read(specs: Sequence[FieldSpec]) -> list[str]:
    names: dict[str, None] = {}
    for spec in specs:
        names.update(dict.fromkeys(spec.hubspot_properties))
    return list(names)
