"""DESIGN 1.2's four sync rules, field by field, in both directions and with blanking, on custom mappings made
with ``dealsync mappings add``; and every custom field kind (number, checkbox, date, multi-select with its
value map) carried both ways by the real workers."""

from __future__ import annotations

import pytest

from tests.mappings.conftest import MappingsWorld

pytestmark = pytest.mark.e2e

RULE_FIELDS = {  # Salesforce field -> (HubSpot property, rule)
    "Rule_Prefer__c": ("rule_prefer", "prefer_salesforce_unless_blank"),
    "Rule_Always__c": ("rule_always", "always_salesforce"),
    "Rule_Two_Way__c": ("rule_two_way", "two_way"),
    "Rule_Dont__c": ("rule_dont", "dont_sync"),
}
KIND_FIELDS = {"Seats__c": "seats", "Signed__c": "signed", "Go_Live__c": "go_live", "Competitors__c": "competitors"}


@pytest.fixture(scope="module")
def rules(mappings_world: MappingsWorld) -> MappingsWorld:
    for sf_field, (hs_property, rule) in RULE_FIELDS.items():
        result = mappings_world.cli("add", sf_field, hs_property, "--rule", rule)
        assert result.status == 0, result.err
    return mappings_world


def test_the_four_rules_field_by_field(rules: MappingsWorld) -> None:
    fields = {sf_field: hs_property for sf_field, (hs_property, _) in RULE_FIELDS.items()}
    pair = rules.synced_pair("Rules", fields, **dict.fromkeys(fields, "sf-1"))
    assert pair.state() == {
        "Rule_Prefer__c": ("sf-1", "sf-1"), "Rule_Always__c": ("sf-1", "sf-1"),
        "Rule_Two_Way__c": ("sf-1", "sf-1"), "Rule_Dont__c": ("sf-1", None)}

    # Salesforce → HubSpot: every rule but dont_sync carries a Salesforce change.
    pair.in_salesforce(**dict.fromkeys(fields, "sf-2"))
    assert pair.state() == {
        "Rule_Prefer__c": ("sf-2", "sf-2"), "Rule_Always__c": ("sf-2", "sf-2"),
        "Rule_Two_Way__c": ("sf-2", "sf-2"), "Rule_Dont__c": ("sf-2", None)}

    # HubSpot → Salesforce while Salesforce has a value: only two_way takes it; the Salesforce-first rules
    # put Salesforce's value back in HubSpot.
    pair.in_hubspot(**dict.fromkeys(fields.values(), "hs-3"))
    assert pair.state() == {
        "Rule_Prefer__c": ("sf-2", "sf-2"), "Rule_Always__c": ("sf-2", "sf-2"),
        "Rule_Two_Way__c": ("hs-3", "hs-3"), "Rule_Dont__c": ("sf-2", "hs-3")}

    # Blanking in Salesforce clears HubSpot for every rule but dont_sync.
    pair.in_salesforce(**dict.fromkeys(fields))
    assert pair.state() == {
        "Rule_Prefer__c": (None, None), "Rule_Always__c": (None, None),
        "Rule_Two_Way__c": (None, None), "Rule_Dont__c": (None, "hs-3")}

    # HubSpot → Salesforce while the Salesforce field is blank: prefer_salesforce_unless_blank now takes it,
    # always_salesforce still does not (and leaves HubSpot's value alone).
    pair.in_hubspot(**dict.fromkeys(fields.values(), "hs-5"))
    assert pair.state() == {
        "Rule_Prefer__c": ("hs-5", "hs-5"), "Rule_Always__c": (None, "hs-5"),
        "Rule_Two_Way__c": ("hs-5", "hs-5"), "Rule_Dont__c": (None, "hs-5")}

    # Blanking in HubSpot: only two_way clears Salesforce; prefer_salesforce_unless_blank puts its
    # (non-blank) Salesforce value back.
    pair.in_hubspot(**dict.fromkeys(fields.values(), ""))
    assert pair.state() == {
        "Rule_Prefer__c": ("hs-5", "hs-5"), "Rule_Always__c": (None, None),
        "Rule_Two_Way__c": (None, None), "Rule_Dont__c": (None, None)}

    # always_salesforce with a Salesforce value: a HubSpot clearing is undone.
    pair.in_salesforce(Rule_Always__c="sf-7")
    pair.in_hubspot(rule_always="")
    assert pair.state()["Rule_Always__c"] == ("sf-7", "sf-7")


@pytest.fixture(scope="module")
def kinds(mappings_world: MappingsWorld) -> MappingsWorld:
    for sf_field, hs_property in KIND_FIELDS.items():
        result = mappings_world.cli("add", sf_field, hs_property, "--json")
        assert result.status == 0, result.err
    assert mappings_world.cli("values", "list", "Competitors__c", "--json").json()["value_maps"][0]["pairs"] == {
        "Acme": "acme", "Globex": "globex", "Initech": "initech"}
    return mappings_world


def test_each_custom_kind_syncs_both_ways_with_blanks(kinds: MappingsWorld) -> None:
    pair = kinds.synced_pair("Kinds", KIND_FIELDS, Seats__c=12.5, Signed__c=True, Go_Live__c="2027-01-15",
                             Competitors__c="Globex;Acme")
    state = pair.state()
    assert state["Seats__c"] == (12.5, "12.5")
    assert state["Signed__c"] == (True, "true")
    assert state["Go_Live__c"][0] == "2027-01-15"
    assert str(state["Go_Live__c"][1]).startswith("2027-01-15")
    assert state["Competitors__c"][1] == "acme;globex"

    pair.in_hubspot(seats="20", signed="false", go_live="2027-02-01", competitors="initech;globex")
    state = pair.state()
    assert state["Seats__c"][0] == 20
    assert state["Signed__c"][0] is False
    assert state["Go_Live__c"][0] == "2027-02-01"
    assert set(str(state["Competitors__c"][0]).split(";")) == {"Globex", "Initech"}

    pair.in_hubspot(seats="", go_live="", competitors="")
    state = pair.state()
    assert state["Seats__c"] == (None, None)
    assert state["Go_Live__c"] == (None, None)
    assert state["Competitors__c"] == (None, None)

    pair.in_salesforce(Seats__c=3, Go_Live__c="2027-04-30", Competitors__c="Acme", Signed__c=True)
    state = pair.state()
    assert state["Seats__c"][1] == "3"
    assert str(state["Go_Live__c"][1]).startswith("2027-04-30")
    assert state["Competitors__c"][1] == "acme"
    assert state["Signed__c"][1] == "true"
    pair.in_salesforce(Seats__c=None, Go_Live__c=None, Competitors__c=None, Signed__c=False)
    state = pair.state()
    assert state["Seats__c"] == (None, None)
    assert state["Go_Live__c"] == (None, None)
    assert state["Competitors__c"] == (None, None)
    assert state["Signed__c"] == (False, "false")


def test_a_deal_created_in_hubspot_brings_its_custom_properties(kinds: MappingsWorld) -> None:
    stage_map = next(iter(kinds.sync.context.store.config.load().stage_maps.values()))
    properties = {"dealname": "Born in HubSpot", "pipeline": stage_map.pipeline_id,
                  "dealstage": stage_map.stages["Prospecting"], "closedate": "2027-05-31T00:00:00Z",
                  "amount": "900", "hubspot_owner_id": kinds.sync.person_owner_id,
                  "seats": "7", "signed": "true", "go_live": "2027-06-01", "competitors": "initech"}
    company = {"to": {"id": kinds.sync.company_id},
               "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}]}
    created = kinds.sync.person_hubspot.batch_create("deals", [{"properties": properties, "associations": [company]}])
    assert "error" not in created[0], created
    kinds.sync.settle()
    found = kinds.sync.salesforce.soql("SELECT Id, Seats__c, Signed__c, Go_Live__c, Competitors__c FROM Opportunity "
                                       f"WHERE HubSpot_Deal_Id__c = '{created[0]['id']}'")
    assert len(found) == 1, found
    assert {name: found[0][name] for name in KIND_FIELDS} == {
        "Seats__c": 7, "Signed__c": True, "Go_Live__c": "2027-06-01", "Competitors__c": "Initech"}
