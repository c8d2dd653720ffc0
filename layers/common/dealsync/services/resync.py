"""Resync (Sync Health): records with sync errors go back on the queue their direction reads, and
permanent errors are tried again when their cause changes.

Where a record goes depends on the record type its errors were recorded under:

* ``Opportunity`` (Salesforce → HubSpot, and ``MERGED_IN_HUBSPOT``): a :class:`SalesforceChangeMessage`
  with source ``resync`` on the SalesforceChanges queue, as if it had just changed.
* ``Deal`` (HubSpot → Salesforce): a :class:`HubSpotChangeMessage` of ``deal.creation`` events with
  changeSource :data:`RESYNC_CHANGE_SOURCE` on the HubSpotChanges queue, so the worker re-reads the
  deal with its associations (the ``deal.creation`` action is what asks for them).
* ``Account``, ``Contact`` (import failures): a job of kind ``resync`` on the import queue, chunks of at
  most 100, written by the ``import_batch`` workers exactly as an import writes them (and shown by
  ``dealsync import status``).

Nothing is cleared here: the workers clear a record's errors when it syncs, or record them again
(``attempts`` + 1). Workers that receive a resync forget their cached CRM facts first
(:func:`refresh_for_resync`), so an owner or field created minutes ago is seen.

Permanent errors (OWNER_NOT_FOUND, UNMAPPED_VALUE, UNMAPPED_STAGE, PIPELINE_LIMIT) are not retried by
the queue; they wait for their cause to change:

* :func:`retry_changed_causes` runs with every scheduled poll: it fingerprints what removes each cause
  (the owner directory, the mappings and value maps, the pipelines with the limit and the stage maps),
  compares with the fingerprints saved by the previous poll and resyncs the categories whose cause
  changed. So an owner created in either CRM, a value map added, a pipeline freed or the limit raised
  is picked up within one poll interval.
* An operation that removes a cause can act at once: ``resync_category(context, category)`` (e.g.
  after ``store.config.put_value_map``: ``UNMAPPED_VALUE``; after a pipeline is freed:
  ``PIPELINE_LIMIT``; after an owner is created: ``OWNER_NOT_FOUND``).
* WAITING_FOR_ACCOUNT needs neither: the account's own change releases its opportunities (sf_change),
  and a finished account import re-queues them (``imports.requeue_waiting_opportunities``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from dealsync.models.domain import ErrorCategory, JobStatus, LinkKind, Side, SyncError
from dealsync.models.events import (
    RESYNC_CHANGE_SOURCE,
    HubSpotWebhookEvent,
    ImportChunkMessage,
    ImportObject,
    SalesforceChangeMessage,
    deal_resync_messages,
    salesforce_id_18,
)
from dealsync.observability import logger
from dealsync.queues import send_messages
from dealsync.services.context import SyncContext
from dealsync.services.deal_sync import DEAL_RECORD_TYPE
from dealsync.services.imports import CHUNK_SIZE, chunked
from dealsync.store import ToggleRefusedError
from dealsync.store.dynamo import now_utc

RESYNC_SOURCE: Final = "resync"  # SalesforceChangeMessage.source of a resync
RESYNC_JOB_KIND: Final = "resync"
CACHED_FACTS: Final = ("owners", "deal_properties", "opportunity_fields")  # what a resync reads fresh

# What removes each permanent error's cause: a fingerprint name -> the categories waiting for it.
CAUSES: Final[dict[str, frozenset[ErrorCategory]]] = {
    "owners": frozenset({ErrorCategory.OWNER_NOT_FOUND}),
    "mappings": frozenset({ErrorCategory.UNMAPPED_VALUE}),
    "pipelines": frozenset({ErrorCategory.UNMAPPED_STAGE, ErrorCategory.PIPELINE_LIMIT}),
}

# Record type of an error -> how it is resynced.
_ROUTES: Final[dict[str, str]] = {
    "Opportunity": "opportunities", DEAL_RECORD_TYPE: "deals", "Account": "accounts", "Contact": "contacts",
}
_IMPORT_OBJECTS: Final[dict[str, ImportObject]] = {"accounts": "Account", "contacts": "Contact"}
_SOBJECT_BY_ROUTE: Final = {"opportunities": "Opportunity", "accounts": "Account", "contacts": "Contact"}
_ROUTE_BY_KEY_PREFIX: Final = {"006": "opportunities", "001": "accounts", "003": "contacts"}
SALESFORCE_ID_LENGTH: Final = 18


class UnknownRecordError(LookupError):
    """Neither a sync error nor a link names the record."""


class NothingToResyncError(LookupError):
    """The category has no errors."""


@dataclass(frozen=True)
class ResyncPlan:
    """The records of some sync errors, by where they go (pure)."""

    opportunities: tuple[str, ...] = ()
    deals: tuple[str, ...] = ()
    accounts: tuple[str, ...] = ()
    contacts: tuple[str, ...] = ()
    unsupported: tuple[str, ...] = ()  # record types nothing can resync: reported, not queued

    @property
    def record_ids(self) -> list[str]:
        return [*self.opportunities, *self.deals, *self.accounts, *self.contacts]

    @property
    def total(self) -> int:
        return len(self.record_ids)


@dataclass(frozen=True)
class ResyncReport:
    plan: ResyncPlan
    messages: int = 0  # queue messages sent (SalesforceChanges, HubSpotChanges, import chunks)
    job_id: str | None = None  # the resync job of the accounts and contacts, if any
    categories: tuple[ErrorCategory, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "records": plan.total, "opportunities": list(plan.opportunities), "deals": list(plan.deals),
            "accounts": list(plan.accounts), "contacts": list(plan.contacts), "unsupported": list(plan.unsupported),
            "messages": self.messages, "job_id": self.job_id, "categories": [str(c) for c in self.categories],
        }


# --- pure ----------------------------------------------------------------------------------------------


def plan_resync(errors: Iterable[SyncError]) -> ResyncPlan:
    """Group the errors' records by where a resync sends them; each record once, in first-seen order."""
    routes: dict[str, dict[str, None]] = {route: {} for route in (*_ROUTES.values(), "unsupported")}
    for error in errors:
        route = _ROUTES.get(error.record_type)
        if route is None:
            routes["unsupported"][f"{error.record_type}#{error.record_id}"] = None
        else:
            routes[route][error.record_id] = None
    return ResyncPlan(*(tuple(routes[name]) for name in ("opportunities", "deals", "accounts", "contacts",
                                                          "unsupported")))


def is_resync_event(event: HubSpotWebhookEvent) -> bool:
    return event.change_source == RESYNC_CHANGE_SOURCE


def digest(value: Any) -> str:
    """A stable fingerprint of JSON-able data."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def changed_causes(saved: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """Causes whose fingerprint moved since it was saved (one never saved has nothing to compare with)."""
    return [name for name, mark in current.items() if name in saved and saved[name] != mark]


def categories_for(causes: Iterable[str]) -> list[ErrorCategory]:
    wanted = {category for name in causes for category in CAUSES[name]}
    return [category for category in ErrorCategory if category in wanted]


def parse_category(text: str) -> ErrorCategory:
    """An ErrorCategory from any letter case; ValueError naming every category otherwise."""
    try:
        return ErrorCategory(text.strip().upper())
    except ValueError:
        known = ", ".join(str(category) for category in ErrorCategory)
        raise ValueError(f"unknown category {text!r}: one of {known}") from None


# --- the service ------------------------------------------------------------------------------------


def refresh_for_resync(context: SyncContext) -> None:
    """Forget the cached CRM facts (owners, fields) so a resync sees what was created since."""
    for name in CACHED_FACTS:
        context.forget(name)


def resync_errors(context: SyncContext, errors: Iterable[SyncError]) -> ResyncReport:
    """Put the records of these errors back on their queues (refused while the sync they need is off)."""
    listed = list(errors)
    plan = plan_resync(listed)
    categories = tuple(category for category in ErrorCategory if any(e.category is category for e in listed))
    return _enqueue(context, plan, categories)


def resync_category(context: SyncContext, category: ErrorCategory) -> ResyncReport:
    """Resync every record with an error of this category. Raises NothingToResyncError when it has none."""
    errors = list(context.store.errors.iter_category(category))
    if not errors:
        raise NothingToResyncError(f"nothing to resync: no {category} errors")
    return resync_errors(context, errors)


def resync_record(context: SyncContext, record_id: str) -> ResyncReport:
    """Resync one record: by its errors; without any, as the linked record it is (which applies new
    mappings to it); else as the opportunity, account, contact or deal the CRM has under that id (e.g.
    one whose change rests in a DLQ). Raises UnknownRecordError when none of these knows it."""
    candidates = _id_forms(record_id)
    for candidate in candidates:
        errors = context.store.errors.for_record(candidate)
        if errors:
            return resync_errors(context, errors)
    for candidate in candidates:
        plan = _linked_plan(context, candidate) or _existing_plan(context, candidate)
        if plan is not None:
            return _enqueue(context, plan, ())
    raise UnknownRecordError(f"unknown record {record_id}: no sync error, no link, and neither CRM has it")


def cause_fingerprints(context: SyncContext) -> dict[str, str]:
    """Fingerprints of what removes each permanent error's cause, read fresh from both CRMs."""
    context.forget("owners")
    config = context.config()
    pipelines = sorted(str(pipeline["id"]) for pipeline in context.hubspot.pipelines("deals"))
    options = context.options()
    return {
        "owners": context.owners().fingerprint(),
        "mappings": digest({"mappings": {name: mapping.model_dump(mode="json")
                                         for name, mapping in config.mappings.items()},
                            "value_maps": config.value_maps}),
        "pipelines": digest({"stage_maps": {key: mapping.model_dump(mode="json")
                                            for key, mapping in config.stage_maps.items()},
                             "hubspot_pipelines": pipelines, "limit": context.hubspot.pipeline_limit(),
                             "configured_limit": options.pipeline_limit, "tier": options.hubspot_tier}),
    }


def retry_changed_causes(context: SyncContext) -> dict[ErrorCategory, ResyncReport]:
    """Resync the categories whose cause changed since the last check (called by the scheduled poll).

    The first check only saves the fingerprints; while deal sync is off nothing is checked (the records
    would not sync), so a change made meanwhile is seen as a change when it comes back on."""
    if not context.toggles().deal_sync:
        return {}
    current = cause_fingerprints(context)
    changed = changed_causes(context.store.errors.cause_marks(), current)
    reports: dict[ErrorCategory, ResyncReport] = {}
    for category in categories_for(changed):
        try:
            reports[category] = resync_category(context, category)
        except NothingToResyncError:
            continue
        except ToggleRefusedError as error:
            logger.warning("records waiting for a changed cause not queued", extra={
                "category": str(category), "cause": str(error)})
    # Saved last: if queueing failed, the next poll sees the same change and tries again.
    context.store.errors.save_cause_marks(current)
    if reports:
        logger.info("causes changed: records with their errors queued again", extra={
            "causes": changed, "records": {str(category): report.plan.total for category, report in reports.items()}})
    return reports


# --- helpers ----------------------------------------------------------------------------------------


def _id_forms(record_id: str) -> list[str]:
    """The id as given, and its 18-character form when it is a 15-character Salesforce id."""
    text = record_id.strip()
    forms = [text]
    if not text.isdigit():
        with contextlib.suppress(ValueError):
            forms.append(salesforce_id_18(text))
    return list(dict.fromkeys(forms))


def _linked_plan(context: SyncContext, record_id: str) -> ResyncPlan | None:
    links = context.store.links
    if record_id.isdigit():
        return ResyncPlan(deals=(record_id,)) if links.get(LinkKind.OPPORTUNITY, Side.HUBSPOT, record_id) else None
    for kind, route in ((LinkKind.OPPORTUNITY, "opportunities"), (LinkKind.ACCOUNT, "accounts"),
                        (LinkKind.CONTACT, "contacts")):
        if links.get(kind, Side.SALESFORCE, record_id) is not None:
            return ResyncPlan(**{route: (record_id,)})
    return None


def _existing_plan(context: SyncContext, record_id: str) -> ResyncPlan | None:
    """The record as the CRM that owns the id has it (one read), or None."""
    if record_id.isdigit():
        found = context.hubspot.batch_read("deals", [record_id], ["hs_object_id"])
        return ResyncPlan(deals=(record_id,)) if found else None
    route = _ROUTE_BY_KEY_PREFIX.get(record_id[:3])
    if route is None or len(record_id) != SALESFORCE_ID_LENGTH:
        return None
    found = context.salesforce.query_by_ids("Id", _SOBJECT_BY_ROUTE[route], [record_id])
    return ResyncPlan(**{route: (record_id,)}) if found else None


def _enqueue(context: SyncContext, plan: ResyncPlan, categories: tuple[ErrorCategory, ...]) -> ResyncReport:
    if plan.opportunities or plan.deals:
        context.store.settings.require_deal_sync("resync deals and opportunities")
    if plan.accounts or plan.contacts:
        context.store.settings.require_company_sync("resync accounts and contacts")
    now = now_utc()
    messages = 0
    if plan.opportunities:
        bodies = [message.model_dump_json() for message in SalesforceChangeMessage.batches(
            "Opportunity", plan.opportunities, source=RESYNC_SOURCE, received_at=now)]
        messages += send_messages(context.queues["salesforce"], bodies)
    if plan.deals:
        hubspot = context.credentials.hubspot
        bodies = [message.model_dump_json() for message in deal_resync_messages(
            plan.deals, portal_id=hubspot.portal_id, app_id=hubspot.app_id, now=now)]
        messages += send_messages(context.queues["hubspot"], bodies)
    job_id = None
    if plan.accounts or plan.contacts:
        job_id, sent = _enqueue_import_job(context, {"accounts": plan.accounts, "contacts": plan.contacts})
        messages += sent
    logger.info("records queued for resync", extra={
        "opportunities": len(plan.opportunities), "deals": len(plan.deals), "accounts": len(plan.accounts),
        "contacts": len(plan.contacts), "unsupported": len(plan.unsupported), "job_id": job_id,
        "categories": [str(category) for category in categories]})
    return ResyncReport(plan, messages, job_id, categories)


def _enqueue_import_job(context: SyncContext, ids_by_route: Mapping[str, Sequence[str]]) -> tuple[str, int]:
    """A ``resync`` job whose chunks the import workers write like an import's (counted once each)."""
    job = context.store.jobs.create(RESYNC_JOB_KIND)
    numbered: list[tuple[int, list[str]]] = []
    bodies: list[str] = []
    for route, ids in ids_by_route.items():
        for number, chunk_ids in chunked(list(ids), CHUNK_SIZE, len(numbered)):
            numbered.append((number, chunk_ids))
            bodies.append(ImportChunkMessage(job_id=job.job_id, chunk=number, object=_IMPORT_OBJECTS[route],
                                             ids=chunk_ids).model_dump_json())
    context.store.jobs.add_chunks(job.job_id, numbered)
    # No enumeration: the job runs from the start, and completes when its chunks are counted.
    context.store.jobs.set_status(job.job_id, JobStatus.RUNNING, "resync of records with sync errors")
    try:
        sent = send_messages(context.queues["import"], bodies)
    except Exception as error:
        context.store.jobs.set_status(job.job_id, JobStatus.FAILED, f"could not queue the resync: {error}")
        raise
    return job.job_id, sent


__all__ = [
    "CAUSES",
    "RESYNC_CHANGE_SOURCE",
    "RESYNC_SOURCE",
    "NothingToResyncError",
    "ResyncPlan",
    "ResyncReport",
    "UnknownRecordError",
    "categories_for",
    "cause_fingerprints",
    "changed_causes",
    "deal_resync_messages",
    "digest",
    "is_resync_event",
    "parse_category",
    "plan_resync",
    "refresh_for_resync",
    "resync_category",
    "resync_errors",
    "resync_record",
    "retry_changed_causes",
]
