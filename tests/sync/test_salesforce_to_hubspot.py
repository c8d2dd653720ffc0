"""DESIGN §1.2 to 1.6, Salesforce → HubSpot, end to end in the local world, acting as a Salesforce user:
the emulator sends its Outbound Messages and change events to the real receivers, the runtime runs
the real sf_change worker from the queue, and HubSpot is read back through the real client."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from dealsync import faultpoints
from dealsync.models.domain import ErrorCategory, LinkKind, LinkStatus
from dealsync.services.contacts import link_contacts
from dealsync.services.deal_sync import sync_deals
from dealsync.services.opportunity_sync import RECHECK_AFTER_SECONDS, SyncReport, sync_opportunities
from dealsync.services.records import COMPANY_KEY, CONTACTS_KEY, joined, primary_company
from dealsync_local.hubspot.common import COMPANIES, CONTACTS, DEALS
from tests.sync.conftest import SyncWorld

pytestmark = pytest.mark.e2e


def _new_opportunity(world: SyncWorld, name: str, **fields: object) -> str:
    values = {"Name": name, "StageName": "Prospecting", "CloseDate": "2027-03-31", "Amount": 48000,
              "Type": "New Business", "Description": "Platform renewal", "AccountId": world.account_id, **fields}
    opportunity_id: str = world.salesforce.create("Opportunity", values)
    for index, contact_id in enumerate(world.contact_ids):
        world.salesforce.create("OpportunityContactRole", {"OpportunityId": opportunity_id, "ContactId": contact_id,
                                                           "IsPrimary": index == 0})
    return opportunity_id


def _paired_opportunity(world: SyncWorld, name: str) -> tuple[str, str]:
    """A new opportunity synced to its deal: (opportunity id, deal id)."""
    opportunity_id = _new_opportunity(world, name)
    world.settle()
    deal = world.deal_for(opportunity_id)
    assert deal is not None
    return opportunity_id, str(deal["id"])


def _sync_racing(world: SyncWorld, monkeypatch: pytest.MonkeyPatch, opportunity_id: str,
                 race: Callable[[], SyncReport]) -> tuple[SyncReport, SyncReport]:
    """Sync the opportunity, running ``race`` to its end right after the sync's first Salesforce read
    (once: the race's own reads go straight through). Returns the sync's report and the race's."""
    salesforce = world.context.salesforce
    real_query = salesforce.query_by_ids
    raced: list[SyncReport] = []
    running: list[bool] = []

    def query_then_race(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        records = real_query(*args, **kwargs)
        if not running:
            running.append(True)
            raced.append(race())
        return records

    monkeypatch.setattr(salesforce, "query_by_ids", query_then_race)
    try:
        report = sync_opportunities(world.context, [opportunity_id], source="test")
    finally:
        monkeypatch.undo()
    assert raced, "the race never ran"
    return report, raced[0]


def test_new_opportunity_becomes_a_deal_with_fields_pipeline_and_associations(sync_world: SyncWorld) -> None:
    opportunity_id = _new_opportunity(sync_world, "Acme Corp - Platform")
    sync_world.settle()
    deal = sync_world.deal_for(opportunity_id)
    assert deal is not None, "no deal was created"
    properties = deal["properties"]
    assert properties["dealname"] == "Acme Corp - Platform"
    assert properties["amount"] == "48000"
    assert properties["closedate"].startswith("2027-03-31")
    assert properties["dealtype"] == "newbusiness"
    assert properties["description"] == "Platform renewal"
    assert properties["hubspot_owner_id"] == sync_world.person_owner_id
    stage_map = sync_world.context.store.config.load().stage_maps
    mapping = next(iter(stage_map.values()))
    assert properties["pipeline"] == mapping.pipeline_id
    assert properties["dealstage"] == mapping.stages["Prospecting"]
    deal_id = str(deal["id"])
    assert len(sync_world.associations(deal_id, "contacts")) == 2
    assert sync_world.associations(deal_id, "companies") == {sync_world.company_id}
    link = sync_world.context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert link is not None
    assert link.hubspot_id == deal_id
    # The opportunity now carries its deal's id, so HubSpot-side writes can upsert on it.
    opportunity = sync_world.salesforce.get("Opportunity", opportunity_id)
    assert opportunity is not None
    assert opportunity["HubSpot_Deal_Id__c"] == deal_id


def test_field_changes_reach_hubspot_and_removing_a_role_removes_the_association(sync_world: SyncWorld) -> None:
    opportunity_id = _new_opportunity(sync_world, "Acme Corp - Analytics")
    sync_world.settle()
    sync_world.salesforce.update("Opportunity", opportunity_id, {
        "Name": "Acme Corp - Analytics XL", "Amount": 51000.5, "CloseDate": "2027-06-30",
        "Type": "Existing Business", "Description": "Bigger", "StageName": "Qualification"})
    roles = sync_world.salesforce.soql(
        f"SELECT Id FROM OpportunityContactRole WHERE OpportunityId = '{opportunity_id}' AND IsPrimary = false")
    sync_world.salesforce.delete("OpportunityContactRole", roles[0]["Id"])
    sync_world.settle()
    deal = sync_world.deal_for(opportunity_id)
    assert deal is not None
    properties = deal["properties"]
    assert properties["dealname"] == "Acme Corp - Analytics XL"
    assert properties["amount"] == "51000.5"
    assert properties["closedate"].startswith("2027-06-30")
    assert properties["dealtype"] == "existingbusiness"
    assert properties["description"] == "Bigger"
    mapping = next(iter(sync_world.context.store.config.load().stage_maps.values()))
    assert properties["dealstage"] == mapping.stages["Qualification"]
    assert len(sync_world.associations(str(deal["id"]), "contacts")) == 1


def test_unmapped_type_is_an_error_and_the_rest_still_syncs(sync_world: SyncWorld) -> None:
    opportunity_id = _new_opportunity(sync_world, "Acme Corp - Partner deal", Type=None)
    sync_world.settle()
    picklist_value = "Partner Referral"
    sync_world.salesforce.update("Opportunity", opportunity_id, {"Type": picklist_value, "Amount": 777})
    sync_world.settle()
    deal = sync_world.deal_for(opportunity_id)
    assert deal is not None
    assert deal["properties"]["amount"] == "777"
    errors = sync_world.context.store.errors.for_record(opportunity_id)
    assert [error.category for error in errors] == [ErrorCategory.UNMAPPED_VALUE]
    assert picklist_value in errors[0].message
    # The engine reports what it recorded (the SyncErrors metric counts these).
    report = sync_opportunities(sync_world.context, [opportunity_id], source="test")
    assert list(report.errors) == [opportunity_id]
    assert "UNMAPPED_VALUE" in report.errors[opportunity_id][0]


@pytest.mark.parametrize("change", [{"Amount": 5150}, {"Amount": 5150, "StageName": "Needs Analysis"}],
                         ids=["refused-whole-batch", "made-anew-with-the-changes-only"])
def test_a_deal_deleted_between_the_read_and_the_write_is_synced_again_and_the_rest_is_written(
        sync_world: SyncWorld, monkeypatch: pytest.MonkeyPatch, change: dict[str, Any]) -> None:
    gone_id, gone_deal = _paired_opportunity(sync_world, "Acme Corp - Deleted in HubSpot meanwhile")
    written_id, written_deal = _paired_opportunity(sync_world, "Acme Corp - Written with it")
    # In Salesforce both opportunities change; their sync reads the deals, and right then a person deletes one.
    # The upsert on the opportunity id then makes that deal anew with the changed values only — or, without a
    # stage among them, HubSpot refuses the whole batch.
    with sync_world.salesforce_unheard():
        for opportunity_id in (gone_id, written_id):
            sync_world.salesforce.update("Opportunity", opportunity_id, change)
    hubspot = sync_world.context.hubspot
    real_upsert = hubspot.batch_upsert

    def delete_then_upsert(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        if not deleted:
            deleted.append(True)
            sync_world.person_hubspot.batch_archive("deals", [gone_deal])
        return real_upsert(*args, **kwargs)

    deleted: list[bool] = []
    monkeypatch.setattr(hubspot, "batch_upsert", delete_then_upsert)
    try:
        report = sync_opportunities(sync_world.context, [gone_id, written_id], source="test")
    finally:
        monkeypatch.undo()
    # The other deal is written; the deleted one's opportunity is tried again, nothing written for it meanwhile.
    assert written_id in report.updated and not report.errors
    written = sync_world.deal_for(written_id)
    assert written is not None and str(written["id"]) == written_deal
    assert written["properties"]["amount"] == "5150"
    assert list(report.retry) == [gone_id]
    sync_world.settle()  # the deletion's webhook ends the pair
    # The next attempt makes the opportunity's new deal whole (DESIGN 1.6), and Salesforce keeps its values.
    assert not sync_opportunities(sync_world.context, [gone_id], source="test").retry
    sync_world.settle()
    deal = sync_world.deal_for(gone_id)
    assert deal is not None and str(deal["id"]) != gone_deal
    assert deal["properties"]["amount"] == "5150"
    assert deal["properties"]["description"] == "Platform renewal"
    assert len(sync_world.associations(str(deal["id"]), "contacts")) == len(sync_world.contact_ids)
    assert sync_world.associations(str(deal["id"]), "companies") == {sync_world.company_id}
    link = sync_world.context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, gone_id)
    assert link is not None and link.is_active and link.hubspot_id == str(deal["id"])
    opportunity = sync_world.salesforce.get("Opportunity", gone_id) or {}
    assert opportunity.get("Description") == "Platform renewal" and float(opportunity["Amount"]) == 5150
    assert sync_world.context.store.errors.for_record(gone_id) == []


def test_delete_archives_the_deal_and_undelete_brings_it_back(sync_world: SyncWorld) -> None:
    opportunity_id = _new_opportunity(sync_world, "Acme Corp - Short lived")
    sync_world.settle()
    first = sync_world.deal_for(opportunity_id)
    assert first is not None
    sync_world.salesforce.delete("Opportunity", opportunity_id)
    sync_world.settle()
    assert sync_world.deal_for(opportunity_id) is None
    link = sync_world.context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert link is not None
    assert link.status is LinkStatus.TOMBSTONED
    sync_world.salesforce.undelete([opportunity_id])
    sync_world.settle()
    back = sync_world.deal_for(opportunity_id)
    assert back is not None
    assert back["id"] != first["id"]
    relinked = sync_world.context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert relinked is not None
    assert relinked.is_active
    assert relinked.hubspot_id == str(back["id"])


def test_a_change_racing_the_deals_deletion_gives_the_new_deal_the_link(sync_world: SyncWorld) -> None:
    opportunity_id = _new_opportunity(sync_world, "Acme Corp - Deleted while changing")
    sync_world.settle()
    first = sync_world.deal_for(opportunity_id)
    assert first is not None
    # The deal is deleted in HubSpot, and its deletion webhook has not been processed when the opportunity
    # changes (held back here: the emulator reports nothing while its listener is off).
    with sync_world.hubspot_unheard() as store:
        store.archive(DEALS, store.get(DEALS, str(first["id"])), sync_world.hubspot.person_source)
    sync_world.salesforce.update("Opportunity", opportunity_id, {"Amount": 51000})
    sync_world.settle()
    second = sync_world.deal_for(opportunity_id)
    assert second is not None and second["id"] != first["id"]
    assert second["properties"]["amount"] == "51000"
    link = sync_world.context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert link is not None and link.is_active and link.hubspot_id == str(second["id"])
    old = sync_world.context.store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, str(first["id"]))
    assert old is not None and old.status is LinkStatus.TOMBSTONED
    opportunity = sync_world.salesforce.get("Opportunity", opportunity_id)
    assert opportunity is not None and opportunity["HubSpot_Deal_Id__c"] == str(second["id"])
    sync_world.salesforce.delete("Opportunity", opportunity_id)  # and the pair still ends as one
    sync_world.settle()
    assert sync_world.deal_for(opportunity_id) is None


def _sync_dying_after_the_hubspot_write(world: SyncWorld, opportunity_id: str) -> dict[str, Any]:
    """The opportunity's sync, its worker killed right after its HubSpot write (before Salesforce's and the
    link's): the deal it left."""
    def die(point: str) -> None:
        faultpoints.install(None)
        raise faultpoints.SimulatedCrash(f"test: worker killed at {point}")

    faultpoints.install(die)
    try:
        with pytest.raises(faultpoints.SimulatedCrash):
            sync_opportunities(world.context, [opportunity_id], source="test")
    finally:
        faultpoints.install(None)
    deal = world.deal_for(opportunity_id)
    assert deal is not None
    return deal


def test_an_opportunity_deleted_while_its_deal_is_created_leaves_no_deal(
        sync_world: SyncWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    with sync_world.salesforce_unheard():
        opportunity_id = _new_opportunity(sync_world, "Acme Corp - Gone in a moment")
    # The new opportunity's sync reads it; then the person deletes it, and the deletion's sync runs to the
    # end before the first one goes on: it finds no link and no deal to archive.
    def delete() -> SyncReport:
        with sync_world.salesforce_unheard():
            sync_world.salesforce.delete("Opportunity", opportunity_id)
        return sync_opportunities(sync_world.context, [opportunity_id], source="test")

    report, deletion = _sync_racing(sync_world, monkeypatch, opportunity_id, delete)
    assert not deletion.deleted  # the deletion's sync had nothing to follow
    # The deal made from the older read is archived, no link names the deleted opportunity.
    assert opportunity_id in report.deleted and opportunity_id not in report.created
    assert sync_world.deal_for(opportunity_id) is None
    link = sync_world.context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert link is None or link.status is LinkStatus.TOMBSTONED
    # Undeleted, it syncs as a new deal.
    sync_world.salesforce.undelete([opportunity_id])
    sync_world.settle()
    back = sync_world.deal_for(opportunity_id)
    assert back is not None
    relinked = sync_world.context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert relinked is not None and relinked.is_active and relinked.hubspot_id == str(back["id"])


def test_an_opportunity_deleted_after_its_sync_made_the_deal_and_died_leaves_no_deal(sync_world: SyncWorld) -> None:
    with sync_world.salesforce_unheard():
        opportunity_id = _new_opportunity(sync_world, "Acme Corp - Deleted after its deal was made")
    # The sync makes the deal and dies before telling Salesforce or saving the link; the person deletes the
    # opportunity before the message comes again.
    made = _sync_dying_after_the_hubspot_write(sync_world, opportunity_id)
    with sync_world.salesforce_unheard():
        sync_world.salesforce.delete("Opportunity", opportunity_id)
    report = sync_opportunities(sync_world.context, [opportunity_id], source="test")
    assert report.deleted == [opportunity_id]
    assert not report.retry
    # The deal the dead worker made is archived, as a linked one would be; nothing links the pair.
    assert sync_world.deal_for(opportunity_id) is None
    assert sync_world.context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id) is None
    sync_world.settle()  # the archive's webhook: the HubSpot side makes no new opportunity of that deal
    assert not sync_world.salesforce.soql(
        f"SELECT Id FROM Opportunity WHERE HubSpot_Deal_Id__c = '{made['id']}'")
    # Undeleted, it syncs as a new deal.
    sync_world.salesforce.undelete([opportunity_id])
    sync_world.settle()
    back = sync_world.deal_for(opportunity_id)
    assert back is not None and str(back["id"]) != str(made["id"])
    relinked = sync_world.context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert relinked is not None and relinked.is_active and relinked.hubspot_id == str(back["id"])


def test_a_contact_role_made_again_after_the_sync_read_its_removal_stays_on_the_deal(
        sync_world: SyncWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    opportunity_id, deal_id = _paired_opportunity(sync_world, "Acme Corp - Role back")
    contact_id = sync_world.contact_ids[1]
    both = sync_world.associations(deal_id, "contacts")
    assert len(both) == 2
    # A person removes the second contact's role; its sync (run here) reads that, and before it writes,
    # the person makes the role again.
    with sync_world.salesforce_unheard():
        role = sync_world.salesforce.soql(f"SELECT Id FROM OpportunityContactRole WHERE OpportunityId = "
                                          f"'{opportunity_id}' AND ContactId = '{contact_id}'")[0]
        sync_world.salesforce.delete("OpportunityContactRole", str(role["Id"]))

    def role_made_again() -> SyncReport:
        with sync_world.salesforce_unheard():
            sync_world.salesforce.create("OpportunityContactRole", {"OpportunityId": opportunity_id,
                                                                    "ContactId": contact_id})
        return SyncReport()

    report, _ = _sync_racing(sync_world, monkeypatch, opportunity_id, role_made_again)
    # Read again before writing: the removal it read is gone, so the deal keeps the contact.
    assert opportunity_id in report.retry
    assert sync_world.associations(deal_id, "contacts") == both
    again = sync_opportunities(sync_world.context, [opportunity_id], source="test")
    assert not again.retry
    assert sync_world.associations(deal_id, "contacts") == both


def test_a_pair_made_again_reads_the_opportunity_again_before_adding_its_contacts(
        sync_world: SyncWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    opportunity_id, deal_id = _paired_opportunity(sync_world, "Acme Corp - Paired again")
    first, second = sorted(sync_world.associations(deal_id, "contacts"))
    # The pair lost its link (as when the opportunity was deleted and undeleted while the deal outlived it),
    # and the deal lost its second contact.
    links = sync_world.context.store.links
    link = links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert link is not None
    links.tombstone(link, "test: opportunity deleted")
    with sync_world.hubspot_unheard() as store:
        store.dissociate(DEALS, int(deal_id), CONTACTS, int(second), None, sync_world.hubspot.person_source)
    second_contact = next(contact_id for contact_id, hubspot_id in link_contacts(
        sync_world.context, sync_world.contact_ids).items() if hubspot_id == second)

    def role_removed() -> SyncReport:  # right after the sync read the opportunity, with both roles
        with sync_world.salesforce_unheard():
            role = sync_world.salesforce.soql(f"SELECT Id FROM OpportunityContactRole WHERE OpportunityId = "
                                              f"'{opportunity_id}' AND ContactId = '{second_contact}'")[0]
            sync_world.salesforce.delete("OpportunityContactRole", str(role["Id"]))
        return SyncReport()

    report, _ = _sync_racing(sync_world, monkeypatch, opportunity_id, role_removed)
    assert opportunity_id in report.retry
    assert sync_world.associations(deal_id, "contacts") == {first}
    assert not sync_opportunities(sync_world.context, [opportunity_id], source="test").retry
    assert sync_world.associations(deal_id, "contacts") == {first}
    relinked = links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert relinked is not None and relinked.is_active and relinked.hubspot_id == deal_id


def test_a_contact_a_person_set_again_in_hubspot_after_the_role_was_deleted_stays_and_returns_to_salesforce(
        sync_world: SyncWorld) -> None:
    opportunity_id, deal_id = _paired_opportunity(sync_world, "Acme Corp - Contact back in HubSpot")
    contact_id = sync_world.contact_ids[1]
    hubspot_id = link_contacts(sync_world.context, [contact_id])[contact_id]
    # A person deletes the second contact's role (its sync runs below); later, in HubSpot, a person takes the
    # contact off the deal and puts it back: its webhooks reached the HubSpot worker (which noted when) but
    # not the deal's sync yet.
    with sync_world.salesforce_unheard():
        role = sync_world.salesforce.soql(f"SELECT Id FROM OpportunityContactRole WHERE OpportunityId = "
                                          f"'{opportunity_id}' AND ContactId = '{contact_id}'")[0]
        sync_world.salesforce.delete("OpportunityContactRole", str(role["Id"]))
    time.sleep(1.1)  # Salesforce keeps times to the second: what follows is plainly later
    person = sync_world.hubspot.person_source
    with sync_world.hubspot_unheard() as store:
        store.dissociate(DEALS, int(deal_id), CONTACTS, int(hubspot_id), None, person)
        store.associate(DEALS, int(deal_id), CONTACTS, int(hubspot_id), None, person)
    sync_world.context.store.association_times.note(deal_id, hubspot_id, int(time.time() * 1000))
    report = sync_opportunities(sync_world.context, [opportunity_id], source="test")
    # HubSpot's is the later change: the deal keeps the contact, and the HubSpot side brings it to Salesforce.
    assert report.hubspot_later == [deal_id] and not report.retry
    assert hubspot_id in sync_world.associations(deal_id, "contacts")
    sync_world.settle()
    assert hubspot_id in sync_world.associations(deal_id, "contacts")
    roles = sync_world.salesforce.soql(f"SELECT ContactId FROM OpportunityContactRole WHERE OpportunityId = "
                                       f"'{opportunity_id}'")
    assert contact_id in {str(row["ContactId"]) for row in roles}


def test_a_company_a_person_set_again_in_hubspot_after_the_account_changed_stays_and_returns_to_salesforce(
        sync_world: SyncWorld) -> None:
    other_account = sync_world.salesforce.create("Account", {"Name": "Initech"})
    other_company = str(sync_world.hubspot.load(
        {"companies": [{"name": "Initech", "salesforce_account_id": other_account}]})["companies"][0])
    sync_world.context.store.links.create(LinkKind.ACCOUNT, other_account, other_company)
    opportunity_id, deal_id = _paired_opportunity(sync_world, "Acme Corp - Company back in HubSpot")
    # A person moves the opportunity to Initech (its sync runs below); later, in HubSpot, a person moves the
    # deal to Initech and back to Acme: the webhooks reached the HubSpot worker, not the deal's sync yet.
    with sync_world.salesforce_unheard():
        sync_world.salesforce.update("Opportunity", opportunity_id, {"AccountId": other_account})
    time.sleep(1.1)
    person = sync_world.hubspot.person_source
    spec = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}]
    with sync_world.hubspot_unheard() as store:
        acme = sync_world.company_id
        for old_company, new_company in ((acme, other_company), (other_company, acme)):
            store.dissociate(DEALS, int(deal_id), COMPANIES, int(old_company), None, person)
            store.associate(DEALS, int(deal_id), COMPANIES, int(new_company), spec, person)
    sync_world.context.store.association_times.note(deal_id, "company", int(time.time() * 1000))
    report = sync_opportunities(sync_world.context, [opportunity_id], source="test")
    assert report.hubspot_later == [deal_id] and not report.retry
    assert sync_world.associations(deal_id, "companies") == {sync_world.company_id}
    sync_world.settle()
    assert sync_world.associations(deal_id, "companies") == {sync_world.company_id}
    opportunity = sync_world.salesforce.get("Opportunity", opportunity_id)
    assert opportunity is not None and opportunity["AccountId"] == sync_world.account_id


def test_a_worker_that_died_after_making_the_new_deal_leaves_it_to_get_every_association(
        sync_world: SyncWorld) -> None:
    opportunity_id, first_deal = _paired_opportunity(sync_world, "Acme Corp - New deal, worker died")
    both = sync_world.associations(first_deal, "contacts")
    # The deal is deleted in HubSpot (its deletion not processed yet) and the opportunity changes: its sync
    # makes a new deal and dies right after, before telling Salesforce or saving any link.
    with sync_world.hubspot_unheard() as store:
        store.archive(DEALS, store.get(DEALS, first_deal), sync_world.hubspot.person_source)
    with sync_world.salesforce_unheard():
        sync_world.salesforce.update("Opportunity", opportunity_id, {"Amount": 52000})
    deal = _sync_dying_after_the_hubspot_write(sync_world, opportunity_id)
    assert str(deal["id"]) != first_deal
    # The message comes again: the new deal, not the link's deleted one, is the pair's, with every association.
    assert not sync_opportunities(sync_world.context, [opportunity_id], source="test").retry
    new_deal = str(deal["id"])
    assert sync_world.associations(new_deal, "contacts") == both
    assert sync_world.associations(new_deal, "companies") == {sync_world.company_id}
    link = sync_world.context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert link is not None and link.is_active and link.hubspot_id == new_deal


def test_a_deal_restored_while_its_opportunity_syncs_is_not_overwritten_by_a_new_deals_values(
        sync_world: SyncWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    opportunity_id, deal_id = _paired_opportunity(sync_world, "Acme Corp - Restored meanwhile")
    person = sync_world.hubspot.person_source
    # The deal is deleted in HubSpot (not processed yet) and the opportunity changes; its sync finds no deal.
    with sync_world.hubspot_unheard() as store:
        store.archive(DEALS, store.get(DEALS, deal_id), person)
    with sync_world.salesforce_unheard():
        sync_world.salesforce.update("Opportunity", opportunity_id, {"Description": "Changed in Salesforce"})

    # Right after the sync read the deals, a person restores the deal and edits its amount.
    hubspot = sync_world.context.hubspot
    real_read = hubspot.batch_read
    restored: list[bool] = []

    def read_then_restore(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        deals = real_read(*args, **kwargs)
        if not restored:
            restored.append(True)
            with sync_world.hubspot_unheard() as store:
                store.restore(DEALS, deal_id, person)
                store.update(DEALS, store.get(DEALS, deal_id), {"amount": "777"}, person)
        return deals

    monkeypatch.setattr(hubspot, "batch_read", read_then_restore)
    report = sync_opportunities(sync_world.context, [opportunity_id], source="test")
    monkeypatch.undo()
    # Not created over the restored deal: read again.
    assert opportunity_id in report.retry and opportunity_id not in report.created
    deal = sync_world.deal_for(opportunity_id)
    assert deal is not None and str(deal["id"]) == deal_id and deal["properties"]["amount"] == "777"
    assert not sync_opportunities(sync_world.context, [opportunity_id], source="test").retry
    deal = sync_world.deal_for(opportunity_id)
    assert deal is not None and deal["properties"]["amount"] == "777"
    assert deal["properties"]["description"] == "Changed in Salesforce"


def test_own_writes_do_not_echo_back_to_salesforce(sync_world: SyncWorld) -> None:
    opportunity_id = _new_opportunity(sync_world, "Acme Corp - Echo check")
    sync_world.settle()
    before = sync_world.salesforce.get("Opportunity", opportunity_id)
    sync_world.settle()
    after = sync_world.salesforce.get("Opportunity", opportunity_id)
    assert before is not None
    assert after is not None
    # After the deal id was written back once, nothing further is written to the opportunity.
    assert after["SystemModstamp"] == before["SystemModstamp"]


def test_owner_without_hubspot_match_is_an_error_and_the_rest_syncs(sync_world: SyncWorld) -> None:
    loaded = sync_world.salesforce.load({"User": [{
        "FirstName": "Nia", "LastName": "Unmatched", "Email": "nia.unmatched@example.com",
        "Username": "nia@example.com.local", "IsActive": True, "Alias": "nunmatch",
        "TimeZoneSidKey": "America/New_York", "LocaleSidKey": "en_US", "EmailEncodingKey": "UTF-8",
        "LanguageLocaleKey": "en_US"}]})
    sync_world.context.forget("owners")
    opportunity_id = _new_opportunity(sync_world, "Acme Corp - Unowned", OwnerId=loaded["User"][0])
    sync_world.settle()
    deal = sync_world.deal_for(opportunity_id)
    assert deal is not None
    assert deal["properties"]["dealname"] == "Acme Corp - Unowned"
    assert not deal["properties"].get("hubspot_owner_id")
    errors = sync_world.context.store.errors.for_record(opportunity_id)
    assert [error.category for error in errors] == [ErrorCategory.OWNER_NOT_FOUND]
    assert loaded["User"][0] in errors[0].message


def test_account_not_yet_synced_waits_then_associates_when_it_syncs(sync_world: SyncWorld) -> None:
    account_id = sync_world.salesforce.create("Account", {"Name": "Globex"})
    opportunity_id = _new_opportunity(sync_world, "Globex - Pilot", AccountId=account_id)
    sync_world.settle()
    deal = sync_world.deal_for(opportunity_id)
    assert deal is not None, "the deal syncs without its company"
    deal_id = str(deal["id"])
    assert sync_world.associations(deal_id, "companies") == set()
    errors = sync_world.context.store.errors.for_record(opportunity_id)
    assert [error.category for error in errors] == [ErrorCategory.WAITING_FOR_ACCOUNT]
    assert errors[0].related_ids["account_id"] == account_id

    # The account syncs (as an account import or company sync would link it), then changes.
    company_id = sync_world.hubspot.load({"companies": [{"name": "Globex",
                                                         "salesforce_account_id": account_id}]})["companies"][0]
    sync_world.context.store.links.create(LinkKind.ACCOUNT, account_id, company_id)
    sync_world.salesforce.update("Account", account_id, {"Website": "https://globex.example"})
    sync_world.settle()
    assert sync_world.associations(deal_id, "companies") == {company_id}
    assert sync_world.context.store.errors.for_record(opportunity_id) == []


def test_repeated_reordered_and_parallel_deliveries_give_one_deal_with_the_latest_values(
    sync_world: SyncWorld,
) -> None:
    opportunity_id = _new_opportunity(sync_world, "Acme Corp - Busy")
    for amount in (1000, 2000, 3000):
        sync_world.salesforce.update("Opportunity", opportunity_id, {"Amount": amount})
    sync_world.settle()
    # Old news arrives again, twice, out of order, through the queue the poll and receivers use.
    from datetime import UTC, datetime

    from dealsync.models.events import SalesforceChangeMessage
    from dealsync.queues import send_messages

    stale = SalesforceChangeMessage(object="Opportunity", ids=[opportunity_id], source="outbound_message",
                                    received_at=datetime(2020, 1, 1, tzinfo=UTC)).model_dump_json()
    send_messages(sync_world.context.queues["salesforce"], [stale, stale])
    sync_world.settle()
    deals = list(sync_world.person_hubspot.search(
        "deals", [{"filters": [{"propertyName": "salesforce_opportunity_id", "operator": "EQ",
                                "value": opportunity_id}]}], ["amount"]))
    assert len(deals) == 1
    assert deals[0]["properties"]["amount"] == "3000"


@pytest.mark.parametrize("path", ["outbound_message", "change_event", "poll"])
def test_each_capture_path_alone_brings_hubspot_to_the_same_state(sync_world: SyncWorld, path: str) -> None:
    only = {
        "outbound_message": {"outbound_message_enabled": True, "change_events_enabled": False},
        "change_event": {"outbound_message_enabled": False, "change_events_enabled": True},
        "poll": {"outbound_message_enabled": False, "change_events_enabled": False},
    }[path]
    sync_world.salesforce.apply_config(only)
    try:
        opportunity_id = _new_opportunity(sync_world, f"Acme Corp - via {path}", Amount=4321)
        sync_world.salesforce.update("Opportunity", opportunity_id, {"StageName": "Needs Analysis"})
        if path == "poll":
            sync_world.world.run_schedule("SalesforcePollSchedule")
        sync_world.settle()
    finally:
        sync_world.salesforce.apply_config({"outbound_message_enabled": True, "change_events_enabled": True})
    deal = sync_world.deal_for(opportunity_id)
    assert deal is not None, f"{path} alone did not bring the opportunity over"
    mapping = next(iter(sync_world.context.store.config.load().stage_maps.values()))
    assert deal["properties"]["amount"] == "4321"
    assert deal["properties"]["dealstage"] == mapping.stages["Needs Analysis"]
    if path != "outbound_message":  # Outbound Messages carry no contact roles
        assert len(sync_world.associations(str(deal["id"]), "contacts")) == 2


def test_single_pipeline_org_gets_the_default_pipeline(sync_world: SyncWorld) -> None:
    stage_maps = sync_world.context.store.config.load().stage_maps
    assert list(stage_maps) == ["default"]
    pipelines = {str(p["id"]): p for p in sync_world.person_hubspot.pipelines("deals")}
    pipeline = pipelines[stage_maps["default"].pipeline_id]
    assert pipeline["label"] == "Salesforce - Default pipeline"
    stages = {stage["label"]: stage for stage in pipeline["stages"]}
    assert stages["Closed Won"]["metadata"]["probability"] == "1.0"
    assert stages["Closed Lost"]["metadata"]["probability"] == "0.0"
    assert stages["Prospecting"]["metadata"]["probability"] == "0.1"


def test_a_sync_that_read_a_pair_before_the_other_direction_saved_it_writes_nothing_and_reads_again(
        sync_world: SyncWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    opportunity_id, deal_id = _paired_opportunity(sync_world, "Acme Corp - Raced")
    # A person raises the amount in HubSpot; its webhook is held back: that sync is run by hand below.
    with sync_world.hubspot_unheard() as store:
        store.update(DEALS, store.get(DEALS, deal_id), {"amount": "700"}, sync_world.hubspot.person_source)
    # A Salesforce → HubSpot sync of the opportunity reads it; before it goes on, the HubSpot → Salesforce
    # sync of the person's change runs to the end (writes Amount 700, saves the pair).
    report, raced = _sync_racing(sync_world, monkeypatch, opportunity_id,
                                 lambda: sync_deals(sync_world.context, [deal_id], source="test"))
    assert not raced.retry  # the other direction synced
    # What this sync read of Salesforce (Amount 48000) is older than the pair's save: it writes nothing,
    # so the person's 700 is not overwritten in HubSpot by the Amount it read before.
    assert opportunity_id in report.retry
    deal = sync_world.deal_for(opportunity_id)
    assert deal is not None and deal["properties"]["amount"] == "700"
    opportunity = sync_world.salesforce.get("Opportunity", opportunity_id)
    assert opportunity is not None and opportunity["Amount"] == 700
    again = sync_opportunities(sync_world.context, [opportunity_id], source="test")  # the retry
    assert not again.retry and opportunity_id in again.unchanged
    sync_world.settle()
    deal = sync_world.deal_for(opportunity_id)
    assert deal is not None and deal["properties"]["amount"] == "700"


def test_a_hubspot_value_written_back_to_salesforce_after_the_other_direction_saved_the_pair_is_not_sent_on(
        sync_world: SyncWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    opportunity_id, deal_id = _paired_opportunity(sync_world, "Acme Corp - Written over")
    # A person changes the amount in HubSpot and the description in Salesforce; nothing is heard (the syncs
    # are run here).
    with sync_world.hubspot_unheard() as store:
        store.update(DEALS, store.get(DEALS, deal_id), {"amount": "111"}, sync_world.hubspot.person_source)
    with sync_world.salesforce_unheard():
        sync_world.salesforce.update("Opportunity", opportunity_id, {"Description": "Salesforce side"})
    salesforce = sync_world.context.salesforce
    real_update = salesforce.update
    raced: list[SyncReport] = []
    started: list[bool] = []

    def other_direction_first(sobject: str, records: Any) -> list[dict[str, Any]]:
        if sobject == "Opportunity" and not started:
            started.append(True)  # once: the other sync's own write goes straight through
            # Right before this sync writes HubSpot's amount (111) to the opportunity, a person sets 222 in
            # HubSpot, and that change's own sync writes it to Salesforce and saves the pair first.
            with sync_world.hubspot_unheard() as store:
                store.update(DEALS, store.get(DEALS, deal_id), {"amount": "222"}, sync_world.hubspot.person_source)
            raced.append(sync_deals(sync_world.context, [deal_id], source="test"))
            assert (sync_world.salesforce.get("Opportunity", opportunity_id) or {}).get("Amount") == 222
        result: list[dict[str, Any]] = real_update(sobject, records)
        return result

    monkeypatch.setattr(salesforce, "update", other_direction_first)
    report = sync_opportunities(sync_world.context, [opportunity_id], source="test")
    monkeypatch.undo()
    assert raced and not raced[0].retry
    assert opportunity_id in report.retry  # the pair was saved by the other sync: read again
    assert (sync_world.salesforce.get("Opportunity", opportunity_id) or {}).get("Amount") == 111  # written last
    # Read again: the opportunity's 111 is dealsync's copy of an older HubSpot value, no Salesforce change.
    # The person's 222 stands on both sides, and Salesforce's description too.
    assert not sync_opportunities(sync_world.context, [opportunity_id], source="test").retry
    sync_world.settle()
    opportunity = sync_world.salesforce.get("Opportunity", opportunity_id) or {}
    deal = sync_world.person_hubspot.batch_read("deals", [deal_id], ["amount", "description"])[0]["properties"]
    assert (opportunity.get("Amount"), deal["amount"]) == (222, "222")
    assert (opportunity.get("Description"), deal["description"]) == ("Salesforce side", "Salesforce side")


def test_a_salesforce_change_made_while_the_deals_are_slowly_written_is_not_overwritten(
        sync_world: SyncWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    opportunity_id, deal_id = _paired_opportunity(sync_world, "Acme Corp - Slow HubSpot")
    # A person changes the amount in HubSpot and the description in Salesforce; nothing is heard (the syncs
    # are run here). The Salesforce side's sync brings each to the other side.
    with sync_world.hubspot_unheard() as store:
        store.update(DEALS, store.get(DEALS, deal_id), {"amount": "700"}, sync_world.hubspot.person_source)
    with sync_world.salesforce_unheard():
        sync_world.salesforce.update("Opportunity", opportunity_id, {"Description": "Salesforce side"})
    hubspot = sync_world.context.hubspot
    real_upsert = hubspot.batch_upsert
    changed: list[bool] = []

    def slow_then_a_person_edits(object_type: str, id_property: str, inputs: Any) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = real_upsert(object_type, id_property, inputs)
        if object_type == "deals" and not changed:
            # HubSpot is slow; while the deals are written, a person sets the amount in Salesforce too.
            changed.append(True)
            time.sleep(RECHECK_AFTER_SECONDS)
            with sync_world.salesforce_unheard():
                sync_world.salesforce.update("Opportunity", opportunity_id, {"Amount": 900})
            time.sleep(1.1)  # Salesforce keeps times to the second: the person's change is plainly the later
        return result

    monkeypatch.setattr(hubspot, "batch_upsert", slow_then_a_person_edits)
    report = sync_opportunities(sync_world.context, [opportunity_id], source="test")
    monkeypatch.undo()
    assert changed
    assert opportunity_id in report.retry  # read again before its Salesforce write: the person's change is seen
    assert (sync_world.salesforce.get("Opportunity", opportunity_id) or {}).get("Amount") == 900
    # Read again (the retry): both changed the amount, and the person's Salesforce change is the later one.
    assert not sync_opportunities(sync_world.context, [opportunity_id], source="test").retry
    sync_world.settle()
    opportunity = sync_world.salesforce.get("Opportunity", opportunity_id) or {}
    deal = sync_world.person_hubspot.batch_read("deals", [deal_id], ["amount", "description"])[0]["properties"]
    assert (opportunity.get("Amount"), deal["amount"]) == (900, "900")
    assert (opportunity.get("Description"), deal["description"]) == ("Salesforce side", "Salesforce side")


@pytest.mark.parametrize("hubspot_change_first", [True, False])
def test_a_contact_an_unsaved_write_took_off_the_deal_and_salesforce_set_again_goes_back_on(
        sync_world: SyncWorld, hubspot_change_first: bool) -> None:
    opportunity_id, deal_id = _paired_opportunity(sync_world, f"Unsaved association write {hubspot_change_first}")
    second = sync_world.contact_ids[1]
    links = sync_world.context.store.links
    link = links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert link is not None
    kept = next(iter(sync_world.associations(deal_id, "contacts") - {_hubspot_contact(sync_world, second)}))
    taken_off = _hubspot_contact(sync_world, second)
    # A person deletes the second contact's role; the sync that takes the contact off the deal dies before
    # saving the pair (its write-ahead names the deal's new contact set).
    with sync_world.salesforce_unheard():
        for role in _roles(sync_world, opportunity_id, second):
            sync_world.salesforce.delete("OpportunityContactRole", role)
    assert links.set_pending(link, {"hubspot": {CONTACTS_KEY: joined([kept])}, "salesforce": {}})
    with sync_world.hubspot_unheard() as store:
        store.dissociate(DEALS, int(deal_id), CONTACTS, int(taken_off), None, sync_world.hubspot.integration_source)
    # Then a person gives the contact a role again.
    with sync_world.salesforce_unheard():
        sync_world.salesforce.create("OpportunityContactRole", {"OpportunityId": opportunity_id,
                                                                "ContactId": second})
    if hubspot_change_first:
        # A HubSpot change of the deal syncs first: the deal's missing contact is that unsaved write, no person's.
        with sync_world.hubspot_unheard() as store:
            store.update(DEALS, store.get(DEALS, deal_id), {"amount": "4700"}, sync_world.hubspot.person_source)
        assert not sync_deals(sync_world.context, [deal_id], associations_for=[], source="test").retry
        assert len(_roles(sync_world, opportunity_id, second)) == 1
    # The role's own sync: against what the deal holds, the contact is new, and goes back on the deal.
    assert not sync_opportunities(sync_world.context, [opportunity_id], source="test").retry
    assert sync_world.associations(deal_id, "contacts") == {kept, taken_off}
    sync_world.settle()
    assert sync_world.associations(deal_id, "contacts") == {kept, taken_off}
    assert len(_roles(sync_world, opportunity_id, second)) == 1


def _hubspot_contact(world: SyncWorld, salesforce_contact_id: str) -> str:
    link = world.context.store.links.get_by_salesforce_id(LinkKind.CONTACT, salesforce_contact_id)
    assert link is not None
    return link.hubspot_id


def _roles(world: SyncWorld, opportunity_id: str, contact_id: str) -> list[str]:
    rows = world.salesforce.soql(f"SELECT Id FROM OpportunityContactRole WHERE OpportunityId = '{opportunity_id}' "
                                 f"AND ContactId = '{contact_id}'")
    return [str(row["Id"]) for row in rows]


def test_with_unsaved_company_writes_from_both_directions_the_deal_gets_salesforces_account(
        sync_world: SyncWorld) -> None:
    _, other_company = sync_world.linked_company("Massive Dynamic")
    opportunity_id, deal_id = _paired_opportunity(sync_world, "Two unsaved company writes")
    links = sync_world.context.store.links
    link = links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert link is not None
    # The HubSpot side wrote Acme's account to Salesforce (which holds it), the Salesforce side wrote Massive
    # Dynamic to the deal (which holds it); neither saved the pair.
    assert links.set_pending(link, {"hubspot": {COMPANY_KEY: other_company},
                                    "salesforce": {COMPANY_KEY: sync_world.company_id}})
    integration = sync_world.hubspot.integration_source
    with sync_world.hubspot_unheard() as store:
        store.dissociate(DEALS, int(deal_id), COMPANIES, int(sync_world.company_id), None, integration)
        store.associate(DEALS, int(deal_id), COMPANIES, int(other_company),
                        [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}], integration)
    assert (sync_world.salesforce.get("Opportunity", opportunity_id) or {}).get("AccountId") == sync_world.account_id
    # Salesforce's account is brought to what the deal holds.
    assert not sync_opportunities(sync_world.context, [opportunity_id], source="test").retry
    assert sync_world.associations(deal_id, "companies") == {sync_world.company_id}


def test_a_deal_moved_to_another_company_always_has_a_primary_company(sync_world: SyncWorld,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    other_account, other_company = sync_world.linked_company("Wayne Enterprises")
    opportunity_id, deal_id = _paired_opportunity(sync_world, "Moved to another company")
    with sync_world.salesforce_unheard():
        sync_world.salesforce.update("Opportunity", opportunity_id, {"AccountId": other_account})
    # After each association write the deal is read, as the HubSpot side may read it at any moment: a deal
    # without a primary company would pass for a person's removal and clear the opportunity's account.
    hubspot = sync_world.context.hubspot
    primaries: list[str | None] = []

    def then_read(write: Callable[..., None]) -> Callable[..., None]:
        def written(from_type: str, to_type: str, pairs: Any) -> None:
            write(from_type, to_type, pairs)
            if to_type == "companies":
                found = sync_world.person_hubspot.associations_read("deals", "companies", [deal_id]).get(deal_id, [])
                primaries.append(primary_company(found))
        return written

    monkeypatch.setattr(hubspot, "associations_create", then_read(hubspot.associations_create))
    monkeypatch.setattr(hubspot, "associations_archive", then_read(hubspot.associations_archive))
    assert not sync_opportunities(sync_world.context, [opportunity_id], source="test").retry
    monkeypatch.undo()
    assert primaries and None not in primaries, primaries
    assert primaries[-1] == other_company
    assert sync_world.associations(deal_id, "companies") == {other_company}
