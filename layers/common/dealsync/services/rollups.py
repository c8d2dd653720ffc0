"""Contact rollups and lifecycle stage (DESIGN 1.7): recompute from the DynamoDB projection, write
HubSpot contacts in batches of 100, skip what did not change.

A recompute of N contacts costs:
- DynamoDB only for the facts: one query per contact (its projection rows), batch gets of the
  written-values state and of the CONTACT links. Zero Salesforce calls, zero HubSpot deal reads.
- HubSpot: ``ceil(changed / 100)`` batch updates and the contact property definitions once per
  context (cached, they tell which rollup properties are read-only). No contact reads: each linked
  contact's current lifecycle stage is kept in its written-values state — seen when dealsync links the
  contact (``services.contacts``), set by the recompute itself, and kept current by the app's
  ``contact.propertyChange`` webhook on ``lifecyclestage`` (:func:`note_lifecycle_stages`), so a stage a
  person raised (``evangelist``, ``other``, ``customer``) is known and never lowered. Only a contact
  whose stage dealsync has never seen (linked before the stage was recorded) costs a batch read of
  ``lifecyclestage`` (100 per call) before its stage is moved (see bench/rollups.py).

The written-values state of a contact (``store.rollups.save_written_values``) is::

    {"hubspot_id": "<contact it was written to>",
     "properties": {"<HubSpot property written>": "<value>", ...},   # blank values are absent
     "lifecyclestage": "<last stage seen or set>"}                   # absent: unknown

It is keyed by the HubSpot property actually written, so switching to the ``salesforce_<name>``
fallback (or back) writes everything once to the new place; a contact re-linked to another
HubSpot contact (merge) starts from nothing.

Configuration warning (read-only rollups): recorded as a CONFIG item (``pk=CONFIG``,
``sk=WARNING#rollup_read_only``) holding the affected property names, plus one log line and one
``RollupReadOnlyFallback`` metric when it is first recorded (or its property list changes). It is
not a sync error: no record is at fault and nothing is to retry; it describes the portal's set-up,
which is what configuration items are (``dealsync status`` can list ``WARNING#`` items). It is
removed once HubSpot reports every rollup property writable again.

Concurrency: the incremental path and the nightly full recompute may recompute the same contact at
the same time. Both recompute from the (consistently read) projection, so both write the same
values; the written-values state only saves work, it never decides a value — a stale state costs at
most one redundant write, and the next recompute repairs any interleaving.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError

from dealsync.clients.errors import PermanentCrmError, TransientCrmError
from dealsync.mapping.rollups import (
    CUSTOM_PROPERTY_GROUP,
    ROLLUP_PROPERTIES,
    RollupValues,
    compute_rollups,
    diff,
    lifecycle_stage_for,
    property_names,
)
from dealsync.models.domain import LinkKind, RollupRow, Side
from dealsync.models.events import RollupMessage
from dealsync.observability import logger, metrics
from dealsync.queues import send_messages
from dealsync.services.context import SyncContext
from dealsync.store.rollups import CONTACT_INDEX_SHARDS, STAGE_SEEN_AT

LIFECYCLE = "lifecyclestage"
BATCH = 100
CONTACT_PROPERTIES_FACT = "contact_properties"
WARNING_KEY = {"pk": "CONFIG", "sk": "WARNING#rollup_read_only"}
GROUP_LABEL = "Salesforce sync"
ROW_READERS = 8
ROW_CHUNK = 200  # contacts read between two looks at the clock
# Kept for the stage reads and contact writes after the projection is read (≤ 10 + 10 HubSpot calls per
# batch of 1,000, with rate-limit back-off); a batch that would cut into it stops reading and returns
# the rest for redelivery, so no invocation times out and comes back whole.
WRITE_RESERVE_MS = 60_000


# --- pure parts ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ContactPlan:
    """What one contact needs, decided from its projection rows and written-values state only."""

    salesforce_id: str
    hubspot_id: str
    values: dict[str, str | None]  # by destination property name
    patch: dict[str, str]  # rollup properties to write ("" clears)
    lifecycle_target: str | None  # what the rows call for (None: nothing)
    known_stage: str | None  # last stage seen or set (None: unknown)
    needs_stage_read: bool
    known_stage_seen_ms: int = 0


def read_only_properties(contact_properties: Iterable[Mapping[str, Any]]) -> set[str]:
    """Rollup properties HubSpot reports read-only (``modificationMetadata.readOnlyValue``)."""
    blocked: set[str] = set()
    for prop in contact_properties:
        name = prop.get("name")
        if name not in ROLLUP_PROPERTIES:
            continue
        metadata = prop.get("modification_metadata") or prop.get("modificationMetadata") or {}
        if metadata.get("read_only_value", metadata.get("readOnlyValue")):
            blocked.add(str(name))
    return blocked


def previous_state(state: Mapping[str, Any] | None, hubspot_id: str) -> dict[str, Any]:
    """The state, or nothing when it was written to another HubSpot contact."""
    if not state or str(state.get("hubspot_id") or "") != hubspot_id:
        return {}
    return dict(state)


def plan_contact(salesforce_id: str, hubspot_id: str, rows: Sequence[RollupRow], state: Mapping[str, Any] | None,
                 names: Mapping[str, str], automatic_transitions: bool) -> ContactPlan:
    previous = previous_state(state, hubspot_id)
    values: RollupValues = compute_rollups(rows)
    destination = {names[name]: value for name, value in values.items()}
    patch = diff(previous.get("properties") or {}, destination)
    target = lifecycle_stage_for(None, rows, automatic_transitions)
    known = previous.get(LIFECYCLE)
    known_stage = None if known is None else str(known)
    needs_read = target is not None and known_stage is None
    return ContactPlan(salesforce_id, hubspot_id, destination, patch, target, known_stage, needs_read,
                       int(previous.get(STAGE_SEEN_AT, 0)))


def next_state(plan: ContactPlan, stage: str | None, seen_ms: int) -> dict[str, Any]:
    """The state after this recompute: the values written and the stage known (seen or set at ``seen_ms``;
    a stage that did not change keeps the moment it was first seen)."""
    state: dict[str, Any] = {
        "hubspot_id": plan.hubspot_id,
        "properties": {name: value for name, value in plan.values.items() if value},
    }
    if stage is not None:
        state[LIFECYCLE] = stage
        state[STAGE_SEEN_AT] = plan.known_stage_seen_ms if stage == plan.known_stage else seen_ms
    return state


def lifecycle_update(rows: Sequence[RollupRow], current: str | None,
                     automatic_transitions: bool) -> tuple[str | None, str]:
    """(stage to write or None, stage known afterwards) given the contact's current stage."""
    stage = lifecycle_stage_for(current, rows, automatic_transitions)
    return stage, stage if stage is not None else (current or "")


# --- the recompute --------------------------------------------------------------------------------------

@dataclass
class RecomputeReport:
    contacts: int = 0
    unlinked: int = 0
    written: int = 0
    unchanged: int = 0
    stage_reads: int = 0
    stages_set: int = 0
    missing_in_hubspot: int = 0
    deferred: int = 0  # contacts left for redelivery because the invocation's time ran short
    retry: set[str] = field(default_factory=set)  # Salesforce contact ids to try again (transient)


def contact_properties(context: SyncContext) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = context._fact(
        CONTACT_PROPERTIES_FACT, lambda: context.hubspot.properties("contacts"))
    return result


def rollup_destinations(context: SyncContext) -> dict[str, str]:
    """Where each rollup goes this time; creates the fallback properties (and their group) when missing."""
    properties = contact_properties(context)
    blocked = read_only_properties(properties)
    names = property_names(blocked)
    existing = {str(prop.get("name")): prop for prop in properties}
    missing = [name for name in sorted(blocked) if names[name] not in existing]
    if missing:
        _create_fallback_properties(context, missing, existing)
    _record_read_only_warning(context, blocked)
    return names


def _create_fallback_properties(context: SyncContext, rollups: Sequence[str],
                                existing: Mapping[str, Mapping[str, Any]]) -> None:
    try:
        context.hubspot.create_property_group("contacts", CUSTOM_PROPERTY_GROUP, GROUP_LABEL)
    except PermanentCrmError as error:
        if error.status != 409:
            raise
    for name in rollups:
        original = existing.get(name) or {}
        body = {
            "name": property_names([name])[name], "groupName": CUSTOM_PROPERTY_GROUP,
            "label": f"Salesforce {original.get('label') or name.replace('_', ' ')}",
            "type": original.get("type") or "string", "fieldType": original.get("field_type")
            or original.get("fieldType") or "text",
            "description": f"Set by dealsync: {name} from Salesforce opportunities (HubSpot's own is read-only).",
        }
        try:
            context.hubspot.create_property("contacts", body)
        except PermanentCrmError as error:
            if error.status != 409:
                raise
    context.forget(CONTACT_PROPERTIES_FACT)


_warned: dict[str, str] = {}  # per container: what the warning item says (saves DynamoDB writes)


def _record_read_only_warning(context: SyncContext, blocked: set[str]) -> None:
    listed = ",".join(sorted(blocked))
    table = context.store.table
    if _warned.get(table.name) == listed:
        return
    if not blocked:
        try:
            table.delete(dict(WARNING_KEY), condition="attribute_exists(pk)")
            logger.info("rollup properties writable again; configuration warning cleared")
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        _warned[table.name] = listed
        return
    try:
        table.put({**WARNING_KEY, "kind": "rollup_read_only", "properties": sorted(blocked),
                   "listed": listed, "recorded_at": context.now().isoformat(),
                   "message": "HubSpot reports these contact rollup properties read-only; dealsync writes "
                              "salesforce_<name> in the salesforce_sync group instead"},
                  ConditionExpression="attribute_not_exists(pk) OR listed <> :listed",
                  ExpressionAttributeValues={":listed": {"S": listed}})
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
    else:
        logger.warning("rollup properties are read-only in HubSpot; writing the salesforce_ fallbacks",
                       extra={"read_only_properties": sorted(blocked)})
        metrics.add_metric(name="RollupReadOnlyFallback", unit=MetricUnit.Count, value=1)
    _warned[table.name] = listed


def _rows_for_contacts(context: SyncContext, contact_ids: Sequence[str],
                       time_left_ms: Callable[[], int] | None) -> dict[str, list[RollupRow]]:
    """One (consistent) query per contact, ROW_READERS at a time: DynamoDB latency, not throughput, is
    what a batch of 1,000 contacts waits for. Read ROW_CHUNK contacts at a time; once less than
    WRITE_RESERVE_MS is left, stop — the contacts not read are absent from the result."""
    rollups = context.store.rollups
    if len(contact_ids) <= 1:
        return rollups.rows_for_contacts(contact_ids)
    rows: dict[str, list[RollupRow]] = {}
    with ThreadPoolExecutor(max_workers=min(ROW_READERS, len(contact_ids))) as pool:
        for start in range(0, len(contact_ids), ROW_CHUNK):
            if time_left_ms is not None and time_left_ms() < WRITE_RESERVE_MS:
                break
            chunk = contact_ids[start:start + ROW_CHUNK]
            rows.update(zip(chunk, pool.map(rollups.rows_for_contact, chunk), strict=True))
    return rows


def _is_read_only_error(error: PermanentCrmError) -> bool:
    return "READ_ONLY_VALUE" in error.message or "read only" in error.message.lower()


def recompute_contacts(context: SyncContext, contact_ids: Sequence[str], *,
                       time_left_ms: Callable[[], int] | None = None) -> RecomputeReport:
    """Recompute and write the rollups (and lifecycle stage) of these Salesforce contacts.

    Raises nothing for permanent HubSpot problems of single contacts (logged, counted); contacts
    hit by a transient failure, and those left unread because ``time_left_ms`` (the invocation's
    remaining time) ran short, come back in ``report.retry``.
    """
    ids = list(dict.fromkeys(contact_ids))
    report = RecomputeReport(contacts=len(ids))
    if not ids:
        return report
    store = context.store
    links = {sf_id: link.hubspot_id for sf_id, link in
             store.links.get_many(LinkKind.CONTACT, Side.SALESFORCE, ids).items() if link.is_active}
    report.unlinked = len(ids) - len(links)
    linked = [sf_id for sf_id in ids if sf_id in links]
    if not linked:
        return report
    rows = _rows_for_contacts(context, linked, time_left_ms)
    if len(rows) < len(linked):
        unread = [sf_id for sf_id in linked if sf_id not in rows]
        report.deferred = len(unread)
        report.retry |= set(unread)
        logger.warning("time ran short; contacts left for redelivery",
                       extra={"recomputed": len(rows), "deferred": len(unread)})
        linked = [sf_id for sf_id in linked if sf_id in rows]
        if not linked:
            return report
    states = store.rollups.written_values(linked)
    automatic = context.options().automatic_lifecycle_transitions
    for attempt in (1, 2):
        names = rollup_destinations(context)
        plans = {sf_id: plan_contact(sf_id, links[sf_id], rows.get(sf_id, []), states.get(sf_id), names, automatic)
                 for sf_id in linked}
        try:
            _apply(context, plans, rows, states, automatic, report)
            return report
        except PermanentCrmError as error:
            if attempt == 1 and _is_read_only_error(error):
                # A rollup property became read-only since the definitions were cached: look again.
                logger.info("a rollup property was refused as read-only; re-reading the definitions")
                context.forget(CONTACT_PROPERTIES_FACT)
                _warned.pop(store.table.name, None)
                continue
            raise
    return report


def _read_stages(context: SyncContext, plans: Iterable[ContactPlan], report: RecomputeReport) -> dict[str, str]:
    """Current lifecycle stage by HubSpot contact id (absent: the contact is gone), 100 per call."""
    wanted = [plan.hubspot_id for plan in plans if plan.needs_stage_read]
    if not wanted:
        return {}
    report.stage_reads += len(wanted)
    found = context.hubspot.batch_read("contacts", wanted, [LIFECYCLE])
    return {str(contact["id"]): str((contact.get("properties") or {}).get(LIFECYCLE) or "") for contact in found}


def _apply(context: SyncContext, plans: Mapping[str, ContactPlan], rows: Mapping[str, Sequence[RollupRow]],
           states: Mapping[str, Mapping[str, Any]], automatic: bool, report: RecomputeReport) -> None:
    """Stage reads and contact writes for the whole batch: only changed contacts fill the batches of 100."""
    try:
        current = _read_stages(context, plans.values(), report)
    except TransientCrmError as error:
        logger.warning("lifecycle stage read failed; will retry", extra={"cause": error.message})
        report.retry |= {plan.salesforce_id for plan in plans.values() if plan.needs_stage_read}
        plans = {sf_id: plan for sf_id, plan in plans.items() if not plan.needs_stage_read}
        current = {}
    seen_ms = int(time.time() * 1000)
    updates: dict[str, dict[str, str]] = {}  # HubSpot id -> properties
    new_states: dict[str, dict[str, Any]] = {}
    by_hubspot: dict[str, ContactPlan] = {}
    for plan in plans.values():
        patch = dict(plan.patch)
        stage = plan.known_stage
        if plan.needs_stage_read and plan.hubspot_id not in current:
            report.missing_in_hubspot += 1
            continue
        if plan.lifecycle_target is not None:
            seen = current[plan.hubspot_id] if plan.needs_stage_read else plan.known_stage
            to_set, stage = lifecycle_update(rows.get(plan.salesforce_id, []), seen, automatic)
            if to_set is not None:
                patch[LIFECYCLE] = to_set
                report.stages_set += 1
        state = next_state(plan, stage, seen_ms)
        if patch:
            updates[plan.hubspot_id] = patch
            by_hubspot[plan.hubspot_id] = plan
        if patch or state != previous_state(states.get(plan.salesforce_id), plan.hubspot_id):
            new_states[plan.salesforce_id] = state  # saved once written (or when only the known stage moved)
    report.unchanged += len(plans) - len(updates)
    ordered = list(updates.items())
    for start in range(0, len(ordered), BATCH):
        chunk = dict(ordered[start:start + BATCH])
        try:
            written = _write(context, chunk)
        except TransientCrmError as error:
            logger.warning("rollup write failed; will retry", extra={"contacts": len(chunk), "cause": error.message})
            written = set()
            report.retry |= {by_hubspot[hubspot_id].salesforce_id for hubspot_id in chunk}
        else:
            report.written += len(written)
            report.missing_in_hubspot += len(set(chunk) - written)
        for hubspot_id in set(chunk) - written:
            new_states.pop(by_hubspot[hubspot_id].salesforce_id, None)
    if new_states:
        context.store.rollups.save_written_values(new_states)


def _write(context: SyncContext, updates: Mapping[str, Mapping[str, str]]) -> set[str]:
    """Batch-update the contacts; returns the HubSpot ids written. A contact deleted or merged away
    fails HubSpot's whole batch: then the batch is retried without the contacts that no longer exist."""
    inputs = [{"id": hubspot_id, "properties": dict(properties)} for hubspot_id, properties in updates.items()]
    try:
        results = context.hubspot.batch_update("contacts", inputs)
    except PermanentCrmError as error:
        if _is_read_only_error(error) or error.status != 404:
            raise
        existing = {str(contact["id"]) for contact in context.hubspot.batch_read("contacts", list(updates), [])}
        inputs = [item for item in inputs if item["id"] in existing]
        if not inputs:
            return set()
        results = context.hubspot.batch_update("contacts", inputs)
    failed = [result for result in results if "error" in result]
    if failed:
        logger.warning("some contacts were not updated", extra={"failed": len(failed)})
    return {str(result["id"]) for result in results if "error" not in result and result.get("id")}


def note_lifecycle_stages(context: SyncContext, stages: Mapping[str, tuple[str, int]], *,
                          only_if_unknown: bool = False) -> int:
    """Remember the current lifecycle stage of linked HubSpot contacts (HubSpot contact id -> (stage, epoch
    ms when seen)), from a webhook or a read; contacts dealsync has not linked are ignored. Returns how
    many states changed."""
    if not stages:
        return 0
    links = context.store.links.get_many(LinkKind.CONTACT, Side.HUBSPOT, list(stages))
    by_salesforce = {link.salesforce_id: (hubspot_id, *stages[hubspot_id])
                     for hubspot_id, link in links.items() if link.is_active}
    return context.store.rollups.note_lifecycle_stages(by_salesforce, only_if_unknown=only_if_unknown)


# --- the full recompute -------------------------------------------------------------------------------

def full_recompute_pages(context: SyncContext, size: int = BATCH, read_limit: int = 1000) -> Iterator[list[str]]:
    """Every contact of the projection, in pages of ``size``, paging each shard of the contact index
    (``read_limit`` ids per DynamoDB query).

    Pages are filled across shards, so every RollupMessage but the last carries the full 100 (and a
    batch of 10 messages fills ten HubSpot batch updates)."""
    buffer: list[str] = []
    for shard in range(CONTACT_INDEX_SHARDS):
        start_after: str | None = None
        while True:
            page, start_after = context.store.rollups.contact_page(shard, limit=read_limit, start_after=start_after)
            buffer += page
            while len(buffer) >= size:
                yield buffer[:size]
                buffer = buffer[size:]
            if not start_after:
                break
    if buffer:
        yield buffer


def enqueue_full_recompute(context: SyncContext) -> int:
    """The nightly task: enqueue a RollupMessage per page of the contact index (fan-out: each page is
    recomputed by a worker invocation like any incremental message). Returns the contacts enqueued."""
    queue = context.queues.get("rollup")
    if not queue:
        raise RuntimeError("no rollup queue configured")
    enqueued = 0
    bodies: list[str] = []
    for page in full_recompute_pages(context):
        bodies.append(RollupMessage(contact_ids=page).model_dump_json())
        enqueued += len(page)
        if len(bodies) >= 10:
            send_messages(queue, bodies)
            bodies = []
    if bodies:
        send_messages(queue, bodies)
    logger.info("full rollup recompute enqueued", extra={"contacts": enqueued})
    return enqueued
