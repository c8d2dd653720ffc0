"""Sync errors by category, like HubSpot's Sync Health: one item per (category, record)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dealsync.models.domain import ErrorCategory, SyncError
from dealsync.store.dynamo import DynamoTable, Item, iso, now_utc, parse_iso


def _to_error(item: Item) -> SyncError:
    return SyncError(
        category=ErrorCategory(item["category"]), record_type=item["record_type"], record_id=item["record_id"],
        message=item["message"], related_ids=dict(item.get("related_ids") or {}),
        first_seen=parse_iso(item["first_seen"]) or now_utc(), last_seen=parse_iso(item["last_seen"]) or now_utc(),
        attempts=int(item.get("attempts", 1)),
    )


class ErrorStore:
    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    def record(self, category: ErrorCategory, record_type: str, record_id: str, message: str,
               related_ids: Mapping[str, str] | None = None) -> SyncError:
        """Record (or re-record) an error; first_seen is kept and attempts count up."""
        moment = iso(now_utc())
        item = self.table.update(
            {"pk": f"ERROR#{category}", "sk": f"{record_type}#{record_id}"},
            "SET category = :category, record_type = :type, record_id = :id, message = :message, "
            "related_ids = :related, last_seen = :now, first_seen = if_not_exists(first_seen, :now), "
            "gsi1pk = :by_record, gsi1sk = :category ADD attempts :one",
            values={
                ":category": str(category), ":type": record_type, ":id": record_id, ":message": message,
                ":related": dict(related_ids or {}), ":now": moment, ":one": 1, ":by_record": f"ERRREC#{record_id}",
            },
        )
        return _to_error(item)

    def for_record(self, record_id: str) -> list[SyncError]:
        items = self.table.query("gsi1pk = :pk", {":pk": f"ERRREC#{record_id}"}, index="gsi1")
        return [_to_error(item) for item in items]

    def resolve(self, record_id: str, categories: Iterable[ErrorCategory] | None = None) -> list[SyncError]:
        """Clear a record's errors (all, or the given categories); returns what was cleared."""
        wanted = set(categories) if categories is not None else None
        cleared = []
        for error in self.for_record(record_id):
            if wanted is None or error.category in wanted:
                self.table.delete({"pk": f"ERROR#{error.category}", "sk": f"{error.record_type}#{error.record_id}"})
                cleared.append(error)
        return cleared

    def list(self, category: ErrorCategory, limit: int | None = None) -> list[SyncError]:
        items = self.table.query("pk = :pk", {":pk": f"ERROR#{category}"}, limit=limit)
        return [_to_error(item) for item in items]

    def counts(self) -> dict[ErrorCategory, int]:
        return {category: self.table.count("pk = :pk", {":pk": f"ERROR#{category}"}) for category in ErrorCategory}
