"""DESIGN 1.1 and 1.8 end to end in the local world, in the seed's order, as an operator runs it: the
``dealsync`` CLI in-process (``--state-dir``) against the world, whose real ``import_batch`` workers
poll the ImportQueue. The tests of this module build on each other and run in file order."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from dealsync.models.domain import ErrorCategory, JobStatus, LinkKind, Side
from dealsync.models.events import parse_import_queue_body
from dealsync.queues import EnqueueError, send_messages
from dealsync.services import imports
from dealsync.services.context import SyncContext, build_context
from dealsync.services.import_records import enumerate_opportunities
from dealsync.services.imports import run_coordinator, start_import
from dealsync.store.settings import STEP_ACCOUNT_IMPORT, STEP_COMPANY_SYNC, STEP_DEAL_SYNC
from dealsync_cli.main import main
from dealsync_local.world import LocalWorld

pytestmark = pytest.mark.e2e


@dataclasses.dataclass
class Result:
    status: int
    out: str
    err: str

    def json(self) -> Any:
        """The command's JSON document. The world's handlers run in this process and print their
        metrics (EMF) on the same stdout: those lines are not the command's."""
        lines = [line for line in self.out.splitlines() if line.strip() and not line.startswith('{"_aws"')]
        assert len(lines) == 1, f"expected one JSON document, got {lines}"
        return json.loads(lines[0])


@dataclasses.dataclass
class Onboarding:
    world: LocalWorld
    context: SyncContext

    def cli(self, *args: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main([*args, "--state-dir", str(self.world.state_dir)])
        return Result(status, out.getvalue(), err.getvalue())

    def settle(self, timeout: float = 120.0) -> None:
        assert self.world.crms is not None
        for _ in range(2):
            self.world.crms.salesforce.app.flush_notifications(30)
            self.world.crms.hubspot.app.flush_webhooks(30)
            self.world.drain(timeout)

    def salesforce_ids(self, sobject: str) -> list[str]:
        assert self.world.crms is not None
        return sorted(str(row["Id"]) for row in self.world.crms.salesforce.app.soql(f"SELECT Id FROM {sobject}"))

    def hubspot_records(self, object_type: str) -> list[dict[str, str]]:
        assert self.world.crms is not None
        store = self.world.crms.hubspot.app.store
        with store.lock:
            return [dict(record.values) for record in store.records[object_type].values() if not record.archived]

    def hubspot_counts(self) -> dict[str, int]:
        return {name: len(self.hubspot_records(name)) for name in ("deals", "companies", "contacts")}


@pytest.fixture(scope="module")
def onboarding(local_world: LocalWorld) -> Onboarding:
    return Onboarding(local_world, build_context())


def test_deal_sync_is_refused_before_company_sync_and_an_account_import(onboarding: Onboarding) -> None:
    refused = onboarding.cli("toggle", "deal-sync", "on")
    assert refused.status == 3
    assert STEP_COMPANY_SYNC in refused.err and STEP_ACCOUNT_IMPORT in refused.err
    assert onboarding.cli("import", "accounts").status == 3  # company sync is off
    opportunities = onboarding.cli("import", "opportunities", "--json")
    assert opportunities.status == 3
    assert opportunities.json()["missing_steps"] == [STEP_DEAL_SYNC]

    company = onboarding.cli("toggle", "company-sync", "on", "--json")
    assert company.status == 0, company.err
    assert company.json()["toggles"]["company_sync"] is True
    still_refused = onboarding.cli("toggle", "deal-sync", "on")
    assert still_refused.status == 3
    assert STEP_ACCOUNT_IMPORT in still_refused.err and STEP_COMPANY_SYNC not in still_refused.err
    assert onboarding.context.store.settings.toggles().deal_sync is False


def test_account_import_links_every_account_to_one_company(onboarding: Onboarding) -> None:
    result = onboarding.cli("import", "accounts", "--wait", "--timeout", "120", "--interval", "0.2")
    assert result.status == 0, result.err
    assert "completed" in result.out
    assert "accounts [" in result.err  # the progress line
    accounts = onboarding.salesforce_ids("Account")
    job = onboarding.context.store.jobs.recent(1)[0]
    assert (job.kind, job.status, job.done, job.failed, job.total) == (
        "accounts", JobStatus.COMPLETED, len(accounts), 0, len(accounts))
    assert job.finished_at is not None
    assert onboarding.context.store.settings.toggles().account_import_completed is True
    companies = onboarding.hubspot_records("companies")
    assert sorted(company["salesforce_account_id"] for company in companies) == accounts
    links = onboarding.context.store.links.get_many(LinkKind.ACCOUNT, Side.SALESFORCE, accounts)
    assert set(links) == set(accounts)
    assert all(company.get("domain", "").endswith(".example") for company in companies)


def test_contact_import_links_every_contact_by_email(onboarding: Onboarding) -> None:
    result = onboarding.cli("import", "contacts", "--wait", "--timeout", "120", "--interval", "0.2", "--json")
    assert result.status == 0, result.err
    job = result.json()
    contacts = onboarding.salesforce_ids("Contact")
    assert (job["status"], job["done"], job["failed"], job["total"]) == ("completed", len(contacts), 0, len(contacts))
    assert onboarding.world.crms is not None
    emails = sorted(str(row["Email"]).lower() for row in onboarding.world.crms.salesforce.app.soql(
        "SELECT Email FROM Contact"))
    assert sorted(contact["email"] for contact in onboarding.hubspot_records("contacts")) == emails
    links = onboarding.context.store.links.get_many(LinkKind.CONTACT, Side.SALESFORCE, contacts)
    assert set(links) == set(contacts)


def test_deal_sync_on_provisions_one_pipeline_per_record_type(onboarding: Onboarding) -> None:
    result = onboarding.cli("toggle", "deal-sync", "on", "--json")
    assert result.status == 0, result.err
    document = result.json()
    assert document["toggles"]["deal_sync"] is True
    assert onboarding.world.crms is not None
    record_types = sorted(str(row["Id"]) for row in onboarding.world.crms.salesforce.app.soql(
        "SELECT Id FROM RecordType WHERE SobjectType = 'Opportunity'"))
    assert len(record_types) == 3
    assert sorted(item["record_type_id"] for item in document["pipelines"]) == record_types
    labels = {str(pipeline["label"]) for pipeline in onboarding.context.hubspot.pipelines("deals")}
    assert {f"Salesforce - {record_type}" for record_type in record_types} <= labels


def _take(world: LocalWorld, queue_url: str) -> Iterator[dict[str, Any]]:
    sqs = world.sqs()
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", [])
        if not messages:
            return
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            yield dict(message)


def _sqs_event(world: LocalWorld, messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": [{"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
                         "body": message["Body"], "attributes": {"ApproximateReceiveCount": "1"},
                         "messageAttributes": {}, "md5OfBody": message["MD5OfBody"], "eventSource": "aws:sqs",
                         "eventSourceARN": world.queue_arn("ImportQueue"), "awsRegion": "us-east-1"}
                        for message in messages]}


def test_an_opportunity_import_whose_workers_die_is_resumed_and_imports_everything_once(
        onboarding: Onboarding) -> None:
    world, context = onboarding.world, onboarding.context
    # The worker "dies" after three chunks: its messages go to a queue nobody polls and are lost.
    dead_end = world.queue_url("ImportDLQ")
    diverted = dataclasses.replace(context, queues={**context.queues, "import": dead_end})
    job = start_import(diverted, "opportunities", chunk_size=10)
    start = [parse_import_queue_body(message["Body"]) for message in _take(world, dead_end)]
    assert len(start) == 1
    run_coordinator(diverted, start[0])  # type: ignore[arg-type]
    chunks = list(_take(world, dead_end))
    assert len(chunks) == 10
    world.invoke("ImportBatchFunction", _sqs_event(world, chunks[:3]))
    halfway = context.store.jobs.get(job.job_id)
    assert halfway is not None
    assert (halfway.status, halfway.chunks_done, halfway.chunks_total) == (JobStatus.RUNNING, 3, 10)
    assert len(context.store.jobs.pending_chunks(job.job_id)) == 7

    status = onboarding.cli("import", "status", job.job_id, "--json")
    assert status.status == 0 and status.json()["chunks_done"] == 3
    resumed = onboarding.cli("import", "resume", job.job_id, "--wait", "--timeout", "180", "--interval", "0.2")
    assert resumed.status == 0, resumed.err
    assert "7 chunks queued again" in resumed.out
    onboarding.settle()

    finished = context.store.jobs.get(job.job_id)
    opportunities = onboarding.salesforce_ids("Opportunity")
    assert finished is not None
    assert (finished.status, finished.done, finished.failed, finished.total) == (
        JobStatus.COMPLETED, len(opportunities), 0, len(opportunities))
    deals = onboarding.hubspot_records("deals")
    assert sorted(deal["salesforce_opportunity_id"] for deal in deals) == opportunities  # each exactly once


def test_every_imported_deal_has_its_contacts_company_and_rollup_rows(onboarding: Onboarding) -> None:
    context = onboarding.context
    assert onboarding.world.crms is not None
    salesforce = onboarding.world.crms.salesforce.app
    rows = salesforce.soql("SELECT Id, AccountId, (SELECT ContactId FROM OpportunityContactRoles) FROM Opportunity")
    opportunity_links = context.store.links.get_many(LinkKind.OPPORTUNITY, Side.SALESFORCE,
                                                     [str(row["Id"]) for row in rows])
    deal_ids = [link.hubspot_id for link in opportunity_links.values()]
    companies = context.hubspot.associations_read("deals", "companies", deal_ids)
    contacts = context.hubspot.associations_read("deals", "contacts", deal_ids)
    with_roles = 0
    for row in rows:
        opportunity_id = str(row["Id"])
        deal_id = opportunity_links[opportunity_id].hubspot_id
        account = context.store.links.get_by_salesforce_id(LinkKind.ACCOUNT, str(row["AccountId"]))
        assert account is not None
        assert {str(item["to_object_id"]) for item in companies.get(deal_id, [])} == {account.hubspot_id}
        role_contacts = {str(role["ContactId"]) for role in (row.get("OpportunityContactRoles") or {}).get(
            "records", [])}
        contact_links = context.store.links.get_many(LinkKind.CONTACT, Side.SALESFORCE,
                                                     sorted(role_contacts))
        assert {str(item["to_object_id"]) for item in contacts.get(deal_id, [])} == {
            link.hubspot_id for link in contact_links.values()}
        assert len(contact_links) == len(role_contacts)
        assert context.store.rollups.contacts_of_opportunity(opportunity_id) == role_contacts
        with_roles += bool(role_contacts)
    assert with_roles > 50  # the demo gives most opportunities contact roles: the check above had teeth


def test_rest_pages_and_bulk_jobs_enumerate_the_same_records(onboarding: Onboarding) -> None:
    """Above the Bulk threshold the records come from two Bulk API 2.0 jobs (no subqueries there) merged
    by opportunity id, as CSV typed back: the engine must see exactly what the REST pages give."""

    def normal(record: dict[str, Any]) -> dict[str, Any]:
        roles = (record.get("OpportunityContactRoles") or {}).get("records") or []
        return {**record, "OpportunityContactRoles": sorted(roles, key=lambda role: str(role["Id"]))}

    rest = [normal(record) for record in enumerate_opportunities(onboarding.context, bulk_threshold=10**9)]
    bulk = [normal(record) for record in enumerate_opportunities(onboarding.context, bulk_threshold=0)]
    assert [record["Id"] for record in rest] == sorted(onboarding.salesforce_ids("Opportunity"), key=str.upper)
    assert bulk == rest
    assert sum(1 for record in rest if record["OpportunityContactRoles"]) > 50
    assert {"Amount", "CloseDate", "StageName", "CreatedDate", "IsWon", "AccountId"} <= set(rest[0])


def test_an_import_reads_salesforce_once_and_writes_the_deal_ids_back_in_one_bulk_job(
        onboarding: Onboarding, monkeypatch: pytest.MonkeyPatch) -> None:
    world, context = onboarding.world, onboarding.context
    assert world.crms is not None
    salesforce, hubspot = world.crms.salesforce.app, world.crms.hubspot.app
    contacts = onboarding.salesforce_ids("Contact")
    account = onboarding.salesforce_ids("Account")[0]
    new = salesforce.load({"Opportunity": [
        {"Name": f"Late {n}", "StageName": "Prospecting", "CloseDate": "2027-03-31", "Amount": 100 + n,
         "AccountId": account} for n in range(25)]})["Opportunity"]
    salesforce.load({"OpportunityContactRole": [
        {"OpportunityId": opportunity_id, "ContactId": contacts[(n + role) % len(contacts)], "IsPrimary": role == 0}
        for n, opportunity_id in enumerate(new) for role in (0, 1)]})
    onboarding.settle()
    for app in (salesforce, hubspot):
        with app.lock:
            app.stats.clear()
    soql: list[str] = []
    run_query = salesforce._run_query

    def recording(request: Any, *args: Any) -> Any:
        soql.append(str(request.args.get("q")))
        return run_query(request, *args)

    monkeypatch.setattr(salesforce, "_run_query", recording)
    server = world.crms.hubspot.server.server
    hubspot_paths: list[str] = []
    serve = server.app

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        hubspot_paths.append(f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}")
        return serve(environ, start_response)

    monkeypatch.setattr(server, "app", counting)

    result = onboarding.cli("import", "opportunities", "--wait", "--timeout", "180", "--interval", "0.2", "--json")
    assert result.status == 0, result.err
    job = result.json()
    total = len(onboarding.salesforce_ids("Opportunity"))
    assert (job["status"], job["done"], job["failed"], job["total"]) == ("completed", total, 0, total)
    routes = salesforce.stats_snapshot()["by_route"]
    opportunity_reads = [text for text in soql if re.search(r"FROM Opportunity(\s|$)", text)]
    # The count and ONE page of full records with their roles; the workers read no opportunity again.
    assert len(opportunity_reads) == 2, opportunity_reads
    assert opportunity_reads[0] == "SELECT COUNT() FROM Opportunity"
    assert "OpportunityContactRoles" in opportunity_reads[1] and "Id IN" not in opportunity_reads[1]
    assert routes.get("POST /services/data/v<version>/jobs/ingest/", 0) == 1  # one bulk write-back for the job
    assert not any("composite/sobjects" in route for route in routes)  # no per-chunk collection writes
    written = {str(row["Id"]): str(row["HubSpot_Deal_Id__c"] or "") for row in salesforce.soql(
        "SELECT Id, HubSpot_Deal_Id__c FROM Opportunity")}
    links = context.store.links.get_many(LinkKind.OPPORTUNITY, Side.SALESFORCE, new)
    assert {opportunity_id: written[opportunity_id] for opportunity_id in new} == {
        opportunity_id: links[opportunity_id].hubspot_id for opportunity_id in new}
    assert hubspot_paths.count("POST /crm/v3/objects/deals/batch/upsert") == 1  # the 25 new deals only
    associations = [path for path in hubspot_paths if path.startswith("POST /crm/v4/associations/deals/")]
    # Contacts and companies once per worker invocation (the chunks come in one or two), not per chunk.
    assert 2 <= len(associations) <= 4 and all(path.endswith("/batch/create") for path in associations)
    onboarding.settle()


def test_importing_again_creates_nothing(onboarding: Onboarding, monkeypatch: pytest.MonkeyPatch) -> None:
    before = onboarding.hubspot_counts()
    # The workers run in this process: every enumeration now takes the Bulk API 2.0 path.
    monkeypatch.setattr(imports, "BULK_THRESHOLD", 0)
    assert onboarding.world.crms is not None
    bulk_jobs_before = len(onboarding.world.crms.salesforce.app.bulk.jobs)
    for kind in ("accounts", "contacts", "opportunities"):
        result = onboarding.cli("import", kind, "--wait", "--timeout", "180", "--interval", "0.2", "--json")
        assert result.status == 0, result.err
        job = result.json()
        assert job["status"] == "completed" and job["failed"] == 0 and job["done"] == job["total"] > 0
    onboarding.settle()
    # One query job each for accounts and contacts; two for opportunities (Bulk 2.0 has no subqueries:
    # the contact roles come from a second job, merged by opportunity id).
    assert len(onboarding.world.crms.salesforce.app.bulk.jobs) == bulk_jobs_before + 4
    assert onboarding.hubspot_counts() == before
    assert before == {"deals": len(onboarding.salesforce_ids("Opportunity")),
                      "companies": len(onboarding.salesforce_ids("Account")),
                      "contacts": len(onboarding.salesforce_ids("Contact"))}


def test_a_coordinator_that_dies_mid_enumeration_continues_from_its_cursor(onboarding: Onboarding) -> None:
    world, context = onboarding.world, onboarding.context
    dead_end = world.queue_url("ImportDLQ")
    job = start_import(dataclasses.replace(context, queues={**context.queues, "import": dead_end}), "contacts",
                       chunk_size=5)
    start = [parse_import_queue_body(message["Body"]) for message in _take(world, dead_end)]
    assert len(start) == 1
    sent: list[int] = []

    def send_then_die(queue_url: str, bodies: list[str]) -> int:
        sent.append(len(bodies))
        if len(sent) == 3:
            raise EnqueueError("the coordinator's Lambda timed out")
        return send_messages(queue_url, bodies)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(imports, "CHUNKS_PER_GROUP", 2)
        patch.setattr(imports, "send_messages", send_then_die)
        with pytest.raises(EnqueueError):
            run_coordinator(context, start[0])  # type: ignore[arg-type]
    stopped = context.store.jobs.get(job.job_id)
    assert stopped is not None
    assert (stopped.status, stopped.chunks_total, stopped.total) == (JobStatus.PENDING, 6, 30)

    resumed = onboarding.cli("import", "resume", job.job_id, "--wait", "--timeout", "180", "--interval", "0.2")
    assert resumed.status == 0, resumed.err
    assert "enumeration restarted" in resumed.out
    finished = context.store.jobs.get(job.job_id)
    contacts = onboarding.salesforce_ids("Contact")
    assert finished is not None
    assert (finished.status, finished.done, finished.failed, finished.total, finished.chunks_total) == (
        JobStatus.COMPLETED, len(contacts), 0, len(contacts), -(-len(contacts) // 5))


def test_a_record_that_cannot_be_imported_is_counted_failed_with_its_cause(onboarding: Onboarding) -> None:
    world, context = onboarding.world, onboarding.context
    assert world.crms is not None
    salesforce, hubspot = world.crms.salesforce.app, world.crms.hubspot.app
    hubspot.apply_config({"pipeline_limit": 4})  # HubSpot's default pipeline and our three: no room left
    try:
        loaded = salesforce.load({
            "RecordType": [{"Name": "Enterprise", "DeveloperName": "Enterprise", "SobjectType": "Opportunity",
                            "IsActive": True, "Stages": ["Prospecting", "Closed Won", "Closed Lost"]}],
            "Opportunity": [{"Name": "Over the limit", "StageName": "Prospecting", "CloseDate": "2027-01-31",
                             "RecordTypeId": "@RecordType:0", "AccountId": onboarding.salesforce_ids("Account")[0]}],
        })
        opportunity_id = loaded["Opportunity"][0]
        result = onboarding.cli("import", "opportunities", "--wait", "--timeout", "180", "--interval", "0.2")
        assert result.status == 4, result.err  # completed, with a failed record
        assert "1 failed" in result.out
        job = context.store.jobs.recent(1)[0]
        assert (job.status, job.failed, job.done) == (JobStatus.COMPLETED, 1, job.total - 1)
        errors = context.store.errors.for_record(opportunity_id)
        limit = [error for error in errors if error.category is ErrorCategory.PIPELINE_LIMIT]
        assert len(limit) == 1 and limit[0].record_type == "Opportunity"
        assert context.store.links.get_by_salesforce_id(LinkKind.OPPORTUNITY, opportunity_id) is None
    finally:
        hubspot.apply_config({"pipeline_limit": None})
    onboarding.settle()


def test_status_reports_toggles_pipelines_queues_jobs_and_usage(onboarding: Onboarding) -> None:
    result = onboarding.cli("status", "--json")
    assert result.status == 0, result.err
    document = result.json()
    assert document["toggles"]["deal_sync"] is True and document["toggles"]["company_sync"] is True
    assert document["pipelines"]["used"] == 3 and document["pipelines"]["limit"] >= 3
    assert set(document["queues"]) == {"SalesforceChanges", "HubSpotChanges", "Import", "Rollup"}
    assert document["queues"]["Import"]["dlq"] == 0
    assert document["running_jobs"] == []
    assert document["api_usage"]["salesforce"]["limit"] > 0
    text = onboarding.cli("status")
    assert text.status == 0
    assert "deal sync on" in text.out and "pipelines: 3 of" in text.out
    jobs = onboarding.cli("import", "status")
    assert jobs.status == 0 and jobs.out.count("completed") >= 5


def test_turning_company_sync_off_under_deal_sync_is_refused(onboarding: Onboarding) -> None:
    refused = onboarding.cli("toggle", "company-sync", "off")
    assert refused.status == 3 and "turn off deal sync first" in refused.err


def test_a_deployed_stack_is_found_by_its_outputs(onboarding: Onboarding) -> None:
    """``--stack``: names from the stack's outputs, the secret from its parameter (here a stack in the
    world's moto whose outputs name the world's own table and queues)."""
    world = onboarding.world
    assert world.endpoints is not None
    resources = world.endpoints.resources
    outputs = {"SyncTableName": world.table_name("SyncTable")}
    for name in ("SalesforceChanges", "HubSpotChanges", "Import", "Rollup"):
        outputs[f"{name}QueueUrl"] = world.queue_url(f"{name}Queue")
        outputs[f"{name}DLQUrl"] = world.queue_url(resources.dead_letter_queues[f"{name}Queue"])
    template = {
        "Parameters": {"CrmSecretArn": {"Type": "String"}},
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    world.client("cloudformation").create_stack(
        StackName="dealsync-operator-test", TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "CrmSecretArn", "ParameterValue": resources.secret_id}])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["status", "--stack", "dealsync-operator-test", "--json"])
    assert status == 0, err.getvalue()
    document = Result(status, out.getvalue(), err.getvalue()).json()
    assert document["target"] == "stack dealsync-operator-test"
    assert document["toggles"]["deal_sync"] is True and document["pipelines"]["used"] == 3
    assert document["queues"]["Import"] == {"visible": 0, "in_flight": 0, "dlq": 0}
    with contextlib.redirect_stderr(io.StringIO()) as missing:
        assert main(["status", "--stack", "no-such-stack"]) == 1
    assert "cannot read stack no-such-stack" in missing.getvalue()
