"""The Salesforce → HubSpot engine's pure choices (no world): which opportunities it leaves to the other
direction for now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

from dealsync.models.domain import Link, LinkKind
from dealsync.services.context import SyncContext
from dealsync.services.opportunity_sync import PAIRING_GRACE_SECONDS, OpportunitySync, SyncReport

INTEGRATION = "005000000000009AAA"
PERSON = "005000000000002AAA"


def test_an_opportunity_dealsync_just_created_from_a_deal_is_left_to_the_pairing_direction() -> None:
    context = SimpleNamespace(store=None, salesforce=None, hubspot=None,
                              credentials=SimpleNamespace(hubspot=SimpleNamespace(app_id="3141592")),
                              integration_user_id=lambda: INTEGRATION)
    engine = OpportunitySync(cast(SyncContext, context))
    now = datetime.now(UTC)

    def record(created: datetime, modified_by: str = INTEGRATION, deal_id: str | None = "9000000001") -> dict[str, Any]:
        return {"HubSpot_Deal_Id__c": deal_id, "LastModifiedById": modified_by,
                "CreatedDate": created.isoformat().replace("+00:00", "Z")}

    fresh = now - timedelta(seconds=5)
    records = {
        "006000000000001AAA": record(fresh),  # being paired by HubSpot → Salesforce: left to it
        "006000000000002AAA": record(now - timedelta(seconds=PAIRING_GRACE_SECONDS + 30)),  # that sync died
        "006000000000003AAA": record(fresh, modified_by=PERSON),  # a person changed it since
        "006000000000004AAA": record(fresh),  # linked already
        "006000000000005AAA": record(fresh, deal_id=None),  # names no deal
    }
    link = Link(kind=LinkKind.OPPORTUNITY, salesforce_id="006000000000004AAA", hubspot_id="9000000004",
                created_at=now, updated_at=now)
    report = SyncReport()
    kept = engine._not_being_paired(list(records), records, {"006000000000004AAA": link}, report)
    assert kept == ["006000000000002AAA", "006000000000003AAA", "006000000000004AAA", "006000000000005AAA"]
    assert report.skipped == ["006000000000001AAA"]  # acknowledged: a retry a second would reach the DLQ
    assert report.retry == {}
