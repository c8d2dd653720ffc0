"""The rollup worker (RollupQueue): contact ids to recompute, and the nightly full recompute.

Bodies are ``RollupMessage`` (≤100 Salesforce contact ids) or the ``ScheduledTask``
``rollup_full_recompute``. The contact ids of all messages of a batch are de-duplicated and
recomputed together (DESIGN 1.7); the full recompute only fans out: it pages through the contact
index and enqueues RollupMessages, which this same worker then recomputes page by page. A message
fails — and is redelivered alone — only if one of its contacts needs a retry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from dealsync.clients.errors import CrmError, TransientCrmError
from dealsync.models.events import ScheduledTask, describe_invalid, parse_rollup_queue_body
from dealsync.observability import logger, metrics
from dealsync.queues import EnqueueError
from dealsync.services.budget import check_batch, record_pause
from dealsync.services.context import SyncContext, cached_context
from dealsync.services.rollups import enqueue_full_recompute, recompute_contacts


def collect_contacts(records: Sequence[Mapping[str, Any]]) -> tuple[dict[str, set[str]], list[str], set[str]]:
    """(contact id -> message ids, message ids of full-recompute tasks, malformed message ids)."""
    contacts: dict[str, set[str]] = defaultdict(set)
    full: list[str] = []
    malformed: set[str] = set()
    for record in records:
        message_id = str(record["messageId"])
        try:
            body = parse_rollup_queue_body(record["body"])
        except (ValidationError, ValueError) as error:
            logger.error("malformed message on the rollup queue",
                         extra={"message_id": message_id, "cause": describe_invalid(error)[:500]})
            malformed.add(message_id)
            continue
        if isinstance(body, ScheduledTask):
            full.append(message_id)
            continue
        for contact_id in body.contact_ids:
            contacts[contact_id].add(message_id)
    return contacts, full, malformed


def process_rollup_messages(records: Sequence[Mapping[str, Any]], context: SyncContext,
                            time_left_ms: Callable[[], int] | None = None) -> dict[str, Any]:
    """Process an SQS batch; returns the partial-batch response. ``time_left_ms`` is the invocation's
    remaining time: messages whose contacts it leaves no time for are returned for redelivery."""
    contacts, full, failed = collect_contacts(records)
    for message_id in full:
        verdict = check_batch(context)
        if not verdict.allowed:
            # The nightly run is a repair: skipped while the API budget is spent, the next one covers it.
            record_pause(context, "RollupRecompute", "nightly", verdict)
            continue
        try:
            enqueue_full_recompute(context)
        except EnqueueError as error:
            logger.warning("full recompute could not be enqueued", extra={"cause": str(error)[:300]})
            failed.add(message_id)
    if contacts:
        try:
            report = recompute_contacts(context, sorted(contacts), time_left_ms=time_left_ms)
        except CrmError as error:
            logger.warning("rollup recompute failed", extra={"contacts": len(contacts), "cause": error.message})
            if not isinstance(error, TransientCrmError):
                raise  # a configuration problem (permission, schema): the whole batch retries, then DLQ
            report = None
            failed |= {m for ids in contacts.values() for m in ids}
        if report is not None:
            for contact_id in report.retry:
                failed |= contacts[contact_id]
            logger.info("rollups recomputed", extra={
                "contacts": report.contacts, "written": report.written, "unchanged": report.unchanged,
                "unlinked": report.unlinked, "stage_reads": report.stage_reads, "stages_set": report.stages_set,
                "missing_in_hubspot": report.missing_in_hubspot, "deferred": report.deferred,
                "retry": len(report.retry)})
            metrics.add_metric(name="RollupContactsWritten", unit=MetricUnit.Count, value=report.written)
            metrics.add_metric(name="RollupContactsUnchanged", unit=MetricUnit.Count, value=report.unchanged)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in sorted(failed)]}


def handle_rollup_messages(event: Mapping[str, Any], time_left_ms: Callable[[], int] | None = None) -> dict[str, Any]:
    return process_rollup_messages(event.get("Records", []), cached_context(), time_left_ms)
