"""Imports (DESIGN 1.8): accounts → companies, contacts → contacts, opportunities → deals.

A job moves through three parts, each safe to repeat:

1. :func:`start_import` (the operator): checks the toggles (DESIGN 1.1), creates the job and puts an
   :class:`ImportStartMessage` on the import queue.
2. :func:`run_coordinator` (an ``import_batch`` worker receiving that message): enumerates the
   Salesforce ids in ``Id`` order — REST query pages, or one Bulk API 2.0 job above
   :data:`BULK_THRESHOLD` rows — and, group by group, records chunks of at most 100 ids together with
   the job's totals and cursor (next chunk number, last id) in one transaction, then queues an
   :class:`ImportChunkMessage` per chunk. A coordinator that dies is continued when its message comes
   back (or on resume): it queues the pending chunks again and skips the ids already recorded. When
   every chunk is queued the job goes ``running``.
3. :func:`process_chunk` (``import_batch`` workers): writes the chunk in bulk and counts it with
   ``jobs.complete_chunk`` (a redelivered chunk never counts twice). A chunk worth retrying (a
   transient CRM failure) is not counted: the queue redelivers it, and after the DLQ
   :func:`resume_import` queues the still-pending chunks again. The job completes — once, by a
   conditional write — when ``chunks_done == chunks_total`` after enumeration ended.

Every write is idempotent (companies by batch upsert on the unique ``salesforce_account_id``, contacts
by e-mail, deals by batch upsert on ``salesforce_opportunity_id``, links by conditional transaction),
so running an import twice, or a chunk twice, creates nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from dealsync.clients.errors import ApiBudgetExceededError, PermanentCrmError, TransientCrmError
from dealsync.models.domain import ErrorCategory, Job, JobStatus, LinkKind, LinkStatus, Side
from dealsync.models.events import (
    ImportChunkMessage,
    ImportObject,
    ImportStartMessage,
    SalesforceChangeMessage,
)
from dealsync.observability import logger
from dealsync.queues import send_messages
from dealsync.services.contacts import link_contacts
from dealsync.services.context import SyncContext
from dealsync.services.opportunity_sync import sync_opportunities
from dealsync.store.dynamo import iso, now_utc, serialize
from dealsync.store.jobs import _chunk_key, _job_key  # the job item layout has one home

KINDS: Final[dict[str, ImportObject]] = {"accounts": "Account", "contacts": "Contact", "opportunities": "Opportunity"}
OBJECT_KINDS: Final[dict[str, str]] = {sobject: kind for kind, sobject in KINDS.items()}
CHUNK_SIZE: Final = 100
BULK_THRESHOLD: Final = 10_000  # above this many rows, enumerate with one Bulk API 2.0 query job
CHUNKS_PER_GROUP: Final = 50  # chunks recorded and queued together before the cursor is saved
COMPANY_UNIQUE_PROPERTY: Final = "salesforce_account_id"


class ImportNotFoundError(LookupError):
    """No job with that id."""


@dataclass(frozen=True)
class ChunkOutcome:
    """What one chunk did: ``retry`` says the chunk must come back (nothing was counted)."""

    done: int = 0
    failed: int = 0
    retry: str | None = None


@dataclass(frozen=True)
class ResumeReport:
    job: Job
    requeued_chunks: int
    coordinator_restarted: bool


@dataclass
class _Cursor:
    last_id: str | None = None
    next_chunk: int = 0
    chunk_size: int = CHUNK_SIZE
    sobject: ImportObject | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --- pure helpers -----------------------------------------------------------------------------------


def chunked(ids: Sequence[str], size: int = CHUNK_SIZE, first: int = 0) -> list[tuple[int, list[str]]]:
    """Numbered chunks of at most ``size`` ids, numbering from ``first``."""
    if size < 1:
        raise ValueError("chunk size must be at least 1")
    return [(first + index, list(ids[start:start + size]))
            for index, start in enumerate(range(0, len(ids), size))]


def domain_from_website(website: object) -> str | None:
    """``https://www.acme.example/about`` → ``acme.example`` (HubSpot's company domain)."""
    text = str(website or "").strip()
    if not text:
        return None
    host = urlsplit(text if "//" in text else f"//{text}").hostname or ""
    host = host.lower().removeprefix("www.").strip(".")
    return host or None


def company_properties(account: Mapping[str, Any]) -> dict[str, str]:
    """The HubSpot company an account becomes: its name, domain and the unique account id."""
    properties = {COMPANY_UNIQUE_PROPERTY: str(account["Id"])}
    if account.get("Name"):
        properties["name"] = str(account["Name"])
    domain = domain_from_website(account.get("Website"))
    if domain:
        properties["domain"] = domain
    return properties


def enumeration_soql(sobject: str) -> str:
    """Every id of the object, in ``Id`` order (a stable order: chunks come out the same way each run)."""
    if sobject not in OBJECT_KINDS:
        raise ValueError(f"not an importable object: {sobject!r}")
    return f"SELECT Id FROM {sobject} ORDER BY Id"  # noqa: S608 - the object comes from our own list


# --- job fields the JobStore does not model (cursor, object, chunk size) -----------------------------


def _read_cursor(context: SyncContext, job_id: str) -> _Cursor:
    item = context.store.table.get(_job_key(job_id)) or {}
    sobject = item.get("import_object")
    return _Cursor(
        last_id=item.get("cursor_id"), next_chunk=int(item.get("next_chunk", 0)),
        chunk_size=int(item.get("chunk_size", CHUNK_SIZE)),
        sobject=sobject if sobject in OBJECT_KINDS else None,
    )


def _save_fields(context: SyncContext, job_id: str, **values: Any) -> None:
    names = {f"#f{index}": name for index, name in enumerate(values)}
    assignments = ", ".join(f"#f{index} = :v{index}" for index in range(len(values)))
    context.store.table.update(
        _job_key(job_id), f"SET {assignments}", names=names,
        values={f":v{index}": value for index, value in enumerate(values.values())},
    )


def _transition(context: SyncContext, job_id: str, source: JobStatus, target: JobStatus,
                message: str | None = None) -> bool:
    """Move the job from ``source`` to ``target``; False when another worker got there first."""
    moment = iso(now_utc())
    expression = "SET #status = :target, updated_at = :now, message = :message"
    if target in (JobStatus.COMPLETED, JobStatus.FAILED):
        expression += ", finished_at = :now"
    try:
        context.store.table.update(
            _job_key(job_id), expression, names={"#status": "status"},
            values={":target": str(target), ":source": str(source), ":now": moment, ":message": message},
            condition="#status = :source",
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


# --- 1. start --------------------------------------------------------------------------------------


def check_allowed(context: SyncContext, kind: str) -> None:
    """DESIGN 1.1: opportunities need deal sync; accounts and contacts need company sync.
    Raises ToggleRefusedError naming the missing step."""
    if kind not in KINDS:
        raise ValueError(f"unknown import {kind!r}: one of {', '.join(KINDS)}")
    if kind == "opportunities":
        context.store.settings.require_deal_sync("import opportunities")
    else:
        context.store.settings.require_company_sync(f"import {kind}")


def start_import(context: SyncContext, kind: str, chunk_size: int = CHUNK_SIZE) -> Job:
    """Create an import job and queue its start; the coordinator runs in an ``import_batch`` worker."""
    check_allowed(context, kind)
    if not 1 <= chunk_size <= CHUNK_SIZE:
        raise ValueError(f"chunk size must be between 1 and {CHUNK_SIZE}")
    sobject = KINDS[kind]
    job = context.store.jobs.create(kind)
    _save_fields(context, job.job_id, import_object=sobject, chunk_size=chunk_size, next_chunk=0)
    message = ImportStartMessage(job_id=job.job_id, object=sobject, chunk_size=chunk_size)
    try:
        send_messages(context.queues["import"], [message.model_dump_json()])
    except Exception as error:
        context.store.jobs.set_status(job.job_id, JobStatus.FAILED, f"could not queue the import: {error}")
        raise
    logger.info("import started", extra={"job_id": job.job_id, "kind": kind, "chunk_size": chunk_size})
    return job


# --- 2. the coordinator ----------------------------------------------------------------------------


def _enumerate(context: SyncContext, sobject: str) -> Iterator[str]:
    soql = enumeration_soql(sobject)
    if context.salesforce.count(sobject) > BULK_THRESHOLD:
        for row in context.salesforce.bulk_query(soql):
            if row.get("Id"):
                yield row["Id"]
        return
    for record in context.salesforce.iter_query(soql):
        yield str(record["Id"])


def _recorded_ids(context: SyncContext, job_id: str) -> set[str]:
    """The ids already in the job's chunks (what a restarted coordinator skips)."""
    items = context.store.table.query("pk = :pk AND begins_with(sk, :chunk)",
                                      {":pk": f"JOB#{job_id}", ":chunk": "CHUNK#"}, consistent=True)
    return {str(record_id) for item in items for record_id in item.get("ids", [])}


class _SupersededError(Exception):
    """Another coordinator of the same job (a duplicate delivery) recorded these chunks first."""


def _record_chunks(context: SyncContext, job_id: str, chunks: Sequence[tuple[int, Sequence[str]]],
                   expected_next: int) -> None:
    """Record a group of chunks and move the job's cursor past them in ONE transaction.

    ``jobs.add_chunks`` followed by a separate cursor write would leave a window where a coordinator
    that dies has grown the job's totals without moving its cursor: its successor would record the
    same chunks again, the totals would count them twice and the job would never complete. Here the
    chunk items (new ones only), the totals and the cursor move together, or not at all."""
    moment = iso(now_utc())
    items: list[dict[str, Any]] = [
        {"Put": {"Item": serialize({**_chunk_key(job_id, number), "ids": list(ids), "status": "pending"}),
                 "ConditionExpression": "attribute_not_exists(pk)"}}
        for number, ids in chunks
    ]
    items.append({"Update": {
        "Key": serialize(_job_key(job_id)),
        "UpdateExpression": "ADD chunks_total :chunks, #total :records "
                            "SET updated_at = :now, cursor_id = :cursor, next_chunk = :next",
        "ConditionExpression": "next_chunk = :expected",
        "ExpressionAttributeNames": {"#total": "total"},
        "ExpressionAttributeValues": serialize({
            ":chunks": len(chunks), ":records": sum(len(ids) for _, ids in chunks), ":now": moment,
            ":cursor": chunks[-1][1][-1], ":next": expected_next + len(chunks), ":expected": expected_next}),
    }})
    try:
        context.store.table.transact(items)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "TransactionCanceledException":
            raise _SupersededError(job_id) from error
        raise


def _send_chunks(context: SyncContext, job_id: str, sobject: ImportObject,
                 chunks: Sequence[tuple[int, Sequence[str]]]) -> None:
    bodies = [ImportChunkMessage(job_id=job_id, chunk=number, object=sobject, ids=list(ids)).model_dump_json()
              for number, ids in chunks]
    if bodies:
        send_messages(context.queues["import"], bodies)


def run_coordinator(context: SyncContext, message: ImportStartMessage) -> Job | None:
    """Enumerate the job's records into queued chunks, continuing from the job's cursor."""
    job = context.store.jobs.get(message.job_id)
    if job is None:
        logger.warning("import start for an unknown job", extra={"job_id": message.job_id})
        return None
    if job.status is not JobStatus.PENDING:
        return job  # enumerated already: a redelivered start message
    cursor = _read_cursor(context, job.job_id)
    chunk_size = min(message.chunk_size, CHUNK_SIZE)
    recorded: set[str] = set()
    if cursor.next_chunk:
        # A coordinator before this one died after recording chunks: the ones it may not have queued
        # are still pending (queued twice is harmless: a chunk counts once), and the ids it recorded
        # are skipped — whatever order Salesforce gives this time, and whatever was created since.
        _send_chunks(context, job.job_id, message.object, context.store.jobs.pending_chunks(job.job_id))
        recorded = _recorded_ids(context, job.job_id)
    buffer: list[str] = []

    def flush() -> None:
        if not buffer:
            return
        chunks = chunked(buffer, chunk_size, cursor.next_chunk)
        _record_chunks(context, job.job_id, chunks, cursor.next_chunk)
        cursor.last_id = buffer[-1]
        cursor.next_chunk += len(chunks)
        _send_chunks(context, job.job_id, message.object, chunks)
        buffer.clear()

    try:
        for record_id in _enumerate(context, message.object):
            if record_id in recorded:
                continue
            buffer.append(record_id)
            if len(buffer) >= chunk_size * CHUNKS_PER_GROUP:
                flush()
        flush()
    except _SupersededError:
        logger.warning("another coordinator moved this job's cursor: this one stops", extra={"job_id": job.job_id})
        return context.store.jobs.get(job.job_id)
    _transition(context, job.job_id, JobStatus.PENDING, JobStatus.RUNNING)
    logger.info("import enumerated", extra={"job_id": job.job_id, "chunks": cursor.next_chunk})
    return maybe_finish(context, job.job_id)


# --- 3. chunks ---------------------------------------------------------------------------------------


def _record_failure(context: SyncContext, record_type: str, record_id: str, category: ErrorCategory,
                    message: str) -> None:
    context.store.errors.record(category, record_type, record_id, message, {})


def import_accounts(context: SyncContext, ids: Sequence[str]) -> ChunkOutcome:
    """Accounts → companies: batch upsert on ``salesforce_account_id``, then ACCOUNT links."""
    accounts = {str(record["Id"]): record
                for record in context.salesforce.query_by_ids("Id, Name, Website", "Account", ids)}
    links = context.store.links.get_many(LinkKind.ACCOUNT, Side.SALESFORCE, list(accounts))
    pending = [account_id for account_id in accounts
               if account_id not in links or links[account_id].status is LinkStatus.TOMBSTONED]
    done = len(ids) - len(pending)  # already linked, or gone from Salesforce: nothing to do
    failed = 0
    if pending:
        inputs = [{"id": account_id, "properties": company_properties(accounts[account_id])}
                  for account_id in pending]
        results = context.hubspot.batch_upsert("companies", COMPANY_UNIQUE_PROPERTY, inputs)
        by_account = {str(result.get("properties", {}).get(COMPANY_UNIQUE_PROPERTY)): str(result["id"])
                      for result in results if "error" not in result and result.get("id")}
        causes = "; ".join(sorted({str(r["error"].get("message")) for r in results if "error" in r})) or "no detail"
        for account_id in pending:
            company_id = by_account.get(account_id)
            if company_id is None:
                failed += 1
                _record_failure(context, "Account", account_id, ErrorCategory.HUBSPOT_VALIDATION,
                                f"company not written: {causes}")
                continue
            context.store.links.create(LinkKind.ACCOUNT, account_id, company_id)
            context.store.errors.resolve(account_id, [ErrorCategory.HUBSPOT_VALIDATION])
            done += 1
    return ChunkOutcome(done=done, failed=failed)


def import_contacts(context: SyncContext, ids: Sequence[str]) -> ChunkOutcome:
    """Contacts → contacts, matched by e-mail (batch read on ``email``), created when missing."""
    linked = link_contacts(context, ids)
    failed = [contact_id for contact_id in ids if contact_id not in linked]
    for contact_id in failed:
        _record_failure(context, "Contact", contact_id, ErrorCategory.HUBSPOT_VALIDATION,
                        "contact not linked: HubSpot refused to create it, or it is gone from Salesforce")
    return ChunkOutcome(done=len(ids) - len(failed), failed=len(failed))


def import_opportunities(context: SyncContext, ids: Sequence[str]) -> ChunkOutcome:
    """Opportunities → deals through the Salesforce → HubSpot engine (associations, rollup projection)."""
    report = sync_opportunities(context, ids, source="import")
    if report.retry:
        return ChunkOutcome(retry=f"{len(report.retry)} opportunities to retry: "
                                  f"{next(iter(report.retry.values()))}")
    if len(report.skipped) == len(ids) and not context.toggles().deal_sync:
        return ChunkOutcome(failed=len(ids))  # deal sync was switched off during the import
    links = context.store.links.get_many(LinkKind.OPPORTUNITY, Side.SALESFORCE, ids)
    failed = 0
    for opportunity_id in ids:
        link = links.get(opportunity_id)
        if link is not None and link.status is not LinkStatus.TOMBSTONED:
            continue
        if opportunity_id in report.deleted:
            continue
        # No deal: failed when the sync recorded why (pipeline limit, unmapped stage, HubSpot refusal);
        # an opportunity gone from Salesforce has nothing to import.
        if context.store.errors.for_record(opportunity_id):
            failed += 1
    return ChunkOutcome(done=len(ids) - failed, failed=failed)


_IMPORTERS = {"Account": import_accounts, "Contact": import_contacts, "Opportunity": import_opportunities}


def process_chunk(context: SyncContext, message: ImportChunkMessage) -> ChunkOutcome:
    """Write one chunk and count it once. An outcome with ``retry`` must be redelivered."""
    job = context.store.jobs.get(message.job_id)
    if job is None:
        logger.warning("import chunk of an unknown job", extra={"job_id": message.job_id, "chunk": message.chunk})
        return ChunkOutcome()
    try:
        outcome = _IMPORTERS[message.object](context, message.ids)
    except (TransientCrmError, ApiBudgetExceededError) as error:
        outcome = ChunkOutcome(retry=error.message)
    except PermanentCrmError as error:
        # The whole chunk hit the same wall (permission, a bad query): every record failed, with the cause.
        for record_id in message.ids:
            _record_failure(context, message.object, record_id, error.category, error.message)
        outcome = ChunkOutcome(failed=len(message.ids))
    if outcome.retry is not None:
        logger.warning("import chunk to retry", extra={"job_id": message.job_id, "chunk": message.chunk,
                                                        "cause": outcome.retry[:300]})
        return outcome
    counted = context.store.jobs.complete_chunk(message.job_id, message.chunk, outcome.done, outcome.failed)
    logger.info("import chunk done", extra={"job_id": message.job_id, "chunk": message.chunk,
                                             "done": outcome.done, "failed": outcome.failed, "counted": counted})
    if counted:
        maybe_finish(context, message.job_id)
    return outcome


# --- completion and resume -----------------------------------------------------------------------------


def maybe_finish(context: SyncContext, job_id: str) -> Job | None:
    """Complete the job when enumeration ended and every chunk is counted (exactly once)."""
    job = context.store.jobs.get(job_id)
    if job is None or job.status is not JobStatus.RUNNING or job.chunks_done < job.chunks_total:
        return job
    summary = f"{job.done} imported, {job.failed} failed"
    if _transition(context, job_id, JobStatus.RUNNING, JobStatus.COMPLETED, summary):
        logger.info("import completed", extra={"job_id": job_id, "kind": job.kind, "done": job.done,
                                                "failed": job.failed})
        if job.kind == "accounts":
            context.store.settings.mark_account_import_completed()
            requeue_waiting_opportunities(context)
    return context.store.jobs.get(job_id)


def requeue_waiting_opportunities(context: SyncContext) -> int:
    """Opportunities that synced before their account (WAITING_FOR_ACCOUNT) are synced again now
    that the account is linked; returns how many were queued."""
    waiting = context.store.errors.list(ErrorCategory.WAITING_FOR_ACCOUNT)
    account_ids = {error.related_ids.get("account_id", "") for error in waiting} - {""}
    linked = context.store.links.get_many(LinkKind.ACCOUNT, Side.SALESFORCE, sorted(account_ids))
    ready = sorted({error.record_id for error in waiting
                    if error.related_ids.get("account_id") in linked
                    and linked[error.related_ids["account_id"]].is_active})
    queue = context.queues.get("salesforce")
    if not ready or not queue:
        return 0
    messages = SalesforceChangeMessage.batches("Opportunity", ready, source="resync", received_at=now_utc())
    send_messages(queue, [message.model_dump_json() for message in messages])
    logger.info("opportunities waiting for their account queued again", extra={"count": len(ready)})
    return len(ready)


def resume_import(context: SyncContext, job_id: str) -> ResumeReport:
    """Queue a job's pending chunks again (and its enumeration, if that had not finished)."""
    job = context.store.jobs.get(job_id)
    if job is None:
        raise ImportNotFoundError(f"no import job {job_id}")
    if job.status is JobStatus.COMPLETED:
        return ResumeReport(job, 0, False)
    cursor = _read_cursor(context, job_id)
    sobject = cursor.sobject or KINDS.get(job.kind)
    if sobject is None:
        raise ValueError(f"job {job_id} is a {job.kind} job, not an import")
    check_allowed(context, job.kind)
    if job.status is JobStatus.FAILED:
        _transition(context, job_id, JobStatus.FAILED, JobStatus.RUNNING if cursor.next_chunk else JobStatus.PENDING,
                    "resumed")
        job = context.store.jobs.get(job_id) or job
    restarted = False
    bodies: list[str] = []
    if job.status is JobStatus.PENDING:
        bodies.append(ImportStartMessage(job_id=job_id, object=sobject, chunk_size=cursor.chunk_size)
                      .model_dump_json())
        restarted = True
    if bodies:
        send_messages(context.queues["import"], bodies)
    pending = context.store.jobs.pending_chunks(job_id)
    _send_chunks(context, job_id, sobject, pending)
    logger.info("import resumed", extra={"job_id": job_id, "requeued_chunks": len(pending),
                                         "coordinator_restarted": restarted})
    finished = maybe_finish(context, job_id)
    return ResumeReport(finished or job, len(pending), restarted)


def running_jobs(context: SyncContext, limit: int = 20) -> list[Job]:
    return [job for job in context.store.jobs.recent(limit) if job.status in (JobStatus.PENDING, JobStatus.RUNNING)]
