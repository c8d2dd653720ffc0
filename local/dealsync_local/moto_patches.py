"""Where moto's behaviour would mislead the local world, and how it is corrected. Applied once, by
``dealsync_local.aws`` (everything that starts moto for dealsync imports it).

moto 5.2's ``transact_write_items`` deep-copies every table a transaction touches, to roll back on
failure. That costs O(table size) per transaction — a 1,000-opportunity burst (two-item link
transactions) took minutes and gigabytes — where DynamoDB's cost is per item. The correction keeps
moto's transaction code and its all-or-nothing result, but snapshots only the items the transaction
touches: during a transaction, copying a table yields the table itself, and on failure the touched
items are put back as they were.

moto 5.2's SQS ``receive_message`` checks each message's retention period through
``get_queue_attributes``, which computes every queue attribute — among them the approximate message
counts, each a scan of the whole queue — three times. A receive of 10 messages from a queue of 1,000 took
~0.3 s (a 1,000-message burst reached a worker 60 messages per batching window). The correction reads
the queue's retention period directly: same value, same check, O(1).

moto 5.2's ``Table.query`` on a table's own key lists and sorts every item of the table to keep those
of one partition — O(table size · log) per query, where DynamoDB reads one partition. After a 10,000
opportunity import the sync table holds ~100,000 items and the rollup worker's one query per contact
took ~0.5 s (1,000 contacts: ~500 s, past its timeout). The correction hands that query only the
partition's items (sorted the same way), so the same filters, ranges and pages apply to the same items.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from moto.core.utils import unix_time
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.sqs.models import Message, SQSBackend

_state = threading.local()
_original_transact = DynamoDBBackend.transact_write_items
_original_query = Table.query
_original_all_items = Table.all_items
Snapshot = tuple[Table, DynamoType, DynamoType | None, Any]


def _table_deepcopy(self: Table, memo: dict[int, Any]) -> Table:
    if getattr(_state, "in_transaction", False):
        return self  # the transaction snapshots the items it touches instead
    reductor = self.__reduce_ex__(4)
    return copy._reconstruct(self, memo, *reductor)  # type: ignore[attr-defined,no-any-return]  # the default


def _key_values(table: Table, op: dict[str, Any]) -> tuple[DynamoType, DynamoType | None] | None:
    attrs = op.get("Item") or op.get("Key")
    if not attrs or table.hash_key_attr not in attrs:
        return None
    hash_value = DynamoType(attrs[table.hash_key_attr])
    range_value = None
    if table.range_key_attr is not None:
        if table.range_key_attr not in attrs:
            return None
        range_value = DynamoType(attrs[table.range_key_attr])
    return hash_value, range_value


def _snapshots(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> list[Snapshot]:
    taken: list[Snapshot] = []
    seen: set[tuple[str, str, str]] = set()
    for item in transact_items:
        _, op = next(iter(item.items()))
        table = backend.tables.get(op.get("TableName", ""))
        if table is None:
            continue
        key = _key_values(table, op)
        if key is None:
            continue
        marker = (table.name, str(key[0]), str(key[1]))
        if marker in seen:
            continue
        seen.add(marker)
        try:
            current = table.get_item(*key)
        except Exception:  # noqa: S112 - an invalid key fails the transaction in moto's own code
            continue
        taken.append((table, key[0], key[1], copy.deepcopy(current)))
    return taken


def _restore(snapshots: list[Snapshot]) -> None:
    for table, hash_value, range_value, item in snapshots:
        if item is None:
            table.delete_item(hash_value, range_value)
        elif range_value is not None:
            table.items[hash_value][range_value] = item
        else:
            table.items[hash_value] = item


def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    snapshots = _snapshots(self, transact_items)
    _state.in_transaction = True
    try:
        _original_transact(self, transact_items)
    except Exception:
        _restore(snapshots)
        raise
    finally:
        _state.in_transaction = False


def _is_message_valid_based_on_retention_period(self: SQSBackend, queue_name: str, message: Message) -> bool:
    retention_period = int(self.get_queue(queue_name).message_retention_period)  # type: ignore[attr-defined]
    return bool(retention_period + message.sent_timestamp / 1000 > unix_time())  # type: ignore[operator]


def _all_items(self: Table) -> list[Any]:
    partition = getattr(_state, "query_partition", None)
    if partition is None or partition[0] is not self:
        return _original_all_items(self)
    hash_set = self.items.get(partition[1])  # .get: the items are a defaultdict, a miss must not add one
    if hash_set is None:
        return []
    items = list(hash_set.values()) if self.range_key_attr else [hash_set]
    return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)


def _query(self: Table, hash_key: DynamoType | None, *args: Any, **kwargs: Any) -> Any:
    # Positional as moto's backend calls it: index_name is the 7th argument after hash_key.
    index_name = kwargs["index_name"] if "index_name" in kwargs else (args[6] if len(args) > 6 else None)
    if index_name or hash_key is None:
        return _original_query(self, hash_key, *args, **kwargs)
    _state.query_partition = (self, hash_key)
    try:
        return _original_query(self, hash_key, *args, **kwargs)
    finally:
        _state.query_partition = None


def apply() -> None:
    if SQSBackend.is_message_valid_based_on_retention_period is not _is_message_valid_based_on_retention_period:
        SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
            _is_message_valid_based_on_retention_period)
    if Table.query is not _query:
        Table.all_items = _all_items  # type: ignore[method-assign]
        Table.query = _query  # type: ignore[method-assign]
    if DynamoDBBackend.transact_write_items is not _transact_write_items:
        Table.__deepcopy__ = _table_deepcopy  # type: ignore[attr-defined]
        DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]


apply()
