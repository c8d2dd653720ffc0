"""The inbound event models against the sample events in events/ and against bad input."""

import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayProxyEventV2Model,
    EventBridgeModel,
    SqsModel,
)
from pydantic import BaseModel, ValidationError

from dealsync.models.events import (
    ChangeEventHeader,
    HubSpotChangeMessage,
    HubSpotQueueEvent,
    HubSpotWebhookBatch,
    HubSpotWebhookEvent,
    ImportChunkMessage,
    ImportQueueEvent,
    OutboundMessage,
    OutboundMessageError,
    RollupMessage,
    RollupQueueEvent,
    SalesforceChangeEvent,
    SalesforceChangeMessage,
    SalesforceQueueEvent,
    SalesforceQueueRecord,
    ScheduledTask,
    ack_response,
    inbound_request,
    parse_hubspot_batch,
    parse_hubspot_queue_body,
    parse_import_queue_body,
    parse_outbound_message,
    parse_rollup_queue_body,
    parse_salesforce_queue_body,
    request_body,
    request_headers,
    request_url,
    salesforce_id_18,
)

EVENTS = Path(__file__).resolve().parents[2] / "events"

# The sample client secret of HubSpot's SDK signature tests (reference/hubspot.md §5.5); the
# x-hubspot-signature* headers of events/hubspot_webhook.json are computed with it.
HUBSPOT_CLIENT_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
HUBSPOT_APP_ID = 3261847
HUBSPOT_PORTAL_ID = 44102938
ORG_ID = "00D5f000005KcCnEAK"
OPPORTUNITY_1 = "0065f00000AbCdEAAV"
OPPORTUNITY_2 = "0065f00000BxRtQAAV"
RECEIVED_AT = datetime(2024, 4, 9, 20, 19, 30, tzinfo=UTC)


def load(name: str) -> dict[str, Any]:
    data = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def sign_v3(secret: str, method: str, uri: str, body: str, timestamp: str) -> str:
    digest = hmac.new(secret.encode(), f"{method}{uri}{body}{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def hubspot_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventId": 1803412291,
        "subscriptionId": 2741002,
        "portalId": HUBSPOT_PORTAL_ID,
        "appId": HUBSPOT_APP_ID,
        "occurredAt": 1712693964107,
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": 19842338417,
        "propertyName": "dealstage",
        "propertyValue": "contractsent",
        "changeSource": "CRM_UI",
        "sourceId": "userId:81234567",
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


def sqs_body(records: dict[str, Any], index: int = 0) -> str:
    body = records["Records"][index]["body"]
    assert isinstance(body, str)
    return body


# ------------------------------------------------------------------------------------------------
# The sample events
# ------------------------------------------------------------------------------------------------


def test_v3_signing_matches_the_hubspot_sdk_vector() -> None:
    signature = sign_v3(
        HUBSPOT_CLIENT_SECRET,
        "POST",
        "https://www.example.com/webhook_uri",
        "{'example_field':'example_value'}",
        "1693657560000",
    )
    assert signature == "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="


def test_hubspot_webhook_event() -> None:
    event = APIGatewayProxyEventV2Model.model_validate(load("hubspot_webhook.json"))
    assert event.version == "2.0"
    assert event.routeKey == "POST /webhooks/hubspot"
    assert event.requestContext.stage == "$default"
    assert event.requestContext.http.method == "POST"

    request = inbound_request(event)
    assert request.method == "POST"
    assert request.url == "https://k3x9q2w7ab.execute-api.us-east-1.amazonaws.com/webhooks/hubspot"
    assert request.path == "/webhooks/hubspot"
    assert request.source_ip == "54.174.60.71"
    assert request.request_id == "WqZ3fgL2IAMEVfQ="
    assert request.header("Content-Type") == "application/json"
    assert request.headers["content-length"] == str(len(request.body))
    assert request.received_at == datetime(2024, 4, 9, 20, 19, 30, 201000, tzinfo=UTC)

    # The signatures were computed with the documented sample secret over the exact body.
    body = request.body.decode()
    timestamp = request.headers["x-hubspot-request-timestamp"]
    assert request.headers["x-hubspot-signature-v3"] == sign_v3(
        HUBSPOT_CLIENT_SECRET, "POST", request.url, body, timestamp
    )
    assert request.headers["x-hubspot-signature-version"] == "v1"
    v1 = hashlib.sha256((HUBSPOT_CLIENT_SECRET + body).encode()).hexdigest()
    assert request.headers["x-hubspot-signature"] == v1
    assert int(timestamp) <= event.requestContext.timeEpoch.timestamp() * 1000

    events = parse_hubspot_batch(request.body)
    assert [e.subscription_type for e in events] == [
        "deal.creation",
        "deal.propertyChange",
        "deal.propertyChange",
        "deal.deletion",
        "deal.associationChange",
        "deal.merge",
        "deal.restore",
    ]
    assert {e.portal_id for e in events} == {HUBSPOT_PORTAL_ID}
    assert {e.app_id for e in events} == {HUBSPOT_APP_ID}
    creation, stage, amount, deletion, association, merge, restore = events

    assert creation.object_id == 19842338417
    assert creation.object_type == "deal"
    assert creation.action == "creation"
    assert creation.change_flag == "CREATED"
    assert creation.occurred_at == 1712693962481
    assert creation.occurred_at_utc == datetime(2024, 4, 9, 20, 19, 22, 481000, tzinfo=UTC)

    assert (stage.property_name, stage.property_value) == ("dealstage", "contractsent")
    assert stage.change_source == "CRM_UI"
    assert stage.source_id == "userId:81234567"
    assert not stage.is_own_change(HUBSPOT_APP_ID)

    assert (amount.property_name, amount.property_value) == ("amount", "48000")
    assert amount.is_own_change(HUBSPOT_APP_ID)
    assert amount.is_own_change(str(HUBSPOT_APP_ID))
    assert not amount.is_own_change(999)

    assert deletion.object_id == 19790215533
    assert deletion.attempt_number == 1

    # Real association deliveries carry no objectId: the event is about fromObjectId.
    assert association.object_id == association.from_object_id == 19842338417
    assert association.to_object_id == 104857201
    assert association.association_type == "DEAL_TO_CONTACT"
    assert association.association_removed is False
    assert association.is_primary_association is False

    assert merge.primary_object_id == 19842338417
    assert merge.merged_object_ids == [19790215580]
    assert merge.new_object_id == 19842338417
    assert merge.number_of_properties_moved == 7

    assert restore.object_id == 19790215533
    assert restore.action == "restore"


def test_salesforce_outbound_message_event() -> None:
    event = APIGatewayProxyEventV2Model.model_validate(load("salesforce_outbound_message.json"))
    assert event.routeKey == "POST /webhooks/salesforce/outbound-message"
    headers = request_headers(event)
    assert headers["content-type"] == "text/xml; charset=utf-8"

    message = parse_outbound_message(request_body(event))
    assert message.organization_id == ORG_ID
    assert message.is_from_org(ORG_ID)
    assert message.is_from_org(ORG_ID[:15])
    assert not message.is_from_org("00D000000000001")
    assert message.action_id == "04k5f000000CabWAAS"
    assert message.session_id is None
    assert message.enterprise_url == "https://acme.my.salesforce.com/services/Soap/c/59.0/00D5f000005KcCn"
    assert message.partner_url == "https://acme.my.salesforce.com/services/Soap/u/59.0/00D5f000005KcCn"
    assert message.notification_ids == ["04l5f000004XyZaAAK", "04l5f000004XyZbAAK"]
    assert message.record_ids == [OPPORTUNITY_1, OPPORTUNITY_2]
    assert message.sobject_types == {"Opportunity"}

    first, second = message.notifications
    assert first.sobject_type == "Opportunity"
    assert first.record_id == OPPORTUNITY_1
    assert first.fields["Id"] == OPPORTUNITY_1
    assert first.fields["StageName"] == "Negotiation/Review"
    assert first.fields["Amount"] == "48000.0"
    assert first.fields["CloseDate"] == "2024-06-28"
    assert first.fields["Description"] == "Renewal with Q3 expansion & services"
    assert first.fields["SystemModstamp"] == "2024-04-09T20:19:25.000Z"
    assert first.fields["Type"] == "Existing Business"
    assert second.record_id == OPPORTUNITY_2
    assert second.fields["Description"] is None  # xsi:nil="true"
    assert second.fields["StageName"] == "Prospecting"
    assert set(first.fields) == set(second.fields)

    # The same body as text parses the same.
    assert parse_outbound_message(request_body(event).decode()) == message


def test_ack_response_is_the_reference_envelope() -> None:
    expected = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">\n'
        "  <soapenv:Body>\n"
        '    <notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">\n'
        "      <Ack>true</Ack>\n"
        "    </notificationsResponse>\n"
        "  </soapenv:Body>\n"
        "</soapenv:Envelope>\n"
    )
    assert ack_response() == expected


def test_salesforce_change_event() -> None:
    event = SalesforceChangeEvent.model_validate(load("salesforce_change_event.json"))
    assert event.detail_type == "OpportunityChangeEvent"
    assert event.org_id == ORG_ID
    assert event.channel_id == "0YL5f000000CabWGAS"
    assert event.time == datetime(2024, 4, 9, 20, 19, 25, tzinfo=UTC)
    header = event.header
    assert header.entity_name == event.entity_name == "Opportunity"
    assert header.record_ids == event.record_ids == [OPPORTUNITY_1]
    assert header.change_type == "UPDATE"
    assert not event.is_gap
    assert not header.needs_full_requery
    assert header.transaction_key == "0001ade9-3f74-0b99-dbc4-42e73424b774"
    assert header.sequence_number == 1
    assert header.commit_timestamp == 1712693965000
    assert header.commit_time == datetime(2024, 4, 9, 20, 19, 25, tzinfo=UTC)
    assert header.commit_number == 1082985383811
    assert header.commit_user == "0055f000005mc66AAA"
    assert header.changed_fields == ["StageName", "Amount", "LastModifiedDate"]
    assert header.nulled_fields == []
    assert not header.has_bitmap_fields
    assert event.origin_client == "SfdcInternalAPI/"
    assert event.field_values == {
        "StageName": "Negotiation/Review",
        "Amount": 48000.0,
        "LastModifiedDate": 1712693965000,
    }
    # Serialises back to the envelope it came from.
    assert event.model_dump(mode="json", exclude={"replay_name"}) == load("salesforce_change_event.json")

    [message] = event.to_change_messages(RECEIVED_AT)
    assert message.object == "Opportunity"
    assert message.ids == [OPPORTUNITY_1]
    assert message.source == "change_event"
    assert message.deleted is False


def test_scheduled_poll() -> None:
    event = SalesforceQueueEvent.model_validate(load("scheduled_poll.json"))
    [record] = event.Records
    assert isinstance(record.body, ScheduledTask)
    assert record.body.task == "salesforce_poll"
    assert record.body.time == datetime(2024, 4, 9, 20, 20, tzinfo=UTC)
    assert record.body.event_id == "b8e1c7a4-2d3f-9e6a-5b1c-0f4d8a7e3c21"
    # The body is exactly what the InputTransformer of template.yaml produces.
    template = '{"kind": "scheduled", "task": "salesforce_poll", "time": <time>, "event_id": <id>}'
    expected = template.replace("<time>", '"2024-04-09T20:20:00Z"').replace(
        "<id>", '"b8e1c7a4-2d3f-9e6a-5b1c-0f4d8a7e3c21"'
    )
    assert sqs_body(load("scheduled_poll.json")) == expected


def test_scheduled_rollup() -> None:
    event = RollupQueueEvent.model_validate(load("scheduled_rollup.json"))
    [record] = event.Records
    assert isinstance(record.body, ScheduledTask)
    assert record.body.task == "rollup_full_recompute"
    assert record.body.time == datetime(2024, 4, 10, 3, 17, tzinfo=UTC)
    assert parse_rollup_queue_body(sqs_body(load("scheduled_rollup.json"))) == record.body


def test_sqs_salesforce_changes() -> None:
    raw = load("sqs_salesforce_changes.json")
    event = SalesforceQueueEvent.model_validate(raw)
    change, relayed, poll = (record.body for record in event.Records)

    assert isinstance(change, SalesforceChangeMessage)
    assert change.object == "Opportunity"
    assert change.ids == [OPPORTUNITY_1, OPPORTUNITY_2]
    assert change.deleted is False
    assert change.source == "outbound_message"
    assert change.received_at == datetime(2024, 4, 9, 20, 19, 26, 512000, tzinfo=UTC)

    assert isinstance(relayed, SalesforceChangeEvent)
    assert relayed == SalesforceChangeEvent.model_validate(load("salesforce_change_event.json"))

    assert isinstance(poll, ScheduledTask)
    assert poll.task == "salesforce_poll"

    for index, record in enumerate(event.Records):
        assert parse_salesforce_queue_body(sqs_body(raw, index)) == record.body
        assert record.eventSourceARN.endswith(":dealsync-SalesforceChangesQueue-8kQ2vT4pXw1N")

    # Powertools' parser takes the typed event model as it is.
    assert parse(event=raw, model=SalesforceQueueEvent) == event


def test_sqs_hubspot_changes() -> None:
    raw = load("sqs_hubspot_changes.json")
    [record] = HubSpotQueueEvent.model_validate(raw).Records
    message = record.body
    assert isinstance(message, HubSpotChangeMessage)
    assert message.received_at == datetime(2024, 4, 9, 20, 19, 30, 245000, tzinfo=UTC)
    webhook = APIGatewayProxyEventV2Model.model_validate(load("hubspot_webhook.json"))
    assert message.events == parse_hubspot_batch(request_body(webhook))
    assert parse_hubspot_queue_body(sqs_body(raw)) == message


def test_sqs_import_batch() -> None:
    raw = load("sqs_import_batch.json")
    records = ImportQueueEvent.model_validate(raw).Records
    first, second = (record.body for record in records)
    assert isinstance(first, ImportChunkMessage)
    assert isinstance(second, ImportChunkMessage)
    assert first.job_id == second.job_id == "imp-opportunities-20240409T201500Z"
    assert (first.chunk, second.chunk) == (0, 1)
    assert first.object == "Opportunity"
    assert first.ids == [OPPORTUNITY_1, OPPORTUNITY_2, "0065f00000CqWeRAAV"]
    assert second.ids == ["0065f00000DkLmNAAV"]
    assert parse_import_queue_body(sqs_body(raw, 1)) == second


def test_sqs_rollup() -> None:
    raw = load("sqs_rollup.json")
    [record] = RollupQueueEvent.model_validate(raw).Records
    assert isinstance(record.body, RollupMessage)
    assert record.body.contact_ids == ["0035f00000RsTuVAAV", "0035f00000RsTuWAAV"]
    assert parse_rollup_queue_body(sqs_body(raw)) == record.body


KNOWN_EVENT_FILES: dict[str, type[BaseModel]] = {
    "hubspot_webhook.json": APIGatewayProxyEventV2Model,
    "salesforce_outbound_message.json": APIGatewayProxyEventV2Model,
    "salesforce_change_event.json": SalesforceChangeEvent,
    "scheduled_poll.json": SalesforceQueueEvent,
    "scheduled_rollup.json": RollupQueueEvent,
    "sqs_salesforce_changes.json": SalesforceQueueEvent,
    "sqs_hubspot_changes.json": HubSpotQueueEvent,
    "sqs_import_batch.json": ImportQueueEvent,
    "sqs_rollup.json": RollupQueueEvent,
}


def test_the_sample_events_exist() -> None:
    assert set(KNOWN_EVENT_FILES) <= {path.name for path in EVENTS.glob("*.json")}


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.json")), ids=lambda path: path.name)
def test_every_event_file_parses(path: Path) -> None:
    data = load(path.name)
    model = KNOWN_EVENT_FILES.get(path.name)
    if model is not None:
        model.model_validate(data)
    elif "Records" in data:  # a sample added elsewhere: at least the AWS shape must hold
        SqsModel.model_validate(data)
    elif "routeKey" in data:
        APIGatewayProxyEventV2Model.model_validate(data)
    elif "detail-type" in data:
        EventBridgeModel.model_validate(data)
    if "Records" in data:
        for record in data["Records"]:
            assert record["md5OfBody"] == hashlib.md5(record["body"].encode(), usedforsecurity=False).hexdigest()


# ------------------------------------------------------------------------------------------------
# HubSpot webhooks: bad and unusual input
# ------------------------------------------------------------------------------------------------


def test_a_batch_of_101_events_is_refused() -> None:
    body = json.dumps([hubspot_event(eventId=i) for i in range(101)])
    with pytest.raises(ValidationError, match="at most 100 items"):
        parse_hubspot_batch(body)
    assert len(parse_hubspot_batch(json.dumps([hubspot_event(eventId=i) for i in range(100)]))) == 100


def test_an_empty_batch_or_a_non_array_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 1 item"):
        parse_hubspot_batch("[]")
    with pytest.raises(ValidationError, match="valid array"):
        parse_hubspot_batch(json.dumps(hubspot_event()))
    with pytest.raises(ValidationError, match="Invalid JSON"):
        parse_hubspot_batch(b"not json")


@pytest.mark.parametrize("kind", ["deal.exploded", "object.propertyChange", "ticket.creation", ""])
def test_an_unknown_subscription_type_is_refused(kind: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_hubspot_batch(json.dumps([hubspot_event(subscriptionType=kind)]))
    assert "deal.propertyChange" in str(caught.value)  # the message lists what is accepted
    assert caught.value.errors()[0]["loc"] == (0, "subscriptionType")


def test_a_missing_object_id_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_hubspot_batch(json.dumps([hubspot_event(objectId=None)]))
    [error] = caught.value.errors()
    assert error["loc"] == (0, "objectId")
    assert error["type"] == "missing"


def test_a_property_change_needs_its_property_name() -> None:
    with pytest.raises(ValidationError, match=re.escape("deal.propertyChange event 1803412291 lacks propertyName")):
        HubSpotWebhookEvent.model_validate(hubspot_event(propertyName=None))


def test_an_association_change_needs_both_ends() -> None:
    event = hubspot_event(
        subscriptionType="deal.associationChange",
        objectId=None,
        propertyName=None,
        propertyValue=None,
        associationType="DEAL_TO_COMPANY",
        fromObjectId=19842338417,
        associationRemoved=True,
    )
    with pytest.raises(ValidationError, match="lacks toObjectId"):
        HubSpotWebhookEvent.model_validate(event)
    parsed = HubSpotWebhookEvent.model_validate({**event, "toObjectId": 8123456789})
    assert parsed.object_id == 19842338417
    assert parsed.association_removed is True


def test_a_merge_needs_its_ids() -> None:
    event = hubspot_event(subscriptionType="deal.merge", propertyName=None, primaryObjectId=1)
    with pytest.raises(ValidationError, match=re.escape("deal.merge event 1803412291 lacks mergedObjectIds")):
        HubSpotWebhookEvent.model_validate(event)


def test_event_type_is_read_as_the_subscription_type() -> None:
    # The webhooks guide's example names the key eventType (hubspot.md §5.2).
    guide = (
        '[{"objectId": 1246978, "changeSource": "IMPORT", "eventId": 3816279480, "subscriptionId": 22,'
        ' "portalId": 33, "appId": 1160452, "occurredAt": 1462216307945, "eventType": "contact.creation",'
        ' "attemptNumber": 0}]'
    )
    [event] = parse_hubspot_batch(guide)
    assert event.subscription_type == "contact.creation"
    assert event.object_type == "contact"
    assert json.loads(event.model_dump_json())["subscriptionType"] == "contact.creation"


def test_hubspot_events_tolerate_unknown_keys_and_numeric_values() -> None:
    event = HubSpotWebhookEvent.model_validate(
        hubspot_event(propertyName="amount", propertyValue=1250, objectTypeId="0-3", somethingNew={"a": 1})
    )
    assert event.property_value == "1250"
    assert event.object_type_id == "0-3"


def test_hubspot_change_message_round_trips_through_json() -> None:
    events = [HubSpotWebhookEvent.model_validate(hubspot_event())]
    message = HubSpotChangeMessage(events=events, received_at=RECEIVED_AT)
    body = message.model_dump_json()
    assert '"propertyName":"dealstage"' in body  # the vendor's keys, as received
    assert parse_hubspot_queue_body(body) == message
    with pytest.raises(ValidationError, match="at most 100 items"):
        HubSpotChangeMessage(events=events * 101, received_at=RECEIVED_AT)


def test_the_batch_model_is_a_root_model() -> None:
    batch = HubSpotWebhookBatch.model_validate([hubspot_event()])
    assert batch.root[0].property_name == "dealstage"


# ------------------------------------------------------------------------------------------------
# Outbound Messages: bad and unusual input
# ------------------------------------------------------------------------------------------------


def outbound(notifications: str, *, session: str = '<SessionId xsi:nil="true"/>') -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{ORG_ID}</OrganizationId><ActionId>04k5f000000CabWAAS</ActionId>{session}"
        "<EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/59.0/00D5f000005KcCn</EnterpriseUrl>"
        "<PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/59.0/00D5f000005KcCn</PartnerUrl>"
        f"{notifications}</notifications></soapenv:Body></soapenv:Envelope>"
    )


def notification(record_id: str = OPPORTUNITY_1, notification_id: str = "04l5f000004XyZaAAK") -> str:
    return (
        f"<Notification><Id>{notification_id}</Id>"
        '<sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"<sf:Id>{record_id}</sf:Id><sf:Name>Renewal</sf:Name></sObject></Notification>"
    )


def test_a_minimal_outbound_message_parses() -> None:
    message = parse_outbound_message(outbound(notification()).encode())
    assert isinstance(message, OutboundMessage)
    assert message.notifications[0].fields == {"Id": OPPORTUNITY_1, "Name": "Renewal"}


def test_the_session_id_is_kept_secret() -> None:
    message = parse_outbound_message(outbound(notification(), session="<SessionId>00D5f!AQcAQH0dMHZ</SessionId>"))
    assert message.session_id is not None
    assert message.session_id.get_secret_value() == "00D5f!AQcAQH0dMHZ"
    assert "AQcAQH0dMHZ" not in repr(message)
    assert "AQcAQH0dMHZ" not in message.model_dump_json()


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><lolz>&lol2;</lolz>'
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>&xxe;'
    "</soapenv:Body></soapenv:Envelope>"
)
DOCTYPE_ONLY = '<?xml version="1.0"?><!DOCTYPE soapenv:Envelope SYSTEM "http://attacker.example/x.dtd"><a/>'


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, EXTERNAL_ENTITY, DOCTYPE_ONLY], ids=["laughs", "xxe", "dtd"])
def test_a_dtd_or_entity_is_refused(xml: str) -> None:
    with pytest.raises(OutboundMessageError, match="declares a DTD or entities"):
        parse_outbound_message(xml)


@pytest.mark.parametrize(
    ("xml", "cause"),
    [
        ("", "not well-formed XML"),
        ("<soapenv:Envelope", "not well-formed XML"),
        ('{"kind": "salesforce_changes"}', "not well-formed XML"),
        ("<notifications/>", r"root element is <notifications> \(namespace none\)"),
        (
            '<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"/>',
            r"<Envelope> \(namespace http://www.w3.org/2003/05/soap-envelope\)",
        ),
        (
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"/>',
            "has no Body",
        ),
        (
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
            '<login xmlns="urn:partner.soap.sforce.com"/></soapenv:Body></soapenv:Envelope>',
            "the SOAP Body holds <login>, expected <notifications>",
        ),
        (outbound(""), "holds no <Notification>"),
        (outbound(notification()).replace(f"<OrganizationId>{ORG_ID}</OrganizationId>", ""), "no <OrganizationId>"),
        (outbound(notification()).replace("<sf:Id>0065f00000AbCdEAAV</sf:Id>", ""), "has no <sf:Id>"),
        (outbound(notification()).replace(' xsi:type="sf:Opportunity"', ""), "has no xsi:type"),
        (outbound(notification(record_id="not-an-id")), "Notification 1: record_id"),
        (outbound(notification() * 101), "101 notifications, at most 100"),
        (outbound(notification()).replace(ORG_ID, "00D5f000005KcCn5AA"), "organization_id"),
    ],
)
def test_a_bad_outbound_message_names_the_cause(xml: str, cause: str) -> None:
    with pytest.raises(OutboundMessageError, match=cause) as caught:
        parse_outbound_message(xml)
    assert isinstance(caught.value, ValueError)


def test_an_outbound_message_of_100_notifications_parses() -> None:
    notifications = "".join(notification(notification_id=f"04l5f000004X{n:03d}") for n in range(100))
    message = parse_outbound_message(outbound(notifications))
    assert len(message.notifications) == 100
    assert message.record_ids == [OPPORTUNITY_1]  # each record once


# ------------------------------------------------------------------------------------------------
# Change events: unusual and bad input
# ------------------------------------------------------------------------------------------------


def change_header(**overrides: Any) -> dict[str, Any]:
    header: dict[str, Any] = {
        "entityName": "Opportunity",
        "recordIds": [OPPORTUNITY_1],
        "changeType": "UPDATE",
        "changeOrigin": "com/salesforce/api/rest/59.0;client=dealsync",
        "transactionKey": "0001ade9-3f74-0b99-dbc4-42e73424b774",
        "sequenceNumber": 1,
        "commitTimestamp": 1712693965000,
        "commitNumber": 1082985383811,
        "commitUser": "0055f000005mc66AAA",
        "changedFields": ["StageName"],
    }
    header.update(overrides)
    return {k: v for k, v in header.items() if v is not None}


def envelope(header: dict[str, Any], **fields: Any) -> dict[str, Any]:
    event = load("salesforce_change_event.json")
    event["detail"]["payload"] = {"ChangeEventHeader": header, **fields}
    return event


@pytest.mark.parametrize(
    ("origin", "client"),
    [
        ("com/salesforce/api/rest/59.0;client=dealsync", "dealsync"),
        ("com/salesforce/api/soap/49.0;client=Astro", "Astro"),
        ("com/salesforce/api/rest/59.0", None),
        ("com/salesforce/api/rest/59.0;client=", None),
        ("", None),
    ],
)
def test_origin_client(origin: str, client: str | None) -> None:
    assert ChangeEventHeader.model_validate(change_header(changeOrigin=origin)).origin_client == client


@pytest.mark.parametrize("change_type", ["GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE"])
def test_gap_events(change_type: str) -> None:
    event = SalesforceChangeEvent.model_validate(envelope(change_header(changeType=change_type, changedFields=[])))
    assert event.is_gap
    assert event.field_values == {}
    [message] = event.to_change_messages(RECEIVED_AT)
    assert message.deleted is (change_type == "GAP_DELETE")


def test_an_overflow_event_names_no_records() -> None:
    header = ChangeEventHeader.model_validate(change_header(changeType="GAP_OVERFLOW", recordIds=[]))
    assert header.is_gap
    assert header.is_overflow
    assert header.needs_full_requery
    event = SalesforceChangeEvent.model_validate(envelope(change_header(changeType="GAP_OVERFLOW", recordIds=[])))
    assert event.to_change_messages(RECEIVED_AT) == []


def test_wildcard_ids_need_a_full_requery() -> None:
    header = ChangeEventHeader.model_validate(change_header(recordIds=["006*"]))
    assert header.has_wildcard_ids
    assert header.needs_full_requery


def test_a_delete_event_becomes_a_deleted_change() -> None:
    event = SalesforceChangeEvent.model_validate(
        envelope(change_header(changeType="DELETE", recordIds=[OPPORTUNITY_1, OPPORTUNITY_2], changedFields=[]))
    )
    [message] = event.to_change_messages(RECEIVED_AT)
    assert message.deleted is True
    assert message.ids == [OPPORTUNITY_1, OPPORTUNITY_2]


def test_bitmap_field_lists_are_kept_raw() -> None:
    header = ChangeEventHeader.model_validate(
        change_header(changedFields=["0x650004E0", "4-0x10"], nulledFields=["7-0x06"])
    )
    assert header.changed_fields == ["0x650004E0", "4-0x10"]
    assert header.nulled_fields == ["7-0x06"]
    assert header.has_bitmap_fields


def test_bad_change_events_are_refused() -> None:
    with pytest.raises(ValidationError, match="changeType"):
        ChangeEventHeader.model_validate(change_header(changeType="MERGE"))
    with pytest.raises(ValidationError, match="UPDATE change event for Opportunity has no recordIds"):
        ChangeEventHeader.model_validate(change_header(recordIds=[]))
    with pytest.raises(ValidationError, match="commitTimestamp"):
        ChangeEventHeader.model_validate(change_header(commitTimestamp=None))
    not_a_change_event = {**envelope(change_header()), "detail-type": "Scheduled Event"}
    with pytest.raises(ValidationError, match="is not a Salesforce change event"):
        SalesforceChangeEvent.model_validate(not_a_change_event)
    with pytest.raises(ValidationError, match="ChangeEventHeader"):
        SalesforceChangeEvent.model_validate({**load("salesforce_change_event.json"), "detail": {"payload": {}}})


# ------------------------------------------------------------------------------------------------
# Queue messages and queue bodies
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"hello": "world"}',
        '{"kind": "hubspot_changes", "events": [], "received_at": "2024-04-09T20:19:30Z"}',
        '{"kind": "rollup", "contact_ids": ["0035f00000RsTuVAAV"]}',
        "[1, 2, 3]",
        '"salesforce_changes"',
    ],
)
def test_a_salesforce_queue_body_that_is_none_of_the_known_messages(body: str) -> None:
    with pytest.raises(ValidationError, match="none of the messages of the Salesforce changes queue") as caught:
        parse_salesforce_queue_body(body)
    assert caught.value.title == "Salesforce changes queue body"


def test_a_queue_body_that_is_not_json() -> None:
    with pytest.raises(ValidationError, match="Invalid JSON"):
        parse_salesforce_queue_body("Outbound message received")


def test_a_rollup_queue_body_that_is_none_of_the_known_messages() -> None:
    with pytest.raises(ValidationError, match="none of the messages of the rollup queue"):
        parse_rollup_queue_body('{"kind": "salesforce_changes"}')


def test_scheduled_tasks_go_to_their_own_queue() -> None:
    rollup = '{"kind": "scheduled", "task": "rollup_full_recompute", "time": "2024-04-10T03:17:00Z", "event_id": "e"}'
    poll = rollup.replace("rollup_full_recompute", "salesforce_poll")
    with pytest.raises(ValidationError, match="'rollup_full_recompute' does not belong on the Salesforce changes"):
        parse_salesforce_queue_body(rollup)
    with pytest.raises(ValidationError, match="'salesforce_poll' does not belong on the rollup queue"):
        parse_rollup_queue_body(poll)
    reconcile = parse_salesforce_queue_body(rollup.replace("rollup_full_recompute", "reconcile"))
    assert isinstance(reconcile, ScheduledTask)
    with pytest.raises(ValidationError, match="task"):
        parse_salesforce_queue_body(rollup.replace("rollup_full_recompute", "coffee"))


def test_other_queues_refuse_foreign_messages() -> None:
    change = SalesforceChangeMessage(object="Opportunity", ids=[OPPORTUNITY_1], source="poll", received_at=RECEIVED_AT)
    with pytest.raises(ValidationError, match="kind"):
        parse_hubspot_queue_body(change.model_dump_json())
    with pytest.raises(ValidationError, match="kind"):
        parse_import_queue_body(change.model_dump_json())


def test_salesforce_ids_are_checked_and_widened() -> None:
    assert salesforce_id_18("0065f00000AbCdE") == OPPORTUNITY_1
    assert salesforce_id_18(OPPORTUNITY_1) == OPPORTUNITY_1
    assert salesforce_id_18("0036000000QKv5T") == "0036000000QKv5TAAT"  # reference vector
    # An 18-character id is read in any case, as Salesforce reads it: the suffix restores the case.
    assert salesforce_id_18(OPPORTUNITY_1.upper()) == OPPORTUNITY_1
    assert salesforce_id_18(OPPORTUNITY_1.lower()) == OPPORTUNITY_1
    with pytest.raises(ValueError, match="suffix '5AA' does not match its first 15 characters"):
        salesforce_id_18("0065f00000AbCdE5AA")  # says the digits 0, 0, 6, 5 are upper-case letters
    with pytest.raises(ValueError, match="not a Salesforce id"):
        salesforce_id_18("0065f00000AbCd")

    message = parse_salesforce_queue_body(
        json.dumps(
            {
                "kind": "salesforce_changes",
                "object": "Opportunity",
                "ids": ["0065f00000AbCdE", OPPORTUNITY_1.upper(), OPPORTUNITY_2],
                "source": "resync",
                "received_at": "2024-04-09T20:19:30+02:00",
            }
        )
    )
    assert isinstance(message, SalesforceChangeMessage)
    assert message.ids == [OPPORTUNITY_1, OPPORTUNITY_2]  # canonical 18 characters, each once


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        ({"ids": []}, "at least 1 item"),
        ({"ids": ["0065f00000AbCdE5AA"]}, "does not match its first 15 characters"),
        ({"ids": ["0015f00000LmNoPAAV"]}, "ids of Opportunity start with '006'"),
        ({"object": "Lead"}, "object"),
        ({"source": "carrier_pigeon"}, "source"),
        ({"deleted": "true"}, "deleted"),
        ({"received_at": "2024-04-09T20:19:30"}, "timezone"),
        ({"extra": 1}, "Extra inputs are not permitted"),
        ({"kind": "salesforce_change"}, "kind"),
    ],
)
def test_bad_salesforce_change_messages(change: dict[str, Any], cause: str) -> None:
    base: dict[str, Any] = {
        "kind": "salesforce_changes",
        "object": "Opportunity",
        "ids": [OPPORTUNITY_1],
        "source": "poll",
        "received_at": "2024-04-09T20:19:30Z",
    }
    with pytest.raises(ValidationError, match=cause):
        SalesforceChangeMessage.model_validate_json(json.dumps({**base, **change}))


def test_at_most_200_ids_per_change_message() -> None:
    ids = [salesforce_id_18(f"0065f0000{n:06d}") for n in range(450)]
    with pytest.raises(ValidationError, match="at most 200 items"):
        SalesforceChangeMessage(object="Opportunity", ids=ids, source="poll", received_at=RECEIVED_AT)
    batches = SalesforceChangeMessage.batches("Opportunity", ids + ids[:10], source="poll", received_at=RECEIVED_AT)
    assert [len(batch.ids) for batch in batches] == [200, 200, 50]
    assert [i for batch in batches for i in batch.ids] == ids


def test_contact_roles_and_accounts_travel_too() -> None:
    role = SalesforceChangeMessage(
        object="OpportunityContactRole",
        ids=["00K5f00000Gh2JkEAJ"],
        deleted=True,
        source="poll",
        received_at=RECEIVED_AT,
    )
    assert role.deleted
    assert parse_salesforce_queue_body(role.model_dump_json()) == role


@pytest.mark.parametrize(
    ("chunk", "cause"),
    [
        ({"ids": [salesforce_id_18(f"0065f0000{n:06d}") for n in range(101)]}, "at most 100 items"),
        ({"chunk": -1}, "greater than or equal to 0"),
        ({"chunk": "3"}, "valid integer"),
        ({"object": "OpportunityContactRole"}, "object"),
        ({"job_id": ""}, "at least 1 character"),
        ({"ids": ["0035f00000RsTuVAAV"]}, "start with '006'"),
    ],
)
def test_bad_import_chunks(chunk: dict[str, Any], cause: str) -> None:
    base: dict[str, Any] = {
        "kind": "import_chunk",
        "job_id": "j",
        "chunk": 0,
        "object": "Opportunity",
        "ids": [OPPORTUNITY_1],
    }
    with pytest.raises(ValidationError, match=cause):
        parse_import_queue_body(json.dumps({**base, **chunk}))


def test_bad_rollup_messages() -> None:
    with pytest.raises(ValidationError, match="ids of Contact start with '003'"):
        RollupMessage(contact_ids=[OPPORTUNITY_1])
    with pytest.raises(ValidationError, match="at least 1 item"):
        RollupMessage(contact_ids=[])


def test_bad_scheduled_tasks() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        ScheduledTask.model_validate_json(
            '{"kind": "scheduled", "task": "reconcile", "time": "2024-04-09T20:20:00", "event_id": "e"}'
        )
    with pytest.raises(ValidationError, match="event_id"):
        ScheduledTask.model_validate_json('{"kind": "scheduled", "task": "reconcile", "time": "2024-04-09T20:20:00Z"}')


# ------------------------------------------------------------------------------------------------
# The raw request behind an HTTP API event
# ------------------------------------------------------------------------------------------------


def test_a_base64_encoded_body_is_decoded() -> None:
    raw = load("salesforce_outbound_message.json")
    xml = raw["body"].encode()
    encoded = {**raw, "body": base64.b64encode(xml).decode(), "isBase64Encoded": True}
    event = APIGatewayProxyEventV2Model.model_validate(encoded)
    assert request_body(event) == xml
    assert parse_outbound_message(request_body(event)).record_ids == [OPPORTUNITY_1, OPPORTUNITY_2]

    broken = APIGatewayProxyEventV2Model.model_validate({**encoded, "body": "%%% not base64 %%%"})
    with pytest.raises(ValueError, match="not base64"):
        request_body(broken)


def test_headers_are_lower_cased_and_a_missing_body_is_empty() -> None:
    raw = load("hubspot_webhook.json")
    raw["headers"] = {"X-HubSpot-Signature-v3": "sig", "Content-Type": "application/json"}
    raw["rawQueryString"] = "portal=44102938&x=%3A"
    del raw["body"]
    event = APIGatewayProxyEventV2Model.model_validate(raw)
    assert request_headers(event) == {"x-hubspot-signature-v3": "sig", "content-type": "application/json"}
    assert request_body(event) == b""
    assert request_url(event) == (
        "https://k3x9q2w7ab.execute-api.us-east-1.amazonaws.com/webhooks/hubspot?portal=44102938&x=%3A"
    )


def test_the_url_follows_the_forwarded_scheme() -> None:
    raw = load("hubspot_webhook.json")
    raw["headers"]["x-forwarded-proto"] = "http"
    raw["requestContext"]["domainName"] = "127.0.0.1:8787"
    event = APIGatewayProxyEventV2Model.model_validate(raw)
    assert request_url(event) == "http://127.0.0.1:8787/webhooks/hubspot"
    raw["headers"]["x-forwarded-proto"] = "gopher"
    assert request_url(APIGatewayProxyEventV2Model.model_validate(raw)).startswith("https://")


# ------------------------------------------------------------------------------------------------
# The typed records with Powertools' batch processing (what the SQS handlers do)
# ------------------------------------------------------------------------------------------------


def test_typed_records_with_the_batch_processor() -> None:
    raw = load("sqs_salesforce_changes.json")
    broken = {**raw["Records"][0], "messageId": "broken-1", "body": '{"kind": "mystery"}'}
    raw["Records"].append(broken)
    seen: list[str] = []

    def record_handler(record: SalesforceQueueRecord) -> None:
        seen.append(type(record.body).__name__)

    processor = BatchProcessor(event_type=EventType.SQS, model=SalesforceQueueRecord)
    result = process_partial_response(event=raw, record_handler=record_handler, processor=processor)
    assert seen == ["SalesforceChangeMessage", "SalesforceChangeEvent", "ScheduledTask"]
    assert result == {"batchItemFailures": [{"itemIdentifier": "broken-1"}]}


def test_change_events_of_other_entities() -> None:
    account = SalesforceChangeEvent.model_validate(
        {
            **envelope(change_header(entityName="Account", recordIds=["0015f00000LmNoPAAV"])),
            "detail-type": "AccountChangeEvent",
        }
    )
    [message] = account.to_change_messages(RECEIVED_AT)
    assert (message.object, message.ids) == ("Account", ["0015f00000LmNoPAAV"])
    custom = SalesforceChangeEvent.model_validate(
        {
            **envelope(change_header(entityName="Invoice__c", recordIds=["a065f000001AbCdAAK"])),
            "detail-type": "Invoice__ChangeEvent",
        }
    )
    assert custom.to_change_messages(RECEIVED_AT) == []
