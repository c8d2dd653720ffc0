"""The safety-net poll (DESIGN §2, path 3): SystemModstamp windows with an overlap, plus getDeleted.

The window is half-open, [watermark - overlap, start of this poll), and the watermark moves to the
poll's start only after every id in the window is enqueued, so a crash re-polls instead of skipping.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from dealsync.models.events import SalesforceChangeMessage
from dealsync.observability import logger
from dealsync.queues import send_messages
from dealsync.services.context import SyncContext

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


def _soql_datetime(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def poll_salesforce(context: SyncContext) -> PollReport:
    start = context.now()
    watermark = context.store.cursors.get(CURSOR) or (start - FIRST_LOOKBACK)
    window_start = max(watermark - OVERLAP, start - MAX_DELETED_WINDOW)
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
    report = PollReport(window_start, start, len(changed), len(roles), len(deleted))
    logger.info("Salesforce polled", extra={"window_start": since, "window_end": until, "changed": len(changed),
                                            "role_changes": len(roles), "deleted": len(deleted)})
    return report
