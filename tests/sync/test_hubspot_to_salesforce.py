"""DESIGN §1.2 to 1.6, HubSpot → Salesforce, end to end in the local world, acting as a HubSpot user:
the person's writes (`CRM_UI`) make the emulator send signed webhooks to the real receiver, the runtime
runs the real hs_change worker from the queue, and Salesforce is read back as the person sees it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dealsync import faultpoints
from dealsync.models.domain import ErrorCategory, FieldMapping, LinkKind, LinkStatus, StageMapping, SyncRule
from dealsync.services.contacts import link_contacts
from dealsync.services.deal_sync import sync_deals
from dealsync.services.opportunity_sync import SyncReport, sync_opportunities
from dealsync.services.records import CONTACTS_KEY, UNIQUE_PROPERTY, joined, split
from dealsync.store.association_times import COMPANY, OFF_DEAL, ON_DEAL
from dealsync_local.hubspot.common import COMPANIES, CONTACTS, DEALS
from tests.sync.conftest import SyncWorld

pytestmark = pytest.mark.e2e

DEAL_TO_CONTACT = 3
HUBSPOT_PROPERTY = {"Description": "description", "Type": "dealtype", "Amount": "amount"}
DEAL_TO_PRIMARY_COMPANY = 5


@pytest.fixture(scope="module")
def hubspot_contacts(sync_world: SyncWorld) -> list[str]:
    """The fixture's Salesforce contacts as HubSpot contacts, linked (as a contact import leaves them)."""
    linked = link_contacts(sync_world.context, sync_world.contact_ids)
    return [linked[contact_id] for contact_id in sync_world.contact_ids]


@pytest.fixture
def hubspot_config(sync_world: SyncWorld) -> Iterator[dict[str, Any]]:
    """The emulator's configuration, restored after the test."""
    before = sync_world.hubspot.get_config()
    yield before
    sync_world.hubspot.apply_config({key: before[key] for key in ("webhook_duplicate_rate", "webhook_shuffle")})


def _mapping(world: SyncWorld) -> StageMapping:
    return next(iter(world.context.store.config.load().stage_maps.values()))


def _association(to_id: str, type_id: int) -> dict[str, Any]:
    return {"to": {"id": to_id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}


def _new_deal(world: SyncWorld, name: str, contacts: list[str], *, company: bool = True, stage: str = "Prospecting",
              **properties: str) -> str:
    mapping = _mapping(world)
    values = {"dealname": name, "pipeline": mapping.pipeline_id, "dealstage": mapping.stages[stage],
              "amount": "12500", "closedate": "2027-05-31T00:00:00Z", "dealtype": "newbusiness",
              "description": "Created in HubSpot", "hubspot_owner_id": world.person_owner_id, **properties}
    associations = [_association(cid, DEAL_TO_CONTACT) for cid in contacts]
    if company:
        associations.append(_association(world.company_id, DEAL_TO_PRIMARY_COMPANY))
    created = world.person_hubspot.batch_create("deals", [{"properties": values, "associations": associations}])
    assert "error" not in created[0], created
    return str(created[0]["id"])


def _paired_deal(world: SyncWorld, name: str, contacts: list[str]) -> tuple[str, str]:
    """A new deal synced to its opportunity: (deal id, opportunity id)."""
    deal_id = _new_deal(world, name, contacts)
    world.settle()
    return deal_id, str(_opportunity_for(world, deal_id)["Id"])


def _opportunities_for(world: SyncWorld, deal_id: str) -> list[dict[str, Any]]:
    return world.salesforce.soql(
        "SELECT Id, Name, Amount, CloseDate, StageName, Type, Description, AccountId, OwnerId, HubSpot_Deal_Id__c "
        f"FROM Opportunity WHERE HubSpot_Deal_Id__c = '{deal_id}'")


def _opportunity_for(world: SyncWorld, deal_id: str) -> dict[str, Any]:
    found = _opportunities_for(world, deal_id)
    assert len(found) == 1, f"expected one opportunity for deal {deal_id}, found {len(found)}"
    return found[0]


def _role_contacts(world: SyncWorld, opportunity_id: str) -> set[str]:
    rows = world.salesforce.soql(
        f"SELECT ContactId FROM OpportunityContactRole WHERE OpportunityId = '{opportunity_id}'")
    return {str(row["ContactId"]) for row in rows}


def _deal(world: SyncWorld, deal_id: str) -> dict[str, Any]:
    found = world.person_hubspot.batch_read("deals", [deal_id], ["salesforce_opportunity_id", "hubspot_owner_id",
                                                                 "amount", "pipeline", "dealstage"])
    assert found, f"deal {deal_id} not found"
    return found[0]


def _salesforce_writes(world: SyncWorld) -> int:
    """The integration's write requests to Salesforce so far (the person's go through the Python API)."""
    by_route = world.salesforce.stats_snapshot()["by_route"]
    return sum(count for route, count in by_route.items()
               if route.split(" ", 1)[0] in ("POST", "PATCH", "DELETE", "PUT") and "oauth2" not in route)


def test_deal_in_a_salesforce_pipeline_becomes_an_opportunity_with_roles_and_account(
        sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    deal_id = _new_deal(sync_world, "Globex - Expansion", hubspot_contacts)
    sync_world.settle()
    opportunity = _opportunity_for(sync_world, deal_id)
    assert opportunity["Name"] == "Globex - Expansion"
    assert float(opportunity["Amount"]) == 12500
    assert opportunity["CloseDate"] == "2027-05-31"
    assert opportunity["StageName"] == "Prospecting"
    assert opportunity["Type"] == "New Business"
    assert opportunity["Description"] == "Created in HubSpot"
    assert opportunity["AccountId"] == sync_world.account_id
    assert opportunity["OwnerId"] == sync_world.salesforce.person_user_id
    assert _role_contacts(sync_world, opportunity["Id"]) == set(sync_world.contact_ids)
    # Both sides point at each other, and the crosswalk links them.
    assert _deal(sync_world, deal_id)["properties"]["salesforce_opportunity_id"] == opportunity["Id"]
    link = sync_world.context.store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, deal_id)
    assert link is not None
    assert link.is_active
    assert link.salesforce_id == opportunity["Id"]


def test_deal_outside_the_salesforce_pipelines_is_not_synced(sync_world: SyncWorld,
                                                             hubspot_contacts: list[str]) -> None:
    pipelines = sync_world.person_hubspot.pipelines()
    sales = next(p for p in pipelines if p["label"] == "Sales Pipeline")
    deal_id = _new_deal(sync_world, "Globex - Services", hubspot_contacts, pipeline=sales["id"],
                        dealstage=sales["stages"][0]["id"])
    sync_world.settle()
    assert _opportunities_for(sync_world, deal_id) == []
    assert sync_world.context.store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, deal_id) is None


def test_field_edits_stage_move_and_removed_association_reach_salesforce(
        sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    deal_id = _new_deal(sync_world, "Globex - Analytics", hubspot_contacts)
    sync_world.settle()
    opportunity_id = _opportunity_for(sync_world, deal_id)["Id"]
    mapping = _mapping(sync_world)
    updated = sync_world.person_hubspot.batch_update("deals", [{"id": deal_id, "properties": {
        "dealname": "Globex - Analytics XL", "amount": "20000.5", "closedate": "2027-09-30T00:00:00Z",
        "dealtype": "existingbusiness", "description": "Bigger scope", "dealstage": mapping.stages["Qualification"]}}])
    assert "error" not in updated[0], updated
    sync_world.person_hubspot.associations_archive("deals", "contacts", [(deal_id, hubspot_contacts[1])])
    sync_world.settle()
    opportunity = _opportunity_for(sync_world, deal_id)
    assert opportunity["Name"] == "Globex - Analytics XL"
    assert float(opportunity["Amount"]) == 20000.5
    assert opportunity["CloseDate"] == "2027-09-30"
    assert opportunity["Type"] == "Existing Business"
    assert opportunity["Description"] == "Bigger scope"
    assert opportunity["StageName"] == "Qualification"
    assert _role_contacts(sync_world, opportunity_id) == {sync_world.contact_ids[0]}
    # The Salesforce → HubSpot direction agrees: the association stays removed, nothing is undone.
    sync_world.salesforce.update("Opportunity", opportunity_id, {"Description": "Touched in Salesforce"})
    sync_world.settle()
    assert sync_world.associations(deal_id, "contacts") == {hubspot_contacts[0]}
    assert _role_contacts(sync_world, opportunity_id) == {sync_world.contact_ids[0]}


def test_long_name_is_truncated_and_unknown_contact_is_an_error(sync_world: SyncWorld,
                                                               hubspot_contacts: list[str]) -> None:
    stranger = sync_world.person_hubspot.batch_create("contacts", [{"properties": {
        "email": "stranger@elsewhere.example", "firstname": "Stray"}}])
    stranger_id = str(stranger[0]["id"])
    deal_id = _new_deal(sync_world, "G" * 130, [hubspot_contacts[0], stranger_id])
    sync_world.settle()
    opportunity = _opportunity_for(sync_world, deal_id)
    assert opportunity["Name"] == "G" * 120
    assert _role_contacts(sync_world, opportunity["Id"]) == {sync_world.contact_ids[0]}
    errors = sync_world.context.store.errors.for_record(deal_id)
    assert [error.category for error in errors] == [ErrorCategory.CONTACT_NOT_IN_SALESFORCE]
    assert stranger_id in errors[0].message


def test_unmatched_owner_keeps_the_salesforce_owner_and_resets_hubspot(sync_world: SyncWorld,
                                                                       hubspot_contacts: list[str]) -> None:
    deal_id = _new_deal(sync_world, "Globex - Owner check", hubspot_contacts)
    sync_world.settle()
    outsider = sync_world.hubspot.add_owner("contractor@agency.example", "Casey", "Contractor")
    sync_world.person_hubspot.batch_update("deals", [{"id": deal_id, "properties": {
        "hubspot_owner_id": str(outsider["id"]), "amount": "13000"}}])
    sync_world.settle()
    opportunity = _opportunity_for(sync_world, deal_id)
    assert opportunity["OwnerId"] == sync_world.salesforce.person_user_id
    assert float(opportunity["Amount"]) == 13000
    assert _deal(sync_world, deal_id)["properties"]["hubspot_owner_id"] == sync_world.person_owner_id
    categories = [error.category for error in sync_world.context.store.errors.for_record(deal_id)]
    assert categories == [ErrorCategory.OWNER_NOT_FOUND]


def _opportunity_made_by_a_worker_that_died(world: SyncWorld, deal_id: str) -> str:
    """The deal's sync creates its opportunity (notifying no one) and dies before linking it: its id."""
    def die(point: str) -> None:
        raise faultpoints.SimulatedCrash(point)

    faultpoints.install(die)
    try:
        with world.salesforce_unheard(), pytest.raises(faultpoints.SimulatedCrash):
            sync_deals(world.context, [deal_id], source="test")
    finally:
        faultpoints.install(None)
    return str(_opportunity_for(world, deal_id)["Id"])


def _next_change_makes_a_new_deal(world: SyncWorld, opportunity_id: str, deleted_deal_id: str,
                                  amount: int) -> dict[str, Any]:
    """DESIGN 1.6: after its deal was deleted in HubSpot, the opportunity's next change makes a new deal."""
    world.salesforce.update("Opportunity", opportunity_id, {"Amount": amount})
    world.settle()
    deal = world.deal_for(opportunity_id)
    assert deal is not None, "the opportunity did not sync again as a new deal"
    assert str(deal["id"]) != deleted_deal_id
    assert deal["properties"]["amount"] == str(amount)
    return deal


def test_deleting_the_deal_keeps_the_opportunity_and_a_salesforce_change_makes_a_new_deal(
        sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    deal_id = _new_deal(sync_world, "Globex - Deleted in HubSpot", hubspot_contacts)
    sync_world.settle()
    opportunity_id = _opportunity_for(sync_world, deal_id)["Id"]
    sync_world.person_hubspot.batch_archive("deals", [deal_id])
    sync_world.settle()
    assert sync_world.salesforce.get("Opportunity", opportunity_id) is not None
    link = sync_world.context.store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, deal_id)
    assert link is not None
    assert link.status is LinkStatus.TOMBSTONED
    deal = _next_change_makes_a_new_deal(sync_world, opportunity_id, deal_id, 14000)
    relinked = sync_world.context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert relinked is not None
    assert relinked.is_active
    assert relinked.hubspot_id == str(deal["id"])
    opportunity = sync_world.salesforce.get("Opportunity", opportunity_id)
    assert opportunity is not None
    assert opportunity["HubSpot_Deal_Id__c"] == str(deal["id"])


def test_restored_deal_is_relinked(sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    deal_id = _new_deal(sync_world, "Globex - Restored", hubspot_contacts)
    sync_world.settle()
    opportunity_id = _opportunity_for(sync_world, deal_id)["Id"]
    sync_world.person_hubspot.batch_archive("deals", [deal_id])
    sync_world.settle()
    sync_world.hubspot.restore(deal_id)
    sync_world.settle()
    link = sync_world.context.store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, deal_id)
    assert link is not None
    assert link.is_active
    assert link.salesforce_id == opportunity_id
    sync_world.person_hubspot.batch_update("deals", [{"id": deal_id, "properties": {"amount": "15500"}}])
    sync_world.settle()
    assert float(_opportunity_for(sync_world, deal_id)["Amount"]) == 15500


def test_deal_restored_after_its_opportunity_synced_as_a_new_deal_is_merged_into_it(
        sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    deal_id = _new_deal(sync_world, "Globex - Restored late", hubspot_contacts)
    sync_world.settle()
    opportunity_id = _opportunity_for(sync_world, deal_id)["Id"]
    # Deleted before it carried its opportunity's id (the deal was deleted while dealsync was writing the
    # id to it): HubSpot lets such a deal be restored even after the opportunity has a new deal.
    sync_world.person_hubspot.batch_update("deals", [{"id": deal_id, "properties": {UNIQUE_PROPERTY: ""}}])
    sync_world.person_hubspot.batch_archive("deals", [deal_id])
    sync_world.settle()
    sync_world.salesforce.update("Opportunity", opportunity_id, {"Amount": 16000})
    sync_world.settle()
    replacement = sync_world.deal_for(opportunity_id)
    assert replacement is not None and str(replacement["id"]) != deal_id
    sync_world.hubspot.restore(deal_id)
    sync_world.settle()
    # One opportunity, one live deal: the restored deal became part of the opportunity's current deal.
    live = [deal for deal in sync_world.person_hubspot.batch_read(
        "deals", [deal_id, str(replacement["id"])], ["amount", "hs_merged_object_ids"])]
    assert {str(deal["id"]) for deal in live} == {str(replacement["id"])}
    assert deal_id in str(live[0]["properties"]["hs_merged_object_ids"]).split(";")
    assert live[0]["properties"]["amount"] == "16000"
    link = sync_world.context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert link is not None and link.is_active and link.hubspot_id == str(replacement["id"])
    opportunity = sync_world.salesforce.get("Opportunity", opportunity_id)
    assert opportunity is not None and opportunity["HubSpot_Deal_Id__c"] == str(replacement["id"])
    sync_world.person_hubspot.batch_update("deals", [{"id": str(replacement["id"]), "properties": {
        "amount": "16500"}}])
    sync_world.settle()
    assert float(_opportunity_for(sync_world, str(replacement["id"]))["Amount"]) == 16500


def test_an_association_removed_while_the_opportunity_is_in_the_recycle_bin_reaches_it_once_undeleted(
        sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    deal_id = _new_deal(sync_world, "Globex - Binned", hubspot_contacts)
    sync_world.settle()
    opportunity_id = _opportunity_for(sync_world, deal_id)["Id"]
    worker = next(p for p in sync_world.world.pollers.pollers if p.function.logical_id == "HsChangeFunction")
    sync_world.salesforce.apply_config({"notifications_enabled": False})  # dealsync does not hear of the delete
    try:
        sync_world.salesforce.delete("Opportunity", opportunity_id)
        retried = worker.stats.failed
        sync_world.person_hubspot.associations_archive("deals", "contacts", [(deal_id, hubspot_contacts[1])])
        deadline = time.monotonic() + 30
        while worker.stats.failed == retried:  # the worker found the opportunity deleted and will try again
            assert time.monotonic() < deadline, "the HubSpot change was not kept for a retry"
            time.sleep(0.2)
        sync_world.salesforce.undelete([opportunity_id])
    finally:
        sync_world.salesforce.apply_config({"notifications_enabled": True})
    sync_world.settle()
    assert _role_contacts(sync_world, opportunity_id) == {sync_world.contact_ids[0]}
    link = sync_world.context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert link is not None and link.is_active and link.hubspot_id == deal_id


def test_moving_out_of_the_salesforce_pipelines_pauses_and_moving_back_resumes(
        sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    deal_id = _new_deal(sync_world, "Globex - Wandering", hubspot_contacts)
    sync_world.settle()
    sales = next(p for p in sync_world.person_hubspot.pipelines() if p["label"] == "Sales Pipeline")
    sync_world.person_hubspot.batch_update("deals", [{"id": deal_id, "properties": {
        "pipeline": sales["id"], "dealstage": sales["stages"][0]["id"], "amount": "1"}}])
    sync_world.settle()
    link = sync_world.context.store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, deal_id)
    assert link is not None
    assert link.status is LinkStatus.PAUSED
    assert float(_opportunity_for(sync_world, deal_id)["Amount"]) == 12500
    mapping = _mapping(sync_world)
    sync_world.person_hubspot.batch_update("deals", [{"id": deal_id, "properties": {
        "pipeline": mapping.pipeline_id, "dealstage": mapping.stages["Qualification"], "amount": "16000"}}])
    sync_world.settle()
    link = sync_world.context.store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, deal_id)
    assert link is not None
    assert link.is_active
    opportunity = _opportunity_for(sync_world, deal_id)
    assert float(opportunity["Amount"]) == 16000
    assert opportunity["StageName"] == "Qualification"


def test_merge_keeps_the_primary_link_and_unlinks_the_other(sync_world: SyncWorld,
                                                            hubspot_contacts: list[str]) -> None:
    primary = _new_deal(sync_world, "Globex - Merge primary", hubspot_contacts)
    other = _new_deal(sync_world, "Globex - Merge other", hubspot_contacts)
    sync_world.settle()
    primary_opportunity = _opportunity_for(sync_world, primary)["Id"]
    other_opportunity = _opportunity_for(sync_world, other)["Id"]
    sync_world.hubspot.merge(primary, other)
    sync_world.settle()
    links = sync_world.context.store.links
    kept = links.get_by_hubspot_id(LinkKind.OPPORTUNITY, primary)
    assert kept is not None
    assert kept.is_active
    assert kept.salesforce_id == primary_opportunity
    unlinked = links.get_by_salesforce_id(LinkKind.OPPORTUNITY, other_opportunity)
    assert unlinked is not None
    assert unlinked.status is LinkStatus.TOMBSTONED
    categories = [error.category for error in sync_world.context.store.errors.for_record(other_opportunity)]
    assert categories == [ErrorCategory.MERGED_IN_HUBSPOT]
    assert sync_world.salesforce.get("Opportunity", other_opportunity) is not None


def test_duplicated_and_reordered_webhooks_give_one_opportunity_with_the_latest_values(
        sync_world: SyncWorld, hubspot_contacts: list[str], hubspot_config: dict[str, Any]) -> None:
    sync_world.hubspot.apply_config({"webhook_duplicate_rate": 1.0, "webhook_shuffle": True})
    deal_id = _new_deal(sync_world, "Globex - Noisy", hubspot_contacts)
    for amount in ("100", "200", "300"):
        sync_world.person_hubspot.batch_update("deals", [{"id": deal_id, "properties": {"amount": amount}}])
    sync_world.person_hubspot.batch_update("deals", [{"id": deal_id, "properties": {"dealname": "Globex - Final"}}])
    sync_world.settle()
    opportunity = _opportunity_for(sync_world, deal_id)
    assert float(opportunity["Amount"]) == 300
    assert opportunity["Name"] == "Globex - Final"
    assert _role_contacts(sync_world, opportunity["Id"]) == set(sync_world.contact_ids)


def test_a_salesforce_to_hubspot_sync_writes_nothing_back_to_salesforce(sync_world: SyncWorld) -> None:
    opportunity_id = sync_world.salesforce.create("Opportunity", {
        "Name": "Initech - Echo", "StageName": "Prospecting", "CloseDate": "2027-02-28", "Amount": 9000,
        "AccountId": sync_world.account_id})
    sync_world.salesforce.create("OpportunityContactRole", {"OpportunityId": opportunity_id,
                                                            "ContactId": sync_world.contact_ids[0]})
    sync_world.settle()
    assert sync_world.deal_for(opportunity_id) is not None
    before = _salesforce_writes(sync_world)
    sync_world.salesforce.update("Opportunity", opportunity_id, {"Amount": 9100, "Name": "Initech - Echo 2",
                                                                 "StageName": "Qualification"})
    sync_world.settle()
    deal = sync_world.deal_for(opportunity_id)
    assert deal is not None
    assert deal["properties"]["amount"] == "9100"
    assert _salesforce_writes(sync_world) - before == 0


def test_a_refused_opportunity_is_an_error_and_does_not_block_the_rest(sync_world: SyncWorld,
                                                                        hubspot_contacts: list[str]) -> None:
    mapping = _mapping(sync_world)
    common = {"pipeline": mapping.pipeline_id, "dealstage": mapping.stages["Prospecting"], "amount": "500",
              "hubspot_owner_id": sync_world.person_owner_id}
    # One delivery, two deals: the first lacks the close date Salesforce requires.
    created = sync_world.person_hubspot.batch_create("deals", [
        {"properties": {"dealname": "Globex - No close date", **common}},
        {"properties": {"dealname": "Globex - Fine", "closedate": "2027-01-31T00:00:00Z", **common}}])
    by_name = {item["properties"]["dealname"]: str(item["id"]) for item in created}
    sync_world.settle()
    refused, fine = by_name["Globex - No close date"], by_name["Globex - Fine"]
    assert _opportunities_for(sync_world, refused) == []
    assert _opportunity_for(sync_world, fine)["Name"] == "Globex - Fine"
    errors = sync_world.context.store.errors.for_record(refused)
    assert [error.category for error in errors] == [ErrorCategory.SALESFORCE_VALIDATION]
    assert "CloseDate" in errors[0].message
    sync_world.person_hubspot.batch_update("deals", [{"id": refused, "properties": {
        "closedate": "2027-02-28T00:00:00Z"}}])
    sync_world.settle()
    assert _opportunity_for(sync_world, refused)["CloseDate"] == "2027-02-28"
    assert sync_world.context.store.errors.for_record(refused) == []


def test_without_resync_after_delete_the_opportunity_stays_alone(sync_world: SyncWorld,
                                                                 hubspot_contacts: list[str]) -> None:
    settings = sync_world.context.store.settings
    settings.set_options(resync_after_hubspot_delete=False)
    try:
        deal_id = _new_deal(sync_world, "Globex - Gone for good", hubspot_contacts)
        sync_world.settle()
        opportunity_id = _opportunity_for(sync_world, deal_id)["Id"]
        sync_world.person_hubspot.batch_archive("deals", [deal_id])
        sync_world.settle()
        sync_world.salesforce.update("Opportunity", opportunity_id, {"Amount": 501})
        sync_world.settle()
        assert sync_world.deal_for(opportunity_id) is None
        assert sync_world.salesforce.get("Opportunity", opportunity_id) is not None
    finally:
        settings.set_options(resync_after_hubspot_delete=True)


@pytest.mark.parametrize("resync", [True, False], ids=["resync", "no-resync"])
def test_a_deal_deleted_before_its_new_opportunity_was_linked_ends_the_pair_like_a_linked_one(
        sync_world: SyncWorld, hubspot_contacts: list[str], resync: bool) -> None:
    settings = sync_world.context.store.settings
    settings.set_options(resync_after_hubspot_delete=resync)
    person = sync_world.hubspot.person_source
    mapping = _mapping(sync_world)
    try:
        with sync_world.hubspot_unheard() as store:  # its webhook is the delivery run by hand below
            deal_id = str(store.create(DEALS, {
                "dealname": f"Deleted before linked ({'resync' if resync else 'kept alone'})",
                "pipeline": mapping.pipeline_id, "dealstage": mapping.stages["Prospecting"], "amount": "3300",
                "closedate": "2027-06-30T00:00:00Z"},
                None, person).id)

        # The worker creates the opportunity and dies before linking it (the opportunity's creation notifies no
        # one: the Salesforce → HubSpot direction leaves such a one to this worker); a person deletes the deal
        # before the delivery comes again.
        opportunity_id = _opportunity_made_by_a_worker_that_died(sync_world, deal_id)
        links = sync_world.context.store.links
        assert links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id) is None
        with sync_world.hubspot_unheard() as store:
            store.archive(DEALS, store.get(DEALS, deal_id), person)
        report = sync_deals(sync_world.context, [deal_id], source="test")
        assert report.deleted == [deal_id]
        assert not report.retry
        # The pair ends as a linked one would: the opportunity stays, its link says the deal was deleted.
        link = links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
        assert link is not None
        assert link.hubspot_id == deal_id
        assert link.status is (LinkStatus.TOMBSTONED if resync else LinkStatus.PAUSED)
        assert link.status_reason == "deal deleted in HubSpot"
        sync_world.settle()
        assert sync_world.salesforce.get("Opportunity", opportunity_id) is not None
        assert sync_world.deal_for(opportunity_id) is None
        if resync:
            paired_deal_id = str(_next_change_makes_a_new_deal(sync_world, opportunity_id, deal_id, 3400)["id"])
        else:
            # Restoring the deal resumes the pair.
            sync_world.hubspot.restore(deal_id)
            sync_world.settle()
            restored = sync_world.deal_for(opportunity_id)
            assert restored is not None, "the restored deal was not paired with its opportunity"
            paired_deal_id = str(restored["id"])
            assert paired_deal_id == deal_id
        relinked = links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
        assert relinked is not None
        assert relinked.is_active
        assert relinked.hubspot_id == paired_deal_id
    finally:
        settings.set_options(resync_after_hubspot_delete=True)


def test_a_change_made_just_before_deleting_a_deal_not_linked_yet_reaches_salesforce_when_it_is_restored(
        sync_world: SyncWorld) -> None:
    person = sync_world.hubspot.person_source
    mapping = _mapping(sync_world)
    with sync_world.hubspot_unheard() as store:  # its webhook is the delivery run by hand below
        deal_id = str(store.create(DEALS, {
            "dealname": "Changed, deleted, restored", "pipeline": mapping.pipeline_id,
            "dealstage": mapping.stages["Prospecting"], "amount": "3300", "description": "first note",
            "closedate": "2027-06-30T00:00:00Z"}, None, person).id)

    # The worker creates the opportunity from its read and dies before linking it.
    opportunity_id = _opportunity_made_by_a_worker_that_died(sync_world, deal_id)
    time.sleep(1.1)  # what follows is plainly later than the opportunity's creation
    # A person clears the description and changes the amount, then deletes the deal; the deletion's sync runs.
    with sync_world.hubspot_unheard() as store:
        store.update(DEALS, store.get(DEALS, deal_id), {"description": "", "amount": "4400"}, person)
        store.archive(DEALS, store.get(DEALS, deal_id), person)
    assert sync_deals(sync_world.context, [deal_id], source="test").deleted == [deal_id]
    # Restored later: the person's changes, made after the opportunity was written, reach Salesforce.
    sync_world.hubspot.restore(deal_id)
    sync_world.settle()
    opportunity = sync_world.salesforce.get("Opportunity", opportunity_id) or {}
    deal = sync_world.person_hubspot.batch_read("deals", [deal_id], ["amount", "description"])[0]["properties"]
    assert (opportunity.get("Description"), deal.get("description") or None) == (None, None)
    assert (opportunity.get("Amount"), deal["amount"]) == (4400, "4400")


def test_a_deal_naming_an_opportunity_in_the_recycle_bin_waits_for_it_and_makes_no_new_one(
        sync_world: SyncWorld) -> None:
    # A deal dealsync made for an opportunity (its worker died before the link), and a person's change of the
    # deal, while the opportunity sits in the recycle bin.
    with sync_world.salesforce_unheard():
        opportunity_id = str(sync_world.salesforce.create("Opportunity", {
            "Name": "In the recycle bin", "StageName": "Prospecting", "CloseDate": "2027-04-30", "Amount": 800}))
    mapping = _mapping(sync_world)
    with sync_world.hubspot_unheard() as store:
        deal_id = str(store.create(DEALS, {
            "dealname": "In the recycle bin", "pipeline": mapping.pipeline_id,
            "dealstage": mapping.stages["Prospecting"], "closedate": "2027-04-30T00:00:00Z", "amount": "800",
            UNIQUE_PROPERTY: opportunity_id}, None, sync_world.hubspot.integration_source).id)
        store.update(DEALS, store.get(DEALS, deal_id), {"amount": "850"}, sync_world.hubspot.person_source)
    with sync_world.salesforce_unheard():
        sync_world.salesforce.delete("Opportunity", opportunity_id)
    report = sync_deals(sync_world.context, [deal_id], source="test")
    assert deal_id in report.retry
    assert _opportunities_for(sync_world, deal_id) == []  # no second opportunity for the deal
    # Undeleted, the two are paired (the undelete's own sync pairs them; the deal's change waits for that),
    # and the deal's change reaches the opportunity.
    sync_world.salesforce.undelete([opportunity_id])
    assert deal_id in sync_deals(sync_world.context, [deal_id], source="test").retry
    assert not sync_opportunities(sync_world.context, [opportunity_id], source="test").retry
    assert not sync_deals(sync_world.context, [deal_id], source="test").retry
    assert float((sync_world.salesforce.get("Opportunity", opportunity_id) or {})["Amount"]) == 850
    link = sync_world.context.store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, deal_id)
    assert link is not None and link.is_active and link.salesforce_id == opportunity_id
    sync_world.settle()


def test_sync_rules_decide_what_hubspot_edits_reach_salesforce(sync_world: SyncWorld,
                                                               hubspot_contacts: list[str]) -> None:
    config = sync_world.context.store.config
    rules = {"Description": SyncRule.PREFER_SALESFORCE_UNLESS_BLANK, "Type": SyncRule.ALWAYS_SALESFORCE,
             "Amount": SyncRule.DONT_SYNC}
    stored = config.load().mappings
    assert not set(rules) & set(stored), "the test expects the default mappings"
    for name, rule in rules.items():
        config.put_mapping(FieldMapping(salesforce_field=name, hubspot_property=HUBSPOT_PROPERTY[name], rule=rule,
                                        builtin=True))
    try:
        deal_id = _new_deal(sync_world, "Globex - Rules", hubspot_contacts, description="", dealtype="newbusiness")
        sync_world.settle()
        opportunity = _opportunity_for(sync_world, deal_id)
        assert opportunity["Description"] is None
        assert opportunity["Type"] is None  # always Salesforce: HubSpot's value never goes there
        assert opportunity["Amount"] is None  # don't sync
        # Salesforce empty: a prefer-Salesforce field takes HubSpot's value.
        sync_world.person_hubspot.batch_update("deals", [{"id": deal_id, "properties": {
            "description": "From HubSpot", "dealtype": "existingbusiness", "amount": "777"}}])
        sync_world.settle()
        opportunity = _opportunity_for(sync_world, deal_id)
        assert opportunity["Description"] == "From HubSpot"
        assert opportunity["Type"] is None
        assert opportunity["Amount"] is None
        # Salesforce filled: a HubSpot edit does not reach it, and HubSpot is put back.
        sync_world.salesforce.update("Opportunity", opportunity["Id"], {"Description": "From Salesforce"})
        sync_world.settle()
        sync_world.person_hubspot.batch_update("deals", [{"id": deal_id, "properties": {
            "description": "HubSpot again"}}])
        sync_world.settle()
        assert _opportunity_for(sync_world, deal_id)["Description"] == "From Salesforce"
        assert sync_world.deal_for(opportunity["Id"])["properties"]["description"] == "From Salesforce"  # type: ignore[index]
    finally:
        for name in rules:
            config.delete_mapping(name)


def test_both_sides_changed_the_later_change_wins_and_the_other_field_goes_to_hubspot(
        sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    deal_id = _new_deal(sync_world, "Globex - Contested", hubspot_contacts)
    sync_world.settle()
    opportunity_id = _opportunity_for(sync_world, deal_id)["Id"]
    # Salesforce changes first, unseen by dealsync (its notifications are off), then HubSpot changes.
    sync_world.salesforce.apply_config({"notifications_enabled": False})
    try:
        sync_world.salesforce.update("Opportunity", opportunity_id, {"Amount": 111, "Description": "Salesforce side"})
    finally:
        sync_world.salesforce.apply_config({"notifications_enabled": True})
    sync_world.person_hubspot.batch_update("deals", [{"id": deal_id, "properties": {"amount": "222"}}])
    sync_world.settle()
    opportunity = _opportunity_for(sync_world, deal_id)
    assert float(opportunity["Amount"]) == 222  # both changed: HubSpot's change is the later one
    assert opportunity["Description"] == "Salesforce side"
    deal = sync_world.deal_for(opportunity_id)
    assert deal is not None
    assert deal["properties"]["amount"] == "222"
    assert deal["properties"]["description"] == "Salesforce side"  # only Salesforce changed it


def test_with_deal_sync_off_webhooks_are_acknowledged_and_not_applied(sync_world: SyncWorld,
                                                                       hubspot_contacts: list[str]) -> None:
    settings = sync_world.context.store.settings
    settings.set_deal_sync(False)
    try:
        deal_id = _new_deal(sync_world, "Globex - While off", hubspot_contacts)
        sync_world.settle()
        assert _opportunities_for(sync_world, deal_id) == []
        deliveries = sync_world.hubspot.webhooks.stats()
        assert deliveries["events_failed"] == 0
        assert deliveries["retrying"] == 0
    finally:
        settings.set_deal_sync(True)


def test_a_salesforce_change_made_between_the_syncs_read_and_its_write_is_not_overwritten(
        sync_world: SyncWorld, hubspot_contacts: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    deal_id, opportunity_id = _paired_deal(sync_world, "Raced with a person", hubspot_contacts[:1])
    # A person changes the amount in HubSpot; its webhook is held back: that sync is run by hand below.
    with sync_world.hubspot_unheard() as store:
        store.update(DEALS, store.get(DEALS, deal_id), {"amount": "700"}, sync_world.hubspot.person_source)
    # The sync reads the opportunity; right after, a person changes its amount in Salesforce.
    salesforce = sync_world.context.salesforce
    real_query = salesforce.query_by_ids
    changed: list[bool] = []

    def query_then_person_edits(select: str, sobject: str, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        records = real_query(select, sobject, *args, **kwargs)
        if sobject == "Opportunity" and not changed:
            changed.append(True)
            time.sleep(1.1)  # Salesforce keeps times to the second: the person's change is plainly the later
            sync_world.salesforce.update("Opportunity", opportunity_id, {"Amount": 900})
        return records

    monkeypatch.setattr(salesforce, "query_by_ids", query_then_person_edits)
    report = sync_deals(sync_world.context, [deal_id], source="test")
    monkeypatch.undo()
    assert changed
    assert deal_id in report.retry  # decided on a read the person's change made stale: nothing written
    assert (sync_world.salesforce.get("Opportunity", opportunity_id) or {}).get("Amount") == 900
    # Read again (the retry, and the person's own change event): the later change, Salesforce's 900, wins.
    assert not sync_deals(sync_world.context, [deal_id], source="test").retry
    sync_world.settle()
    assert (sync_world.salesforce.get("Opportunity", opportunity_id) or {}).get("Amount") == 900
    assert _deal(sync_world, deal_id)["properties"]["amount"] == "900"


def test_a_salesforce_value_written_back_to_the_deal_after_the_other_direction_saved_the_pair_is_not_sent_on(
        sync_world: SyncWorld, hubspot_contacts: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    deal_id, opportunity_id = _paired_deal(sync_world, "Written over", hubspot_contacts[:1])
    # A person changes the amount in Salesforce and the description in HubSpot; nothing is heard (the syncs
    # are run here).
    with sync_world.salesforce_unheard():
        sync_world.salesforce.update("Opportunity", opportunity_id, {"Amount": 111})
    with sync_world.hubspot_unheard() as store:
        store.update(DEALS, store.get(DEALS, deal_id), {"description": "HubSpot side"},
                     sync_world.hubspot.person_source)
    time.sleep(1.1)  # Salesforce keeps times to the second: what follows is plainly later
    hubspot = sync_world.context.hubspot
    real_update = hubspot.batch_update
    raced: list[SyncReport] = []

    def other_direction_first(object_type: str, inputs: Any) -> list[dict[str, Any]]:
        if object_type == "deals" and not raced:
            # Right before this sync writes Salesforce's amount (111) back to the deal, a person sets 222 in
            # Salesforce, and that change's own sync writes it to the deal and saves the pair first.
            with sync_world.salesforce_unheard():
                sync_world.salesforce.update("Opportunity", opportunity_id, {"Amount": 222})
            raced.append(sync_opportunities(sync_world.context, [opportunity_id], source="test"))
            assert _deal(sync_world, deal_id)["properties"]["amount"] == "222"
        return real_update(object_type, inputs)

    monkeypatch.setattr(hubspot, "batch_update", other_direction_first)
    report = sync_deals(sync_world.context, [deal_id], source="test")
    monkeypatch.undo()
    assert raced and not raced[0].retry
    assert deal_id in report.retry  # the pair was saved by the other sync: read again
    assert _deal(sync_world, deal_id)["properties"]["amount"] == "111"  # this sync's write came last
    # Read again: the deal's 111 is dealsync's copy of an older Salesforce value, no HubSpot change. The
    # person's 222 stands on both sides, and HubSpot's description too.
    assert not sync_deals(sync_world.context, [deal_id], source="test").retry
    sync_world.settle()
    opportunity = sync_world.salesforce.get("Opportunity", opportunity_id) or {}
    deal = sync_world.person_hubspot.batch_read("deals", [deal_id], ["amount", "description"])[0]["properties"]
    assert (opportunity.get("Amount"), deal["amount"]) == (222, "222")
    assert (opportunity.get("Description"), deal["description"]) == ("HubSpot side", "HubSpot side")


def test_a_company_set_again_in_hubspot_after_the_account_changed_reaches_salesforce(
        sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    other_account, other_company = sync_world.linked_company("Globex")
    deal_id, opportunity_id = _paired_deal(sync_world, "Company back and forth", hubspot_contacts[:1])
    # A person moves the opportunity to Globex; its notifications are held back (its sync is run below).
    with sync_world.salesforce_unheard():
        sync_world.salesforce.update("Opportunity", opportunity_id, {"AccountId": other_account})
    time.sleep(1.1)  # Salesforce keeps times to the second: what follows in HubSpot is plainly later
    # In HubSpot a person moves the deal to Globex too (no webhook reaches dealsync) and then back to Acme:
    # HubSpot holds the agreed company again, set after the account changed (A → B → A).
    person = sync_world.hubspot.person_source
    with sync_world.hubspot_unheard() as store:
        store.dissociate(DEALS, int(deal_id), COMPANIES, int(sync_world.company_id), None, person)
        store.associate(DEALS, int(deal_id), COMPANIES, int(other_company), [_primary_company_spec()], person)
    sync_world.person_hubspot.associations_archive("deals", "companies", [(deal_id, other_company)])
    sync_world.person_hubspot.associations_create("deals", "companies",
                                                  [(deal_id, sync_world.company_id, DEAL_TO_PRIMARY_COMPANY)])
    sync_world.settle()
    # The account change's own sync runs now: HubSpot's later choice stands on both sides.
    sync_opportunities(sync_world.context, [opportunity_id], source="test")
    sync_world.settle()
    assert (sync_world.salesforce.get("Opportunity", opportunity_id) or {}).get("AccountId") == sync_world.account_id
    assert sync_world.associations(deal_id, "companies") == {sync_world.company_id}


def test_a_company_dealsync_put_back_before_a_persons_later_hubspot_change_came_is_replaced(
        sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    other_account, other_company = sync_world.linked_company("Initech")
    deal_id, opportunity_id = _paired_deal(sync_world, "Company put back", hubspot_contacts[:1])
    # A person moves the opportunity to Initech; the deal follows.
    sync_world.salesforce.update("Opportunity", opportunity_id, {"AccountId": other_account})
    sync_world.settle()
    assert sync_world.associations(deal_id, "companies") == {other_company}
    time.sleep(1.1)  # Salesforce keeps times to the second: what follows is plainly later
    # Later, a person moves the deal back to Acme; before that webhook reaches the HubSpot worker, a
    # Salesforce → HubSpot sync from an older read puts Initech back (as dealsync: its webhooks are echoes).
    moved_at = datetime.now(UTC)
    person, integration = sync_world.hubspot.person_source, sync_world.hubspot.integration_source
    with sync_world.hubspot_unheard() as store:
        store.dissociate(DEALS, int(deal_id), COMPANIES, int(other_company), None, person)
        store.associate(DEALS, int(deal_id), COMPANIES, int(sync_world.company_id), [_primary_company_spec()], person)
        store.dissociate(DEALS, int(deal_id), COMPANIES, int(sync_world.company_id), None, integration)
        store.associate(DEALS, int(deal_id), COMPANIES, int(other_company), [_primary_company_spec()], integration)
    sync_world.context.store.association_times.note_own(deal_id, {COMPANY: other_company},
                                                         round(datetime.now(UTC).timestamp() * 1000) + 1)
    # The person's webhooks come: both sides have Initech, but the person's Acme is the later change. The
    # first worker dies right after its Salesforce write; the delivery comes again.
    def deliver() -> SyncReport:
        return sync_deals(sync_world.context, [deal_id], associations_for=[deal_id], source="test",
                          companies_changed_at={deal_id: moved_at}, primary_companies={deal_id: sync_world.company_id})

    def die(point: str) -> None:
        raise faultpoints.SimulatedCrash(point)

    faultpoints.install(die)
    try:
        with pytest.raises(faultpoints.SimulatedCrash):
            deliver()
    finally:
        faultpoints.install(None)
    assert not deliver().retry
    assert (sync_world.salesforce.get("Opportunity", opportunity_id) or {}).get("AccountId") == sync_world.account_id
    assert sync_world.associations(deal_id, "companies") == {sync_world.company_id}
    sync_world.settle()
    assert (sync_world.salesforce.get("Opportunity", opportunity_id) or {}).get("AccountId") == sync_world.account_id
    assert sync_world.associations(deal_id, "companies") == {sync_world.company_id}
    # A stale delivery comes last: only the first half of the person's move (Initech taken off). The worker has
    # seen a later change of the deal's company: this one is not the person's latest, and changes nothing.
    report = sync_deals(sync_world.context, [deal_id], associations_for=[deal_id], source="test",
                        companies_changed_at={deal_id: moved_at - timedelta(milliseconds=40)},
                        primary_companies={deal_id: None})
    assert not report.retry
    assert (sync_world.salesforce.get("Opportunity", opportunity_id) or {}).get("AccountId") == sync_world.account_id
    assert sync_world.associations(deal_id, "companies") == {sync_world.company_id}


def test_a_company_a_stale_delivery_took_back_before_a_persons_later_change_came_is_replaced(
        sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    other_account, other_company = sync_world.linked_company("Vandelay")
    deal_id, opportunity_id = _paired_deal(sync_world, "Company taken back", hubspot_contacts[:1])
    created_at = datetime.now(UTC) - timedelta(seconds=2)  # the pair's first company webhook: long before
    time.sleep(1.1)
    # A person moves the opportunity to Vandelay; the deal follows.
    sync_world.salesforce.update("Opportunity", opportunity_id, {"AccountId": other_account})
    sync_world.settle()
    assert sync_world.associations(deal_id, "companies") == {other_company}
    time.sleep(1.1)  # Salesforce keeps times to the second: what follows is plainly later
    # Later, a person moves the deal back to Acme; that webhook is on its way.
    moved_at = datetime.now(UTC)
    person = sync_world.hubspot.person_source
    with sync_world.hubspot_unheard() as store:
        store.dissociate(DEALS, int(deal_id), COMPANIES, int(other_company), None, person)
        store.associate(DEALS, int(deal_id), COMPANIES, int(sync_world.company_id), [_primary_company_spec()], person)
    # A delivery retried since the deal was made comes first: its company event is older than the account's
    # change, which the worker takes for the later one, and it puts Vandelay back on the deal.
    assert not sync_deals(sync_world.context, [deal_id], associations_for=[deal_id], source="test",
                          companies_changed_at={deal_id: created_at},
                          primary_companies={deal_id: sync_world.company_id}).retry
    assert sync_world.associations(deal_id, "companies") == {other_company}
    # The person's webhook comes: dealsync's own write is what made both sides agree, and the person's Acme,
    # set after the account changed, is the later change on both sides.
    assert not sync_deals(sync_world.context, [deal_id], associations_for=[deal_id], source="test",
                          companies_changed_at={deal_id: moved_at},
                          primary_companies={deal_id: sync_world.company_id}).retry
    assert (sync_world.salesforce.get("Opportunity", opportunity_id) or {}).get("AccountId") == sync_world.account_id
    assert sync_world.associations(deal_id, "companies") == {sync_world.company_id}
    sync_world.settle()
    assert (sync_world.salesforce.get("Opportunity", opportunity_id) or {}).get("AccountId") == sync_world.account_id
    assert sync_world.associations(deal_id, "companies") == {sync_world.company_id}


def test_a_company_put_back_over_the_account_the_opportunity_was_created_with_is_replaced(
        sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    other_account, other_company = sync_world.linked_company("Hooli")
    deal_id, opportunity_id = _paired_deal(sync_world, "Created with its account", hubspot_contacts[:1])
    time.sleep(1.1)  # Salesforce keeps times to the second: what follows is plainly later
    times = sync_world.context.store.association_times
    # dealsync's last write of the deal's company (Hooli) is not what the deal shows (Acme: a person's later
    # change, its webhook still on its way): a late delivery of an older move to Hooli changes nothing.
    times.note_own(deal_id, {COMPANY: other_company}, round(datetime.now(UTC).timestamp() * 1000))
    assert not sync_deals(sync_world.context, [deal_id], associations_for=[deal_id], source="test",
                          companies_changed_at={deal_id: datetime.now(UTC) - timedelta(milliseconds=500)},
                          primary_companies={deal_id: other_company}).retry
    assert (sync_world.salesforce.get("Opportunity", opportunity_id) or {}).get("AccountId") == sync_world.account_id
    assert sync_world.associations(deal_id, "companies") == {sync_world.company_id}
    # The opportunity keeps the account it was created with (no field history row for it). A person moves the
    # deal to Hooli; before that webhook comes, a Salesforce → HubSpot sync puts Acme back.
    moved_at = datetime.now(UTC)
    person, integration = sync_world.hubspot.person_source, sync_world.hubspot.integration_source
    with sync_world.hubspot_unheard() as store:
        store.dissociate(DEALS, int(deal_id), COMPANIES, int(sync_world.company_id), None, person)
        store.associate(DEALS, int(deal_id), COMPANIES, int(other_company), [_primary_company_spec()], person)
        store.dissociate(DEALS, int(deal_id), COMPANIES, int(other_company), None, integration)
        store.associate(DEALS, int(deal_id), COMPANIES, int(sync_world.company_id), [_primary_company_spec()],
                        integration)
    times.note_own(deal_id, {COMPANY: sync_world.company_id}, round(datetime.now(UTC).timestamp() * 1000) + 1)
    assert not sync_deals(sync_world.context, [deal_id], associations_for=[deal_id], source="test",
                          companies_changed_at={deal_id: moved_at}, primary_companies={deal_id: other_company}).retry
    assert (sync_world.salesforce.get("Opportunity", opportunity_id) or {}).get("AccountId") == other_account
    assert sync_world.associations(deal_id, "companies") == {other_company}


def test_an_account_set_again_in_salesforce_after_hubspots_company_change_goes_back_to_the_deal(
        sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    other_account, other_company = sync_world.linked_company("Umbrella")
    deal_id, opportunity_id = _paired_deal(sync_world, "Account back and forth", hubspot_contacts[:1])
    person = sync_world.hubspot.person_source

    def moved_in_hubspot_then_back_and_forth_in_salesforce() -> datetime:
        """A person moves the deal to Umbrella in HubSpot (its webhook is late: the sync is run by the test);
        later, in Salesforce, a person moves the opportunity to Umbrella and back (A → B → A)."""
        moved_at = datetime.now(UTC)
        with sync_world.hubspot_unheard() as store:
            store.dissociate(DEALS, int(deal_id), COMPANIES, int(sync_world.company_id), None, person)
            store.associate(DEALS, int(deal_id), COMPANIES, int(other_company), [_primary_company_spec()], person)
        time.sleep(1.1)  # Salesforce keeps times to the second: what follows is plainly later
        with sync_world.salesforce_unheard():
            sync_world.salesforce.update("Opportunity", opportunity_id, {"AccountId": other_account})
            sync_world.salesforce.update("Opportunity", opportunity_id, {"AccountId": sync_world.account_id})
        return moved_at

    def delivered(moved_at: datetime) -> None:
        report = sync_deals(sync_world.context, [deal_id], associations_for=[deal_id], source="test",
                            companies_changed_at={deal_id: moved_at}, primary_companies={deal_id: other_company})
        assert not report.retry

    def company_on_both_sides(account_id: str, company_id: str) -> None:
        assert (sync_world.salesforce.get("Opportunity", opportunity_id) or {}).get("AccountId") == account_id
        assert sync_world.associations(deal_id, "companies") == {company_id}

    delivered(moved_in_hubspot_then_back_and_forth_in_salesforce())
    company_on_both_sides(sync_world.account_id, sync_world.company_id)
    sync_world.settle()
    company_on_both_sides(sync_world.account_id, sync_world.company_id)
    # Again; but a person changed the deal's company once more after Salesforce's change (another delivery
    # noted it), and this delivery is a stale one: HubSpot's is the later change, and goes to Salesforce.
    moved_at = moved_in_hubspot_then_back_and_forth_in_salesforce()
    time.sleep(1.1)
    sync_world.context.store.association_times.note(deal_id, COMPANY, round(datetime.now(UTC).timestamp() * 1000))
    delivered(moved_at)
    company_on_both_sides(other_account, other_company)


def _primary_company_spec() -> dict[str, Any]:
    return {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": DEAL_TO_PRIMARY_COMPANY}


def _role_ids(world: SyncWorld, opportunity_id: str, contact_id: str) -> list[str]:
    rows = world.salesforce.soql(f"SELECT Id FROM OpportunityContactRole WHERE OpportunityId = '{opportunity_id}' "
                                 f"AND ContactId = '{contact_id}'")
    return [str(row["Id"]) for row in rows]


def test_a_deal_the_salesforce_side_is_still_pairing_waits_for_the_pair(sync_world: SyncWorld,
                                                                       hubspot_contacts: list[str]) -> None:
    first, second = sync_world.contact_ids
    with sync_world.salesforce_unheard():
        opportunity_id = str(sync_world.salesforce.create("Opportunity", {
            "Name": "Being paired", "StageName": "Prospecting", "CloseDate": "2027-08-31", "Amount": 900}))
        for contact_id in (first, second):
            sync_world.salesforce.create("OpportunityContactRole", {"OpportunityId": opportunity_id,
                                                                     "ContactId": contact_id})
    # The Salesforce → HubSpot sync has made the deal with both contacts and not saved the pair yet (a big
    # batch). Meanwhile a person deletes the first contact's role in Salesforce and changes the deal.
    mapping = _mapping(sync_world)
    with sync_world.hubspot_unheard() as store:
        deal_id = str(store.create(DEALS, {
            "dealname": "Being paired", "pipeline": mapping.pipeline_id, "dealstage": mapping.stages["Prospecting"],
            "closedate": "2027-08-31T00:00:00Z", "amount": "900", UNIQUE_PROPERTY: opportunity_id},
            [_association(contact, DEAL_TO_CONTACT) for contact in hubspot_contacts],
            sync_world.hubspot.integration_source).id)
    sync_world.context.store.association_times.note_own(deal_id, dict.fromkeys(hubspot_contacts, ON_DEAL),
                                                        round(datetime.now(UTC).timestamp() * 1000))
    time.sleep(1.1)  # Salesforce keeps times to the second: what follows is plainly later
    with sync_world.salesforce_unheard():
        for role in _role_ids(sync_world, opportunity_id, first):
            sync_world.salesforce.delete("OpportunityContactRole", role)
    with sync_world.hubspot_unheard() as store:
        store.update(DEALS, store.get(DEALS, deal_id), {"amount": "950"}, sync_world.hubspot.person_source)
    # The deal's change waits for the pair: taken as a new pair, both contacts would look added in HubSpot.
    report = sync_deals(sync_world.context, [deal_id], associations_for=[deal_id], source="test")
    assert deal_id in report.retry
    assert _role_ids(sync_world, opportunity_id, first) == []
    assert sync_world.context.store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, deal_id) is None
    # The pair is saved; the deal's change comes again.
    assert not sync_opportunities(sync_world.context, [opportunity_id], source="test").retry
    assert not sync_deals(sync_world.context, [deal_id], associations_for=[deal_id], source="test").retry
    sync_world.settle()
    assert _role_contacts(sync_world, opportunity_id) == {second}
    assert sync_world.associations(deal_id, "contacts") == {hubspot_contacts[1]}
    assert float((sync_world.salesforce.get("Opportunity", opportunity_id) or {})["Amount"]) == 950


def test_a_contact_role_salesforce_took_back_after_hubspots_change_is_the_later_change(
        sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    first, second = hubspot_contacts
    deal_id, opportunity_id = _paired_deal(sync_world, "Roles back and forth", [first])
    person = sync_world.hubspot.person_source
    # In HubSpot a person adds the second contact; its webhook is late (this deal's sync is run by hand).
    with sync_world.hubspot_unheard() as store:
        store.associate(DEALS, int(deal_id), CONTACTS, int(second), None, person)
    added_at = datetime.now(UTC)
    time.sleep(1.1)  # Salesforce keeps times to the second: what follows is plainly later
    # In Salesforce a person adds the contact's role and takes it back.
    with sync_world.salesforce_unheard():
        role_id = sync_world.salesforce.create("OpportunityContactRole", {
            "OpportunityId": opportunity_id, "ContactId": sync_world.contact_ids[1]})
        sync_world.salesforce.delete("OpportunityContactRole", role_id)
    # Another change of the deal is synced first: the pair is saved after the role's deletion (which is still
    # a person's, not dealsync's).
    with sync_world.hubspot_unheard() as store:
        store.update(DEALS, store.get(DEALS, deal_id), {"amount": "5100"}, person)
    assert not sync_deals(sync_world.context, [deal_id], associations_for=[], source="test").retry
    report = sync_deals(sync_world.context, [deal_id], associations_for=[deal_id], source="test",
                        contacts_changed_at={deal_id: {second: added_at}})
    assert not report.retry
    # Salesforce's removal is the later change: no role, and the deal loses the contact too.
    assert _role_ids(sync_world, opportunity_id, sync_world.contact_ids[1]) == []
    assert sync_world.associations(deal_id, "contacts") == {first}
    # HubSpot's removal of a contact whose role a person then made again in Salesforce: the role stays.
    with sync_world.hubspot_unheard() as store:
        store.dissociate(DEALS, int(deal_id), CONTACTS, int(first), None, person)
    removed_at = datetime.now(UTC)
    time.sleep(1.1)
    with sync_world.salesforce_unheard():
        for old_role in _role_ids(sync_world, opportunity_id, sync_world.contact_ids[0]):
            sync_world.salesforce.delete("OpportunityContactRole", old_role)
        sync_world.salesforce.create("OpportunityContactRole", {
            "OpportunityId": opportunity_id, "ContactId": sync_world.contact_ids[0]})
    report = sync_deals(sync_world.context, [deal_id], associations_for=[deal_id], source="test",
                        contacts_changed_at={deal_id: {first: removed_at}})
    assert not report.retry
    assert len(_role_ids(sync_world, opportunity_id, sync_world.contact_ids[0])) == 1
    assert sync_world.associations(deal_id, "contacts") == {first}
    sync_world.settle()
    assert _role_contacts(sync_world, opportunity_id) == {sync_world.contact_ids[0]}
    assert sync_world.associations(deal_id, "contacts") == {first}


@pytest.mark.parametrize(("added", "pause"), [(True, 1.1), (False, 1.1), (True, 0.0)],
                         ids=["role-added-then-deleted", "role-deleted-then-made-again", "deleted-in-the-same-second"])
def test_a_contact_the_other_direction_copied_to_the_deal_unsaved_is_no_hubspot_change(
        sync_world: SyncWorld, hubspot_contacts: list[str], added: bool, pause: float) -> None:
    first, second = hubspot_contacts
    salesforce_second = sync_world.contact_ids[1]
    deal_id, opportunity_id = _paired_deal(sync_world, f"Copied, unsaved ({'on' if added else 'off'})",
                                           [first] if added else [first, second])
    # In Salesforce a person changes the second contact's role; the Salesforce → HubSpot sync copies it to the
    # deal (noting its write) and cannot save the pair (another sync saved it first).
    with sync_world.salesforce_unheard():
        if added:
            sync_world.salesforce.create("OpportunityContactRole", {"OpportunityId": opportunity_id,
                                                                     "ContactId": salesforce_second})
        else:
            for role in _role_ids(sync_world, opportunity_id, salesforce_second):
                sync_world.salesforce.delete("OpportunityContactRole", role)
    integration = sync_world.hubspot.integration_source
    with sync_world.hubspot_unheard() as store:
        if added:
            store.associate(DEALS, int(deal_id), CONTACTS, int(second), None, integration)
        else:
            store.dissociate(DEALS, int(deal_id), CONTACTS, int(second), None, integration)
    sync_world.context.store.association_times.note_own(deal_id, {second: ON_DEAL if added else OFF_DEAL},
                                                        round(datetime.now(UTC).timestamp() * 1000))
    # Then a person takes that back in Salesforce: plainly later, or (Salesforce keeps times to the second) in
    # the second of the copy, which is later too (a change before the copy would have been read by its sync).
    time.sleep(pause)
    with sync_world.salesforce_unheard():
        if added:
            for role in _role_ids(sync_world, opportunity_id, salesforce_second):
                sync_world.salesforce.delete("OpportunityContactRole", role)
        else:
            sync_world.salesforce.create("OpportunityContactRole", {"OpportunityId": opportunity_id,
                                                                     "ContactId": salesforce_second})
    # A person's change of the deal is synced, its associations read: the contact differs from the shadow only
    # by dealsync's own copy, older than the person's Salesforce change, which wins on both sides.
    with sync_world.hubspot_unheard() as store:
        store.update(DEALS, store.get(DEALS, deal_id), {"amount": "6100"}, sync_world.hubspot.person_source)
    assert not sync_deals(sync_world.context, [deal_id], associations_for=[deal_id], source="test").retry
    wanted = {first} if added else {first, second}
    assert _role_contacts(sync_world, opportunity_id) == {sync_world.contact_ids[0]} | (
        set() if added else {salesforce_second})
    assert sync_world.associations(deal_id, "contacts") == wanted
    sync_world.settle()
    assert sync_world.associations(deal_id, "contacts") == wanted
    assert len(_role_ids(sync_world, opportunity_id, salesforce_second)) == (0 if added else 1)


@pytest.mark.parametrize("pause", [1.1, 0.0], ids=["plainly-later", "in-the-same-second"])
def test_a_company_the_other_direction_copied_to_the_deal_unsaved_is_no_hubspot_change(
        sync_world: SyncWorld, hubspot_contacts: list[str], pause: float) -> None:
    copied_account, copied_company = sync_world.linked_company("Copied Co")
    later_account, later_company = sync_world.linked_company("Later Co")
    deal_id, opportunity_id = _paired_deal(sync_world, f"Company copied, unsaved ({pause})", hubspot_contacts[:1])
    # In Salesforce a person moves the opportunity to Copied Co; the Salesforce → HubSpot sync copies it to the
    # deal (noting its write) and cannot save the pair.
    with sync_world.salesforce_unheard():
        sync_world.salesforce.update("Opportunity", opportunity_id, {"AccountId": copied_account})
    integration = sync_world.hubspot.integration_source
    with sync_world.hubspot_unheard() as store:
        store.associate(DEALS, int(deal_id), COMPANIES, int(copied_company), [_primary_company_spec()], integration)
        store.dissociate(DEALS, int(deal_id), COMPANIES, int(sync_world.company_id), None, integration)
    sync_world.context.store.association_times.note_own(deal_id, {COMPANY: copied_company},
                                                        round(datetime.now(UTC).timestamp() * 1000))
    # Then (plainly later, or in the copy's second) a person moves it on to Later Co.
    time.sleep(pause)
    with sync_world.salesforce_unheard():
        sync_world.salesforce.update("Opportunity", opportunity_id, {"AccountId": later_account})
    # A person's change of the deal is synced, its associations read: the company differs from the shadow only
    # by dealsync's copy, older than the person's account change, which is not overwritten.
    with sync_world.hubspot_unheard() as store:
        store.update(DEALS, store.get(DEALS, deal_id), {"amount": "7100"}, sync_world.hubspot.person_source)
    assert not sync_deals(sync_world.context, [deal_id], associations_for=[deal_id], source="test").retry
    assert (sync_world.salesforce.get("Opportunity", opportunity_id) or {}).get("AccountId") == later_account
    # The account's change reaches the deal.
    assert not sync_opportunities(sync_world.context, [opportunity_id], source="test").retry
    assert sync_world.associations(deal_id, "companies") == {later_company}
    sync_world.settle()
    assert (sync_world.salesforce.get("Opportunity", opportunity_id) or {}).get("AccountId") == later_account
    assert sync_world.associations(deal_id, "companies") == {later_company}


def test_a_role_dealsync_deleted_after_a_persons_later_hubspot_change_is_no_persons_deletion(
        sync_world: SyncWorld, hubspot_contacts: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = hubspot_contacts
    deal_id, opportunity_id = _paired_deal(sync_world, "Role deleted late", [first, second])
    person = sync_world.hubspot.person_source
    # A person takes the second contact off the deal; its sync deletes the role, and just before it does, the
    # person puts the contact back on the deal (that webhook is late too).
    with sync_world.hubspot_unheard() as store:
        store.dissociate(DEALS, int(deal_id), CONTACTS, int(second), None, person)
    removed_at = datetime.now(UTC)
    salesforce = sync_world.context.salesforce
    real_delete = salesforce.delete
    put_back: list[datetime] = []

    def person_puts_it_back_then_delete(ids: Any) -> list[dict[str, Any]]:
        with sync_world.hubspot_unheard() as store:
            store.associate(DEALS, int(deal_id), CONTACTS, int(second), None, person)
        put_back.append(datetime.now(UTC))
        time.sleep(1.1)  # Salesforce keeps times to the second: dealsync's deletion is plainly the later
        return real_delete(ids)

    monkeypatch.setattr(salesforce, "delete", person_puts_it_back_then_delete)
    assert not sync_deals(sync_world.context, [deal_id], associations_for=[deal_id], source="test",
                          contacts_changed_at={deal_id: {second: removed_at}},
                          contacts_removed={deal_id: {second}}).retry
    monkeypatch.undo()
    assert put_back and _role_ids(sync_world, opportunity_id, sync_world.contact_ids[1]) == []
    # The put-back's webhook: the deleted role is dealsync's own deletion, not a person's later one.
    assert not sync_deals(sync_world.context, [deal_id], associations_for=[deal_id], source="test",
                          contacts_changed_at={deal_id: {second: put_back[0]}}).retry
    assert len(_role_ids(sync_world, opportunity_id, sync_world.contact_ids[1])) == 1
    assert sync_world.associations(deal_id, "contacts") == {first, second}


def test_a_property_change_reads_the_associations_the_other_directions_unsaved_write_may_have_changed(
        sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    first, second = hubspot_contacts
    deal_id, opportunity_id = _paired_deal(sync_world, "Unsaved association write", [first])
    # A person adds the second contact's role in Salesforce; the Salesforce → HubSpot sync claims the pair
    # (its write-ahead), adds the contact to the deal, and has not saved the pair yet.
    with sync_world.salesforce_unheard():
        sync_world.salesforce.create("OpportunityContactRole", {"OpportunityId": opportunity_id,
                                                                "ContactId": sync_world.contact_ids[1]})
    links = sync_world.context.store.links
    link = links.get_by_hubspot_id(LinkKind.OPPORTUNITY, deal_id)
    assert link is not None
    assert links.set_pending(link, {"hubspot": {CONTACTS_KEY: joined([first, second])}, "salesforce": {}})
    with sync_world.hubspot_unheard() as store:
        store.associate(DEALS, int(deal_id), CONTACTS, int(second), None, sync_world.hubspot.integration_source)
    # Meanwhile a person changes the deal's amount: that sync is told of a property change only.
    with sync_world.hubspot_unheard() as store:
        store.update(DEALS, store.get(DEALS, deal_id), {"amount": "4200"}, sync_world.hubspot.person_source)
    assert not sync_deals(sync_world.context, [deal_id], associations_for=[], source="test").retry
    saved = links.get_by_hubspot_id(LinkKind.OPPORTUNITY, deal_id)
    assert saved is not None and saved.pending is None
    assert split(saved.shadow.get(CONTACTS_KEY)) == {first, second}  # what the deal holds, read
    # So the person's later removal of the role reaches the deal.
    role_ids = _role_ids(sync_world, opportunity_id, sync_world.contact_ids[1])
    sync_world.salesforce.delete("OpportunityContactRole", role_ids[0])
    sync_world.settle()
    assert sync_world.associations(deal_id, "contacts") == {first}
    assert _role_contacts(sync_world, opportunity_id) == {sync_world.contact_ids[0]}


def test_a_deal_a_person_changed_after_the_sync_read_it_is_not_written_back_with_salesforces_value(
        sync_world: SyncWorld, hubspot_contacts: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    deal_id, opportunity_id = _paired_deal(sync_world, "Written back late", hubspot_contacts[:1])
    person = sync_world.hubspot.person_source
    # Both sides change the amount, Salesforce later: the deal's sync will write Salesforce's 900 to it.
    with sync_world.hubspot_unheard() as store:
        store.update(DEALS, store.get(DEALS, deal_id), {"amount": "700"}, person)
    time.sleep(1.1)  # Salesforce keeps times to the second: its change is plainly the later
    with sync_world.salesforce_unheard():
        sync_world.salesforce.update("Opportunity", opportunity_id, {"Amount": 900})
    # Right after the sync read the deal (with its history, to decide the conflict), a person sets the
    # amount again in HubSpot.
    hubspot = sync_world.context.hubspot
    real_read = hubspot.batch_read
    edited: list[bool] = []

    def read_then_person_edits(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        deals = real_read(*args, **kwargs)
        if kwargs.get("with_history") and not edited:
            edited.append(True)
            with sync_world.hubspot_unheard() as store:
                store.update(DEALS, store.get(DEALS, deal_id), {"amount": "1234"}, person)
        return deals

    monkeypatch.setattr(hubspot, "batch_read", read_then_person_edits)
    report = sync_deals(sync_world.context, [deal_id], source="test")
    monkeypatch.undo()
    assert edited and deal_id in report.retry
    assert _deal(sync_world, deal_id)["properties"]["amount"] == "1234"
    # Read again: the person's 1234 is the latest change, and goes to Salesforce.
    assert not sync_deals(sync_world.context, [deal_id], source="test").retry
    assert _deal(sync_world, deal_id)["properties"]["amount"] == "1234"
    assert (sync_world.salesforce.get("Opportunity", opportunity_id) or {}).get("Amount") == 1234


def _off_and_on_again(world: SyncWorld, deal_id: str, contact_id: str, *, on: bool) -> None:
    """A person changes the contact's association and changes it back (it ends ``on`` the deal or not);
    the webhooks are late: the deal's sync is run here with their time."""
    person = world.hubspot.person_source
    with world.hubspot_unheard() as store:
        for associate in (not on, on):
            if associate:
                store.associate(DEALS, int(deal_id), CONTACTS, int(contact_id), None, person)
            else:
                store.dissociate(DEALS, int(deal_id), CONTACTS, int(contact_id), None, person)
    report = sync_deals(world.context, [deal_id], associations_for=[deal_id], source="test",
                        contacts_changed_at={deal_id: {contact_id: datetime.now(UTC)}})
    assert not report.retry


def test_a_contact_set_again_in_hubspot_after_its_role_changed_in_salesforce_reaches_salesforce(
        sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    first, second = hubspot_contacts
    deal_id, opportunity_id = _paired_deal(sync_world, "Contact set again", [first])
    # Salesforce: a person adds the second contact's role. HubSpot, later: a person adds the second contact
    # and takes it off again — the deal is as agreed, and HubSpot's is the later change.
    with sync_world.salesforce_unheard():
        sync_world.salesforce.create("OpportunityContactRole", {"OpportunityId": opportunity_id,
                                                                "ContactId": sync_world.contact_ids[1]})
    time.sleep(1.1)  # Salesforce keeps times to the second: what follows is plainly later
    _off_and_on_again(sync_world, deal_id, second, on=False)
    assert _role_ids(sync_world, opportunity_id, sync_world.contact_ids[1]) == []
    # The other way: Salesforce deletes the first contact's role; HubSpot later takes the contact off the
    # deal and puts it back. The role comes back.
    with sync_world.salesforce_unheard():
        for role_id in _role_ids(sync_world, opportunity_id, sync_world.contact_ids[0]):
            sync_world.salesforce.delete("OpportunityContactRole", role_id)
    time.sleep(1.1)
    _off_and_on_again(sync_world, deal_id, first, on=True)
    assert len(_role_ids(sync_world, opportunity_id, sync_world.contact_ids[0])) == 1
    sync_world.settle()
    assert _role_contacts(sync_world, opportunity_id) == {sync_world.contact_ids[0]}
    assert sync_world.associations(deal_id, "contacts") == {first}


def test_a_contact_dealsync_put_back_before_a_persons_later_hubspot_change_came_is_taken_off(
        sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    first, second = hubspot_contacts
    deal_id, opportunity_id = _paired_deal(sync_world, "Put back too early", [first])
    # A person gives the second contact a role in Salesforce; it reaches the deal.
    sync_world.salesforce.create("OpportunityContactRole", {"OpportunityId": opportunity_id,
                                                            "ContactId": sync_world.contact_ids[1]})
    sync_world.settle()
    assert sync_world.associations(deal_id, "contacts") == {first, second}
    times = sync_world.context.store.association_times
    assert second in times.for_deals([deal_id])[deal_id].own_contacts  # the Salesforce side noted its write
    time.sleep(1.1)  # Salesforce keeps times to the second: what follows is plainly later
    person, integration = sync_world.hubspot.person_source, sync_world.hubspot.integration_source

    def removal_delivered(removed_at: datetime) -> None:
        report = sync_deals(sync_world.context, [deal_id], associations_for=[deal_id], source="test",
                            contacts_changed_at={deal_id: {second: removed_at}}, contacts_removed={deal_id: {second}})
        assert not report.retry

    # A person takes the contact off the deal and puts it back; the removal's webhook comes first (the other is
    # on its way): the deal shows the person's own later change, not dealsync's, and nothing changes.
    removed_at = datetime.now(UTC)
    with sync_world.hubspot_unheard() as store:
        store.dissociate(DEALS, int(deal_id), CONTACTS, int(second), None, person)
        store.associate(DEALS, int(deal_id), CONTACTS, int(second), None, person)
    removal_delivered(removed_at)
    assert sync_world.associations(deal_id, "contacts") == {first, second}
    assert len(_role_ids(sync_world, opportunity_id, sync_world.contact_ids[1])) == 1
    # Later, a person takes the contact off the deal; before that webhook reaches the HubSpot worker, a
    # Salesforce → HubSpot sync from an older read puts it back (as dealsync, whose webhooks are echoes).
    removed_at = datetime.now(UTC)
    with sync_world.hubspot_unheard() as store:
        store.dissociate(DEALS, int(deal_id), CONTACTS, int(second), None, person)
        store.associate(DEALS, int(deal_id), CONTACTS, int(second), None, integration)
    times.note_own(deal_id, {second: ON_DEAL}, round(datetime.now(UTC).timestamp() * 1000) + 1)
    # The person's webhook comes: both sides have the contact, but the person's change is the later one.
    removal_delivered(removed_at)
    assert _role_ids(sync_world, opportunity_id, sync_world.contact_ids[1]) == []
    assert sync_world.associations(deal_id, "contacts") == {first}
    link = sync_world.context.store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, deal_id)
    assert link is not None and split(link.shadow.get(CONTACTS_KEY)) == {first}
    sync_world.settle()
    assert _role_contacts(sync_world, opportunity_id) == {sync_world.contact_ids[0]}
    assert sync_world.associations(deal_id, "contacts") == {first}
    # A person's change the deal still shows (the role set before it) changes nothing.
    assert not sync_deals(sync_world.context, [deal_id], associations_for=[deal_id], source="test",
                          contacts_changed_at={deal_id: {first: datetime.now(UTC)}}, contacts_removed={}).retry
    assert _role_contacts(sync_world, opportunity_id) == {sync_world.contact_ids[0]}


def test_a_contact_a_person_took_off_while_dealsync_was_still_writing_the_deal_is_no_put_back(
        sync_world: SyncWorld, hubspot_contacts: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = hubspot_contacts
    deal_id, opportunity_id = _paired_deal(sync_world, "Taken off mid-write", [first])
    time.sleep(1.1)  # Salesforce keeps times to the second: what follows is plainly later
    person = sync_world.hubspot.person_source
    with sync_world.salesforce_unheard():  # its sync is run here
        sync_world.salesforce.create("OpportunityContactRole", {"OpportunityId": opportunity_id,
                                                                "ContactId": sync_world.contact_ids[1]})
    hubspot = sync_world.context.hubspot
    real_create = hubspot.associations_create
    removed: list[datetime] = []

    def then_a_person_takes_it_off(from_type: str, to_type: str, pairs: Any) -> Any:
        result = real_create(from_type, to_type, pairs)
        if to_type == "contacts" and not removed:
            # The contact is on the deal; the sync still has other writes to make (a slow HubSpot), and a
            # person takes the contact off meanwhile. Its webhook is on its way.
            time.sleep(0.05)
            removed.append(datetime.now(UTC))
            with sync_world.hubspot_unheard() as store:
                store.dissociate(DEALS, int(deal_id), CONTACTS, int(second), None, person)
            time.sleep(0.05)
        return result

    monkeypatch.setattr(hubspot, "associations_create", then_a_person_takes_it_off)
    assert not sync_opportunities(sync_world.context, [opportunity_id], source="test").retry
    monkeypatch.undo()
    assert removed and sync_world.associations(deal_id, "contacts") == {first}
    # The person puts it back (that webhook is late too); the removal's webhook comes first. The deal shows the
    # person's own later change, not dealsync's write (which came before the removal): nothing changes.
    with sync_world.hubspot_unheard() as store:
        store.associate(DEALS, int(deal_id), CONTACTS, int(second), None, person)
    assert not sync_deals(sync_world.context, [deal_id], associations_for=[deal_id], source="test",
                          contacts_changed_at={deal_id: {second: removed[0]}},
                          contacts_removed={deal_id: {second}}).retry
    assert sync_world.associations(deal_id, "contacts") == {first, second}
    assert len(_role_ids(sync_world, opportunity_id, sync_world.contact_ids[1])) == 1


def test_the_hubspot_worker_notes_when_a_person_changed_a_deals_associations(
        sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    first, second = hubspot_contacts
    deal_id, _ = _paired_deal(sync_world, "Association times", [first])
    before = datetime.now(UTC)
    sync_world.person_hubspot.associations_create("deals", "contacts", [(deal_id, second, DEAL_TO_CONTACT)])
    sync_world.settle()
    times = sync_world.context.store.association_times.for_deals([deal_id])[deal_id]
    assert set(times.contacts) == {first, second}  # the person made the deal with the first one
    assert before - timedelta(seconds=1) <= times.contacts[second] <= datetime.now(UTC)
    assert times.contacts[first] < before and times.company is not None and times.company < before


def test_a_property_change_after_an_unsaved_role_write_keeps_the_role(
        sync_world: SyncWorld, hubspot_contacts: list[str]) -> None:
    first, second = hubspot_contacts
    deal_id, opportunity_id = _paired_deal(sync_world, "Unsaved role write", [first])
    # A person adds the second contact in HubSpot; its sync claims the pair, makes the role and dies before
    # saving the pair (its write-ahead names the contact set it was bringing to Salesforce).
    links = sync_world.context.store.links
    link = links.get_by_hubspot_id(LinkKind.OPPORTUNITY, deal_id)
    assert link is not None
    with sync_world.hubspot_unheard() as store:
        store.associate(DEALS, int(deal_id), CONTACTS, int(second), None, sync_world.hubspot.person_source)
    assert links.set_pending(link, {"hubspot": {}, "salesforce": {CONTACTS_KEY: joined([first, second])}})
    with sync_world.salesforce_unheard():
        sync_world.salesforce.create("OpportunityContactRole", {"OpportunityId": opportunity_id,
                                                                "ContactId": sync_world.contact_ids[1]},
                                     as_person=False)
    # A property change's sync comes first: the role it finds is the pending write's, not one to remove.
    with sync_world.hubspot_unheard() as store:
        store.update(DEALS, store.get(DEALS, deal_id), {"amount": "4300"}, sync_world.hubspot.person_source)
    assert not sync_deals(sync_world.context, [deal_id], associations_for=[], source="test").retry
    assert _role_contacts(sync_world, opportunity_id) == set(sync_world.contact_ids)
    saved = links.get_by_hubspot_id(LinkKind.OPPORTUNITY, deal_id)
    assert saved is not None and split(saved.shadow.get(CONTACTS_KEY)) == {first, second}
    assert sync_world.associations(deal_id, "contacts") == {first, second}


def test_a_persons_change_in_the_second_of_dealsyncs_own_is_the_fields_latest(sync_world: SyncWorld,
                                                                              hubspot_contacts: list[str]) -> None:
    _, opportunity_id = _paired_deal(sync_world, "Same second", hubspot_contacts[:1])
    salesforce = sync_world.context.salesforce
    clock = sync_world.salesforce.clock
    time.sleep(1.02 - clock.now_precise().microsecond / 1e6)  # early in a second: both writes fit in it
    salesforce.update("Opportunity", [{"Id": opportunity_id, "Description": "copied by dealsync"}])
    sync_world.salesforce.update("Opportunity", opportunity_id, {"Description": "a person's, right after"})
    rows = sync_world.salesforce.soql(
        "SELECT CreatedDate, CreatedById FROM OpportunityFieldHistory "
        f"WHERE OpportunityId = '{opportunity_id}' AND Field = 'Description' ORDER BY CreatedDate DESC")
    assert rows[0]["CreatedDate"] == rows[1]["CreatedDate"]  # history keeps times to the second
    # Without the tie broken, dealsync's row would be the field's latest, the person's value taken for its copy.
    assert salesforce.field_history([opportunity_id])[opportunity_id]["Description"] == (
        rows[0]["CreatedDate"], sync_world.salesforce.person_user_id)
