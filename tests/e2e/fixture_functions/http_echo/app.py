"""An HTTP API handler whose behaviour depends on the path: ``/test/echo`` returns the event it got,
``/test/plain`` returns a dict without ``statusCode``, ``/test/boom`` raises, ``/test/slow`` sleeps past
its route's timeout, ``/test/binary`` returns base64 bytes, ``/test/items/{id}`` returns its parameter."""

from __future__ import annotations

import base64
import json
import time
from typing import Any


def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    path = event["rawPath"]
    if path == "/test/plain":
        return {"hello": "world"}
    if path == "/test/boom":
        raise ValueError("boom")
    if path == "/test/slow":
        time.sleep(1.5)
        return {"statusCode": 200, "body": "late"}
    if path == "/test/binary":
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(b"\x00\x01\x02").decode(), "isBase64Encoded": True}
    if path.startswith("/test/items/"):
        return {"statusCode": 200, "body": json.dumps(event.get("pathParameters"))}
    return {
        "statusCode": 201,
        "headers": {"content-type": "application/json", "x-echo": "yes"},
        "cookies": ["session=abc; Path=/", "theme=dark"],
        "body": json.dumps({"event": event, "remaining_ms": context.get_remaining_time_in_millis(),
                            "function_name": context.function_name}),
    }
