"""Contact rollups and lifecycle stage (DESIGN 1.7), from a contact's projection rows only.

Values are HubSpot property values (strings):
- `num_associated_deals`: the count, e.g. `"3"`.
- `first_deal_created_date`: the earliest opportunity CreatedDate, a datetime:
  `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
- `recent_deal_close_date`: the close date of the closed-won opportunity that closed last, as
  midnight UTC `YYYY-MM-DDT00:00:00Z` (valid whether HubSpot types it date or datetime).
- `recent_deal_amount`: the amount of the most recently CREATED closed-won opportunity (not the
  most recently closed); ties by opportunity id.
- `total_revenue`: the sum of the closed-won amounts, canonical decimal text (`"1500.5"`).
Each is None (blank) when there is nothing to report: no rows at all, or no closed-won row for the
three closed-won values. A row without an amount counts as 0 in the total.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal

from dealsync.mapping.values import date_to_hubspot, format_datetime, format_decimal, parse_decimal
from dealsync.models.domain import RollupRow

NUM_ASSOCIATED_DEALS = "num_associated_deals"
FIRST_DEAL_CREATED_DATE = "first_deal_created_date"
RECENT_DEAL_CLOSE_DATE = "recent_deal_close_date"
RECENT_DEAL_AMOUNT = "recent_deal_amount"
TOTAL_REVENUE = "total_revenue"
ROLLUP_PROPERTIES = (
    NUM_ASSOCIATED_DEALS, FIRST_DEAL_CREATED_DATE, RECENT_DEAL_CLOSE_DATE, RECENT_DEAL_AMOUNT, TOTAL_REVENUE,
)
CUSTOM_PROPERTY_PREFIX = "salesforce_"
CUSTOM_PROPERTY_GROUP = "salesforce_sync"

RollupValues = dict[str, str | None]


def _unique(rows: Iterable[RollupRow]) -> list[RollupRow]:
    by_opportunity: dict[str, RollupRow] = {}
    for row in rows:
        by_opportunity[row.opportunity_id] = row  # one opportunity counts once, whatever its roles
    return list(by_opportunity.values())


def _created(row: RollupRow) -> datetime:
    return row.created.replace(tzinfo=UTC) if row.created.tzinfo is None else row.created


def _amount(row: RollupRow) -> Decimal:
    if row.amount is None or not row.amount.strip():
        return Decimal(0)
    return parse_decimal(row.amount)


def compute_rollups(rows: Iterable[RollupRow]) -> RollupValues:
    """The five rollup properties for one contact (all five keys, None for blank)."""
    opportunities = _unique(rows)
    values: RollupValues = dict.fromkeys(ROLLUP_PROPERTIES)
    if not opportunities:
        return values
    values[NUM_ASSOCIATED_DEALS] = str(len(opportunities))
    values[FIRST_DEAL_CREATED_DATE] = format_datetime(min(_created(row) for row in opportunities))
    won = [row for row in opportunities if row.closed and row.won]
    if won:
        close_dates = [row.close_date for row in won if row.close_date]
        values[RECENT_DEAL_CLOSE_DATE] = date_to_hubspot(max(close_dates)) if close_dates else None
        latest_created = max(won, key=lambda row: (_created(row), row.opportunity_id))
        values[RECENT_DEAL_AMOUNT] = (format_decimal(_amount(latest_created))
                                      if latest_created.amount and latest_created.amount.strip() else None)
        values[TOTAL_REVENUE] = format_decimal(sum((_amount(row) for row in won), Decimal(0)))
    return values


def diff(previous_written: Mapping[str, str | None] | None, new: Mapping[str, str | None]) -> dict[str, str]:
    """Only the properties whose value changed, ready for HubSpot ("" clears a property).

    `previous_written` is what was last written (None/empty: nothing yet, so every non-blank value).
    """
    previous = previous_written or {}
    patch: dict[str, str] = {}
    for name, value in new.items():
        before = previous.get(name) or None
        after = value or None
        if before != after:
            patch[name] = after or ""
    return patch


def property_names(read_only: Iterable[str]) -> dict[str, str]:
    """Where each rollup goes: its own name, or `salesforce_<name>` where HubSpot reports it read-only."""
    blocked = set(read_only)
    return {name: f"{CUSTOM_PROPERTY_PREFIX}{name}" if name in blocked else name for name in ROLLUP_PROPERTIES}


def rename(patch: Mapping[str, str], names: Mapping[str, str]) -> dict[str, str]:
    return {names.get(name, name): value for name, value in patch.items()}


# --- lifecycle stage ------------------------------------------------------------------------------

LIFECYCLE_ORDER = (
    "subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist",
)
_RANK = {stage: rank for rank, stage in enumerate(LIFECYCLE_ORDER)}


def lifecycle_stage_for(
    current_stage: str | None, rows: Iterable[RollupRow], automatic_transitions: bool
) -> str | None:
    """The lifecycle stage to set, or None for no change.

    A role on a closed-won opportunity → `customer`; else on an open one → `opportunity`. Never
    backwards; `other` and stages outside HubSpot's default order (custom stages) are left alone.
    """
    if not automatic_transitions:
        return None
    opportunities = list(rows)
    if any(row.closed and row.won for row in opportunities):
        target = "customer"
    elif any(not row.closed for row in opportunities):
        target = "opportunity"
    else:
        return None
    current = (current_stage or "").strip().lower()
    if not current:
        return target
    if current not in _RANK:
        return None  # "other" or a custom stage: not ours to move
    return target if _RANK[target] > _RANK[current] else None
