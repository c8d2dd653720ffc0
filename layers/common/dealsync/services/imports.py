"""Imports (DESIGN 1.8): accounts → companies, contacts → contacts, opportunities → deals.

A job moves through three parts, each safe to repeat:

1. :func:`start_import` (the operator): checks the toggles (DESIGN 1.1), creates the job and puts an
   :class:`ImportStartMessage` on the import queue.
2. :func:`run_coordinator` (an ``import_batch`` worker receiving that message): enumerates Salesforce
   in ``Id`` order — REST query pages, or Bulk API 2.0 above :data:`BULK_THRESHOLD` rows — and, group by
   group, records chunks of at most 100 records together with the job's totals and cursor (next chunk
   number, last id) in one transaction, then queues an :class:`ImportChunkMessage` per chunk. Account
   and contact chunks hold ids; opportunity chunks carry the full records (the engine's own SELECT with
   the contact roles, see ``import_records``), on the message and on the chunk item, so neither a worker
   nor a resume reads Salesforce again. A coordinator that dies is continued when its message comes
   back (or on resume): it queues the pending chunks again and skips the ids already recorded. When
   every chunk is queued the job goes ``running``.
3. :func:`process_chunks` (``import_batch`` workers): writes the chunks of one invocation in bulk —
   opportunity chunks together in one run of the sync engine in import mode, so their deals cost one
   upsert per 100 and their associations a few calls for all of them — and counts each with
   ``jobs.complete_chunk`` (a redelivered chunk never counts twice). A chunk worth retrying (a
   transient CRM failure) is not counted: the queue redelivers it, and after the DLQ
   :func:`resume_import` queues the still-pending chunks again. The job completes — once, by a
   conditional write — when ``chunks_done == chunks_total`` after enumeration ended; an opportunity
   import first writes its deal ids back to Salesforce in one Bulk API 2.0 job (``import_writeback``).

Every write is idempotent (companies by batch upsert on the unique ``salesforce_account_id``, contacts
by e-mail, deals by batch upsert on ``salesforce_opportunity_id``, links by conditional transaction),
so running an import twice, or a chunk twice, creates nothing twice.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
from dealsync.queues import SEND_BATCH_LIMIT, send_messages
from dealsync.services.budget import check_batch, pause_job, verdict_from_error
from dealsync.services.contacts import link_contacts
from dealsync.services.context import SyncContext
from dealsync.services.import_records import CHUNK_SIZE as CHUNK_SIZE  # re-exported: one home for the size
from dealsync.services.import_records import (
    RecordChunk,
    chunk_records,
    enumerate_opportunities,
    read_opportunities,
)
from dealsync.services.import_writeback import enqueue_job_rollups, save_chunk_results, write_back_deal_ids
from dealsync.services.opportunity_sync import SyncReport, sync_opportunity_records
from dealsync.store.dynamo import iso, now_utc, serialize
from dealsync.store.jobs import _chunk_key, _job_key  # the job item layout has one home

KINDS: Final[dict[str, ImportObject]] = {"accounts": "Account", "contacts": "Contact", "opportunities": "Opportunity"}
OBJECT_KINDS: Final[dict[str, str]] = {sobject: kind for kind, sobject in KINDS.items()}
BULK_THRESHOLD: Final = 10_000  # above this many rows, enumerate with Bulk API 2.0 query jobs
# Chunks recorded (one DynamoDB transaction: at most 4 MB, so 10 chunks of <= 200 KB) and queued together
# before the cursor is saved.
CHUNKS_PER_GROUP: Final = 10
CARRIED_OBJECTS: Final = frozenset({"Opportunity"})  # chunks carry the records, not only their ids
SQS_BATCH_BYTES: Final = 262_144  # SendMessageBatch: the messages together at most 256 KB
COMPANY_UNIQUE_PROPERTY: Final = "salesforce_account_id"


class ImportNotFoundError(LookupError):
    """No job with that id."""


@dataclass(frozen=True)
class ChunkOutcome:
    """What one chunk did: ``retry`` says the chunk must come back (nothing was counted); ``paused``
    that the API budget paused the job (nothing counted, the chunk stays pending until the resume)."""

    done: int = 0
    failed: int = 0
    retry: str | None = None
    paused: str | None = None
    writeback: Mapping[str, str] = field(default_factory=dict)  # opportunity -> deal id, for the job's end
    rollups: frozenset[str] = frozenset()  # contacts whose rollups the chunk affected, for the job's end


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


def _enumerate(context: SyncContext, sobject: str) -> Iterator[dict[str, Any]]:
    """The object's records in ``Id`` order: opportunities in full (the chunks carry them), the others
    as ids (their workers read what they need)."""
    if sobject in CARRIED_OBJECTS:
        yield from enumerate_opportunities(context, BULK_THRESHOLD)
        return
    soql = enumeration_soql(sobject)
    if context.salesforce.count(sobject) > BULK_THRESHOLD:
        for row in context.salesforce.bulk_query(soql):
            if row.get("Id"):
                yield {"Id": row["Id"]}
        return
    for record in context.salesforce.iter_query(soql):
        yield {"Id": str(record["Id"])}


def _chunk_items(context: SyncContext, job_id: str) -> Iterator[dict[str, Any]]:
    return context.store.table.query("pk = :pk AND begins_with(sk, :chunk)",
                                     {":pk": f"JOB#{job_id}", ":chunk": "CHUNK#"}, consistent=True)


def _recorded_ids(context: SyncContext, job_id: str) -> set[str]:
    """The ids already in the job's chunks (what a restarted coordinator skips)."""
    return {str(record_id) for item in _chunk_items(context, job_id) for record_id in item.get("ids", [])}


def _pending_chunks(context: SyncContext, job_id: str) -> Iterator[tuple[int, RecordChunk]]:
    """The job's chunks not counted yet, with the records they carry (read page by page)."""
    for item in _chunk_items(context, job_id):
        if item.get("status") == "pending":
            records = json.loads(item["records"]) if item.get("records") else []
            yield int(str(item["sk"]).removeprefix("CHUNK#")), RecordChunk(ids=list(item["ids"]), records=records)


class _SupersededError(Exception):
    """Another coordinator of the same job (a duplicate delivery) recorded these chunks first."""


def _chunk_item(job_id: str, number: int, chunk: RecordChunk) -> dict[str, Any]:
    item: dict[str, Any] = {**_chunk_key(job_id, number), "ids": list(chunk.ids), "status": "pending"}
    if chunk.records:  # kept with the chunk, so a resume queues it again without reading Salesforce
        item["records"] = json.dumps(chunk.records, separators=(",", ":"))
    return item


def _record_chunks(context: SyncContext, job_id: str, chunks: Sequence[tuple[int, RecordChunk]],
                   expected_next: int) -> None:
    """Record a group of chunks and move the job's cursor past them in ONE transaction.

    ``jobs.add_chunks`` followed by a separate cursor write would leave a window where a coordinator
    that dies has grown the job's totals without moving its cursor: its successor would record the
    same chunks again, the totals would count them twice and the job would never complete. Here the
    chunk items (new ones only), the totals and the cursor move together, or not at all."""
    moment = iso(now_utc())
    items: list[dict[str, Any]] = [
        {"Put": {"Item": serialize(_chunk_item(job_id, number, chunk)),
                 "ConditionExpression": "attribute_not_exists(pk)"}}
        for number, chunk in chunks
    ]
    items.append({"Update": {
        "Key": serialize(_job_key(job_id)),
        "UpdateExpression": "ADD chunks_total :chunks, #total :records "
                            "SET updated_at = :now, cursor_id = :cursor, next_chunk = :next",
        "ConditionExpression": "next_chunk = :expected",
        "ExpressionAttributeNames": {"#total": "total"},
        "ExpressionAttributeValues": serialize({
            ":chunks": len(chunks), ":records": sum(len(chunk.ids) for _, chunk in chunks), ":now": moment,
            ":cursor": chunks[-1][1].ids[-1], ":next": expected_next + len(chunks), ":expected": expected_next}),
    }})
    try:
        context.store.table.transact(items)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "TransactionCanceledException":
            raise _SupersededError(job_id) from error
        raise


def _send_chunks(context: SyncContext, job_id: str, sobject: ImportObject,
                 chunks: Iterable[tuple[int, RecordChunk]]) -> int:
    """Queue chunk messages, each SendMessageBatch within SQS's 10 messages and 256 KB; returns how many."""
    batch: list[str] = []
    size = sent = 0
    for number, chunk in chunks:
        body = ImportChunkMessage(job_id=job_id, chunk=number, object=sobject, ids=list(chunk.ids),
                                  records=chunk.records).model_dump_json()
        weight = len(body.encode())
        if batch and (len(batch) >= SEND_BATCH_LIMIT or size + weight > SQS_BATCH_BYTES):
            sent += send_messages(context.queues["import"], batch)
            batch, size = [], 0
        batch.append(body)
        size += weight
    if batch:
        sent += send_messages(context.queues["import"], batch)
    return sent


def run_coordinator(context: SyncContext, message: ImportStartMessage) -> Job | None:
    """Enumerate the job's records into queued chunks, continuing from the job's cursor."""
    job = context.store.jobs.get(message.job_id)
    if job is None:
        logger.warning("import start for an unknown job", extra={"job_id": message.job_id})
        return None
    if job.status is not JobStatus.PENDING:  # enumerated already: a redelivered start message
        return maybe_finish(context, job.job_id) if job.status is JobStatus.RUNNING else job
    verdict = check_batch(context)
    if not verdict.allowed:  # the resume (by the poll, when the budget allows) queues the start again
        pause_job(context, job.job_id, verdict)
        return context.store.jobs.get(job.job_id)
    cursor = _read_cursor(context, job.job_id)
    chunk_size = min(message.chunk_size, CHUNK_SIZE)
    recorded: set[str] = set()
    if cursor.next_chunk:
        # A coordinator before this one died after recording chunks: the ones it may not have queued
        # are still pending (queued twice is harmless: a chunk counts once), and the ids it recorded
        # are skipped — whatever order Salesforce gives this time, and whatever was created since.
        _send_chunks(context, job.job_id, message.object, _pending_chunks(context, job.job_id))
        recorded = _recorded_ids(context, job.job_id)
    group: list[tuple[int, RecordChunk]] = []

    def flush() -> None:
        if not group:
            return
        _record_chunks(context, job.job_id, group, cursor.next_chunk)
        cursor.last_id = group[-1][1].ids[-1]
        cursor.next_chunk += len(group)
        _send_chunks(context, job.job_id, message.object, group)
        group.clear()

    try:
        # Records stream through: the coordinator holds one page of Salesforce and one group of chunks.
        fresh = (record for record in _enumerate(context, message.object) if str(record["Id"]) not in recorded)
        for chunk in chunk_records(fresh, chunk_size):
            if message.object not in CARRIED_OBJECTS:
                chunk.records = []
            group.append((cursor.next_chunk + len(group), chunk))
            if len(group) >= CHUNKS_PER_GROUP:
                flush()
        flush()
    except _SupersededError:
        logger.warning("another coordinator moved this job's cursor: this one stops", extra={"job_id": job.job_id})
        return context.store.jobs.get(job.job_id)
    except ApiBudgetExceededError as error:  # chunks recorded so far are kept; the resume continues
        pause_job(context, job.job_id, verdict_from_error(context, error))
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
    context.store.errors.clear(ErrorCategory.HUBSPOT_VALIDATION, "Contact", linked)  # a linked contact's error clears
    return ChunkOutcome(done=len(ids) - len(failed), failed=len(failed))


def import_opportunities(context: SyncContext, chunks: Sequence[ImportChunkMessage]) -> list[ChunkOutcome]:
    """Opportunities → deals through the Salesforce → HubSpot engine in import mode, every chunk of the
    invocation in ONE run: the records the chunks carry (read again by id only for a chunk that travels
    by id), deals upserted 100 per call, associations of all chunks together (2,000 per call), deal ids
    deferred to the job's write-back."""
    records = [record for chunk in chunks for record in chunk.records]
    by_id = [record_id for chunk in chunks if not chunk.records for record_id in chunk.ids]
    if by_id:
        records += read_opportunities(context, by_id)
    report = sync_opportunity_records(context, records)
    every_id = [record_id for chunk in chunks for record_id in chunk.ids]
    sync_off = len(report.skipped) == len(every_id) and not context.toggles().deal_sync
    return [_opportunity_outcome(chunk.ids, report, sync_off) for chunk in chunks]


def _opportunity_outcome(ids: Sequence[str], report: SyncReport, sync_off: bool) -> ChunkOutcome:
    retry = [record_id for record_id in ids if record_id in report.retry]
    if retry:
        return ChunkOutcome(retry=f"{len(retry)} opportunities to retry: {report.retry[retry[0]]}")
    if sync_off:
        return ChunkOutcome(failed=len(ids))  # deal sync was switched off during the import
    # No deal: failed when the sync recorded why (pipeline limit, unmapped stage, HubSpot refusal); an
    # opportunity gone from Salesforce (a chunk read again by id) has nothing to import.
    failed = sum(1 for record_id in ids if record_id not in report.deal_ids and record_id in report.errors)
    return ChunkOutcome(done=len(ids) - failed, failed=failed,
                        writeback={record_id: report.writeback[record_id] for record_id in ids
                                   if record_id in report.writeback},
                        rollups=frozenset().union(*(report.rollup_contacts.get(record_id, ()) for record_id in ids)))


def _one_by_one(importer: Callable[[SyncContext, Sequence[str]], ChunkOutcome]) -> ChunkImporter:
    return lambda context, chunks: [importer(context, chunk.ids) for chunk in chunks]


ChunkImporter = Callable[[SyncContext, Sequence[ImportChunkMessage]], list[ChunkOutcome]]
_IMPORTERS: dict[str, ChunkImporter] = {"Account": _one_by_one(import_accounts),
                                        "Contact": _one_by_one(import_contacts),
                                        "Opportunity": import_opportunities}


def process_chunk(context: SyncContext, message: ImportChunkMessage) -> ChunkOutcome:
    """Write one chunk and count it once. An outcome with ``retry`` must be redelivered."""
    return process_chunks(context, [message])[0]


def process_chunks(context: SyncContext, messages: Sequence[ImportChunkMessage]) -> list[ChunkOutcome]:
    """Write the chunks one worker invocation received and count each once, in their order. Opportunity
    chunks are written together (one engine run: their associations cost a few calls for all of them);
    the others one by one, so one chunk's failure never touches its neighbours."""
    outcomes: dict[int, ChunkOutcome] = {}
    grouped = [index for index, message in enumerate(messages) if message.object in CARRIED_OBJECTS]
    groups = [grouped] if grouped else []
    groups += [[index] for index in range(len(messages)) if index not in grouped]
    for group in groups:
        outcomes.update(zip(group, _process_group(context, [messages[index] for index in group]), strict=True))
    return [outcomes[index] for index in range(len(messages))]


def _process_group(context: SyncContext, messages: Sequence[ImportChunkMessage]) -> list[ChunkOutcome]:
    """Chunks of one object written together; each then counted once (and its job finished when last)."""
    outcomes: list[ChunkOutcome] = [ChunkOutcome() for _ in messages]
    active: list[int] = []
    unknown: set[int] = set()
    for index, message in enumerate(messages):
        job = context.store.jobs.get(message.job_id)
        if job is None:
            logger.warning("import chunk of an unknown job", extra={"job_id": message.job_id, "chunk": message.chunk})
            unknown.add(index)
        elif job.paused:
            outcomes[index] = ChunkOutcome(paused=job.paused)  # stays pending: the resume queues it again
        else:
            active.append(index)
    if active:
        verdict = check_batch(context)
        if not verdict.allowed:
            for job_id in {messages[index].job_id for index in active}:
                pause_job(context, job_id, verdict)
            for index in active:
                outcomes[index] = ChunkOutcome(paused=verdict.reason)
            active = []
    if active:
        chunks = [messages[index] for index in active]
        try:
            written = _IMPORTERS[chunks[0].object](context, chunks)
        except ApiBudgetExceededError as error:  # the org or HubSpot ran dry mid-chunk: writes are idempotent
            verdict = verdict_from_error(context, error)
            for job_id in {chunk.job_id for chunk in chunks}:
                pause_job(context, job_id, verdict)
            written = [ChunkOutcome(paused=verdict.reason) for _ in chunks]
        except TransientCrmError as error:
            written = [ChunkOutcome(retry=error.message) for _ in chunks]
        except PermanentCrmError as error:
            # The whole chunk hit the same wall (permission, a bad query): every record failed, with the cause.
            for chunk in chunks:
                for record_id in chunk.ids:
                    _record_failure(context, chunk.object, record_id, error.category, error.message)
            written = [ChunkOutcome(failed=len(chunk.ids)) for chunk in chunks]
        for index, outcome in zip(active, written, strict=True):
            outcomes[index] = outcome
    counted_jobs: list[str] = []
    for index, (message, outcome) in enumerate(zip(messages, outcomes, strict=True)):
        if index not in unknown and _count(context, message, outcome) and message.job_id not in counted_jobs:
            counted_jobs.append(message.job_id)
    for job_id in counted_jobs:
        try:
            maybe_finish(context, job_id)
        except (TransientCrmError, ApiBudgetExceededError) as error:
            # Counted, but the job's end (the deal ids' write-back) must be tried again: the chunks come back.
            logger.warning("import not finished yet; its last chunks come back", extra={
                "job_id": job_id, "cause": error.message[:300]})
            outcomes = [dataclasses.replace(outcome, retry=error.message) if message.job_id == job_id else outcome
                        for message, outcome in zip(messages, outcomes, strict=True)]
    return outcomes


def _count(context: SyncContext, message: ImportChunkMessage, outcome: ChunkOutcome) -> bool:
    """Count a written chunk once; False when it was not written (to retry, or paused)."""
    if outcome.retry is not None:
        logger.warning("import chunk to retry", extra={"job_id": message.job_id, "chunk": message.chunk,
                                                        "cause": outcome.retry[:300]})
        return False
    if outcome.paused is not None:
        logger.info("import chunk left pending: the job is paused", extra={"job_id": message.job_id,
                                                                             "chunk": message.chunk})
        return False
    save_chunk_results(context, message.job_id, message.chunk, outcome.writeback, outcome.rollups)
    counted = context.store.jobs.complete_chunk(message.job_id, message.chunk, outcome.done, outcome.failed)
    logger.info("import chunk done", extra={"job_id": message.job_id, "chunk": message.chunk,
                                             "done": outcome.done, "failed": outcome.failed, "counted": counted})
    return True  # a redelivered chunk counts no more, but may be the one that finishes its job


# --- completion and resume -----------------------------------------------------------------------------


def maybe_finish(context: SyncContext, job_id: str) -> Job | None:
    """Complete the job when enumeration ended and every chunk is counted (exactly once)."""
    job = context.store.jobs.get(job_id)
    if job is None or job.status is not JobStatus.RUNNING or job.chunks_done < job.chunks_total:
        return job
    summary = f"{job.done} imported, {job.failed} failed"
    if job.kind == "opportunities":
        refused = write_back_deal_ids(context, job_id)  # once for the whole job, before it completes
        if refused is None:
            return job  # another worker is writing the deal ids back; it completes the job
        if refused:
            summary += f"; {refused} deal ids not written back to Salesforce (see the sync errors)"
        enqueue_job_rollups(context, job_id)  # then rollups, each contact once (a repeat is harmless)
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
    requeued = _send_chunks(context, job_id, sobject, _pending_chunks(context, job_id))
    logger.info("import resumed", extra={"job_id": job_id, "requeued_chunks": requeued,
                                         "coordinator_restarted": restarted})
    try:
        finished = maybe_finish(context, job_id)
    except TransientCrmError as error:  # the deal ids' write-back is still running: the next resume follows it
        logger.warning("import not finished yet", extra={"job_id": job_id, "cause": error.message[:300]})
        finished = context.store.jobs.get(job_id)
    return ResumeReport(finished or job, requeued, restarted)


def running_jobs(context: SyncContext, limit: int = 20) -> list[Job]:
    return [job for job in context.store.jobs.recent(limit) if job.status in (JobStatus.PENDING, JobStatus.RUNNING)]
