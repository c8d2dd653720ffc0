"""The local world's corrections to moto keep moto's behaviour (dealsync_local.moto_patches)."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.table import Table
from moto.sqs.models import sqs_backends

from dealsync_local.moto_patches import _is_message_valid_based_on_retention_period
from dealsync_local.template import ACCOUNT_ID, REGION


def test_sqs_receive_still_drops_messages_past_the_queues_retention_period(moto_endpoint: str) -> None:
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name=REGION)
    name = f"retention-{uuid.uuid4().hex[:8]}"
    url = sqs.create_queue(QueueName=name, Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="old")
    sqs.send_message(QueueUrl=url, MessageBody="new")
    backend = sqs_backends[ACCOUNT_ID][REGION]
    assert backend.is_message_valid_based_on_retention_period.__func__ is (  # type: ignore[attr-defined]
        _is_message_valid_based_on_retention_period)
    old = next(message for message in backend.get_queue(name)._messages if message.body == "old")
    old.sent_timestamp = int(old.sent_timestamp or 0) - 61_000  # type: ignore[assignment]  # 61 s ago: past 60 s

    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])

    assert [message["Body"] for message in received] == ["new"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["MessageRetentionPeriod"] == "60"


def test_dynamodb_query_on_the_table_key_reads_one_partition_with_moto_semantics(moto_endpoint: str) -> None:
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name=REGION)
    name = f"partitions-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "gk")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{"IndexName": "by-gk", "KeySchema": [{"AttributeName": "gk", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}])
    for partition in range(30):
        for row in range(6):
            dynamodb.put_item(TableName=name, Item={
                "pk": {"S": f"P#{partition:02}"}, "sk": {"S": f"{'OPP' if row % 2 else 'X'}#{row}"},
                "gk": {"S": f"G#{row}"}})
    original_all_items = Table.all_items.__globals__["_original_all_items"]
    assert Table.query.__name__ == "_query"  # the correction is installed (dealsync_local.aws applies it)

    def keys(**query: Any) -> list[str]:
        response = dynamodb.query(TableName=name, **query)
        return [item["sk"]["S"] for item in response["Items"]]

    partition_values = {":pk": {"S": "P#07"}}
    assert keys(KeyConditionExpression="pk = :pk", ExpressionAttributeValues=partition_values) == [
        "OPP#1", "OPP#3", "OPP#5", "X#0", "X#2", "X#4"]
    assert keys(KeyConditionExpression="pk = :pk AND begins_with(sk, :opp)", ScanIndexForward=False,
                ExpressionAttributeValues={**partition_values, ":opp": {"S": "OPP#"}}) == ["OPP#5", "OPP#3", "OPP#1"]
    first = dynamodb.query(TableName=name, KeyConditionExpression="pk = :pk", Limit=4,
                           ExpressionAttributeValues=partition_values)
    rest = keys(KeyConditionExpression="pk = :pk", ExpressionAttributeValues=partition_values,
                ExclusiveStartKey=first["LastEvaluatedKey"])
    assert [item["sk"]["S"] for item in first["Items"]] + rest == ["OPP#1", "OPP#3", "OPP#5", "X#0", "X#2", "X#4"]
    assert keys(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "P#99"}}) == []
    # An index query still sees every partition; a scan still sees the whole table.
    assert len(keys(IndexName="by-gk", KeyConditionExpression="gk = :g",
                    ExpressionAttributeValues={":g": {"S": "G#3"}})) == 30
    assert dynamodb.scan(TableName=name, Select="COUNT")["Count"] == 180
    table = dynamodb_backends[ACCOUNT_ID][REGION].get_table(name)
    assert len(original_all_items(table)) == 180  # the missing partition was looked up, not added
