"""Sending messages to dealsync's SQS queues (10 per call, failures raised so the caller does not ack)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

import boto3

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

SEND_BATCH_LIMIT = 10


class EnqueueError(Exception):
    pass


@cache
def sqs_client() -> SQSClient:
    client: SQSClient = boto3.client("sqs")
    return client


def send_messages(queue_url: str, bodies: Sequence[str], client: SQSClient | None = None) -> int:
    """Send every body; raises EnqueueError naming how many failed (none are silently dropped)."""
    client = client or sqs_client()
    sent = 0
    for start in range(0, len(bodies), SEND_BATCH_LIMIT):
        chunk = bodies[start:start + SEND_BATCH_LIMIT]
        response = client.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(index), "MessageBody": body} for index, body in enumerate(chunk)],
        )
        failed = response.get("Failed", [])
        if failed:
            reasons = sorted({f"{failure['Code']}: {failure.get('Message', '')}" for failure in failed})
            raise EnqueueError(f"{len(failed)} of {len(chunk)} messages not enqueued ({'; '.join(reasons)})")
        sent += len(chunk)
    return sent
