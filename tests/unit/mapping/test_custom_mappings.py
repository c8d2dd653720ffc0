"""Custom mappings without a CRM: value-map suggestions and checks, the compatibility checks on the SDK's
spelling of HubSpot properties, what a value map leaves unmapped, the four rules on a custom mapping field by
field (both directions, blanking), and the workers' cached CRM facts giving way to a newer mapping."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest

from dealsync.clients.errors import TransientCrmError
from dealsync.mapping.compat import (
    MappingRefused,
    check_mapping,
    check_value_pair,
    hubspot_option_values,
    salesforce_picklist_values,
    suggest_value_map,
)
from dealsync.mapping.fields import FieldSpec, build_field_specs
from dealsync.mapping.owners import OwnerDirectory
from dealsync.mapping.rules import SideSnapshot, decide_record
from dealsync.mapping.stages import StageMap
from dealsync.mapping.values import ValueKind
from dealsync.models.domain import FieldMapping, ShadowValue, StageMapping, SyncRule
from dealsync.services.context import SyncContext
from dealsync.services.mappings import ValueMapView, stage_maps
from dealsync.store import StoredConfig

EARLY = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
LATE = datetime(2026, 3, 1, 11, 0, tzinfo=UTC)


def picklist(name: str, *values: str, inactive: tuple[str, ...] = (), labels: dict[str, str] | None = None
             ) -> dict[str, Any]:
    entries = [{"value": value, "label": (labels or {}).get(value, value), "active": True} for value in values]
    entries += [{"value": value, "label": value, "active": False} for value in inactive]
    return {"name": name, "type": "picklist", "updateable": True, "calculated": False, "picklistValues": entries}


def enumeration(name: str, *options: tuple[str, str], field_type: str = "select") -> dict[str, Any]:
    return {"name": name, "type": "enumeration", "fieldType": field_type,
            "options": [{"value": value, "label": label} for value, label in options]}


PRIORITY = picklist("Priority__c", "High", "Medium", "Low", "Urgent", inactive=("Legacy",))
HS_PRIORITY = enumeration("hs_priority", ("low", "Low"), ("medium", "Medium"), ("high", "High"), ("p0", "Critical"))


# --- value maps -------------------------------------------------------------------------------------

def test_a_new_value_map_pairs_values_that_match_by_value_or_label() -> None:
    sf_field = picklist("Tier__c", "Gold", "Silver Plus", "Bronze", "Platinum", inactive=("Tin",),
                        labels={"Platinum": "Critical"})
    hs_property = enumeration("tier", ("gold", "Gold tier"), ("SILVER  plus", "Silver+"), ("bronze_1", "bronze"),
                              ("p0", "Critical"), ("tin", "Tin"))
    assert suggest_value_map(sf_field, hs_property) == {
        "Gold": "gold",  # the option's value, case aside
        "Silver Plus": "SILVER  plus",  # spacing aside
        "Bronze": "bronze_1",  # the option's label
        "Platinum": "p0",  # the Salesforce label matches the option's label
    }  # Tin is inactive in Salesforce: not offered


def test_a_value_without_a_matching_option_is_left_unmapped() -> None:
    assert suggest_value_map(PRIORITY, HS_PRIORITY) == {"High": "high", "Medium": "medium", "Low": "low"}


def test_values_and_options_in_order() -> None:
    assert salesforce_picklist_values(PRIORITY) == ["High", "Medium", "Low", "Urgent"]
    assert hubspot_option_values(HS_PRIORITY) == ["low", "medium", "high", "p0"]


def test_a_value_pair_names_values_that_exist_and_takes_an_option_label() -> None:
    assert check_value_pair("Priority__c", "hs_priority", "Urgent", "p0", PRIORITY, HS_PRIORITY) == "p0"
    assert check_value_pair("Priority__c", "hs_priority", "Urgent", "Critical", PRIORITY, HS_PRIORITY) == "p0"
    with pytest.raises(MappingRefused, match=r"'Legacy' is not a value of Salesforce picklist Priority__c "
                                             r"\(values: High, Medium, Low, Urgent\)\."):
        check_value_pair("Priority__c", "hs_priority", "Legacy", "low", PRIORITY, HS_PRIORITY)
    with pytest.raises(MappingRefused, match=r"'urgent' is not an option of HubSpot property hs_priority "
                                             r"\(options: low, medium, high, p0\)\."):
        check_value_pair("Priority__c", "hs_priority", "Urgent", "urgent", PRIORITY, HS_PRIORITY)


def test_what_a_value_map_leaves_unmapped_on_each_side() -> None:
    view = ValueMapView("Priority__c", "hs_priority", {"High": "high", "Urgent": "high", "Low": "low"}, {},
                        salesforce_picklist_values(PRIORITY), hubspot_option_values(HS_PRIORITY))
    assert view.unmapped_salesforce == ["Medium"]
    assert view.unmapped_hubspot == ["medium", "p0"]
    assert view.as_json()["unmapped_hubspot"] == ["medium", "p0"]


# --- the compatibility checks on the SDK's spelling -------------------------------------------------

def sdk_property(name: str, field_type: str, *, read_only: bool = False, referenced: str | None = None,
                 hs_type: str = "string") -> dict[str, Any]:
    """A property as ``Property.to_dict()`` gives it (what the client returns)."""
    return {"name": name, "type": hs_type, "field_type": field_type, "options": [], "calculated": False,
            "referenced_object_type": referenced,
            "modification_metadata": {"read_only_value": read_only, "archivable": True}}


def text_field(name: str, sf_type: str = "string", *, updateable: bool = True) -> dict[str, Any]:
    return {"name": name, "type": sf_type, "updateable": updateable, "calculated": False, "picklistValues": []}


def test_sdk_properties_are_checked_like_hubspot_json() -> None:
    mapping = FieldMapping(salesforce_field="Region__c", hubspot_property="region")
    check_mapping(mapping, text_field("Region__c"), sdk_property("region", "text"), [])
    with pytest.raises(MappingRefused, match=r"\(multi-line text\) cannot be mapped to Salesforce field Region__c"):
        check_mapping(mapping, text_field("Region__c"), sdk_property("region", "textarea"), [])
    with pytest.raises(MappingRefused, match="is read-only, so rule two_way cannot write"):
        check_mapping(mapping, text_field("Region__c"), sdk_property("region", "text", read_only=True), [])
    with pytest.raises(MappingRefused, match="user properties cannot be mapped"):
        check_mapping(mapping, text_field("Region__c", "reference"),
                      sdk_property("region", "select", referenced="OWNER", hs_type="enumeration"), [])


# --- the four rules on a custom mapping -------------------------------------------------------------

def region_spec(rule: SyncRule) -> FieldSpec:
    built = build_field_specs(
        [FieldMapping(salesforce_field="Region__c", hubspot_property="region", rule=rule)], multi_currency=False,
        salesforce_fields={"Region__c": {**text_field("Region__c"), "length": 20, "nillable": True}},
        hubspot_properties={"region": sdk_property("region", "text")})
    assert not built.problems
    spec = built.by_key()["Region__c"]
    assert (spec.kind, spec.length, spec.rule) == (ValueKind.TEXT, 20, rule)
    return spec


def decide(rule: SyncRule, salesforce: str | None, hubspot: str | None, shadow: ShadowValue, *,
           hubspot_later: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, ShadowValue]]:
    sf_at, hs_at = (EARLY, LATE) if hubspot_later else (LATE, EARLY)
    decision = decide_record(
        [region_spec(rule)], SideSnapshot({"Id": "006000000000001AAA", "Region__c": salesforce}, sf_at),
        SideSnapshot({"region": hubspot or ""}, hs_at), {"Region__c": shadow},
        stages=StageMap([]), owners=OwnerDirectory([], []))
    return decision.hubspot_properties, decision.salesforce_fields, decision.shadow


P, A, T, D = (SyncRule.PREFER_SALESFORCE_UNLESS_BLANK, SyncRule.ALWAYS_SALESFORCE, SyncRule.TWO_WAY,
              SyncRule.DONT_SYNC)


@pytest.mark.parametrize(("rule", "salesforce", "hubspot", "shadow", "to_hubspot", "to_salesforce"), [
    # Salesforce changed
    (P, "EMEA", "APAC", "APAC", {"region": "EMEA"}, {}),
    (A, "EMEA", "APAC", "APAC", {"region": "EMEA"}, {}),
    (T, "EMEA", "APAC", "APAC", {"region": "EMEA"}, {}),
    (D, "EMEA", "APAC", "APAC", {}, {}),
    # HubSpot changed while Salesforce has a value
    (P, "APAC", "EMEA", "APAC", {"region": "APAC"}, {}),
    (A, "APAC", "EMEA", "APAC", {"region": "APAC"}, {}),
    (T, "APAC", "EMEA", "APAC", {}, {"Region__c": "EMEA"}),
    (D, "APAC", "EMEA", "APAC", {}, {}),
    # Salesforce blanked
    (P, None, "APAC", "APAC", {"region": ""}, {}),
    (A, None, "APAC", "APAC", {"region": ""}, {}),
    (T, None, "APAC", "APAC", {"region": ""}, {}),
    (D, None, "APAC", "APAC", {}, {}),
    # HubSpot set while the Salesforce field is empty
    (P, None, "EMEA", None, {}, {"Region__c": "EMEA"}),
    (A, None, "EMEA", None, {}, {}),
    (T, None, "EMEA", None, {}, {"Region__c": "EMEA"}),
    (D, None, "EMEA", None, {}, {}),
    # HubSpot blanked
    (P, "APAC", None, "APAC", {"region": "APAC"}, {}),
    (A, "APAC", None, "APAC", {"region": "APAC"}, {}),
    (T, "APAC", None, "APAC", {}, {"Region__c": None}),
    (D, "APAC", None, "APAC", {}, {}),
])
def test_the_four_rules_field_by_field(rule: SyncRule, salesforce: str | None, hubspot: str | None,
                                       shadow: ShadowValue, to_hubspot: dict[str, Any],
                                       to_salesforce: dict[str, Any]) -> None:
    hs_patch, sf_patch, new_shadow = decide(rule, salesforce, hubspot, shadow, hubspot_later=salesforce == shadow)
    assert hs_patch == to_hubspot
    assert sf_patch == to_salesforce
    if rule is D:
        assert "Region__c" not in new_shadow  # dont_sync keeps no shadow


def test_hubspot_text_longer_than_the_custom_field_is_cut_with_a_warning() -> None:
    decision = decide_record(
        [region_spec(T)], SideSnapshot({"Id": "006000000000001AAA", "Region__c": "EMEA"}, EARLY),
        SideSnapshot({"region": "Europe, Middle East and Africa"}, LATE), {"Region__c": "EMEA"},
        stages=StageMap([]), owners=OwnerDirectory([], []))
    assert decision.salesforce_fields == {"Region__c": "Europe, Middle East "}
    assert [warning.field for warning in decision.warnings] == ["Region__c"]


# --- cached CRM facts and a newer mapping -----------------------------------------------------------

def test_cached_facts_older_than_a_mapping_are_read_again() -> None:
    context = SyncContext(store=cast(Any, None), salesforce=cast(Any, None), hubspot=cast(Any, None),
                          credentials=cast(Any, None), queues={})
    loads: list[int] = []

    def load() -> dict[str, int]:
        loads.append(1)
        return {"loads": len(loads)}

    assert context._fact("deal_properties", load) == {"loads": 1}
    context.forget_if_older("deal_properties", None)
    context.forget_if_older("deal_properties", datetime.now(UTC) - timedelta(minutes=1))
    assert context._fact("deal_properties", load) == {"loads": 1}  # the mapping is older: cache kept
    context.forget_if_older("deal_properties", datetime.now(UTC) + timedelta(seconds=1))
    assert context._fact("deal_properties", load) == {"loads": 2}  # a newer mapping: read again


# --- stage maps as the operator sees them -----------------------------------------------------------

RT_SALES, RT_RENEWAL = "012000000000001AAA", "012000000000002AAA"


class _Config:
    def load(self) -> StoredConfig:
        return StoredConfig(stage_maps={
            RT_SALES: StageMapping(record_type_id=RT_SALES, pipeline_id="p1", label=f"Salesforce - {RT_SALES}",
                                   stages={"Prospecting": "s1", "Closed Won": "s2"}),
            RT_RENEWAL: StageMapping(record_type_id=RT_RENEWAL, pipeline_id="p-gone",
                                     label=f"Salesforce - {RT_RENEWAL}", stages={"Renewal Due": "s9"}),
        })


@dataclass
class _Hubspot:
    fails: bool = False

    def pipelines(self, object_type: str) -> list[dict[str, Any]]:
        if self.fails:
            raise TransientCrmError("hubspot", "503 Service Unavailable")
        return [{"id": "p1", "label": f"Salesforce - {RT_SALES}", "stages": [{"id": "s1", "label": "Prospecting"}]}]


@dataclass
class _Salesforce:
    queries: list[str] = field(default_factory=list)

    def query(self, soql: str) -> list[dict[str, Any]]:
        self.queries.append(soql)
        return [{"Id": RT_SALES, "Name": "Sales"}, {"Id": RT_RENEWAL, "Name": "Renewal"}]


@dataclass
class _StageContext:
    hubspot: _Hubspot
    salesforce: _Salesforce = field(default_factory=_Salesforce)
    has_record_types: bool = True

    @property
    def store(self) -> Any:
        return SimpleNamespace(config=_Config())


def test_stage_maps_name_record_types_and_hubspot_labels() -> None:
    context = _StageContext(_Hubspot())
    view = stage_maps(cast(SyncContext, context))
    assert view.problems == []
    sales, renewal = view.pipelines
    assert sales.as_json() == {
        "record_type_id": RT_SALES, "record_type_name": "Sales", "pipeline_id": "p1",
        "label": f"Salesforce - {RT_SALES}", "pipeline_found": True,
        "stages": [{"salesforce_stage": "Prospecting", "hubspot_stage_id": "s1", "hubspot_label": "Prospecting"},
                   {"salesforce_stage": "Closed Won", "hubspot_stage_id": "s2", "hubspot_label": None}]}
    assert (renewal.record_type_name, renewal.pipeline_found) == ("Renewal", False)
    assert context.salesforce.queries == ["SELECT Id, Name FROM RecordType WHERE SobjectType = 'Opportunity'"]


def test_stage_maps_say_what_could_not_be_read() -> None:
    view = stage_maps(cast(SyncContext, _StageContext(_Hubspot(fails=True), has_record_types=False)))
    assert view.problems == ["HubSpot pipelines could not be read: hubspot: 503 Service Unavailable"]
    assert [(pipeline.pipeline_found, pipeline.record_type_name) for pipeline in view.pipelines] == [
        (None, None), (None, None)]
    assert view.pipelines[0].stages[0].hubspot_label is None
