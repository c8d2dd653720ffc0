"""The operator's field mappings, value maps and the stage maps (DESIGN 1.2, 1.3): what the CLI lists and edits.

Every edit is checked against the CRMs as they are now (the Opportunity describe and the deal properties,
read fresh) and refused with `MappingRefused`, whose message says why. The sync workers read the stored
config per batch and re-read the CRM facts when a mapping is newer than their cache, so an edit is in
force for the next change on either side; it is not retroactive (an import or resync applies it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dealsync.clients.errors import CrmError
from dealsync.mapping.compat import (
    MappingRefused,
    check_mapping,
    check_value_pair,
    hubspot_field_type,
    hubspot_option_values,
    salesforce_picklist_values,
    suggest_value_map,
)
from dealsync.mapping.fields import (
    CURRENCY_FIELD,
    FieldSpec,
    build_field_specs,
    default_specs,
    effective_mappings,
)
from dealsync.mapping.values import ValueKind, kind_for_types, reverse_value_map
from dealsync.models.domain import ErrorCategory, FieldMapping, SyncRule
from dealsync.observability import logger
from dealsync.services.context import SyncContext
from dealsync.services.resync import NothingToResyncError, resync_category
from dealsync.store import StoredConfig, ToggleRefusedError

VALUE_MAP_KINDS = frozenset({ValueKind.PICKLIST, ValueKind.MULTIPICKLIST})


@dataclass(frozen=True)
class MappingView:
    """One mapping in force, as the operator sees it."""

    salesforce_field: str
    hubspot_property: str
    rule: SyncRule
    builtin: bool
    kind: ValueKind | None  # how values are compared; None when the mapping cannot be used
    salesforce_type: str | None
    hubspot_field_type: str | None
    value_map: dict[str, str] | None
    problem: str | None = None  # why the sync skips it (e.g. the field was deleted since)

    def as_json(self) -> dict[str, Any]:
        return {"salesforce_field": self.salesforce_field, "hubspot_property": self.hubspot_property,
                "rule": str(self.rule), "builtin": self.builtin, "kind": str(self.kind) if self.kind else None,
                "salesforce_type": self.salesforce_type, "hubspot_field_type": self.hubspot_field_type,
                "value_map": self.value_map, "problem": self.problem}


@dataclass(frozen=True)
class ValueMapView:
    """A picklist mapping's value map, with what is left unmapped on each side."""

    salesforce_field: str
    hubspot_property: str
    pairs: dict[str, str]  # in force: Salesforce value -> HubSpot value
    defaults: dict[str, str]  # DESIGN 1.2's pairs (Type); an operator pair of the same value replaces one
    salesforce_values: list[str]
    hubspot_options: list[str]

    @property
    def unmapped_salesforce(self) -> list[str]:
        """Salesforce values that would give UNMAPPED_VALUE on their way to HubSpot."""
        return [value for value in self.salesforce_values if value not in self.pairs]

    @property
    def unmapped_hubspot(self) -> list[str]:
        """HubSpot options that would give UNMAPPED_VALUE on their way to Salesforce."""
        reverse = reverse_value_map(self.pairs)
        return [value for value in self.hubspot_options if value not in reverse]

    def as_json(self) -> dict[str, Any]:
        return {"salesforce_field": self.salesforce_field, "hubspot_property": self.hubspot_property,
                "pairs": self.pairs, "defaults": self.defaults, "salesforce_values": self.salesforce_values,
                "hubspot_options": self.hubspot_options, "unmapped_salesforce": self.unmapped_salesforce,
                "unmapped_hubspot": self.unmapped_hubspot}


@dataclass(frozen=True)
class ValueMapChange:
    value_map: ValueMapView
    resynced: int = 0  # records waiting with UNMAPPED_VALUE put back on their queues
    resync_note: str | None = None  # why none were (nothing waiting, deal sync off)

    def as_json(self) -> dict[str, Any]:
        return {"value_map": self.value_map.as_json(), "resynced": self.resynced, "resync_note": self.resync_note}


@dataclass(frozen=True)
class MappingChange:
    mapping: FieldMapping
    value_map: ValueMapView | None = None  # a picklist mapping's (suggested, on add) value map


@dataclass(frozen=True)
class StageView:
    salesforce_stage: str
    hubspot_stage_id: str
    hubspot_label: str | None  # None when the stage is no longer in the HubSpot pipeline


@dataclass(frozen=True)
class PipelineView:
    record_type_id: str
    record_type_name: str | None
    pipeline_id: str
    label: str
    stages: list[StageView]
    pipeline_found: bool | None  # the pipeline still exists in HubSpot; None when HubSpot could not be read

    def as_json(self) -> dict[str, Any]:
        return {"record_type_id": self.record_type_id, "record_type_name": self.record_type_name,
                "pipeline_id": self.pipeline_id, "label": self.label, "pipeline_found": self.pipeline_found,
                "stages": [{"salesforce_stage": stage.salesforce_stage, "hubspot_stage_id": stage.hubspot_stage_id,
                            "hubspot_label": stage.hubspot_label} for stage in self.stages]}


@dataclass(frozen=True)
class StageMapsView:
    pipelines: list[PipelineView]
    problems: list[str] = field(default_factory=list)


# --- reading the CRMs -------------------------------------------------------------------------------

def _fresh_facts(context: SyncContext) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The Opportunity describe fields and deal properties as they are now (an edit must not be checked
    against a cache older than the admin's last change)."""
    context.forget("opportunity_fields")
    context.forget("deal_properties")
    return context.opportunity_fields(), context.deal_properties()


def _salesforce_name(name: str, sf_fields: Mapping[str, Any]) -> str:
    """The describe's spelling of a field name (Salesforce names are case-insensitive)."""
    wanted = name.strip().lower()
    return next((known for known in sf_fields if known.lower() == wanted), name.strip())


def _effective(config: StoredConfig, context: SyncContext) -> list[FieldMapping]:
    return effective_mappings(config.mappings, multi_currency=context.multi_currency)


def _find_mapping(salesforce_field: str, config: StoredConfig, context: SyncContext) -> FieldMapping:
    wanted = salesforce_field.strip().lower()
    for mapping in _effective(config, context):
        if mapping.salesforce_field.lower() == wanted:
            return mapping
    raise MappingRefused(f"Salesforce field {salesforce_field} is not mapped.")


def _specs(config: StoredConfig, context: SyncContext, sf_fields: Mapping[str, Mapping[str, Any]],
           hs_properties: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, FieldSpec], list[str]]:
    built = build_field_specs(config.mappings, config.value_maps, multi_currency=context.multi_currency,
                              salesforce_fields=sf_fields, hubspot_properties=hs_properties)
    return built.by_key(), list(built.problems)


# --- mappings ---------------------------------------------------------------------------------------

def list_mappings(context: SyncContext) -> list[MappingView]:
    """Every mapping in force: DESIGN 1.2's defaults (with the operator's rules) and the custom ones."""
    sf_fields, hs_properties = _fresh_facts(context)
    config = context.store.config.load()
    specs, problems = _specs(config, context, sf_fields, hs_properties)
    views: list[MappingView] = []
    for mapping in _effective(config, context):
        spec = specs.get(mapping.salesforce_field)
        describe = sf_fields.get(mapping.salesforce_field) or {}
        prop = hs_properties.get(mapping.hubspot_property) or {}
        prefix = f"mapping {mapping.salesforce_field} ⇄ "
        problem = None if spec is not None else next(
            (text.partition(" skipped: ")[2] for text in problems if text.startswith(prefix)), "not in force")
        views.append(MappingView(
            mapping.salesforce_field, mapping.hubspot_property, spec.rule if spec else mapping.rule,
            builtin=spec.builtin if spec else mapping.builtin, kind=spec.kind if spec else None,
            salesforce_type=describe.get("type"), hubspot_field_type=hubspot_field_type(prop) or None,
            value_map=dict(spec.value_map) if spec is not None and spec.value_map is not None else None,
            problem=problem,
        ))
    return views


def add_mapping(context: SyncContext, salesforce_field: str, hubspot_property: str, rule: SyncRule) -> MappingChange:
    """Store a custom mapping once HubSpot's rules allow it (types, read-only sides, one mapping per field and
    property). A picklist ⇄ enumeration mapping starts with the value map of the values that match by text."""
    sf_fields, hs_properties = _fresh_facts(context)
    config = context.store.config.load()
    sf_name = _salesforce_name(salesforce_field, sf_fields)
    hs_name = hubspot_property.strip()
    for existing in _effective(config, context):
        if existing.salesforce_field.lower() == sf_name.lower() and existing.hubspot_property == hs_name:
            raise MappingRefused(f"Salesforce field {existing.salesforce_field} is already mapped to HubSpot property "
                                 f"{hs_name} (rule {existing.rule}); change its rule with set-rule.")
    mapping = FieldMapping(salesforce_field=sf_name, hubspot_property=hs_name, rule=rule)
    describe, prop = sf_fields.get(sf_name), hs_properties.get(hs_name)
    check_mapping(mapping, describe, prop, config.mappings.values())
    assert describe is not None and prop is not None  # check_mapping refuses missing ones
    try:
        kind = kind_for_types(str(describe.get("type", "")), str(prop.get("type", "")))
    except ValueError as exc:
        raise MappingRefused(f"Salesforce field {sf_name}: {exc}.") from exc
    context.store.config.put_mapping(mapping)
    value_map: ValueMapView | None = None
    if kind in VALUE_MAP_KINDS:
        pairs = suggest_value_map(describe, prop)
        context.store.config.put_value_map(sf_name, pairs)
        value_map = ValueMapView(sf_name, hs_name, pairs, {}, salesforce_picklist_values(describe),
                                 hubspot_option_values(prop))
    logger.info("field mapping added", extra={"salesforce_field": sf_name, "hubspot_property": hs_name,
                                              "rule": str(rule)})
    return MappingChange(mapping, value_map)


def remove_mapping(context: SyncContext, salesforce_field: str) -> MappingChange:
    """Remove a custom mapping and its value map; a default mapping stays (its rule can be dont_sync)."""
    config = context.store.config.load()
    mapping = _find_mapping(salesforce_field, config, context)
    if _builtin(mapping):
        raise MappingRefused(f"{mapping.salesforce_field} ⇄ {mapping.hubspot_property} is a default mapping and "
                             "cannot be removed; stop it with set-rule dont_sync.")
    context.store.config.delete_mapping(mapping.salesforce_field)
    context.store.config.delete_value_map(mapping.salesforce_field)
    logger.info("field mapping removed", extra={"salesforce_field": mapping.salesforce_field,
                                                "hubspot_property": mapping.hubspot_property})
    return MappingChange(mapping)


def set_rule(context: SyncContext, salesforce_field: str, rule: SyncRule) -> MappingChange:
    """Change a mapping's sync rule (a default's too), checked like a new mapping (read-only sides, owner)."""
    sf_fields, hs_properties = _fresh_facts(context)
    config = context.store.config.load()
    current = _find_mapping(salesforce_field, config, context)
    changed = current.model_copy(update={"rule": rule, "builtin": _builtin(current)})
    check_mapping(changed, sf_fields.get(current.salesforce_field), hs_properties.get(current.hubspot_property),
                  config.mappings.values())
    context.store.config.put_mapping(changed)
    logger.info("sync rule changed", extra={"salesforce_field": changed.salesforce_field, "rule": str(rule)})
    return MappingChange(changed)


def _builtin(mapping: FieldMapping) -> bool:
    return any(spec.salesforce_field == mapping.salesforce_field and spec.hubspot_property == mapping.hubspot_property
               for spec in default_specs(multi_currency=True))


# --- value maps -------------------------------------------------------------------------------------

def _value_map_spec(salesforce_field: str, context: SyncContext, config: StoredConfig,
                    sf_fields: Mapping[str, Mapping[str, Any]],
                    hs_properties: Mapping[str, Mapping[str, Any]]) -> FieldSpec:
    mapping = _find_mapping(salesforce_field, config, context)
    specs, problems = _specs(config, context, sf_fields, hs_properties)
    spec = specs.get(mapping.salesforce_field)
    if spec is None:
        raise MappingRefused(next((problem for problem in problems
                                   if problem.startswith(f"mapping {mapping.salesforce_field} ⇄ ")),
                                  f"mapping {mapping.salesforce_field} is not in force"))
    if spec.kind not in VALUE_MAP_KINDS or spec.salesforce_field == CURRENCY_FIELD:
        raise MappingRefused(f"{spec.salesforce_field} ⇄ {spec.hubspot_property} has no value map: value maps are "
                             "for Salesforce picklists mapped to HubSpot enumerations (currency codes pass unchanged).")
    return spec


def _view(spec: FieldSpec, sf_fields: Mapping[str, Mapping[str, Any]],
          hs_properties: Mapping[str, Mapping[str, Any]]) -> ValueMapView:
    defaults = next((dict(default.value_map or {}) for default in default_specs(multi_currency=True)
                     if default.salesforce_field == spec.salesforce_field and spec.builtin), {})
    return ValueMapView(spec.salesforce_field, spec.hubspot_property, dict(spec.value_map or {}), defaults,
                        salesforce_picklist_values(sf_fields.get(spec.salesforce_field) or {}),
                        hubspot_option_values(hs_properties.get(spec.hubspot_property) or {}))


def list_value_maps(context: SyncContext, salesforce_field: str | None = None) -> list[ValueMapView]:
    """The value map of one picklist mapping, or of every one."""
    sf_fields, hs_properties = _fresh_facts(context)
    config = context.store.config.load()
    if salesforce_field is not None:
        return [_view(_value_map_spec(salesforce_field, context, config, sf_fields, hs_properties),
                      sf_fields, hs_properties)]
    specs, _ = _specs(config, context, sf_fields, hs_properties)
    return [_view(spec, sf_fields, hs_properties) for spec in specs.values()
            if spec.kind in VALUE_MAP_KINDS and spec.salesforce_field != CURRENCY_FIELD]


def set_value(context: SyncContext, salesforce_field: str, salesforce_value: str, hubspot_value: str) -> ValueMapChange:
    """Map one Salesforce picklist value to one HubSpot option (by value or label); both must exist. The records
    waiting with UNMAPPED_VALUE are resynced: the new pair may be what they were missing."""
    sf_fields, hs_properties = _fresh_facts(context)
    config = context.store.config.load()
    spec = _value_map_spec(salesforce_field, context, config, sf_fields, hs_properties)
    option = check_value_pair(spec.salesforce_field, spec.hubspot_property, salesforce_value, hubspot_value,
                              sf_fields[spec.salesforce_field], hs_properties[spec.hubspot_property])
    stored = dict(config.value_maps.get(spec.salesforce_field, {}))
    stored[salesforce_value] = option
    context.store.config.put_value_map(spec.salesforce_field, stored)
    logger.info("value map changed", extra={"salesforce_field": spec.salesforce_field})
    resynced, note = _resync_unmapped_values(context)
    return ValueMapChange(list_value_maps(context, spec.salesforce_field)[0], resynced, note)


def unset_value(context: SyncContext, salesforce_field: str, salesforce_value: str) -> ValueMapChange:
    """Remove the operator's pair for a Salesforce value (the value is then unmapped: UNMAPPED_VALUE)."""
    sf_fields, hs_properties = _fresh_facts(context)
    config = context.store.config.load()
    spec = _value_map_spec(salesforce_field, context, config, sf_fields, hs_properties)
    stored = dict(config.value_maps.get(spec.salesforce_field, {}))
    if salesforce_value not in stored:
        view = _view(spec, sf_fields, hs_properties)
        if salesforce_value in view.defaults:
            raise MappingRefused(f"{salesforce_value!r} ⇄ {view.defaults[salesforce_value]!r} is a default pair of "
                                 f"{spec.salesforce_field} and cannot be removed; map the value to another option.")
        raise MappingRefused(f"{salesforce_value!r} has no pair in the value map of {spec.salesforce_field}.")
    del stored[salesforce_value]
    context.store.config.put_value_map(spec.salesforce_field, stored)
    logger.info("value map changed", extra={"salesforce_field": spec.salesforce_field})
    # Nothing waits for a pair to go away: a record holding the value gets UNMAPPED_VALUE on its next change.
    return ValueMapChange(list_value_maps(context, spec.salesforce_field)[0])


def _resync_unmapped_values(context: SyncContext) -> tuple[int, str | None]:
    try:
        report = resync_category(context, ErrorCategory.UNMAPPED_VALUE)
    except NothingToResyncError:
        return 0, "no record is waiting with UNMAPPED_VALUE"
    except ToggleRefusedError as refused:
        return 0, f"records waiting with UNMAPPED_VALUE not resynced: {refused}"
    return report.plan.total, None


# --- stage maps -------------------------------------------------------------------------------------

def stage_maps(context: SyncContext) -> StageMapsView:
    """Record type ⇄ pipeline and stage ⇄ stage, as stored, with HubSpot's labels and the record type names
    where the CRMs can be read (what cannot be read is named in `problems`)."""
    config = context.store.config.load()
    problems: list[str] = []
    pipelines: dict[str, dict[str, Any]] | None = None
    try:
        pipelines = {str(pipeline["id"]): pipeline for pipeline in context.hubspot.pipelines("deals")}
    except CrmError as error:
        problems.append(f"HubSpot pipelines could not be read: {error}")
    record_type_names: dict[str, str] = {}
    if context.has_record_types:
        try:
            record_type_names = {str(row["Id"]): str(row["Name"]) for row in context.salesforce.query(
                "SELECT Id, Name FROM RecordType WHERE SobjectType = 'Opportunity'")}
        except CrmError as error:
            problems.append(f"Salesforce record types could not be read: {error}")
    views: list[PipelineView] = []
    for mapping in sorted(config.stage_maps.values(), key=lambda item: item.record_type_id):
        pipeline = (pipelines or {}).get(mapping.pipeline_id)
        labels = {str(stage["id"]): str(stage.get("label") or "") for stage in (pipeline or {}).get("stages") or []}
        views.append(PipelineView(
            mapping.record_type_id, record_type_names.get(mapping.record_type_id), mapping.pipeline_id, mapping.label,
            [StageView(name, stage_id, labels.get(stage_id)) for name, stage_id in mapping.stages.items()],
            pipeline_found=None if pipelines is None else pipeline is not None,
        ))
    return StageMapsView(views, problems)
