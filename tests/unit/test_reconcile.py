"""Reconcile's pure parts: the drift of one link (through the sync's own decision), of an opportunity or
a deal naming a record it is not linked to, what an engine's report says about a repair, and the run's
counts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dealsync.mapping.fields import default_specs
from dealsync.mapping.owners import HubSpotOwner, OwnerDirectory, SalesforceUser
from dealsync.mapping.stages import StageMap
from dealsync.models.domain import Link, LinkKind, LinkStatus, ShadowValue, Side, StageMapping
from dealsync.services.opportunity_sync import SyncReport
from dealsync.services.reconcile import (
    MAX_RECORDED,
    Drift,
    DriftKind,
    Engine,
    claimed_deal_drift,
    compare_pair,
    confirmed,
    new_run,
    outcome_of,
    unlinked_deal_drift,
)

OPPORTUNITY = "006000000000001AAA"
OTHER_OPPORTUNITY = "006000000000002AAA"
DEAL = "9000000001"
OTHER_DEAL = "9000000002"
ALICE = "005000000000001AAA"
MOMENT = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
CAROL = "005000000000003AAA"  # no HubSpot owner
OWNERS = OwnerDirectory([SalesforceUser(ALICE, "alice@example.com"), SalesforceUser(CAROL, "carol@example.com")],
                        [HubSpotOwner("101", "alice@example.com")])
STAGES = StageMap([StageMapping(record_type_id="default", pipeline_id="p1", label="Salesforce - Default pipeline",
                                stages={"Prospecting": "s1", "Closed Won": "s2"})])
SPECS = default_specs(multi_currency=False)
AGREED: dict[str, ShadowValue] = {
    "OwnerId": ALICE, "CloseDate": "2026-03-01", "Name": "Acme renewal", "Type": "New Business",
    "Description": None, "Amount": "1500", "StageName": "default:Prospecting",
}


def link(status: LinkStatus = LinkStatus.ACTIVE, opportunity: str = OPPORTUNITY, deal: str = DEAL) -> Link:
    return Link(kind=LinkKind.OPPORTUNITY, salesforce_id=opportunity, hubspot_id=deal, status=status,
                created_at=MOMENT, updated_at=MOMENT, shadow=dict(AGREED), shadow_version=1)


def opportunity(**overrides: Any) -> dict[str, Any]:
    return {"Id": OPPORTUNITY, "OwnerId": ALICE, "CloseDate": "2026-03-01", "Name": "Acme renewal",
            "Type": "New Business", "Description": None, "Amount": 1500.0, "StageName": "Prospecting",
            "RecordTypeId": None, "IsDeleted": False, "HubSpot_Deal_Id__c": DEAL,
            "SystemModstamp": "2026-03-01T10:00:00.000+0000", **overrides}


def deal(deal_id: str = DEAL, **overrides: Any) -> dict[str, Any]:
    properties = {"hubspot_owner_id": "101", "closedate": "2026-03-01T00:00:00Z", "dealname": "Acme renewal",
                  "dealtype": "newbusiness", "description": None, "amount": "1500", "dealstage": "s1",
                  "pipeline": "p1", "salesforce_opportunity_id": OPPORTUNITY, **overrides}
    return {"id": deal_id, "properties": properties, "updated_at": MOMENT}


def compare(opportunity_record: dict[str, Any] | None, deal_record: dict[str, Any] | None,
            deal_side: Link | None = None) -> list[Drift]:
    return compare_pair(link(), opportunity_record, deal_record, link() if deal_side is None else deal_side,
                        specs=SPECS, stages=STAGES, owners=OWNERS)


def kinds(drifts: list[Drift]) -> list[DriftKind]:
    return [drift.kind for drift in drifts]


def test_a_pair_in_step_with_its_shadow_has_no_drift() -> None:
    assert compare(opportunity(), deal()) == []


def test_a_field_changed_on_one_side_is_a_difference_the_changed_side_wins() -> None:
    [drift] = compare(opportunity(), deal(amount="2500"))
    assert drift.kind is DriftKind.FIELD_DIFFERENCE
    assert (drift.field, drift.hubspot_property) == ("Amount", "amount")
    assert (drift.salesforce_value, drift.hubspot_value) == ("1500.0", "2500")
    assert drift.winner is Side.HUBSPOT
    assert drift.repair is Engine.HUBSPOT_TO_SALESFORCE
    [drift] = compare(opportunity(Description="New terms"), deal())
    assert (drift.field, drift.winner, drift.repair) == ("Description", Side.SALESFORCE, Engine.SALESFORCE_TO_HUBSPOT)


def test_both_sides_changed_is_decided_by_the_later_change() -> None:
    later = deal(dealname="Acme renewal (HubSpot)")
    later["updated_at"] = datetime(2026, 3, 2, tzinfo=UTC)
    [drift] = compare(opportunity(Name="Acme renewal (Salesforce)"), later)
    assert drift.winner is Side.HUBSPOT
    assert "both changed" in drift.detail


def test_an_owner_the_sync_cannot_match_is_not_drift_but_a_cleared_owner_is_reset() -> None:
    without_owner = compare_pair(link().model_copy(update={"shadow": {**AGREED, "OwnerId": CAROL}}),
                                 opportunity(OwnerId=CAROL), deal(hubspot_owner_id=""), link(),
                                 specs=SPECS, stages=STAGES, owners=OWNERS)
    assert without_owner == []  # nothing to write either way: OWNER_NOT_FOUND says why
    [reset] = compare(opportunity(), deal(hubspot_owner_id=""))
    assert (reset.field, reset.winner, reset.repair) == ("OwnerId", Side.SALESFORCE, Engine.SALESFORCE_TO_HUBSPOT)


def test_an_unsyncable_value_is_reported_for_the_operator() -> None:
    [drift] = compare(opportunity(), deal(dealtype="partnership"))  # no value map entry
    assert drift.kind is DriftKind.FIELD_DIFFERENCE
    assert drift.field == "Type"
    assert drift.repair is None
    assert "UNMAPPED_VALUE" in drift.detail


def test_a_missing_side_is_drift_repaired_by_the_engine_of_the_other_side() -> None:
    assert kinds(compare(opportunity(), None)) == [DriftKind.DEAL_MISSING]
    assert compare(opportunity(), None)[0].repair is Engine.HUBSPOT_TO_SALESFORCE
    assert kinds(compare(opportunity(IsDeleted=True), deal())) == [DriftKind.OPPORTUNITY_MISSING]
    assert kinds(compare(None, deal())) == [DriftKind.OPPORTUNITY_MISSING]
    assert compare(None, deal())[0].repair is Engine.SALESFORCE_TO_HUBSPOT
    [orphan] = compare(None, None)
    assert (orphan.kind, orphan.opportunity_id, orphan.deal_id) == (DriftKind.ORPHANED_LINK, OPPORTUNITY, DEAL)


def test_two_links_to_one_deal_are_a_duplicate_and_nothing_else_is_compared() -> None:
    [drift] = compare(opportunity(Amount=99), deal(), deal_side=link(opportunity=OTHER_OPPORTUNITY))
    assert drift.kind is DriftKind.DUPLICATE_LINK
    assert OTHER_OPPORTUNITY in drift.detail
    assert drift.repair is None
    half = compare_pair(link(), opportunity(), deal(), None, specs=SPECS, stages=STAGES, owners=OWNERS)
    assert kinds(half) == [DriftKind.DUPLICATE_LINK]


def test_id_fields_naming_another_record_are_drift_for_the_hubspot_engine() -> None:
    [drift] = compare(opportunity(HubSpot_Deal_Id__c=None), deal())
    assert (drift.kind, drift.salesforce_value, drift.hubspot_value) == (DriftKind.LINK_IDS, None, OPPORTUNITY)
    assert drift.repair is Engine.HUBSPOT_TO_SALESFORCE
    assert kinds(compare(opportunity(), deal(salesforce_opportunity_id=""))) == [DriftKind.LINK_IDS]


def test_a_deal_moved_out_of_the_salesforce_pipelines_is_handed_to_the_hubspot_engine() -> None:
    [drift] = compare(opportunity(), deal(pipeline="someone-elses", dealstage="x"))
    assert (drift.kind, drift.hubspot_property, drift.repair) == (
        DriftKind.FIELD_DIFFERENCE, "pipeline", Engine.HUBSPOT_TO_SALESFORCE)


def test_a_paused_link_is_drift_only_once_its_deal_is_back_in_a_salesforce_pipeline() -> None:
    def paused(deal_record: dict[str, Any] | None) -> list[Drift]:
        return compare_pair(link(LinkStatus.PAUSED), opportunity(), deal_record, link(LinkStatus.PAUSED),
                            specs=SPECS, stages=STAGES, owners=OWNERS)

    assert paused(deal(pipeline="someone-elses", dealstage="x", amount="1")) == []
    assert paused(None) == []
    [back] = paused(deal())
    assert (back.kind, back.hubspot_value, back.repair) == (
        DriftKind.FIELD_DIFFERENCE, "p1", Engine.HUBSPOT_TO_SALESFORCE)


def test_long_values_are_cut_in_the_report() -> None:
    [drift] = compare(opportunity(Description="x" * 1000), deal())
    assert drift.salesforce_value is not None and len(drift.salesforce_value) == 201


def test_an_opportunity_naming_a_deal_it_is_not_linked_to() -> None:
    # The ended link of this very pair (the deal was deleted in HubSpot): known, not drift.
    assert claimed_deal_drift(OPPORTUNITY, DEAL, link(LinkStatus.TOMBSTONED), None) is None
    duplicate = claimed_deal_drift(OPPORTUNITY, DEAL, link(opportunity=OTHER_OPPORTUNITY), OTHER_OPPORTUNITY)
    assert duplicate is not None and duplicate.kind is DriftKind.DUPLICATE_OPPORTUNITY and duplicate.repair is None
    # The deal names it back: left to the deals phase (one drift per pair).
    assert claimed_deal_drift(OPPORTUNITY, DEAL, None, OPPORTUNITY) is None
    loose = claimed_deal_drift(OPPORTUNITY, DEAL, None, None)
    assert loose is not None and (loose.kind, loose.repair) == (
        DriftKind.UNLINKED_OPPORTUNITY, Engine.SALESFORCE_TO_HUBSPOT)
    ended_elsewhere = claimed_deal_drift(OPPORTUNITY, DEAL, link(LinkStatus.TOMBSTONED, OTHER_OPPORTUNITY), None)
    assert ended_elsewhere is not None and ended_elsewhere.kind is DriftKind.UNLINKED_OPPORTUNITY


def test_a_deal_without_a_link() -> None:
    named = unlinked_deal_drift(deal(), None, STAGES)
    assert named is not None
    assert (named.kind, named.opportunity_id, named.repair) == (
        DriftKind.UNLINKED_DEAL, OPPORTUNITY, Engine.HUBSPOT_TO_SALESFORCE)
    taken = unlinked_deal_drift(deal(OTHER_DEAL), link(), STAGES)
    assert taken is not None and (taken.kind, taken.repair) == (DriftKind.DUPLICATE_DEAL, None)
    freed = unlinked_deal_drift(deal(OTHER_DEAL), link(LinkStatus.TOMBSTONED), STAGES)
    assert freed is not None and freed.kind is DriftKind.UNLINKED_DEAL
    in_pipeline = unlinked_deal_drift(deal(salesforce_opportunity_id=None), None, STAGES)
    assert in_pipeline is not None and (in_pipeline.kind, in_pipeline.opportunity_id) == (DriftKind.UNLINKED_DEAL, None)
    # Outside the Salesforce pipelines a deal is not synced, by design.
    assert unlinked_deal_drift(deal(salesforce_opportunity_id=None, pipeline="default"), None, STAGES) is None


def test_the_outcome_of_a_repair_is_read_from_the_engine_report() -> None:
    report = SyncReport(created=["a"], updated=["b"], deleted=["c"], skipped=["d"], retry={"e": "429"})
    report.error("b", "OWNER_NOT_FOUND")
    report.error("f", "SALESFORCE_VALIDATION: required field missing")
    assert outcome_of("a", report) == "repaired"
    assert outcome_of("b", report) == "repaired (sync errors: OWNER_NOT_FOUND)"
    assert outcome_of("c", report) == "repaired"
    assert outcome_of("d", report).startswith("not repaired: skipped")
    assert outcome_of("e", report) == "not repaired (retry later): 429"
    assert outcome_of("f", report) == "not repaired: SALESFORCE_VALIDATION: required field missing"
    assert outcome_of("g", report) == "repaired"  # agreed already: only the shadow moved


def test_what_a_repair_did_is_confirmed_by_reading_the_records_again() -> None:
    def drift(field: str, outcome: str, repair: Engine | None = Engine.HUBSPOT_TO_SALESFORCE) -> Drift:
        return Drift(kind=DriftKind.FIELD_DIFFERENCE, opportunity_id=OPPORTUNITY, deal_id=DEAL, field=field,
                     repair=repair, outcome=outcome)

    repaired = [drift("Amount", "repaired"), drift("Name", "repaired (sync errors: OWNER_NOT_FOUND)"),
                drift("StageName", "not repaired: skipped by the sync (see its log)"),
                drift("Type", "not repaired: SALESFORCE_VALIDATION: bad value"),
                drift("Description", "not repaired: for the operator", repair=None)]
    remaining = [drift("Amount", ""), drift("Type", ""), drift("Description", "")]
    outcomes = {d.field: d.outcome for d in confirmed(repaired, remaining)}
    assert outcomes == {
        "Amount": "not repaired: it still differs after the sync",  # the engine said so, the records do not
        "Name": "repaired (sync errors: OWNER_NOT_FOUND)",
        "StageName": "repaired",  # e.g. a link the engine paused, reporting its deal as skipped
        "Type": "not repaired: SALESFORCE_VALIDATION: bad value",
        "Description": "not repaired: for the operator",
    }


def test_a_run_counts_every_drift_and_keeps_the_first_records() -> None:
    run = new_run("apply", "cli")
    drifts = [Drift(kind=DriftKind.FIELD_DIFFERENCE, opportunity_id=OPPORTUNITY, deal_id=str(index),
                    outcome="repaired" if index % 2 else "not repaired: x") for index in range(MAX_RECORDED + 5)]
    run.add(drifts)
    run.add([Drift(kind=DriftKind.DEAL_MISSING, outcome="repaired (sync errors: OWNER_NOT_FOUND)")])
    assert run.drifts_total == MAX_RECORDED + 6
    assert run.counts == {"field_difference": MAX_RECORDED + 5, "deal_missing": 1}
    assert len(run.drifts) == MAX_RECORDED
    odd = (MAX_RECORDED + 5) // 2  # the field differences repaired
    assert (run.repaired, run.not_repaired) == (odd + 1, MAX_RECORDED + 5 - odd)
    assert not run.done
