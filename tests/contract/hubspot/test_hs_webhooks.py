"""App webhooks: HubSpot's published signature examples, event shapes by change source, batching,
retries, signature versions, subscriptions, merges/restores/associations, shuffling and duplicates.

The v3 signature is checked with an implementation written here from HubSpot's documented procedure
(and with the SDK's ``Signature``), not with the emulator's own code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from hubspot.crm.deals import (
    BatchInputSimplePublicObjectBatchInputForCreate,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.utils.signature import Signature

from dealsync_local.hubspot import HubSpotEmulator, normalize_v3_uri, sign_v1, sign_v2, sign_v3
from dealsync_local.hubspot.testing import HubSpotHttp, ReceivedRequest, WebhookReceiver

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
URL = "https://www.example.com/webhook_uri"


def independent_v3(secret: str, method: str, uri: str, body: str, timestamp: str) -> str:
    """HubSpot's documented v3 steps: utf-8 method + uri + body + timestamp, HMAC-SHA256 with the
    app secret, base64."""
    for encoded, plain in (("%3A", ":"), ("%2F", "/"), ("%3F", "?"), ("%40", "@"), ("%21", "!"), ("%24", "$"),
                           ("%27", "'"), ("%28", "("), ("%29", ")"), ("%2A", "*"), ("%2C", ","), ("%3B", ";")):
        uri = uri.replace(encoded, plain)
    digest = hmac.new(secret.encode("utf-8"), (method + uri + body + timestamp).encode("utf-8"), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode("ascii")


def assert_signed_v3(request: ReceivedRequest, secret: str, url: str) -> None:
    headers = request.headers
    timestamp = headers["X-HubSpot-Request-Timestamp"]
    assert abs(time.time() * 1000 - int(timestamp)) < 300_000  # within HubSpot's 5 minutes
    signature = headers["X-HubSpot-Signature-v3"]
    assert hmac.compare_digest(signature, independent_v3(secret, "POST", url, request.body, timestamp))
    assert Signature.is_valid(signature=signature, client_secret=secret, request_body=request.body, http_uri=url,
                              http_method="POST", signature_version="v3", timestamp=timestamp)
    assert headers["X-HubSpot-Signature-Version"] == "v1"
    assert headers["X-HubSpot-Signature"] == hashlib.sha256((secret + request.body).encode()).hexdigest()
    assert headers["Content-Type"] == "application/json"


def test_hubspots_published_signature_examples() -> None:
    sdk_body = "{'example_field':'example_value'}"
    assert sign_v3(SECRET, "POST", URL, sdk_body, "1693657560000") == "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="
    assert sign_v2(SECRET, "POST", URL, sdk_body) == "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383"
    assert sign_v2(SECRET, "GET", URL, "") == "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
    assert sign_v1(SECRET, sdk_body) == "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750"
    assert sign_v2(SECRET, "POST", URL, '{"example_field":"example_value"}') == (
        "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900")
    v1_doc_body = ('[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
                   '"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM",'
                   '"changeFlag":"NEW","appId":54321}]')
    assert sign_v1(SECRET, v1_doc_body) == "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
    assert independent_v3(SECRET, "POST", URL, sdk_body, "1693657560000") == sign_v3(
        SECRET, "POST", URL, sdk_body, "1693657560000")
    encoded = "https://example.com/hook%3Fa%3D1%2Cb%40x?q=%2A"
    assert normalize_v3_uri(encoded) == "https://example.com/hook?a%3D1,b@x?q=*"
    assert sign_v3(SECRET, "POST", encoded, "[]", 1) == independent_v3(SECRET, "POST", encoded, "[]", "1")


def test_changes_arrive_signed_with_their_source(webhooks: WebhookReceiver, hs: HubSpotEmulator, person: Any,
                                                  client: Any) -> None:
    deal = person.crm.deals.basic_api.create(SimplePublicObjectInputForCreate(properties={
        "dealname": "From the UI", "dealstage": "qualifiedtobuy"}))
    client.crm.deals.basic_api.update(deal.id, SimplePublicObjectInput(properties={"amount": "500"}))
    assert hs.flush_webhooks(10)
    events = webhooks.events()
    by_type = {(e["subscriptionType"], e.get("propertyName")): e for e in events}
    creation = by_type[("deal.creation", None)]
    assert creation["objectId"] == int(deal.id)
    assert creation["changeSource"] == "CRM_UI"
    assert creation["sourceId"] == f"userId:{hs.person_user_id}"
    assert creation["changeFlag"] == "CREATED"
    assert (creation["portalId"], creation["appId"], creation["attemptNumber"]) == (hs.portal_id, hs.app_id, 0)
    assert isinstance(creation["eventId"], int) and isinstance(creation["subscriptionId"], int)
    assert abs(creation["occurredAt"] - time.time() * 1000) < 60_000
    assert by_type[("deal.propertyChange", "dealname")]["propertyValue"] == "From the UI"
    change = by_type[("deal.propertyChange", "amount")]
    assert (change["propertyValue"], change["changeSource"], change["sourceId"]) == (
        "500", "INTEGRATION", str(hs.app_id))
    for request in webhooks.delivered():
        assert_signed_v3(request, hs.client_secret, webhooks.url)
    assert len({e["eventId"] for e in events}) == len(events)


def test_events_come_in_batches_of_at_most_100(webhooks: WebhookReceiver, hs: HubSpotEmulator, client: Any) -> None:
    hs.apply_config({"webhook_subscriptions": ["deal.creation"], "webhook_flush_ms": 300})
    for start in (0, 100, 200):
        size = 100 if start < 200 else 50
        client.crm.deals.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
            SimplePublicObjectBatchInputForCreate(properties={"dealname": f"D{start + i}", "dealstage": "closedwon"},
                                                  associations=[]) for i in range(size)]))
    assert hs.flush_webhooks(10)
    events = webhooks.events()
    assert len(events) == 250 and {e["subscriptionType"] for e in events} == {"deal.creation"}
    assert len({e["objectId"] for e in events}) == 250
    sizes = [len(r.events) for r in webhooks.delivered()]
    assert max(sizes) <= 100 and len(sizes) >= 3


def test_failed_deliveries_are_retried_until_2xx(webhooks: WebhookReceiver, hs: HubSpotEmulator, client: Any) -> None:
    hs.apply_config({"webhook_subscriptions": ["deal.creation"]})
    webhooks.fail_next(2, 503)
    client.crm.deals.basic_api.create(SimplePublicObjectInputForCreate(properties={
        "dealname": "Retry me", "dealstage": "qualifiedtobuy"}))
    assert hs.flush_webhooks(10)
    attempts = [(r.status, r.events[0]["attemptNumber"], r.events[0]["eventId"]) for r in webhooks.requests]
    assert [(status, attempt) for status, attempt, _ in attempts] == [(503, 0), (503, 1), (200, 2)]
    assert len({event_id for _, _, event_id in attempts}) == 1
    for request in webhooks.requests:
        assert_signed_v3(request, hs.client_secret, webhooks.url)
    assert hs.webhooks.stats()["batches_delivered"] == 1


def test_delivery_gives_up_after_the_retries(webhooks: WebhookReceiver, hs: HubSpotEmulator, client: Any) -> None:
    hs.apply_config({"webhook_subscriptions": ["deal.creation"], "webhook_max_retries": 2})
    webhooks.fail_next(10, 400)  # HubSpot retries 4xx too
    client.crm.deals.basic_api.create(SimplePublicObjectInputForCreate(properties={
        "dealname": "Never", "dealstage": "qualifiedtobuy"}))
    assert hs.flush_webhooks(10)
    assert len(webhooks.requests) == 3
    stats = hs.webhooks.stats()
    assert (stats["batches_failed"], stats["events_failed"], stats["attempts"]) == (1, 1, 3)


def test_timeouts_count_as_failures(webhooks: WebhookReceiver, hs: HubSpotEmulator, client: Any) -> None:
    hs.apply_config({"webhook_subscriptions": ["deal.creation"], "webhook_max_retries": 1,
                     "webhook_timeout_seconds": 0.2})
    webhooks.delay_seconds = 0.5
    client.crm.deals.basic_api.create(SimplePublicObjectInputForCreate(properties={
        "dealname": "Slow", "dealstage": "qualifiedtobuy"}))
    assert hs.flush_webhooks(10)
    stats = hs.webhooks.stats()
    assert (stats["attempts"], stats["batches_failed"]) == (2, 1)
    assert "Timeout" in (stats["recent_deliveries"][0]["error"] or "")


def test_signature_versions_1_and_2_over_plain_http(hs: HubSpotEmulator, client: Any) -> None:
    receiver = WebhookReceiver().start()
    try:
        hs.apply_config({"webhook_target_url": receiver.url, "webhook_flush_ms": 10, "signature_version": 2,
                         "webhook_subscriptions": ["deal.creation"]})
        client.crm.deals.basic_api.create(SimplePublicObjectInputForCreate(properties={
            "dealname": "v2", "dealstage": "qualifiedtobuy"}))
        assert hs.flush_webhooks(10)
        request = receiver.delivered()[-1]
        assert request.headers["X-HubSpot-Signature-Version"] == "v2"
        assert request.headers["X-HubSpot-Signature"] == hashlib.sha256(
            (hs.client_secret + "POST" + receiver.url + request.body).encode()).hexdigest()
        assert "X-HubSpot-Signature-v3" not in request.headers
        hs.apply_config({"signature_version": 1})
        client.crm.deals.basic_api.create(SimplePublicObjectInputForCreate(properties={
            "dealname": "v1", "dealstage": "qualifiedtobuy"}))
        assert hs.flush_webhooks(10)
        request = receiver.delivered()[-1]
        assert request.headers["X-HubSpot-Signature-Version"] == "v1"
        assert Signature.is_valid(signature=request.headers["X-HubSpot-Signature"], client_secret=hs.client_secret,
                                  request_body=request.body, signature_version="v1")
        assert "X-HubSpot-Request-Timestamp" not in request.headers
    finally:
        receiver.stop()


def test_property_subscriptions_and_date_values(webhooks: WebhookReceiver, hs: HubSpotEmulator, client: Any) -> None:
    hs.apply_config({"webhook_subscriptions": ["deal.propertyChange:dealstage", "deal.propertyChange:closedate"]})
    deal = client.crm.deals.basic_api.create(SimplePublicObjectInputForCreate(properties={
        "dealname": "Filtered", "dealstage": "qualifiedtobuy", "amount": "1"}))
    client.crm.deals.basic_api.update(deal.id, SimplePublicObjectInput(properties={
        "amount": "2", "dealstage": "contractsent", "closedate": "2015-05-01T00:00:00Z"}))
    assert hs.flush_webhooks(10)
    changes = sorted((e["propertyName"], e["propertyValue"]) for e in webhooks.events())
    assert changes == [("closedate", "1430438400000"), ("dealstage", "contractsent"), ("dealstage", "qualifiedtobuy")]


def test_deletion_restore_and_merge_events(webhooks: WebhookReceiver, hs: HubSpotEmulator, client: Any,
                                           http: HubSpotHttp) -> None:
    hs.apply_config({"webhook_subscriptions": ["deal.deletion", "deal.restore", "deal.merge"]})
    ids = hs.load(deals=[{"dealname": n, "dealstage": "qualifiedtobuy"} for n in ("A", "B", "C")])["deals"]
    client.crm.deals.basic_api.archive(ids[0])
    assert http.control("restore", {"id": ids[0]}).status_code == 200
    merged = http.control("merge", {"primary": ids[1], "merged": ids[2]}).json()
    assert merged["id"] == ids[1]
    assert merged["properties"]["hs_merged_object_ids"] == ids[2]
    assert hs.flush_webhooks(10)
    events = webhooks.events()
    by_type = {e["subscriptionType"]: e for e in events}
    assert by_type["deal.deletion"]["objectId"] == int(ids[0])
    assert by_type["deal.deletion"]["changeSource"] == "INTEGRATION"
    assert by_type["deal.restore"]["objectId"] == int(ids[0])
    assert by_type["deal.restore"]["changeSource"] == "CRM_UI"
    merge = by_type["deal.merge"]
    assert (merge["primaryObjectId"], merge["mergedObjectIds"], merge["newObjectId"]) == (
        int(ids[1]), [int(ids[2])], int(ids[1]))
    assert merge["numberOfPropertiesMoved"] == 0
    assert merge["sourceId"] == f"userId:{hs.person_user_id}"


def test_association_changes_fire_one_event_per_side(webhooks: WebhookReceiver, hs: HubSpotEmulator,
                                                     client: Any) -> None:
    from hubspot.crm.associations.v4 import AssociationSpec

    hs.apply_config({"webhook_subscriptions": ["deal.associationChange", "contact.associationChange",
                                               "company.associationChange"]})
    world = hs.load(contacts=[{"email": "a@example.com"}], companies=[{"name": "Acme"}],
                    deals=[{"dealname": "D", "dealstage": "qualifiedtobuy"}])
    deal, contact, company = world["deals"][0], world["contacts"][0], world["companies"][0]
    basic = client.crm.associations.v4.basic_api
    basic.create("deals", deal, "contacts", contact,
                 [AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=3)])
    basic.create("deals", deal, "companies", company,
                 [AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=5)])
    basic.archive("deals", deal, "contacts", contact)
    assert hs.flush_webhooks(10)
    seen = sorted((e["subscriptionType"], e["associationType"], e["fromObjectId"], e["toObjectId"],
                   e["associationRemoved"], e["isPrimaryAssociation"]) for e in webhooks.events())
    d, c, co = int(deal), int(contact), int(company)
    assert seen == sorted([
        ("deal.associationChange", "DEAL_TO_CONTACT", d, c, False, False),
        ("contact.associationChange", "CONTACT_TO_DEAL", c, d, False, False),
        ("deal.associationChange", "DEAL_TO_COMPANY", d, co, False, True),
        ("company.associationChange", "COMPANY_TO_DEAL", co, d, False, True),
        ("deal.associationChange", "DEAL_TO_COMPANY", d, co, False, False),
        ("company.associationChange", "COMPANY_TO_DEAL", co, d, False, False),
        ("deal.associationChange", "DEAL_TO_CONTACT", d, c, True, False),
        ("contact.associationChange", "CONTACT_TO_DEAL", c, d, True, False),
    ])


def test_shuffle_and_duplicates(webhooks: WebhookReceiver, hs: HubSpotEmulator, client: Any) -> None:
    hs.apply_config({"webhook_subscriptions": ["deal.creation"], "webhook_shuffle": True,
                     "webhook_duplicate_rate": 1.0, "webhook_seed": 7})
    client.crm.deals.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
        SimplePublicObjectBatchInputForCreate(properties={"dealname": f"S{i}", "dealstage": "closedwon"},
                                              associations=[]) for i in range(20)]))
    assert hs.flush_webhooks(10)
    events = webhooks.events()
    assert len(events) == 40
    event_ids = [e["eventId"] for e in events]
    assert all(event_ids.count(i) == 2 for i in event_ids)
    first_batch = webhooks.delivered()[0].events
    assert [e["objectId"] for e in first_batch] != sorted(e["objectId"] for e in first_batch)


def test_seeding_sends_nothing(webhooks: WebhookReceiver, hs: HubSpotEmulator) -> None:
    hs.load(deals=[{"dealname": "Quiet", "dealstage": "qualifiedtobuy"}])
    assert hs.flush_webhooks(5)
    assert webhooks.requests == []
    assert hs.webhooks.stats()["events_published"] == 0
