"""Salesforce → HubSpot: bring the deals of a set of opportunities in line with Salesforce.

Always from the current state: the opportunities are re-read (one query per 200), their deals read
by the unique `salesforce_opportunity_id` (one call per 100), every field decided against the link's
shadow by the pure mapping, and the results written in bulk — deals by batch upsert, associations by
v4 batch calls, the Salesforce side (deal ids, resets) by sObject Collections. Unchanged deals are not
written. One record's error never stops the others: it is recorded by category, or, when it is worth
retrying, reported back so the queue redelivers just that message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from dealsync.clients.errors import PermanentCrmError, TransientCrmError
from dealsync.clients.salesforce import ENTITY_IS_DELETED, record_errors
from dealsync.faultpoints import OPPORTUNITY_SYNC_AFTER_HUBSPOT_WRITE, reach
from dealsync.mapping.fields import FieldSpec, hubspot_properties_to_read
from dealsync.mapping.rules import RecordDecision, decide_record
from dealsync.mapping.stages import StageMap
from dealsync.mapping.values import parse_datetime, sf_id_18
from dealsync.models.domain import ErrorCategory, Link, LinkKind, LinkStatus, ShadowValue, Side
from dealsync.models.events import deal_resync_messages
from dealsync.observability import logger, metrics
from dealsync.queues import send_messages
from dealsync.services.contacts import link_contacts
from dealsync.services.context import SyncContext
from dealsync.services.pipelines import provision_pipelines
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
    enqueue_rollups,
    existing_errors,
    hubspot_snapshot,
    joined,
    opportunities_changed_since_read,
    opportunity_select,
    pending_writes,
    primary_company,
    record_sync_errors,
    record_sync_errors_batch,
    role_changed_at,
    rollup_projection_by_record,
    salesforce_snapshot,
    split,
    update_rollup_projection,
)
from dealsync.store import StaleShadowError
from dealsync.store.association_times import COMPANY, OFF_DEAL, ON_DEAL
from dealsync.store.dynamo import now_utc

# An opportunity dealsync created from a deal a moment ago, not linked yet, is being paired by the HubSpot →
# Salesforce direction (its roles, the deal's opportunity id, the link come next): this direction leaves it
# to that one for this long (a little more than that worker's timeout), and pairs it itself after that.
# Left means acknowledged, not retried: only dealsync has written it (a person's change would make its
# LastModifiedById theirs), and a retry per second would use up the message's receives (its DLQ after 5).
PAIRING_GRACE_SECONDS = 90

# The deal writes come between the re-read of the opportunities and their write, and take seconds when
# HubSpot is slow (retries, latency): past this, the opportunities about to be written are read again just
# before (a person's change in between would be overwritten). Rarely a call: only slow batches that write
# Salesforce fields (HubSpot's changes) pay it.
RECHECK_AFTER_SECONDS = 1.0


@dataclass
class SyncReport:
    """What one batch did; ``retry`` holds the ids worth another attempt, with the reason."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)
    retry: dict[str, str] = field(default_factory=dict)
    conflicts: int = 0
    deal_ids: dict[str, str] = field(default_factory=dict)  # opportunity -> its deal, after this batch
    # Import mode: deal ids the opportunities do not carry yet, written back once per job (not per batch),
    # and the contacts whose rollups each opportunity affected, recomputed once when the job ends.
    writeback: dict[str, str] = field(default_factory=dict)
    rollup_contacts: dict[str, set[str]] = field(default_factory=dict)
    # Deals with an association a person changed in HubSpot after Salesforce's change: left as they are,
    # and synced to Salesforce by the other direction (asked for once the pair is saved).
    hubspot_later: list[str] = field(default_factory=list)

    def error(self, record_id: str, message: str) -> None:
        self.errors.setdefault(record_id, []).append(message)


@dataclass
class _Plan:
    """One opportunity's part of the batch."""

    opportunity: dict[str, Any]
    link: Link | None
    deal: dict[str, Any] | None
    decision: RecordDecision
    shadow: dict[str, ShadowValue]
    contacts: list[str] = field(default_factory=list)  # HubSpot contact ids wanted
    company: str | None = None  # HubSpot company id wanted
    errors: list[tuple[ErrorCategory, str]] = field(default_factory=list)
    deal_id: str | None = None
    contact_sources: dict[str, str] = field(default_factory=dict)  # HubSpot contact id -> Salesforce contact id
    # Associations a person changed in HubSpot after Salesforce did: not written to the deal.
    held_contacts: set[str] = field(default_factory=set)
    company_held: bool = False

    @property
    def opportunity_id(self) -> str:
        return str(self.opportunity["Id"])


class OpportunitySync:
    def __init__(self, context: SyncContext) -> None:
        self.context = context
        self.store = context.store
        self.salesforce = context.salesforce
        self.hubspot = context.hubspot
        self.own_app_id = context.credentials.hubspot.app_id  # tells dealsync's own HubSpot writes apart

    # --- entry point -----------------------------------------------------------------------------
    def sync(self, opportunity_ids: Sequence[str], *, changed_at: Mapping[str, datetime] | None = None,
             source: str = "change") -> SyncReport:
        report = SyncReport()
        ids = list(dict.fromkeys(opportunity_ids))
        if not ids:
            return report
        if not self.context.toggles().deal_sync:
            report.skipped += ids
            metrics.add_metric(name="ChangesIgnoredSyncOff", unit=MetricUnit.Count, value=len(ids))
            logger.info("deal sync is off: changes acknowledged, not applied", extra={"count": len(ids)})
            return report
        try:
            self._sync(ids, changed_at or {}, report)
        except TransientCrmError as error:
            for record_id in ids:
                report.retry.setdefault(record_id, str(error))
        self._emit_metrics(report, source)
        return report

    def sync_records(self, records: Sequence[Mapping[str, Any]], *, source: str = "import") -> SyncReport:
        """Import mode: the opportunities as the import's enumeration read them (the same SELECT,
        ``records.opportunity_select``), so nothing is read from Salesforce again. Deals are read only for
        opportunities already linked (the others are created or adopted by the batch upsert on the
        unique ``salesforce_opportunity_id``), and the deal ids are not written back to Salesforce here:
        they come back in ``report.writeback`` for one bulk write per job; nor are the rollups enqueued:
        the contacts affected come back in ``report.rollup_contacts``, recomputed once when the job ends."""
        report = SyncReport()
        by_id = {str(record["Id"]): dict(record) for record in records}
        ids = list(by_id)
        if not ids:
            return report
        if not self.context.toggles().deal_sync:
            report.skipped += ids
            metrics.add_metric(name="ChangesIgnoredSyncOff", unit=MetricUnit.Count, value=len(ids))
            return report
        try:
            specs, stages = self._specs_and_stages()
            self._apply(ids, by_id, specs, stages, {}, report, importing=True)
        except TransientCrmError as error:
            for record_id in ids:
                report.retry.setdefault(record_id, str(error))
        self._emit_metrics(report, source)
        return report

    def _specs_and_stages(self) -> tuple[tuple[FieldSpec, ...], StageMap]:
        config = self.context.config()
        specs = self.context.field_specs(config)
        stages = self.context.stage_map(config)
        if not stages.mappings:
            provision_pipelines(self.context)
            config = self.context.config()
            stages = self.context.stage_map(config)
        return specs, stages

    def _sync(self, ids: list[str], changed_at: Mapping[str, datetime], report: SyncReport) -> None:
        specs, stages = self._specs_and_stages()
        # The links first: a sync of the other direction that saves a pair after this read moves its
        # version, so the claim (_write_ahead) sees what was read from the CRMs below may be stale.
        links = self.store.links.get_many(LinkKind.OPPORTUNITY, Side.SALESFORCE, ids)
        records = {
            str(record["Id"]): record
            for record in self.salesforce.query_by_ids(opportunity_select(self.context, specs), "Opportunity", ids,
                                                       include_deleted=True)
        }
        self._apply(ids, records, specs, stages, changed_at, report, links=links)

    def _apply(self, ids: list[str], records: Mapping[str, dict[str, Any]], specs: Sequence[FieldSpec],
               stages: StageMap, changed_at: Mapping[str, datetime], report: SyncReport, *,
               importing: bool = False, links: Mapping[str, Link] | None = None) -> None:
        stages = self._ensure_pipelines(records.values(), stages)
        if links is None:
            links = self.store.links.get_many(LinkKind.OPPORTUNITY, Side.SALESFORCE, ids)
        live = [record_id for record_id in ids if record_id in records and not records[record_id].get("IsDeleted")]
        gone = [record_id for record_id in ids if record_id not in live]
        self._delete(gone, links, report)
        if not live:
            return
        if not importing:
            live = self._not_being_paired(live, records, links, report)
        # An import creates most deals: only the linked ones can have a deal to compare with.
        to_read = [record_id for record_id in live if record_id in links
                   and links[record_id].status is not LinkStatus.TOMBSTONED] if importing else live
        deals = self._read_deals(to_read, specs) if to_read else {}
        deals.update(self._claim_named_deals(live, records, links, deals, specs))
        plans = self._plan(live, records, links, deals, specs, stages, changed_at, report)
        self._link_associations(plans)
        self._agree_unsaved_association_writes(plans)
        checked_at = time.monotonic()
        if not importing:  # an import's records are its enumeration's; its writes never reach Salesforce fields
            self._hold_later_hubspot_changes(plans, report)
            plans = self._unchanged_since_read(plans, specs, report)
            checked_at = time.monotonic()
        plans = self._write_ahead(plans, specs, report)
        vanished = self._write_deals(plans, report, adopt=importing)
        plans = [plan for plan in plans if plan.opportunity_id not in vanished]
        reach(OPPORTUNITY_SYNC_AFTER_HUBSPOT_WRITE)  # a no-op outside the soak (dealsync.faultpoints)
        if not importing and time.monotonic() - checked_at > RECHECK_AFTER_SECONDS:
            plans = self._unchanged_since_read(plans, specs, report)
        self._write_salesforce(plans, report, defer_deal_ids=importing)
        self._write_associations(plans, note_times=not importing)
        if importing:
            # Thousands of records at a time: their errors are read by key in bulk, not one query each,
            # and an opportunity never seen before (no link, no error) has no rollup rows to look up.
            existing = existing_errors(self.context, "Opportunity", [plan.opportunity_id for plan in plans])
            seen = {record_id for _, record_id in existing} | set(links)
            self._save_links(plans, report)
            self._record_errors(plans, report, existing)
            report.rollup_contacts.update(rollup_projection_by_record(
                self.context, [plan.opportunity for plan in plans],
                without_rows={plan.opportunity_id for plan in plans} - seen))
            return
        self._save_links(plans, report)
        self._record_errors(plans, report)
        self._update_rollups(plans, report.deleted)
        self._hand_over_to_hubspot_side(report)

    def _not_being_paired(self, ids: Sequence[str], records: Mapping[str, dict[str, Any]],
                          links: Mapping[str, Link], report: SyncReport) -> list[str]:
        """Without the opportunities the other direction is pairing right now (see PAIRING_GRACE_SECONDS):
        read before their link exists, their contact roles would look like additions here and go back to a
        deal a person may have changed meanwhile. They are skipped: their next change (or the pairing
        worker's retry, or the weekly reconcile) syncs them."""
        integration_user_id = self.context.integration_user_id()
        moment = now_utc()
        kept: list[str] = []
        for record_id in ids:
            record = records[record_id]
            if (record_id not in links and record.get(DEAL_ID_FIELD) and record.get("CreatedDate")
                    and integration_user_id and record.get("LastModifiedById") == integration_user_id
                    and (moment - parse_datetime(record["CreatedDate"])).total_seconds() < PAIRING_GRACE_SECONDS):
                report.skipped.append(record_id)
                continue
            kept.append(record_id)
        return kept

    def _unchanged_since_read(self, plans: Sequence[_Plan], specs: Sequence[FieldSpec],
                              report: SyncReport) -> list[_Plan]:
        """Plans that write Salesforce fields or change a linked deal's associations, without the opportunities
        a person changed since they were read (those are read and decided again later): a contact role or an
        account taken back in the meantime must not reach the deal."""
        writing = {plan.opportunity_id: plan.opportunity for plan in plans
                   if plan.decision.salesforce_fields or _changes_associations(plan)}
        changed = opportunities_changed_since_read(self.context, specs, writing)
        for record_id in changed:
            report.retry[record_id] = "changed in Salesforce since it was read: read again"
        return [plan for plan in plans if plan.opportunity_id not in changed]

    def _write_ahead(self, plans: Sequence[_Plan], specs: Sequence[FieldSpec], report: SyncReport) -> list[_Plan]:
        """Linked pairs about to be written: what will be written, on the link first (Link.pending), so that
        a worker dying between the CRM writes and the shadow leaves the next sync knowing its writes. It is
        the claim on the pair too: a link another sync saved or claimed since this one read it refuses it,
        and that record is read again later instead of written from stale reads. Returns the plans to write."""
        claims: list[Claim] = []
        for plan in plans:
            if plan.link is None or plan.deal is None:
                continue
            pending = pending_writes(plan.decision, specs)
            # The associations this sync will change are part of its claim (the shadow keeps both).
            contacts = joined(plan.contacts)
            if contacts != plan.shadow.get(CONTACTS_KEY):
                pending[Side.HUBSPOT.value][CONTACTS_KEY] = contacts
            if plan.company != plan.shadow.get(COMPANY_KEY) and not _waiting(plan):
                pending[Side.HUBSPOT.value][COMPANY_KEY] = plan.company
            if any(pending.values()):
                claims.append((plan.opportunity_id, plan.link, pending))
        claimed, refused = claim_pairs(self.context, claims, report.retry)
        for plan in plans:
            plan.link = claimed.get(plan.opportunity_id, plan.link)
        return [plan for plan in plans if plan.opportunity_id not in refused]

    # --- reads -----------------------------------------------------------------------------------
    def _claim_named_deals(self, ids: Sequence[str], records: Mapping[str, dict[str, Any]],
                           links: Mapping[str, Link], deals: Mapping[str, dict[str, Any]],
                           specs: Sequence[FieldSpec]) -> dict[str, dict[str, Any]]:
        """Deals that the link (or the opportunity's deal id) names but that do not carry the opportunity's
        id yet — the HubSpot → Salesforce direction created the opportunity and then failed or died before
        telling HubSpot. They get the id now, so the upsert updates them instead of creating a second deal."""
        named: dict[str, str] = {}  # deal id -> opportunity id
        for record_id in ids:
            link = links.get(record_id)
            deal_id = link.hubspot_id if link is not None and link.is_active else (
                None if link is not None else records[record_id].get(DEAL_ID_FIELD))
            if record_id not in deals and deal_id:
                named[str(deal_id)] = record_id
        if not named:
            return {}
        properties = [*hubspot_properties_to_read(specs), UNIQUE_PROPERTY]
        unclaimed = [deal for deal in self.hubspot.batch_read("deals", list(named), properties)
                     if not (deal.get("properties") or {}).get(UNIQUE_PROPERTY)]
        claimed: dict[str, dict[str, Any]] = {}
        for deal in unclaimed:
            opportunity_id = named[str(deal["id"])]
            try:
                self.hubspot.batch_update("deals", [{"id": str(deal["id"]), "properties": {
                    UNIQUE_PROPERTY: opportunity_id}}])
            except PermanentCrmError as error:  # e.g. deleted a moment ago: the upsert decides as before
                logger.warning("named deal not claimed", extra={"opportunity_id": opportunity_id,
                                                                "deal_id": str(deal["id"]), "error": error.message})
                continue
            deal["properties"][UNIQUE_PROPERTY] = opportunity_id
            claimed[opportunity_id] = deal
            logger.info("deal claimed by the opportunity it belongs to", extra={
                "opportunity_id": opportunity_id, "deal_id": str(deal["id"])})
        return claimed

    def _ensure_pipelines(self, records: Iterable[Mapping[str, Any]], stages: StageMap) -> StageMap:
        """A record type seen for the first time gets its pipeline now (if the limit allows)."""
        if not self.context.has_record_types:
            return stages
        unknown = {str(record["RecordTypeId"]) for record in records
                   if record.get("RecordTypeId") and stages.for_record_type(str(record["RecordTypeId"])) is None}
        if not unknown:
            return stages
        provision_pipelines(self.context)
        return self.context.stage_map(self.context.config())

    def _read_deals(self, ids: Sequence[str], specs: Sequence[FieldSpec],
                    with_history: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
        properties = [*hubspot_properties_to_read(specs), UNIQUE_PROPERTY]
        deals = self.hubspot.batch_read("deals", ids, properties, id_property=UNIQUE_PROPERTY,
                                        with_history=properties if with_history else ())
        return {str(deal["properties"][UNIQUE_PROPERTY]): deal for deal in deals
                if deal.get("properties", {}).get(UNIQUE_PROPERTY)}

    def _plan(self, ids: Sequence[str], records: Mapping[str, dict[str, Any]], links: Mapping[str, Link],
              deals: Mapping[str, dict[str, Any]], specs: Sequence[FieldSpec], stages: StageMap,
              changed_at: Mapping[str, datetime], report: SyncReport) -> list[_Plan]:
        owners = self.context.owners()
        integration_user_id = self.context.integration_user_id()
        plans: list[_Plan] = []
        conflicted: list[str] = []
        for record_id in ids:
            link = links.get(record_id)
            if link is not None and link.status is LinkStatus.PAUSED:
                report.skipped.append(record_id)  # its deal sits in a pipeline that does not sync
                continue
            deal = deals.get(record_id)
            # A deal other than the linked one (made by an earlier attempt after the linked deal was deleted in
            # HubSpot) shares nothing with the link's shadow: the pair is new, every association goes to it.
            active = link if link is not None and link.status is LinkStatus.ACTIVE and (
                deal is None or str(deal["id"]) == link.hubspot_id) else None
            shadow = dict(active.shadow) if active is not None and deal is not None else None
            decision = decide_record(
                specs, salesforce_snapshot(records[record_id], specs, changed_at.get(record_id), integration_user_id),
                hubspot_snapshot(deal, self.own_app_id), shadow, stages=stages, owners=owners, origin=Side.SALESFORCE,
                pending=active.pending if shadow is not None and active is not None else None)
            if decision.conflicts or decision.recheck or (deal is not None and shadow is None):
                conflicted.append(record_id)
            plans.append(_Plan(records[record_id], active, deal, decision, dict(shadow or {})))
        if conflicted:
            # Both sides changed, or one side may have set the agreed value again (recheck), or a deal has no
            # agreed shadow with its opportunity yet (an earlier attempt died before linking them): decide
            # again with both sides' per-field timestamps.
            precise = self._read_deals(conflicted, specs, with_history=["all"])
            field_history = self.salesforce.field_history(conflicted)
            for plan in plans:
                if plan.opportunity_id in precise:
                    plan.deal = precise[plan.opportunity_id]
                    plan.decision = decide_record(
                        specs, salesforce_snapshot(plan.opportunity, specs, changed_at.get(plan.opportunity_id),
                                                   integration_user_id, field_history.get(plan.opportunity_id)),
                        hubspot_snapshot(plan.deal, self.own_app_id), plan.shadow if plan.link else None, stages=stages,
                        owners=owners, origin=Side.SALESFORCE, pending=plan.link.pending if plan.link else None)
                    report.conflicts += len(plan.decision.conflicts)
                    logger.info("conflict resolved by the later change", extra={
                        "opportunity_id": plan.opportunity_id, "fields": list(plan.decision.conflicts)})
        for plan in plans:
            plan.errors += [(error.category, f"{error.field}: {error.message}") for error in plan.decision.errors]
            plan.deal_id = str(plan.deal["id"]) if plan.deal else None
        return plans

    # --- associations -------------------------------------------------------------------------------
    def _link_associations(self, plans: Sequence[_Plan]) -> None:
        """Resolve each opportunity's contacts and account to HubSpot ids, linking contacts on the fly."""
        contact_ids = sorted({cid for plan in plans for cid in contact_role_ids(plan.opportunity)})
        contact_links = link_contacts(self.context, contact_ids)
        company_sync = self.context.toggles().company_sync
        account_ids = sorted({str(plan.opportunity["AccountId"])
                              for plan in plans if plan.opportunity.get("AccountId")})
        account_links = self.store.links.get_many(LinkKind.ACCOUNT, Side.SALESFORCE, account_ids)
        for plan in plans:
            wanted = contact_role_ids(plan.opportunity)
            plan.contact_sources = {contact_links[cid]: cid for cid in wanted if cid in contact_links}
            plan.contacts = sorted(plan.contact_sources)
            account_id = plan.opportunity.get("AccountId")
            if not account_id or not company_sync:
                plan.company = None
                continue
            account_link = account_links.get(str(account_id))
            if account_link is not None and account_link.is_active:
                plan.company = account_link.hubspot_id
            else:
                plan.company = None
                plan.errors.append((ErrorCategory.WAITING_FOR_ACCOUNT,
                                    f"account {account_id} is not in HubSpot yet; the deal syncs without its company "
                                    "and is associated when the account syncs"))

    def _agree_unsaved_association_writes(self, plans: Sequence[_Plan]) -> None:
        """A sync that wrote a pair's associations and did not save it left them on the link (Link.pending):
        where the side it wrote holds them — Salesforce's roles and account (the other direction's write), or the
        deal's associations (this direction's, read for these deals only) — they are what both sides agree on.
        Diffed against the older shadow, Salesforce would not bring back to the deal a contact or company that
        write took off it, and set again since."""
        unsaved = [plan for plan in plans if plan.link is not None and associations_pending(plan.link)]
        if not unsaved:
            return
        on_deals = [str(plan.link.hubspot_id) for plan in unsaved if plan.link is not None and any(
            key in (plan.link.pending or {}).get(Side.HUBSPOT.value, {}) for key in (CONTACTS_KEY, COMPANY_KEY))]
        contacts = self.hubspot.associations_read("deals", "contacts", on_deals) if on_deals else {}
        companies = self.hubspot.associations_read("deals", "companies", on_deals) if on_deals else {}
        for plan in unsaved:
            link = plan.link
            if link is None:
                continue
            written = (link.pending or {}).get(Side.SALESFORCE.value, {})
            deal_id = str(link.hubspot_id)
            on_deal = (link.pending or {}).get(Side.HUBSPOT.value, {})
            held = {CONTACTS_KEY: joined(plan.contacts), COMPANY_KEY: plan.company}
            if deal_id in contacts:
                held_by_deal = {CONTACTS_KEY: joined(associated_ids(contacts[deal_id])),
                                COMPANY_KEY: primary_company(companies.get(deal_id, []))}
            else:
                held_by_deal = {}
            for key in (CONTACTS_KEY, COMPANY_KEY):
                # The deal's own unsaved write first: against what the deal holds, Salesforce's state is always
                # brought to it (the other direction's write may be older than that one).
                if key in on_deal and key in held_by_deal and on_deal[key] == held_by_deal[key]:
                    plan.shadow[key] = on_deal[key]
                elif key in written and written[key] == held[key]:
                    plan.shadow[key] = written[key]

    def _hold_later_hubspot_changes(self, plans: Sequence[_Plan], report: SyncReport) -> None:
        """Associations this sync would change on a deal that a person changed in HubSpot after Salesforce's
        change (the webhooks' time, kept by the HubSpot changes worker, against the role's CreatedDate or the
        deleted role's SystemModstamp, and the account's time in field history): HubSpot's is the later
        change, so the deal keeps it. The pair's shadow still takes Salesforce's state, and the HubSpot side
        is synced next (``_hand_over_to_hubspot_side``): it sees HubSpot's change and brings it to Salesforce."""
        changing = [plan for plan in plans if plan.deal_id and _changes_associations(plan)]
        times = self.store.association_times.for_deals([str(plan.deal_id) for plan in changing]) if changing else {}
        timed = [plan for plan in changing if str(plan.deal_id) in times]
        if not timed:
            return
        integration_user_id = self.context.integration_user_id()
        removed = {cid for plan in timed for cid in _agreed_contacts(plan) - set(plan.contacts)}
        removed_sources = {cid: link.salesforce_id for cid, link in self.store.links.get_many(
            LinkKind.CONTACT, Side.HUBSPOT, sorted(removed)).items()}
        accounts_moved = [plan for plan in timed if times[str(plan.deal_id)].company and _company_changes(plan)]
        history = self.salesforce.field_history([plan.opportunity_id for plan in accounts_moved]) \
            if accounts_moved else {}
        for plan in timed:
            deal_times = times[str(plan.deal_id)]
            before, wanted = _agreed_contacts(plan), set(plan.contacts)
            for contact_id in sorted(before ^ wanted):
                hubspot_at = deal_times.contacts.get(contact_id)
                added = contact_id in wanted
                salesforce_id = plan.contact_sources.get(contact_id) if added else removed_sources.get(contact_id)
                if hubspot_at is None or salesforce_id is None:
                    continue
                salesforce_at = role_changed_at(plan.opportunity, salesforce_id, deleted=not added,
                                                integration_user_id=integration_user_id)
                if salesforce_at is not None and hubspot_at > salesforce_at:
                    plan.held_contacts.add(contact_id)
            if plan in accounts_moved and deal_times.company is not None:
                salesforce_at = _account_changed_at(plan, history.get(plan.opportunity_id, {}), integration_user_id)
                plan.company_held = salesforce_at is not None and deal_times.company > salesforce_at
            if plan.held_contacts or plan.company_held:
                report.hubspot_later.append(str(plan.deal_id))
                logger.info("association changed in HubSpot after Salesforce's change: left to the HubSpot side",
                            extra={"opportunity_id": plan.opportunity_id, "deal_id": plan.deal_id,
                                   "contacts": sorted(plan.held_contacts), "company": plan.company_held})

    def _hand_over_to_hubspot_side(self, report: SyncReport) -> None:
        """The deals whose later HubSpot associations this sync left alone, once their pair is saved with
        Salesforce's state: re-read by the HubSpot → Salesforce worker, which sees HubSpot's change."""
        deal_ids = [deal_id for opportunity_id, deal_id in report.deal_ids.items()
                    if deal_id in report.hubspot_later and opportunity_id not in report.retry]
        if not deal_ids:
            return
        hubspot = self.context.credentials.hubspot
        bodies = [message.model_dump_json() for message in deal_resync_messages(
            deal_ids, portal_id=hubspot.portal_id, app_id=hubspot.app_id, now=now_utc())]
        send_messages(self.context.queues["hubspot"], bodies)

    # --- writes -------------------------------------------------------------------------------------
    def _write_deals(self, plans: Sequence[_Plan], report: SyncReport, *, adopt: bool = False) -> set[str]:
        """Deals written: the ones read are upserted on the opportunity id. The ones not found are created
        (``adopt``, for an import: upserted too, so a deal that exists already is adopted): an upsert would
        overwrite, with every value, a deal that appeared meanwhile (one restored in HubSpot a moment ago)
        and the edits a person made to it; a create refuses it (409), and the record is read again.
        Returns the opportunities whose deal was deleted in HubSpot after it was read (see _vanished)."""
        new: list[tuple[_Plan, dict[str, Any]]] = []
        known: list[tuple[_Plan, dict[str, Any]]] = []
        for plan in plans:
            properties = dict(plan.decision.hubspot_properties)
            if plan.deal is None and any(category in (ErrorCategory.PIPELINE_LIMIT, ErrorCategory.UNMAPPED_STAGE)
                                         for category, _ in plan.errors):
                continue  # a deal needs a pipeline and stage: nothing to create until it has one
            if not properties and plan.deal is not None:
                continue  # unchanged: not written
            # Always sent, so every result names its opportunity (results come in no promised order).
            properties[UNIQUE_PROPERTY] = plan.opportunity_id
            (new if plan.deal is None and not adopt else known).append((plan, properties))
        results: list[dict[str, Any]] = []
        if known:
            results += self._each_if_refused(
                partial(self.hubspot.batch_upsert, "deals", UNIQUE_PROPERTY),
                [{"id": plan.opportunity_id, "properties": properties} for plan, properties in known],
                [plan.opportunity_id for plan, _ in known])
        if new:
            results += self._each_if_refused(
                partial(self.hubspot.batch_create, "deals"),
                [{"properties": properties, "objectWriteTraceId": plan.opportunity_id} for plan, properties in new],
                [plan.opportunity_id for plan, _ in new])
        by_opportunity = {str(r.get("properties", {}).get(UNIQUE_PROPERTY)): r for r in results if "error" not in r}
        failures = [r["error"] for r in results if "error" in r]
        vanished = set() if adopt else self._vanished([plan for plan, _ in known], by_opportunity, report)
        for plan, _ in [*known, *new]:
            if plan.opportunity_id in vanished:
                continue
            result = by_opportunity.get(plan.opportunity_id)
            if result is not None:
                plan.deal_id = str(result["id"])
                (report.created if plan.deal is None else report.updated).append(plan.opportunity_id)
                continue
            failure = _hubspot_failure_of(plan.opportunity_id, failures)
            if plan.deal is None and failure is not None and failure.get("category") == "CONFLICT":
                report.retry[plan.opportunity_id] = "its deal appeared in HubSpot meanwhile: read again"
                continue
            plan.errors.append((ErrorCategory.HUBSPOT_VALIDATION, _hubspot_failure_for(plan.opportunity_id, failures)))
            plan.deal_id = None if plan.deal is None else plan.deal_id
        return vanished

    def _vanished(self, plans: Sequence[_Plan], written: Mapping[str, Mapping[str, Any]],
                  report: SyncReport) -> set[str]:
        """Opportunities whose deal, read by this sync, was deleted in HubSpot before the upsert: the upsert made
        a new deal with this sync's changes only (or HubSpot refused it for a missing stage). Nothing more is
        written for them (a link and shadow would claim values that new deal lacks, and they would come back to
        Salesforce as cleared); the next attempt finds the new deal, or none, and makes it whole (DESIGN 1.6)."""
        made_anew = {plan.opportunity_id for plan in plans if plan.deal is not None
                     and plan.opportunity_id in written
                     and str(written[plan.opportunity_id]["id"]) != str(plan.deal["id"])}
        refused = [plan for plan in plans if plan.deal is not None and plan.opportunity_id not in written]
        if refused:
            live = {str(deal["id"]) for deal in self.hubspot.batch_read(
                "deals", [str(plan.deal["id"]) for plan in refused if plan.deal is not None], [UNIQUE_PROPERTY])}
            made_anew |= {plan.opportunity_id for plan in refused
                          if plan.deal is not None and str(plan.deal["id"]) not in live}
        for opportunity_id in sorted(made_anew):
            report.retry[opportunity_id] = "its deal was deleted in HubSpot meanwhile: synced again as a new pair"
            logger.info("deal deleted in HubSpot while the opportunity synced: tried again", extra={
                "opportunity_id": opportunity_id})
        return made_anew

    @staticmethod
    def _each_if_refused(write: Callable[[list[dict[str, Any]]], list[dict[str, Any]]], inputs: list[dict[str, Any]],
                         opportunity_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The deals written in one call; HubSpot refuses a whole batch for one bad input (a deal moved to a
        pipeline where the stage sent does not exist, a value taken), so then each again on its own: the others
        go through, and the refused ones get their own error (named by opportunity, as HubSpot's 207 does)."""
        try:
            return write(inputs)
        except PermanentCrmError as refused:
            if len(inputs) == 1:
                return [_refusal(opportunity_ids[0], refused)]
        results: list[dict[str, Any]] = []
        for item, opportunity_id in zip(inputs, opportunity_ids, strict=True):
            try:
                results += write([item])
            except PermanentCrmError as error:
                results.append(_refusal(opportunity_id, error))
        return results

    def _write_salesforce(self, plans: Sequence[_Plan], report: SyncReport, *, defer_deal_ids: bool = False) -> None:
        updates: list[dict[str, Any]] = []
        owners: list[_Plan] = []
        for plan in plans:
            fields = dict(plan.decision.salesforce_fields)
            if plan.deal_id and plan.opportunity.get(DEAL_ID_FIELD) != plan.deal_id:
                if defer_deal_ids:
                    report.writeback[plan.opportunity_id] = plan.deal_id
                else:
                    fields[DEAL_ID_FIELD] = plan.deal_id
            if fields:
                updates.append({"Id": plan.opportunity_id, **fields})
                owners.append(plan)
        if not updates:
            return
        results = self.salesforce.update("Opportunity", updates)
        failures = record_errors(results, [plan.opportunity_id for plan in owners])
        deleted_since_read: list[_Plan] = []
        for plan in owners:
            failure = failures.get(plan.opportunity_id)
            if isinstance(failure, PermanentCrmError) and failure.code == ENTITY_IS_DELETED and plan.link is None:
                deleted_since_read.append(plan)
            elif isinstance(failure, PermanentCrmError):
                plan.errors.append((failure.category, failure.message))
            elif failure is not None:
                report.retry[plan.opportunity_id] = failure.message
        self._undo_new_deals(deleted_since_read, report)

    def _undo_new_deals(self, plans: Sequence[_Plan], report: SyncReport) -> None:
        """Opportunities deleted in Salesforce after this sync read them, their deals made just now: the deletion's
        own sync found no link to follow (it ran before these deals existed), so the deals are archived here
        and no link is saved. An undelete syncs the opportunity again."""
        if not plans:
            return
        self.hubspot.batch_archive("deals", [str(plan.deal_id) for plan in plans])
        for plan in plans:
            logger.info("opportunity deleted while its deal was being created: the deal is archived", extra={
                "opportunity_id": plan.opportunity_id, "deal_id": plan.deal_id})
            report.deleted.append(plan.opportunity_id)
            if plan.opportunity_id in report.created:
                report.created.remove(plan.opportunity_id)
            plan.deal_id = None

    def _write_associations(self, plans: Sequence[_Plan], *, note_times: bool = True) -> None:
        """The deals' contacts and company as Salesforce's, and (``note_times``; an import's new deals no person
        has touched need not) when dealsync wrote them, for the HubSpot worker (store/association_times)."""
        create_contacts: list[tuple[str, str, int]] = []
        remove_contacts: list[tuple[str, str]] = []
        create_companies: list[tuple[str, str, int]] = []
        remove_companies: list[tuple[str, str]] = []
        for plan in plans:
            if not plan.deal_id:
                continue
            before, wanted = _agreed_contacts(plan), set(plan.contacts)
            create_contacts += [(plan.deal_id, cid, DEAL_TO_CONTACT)
                                for cid in sorted(wanted - before - plan.held_contacts)]
            remove_contacts += [(plan.deal_id, cid) for cid in sorted(before - wanted - plan.held_contacts)]
            company_before = plan.shadow.get(COMPANY_KEY) if plan.link else None
            if _company_changes(plan) and not plan.company_held:
                if company_before:
                    remove_companies.append((plan.deal_id, company_before))
                if plan.company:
                    create_companies.append((plan.deal_id, plan.company, DEAL_TO_PRIMARY_COMPANY))
        if create_contacts or remove_contacts or create_companies or remove_companies:
            logger.debug("deal associations written", extra={
                "contacts_added": create_contacts, "contacts_removed": remove_contacts,
                "companies_added": create_companies, "companies_removed": remove_companies})
        # Noted as the moment before the first write: each write lands after it, and a person's change noted
        # after it may have come before or after a write, never known to come before (the calls take seconds
        # when HubSpot is slow; taken after them, a person's change in between looked older than the write).
        written_ms = round(now_utc().timestamp() * 1000)
        if remove_contacts:
            self.hubspot.associations_archive("deals", "contacts", remove_contacts)
        if create_contacts:
            self.hubspot.associations_create("deals", "contacts", create_contacts)
        # The new primary company first: the deal is never without one, which the other direction, reading it
        # in between, would take for a person's removal and clear the opportunity's account.
        if create_companies:
            self.hubspot.associations_create("deals", "companies", create_companies)
        if remove_companies:
            self.hubspot.associations_archive("deals", "companies", remove_companies)
        if note_times:
            written: dict[str, dict[str, str]] = {}
            for deal_id, contact_id in remove_contacts:
                written.setdefault(deal_id, {})[contact_id] = OFF_DEAL
            for deal_id, contact_id, _ in create_contacts:
                written.setdefault(deal_id, {})[contact_id] = ON_DEAL
            for deal_id, _ in remove_companies:
                written.setdefault(deal_id, {})[COMPANY] = ""
            for deal_id, company_id, _ in create_companies:
                written.setdefault(deal_id, {})[COMPANY] = company_id
            for deal_id, states in written.items():
                self.store.association_times.note_own(deal_id, states, written_ms)

    def _save_links(self, plans: Sequence[_Plan], report: SyncReport) -> None:
        taken: list[tuple[_Plan, Link, dict[str, ShadowValue]]] = []
        for plan in plans:
            if not plan.deal_id or plan.opportunity_id in report.retry:
                continue
            report.deal_ids[plan.opportunity_id] = plan.deal_id
            shadow = dict(plan.decision.shadow)
            shadow[CONTACTS_KEY] = joined(plan.contacts)
            company_before = plan.shadow.get(COMPANY_KEY) if plan.link else None
            shadow[COMPANY_KEY] = company_before if _waiting(plan) else plan.company
            if plan.link is None or plan.link.hubspot_id != plan.deal_id:
                result = self.store.links.create(LinkKind.OPPORTUNITY, plan.opportunity_id, plan.deal_id, shadow)
                if not result.created and result.link.hubspot_id != plan.deal_id:
                    taken.append((plan, result.link, shadow))
                continue
            if shadow == plan.link.shadow and plan.link.pending is None:
                if not plan.decision.writes_anything:
                    report.unchanged.append(plan.opportunity_id)
                continue
            try:
                self.store.links.update_shadow(plan.link, shadow)
            except StaleShadowError as error:
                report.retry[plan.opportunity_id] = str(error)
                if plan.decision.writes_anything:  # written over the other sync's: say whose (keep_pending)
                    self.store.links.keep_pending(plan.link)
        if taken:
            self._replace_links(taken, report)

    def _replace_links(self, taken: Sequence[tuple[_Plan, Link, dict[str, ShadowValue]]], report: SyncReport) -> None:
        """The opportunity got a deal here while its link still names another one. That deal was deleted in
        HubSpot a moment ago (its deletion not processed yet): the new deal is the one DESIGN 1.6 asks for,
        and takes the link. Otherwise the new deal duplicates a live one: it is archived (dealsync just
        made it), and the next change syncs to the linked deal."""
        live = {str(deal["id"]) for deal in self.hubspot.batch_read(
            "deals", [link.hubspot_id for _, link, _ in taken], [UNIQUE_PROPERTY])}
        duplicates: list[str] = []
        for plan, standing, shadow in taken:
            extra = {"opportunity_id": plan.opportunity_id, "deal_id": plan.deal_id,
                     "linked_deal_id": standing.hubspot_id}
            if standing.hubspot_id in live:
                logger.error("opportunity already linked to another deal: the new deal is archived", extra=extra)
                duplicates.append(str(plan.deal_id))
                report.retry[plan.opportunity_id] = f"linked to deal {standing.hubspot_id}"
                continue
            self.store.links.tombstone(standing, "deal deleted in HubSpot")
            result = self.store.links.create(LinkKind.OPPORTUNITY, plan.opportunity_id, str(plan.deal_id), shadow)
            if result.link.hubspot_id != plan.deal_id:
                report.retry[plan.opportunity_id] = f"linked to deal {result.link.hubspot_id}"
                continue
            logger.info("linked deal deleted in HubSpot: the opportunity's new deal takes the link", extra=extra)
        if duplicates:
            self.hubspot.batch_archive("deals", duplicates)

    def _record_errors(self, plans: Sequence[_Plan], report: SyncReport,
                       existing: set[tuple[ErrorCategory, str]] | None = None) -> None:
        """Each plan's errors recorded and the ones it no longer has cleared (``existing``: the errors the
        records had, read in bulk beforehand, so clearing needs no read per record)."""
        entries: list[tuple[str, Sequence[tuple[ErrorCategory, str]], Mapping[str, str]]] = []
        for plan in plans:
            for category, message in plan.errors:
                report.error(plan.opportunity_id, f"{category}: {message}")
            related = {"deal_id": plan.deal_id} if plan.deal_id else {}
            if _waiting(plan) and plan.opportunity.get("AccountId"):
                related["account_id"] = str(plan.opportunity["AccountId"])
            if existing is None:
                record_sync_errors(self.context, plan.opportunity_id, plan.errors, related)
            else:
                entries.append((plan.opportunity_id, plan.errors, related))
        if existing is not None:
            record_sync_errors_batch(self.context, entries, existing)

    def _update_rollups(self, plans: Sequence[_Plan], deleted: Sequence[str] = ()) -> None:
        enqueue_rollups(self.context, update_rollup_projection(
            self.context, [plan.opportunity for plan in plans if plan.opportunity_id not in deleted]))

    # --- deletions -----------------------------------------------------------------------------------
    def _delete(self, ids: Sequence[str], links: Mapping[str, Link], report: SyncReport) -> None:
        """Deleted in Salesforce: archive the deal, tombstone the link, drop the rollup rows."""
        doomed = [links[record_id] for record_id in ids
                  if record_id in links and links[record_id].status is not LinkStatus.TOMBSTONED]
        if doomed:
            self.hubspot.batch_archive("deals", [link.hubspot_id for link in doomed])
        self._archive_unlinked_deals([record_id for record_id in ids if record_id not in links
                                      or links[record_id].status is LinkStatus.TOMBSTONED], report)
        affected: set[str] = set()
        for record_id in ids:
            link = links.get(record_id)
            if link is not None and link.status is not LinkStatus.TOMBSTONED:
                self.store.links.tombstone(link, "opportunity deleted in Salesforce")
                report.deleted.append(record_id)
            affected |= self.store.rollups.remove_opportunity(record_id)
            self.store.errors.resolve(record_id)
        enqueue_rollups(self.context, affected)

    def _archive_unlinked_deals(self, ids: Sequence[str], report: SyncReport) -> None:
        """Deleted opportunities without a live link whose deal a sync made and died before linking (this
        direction's upsert, or the other's write of the opportunity id back to the deal): the deal names the
        opportunity, and is archived as a linked one would be. Left, it outlived its opportunity, and the other
        direction would pair it again on the next change (the opportunity in the recycle bin, or a new one)."""
        if not ids:
            return
        named = {str(deal["id"]): str(deal["properties"][UNIQUE_PROPERTY]) for deal in self.hubspot.batch_read(
            "deals", ids, [UNIQUE_PROPERTY], id_property=UNIQUE_PROPERTY)}
        if not named:
            return
        self.hubspot.batch_archive("deals", list(named))
        for deal_id, opportunity_id in named.items():
            logger.info("opportunity deleted before its deal was linked: the deal is archived", extra={
                "opportunity_id": opportunity_id, "deal_id": deal_id})
            report.deleted.append(opportunity_id)

    def _emit_metrics(self, report: SyncReport, source: str) -> None:
        metrics.add_metric(name="RecordsSynced", unit=MetricUnit.Count, value=len(report.created) + len(report.updated))
        metrics.add_metric(name="EchoesSkipped", unit=MetricUnit.Count, value=len(report.unchanged))
        metrics.add_metric(name="Conflicts", unit=MetricUnit.Count, value=report.conflicts)
        metrics.add_metric(name="SyncErrors", unit=MetricUnit.Count, value=len(report.errors))
        if report.retry:
            logger.debug("opportunities to sync again", extra={"retry": report.retry})
        logger.info("opportunities synced", extra={
            "source": source, "created_ids": report.created, "updated_ids": report.updated, "deleted": report.deleted,
            "unchanged": len(report.unchanged), "skipped": len(report.skipped), "retry": sorted(report.retry),
            "salesforce_calls": self.salesforce.calls, "hubspot_calls": self.hubspot.calls})


def _agreed_contacts(plan: _Plan) -> set[str]:
    """The contacts the pair last agreed on (none for a pair not linked yet)."""
    return split(plan.shadow.get(CONTACTS_KEY)) if plan.link else set()


def _company_changes(plan: _Plan) -> bool:
    company_before = plan.shadow.get(COMPANY_KEY) if plan.link else None
    return plan.company != company_before and not _waiting(plan)


def _account_changed_at(plan: _Plan, field_history: Mapping[str, tuple[str, str]],
                        integration_user_id: str | None) -> datetime | None:
    """When the opportunity's account last changed: its field history, else the record's stamp when a
    person made the last change (None: not known)."""
    row = field_history.get(HISTORY_FIELD_NAMES[ACCOUNT_FIELD])
    if row is not None:
        return parse_datetime(row[0])
    modified_by = plan.opportunity.get("LastModifiedById")
    if integration_user_id and modified_by and sf_id_18(str(modified_by)) == sf_id_18(integration_user_id):
        return None
    stamp = plan.opportunity.get("SystemModstamp")
    return parse_datetime(stamp) if stamp else None


def _changes_associations(plan: _Plan) -> bool:
    """Whether the plan changes an existing deal's associations (a deal it creates had none a person set)."""
    if plan.deal is None:
        return False
    if plan.link is None:  # paired again (e.g. undeleted): every contact and the company are added
        return bool(plan.contacts) or plan.company is not None
    return joined(plan.contacts) != plan.shadow.get(CONTACTS_KEY) or _company_changes(plan)


def _waiting(plan: _Plan) -> bool:
    return any(category is ErrorCategory.WAITING_FOR_ACCOUNT for category, _ in plan.errors)


def _refusal(opportunity_id: str, error: PermanentCrmError) -> dict[str, Any]:
    return {"error": {"message": error.message, "category": error.code or "",
                      "context": {"objectWriteTraceId": [opportunity_id]}}}


def _hubspot_failure_of(opportunity_id: str, failures: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return next((failure for failure in failures if opportunity_id in str(failure.get("context", ""))), None)


def _hubspot_failure_for(opportunity_id: str, failures: Sequence[Mapping[str, Any]]) -> str:
    for failure in failures:
        if opportunity_id in str(failure.get("context", "")) or opportunity_id in str(failure.get("message", "")):
            return f"deal not written: {failure.get('message')}"
    messages = "; ".join(sorted({str(failure.get("message")) for failure in failures})) or "no detail"
    return f"deal not written: {messages}"


def sync_opportunities(context: SyncContext, opportunity_ids: Sequence[str], *,
                       changed_at: Mapping[str, datetime] | None = None, source: str = "change") -> SyncReport:
    return OpportunitySync(context).sync(opportunity_ids, changed_at=changed_at, source=source)


def sync_opportunity_records(context: SyncContext, records: Sequence[Mapping[str, Any]], *,
                             source: str = "import") -> SyncReport:
    """Import mode (:meth:`OpportunitySync.sync_records`): already-read records, deal ids deferred."""
    return OpportunitySync(context).sync_records(records, source=source)


__all__ = ["SyncReport", "sync_opportunities", "sync_opportunity_records"]
