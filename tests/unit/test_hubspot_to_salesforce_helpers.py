"""The pure helpers of the HubSpot → Salesforce direction: batching webhook events into deal ids,
reading association results, and the contact-role diff kept in the shadow."""

from __future__ import annotations

from typing import Any

from dealsync.mapping.fields import default_specs
from dealsync.mapping.rules import RecordDecision
from dealsync.models.events import HubSpotWebhookEvent
from dealsync.services.deal_sync import (
    ContactDiff,
    contact_diff,
    contacts_shadow,
    roles_to_delete,
    with_plain_history,
)
from dealsync.services.hs_change import DealWork, collect_events
from dealsync.services.records import (
    associated_ids,
    hubspot_snapshot,
    pending_writes,
    primary_company,
    salesforce_snapshot,
)

APP_ID = "3141592"


def _event(kind: str, object_id: int = 101, **extra: Any) -> HubSpotWebhookEvent:
    body: dict[str, Any] = {"eventId": 1, "subscriptionId": 7, "portalId": 62515001, "appId": int(APP_ID),
                            "occurredAt": 1_700_000_000_000, "subscriptionType": kind, "objectId": object_id,
                            "changeSource": "CRM_UI", **extra}
    return HubSpotWebhookEvent.model_validate(body)


def test_deal_events_name_their_deals_with_the_messages_that_carried_them() -> None:
    work = DealWork()
    collect_events("m1", [_event("deal.creation"), _event("deal.propertyChange", propertyName="amount",
                                                          propertyValue="5")], APP_ID, work)
    collect_events("m2", [_event("deal.propertyChange", propertyName="amount", propertyValue="6"),
                          _event("deal.deletion", 202)], APP_ID, work)
    assert dict(work.deals) == {"101": {"m1", "m2"}, "202": {"m2"}}
    assert work.associations == {"101", "202"}  # created and deleted: not only properties changed
    assert work.echoes == 0


def test_property_changes_alone_need_no_association_reads() -> None:
    work = DealWork()
    collect_events("m1", [_event("deal.propertyChange", propertyName="amount", propertyValue="5")], APP_ID, work)
    assert dict(work.deals) == {"101": {"m1"}}
    assert work.associations == set()


def test_own_writes_are_echoes_and_other_integrations_are_not() -> None:
    work = DealWork()
    mine = _event("deal.propertyChange", propertyName="amount", propertyValue="1", changeSource="INTEGRATION",
                  sourceId=APP_ID)
    theirs = _event("deal.propertyChange", 303, propertyName="amount", propertyValue="1",
                    changeSource="INTEGRATION", sourceId="999")
    collect_events("m1", [mine, theirs], APP_ID, work)
    assert work.echoes == 1
    assert dict(work.deals) == {"303": {"m1"}}


def test_association_events_name_the_deal_and_other_objects_are_ignored() -> None:
    work = DealWork()
    association = HubSpotWebhookEvent.model_validate({
        "eventId": 2, "portalId": 1, "appId": int(APP_ID), "occurredAt": 1, "subscriptionType":
        "deal.associationChange", "associationType": "DEAL_TO_CONTACT", "fromObjectId": 404, "toObjectId": 9,
        "associationRemoved": True, "changeSource": "CRM_UI"})
    collect_events("m1", [association, _event("contact.creation", 55)], APP_ID, work)
    assert dict(work.deals) == {"404": {"m1"}}
    assert work.associations == {"404"}
    assert work.ignored == 1


def test_a_persons_association_changes_keep_their_latest_time() -> None:
    work = DealWork()

    def association(kind: str, occurred_at: int, **extra: Any) -> HubSpotWebhookEvent:
        return HubSpotWebhookEvent.model_validate({
            "eventId": occurred_at, "portalId": 1, "appId": int(APP_ID), "occurredAt": occurred_at,
            "subscriptionType": "deal.associationChange", "associationType": kind, "fromObjectId": 404,
            "toObjectId": 9, "associationRemoved": False, "changeSource": "CRM_UI", **extra})

    collect_events("m1", [association("DEAL_TO_COMPANY", 2_000), association("DEAL_TO_COMPANY", 1_000),
                          association("DEAL_TO_CONTACT", 3_000),
                          association("DEAL_TO_COMPANY", 4_000, changeSource="INTEGRATION", sourceId=APP_ID)],
                   APP_ID, work)
    # dealsync's own write (4,000) and contacts (3,000) are no person's company change
    assert work.companies_changed_at == {"404": 2_000}
    assert work.contacts_changed_at == {"404": {"9": 3_000}}  # the contact's, by contact
    assert work.contacts_removed == {"404": set()}  # the person's latest change put it on the deal
    # Taken off later, put on again in between (delivered out of order): the latest change decides.
    collect_events("m2", [association("DEAL_TO_CONTACT", 5_000, associationRemoved=True),
                          association("DEAL_TO_CONTACT", 4_500)], APP_ID, work)
    assert work.contacts_changed_at == {"404": {"9": 5_000}}
    assert work.contacts_removed == {"404": {"9"}}
    assert work.primary_companies == {}  # no primary company event yet


def test_the_primary_company_a_persons_latest_change_left_on_the_deal_is_kept() -> None:
    work = DealWork()

    def primary(company: int, occurred_at: int, *, removed: bool = False, **extra: Any) -> HubSpotWebhookEvent:
        return HubSpotWebhookEvent.model_validate({
            "eventId": occurred_at + company, "portalId": 1, "appId": int(APP_ID), "occurredAt": occurred_at,
            "subscriptionType": "deal.associationChange", "associationType": "DEAL_TO_COMPANY", "fromObjectId": 404,
            "toObjectId": company, "associationRemoved": removed, "isPrimaryAssociation": True,
            "changeSource": "CRM_UI", **extra})

    # Moved from 7 to 8 in one moment, delivered addition first; dealsync's own move back to 7 is an echo.
    collect_events("m1", [primary(8, 1_000), primary(7, 1_000, removed=True),
                          primary(7, 2_000, changeSource="INTEGRATION", sourceId=APP_ID)], APP_ID, work)
    assert work.primary_companies == {"404": (1_000, "8")}
    collect_events("m2", [primary(8, 3_000, removed=True)], APP_ID, work)  # taken off: no primary company
    assert work.primary_companies == {"404": (3_000, None)}


def test_merges_name_both_deals_and_remember_which_survives() -> None:
    work = DealWork()
    collect_events("m1", [_event("deal.merge", 10, primaryObjectId=10, mergedObjectIds=[11])], APP_ID, work)
    assert dict(work.merges) == {"10": {"11"}}
    assert dict(work.deals) == {"10": {"m1"}, "11": {"m1"}}


def test_association_results_in_sdk_and_raw_shapes() -> None:
    sdk = [{"to_object_id": 7, "association_types": [{"category": "HUBSPOT_DEFINED", "type_id": 341}]},
           {"to_object_id": 8, "association_types": [{"category": "HUBSPOT_DEFINED", "type_id": 5},
                                                     {"category": "HUBSPOT_DEFINED", "type_id": 341}]}]
    raw = [{"toObjectId": 9, "associationTypes": [{"typeId": 5}]}]
    assert associated_ids(sdk) == {"7", "8"}
    assert primary_company(sdk) == "8"
    assert primary_company(raw) == "9"
    assert primary_company(sdk[:1]) is None
    assert associated_ids([]) == set()


def test_contact_diff_against_the_shadow() -> None:
    diff = contact_diff(["1", "2", "4"], ["1", "2", "3"])
    assert diff == ContactDiff(frozenset({"4"}), frozenset({"3"}), frozenset({"1", "2"}))
    assert contact_diff(["1"], []) == ContactDiff(frozenset({"1"}), frozenset(), frozenset())


def test_contacts_shadow_keeps_only_additions_that_reached_salesforce() -> None:
    diff = contact_diff(["1", "2", "4", "5"], ["1", "2", "3"])
    # 4 got its role, 5 has no Salesforce contact: 5 stays out, so it is tried again and never undone.
    assert contacts_shadow(diff, {"4"}) == "1;2;4"
    assert contacts_shadow(contact_diff([], ["1"]), set()) is None


def test_roles_to_delete_picks_the_roles_of_the_removed_contacts() -> None:
    roles = [{"Id": "00K1", "ContactId": "003A"}, {"Id": "00K2", "ContactId": "003B"},
             {"Id": "00K3", "ContactId": "003A"}]
    assert roles_to_delete(roles, ["003A"]) == ["00K1", "00K3"]
    assert roles_to_delete(roles, []) == []


class _Versioned:
    def __init__(self, value: str, timestamp: str) -> None:
        self.value, self.timestamp = value, timestamp

    def to_dict(self) -> dict[str, str]:
        return {"value": self.value, "timestamp": self.timestamp}


def test_history_objects_become_plain_dicts() -> None:
    deal = {"id": "1", "properties": {"amount": "5"},
            "properties_with_history": {"amount": [_Versioned("5", "2027-01-02T00:00:00Z")], "dealname": None}}
    plain = with_plain_history(deal)
    assert plain["properties_with_history"] == {"amount": [{"value": "5", "timestamp": "2027-01-02T00:00:00Z"}],
                                                "dealname": []}
    assert with_plain_history({"id": "2"}) == {"id": "2"}


def test_hubspot_snapshot_marks_properties_whose_newest_version_dealsync_wrote() -> None:
    def version(value: str, source_type: str, source_id: str) -> dict[str, str]:
        return {"value": value, "timestamp": "2026-03-01T10:00:00Z", "source_type": source_type, "source_id": source_id}

    deal = {"id": "1", "properties": {"dealname": "B", "amount": "5", "description": "x", "closedate": "y"},
            "properties_with_history": {
                "dealname": [version("B", "INTEGRATION", "42"), version("A", "CRM_UI", "userId:7")],
                "amount": [version("5", "CRM_UI", "userId:7"), version("4", "INTEGRATION", "42")],
                "description": [version("x", "INTEGRATION", "99")],  # another app
                "closedate": []}}
    assert hubspot_snapshot(deal, "42").copied_fields == {"dealname"}
    assert hubspot_snapshot(deal).copied_fields == frozenset()


def test_salesforce_snapshot_has_no_change_time_when_dealsync_made_the_last_change() -> None:
    from datetime import UTC, datetime

    integration = "005000000000009AAA"
    record = {"Id": "006000000000001AAA", "Name": "A", "SystemModstamp": "2026-03-01T10:00:00.000+0000"}
    stamp = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    by_person = salesforce_snapshot({**record, "LastModifiedById": "005000000000002AAA"}, [], None, integration)
    by_dealsync = salesforce_snapshot({**record, "LastModifiedById": integration[:15]}, [], None, integration)
    earlier_event, later_event = datetime(2026, 3, 1, 9, 0, tzinfo=UTC), datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    assert by_person.changed_at == stamp
    assert by_dealsync.changed_at is None  # the stamp is when dealsync copied HubSpot's values over
    assert salesforce_snapshot({**record, "LastModifiedById": integration}, [], earlier_event,
                               integration).changed_at == earlier_event
    # the record as read holds a later change than the event that named it
    assert salesforce_snapshot({**record, "LastModifiedById": "005000000000002AAA"}, [], earlier_event,
                               integration).changed_at == stamp
    assert salesforce_snapshot(record, [], later_event, integration).changed_at == later_event
    assert salesforce_snapshot({**record, "LastModifiedById": integration}, []).changed_at == stamp


def test_pending_writes_name_each_field_by_the_side_its_patch_writes() -> None:
    specs = default_specs(multi_currency=False)
    decision = RecordDecision(hubspot_properties={"amount": "20", "dealstage": "s2"},
                              salesforce_fields={"Name": "New"},
                              shadow={"Amount": "20", "StageName": "default:Won", "Name": "New", "CloseDate": "x"},
                              fields={})
    assert pending_writes(decision, specs) == {"hubspot": {"Amount": "20", "StageName": "default:Won"},
                                               "salesforce": {"Name": "New"}}


def test_salesforce_snapshot_takes_tracked_fields_times_from_field_history() -> None:
    from datetime import UTC, datetime

    integration = "005000000000009AAA"
    specs = default_specs(multi_currency=False)
    record = {"Id": "006000000000001AAA", "Name": "A", "Amount": 5.0, "OwnerId": "005000000000002AAA",
              "LastModifiedById": "005000000000002AAA", "SystemModstamp": "2026-03-01T12:00:00.000+0000"}
    history = {"Amount": ("2026-03-01T10:00:00.000+0000", "005000000000002AAA"),
               "Owner": ("2026-03-01T11:00:00.000+0000", "005000000000002AAA"),
               "Name": ("2026-03-01T11:30:00.000+0000", integration[:15])}
    snapshot = salesforce_snapshot(record, specs, None, integration, history)
    assert snapshot.field_changed_at == {"Amount": datetime(2026, 3, 1, 10, 0, tzinfo=UTC),
                                         "OwnerId": datetime(2026, 3, 1, 11, 0, tzinfo=UTC)}
    assert snapshot.copied_fields == {"Name"}
    assert snapshot.copied_at == {"Name": datetime(2026, 3, 1, 11, 30, tzinfo=UTC)}
    # an untracked field keeps the record's stamp
    assert snapshot.changed_at_for(["CloseDate"]) == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
