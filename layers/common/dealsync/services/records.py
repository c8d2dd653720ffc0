"""What both sync directions share about an opportunity ⇄ deal pair: how each side is read and
snapshotted for the mapping, the association state kept in the shadow, sync errors, and the rollup
projection. Written once here so the two workers cannot drift apart."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from dealsync.clients.errors import PermanentCrmError
from dealsync.mapping.fields import FieldSpec, salesforce_fields_to_read
from dealsync.mapping.rules import RecordDecision, SideSnapshot
from dealsync.mapping.values import parse_datetime, sf_id_18
from dealsync.models.domain import ErrorCategory, Link, RollupRow, ShadowValue, Side
from dealsync.models.events import RollupMessage
from dealsync.observability import logger
from dealsync.queues import send_messages
from dealsync.services.context import SyncContext
from dealsync.store.errors import _key as error_key  # the error item layout has one home

DEAL_ID_FIELD = "HubSpot_Deal_Id__c"  # the opportunity's external id: the deal it is linked to
UNIQUE_PROPERTY = "salesforce_opportunity_id"  # the deal's unique property: its opportunity
DEAL_TO_CONTACT = 3
ACCOUNT_FIELD = "AccountId"  # the opportunity's account: the deal's primary company
DEAL_TO_PRIMARY_COMPANY = 5
CONTACTS_KEY = "assoc:contacts"  # shadow: the HubSpot contact ids both sides agreed on
COMPANY_KEY = "assoc:company"  # shadow: the HubSpot company id of the primary association
# Categories a sync owns for an opportunity: cleared when a sync no longer finds them.
SYNC_CATEGORIES = frozenset({
    ErrorCategory.OWNER_NOT_FOUND, ErrorCategory.PIPELINE_LIMIT, ErrorCategory.WAITING_FOR_ACCOUNT,
    ErrorCategory.UNMAPPED_STAGE, ErrorCategory.UNMAPPED_VALUE, ErrorCategory.HUBSPOT_VALIDATION,
    ErrorCategory.SALESFORCE_VALIDATION, ErrorCategory.PERMISSION, ErrorCategory.CONTACT_NOT_IN_SALESFORCE,
})


ROLE_FIELDS = ("Id", "ContactId", "IsPrimary", "IsDeleted")  # what an import reads of each contact role
# What a sync reads of them (queryAll: deleted ones too): when, and by whom, each was made or deleted.
SYNC_ROLE_FIELDS = (*ROLE_FIELDS, "CreatedDate", "CreatedById", "SystemModstamp")


def opportunity_fields_read(context: SyncContext, specs: Sequence[FieldSpec]) -> list[str]:
    """The opportunity's own fields either direction needs (the SELECT without its contact roles)."""
    available = context.opportunity_fields()
    names = dict.fromkeys(["Id", *salesforce_fields_to_read(specs)])
    names.update(dict.fromkeys(["AccountId", "CreatedDate", "CreatedById", "IsClosed", "IsWon", "IsDeleted",
                                "LastModifiedById", "OwnerId", DEAL_ID_FIELD]))
    return [name for name in names if name in available or name == "Id"]


def opportunity_select(context: SyncContext, specs: Sequence[FieldSpec]) -> str:
    """The SELECT list that re-reads opportunities with everything either direction needs."""
    # Field names come from the describe and our own specs, never from input.
    roles = f"(SELECT {', '.join(SYNC_ROLE_FIELDS)} FROM OpportunityContactRoles)"  # noqa: S608 - constant names
    return ", ".join([*opportunity_fields_read(context, specs), roles])


def opportunities_changed_since_read(context: SyncContext, specs: Sequence[FieldSpec],
                                     read: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """The opportunities (of ``read``: id -> the record as this sync read it) that changed since: read again
    with the same SELECT just before dealsync writes them, one query per 200. Salesforce's collection
    update has no conditional write; without this, a person's change made in the seconds between a
    sync's read and its write would be overwritten by a decision that never saw it."""
    if not read:
        return set()
    fresh = {str(record["Id"]): record for record in context.salesforce.query_by_ids(
        opportunity_select(context, specs), "Opportunity", list(read), include_deleted=True)}
    changed: set[str] = set()
    for record_id, before in read.items():
        now = fresh.get(record_id)
        if now is None or any(before.get(name) != value for name, value in now.items() if name != "attributes"):
            changed.add(record_id)
    return changed


def pending_writes(decision: RecordDecision, specs: Sequence[FieldSpec]) -> dict[str, dict[str, ShadowValue]]:
    """The write-ahead values of a decision (Link.pending): each field's agreed value, by the side its
    patch writes it to."""
    to_hubspot: dict[str, ShadowValue] = {}
    to_salesforce: dict[str, ShadowValue] = {}
    for spec in specs:
        if spec.key not in decision.shadow:
            continue
        if any(name in decision.hubspot_properties for name in spec.hubspot_properties):
            to_hubspot[spec.key] = decision.shadow[spec.key]
        if any(name in decision.salesforce_fields for name in spec.salesforce_fields):
            to_salesforce[spec.key] = decision.shadow[spec.key]
    return {Side.HUBSPOT.value: to_hubspot, Side.SALESFORCE.value: to_salesforce}


Claim = tuple[str, Link, Mapping[str, Mapping[str, ShadowValue]]]  # record id, its link as read, what it writes


def claim_pairs(context: SyncContext, claims: Sequence[Claim],
                retry: dict[str, str]) -> tuple[dict[str, Link], set[str]]:
    """Write ahead and claim the linked pairs a sync is about to write (``LinkStore.set_pending_many``): the
    links as claimed, by record id, and the record ids refused because their link moved since it was read
    (another sync saved or claimed the pair meanwhile; those must not be written from this sync's reads:
    they go into ``retry``, the sync's report, to be read again).
    Association keys in the pending values are part of the claim and of the record of what was written;
    the engines read back only the fields' values and the contact roles written to Salesforce."""
    saved = context.store.links.set_pending_many([(link, pending) for _, link, pending in claims])
    claimed: dict[str, Link] = {}
    refused: set[str] = set()
    for (record_id, _, _), link in zip(claims, saved, strict=True):
        if link is None:
            refused.add(record_id)
            retry[record_id] = "the link changed since it was read: read again"
        else:
            claimed[record_id] = link
    if refused:
        logger.info("pairs synced by another worker meanwhile: read again", extra={"count": len(refused)})
    return claimed, refused


# OpportunityFieldHistory.Field names a lookup by its relationship.
HISTORY_FIELD_NAMES = {"OwnerId": "Owner", "AccountId": "Account", "RecordTypeId": "RecordType"}


def salesforce_snapshot(record: Mapping[str, Any], specs: Sequence[FieldSpec], changed_at: datetime | None = None,
                        integration_user_id: str | None = None,
                        field_history: Mapping[str, tuple[str, str]] | None = None) -> SideSnapshot:
    """An opportunity as read. Its change time: the later of ``changed_at`` (the commit time of the change
    events that named it) and its SystemModstamp (the record as read may hold later changes than those
    events) — but the stamp only when a person made the last change: when dealsync's integration user did,
    the stamp is when dealsync copied HubSpot's values over, not when anyone changed them.
    ``field_history`` (``SalesforceClient.field_history`` for this record) gives tracked fields their own
    time; a field whose latest change dealsync made is marked copied (its value came from HubSpot)."""
    values = {key: value for key, value in record.items() if key != "attributes"}
    for spec in specs:
        for name in spec.salesforce_fields:
            values.setdefault(name, None)  # e.g. RecordTypeId in an org without record types
    integration = sf_id_18(integration_user_id) if integration_user_id else None
    last_by_dealsync = bool(integration and record.get("LastModifiedById")
                            and sf_id_18(str(record["LastModifiedById"])) == integration)
    stamp = None if last_by_dealsync else parse_datetime(record.get("SystemModstamp"))
    moments = [moment for moment in (changed_at, stamp) if moment is not None]
    field_changed_at: dict[str, datetime] = {}
    copied: set[str] = set()
    copied_at: dict[str, datetime] = {}
    for spec in specs:
        for name in spec.salesforce_fields:
            row = (field_history or {}).get(HISTORY_FIELD_NAMES.get(name, name))
            if row is None:
                continue
            created_at, created_by = row
            moment = parse_datetime(created_at)
            if integration and created_by and sf_id_18(created_by) == integration:
                copied.add(name)
                if moment is not None:
                    copied_at[name] = moment
            elif moment is not None:
                field_changed_at[name] = moment
    return SideSnapshot(values=values, changed_at=max(moments) if moments else None,
                        field_changed_at=field_changed_at, copied_fields=frozenset(copied), copied_at=copied_at)


def hubspot_snapshot(deal: Mapping[str, Any] | None, own_app_id: str | None = None) -> SideSnapshot:
    """A deal as read through the SDK (``to_dict()``: snake_case keys). With property history, a property
    whose newest version was written by the app ``own_app_id`` (dealsync) is marked as copied: its value came
    from Salesforce, and its timestamp is when dealsync copied it, not when anyone changed it."""
    if deal is None:
        return SideSnapshot.absent()
    history = deal.get("properties_with_history") or {}
    field_changed_at: dict[str, datetime] = {}
    copied: set[str] = set()
    last_copies: dict[str, tuple[str, datetime]] = {}
    for name, versions in history.items():
        moment = parse_datetime(versions[0].get("timestamp")) if versions else None
        if moment is not None:
            field_changed_at[name] = moment
        ours = [version for version in versions or [] if own_app_id and version.get("source_type") == "INTEGRATION"
                and str(version.get("source_id") or "") == str(own_app_id)]
        if ours and ours[0] is versions[0]:
            copied.add(name)
        copied_at = parse_datetime(ours[0].get("timestamp")) if ours else None
        if copied_at is not None:
            last_copies[name] = (str(ours[0].get("value") or ""), copied_at)
    return SideSnapshot(values=dict(deal.get("properties") or {}), changed_at=deal.get("updated_at"),
                        field_changed_at=field_changed_at, copied_fields=frozenset(copied), last_copies=last_copies)


def role_changed_at(record: Mapping[str, Any], contact_id: str, *, deleted: bool,
                    integration_user_id: str | None) -> datetime | None:
    """When a person last changed the opportunity's role of this Salesforce contact, by its rows as read with
    queryAll: ``deleted`` — when its role was deleted (SystemModstamp of the deleted row); else when its live
    role was created (CreatedDate), unless dealsync created it. None: not known."""
    integration = sf_id_18(integration_user_id) if integration_user_id else None
    stamp = "SystemModstamp" if deleted else "CreatedDate"
    rows = (record.get("OpportunityContactRoles") or {}).get("records") or []
    moments = [parse_datetime(row[stamp]) for row in rows
               if str(row.get("ContactId")) == contact_id and bool(row.get("IsDeleted")) is deleted and row.get(stamp)
               and (deleted or not integration or not row.get("CreatedById")
                    or sf_id_18(str(row["CreatedById"])) != integration)]
    return max(moments) if moments else None


def contact_roles(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The opportunity's live contact roles (it is read with queryAll, which returns deleted ones too)."""
    roles = (record.get("OpportunityContactRoles") or {}).get("records") or []
    return [role for role in roles if role.get("ContactId") and not role.get("IsDeleted")]


def contact_role_ids(record: Mapping[str, Any]) -> list[str]:
    return sorted({str(role["ContactId"]) for role in contact_roles(record)})


def joined(ids: Iterable[str]) -> str | None:
    ordered = sorted(set(ids))
    return ";".join(ordered) if ordered else None


def split(value: ShadowValue) -> set[str]:
    return set(value.split(";")) if value else set()


def record_sync_errors(context: SyncContext, opportunity_id: str,
                       errors: Sequence[tuple[ErrorCategory, str]], related: Mapping[str, str]) -> None:
    """Record this sync's errors for the opportunity and clear the ones it no longer has."""
    for category, message in errors:
        context.store.errors.record(category, "Opportunity", opportunity_id, message, related)
    stale = SYNC_CATEGORIES - {category for category, _ in errors}
    if stale:
        context.store.errors.resolve(opportunity_id, stale)


def record_batch_failure(context: SyncContext, record_type: str, record_ids: Iterable[str],
                         error: PermanentCrmError) -> None:
    """A permanent failure that stopped a whole batch (a missing scope, a refused read): every record
    gets the error, once for this attempt, and the batch is not redelivered (it would fail the same way
    until the cause changes; a resync or the change itself tries again)."""
    ids = list(dict.fromkeys(record_ids))
    for record_id in ids:
        context.store.errors.record(error.category, record_type, record_id, error.message)
    logger.warning("a permanent failure stopped the batch; recorded for each record", extra={
        "record_type": record_type, "records": len(ids), "category": str(error.category), "cause": error.message})


def existing_errors(context: SyncContext, record_type: str,
                    record_ids: Iterable[str]) -> set[tuple[ErrorCategory, str]]:
    """(category, record id) of every error these records have now, read by key (100 keys per call)
    instead of one index query per record."""
    keys = [error_key(category, record_type, record_id) for record_id in dict.fromkeys(record_ids)
            for category in ErrorCategory]
    return {(ErrorCategory(item["category"]), str(item["record_id"])) for item in context.store.table.batch_get(keys)}


def record_sync_errors_batch(context: SyncContext, entries: Iterable[tuple[str, Sequence[tuple[ErrorCategory, str]],
                                                                            Mapping[str, str]]],
                             existing: set[tuple[ErrorCategory, str]]) -> None:
    """:func:`record_sync_errors` for many opportunities, given what :func:`existing_errors` found: only
    errors that exist are cleared, by key, a category at a time."""
    stale: dict[ErrorCategory, list[str]] = {}
    for opportunity_id, errors, related in entries:
        for category, message in errors:
            context.store.errors.record(category, "Opportunity", opportunity_id, message, related)
        for category in SYNC_CATEGORIES - {category for category, _ in errors}:
            if (category, opportunity_id) in existing:
                stale.setdefault(category, []).append(opportunity_id)
    for category, ids in stale.items():
        context.store.errors.clear(category, "Opportunity", ids)


def rollup_row(record: Mapping[str, Any]) -> RollupRow | None:
    created = parse_datetime(record.get("CreatedDate"))
    if created is None:
        return None
    amount = record.get("Amount")
    return RollupRow(
        contact_id="", opportunity_id=str(record["Id"]),
        amount=None if amount is None else str(Decimal(str(amount))), created=created,
        close_date=record.get("CloseDate"), closed=bool(record.get("IsClosed")), won=bool(record.get("IsWon")),
    )


def update_rollup_projection(context: SyncContext, records: Iterable[Mapping[str, Any]],
                             without_rows: Collection[str] = ()) -> set[str]:
    """Refresh the projection rows of these (live) opportunities; returns the contacts affected."""
    return set().union(*rollup_projection_by_record(context, records, without_rows).values())


def rollup_projection_by_record(context: SyncContext, records: Iterable[Mapping[str, Any]],
                                without_rows: Collection[str] = ()) -> dict[str, set[str]]:
    """Refresh the projection rows of these (live) opportunities; returns the contacts each affected.
    ``without_rows``: opportunities known to have no rows yet (their rows are not looked up)."""
    affected: dict[str, set[str]] = {}
    for record in records:
        row = rollup_row(record)
        if row is not None:
            before: set[str] | None = set() if str(record["Id"]) in without_rows else None
            affected[str(record["Id"])] = context.store.rollups.replace_opportunity(
                row, contact_role_ids(record), before=before)
    return affected


def enqueue_rollups(context: SyncContext, contact_ids: Iterable[str]) -> None:
    ordered = sorted(contact_ids)
    queue = context.queues.get("rollup")
    if not ordered or not queue:
        return
    bodies = [RollupMessage(contact_ids=ordered[start:start + 100]).model_dump_json()
              for start in range(0, len(ordered), 100)]
    send_messages(queue, bodies)


def associated_ids(items: Iterable[Mapping[str, Any]]) -> set[str]:
    """The ids of a v4 association read's ``to`` list (SDK ``to_dict()`` or raw camelCase)."""
    return {str(item.get("to_object_id", item.get("toObjectId"))) for item in items
            if item.get("to_object_id", item.get("toObjectId")) is not None}


def primary_company(items: Iterable[Mapping[str, Any]]) -> str | None:
    """The company of the deal's primary association (type 5), if any."""
    for item in items:
        types = item.get("association_types", item.get("associationTypes")) or []
        for kind in types:
            type_id = kind.get("type_id", kind.get("typeId"))
            if type_id is not None and int(type_id) == DEAL_TO_PRIMARY_COMPANY:
                return str(item.get("to_object_id", item.get("toObjectId")))
    return None


def associations_pending(link: Link) -> bool:
    """A write-ahead says a sync may have changed the pair's associations (it died, or is still running,
    before saving the pair), on the deal or in Salesforce: what the pair agrees on may be what that write
    wrote, not the shadow (the engines read the side it wrote to and compare)."""
    return any(CONTACTS_KEY in written or COMPANY_KEY in written for written in (link.pending or {}).values())
