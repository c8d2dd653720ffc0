"""The Salesforce changes worker: every message on the queue becomes "re-read these opportunities".

Messages are Outbound Message and poll ids, Event Relay change events (opportunities, contact roles,
accounts) and the scheduled poll. All opportunity ids of a batch are synced together (bulk reads and
writes); a message fails — and is redelivered alone — only if one of its opportunities needs a retry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from dealsync.clients.errors import CrmError, PermanentCrmError, TransientCrmError
from dealsync.models.domain import ErrorCategory
from dealsync.models.events import (
    SalesforceChangeEvent,
    SalesforceChangeMessage,
    ScheduledTask,
    describe_invalid,
    parse_salesforce_queue_body,
)
from dealsync.observability import logger, metrics
from dealsync.services.context import SyncContext, cached_context
from dealsync.services.opportunity_sync import sync_opportunities
from dealsync.services.poll import poll_salesforce
from dealsync.services.reconcile import reconcile_task
from dealsync.services.records import record_batch_failure
from dealsync.services.resync import RESYNC_SOURCE, refresh_for_resync, retry_changed_causes

OWN_CLIENT = "dealsync"


@dataclass
class _Work:
    opportunities: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # id -> message ids
    roles: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    accounts: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    changed_at: dict[str, datetime] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    echoes: int = 0


def _collect(message_id: str, body: SalesforceChangeMessage | SalesforceChangeEvent, work: _Work) -> None:
    if isinstance(body, SalesforceChangeEvent):
        if body.header.origin_client == OWN_CLIENT and not body.header.is_gap:
            work.echoes += 1  # our own write coming back: the shadow would make it a no-op anyway
            return
        committed = datetime.fromtimestamp(body.header.commit_timestamp / 1000, UTC) \
            if body.header.commit_timestamp else None
        messages = body.to_change_messages(datetime.now(UTC))
        if not messages and body.header.needs_full_requery:
            logger.warning("change event needs a full re-query; the poll will cover it",
                           extra={"entity": body.entity_name, "change_type": body.header.change_type})
    else:
        committed = None
        messages = [body]
    for message in messages:
        target = {"Opportunity": work.opportunities, "OpportunityContactRole": work.roles,
                  "Account": work.accounts}.get(message.object)
        if target is None:
            continue  # contacts changing do not change deals
        for record_id in message.ids:
            target[record_id].add(message_id)
            if committed and message.object == "Opportunity":
                previous = work.changed_at.get(record_id)
                work.changed_at[record_id] = max(previous, committed) if previous else committed


def _opportunities_of_roles(context: SyncContext, roles: Mapping[str, set[str]], work: _Work) -> None:
    if not roles:
        return
    rows = context.salesforce.query_by_ids("Id, OpportunityId", "OpportunityContactRole", list(roles),
                                           include_deleted=True)
    for row in rows:
        if row.get("OpportunityId"):
            work.opportunities[str(row["OpportunityId"])] |= roles[str(row["Id"])]


def _opportunities_waiting_for(context: SyncContext, accounts: Mapping[str, set[str]], work: _Work) -> None:
    """An account that now syncs releases the deals that waited for it (WAITING_FOR_ACCOUNT)."""
    if not accounts:
        return
    for error in context.store.errors.list(ErrorCategory.WAITING_FOR_ACCOUNT):
        account_id = error.related_ids.get("account_id", "")
        if account_id in accounts:
            work.opportunities[error.record_id] |= accounts[account_id]


def _from_our_org(event: SalesforceChangeEvent, context: SyncContext) -> bool:
    org_id = context.credentials.salesforce.org_id
    return event.org_id is not None and len(org_id) >= 15 and event.org_id[:15] == org_id[:15]


def process_salesforce_changes(records: Sequence[Mapping[str, Any]], context: SyncContext) -> dict[str, Any]:
    """Process an SQS batch; returns the partial-batch response."""
    work = _Work()
    for record in records:
        message_id = str(record["messageId"])
        try:
            body = parse_salesforce_queue_body(record["body"])
        except (ValidationError, ValueError) as error:
            # Never valid: it goes to the DLQ after its receives, with the cause in the log.
            logger.error("malformed message on the Salesforce changes queue",
                         extra={"message_id": message_id, "cause": describe_invalid(error)[:500]})
            work.failed.add(message_id)
            continue
        if isinstance(body, SalesforceChangeEvent) and not _from_our_org(body, context):
            # Only our org's partner bus feeds the queue; anything else names records of another org.
            logger.warning("change event from another Salesforce org dropped",
                           extra={"message_id": message_id, "source": body.source[:200]})
            continue
        if isinstance(body, ScheduledTask) and body.task == "reconcile":
            if not reconcile_task(context, body):
                work.failed.add(message_id)  # a transient failure: redelivered, it continues from its last step
            continue
        if isinstance(body, ScheduledTask):
            try:
                if poll_salesforce(context).paused is None:  # batch work, like the poll: not past the API budget
                    retry_changed_causes(context)  # permanent errors whose cause went away are tried again
            except CrmError as error:
                logger.warning("poll failed", extra={"message_id": message_id, "cause": error.message})
                if isinstance(error, TransientCrmError):
                    work.failed.add(message_id)
            continue
        if isinstance(body, SalesforceChangeMessage) and body.source == RESYNC_SOURCE:
            refresh_for_resync(context)  # an owner or field created since the cache was filled is seen
        _collect(message_id, body, work)
    try:
        _opportunities_of_roles(context, work.roles, work)
        _opportunities_waiting_for(context, work.accounts, work)
    except TransientCrmError as error:
        logger.warning("could not resolve contact roles", extra={"cause": error.message})
        work.failed |= {m for ids in work.roles.values() for m in ids}
    if work.echoes:
        metrics.add_metric(name="EchoesSkipped", unit=MetricUnit.Count, value=work.echoes)
    if work.opportunities:
        try:
            report = sync_opportunities(context, sorted(work.opportunities), changed_at=work.changed_at,
                                        source="salesforce_changes")
        except PermanentCrmError as error:  # the whole batch: recorded once, not redelivered in a loop
            record_batch_failure(context, "Opportunity", sorted(work.opportunities), error)
        else:
            for record_id in report.retry:
                work.failed |= work.opportunities[record_id]
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in sorted(work.failed)]}


def handle_salesforce_changes(event: Mapping[str, Any]) -> dict[str, Any]:
    return process_salesforce_changes(event.get("Records", []), cached_context())
