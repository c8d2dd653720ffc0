"""The hostile-input corpus of the queue entry points: Event Relay envelopes (EventBridge → the Salesforce
changes queue) and the bodies each worker can find on its queue.

``malformed`` bodies can never become valid: the worker reports them (batch item failure, cause logged with
the message id), its neighbours in the batch are unaffected, nothing crashes, and after the queue's finite
receives they rest in its DLQ, body intact, for an operator (DESIGN §3: every queue has a DLQ with a finite
receive count). ``handled`` bodies are hostile but legitimate (records that do not exist, another org's
events, echoes, wildcards): acknowledged on their first delivery, no DLQ, no sync state changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from tests.hostile.corpus import (
    DROP,
    FOREIGN_ORG_ID,
    MISSING_DEAL_ID,
    MISSING_OPPORTUNITY_ID,
    PII_DESCRIPTION,
    PII_EMAIL,
    PII_NAME,
    Keys,
    deal_event,
)

QueueOutcome = Literal["malformed", "handled", "unrouted"]
RECEIVED_AT = "2026-01-05T10:00:00Z"
MISSING_ACCOUNT_ID = "001000000000999"
MISSING_CONTACT_ID = "003000000000999"
MISSING_ROLE_ID = "00K000000000999"


@dataclass(frozen=True)
class QueueCase:
    id: str
    queue: str  # the logical id of the queue the body lands on
    body: Callable[[Keys], str]
    outcome: QueueOutcome


@dataclass(frozen=True)
class RelayCase:
    """An envelope posted to the partner event bus; ``unrouted`` ones match no rule and reach no queue."""

    id: str
    envelope: Callable[[Keys], dict[str, Any]]
    outcome: QueueOutcome


def _json(value: Any) -> Callable[[Keys], str]:
    return lambda keys: json.dumps(value)


def _raw(text: str) -> Callable[[Keys], str]:
    return lambda keys: text


# --- Event Relay envelopes -------------------------------------------------------------------------


def envelope(keys: Keys, *, entity: str = "Opportunity", record_ids: list[str] | None = None,
             change_type: str = "UPDATE", org_id: str | None = None, detail_type: str | None = None,
             header: dict[str, Any] | None = None, drop: tuple[str, ...] = (), origin: str = "") -> dict[str, Any]:
    """A change event as Event Relay delivers it (salesforce.md §4c), with PII in its field values."""
    values: dict[str, Any] = {
        "entityName": entity, "recordIds": [MISSING_OPPORTUNITY_ID] if record_ids is None else record_ids,
        "changeType": change_type, "changeOrigin": origin or "com/salesforce/api/soap/59.0;client=SfdcInternalAPI/",
        "transactionKey": "0001ade9-3f74-0b99-dbc4-42e73424b774", "sequenceNumber": 1,
        "commitTimestamp": 1767607200000, "commitNumber": 1082985383811, "commitUser": "0055f000005mc66AAA",
        "nulledFields": [], "diffFields": [], "changedFields": ["Name", "Description"],
        **(header or {}),
    }
    for key in drop:
        values.pop(key, None)
    return {
        "version": "0", "id": "5c42b99e-c214-4a9c-8fbd-1a41e5faa44a",
        "detail-type": detail_type or f"{entity}ChangeEvent",
        "source": f"aws.partner/salesforce.com/{org_id or keys.org_id}/0YL5f000000CabWGAS",
        "account": "123456789012", "time": "2026-01-05T10:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"payload": {"ChangeEventHeader": values, "Name": PII_NAME,
                               "Description": f"{PII_DESCRIPTION} {PII_EMAIL}"}},
    }


def _env(**options: Any) -> Callable[[Keys], dict[str, Any]]:
    return lambda keys: envelope(keys, **options)


def _env_with(edit: Callable[[dict[str, Any]], None], **options: Any) -> Callable[[Keys], dict[str, Any]]:
    def build(keys: Keys) -> dict[str, Any]:
        value = envelope(keys, **options)
        edit(value)
        return value
    return build


RELAY_CASES: list[RelayCase] = [
    RelayCase("lead-change-event", _env(entity="Lead", record_ids=["00Q000000000999"]), "unrouted"),
    RelayCase("not-a-change-event", _env(detail_type="Opportunity Updated"), "unrouted"),
    RelayCase("detail-type-lower-case", _env(detail_type="opportunitychangeevent"), "unrouted"),
    RelayCase("foreign-org", lambda k: envelope(k, org_id=FOREIGN_ORG_ID, record_ids=[k.opportunity_id]), "handled"),
    RelayCase("source-not-salesforce", _env_with(lambda e: e.update(source="attacker.example")), "handled"),
    RelayCase("opportunity-that-does-not-exist", _env(), "handled"),
    RelayCase("deletion-of-an-opportunity-that-does-not-exist", _env(change_type="DELETE"), "handled"),
    RelayCase("gap-of-an-opportunity-that-does-not-exist", _env(change_type="GAP_UPDATE"), "handled"),
    RelayCase("gap-overflow", _env(change_type="GAP_OVERFLOW", record_ids=[]), "handled"),
    RelayCase("wildcard-ids", _env(record_ids=["006*"]), "handled"),
    RelayCase("own-echo", lambda k: envelope(k, record_ids=[k.opportunity_id],
                                             origin="com/salesforce/api/rest/59.0;client=dealsync"), "handled"),
    RelayCase("entity-name-differs-from-detail-type", _env(entity="Lead", detail_type="OpportunityChangeEvent",
                                                           record_ids=["00Q000000000999"]), "handled"),
    RelayCase("account-that-does-not-exist", _env(entity="Account", record_ids=[MISSING_ACCOUNT_ID]), "handled"),
    RelayCase("contact-that-does-not-exist", _env(entity="Contact", record_ids=[MISSING_CONTACT_ID]), "handled"),
    RelayCase("role-that-does-not-exist", _env(entity="OpportunityContactRole", record_ids=[MISSING_ROLE_ID]),
              "handled"),
    RelayCase("header-missing", _env_with(lambda e: e["detail"]["payload"].pop("ChangeEventHeader")), "malformed"),
    RelayCase("payload-missing", _env_with(lambda e: e["detail"].pop("payload")), "malformed"),
    RelayCase("detail-not-an-object", _env_with(lambda e: e.update(detail="payload")), "malformed"),
    RelayCase("change-type-unknown", _env(change_type="TELEPORT"), "malformed"),
    RelayCase("change-type-missing", _env(drop=("changeType",)), "malformed"),
    RelayCase("entity-name-empty", _env(header={"entityName": ""}), "malformed"),
    RelayCase("record-ids-not-a-list", _env(header={"recordIds": MISSING_OPPORTUNITY_ID}), "malformed"),
    RelayCase("record-ids-missing", _env(drop=("recordIds",)), "malformed"),
    RelayCase("record-id-not-an-id", _env(record_ids=["not-an-id"]), "malformed"),
    RelayCase("record-id-of-an-account", _env(record_ids=[MISSING_ACCOUNT_ID]), "malformed"),
    RelayCase("commit-timestamp-negative", _env(header={"commitTimestamp": -1}), "malformed"),
    RelayCase("commit-timestamp-text", _env(header={"commitTimestamp": "yesterday"}), "malformed"),
    RelayCase("commit-timestamp-missing", _env(drop=("commitTimestamp",)), "malformed"),
    RelayCase("changed-fields-not-a-list", _env(header={"changedFields": "Name"}), "malformed"),
]


# --- queue bodies ------------------------------------------------------------------------------------


def _sf_changes(**overrides: Any) -> Callable[[Keys], str]:
    body = {"kind": "salesforce_changes", "object": "Opportunity", "ids": [MISSING_OPPORTUNITY_ID],
            "deleted": False, "source": "outbound_message", "received_at": RECEIVED_AT, **overrides}
    return lambda keys: json.dumps({key: value for key, value in body.items() if value is not DROP})


def _hs_changes(*events: Callable[[Keys], dict[str, Any]], **overrides: Any) -> Callable[[Keys], str]:
    def build(keys: Keys) -> str:
        body = {"kind": "hubspot_changes", "events": [event(keys) for event in events], "received_at": RECEIVED_AT,
                **overrides}
        return json.dumps({key: value for key, value in body.items() if value is not DROP})
    return build


def _deal(**overrides: Any) -> Callable[[Keys], dict[str, Any]]:
    return lambda keys: deal_event(keys, **{"objectId": MISSING_DEAL_ID, **overrides})


def _chunk(**overrides: Any) -> Callable[[Keys], str]:
    body = {"kind": "import_chunk", "job_id": "job-that-does-not-exist", "chunk": 0, "object": "Opportunity",
            "ids": [MISSING_OPPORTUNITY_ID], **overrides}
    return _json({key: value for key, value in body.items() if value is not DROP})


def _start(**overrides: Any) -> Callable[[Keys], str]:
    body = {"kind": "import_start", "job_id": "job-that-does-not-exist", "object": "Opportunity", "chunk_size": 100,
            **overrides}
    return _json({key: value for key, value in body.items() if value is not DROP})


def _rollup(**overrides: Any) -> Callable[[Keys], str]:
    return _json({"kind": "rollup", "contact_ids": [MISSING_CONTACT_ID], **overrides})


def _scheduled(task: str, **overrides: Any) -> Callable[[Keys], str]:
    body = {"kind": "scheduled", "task": task, "time": RECEIVED_AT, "event_id": "b8e1c7a4", **overrides}
    return _json({key: value for key, value in body.items() if value is not DROP})



SF, HS, IMPORT, ROLLUP = "SalesforceChangesQueue", "HubSpotChangesQueue", "ImportQueue", "RollupQueue"

# Bodies that are not JSON objects at all, on every queue.
_NOT_MESSAGES: list[tuple[str, Callable[[Keys], str]]] = [
    ("empty", _raw("")),
    ("not-json", _raw(f"Name={PII_NAME}&Email={PII_EMAIL}")),
    ("truncated-json", _raw('{"kind": "salesforce_changes", "ids": ["0060000')),
    ("null", _raw("null")),
    ("array", _raw("[]")),
    ("empty-object", _raw("{}")),
    ("kind-unknown", _json({"kind": "teleport", "ids": [MISSING_OPPORTUNITY_ID]})),
    ("kind-a-number", _json({"kind": 7})),
    ("deeply-nested", _raw("[" * 50_000 + "]" * 50_000)),
    ("xml", _raw('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]><x>&a;</x>')),
]

QUEUE_CASES: list[QueueCase] = [
    *(QueueCase(f"{name}", queue, body, "malformed") for queue in (SF, HS, IMPORT, ROLLUP)
      for name, body in _NOT_MESSAGES),
    # the Salesforce changes queue
    QueueCase("ids-empty", SF, _sf_changes(ids=[]), "malformed"),
    QueueCase("ids-201", SF, _sf_changes(ids=[f"0065f000{n:07d}" for n in range(201)]), "malformed"),
    QueueCase("ids-of-accounts-as-opportunities", SF, _sf_changes(ids=[MISSING_ACCOUNT_ID]), "malformed"),
    QueueCase("ids-not-ids", SF, _sf_changes(ids=[PII_EMAIL]), "malformed"),
    QueueCase("ids-numbers", SF, _sf_changes(ids=[6000000000999]), "malformed"),
    QueueCase("object-lead", SF, _sf_changes(object="Lead", ids=["00Q000000000999"]), "malformed"),
    QueueCase("source-unknown", SF, _sf_changes(source="carrier-pigeon"), "malformed"),
    QueueCase("received-at-without-zone", SF, _sf_changes(received_at="2026-01-05T10:00:00"), "malformed"),
    QueueCase("received-at-missing", SF, _sf_changes(received_at=DROP), "malformed"),
    QueueCase("deleted-not-a-bool", SF, _sf_changes(deleted="yes"), "malformed"),
    QueueCase("unknown-key", SF, _sf_changes(note=PII_NAME), "malformed"),
    QueueCase("rollup-task-on-the-salesforce-queue", SF, _scheduled("rollup_full_recompute"), "malformed"),
    QueueCase("scheduled-task-unknown", SF, _scheduled("format_disk"), "malformed"),
    QueueCase("scheduled-without-event-id", SF, _scheduled("salesforce_poll", event_id=DROP), "malformed"),
    QueueCase("opportunity-that-does-not-exist", SF, _sf_changes(), "handled"),
    QueueCase("opportunity-15-characters-that-does-not-exist", SF, _sf_changes(ids=[MISSING_OPPORTUNITY_ID[:15]]),
              "handled"),
    QueueCase("deletion-of-an-opportunity-that-does-not-exist", SF, _sf_changes(deleted=True), "handled"),
    QueueCase("account-that-does-not-exist", SF, _sf_changes(object="Account", ids=[MISSING_ACCOUNT_ID]), "handled"),
    QueueCase("contact-that-does-not-exist", SF, _sf_changes(object="Contact", ids=[MISSING_CONTACT_ID]), "handled"),
    QueueCase("role-that-does-not-exist", SF, _sf_changes(object="OpportunityContactRole", ids=[MISSING_ROLE_ID]),
              "handled"),
    # the HubSpot changes queue
    QueueCase("events-empty", HS, _hs_changes(), "malformed"),
    QueueCase("events-101", HS, _hs_changes(*(_deal() for _ in range(101))), "malformed"),
    QueueCase("event-object-id-missing", HS, _hs_changes(_deal(objectId=DROP)), "malformed"),
    QueueCase("event-object-id-negative", HS, _hs_changes(_deal(objectId=-1)), "malformed"),
    QueueCase("event-type-unknown", HS, _hs_changes(_deal(subscriptionType="deal.teleport")), "malformed"),
    QueueCase("event-portal-id-text", HS, _hs_changes(_deal(portalId="ours")), "malformed"),
    QueueCase("received-at-missing", HS, _hs_changes(_deal(), received_at=DROP), "malformed"),
    QueueCase("unknown-key", HS, _hs_changes(_deal(), note=PII_NAME), "malformed"),
    QueueCase("deal-that-does-not-exist", HS, _hs_changes(_deal()), "handled"),
    QueueCase("deletion-of-a-deal-that-does-not-exist", HS, _hs_changes(
        _deal(subscriptionType="deal.deletion", propertyName=DROP)), "handled"),
    QueueCase("restore-of-a-deal-that-does-not-exist", HS, _hs_changes(
        _deal(subscriptionType="deal.restore", propertyName=DROP)), "handled"),
    QueueCase("merge-of-deals-that-do-not-exist", HS, _hs_changes(_deal(
        subscriptionType="deal.merge", propertyName=DROP, primaryObjectId=MISSING_DEAL_ID,
        mergedObjectIds=[MISSING_DEAL_ID + 1, MISSING_DEAL_ID + 2])), "handled"),
    QueueCase("association-of-a-deal-that-does-not-exist", HS, _hs_changes(_deal(
        subscriptionType="deal.associationChange", propertyName=DROP, associationType="DEAL_TO_CONTACT",
        fromObjectId=MISSING_DEAL_ID, toObjectId=MISSING_DEAL_ID + 5, associationRemoved=False)), "handled"),
    QueueCase("own-echo", HS, lambda k: _hs_changes(_deal(changeSource="INTEGRATION", sourceId=str(k.app_id)))(k),
              "handled"),
    QueueCase("company-event", HS, _hs_changes(_deal(subscriptionType="company.creation", propertyName=DROP)),
              "handled"),
    # the import queue
    QueueCase("chunk-without-job", IMPORT, _chunk(job_id=DROP), "malformed"),
    QueueCase("chunk-job-empty", IMPORT, _chunk(job_id=""), "malformed"),
    QueueCase("chunk-negative", IMPORT, _chunk(chunk=-1), "malformed"),
    QueueCase("chunk-number-text", IMPORT, _chunk(chunk="first"), "malformed"),
    QueueCase("chunk-object-lead", IMPORT, _chunk(object="Lead"), "malformed"),
    QueueCase("chunk-ids-of-accounts", IMPORT, _chunk(ids=[MISSING_ACCOUNT_ID]), "malformed"),
    QueueCase("chunk-ids-empty", IMPORT, _chunk(ids=[]), "malformed"),
    QueueCase("chunk-ids-101", IMPORT, _chunk(ids=[f"0065f000{n:07d}" for n in range(101)]), "malformed"),
    QueueCase("start-chunk-size-zero", IMPORT, _start(chunk_size=0), "malformed"),
    QueueCase("start-chunk-size-1000", IMPORT, _start(chunk_size=1000), "malformed"),
    QueueCase("start-object-opportunity-role", IMPORT, _start(object="OpportunityContactRole"), "malformed"),
    QueueCase("chunk-of-a-job-that-does-not-exist", IMPORT, _chunk(), "handled"),
    QueueCase("start-of-a-job-that-does-not-exist", IMPORT, _start(), "handled"),
    # the rollup queue
    QueueCase("contact-ids-empty", ROLLUP, _rollup(contact_ids=[]), "malformed"),
    QueueCase("contact-ids-of-opportunities", ROLLUP, _rollup(contact_ids=[MISSING_OPPORTUNITY_ID]), "malformed"),
    QueueCase("contact-ids-101", ROLLUP, _rollup(contact_ids=[f"0035f000{n:07d}" for n in range(101)]), "malformed"),
    QueueCase("contact-ids-emails", ROLLUP, _rollup(contact_ids=[PII_EMAIL]), "malformed"),
    QueueCase("poll-task-on-the-rollup-queue", ROLLUP, _scheduled("salesforce_poll"), "malformed"),
    QueueCase("scheduled-time-without-zone", ROLLUP, _scheduled("rollup_full_recompute", time="2026-01-05 10:00"),
              "malformed"),
    QueueCase("contact-that-does-not-exist", ROLLUP, _rollup(), "handled"),
]
