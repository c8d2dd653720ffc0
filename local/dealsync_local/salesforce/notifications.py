"""Outbound Messages and change events, delivered from background threads.

Outbound Messages (reference §4a): an Opportunity create or update queues a notification for the
record; a pending notification is not duplicated, and the sObject fields are read when the message
is sent ("only the latest data is delivered"). Up to 100 notifications go in one SOAP 1.1 message,
retried with exponential backoff until the listener answers HTTP 200 with ``<Ack>true</Ack>``, and
dropped once older than the maximum age (24 h in Salesforce).

Change events (reference §4b, §4c): each write request is one transaction; its changes become
``<Entity>ChangeEvent`` messages in the Event Relay → EventBridge envelope, identical changes merged
into one event with several ``recordIds``, and are POSTed as a JSON array of up to 20 events (what one
PutPartnerEvents request carries), in commit order, each retried until the sink answers 2xx.

Both channels are at-least-once in Salesforce, and Event Relay does not promise order across events.
For reliability tests, ``duplicate_rate`` re-delivers a delivered notification (Outbound Messages with
the same notification id, as Salesforce does when it misses the ack; change events with the same event
id and replay id) and ``shuffle`` delivers queued change events in random order; ``seed`` makes both
reproducible. Off by default.
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import hashlib
import itertools
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import requests
from defusedxml import ElementTree

from dealsync_local.salesforce.ids import OUTBOUND_NOTIFICATION_PREFIX, IdFactory
from dealsync_local.salesforce.schema import FieldDef
from dealsync_local.salesforce.store import Change
from dealsync_local.salesforce.values import soap_value

DEFAULT_OUTBOUND_FIELDS = [
    "Id", "Name", "StageName", "CloseDate", "Amount", "OwnerId", "AccountId", "LastModifiedById",
    "SystemModstamp", "HubSpot_Deal_Id__c",
]
CDC_ENTITIES = ["Opportunity", "OpportunityContactRole", "Account", "Contact"]
GAP_TYPES = frozenset({"GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW"})
MAX_NOTIFICATIONS_PER_MESSAGE = 100
# Event Relay writes to EventBridge with PutPartnerEvents, at most 20 entries a request (AWS API reference).
MAX_EVENTS_PER_RELAY_REQUEST = 20


@dataclass
class NotificationSettings:
    enabled: bool = True
    outbound_message_enabled: bool = True
    outbound_message_url: str | None = None
    outbound_message_fields: list[str] = field(default_factory=lambda: list(DEFAULT_OUTBOUND_FIELDS))
    outbound_message_exclude_integration_user: bool = False
    outbound_message_api_version: str = "59.0"
    change_events_enabled: bool = True
    change_event_url: str | None = None
    change_event_entities: list[str] = field(default_factory=lambda: list(CDC_ENTITIES))
    relay_id: str = ""
    aws_account_id: str = "123456789012"
    aws_region: str = "us-east-1"
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 120.0
    max_age_seconds: float = 86400.0
    delivery_timeout_seconds: float = 10.0
    callback_verify: bool | str = True
    shuffle: bool = False
    duplicate_rate: float = 0.0
    seed: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


SnapshotFn = Callable[[Sequence[str], Sequence[str]], dict[str, list[tuple[FieldDef, Any]]]]


@dataclass
class _OmItem:
    notification_id: str
    record_id: str
    created: float
    next_at: float
    attempts: int = 0
    duplicate: bool = False  # a re-delivery injected by ``duplicate_rate`` (never duplicated again)


@dataclass
class _CdcItem:
    envelope: dict[str, Any]
    created: float
    next_at: float
    attempts: int = 0
    duplicate: bool = False


class Notifier:
    def __init__(self, *, settings: NotificationSettings, ids: IdFactory, snapshot: SnapshotFn,
                 org_id: Callable[[], str], instance_url: Callable[[], str],
                 action_id: str, now: Callable[[], dt.datetime] | None = None) -> None:
        self.now = now or (lambda: dt.datetime.now(dt.UTC))
        self.settings = settings
        self.ids = ids
        self.snapshot = snapshot
        self.org_id = org_id
        self.instance_url = instance_url
        self.action_id = action_id
        self._cond = threading.Condition()
        self._om_pending: dict[str, _OmItem] = {}
        self._om_in_flight: dict[str, _OmItem] = {}
        self._cdc_queue: collections.deque[_CdcItem] = collections.deque()
        self._cdc_in_flight = False
        self._generation = 0
        self._stopped = False
        self._threads: list[threading.Thread] = []
        self._commit_numbers = itertools.count(1_082_985_383_811)
        self._replay_ids = itertools.count(32_859)
        self.log: collections.deque[dict[str, Any]] = collections.deque(maxlen=500)
        self.recent_events: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self._http = requests.Session()
        self._http.trust_env = False
        self._rng = random.Random()
        self._rng_seed: object = object()  # re-seeded whenever settings.seed changes
        self.duplicates_added = 0

    # --- lifecycle -------------------------------------------------------------------------------
    def _ensure_threads(self) -> None:
        if self._threads or self._stopped:
            return
        for target, name in ((self._om_loop, "sf-outbound-messages"), (self._cdc_loop, "sf-change-events")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        self._http.close()

    def clear(self) -> None:
        with self._cond:
            self._generation += 1
            self._om_pending.clear()
            self._om_in_flight.clear()
            self._cdc_queue.clear()
            self._cdc_in_flight = False
            self.log.clear()
            self.recent_events.clear()
            self._cond.notify_all()

    def pending(self) -> dict[str, int]:
        with self._cond:
            return {
                "outbound_messages": len(self._om_pending) + len(self._om_in_flight),
                "change_events": len(self._cdc_queue),
            }

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued notification has been delivered (or dropped)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._om_pending or self._om_in_flight or self._cdc_queue:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def _random(self) -> random.Random:
        """The generator for shuffles and duplicates (call under ``_cond``), seeded from the settings."""
        if self._rng_seed != self.settings.seed:
            self._rng_seed = self.settings.seed
            self._rng = random.Random(self.settings.seed)
        return self._rng

    def _duplicate_now(self, already: bool) -> bool:
        rate = self.settings.duplicate_rate
        return not already and rate > 0 and self._random().random() < rate

    def _backoff(self, attempts: int) -> float:
        return float(min(self.settings.retry_base_seconds * 2 ** (attempts - 1), self.settings.retry_max_seconds))

    # --- enqueueing ------------------------------------------------------------------------------
    def publish(self, changes: Sequence[Change], *, change_origin: str, integration_user_id: str) -> None:
        settings = self.settings
        if not settings.enabled or not changes:
            return
        if settings.outbound_message_enabled and settings.outbound_message_url:
            record_ids = [
                c.record_id for c in changes
                if c.entity == "Opportunity" and c.change_type in ("CREATE", "UPDATE")
                and not (settings.outbound_message_exclude_integration_user and c.user_id == integration_user_id)
            ]
            if record_ids:
                self.enqueue_outbound(record_ids)
        if settings.change_events_enabled:
            wanted = [c for c in changes if c.entity in settings.change_event_entities]
            if wanted:
                self.enqueue_events(self.build_events(wanted, change_origin))

    def enqueue_outbound(self, record_ids: Sequence[str]) -> None:
        now = time.monotonic()
        with self._cond:
            for record_id in record_ids:
                if record_id in self._om_pending:
                    continue
                self._om_pending[record_id] = _OmItem(self.ids.next(OUTBOUND_NOTIFICATION_PREFIX),
                                                      record_id, now, now)
            self._ensure_threads()
            self._cond.notify_all()

    def enqueue_events(self, envelopes: Sequence[dict[str, Any]]) -> None:
        now = time.monotonic()
        with self._cond:
            self.recent_events.extend(envelopes)
            if self.settings.change_event_url:
                self._cdc_queue.extend(_CdcItem(envelope, now, now) for envelope in envelopes)
                self._ensure_threads()
            self._cond.notify_all()

    # --- change events ---------------------------------------------------------------------------
    def build_events(self, changes: Sequence[Change], change_origin: str) -> list[dict[str, Any]]:
        """One transaction's events; identical changes are merged into one event with several ids."""
        commit = self.now()
        commit_ms = int(commit.timestamp() * 1000)
        transaction_key = str(uuid.uuid4())
        commit_number = next(self._commit_numbers)
        merged: dict[str, tuple[Change, list[str]]] = {}
        for change in changes:
            key = json.dumps([change.entity, change.change_type, change.user_id, change.changed_fields,
                              change.nulled_fields, change.payload], sort_keys=True, default=str)
            if key in merged:
                merged[key][1].append(change.record_id)
            else:
                merged[key] = (change, [change.record_id])
        events = []
        for sequence, (change, record_ids) in enumerate(merged.values(), start=1):
            header = {
                "entityName": change.entity,
                "recordIds": record_ids,
                "changeType": change.change_type,
                "changeOrigin": change_origin,
                "transactionKey": transaction_key,
                "sequenceNumber": sequence,
                "commitTimestamp": commit_ms,
                "commitNumber": commit_number,
                "commitUser": change.user_id,
                "nulledFields": list(change.nulled_fields),
                "diffFields": [],
                "changedFields": list(change.changed_fields),
            }
            events.append(self._envelope(change.entity, {"ChangeEventHeader": header, **change.payload}, commit))
        return events

    def gap_events(self, entity: str, record_ids: Sequence[str], change_type: str,
                   user_id: str) -> list[dict[str, Any]]:
        if change_type not in GAP_TYPES:
            raise ValueError(f"change_type must be one of {sorted(GAP_TYPES)}")
        commit = self.now()
        header = {
            "entityName": entity,
            "recordIds": [] if change_type == "GAP_OVERFLOW" else list(record_ids),
            "changeType": change_type,
            "changeOrigin": "",
            "transactionKey": str(uuid.uuid4()),
            "sequenceNumber": 1,
            "commitTimestamp": int(commit.timestamp() * 1000),
            "commitNumber": next(self._commit_numbers),
            "commitUser": user_id,
            "nulledFields": [],
            "diffFields": [],
            "changedFields": [],
        }
        return [self._envelope(entity, {"ChangeEventHeader": header}, commit)]

    def _envelope(self, entity: str, payload: dict[str, Any], commit: dt.datetime) -> dict[str, Any]:
        settings = self.settings
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": f"{entity}ChangeEvent",
            "source": f"aws.partner/salesforce.com/{self.org_id()}/{settings.relay_id}",
            "account": settings.aws_account_id,
            "time": commit.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": settings.aws_region,
            "resources": [],
            "detail": {
                "payload": payload,
                "schemaId": schema_id(self.org_id(), entity),
                "event": {"replayId": next(self._replay_ids)},
            },
        }

    def _next_cdc_at(self) -> float:
        """In commit order the head blocks the queue (while it is retried); shuffled, any item may go."""
        if self.settings.shuffle:
            return min(entry.next_at for entry in self._cdc_queue)
        return self._cdc_queue[0].next_at

    def _next_cdc_items(self) -> list[_CdcItem]:
        """The events of the next relay request: up to ``MAX_EVENTS_PER_RELAY_REQUEST`` that are due. In commit
        order, the head and the due events right behind it; shuffled, any due events, in random order."""
        now = time.monotonic()
        if not self.settings.shuffle:
            items: list[_CdcItem] = []
            for entry in self._cdc_queue:
                if entry.next_at > now or len(items) == MAX_EVENTS_PER_RELAY_REQUEST:
                    break
                items.append(entry)
            return items
        due = [entry for entry in self._cdc_queue if entry.next_at <= now]
        return self._random().sample(due, min(len(due), MAX_EVENTS_PER_RELAY_REQUEST))

    def _cdc_loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if self._cdc_queue:
                        wait = self._next_cdc_at() - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if self._stopped:
                    return
                batch = self._next_cdc_items()
                generation = self._generation
                url = self.settings.change_event_url
                self._cdc_in_flight = True
            body = json.dumps([item.envelope for item in batch]).encode()
            status, error = self._post(url, body, "application/json")
            ok = status is not None and 200 <= status < 300
            with self._cond:
                self._cdc_in_flight = False
                if generation != self._generation:
                    continue
                now = time.monotonic()
                for item in batch:
                    self._settle_cdc_item(item, url, ok, status, error, now)
                self._cond.notify_all()

    def _settle_cdc_item(self, item: _CdcItem, url: str | None, ok: bool, status: int | None, error: str | None,
                         now: float) -> None:
        """After a relay request: drop a delivered (or expired) event, re-queue a duplicate, or back off."""
        if not any(entry is item for entry in self._cdc_queue):
            return
        item.attempts += 1
        dropped = not url or now - item.created > self.settings.max_age_seconds
        if ok or dropped:
            self._cdc_queue = collections.deque(entry for entry in self._cdc_queue if entry is not item)
            if ok and self._duplicate_now(item.duplicate):
                self.duplicates_added += 1
                self._cdc_queue.append(_CdcItem(item.envelope, now, now + self._random().random(), duplicate=True))
        else:
            item.next_at = now + self._backoff(item.attempts)
        self.log.append({
            "kind": "change_event", "url": url, "status": status, "error": error,
            "delivered": ok, "dropped": dropped and not ok, "attempt": item.attempts,
            "detail-type": item.envelope["detail-type"],
            "recordIds": item.envelope["detail"]["payload"]["ChangeEventHeader"]["recordIds"],
        })

    # --- outbound messages -----------------------------------------------------------------------
    def _om_loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    now = time.monotonic()
                    due = [item for item in self._om_pending.values() if item.next_at <= now]
                    if due:
                        break
                    if self._om_pending:
                        self._cond.wait(min(item.next_at for item in self._om_pending.values()) - now)
                    else:
                        self._cond.wait()
                if self._stopped:
                    return
                due.sort(key=lambda item: (item.next_at, item.created))
                if self.settings.shuffle:
                    self._random().shuffle(due)
                batch = due[:MAX_NOTIFICATIONS_PER_MESSAGE]
                for item in batch:
                    del self._om_pending[item.record_id]
                    self._om_in_flight[item.notification_id] = item
                generation = self._generation
                url = self.settings.outbound_message_url
            ok, status, error = False, None, None
            if url:
                body = self.render_outbound([(i.notification_id, i.record_id) for i in batch])
                status, error, text = self._post_text(url, body.encode(), "text/xml; charset=utf-8")
                ok = status == 200 and acknowledged(text)
            with self._cond:
                if generation != self._generation:
                    continue
                now = time.monotonic()
                retried = 0
                for item in batch:
                    self._om_in_flight.pop(item.notification_id, None)
                    item.attempts += 1
                    if ok and item.record_id not in self._om_pending and self._duplicate_now(item.duplicate):
                        # Delivered, but sent again with the same notification id (a missed ack).
                        self.duplicates_added += 1
                        item.duplicate = True
                        item.next_at = now + self._random().random()
                        self._om_pending[item.record_id] = item
                        continue
                    if ok or not url or now - item.created > self.settings.max_age_seconds:
                        continue
                    if item.record_id in self._om_pending:
                        continue  # a newer notification will carry the latest data
                    item.next_at = now + self._backoff(item.attempts)
                    self._om_pending[item.record_id] = item
                    retried += 1
                self.log.append({
                    "kind": "outbound_message", "url": url, "status": status, "error": error,
                    "delivered": ok, "notifications": len(batch), "retrying": retried,
                    "attempt": max(item.attempts for item in batch),
                    "recordIds": [item.record_id for item in batch],
                })
                self._cond.notify_all()

    def render_outbound(self, notifications: Sequence[tuple[str, str]]) -> str:
        fields = list(dict.fromkeys(["Id", *self.settings.outbound_message_fields]))
        snapshots = self.snapshot([record_id for _, record_id in notifications], fields)
        org_id = self.org_id()
        base = self.instance_url().rstrip("/")
        version = self.settings.outbound_message_api_version
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
            " <soapenv:Body>\n"
            '  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">\n'
            f"   <OrganizationId>{org_id}</OrganizationId>\n"
            f"   <ActionId>{self.action_id}</ActionId>\n"
            '   <SessionId xsi:nil="true"/>\n'
            f"   <EnterpriseUrl>{escape(base)}/services/Soap/c/{version}/{org_id[:15]}</EnterpriseUrl>\n"
            f"   <PartnerUrl>{escape(base)}/services/Soap/u/{version}/{org_id[:15]}</PartnerUrl>\n"
        ]
        for notification_id, record_id in notifications:
            values = snapshots.get(record_id)
            if values is None:
                continue
            parts.append(
                "   <Notification>\n"
                f"    <Id>{notification_id}</Id>\n"
                '    <sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">\n'
            )
            for fdef, value in values:
                if value is None:
                    parts.append(f'     <sf:{fdef.name} xsi:nil="true"/>\n')
                else:
                    parts.append(f"     <sf:{fdef.name}>{escape(soap_value(fdef, value))}</sf:{fdef.name}>\n")
            parts.append("    </sObject>\n   </Notification>\n")
        parts.append("  </notifications>\n </soapenv:Body>\n</soapenv:Envelope>\n")
        return "".join(parts)

    # --- HTTP ------------------------------------------------------------------------------------
    def _post(self, url: str | None, body: bytes, content_type: str) -> tuple[int | None, str | None]:
        status, error, _ = self._post_text(url, body, content_type)
        return status, error

    def _post_text(self, url: str | None, body: bytes, content_type: str) -> tuple[int | None, str | None, str]:
        if not url:
            return None, "no target configured", ""
        headers = {"Content-Type": content_type, "User-Agent": "Salesforce Emulator (dealsync)"}
        if content_type.startswith("text/xml"):
            headers["SOAPAction"] = '""'
        try:
            response = self._http.post(url, data=body, headers=headers,
                                       timeout=self.settings.delivery_timeout_seconds,
                                       verify=self.settings.callback_verify)
        except requests.RequestException as exc:
            return None, f"{type(exc).__name__}: {exc}", ""
        return response.status_code, None, response.text


def acknowledged(text: str) -> bool:
    """True when a SOAP response carries ``<Ack>true</Ack>``."""
    try:
        root = ElementTree.fromstring(text.encode())
    except Exception:  # any unparseable answer is a failed delivery
        return False
    for element in root.iter():
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag.rsplit("}", 1)[-1] == "Ack":
            return (element.text or "").strip().lower() == "true"
    return False


def schema_id(org_id: str, entity: str) -> str:
    digest = hashlib.sha256(f"{org_id}/{entity}ChangeEvent".encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def settings_from(values: Mapping[str, Any], current: NotificationSettings) -> NotificationSettings:
    known = set(current.to_json())
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown notification settings: {sorted(unknown)}")
    defaults = current.to_json()
    for key, value in values.items():
        expected = defaults[key]
        if key in ("outbound_message_url", "change_event_url"):
            ok = value is None or isinstance(value, str)
        elif key == "callback_verify":
            ok = isinstance(value, bool | str)
        elif key == "seed":
            ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
        elif key == "duplicate_rate":
            ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1
        elif isinstance(expected, bool):
            ok = isinstance(value, bool)
        elif isinstance(expected, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        elif isinstance(expected, list):
            ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ValueError(f"invalid value for {key}: {value!r}")
    return NotificationSettings(**{**defaults, **values})
