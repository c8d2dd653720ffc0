"""Watermarks (e.g. the poll's SystemModstamp) that only ever move forward."""

from __future__ import annotations

from datetime import datetime

from botocore.exceptions import ClientError

from dealsync.store.dynamo import DynamoTable, iso, now_utc, parse_iso


class CursorStore:
    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    def get(self, name: str) -> datetime | None:
        item = self.table.get({"pk": "CURSOR", "sk": name})
        return parse_iso(item.get("value")) if item else None

    def advance(self, name: str, value: datetime) -> bool:
        """Move the cursor to ``value``; False (and nothing written) when it is not ahead of the stored one."""
        try:
            self.table.update(
                {"pk": "CURSOR", "sk": name},
                "SET #value = :value, updated_at = :now",
                names={"#value": "value"},
                values={":value": iso(value), ":now": iso(now_utc())},
                condition="attribute_not_exists(#value) OR #value < :value",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True
