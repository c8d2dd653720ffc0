"""The rules the hostile corpus found missing, pinned down without a world (pure: no network, no AWS): the
receiver's portal/app check and queue-sized messages, ids checked against their object, and error texts
that never carry the input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from dealsync.clients.credentials import CrmCredentials, HubSpotCredentials, SalesforceCredentials, WebhookSettings
from dealsync.models.events import (
    HubSpotChangeMessage,
    HubSpotWebhookEvent,
    OutboundMessageError,
    describe_invalid,
    parse_outbound_message,
    parse_salesforce_queue_body,
    salesforce_id_18,
)
from dealsync.services.receivers import QUEUE_MESSAGE_BUDGET, ReceiverContext, receive_hubspot_webhook
from dealsync.webhooks.hubspot_signature import sign_v3
from tests.hostile.corpus import FOREIGN_PORTAL_ID, PII_EMAIL, PII_NAME, Keys, deal_event, soap

SECRET = "unit-test-secret"
PUBLIC_URL = "https://hooks.example.com"
PORTAL, APP = 62515, 1160452
ORG_ID = "00D5f000005KcCnEAK"
NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
KEYS = Keys(client_secret=SECRET, app_id=APP, portal_id=PORTAL, org_id=ORG_ID,
            hubspot_url=f"{PUBLIC_URL}/webhooks/hubspot", outbound_url=f"{PUBLIC_URL}/webhooks/salesforce",
            opportunity_id="0065f00000AbCdEAAV", deal_id="19842338417")


def _context(sent: list[tuple[str, list[str]]]) -> ReceiverContext:
    credentials = CrmCredentials(
        salesforce=SalesforceCredentials(auth="client_credentials", login_url="https://sf.invalid", client_id="x",
                                         org_id=ORG_ID),
        hubspot=HubSpotCredentials(access_token=SecretStr("t"), app_id=str(APP), client_secret=SecretStr(SECRET),
                                   portal_id=str(PORTAL)),
        webhook=WebhookSettings(public_base_url=PUBLIC_URL))

    def send(queue_url: str, bodies: Any) -> int:
        sent.append((queue_url, list(bodies)))
        return len(bodies)

    return ReceiverContext(credentials=credentials, send=send, salesforce_queue_url="sf", hubspot_queue_url="hs",
                           now=lambda: NOW)


def _webhook(events: list[dict[str, Any]]) -> dict[str, Any]:
    body = json.dumps(events)
    timestamp = str(int(NOW.timestamp() * 1000))
    return {
        "version": "2.0", "routeKey": "POST /webhooks/hubspot", "rawPath": "/webhooks/hubspot", "rawQueryString": "",
        "headers": {"content-type": "application/json", "x-hubspot-request-timestamp": timestamp,
                    "x-hubspot-signature-v3": sign_v3(SECRET, "POST", f"{PUBLIC_URL}/webhooks/hubspot",
                                                      body.encode(), timestamp)},
        "requestContext": {"accountId": "1", "apiId": "api", "domainName": "hooks.example.com",
                           "domainPrefix": "hooks", "http": {"method": "POST", "path": "/webhooks/hubspot",
                                                             "protocol": "HTTP/1.1", "sourceIp": "54.174.60.71",
                                                             "userAgent": "HubSpot"},
                           "requestId": "r", "routeKey": "POST /webhooks/hubspot", "stage": "$default",
                           "time": "05/Jan/2026:10:00:00 +0000", "timeEpoch": int(NOW.timestamp() * 1000)},
        "body": body, "isBase64Encoded": False,
    }


def test_a_batch_larger_than_a_queue_message_is_split_in_order() -> None:
    sent: list[tuple[str, list[str]]] = []
    events = [deal_event(KEYS, objectId=1000 + n, propertyValue="v" * 30_000) for n in range(100)]
    response = receive_hubspot_webhook(_webhook(events), _context(sent))
    assert response["statusCode"] == 200
    [(queue, bodies)] = sent
    assert queue == "hs" and len(bodies) > 1
    assert all(len(body.encode()) <= QUEUE_MESSAGE_BUDGET for body in bodies)
    queued = [event for body in bodies for event in HubSpotChangeMessage.model_validate_json(body).events]
    assert [event.object_id for event in queued] == [1000 + n for n in range(100)]
    assert all(event.property_value == "v" * 30_000 for event in queued), "values that fit are kept"


def test_an_event_too_large_alone_travels_without_its_value() -> None:
    sent: list[tuple[str, list[str]]] = []
    events = [deal_event(KEYS, objectId=7, propertyValue="v" * 200_000), deal_event(KEYS, objectId=8)]
    assert receive_hubspot_webhook(_webhook(events), _context(sent))["statusCode"] == 200
    queued = [event for body in sent[0][1] for event in HubSpotChangeMessage.model_validate_json(body).events]
    assert [(event.object_id, event.property_value is None) for event in queued] == [(7, True), (8, False)]


@pytest.mark.parametrize(("override", "named"), [({"portalId": FOREIGN_PORTAL_ID}, "portal"), ({"appId": 5}, "app")])
def test_another_portals_or_apps_delivery_is_refused_whole(override: dict[str, int], named: str) -> None:
    sent: list[tuple[str, list[str]]] = []
    response = receive_hubspot_webhook(_webhook([deal_event(KEYS), deal_event(KEYS, **override)]), _context(sent))
    assert response["statusCode"] == 403
    assert named in json.loads(response["body"])["message"]
    assert sent == []


@pytest.mark.parametrize("object_id", [0, -1, 2**63, "12a"])
def test_hubspot_ids_are_positive_64_bit_integers(object_id: object) -> None:
    with pytest.raises(ValidationError):
        HubSpotWebhookEvent.model_validate(deal_event(KEYS, objectId=object_id))


def test_an_outbound_notification_names_a_record_of_its_type() -> None:
    with pytest.raises(OutboundMessageError, match="start with '006'"):
        parse_outbound_message(soap(KEYS).replace(KEYS.opportunity_id, "0015f00000LmNoP"))


def test_change_event_ids_must_be_ids_of_the_entity() -> None:
    def event(ids: list[str]) -> str:
        header = {"entityName": "Opportunity", "recordIds": ids, "changeType": "UPDATE", "commitTimestamp": 1}
        return json.dumps({"version": "0", "id": "1", "detail-type": "OpportunityChangeEvent",
                           "source": f"aws.partner/salesforce.com/{ORG_ID}/0YL", "account": "1",
                           "time": "2026-01-05T10:00:00Z", "region": "us-east-1", "resources": [],
                           "detail": {"payload": {"ChangeEventHeader": header}}})

    assert parse_salesforce_queue_body(event(["0065f00000AbCdE"])) is not None
    assert parse_salesforce_queue_body(event(["006*"])) is not None, "a wildcard names every record"
    for wrong in (["0015f00000LmNoP"], [PII_EMAIL]):
        with pytest.raises(ValidationError, match=r"start with '006'|is not a Salesforce id"):
            parse_salesforce_queue_body(event(wrong))


def test_error_texts_never_carry_the_input() -> None:
    assert PII_EMAIL not in _error_of(lambda: salesforce_id_18(PII_EMAIL))
    assert "'0065f00000AbCdE99'" in _error_of(lambda: salesforce_id_18("0065f00000AbCdE99")), "id-like typos show"
    body = json.dumps({"kind": "salesforce_changes", "object": "Opportunity", "ids": [PII_EMAIL], "note": PII_NAME,
                       "source": "poll", "received_at": "2026-01-05T10:00:00Z"})
    with pytest.raises(ValidationError) as invalid:
        parse_salesforce_queue_body(body)
    described = describe_invalid(invalid.value)
    assert "ids" in described and "note" in described
    assert PII_EMAIL not in described and PII_NAME not in described


def _error_of(call: Any) -> str:
    try:
        call()
    except ValueError as error:
        return str(error)
    raise AssertionError("no error")
