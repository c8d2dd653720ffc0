"""Default mappings, merging stored mappings, and building FieldSpecs."""

from __future__ import annotations

from dealsync.mapping.fields import (
    OPPORTUNITY_TYPE_VALUE_MAP,
    FieldSpec,
    build_field_specs,
    default_mappings,
    default_specs,
    effective_mappings,
    hubspot_properties_to_read,
    salesforce_fields_to_read,
)
from dealsync.mapping.values import ValueKind
from dealsync.models.domain import FieldMapping, SyncRule


def test_default_mappings_are_design_1_2() -> None:
    mappings = default_mappings(multi_currency=False)
    pairs = [(m.salesforce_field, m.hubspot_property, m.rule, m.builtin) for m in mappings]
    assert pairs == [
        ("OwnerId", "hubspot_owner_id", SyncRule.TWO_WAY, True),
        ("CloseDate", "closedate", SyncRule.TWO_WAY, True),
        ("Name", "dealname", SyncRule.TWO_WAY, True),
        ("Type", "dealtype", SyncRule.TWO_WAY, True),
        ("Description", "description", SyncRule.TWO_WAY, True),
        ("Amount", "amount", SyncRule.TWO_WAY, True),
        ("StageName", "dealstage", SyncRule.TWO_WAY, True),
    ]
    with_currency = default_mappings(multi_currency=True)
    assert with_currency[-1].salesforce_field == "CurrencyIsoCode"
    assert with_currency[-1].hubspot_property == "deal_currency_code"


def test_default_specs_carry_types() -> None:
    specs = {spec.key: spec for spec in default_specs(multi_currency=False)}
    assert specs["Name"].length == 120
    assert specs["Amount"].scale == 2
    assert specs["Type"].value_map == OPPORTUNITY_TYPE_VALUE_MAP
    assert specs["StageName"].salesforce_fields == ("StageName", "RecordTypeId")
    assert specs["StageName"].hubspot_properties == ("dealstage", "pipeline")


def test_stored_mappings_override_defaults_and_add_custom_ones() -> None:
    stored = {
        "Name": FieldMapping(salesforce_field="Name", hubspot_property="dealname",
                             rule=SyncRule.PREFER_SALESFORCE_UNLESS_BLANK, builtin=True),
        "OwnerId": FieldMapping(salesforce_field="OwnerId", hubspot_property="hubspot_owner_id",
                                rule=SyncRule.ALWAYS_SALESFORCE, builtin=True),
        "Region__c": FieldMapping(salesforce_field="Region__c", hubspot_property="region"),
    }
    merged = {m.salesforce_field: m for m in effective_mappings(stored, multi_currency=False)}
    assert merged["Name"].rule is SyncRule.PREFER_SALESFORCE_UNLESS_BLANK
    assert merged["OwnerId"].rule is SyncRule.TWO_WAY  # owner can only be two-way
    assert merged["Region__c"].hubspot_property == "region"
    assert list(merged)[-1] == "Region__c"


def test_build_specs_for_custom_mappings_from_describe_and_properties() -> None:
    stored = [
        FieldMapping(salesforce_field="Region__c", hubspot_property="region", rule=SyncRule.ALWAYS_SALESFORCE),
        FieldMapping(salesforce_field="Signed__c", hubspot_property="signed_at"),
        FieldMapping(salesforce_field="Seats__c", hubspot_property="seats"),
        FieldMapping(salesforce_field="Code__c", hubspot_property="code"),
    ]
    describe = {
        "Region__c": {"name": "Region__c", "type": "picklist", "length": 255},
        "Signed__c": {"name": "Signed__c", "type": "datetime", "length": 0},
        "Seats__c": {"name": "Seats__c", "type": "double", "length": 0, "scale": 0},
        "Code__c": {"name": "Code__c", "type": "string", "length": 10},
        "Amount": {"name": "Amount", "type": "currency", "scale": 2},
    }
    properties = {
        "region": {"name": "region", "type": "enumeration", "fieldType": "select"},
        "signed_at": {"name": "signed_at", "type": "date", "fieldType": "date"},
        "seats": {"name": "seats", "type": "number", "fieldType": "number"},
        "code": {"name": "code", "type": "string", "fieldType": "text"},
    }
    result = build_field_specs(stored, {"Region__c": {"Europe": "emea"}, "Type": {"Renewal": "renewal"}},
                               multi_currency=False, salesforce_fields=describe, hubspot_properties=properties)
    specs = result.by_key()
    assert result.problems == ()
    assert specs["Region__c"] == FieldSpec("Region__c", "region", ValueKind.PICKLIST, rule=SyncRule.ALWAYS_SALESFORCE,
                                           value_map={"Europe": "emea"}, salesforce_type="picklist")
    assert specs["Signed__c"].kind is ValueKind.DATE  # a datetime shown as a HubSpot date
    assert specs["Signed__c"].salesforce_type == "datetime"
    assert (specs["Seats__c"].kind, specs["Seats__c"].scale) == (ValueKind.NUMBER, 0)
    assert (specs["Code__c"].kind, specs["Code__c"].length) == (ValueKind.TEXT, 10)
    assert specs["Type"].value_map == {**OPPORTUNITY_TYPE_VALUE_MAP, "Renewal": "renewal"}
    assert specs["Amount"].scale == 2


def test_custom_mapping_with_missing_field_is_a_problem_not_a_crash() -> None:
    stored = [FieldMapping(salesforce_field="Gone__c", hubspot_property="gone"),
              FieldMapping(salesforce_field="Blob__c", hubspot_property="blob")]
    result = build_field_specs(stored, multi_currency=False,
                               salesforce_fields={"Blob__c": {"type": "base64"}},
                               hubspot_properties={"gone": {"type": "string"}, "blob": {"type": "string"}})
    assert [spec.key for spec in result.specs] == [spec.key for spec in default_specs(multi_currency=False)]
    assert result.problems == (
        "mapping Gone__c ⇄ gone skipped: Salesforce field Gone__c not found",
        "mapping Blob__c ⇄ blob skipped: Salesforce type 'base64' cannot be synced",
    )


def test_fields_to_read() -> None:
    specs = default_specs(multi_currency=True)
    assert salesforce_fields_to_read(specs) == [
        "Id", "SystemModstamp", "OwnerId", "CloseDate", "Name", "Type", "Description", "Amount",
        "HasOpportunityLineItem", "StageName", "RecordTypeId", "CurrencyIsoCode",
    ]
    assert hubspot_properties_to_read(specs) == [
        "hubspot_owner_id", "closedate", "dealname", "dealtype", "description", "amount", "dealstage", "pipeline",
        "deal_currency_code",
    ]
