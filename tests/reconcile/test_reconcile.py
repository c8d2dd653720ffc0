"""``dealsync reconcile`` end to end in the local world: drift is injected into the emulators as a person
would cause it — a deal deleted by hand, fields edited while deal sync was off, records deleted, ids
edited — then found by the CLI's report, repaired by ``--apply`` through the real sync engines, and gone
from the next report. Duplicates are reported and left for the operator; ``--apply`` is refused while
deal sync is off; the weekly schedule runs in report mode through the Salesforce changes worker.

Every test leaves the world without drift, so each report is exactly the drift its test injected."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from dealsync.models.domain import LinkKind, LinkStatus
from dealsync.models.events import ScheduledTask
from dealsync.services import reconcile as reconcile_service
from dealsync.services.toggles import set_deal_sync
from dealsync.store.dynamo import iso, now_utc
from dealsync_cli.main import main
from tests.sync.conftest import SyncWorld

pytestmark = pytest.mark.e2e

DEAL_PROPERTIES = ["dealname", "amount", "description", "salesforce_opportunity_id", "pipeline", "dealstage"]
EXIT_DRIFT = 4
EXIT_REFUSED = 3


def _cli(world: SyncWorld, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    """``dealsync reconcile ARGS --json`` against the world; (exit status, the JSON it printed)."""
    capsys.readouterr()
    status = main(["reconcile", *args, "--json", "--state-dir", str(world.world.state_dir)])
    out = capsys.readouterr().out.strip().splitlines()
    return status, json.loads(out[-1]) if out else None


def _drifts(run: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    return [drift for drift in run["drifts"] if kind is None or drift["kind"] == kind]


@contextmanager
def _sync_off(world: SyncWorld) -> Iterator[None]:
    """Deal sync off while the person works (webhooks and change events acknowledged, not applied)."""
    set_deal_sync(world.context, False)
    try:
        yield
        world.settle()
    finally:
        set_deal_sync(world.context, True)


def _new_opportunity(world: SyncWorld, name: str, **fields: object) -> tuple[str, str]:
    """An opportunity created by the person and synced: (opportunity id, deal id)."""
    values = {"Name": name, "StageName": "Prospecting", "CloseDate": "2027-03-31", "Amount": 48000,
              "Type": "New Business", "Description": "Platform renewal", "AccountId": world.account_id, **fields}
    opportunity_id: str = world.salesforce.create("Opportunity", values)
    world.settle()
    deal = world.deal_for(opportunity_id)
    assert deal is not None, "the opportunity did not sync"
    return opportunity_id, str(deal["id"])


def _deal(world: SyncWorld, deal_id: str) -> dict[str, Any] | None:
    found = world.person_hubspot.batch_read("deals", [deal_id], DEAL_PROPERTIES)
    return found[0] if found else None


def _assert_no_drift(world: SyncWorld, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    status, run = _cli(world, capsys)
    assert run["drifts_total"] == 0, run["drifts"]
    assert status == 0
    return dict(run)


def test_a_synced_world_has_no_drift(sync_world: SyncWorld, capsys: pytest.CaptureFixture[str]) -> None:
    _new_opportunity(sync_world, "Acme Corp - Baseline A")
    _new_opportunity(sync_world, "Acme Corp - Baseline B")
    run = _assert_no_drift(sync_world, capsys)
    assert run["status"] == "completed"
    assert run["mode"] == "report"
    assert run["links_checked"] >= 2
    assert run["opportunities_checked"] >= 2
    assert run["deals_checked"] >= 2


def test_a_deal_deleted_by_hand_is_found_and_repaired_as_design_1_6_says(
        sync_world: SyncWorld, capsys: pytest.CaptureFixture[str]) -> None:
    opportunity_id, deal_id = _new_opportunity(sync_world, "Acme Corp - Deleted deal")
    with _sync_off(sync_world):
        sync_world.person_hubspot.batch_archive("deals", [deal_id])

    status, run = _cli(sync_world, capsys)
    assert status == EXIT_DRIFT
    assert run["counts"] == {"deal_missing": 1}
    [drift] = _drifts(run)
    assert (drift["opportunity_id"], drift["deal_id"], drift["repair"]) == (
        opportunity_id, deal_id, "hubspot_to_salesforce")
    link = sync_world.context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert link is not None and link.is_active  # a report changes nothing

    status, run = _cli(sync_world, capsys, "--apply")
    assert status == 0
    assert run["mode"] == "apply"
    assert [d["outcome"] for d in _drifts(run, "deal_missing")] == ["repaired"]
    # The opportunity stays; the link is tombstoned (DESIGN 1.6).
    assert sync_world.salesforce.get("Opportunity", opportunity_id) is not None
    link = sync_world.context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert link is not None and link.status is LinkStatus.TOMBSTONED
    _assert_no_drift(sync_world, capsys)

    # ... and the opportunity syncs as a new deal on its next change.
    sync_world.salesforce.update("Opportunity", opportunity_id, {"Amount": 51000})
    sync_world.settle()
    deal = sync_world.deal_for(opportunity_id)
    assert deal is not None and str(deal["id"]) != deal_id
    _assert_no_drift(sync_world, capsys)


def test_fields_edited_while_sync_was_off_go_the_way_the_rules_say(
        sync_world: SyncWorld, capsys: pytest.CaptureFixture[str]) -> None:
    opportunity_id, deal_id = _new_opportunity(sync_world, "Acme Corp - Edited while off")
    with _sync_off(sync_world):
        sync_world.person_hubspot.batch_update("deals", [{"id": deal_id, "properties": {"amount": "61000"}}])
        sync_world.salesforce.update("Opportunity", opportunity_id, {"Description": "Edited in Salesforce"})

    status, run = _cli(sync_world, capsys)
    assert status == EXIT_DRIFT
    assert run["counts"] == {"field_difference": 2}
    by_field = {drift["field"]: drift for drift in _drifts(run)}
    assert by_field["Amount"]["hubspot_property"] == "amount"
    assert by_field["Amount"]["hubspot_value"] == "61000"
    assert float(by_field["Amount"]["salesforce_value"]) == 48000
    assert by_field["Amount"]["winner"] == "hubspot"
    assert by_field["Description"]["salesforce_value"] == "Edited in Salesforce"
    assert by_field["Description"]["hubspot_value"] == "Platform renewal"
    assert by_field["Description"]["winner"] == "salesforce"
    assert {drift["deal_id"] for drift in by_field.values()} == {deal_id}

    # The text report names the fields and the side that wins.
    capsys.readouterr()
    assert main(["reconcile", "--state-dir", str(sync_world.world.state_dir)]) == EXIT_DRIFT
    text = capsys.readouterr().out
    assert "field_difference 2" in text
    assert "Amount ⇄ amount" in text and "HubSpot wins" in text
    assert "Description ⇄ description" in text and "Salesforce wins" in text

    status, run = _cli(sync_world, capsys, "--apply")
    assert status == 0
    assert {d["outcome"] for d in _drifts(run)} == {"repaired"}
    opportunity = sync_world.salesforce.get("Opportunity", opportunity_id)
    assert opportunity is not None and float(opportunity["Amount"]) == 61000
    deal = _deal(sync_world, deal_id)
    assert deal is not None and deal["properties"]["description"] == "Edited in Salesforce"
    _assert_no_drift(sync_world, capsys)


def test_opportunities_deleted_leave_deals_and_orphaned_links_that_apply_ends(
        sync_world: SyncWorld, capsys: pytest.CaptureFixture[str]) -> None:
    deleted_id, its_deal = _new_opportunity(sync_world, "Acme Corp - Deleted in Salesforce")
    orphan_id, orphan_deal = _new_opportunity(sync_world, "Acme Corp - Deleted on both sides")
    with _sync_off(sync_world):
        sync_world.salesforce.delete("Opportunity", deleted_id)
        sync_world.salesforce.delete("Opportunity", orphan_id)
        sync_world.person_hubspot.batch_archive("deals", [orphan_deal])

    status, run = _cli(sync_world, capsys)
    assert status == EXIT_DRIFT
    assert run["counts"] == {"opportunity_missing": 1, "orphaned_link": 1}
    assert [(d["opportunity_id"], d["deal_id"]) for d in _drifts(run, "opportunity_missing")] == [
        (deleted_id, its_deal)]
    assert [(d["opportunity_id"], d["deal_id"]) for d in _drifts(run, "orphaned_link")] == [
        (orphan_id, orphan_deal)]

    status, run = _cli(sync_world, capsys, "--apply")
    assert status == 0
    assert {d["outcome"] for d in _drifts(run)} == {"repaired"}
    assert _deal(sync_world, its_deal) is None  # archived, as a Salesforce deletion does
    for opportunity_id in (deleted_id, orphan_id):
        link = sync_world.context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
        assert link is not None and link.status is LinkStatus.TOMBSTONED
    _assert_no_drift(sync_world, capsys)


def test_a_deal_created_while_sync_was_off_becomes_an_opportunity(
        sync_world: SyncWorld, capsys: pytest.CaptureFixture[str]) -> None:
    mapping = next(iter(sync_world.context.store.config.load().stage_maps.values()))
    with _sync_off(sync_world):
        created = sync_world.person_hubspot.batch_create("deals", [{"properties": {
            "dealname": "Globex - Made while off", "pipeline": mapping.pipeline_id,
            "dealstage": mapping.stages["Prospecting"], "amount": "7300", "closedate": "2027-06-30T00:00:00Z"}}])
        deal_id = str(created[0]["id"])

    status, run = _cli(sync_world, capsys)
    assert status == EXIT_DRIFT
    assert [(d["kind"], d["deal_id"], d["opportunity_id"]) for d in _drifts(run)] == [
        ("unlinked_deal", deal_id, None)]

    status, run = _cli(sync_world, capsys, "--apply")
    assert status == 0, [(d["kind"], d["outcome"]) for d in run["drifts"]]
    # The deal has no owner: the opportunity goes to the integration user, and the sync error says so.
    assert [d["outcome"] for d in run["drifts"]] == ["repaired (sync errors: OWNER_NOT_FOUND)"]
    link = sync_world.context.store.links.get_by_hubspot_id(LinkKind.OPPORTUNITY, deal_id)
    assert link is not None and link.is_active
    opportunity = sync_world.salesforce.get("Opportunity", link.salesforce_id)
    assert opportunity is not None and opportunity["Name"] == "Globex - Made while off"
    _assert_no_drift(sync_world, capsys)


def test_a_deal_moved_between_pipelines_while_sync_was_off_pauses_and_resumes_its_link(
        sync_world: SyncWorld, capsys: pytest.CaptureFixture[str]) -> None:
    opportunity_id, deal_id = _new_opportunity(sync_world, "Acme Corp - Moved")
    links = sync_world.context.store.links
    with _sync_off(sync_world):
        sync_world.person_hubspot.batch_update("deals", [{"id": deal_id, "properties": {
            "pipeline": "default", "dealstage": "appointmentscheduled"}}])
    status, run = _cli(sync_world, capsys, "--apply")
    assert status == 0, run["drifts"]
    assert [(d["kind"], d["hubspot_value"], d["outcome"]) for d in _drifts(run)] == [
        ("field_difference", "default", "repaired")]
    link = links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert link is not None and link.status is LinkStatus.PAUSED
    _assert_no_drift(sync_world, capsys)  # paused outside the Salesforce pipelines: as it should be

    mapping = next(iter(sync_world.context.store.config.load().stage_maps.values()))
    with _sync_off(sync_world):
        sync_world.person_hubspot.batch_update("deals", [{"id": deal_id, "properties": {
            "pipeline": mapping.pipeline_id, "dealstage": mapping.stages["Prospecting"]}}])
    status, run = _cli(sync_world, capsys, "--apply")
    assert status == 0
    assert [(d["kind"], d["outcome"]) for d in _drifts(run)] == [("field_difference", "repaired")]
    link = links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert link is not None and link.is_active
    _assert_no_drift(sync_world, capsys)


def test_edited_ids_are_repaired_and_duplicates_are_left_for_the_operator(
        sync_world: SyncWorld, capsys: pytest.CaptureFixture[str]) -> None:
    opportunity_id, deal_id = _new_opportunity(sync_world, "Acme Corp - Ids")
    other_id, other_deal = _new_opportunity(sync_world, "Acme Corp - Other")
    with _sync_off(sync_world):
        # Someone moved the deal's pointer away and made a second deal for the same opportunity.
        sync_world.person_hubspot.batch_update("deals", [{"id": deal_id,
                                                          "properties": {"salesforce_opportunity_id": ""}}])
        duplicate = sync_world.person_hubspot.batch_create("deals", [{"properties": {
            "dealname": "Acme Corp - Ids (copy)", "salesforce_opportunity_id": opportunity_id,
            "pipeline": "default", "dealstage": "appointmentscheduled"}}])
        duplicate_id = str(duplicate[0]["id"])
        # ... and an unlinked opportunity names the other opportunity's deal.
        claimant = sync_world.salesforce.create("Opportunity", {
            "Name": "Acme Corp - Claimant", "StageName": "Prospecting", "CloseDate": "2027-03-31"})
        sync_world.salesforce.update("Opportunity", other_id, {"HubSpot_Deal_Id__c": None})
        sync_world.salesforce.update("Opportunity", claimant, {"HubSpot_Deal_Id__c": other_deal})
    # Two links to one deal: a link item written by hand.
    table = sync_world.context.store.table
    stray_opportunity = sync_world.salesforce.create("Opportunity", {
        "Name": "Acme Corp - Stray link", "StageName": "Prospecting", "CloseDate": "2027-03-31"})
    sync_world.settle()
    moment = iso(now_utc())
    stray_key = {"pk": f"LINK#opportunity#SF#{stray_opportunity}", "sk": "LINK"}
    table.put({**stray_key, "kind": "opportunity", "salesforce_id": stray_opportunity, "hubspot_id": deal_id,
               "status": "active", "created_at": moment, "updated_at": moment, "shadow": {}, "shadow_version": 0})

    status, run = _cli(sync_world, capsys)
    assert status == EXIT_DRIFT
    assert run["counts"] == {"link_ids": 2, "duplicate_deal": 1, "duplicate_opportunity": 1, "duplicate_link": 1}
    assert {(d["opportunity_id"], d["deal_id"]) for d in _drifts(run, "link_ids")} == {
        (opportunity_id, deal_id), (other_id, other_deal)}
    assert [(d["opportunity_id"], d["deal_id"]) for d in _drifts(run, "duplicate_deal")] == [
        (opportunity_id, duplicate_id)]
    assert [(d["opportunity_id"], d["deal_id"]) for d in _drifts(run, "duplicate_opportunity")] == [
        (claimant, other_deal)]
    assert [(d["opportunity_id"], d["deal_id"]) for d in _drifts(run, "duplicate_link")] == [
        (stray_opportunity, deal_id)]

    # The operator resolves the duplicates; --apply repairs the ids by the sync.
    sync_world.person_hubspot.batch_archive("deals", [duplicate_id])
    sync_world.salesforce.update("Opportunity", claimant, {"HubSpot_Deal_Id__c": None})
    table.delete(stray_key)
    sync_world.settle()
    status, run = _cli(sync_world, capsys, "--apply")
    assert status == 0, [(d["kind"], d["outcome"]) for d in run["drifts"]]
    assert run["counts"] == {"link_ids": 2}
    deal = _deal(sync_world, deal_id)
    assert deal is not None and deal["properties"]["salesforce_opportunity_id"] == opportunity_id
    other = sync_world.salesforce.get("Opportunity", other_id)
    assert other is not None and other["HubSpot_Deal_Id__c"] == other_deal
    _assert_no_drift(sync_world, capsys)


def test_duplicates_are_not_repaired_by_apply(sync_world: SyncWorld, capsys: pytest.CaptureFixture[str]) -> None:
    opportunity_id, deal_id = _new_opportunity(sync_world, "Acme Corp - Claimed twice")
    with _sync_off(sync_world):
        claimant = sync_world.salesforce.create("Opportunity", {
            "Name": "Acme Corp - Second claimant", "StageName": "Prospecting", "CloseDate": "2027-03-31"})
        sync_world.salesforce.update("Opportunity", opportunity_id, {"HubSpot_Deal_Id__c": None})
        sync_world.salesforce.update("Opportunity", claimant, {"HubSpot_Deal_Id__c": deal_id})
    status, run = _cli(sync_world, capsys, "--apply")
    assert status == EXIT_DRIFT  # the duplicate is left: which opportunity keeps the deal is the operator's call
    duplicate = _drifts(run, "duplicate_opportunity")
    assert [(d["opportunity_id"], d["outcome"]) for d in duplicate] == [(claimant, "not repaired: for the operator")]
    # The linked opportunity's id could not be written back while the claimant holds it (unique field).
    [ids] = _drifts(run, "link_ids")
    assert ids["opportunity_id"] == opportunity_id
    assert ids["outcome"] != "repaired"
    sync_world.salesforce.update("Opportunity", claimant, {"HubSpot_Deal_Id__c": None})
    status, run = _cli(sync_world, capsys, "--apply")
    assert status == 0, [(d["kind"], d["outcome"]) for d in run["drifts"]]
    _assert_no_drift(sync_world, capsys)


def test_apply_is_refused_while_deal_sync_is_off(sync_world: SyncWorld, capsys: pytest.CaptureFixture[str]) -> None:
    set_deal_sync(sync_world.context, False)
    try:
        status, refusal = _cli(sync_world, capsys, "--apply")
        assert status == EXIT_REFUSED
        assert refusal["refused"] is True
        assert "deal sync" in refusal["message"].lower()
        assert refusal["missing_steps"]
        status, run = _cli(sync_world, capsys)  # a report is still allowed
        assert status == 0 and run["drifts_total"] == 0
    finally:
        set_deal_sync(sync_world.context, True)


def test_the_weekly_schedule_reports_without_repairing_and_last_shows_it(
        sync_world: SyncWorld, capsys: pytest.CaptureFixture[str]) -> None:
    opportunity_id, deal_id = _new_opportunity(sync_world, "Acme Corp - Weekly")
    with _sync_off(sync_world):
        sync_world.person_hubspot.batch_update("deals", [{"id": deal_id, "properties": {"amount": "1234"}}])
    sync_world.world.run_schedule("ReconcileReportSchedule")
    sync_world.world.drain()
    status, run = _cli(sync_world, capsys, "--last")
    assert status == EXIT_DRIFT
    assert (run["trigger"], run["mode"], run["status"]) == ("scheduled", "report", "completed")
    [drift] = _drifts(run)
    assert (drift["kind"], drift["field"], drift["opportunity_id"], drift["outcome"]) == (
        "field_difference", "Amount", opportunity_id, None)
    opportunity = sync_world.salesforce.get("Opportunity", opportunity_id)
    assert opportunity is not None and float(opportunity["Amount"]) == 48000  # report only: nothing repaired

    # A run out of time continues through its own queue message until it is done.
    task = ScheduledTask(task="reconcile", time=datetime.now(UTC), event_id="weekly-continued")
    started = reconcile_service.run_scheduled_reconcile(sync_world.context, task, budget_seconds=0)
    assert started is not None and started.step == 0 and not started.done
    sync_world.world.drain()
    status, run = _cli(sync_world, capsys, "--last")
    assert (run["run_id"], run["status"], run["counts"]) == ("weekly-continued", "completed", {"field_difference": 1})

    status, run = _cli(sync_world, capsys, "--apply")
    assert status == 0
    _assert_no_drift(sync_world, capsys)


def test_small_pages_see_exactly_what_one_page_sees(
        sync_world: SyncWorld, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _new_opportunity(sync_world, "Acme Corp - Paging")
    whole = reconcile_service.reconcile(sync_world.context)
    for name in ("LINK_BATCH", "SCAN_PAGE", "OPPORTUNITY_PAGE", "DEAL_PAGE"):
        monkeypatch.setattr(reconcile_service, name, 2)
    paged = reconcile_service.reconcile(sync_world.context)
    assert paged.step > whole.step
    assert (paged.links_checked, paged.opportunities_checked, paged.deals_checked, paged.drifts_total) == (
        whole.links_checked, whole.opportunities_checked, whole.deals_checked, 0)
