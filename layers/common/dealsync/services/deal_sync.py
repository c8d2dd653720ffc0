"""HubSpot → Salesforce: bring the opportunities of a set of deals in line with HubSpot.

Always from the current state: the deals are re-read in batch (with property history for per-field
timestamps, and their contact and company associations), their links looked up by deal id, the linked
opportunities re-read (one query per 200), every field decided against the link's shadow by the pure
mapping (`origin=HUBSPOT`), and the results written in bulk: new opportunities by sObject Collections
upsert on `HubSpot_Deal_Id__c` (idempotent: a retried batch creates nothing twice), existing ones by
collection updates, contact roles as a diff, and what HubSpot needs back (the new opportunity's id,
owner resets) by one batch update. Deals outside the Salesforce pipelines are never sent; a linked deal
moved out of them pauses its link. A deleted deal never deletes its opportunity. One record's error
never stops the others: it is recorded by category or, when worth retrying, reported back so the queue
redelivers just the messages that named it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from dealsync.clients.errors import PermanentCrmError, TransientCrmError
from dealsync.clients.salesforce import record_errors
from dealsync.faultpoints import DEAL_SYNC_AFTER_SALESFORCE_WRITE, reach
from dealsync.mapping.fields import FieldSpec, hubspot_properties_to_read
from dealsync.mapping.rules import RecordDecision, SideSnapshot, decide_record
from dealsync.mapping.stages import StageMap
from dealsync.mapping.values import parse_datetime, sf_id_18
from dealsync.models.domain import ErrorCategory, Link, LinkKind, LinkStatus, ShadowValue, Side
from dealsync.models.events import deal_resync_messages
from dealsync.observability import logger, metrics
from dealsync.queues import send_messages
from dealsync.services.context import SyncContext
from dealsync.services.opportunity_sync import PAIRING_GRACE_SECONDS, SyncReport
from dealsync.services.records import (
    ACCOUNT_FIELD,
    COMPANY_KEY,
    CONTACTS_KEY,
    DEAL_ID_FIELD,
    DEAL_TO_CONTACT,
    DEAL_TO_PRIMARY_COMPANY,
    HISTORY_FIELD_NAMES,
    UNIQUE_PROPERTY,
    Claim,
    associated_ids,
    associations_pending,
    claim_pairs,
    contact_role_ids,
    contact_roles,
    enqueue_rollups,
    hubspot_snapshot,
    joined,
    opportunities_changed_since_read,
    opportunity_select,
    pending_writes,
    primary_company,
    role_changed_at,
    salesforce_snapshot,
    split,
    update_rollup_projection,
)
from dealsync.store import StaleShadowError
from dealsync.store.association_times import COMPANY, OFF_DEAL, ON_DEAL, AssociationTimes
from dealsync.store.dynamo import now_utc

ROLLUP_FIELDS = frozenset({"Amount", "StageName", "CloseDate"})  # what the contact rollups read
ROLE_OBJECT = "OpportunityContactRole"
DEAL_RECORD_TYPE = "Deal"  # errors about a deal that has no opportunity (yet)
DEAL_CATEGORIES = frozenset(set(ErrorCategory) - {ErrorCategory.MERGED_IN_HUBSPOT})  # what a sync clears
PAUSED_PIPELINE = "deal moved to a HubSpot pipeline that does not sync"
DELETED_IN_HUBSPOT = "deal deleted in HubSpot"


# --- pure helpers -----------------------------------------------------------------------------------

def with_plain_history(deal: dict[str, Any]) -> dict[str, Any]:
    """The deal with its property history as plain dicts, newest first, as `hubspot_snapshot` reads it
    (the SDK's ``to_dict()`` leaves the history's ValueWithTimestamp objects as they are)."""
    history = deal.get("properties_with_history")
    if not history:
        return deal
    plain = {name: [version.to_dict() if hasattr(version, "to_dict") else dict(version) for version in versions or []]
             for name, versions in history.items()}
    return {**deal, "properties_with_history": plain}


@dataclass(frozen=True)
class ContactDiff:
    """HubSpot-side contact association changes against the shadow (HubSpot contact ids)."""

    added: frozenset[str]
    removed: frozenset[str]
    kept: frozenset[str]


def contact_diff(current: Iterable[str], agreed: Iterable[str]) -> ContactDiff:
    """What HubSpot changed since both sides last agreed: ``agreed`` is the shadow's contact set."""
    now, before = set(current), set(agreed)
    return ContactDiff(frozenset(now - before), frozenset(before - now), frozenset(now & before))


def contacts_shadow(diff: ContactDiff, applied: Iterable[str]) -> str | None:
    """The shadow's contact set after a sync: what was agreed and kept, plus the additions applied.

    Additions that could not be applied (no Salesforce counterpart, a refused role) stay out, so they
    are tried again, and the Salesforce → HubSpot direction never removes them from the deal."""
    return joined(set(diff.kept) | (set(applied) & set(diff.added)))


def roles_to_delete(roles: Iterable[Mapping[str, Any]], contact_ids: Iterable[str]) -> list[str]:
    """Ids of the live contact roles of the given Salesforce contacts."""
    wanted = set(contact_ids)
    return sorted(str(role["Id"]) for role in roles if str(role.get("ContactId")) in wanted and role.get("Id"))


# --- the engine ------------------------------------------------------------------------------------

_NO_DECISION = RecordDecision({}, {}, {}, {})


@dataclass
class _Associations:
    contacts: dict[str, list[dict[str, Any]]]  # deal id -> v4 results; a deal missing here was not read
    companies: dict[str, list[dict[str, Any]]]


def _text(value: ShadowValue) -> str | None:
    return None if value is None else str(value)

@dataclass
class _Plan:
    """One deal's part of the batch."""

    deal: dict[str, Any]
    link: Link | None  # active link (None: a new link will be created)
    opportunity: dict[str, Any] | None  # None: a new opportunity
    decision: RecordDecision
    shadow: dict[str, ShadowValue]
    contacts: set[str] = field(default_factory=set)  # HubSpot contact ids associated now
    company: str | None = None  # HubSpot primary company now
    errors: list[tuple[ErrorCategory, str]] = field(default_factory=list)
    opportunity_id: str | None = None
    salesforce_fields: dict[str, Any] = field(default_factory=dict)
    hubspot_properties: dict[str, str] = field(default_factory=dict)
    applied_contacts: set[str] = field(default_factory=set)  # additions now in Salesforce
    company_applied: bool = True
    # (the company on the deal, the one it gets back): the later change, which the deal does not show
    company_put_back: tuple[str | None, str | None] | None = None
    failed: bool = False  # the opportunity write failed: no shadow saved
    roles_changed: bool = False
    # The link's write-ahead as read (a sync that did not save the pair), before this sync's own claim.
    pending_read: dict[str, dict[str, ShadowValue]] | None = None

    @property
    def deal_id(self) -> str:
        return str(self.deal["id"])


class DealSync:
    def __init__(self, context: SyncContext) -> None:
        self.context = context
        self.store = context.store
        self.salesforce = context.salesforce
        self.hubspot = context.hubspot
        self.own_app_id = context.credentials.hubspot.app_id  # tells dealsync's own HubSpot writes apart
        self._named: dict[str, dict[str, Any]] = {}  # unlinked deal id -> the opportunity naming it
        self._companies_changed_at: dict[str, datetime] = {}
        self._contacts_changed_at: dict[str, dict[str, datetime]] = {}
        self._contacts_removed: dict[str, set[str]] = {}
        self._primary_companies: dict[str, str | None] = {}
        self._noted_times: dict[str, AssociationTimes] | None = None  # read when first needed
        self._associations_read: set[str] = set()  # the deals whose associations this sync reads

    # --- entry point -----------------------------------------------------------------------------
    def sync(self, deal_ids: Sequence[str], *, merges: Mapping[str, Sequence[str]] | None = None,
             associations_for: Collection[str] | None = None, source: str = "hubspot_changes",
             companies_changed_at: Mapping[str, datetime] | None = None,
             contacts_changed_at: Mapping[str, Mapping[str, datetime]] | None = None,
             contacts_removed: Mapping[str, Collection[str]] | None = None,
             primary_companies: Mapping[str, str | None] | None = None) -> SyncReport:
        """Sync these deals (ids of SyncReport are deal ids). ``merges``: surviving deal -> merged deal ids.
        ``associations_for``: the deals whose associations may have changed (None: all of them); the
        others keep the associations both sides last agreed on, and cost no association reads.
        ``companies_changed_at``, ``contacts_changed_at``: when a person last changed a deal's company
        association, and each contact's (the webhooks' occurredAt; HubSpot keeps no history of associations);
        ``contacts_removed``: the contacts that change took off the deal (the others it put on);
        ``primary_companies``: the primary company a person's latest change of it left on the deal (None: none)."""
        report = SyncReport()
        self._primary_companies = {str(deal_id): company for deal_id, company in (primary_companies or {}).items()}
        self._contacts_removed = {str(deal_id): set(map(str, contacts))
                                  for deal_id, contacts in (contacts_removed or {}).items()}
        self._companies_changed_at = {str(deal_id): moment for deal_id, moment in (companies_changed_at or {}).items()}
        self._contacts_changed_at = {str(deal_id): {str(contact_id): moment for contact_id, moment in contacts.items()}
                                     for deal_id, contacts in (contacts_changed_at or {}).items()}
        merges = {str(k): [str(v) for v in vs] for k, vs in (merges or {}).items()}
        ids = list(dict.fromkeys([*map(str, deal_ids), *merges]))
        if not ids:
            return report
        if not self.context.toggles().deal_sync:
            report.skipped += ids
            metrics.add_metric(name="ChangesIgnoredSyncOff", unit=MetricUnit.Count, value=len(ids))
            logger.info("deal sync is off: changes acknowledged, not applied", extra={"count": len(ids)})
            return report
        try:
            self._merges(merges)
            self._sync(ids, report, None if associations_for is None else {*map(str, associations_for), *merges})
        except TransientCrmError as error:
            for deal_id in ids:
                report.retry.setdefault(deal_id, str(error))
        self._emit_metrics(report, source)
        return report

    def _sync(self, ids: list[str], report: SyncReport, associations_for: set[str] | None) -> None:
        config = self.context.config()
        specs = self.context.field_specs(config)
        stages = self.context.stage_map(config)
        # The links first: a sync of the other direction that saves a pair after this read moves its
        # version, so the claim (_write_ahead) sees what was read from the CRMs below may be stale.
        read_links = self.store.links.get_many(LinkKind.OPPORTUNITY, Side.HUBSPOT, ids)
        deals = self._read_deals(ids, specs)
        gone = [deal_id for deal_id in ids if deal_id not in deals]
        self._deleted(gone, report)
        live = [deal_id for deal_id in ids if deal_id in deals]
        if not live:
            return
        self._note_association_times(live)
        links = {deal_id: read_links[deal_id] for deal_id in live if deal_id in read_links}
        synced: list[str] = []
        for deal_id in live:
            pipeline = deals[deal_id].get("properties", {}).get("pipeline")
            link = links.get(deal_id)
            if stages.syncs_pipeline(pipeline):
                if link is not None and link.status is LinkStatus.PAUSED:
                    links[deal_id] = self.store.links.resume(link)
                    logger.info("deal back in a synced pipeline: link resumed", extra={"deal_id": deal_id})
                synced.append(deal_id)
                continue
            report.skipped.append(deal_id)
            if link is not None and link.is_active:
                self.store.links.pause(link, PAUSED_PIPELINE)
                logger.info("deal moved out of the Salesforce pipelines: link paused", extra={
                    "deal_id": deal_id, "opportunity_id": link.salesforce_id})
        if not synced:
            return
        links = self._resolve_links(synced, deals, links, report)
        opportunity_ids = sorted({link.salesforce_id for link in links.values()}
                                 | {str(deals[d]["properties"][UNIQUE_PROPERTY]) for d in synced
                                    if d not in links and _candidate_opportunity(deals[d])})
        opportunities = self._read_opportunities(opportunity_ids, specs)
        self._named = self._opportunities_naming([d for d in synced if d not in links
                                                  and not _candidate_opportunity(deals[d])],
                                                 opportunity_select(self.context, specs))
        opportunities.update({str(record["Id"]): record for record in self._named.values()})
        # Associations are read for the deals whose events may have changed them, and for new pairs.
        reading = [deal_id for deal_id in synced if associations_for is None or deal_id in associations_for
                   or deal_id not in links or associations_pending(links[deal_id])]
        self._associations_read = set(reading)
        associations = _Associations(
            self.hubspot.associations_read("deals", "contacts", reading) if reading else {},
            self.hubspot.associations_read("deals", "companies", reading) if reading else {})
        for deal_id in reading:
            associations.contacts.setdefault(deal_id, [])
        plans = self._plan(synced, deals, links, opportunities, associations, specs, stages, report)
        _agree_unsaved_deal_writes(plans)
        self._associations(plans)
        plans = self._unchanged_since_read(plans, specs, report)
        plans = self._write_ahead(plans, specs, report)
        self._write_companies_put_back(plans)
        self._write_new(plans, report)
        self._write_existing(plans, report)
        reach(DEAL_SYNC_AFTER_SALESFORCE_WRITE)  # a no-op outside the soak (dealsync.faultpoints)
        self._write_roles(plans)
        self._write_hubspot(plans)
        self._save_links(plans, report)
        self._record_errors(plans, report)
        self._update_rollups(plans)

    def _note_association_times(self, deal_ids: Sequence[str]) -> None:
        """The times of a person's association changes, kept for the Salesforce → HubSpot direction (see
        store/association_times), for the deals that exist, before this sync writes anything (it may be retried)."""
        times = self.store.association_times
        for deal_id in deal_ids:
            if deal_id in self._companies_changed_at:
                times.note(deal_id, COMPANY, _milliseconds(self._companies_changed_at[deal_id]))
            for contact_id, moment in self._contacts_changed_at.get(deal_id, {}).items():
                times.note(deal_id, contact_id, _milliseconds(moment))

    def _unchanged_since_read(self, plans: Sequence[_Plan], specs: Sequence[FieldSpec],
                              report: SyncReport) -> list[_Plan]:
        """Plans that write an opportunity's fields or contact roles, without the opportunities a person
        changed since they were read; and plans that write Salesforce's values back to a deal, without the
        deals a person changed since (those deals are read and decided again later)."""
        writing = {str(plan.opportunity_id): plan.opportunity for plan in plans
                   if plan.opportunity is not None and plan.opportunity_id
                   and (plan.salesforce_fields or joined(plan.contacts) != plan.shadow.get(CONTACTS_KEY))}
        changed = opportunities_changed_since_read(self.context, specs, writing)
        for plan in plans:
            if plan.opportunity_id in changed:
                report.retry[plan.deal_id] = "its opportunity changed in Salesforce since it was read: read again"
        kept = [plan for plan in plans if plan.opportunity_id not in changed]
        edited = self._deals_changed_since_read(kept)
        for deal_id in edited:
            report.retry[deal_id] = "changed in HubSpot since it was read: read again"
        return [plan for plan in kept if plan.deal_id not in edited]

    def _deals_changed_since_read(self, plans: Sequence[_Plan]) -> set[str]:
        """Deals whose values this sync is about to set from Salesforce (a conflict Salesforce won, a reset)
        that a person changed since they were read: the deals are read again (the properties to write, 100
        a call). HubSpot's batch update has no conditional write; written blind, seconds after the read, a
        person's newer value would be lost. A new opportunity's id alone needs no check."""
        writing = [plan for plan in plans if plan.link is not None and set(plan.hubspot_properties) - {UNIQUE_PROPERTY}]
        if not writing:
            return set()
        names = sorted({name for plan in writing for name in plan.hubspot_properties} - {UNIQUE_PROPERTY})
        fresh = {str(deal["id"]): deal.get("properties") or {}
                 for deal in self.hubspot.batch_read("deals", [plan.deal_id for plan in writing], names)}
        changed: set[str] = set()
        for plan in writing:
            now, before = fresh.get(plan.deal_id), plan.deal.get("properties") or {}
            if now is None or any(now.get(name) != before.get(name) for name in plan.hubspot_properties
                                  if name != UNIQUE_PROPERTY):
                changed.add(plan.deal_id)
        return changed

    def _write_ahead(self, plans: Sequence[_Plan], specs: Sequence[FieldSpec], report: SyncReport) -> list[_Plan]:
        """Linked pairs about to be written: what will be written, on the link first (Link.pending), so that
        a worker dying between the CRM writes and the shadow leaves the next sync knowing its writes. The
        contact roles written to Salesforce are HubSpot's contact set. It is the claim on the pair too: a
        link another sync saved or claimed since this one read it refuses it, and that deal is read again
        later instead of written from stale reads. Returns the plans to write."""
        claims: list[Claim] = []
        for plan in plans:
            if plan.link is None or plan.opportunity is None:
                continue
            pending = pending_writes(plan.decision, specs)
            contacts = joined(plan.contacts)
            if contacts != plan.shadow.get(CONTACTS_KEY):
                pending[Side.SALESFORCE.value][CONTACTS_KEY] = contacts
            if ACCOUNT_FIELD in plan.salesforce_fields:
                pending[Side.SALESFORCE.value][COMPANY_KEY] = plan.company
            if any(pending.values()) or plan.hubspot_properties:
                claims.append((plan.deal_id, plan.link, pending))
        claimed, refused = claim_pairs(self.context, claims, report.retry)
        for plan in plans:
            plan.link = claimed.get(plan.deal_id, plan.link)
        return [plan for plan in plans if plan.deal_id not in refused]

    # --- merges, deletions ---------------------------------------------------------------------------
    def _merges(self, merges: Mapping[str, Sequence[str]]) -> None:
        """The surviving deal keeps its link; a merged deal's opportunity is unlinked (MERGED_IN_HUBSPOT),
        unless the survivor had none: then the survivor takes over the merged deal's link."""
        for primary, merged_ids in merges.items():
            merged_links = self.store.links.get_many(LinkKind.OPPORTUNITY, Side.HUBSPOT, merged_ids)
            for merged_id in merged_ids:
                link = merged_links.get(merged_id)
                if link is None or link.status is LinkStatus.TOMBSTONED:
                    continue
                self.store.links.tombstone(link, f"deal merged into deal {primary} in HubSpot")
                survivor = self.store.links.get(LinkKind.OPPORTUNITY, Side.HUBSPOT, primary)
                if survivor is None or survivor.status is LinkStatus.TOMBSTONED:
                    result = self.store.links.create(LinkKind.OPPORTUNITY, link.salesforce_id, primary, link.shadow)
                    if result.created:
                        logger.info("merged deal's link moved to the surviving deal", extra={
                            "deal_id": primary, "merged_deal_id": merged_id, "opportunity_id": link.salesforce_id})
                        continue
                self.store.errors.record(
                    ErrorCategory.MERGED_IN_HUBSPOT, "Opportunity", link.salesforce_id,
                    f"its deal {merged_id} was merged into deal {primary} in HubSpot, which is linked to another "
                    "opportunity; this opportunity is no longer synced", {"deal_id": merged_id,
                                                                       "surviving_deal_id": primary})
                logger.info("merged deal's opportunity unlinked", extra={
                    "deal_id": primary, "merged_deal_id": merged_id, "opportunity_id": link.salesforce_id})

    def _deleted(self, ids: Sequence[str], report: SyncReport) -> None:
        """Deals no longer readable: deleted (archived) ones unlink their opportunity, which stays.

        With ``resync_after_hubspot_delete`` the link is tombstoned, so the opportunity's next change
        creates a new deal; without it the link is paused, so the opportunity is left alone (a restore
        resumes it)."""
        if not ids:
            return
        archived = {str(deal["id"]) for deal in self.hubspot.batch_read("deals", ids, [UNIQUE_PROPERTY],
                                                                          archived=True)}
        links = self.store.links.get_many(LinkKind.OPPORTUNITY, Side.HUBSPOT, ids)
        resync = self.context.options().resync_after_hubspot_delete
        self._end_unlinked_pairs([deal_id for deal_id in ids if deal_id in archived and deal_id not in links],
                                 LinkStatus.TOMBSTONED if resync else LinkStatus.PAUSED)
        for deal_id in ids:
            link = links.get(deal_id)
            if deal_id not in archived:
                report.skipped.append(deal_id)  # merged away or never there: nothing to do
                continue
            report.deleted.append(deal_id)
            if link is None or link.status is LinkStatus.TOMBSTONED:
                continue
            if resync:
                self.store.links.tombstone(link, DELETED_IN_HUBSPOT)
            elif link.is_active:
                self.store.links.pause(link, DELETED_IN_HUBSPOT)
            logger.info("deal deleted in HubSpot: opportunity kept, link ended", extra={
                "deal_id": deal_id, "opportunity_id": link.salesforce_id, "resync": resync})

    def _end_unlinked_pairs(self, deal_ids: Sequence[str], status: LinkStatus) -> None:
        """Deleted deals whose opportunity an earlier attempt created and died before linking: the pair is
        recorded as ended by the deletion, as a linked one would be. Left unlinked, the opportunity would
        look unpaired (the reconcile would make it a new deal the person never asked for); ended, it syncs
        again as a new deal on its next change (DESIGN 1.6), or its link resumes when the deal is restored."""
        if not deal_ids:
            return
        config = self.context.config()
        specs, stages, owners = self.context.field_specs(config), self.context.stage_map(config), self.context.owners()
        for deal_id, opportunity in self._opportunities_naming(deal_ids, opportunity_select(self.context,
                                                                                            specs)).items():
            # Its fields as that attempt wrote them from the deal are what both sides agreed on: the shadow a
            # restored deal is synced against (without one, a person's change made just before the deletion,
            # and so after that attempt's read, would pass for no change against the opportunity's value).
            created = decide_record(specs, salesforce_snapshot(opportunity, specs), SideSnapshot.absent(), None,
                                    stages=stages, owners=owners, origin=Side.SALESFORCE)
            result = self.store.links.create(LinkKind.OPPORTUNITY, str(opportunity["Id"]), deal_id,
                                             dict(created.shadow), status=status, status_reason=DELETED_IN_HUBSPOT)
            if result.created:
                logger.info("deal deleted in HubSpot before its new opportunity was linked: link ended", extra={
                    "deal_id": deal_id, "opportunity_id": str(opportunity["Id"]), "status": str(status)})

    # --- reads -----------------------------------------------------------------------------------
    def _read_deals(self, ids: Sequence[str], specs: Sequence[FieldSpec],
                    with_history: bool = False) -> dict[str, dict[str, Any]]:
        """100 deals per call; with history (per-property timestamps) only 50, so only when needed."""
        properties = list(dict.fromkeys([*hubspot_properties_to_read(specs), "pipeline", "dealstage",
                                         UNIQUE_PROPERTY]))
        deals = self.hubspot.batch_read("deals", ids, properties, with_history=properties if with_history else ())
        return {str(deal["id"]): with_plain_history(deal) for deal in deals}

    def _read_opportunities(self, ids: Sequence[str], specs: Sequence[FieldSpec]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        select = opportunity_select(self.context, specs)
        return {str(record["Id"]): record for record in
                self.salesforce.query_by_ids(select, "Opportunity", ids, include_deleted=True)}

    def _opportunities_naming(self, deal_ids: Sequence[str], select: str) -> dict[str, dict[str, Any]]:
        """Opportunities that already name these unlinked deals in ``HubSpot_Deal_Id__c``, by deal id: created
        by an earlier attempt that failed or died before linking them and telling HubSpot. They are paired as
        they are, so the retry does not write them again (which would also move their SystemModstamp and
        make Salesforce look like the later change)."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(deal_ids), 100):
            chunk = [deal_id for deal_id in deal_ids[start:start + 100] if deal_id.isdigit()]
            if not chunk:
                continue
            quoted = ",".join(f"'{deal_id}'" for deal_id in chunk)  # digits only: HubSpot record ids
            for record in self.salesforce.query(
                    f"SELECT {select} FROM Opportunity WHERE {DEAL_ID_FIELD} IN ({quoted})"):  # noqa: S608
                found[str(record[DEAL_ID_FIELD])] = record
        return found

    def _merge_restored(self, deal_id: str, opportunity_id: str, current_deal_id: str) -> None:
        """A person restored a deal whose opportunity synced as a new deal meanwhile (DESIGN 1.6): one
        opportunity, two live deals. The restored deal is merged into the current one, which keeps the link
        and its values while gaining what the restored deal held (engagements, associations, values where
        it had none); that deal is then synced again, associations and all, so Salesforce gets them too."""
        try:
            self.hubspot.merge("deals", current_deal_id, deal_id)
        except PermanentCrmError as error:
            logger.warning("restored deal not merged into the opportunity's current deal", extra={
                "deal_id": deal_id, "opportunity_id": opportunity_id, "linked_deal_id": current_deal_id,
                "error": error.message})
            return
        logger.info("restored deal merged into the opportunity's current deal", extra={
            "deal_id": deal_id, "opportunity_id": opportunity_id, "linked_deal_id": current_deal_id})
        hubspot = self.context.credentials.hubspot
        bodies = [message.model_dump_json() for message in deal_resync_messages(
            [current_deal_id], portal_id=hubspot.portal_id, app_id=hubspot.app_id, now=now_utc())]
        send_messages(self.context.queues["hubspot"], bodies)

    def _resolve_links(self, ids: Sequence[str], deals: Mapping[str, dict[str, Any]], links: dict[str, Link],
                       report: SyncReport) -> dict[str, Link]:
        """Active links of the synced deals: a restored deal is relinked when its opportunity is free."""
        resolved: dict[str, Link] = {}
        for deal_id in ids:
            link = links.get(deal_id)
            if link is not None and link.is_active:
                resolved[deal_id] = link
                continue
            if link is not None and link.status is LinkStatus.TOMBSTONED:
                result = self.store.links.create(LinkKind.OPPORTUNITY, link.salesforce_id, deal_id, link.shadow)
                if result.created or result.link.hubspot_id == deal_id:
                    logger.info("restored deal relinked", extra={"deal_id": deal_id,
                                                                 "opportunity_id": link.salesforce_id})
                    resolved[deal_id] = result.link
                else:
                    report.skipped.append(deal_id)
                    self._merge_restored(deal_id, link.salesforce_id, result.link.hubspot_id)
        # Deals naming an opportunity without a link of their own (e.g. the link was lost).
        named = {deal_id: str(deals[deal_id]["properties"][UNIQUE_PROPERTY]) for deal_id in ids
                 if deal_id not in resolved and deal_id not in links and _candidate_opportunity(deals[deal_id])}
        if named:
            taken = self.store.links.get_many(LinkKind.OPPORTUNITY, Side.SALESFORCE, named.values())
            for deal_id, opportunity_id in named.items():
                other = taken.get(opportunity_id)
                if other is not None and other.status is not LinkStatus.TOMBSTONED and other.hubspot_id != deal_id:
                    report.skipped.append(deal_id)
                    logger.warning("deal names an opportunity linked to another deal", extra={
                        "deal_id": deal_id, "opportunity_id": opportunity_id, "linked_deal_id": other.hubspot_id})
        return resolved

    # --- decisions ---------------------------------------------------------------------------------
    def _plan(self, ids: Sequence[str], deals: Mapping[str, dict[str, Any]], links: Mapping[str, Link],
              opportunities: Mapping[str, dict[str, Any]], associations: _Associations, specs: Sequence[FieldSpec],
              stages: StageMap, report: SyncReport) -> list[_Plan]:
        owners = self.context.owners()
        integration_user_id = self.context.integration_user_id()

        def decide(plan: _Plan, field_history: Mapping[str, tuple[str, str]] | None = None) -> RecordDecision:
            salesforce = (salesforce_snapshot(plan.opportunity, specs, integration_user_id=integration_user_id,
                                              field_history=field_history)
                          if plan.opportunity is not None
                          else SideSnapshot.absent())
            return decide_record(specs, salesforce, hubspot_snapshot(plan.deal, self.own_app_id),
                                 plan.shadow if plan.link is not None else None, stages=stages, owners=owners,
                                 origin=Side.HUBSPOT, pending=plan.link.pending if plan.link is not None else None)

        plans: list[_Plan] = []
        for deal_id in ids:
            if deal_id in report.skipped:
                continue
            deal = deals[deal_id]
            link = links.get(deal_id)
            named = self._named.get(deal_id)
            opportunity_id = link.salesforce_id if link is not None else (
                str(deal["properties"][UNIQUE_PROPERTY]) if _candidate_opportunity(deal)
                else str(named["Id"]) if named is not None else None)
            opportunity = opportunities.get(opportunity_id) if opportunity_id else None
            if opportunity_id and (opportunity is None or opportunity.get("IsDeleted")):
                if opportunity is not None:
                    # In the recycle bin: the Salesforce → HubSpot direction has not archived the deal yet (with
                    # no link, its deletion's sync archives the deal that names it). Tried again later: if the
                    # opportunity is undeleted meanwhile, this deal's changes (its associations above all) must
                    # still reach it, and a new opportunity now would be its duplicate then.
                    report.retry[deal_id] = f"opportunity {opportunity_id} is deleted; its deal not archived yet"
                    logger.info("opportunity is in the recycle bin: the deal's changes are tried again", extra={
                        "deal_id": deal_id, "opportunity_id": opportunity_id, "linked": link is not None})
                    continue
                if link is not None:
                    # Gone for good (purged): the deal stays as it is, unlinked by the Salesforce side.
                    report.skipped.append(deal_id)
                    logger.info("linked opportunity is gone for good: the deal is left as it is", extra={
                        "deal_id": deal_id, "opportunity_id": opportunity_id})
                    continue
                opportunity = None  # a stale salesforce_opportunity_id: the deal becomes a new opportunity
            if link is None and opportunity is not None and self._being_paired(deal, opportunity):
                # Read before the other direction saved the pair (with the shadow of what both sides had),
                # every association would look like a HubSpot addition — a role a person deleted in Salesforce
                # meanwhile among them. Tried again once the pair is saved.
                report.retry[deal_id] = f"deal {deal_id} is being paired with opportunity {opportunity_id}"
                logger.info("deal made from an opportunity a moment ago, not linked yet: tried again", extra={
                    "deal_id": deal_id, "opportunity_id": opportunity_id})
                continue
            active = link if opportunity is not None else None
            shadow = dict(active.shadow) if active is not None else {}
            if deal_id in associations.contacts:
                contacts, company = (associated_ids(associations.contacts[deal_id]),
                                     primary_company(associations.companies.get(deal_id, [])))
            else:  # associations not named by any event: as both sides last agreed
                contacts, company = split(shadow.get(CONTACTS_KEY)), _text(shadow.get(COMPANY_KEY))
            plan = _Plan(deal, active, opportunity, _NO_DECISION, shadow, contacts=contacts, company=company,
                         opportunity_id=str(opportunity["Id"]) if opportunity is not None else None,
                         pending_read=active.pending if active is not None else None)
            plan.decision = decide(plan)
            plans.append(plan)
        # Timestamps matter only when both sides changed a field, or one side may have set the agreed value
        # again (recheck), or a pair has no shadow yet: those deals are read again with property history,
        # and decided with per-property timestamps.
        precise = [plan for plan in plans if plan.decision.conflicts or plan.decision.recheck
                   or (plan.opportunity is not None and plan.link is None)]
        if precise:
            history = self._read_deals([plan.deal_id for plan in precise], specs, with_history=True)
            field_history = self.salesforce.field_history([plan.opportunity_id for plan in precise
                                                           if plan.opportunity_id])
            for plan in precise:
                if plan.deal_id in history:
                    plan.deal = history[plan.deal_id]
                    plan.decision = decide(plan, field_history.get(plan.opportunity_id or ""))
        for plan in plans:
            decision = plan.decision
            report.conflicts += len(decision.conflicts)
            if decision.conflicts:
                logger.info("conflict resolved by the later change", extra={
                    "deal_id": plan.deal_id, "fields": list(decision.conflicts)})
            for warning in decision.warnings:
                logger.warning("field warning", extra={"deal_id": plan.deal_id, "field": warning.field,
                                                       "warning": warning.message})
            plan.errors += [(error.category, f"{error.field}: {error.message}") for error in decision.errors]
            plan.salesforce_fields = dict(decision.salesforce_fields)
            plan.hubspot_properties = dict(decision.hubspot_properties)
        return plans

    def _associations(self, plans: Sequence[_Plan]) -> None:
        """The primary company → AccountId, by the ACCOUNT link."""
        company_sync = self.context.toggles().company_sync
        if company_sync:
            self._companies_put_back(plans)
            self._companies_taken_back(plans)
        wanted = sorted({plan.company for plan in plans if plan.company})
        accounts = self.store.links.get_many(LinkKind.ACCOUNT, Side.HUBSPOT, wanted) if company_sync else {}
        set_again = self._companies_set_again(plans) if company_sync else set()
        copies = self._copied_companies_changed_since(plans) if company_sync else set()
        for plan in plans:
            before = plan.shadow.get(COMPANY_KEY) if plan.link is not None else None
            if not company_sync or (plan.company == before and plan.opportunity is not None
                                    and plan.deal_id not in set_again) or plan.deal_id in copies:
                continue
            if plan.company is None:
                if plan.opportunity is not None and plan.opportunity.get(ACCOUNT_FIELD):
                    plan.salesforce_fields[ACCOUNT_FIELD] = None
                continue
            link = accounts.get(plan.company)
            if link is None or not link.is_active:
                plan.company_applied = False
                logger.info("primary company has no Salesforce account yet; AccountId left as it is", extra={
                    "deal_id": plan.deal_id, "company_id": plan.company})
                continue
            if plan.opportunity is None or plan.opportunity.get(ACCOUNT_FIELD) != link.salesforce_id:
                plan.salesforce_fields[ACCOUNT_FIELD] = link.salesforce_id
                logger.debug("primary company to the account", extra={
                    "deal_id": plan.deal_id, "company_id": plan.company, "company_before": before})

    def _copied_companies_changed_since(self, plans: Sequence[_Plan]) -> set[str]:
        """Deals whose company differs from the agreed one only by the Salesforce → HubSpot direction's copy of
        the account (that sync wrote it and could not save the pair; no person changed it since), while a person
        changed the account after that copy: Salesforce's is the later change (its own sync brings it to the
        deal), and the copy is no HubSpot change to write back over it."""
        candidates: list[_Plan] = []
        copied: dict[str, datetime] = {}
        for plan in plans:
            if plan.link is None or plan.opportunity is None or plan.company == _text(plan.shadow.get(COMPANY_KEY)):
                continue
            copied_at = self._copied_at(plan.deal_id, COMPANY, state=plan.company or "")
            if copied_at is not None and self._copy_is_latest(plan.deal_id, COMPANY, copied_at):
                candidates.append(plan)
                copied[plan.deal_id] = copied_at
        if not candidates:
            return set()
        changes = self._account_changes(candidates)
        later: set[str] = set()
        for plan in candidates:
            changed_at, by_dealsync = changes.get(plan.deal_id, (None, True))
            # Salesforce keeps times to the second: a change in the second of the copy came after it (one before
            # it would have been read by that sync, which re-reads before it writes).
            if not by_dealsync and changed_at is not None and changed_at >= copied[plan.deal_id].replace(
                    microsecond=0):
                later.add(plan.deal_id)
                logger.info("account changed in Salesforce after dealsync copied it to the deal: Salesforce's is "
                            "the later", extra={"deal_id": plan.deal_id, "opportunity_id": plan.opportunity_id})
        return later

    def _companies_set_again(self, plans: Sequence[_Plan]) -> set[str]:
        """Deals whose primary company is the agreed one again, set by a person after a person changed the
        opportunity's account (A → B → A: HubSpot's company went to the account's new company and back).
        HubSpot's is the later change and goes to Salesforce; without the webhook's time, or without the
        account's own time in field history, the agreed value says HubSpot did not change (as before)."""
        candidates = [plan for plan in plans
                      if plan.link is not None and plan.opportunity is not None and plan.company
                      and plan.deal_id in self._companies_changed_at
                      and plan.company == plan.shadow.get(COMPANY_KEY)]
        if not candidates:
            return set()
        agreed = self.store.links.get_many(LinkKind.ACCOUNT, Side.HUBSPOT, sorted({str(plan.company)
                                                                                 for plan in candidates}))
        moved = [plan for plan in candidates if (link := agreed.get(str(plan.company))) is not None
                 and link.is_active and (plan.opportunity or {}).get(ACCOUNT_FIELD) != link.salesforce_id]
        if not moved:
            return set()
        set_again = self._company_changed_later_in_hubspot(moved)
        for plan in moved:
            if plan.deal_id in set_again:
                logger.info("company set again in HubSpot after the account changed: HubSpot's is the later change",
                            extra={"deal_id": plan.deal_id, "opportunity_id": plan.opportunity_id})
        return set_again

    def _company_changed_later_in_hubspot(self, plans: Sequence[_Plan]) -> set[str]:
        """The deals (of these linked ones) whose company a person changed in HubSpot (the webhook's time) after
        the opportunity's account last changed, by the account's field history; an account dealsync set last
        is no person's change. Without a history row: not known, not included."""
        return {deal_id for deal_id, (changed_at, by_dealsync) in self._account_changes(plans).items()
                if by_dealsync or changed_at < (self._person_changed_at(deal_id, COMPANY)
                                                or self._companies_changed_at[deal_id])}

    def _account_changes(self, plans: Sequence[_Plan]) -> dict[str, tuple[datetime, bool]]:
        """Deal id -> when its opportunity's account last changed (field history; without a row, the account
        is the one the opportunity was created with) and whether dealsync changed it (or created it)."""
        history = self.salesforce.field_history([str(plan.opportunity_id) for plan in plans])
        integration = self.context.integration_user_id()
        changes: dict[str, tuple[datetime, bool]] = {}
        for plan in plans:
            created = (str((plan.opportunity or {}).get("CreatedDate") or ""),
                       str((plan.opportunity or {}).get("CreatedById") or ""))
            row = history.get(str(plan.opportunity_id), {}).get(HISTORY_FIELD_NAMES[ACCOUNT_FIELD]) or (
                created if all(created) else None)
            changed_at = parse_datetime(row[0]) if row is not None else None
            if row is None or changed_at is None:
                continue
            changes[plan.deal_id] = (changed_at, bool(integration and row[1]
                                                      and sf_id_18(row[1]) == sf_id_18(integration)))
        return changes

    def _companies_taken_back(self, plans: Sequence[_Plan]) -> None:
        """Deals whose company a person changed in HubSpot while, later, a person changed the opportunity's
        account and set it back to the agreed one (A → B → A in Salesforce: its field history says when):
        Salesforce's is the later change, and the deal gets the agreed company back."""
        candidates = [plan for plan in plans
                      if plan.link is not None and plan.opportunity is not None and plan.company_put_back is None
                      and plan.deal_id in self._companies_changed_at
                      and plan.company != _text(plan.shadow.get(COMPANY_KEY))]
        if not candidates:
            return
        agreed = {company: link.salesforce_id for company, link in self.store.links.get_many(
            LinkKind.ACCOUNT, Side.HUBSPOT, sorted({str(plan.shadow[COMPANY_KEY]) for plan in candidates
                                                    if plan.shadow.get(COMPANY_KEY)})).items() if link.is_active}
        holding = [plan for plan in candidates if (plan.opportunity or {}).get(ACCOUNT_FIELD) == (
            agreed.get(str(plan.shadow[COMPANY_KEY])) if plan.shadow.get(COMPANY_KEY) else None)]
        if not holding:
            return
        changes = self._account_changes(holding)
        for plan in holding:
            changed_at, by_dealsync = changes.get(plan.deal_id, (None, True))
            hubspot_at = self._person_changed_at(plan.deal_id, COMPANY) or self._companies_changed_at[plan.deal_id]
            if by_dealsync or changed_at is None or changed_at <= hubspot_at:
                continue
            before = _text(plan.shadow.get(COMPANY_KEY))
            plan.company_put_back, plan.company = (plan.company, before), before
            logger.info("account set again in Salesforce after HubSpot's company change: Salesforce's is the later",
                        extra={"deal_id": plan.deal_id, "company_id": before})

    def _companies_put_back(self, plans: Sequence[_Plan]) -> None:
        """Deals on which both sides agree on the company only because dealsync put Salesforce's older account
        back on the deal after a person's later HubSpot change, before that change's webhook came: the
        person's company (the latest primary company event's) is the later change. Known when the account's
        field history says a person changed it before that event, or dealsync made the change; else not."""
        person_set = self._primary_companies
        candidates = [plan for plan in plans
                      if plan.link is not None and plan.opportunity is not None and plan.deal_id in person_set
                      and plan.deal_id in self._companies_changed_at and person_set[plan.deal_id] != plan.company
                      and plan.company == _text(plan.shadow.get(COMPANY_KEY))]
        if not candidates:
            return
        companies = sorted({company for plan in candidates for company in (plan.company, person_set[plan.deal_id])
                            if company})
        accounts = {company: link.salesforce_id for company, link
                    in self.store.links.get_many(LinkKind.ACCOUNT, Side.HUBSPOT, companies).items() if link.is_active}
        agreeing = [plan for plan in candidates
                    if (plan.opportunity or {}).get(ACCOUNT_FIELD) == accounts.get(str(plan.company))
                    and (person_set[plan.deal_id] is None or person_set[plan.deal_id] in accounts)]
        if not agreeing:
            return
        later = self._company_changed_later_in_hubspot(agreeing)
        for plan in agreeing:
            moment = self._companies_changed_at[plan.deal_id]
            if (plan.deal_id in later and not self._noted_later(plan.deal_id, COMPANY, moment)
                    and self._written_since(plan.deal_id, COMPANY, moment, state=plan.company or "")):
                plan.company_put_back = (plan.company, person_set[plan.deal_id])
                plan.company = person_set[plan.deal_id]
                logger.info("company put back on the deal from an older Salesforce change: the person's is the later",
                            extra={"deal_id": plan.deal_id, "company_id": plan.company})

    def _noted_later(self, deal_id: str, target: str, moment: datetime) -> bool:
        """Whether the HubSpot worker noted a person's change of this association (``COMPANY`` or a contact)
        later than ``moment``, from another batch's webhooks: this batch's change is then not the latest."""
        times = self._noted(deal_id)
        noted = None if times is None else (times.company if target == COMPANY else times.contacts.get(target))
        return noted is not None and _milliseconds(noted) > _milliseconds(moment)  # kept to the millisecond

    def _written_since(self, deal_id: str, target: str, moment: datetime, *, state: str) -> bool:
        """Whether the deal shows dealsync's own write of this association (either direction's), made after
        ``moment``: its last write was ``state`` (what the deal holds), and later. Else the deal shows a person's
        later change whose webhook is still on its way."""
        written = self._copied_at(deal_id, target, state=state)
        return written is not None and _milliseconds(written) > _milliseconds(moment)

    def _copied_at(self, deal_id: str, target: str, *, state: str) -> datetime | None:
        """When dealsync last wrote this association of the deal (a contact: the Salesforce → HubSpot direction;
        the company: either direction), if it wrote ``state`` (what the deal holds): the deal then shows the
        state that sync decided on, unless a person changed it since."""
        times = self._noted(deal_id)
        if times is None or times.own_states.get(target) != state:
            return None
        return times.own_company if target == COMPANY else times.own_contacts.get(target)

    def _being_paired(self, deal: Mapping[str, Any], opportunity: Mapping[str, Any]) -> bool:
        """Whether the Salesforce → HubSpot direction made this unlinked deal from the opportunity it names a
        moment ago (a person's opportunity; the deal younger than PAIRING_GRACE_SECONDS) and is still pairing
        them: saving the link is its last step."""
        created = _created_at(deal)
        integration = self.context.integration_user_id()
        made_by = str(opportunity.get("CreatedById") or "")
        return (created is not None and bool(integration) and bool(made_by)
                and sf_id_18(made_by) != sf_id_18(str(integration))
                and (now_utc() - created).total_seconds() < PAIRING_GRACE_SECONDS)

    def _copy_is_latest(self, deal_id: str, target: str, copied_at: datetime) -> bool:
        """Whether no person changed this association in HubSpot after dealsync's copy (by this batch's webhooks
        or another delivery's, noted)."""
        times = self._noted(deal_id)
        noted = None if times is None else (times.company if target == COMPANY else times.contacts.get(target))
        delivered = (self._companies_changed_at.get(deal_id) if target == COMPANY
                     else self._contacts_changed_at.get(deal_id, {}).get(target))
        return all(moment is None or _milliseconds(copied_at) > _milliseconds(moment) for moment in (noted, delivered))

    def _person_changed_at(self, deal_id: str, target: str) -> datetime | None:
        """When a person last changed this association of the deal (``COMPANY`` or a contact) in HubSpot: this
        batch's webhooks, or a later one the worker noted from another delivery (a batch may carry a stale one)."""
        delivered = (self._companies_changed_at.get(deal_id) if target == COMPANY
                     else self._contacts_changed_at.get(deal_id, {}).get(target))
        if delivered is None:
            return None
        times = self._noted(deal_id)
        noted = None if times is None else (times.company if target == COMPANY else times.contacts.get(target))
        return noted if noted is not None and _milliseconds(noted) > _milliseconds(delivered) else delivered

    def _noted(self, deal_id: str) -> AssociationTimes | None:
        if self._noted_times is None:  # read once, when first needed
            self._noted_times = self.store.association_times.for_deals(
                sorted({*self._companies_changed_at, *self._contacts_changed_at, *self._associations_read}))
        return self._noted_times.get(deal_id)

    def _write_companies_put_back(self, plans: Sequence[_Plan]) -> None:
        """The person's company back on the deals ``_companies_put_back`` found, before Salesforce gets it: a
        worker that dies in between leaves the deal changed against the shadow, which the next sync brings to
        Salesforce (the other way round, the account dealsync set would pass for HubSpot's later change)."""
        fixed = [(plan, plan.company_put_back) for plan in plans
                 if plan.company_put_back is not None and plan.company_applied]
        written_ms = _milliseconds(now_utc())  # before the writes, as the other direction notes its own
        removed = [(plan.deal_id, before) for plan, (before, _) in fixed if before]
        added = [(plan.deal_id, person, DEAL_TO_PRIMARY_COMPANY) for plan, (_, person) in fixed if person]
        if added:  # the new primary first: the deal is never without one (see opportunity_sync)
            self.hubspot.associations_create("deals", "companies", added)
        if removed:
            self.hubspot.associations_archive("deals", "companies", removed)
        # Noted as dealsync's own write, as the other direction's copies are: a company taken back on a stale
        # delivery (the person's later change still on its way) is then put back once that change's webhook
        # comes (_companies_put_back reads the deal's company as dealsync's write, made after the person's).
        for plan, (_, company) in fixed:
            self.store.association_times.note_own(plan.deal_id, {COMPANY: company or ""}, written_ms)

    # --- writes ------------------------------------------------------------------------------------
    def _apply_results(self, plans: Sequence[_Plan], results: Sequence[dict[str, Any]], keys: Sequence[str],
                       report: SyncReport) -> dict[str, dict[str, Any]]:
        """Per-record results of a collection write: failures recorded or retried; successes by key."""
        failures = record_errors(results, list(keys))
        succeeded: dict[str, dict[str, Any]] = {}
        for plan, key, result in zip(plans, keys, results, strict=True):
            failure = failures.get(key)
            if failure is None:
                succeeded[key] = result
                continue
            plan.failed = True
            if isinstance(failure, PermanentCrmError):
                plan.errors.append((failure.category, failure.message))
            else:
                report.retry[plan.deal_id] = failure.message
        return succeeded

    def _write_new(self, plans: Sequence[_Plan], report: SyncReport) -> None:
        creating = [plan for plan in plans if plan.opportunity is None]
        if not creating:
            return
        records = [{DEAL_ID_FIELD: plan.deal_id, **plan.salesforce_fields} for plan in creating]
        try:
            results = self.salesforce.upsert("Opportunity", DEAL_ID_FIELD, records)
        except PermanentCrmError as error:  # the whole request refused: every record gets the cause
            _refused(creating, error)
            return
        succeeded = self._apply_results(creating, results, [plan.deal_id for plan in creating], report)
        for plan in creating:
            result = succeeded.get(plan.deal_id)
            if result is None:
                continue
            plan.opportunity_id = str(result["id"])
            plan.hubspot_properties[UNIQUE_PROPERTY] = plan.opportunity_id
            (report.created if result.get("created", True) else report.updated).append(plan.deal_id)

    def _write_existing(self, plans: Sequence[_Plan], report: SyncReport) -> None:
        writing: list[_Plan] = []
        updates: list[dict[str, Any]] = []
        for plan in plans:
            if plan.opportunity is None:
                continue
            fields = dict(plan.salesforce_fields)
            if plan.opportunity.get(DEAL_ID_FIELD) != plan.deal_id:
                fields[DEAL_ID_FIELD] = plan.deal_id
            if str(plan.deal["properties"].get(UNIQUE_PROPERTY) or "") != plan.opportunity_id:
                plan.hubspot_properties[UNIQUE_PROPERTY] = str(plan.opportunity_id)
            if fields:
                writing.append(plan)
                updates.append({"Id": plan.opportunity_id, **fields})
        if not updates:
            return
        try:
            results = self.salesforce.update("Opportunity", updates)
        except PermanentCrmError as error:
            _refused(writing, error)
            return
        succeeded = self._apply_results(writing, results, [plan.deal_id for plan in writing], report)
        report.updated += [plan.deal_id for plan in writing if plan.deal_id in succeeded]

    def _agree_pending_contacts(self, plans: Sequence[_Plan]) -> None:
        """A sync that died after writing contact roles left them pending on the link: when Salesforce's
        roles are that contact set, it is the agreed one (not HubSpot's additions still to make)."""
        waiting = [plan for plan in plans if plan.link is not None and plan.opportunity is not None
                   and CONTACTS_KEY in (plan.link.pending or {}).get(Side.SALESFORCE.value, {})]
        if not waiting:
            return
        role_contacts = {plan.deal_id: contact_role_ids(plan.opportunity or {}) for plan in waiting}
        contact_links = self.store.links.get_many(
            LinkKind.CONTACT, Side.SALESFORCE, sorted({cid for ids in role_contacts.values() for cid in ids}))
        hubspot_of = {cid: link.hubspot_id for cid, link in contact_links.items() if link.is_active}
        for plan in waiting:
            pending = ((plan.link.pending or {}) if plan.link else {})[Side.SALESFORCE.value][CONTACTS_KEY]
            if {hubspot_of.get(cid) for cid in role_contacts[plan.deal_id]} == split(pending):
                plan.shadow[CONTACTS_KEY] = pending

    def _write_roles(self, plans: Sequence[_Plan]) -> None:
        """HubSpot's contact association changes → contact roles added and removed."""
        ready = [plan for plan in plans if plan.opportunity_id and not plan.failed]
        self._agree_pending_contacts(ready)
        diffs = {plan.deal_id: contact_diff(plan.contacts, split(plan.shadow.get(CONTACTS_KEY))
                                            if plan.link is not None else ()) for plan in ready}
        timed = {plan.deal_id: set(self._contacts_changed_at.get(plan.deal_id, {})) for plan in ready}
        hubspot_ids = sorted({cid for diff in diffs.values() for cid in diff.added | diff.removed}
                             | {cid for ids in timed.values() for cid in ids})
        contact_links = self.store.links.get_many(LinkKind.CONTACT, Side.HUBSPOT, hubspot_ids)
        salesforce_of = {cid: link.salesforce_id for cid, link in contact_links.items() if link.is_active}
        creates: list[tuple[_Plan, str, dict[str, Any]]] = []
        deletes: list[tuple[_Plan, str, str]] = []  # plan, role id, HubSpot contact id
        undo: list[tuple[str, str]] = []  # (deal, contact) associations Salesforce's later change takes back
        redo: list[tuple[str, str, int]] = []
        unremoved: dict[str, set[str]] = {}
        taken_off: dict[str, set[str]] = {}  # agreed contacts a person's later HubSpot change takes off
        put_on: dict[str, set[str]] = {}  # and puts on
        for plan in ready:
            diff = diffs[plan.deal_id]
            roles = contact_roles(plan.opportunity) if plan.opportunity is not None else []
            has_role = {str(role["ContactId"]) for role in roles}
            for hubspot_id in sorted(diff.added):
                salesforce_id = salesforce_of.get(hubspot_id)
                if salesforce_id is None:
                    plan.errors.append((ErrorCategory.CONTACT_NOT_IN_SALESFORCE,
                                        f"HubSpot contact {hubspot_id} has no Salesforce contact; no contact role"))
                    continue
                if salesforce_id in has_role:
                    plan.applied_contacts.add(hubspot_id)
                    continue
                if self._role_changed_later(plan, salesforce_id, hubspot_id, deleted=True):
                    undo.append((plan.deal_id, hubspot_id))  # removed in Salesforce after HubSpot added it
                    continue
                creates.append((plan, hubspot_id, {"OpportunityId": plan.opportunity_id, "ContactId": salesforce_id}))
            for hubspot_id in sorted(diff.removed):
                salesforce_id = salesforce_of.get(hubspot_id)
                if salesforce_id is None:
                    continue
                if self._role_changed_later(plan, salesforce_id, hubspot_id, deleted=False):
                    # added again in Salesforce after HubSpot removed it: it stays, and goes back to the deal
                    redo.append((plan.deal_id, hubspot_id, DEAL_TO_CONTACT))
                    unremoved.setdefault(plan.deal_id, set()).add(hubspot_id)
                    continue
                deletes += [(plan, role_id, hubspot_id) for role_id in roles_to_delete(roles, [salesforce_id])]
            # Unchanged in HubSpot against the shadow, but set again there (A → B → A) after Salesforce changed.
            for hubspot_id in sorted(timed[plan.deal_id] - diff.added - diff.removed):
                salesforce_id = salesforce_of.get(hubspot_id)
                if salesforce_id is None or plan.link is None:
                    continue
                on_deal = hubspot_id in diff.kept
                if on_deal == (salesforce_id in has_role):  # Salesforce agrees: but maybe not the person
                    if not self._put_back_before_hubspots_change(plan, salesforce_id, hubspot_id, on_deal=on_deal):
                        continue
                    if on_deal:
                        undo.append((plan.deal_id, hubspot_id))
                        deletes += [(plan, role_id, hubspot_id) for role_id in roles_to_delete(roles, [salesforce_id])]
                        taken_off.setdefault(plan.deal_id, set()).add(hubspot_id)
                    else:
                        redo.append((plan.deal_id, hubspot_id, DEAL_TO_CONTACT))
                        creates.append((plan, hubspot_id, {"OpportunityId": plan.opportunity_id,
                                                           "ContactId": salesforce_id}))
                        put_on.setdefault(plan.deal_id, set()).add(hubspot_id)
                    continue
                if not self._set_again_in_hubspot(plan, salesforce_id, hubspot_id, deleted=on_deal):
                    continue
                if on_deal:
                    creates.append((plan, hubspot_id, {"OpportunityId": plan.opportunity_id,
                                                       "ContactId": salesforce_id}))
                else:
                    deletes += [(plan, role_id, hubspot_id) for role_id in roles_to_delete(roles, [salesforce_id])]
        if creates or deletes or undo or redo:
            logger.debug("contact roles written", extra={
                "roles_added": [(plan.deal_id, hubspot_id) for plan, hubspot_id, _ in creates],
                "roles_removed": [(plan.deal_id, hubspot_id) for plan, _, hubspot_id in deletes],
                "taken_off_deals": undo, "put_back_on_deals": redo})
        if undo:
            self.hubspot.associations_archive("deals", "contacts", undo)
        if redo:
            self.hubspot.associations_create("deals", "contacts", redo)
        for plan, _, _ in [*creates, *deletes]:
            plan.roles_changed = True
        if creates:
            try:
                results = self.salesforce.create(ROLE_OBJECT, [record for _, _, record in creates])
            except PermanentCrmError as error:
                results = [{"success": False, "errors": [{"statusCode": error.code or "UNKNOWN",
                                                          "message": error.message}]} for _ in creates]
            keys = [f"{plan.deal_id}:{hubspot_id}" for plan, hubspot_id, _ in creates]
            failures = record_errors(results, keys)
            for (plan, hubspot_id, _), key in zip(creates, keys, strict=True):
                failure = failures.get(key)
                if failure is None:
                    plan.applied_contacts.add(hubspot_id)
                else:
                    plan.errors.append((_category(failure),
                                        f"contact role for HubSpot contact {hubspot_id}: {failure.message}"))
        if deletes:
            role_ids = [role_id for _, role_id, _ in deletes]
            try:
                deleted = self.salesforce.delete(role_ids)
            except PermanentCrmError as error:
                deleted = [{"success": False, "errors": [{"statusCode": error.code or "UNKNOWN",
                                                          "message": error.message}]} for _ in role_ids]
            failures = record_errors(deleted, role_ids)
            removed_roles: dict[str, set[str]] = {}
            for plan, role_id, hubspot_id in deletes:
                failure = failures.get(role_id)
                if failure is None:
                    removed_roles.setdefault(plan.deal_id, set()).add(hubspot_id)
                    continue
                unremoved.setdefault(plan.deal_id, set()).add(hubspot_id)
                plan.errors.append((_category(failure), f"contact role {role_id} not removed: {failure.message}"))
            deleted_ms = _milliseconds(now_utc())
            for deal_id, contact_ids in removed_roles.items():
                self.store.association_times.note_roles_deleted(deal_id, sorted(contact_ids), deleted_ms)
        for plan in ready:
            diff = diffs[plan.deal_id]
            still = frozenset(unremoved.get(plan.deal_id, set()))
            off, on = taken_off.get(plan.deal_id, set()), put_on.get(plan.deal_id, set())
            agreed = ContactDiff(diff.added | on, (diff.removed | off) - still, (diff.kept - off) | still)
            plan.shadow[CONTACTS_KEY] = contacts_shadow(agreed, plan.applied_contacts)

    def _role_changed_later(self, plan: _Plan, salesforce_id: str, hubspot_id: str, *, deleted: bool) -> bool:
        """Whether a person changed the contact's role in Salesforce after the HubSpot association change
        this sync applies (its webhook's time): ``deleted`` — a role removed after HubSpot added the contact;
        else a role created after HubSpot removed it. Salesforce then holds the agreed state again (A → B →
        A) and its change is the later one. Without HubSpot's time: no (HubSpot's change applies).
        A role dealsync created is no person's; nor is one deleted no later than dealsync last deleted that
        contact's role (Salesforce does not say who deleted; the HubSpot worker notes its own deletions)."""
        if deleted and CONTACTS_KEY in (plan.pending_read or {}).get(Side.SALESFORCE.value, {}):
            return False  # a sync of this pair wrote roles and did not save it: the deletion may be its own
        if plan.link is None or plan.opportunity is None:
            return False
        person_at = self._person_changed_at(plan.deal_id, hubspot_id)
        # The deal may show the Salesforce → HubSpot direction's copy of the contact rather than a person's change
        # (that sync wrote it and could not save the pair): then the copy's time is HubSpot's.
        copied_at = self._copied_at(plan.deal_id, hubspot_id, state=ON_DEAL if deleted else OFF_DEAL)
        if copied_at is not None and self._copy_is_latest(plan.deal_id, hubspot_id, copied_at):
            hubspot_at = copied_at
        elif person_at is not None:
            hubspot_at = person_at
        else:
            return False
        salesforce_at = role_changed_at(plan.opportunity, salesforce_id, deleted=deleted,
                                        integration_user_id=self.context.integration_user_id())
        noted = self._noted(plan.deal_id)
        own_deletion = noted.roles_deleted.get(hubspot_id) if deleted and noted is not None else None
        not_before = max(hubspot_at, own_deletion) if own_deletion is not None else hubspot_at
        # Salesforce keeps times to the second: a person's role change in the second of dealsync's copy came
        # after it (a change before it would have been read by that sync, which re-reads before it writes).
        copy_basis = hubspot_at == copied_at and not_before == hubspot_at
        later = salesforce_at is not None and (
            salesforce_at > not_before or (copy_basis and salesforce_at >= not_before.replace(microsecond=0)))
        if later:
            logger.info("contact role changed in Salesforce after HubSpot's change: Salesforce's is the later",
                        extra={"deal_id": plan.deal_id, "contact_id": hubspot_id, "removed": deleted})
        return later

    def _role_times(self, plan: _Plan, salesforce_id: str, hubspot_id: str, *,
                    deleted: bool) -> tuple[datetime, datetime | None] | None:
        """(when a person last changed the contact's association in HubSpot, when a person last changed its
        role in Salesforce), for a linked pair; None without HubSpot's time."""
        hubspot_at = self._person_changed_at(plan.deal_id, hubspot_id)
        if hubspot_at is None or plan.opportunity is None or plan.link is None:
            return None
        return hubspot_at, role_changed_at(plan.opportunity, salesforce_id, deleted=deleted,
                                           integration_user_id=self.context.integration_user_id())

    def _set_again_in_hubspot(self, plan: _Plan, salesforce_id: str, hubspot_id: str, *, deleted: bool) -> bool:
        """Whether a person set the agreed association again in HubSpot (A → B → A: its webhook's time) after
        a person changed the role in Salesforce: ``deleted`` — after the role was deleted (the deal has the
        contact, as agreed); else after the role was created (the deal lacks it, as agreed). HubSpot's is the
        later change. Without either time: no (the Salesforce → HubSpot direction brings Salesforce's)."""
        times = self._role_times(plan, salesforce_id, hubspot_id, deleted=deleted)
        if times is None:
            return False
        hubspot_at, salesforce_at = times
        again = salesforce_at is not None and hubspot_at > salesforce_at
        if again:
            logger.info("contact set again in HubSpot after the role changed in Salesforce: HubSpot's is the later",
                        extra={"deal_id": plan.deal_id, "contact_id": hubspot_id, "on_deal": deleted})
        return again

    def _put_back_before_hubspots_change(self, plan: _Plan, salesforce_id: str, hubspot_id: str, *,
                                         on_deal: bool) -> bool:
        """Whether both sides agree on the contact only because dealsync put Salesforce's state back on the deal
        after a person's later HubSpot change, before that change's webhook came (``on_deal``: the person took
        the contact off the deal; else put it on). The person's is the later change when a person set the role
        in Salesforce before it; a role dealsync made, or no time: no."""
        if (hubspot_id in self._contacts_removed.get(plan.deal_id, set())) != on_deal:
            return False  # the deal is as the person left it
        delivered_at = self._contacts_changed_at.get(plan.deal_id, {}).get(hubspot_id)
        if delivered_at is None or self._noted_later(plan.deal_id, hubspot_id, delivered_at):
            return False  # not the person's latest change of it
        times = self._role_times(plan, salesforce_id, hubspot_id, deleted=not on_deal)
        if times is None or not self._written_since(plan.deal_id, hubspot_id, times[0],
                                                    state=ON_DEAL if on_deal else OFF_DEAL):
            return False
        hubspot_at, salesforce_at = times
        earlier = salesforce_at is not None and salesforce_at < hubspot_at
        if earlier:
            logger.info("association put back on the deal from an older Salesforce change: the person's is the "
                        "later", extra={"deal_id": plan.deal_id, "contact_id": hubspot_id, "on_deal": not on_deal})
        return earlier

    def _write_hubspot(self, plans: Sequence[_Plan]) -> None:
        """What HubSpot needs back: the new opportunity's id, and resets (e.g. an unmatched owner)."""
        writing = [plan for plan in plans if plan.hubspot_properties and not plan.failed and plan.opportunity_id]
        if not writing:
            return
        inputs = [{"id": plan.deal_id, "properties": plan.hubspot_properties} for plan in writing]
        try:
            results = self.hubspot.batch_update("deals", inputs)
        except PermanentCrmError as error:
            # HubSpot refuses a whole batch for one bad input (a deal deleted a moment ago, a value taken):
            # each deal again on its own, so the others are not held back by it.
            results = self._update_each(inputs) if len(inputs) > 1 else [{"error": {"message": error.message}}]
        done = {str(result.get("id")) for result in results if "error" not in result}
        failed = {str(result.get("id")): str(result["error"].get("message")) for result in results if "error" in result}
        failures = "; ".join(sorted(set(failed.values())))
        for plan in writing:
            if plan.deal_id not in done:
                plan.failed = plan.opportunity is not None or plan.failed
                message = failed.get(plan.deal_id) or failures or "no detail"
                plan.errors.append((ErrorCategory.HUBSPOT_VALIDATION, f"deal not updated: {message}"))

    def _update_each(self, inputs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for item in inputs:
            try:
                results += self.hubspot.batch_update("deals", [item])
            except PermanentCrmError as error:
                results.append({"id": item["id"], "error": {"message": f"deal {item['id']}: {error.message}"}})
        return results

    def _save_links(self, plans: Sequence[_Plan], report: SyncReport) -> None:
        for plan in plans:
            if not plan.opportunity_id or plan.deal_id in report.retry:
                continue
            if plan.failed and plan.link is not None:
                continue  # nothing agreed: the next change tries again
            shadow = dict(plan.decision.shadow)
            shadow[CONTACTS_KEY] = plan.shadow.get(CONTACTS_KEY)
            before = plan.shadow.get(COMPANY_KEY) if plan.link is not None else None
            shadow[COMPANY_KEY] = plan.company if plan.company_applied else before
            if plan.link is None:
                result = self.store.links.create(LinkKind.OPPORTUNITY, plan.opportunity_id, plan.deal_id, shadow)
                if not result.created and result.link.hubspot_id != plan.deal_id:
                    logger.error("opportunity already linked to another deal", extra={
                        "opportunity_id": plan.opportunity_id, "deal_id": plan.deal_id,
                        "linked_deal_id": result.link.hubspot_id})
                elif not result.created:
                    self._update_shadow(result.link, shadow, plan, report)
                continue
            if shadow == plan.link.shadow and plan.link.pending is None:
                if not plan.salesforce_fields and not plan.hubspot_properties:
                    report.unchanged.append(plan.deal_id)
                continue
            self._update_shadow(plan.link, shadow, plan, report)

    def _update_shadow(self, link: Link, shadow: dict[str, ShadowValue], plan: _Plan, report: SyncReport) -> None:
        try:
            self.store.links.update_shadow(link, shadow)
        except StaleShadowError as error:
            report.retry[plan.deal_id] = str(error)
            if plan.salesforce_fields or plan.hubspot_properties:  # written over the other sync's: say whose
                self.store.links.keep_pending(link)

    def _record_errors(self, plans: Sequence[_Plan], report: SyncReport) -> None:
        """This direction's errors live on the deal (record type Deal), so the Salesforce → HubSpot
        direction, which owns the opportunity's, never clears them; resolved ones clear here."""
        for plan in plans:
            related = {"deal_id": plan.deal_id}
            if plan.opportunity_id:
                related["opportunity_id"] = plan.opportunity_id
            for category, message in plan.errors:
                self.store.errors.record(category, DEAL_RECORD_TYPE, plan.deal_id, message, related)
                report.error(plan.deal_id, str(category))
            stale = DEAL_CATEGORIES - {category for category, _ in plan.errors}
            self.store.errors.resolve(plan.deal_id, stale)

    def _update_rollups(self, plans: Sequence[_Plan]) -> None:
        """The projection of the opportunities whose rollup inputs changed (re-read after the writes)."""
        ids = sorted({plan.opportunity_id for plan in plans if plan.opportunity_id and not plan.failed and (
            plan.opportunity is None or plan.roles_changed or ROLLUP_FIELDS & set(plan.salesforce_fields))})
        if not ids:
            return
        records = self.salesforce.query_by_ids(opportunity_select(self.context, self.context.field_specs(
            self.context.config())), "Opportunity", ids)
        enqueue_rollups(self.context, update_rollup_projection(self.context, records))

    def _emit_metrics(self, report: SyncReport, source: str) -> None:
        metrics.add_metric(name="RecordsSynced", unit=MetricUnit.Count, value=len(report.created) + len(report.updated))
        metrics.add_metric(name="Conflicts", unit=MetricUnit.Count, value=report.conflicts)
        metrics.add_metric(name="SyncErrors", unit=MetricUnit.Count, value=len(report.errors))
        if report.retry:
            logger.debug("deals to sync again", extra={"retry": report.retry})
        logger.info("deals synced to Salesforce", extra={
            "source": source, "created_ids": report.created, "updated_ids": report.updated,
            "deleted_ids": report.deleted, "unchanged": len(report.unchanged), "skipped": len(report.skipped),
            "retry": sorted(report.retry), "salesforce_calls": self.salesforce.calls,
            "hubspot_calls": self.hubspot.calls})


def _agree_unsaved_deal_writes(plans: Sequence[_Plan]) -> None:
    """A Salesforce → HubSpot sync that wrote a deal's associations and did not save the pair left them on the
    link: when the deal (its associations, read for it) holds them, they are what both sides agree on. Diffed
    against the older shadow, that write would pass for a person's change and go to Salesforce."""
    for plan in plans:
        written = (plan.pending_read or {}).get(Side.HUBSPOT.value, {})
        if CONTACTS_KEY in written and written[CONTACTS_KEY] == joined(plan.contacts):
            plan.shadow[CONTACTS_KEY] = written[CONTACTS_KEY]
        if COMPANY_KEY in written and written[COMPANY_KEY] == plan.company:
            plan.shadow[COMPANY_KEY] = written[COMPANY_KEY]


def _refused(plans: Sequence[_Plan], error: PermanentCrmError) -> None:
    for plan in plans:
        plan.failed = True
        plan.errors.append((error.category, error.message))


def _category(failure: Exception) -> ErrorCategory:
    return failure.category if isinstance(failure, PermanentCrmError) else ErrorCategory.SALESFORCE_VALIDATION


def _created_at(deal: Mapping[str, Any]) -> datetime | None:
    created = deal.get("created_at")
    if isinstance(created, datetime):
        return created
    return parse_datetime(str(created)) if created else None


def _candidate_opportunity(deal: Mapping[str, Any]) -> bool:
    value = str((deal.get("properties") or {}).get(UNIQUE_PROPERTY) or "")
    return value.isalnum() and len(value) in (15, 18)


def _milliseconds(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def sync_deals(context: SyncContext, deal_ids: Sequence[str], *, merges: Mapping[str, Sequence[str]] | None = None,
               associations_for: Collection[str] | None = None, source: str = "hubspot_changes",
               companies_changed_at: Mapping[str, datetime] | None = None,
               contacts_changed_at: Mapping[str, Mapping[str, datetime]] | None = None,
               contacts_removed: Mapping[str, Collection[str]] | None = None,
               primary_companies: Mapping[str, str | None] | None = None) -> SyncReport:
    return DealSync(context).sync(deal_ids, merges=merges, associations_for=associations_for, source=source,
                                  companies_changed_at=companies_changed_at, contacts_changed_at=contacts_changed_at,
                                  contacts_removed=contacts_removed, primary_companies=primary_companies)


__all__ = ["ContactDiff", "DealSync", "contact_diff", "contacts_shadow", "roles_to_delete", "sync_deals"]
