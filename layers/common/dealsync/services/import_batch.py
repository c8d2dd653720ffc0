"""The import worker (``import_batch``): every message on the import queue is either the start of a
job (run the coordinator: enumerate Salesforce into chunks) or one chunk to write in bulk.

Starts run one by one, first; the chunks of the batch then go to ``process_chunks``, which writes the
opportunity chunks together (their associations cost a few calls for the whole batch) and the others one
by one. A message that must come back — a transient CRM failure, a malformed body — is reported as a
batch item failure, so the queue redelivers only it, and after five receives it rests in the DLQ until
``dealsync import resume``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from dealsync.clients.errors import ApiBudgetExceededError, TransientCrmError
from dealsync.models.events import ImportChunkMessage, ImportStartMessage, describe_invalid, parse_import_queue_body
from dealsync.observability import logger
from dealsync.queues import EnqueueError
from dealsync.services.context import SyncContext, cached_context
from dealsync.services.imports import CARRIED_OBJECTS, process_chunks, run_coordinator


def _start(message_id: str, message: ImportStartMessage, context: SyncContext) -> bool:
    """True when the start is done with (acknowledge it)."""
    try:
        run_coordinator(context, message)
    except (TransientCrmError, ApiBudgetExceededError, EnqueueError) as error:
        logger.warning("import enumeration interrupted; it continues from its cursor when redelivered",
                       extra={"message_id": message_id, "job_id": message.job_id, "cause": str(error)[:300]})
        return False
    return True


def process_import_queue(records: Sequence[Mapping[str, Any]], context: SyncContext) -> dict[str, Any]:
    """Process an SQS batch; returns the partial-batch response."""
    failed: list[str] = []
    chunks: list[tuple[str, ImportChunkMessage]] = []
    for record in records:
        message_id = str(record["messageId"])
        try:
            message = parse_import_queue_body(str(record["body"]))
        except (ValidationError, ValueError) as error:
            logger.error("malformed message on the import queue",
                         extra={"message_id": message_id, "cause": describe_invalid(error)[:500]})
            failed.append(message_id)
            continue
        if isinstance(message, ImportChunkMessage):
            chunks.append((message_id, message))
            continue
        try:
            ok = _start(message_id, message, context)
        except Exception:  # one message's crash must not fail its neighbours: it alone comes back
            logger.exception("import message failed", extra={"message_id": message_id})
            ok = False
        if not ok:
            failed.append(message_id)
    together = [chunk for chunk in chunks if chunk[1].object in CARRIED_OBJECTS]
    groups = [together] if together else []
    groups += [[chunk] for chunk in chunks if chunk[1].object not in CARRIED_OBJECTS]
    for group in groups:
        try:
            outcomes = process_chunks(context, [message for _, message in group])
            failed += [message_id for (message_id, _), outcome in zip(group, outcomes, strict=True)
                       if outcome.retry is not None]
        except Exception:  # the chunks written together come back together; nothing else does
            logger.exception("import chunks failed", extra={"message_ids": [message_id for message_id, _ in group]})
            failed += [message_id for message_id, _ in group]
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


def handle_import_queue(event: Mapping[str, Any]) -> dict[str, Any]:
    return process_import_queue(event.get("Records", []), cached_context())
