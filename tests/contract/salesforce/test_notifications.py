"""Outbound Messages (SOAP, retried until acknowledged) and change events in the Event Relay envelope,
delivered to small listeners in the test, plus the load control endpoint (which notifies nobody)."""


from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from defusedxml import ElementTree

NS = {"soapenv": "http://schemas.xmlsoap.org/soap/envelope/", "om": "http://soap.sforce.com/2005/09/outbound",
      "sf": "urn:sobject.enterprise.soap.sforce.com", "xsi": "http://www.w3.org/2001/XMLSchema-instance"}
ACK = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
       'envelope/"><soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
       "<Ack>{}</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>")


def parse_message(text: str) -> tuple[Any, list[tuple[str, dict[str, str | None]]]]:
    root = ElementTree.fromstring(text)
    notifications = root.find("soapenv:Body/om:notifications", NS)
    assert notifications is not None
    items = []
    for notification in notifications.findall("om:Notification", NS):
        sobject = notification.find("om:sObject", NS)
        assert sobject is not None
        assert sobject.get(f"{{{NS['xsi']}}}type") == "sf:Opportunity"
        fields = {child.tag.split("}")[1]: child.text for child in sobject}
        items.append((notification.findtext("om:Id", namespaces=NS) or "", fields))
    return notifications, items


def test_outbound_message_retried_until_acknowledged(org: Any, person: Any, tls: Any,
                                                     receiver_factory: Callable[..., Any]) -> None:
    listener = receiver_factory(https=True, default=(200, ACK.format("true")))
    listener.script = [(500, "boom"), (200, ACK.format("false")), (200, "<not-soap")]
    org.configure(outbound_message_url=listener.url, callback_verify=str(tls.ca_file), retry_base_seconds=0.02,
                  outbound_message_fields=["Name", "StageName", "Amount", "CloseDate", "IsWon", "SystemModstamp"])
    created = person.Opportunity.create({"Name": "Ack me", "StageName": "Prospecting", "CloseDate": "2026-12-31"})
    assert org.app.flush_notifications(timeout=10)
    texts = listener.texts()
    assert len(texts) == 4  # three failures, then acknowledged
    assert texts[0] == texts[-1]  # the same notification id and data each time
    notifications, items = parse_message(texts[-1])
    assert notifications.findtext("om:OrganizationId", namespaces=NS) == org.app.org_id
    assert (notifications.findtext("om:ActionId", namespaces=NS) or "").startswith("04k")
    session = notifications.find("om:SessionId", NS)
    assert session is not None and session.get(f"{{{NS['xsi']}}}nil") == "true"
    assert (notifications.findtext("om:EnterpriseUrl", namespaces=NS) or "").startswith(f"{org.url}/services/Soap/c/")
    assert (notifications.findtext("om:PartnerUrl", namespaces=NS) or "").startswith(f"{org.url}/services/Soap/u/")
    notification_id, fields = items[0]
    assert notification_id.startswith("04l") and len(notification_id) == 18
    assert fields["Id"] == created["id"] and fields["Name"] == "Ack me" and fields["IsWon"] == "false"
    assert fields["Amount"] is None and fields["CloseDate"] == "2026-12-31"
    assert (fields["SystemModstamp"] or "").endswith(".000Z")
    assert listener.headers[0]["Content-Type"].startswith("text/xml")
    log = org.session().get(f"{org.url}/__emulator/notifications").json()["deliveries"]
    assert [entry["delivered"] for entry in log if entry["kind"] == "outbound_message"] == [False] * 3 + [True]


def test_outbound_messages_batch_at_most_100(org: Any, sf: Any, receiver_factory: Callable[..., Any]) -> None:
    listener = receiver_factory(default=(200, ACK.format("true")))
    org.configure(outbound_message_url=listener.url)
    org.configure(notifications_enabled=False)
    records = [{"attributes": {"type": "Opportunity"}, "Name": f"Deal {i}", "StageName": "Prospecting",
                "CloseDate": "2026-12-31"} for i in range(150)]
    results = sf.restful("composite/sobjects", method="POST", json={"records": records})
    assert org.app.flush_notifications(timeout=5) and listener.bodies == []  # switched off: nothing queued
    org.configure(notifications_enabled=True)
    ids = [r["id"] for r in results]
    sf.restful("composite/sobjects", method="PATCH", json={"records": [
        {"attributes": {"type": "Opportunity"}, "id": i, "Amount": 1} for i in ids]})
    sf.Opportunity.delete(ids[0])  # deletions are not sent
    account = sf.Account.create({"Name": "No OM for accounts"})["id"]
    contact = sf.Contact.create({"LastName": "Nor for contacts", "AccountId": account})["id"]
    sf.OpportunityContactRole.create({"OpportunityId": ids[1], "ContactId": contact})
    assert org.app.flush_notifications(timeout=10)
    sent = [parse_message(text)[1] for text in listener.texts()]
    assert all(len(items) <= 100 for items in sent)
    delivered = [fields["Id"] for items in sent for _, fields in items]
    assert sorted(str(i) for i in delivered) == sorted(ids)


def test_change_events_carry_the_call_options_client(org: Any, sf: Any, person: Any,
                                                     receiver_factory: Callable[..., Any]) -> None:
    sink = receiver_factory()
    org.configure(change_event_url=sink.url, relay_id="dealsync-local")
    opp_id = sf.Opportunity.create({"Name": "Evented", "StageName": "Prospecting", "CloseDate": "2026-12-31"},
                                   headers={"Sforce-Call-Options": "client=dealsync"})["id"]
    sf.Opportunity.update(opp_id, {"StageName": "Closed Won", "Description": None},
                          headers={"Sforce-Call-Options": "client=dealsync"})
    person.Opportunity.update(opp_id, {"Amount": 12.5})
    assert org.app.flush_notifications(timeout=10)
    events = sink.relayed_events()
    assert [e["detail"]["payload"]["ChangeEventHeader"]["changeType"] for e in events] == [
        "CREATE", "UPDATE", "UPDATE"]
    create = events[0]
    assert set(create) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources",
                           "detail"}
    assert create["detail-type"] == "OpportunityChangeEvent"
    assert create["source"] == f"aws.partner/salesforce.com/{org.app.org_id}/dealsync-local"
    assert set(create["detail"]) == {"payload", "schemaId", "event"}
    header = create["detail"]["payload"]["ChangeEventHeader"]
    assert header["entityName"] == "Opportunity" and header["recordIds"] == [opp_id]
    assert header["changeOrigin"] == "com/salesforce/api/rest/59.0;client=dealsync"
    assert header["commitUser"] == org.app.integration_user_id
    assert isinstance(header["commitTimestamp"], int) and header["commitTimestamp"] > 1_700_000_000_000
    payload = create["detail"]["payload"]
    assert payload["Name"] == "Evented" and isinstance(payload["CreatedDate"], int)
    assert "SystemModstamp" not in payload and "IsDeleted" not in payload
    update = events[1]["detail"]["payload"]
    assert set(update["ChangeEventHeader"]["changedFields"]) >= {"StageName", "IsClosed", "IsWon", "Probability",
                                                                 "LastModifiedDate"}
    assert update["StageName"] == "Closed Won" and update["IsWon"] is True
    by_person = events[2]["detail"]["payload"]["ChangeEventHeader"]
    assert by_person["changeOrigin"] == "com/salesforce/api/rest/59.0"
    assert by_person["commitUser"] == org.app.person_user_id
    assert by_person["changedFields"] == ["Amount", "LastModifiedDate", "LastModifiedById"]
    assert events[0]["detail"]["event"]["replayId"] < events[2]["detail"]["event"]["replayId"]


def test_change_events_relayed_in_requests_of_at_most_20(org: Any, person: Any,
                                                         receiver_factory: Callable[..., Any]) -> None:
    sink = receiver_factory()
    sink.script = [(503, "unavailable")]  # the events queue up behind the failed first request
    org.configure(change_event_url=sink.url, retry_base_seconds=0.5)
    created = [person.Opportunity.create({"Name": f"Burst {n}", "StageName": "Prospecting",
                                          "CloseDate": "2026-12-31"})["id"] for n in range(50)]
    assert org.app.flush_notifications(timeout=20)
    failed, *delivered = sink.json_bodies()
    assert max(len(body) for body in delivered) == 20  # what one PutPartnerEvents request carries
    record_ids = [event["detail"]["payload"]["ChangeEventHeader"]["recordIds"][0]
                  for body in delivered for event in body]
    assert record_ids == created  # each once, in commit order, the failed ones first
    assert len(failed) >= 1


def test_change_events_for_deletes_roles_gaps_and_retries(org: Any, sf: Any,
                                                          receiver_factory: Callable[..., Any]) -> None:
    sink = receiver_factory()
    sink.script = [(503, "unavailable")]
    org.configure(change_event_url=sink.url, retry_base_seconds=0.02)
    first, second = (sf.Opportunity.create({"Name": n, "StageName": "Prospecting", "CloseDate": "2026-12-31"})["id"]
                     for n in ("One", "Two"))
    contact = sf.Contact.create({"LastName": "Lee", "FirstName": "Kim"})["id"]
    role = sf.OpportunityContactRole.create({"OpportunityId": first, "ContactId": contact, "IsPrimary": True})["id"]
    sf.restful("composite/sobjects", method="DELETE", params={"ids": f"{first},{second}"},
               headers={"Sforce-Call-Options": "client=dealsync"})
    org.control("undelete", {"ids": [first]})
    org.control("gap_event", {"entity": "Opportunity", "ids": [second], "change_type": "GAP_UPDATE"})
    assert org.app.flush_notifications(timeout=10)
    failed = sink.json_bodies()[0]
    events = sink.relayed_events()[len(failed):]
    assert events[:len(failed)] == failed  # the first request failed with 503; its events were retried first
    headers = [(e["detail-type"], e["detail"]["payload"]["ChangeEventHeader"]) for e in events]
    kinds = [(kind, h["changeType"], sorted(h["recordIds"])) for kind, h in headers]
    assert kinds == [
        ("OpportunityChangeEvent", "CREATE", [first]),
        ("OpportunityChangeEvent", "CREATE", [second]),
        ("ContactChangeEvent", "CREATE", [contact]),
        ("OpportunityContactRoleChangeEvent", "CREATE", [role]),
        ("OpportunityChangeEvent", "DELETE", sorted([first, second])),  # one transaction: ids merged
        ("OpportunityContactRoleChangeEvent", "DELETE", [role]),
        ("OpportunityChangeEvent", "UNDELETE", [first]),
        ("OpportunityContactRoleChangeEvent", "UNDELETE", [role]),
        ("OpportunityChangeEvent", "GAP_UPDATE", [second]),
    ]
    contact_payload = events[2]["detail"]["payload"]
    assert contact_payload["Name"] == {"FirstName": "Kim", "LastName": "Lee"}
    delete_header = headers[4][1]
    assert delete_header["changeOrigin"] == "com/salesforce/api/rest/59.0;client=dealsync"
    assert headers[5][1]["transactionKey"] == delete_header["transactionKey"]
    assert headers[5][1]["sequenceNumber"] == delete_header["sequenceNumber"] + 1
    assert set(events[-1]["detail"]["payload"]) == {"ChangeEventHeader"}


def test_load_is_silent_and_fast(org: Any, sf: Any, receiver_factory: Callable[..., Any]) -> None:
    sink = receiver_factory()
    listener = receiver_factory(default=(200, ACK.format("true")))
    org.configure(change_event_url=sink.url, outbound_message_url=listener.url)
    users = [{"FirstName": f"Rep{i}", "LastName": "Seller", "Email": f"rep{i}@acme.example",
              "Username": f"rep{i}@acme.example", "Alias": f"rep{i}", "TimeZoneSidKey": "GMT",
              "LocaleSidKey": "en_US", "EmailEncodingKey": "UTF-8", "LanguageLocaleKey": "en_US"} for i in range(5)]
    body = {
        "User": users,
        "RecordType": [{"Name": "New Biz", "DeveloperName": "New_Biz", "SobjectType": "Opportunity",
                        "IsActive": True, "Stages": ["Prospecting", "Closed Won", "Closed Lost"]}],
        "Account": [{"Name": f"Account {i}", "OwnerId": f"@User:{i % 5}"} for i in range(100)],
        "Opportunity": [{"Name": f"Opp {i}", "StageName": "Closed Won" if i % 3 == 0 else "Prospecting",
                         "CloseDate": "2026-12-31", "Amount": i, "AccountId": f"@Account:{i % 100}",
                         "OwnerId": f"@User:{i % 5}", "RecordTypeId": "@RecordType:0",
                         "HubSpot_Deal_Id__c": f"hs-{i}"} for i in range(10_000)],
    }
    started = time.perf_counter()
    ids = org.control("load", body)["ids"]
    elapsed = time.perf_counter() - started
    assert {k: len(v) for k, v in ids.items()} == {"User": 5, "RecordType": 1, "Account": 100, "Opportunity": 10_000}
    assert elapsed < 5, elapsed
    assert sf.query("SELECT COUNT() FROM Opportunity WHERE IsWon = true")["totalSize"] == 3334
    seventh = ids["Opportunity"][7]
    row = sf.query(f"SELECT Owner.Email, RecordType.DeveloperName FROM Opportunity WHERE Id = '{seventh}'")
    assert row["records"][0]["Owner"]["Email"] == "rep2@acme.example"
    assert row["records"][0]["RecordType"]["DeveloperName"] == "New_Biz"
    assert org.app.pending_notifications() == {"outbound_messages": 0, "change_events": 0}
    assert sink.bodies == [] and listener.bodies == []
    bad = org.session().post(f"{org.url}/__emulator/load", json={"Opportunity": [{"Name": "no stage"}]})
    assert bad.status_code == 400 and "REQUIRED_FIELD_MISSING" in bad.json()["error"]


def test_duplicated_and_shuffled_notifications_for_reliability_tests(org: Any, person: Any,
                                                                     receiver_factory: Callable[..., Any]) -> None:
    sink = receiver_factory()
    listener = receiver_factory(default=(200, ACK.format("true")))
    org.configure(change_event_url=sink.url, outbound_message_url=listener.url, notification_duplicate_rate=1.0,
                  notification_shuffle=True, notification_seed=7)
    created = [person.Opportunity.create({"Name": f"Busy {n}", "StageName": "Prospecting",
                                          "CloseDate": "2026-12-31"})["id"] for n in range(6)]
    assert org.app.flush_notifications(timeout=20)
    events = sink.relayed_events()
    event_ids = [event["id"] for event in events]
    # Every change event twice, each copy identical (same event id and replay id), in an order that is not
    # the commit order.
    assert len(events) == 12 and len(set(event_ids)) == 6
    assert all(event_ids.count(event_id) == 2 for event_id in event_ids)
    replays = [event["detail"]["event"]["replayId"] for event in events]
    assert replays != sorted(replays)
    # Outbound Messages: each notification delivered again with the same notification id.
    notifications = [item for text in listener.texts() for item in parse_message(text)[1]]
    ids = [notification_id for notification_id, _ in notifications]
    assert sorted(str(fields["Id"]) for _, fields in notifications) == sorted(created * 2)
    assert all(ids.count(notification_id) == 2 for notification_id in ids)
    assert org.app.notifier.duplicates_added == 12


def test_updates_that_change_nothing_are_counted_by_caller(org: Any, sf: Any, person: Any) -> None:
    opp_id = person.Opportunity.create({"Name": "Same", "StageName": "Prospecting", "CloseDate": "2026-12-31"})["id"]
    org.app.clear_counters()
    sf.Opportunity.update(opp_id, {"Name": "Same"})  # the integration rewrites the person's value: an echo
    sf.Opportunity.update(opp_id, {"Amount": 5})
    sf.Opportunity.update(opp_id, {"Amount": 5})  # its own value again: unchanged, not an echo
    person.Opportunity.update(opp_id, {"Amount": 5})
    stats = org.app.stats_snapshot()
    assert stats["unchanged_writes"] == {"integration": 2, "person": 1}
    assert stats["echo_writes"] == 1
    assert list(org.app.echo_writes) == [("Opportunity", opp_id)]
