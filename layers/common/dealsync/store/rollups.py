"""The rollup projection of DESIGN 1.7: per Salesforce contact, the opportunities it has a role on.

Rows are keyed by contact (so a recompute reads one partition per contact) and indexed by
opportunity (so a change to an opportunity finds the contacts it touched before). A sharded
contact index lets the nightly full recompute page through every contact without a table scan.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dealsync.models.domain import RollupRow
from dealsync.store.dynamo import DynamoTable, Item, iso, now_utc, parse_iso

CONTACT_INDEX_SHARDS = 16


def _shard(contact_id: str) -> int:
    return zlib.crc32(contact_id.encode()) % CONTACT_INDEX_SHARDS


def _row_key(contact_id: str, opportunity_id: str) -> dict[str, str]:
    return {"pk": f"ROLLUP#{contact_id}", "sk": f"OPP#{opportunity_id}"}


def _to_row(item: Item) -> RollupRow:
    return RollupRow(
        contact_id=item["contact_id"], opportunity_id=item["opportunity_id"], amount=item.get("amount"),
        created=parse_iso(item["created"]) or now_utc(), close_date=item.get("close_date"),
        closed=bool(item.get("closed", False)), won=bool(item.get("won", False)),
    )


class RollupStore:
    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    def contacts_of_opportunity(self, opportunity_id: str) -> set[str]:
        items = self.table.query("gsi1pk = :pk", {":pk": f"ROLLUPOPP#{opportunity_id}"}, index="gsi1")
        return {item["contact_id"] for item in items}

    def replace_opportunity(self, row_template: RollupRow, contact_ids: Iterable[str]) -> set[str]:
        """Make the opportunity's rows exactly one per contact given; returns every contact affected."""
        opportunity_id = row_template.opportunity_id
        wanted = set(contact_ids)
        before = self.contacts_of_opportunity(opportunity_id)
        puts = []
        for contact_id in wanted:
            row = row_template.model_copy(update={"contact_id": contact_id})
            puts.append({
                **_row_key(contact_id, opportunity_id), "contact_id": contact_id, "opportunity_id": opportunity_id,
                "amount": row.amount, "created": iso(row.created), "close_date": row.close_date,
                "closed": row.closed, "won": row.won,
                "gsi1pk": f"ROLLUPOPP#{opportunity_id}", "gsi1sk": contact_id,
            })
        puts += [self._index_item(contact_id) for contact_id in wanted - before]
        deletes = [_row_key(contact_id, opportunity_id) for contact_id in before - wanted]
        self.table.batch_write(puts=puts, deletes=deletes)
        return wanted | before

    def remove_opportunity(self, opportunity_id: str) -> set[str]:
        before = self.contacts_of_opportunity(opportunity_id)
        self.table.batch_write(deletes=[_row_key(contact_id, opportunity_id) for contact_id in before])
        return before

    def rows_for_contact(self, contact_id: str) -> list[RollupRow]:
        items = self.table.query(
            "pk = :pk AND begins_with(sk, :opp)", {":pk": f"ROLLUP#{contact_id}", ":opp": "OPP#"}, consistent=True
        )
        return [_to_row(item) for item in items]

    def rows_for_contacts(self, contact_ids: Sequence[str]) -> dict[str, list[RollupRow]]:
        return {contact_id: self.rows_for_contact(contact_id) for contact_id in dict.fromkeys(contact_ids)}

    def written_values(self, contact_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """What was last written to HubSpot for each contact (to skip unchanged writes)."""
        items = self.table.batch_get([{"pk": f"ROLLUP#{contact_id}", "sk": "STATE"} for contact_id in contact_ids])
        return {item["pk"].removeprefix("ROLLUP#"): dict(item.get("values") or {}) for item in items}

    def save_written_values(self, values_by_contact: Mapping[str, Mapping[str, Any]]) -> None:
        moment = iso(now_utc())
        self.table.batch_write(puts=[
            {"pk": f"ROLLUP#{contact_id}", "sk": "STATE", "values": dict(values), "written_at": moment}
            for contact_id, values in values_by_contact.items()
        ])

    def _index_item(self, contact_id: str) -> dict[str, Any]:
        return {"pk": f"ROLLUPCONTACTS#{_shard(contact_id):02d}", "sk": contact_id, "contact_id": contact_id}

    def contact_page(self, shard: int, limit: int = 100,
                     start_after: str | None = None) -> tuple[list[str], str | None]:
        """One page of contact ids from one shard of the contact index, and where to continue."""
        start = {"pk": f"ROLLUPCONTACTS#{shard:02d}", "sk": start_after} if start_after else None
        items, last = self.table.query_page("pk = :pk", {":pk": f"ROLLUPCONTACTS#{shard:02d}"}, limit, start)
        return [item["contact_id"] for item in items], (last["sk"] if last else None)
