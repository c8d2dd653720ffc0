"""The webhook receivers: check who is calling, put the named records on a queue, answer.

They never call a CRM. A request that is not provably from our HubSpot app or our Salesforce org is
refused (401/403) and changes nothing; a malformed one gets a 400 naming the problem; anything we
accepted is enqueued before we acknowledge, so an answer of 2xx means nothing is lost.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, cast
from xml.sax.saxutils import escape

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model
from pydantic import ValidationError

from dealsync.clients.credentials import CrmCredentials, load_credentials
from dealsync.models.events import (
    SALESFORCE_CHANGE_MAX_IDS,
    HubSpotChangeMessage,
    HubSpotWebhookEvent,
    InboundRequest,
    OutboundMessageError,
    SalesforceChangeMessage,
    SalesforceObject,
    ack_response,
    describe_invalid,
    inbound_request,
    parse_hubspot_batch,
    parse_outbound_message,
)
from dealsync.observability import logger, metrics
from dealsync.queues import EnqueueError, send_messages
from dealsync.settings import get_settings
from dealsync.store import SyncStore
from dealsync.webhooks.hubspot_signature import SignatureError, verify

NOTIFICATION_TTL_SECONDS = 2 * 24 * 3600  # Salesforce retries an unacknowledged message for up to 24 h
SALESFORCE_OBJECTS = {"Opportunity", "OpportunityContactRole", "Account", "Contact"}
# One queue message at most: ten of them fit one SendMessageBatch call (1 MiB in all, as is one message).
QUEUE_MESSAGE_BUDGET = 96 * 1024
SOAP_CONTENT_TYPES = ("text/xml", "application/xml", "application/soap+xml")

Sender = Callable[[str, Sequence[str]], int]


@dataclass(frozen=True)
class ReceiverContext:
    """What a receiver depends on, injectable for tests."""

    credentials: CrmCredentials
    send: Sender
    salesforce_queue_url: str
    hubspot_queue_url: str
    store: SyncStore | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


def default_context() -> ReceiverContext:
    settings = get_settings()
    return ReceiverContext(
        credentials=load_credentials(), send=send_messages,
        salesforce_queue_url=settings.salesforce_changes_queue_url,
        hubspot_queue_url=settings.hubspot_changes_queue_url,
        store=SyncStore.from_settings(),
    )


def _json(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


def _xml(status: int, body: str) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "text/xml; charset=utf-8"}, "body": body}


def _request(event: dict[str, Any]) -> InboundRequest | None:
    try:
        return inbound_request(APIGatewayProxyEventV2Model.model_validate(event))
    except (ValidationError, ValueError):
        return None


def _content_type(request: InboundRequest) -> str:
    """The media type (no parameters), cut short: it is the caller's text and goes into answers and logs."""
    return (request.header("content-type") or "").split(";")[0].strip().lower()[:100]


def _foreign_event(events: Sequence[HubSpotWebhookEvent], portal_id: str, app_id: str) -> str | None:
    """Why the batch is not for this deployment (another portal or app), or None. A delivery is for one
    portal, so one foreign event makes the whole batch suspect."""
    for index, item in enumerate(events):
        if str(item.portal_id) != portal_id:
            return f"event {index} (eventId {item.event_id}) is for portal {item.portal_id}, not this deployment's"
        if str(item.app_id) != app_id:
            return f"event {index} (eventId {item.event_id}) is for app {item.app_id}, not this deployment's"
    return None


def _hubspot_messages(events: Sequence[HubSpotWebhookEvent], received_at: datetime) -> list[str]:
    """The batch as queue messages of at most QUEUE_MESSAGE_BUDGET bytes each, events in order. An event too
    large alone (a long property value) travels without its value: workers re-read the record anyway."""
    def size_of(model: HubSpotWebhookEvent | HubSpotChangeMessage) -> int:
        return len(model.model_dump_json(by_alias=True).encode())

    envelope = size_of(HubSpotChangeMessage(events=[events[0]], received_at=received_at)) - size_of(events[0])
    chunks: list[list[HubSpotWebhookEvent]] = [[]]
    used = envelope
    for item in events:
        size = size_of(item) + 1  # and its comma
        if envelope + size > QUEUE_MESSAGE_BUDGET:
            item = item.model_copy(update={"property_value": None})
            size = size_of(item) + 1
        if chunks[-1] and used + size > QUEUE_MESSAGE_BUDGET:
            chunks.append([])
            used = envelope
        chunks[-1].append(item)
        used += size
    return [HubSpotChangeMessage(events=chunk, received_at=received_at).model_dump_json(by_alias=True)
            for chunk in chunks]


def _signed_url(request: InboundRequest, public_base_url: str | None) -> str:
    """The URL HubSpot signed: the configured public URL when there is one (custom domains), else the request's."""
    if not public_base_url:
        return request.url
    query = request.url.partition("?")[2]
    url = public_base_url.rstrip("/") + request.path
    return f"{url}?{query}" if query else url


def receive_hubspot_webhook(event: dict[str, Any], context: ReceiverContext) -> dict[str, Any]:
    request = _request(event)
    if request is None:
        return _json(400, {"message": "not an HTTP API request"})
    hubspot = context.credentials.hubspot
    try:
        version = verify(hubspot.client_secret.get_secret_value(), request.method,
                         _signed_url(request, context.credentials.webhook.public_base_url), request.body,
                         request.headers, now_ms=int(context.now().timestamp() * 1000))
    except SignatureError as error:
        logger.warning("HubSpot webhook refused", extra={"reason": str(error), "request_id": request.request_id})
        metrics.add_metric(name="WebhooksRefused", unit=MetricUnit.Count, value=1)
        return _json(401, {"message": f"invalid signature: {error}"})
    content_type = _content_type(request)
    if content_type not in ("application/json", ""):
        logger.warning("HubSpot webhook refused", extra={"reason": f"content type {content_type}",
                                                         "request_id": request.request_id})
        return _json(415, {"message": f"expected application/json, got {content_type}"})
    try:
        events = parse_hubspot_batch(request.body)
    except (ValidationError, ValueError) as error:
        detail = describe_invalid(error)
        logger.warning("HubSpot webhook batch refused", extra={"reason": detail, "request_id": request.request_id})
        return _json(400, {"message": f"malformed webhook batch: {detail}"})
    foreign = _foreign_event(events, hubspot.portal_id, hubspot.app_id)
    if foreign:
        logger.warning("HubSpot webhook for another portal or app refused",
                       extra={"reason": foreign, "request_id": request.request_id})
        metrics.add_metric(name="WebhooksRefused", unit=MetricUnit.Count, value=1)
        return _json(403, {"message": foreign})
    try:
        context.send(context.hubspot_queue_url, _hubspot_messages(events, context.now()))
    except EnqueueError as error:
        logger.error("HubSpot webhook not enqueued", extra={"reason": str(error)})
        return _json(503, {"message": "could not enqueue; retry"})
    logger.info("HubSpot webhook accepted", extra={"events": len(events), "signature": version,
                                                     "object_ids": sorted({e.object_id for e in events})[:100]})
    metrics.add_metric(name="WebhookEventsReceived", unit=MetricUnit.Count, value=len(events))
    return _json(200, {"accepted": len(events)})


def receive_outbound_message(event: dict[str, Any], context: ReceiverContext) -> dict[str, Any]:
    request = _request(event)
    if request is None:
        return _xml(400, "not an HTTP API request")
    content_type = _content_type(request)
    if content_type not in SOAP_CONTENT_TYPES:
        logger.warning("Outbound Message refused", extra={"reason": f"content type {content_type or 'missing'}",
                                                          "request_id": request.request_id})
        return _xml(415, f"expected text/xml (SOAP 1.1), got {escape(content_type or 'no content type')}")
    try:
        message = parse_outbound_message(request.body)
    except OutboundMessageError as error:
        logger.warning("Outbound Message refused", extra={"reason": str(error), "request_id": request.request_id})
        return _xml(400, f"malformed Outbound Message: {error}")
    if not message.is_from_org(context.credentials.salesforce.org_id):
        logger.warning("Outbound Message from a foreign org refused", extra={"org_id": message.organization_id})
        metrics.add_metric(name="WebhooksRefused", unit=MetricUnit.Count, value=1)
        return _xml(403, "Outbound Message from an organization this deployment does not sync")
    unknown = {n.sobject_type for n in message.notifications} - SALESFORCE_OBJECTS
    if unknown:
        return _xml(400, f"Outbound Message for objects dealsync does not sync: {', '.join(sorted(unknown))}")

    notification_ids = [n.notification_id for n in message.notifications]
    fresh = set(context.store.dedupe.unseen("outbound", notification_ids)) if context.store else set(notification_ids)
    ids_by_object: dict[str, list[str]] = defaultdict(list)
    for notification in message.notifications:
        if notification.notification_id in fresh:
            ids_by_object[notification.sobject_type].append(notification.record_id)
    bodies = [
        batch.model_dump_json()
        for sobject, ids in ids_by_object.items()
        for batch in SalesforceChangeMessage.batches(
            object=cast(SalesforceObject, sobject), ids=ids, source="outbound_message", received_at=context.now())
    ]
    try:
        if bodies:
            context.send(context.salesforce_queue_url, bodies)
    except EnqueueError as error:
        logger.error("Outbound Message not enqueued", extra={"reason": str(error)})
        return _xml(503, "could not enqueue; Salesforce will retry")
    if context.store and fresh:
        context.store.dedupe.mark_seen("outbound", sorted(fresh), NOTIFICATION_TTL_SECONDS)
    logger.info("Outbound Message accepted", extra={
        "notifications": len(notification_ids), "duplicates": len(notification_ids) - len(fresh),
        "record_ids": [n.record_id for n in message.notifications][:SALESFORCE_CHANGE_MAX_IDS]})
    metrics.add_metric(name="OutboundNotificationsReceived", unit=MetricUnit.Count, value=len(fresh))
    return _xml(200, ack_response())


@cache
def _cached_context() -> ReceiverContext:
    """One context per Lambda container, built on first use (credentials cached by Parameters too)."""
    return default_context()


def handle_hubspot_webhook(event: dict[str, Any]) -> dict[str, Any]:
    return receive_hubspot_webhook(event, _cached_context())


def handle_outbound_message(event: dict[str, Any]) -> dict[str, Any]:
    return receive_outbound_message(event, _cached_context())


def reset_cached_context() -> None:
    """For tests and the local runtime: forget the cached credentials and clients."""
    _cached_context.cache_clear()
