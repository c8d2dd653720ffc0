"""Keys seen recently (e.g. Outbound Message notification ids), expiring by DynamoDB TTL."""

from __future__ import annotations

import time
from collections.abc import Sequence

from dealsync.store.dynamo import DynamoTable


class DedupeStore:
    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    def unseen(self, namespace: str, keys: Sequence[str]) -> list[str]:
        """The keys not marked seen (order kept)."""
        found = self.table.batch_get([{"pk": f"SEEN#{namespace}#{key}", "sk": "SEEN"} for key in keys], consistent=True)
        now = int(time.time())
        seen = {item["pk"].rsplit("#", 1)[1] for item in found if int(item.get("expires_at", now + 1)) > now}
        return [key for key in dict.fromkeys(keys) if key not in seen]

    def mark_seen(self, namespace: str, keys: Sequence[str], ttl_seconds: int) -> None:
        expires_at = int(time.time()) + ttl_seconds
        self.table.batch_write(puts=[{"pk": f"SEEN#{namespace}#{key}", "sk": "SEEN", "expires_at": expires_at}
                                     for key in dict.fromkeys(keys)])
