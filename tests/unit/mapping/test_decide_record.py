"""decide_record over the default mappings: patches, shadows, conflicts, per-field errors and warnings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from dealsync.mapping.fields import FieldSpec, build_field_specs, default_specs
from dealsync.mapping.owners import HubSpotOwner, OwnerDirectory, SalesforceUser
from dealsync.mapping.rules import RecordDecision, SideSnapshot, decide_record
from dealsync.mapping.stages import StageMap
from dealsync.mapping.values import ValueKind
from dealsync.models.domain import ErrorCategory, FieldMapping, ShadowValue, Side, StageMapping, SyncRule

EARLY = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
LATE = datetime(2026, 3, 1, 11, 0, tzinfo=UTC)

ALICE = "005000000000001AAA"  # active, HubSpot owner 101
BOB = "005000000000002AAA"  # inactive, HubSpot owner 102
CAROL = "005000000000003AAA"  # active, no HubSpot owner
INTEGRATION = "005000000000009AAA"  # the integration user, HubSpot owner 109
OWNERS = OwnerDirectory(
    [SalesforceUser(ALICE, "alice@example.com"), SalesforceUser(BOB, "bob@example.com", active=False),
     SalesforceUser(CAROL, "carol@example.com"), SalesforceUser(INTEGRATION, "sync@example.com")],
    [HubSpotOwner("101", "Alice@Example.com"), HubSpotOwner("102", "bob@example.com"),
     HubSpotOwner("104", "dave@example.com"), HubSpotOwner("109", "sync@example.com")],
    integration_user_id=INTEGRATION,
)

RT_SALES = "012000000000001AAA"
RT_RENEWAL = "012000000000002AAA"
SINGLE = StageMap([StageMapping(record_type_id="default", pipeline_id="p1", label="Salesforce - Default pipeline",
                                stages={"Prospecting": "s1", "Negotiation": "s2", "Closed Won": "s3"})])
MULTI = StageMap([
    StageMapping(record_type_id=RT_SALES, pipeline_id="p-sales", label=f"Salesforce - {RT_SALES}",
                 stages={"Prospecting": "a1", "Closed Won": "a2"}),
    StageMapping(record_type_id=RT_RENEWAL, pipeline_id="p-renewal", label=f"Salesforce - {RT_RENEWAL}",
                 stages={"Renewal Due": "b1", "Closed Won": "b2"}),
])
SPECS = default_specs(multi_currency=False)


def sf_record(**overrides: Any) -> dict[str, Any]:
    return {"Id": "006000000000001AAA", "OwnerId": ALICE, "CloseDate": "2026-03-01", "Name": "Acme renewal",
            "Type": "New Business", "Description": None, "Amount": 1500.0, "StageName": "Prospecting",
            "RecordTypeId": None, "HasOpportunityLineItem": False, **overrides}


def hs_properties(**overrides: Any) -> dict[str, Any]:
    return {"hubspot_owner_id": "101", "closedate": "2026-03-01T00:00:00Z", "dealname": "Acme renewal",
            "dealtype": "newbusiness", "description": None, "amount": "1500.00", "dealstage": "s1",
            "pipeline": "p1", **overrides}


AGREED: dict[str, ShadowValue] = {
    "OwnerId": ALICE, "CloseDate": "2026-03-01", "Name": "Acme renewal", "Type": "New Business",
    "Description": None, "Amount": "1500", "StageName": "default:Prospecting",
}


def decide(
    sf: dict[str, Any] | None,
    hs: dict[str, Any] | None,
    shadow: dict[str, ShadowValue] | None,
    *,
    sf_at: datetime = EARLY,
    hs_at: datetime = EARLY,
    stages: StageMap = SINGLE,
    specs: list[FieldSpec] = SPECS,
    hs_field_times: dict[str, datetime] | None = None,
) -> RecordDecision:
    salesforce = SideSnapshot(sf, changed_at=sf_at) if sf is not None else SideSnapshot.absent()
    hubspot = (SideSnapshot(hs, changed_at=hs_at, field_changed_at=hs_field_times or {})
               if hs is not None else SideSnapshot.absent())
    return decide_record(specs, salesforce, hubspot, shadow, stages=stages, owners=OWNERS)


def categories(decision: RecordDecision) -> list[tuple[str, ErrorCategory]]:
    return [(error.field, error.category) for error in decision.errors]


def test_records_in_step_write_nothing() -> None:
    decision = decide(sf_record(), hs_properties(), AGREED)
    assert not decision.writes_anything
    assert decision.shadow == AGREED
    assert (decision.conflicts, decision.errors, decision.warnings) == ((), (), ())


def test_salesforce_change_goes_to_hubspot_only() -> None:
    decision = decide(sf_record(Name="Acme 2027", Amount=2000, CloseDate="2026-04-30"), hs_properties(), AGREED,
                      sf_at=LATE)
    assert decision.hubspot_properties == {"dealname": "Acme 2027", "amount": "2000",
                                           "closedate": "2026-04-30T00:00:00Z"}
    assert decision.salesforce_fields == {}
    assert decision.shadow == {**AGREED, "Name": "Acme 2027", "Amount": "2000", "CloseDate": "2026-04-30"}


def test_hubspot_change_goes_to_salesforce_only() -> None:
    hs = hs_properties(amount="1234.5", description="Multi-year", dealtype="existingbusiness")
    decision = decide(sf_record(), hs, AGREED, hs_at=LATE)
    assert decision.salesforce_fields == {"Amount": 1234.5, "Description": "Multi-year", "Type": "Existing Business"}
    assert decision.hubspot_properties == {}
    assert decision.shadow["Type"] == "Existing Business"


def test_clearing_in_hubspot_clears_salesforce_and_back() -> None:
    agreed = {**AGREED, "Description": "Notes"}
    cleared_in_hs = decide(sf_record(Description="Notes"), hs_properties(description=""), agreed, hs_at=LATE)
    assert cleared_in_hs.salesforce_fields == {"Description": None}
    cleared_in_sf = decide(sf_record(Description=None), hs_properties(description="Notes"), agreed, sf_at=LATE)
    assert cleared_in_sf.hubspot_properties == {"description": ""}
    assert cleared_in_sf.shadow["Description"] is None


def test_echo_of_our_write_is_a_no_op() -> None:
    first = decide(sf_record(), hs_properties(dealname="Acme Corp"), AGREED, hs_at=LATE)
    assert first.salesforce_fields == {"Name": "Acme Corp"}
    echo = decide(sf_record(Name="Acme Corp"), hs_properties(dealname="Acme Corp"), first.shadow, sf_at=LATE)
    assert not echo.writes_anything


def test_equivalent_representations_are_not_changes() -> None:
    decision = decide(sf_record(Amount=1500), hs_properties(amount="1.5E+3", closedate="1772323200000"), AGREED)
    assert not decision.writes_anything
    closedate_as_datetime = decide(sf_record(), hs_properties(closedate="2026-03-01T16:50:06.678Z"), AGREED)
    assert not closedate_as_datetime.writes_anything


def test_both_changed_later_wins_and_conflict_is_counted() -> None:
    decision = decide(sf_record(Name="From Salesforce"), hs_properties(dealname="From HubSpot"), AGREED,
                      sf_at=EARLY, hs_field_times={"dealname": LATE})
    assert decision.salesforce_fields == {"Name": "From HubSpot"}
    assert decision.conflicts == ("Name",)
    assert decision.fields["Name"].winner is Side.HUBSPOT


def test_property_timestamp_beats_record_timestamp() -> None:
    # the deal was touched late, but dealname itself changed before the opportunity did
    decision = decide(sf_record(Name="From Salesforce"), hs_properties(dealname="From HubSpot"), AGREED,
                      sf_at=datetime(2026, 3, 1, 10, 30, tzinfo=UTC), hs_at=LATE, hs_field_times={"dealname": EARLY})
    assert decision.hubspot_properties == {"dealname": "From Salesforce"}


def test_long_hubspot_name_is_truncated_with_a_warning_once() -> None:
    long_name = "N" * 150
    first = decide(sf_record(), hs_properties(dealname=long_name), AGREED, hs_at=LATE)
    assert first.salesforce_fields == {"Name": "N" * 120}
    assert first.shadow["Name"] == "N" * 120
    assert [warning.field for warning in first.warnings] == ["Name"]
    assert "longer than 120" in first.warnings[0].message
    assert long_name not in first.warnings[0].message  # names are not logged
    again = decide(sf_record(Name="N" * 120), hs_properties(dealname=long_name), first.shadow, sf_at=LATE)
    assert not again.writes_anything
    assert again.warnings == ()


def test_unmapped_salesforce_value_is_an_error_and_other_fields_still_sync() -> None:
    decision = decide(sf_record(Type="Partner Referral", Name="Acme 2027"), hs_properties(), AGREED, sf_at=LATE)
    assert categories(decision) == [("Type", ErrorCategory.UNMAPPED_VALUE)]
    assert "'Partner Referral'" in decision.errors[0].message
    assert decision.hubspot_properties == {"dealname": "Acme 2027"}
    assert decision.shadow["Type"] == "New Business"  # kept, so the next run retries once the value is mapped


def test_unmapped_hubspot_value_is_an_error() -> None:
    decision = decide(sf_record(), hs_properties(dealtype="renewal"), AGREED, hs_at=LATE)
    assert categories(decision) == [("Type", ErrorCategory.UNMAPPED_VALUE)]
    assert "'renewal'" in decision.errors[0].message
    assert not decision.writes_anything


def test_unmapped_hubspot_value_is_overwritten_when_salesforce_wins() -> None:
    decision = decide(sf_record(Type="Existing Business"), hs_properties(dealtype="renewal"), AGREED,
                      sf_at=LATE, hs_at=EARLY)
    assert decision.hubspot_properties == {"dealtype": "existingbusiness"}
    assert decision.errors == ()


def test_value_map_extension_is_used() -> None:
    specs = [FieldSpec("Type", "dealtype", ValueKind.PICKLIST, builtin=True,
                       value_map={"New Business": "newbusiness", "Partner Referral": "partner"})]
    decision = decide(sf_record(Type="Partner Referral"), hs_properties(), {"Type": "New Business"}, specs=specs)
    assert decision.hubspot_properties == {"dealtype": "partner"}


def test_stage_change_in_hubspot_single_pipeline() -> None:
    decision = decide(sf_record(), hs_properties(dealstage="s3"), AGREED, hs_at=LATE)
    assert decision.salesforce_fields == {"StageName": "Closed Won"}
    assert decision.shadow["StageName"] == "default:Closed Won"


def test_stage_change_in_salesforce_single_pipeline() -> None:
    decision = decide(sf_record(StageName="Negotiation"), hs_properties(), AGREED, sf_at=LATE)
    assert decision.hubspot_properties == {"pipeline": "p1", "dealstage": "s2"}  # written together


def test_single_pipeline_org_with_one_record_type() -> None:
    decision = decide(sf_record(RecordTypeId=RT_SALES, StageName="Negotiation"), hs_properties(), AGREED, sf_at=LATE)
    assert decision.hubspot_properties == {"pipeline": "p1", "dealstage": "s2"}
    assert "RecordTypeId" not in decision.salesforce_fields


def test_unmapped_salesforce_stage() -> None:
    decision = decide(sf_record(StageName="Qualification", Name="Other"), hs_properties(), AGREED, sf_at=LATE)
    assert categories(decision) == [("StageName", ErrorCategory.UNMAPPED_STAGE)]
    assert decision.hubspot_properties == {"dealname": "Other"}
    assert decision.shadow["StageName"] == "default:Prospecting"


def test_unknown_hubspot_stage() -> None:
    decision = decide(sf_record(), hs_properties(dealstage="s99"), AGREED, hs_at=LATE)
    assert categories(decision) == [("StageName", ErrorCategory.UNMAPPED_STAGE)]
    assert not decision.writes_anything


def test_deal_moved_to_another_record_types_pipeline() -> None:
    shadow = {**AGREED, "StageName": f"{RT_SALES}:Prospecting"}
    decision = decide(sf_record(RecordTypeId=RT_SALES), hs_properties(pipeline="p-renewal", dealstage="b1"), shadow,
                      hs_at=LATE, stages=MULTI)
    assert decision.salesforce_fields == {"StageName": "Renewal Due", "RecordTypeId": RT_RENEWAL}
    assert decision.shadow["StageName"] == f"{RT_RENEWAL}:Renewal Due"


def test_record_type_change_in_salesforce_moves_the_deal() -> None:
    shadow = {**AGREED, "StageName": f"{RT_SALES}:Prospecting"}
    decision = decide(sf_record(RecordTypeId=RT_RENEWAL[:15], StageName="Renewal Due"),
                      hs_properties(pipeline="p-sales", dealstage="a1"), shadow, sf_at=LATE, stages=MULTI)
    assert decision.hubspot_properties == {"pipeline": "p-renewal", "dealstage": "b1"}


def test_record_type_past_the_pipeline_limit() -> None:
    decision = decide(sf_record(RecordTypeId="012000000000003AAA"), None, None, sf_at=LATE, stages=MULTI)
    assert categories(decision) == [("StageName", ErrorCategory.PIPELINE_LIMIT)]
    assert "pipeline" not in decision.hubspot_properties


def test_owner_change_in_salesforce_without_hubspot_owner() -> None:
    decision = decide(sf_record(OwnerId=CAROL), hs_properties(), AGREED, sf_at=LATE)
    assert decision.hubspot_properties == {"hubspot_owner_id": ""}
    assert categories(decision) == [("OwnerId", ErrorCategory.OWNER_NOT_FOUND)]
    assert decision.shadow["OwnerId"] == CAROL
    # the next run finds nothing to write, and the error stands until the owner exists in HubSpot
    again = decide(sf_record(OwnerId=CAROL), hs_properties(hubspot_owner_id=""), decision.shadow)
    assert not again.writes_anything
    assert categories(again) == [("OwnerId", ErrorCategory.OWNER_NOT_FOUND)]


def test_owner_change_in_hubspot_to_a_matching_active_user() -> None:
    shadow = {**AGREED, "OwnerId": CAROL}
    decision = decide(sf_record(OwnerId=CAROL), hs_properties(hubspot_owner_id="101"), shadow, hs_at=LATE)
    assert decision.salesforce_fields == {"OwnerId": ALICE}
    assert decision.shadow["OwnerId"] == ALICE


@pytest.mark.parametrize("hubspot_owner", ["104", "102", ""], ids=["no user", "inactive user", "cleared"])
def test_owner_change_in_hubspot_without_active_match_resets_hubspot(hubspot_owner: str) -> None:
    decision = decide(sf_record(), hs_properties(hubspot_owner_id=hubspot_owner), AGREED, hs_at=LATE)
    assert decision.salesforce_fields == {}
    assert decision.hubspot_properties == {"hubspot_owner_id": "101"}
    assert decision.shadow["OwnerId"] == ALICE
    expected = [] if hubspot_owner == "" else [("OwnerId", ErrorCategory.OWNER_NOT_FOUND)]
    assert categories(decision) == expected


def test_inactive_salesforce_owner_still_syncs_to_hubspot() -> None:
    decision = decide(sf_record(OwnerId=BOB), hs_properties(), AGREED, sf_at=LATE)
    assert decision.hubspot_properties == {"hubspot_owner_id": "102"}
    # and its HubSpot counterpart agrees with it afterwards
    again = decide(sf_record(OwnerId=BOB), hs_properties(hubspot_owner_id="102"), decision.shadow)
    assert not again.writes_anything


def test_owner_rule_is_always_two_way() -> None:
    specs = [FieldSpec("OwnerId", "hubspot_owner_id", ValueKind.OWNER, rule=SyncRule.ALWAYS_SALESFORCE, builtin=True)]
    decision = decide(sf_record(OwnerId=CAROL), hs_properties(hubspot_owner_id="101"), {"OwnerId": CAROL},
                      hs_at=LATE, specs=specs)
    assert decision.salesforce_fields == {"OwnerId": ALICE}


def test_new_deal_from_salesforce() -> None:
    decision = decide(sf_record(Description="Three years", Type="Existing Business"), None, None)
    assert decision.hubspot_properties == {
        "hubspot_owner_id": "101", "closedate": "2026-03-01T00:00:00Z", "dealname": "Acme renewal",
        "dealtype": "existingbusiness", "description": "Three years", "amount": "1500", "pipeline": "p1",
        "dealstage": "s1",
    }
    assert decision.salesforce_fields == {}
    assert decision.shadow == {**AGREED, "Description": "Three years", "Type": "Existing Business"}
    assert decision.conflicts == ()


def test_new_opportunity_from_hubspot() -> None:
    decision = decide(None, hs_properties(dealstage="s2", hubspot_owner_id="101"), None)
    assert decision.salesforce_fields == {
        "OwnerId": ALICE, "CloseDate": "2026-03-01", "Name": "Acme renewal", "Type": "New Business",
        "Amount": 1500, "StageName": "Negotiation",
    }
    assert decision.hubspot_properties == {}
    assert decision.shadow["StageName"] == "default:Negotiation"


def test_new_opportunity_from_hubspot_in_a_record_type_pipeline() -> None:
    decision = decide(None, hs_properties(pipeline="p-renewal", dealstage="b1"), None, stages=MULTI)
    assert decision.salesforce_fields["RecordTypeId"] == RT_RENEWAL
    assert decision.salesforce_fields["StageName"] == "Renewal Due"


@pytest.mark.parametrize("hubspot_owner", ["104", ""], ids=["unmatched owner", "no owner"])
def test_new_opportunity_without_owner_match_goes_to_the_integration_user(hubspot_owner: str) -> None:
    decision = decide(None, hs_properties(hubspot_owner_id=hubspot_owner), None)
    assert decision.salesforce_fields["OwnerId"] == INTEGRATION
    assert decision.hubspot_properties == {"hubspot_owner_id": "109"}
    assert decision.shadow["OwnerId"] == INTEGRATION
    expected = [("OwnerId", ErrorCategory.OWNER_NOT_FOUND)] if hubspot_owner else []
    assert categories(decision) == expected


def test_existing_pair_linked_without_shadow() -> None:
    decision = decide(sf_record(Name="Old name"), hs_properties(dealname="New name", description="Only in HubSpot"),
                      None, sf_at=EARLY, hs_at=LATE)
    assert decision.salesforce_fields == {"Name": "New name", "Description": "Only in HubSpot"}
    assert decision.conflicts == ()  # no shadow, so nothing to be in conflict with


def test_amount_on_opportunity_with_products_is_not_written_to_salesforce() -> None:
    decision = decide(sf_record(HasOpportunityLineItem=True), hs_properties(amount="999"), AGREED, hs_at=LATE)
    assert decision.salesforce_fields == {}
    assert decision.hubspot_properties == {"amount": "1500"}
    assert [warning.field for warning in decision.warnings] == ["Amount"]
    salesforce_change = decide(sf_record(HasOpportunityLineItem=True, Amount=1750.25), hs_properties(), AGREED,
                               sf_at=LATE)
    assert salesforce_change.hubspot_properties == {"amount": "1750.25"}


def test_hubspot_amount_is_rounded_to_currency_scale() -> None:
    decision = decide(sf_record(), hs_properties(amount="1234.565"), AGREED, hs_at=LATE)
    assert decision.salesforce_fields == {"Amount": 1234.57}
    again = decide(sf_record(Amount=1234.57), hs_properties(amount="1234.565"), decision.shadow)
    assert not again.writes_anything


def test_field_not_read_is_left_alone() -> None:
    hs = hs_properties()
    del hs["description"]
    decision = decide(sf_record(Description="New"), hs, AGREED, sf_at=LATE)
    assert "description" not in decision.hubspot_properties
    assert decision.shadow["Description"] is None
    assert [warning.field for warning in decision.warnings] == ["Description"]


def test_org_without_record_types_needs_no_record_type_field() -> None:
    sf = sf_record(StageName="Negotiation")
    del sf["RecordTypeId"]
    decision = decide(sf, hs_properties(), AGREED, sf_at=LATE)
    assert decision.hubspot_properties == {"pipeline": "p1", "dealstage": "s2"}
    assert decision.warnings == ()


def test_dont_sync_mapping_is_ignored_and_has_no_shadow() -> None:
    specs = [FieldSpec("Description", "description", ValueKind.TEXT, rule=SyncRule.DONT_SYNC)]
    decision = decide(sf_record(Description="SF"), hs_properties(description="HS"), {"Description": "old"},
                      specs=specs)
    assert not decision.writes_anything
    assert decision.shadow == {}


def test_custom_prefer_salesforce_mapping() -> None:
    specs = [FieldSpec("Region__c", "region", ValueKind.PICKLIST, rule=SyncRule.PREFER_SALESFORCE_UNLESS_BLANK)]
    empty_sf = decide(sf_record(Region__c=None), hs_properties(region="EMEA"), {"Region__c": None}, specs=specs,
                      hs_at=LATE)
    assert empty_sf.salesforce_fields == {"Region__c": "EMEA"}
    filled_sf = decide(sf_record(Region__c="APAC"), hs_properties(region="EMEA"), {"Region__c": "APAC"},
                       specs=specs, hs_at=LATE)
    assert filled_sf.hubspot_properties == {"region": "APAC"}


def test_currency_code_in_multi_currency_orgs() -> None:
    specs = default_specs(multi_currency=True)
    decision = decide(sf_record(CurrencyIsoCode="EUR"), hs_properties(deal_currency_code="USD"),
                      {**AGREED, "CurrencyIsoCode": "USD"}, sf_at=LATE, specs=specs)
    assert decision.hubspot_properties == {"deal_currency_code": "EUR"}


def test_bad_hubspot_number_is_an_error_for_that_field() -> None:
    decision = decide(sf_record(), hs_properties(amount="lots"), AGREED, hs_at=LATE)
    assert categories(decision) == [("Amount", ErrorCategory.SALESFORCE_VALIDATION)]
    assert not decision.writes_anything


def test_custom_boolean_and_multipicklist() -> None:
    specs = [FieldSpec("Strategic__c", "strategic", ValueKind.BOOLEAN),
             FieldSpec("Products__c", "products", ValueKind.MULTIPICKLIST)]
    decision = decide(sf_record(Strategic__c=False, Products__c="B;A"), hs_properties(strategic=None, products="A;B"),
                      None, specs=specs)
    assert not decision.writes_anything
    assert decision.shadow == {"Strategic__c": "false", "Products__c": "A;B"}
    changed = decide(sf_record(Strategic__c=False, Products__c="A;B"), hs_properties(strategic="true", products="C"),
                     decision.shadow, specs=specs, hs_at=LATE)
    assert changed.salesforce_fields == {"Strategic__c": True, "Products__c": "C"}


@pytest.mark.parametrize(("property_name", "field", "restored"), [
    ("dealname", "Name", "Acme renewal"),
    ("closedate", "CloseDate", "2026-03-01T00:00:00Z"),
    ("dealstage", "StageName", "s1"),
])
def test_clearing_a_required_field_in_hubspot_resets_hubspot(property_name: str, field: str, restored: str) -> None:
    decision = decide(sf_record(Description="Kept going"), hs_properties(**{property_name: "", "description": "New"}),
                      {**AGREED, "Description": "Kept going"}, hs_at=LATE)
    assert decision.salesforce_fields == {"Description": "New"}  # the other fields still go
    with_pipeline = {"pipeline": "p1"} if property_name == "dealstage" else {}  # a stage goes with its pipeline
    assert decision.hubspot_properties == {property_name: restored, **with_pipeline}
    assert [warning.field for warning in decision.warnings] == [field]
    assert decision.shadow[field] == AGREED[field]


def test_custom_required_field_from_describe() -> None:
    specs = build_field_specs(
        [FieldMapping(salesforce_field="Code__c", hubspot_property="code")], multi_currency=False,
        salesforce_fields={"Code__c": {"type": "string", "length": 10, "nillable": False}},
        hubspot_properties={"code": {"type": "string", "fieldType": "text"}},
    ).by_key()
    assert specs["Code__c"].required
    decision = decide(sf_record(Code__c="X1"), hs_properties(code=None), {"Code__c": "X1"},
                      specs=[specs["Code__c"]], hs_at=LATE)
    assert decision.hubspot_properties == {"code": "X1"}
    assert decision.salesforce_fields == {}


def test_missing_values_can_mean_blank() -> None:
    hs = hs_properties(description="Was here")
    del hs["description"]
    strict = decide(sf_record(Description="Was here"), hs, {**AGREED, "Description": "Was here"}, hs_at=LATE)
    assert strict.salesforce_fields == {}
    lenient = decide_record(
        SPECS, SideSnapshot(sf_record(Description="Was here"), changed_at=EARLY),
        SideSnapshot(hs, changed_at=LATE, missing_is_blank=True), {**AGREED, "Description": "Was here"},
        stages=SINGLE, owners=OWNERS)
    assert lenient.salesforce_fields == {"Description": None}
    assert lenient.warnings == ()


def test_properties_dealsync_wrote_do_not_win_by_their_copy_time() -> None:
    # The deal was written by dealsync (late) from an older Salesforce read; the link was never saved.
    copied = {"dealname", "amount"}
    hubspot = SideSnapshot(hs_properties(dealname="Old name", amount="100"), changed_at=LATE,
                           field_changed_at={name: LATE for name in copied}, copied_fields=frozenset(copied))
    salesforce = SideSnapshot(sf_record(Name="New name", Amount=250.0), changed_at=EARLY)
    decision = decide_record(SPECS, salesforce, hubspot, None, stages=SINGLE, owners=OWNERS)
    assert decision.hubspot_properties["dealname"] == "New name"
    assert decision.hubspot_properties["amount"] == "250"
    assert "Name" not in decision.salesforce_fields and "Amount" not in decision.salesforce_fields


def test_an_opportunity_dealsync_wrote_last_has_no_change_time_and_hubspot_edits_win() -> None:
    # dealsync created the opportunity from an older read of the deal (late), a person edited the deal
    # (early, before the copy landed); the worker died before the link: no shadow.
    salesforce = SideSnapshot(sf_record(Name="Copied name"), changed_at=None)
    hubspot = SideSnapshot(hs_properties(dealname="Edited name"), changed_at=EARLY,
                           field_changed_at={"dealname": EARLY})
    decision = decide_record(SPECS, salesforce, hubspot, None, stages=SINGLE, owners=OWNERS)
    assert decision.salesforce_fields.get("Name") == "Edited name"


def test_salesforce_value_dealsync_copied_earlier_loses_to_a_later_hubspot_edit() -> None:
    # Salesforce's close date was copied to HubSpot (EARLY); a person then edited it in HubSpot (10:30); the
    # opportunity's stamp is LATE only because someone changed its owner. The link's shadow lagged behind.
    middle = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
    salesforce = SideSnapshot(sf_record(CloseDate="2027-03-30"), changed_at=LATE)
    hubspot = SideSnapshot(hs_properties(closedate="2028-06-18"), changed_at=middle,
                           field_changed_at={"closedate": middle},
                           last_copies={"closedate": ("2027-03-30T00:00:00.000Z", EARLY)})
    shadow = {**AGREED, "CloseDate": "2028-04-05"}
    decision = decide_record(SPECS, salesforce, hubspot, shadow, stages=SINGLE, owners=OWNERS)
    assert decision.salesforce_fields.get("CloseDate") == "2028-06-18"
    # Salesforce changed again after the copy: its own stamp counts
    changed_since = SideSnapshot(sf_record(CloseDate="2029-01-01"), changed_at=LATE)
    decision = decide_record(SPECS, changed_since, hubspot, shadow, stages=SINGLE, owners=OWNERS)
    assert decision.hubspot_properties.get("closedate") is not None and "CloseDate" not in decision.salesforce_fields


def test_a_pending_write_that_reached_hubspot_counts_as_agreed() -> None:
    # A sync wrote Amount 2500 to HubSpot and died before saving the shadow (still 1500); the person then
    # put Salesforce back to 1500. Salesforce's change wins; without the pending write HubSpot's copy would.
    salesforce = SideSnapshot(sf_record(Amount=1500.0), changed_at=EARLY)
    hubspot = SideSnapshot(hs_properties(amount="2500"), changed_at=LATE)
    pending = {"hubspot": {"Amount": "2500"}, "salesforce": {}}
    decision = decide_record(SPECS, salesforce, hubspot, AGREED, stages=SINGLE, owners=OWNERS, pending=pending)
    assert decision.hubspot_properties == {"amount": "1500"}
    assert decision.salesforce_fields == {}
    without = decide_record(SPECS, salesforce, hubspot, AGREED, stages=SINGLE, owners=OWNERS)
    assert without.salesforce_fields == {"Amount": 2500.0}


def test_a_pending_write_that_did_not_reach_its_side_is_done_again() -> None:
    # The sync meant to write Amount 2500 to HubSpot and died before it: Salesforce holds 2500, HubSpot 1500.
    salesforce = SideSnapshot(sf_record(Amount=2500.0), changed_at=EARLY)
    hubspot = SideSnapshot(hs_properties(), changed_at=LATE)
    pending = {"hubspot": {"Amount": "2500"}, "salesforce": {}}
    decision = decide_record(SPECS, salesforce, hubspot, AGREED, stages=SINGLE, owners=OWNERS, pending=pending)
    assert decision.hubspot_properties == {"amount": "2500"}
    assert decision.shadow["Amount"] == "2500"


MIDDLE = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)


def test_salesforce_setting_the_agreed_value_again_after_hubspots_change_wins() -> None:
    # HubSpot: New → Existing at 10:00. Salesforce: New → Existing → New, the last at 10:30 (field history).
    hs = hs_properties(dealtype="existingbusiness")
    salesforce = SideSnapshot(sf_record(), changed_at=MIDDLE, field_changed_at={"Type": MIDDLE})
    hubspot = SideSnapshot(hs, changed_at=EARLY, field_changed_at={"dealtype": EARLY})
    decision = decide_record(SPECS, salesforce, hubspot, AGREED, stages=SINGLE, owners=OWNERS)
    assert decision.hubspot_properties == {"dealtype": "newbusiness"}
    assert decision.salesforce_fields == {}
    assert decision.fields["Type"].winner is Side.SALESFORCE
    # Set again before HubSpot's change: HubSpot's is the later one.
    earlier = SideSnapshot(sf_record(), changed_at=MIDDLE, field_changed_at={"Type": EARLY})
    later_hubspot = SideSnapshot(hs, changed_at=MIDDLE, field_changed_at={"dealtype": MIDDLE})
    decision = decide_record(SPECS, earlier, later_hubspot, AGREED, stages=SINGLE, owners=OWNERS)
    assert decision.salesforce_fields == {"Type": "Existing Business"}


def test_a_record_modified_after_the_other_sides_change_is_decided_again_with_histories() -> None:
    # Without field times, a Salesforce record a person modified after HubSpot's change may hold the agreed
    # value set again: the decision asks for a recheck (the engines read both histories), and decides as before.
    decision = decide(sf_record(), hs_properties(dealtype="existingbusiness"), AGREED, sf_at=LATE, hs_at=EARLY)
    assert decision.recheck == ("Type",)
    assert decision.salesforce_fields == {"Type": "Existing Business"}
    # Modified before HubSpot's change: nothing to recheck.
    assert decide(sf_record(), hs_properties(dealtype="existingbusiness"), AGREED, sf_at=EARLY,
                  hs_at=LATE).recheck == ()
    # The other way: a deal modified after the Salesforce change.
    decision = decide(sf_record(Type="Existing Business"), hs_properties(), AGREED, sf_at=EARLY, hs_at=LATE)
    assert decision.recheck == ("Type",)
    assert decision.hubspot_properties == {"dealtype": "existingbusiness"}


def test_hubspot_setting_the_agreed_value_again_after_salesforces_change_wins_unless_it_was_our_copy() -> None:
    sf = sf_record(Type="Existing Business")
    salesforce = SideSnapshot(sf, changed_at=EARLY)
    by_person = SideSnapshot(hs_properties(), changed_at=LATE, field_changed_at={"dealtype": LATE})
    decision = decide_record(SPECS, salesforce, by_person, AGREED, stages=SINGLE, owners=OWNERS)
    assert decision.salesforce_fields == {"Type": "New Business"}
    assert decision.fields["Type"].winner is Side.HUBSPOT
    copied = SideSnapshot(hs_properties(), changed_at=LATE, field_changed_at={"dealtype": LATE},
                          copied_fields=frozenset({"dealtype"}))
    decision = decide_record(SPECS, salesforce, copied, AGREED, stages=SINGLE, owners=OWNERS)
    assert decision.hubspot_properties == {"dealtype": "existingbusiness"}


def test_a_stage_dealsync_wrote_after_a_persons_pipeline_change_is_a_copy() -> None:
    # A person moved the deal to the sales pipeline (EARLY); dealsync then wrote only its stage (LATE, from
    # an older read of Salesforce). The pipeline and stage together are dealsync's copy: the person's later
    # Salesforce stage (MIDDLE) wins, though HubSpot's pipeline history names a person.
    shadow = {**AGREED, "StageName": f"{RT_RENEWAL}:Closed Won"}
    salesforce = SideSnapshot(sf_record(RecordTypeId=RT_SALES, StageName="Prospecting"), changed_at=MIDDLE,
                              field_changed_at={"StageName": MIDDLE})
    hubspot = SideSnapshot(hs_properties(pipeline="p-sales", dealstage="a2"), changed_at=LATE,
                           field_changed_at={"pipeline": EARLY, "dealstage": LATE},
                           copied_fields=frozenset({"dealstage"}))
    decision = decide_record(SPECS, salesforce, hubspot, shadow, stages=MULTI, owners=OWNERS, origin=Side.HUBSPOT)
    assert decision.hubspot_properties == {"pipeline": "p-sales", "dealstage": "a1"}
    assert decision.salesforce_fields == {}
    # The person changed the stage after dealsync's write: HubSpot's value is theirs, and the later one.
    by_person = SideSnapshot(hs_properties(pipeline="p-sales", dealstage="a2"), changed_at=LATE,
                             field_changed_at={"pipeline": LATE, "dealstage": EARLY},
                             copied_fields=frozenset({"dealstage"}))
    decision = decide_record(SPECS, salesforce, by_person, shadow, stages=MULTI, owners=OWNERS, origin=Side.HUBSPOT)
    assert decision.salesforce_fields == {"StageName": "Closed Won", "RecordTypeId": RT_SALES}


def test_a_record_type_a_person_changed_after_dealsync_copied_the_stage_is_theirs() -> None:
    # dealsync copied HubSpot's stage to StageName (EARLY); a person then changed the record type (MIDDLE).
    # Salesforce's stage (record type and stage) is the person's, and later than HubSpot's change.
    shadow = {**AGREED, "StageName": f"{RT_RENEWAL}:Closed Won"}
    salesforce = SideSnapshot(sf_record(RecordTypeId=RT_SALES, StageName="Closed Won"), changed_at=MIDDLE,
                              field_changed_at={"RecordTypeId": MIDDLE}, copied_fields=frozenset({"StageName"}),
                              copied_at={"StageName": EARLY})
    hubspot = SideSnapshot(hs_properties(pipeline="p-renewal", dealstage="b1"), changed_at=EARLY,
                           field_changed_at={"pipeline": EARLY, "dealstage": EARLY})
    decision = decide_record(SPECS, salesforce, hubspot, shadow, stages=MULTI, owners=OWNERS, origin=Side.HUBSPOT)
    assert decision.hubspot_properties == {"pipeline": "p-sales", "dealstage": "a2"}
    assert decision.salesforce_fields == {}
    # In the same second as the copy (Salesforce keeps its times to the second): the person's change may be
    # the later one, and is taken as such.
    same_second = SideSnapshot(sf_record(RecordTypeId=RT_SALES, StageName="Closed Won"), changed_at=MIDDLE,
                               field_changed_at={"RecordTypeId": MIDDLE}, copied_fields=frozenset({"StageName"}),
                               copied_at={"StageName": MIDDLE})
    assert not same_second.holds_copy(["StageName", "RecordTypeId"])
    assert not same_second.holds_copy(["RecordTypeId", "StageName"])
    decision = decide_record(SPECS, same_second, hubspot, shadow, stages=MULTI, owners=OWNERS, origin=Side.HUBSPOT)
    assert decision.hubspot_properties == {"pipeline": "p-sales", "dealstage": "a2"}
    # Only the copy, no later change of the record type: HubSpot's value wins.
    copied = SideSnapshot(sf_record(RecordTypeId=RT_SALES, StageName="Closed Won"), changed_at=None,
                          copied_fields=frozenset({"StageName", "RecordTypeId"}),
                          copied_at={"StageName": EARLY, "RecordTypeId": EARLY})
    decision = decide_record(SPECS, copied, hubspot, shadow, stages=MULTI, owners=OWNERS, origin=Side.HUBSPOT)
    assert decision.salesforce_fields == {"StageName": "Renewal Due", "RecordTypeId": RT_RENEWAL}


def test_a_salesforce_stage_dealsync_copied_earlier_loses_to_a_later_hubspot_stage() -> None:
    # dealsync copied Salesforce's stage (EARLY, stage "a1" of the sales pipeline); a person then moved the
    # deal to the renewal pipeline (MIDDLE); the opportunity's stamp is LATE only because another field
    # changed. No shadow yet (the pair's first link): Salesforce's stage is no newer than the copy.
    salesforce = SideSnapshot(sf_record(RecordTypeId=RT_SALES, StageName="Prospecting"), changed_at=LATE)
    hubspot = SideSnapshot(hs_properties(pipeline="p-renewal", dealstage="b1"), changed_at=MIDDLE,
                           field_changed_at={"pipeline": MIDDLE, "dealstage": MIDDLE},
                           last_copies={"dealstage": ("a1", EARLY)})
    decision = decide_record(SPECS, salesforce, hubspot, None, stages=MULTI, owners=OWNERS)
    assert decision.salesforce_fields.get("StageName") == "Renewal Due"
    assert decision.salesforce_fields.get("RecordTypeId") == RT_RENEWAL


def test_a_stage_is_written_with_its_pipeline_or_record_type_even_when_only_one_part_changed() -> None:
    # Only the stage name changed in HubSpot, in the record type's own pipeline. Salesforce gets the record type
    # with it: a person changing the record type between dealsync's read and its write must not end with a
    # record type and a stage name that neither side chose (Salesforce has no conditional collection write).
    shadow = {**AGREED, "StageName": f"{RT_SALES}:Prospecting"}
    salesforce = SideSnapshot(sf_record(RecordTypeId=RT_SALES, StageName="Prospecting"), changed_at=EARLY)
    hubspot = SideSnapshot(hs_properties(pipeline="p-sales", dealstage="a2"), changed_at=LATE)
    decision = decide_record(SPECS, salesforce, hubspot, shadow, stages=MULTI, owners=OWNERS, origin=Side.HUBSPOT)
    assert decision.salesforce_fields == {"StageName": "Closed Won", "RecordTypeId": RT_SALES}
    # And the other way: the deal gets its pipeline with the stage.
    moved = SideSnapshot(sf_record(RecordTypeId=RT_SALES, StageName="Closed Won"), changed_at=LATE)
    decision = decide_record(SPECS, moved, SideSnapshot(hs_properties(pipeline="p-sales", dealstage="a1"),
                                                        changed_at=EARLY),
                             shadow, stages=MULTI, owners=OWNERS, origin=Side.SALESFORCE)
    assert decision.hubspot_properties == {"pipeline": "p-sales", "dealstage": "a2"}
