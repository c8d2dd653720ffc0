"""The local world's corrections to moto keep moto's behaviour (dealsync_local.moto_patches)."""

from __future__ import annotations

import uuid

import boto3
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
