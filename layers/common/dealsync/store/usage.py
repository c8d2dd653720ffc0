"""API usage shared by every worker: dealsync's own calls per CRM and UTC day, the last usage each CRM
reported, and the state of the rate limiters all workers draw from.

| Item | pk | sk |
|---|---|---|
| A CRM's usage on one UTC day | ``USAGE#<YYYY-MM-DD>`` | ``salesforce`` / ``hubspot`` |
| A shared rate limiter (GCRA) | ``RATELIMIT`` | its name, e.g. ``hubspot#burst`` |

A day's items hold ``calls`` (dealsync's requests, added in batches) and what the CRM said last
(Salesforce: the org's ``org_used``/``org_limit`` from ``Sforce-Limit-Info``; HubSpot: the account's
``daily_limit``/``daily_remaining``). One query reads both CRMs of a day; the items expire after a week.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from dealsync.clients.ratelimit import ROUNDING_SLACK
from dealsync.store.dynamo import DynamoTable, Item, iso

SALESFORCE = "salesforce"
HUBSPOT = "hubspot"
USAGE_DAYS_KEPT = 8
LIMITER_PK = "RATELIMIT"


def _usage_pk(day: date) -> str:
    return f"USAGE#{day.isoformat()}"


@dataclass(frozen=True)
class CrmDayUsage:
    """What is known of one CRM's API use on one UTC day."""

    crm: str
    day: date
    calls: int = 0  # dealsync's own requests
    used: int | None = None  # Salesforce: the org's requests in its rolling 24 h (all integrations)
    limit: int | None = None  # Salesforce: the org's allocation; HubSpot: the account's daily limit
    remaining: int | None = None  # HubSpot: the account's daily remaining (0 after a DAILY 429)
    seen_at: datetime | None = None

    @classmethod
    def from_item(cls, crm: str, day: date, item: Item | None) -> CrmDayUsage:
        if not item:
            return cls(crm, day)

        def number(name: str) -> int | None:
            value = item.get(name)
            return int(value) if value is not None else None

        seen = item.get("seen_at")
        return cls(crm, day, calls=int(item.get("calls", 0)), used=number("used"), limit=number("limit"),
                   remaining=number("remaining"), seen_at=datetime.fromisoformat(seen) if seen else None)


class UsageStore:
    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    # --- daily usage --------------------------------------------------------------------------------
    def add(self, crm: str, moment: datetime, calls: int, *, used: int | None = None, limit: int | None = None,
            remaining: int | None = None) -> None:
        """Add ``calls`` to the day's count and keep the CRM's latest figures; one UpdateItem."""
        day = moment.date()
        assignments = ["seen_at = :seen", "expires_at = :expires"]
        values: dict[str, object] = {
            ":calls": calls, ":seen": iso(moment),
            ":expires": int((moment + timedelta(days=USAGE_DAYS_KEPT)).timestamp()),
        }
        names: dict[str, str] = {}
        for name, value in (("used", used), ("limit", limit), ("remaining", remaining)):
            if value is not None:  # "limit" is a reserved word: every figure goes through a name
                assignments.append(f"#{name} = :{name}")
                names[f"#{name}"] = name
                values[f":{name}"] = value
        self.table.update({"pk": _usage_pk(day), "sk": crm}, "ADD calls :calls SET " + ", ".join(assignments),
                          names=names or None, values=values)

    def day(self, day: date) -> dict[str, CrmDayUsage]:
        """Both CRMs' usage on ``day`` (one query)."""
        items = {item["sk"]: item for item in self.table.query("pk = :pk", {":pk": _usage_pk(day)}, consistent=True)}
        return {crm: CrmDayUsage.from_item(crm, day, items.get(crm)) for crm in (SALESFORCE, HUBSPOT)}

    # --- shared rate limiters (GCRA: the theoretical arrival time ``tat`` of the next request) -------------
    def take_slot(self, name: str, now: float, emission: float, tolerance: float, busy_first: bool) -> float | None:
        """Try to take one slot of the limiter; returns the new ``tat`` on success, None when full.

        Two conditional writes cover the two states of the bucket, each correct alone: *idle*
        (``tat`` in the past: the next slot starts now) and *busy* (``now <= tat <= now + tolerance``:
        the slot follows the last one). ``busy_first`` picks the likelier one, so a call usually
        costs one UpdateItem."""
        key = {"pk": LIMITER_PK, "sk": name}
        expires = int(now + 3600)
        latest = now + tolerance + ROUNDING_SLACK
        attempts = [
            ("SET tat = :tat, expires_at = :expires", "attribute_not_exists(tat) OR tat < :now",
             {":tat": round(now + emission, 6), ":now": round(now, 6), ":expires": expires}),
            ("SET tat = tat + :emission, expires_at = :expires", "tat BETWEEN :now AND :latest",
             {":emission": round(emission, 6), ":now": round(now, 6), ":latest": round(latest, 6),
              ":expires": expires}),
        ]
        if busy_first:
            attempts.reverse()
        for expression, condition, values in attempts:
            item = self.table.update_if(key, expression, condition, values=values)
            if item is not None:
                return float(item["tat"])
        return None

    def limiter_tat(self, name: str) -> float | None:
        item = self.table.get({"pk": LIMITER_PK, "sk": name})
        return float(item["tat"]) if item and item.get("tat") is not None else None
