"""HubSpot's compatibility table for custom mappings, and every refusal with its message."""

from __future__ import annotations

from typing import Any

import pytest

from dealsync.mapping.compat import COMPATIBLE_TYPES, MappingRefused, check_mapping
from dealsync.models.domain import FieldMapping, SyncRule


def sf(name: str, sf_type: str, *, updateable: bool = True, calculated: bool = False) -> dict[str, Any]:
    return {"name": name, "type": sf_type, "length": 255, "updateable": updateable, "createable": updateable,
            "calculated": calculated, "picklistValues": []}


def hs(name: str, field_type: str, *, hs_type: str = "string", read_only: bool = False,
       **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": hs_type, "fieldType": field_type, "options": [],
            "modificationMetadata": {"readOnlyValue": read_only, "archivable": True}, **extra}


def mapping(sf_name: str = "Custom__c", hs_name: str = "custom", rule: SyncRule = SyncRule.TWO_WAY) -> FieldMapping:
    return FieldMapping(salesforce_field=sf_name, hubspot_property=hs_name, rule=rule)


ALLOWED = [(field_type, sf_type) for field_type, sf_types in COMPATIBLE_TYPES.items() for sf_type in sorted(sf_types)]


@pytest.mark.parametrize(("field_type", "sf_type"), ALLOWED)
def test_compatible_pairs_are_accepted(field_type: str, sf_type: str) -> None:
    check_mapping(mapping(), sf("Custom__c", sf_type), hs("custom", field_type), [])


def test_the_table_is_hubspots() -> None:
    assert COMPATIBLE_TYPES["select"] == COMPATIBLE_TYPES["radio"] == {"picklist", "reference"}
    assert COMPATIBLE_TYPES["checkbox"] == {"multipicklist"}
    assert COMPATIBLE_TYPES["booleancheckbox"] == {"boolean"}
    assert COMPATIBLE_TYPES["number"] == {"double", "int", "currency", "percent"}
    assert COMPATIBLE_TYPES["text"] == {"string", "textarea", "email", "phone", "url"}
    assert COMPATIBLE_TYPES["textarea"] == {"textarea"}
    assert COMPATIBLE_TYPES["date"] == {"date", "datetime"}


@pytest.mark.parametrize(("field_type", "sf_type", "message"), [
    ("checkbox", "picklist",
     "HubSpot property custom (multiple checkboxes) cannot be mapped to Salesforce field Custom__c (picklist): "
     "multiple checkboxes maps to multipicklist only."),
    ("select", "multipicklist",
     "HubSpot property custom (dropdown select) cannot be mapped to Salesforce field Custom__c (multipicklist): "
     "dropdown select maps to picklist or reference only."),
    ("textarea", "string",
     "HubSpot property custom (multi-line text) cannot be mapped to Salesforce field Custom__c (string): "
     "multi-line text maps to textarea only."),
    ("number", "string", "(number) cannot be mapped to Salesforce field Custom__c (string)"),
    ("booleancheckbox", "picklist", "(single checkbox) cannot be mapped"),
    ("date", "string", "(date picker) cannot be mapped"),
    ("text", "date", "(single-line text) cannot be mapped"),
    ("file", "string", "HubSpot property custom has field type file, which cannot be mapped to Salesforce."),
    ("html", "textarea", "field type html"),
])
def test_incompatible_types_are_refused(field_type: str, sf_type: str, message: str) -> None:
    with pytest.raises(MappingRefused) as info:
        check_mapping(mapping(), sf("Custom__c", sf_type), hs("custom", field_type), [])
    assert message in info.value.reason


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(MappingRefused, match="Salesforce field Nope__c does not exist on Opportunity"):
        check_mapping(mapping("Nope__c"), None, hs("custom", "text"), [])
    with pytest.raises(MappingRefused, match="HubSpot deal property nope does not exist"):
        check_mapping(mapping(hs_name="nope"), sf("Custom__c", "string"), None, [])


def test_hubspot_user_properties_cannot_be_mapped() -> None:
    user_property = hs("custom", "select", hs_type="enumeration", referencedObjectType="OWNER", externalOptions=True)
    with pytest.raises(MappingRefused, match="user properties cannot be mapped"):
        check_mapping(mapping(), sf("Custom__c", "reference"), user_property, [])


@pytest.mark.parametrize(
    "rule", [SyncRule.TWO_WAY, SyncRule.PREFER_SALESFORCE_UNLESS_BLANK, SyncRule.ALWAYS_SALESFORCE])
def test_read_only_hubspot_target_refused_for_rules_that_write_it(rule: SyncRule) -> None:
    with pytest.raises(MappingRefused, match="HubSpot property custom is read-only"):
        check_mapping(mapping(rule=rule), sf("Custom__c", "string"), hs("custom", "text", read_only=True), [])


def test_calculated_hubspot_property_is_read_only() -> None:
    with pytest.raises(MappingRefused, match="read-only"):
        check_mapping(mapping(), sf("Custom__c", "double"), hs("custom", "number", calculated=True), [])


@pytest.mark.parametrize("rule", [SyncRule.TWO_WAY, SyncRule.PREFER_SALESFORCE_UNLESS_BLANK])
def test_read_only_salesforce_target_refused_for_rules_that_write_it(rule: SyncRule) -> None:
    with pytest.raises(MappingRefused, match="use always_salesforce or dont_sync") as info:
        check_mapping(mapping(rule=rule), sf("Custom__c", "string", updateable=False), hs("custom", "text"), [])
    assert f"rule {rule}" in info.value.reason


def test_read_only_salesforce_field_is_fine_one_way_from_salesforce() -> None:
    formula = sf("Custom__c", "currency", updateable=False, calculated=True)
    check_mapping(mapping(rule=SyncRule.ALWAYS_SALESFORCE), formula, hs("custom", "number"), [])
    with pytest.raises(MappingRefused):
        check_mapping(mapping(rule=SyncRule.TWO_WAY), formula, hs("custom", "number"), [])


def test_dont_sync_needs_no_writable_side() -> None:
    check_mapping(mapping(rule=SyncRule.DONT_SYNC), sf("Custom__c", "string", updateable=False),
                  hs("custom", "text", read_only=True), [])


def test_already_mapped_fields_are_refused() -> None:
    existing = [mapping("Region__c", "region")]
    with pytest.raises(MappingRefused, match="Salesforce field Region__c is already mapped to HubSpot property region"):
        check_mapping(mapping("Region__c", "territory"), sf("Region__c", "picklist"), hs("territory", "select"),
                      existing)
    with pytest.raises(MappingRefused, match="HubSpot property region is already mapped to Salesforce field Region__c"):
        check_mapping(mapping("Area__c", "region"), sf("Area__c", "picklist"), hs("region", "select"), existing)
    with pytest.raises(MappingRefused, match="Salesforce field region__c is already mapped"):  # API names ignore case
        check_mapping(mapping("region__c", "territory"), sf("region__c", "picklist"), hs("territory", "select"),
                      existing)


def test_default_mappings_count_as_existing() -> None:
    with pytest.raises(MappingRefused, match="Salesforce field Name is already mapped to HubSpot property dealname"):
        check_mapping(mapping("Name", "custom"), sf("Name", "string"), hs("custom", "text"), [])
    with pytest.raises(MappingRefused, match="HubSpot property amount is already mapped to Salesforce field Amount"):
        check_mapping(mapping("Custom__c", "amount"), sf("Custom__c", "currency"), hs("amount", "number"), [])


def test_properties_managed_by_the_sync_are_refused() -> None:
    with pytest.raises(MappingRefused, match="pipeline is managed by the sync"):
        check_mapping(mapping("Custom__c", "pipeline"), sf("Custom__c", "picklist"), hs("pipeline", "select"), [])
    with pytest.raises(MappingRefused, match="RecordTypeId is managed by the sync"):
        check_mapping(mapping("RecordTypeId", "custom"), sf("RecordTypeId", "reference"), hs("custom", "select"), [])


def test_same_pair_again_is_a_rule_change() -> None:
    existing = [mapping("Region__c", "region")]
    check_mapping(mapping("Region__c", "region", SyncRule.ALWAYS_SALESFORCE), sf("Region__c", "picklist"),
                  hs("region", "select"), existing)
    check_mapping(FieldMapping(salesforce_field="Name", hubspot_property="dealname",
                               rule=SyncRule.PREFER_SALESFORCE_UNLESS_BLANK),
                  sf("Name", "string"), hs("dealname", "text"), [])


def test_owner_mapping_can_only_be_two_way() -> None:
    owner = FieldMapping(salesforce_field="OwnerId", hubspot_property="hubspot_owner_id",
                         rule=SyncRule.PREFER_SALESFORCE_UNLESS_BLANK)
    owner_property = hs("hubspot_owner_id", "select", hs_type="enumeration", referencedObjectType="OWNER")
    with pytest.raises(MappingRefused, match="can only be two-way"):
        check_mapping(owner, sf("OwnerId", "reference"), owner_property, [])
    check_mapping(owner.model_copy(update={"rule": SyncRule.TWO_WAY}), sf("OwnerId", "reference"), owner_property, [])
