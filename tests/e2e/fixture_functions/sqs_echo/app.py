"""An SQS handler with partial batch failures: a record whose body is ``{"fail": true}`` is reported in
``batchItemFailures``; ``{"raise": true}`` fails the whole invocation. Every event is recorded."""

from __future__ import annotations

import json
import threading
from typing import Any

EVENTS: list[dict[str, Any]] = []
CONTEXTS: list[Any] = []
_LOCK = threading.Lock()


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with _LOCK:
        EVENTS.append(event)
        CONTEXTS.append(context)
    failures = []
    for record in event["Records"]:
        try:
            body = json.loads(record["body"])
        except ValueError:
            body = {}
        if isinstance(body, dict) and body.get("raise"):
            raise RuntimeError("asked to raise")
        if isinstance(body, dict) and body.get("fail"):
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


def bodies() -> list[str]:
    """Every record body received so far, in order."""
    with _LOCK:
        return [record["body"] for event in EVENTS for record in event["Records"]]
