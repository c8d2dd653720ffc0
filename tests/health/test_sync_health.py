"""Sync health end to end in the local world: ``dealsync errors`` (counts, a category's records a page
at a time, CSV export), ``dealsync resync`` (one record or a category, each direction, accounts and
contacts as a job; refusals; ``--json``), permanent errors re-tried when their cause changes, and the
retry semantics: a transient CRM failure is retried by the queue until it succeeds, a permanent one is
recorded once per attempt and not retried in a loop."""

from __future__ import annotations

import csv
import inspect
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dealsync.clients.hubspot import HubSpotClient
from dealsync.models.domain import ErrorCategory, LinkKind
from dealsync.services.contacts import link_contacts
from dealsync.services.resync import cause_fingerprints, resync_category, retry_changed_causes
from dealsync.services.toggles import set_deal_sync
from dealsync.store.errors import CAUSES_KEY
from dealsync_local.emulator import EmulatorApp, Faults
from tests.health.conftest import Health

pytestmark = pytest.mark.e2e

EXIT_USAGE, EXIT_REFUSED, EXIT_FAILURES = 2, 3, 4
DEAL_TO_CONTACT = 3


def _errors_of(health: Health, record_id: str) -> dict[ErrorCategory, Any]:
    return {error.category: error for error in health.world.context.store.errors.for_record(record_id)}


def _wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def faults() -> Iterator[list[EmulatorApp]]:
    """Emulators whose faults are set by the test; cleared again afterwards whatever happens."""
    touched: list[EmulatorApp] = []
    yield touched
    for app in touched:
        with app.lock:
            app.faults = Faults()


def _inject(app: EmulatorApp, touched: list[EmulatorApp], **settings: Any) -> None:
    touched.append(app)
    with app.lock:
        app.faults = Faults.from_json(settings)


def _dlq_depth(health: Health, queue: str) -> int:
    depth = health.world.world.queue_depths()[f"{queue}DLQ"]
    return depth["visible"] + depth["in_flight"]


# --- dealsync errors -----------------------------------------------------------------------------------


def test_errors_counts_every_category_and_lists_one_category_s_records(health: Health) -> None:
    opportunity_id = health.new_opportunity("Health - Referral", Type="Referral Partner")
    health.world.settle()

    counts = health.cli("errors", "--json")
    assert counts.status == 0, counts.err
    document = counts.json()
    assert set(document["counts"]) == {str(category) for category in ErrorCategory}
    assert document["counts"]["UNMAPPED_VALUE"] >= 1
    assert document["total"] == sum(document["counts"].values())

    listing = health.cli("errors", "--category", "unmapped_value", "--json")
    assert listing.status == 0, listing.err
    rows = {row["record_id"]: row for row in listing.json()["errors"]}
    row = rows[opportunity_id]
    assert row["category"] == "UNMAPPED_VALUE"
    assert row["record_type"] == "Opportunity"
    # Every sync that met the error counts (the create, and the echo of the deal id written back).
    assert row["attempts"] == _errors_of(health, opportunity_id)[ErrorCategory.UNMAPPED_VALUE].attempts >= 1
    assert "Referral Partner" in row["message"]
    assert row["first_seen"] <= row["last_seen"]
    assert row["related_ids"]["deal_id"]

    text = health.cli("errors")
    assert text.status == 0
    assert any(line.split()[:1] == ["UNMAPPED_VALUE"] and int(line.split()[1]) >= 1 for line in text.lines)
    records = health.cli("errors", "--category", "UNMAPPED_VALUE")
    assert records.status == 0
    assert any(opportunity_id in line and "Referral Partner" in line for line in records.lines)


def test_a_category_is_listed_a_page_at_a_time(health: Health) -> None:
    store = health.world.context.store.errors
    ids = [f"00{index}" for index in range(5)]
    for record_id in ids:
        store.record(ErrorCategory.API_BUDGET, "Deal", record_id, "paused: the daily allowance is spent")
    try:
        seen: list[str] = []
        after: list[str] = []
        pages = 0
        while True:
            page = health.cli("errors", "--category", "API_BUDGET", "--limit", "2", "--json", *after)
            assert page.status == 0, page.err
            document = page.json()
            assert len(document["errors"]) <= 2
            assert document["count"] == len(ids)
            seen += [row["record_id"] for row in document["errors"]]
            pages += 1
            if document["next"] is None:
                break
            after = ["--after", document["next"]]
        assert pages == 3
        assert seen == ids  # each record once, in record order
        text = health.cli("errors", "--category", "API_BUDGET", "--limit", "2")
        assert text.lines[-1] == "next page: dealsync errors --category API_BUDGET --after 'Deal#001'"
        assert health.cli("errors", "--after", "Deal#001").status == EXIT_USAGE  # a cursor needs its category
    finally:
        store.clear(ErrorCategory.API_BUDGET, "Deal", ids)
    assert health.cli("errors", "--category", "API_BUDGET", "--json").json() == {
        "category": "API_BUDGET", "count": 0, "errors": [], "next": None}


def test_an_unknown_category_is_refused_with_the_list(health: Health, tmp_path: Path) -> None:
    for args in (["errors", "--category", "NOPE"], ["resync", "--category", "NOPE"],
                 ["errors", "export", str(tmp_path / "x.csv"), "--category", "NOPE"]):
        result = health.cli(*args)
        assert result.status == EXIT_USAGE, args
        assert "unknown category 'NOPE'" in result.err
        assert "OWNER_NOT_FOUND" in result.err
        refused = health.cli(*args, "--json").json()
        assert refused["refused"] is True
        assert "unknown category 'NOPE'" in refused["message"]
    assert not (tmp_path / "x.csv").exists()


def test_export_writes_every_error_or_one_category_to_csv(health: Health, tmp_path: Path) -> None:
    opportunity_id = health.new_opportunity("Health - Export", Type="Export Partner")
    health.world.settle()
    every = tmp_path / "errors.csv"
    result = health.cli("errors", "export", str(every), "--json")
    assert result.status == 0, result.err
    rows = list(csv.DictReader(every.open(encoding="utf-8")))
    assert result.json()["rows"] == len(rows)
    total = health.cli("errors", "--json").json()["total"]
    assert len(rows) == total
    mine = [row for row in rows if row["record_id"] == opportunity_id]
    assert [row["category"] for row in mine] == ["UNMAPPED_VALUE"]
    assert "Export Partner" in mine[0]["message"]
    assert mine[0]["attempts"] == str(_errors_of(health, opportunity_id)[ErrorCategory.UNMAPPED_VALUE].attempts)

    one = tmp_path / "unmapped.csv"
    text = health.cli("errors", "export", str(one), "--category", "UNMAPPED_VALUE")
    assert text.status == 0
    only = list(csv.DictReader(one.open(encoding="utf-8")))
    assert text.lines == [f"{len(only)} sync error{'s' if len(only) != 1 else ''} written to {one}"]
    assert {row["category"] for row in only} == {"UNMAPPED_VALUE"}
    assert opportunity_id in {row["record_id"] for row in only}

    nowhere = health.cli("errors", "export", str(tmp_path / "missing" / "errors.csv"))
    assert nowhere.status == 1
    assert "is not a directory" in nowhere.err
    assert health.cli("errors", "export").status == EXIT_USAGE


# --- dealsync resync -------------------------------------------------------------------------------------


def test_resync_refuses_an_unknown_record_an_empty_category_and_a_bad_request(health: Health) -> None:
    unknown = health.cli("resync", "987654321")
    assert unknown.status == EXIT_REFUSED
    assert "unknown record 987654321" in unknown.err
    assert health.cli("resync", "0065g00000ZZZZZ", "--json").json() == {
        "refused": True, "message": "unknown record 0065g00000ZZZZZ: no sync error, no link, and neither CRM has it"}
    empty = health.cli("resync", "--category", "MERGED_IN_HUBSPOT", "--json")
    assert empty.status == EXIT_REFUSED
    assert empty.json() == {"refused": True, "message": "nothing to resync: no MERGED_IN_HUBSPOT errors"}
    assert health.cli("resync").status == EXIT_USAGE
    assert health.cli("resync", "987654321", "--category", "PERMISSION").status == EXIT_USAGE


def test_resync_of_a_linked_record_without_errors_queues_it_again(health: Health) -> None:
    opportunity_id = health.new_opportunity("Health - Clean")
    health.world.settle()
    assert not _errors_of(health, opportunity_id)
    result = health.cli("resync", opportunity_id[:15], "--json")  # a 15-character id is the same record
    assert result.status == 0, result.err
    document = result.json()
    assert document["opportunities"] == [opportunity_id]
    assert document["records"] == 1
    assert document["messages"] == 1
    health.world.settle()
    assert not _errors_of(health, opportunity_id)
    link = health.world.context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id)
    assert link is not None
    deal = health.cli("resync", link.hubspot_id)
    assert deal.status == 0, deal.err
    assert deal.lines == ["queued 1 record for resync: 1 deals"]


def test_a_value_map_added_later_clears_unmapped_value_on_resync(health: Health) -> None:
    opportunity_id = health.new_opportunity("Health - Channel", Type="Channel Resale")
    health.world.settle()
    attempts = _errors_of(health, opportunity_id)[ErrorCategory.UNMAPPED_VALUE].attempts
    time.sleep(2)
    health.world.settle()  # a permanent error is not retried by the queue
    assert _errors_of(health, opportunity_id)[ErrorCategory.UNMAPPED_VALUE].attempts == attempts

    health.world.context.store.config.put_value_map("Type", {"Channel Resale": "newbusiness"})
    try:
        result = health.cli("resync", "--category", "UNMAPPED_VALUE", "--wait", "--timeout", "60", "--json")
        document = result.json()
        assert opportunity_id in document["opportunities"]
        assert document["categories"] == ["UNMAPPED_VALUE"]
        assert document["drained"] is True
        assert opportunity_id in document["cleared"]
        # Records of other tests' values stay failing: the exit status says so.
        assert result.status == (EXIT_FAILURES if document["failing"] else 0)
        assert all(categories == ["UNMAPPED_VALUE"] for categories in document["failing"].values())
        assert not _errors_of(health, opportunity_id)
        deal = health.world.deal_for(opportunity_id)
        assert deal is not None
        assert deal["properties"]["dealtype"] == "newbusiness"
    finally:
        health.world.context.store.config.delete_value_map("Type")


def test_the_scheduled_poll_checks_the_causes(health: Health) -> None:
    world = health.world
    world.context.store.table.delete(CAUSES_KEY)
    world.world.run_schedule("SalesforcePollSchedule")
    world.settle()
    assert set(world.context.store.errors.cause_marks()) == {"owners", "mappings", "pipelines"}


def test_an_owner_created_later_retries_the_records_waiting_for_one(health: Health) -> None:
    """The check the poll runs, called directly: the poll's own window would re-read a record this new."""
    world = health.world
    email = "uma.later@example.com"
    user_id = health.salesforce_user(email, "umalater")
    opportunity_id = health.new_opportunity("Health - Unowned", OwnerId=user_id)
    world.settle()
    error = _errors_of(health, opportunity_id)[ErrorCategory.OWNER_NOT_FOUND]
    assert user_id in error.message
    assert email not in error.message  # ids, never e-mails
    deal = world.deal_for(opportunity_id)
    assert deal is not None
    assert not deal["properties"].get("hubspot_owner_id")
    retry_changed_causes(world.context)  # whatever moved before now is seen: the marks are current
    world.settle()
    attempts = _errors_of(health, opportunity_id)[ErrorCategory.OWNER_NOT_FOUND].attempts
    assert retry_changed_causes(world.context) == {}  # nothing changed: nothing tried again
    time.sleep(2)
    world.settle()
    assert _errors_of(health, opportunity_id)[ErrorCategory.OWNER_NOT_FOUND].attempts == attempts  # no loop

    owner_id = str(world.hubspot.add_owner(email, "Uma", "Later")["id"])
    reports = retry_changed_causes(world.context)
    assert list(reports) == [ErrorCategory.OWNER_NOT_FOUND]
    assert opportunity_id in reports[ErrorCategory.OWNER_NOT_FOUND].plan.opportunities
    world.settle()
    assert ErrorCategory.OWNER_NOT_FOUND not in _errors_of(health, opportunity_id)
    deal = world.deal_for(opportunity_id)
    assert deal is not None
    assert deal["properties"]["hubspot_owner_id"] == owner_id


def test_each_cause_fingerprint_moves_with_what_removes_that_cause(health: Health) -> None:
    context = health.world.context
    before = cause_fingerprints(context)
    context.store.config.put_value_map("Type", {"Fingerprint Value": "newbusiness"})
    try:
        after_mapping = cause_fingerprints(context)
    finally:
        context.store.config.delete_value_map("Type")
    assert [name for name in before if before[name] != after_mapping[name]] == ["mappings"]
    health.world.hubspot.add_owner("fresh.owner@example.com", "Fresh", "Owner")
    after_owner = cause_fingerprints(context)
    assert [name for name in before if before[name] != after_owner[name]] == ["owners"]


def test_a_pipeline_change_retries_the_records_waiting_for_a_pipeline(health: Health) -> None:
    world = health.world
    opportunity_id = health.new_opportunity("Health - Waiting for a pipeline")
    world.settle()
    retry_changed_causes(world.context)  # marks as things are now
    world.settle()
    # As the sync records it when the record type's pipeline is past the limit.
    world.context.store.errors.record(ErrorCategory.PIPELINE_LIMIT, "Opportunity", opportunity_id,
                                      "RecordTypeId: no pipeline for this record type (past the pipeline limit)")
    assert retry_changed_causes(world.context) == {}
    world.settle()
    assert ErrorCategory.PIPELINE_LIMIT in _errors_of(health, opportunity_id)  # waits for its cause
    world.person_hubspot.create_pipeline({"label": "Partners (made by a person)", "displayOrder": 9, "stages": [
        {"label": "Open", "displayOrder": 0, "metadata": {"probability": "0.5"}}]})
    reports = retry_changed_causes(world.context)
    assert opportunity_id in reports[ErrorCategory.PIPELINE_LIMIT].plan.opportunities
    world.settle()
    assert ErrorCategory.PIPELINE_LIMIT not in _errors_of(health, opportunity_id)  # tried again: it syncs


def test_a_deal_s_error_resyncs_through_the_hubspot_direction(health: Health) -> None:
    world = health.world
    linked = link_contacts(world.context, world.contact_ids[:1])
    stranger = world.person_hubspot.batch_create("contacts", [{"properties": {
        "email": "late.joiner@elsewhere.example", "firstname": "Late"}}])
    stranger_id = str(stranger[0]["id"])
    mapping = next(iter(world.context.store.config.load().stage_maps.values()))
    created = world.person_hubspot.batch_create("deals", [{
        "properties": {"dealname": "Health - From HubSpot", "pipeline": mapping.pipeline_id,
                       "dealstage": mapping.stages["Prospecting"], "amount": "900",
                       "closedate": "2027-05-31T00:00:00Z", "hubspot_owner_id": world.person_owner_id},
        "associations": [_association(contact_id, DEAL_TO_CONTACT)
                         for contact_id in [linked[world.contact_ids[0]], stranger_id]]}])
    deal_id = str(created[0]["id"])
    world.settle()
    assert ErrorCategory.CONTACT_NOT_IN_SALESFORCE in _errors_of(health, deal_id)

    # The cause goes away: the contact now exists in Salesforce and is linked (as a contact import does).
    contact_id = world.salesforce.create("Contact", {"FirstName": "Late", "LastName": "Joiner",
                                                     "Email": "late.joiner@elsewhere.example",
                                                     "AccountId": world.account_id})
    assert link_contacts(world.context, [contact_id]) == {contact_id: stranger_id}
    result = health.cli("resync", deal_id, "--wait", "--timeout", "60", "--json")
    assert result.status == 0, result.out + result.err
    document = result.json()
    assert document["deals"] == [deal_id]
    assert document["cleared"] == [deal_id]
    assert not _errors_of(health, deal_id)
    opportunity = world.salesforce.soql(f"SELECT Id FROM Opportunity WHERE HubSpot_Deal_Id__c = '{deal_id}'")[0]
    roles = world.salesforce.soql(
        f"SELECT ContactId FROM OpportunityContactRole WHERE OpportunityId = '{opportunity['Id']}'")
    assert contact_id in {row["ContactId"] for row in roles}


def _association(to_id: str, type_id: int) -> dict[str, Any]:
    return {"to": {"id": to_id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}


def test_accounts_and_contacts_that_failed_to_import_resync_as_a_job(health: Health) -> None:
    world = health.world
    account_id = world.salesforce.create("Account", {"Name": "Health Imports Ltd", "Website": "health.example"})
    contact_id = world.salesforce.create("Contact", {"FirstName": "Ima", "LastName": "Port",
                                                     "Email": "ima.port@health.example", "AccountId": account_id})
    errors = world.context.store.errors
    # What an import leaves when HubSpot refused the records (imports record exactly these).
    errors.record(ErrorCategory.HUBSPOT_VALIDATION, "Account", account_id, "company not written: refused")
    errors.record(ErrorCategory.HUBSPOT_VALIDATION, "Contact", contact_id,
                  "contact not linked: HubSpot refused to create it, or it is gone from Salesforce")

    for record_id, route in ((account_id, "accounts"), (contact_id, "contacts")):
        result = health.cli("resync", record_id, "--wait", "--timeout", "60", "--json")
        assert result.status == 0, result.out + result.err
        document = result.json()
        assert document[route] == [record_id]
        assert document["cleared"] == [record_id]
        job = health.cli("import", "status", document["job_id"], "--json").json()
        assert (job["kind"], job["status"], job["done"], job["failed"]) == ("resync", "completed", 1, 0)
        assert not _errors_of(health, record_id)
    company = world.context.store.links.get_by_salesforce_id(LinkKind.ACCOUNT, account_id)
    contact = world.context.store.links.get_by_salesforce_id(LinkKind.CONTACT, contact_id)
    assert company is not None
    assert contact is not None
    found = world.person_hubspot.batch_read("companies", [company.hubspot_id], ["salesforce_account_id"])
    assert found[0]["properties"]["salesforce_account_id"] == account_id


def test_resync_is_refused_while_deal_sync_is_off_and_then_syncs_what_only_salesforce_knew(
        health: Health) -> None:
    set_deal_sync(health.world.context, False)
    try:
        opportunity_id = health.new_opportunity("Health - Made while paused")
        health.world.settle()
        result = health.cli("resync", opportunity_id, "--json")
        assert result.status == EXIT_REFUSED
        assert "deal sync" in result.json()["message"].lower()
    finally:
        set_deal_sync(health.world.context, True)
    assert health.world.deal_for(opportunity_id) is None  # never synced: no link, no error
    result = health.cli("resync", opportunity_id, "--wait", "--timeout", "60", "--json")
    assert result.status == 0, result.out + result.err
    assert result.json()["cleared"] == [opportunity_id]
    deal = health.world.deal_for(opportunity_id)
    assert deal is not None
    assert deal["properties"]["dealname"] == "Health - Made while paused"


def test_the_service_function_for_a_removed_cause_resyncs_the_category(health: Health) -> None:
    """What an operation that removes a cause calls (e.g. after a value map is stored)."""
    opportunity_id = health.new_opportunity("Health - Service", Type="Service Bundle")
    health.world.settle()
    health.world.context.store.config.put_value_map("Type", {"Service Bundle": "existingbusiness"})
    try:
        report = resync_category(health.world.context, ErrorCategory.UNMAPPED_VALUE)
        assert opportunity_id in report.plan.opportunities
        health.world.settle()
        assert not _errors_of(health, opportunity_id)
    finally:
        health.world.context.store.config.delete_value_map("Type")


# --- retries ----------------------------------------------------------------------------------------------


def test_a_transient_crm_failure_is_retried_by_the_queue_until_it_succeeds(
        health: Health, faults: list[EmulatorApp]) -> None:
    world = health.world
    hubspot = world.hubspot
    attempts_per_receive = inspect.signature(HubSpotClient).parameters["max_attempts"].default
    before = hubspot.stats_snapshot()["total"]
    dlq_before = _dlq_depth(health, "SalesforceChanges")
    _inject(hubspot, faults, error_rate=1.0, error_status=503, seed=1)
    opportunity_id = health.new_opportunity("Health - Flaky HubSpot")
    world.salesforce.flush_notifications(10)
    # More failed calls than one delivery's in-process retries: the queue delivered the change again.
    _wait_until(lambda: hubspot.stats_snapshot()["total"] - before > attempts_per_receive, 60,
                "a second delivery of the change")
    assert world.deal_for(opportunity_id) is None
    with hubspot.lock:
        hubspot.faults = Faults()
    world.settle(60)
    deal = world.deal_for(opportunity_id)
    assert deal is not None
    assert deal["properties"]["dealname"] == "Health - Flaky HubSpot"
    assert not _errors_of(health, opportunity_id)  # a transient failure is never a sync error
    assert _dlq_depth(health, "SalesforceChanges") == dlq_before


def test_a_transient_failure_that_outlasts_the_retries_rests_in_the_dlq_until_resynced(
        health: Health, faults: list[EmulatorApp]) -> None:
    world = health.world
    dlq_before = _dlq_depth(health, "SalesforceChanges")
    _inject(world.hubspot, faults, error_rate=1.0, error_status=503, seed=2)
    opportunity_id = health.new_opportunity("Health - HubSpot down")
    world.salesforce.flush_notifications(10)
    # Five deliveries, each retried in the client with backoff, then the dead-letter queue.
    _wait_until(lambda: _dlq_depth(health, "SalesforceChanges") > dlq_before, 120, "the change in the DLQ")
    world.settle(60)
    assert not _errors_of(health, opportunity_id)  # transient: nothing recorded as a sync error
    assert world.deal_for(opportunity_id) is None
    with world.hubspot.lock:
        world.hubspot.faults = Faults()
    result = health.cli("resync", opportunity_id, "--wait", "--timeout", "60", "--json")
    assert result.status == 0, result.out + result.err
    assert result.json()["cleared"] == [opportunity_id]
    assert world.deal_for(opportunity_id) is not None


def test_a_permanent_crm_failure_is_recorded_once_per_attempt_and_not_retried(
        health: Health, faults: list[EmulatorApp]) -> None:
    world = health.world
    hubspot = world.hubspot
    dlq_before = _dlq_depth(health, "SalesforceChanges")
    _inject(hubspot, faults, error_rate=1.0, error_status=403, seed=1)
    opportunity_id = health.new_opportunity("Health - Forbidden")
    world.settle(60)
    error = _errors_of(health, opportunity_id)[ErrorCategory.PERMISSION]
    calls = hubspot.stats_snapshot()["total"]
    time.sleep(3)  # several retry intervals of the local queue
    world.settle()
    assert hubspot.stats_snapshot()["total"] == calls  # nobody is trying again
    assert _errors_of(health, opportunity_id)[ErrorCategory.PERMISSION].attempts == error.attempts
    assert _dlq_depth(health, "SalesforceChanges") == dlq_before

    # Each attempt counts once: a resync while the cause remains is attempt two...
    assert health.cli("resync", opportunity_id, "--wait", "--timeout", "60").status == EXIT_FAILURES
    assert _errors_of(health, opportunity_id)[ErrorCategory.PERMISSION].attempts == error.attempts + 1
    # ...and once the cause is gone (the permission granted) the next one syncs the record and clears it.
    with hubspot.lock:
        hubspot.faults = Faults()
    result = health.cli("resync", "--category", "PERMISSION", "--wait", "--timeout", "60", "--json")
    assert opportunity_id in result.json()["cleared"]
    assert not _errors_of(health, opportunity_id)
    assert world.deal_for(opportunity_id) is not None
