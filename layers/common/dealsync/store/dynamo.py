"""Thin helpers over the low-level DynamoDB client: (de)serialisation, paging and batch retries."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

Item = dict[str, Any]
Key = dict[str, str]

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
BATCH_GET_LIMIT = 100  # DynamoDB's maximum keys per BatchGetItem
TRANSACT_LIMIT = 100


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {key: _to_dynamo(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(inner) for inner in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _from_dynamo(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(inner) for inner in value]
    if isinstance(value, set):
        return {_from_dynamo(inner) for inner in value}
    return value


def serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(_to_dynamo(value)) for key, value in item.items()}


def serialize_value(value: Any) -> Any:
    return _serializer.serialize(_to_dynamo(value))


def deserialize(item: Mapping[str, Any]) -> Item:
    return {key: _from_dynamo(_deserializer.deserialize(value)) for key, value in item.items()}


def make_client() -> DynamoDBClient:
    # Standard retry mode backs off on throttling; endpoint and region come from the environment.
    client: DynamoDBClient = boto3.client("dynamodb", config=Config(retries={"mode": "standard", "max_attempts": 5}))
    return client


class DynamoTable:
    """One table, with the calls the stores need. Counts its requests so tests can check budgets."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.name = table_name
        self.client = client or make_client()
        self.calls = 0

    def get(self, key: Key, consistent: bool = True) -> Item | None:
        self.calls += 1
        response = self.client.get_item(TableName=self.name, Key=serialize(key), ConsistentRead=consistent)
        raw = response.get("Item")
        return deserialize(raw) if raw else None

    def put(self, item: Mapping[str, Any], **kwargs: Any) -> None:
        self.calls += 1
        self.client.put_item(TableName=self.name, Item=serialize(item), **kwargs)

    def update(self, key: Key, expression: str, names: Mapping[str, str] | None = None,
               values: Mapping[str, Any] | None = None, condition: str | None = None) -> Item:
        self.calls += 1
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "Key": serialize(key),
            "UpdateExpression": expression,
            "ReturnValues": "ALL_NEW",
        }
        if names:
            kwargs["ExpressionAttributeNames"] = dict(names)
        if values:
            kwargs["ExpressionAttributeValues"] = serialize(values)
        if condition:
            kwargs["ConditionExpression"] = condition
        response = self.client.update_item(**kwargs)
        return deserialize(response.get("Attributes", {}))

    def update_if(self, key: Key, expression: str, condition: str, names: Mapping[str, str] | None = None,
                  values: Mapping[str, Any] | None = None) -> Item | None:
        """A conditional update; None (nothing written) when the condition does not hold."""
        try:
            return self.update(key, expression, names=names, values=values, condition=condition)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise

    def delete(self, key: Key, condition: str | None = None) -> None:
        self.calls += 1
        kwargs: dict[str, Any] = {"TableName": self.name, "Key": serialize(key)}
        if condition:
            kwargs["ConditionExpression"] = condition
        self.client.delete_item(**kwargs)

    def query(self, key_condition: str, values: Mapping[str, Any], names: Mapping[str, str] | None = None,
              index: str | None = None, forward: bool = True, limit: int | None = None,
              select_count: bool = False, filter_expression: str | None = None,
              consistent: bool = False) -> Iterator[Item]:
        """All items of a query, page by page (each page one call)."""
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": key_condition,
            "ExpressionAttributeValues": serialize(values),
            "ScanIndexForward": forward,
        }
        if names:
            kwargs["ExpressionAttributeNames"] = dict(names)
        if index:
            kwargs["IndexName"] = index
        elif consistent:
            kwargs["ConsistentRead"] = True
        if limit:
            kwargs["Limit"] = limit
        if filter_expression:
            kwargs["FilterExpression"] = filter_expression
        while True:
            self.calls += 1
            response = self.client.query(**kwargs)
            for raw in response.get("Items", []):
                yield deserialize(raw)
            last = response.get("LastEvaluatedKey")
            if not last or limit:
                return
            kwargs["ExclusiveStartKey"] = last

    def count(self, key_condition: str, values: Mapping[str, Any], index: str | None = None) -> int:
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": key_condition,
            "ExpressionAttributeValues": serialize(values),
            "Select": "COUNT",
        }
        if index:
            kwargs["IndexName"] = index
        total = 0
        while True:
            self.calls += 1
            response = self.client.query(**kwargs)
            total += int(response.get("Count", 0))
            last = response.get("LastEvaluatedKey")
            if not last:
                return total
            kwargs["ExclusiveStartKey"] = last

    def query_page(self, key_condition: str, values: Mapping[str, Any], limit: int,
                   start_key: Mapping[str, Any] | None = None,
                   index: str | None = None) -> tuple[list[Item], Item | None]:
        """One page of a query and the key to continue from (None at the end)."""
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": key_condition,
            "ExpressionAttributeValues": serialize(values),
            "Limit": limit,
        }
        if index:
            kwargs["IndexName"] = index
        return self._page(self.client.query, kwargs, start_key)

    def scan_page(self, limit: int, start_key: Mapping[str, Any] | None = None,
                  filter_expression: str | None = None,
                  values: Mapping[str, Any] | None = None) -> tuple[list[Item], Item | None]:
        """One page of a Scan (``limit`` items read before the filter) and the key to continue from."""
        kwargs: dict[str, Any] = {"TableName": self.name, "Limit": limit}
        if filter_expression:
            kwargs["FilterExpression"] = filter_expression
        if values:
            kwargs["ExpressionAttributeValues"] = serialize(values)
        return self._page(self.client.scan, kwargs, start_key)

    def _page(self, operation: Any, kwargs: dict[str, Any],
              start_key: Mapping[str, Any] | None) -> tuple[list[Item], Item | None]:
        if start_key:
            kwargs["ExclusiveStartKey"] = serialize(start_key)
        self.calls += 1
        response = operation(**kwargs)
        items = [deserialize(raw) for raw in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return items, deserialize(last) if last else None

    def batch_get(self, keys: Sequence[Key], consistent: bool = False) -> list[Item]:
        """Items for up to any number of keys, 100 per call; unprocessed keys retried with backoff."""
        unique: list[Key] = []
        seen: set[tuple[str, str]] = set()
        for key in keys:
            marker = (key["pk"], key["sk"])
            if marker not in seen:
                seen.add(marker)
                unique.append(key)
        found: list[Item] = []
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            pending: list[dict[str, Any]] = [serialize(key) for key in unique[start:start + BATCH_GET_LIMIT]]
            attempt = 0
            while pending:
                self.calls += 1
                response = self.client.batch_get_item(
                    RequestItems={self.name: {"Keys": pending, "ConsistentRead": consistent}}
                )
                found.extend(deserialize(raw) for raw in response.get("Responses", {}).get(self.name, []))
                unprocessed: dict[str, Any] = dict(response.get("UnprocessedKeys") or {})
                pending = list(unprocessed.get(self.name, {}).get("Keys", []))
                if pending:
                    attempt += 1
                    time.sleep(min(0.05 * 2**attempt, 1.0))
        return found

    def batch_write(self, puts: Sequence[Mapping[str, Any]] = (), deletes: Sequence[Key] = ()) -> None:
        requests: list[dict[str, Any]] = [{"PutRequest": {"Item": serialize(item)}} for item in puts]
        requests += [{"DeleteRequest": {"Key": serialize(key)}} for key in deletes]
        for start in range(0, len(requests), 25):
            pending = requests[start:start + 25]
            attempt = 0
            while pending:
                self.calls += 1
                response = self.client.batch_write_item(RequestItems={self.name: pending})  # type: ignore[dict-item]
                unprocessed: dict[str, Any] = dict(response.get("UnprocessedItems") or {})
                pending = list(unprocessed.get(self.name, []))
                if pending:
                    attempt += 1
                    time.sleep(min(0.05 * 2**attempt, 1.0))

    def transact(self, items: Sequence[dict[str, Any]]) -> None:
        """TransactWriteItems; each item already in the low-level shape (TableName filled in here)."""
        for item in items:
            next(iter(item.values()))["TableName"] = self.name
        self.calls += 1
        self.client.transact_write_items(TransactItems=list(items))  # type: ignore[arg-type]
