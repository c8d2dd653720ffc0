"""The Lambda SQS event source mapping, locally: long-poll a moto queue, call the handler with the
batch event Lambda would build, delete what succeeded, and leave failures for redelivery.

Differences from AWS, on purpose:
* a failed message's visibility is cut to ``retry_backoff_seconds`` (AWS waits out the queue's
  visibility timeout, minutes here), so local retries, and moto's redrive to the dead-letter queue
  after ``maxReceiveCount`` receives, happen in seconds;
* concurrency is a fixed number of pollers per event source (one by default), not Lambda's scaling.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dealsync_local.invoke import Invocation, LocalFunction
from dealsync_local.template import REGION, SqsEventSource

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

logger = logging.getLogger("localworld.pollers")


def _message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    attribute: dict[str, Any] = {}
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    attribute["stringListValues"] = list(value.get("StringListValues") or [])
    binaries = value.get("BinaryListValues") or []
    attribute["binaryListValues"] = [base64.b64encode(item).decode("ascii") for item in binaries]
    attribute["dataType"] = value.get("DataType", "String")
    return attribute


def sqs_record(message: MessageTypeDef | Mapping[str, Any], queue_arn: str, region: str = REGION) -> dict[str, Any]:
    """One record of the SQS event Lambda passes to a handler, from a ReceiveMessage message."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": {
            name: _message_attribute(value) for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody"),
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record.update({"eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region})
    return record


def failed_message_ids(outcome: Invocation, message_ids: list[str], report_batch_item_failures: bool) -> set[str]:
    """Which messages of a batch Lambda would leave on the queue, after the handler's outcome.

    An error or timeout fails the whole batch. With ``ReportBatchItemFailures``: a null or empty
    response or ``batchItemFailures`` succeeds; listed ids fail; a malformed response (not an object,
    an item without ``itemIdentifier``, an empty or unknown id) fails the whole batch."""
    if not outcome.ok:
        return set(message_ids)
    if not report_batch_item_failures:
        return set()
    result = outcome.result
    if result is None:
        return set()
    if not isinstance(result, dict):
        logger.warning("%s returned %r, not a batch response: the whole batch fails", outcome.function, result)
        return set(message_ids)
    failures = result.get("batchItemFailures")
    if not failures:
        return set()
    if not isinstance(failures, list):
        return set(message_ids)
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in message_ids:
            logger.warning("%s returned a bad batchItemFailures entry %r: the whole batch fails",
                           outcome.function, item)
            return set(message_ids)
        failed.add(identifier)
    return failed


@dataclass
class PollerStats:
    received: int = 0
    deleted: int = 0
    failed: int = 0
    batches: int = 0
    last_error: str | None = None


class SqsPoller:
    """One poller thread of one SQS event source."""

    def __init__(
        self,
        *,
        function: LocalFunction,
        source: SqsEventSource,
        queue_url: str,
        queue_arn: str,
        sqs_factory: Callable[[], SQSClient],
        retry_backoff_seconds: int = 1,
        wait_seconds: int = 1,
        region: str = REGION,
        index: int = 0,
    ) -> None:
        self.function = function
        self.source = source
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.retry_backoff_seconds = retry_backoff_seconds
        self.wait_seconds = wait_seconds
        self.region = region
        self.name = f"{function.logical_id}.{source.event_name}#{index}"
        self.stats = PollerStats()
        self.busy = False
        self._sqs = sqs_factory()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"poller-{self.name}", daemon=True)

    def start(self) -> SqsPoller:
        self._thread.start()
        return self

    def request_stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self._receive_batch()
                if messages:
                    self.busy = True
                    try:
                        self.process(messages)
                    finally:
                        self.busy = False
            except Exception as exc:  # the queue may be gone (moto reset) or the server stopping
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                logger.debug("poller %s: %s", self.name, self.stats.last_error)
                self._stop.wait(1.0)

    def _receive(self, count: int, wait: int) -> list[MessageTypeDef]:
        response = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(count, 10)),
            WaitTimeSeconds=wait,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages") or [])

    def _receive_batch(self) -> list[MessageTypeDef]:
        """Up to ``BatchSize`` messages: the first receive long-polls; with a batching window, keep
        gathering until the batch is full or the window closes."""
        messages = self._receive(self.source.batch_size, self.wait_seconds)
        if not messages or self.source.batching_window_seconds <= 0:
            return messages
        deadline = time.monotonic() + self.source.batching_window_seconds
        while len(messages) < self.source.batch_size and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            received = self._receive(self.source.batch_size - len(messages), min(1, int(remaining)))
            messages += received
            if not received and int(remaining) == 0:
                time.sleep(min(remaining, 0.1))  # an empty queue: wait a little; a busy one is read back to back
        return messages

    def process(self, messages: list[MessageTypeDef]) -> Invocation:
        """Invoke the function with one batch and settle each message."""
        event = {"Records": [sqs_record(message, self.queue_arn, self.region) for message in messages]}
        self.stats.received += len(messages)
        self.stats.batches += 1
        outcome = self.function.invoke(event)
        ids = [message["MessageId"] for message in messages]
        failed = failed_message_ids(outcome, ids, self.source.report_batch_item_failures)
        succeeded = [message for message in messages if message["MessageId"] not in failed]
        retried = [message for message in messages if message["MessageId"] in failed]
        for chunk in _chunks(succeeded, 10):
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]} for n, message in enumerate(chunk)],
            )
        for chunk in _chunks(retried, 10):
            self._sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": message["ReceiptHandle"],
                          "VisibilityTimeout": self.retry_backoff_seconds} for n, message in enumerate(chunk)],
            )
        self.stats.deleted += len(succeeded)
        self.stats.failed += len(retried)
        if retried:
            logger.info("%s: %d of %d messages left for retry", self.name, len(retried), len(messages))
        return outcome


def _chunks(items: list[MessageTypeDef], size: int) -> Iterable[list[MessageTypeDef]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class PollerGroup:
    """All pollers of the world, started and stopped together."""

    def __init__(self, pollers: Iterable[SqsPoller]) -> None:
        self.pollers = list(pollers)

    def start(self) -> PollerGroup:
        for poller in self.pollers:
            poller.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        for poller in self.pollers:
            poller.request_stop()
        deadline = time.monotonic() + timeout
        for poller in self.pollers:
            poller.join(max(0.0, deadline - time.monotonic()))

    @property
    def busy(self) -> bool:
        return any(poller.busy for poller in self.pollers)

    def queue_urls(self) -> set[str]:
        return {poller.queue_url for poller in self.pollers}

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {"name": poller.name, "queue_url": poller.queue_url, "batch_size": poller.source.batch_size,
             "alive": poller.alive, "busy": poller.busy, **poller.stats.__dict__}
            for poller in self.pollers
        ]
