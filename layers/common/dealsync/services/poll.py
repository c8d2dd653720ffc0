"""The safety-net poll (DESIGN §2, path 3): SystemModstamp windows with an overlap, plus getDeleted.

The window is half-open, [watermark - overlap, start of this poll), and the watermark moves to the
poll's start only after every id in the window is enqueued, so a crash re-polls instead of skipping.

The poll is batch work under the API budget (services.budget): while the budget refuses, it records an
``API_BUDGET`` sync error and leaves the watermark where it is, so the first poll of the next window
covers the whole gap. A poll that may run also resumes the import jobs the budget paused: nobody has to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dealsync.models.domain import ErrorCategory
from dealsync.models.events import SalesforceChangeMessage
from dealsync.observability import logger
from dealsync.queues import send_messages
from dealsync.services.budget import check_batch, record_pause
from dealsync.services.context import SyncContext
from dealsync.services.imports import resume_import

CURSOR = "salesforce_poll"
OVERLAP = timedelta(minutes=2)
FIRST_LOOKBACK = timedelta(minutes=15)
# getDeleted needs a window of at least a minute and at most 30 days.
MIN_DELETED_WINDOW = timedelta(minutes=1)
MAX_DELETED_WINDOW = timedelta(days=29)


@dataclass(frozen=True)
class PollReport:
    window_start: datetime
    window_end: datetime
    changed: int
    role_changes: int
    deleted: int
    paused: str | None = None  # why the budget refused this poll (nothing was read)
    resumed_jobs: list[str] = field(default_factory=list)


def _soql_datetime(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def resume_paused_imports(context: SyncContext) -> list[str]:
    """Resume the import jobs the API budget paused (the caller checked that the budget allows)."""
    resumed: list[str] = []
    for job in context.store.jobs.paused():
        if not context.store.jobs.clear_pause(job.job_id, "resumed: the API budget allows it again"):
            continue  # another poll resumed it
        try:
            resume_import(context, job.job_id)
        except Exception:  # paused again, so the next poll retries; the cause is in the log
            logger.exception("paused import not resumed", extra={"job_id": job.job_id})
            context.store.jobs.pause(job.job_id, "paused (API_BUDGET): resuming failed; the next poll retries")
            continue
        context.store.errors.resolve(job.job_id, [ErrorCategory.API_BUDGET])
        logger.info("paused import resumed", extra={"job_id": job.job_id, "kind": job.kind})
        resumed.append(job.job_id)
    return resumed


def poll_salesforce(context: SyncContext) -> PollReport:
    start = context.now()
    watermark = context.store.cursors.get(CURSOR) or (start - FIRST_LOOKBACK)
    window_start = max(watermark - OVERLAP, start - MAX_DELETED_WINDOW)
    verdict = check_batch(context)
    if not verdict.allowed:
        record_pause(context, "Poll", CURSOR, verdict)
        return PollReport(window_start, start, 0, 0, 0, paused=verdict.reason)
    context.store.errors.resolve(CURSOR, [ErrorCategory.API_BUDGET])
    since, until = _soql_datetime(window_start), _soql_datetime(start)
    changed = [row["Id"] for row in context.salesforce.query(
        f"SELECT Id FROM Opportunity WHERE SystemModstamp >= {since} AND SystemModstamp < {until}")]  # noqa: S608
    # Contact roles do not move the opportunity's SystemModstamp: poll them too (deleted ones included).
    roles = {row["OpportunityId"] for row in context.salesforce.query(
        "SELECT OpportunityId FROM OpportunityContactRole "  # noqa: S608 - literals we formatted
        f"WHERE SystemModstamp >= {since} AND SystemModstamp < {until}", include_deleted=True)
        if row.get("OpportunityId")}
    deleted_start = min(window_start, start - MIN_DELETED_WINDOW)
    deleted = context.salesforce.deleted_ids("Opportunity", deleted_start, start)
    received_at = context.now()
    bodies = [message.model_dump_json() for message in [
        *SalesforceChangeMessage.batches("Opportunity", sorted(set(changed) | roles), source="poll",
                                         received_at=received_at),
        *SalesforceChangeMessage.batches("Opportunity", deleted, source="poll", received_at=received_at,
                                         deleted=True),
    ]]
    if bodies:
        send_messages(context.queues["salesforce"], bodies)
    context.store.cursors.advance(CURSOR, start)
    resumed = resume_paused_imports(context)
    report = PollReport(window_start, start, len(changed), len(roles), len(deleted), resumed_jobs=resumed)
    logger.info("Salesforce polled", extra={"window_start": since, "window_end": until, "changed": len(changed),
                                            "role_changes": len(roles), "deleted": len(deleted)})
    return report
