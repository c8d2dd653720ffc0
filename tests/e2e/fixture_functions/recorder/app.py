"""Stands where the webhook receivers will: records each API Gateway event it gets and acknowledges it
(Outbound Messages get the SOAP ``<Ack>true</Ack>`` Salesforce waits for)."""

from __future__ import annotations

import threading
from typing import Any

EVENTS: list[dict[str, Any]] = []
_LOCK = threading.Lock()

ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    "<soapenv:Body><notificationsResponse xmlns=\"http://soap.sforce.com/2005/09/outbound\">"
    "<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"
)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with _LOCK:
        EVENTS.append(event)
    if event["rawPath"].endswith("/outbound-message"):
        return {"statusCode": 200, "headers": {"content-type": "text/xml; charset=utf-8"}, "body": ACK}
    return {"statusCode": 204}


def events_for(path: str) -> list[dict[str, Any]]:
    with _LOCK:
        return [event for event in EVENTS if event["rawPath"] == path]
