"""The rollup projection of DESIGN 1.7: per Salesforce contact, the opportunities it has a role on.

Rows are keyed by contact (so a recompute reads one partition per contact) and indexed by
opportunity (so a change to an opportunity finds the contacts it touched before). A sharded
contact index lets the nightly full recompute page through every contact without a table scan.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from dealsync.models.domain import RollupRow
from dealsync.store.dynamo import DynamoTable, Item, iso, now_utc, parse_iso, serialize

CONTACT_INDEX_SHARDS = 16


STAGE_SEEN_AT = "lifecyclestage_seen_ms"  # when the known lifecycle stage was seen or set (epoch ms)


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

    def replace_opportunity(self, row_template: RollupRow, contact_ids: Iterable[str],
                            before: set[str] | None = None) -> set[str]:
        """Make the opportunity's rows exactly one per contact given; returns every contact affected.
        ``before``: the contacts it has rows for, when the caller knows (saves the index query)."""
        opportunity_id = row_template.opportunity_id
        wanted = set(contact_ids)
        before = self.contacts_of_opportunity(opportunity_id) if before is None else before
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

    def note_lifecycle_stages(self, stages: Mapping[str, tuple[str, str, int]], *,
                              only_if_unknown: bool = False) -> int:
        """Remember each contact's current HubSpot lifecycle stage (Salesforce contact id -> (HubSpot contact
        id, stage, epoch ms when seen)) in its written-values state. A stage seen earlier than the one
        known is ignored (webhooks arrive in no promised order); with ``only_if_unknown``, any known stage
        is kept. Only the stage attributes are touched, by conditional updates, so a recompute saving the
        values it just wrote is never overwritten. Returns how many states changed."""
        changed = 0
        for contact_id, (hubspot_id, stage, seen_ms) in stages.items():
            key = {"pk": f"ROLLUP#{contact_id}", "sk": "STATE"}
            names = {"#values": "values", "#stage": "lifecyclestage", "#seen": STAGE_SEEN_AT, "#hs": "hubspot_id"}
            newer = "attribute_not_exists(#values.#stage)" if only_if_unknown else (
                "(attribute_not_exists(#values.#seen) OR #values.#seen < :seen)")
            try:
                self.table.update(key, "SET #values.#stage = :stage, #values.#seen = :seen", names=names,
                                  values={":stage": stage, ":seen": seen_ms, ":hs": hubspot_id},
                                  condition=f"#values.#hs = :hs AND {newer}")
                changed += 1
                continue
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
            # No state for this HubSpot contact yet (new, or re-linked after a merge): start one.
            fresh = {**key, "values": {"hubspot_id": hubspot_id, "properties": {}, "lifecyclestage": stage,
                                       STAGE_SEEN_AT: seen_ms}, "written_at": iso(now_utc())}
            try:
                self.table.put(fresh, ConditionExpression="attribute_not_exists(pk) OR #values.#hs <> :hs",
                               ExpressionAttributeNames={"#values": "values", "#hs": "hubspot_id"},
                               ExpressionAttributeValues=serialize({":hs": hubspot_id}))
                changed += 1
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise  # otherwise: a state for this contact exists and already knows a stage as fresh
        return changed

    def _index_item(self, contact_id: str) -> dict[str, Any]:
        return {"pk": f"ROLLUPCONTACTS#{_shard(contact_id):02d}", "sk": contact_id, "contact_id": contact_id}

    def contact_page(self, shard: int, limit: int = 100,
                     start_after: str | None = None) -> tuple[list[str], str | None]:
        """One page of contact ids from one shard of the contact index, and where to continue."""
        start = {"pk": f"ROLLUPCONTACTS#{shard:02d}", "sk": start_after} if start_after else None
        items, last = self.table.query_page("pk = :pk", {":pk": f"ROLLUPCONTACTS#{shard:02d}"}, limit, start)
        return [item["contact_id"] for item in items], (last["sk"] if last else None)
