"""App webhooks (reference §5): events built from the store's changes per subscription, delivered
from a background thread in batches of at most 100, signed (v1, v2, v3), retried on failure with
backoff, optionally shuffled and duplicated."""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import itertools
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import requests

from dealsync_local.hubspot.common import Change, ObjectType, parse_timestamp

# --- signatures ----------------------------------------------------------------------------------

# v3: "decode any of the URL-encoded characters listed in the table below" (reference §5.5).
V3_DECODED = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'", "%28": "(",
              "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}


def normalize_v3_uri(uri: str) -> str:
    out = uri
    for encoded, decoded in V3_DECODED.items():
        out = out.replace(encoded, decoded).replace(encoded.lower(), decoded)
    return out


def sign_v1(client_secret: str, body: str) -> str:
    """``X-HubSpot-Signature`` v1: hex SHA-256 of client secret + body."""
    return hashlib.sha256(f"{client_secret}{body}".encode()).hexdigest()


def sign_v2(client_secret: str, method: str, uri: str, body: str) -> str:
    """``X-HubSpot-Signature`` v2: hex SHA-256 of client secret + method + URI + body."""
    return hashlib.sha256(f"{client_secret}{method}{uri}{body}".encode()).hexdigest()


def sign_v3(client_secret: str, method: str, uri: str, body: str, timestamp: str | int) -> str:
    """``X-HubSpot-Signature-v3``: base64 HMAC-SHA256 (key: client secret) of method + URI + body +
    timestamp (epoch milliseconds, also sent as ``X-HubSpot-Request-Timestamp``)."""
    message = f"{method}{normalize_v3_uri(uri)}{body}{timestamp}".encode()
    return base64.b64encode(hmac.new(client_secret.encode(), message, hashlib.sha256).digest()).decode()


def signature_headers(version: int, client_secret: str, method: str, uri: str, body: str,
                      timestamp_ms: int) -> dict[str, str]:
    """The headers HubSpot sends for a signature version: CRM webhooks always carry the v1 signature
    (``X-HubSpot-Signature-Version: v1``); version 3 adds the v3 signature and its timestamp."""
    if version == 2:
        return {"X-HubSpot-Signature": sign_v2(client_secret, method, uri, body),
                "X-HubSpot-Signature-Version": "v2"}
    headers = {"X-HubSpot-Signature": sign_v1(client_secret, body), "X-HubSpot-Signature-Version": "v1"}
    if version == 3:
        headers["X-HubSpot-Signature-v3"] = sign_v3(client_secret, method, uri, body, timestamp_ms)
        headers["X-HubSpot-Request-Timestamp"] = str(timestamp_ms)
    return headers


# --- subscriptions -------------------------------------------------------------------------------

OBJECTS = ("deal", "contact", "company")
ACTIONS = ("creation", "deletion", "propertyChange", "associationChange", "merge", "restore")
DEFAULT_SUBSCRIPTIONS = ("deal.creation", "deal.propertyChange", "deal.deletion", "deal.associationChange",
                         "deal.merge", "deal.restore")


@dataclass(frozen=True)
class Subscription:
    id: int
    event_type: str  # "deal.propertyChange"
    property_name: str | None = None  # propertyChange only; None = every property
    active: bool = True

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "eventType": self.event_type, "active": self.active}
        if self.property_name:
            body["propertyName"] = self.property_name
        return body


def parse_subscriptions(raw: Iterable[Any]) -> list[Subscription]:
    """Items: ``"deal.creation"``, ``"deal.propertyChange:dealstage"`` or
    ``{"eventType": ..., "propertyName": ..., "active": ..., "id": ...}``."""
    out: list[Subscription] = []
    for position, item in enumerate(raw):
        if isinstance(item, str):
            event_type, _, prop = item.partition(":")
            data: dict[str, Any] = {"eventType": event_type, "propertyName": prop or None}
        elif isinstance(item, dict):
            data = item
        else:
            raise ValueError(f"invalid webhook subscription {item!r}")
        event_type = str(data.get("eventType") or data.get("subscriptionType") or "")
        obj, _, action = event_type.partition(".")
        if obj not in OBJECTS or action not in ACTIONS:
            raise ValueError(f"unknown webhook subscription type {event_type!r}")
        property_name = data.get("propertyName")
        if property_name and action != "propertyChange":
            raise ValueError(f"propertyName only applies to propertyChange subscriptions ({event_type})")
        out.append(Subscription(int(data.get("id") or 1001 + position), event_type, property_name or None,
                                bool(data.get("active", True))))
    return out


@dataclass
class WebhookSettings:
    app_id: int
    portal_id: int
    client_secret: str
    target_url: str | None = None
    signature_version: int = 3
    subscriptions: list[Subscription] = field(default_factory=lambda: parse_subscriptions(DEFAULT_SUBSCRIPTIONS))
    batch_size: int = 100
    flush_ms: float = 100.0
    max_retries: int = 10
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 600.0
    timeout_seconds: float = 5.0
    shuffle: bool = False
    duplicate_rate: float = 0.0
    seed: int | None = None
    ca_file: str | None = None
    property_change_on_create: bool = True


@dataclass
class _Batch:
    id: int
    events: list[dict[str, Any]]
    attempt: int = 0
    generation: int = 0


class WebhookDispatcher:
    """Turns changes into events and delivers them. ``flush()`` / ``wait_idle()`` let tests wait."""

    WORKERS = 10  # HubSpot's concurrency limit per installing account (reference §5.3)

    def __init__(self, settings: WebhookSettings,
                 property_type: Callable[[ObjectType, str], str | None] | None = None) -> None:
        self.settings = settings
        self.property_type = property_type
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._closed = False
        self._event_ids = itertools.count(1_000_001)
        self._batch_ids = itertools.count(1)
        self._sequence = itertools.count()
        self.reset()

    # --- state -----------------------------------------------------------------------------------
    def reset(self) -> None:
        with self._cond:
            self._generation = getattr(self, "_generation", 0) + 1
            self._pending: list[dict[str, Any]] = []
            self._first_pending = 0.0
            self._force = False
            self._retries: list[tuple[float, int, _Batch]] = []
            self._inflight = 0
            self._rng = random.Random(self.settings.seed)
            self.published: deque[dict[str, Any]] = deque(maxlen=10_000)
            self.deliveries: deque[dict[str, Any]] = deque(maxlen=1_000)
            self.counters = {"events_published": 0, "batches_sent": 0, "attempts": 0, "batches_delivered": 0,
                             "events_delivered": 0, "batches_failed": 0, "events_failed": 0,
                             "events_dropped_no_target": 0, "duplicates_added": 0}
            self._cond.notify_all()

    def configure(self, **changes: Any) -> None:
        with self._cond:
            self.settings = replace(self.settings, **changes)
            if "seed" in changes:
                self._rng = random.Random(self.settings.seed)
            self._cond.notify_all()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {**self.counters, "pending": len(self._pending), "retrying": len(self._retries),
                    "inflight": self._inflight,
                    "target_url": self.settings.target_url,
                    "signature_version": self.settings.signature_version,
                    "subscriptions": [s.to_json() for s in self.settings.subscriptions],
                    "recent_deliveries": list(self.deliveries)[-20:]}

    # --- events ----------------------------------------------------------------------------------
    def publish(self, changes: list[Change]) -> None:
        events = [event for change in changes for event in self.events_for(change)]
        if not events:
            return
        with self._cond:
            if not self._pending:
                self._first_pending = time.monotonic()
            self._pending.extend(events)
            self.published.extend(events)
            self.counters["events_published"] += len(events)
            self._ensure_thread()
            self._cond.notify_all()

    def events_for(self, change: Change) -> list[dict[str, Any]]:
        settings = self.settings
        event_type = f"{change.object_type.singular}.{change.kind}"
        if (change.kind == "propertyChange" and change.extra.get("onCreate")
                and not settings.property_change_on_create):
            return []
        out = []
        for sub in settings.subscriptions:
            if not sub.active or sub.event_type != event_type:
                continue
            if change.kind == "propertyChange" and sub.property_name not in (None, change.property_name):
                continue
            event: dict[str, Any] = {
                "eventId": next(self._event_ids), "subscriptionId": sub.id, "portalId": settings.portal_id,
                "appId": settings.app_id, "occurredAt": change.occurred_ms, "subscriptionType": event_type,
                "attemptNumber": 0,
            }
            if change.kind != "associationChange":
                event["objectId"] = change.object_id
            if change.kind == "propertyChange":
                event["propertyName"] = change.property_name
                event["propertyValue"] = self._event_value(change)
            if change.kind == "creation":
                event["changeFlag"] = "CREATED"
            event["changeSource"] = change.source.change_source
            if change.source.source_id:
                event["sourceId"] = change.source.source_id
            event.update({k: v for k, v in change.extra.items() if k != "onCreate"})
            out.append(event)
        return out

    def _event_value(self, change: Change) -> str:
        """Webhooks carry date and datetime values as epoch milliseconds."""
        value = change.property_value or ""
        kind = self.property_type(change.object_type, change.property_name or "") if self.property_type else None
        if value and kind in ("date", "datetime"):
            moment = parse_timestamp(value)
            if moment is not None:
                return str(moment)
        return value

    # --- delivery --------------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None and not self._closed:
            self._executor = ThreadPoolExecutor(max_workers=self.WORKERS, thread_name_prefix="hubspot-webhook")
            self._thread = threading.Thread(target=self._loop, name="hubspot-webhooks", daemon=True)
            self._thread.start()

    def _cut(self) -> list[_Batch]:
        settings = self.settings
        events, self._pending = self._pending, []
        if settings.shuffle:
            self._rng.shuffle(events)
        if settings.duplicate_rate > 0:
            again = [dict(e, _duplicate=True) for e in events
                     if not e.get("_duplicate") and self._rng.random() < settings.duplicate_rate]
            if again:
                self._pending = again
                self._first_pending = time.monotonic()
                self.counters["duplicates_added"] += len(again)
        size = max(1, min(100, settings.batch_size))
        return [_Batch(next(self._batch_ids), [{k: v for k, v in e.items() if k != "_duplicate"}
                                               for e in events[i:i + size]], generation=self._generation)
                for i in range(0, len(events), size)]

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                now = time.monotonic()
                flush_s = self.settings.flush_ms / 1000.0
                ready: list[_Batch] = []
                if self._pending and (self._force or now - self._first_pending >= flush_s):
                    ready.extend(self._cut())
                    self._force = False
                while self._retries and self._retries[0][0] <= now:
                    ready.append(heapq.heappop(self._retries)[2])
                if not ready:
                    waits = []
                    if self._pending:
                        waits.append(max(0.0, self._first_pending + flush_s - now))
                    if self._retries:
                        waits.append(max(0.0, self._retries[0][0] - now))
                    self._cond.wait(timeout=min(waits) if waits else None)
                    continue
                self._inflight += len(ready)
                executor = self._executor
            assert executor is not None
            for batch in ready:
                executor.submit(self._deliver, batch)

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no proxies, and REQUESTS_CA_BUNDLE must not override verify
            self._local.session = session
        return session

    def _deliver(self, batch: _Batch) -> None:
        settings = self.settings
        status: int | None = None
        error: str | None = None
        ok = False
        url = settings.target_url
        if url:
            events = [dict(e, attemptNumber=batch.attempt) for e in batch.events]
            body = json.dumps(events, separators=(",", ":"))
            timestamp = int(time.time() * 1000)
            headers = {"Content-Type": "application/json",
                       "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) - WebhooksExecutorDaemon",
                       **signature_headers(settings.signature_version, settings.client_secret, "POST", url, body,
                                           timestamp)}
            verify: bool | str = settings.ca_file or True
            try:
                response = self._session().post(url, data=body.encode(), headers=headers,
                                                timeout=settings.timeout_seconds, verify=verify)
                status = response.status_code
                ok = 200 <= status < 300
                response.close()
            except requests.RequestException as exc:
                error = f"{type(exc).__name__}: {exc}"
        with self._cond:
            self._inflight -= 1
            if batch.generation != self._generation:
                self._cond.notify_all()
                return
            if not url:
                self.counters["events_dropped_no_target"] += len(batch.events)
                self._cond.notify_all()
                return
            self.counters["attempts"] += 1
            if batch.attempt == 0:
                self.counters["batches_sent"] += 1
            self.deliveries.append({"batch": batch.id, "attempt": batch.attempt, "events": len(batch.events),
                                    "status": status, "error": error, "url": url, "at": time.time()})
            if ok:
                self.counters["batches_delivered"] += 1
                self.counters["events_delivered"] += len(batch.events)
            elif batch.attempt < settings.max_retries:
                batch.attempt += 1
                delay = min(settings.backoff_max_seconds, settings.backoff_seconds * 2 ** (batch.attempt - 1))
                delay *= 1 + 0.1 * self._rng.random()  # "some randomization" (reference §5.4)
                heapq.heappush(self._retries, (time.monotonic() + delay, next(self._sequence), batch))
            else:
                self.counters["batches_failed"] += 1
                self.counters["events_failed"] += len(batch.events)
            self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Send what is pending now (without waiting for the batching interval), then wait_idle."""
        with self._cond:
            self._force = True
            self._cond.notify_all()
        return self.wait_idle(timeout)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is pending, retrying or in flight; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._pending and not self._retries and self._inflight == 0, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
