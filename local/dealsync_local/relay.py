"""Salesforce Event Relay, locally: the Salesforce emulator POSTs change events, already in the
EventBridge envelope (``version``, ``id``, ``detail-type``, ``source``, ``account``, ``time``,
``region``, ``resources``, ``detail``), to this sink; the sink plays the partner event bus and hands
each envelope to the targets of every rule on that bus whose ``EventPattern`` matches it, exactly as
EventBridge would (an SQS target receives the envelope as the message body unless the rule transforms
its input).

Patterns are matched with moto's EventBridge matcher; envelopes are delivered as they arrive, not
re-built, so their ``id`` and ``time`` are the emulator's.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from dealsync_local.eventbridge import Delivery, TargetDispatcher, iso_now, matches
from dealsync_local.template import RuleTarget

logger = logging.getLogger("localworld.relay")


@dataclass(frozen=True)
class PatternRule:
    """A rule on the partner bus: a pattern and its targets."""

    name: str
    pattern: dict[str, Any]
    targets: tuple[RuleTarget, ...]


class EventRelay:
    """The partner event bus of the local world."""

    def __init__(self, bus_name: str, rules: Iterable[PatternRule], dispatcher: TargetDispatcher) -> None:
        self.bus_name = bus_name
        self.rules = list(rules)
        self.dispatcher = dispatcher
        self._lock = threading.Lock()
        self.received = 0
        self.matched = 0
        self.unmatched = 0
        self.delivered = 0
        self.errors = 0

    def deliver(self, envelope: Mapping[str, Any]) -> list[Delivery]:
        """Route one envelope to the targets of every matching rule."""
        return self.deliver_many([envelope])

    def deliver_many(self, envelopes: Iterable[Mapping[str, Any]]) -> list[Delivery]:
        """Route envelopes to the targets of every matching rule; a queue gets them in batches."""
        pairs: list[tuple[RuleTarget, Mapping[str, Any]]] = []
        matched = unmatched = 0
        for envelope in envelopes:
            targets = [target for rule in self.rules if matches(rule.pattern, envelope) for target in rule.targets]
            if targets:
                matched += 1
            else:
                unmatched += 1
                logger.debug("event %s (%s) matched no rule", envelope.get("id"), envelope.get("detail-type"))
            pairs.extend((target, envelope) for target in targets)
        deliveries = self.dispatcher.deliver_many(pairs)
        with self._lock:
            self.received += matched + unmatched
            self.matched += matched
            self.unmatched += unmatched
            self.delivered += sum(1 for delivery in deliveries if delivery.error is None)
            self.errors += sum(1 for delivery in deliveries if delivery.error is not None)
        return deliveries

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"bus": self.bus_name, "rules": [rule.name for rule in self.rules], "received": self.received,
                    "matched": self.matched, "unmatched": self.unmatched, "delivered": self.delivered,
                    "errors": self.errors}

    def handle(self, request: Request) -> Response:
        """``POST /__local/event-relay``: one envelope, a JSON array of envelopes, or a PutEvents-style
        ``{"Entries": [{"Source", "DetailType", "Detail", ...}]}``. ``GET`` returns the counters."""
        if request.method == "GET":
            return _json(self.stats())
        if request.method != "POST":
            return _json({"message": "Method Not Allowed"}, 405)
        try:
            body = json.loads(request.get_data(as_text=True) or "null")
            envelopes = _envelopes(body)
        except (ValueError, TypeError, KeyError) as exc:
            return _json({"message": f"not an event envelope: {exc}"}, 400)
        deliveries = self.deliver_many(envelopes)
        return _json({"received": len(envelopes), "deliveries": [delivery.to_json() for delivery in deliveries]})


def _envelopes(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, list):
        items = body
    elif isinstance(body, dict) and "Entries" in body:
        items = [_from_put_events_entry(entry) for entry in body["Entries"]]
    elif isinstance(body, dict):
        items = [body]
    else:
        raise TypeError("expected an object or an array")
    for item in items:
        if not isinstance(item, dict) or "detail-type" not in item or "source" not in item:
            raise ValueError("each event needs 'detail-type' and 'source'")
    return items


def _from_put_events_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    detail = entry.get("Detail", "{}")
    return {
        "version": "0",
        "id": entry.get("Id") or str(uuid.uuid4()),
        "detail-type": entry["DetailType"],
        "source": entry["Source"],
        "account": entry.get("Account", ""),
        "time": entry.get("Time") or iso_now(),
        "region": entry.get("Region", ""),
        "resources": list(entry.get("Resources") or []),
        "detail": json.loads(detail) if isinstance(detail, str) else detail,
    }


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")
