"""Reconcile: compare every linked opportunity ⇄ deal across both CRMs and report the drift; with
``apply``, hand the drifted records to the sync engines, so the sync rules decide the repair.

A run goes through three phases, each in batches (no per-record API call):

1. ``links``: the opportunity links are paged out of DynamoDB; the active ones' opportunities are read
   (one query per 200) and their deals (one batch read per 100), and each pair is compared by the
   sync's own decision (``decide_record`` against the link's shadow): a field the rules would write is
   drift. A side that is gone is drift too (deal missing, opportunity missing, or both: an orphaned
   link), and so is a link whose two items disagree (two links to one deal) or whose id pointers
   (``HubSpot_Deal_Id__c``, ``salesforce_opportunity_id``) name another record.
2. ``opportunities``: every opportunity whose ``HubSpot_Deal_Id__c`` names a deal it is not linked to
   (keyset pages of 2,000): the deal is unlinked, or linked to another opportunity (a duplicate).
3. ``deals``: every deal (pages of 100) without a link: one naming an opportunity in
   ``salesforce_opportunity_id`` (unlinked, or a duplicate of that opportunity's deal), or one in a
   Salesforce pipeline that never reached Salesforce.

Repairs go through the engines that handle changes: drift the Salesforce side wins (a field changed
there, an opportunity deleted) through the Salesforce → HubSpot engine, drift HubSpot wins (a field
edited there, a deal deleted by hand: DESIGN 1.6, the link is tombstoned and the opportunity kept)
through the HubSpot → Salesforce engine. Duplicates are reported for the operator: which record
survives is a business decision (merge the deals in HubSpot).

A run is stored after every step; the scheduled (weekly, report-only) run works within a time budget
and continues through its own queue message until done. Logs carry ids, kinds and field names only:
the values are in the report, for the operator.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from dealsync.clients.errors import CrmError, TransientCrmError
from dealsync.mapping.fields import FieldSpec, hubspot_properties_to_read
from dealsync.mapping.owners import OwnerDirectory
from dealsync.mapping.rules import Action, decide_record
from dealsync.mapping.stages import StageMap
from dealsync.models.domain import Link, LinkKind, LinkStatus, Side
from dealsync.models.events import ScheduledTask
from dealsync.observability import logger
from dealsync.queues import EnqueueError, send_messages
from dealsync.services.budget import check_batch, record_pause
from dealsync.services.context import SyncContext
from dealsync.services.deal_sync import sync_deals
from dealsync.services.opportunity_sync import SyncReport, sync_opportunities
from dealsync.services.records import (
    DEAL_ID_FIELD,
    UNIQUE_PROPERTY,
    hubspot_snapshot,
    opportunity_select,
    salesforce_snapshot,
)
from dealsync.store.dynamo import iso, now_utc
from dealsync.store.reconcile import ReconcileStore, StaleRunError

LINK_BATCH = 200  # links compared per step: one Salesforce query, two HubSpot batch reads
SCAN_PAGE = 500  # items read per DynamoDB scan page
OPPORTUNITY_PAGE = 2000  # opportunities naming a deal, per keyset query
DEAL_PAGE = 100  # deals per list page (HubSpot's maximum)
MAX_RECORDED = 300  # drift records kept in a stored run; the counts are always complete
VALUE_CHARS = 200
SCHEDULED_BUDGET_SECONDS = 20.0  # per worker invocation: the function has 60 s, and the batch may sync too
APPLY_REFUSAL = "repair drift (reconcile --apply)"


class DriftKind(StrEnum):
    DEAL_MISSING = "deal_missing"  # linked opportunity live, its deal gone
    OPPORTUNITY_MISSING = "opportunity_missing"  # linked deal live, its opportunity deleted
    ORPHANED_LINK = "orphaned_link"  # both sides of an active link gone
    FIELD_DIFFERENCE = "field_difference"  # a mapped field the sync rules would write
    LINK_IDS = "link_ids"  # HubSpot_Deal_Id__c / salesforce_opportunity_id name another record than the link
    DUPLICATE_LINK = "duplicate_link"  # the deal's side of the link belongs to another opportunity
    UNLINKED_DEAL = "unlinked_deal"  # a deal with no link that names an opportunity or sits in a synced pipeline
    DUPLICATE_DEAL = "duplicate_deal"  # a deal naming an opportunity that is linked to another deal
    UNLINKED_OPPORTUNITY = "unlinked_opportunity"  # HubSpot_Deal_Id__c names a deal it is not linked to
    DUPLICATE_OPPORTUNITY = "duplicate_opportunity"  # HubSpot_Deal_Id__c names a deal linked to another opportunity


class Engine(StrEnum):
    SALESFORCE_TO_HUBSPOT = "salesforce_to_hubspot"
    HUBSPOT_TO_SALESFORCE = "hubspot_to_salesforce"


class Phase(StrEnum):
    LINKS = "links"
    OPPORTUNITIES = "opportunities"
    DEALS = "deals"
    DONE = "done"


class Drift(BaseModel):
    kind: DriftKind
    opportunity_id: str | None = None
    deal_id: str | None = None
    field: str | None = None  # Salesforce field (⇄ hubspot_property) of a field difference
    hubspot_property: str | None = None
    salesforce_value: str | None = None
    hubspot_value: str | None = None
    winner: Side | None = None  # the side the sync rules take
    detail: str = ""
    repair: Engine | None = None  # the engine that repairs it; None: for the operator
    outcome: str | None = None  # after --apply: repaired, or why not

    @property
    def repaired(self) -> bool | None:
        """None in a report; with --apply, whether the engine repaired it."""
        return None if self.outcome is None else self.outcome.startswith("repaired")


class ReconcileRun(BaseModel):
    run_id: str
    mode: str  # report | apply
    trigger: str  # cli | scheduled
    started_at: str
    finished_at: str | None = None
    status: str = "running"  # running | completed | failed
    message: str | None = None  # why a run failed
    phase: Phase = Phase.LINKS
    cursor: Any = None  # where the phase continues: a DynamoDB key, an opportunity id, a HubSpot cursor
    step: int = 0
    links_checked: int = 0
    links_paused: int = 0
    links_tombstoned: int = 0
    opportunities_checked: int = 0
    deals_checked: int = 0
    counts: dict[str, int] = Field(default_factory=dict)  # drift kind -> records
    drifts_total: int = 0
    repaired: int = 0
    not_repaired: int = 0
    drifts: list[Drift] = Field(default_factory=list)  # the first MAX_RECORDED

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    def add(self, drifts: Iterable[Drift]) -> None:
        for drift in drifts:
            self.counts[drift.kind] = self.counts.get(drift.kind, 0) + 1
            self.drifts_total += 1
            if drift.repaired is True:
                self.repaired += 1
            elif drift.repaired is False:
                self.not_repaired += 1
            if len(self.drifts) < MAX_RECORDED:
                self.drifts.append(drift)


# --- pure comparison ----------------------------------------------------------------------------------

def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = str(value)
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS] + "…"


def _claims(value: Any) -> str | None:
    """The record id an id pointer names, when it looks like one (a Salesforce id or a HubSpot id)."""
    text = str(value or "").strip()
    return text if text.isalnum() else None


def compare_pair(link: Link, opportunity: Mapping[str, Any] | None, deal: Mapping[str, Any] | None,
                 deal_side: Link | None, *, specs: Sequence[FieldSpec], stages: StageMap,
                 owners: OwnerDirectory) -> list[Drift]:
    """The drift of one active or paused link: ``opportunity`` as read with queryAll (None: not found), ``deal``
    as batch-read (None: not readable), ``deal_side`` the link item stored under the deal's id."""
    ids = {"opportunity_id": link.salesforce_id, "deal_id": link.hubspot_id}
    if link.status is LinkStatus.PAUSED:
        # Paused while its deal sits outside the Salesforce pipelines (or was deleted with
        # resync_after_hubspot_delete off): drift only once the deal is back in one.
        if deal is None or not stages.syncs_pipeline((deal.get("properties") or {}).get("pipeline")):
            return []
        return [Drift(kind=DriftKind.FIELD_DIFFERENCE, **ids, field="StageName", hubspot_property="pipeline",
                      hubspot_value=_text((deal.get("properties") or {}).get("pipeline")), winner=Side.HUBSPOT,
                      repair=Engine.HUBSPOT_TO_SALESFORCE,
                      detail="deal back in a Salesforce pipeline while its link is paused: the link resumes")]
    if deal_side is None or deal_side.salesforce_id != link.salesforce_id:
        owner = f"opportunity {deal_side.salesforce_id}" if deal_side is not None else "no link"
        return [Drift(kind=DriftKind.DUPLICATE_LINK, **ids,
                      detail=f"the deal's side of the link names {owner}: two links to one deal")]
    opportunity_live = opportunity is not None and not opportunity.get("IsDeleted")
    if not opportunity_live and deal is None:
        return [Drift(kind=DriftKind.ORPHANED_LINK, **ids, repair=Engine.SALESFORCE_TO_HUBSPOT,
                      detail="both records are gone; the repair tombstones the link")]
    if not opportunity_live:
        return [Drift(kind=DriftKind.OPPORTUNITY_MISSING, **ids, repair=Engine.SALESFORCE_TO_HUBSPOT,
                      detail="opportunity deleted in Salesforce; the repair archives the deal and tombstones the link")]
    if deal is None:
        return [Drift(kind=DriftKind.DEAL_MISSING, **ids, repair=Engine.HUBSPOT_TO_SALESFORCE,
                      detail="deal deleted in HubSpot; the repair keeps the opportunity and tombstones the link "
                             "(DESIGN 1.6): the opportunity syncs as a new deal on its next change")]
    assert opportunity is not None
    drifts: list[Drift] = []
    properties = deal.get("properties") or {}
    if not stages.syncs_pipeline(properties.get("pipeline")):
        return [Drift(kind=DriftKind.FIELD_DIFFERENCE, **ids, field="StageName", hubspot_property="pipeline",
                      salesforce_value=_text(opportunity.get("StageName")), hubspot_value=_text(properties.get(
                          "pipeline")), winner=Side.HUBSPOT, repair=Engine.HUBSPOT_TO_SALESFORCE,
                      detail="deal moved to a HubSpot pipeline that does not sync: the link pauses")]
    named_opportunity = str(properties.get(UNIQUE_PROPERTY) or "")
    named_deal = str(opportunity.get(DEAL_ID_FIELD) or "")
    if named_opportunity != link.salesforce_id or (DEAL_ID_FIELD in opportunity and named_deal != link.hubspot_id):
        drifts.append(Drift(
            kind=DriftKind.LINK_IDS, **ids, field=DEAL_ID_FIELD, hubspot_property=UNIQUE_PROPERTY,
            salesforce_value=named_deal or None, hubspot_value=named_opportunity or None,
            repair=Engine.HUBSPOT_TO_SALESFORCE, detail="the records' id fields do not name each other"))
    decision = decide_record(specs, salesforce_snapshot(opportunity, specs), hubspot_snapshot(deal),
                             link.shadow, stages=stages, owners=owners)
    errors = {error.field: error for error in decision.errors}
    for spec in specs:
        # Drift is what the rules would write, or a difference they cannot write (e.g. an unmapped value);
        # a decision that ends in a fallback writing nothing (an owner without a match) is not.
        field_decision = decision.fields.get(spec.key)
        if field_decision is None or field_decision.action is Action.NONE:
            continue
        blocked = errors.get(spec.key) if field_decision.blocked is not None else None
        to_salesforce = any(name in decision.salesforce_fields for name in spec.salesforce_fields)
        to_hubspot = any(name in decision.hubspot_properties for name in spec.hubspot_properties)
        if blocked is None and not (to_salesforce or to_hubspot):
            continue
        winner = field_decision.winner if to_salesforce == to_hubspot else (
            Side.HUBSPOT if to_salesforce else Side.SALESFORCE)
        drifts.append(Drift(
            kind=DriftKind.FIELD_DIFFERENCE, **ids, field=spec.key, hubspot_property=spec.hubspot_property,
            salesforce_value=_text(" / ".join(str(opportunity[name]) for name in spec.salesforce_fields
                                              if opportunity.get(name) not in (None, ""))),
            hubspot_value=_text(properties.get(spec.hubspot_property)), winner=winner,
            repair=None if blocked is not None else (
                Engine.SALESFORCE_TO_HUBSPOT if winner is Side.SALESFORCE else Engine.HUBSPOT_TO_SALESFORCE),
            detail=(f"cannot be synced: {blocked.category}: {blocked.message}" if blocked is not None
                    else f"{'Salesforce' if winner is Side.SALESFORCE else 'HubSpot'} wins by the "
                         f"{spec.rule} rule" + (" (both changed: the later change)"
                                                if field_decision.conflict else ""))))
    return drifts


def claimed_deal_drift(opportunity_id: str, deal_id: str, deal_side: Link | None,
                       deal_names: str | None) -> Drift | None:
    """An opportunity whose HubSpot_Deal_Id__c names ``deal_id`` while it has no link to it.
    ``deal_side``: the link stored under the deal; ``deal_names``: the live deal's
    salesforce_opportunity_id (None: no live deal)."""
    if deal_side is not None and deal_side.salesforce_id == opportunity_id:
        return None  # an ended link of this pair (deal deleted or merged in HubSpot): known, not drift
    ids = {"opportunity_id": opportunity_id, "deal_id": deal_id}
    if deal_side is not None and deal_side.status is not LinkStatus.TOMBSTONED:
        return Drift(kind=DriftKind.DUPLICATE_OPPORTUNITY, **ids,
                     detail=f"names a deal linked to opportunity {deal_side.salesforce_id}; for the operator")
    if deal_names == opportunity_id:
        return None  # the deal names it back: reported (and repaired) as an unlinked deal
    return Drift(kind=DriftKind.UNLINKED_OPPORTUNITY, **ids, repair=Engine.SALESFORCE_TO_HUBSPOT,
                 detail="HubSpot_Deal_Id__c names a deal it is not linked to; the sync links or creates its deal")


def unlinked_deal_drift(deal: Mapping[str, Any], opportunity_side: Link | None, stages: StageMap) -> Drift | None:
    """A deal without a link: ``opportunity_side`` is the link stored under the opportunity it names."""
    deal_id = str(deal["id"])
    properties = deal.get("properties") or {}
    named = _claims(properties.get(UNIQUE_PROPERTY))
    if named is None:
        if not stages.syncs_pipeline(properties.get("pipeline")):
            return None  # outside the Salesforce pipelines: not synced, by design
        return Drift(kind=DriftKind.UNLINKED_DEAL, deal_id=deal_id, repair=Engine.HUBSPOT_TO_SALESFORCE,
                     detail="a deal in a Salesforce pipeline with no opportunity; the sync creates it")
    if (opportunity_side is not None and opportunity_side.status is not LinkStatus.TOMBSTONED
            and opportunity_side.hubspot_id != deal_id):
        return Drift(kind=DriftKind.DUPLICATE_DEAL, opportunity_id=named, deal_id=deal_id,
                     detail=f"names an opportunity linked to deal {opportunity_side.hubspot_id}; merge the deals "
                            "in HubSpot")
    return Drift(kind=DriftKind.UNLINKED_DEAL, opportunity_id=named, deal_id=deal_id,
                 repair=Engine.HUBSPOT_TO_SALESFORCE,
                 detail="names an opportunity it is not linked to; the sync links them")


def outcome_of(record_id: str, report: SyncReport) -> str:
    """What an engine's report says about one record it was given. A record written (or found in step)
    is repaired, even with sync errors of its own (e.g. OWNER_NOT_FOUND), which are listed as usual."""
    if record_id in report.retry:
        return f"not repaired (retry later): {report.retry[record_id]}"
    if record_id in report.skipped:
        return "not repaired: skipped by the sync (see its log)"
    errors = "; ".join(report.errors.get(record_id, []))
    written = any(record_id in done for done in (report.created, report.updated, report.deleted, report.unchanged))
    if errors and not written:
        return f"not repaired: {errors}"
    return f"repaired (sync errors: {errors})" if errors else "repaired"


def _identity(drift: Drift) -> tuple[str, str | None, str | None, str | None]:
    return (drift.kind, drift.opportunity_id, drift.deal_id, drift.field)


def confirmed(repaired: Sequence[Drift], remaining: Sequence[Drift]) -> list[Drift]:
    """The outcomes of a repair as the records show them once read again: a drift still there is not
    repaired, whatever the engine said; one gone is (e.g. a link the engine paused, reporting the deal
    as skipped). Drifts left for the operator keep their outcome."""
    still = {_identity(drift) for drift in remaining}
    checked: list[Drift] = []
    for drift in repaired:
        outcome = drift.outcome or ""
        if drift.repair is not None and _identity(drift) in still and drift.repaired:
            outcome = "not repaired: it still differs after the sync"
        elif drift.repair is not None and _identity(drift) not in still and not drift.repaired:
            outcome = "repaired"
        checked.append(drift.model_copy(update={"outcome": outcome}))
    return checked


# --- the run -----------------------------------------------------------------------------------------

class Reconciler:
    """One run, step by step; each step is one batch of the current phase, then stored."""

    def __init__(self, context: SyncContext, run: ReconcileRun) -> None:
        self.context = context
        self.run = run
        self.runs = ReconcileStore(context.store.table)
        config = context.config()
        self.specs = context.field_specs(config)
        self.stages = context.stage_map(config)

    @property
    def apply(self) -> bool:
        return self.run.mode == "apply"

    def step(self) -> None:
        phase = self.run.phase
        if phase is Phase.LINKS:
            self._links_step()
        elif phase is Phase.OPPORTUNITIES:
            self._opportunities_step()
        elif phase is Phase.DEALS:
            self._deals_step()
        self.run.step += 1
        if self.run.done:
            self.run.status = "completed"
            self.run.finished_at = iso(now_utc())
        self.runs.save(self.run.run_id, self.run.model_dump_json(), self.run.step)
        if self.run.done:
            self.runs.save_last(self.run.model_dump_json())
            logger.info("reconcile finished", extra={
                "run_id": self.run.run_id, "mode": self.run.mode, "links": self.run.links_checked,
                "drift": self.run.counts, "repaired": self.run.repaired, "not_repaired": self.run.not_repaired})

    def _continue(self, cursor: Any, next_phase: Phase) -> None:
        """The phase goes on from ``cursor``; at its end (None), the next phase starts from its beginning."""
        if cursor is None:
            self.run.phase = next_phase
        self.run.cursor = cursor

    # --- 1. links ---------------------------------------------------------------------------------
    def _links_step(self) -> None:
        links: list[Link] = []
        cursor = self.run.cursor
        while len(links) < LINK_BATCH:
            page, cursor = self.context.store.links.page(LinkKind.OPPORTUNITY, SCAN_PAGE, cursor)
            links += page
            if cursor is None:
                break
        standing = [link for link in links if link.status is not LinkStatus.TOMBSTONED]
        self.run.links_checked += len(links)
        self.run.links_paused += sum(1 for link in links if link.status is LinkStatus.PAUSED)
        self.run.links_tombstoned += len(links) - len(standing)
        if standing:
            self._compare(standing)
        self._continue(cursor, Phase.OPPORTUNITIES)

    def _compare(self, links: Sequence[Link]) -> None:
        def recheck(drifts: Sequence[Drift]) -> list[Drift]:
            drifted = {drift.opportunity_id for drift in drifts if drift.opportunity_id}
            now = self.context.store.links.get_many(LinkKind.OPPORTUNITY, Side.SALESFORCE, sorted(drifted))
            return self._drift_of([link for link in now.values() if link.status is not LinkStatus.TOMBSTONED])

        self._found(self._drift_of(links), recheck)

    def _drift_of(self, links: Sequence[Link]) -> list[Drift]:
        if not links:
            return []
        opportunity_ids = [link.salesforce_id for link in links]
        deal_ids = [link.hubspot_id for link in links]
        opportunities = {str(record["Id"]): record for record in self.context.salesforce.query_by_ids(
            opportunity_select(self.context, self.specs), "Opportunity", opportunity_ids, include_deleted=True)}
        properties = list(dict.fromkeys([*hubspot_properties_to_read(self.specs), "pipeline", UNIQUE_PROPERTY]))
        deals = {str(deal["id"]): deal for deal in self.context.hubspot.batch_read("deals", deal_ids, properties)}
        deal_sides = self.context.store.links.get_many(LinkKind.OPPORTUNITY, Side.HUBSPOT, deal_ids)
        owners = self.context.owners()
        drifts: list[Drift] = []
        for link in links:
            drifts += compare_pair(link, opportunities.get(link.salesforce_id), deals.get(link.hubspot_id),
                                   deal_sides.get(link.hubspot_id), specs=self.specs, stages=self.stages,
                                   owners=owners)
        return drifts

    # --- 2. opportunities naming a deal -------------------------------------------------------------
    def _opportunities_step(self) -> None:
        if DEAL_ID_FIELD not in self.context.opportunity_fields():
            self._continue(None, Phase.DEALS)
            return
        after = _claims(self.run.cursor)
        where = f"{DEAL_ID_FIELD} != null" + (f" AND Id > '{after}'" if after else "")
        rows = self.context.salesforce.query(
            f"SELECT Id, {DEAL_ID_FIELD} FROM Opportunity WHERE {where} "  # noqa: S608 - our field, an id
            f"ORDER BY Id LIMIT {OPPORTUNITY_PAGE}")
        self.run.opportunities_checked += len(rows)
        claims = {str(row["Id"]): str(row[DEAL_ID_FIELD]) for row in rows if _claims(row.get(DEAL_ID_FIELD))}
        own = self.context.store.links.get_many(LinkKind.OPPORTUNITY, Side.SALESFORCE, list(claims))
        # Linked to the deal it names (any status), or to another one (reported with the link): not here.
        loose = {opportunity_id: deal_id for opportunity_id, deal_id in claims.items()
                 if opportunity_id not in own or (own[opportunity_id].status is LinkStatus.TOMBSTONED
                                                  and own[opportunity_id].hubspot_id != deal_id)}
        drifts: list[Drift] = []
        if loose:
            deal_sides = self.context.store.links.get_many(LinkKind.OPPORTUNITY, Side.HUBSPOT, loose.values())
            named = {str(deal["id"]): str((deal.get("properties") or {}).get(UNIQUE_PROPERTY) or "")
                     for deal in self.context.hubspot.batch_read("deals", list(set(loose.values())),
                                                                 [UNIQUE_PROPERTY])}
            for opportunity_id, deal_id in loose.items():
                drift = claimed_deal_drift(opportunity_id, deal_id, deal_sides.get(deal_id), named.get(deal_id))
                if drift is not None:
                    drifts.append(drift)
        self._found(drifts)
        self._continue(str(rows[-1]["Id"]) if len(rows) == OPPORTUNITY_PAGE else None, Phase.DEALS)

    # --- 3. deals without a link --------------------------------------------------------------------
    def _deals_step(self) -> None:
        deals, after = self.context.hubspot.list_page("deals", [UNIQUE_PROPERTY, "pipeline"],
                                                      after=self.run.cursor, limit=DEAL_PAGE)
        self.run.deals_checked += len(deals)
        own = self.context.store.links.get_many(LinkKind.OPPORTUNITY, Side.HUBSPOT, [str(d["id"]) for d in deals])
        loose = [deal for deal in deals if str(deal["id"]) not in own]
        named = [name for deal in loose if (name := _claims((deal.get("properties") or {}).get(UNIQUE_PROPERTY)))]
        opportunity_sides = (self.context.store.links.get_many(LinkKind.OPPORTUNITY, Side.SALESFORCE, named)
                             if named else {})
        drifts: list[Drift] = []
        for deal in loose:
            name = _claims((deal.get("properties") or {}).get(UNIQUE_PROPERTY))
            drift = unlinked_deal_drift(deal, opportunity_sides.get(name) if name else None, self.stages)
            if drift is not None:
                drifts.append(drift)
        self._found(drifts)
        self._continue(after, Phase.DONE)

    # --- drift found: recorded, and repaired with --apply -------------------------------------------
    def _found(self, drifts: list[Drift],
               recheck: Callable[[Sequence[Drift]], list[Drift]] | None = None) -> None:
        """Record the drift; with --apply, repair it first. ``recheck``: the drift of the same records
        now, read again after the repair, which then decides what was repaired."""
        if drifts and self.apply:
            drifts = self._repair(drifts)
            if recheck is not None:
                drifts = confirmed(drifts, recheck(drifts))
        for drift in drifts:
            logger.info("drift", extra={"run_id": self.run.run_id, "kind": str(drift.kind),
                                        "opportunity_id": drift.opportunity_id, "deal_id": drift.deal_id,
                                        "field": drift.field, "repair": drift.repair, "repaired": drift.repaired})
        self.run.add(drifts)

    def _repair(self, drifts: list[Drift]) -> list[Drift]:
        """Hand the drifted records to the engines (one call per engine for the whole batch). A pair
        with anything HubSpot wins goes to the HubSpot → Salesforce engine alone: it decides every field
        of the pair, both ways, so the pair is not also sent the other way."""
        deal_ids = sorted({drift.deal_id for drift in drifts
                           if drift.repair is Engine.HUBSPOT_TO_SALESFORCE and drift.deal_id})
        opportunity_ids = sorted({drift.opportunity_id for drift in drifts
                                  if drift.repair is Engine.SALESFORCE_TO_HUBSPOT and drift.opportunity_id
                                  and drift.deal_id not in deal_ids})
        from_hubspot = sync_deals(self.context, deal_ids, source="reconcile") if deal_ids else SyncReport()
        from_salesforce = (sync_opportunities(self.context, opportunity_ids, source="reconcile")
                           if opportunity_ids else SyncReport())
        repaired: list[Drift] = []
        for drift in drifts:
            if drift.deal_id in deal_ids and drift.repair is not None:
                outcome = outcome_of(drift.deal_id, from_hubspot)
            elif drift.opportunity_id in opportunity_ids and drift.repair is not None:
                outcome = outcome_of(drift.opportunity_id, from_salesforce)
            else:
                outcome = "not repaired: for the operator"
            repaired.append(drift.model_copy(update={"outcome": outcome}))
        return repaired


# --- entry points ----------------------------------------------------------------------------------

def new_run(mode: str, trigger: str, run_id: str | None = None) -> ReconcileRun:
    return ReconcileRun(run_id=run_id or uuid.uuid4().hex[:12], mode=mode, trigger=trigger,
                        started_at=iso(now_utc()))


def reconcile(context: SyncContext, *, apply: bool = False, trigger: str = "cli",
              progress: Callable[[ReconcileRun], None] | None = None) -> ReconcileRun:
    """A whole run, start to end, in this process (the CLI). ``apply`` is refused (ToggleRefusedError)
    while deal sync is off: the engines would acknowledge and apply nothing (DESIGN 1.1)."""
    if apply:
        context.store.settings.require_deal_sync(APPLY_REFUSAL)
    run = new_run("apply" if apply else "report", trigger)
    ReconcileStore(context.store.table).save(run.run_id, run.model_dump_json(), 0)
    reconciler = Reconciler(context, run)
    logger.info("reconcile started", extra={"run_id": run.run_id, "mode": run.mode, "trigger": trigger})
    while not run.done:
        reconciler.step()
        if progress is not None:
            progress(run)
    return run


def run_scheduled_reconcile(context: SyncContext, task: ScheduledTask,
                            budget_seconds: float = SCHEDULED_BUDGET_SECONDS) -> ReconcileRun | None:
    """The weekly run (report mode), keyed by the schedule's event id: steps until the budget is spent,
    then the same task goes back on the queue and the next delivery continues from the stored step.
    None when another worker holds the run (a duplicate delivery)."""
    runs = ReconcileStore(context.store.table)
    stored = runs.get(task.event_id)
    if stored is None:
        run = new_run("report", "scheduled", run_id=task.event_id)
        try:
            runs.save(run.run_id, run.model_dump_json(), 0)
        except StaleRunError:
            return None
        logger.info("reconcile started", extra={"run_id": run.run_id, "mode": run.mode, "trigger": "scheduled"})
    else:
        run = ReconcileRun.model_validate_json(stored)
    if run.done:
        return run
    reconciler = Reconciler(context, run)
    deadline = time.monotonic() + budget_seconds
    try:
        while not run.done and time.monotonic() < deadline:
            reconciler.step()
    except StaleRunError:
        logger.info("reconcile run continued by another worker", extra={"run_id": run.run_id})
        return None
    except CrmError as error:
        if isinstance(error, TransientCrmError):
            raise
        # A permanent failure (permission, configuration): the run ends here, saying why.
        run.status, run.message, run.finished_at = "failed", error.message[:500], iso(now_utc())
        run.step += 1
        runs.save(run.run_id, run.model_dump_json(), run.step)
        runs.save_last(run.model_dump_json())
        raise
    if not run.done:
        send_messages(context.queues["salesforce"], [task.model_dump_json()])
        logger.info("reconcile continues in the next message", extra={
            "run_id": run.run_id, "phase": str(run.phase), "step": run.step})
    return run


def reconcile_task(context: SyncContext, task: ScheduledTask) -> bool:
    """The Salesforce changes worker's entry: False when the message should come back (a transient CRM
    failure or a continuation that could not be queued); the run continues from its last stored step.
    While the API budget is spent the weekly report is skipped (the next one covers it)."""
    verdict = check_batch(context)
    if not verdict.allowed:
        record_pause(context, "Reconcile", "weekly", verdict)
        return True
    try:
        run_scheduled_reconcile(context, task)
    except (TransientCrmError, EnqueueError) as error:
        logger.warning("reconcile step failed; retried", extra={"run_id": task.event_id, "cause": str(error)[:300]})
        return False
    except CrmError as error:
        logger.error("reconcile failed", extra={"run_id": task.event_id, "cause": error.message[:300]})
    return True


def last_run(context: SyncContext) -> ReconcileRun | None:
    stored = ReconcileStore(context.store.table).last()
    return ReconcileRun.model_validate_json(stored) if stored else None


__all__ = ["Drift", "DriftKind", "Engine", "ReconcileRun", "Reconciler", "claimed_deal_drift", "compare_pair",
           "confirmed", "last_run", "outcome_of", "reconcile", "reconcile_task", "run_scheduled_reconcile",
           "unlinked_deal_drift"]
