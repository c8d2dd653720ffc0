"""The HubSpot changes worker: every message on the queue is one webhook delivery, "these deals changed"
(and "this contact's lifecycle stage changed", kept for the rollup worker).

Our own writes coming back (changeSource INTEGRATION with our app id) are dropped; every other deal
event names a deal to re-read (creation, property and association changes, deletion, restore, merge).
All deals of a batch are synced together (bulk reads and writes); a message fails — and is redelivered
alone — only if one of its deals needs a retry. Duplicated and reordered deliveries do not matter: the
worker always re-reads the current state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from dealsync.clients.errors import PermanentCrmError
from dealsync.mapping.values import parse_datetime
from dealsync.models.events import HubSpotWebhookEvent, describe_invalid, parse_hubspot_queue_body
from dealsync.observability import logger, metrics
from dealsync.services.context import SyncContext, cached_context
from dealsync.services.deal_sync import DEAL_RECORD_TYPE, sync_deals
from dealsync.services.records import record_batch_failure
from dealsync.services.resync import is_resync_event, refresh_for_resync
from dealsync.services.rollups import LIFECYCLE, note_lifecycle_stages

DEAL_ACTIONS = frozenset({"creation", "propertyChange", "associationChange", "deletion", "restore", "merge"})


@dataclass
class DealWork:
    """What a batch asks for: deal id -> the message ids that named it, and the merges seen."""

    deals: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    merges: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # surviving -> merged ids
    associations: set[str] = field(default_factory=set)  # deals whose associations may have changed
    echoes: int = 0
    ignored: int = 0
    contact_stages: dict[str, tuple[str, int]] = field(default_factory=dict)  # contact id -> (stage, occurredAt)
    companies_changed_at: dict[str, int] = field(default_factory=dict)  # deal id -> a person's latest occurredAt
    # deal id -> (occurredAt, the primary company a person's latest change of it left on the deal; None: none)
    primary_companies: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    # deal id -> HubSpot contact id -> the occurredAt of a person's latest change of that association
    contacts_changed_at: dict[str, dict[str, int]] = field(default_factory=dict)
    # deal id -> the HubSpot contacts whose latest change by a person took them off the deal
    contacts_removed: dict[str, set[str]] = field(default_factory=dict)


def collect_events(message_id: str, events: Iterable[HubSpotWebhookEvent], app_id: str, work: DealWork) -> None:
    """Add one delivery's deal events to the batch's work (pure)."""
    for event in events:
        if event.object_type == "contact" and event.action == "propertyChange" and event.property_name == LIFECYCLE:
            if event.is_own_change(app_id):
                work.echoes += 1  # the rollup worker set it and already keeps it
                continue
            # A person (or a workflow) moved the contact: its current stage, kept for the rollup worker.
            contact_id, seen = str(event.object_id), work.contact_stages.get(str(event.object_id))
            if seen is None or seen[1] <= event.occurred_at:
                work.contact_stages[contact_id] = (str(event.property_value or ""), event.occurred_at)
            continue
        if event.object_type != "deal" or event.action not in DEAL_ACTIONS:
            work.ignored += 1
            continue
        if event.is_own_change(app_id):
            work.echoes += 1  # our own write coming back: the shadow would make it a no-op anyway
            continue
        if event.action == "merge":
            primary = str(event.primary_object_id or event.object_id)
            merged = [str(deal_id) for deal_id in event.merged_object_ids if str(deal_id) != primary]
            work.merges[primary].update(merged)
            for deal_id in [primary, *merged]:
                work.deals[deal_id].add(message_id)
                work.associations.add(deal_id)
            continue
        work.deals[str(event.object_id)].add(message_id)
        if event.action != "propertyChange":
            work.associations.add(str(event.object_id))
        if event.action == "associationChange":
            _note_association_time(event, work)


def _note_association_time(event: HubSpotWebhookEvent, work: DealWork) -> None:
    """When a person last changed the deal's company, or one contact's, association (HubSpot keeps no history
    of associations: the webhooks' occurredAt is the only time there is)."""
    deal_id, kind = str(event.object_id), str(event.association_type or "").upper()
    if "COMPANY" in kind:
        work.companies_changed_at[deal_id] = max(event.occurred_at, work.companies_changed_at.get(deal_id, 0))
        if event.is_primary_association and event.to_object_id is not None:
            company = None if event.association_removed else str(event.to_object_id)
            seen = work.primary_companies.get(deal_id)
            # A new primary company takes the old one's place in the same moment: the addition is the latest.
            if seen is None or (event.occurred_at, company is not None) >= (seen[0], seen[1] is not None):
                work.primary_companies[deal_id] = (event.occurred_at, company)
    elif "CONTACT" in kind and event.to_object_id is not None:
        contacts = work.contacts_changed_at.setdefault(deal_id, {})
        contact_id = str(event.to_object_id)
        if event.occurred_at >= contacts.get(contact_id, 0):
            contacts[contact_id] = event.occurred_at
            removed = work.contacts_removed.setdefault(deal_id, set())
            if event.association_removed:
                removed.add(contact_id)
            else:
                removed.discard(contact_id)


def process_hubspot_changes(records: Sequence[Mapping[str, Any]], context: SyncContext) -> dict[str, Any]:
    """Process an SQS batch; returns the partial-batch response."""
    work = DealWork()
    failed: set[str] = set()
    app_id = context.credentials.hubspot.app_id
    for record in records:
        message_id = str(record["messageId"])
        try:
            message = parse_hubspot_queue_body(record["body"])
        except (ValidationError, ValueError) as error:
            # Never valid: it goes to the DLQ after its receives, with the cause in the log.
            logger.error("malformed message on the HubSpot changes queue",
                         extra={"message_id": message_id, "cause": describe_invalid(error)[:500]})
            failed.add(message_id)
            continue
        if any(is_resync_event(event) for event in message.events):
            refresh_for_resync(context)  # an owner or field created since the cache was filled is seen
        collect_events(message_id, message.events, app_id, work)
    if work.echoes:
        metrics.add_metric(name="EchoesSkipped", unit=MetricUnit.Count, value=work.echoes)
    if work.contact_stages:
        note_lifecycle_stages(context, work.contact_stages)
    if work.deals:
        merges = {primary: sorted(merged) for primary, merged in work.merges.items() if merged}
        try:
            report = sync_deals(context, sorted(work.deals), merges=merges,
                                associations_for=work.associations, source="hubspot_changes",
                                companies_changed_at={deal_id: parse_datetime(moment) for deal_id, moment
                                                      in work.companies_changed_at.items()},
                                contacts_changed_at={deal_id: {contact_id: parse_datetime(moment)
                                                               for contact_id, moment in contacts.items()}
                                                     for deal_id, contacts in work.contacts_changed_at.items()},
                                contacts_removed=work.contacts_removed,
                                primary_companies={deal_id: company for deal_id, (_, company)
                                                   in work.primary_companies.items()})
        except PermanentCrmError as error:  # the whole batch: recorded once, not redelivered in a loop
            record_batch_failure(context, DEAL_RECORD_TYPE, sorted(work.deals), error)
        else:
            for deal_id in report.retry:
                failed |= work.deals.get(deal_id, set())
    logger.info("HubSpot changes processed", extra={
        "messages": len(records), "deals": len(work.deals), "echoes": work.echoes, "ignored": work.ignored,
        "failed_messages": len(failed)})
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in sorted(failed)]}


def handle_hubspot_changes(event: Mapping[str, Any]) -> dict[str, Any]:
    return process_hubspot_changes(event.get("Records", []), cached_context())
