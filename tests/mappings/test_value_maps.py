"""``dealsync mappings values list|set|unset`` end to end: value maps of picklist ⇄ enumeration mappings (the
default ``Type`` and a custom picklist), the values they leave unmapped giving ``UNMAPPED_VALUE`` that names
the value in either direction, and an edit of the map resolving it."""

from __future__ import annotations

import pytest

from dealsync.models.domain import ErrorCategory
from dealsync_cli.target import EXIT_REFUSED
from tests.mappings.conftest import MappingsWorld

pytestmark = pytest.mark.e2e


def _unmapped(world: MappingsWorld, record_id: str) -> list[str]:
    return [error.message for error in world.sync.context.store.errors.for_record(record_id)
            if error.category is ErrorCategory.UNMAPPED_VALUE]


@pytest.fixture(scope="module")
def priority(mappings_world: MappingsWorld) -> MappingsWorld:
    """Priority__c (High, Medium, Low, Urgent) ⇄ hs_priority (high, medium, low), mapped by the operator."""
    added = mappings_world.cli("add", "Priority__c", "hs_priority", "--json")
    assert added.status == 0, added.err
    value_map = added.json()["value_map"]
    # The values that match an option by text start mapped; Urgent has no HubSpot option.
    assert value_map["pairs"] == {"High": "high", "Medium": "medium", "Low": "low"}
    assert value_map["unmapped_salesforce"] == ["Urgent"]
    assert value_map["unmapped_hubspot"] == []
    return mappings_world


def test_values_list_shows_pairs_and_what_is_unmapped(priority: MappingsWorld) -> None:
    one = priority.cli("values", "list", "priority__c", "--json")
    assert one.status == 0, one.err
    [view] = one.json()["value_maps"]
    assert view["salesforce_field"] == "Priority__c"
    assert view["hubspot_property"] == "hs_priority"
    assert view["salesforce_values"] == ["High", "Medium", "Low", "Urgent"]
    assert view["hubspot_options"] == ["low", "medium", "high"]
    every = priority.cli("values", "list", "--json")
    assert every.status == 0, every.err
    by_field = {item["salesforce_field"]: item for item in every.json()["value_maps"]}
    assert by_field["Type"]["pairs"] == {"New Business": "newbusiness", "Existing Business": "existingbusiness"}
    assert by_field["Type"]["defaults"] == by_field["Type"]["pairs"]
    text = priority.cli("values", "list", "Priority__c")
    assert text.status == 0
    assert "unmapped Salesforce values (UNMAPPED_VALUE when met): 'Urgent'" in text.out


def test_an_unmapped_salesforce_value_is_an_error_naming_it_until_it_is_mapped(priority: MappingsWorld) -> None:
    pair = priority.synced_pair("Urgent deal", {"Priority__c": "hs_priority", "Name": "dealname"},
                                Priority__c="Urgent")
    assert pair.state() == {"Priority__c": ("Urgent", None), "Name": ("Urgent deal", "Urgent deal")}
    [message] = _unmapped(priority, pair.opportunity_id)
    assert "'Urgent'" in message and "Priority__c" in message

    # An option's label works too; the records waiting with UNMAPPED_VALUE are resynced, no change needed.
    mapped = priority.cli("values", "set", "Priority__c", "Urgent", "High", "--json")
    assert mapped.status == 0, mapped.err
    assert mapped.json()["value_map"]["pairs"]["Urgent"] == "high"
    assert mapped.json()["value_map"]["unmapped_salesforce"] == []
    assert mapped.json()["resynced"] == 1
    priority.sync.settle()
    assert pair.state()["Priority__c"] == ("Urgent", "high")
    assert _unmapped(priority, pair.opportunity_id) == []


def test_an_unmapped_hubspot_option_is_an_error_naming_it(priority: MappingsWorld) -> None:
    pair = priority.synced_pair("Options", {"Priority__c": "hs_priority"}, Priority__c="Medium")
    assert pair.state() == {"Priority__c": ("Medium", "medium")}
    pair.in_hubspot(hs_priority="low")
    assert pair.state() == {"Priority__c": ("Low", "low")}

    removed = priority.cli("values", "unset", "Priority__c", "Low", "--json")
    assert removed.status == 0, removed.err
    assert removed.json()["value_map"]["unmapped_hubspot"] == ["low"]
    pair.in_hubspot(hs_priority="medium")
    assert pair.state() == {"Priority__c": ("Medium", "medium")}
    pair.in_hubspot(hs_priority="low")
    assert pair.state() == {"Priority__c": ("Medium", "low")}  # nothing written to Salesforce
    [message] = _unmapped(priority, pair.opportunity_id) + _unmapped(priority, pair.deal_id)
    assert "'low'" in message and "Priority__c" in message

    mapped = priority.cli("values", "set", "Priority__c", "Low", "low")
    assert mapped.status == 0, mapped.err
    assert "resync: 1 record(s) waiting with UNMAPPED_VALUE queued again" in mapped.out
    priority.sync.settle()
    assert pair.state() == {"Priority__c": ("Low", "low")}
    assert _unmapped(priority, pair.opportunity_id) + _unmapped(priority, pair.deal_id) == []


def test_the_default_type_map_is_extended_by_the_operator(priority: MappingsWorld) -> None:
    priority.sync.salesforce.apply_config(
        {"picklists": {"Opportunity.Type": ["Existing Business", "New Business", "Partner"]}})
    pair = priority.synced_pair("Partner deal", {"Type": "dealtype"}, Type="Partner")
    [message] = _unmapped(priority, pair.opportunity_id)
    assert "'Partner'" in message and "Type" in message
    extended = priority.cli("values", "set", "Type", "Partner", "existingbusiness", "--json")
    assert extended.status == 0, extended.err
    assert extended.json()["value_map"]["pairs"] == {"New Business": "newbusiness",
                                                     "Existing Business": "existingbusiness",
                                                     "Partner": "existingbusiness"}
    assert extended.json()["resynced"] == 1
    priority.sync.settle()
    assert pair.state() == {"Type": ("Partner", "existingbusiness")}
    assert _unmapped(priority, pair.opportunity_id) == []
    again = priority.cli("values", "set", "Type", "Partner", "existingbusiness", "--json")
    assert (again.json()["resynced"], again.json()["resync_note"]) == (0, "no record is waiting with UNMAPPED_VALUE")
    # Two Salesforce values share one option: HubSpot's value comes back as the first of them.
    other = priority.synced_pair("Existing deal", {"Type": "dealtype"}, Type="New Business")
    other.in_hubspot(dealtype="existingbusiness")
    assert other.state() == {"Type": ("Existing Business", "existingbusiness")}


@pytest.mark.parametrize(("args", "reason"), [
    (("set", "Priority__c", "Critical", "high"),
     "'Critical' is not a value of Salesforce picklist Priority__c (values: High, Medium, Low, Urgent)."),
    (("set", "Priority__c", "High", "critical"),
     "'critical' is not an option of HubSpot property hs_priority (options: low, medium, high)."),
    (("set", "Description", "EMEA", "emea"), "Description ⇄ description has no value map"),
    (("set", "Win_Chance__c", "1", "1"), "Salesforce field Win_Chance__c is not mapped."),
    (("unset", "Type", "New Business"),
     "'New Business' ⇄ 'newbusiness' is a default pair of Type and cannot be removed"),
    (("unset", "Priority__c", "Nothing"), "'Nothing' has no pair in the value map of Priority__c."),
    (("list", "Name"), "Name ⇄ dealname has no value map"),
])
def test_value_map_edits_are_refused_with_the_reason(priority: MappingsWorld, args: tuple[str, ...],
                                                     reason: str) -> None:
    before = priority.sync.context.store.config.load().value_maps
    result = priority.cli("values", *args, "--json")
    assert result.status == EXIT_REFUSED
    assert reason in result.json()["message"]
    assert reason in result.err
    assert priority.sync.context.store.config.load().value_maps == before
