"""Contact rollups and lifecycle stage (DESIGN 1.7) from projection rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dealsync.mapping.rollups import (
    ROLLUP_PROPERTIES,
    compute_rollups,
    diff,
    lifecycle_stage_for,
    property_names,
    rename,
)
from dealsync.models.domain import RollupRow

CONTACT = "003000000000001AAA"
T0 = datetime(2025, 1, 10, 9, 30, tzinfo=UTC)


def row(opportunity: str, *, amount: str | None = "100", created: datetime = T0, close_date: str | None = None,
        closed: bool = False, won: bool = False) -> RollupRow:
    return RollupRow(contact_id=CONTACT, opportunity_id=opportunity, amount=amount, created=created,
                     close_date=close_date, closed=closed, won=won)


def won(opportunity: str, amount: str | None, created: datetime, close_date: str) -> RollupRow:
    return row(opportunity, amount=amount, created=created, close_date=close_date, closed=True, won=True)


def test_no_deals_is_all_blank() -> None:
    assert compute_rollups([]) == dict.fromkeys(ROLLUP_PROPERTIES)


def test_only_open_deals() -> None:
    rollups = compute_rollups([row("o1", created=T0 + timedelta(days=3)), row("o2", created=T0)])
    assert rollups == {
        "num_associated_deals": "2",
        "first_deal_created_date": "2025-01-10T09:30:00.000Z",
        "recent_deal_close_date": None,
        "recent_deal_amount": None,
        "total_revenue": None,
    }


def test_won_and_lost_mixed() -> None:
    rows = [
        won("w1", "1000.50", T0, "2025-03-01"),
        row("l1", amount="5000", created=T0 - timedelta(days=30), close_date="2025-04-01", closed=True),
        row("o1", amount="7000", created=T0 + timedelta(days=1)),
        won("w2", "250", T0 + timedelta(days=2), "2025-02-15"),
    ]
    rollups = compute_rollups(rows)
    assert rollups["num_associated_deals"] == "4"
    assert rollups["first_deal_created_date"] == "2024-12-11T09:30:00.000Z"  # the lost one was created first
    assert rollups["recent_deal_close_date"] == "2025-03-01T00:00:00Z"  # the won one that closed last
    assert rollups["total_revenue"] == "1250.5"  # won only


def test_recent_amount_is_the_latest_created_won_deal_not_the_latest_closed() -> None:
    rows = [
        won("early-created-late-closed", "900", T0, "2025-06-30"),
        won("late-created-early-closed", "300", T0 + timedelta(days=10), "2025-02-01"),
    ]
    rollups = compute_rollups(rows)
    assert rollups["recent_deal_amount"] == "300"
    assert rollups["recent_deal_close_date"] == "2025-06-30T00:00:00Z"
    assert rollups["total_revenue"] == "1200"


def test_amount_changed_after_closing_is_recomputed() -> None:
    before = compute_rollups([won("w1", "1000", T0, "2025-03-01")])
    after = compute_rollups([won("w1", "1100.00", T0, "2025-03-01")])
    assert diff(before, after) == {"recent_deal_amount": "1100", "total_revenue": "1100"}


def test_role_removed_or_opportunity_deleted_drops_its_row() -> None:
    rows = [won("w1", "1000", T0, "2025-03-01"), row("o1", created=T0 - timedelta(days=5))]
    before = compute_rollups(rows)
    after = compute_rollups(rows[:1])  # the projection no longer has the open one
    assert diff(before, after) == {"num_associated_deals": "1", "first_deal_created_date": "2025-01-10T09:30:00.000Z"}
    gone = compute_rollups([])  # the last opportunity was deleted
    assert diff(after, gone) == dict.fromkeys(ROLLUP_PROPERTIES, "")


def test_reopened_deal_no_longer_counts_as_revenue() -> None:
    before = compute_rollups([won("w1", "1000", T0, "2025-03-01")])
    after = compute_rollups([row("w1", amount="1000", created=T0)])
    assert diff(before, after) == {"recent_deal_close_date": "", "recent_deal_amount": "", "total_revenue": ""}


def test_won_deal_without_amount() -> None:
    rows = [won("w1", None, T0, "2025-03-01"), won("w0", "50", T0 - timedelta(days=1), "2025-01-01")]
    rollups = compute_rollups(rows)
    assert rollups["recent_deal_amount"] is None
    assert rollups["total_revenue"] == "50"


def test_contact_on_500_opportunities() -> None:
    rows = [won(f"w{i:03d}", f"{i}.25", T0 + timedelta(hours=i), f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}")
            for i in range(250)]
    rows += [row(f"o{i:03d}", created=T0 - timedelta(minutes=i)) for i in range(250)]
    rollups = compute_rollups(rows)
    assert rollups["num_associated_deals"] == "500"
    assert rollups["first_deal_created_date"] == "2025-01-10T05:21:00.000Z"  # o249: 249 minutes before T0
    assert rollups["recent_deal_amount"] == "249.25"
    assert rollups["recent_deal_close_date"] == "2025-12-28T00:00:00Z"
    assert rollups["total_revenue"] == "31187.5"  # 0 + 1 + ... + 249 = 31125, plus 250 x 0.25


def test_duplicate_rows_for_one_opportunity_count_once() -> None:
    rollups = compute_rollups([won("w1", "10", T0, "2025-03-01"), won("w1", "10", T0, "2025-03-01")])
    assert (rollups["num_associated_deals"], rollups["total_revenue"]) == ("1", "10")


def test_naive_created_times_are_utc() -> None:
    rollups = compute_rollups([row("o1", created=datetime(2025, 1, 1, 8, 0))])
    assert rollups["first_deal_created_date"] == "2025-01-01T08:00:00.000Z"


def test_diff_only_changed_and_first_write() -> None:
    new = compute_rollups([row("o1")])
    assert diff(None, new) == {"num_associated_deals": "1", "first_deal_created_date": "2025-01-10T09:30:00.000Z"}
    assert diff(new, new) == {}
    assert diff({"total_revenue": ""}, {"total_revenue": None}) == {}


def test_read_only_properties_go_to_custom_properties() -> None:
    names = property_names({"total_revenue", "recent_deal_amount"})
    assert names["total_revenue"] == "salesforce_total_revenue"
    assert names["num_associated_deals"] == "num_associated_deals"
    assert rename({"total_revenue": "5", "num_associated_deals": "1"}, names) == {
        "salesforce_total_revenue": "5", "num_associated_deals": "1",
    }


OPEN = [row("o1")]
WON = [won("w1", "10", T0, "2025-03-01")]
LOST = [row("l1", closed=True)]


@pytest.mark.parametrize(("current", "rows", "expected"), [
    (None, OPEN, "opportunity"),
    ("", WON, "customer"),
    ("subscriber", OPEN, "opportunity"),
    ("lead", OPEN, "opportunity"),
    ("lead", WON, "customer"),
    ("lead", OPEN + WON, "customer"),
    ("salesqualifiedlead", OPEN, "opportunity"),
    ("opportunity", OPEN, None),
    ("opportunity", WON, "customer"),
    ("customer", OPEN, None),  # never backwards
    ("customer", WON, None),
    ("evangelist", WON, None),
    ("evangelist", OPEN, None),
    ("other", OPEN, None),
    ("other", WON, None),
    ("1234567", WON, None),  # a custom lifecycle stage: not ours to move
    ("lead", LOST, None),
    ("lead", [], None),
    ("LEAD", OPEN, "opportunity"),
])
def test_lifecycle_stage(current: str | None, rows: list[RollupRow], expected: str | None) -> None:
    assert lifecycle_stage_for(current, rows, automatic_transitions=True) == expected


def test_lifecycle_transitions_off_changes_nothing() -> None:
    assert lifecycle_stage_for("lead", WON, automatic_transitions=False) is None
    assert lifecycle_stage_for(None, OPEN, automatic_transitions=False) is None
