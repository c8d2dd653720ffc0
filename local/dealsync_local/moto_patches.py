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


def apply() -> None:
    if SQSBackend.is_message_valid_based_on_retention_period is not _is_message_valid_based_on_retention_period:
        SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
            _is_message_valid_based_on_retention_period)
    if DynamoDBBackend.transact_write_items is not _transact_write_items:
        Table.__deepcopy__ = _table_deepcopy  # type: ignore[attr-defined]
        DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]


apply()
