"""``dealsync mappings list|add|remove|set-rule|stages`` end to end: the CLI in-process against the world,
every mapping checked against the emulated Salesforce describe and HubSpot properties, refusals with their
reason (exit 3, and as JSON), and a custom mapping really carried by the sync in both directions."""

from __future__ import annotations

import pytest

from dealsync.models.domain import FieldMapping, SyncRule
from dealsync_cli.target import EXIT_REFUSED
from tests.mappings.conftest import MappingsWorld, Pair

pytestmark = pytest.mark.e2e


def _mappings(world: MappingsWorld) -> dict[str, dict[str, object]]:
    result = world.cli("list", "--json")
    assert result.status == 0, result.err
    return {row["salesforce_field"]: row for row in result.json()["mappings"]}


def test_list_shows_the_default_mappings_with_their_types(mappings_world: MappingsWorld) -> None:
    rows = _mappings(mappings_world)
    assert {name: row["hubspot_property"] for name, row in rows.items() if row["builtin"]} == {
        "OwnerId": "hubspot_owner_id", "CloseDate": "closedate", "Name": "dealname", "Type": "dealtype",
        "Description": "description", "Amount": "amount", "StageName": "dealstage"}
    assert rows["Type"]["rule"] == "two_way"
    assert rows["Type"]["salesforce_type"] == "picklist"
    assert rows["Type"]["hubspot_field_type"] == "radio"
    assert rows["Type"]["value_map"] == {"New Business": "newbusiness", "Existing Business": "existingbusiness"}
    assert all(row["problem"] is None for row in rows.values())
    text = mappings_world.cli("list")
    assert text.status == 0
    assert "dealname" in text.out and "default" in text.out


@pytest.mark.parametrize(("sf_field", "hs_property", "rule", "reason"), [
    ("Region__c", "notes_long", "two_way",
     "HubSpot property notes_long (multi-line text) cannot be mapped to Salesforce field Region__c (string): "
     "multi-line text maps to textarea only."),
    ("Seats__c", "region", "two_way", "HubSpot property region (single-line text) cannot be mapped to Salesforce "
     "field Seats__c (double)"),
    ("Signed__c", "seats", "two_way", "(number) cannot be mapped to Salesforce field Signed__c (boolean)"),
    ("Name", "dealname", "two_way", "Salesforce field Name is already mapped to HubSpot property dealname "
     "(rule two_way); change its rule with set-rule."),
    ("Description", "region", "two_way", "Salesforce field Description is already mapped to HubSpot property "
     "description."),
    ("Region__c", "dealname", "two_way", "HubSpot property dealname is already mapped to Salesforce field Name."),
    ("No_Such__c", "region", "two_way", "Salesforce field No_Such__c does not exist on Opportunity"),
    ("Region__c", "no_such_property", "two_way", "HubSpot deal property no_such_property does not exist."),
    ("Win_Chance__c", "hs_deal_stage_probability", "always_salesforce",
     "HubSpot property hs_deal_stage_probability is read-only, so rule always_salesforce cannot write"),
    ("ExpectedRevenue", "expected_revenue", "two_way",
     "Salesforce field ExpectedRevenue is read-only for the integration user, so rule two_way cannot write"),
    ("HubSpot_Deal_Id__c", "region", "two_way", "Salesforce field HubSpot_Deal_Id__c is managed by the sync"),
])
def test_add_refuses_with_the_reason(mappings_world: MappingsWorld, sf_field: str, hs_property: str, rule: str,
                                     reason: str) -> None:
    before = mappings_world.sync.context.store.config.load().mappings
    result = mappings_world.cli("add", sf_field, hs_property, "--rule", rule)
    assert result.status == EXIT_REFUSED
    assert reason in result.err
    as_json = mappings_world.cli("add", sf_field, hs_property, "--rule", rule, "--json")
    assert as_json.status == EXIT_REFUSED
    document = as_json.json()
    assert document["refused"] is True
    assert reason in document["message"]
    assert mappings_world.sync.context.store.config.load().mappings == before


def test_add_set_rule_and_remove_a_custom_mapping(mappings_world: MappingsWorld) -> None:
    added = mappings_world.cli("add", "expectedrevenue", "expected_revenue", "--rule", "always_salesforce", "--json")
    assert added.status == 0, added.err
    assert added.json()["mapping"] == {"salesforce_field": "ExpectedRevenue", "hubspot_property": "expected_revenue",
                                       "rule": "always_salesforce", "builtin": False}
    stored = mappings_world.sync.context.store.config.load().mappings
    assert stored["ExpectedRevenue"] == FieldMapping(salesforce_field="ExpectedRevenue",
                                                     hubspot_property="expected_revenue",
                                                     rule=SyncRule.ALWAYS_SALESFORCE)
    row = _mappings(mappings_world)["ExpectedRevenue"]
    assert (row["kind"], row["salesforce_type"], row["hubspot_field_type"]) == ("number", "currency", "number")

    again = mappings_world.cli("add", "ExpectedRevenue", "expected_revenue", "--rule", "dont_sync")
    assert again.status == EXIT_REFUSED
    assert "already mapped to HubSpot property expected_revenue (rule always_salesforce)" in again.err

    # ExpectedRevenue is calculated in Salesforce: no rule may write HubSpot values into it.
    refused = mappings_world.cli("set-rule", "ExpectedRevenue", "two_way", "--json")
    assert refused.status == EXIT_REFUSED
    assert "read-only for the integration user" in refused.json()["message"]
    changed = mappings_world.cli("set-rule", "ExpectedRevenue", "dont_sync", "--json")
    assert changed.status == 0, changed.err
    assert changed.json()["mapping"]["rule"] == "dont_sync"
    assert _mappings(mappings_world)["ExpectedRevenue"]["rule"] == "dont_sync"

    removed = mappings_world.cli("remove", "ExpectedRevenue", "--json")
    assert removed.status == 0, removed.err
    assert removed.json()["mapping"]["salesforce_field"] == "ExpectedRevenue"
    assert "ExpectedRevenue" not in _mappings(mappings_world)
    gone = mappings_world.cli("remove", "ExpectedRevenue")
    assert gone.status == EXIT_REFUSED
    assert "Salesforce field ExpectedRevenue is not mapped." in gone.err


def test_default_mappings_keep_their_place(mappings_world: MappingsWorld) -> None:
    removed = mappings_world.cli("remove", "Description", "--json")
    assert removed.status == EXIT_REFUSED
    assert "default mapping and cannot be removed; stop it with set-rule dont_sync" in removed.json()["message"]
    owner = mappings_world.cli("set-rule", "OwnerId", "always_salesforce")
    assert owner.status == EXIT_REFUSED
    assert "The owner mapping (OwnerId ⇄ hubspot_owner_id) can only be two-way." in owner.err
    changed = mappings_world.cli("set-rule", "description", "always_salesforce", "--json")
    assert changed.status == 0, changed.err
    assert changed.json()["mapping"] == {"salesforce_field": "Description", "hubspot_property": "description",
                                         "rule": "always_salesforce", "builtin": True}
    try:
        # A HubSpot edit of the description no longer reaches Salesforce; Salesforce's value comes back.
        pair = mappings_world.synced_pair("Rule on a default", {"Description": "description"},
                                          Description="from Salesforce")
        assert pair.state() == {"Description": ("from Salesforce", "from Salesforce")}
        pair.in_hubspot(description="edited in HubSpot")
        assert pair.state() == {"Description": ("from Salesforce", "from Salesforce")}
    finally:
        assert mappings_world.cli("set-rule", "Description", "two_way").status == 0


def test_a_custom_mapping_syncs_both_ways_from_the_next_change(mappings_world: MappingsWorld) -> None:
    added = mappings_world.cli("add", "Region__c", "region")
    assert added.status == 0, added.err
    assert "mapped Region__c ⇄ region (two_way)" in added.out
    pair = mappings_world.synced_pair("Custom fields", {"Region__c": "region"}, Region__c="EMEA")
    assert pair.state()["Region__c"] == ("EMEA", "EMEA")
    pair.in_hubspot(region="LATAM")
    assert pair.state()["Region__c"] == ("LATAM", "LATAM")

    # The admin creates a field and a property now: the workers cached the describe and the properties
    # before they existed, and must still carry the new mapping from the next change on.
    mappings_world.sync.salesforce.add_custom_field("Opportunity", "Segment__c", "string", length=40)
    mappings_world.sync.person_hubspot.create_property("deals", {
        "name": "segment", "label": "Segment", "type": "string", "fieldType": "text", "groupName": "dealinformation"})
    segment = Pair(mappings_world, pair.opportunity_id, {"Segment__c": "segment"})
    segment.in_salesforce(Segment__c="Enterprise")
    assert segment.state() == {"Segment__c": ("Enterprise", None)}  # not mapped yet
    assert mappings_world.cli("add", "segment__c", "segment").status == 0
    assert segment.state() == {"Segment__c": ("Enterprise", None)}  # not retroactive
    segment.in_salesforce(Segment__c="SMB")
    assert segment.state() == {"Segment__c": ("SMB", "SMB")}
    segment.in_hubspot(segment="Mid-market")
    assert segment.state() == {"Segment__c": ("Mid-market", "Mid-market")}


def test_stages_shows_record_type_pipeline_and_stage_maps(mappings_world: MappingsWorld) -> None:
    result = mappings_world.cli("stages", "--json")
    assert result.status == 0, result.err
    document = result.json()
    assert document["problems"] == []
    stored = mappings_world.sync.context.store.config.load().stage_maps
    assert [pipeline["record_type_id"] for pipeline in document["pipelines"]] == sorted(stored)
    hubspot = {pipeline["id"]: pipeline for pipeline in mappings_world.sync.person_hubspot.pipelines("deals")}
    for pipeline in document["pipelines"]:
        mapping = stored[pipeline["record_type_id"]]
        assert pipeline["pipeline_id"] == mapping.pipeline_id
        assert pipeline["label"] == hubspot[mapping.pipeline_id]["label"]
        assert pipeline["pipeline_found"] is True
        assert {stage["salesforce_stage"]: stage["hubspot_stage_id"] for stage in pipeline["stages"]} == mapping.stages
        labels = {stage["id"]: stage["label"] for stage in hubspot[mapping.pipeline_id]["stages"]}
        assert all(stage["hubspot_label"] == labels[stage["hubspot_stage_id"]] == stage["salesforce_stage"]
                   for stage in pipeline["stages"])
    text = mappings_world.cli("stages")
    assert text.status == 0
    assert "Prospecting" in text.out and "Closed Won" in text.out
