"""Sync errors by category, like HubSpot's Sync Health: one item per (category, record).

Items: pk ``ERROR#<category>``, sk ``<record type>#<id>``, gsi1 ``ERRREC#<id>`` / category (a record's
errors across categories in one query). ``HEALTH`` / ``CAUSES`` holds the fingerprints of what
removes a permanent error's cause (owners, mappings, pipelines), so a change to them re-tries the
records that wait for it (see ``dealsync.services.resync``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from dealsync.models.domain import ErrorCategory, SyncError
from dealsync.store.dynamo import DynamoTable, Item, iso, now_utc, parse_iso

CAUSES_KEY = {"pk": "HEALTH", "sk": "CAUSES"}


def _to_error(item: Item) -> SyncError:
    return SyncError(
        category=ErrorCategory(item["category"]), record_type=item["record_type"], record_id=item["record_id"],
        message=item["message"], related_ids=dict(item.get("related_ids") or {}),
        first_seen=parse_iso(item["first_seen"]) or now_utc(), last_seen=parse_iso(item["last_seen"]) or now_utc(),
        attempts=int(item.get("attempts", 1)),
    )


def _key(category: ErrorCategory, record_type: str, record_id: str) -> dict[str, str]:
    return {"pk": f"ERROR#{category}", "sk": f"{record_type}#{record_id}"}


class ErrorStore:
    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    def record(self, category: ErrorCategory, record_type: str, record_id: str, message: str,
               related_ids: Mapping[str, str] | None = None) -> SyncError:
        """Record (or re-record) an error; first_seen is kept and attempts count up."""
        moment = iso(now_utc())
        item = self.table.update(
            _key(category, record_type, record_id),
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
                self.table.delete(_key(error.category, error.record_type, error.record_id))
                cleared.append(error)
        return cleared

    def clear(self, category: ErrorCategory, record_type: str, record_ids: Iterable[str]) -> None:
        """Clear one category's errors of these records by key (no read; 25 records per call)."""
        keys = [_key(category, record_type, record_id) for record_id in dict.fromkeys(record_ids)]
        if keys:
            self.table.batch_write(deletes=keys)

    def iter_category(self, category: ErrorCategory) -> Iterator[SyncError]:
        """Every error of a category, page by page."""
        for item in self.table.query("pk = :pk", {":pk": f"ERROR#{category}"}):
            yield _to_error(item)

    def iter_all(self, categories: Iterable[ErrorCategory] | None = None) -> Iterator[SyncError]:
        """Every error of the given categories (default: all), category by category."""
        for category in categories if categories is not None else ErrorCategory:
            yield from self.iter_category(category)

    def page(self, category: ErrorCategory, limit: int,
             after: str | None = None) -> tuple[list[SyncError], str | None]:
        """At most ``limit`` errors of a category, in record order, after the cursor ``after``; the
        cursor of the next page (None at the end). A cursor is the ``<record type>#<id>`` of a row."""
        if limit < 1:
            raise ValueError("a page holds at least one error")
        start: dict[str, Any] | None = {"pk": f"ERROR#{category}", "sk": after} if after else None
        items, last = self.table.query_page("pk = :pk", {":pk": f"ERROR#{category}"}, limit, start_key=start)
        errors = [_to_error(item) for item in items]
        if last is None or len(errors) < limit:
            return errors, None
        # DynamoDB may hand back a last key although nothing follows: look once before promising more.
        following, _ = self.table.query_page("pk = :pk", {":pk": f"ERROR#{category}"}, 1, start_key=last)
        return errors, str(last["sk"]) if following else None

    def count(self, category: ErrorCategory) -> int:
        return self.table.count("pk = :pk", {":pk": f"ERROR#{category}"})

    def counts(self) -> dict[ErrorCategory, int]:
        return {category: self.count(category) for category in ErrorCategory}

    # Last: the name shadows the builtin for the annotations of methods defined after it.
    def list(self, category: ErrorCategory, limit: int | None = None) -> list[SyncError]:
        if limit is None:
            return [*self.iter_category(category)]
        return self.page(category, limit)[0]

    # --- cause fingerprints ------------------------------------------------------------------------
    def cause_marks(self) -> dict[str, str]:
        """The fingerprints saved by the last check of what removes permanent errors' causes."""
        item = self.table.get(CAUSES_KEY) or {}
        return {str(name): str(value) for name, value in (item.get("marks") or {}).items()}

    def save_cause_marks(self, marks: Mapping[str, str]) -> None:
        self.table.put({**CAUSES_KEY, "marks": dict(marks), "checked_at": iso(now_utc())})
