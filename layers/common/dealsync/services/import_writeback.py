"""What an opportunity import does once per job instead of once per chunk: the deal ids written back to
Salesforce (``HubSpot_Deal_Id__c``, DESIGN §2), then the rollups of the contacts it touched (DESIGN 1.8:
"deals with associations, then rollups").

Each counted chunk leaves, in a ``WRITEBACK#<chunk>`` item of the job, the pairs (opportunity, deal) its
opportunities do not carry yet and the contacts whose rollups they affected. When every chunk is
counted, the worker that finishes the job writes the deal ids with ONE Bulk API 2.0 ingest job (create,
upload the CSV, close, poll: a handful of calls for any number of records) and enqueues each affected
contact's rollup once (a contact on opportunities of many chunks is not recomputed once per chunk).
Rows Salesforce refuses are recorded as sync errors of their opportunity (the deal and the link exist;
only the back-reference is missing).

Safe to repeat and to interrupt: one finisher at a time claims the write-back (a claim older than the
queue's visibility timeout is taken over); the ingest job's id is saved as soon as it exists, so a
finisher that comes back follows the same job instead of starting another; an ingest job that failed
as a whole is forgotten and the next attempt starts a new one (the update is idempotent).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Mapping
from datetime import timedelta
from typing import Any, Final

from botocore.exceptions import ClientError

from dealsync.clients.errors import TransientCrmError
from dealsync.clients.salesforce import classify_error_code
from dealsync.models.domain import ErrorCategory
from dealsync.observability import logger
from dealsync.services.context import SyncContext
from dealsync.services.records import DEAL_ID_FIELD, enqueue_rollups
from dealsync.store.dynamo import iso, now_utc
from dealsync.store.jobs import _job_key  # the job item layout has one home

WAIT_SECONDS: Final = 60.0  # how long a finisher follows the ingest job before handing over to a redelivery
POLL_SECONDS: Final = 1.0
CLAIM_SECONDS: Final = 900  # the import queue's visibility timeout: a finisher silent this long has died
DONE_STATES: Final = frozenset({"JobComplete", "Failed", "Aborted"})


def _item_key(job_id: str, chunk: int) -> dict[str, str]:
    return {"pk": f"JOB#{job_id}", "sk": f"WRITEBACK#{chunk:07d}"}


def save_chunk_results(context: SyncContext, job_id: str, chunk: int, pairs: Mapping[str, str],
                       contacts: Collection[str]) -> None:
    """Keep a chunk's (opportunity, deal) pairs and affected contacts for the job's end (before the chunk
    is counted)."""
    if pairs or contacts:
        context.store.table.put({**_item_key(job_id, chunk), "pairs": dict(sorted(pairs.items())),
                                 "contacts": sorted(contacts)})


def _saved(context: SyncContext, job_id: str) -> Iterator[dict[str, Any]]:
    return context.store.table.query("pk = :pk AND begins_with(sk, :prefix)",
                                     {":pk": f"JOB#{job_id}", ":prefix": "WRITEBACK#"}, consistent=True)


def saved_pairs(context: SyncContext, job_id: str) -> Iterator[tuple[str, str]]:
    for item in _saved(context, job_id):
        for opportunity_id, deal_id in (item.get("pairs") or {}).items():
            yield str(opportunity_id), str(deal_id)


def enqueue_job_rollups(context: SyncContext, job_id: str) -> int:
    """Enqueue the rollups of every contact the job's opportunities affected, each once; returns how many."""
    contacts = {str(contact_id) for item in _saved(context, job_id) for contact_id in item.get("contacts") or []}
    enqueue_rollups(context, contacts)
    return len(contacts)


def _claim(context: SyncContext, job_id: str) -> bool:
    moment = now_utc()
    try:
        context.store.table.update(
            _job_key(job_id), "SET writeback_claimed_at = :now",
            values={":now": iso(moment), ":stale": iso(moment - timedelta(seconds=CLAIM_SECONDS))},
            condition="attribute_not_exists(writeback_claimed_at) OR writeback_claimed_at < :stale")
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


def _set(context: SyncContext, job_id: str, expression: str, values: Mapping[str, Any] | None = None) -> None:
    context.store.table.update(_job_key(job_id), expression, values=dict(values) if values else None)


def _follow(context: SyncContext, ingest_id: str) -> dict[str, Any]:
    """The ingest job once it has ended; TransientCrmError when it is still running after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        state = context.salesforce.bulk_ingest_job("Opportunity", ingest_id)
        if state.get("state") in DONE_STATES:
            return state
        if time.monotonic() >= deadline:
            raise TransientCrmError("salesforce", f"bulk ingest job {ingest_id} still {state.get('state')}: "
                                                  "the write-back of deal ids continues on the next attempt")
        time.sleep(POLL_SECONDS)


def _record_refusals(context: SyncContext, ingest_id: str) -> int:
    refused = context.salesforce.bulk_ingest_failures("Opportunity", ingest_id)
    for row in refused:
        cause = str(row.get("sf__Error") or "UNKNOWN_EXCEPTION:no detail")
        kind = classify_error_code(cause.split(":", 1)[0])
        category = kind if isinstance(kind, ErrorCategory) else ErrorCategory.SALESFORCE_VALIDATION
        opportunity_id = str(row.get("Id") or row.get("sf__Id") or "")
        context.store.errors.record(category, "Opportunity", opportunity_id,
                                    f"deal id {row.get(DEAL_ID_FIELD)} not written to {DEAL_ID_FIELD}: {cause}",
                                    {"deal_id": str(row.get(DEAL_ID_FIELD) or "")})
    return len(refused)


def write_back_deal_ids(context: SyncContext, job_id: str) -> int | None:
    """Write the job's deal ids back; returns how many Salesforce refused, or None when another finisher
    is on it. Raises TransientCrmError while the ingest job runs on (the caller comes back later)."""
    item = context.store.table.get(_job_key(job_id)) or {}
    if item.get("writeback_done"):
        return int(item.get("writeback_refused", 0))
    ingest_id = item.get("writeback_job")
    if not ingest_id:
        if not _claim(context, job_id):
            return None
        rows = [{"Id": opportunity_id, DEAL_ID_FIELD: deal_id}
                for opportunity_id, deal_id in saved_pairs(context, job_id)]
        if not rows:
            _set(context, job_id, "SET writeback_done = :yes, writeback_refused = :none", {":yes": True, ":none": 0})
            return 0
        ingest_id = context.salesforce.bulk_ingest_start("Opportunity", "update", rows)
        _set(context, job_id, "SET writeback_job = :job, writeback_rows = :rows",
             {":job": ingest_id, ":rows": len(rows)})
        logger.info("deal ids written back in one bulk job", extra={"job_id": job_id, "ingest_job": ingest_id,
                                                                     "rows": len(rows)})
    state = _follow(context, str(ingest_id))
    if state.get("state") != "JobComplete":
        _set(context, job_id, "REMOVE writeback_job, writeback_claimed_at")  # the next attempt starts anew
        raise TransientCrmError("salesforce", f"bulk ingest job {ingest_id} ended {state.get('state')}: "
                                              f"{state.get('errorMessage') or 'no detail'}")
    refused = _record_refusals(context, str(ingest_id)) if int(state.get("numberRecordsFailed") or 0) else 0
    _set(context, job_id, "SET writeback_done = :yes, writeback_refused = :refused",
         {":yes": True, ":refused": refused})
    return refused
