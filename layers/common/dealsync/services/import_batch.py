"""The import worker (``import_batch``): every message on the import queue is either the start of a
job (run the coordinator: enumerate Salesforce into chunks) or one chunk to write in bulk.

Messages are processed one by one (a chunk is already a batch of up to 100 records); one that must
come back — a transient CRM failure, a malformed body — is reported as a batch item failure, so the
queue redelivers only it, and after five receives it rests in the DLQ until ``dealsync import resume``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from dealsync.clients.errors import ApiBudgetExceededError, TransientCrmError
from dealsync.models.events import ImportStartMessage, parse_import_queue_body
from dealsync.observability import logger
from dealsync.queues import EnqueueError
from dealsync.services.context import SyncContext, cached_context
from dealsync.services.imports import process_chunk, run_coordinator


def _process(message_id: str, body: str, context: SyncContext) -> bool:
    """True when the message is done with (acknowledge it)."""
    try:
        message = parse_import_queue_body(body)
    except (ValidationError, ValueError) as error:
        logger.error("malformed message on the import queue",
                     extra={"message_id": message_id, "cause": str(error)[:500]})
        return False
    if isinstance(message, ImportStartMessage):
        try:
            run_coordinator(context, message)
        except (TransientCrmError, ApiBudgetExceededError, EnqueueError) as error:
            logger.warning("import enumeration interrupted; it continues from its cursor when redelivered",
                           extra={"message_id": message_id, "job_id": message.job_id, "cause": str(error)[:300]})
            return False
        return True
    return process_chunk(context, message).retry is None


def process_import_queue(records: Sequence[Mapping[str, Any]], context: SyncContext) -> dict[str, Any]:
    """Process an SQS batch; returns the partial-batch response."""
    failed: list[str] = []
    for record in records:
        message_id = str(record["messageId"])
        try:
            ok = _process(message_id, str(record["body"]), context)
        except Exception:  # one message's crash must not fail its neighbours: it alone comes back
            logger.exception("import message failed", extra={"message_id": message_id})
            ok = False
        if not ok:
            failed.append(message_id)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


def handle_import_queue(event: Mapping[str, Any]) -> dict[str, Any]:
    return process_import_queue(event.get("Records", []), cached_context())
