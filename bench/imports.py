"""Opportunity import benchmark in the local world (issue 6, DESIGN 1.8).

Seeds the Salesforce emulator (``load``) with N opportunities (default 10,000) with two contact roles
each, their accounts and contacts; the HubSpot emulator with the companies and contacts; and the
ACCOUNT and CONTACT links in DynamoDB, as earlier account and contact imports would have left them.
HubSpot runs at the Professional tier's rate limits (190 requests per 10 s). Then the real flow:
``start_import`` → the coordinator → the ``import_batch`` workers polling the ImportQueue → the
deal ids written back → the rollup worker.

The coordinator runs in a subprocess of its own (``--coordinator JOB``, same world, same code) so
its memory can be measured alone: tracemalloc around ``run_coordinator`` (every Python allocation it
makes, the CRM responses included), plus the subprocess's peak RSS. The workers run in this process,
concurrently with it, as Lambda would run them.

Prints wall time (start to job completed), records/s, Salesforce calls by route, HubSpot calls by path
(the import's own, then the rollup worker's, separately), calls per 100 records, the 429s HubSpot
answered, failed records, the coordinator's peak memory, and checks that every opportunity got exactly
one deal with its two contacts and its company, and its deal id back in Salesforce.

``--coordinator-only`` runs the coordinator alone (its chunks go to a queue no worker reads): the
memory target compares its peak at 100,000 opportunities with the 10,000 run's.

Run: .venv/bin/python -m bench.imports [--opportunities 10000] [--coordinator-only]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.memory import PhasePeak
from bench.rollups import partition_lookup_for_moto
from bench.setup import company_sync_on, deal_sync_on, person_is_a_hubspot_owner
from bench.sf_to_hs import _PathCounter
from dealsync.models.domain import JobStatus, Link, LinkKind
from dealsync.models.events import ImportStartMessage, parse_import_queue_body
from dealsync.services.context import SyncContext, build_context
from dealsync.services.imports import run_coordinator, start_import
from dealsync.store.links import _items as link_items
from dealsync_local.hubspot.common import COMPANIES, CONTACTS, DEALS
from dealsync_local.pytest_fixtures import start_world
from dealsync_local.world import LocalWorld

HUBSPOT_CALL_BUDGET_PER_10K = 150
SALESFORCE_CALL_BUDGET_PER_10K = 30


class _StatusCounter(_PathCounter):
    """The bench's HubSpot request counter by path, plus how many requests HubSpot answered with 429."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.statuses: Counter[str] = Counter()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        def counting(status: str, headers: Any, *args: Any) -> Any:
            if not str(environ.get("PATH_INFO", "")).startswith("/__emulator"):
                self.statuses[status.split(" ", 1)[0]] += 1
            return start_response(status, headers, *args)

        return super().__call__(environ, counting)


# --- seeding -------------------------------------------------------------------------------------------


def _link_all(context: SyncContext, kind: LinkKind, pairs: Iterable[tuple[str, str]]) -> None:
    moment = datetime.now(UTC)
    items = [item for salesforce_id, hubspot_id in pairs
             for item in link_items(Link(kind=kind, salesforce_id=salesforce_id, hubspot_id=hubspot_id,
                                         created_at=moment, updated_at=moment))]
    context.store.table.batch_write(puts=items)


def seed(world: LocalWorld, context: SyncContext, opportunities: int, accounts: int, contacts: int) -> list[str]:
    """Returns the opportunity ids."""
    assert world.crms is not None
    salesforce, hubspot = world.crms.salesforce.app, world.crms.hubspot.app
    person_is_a_hubspot_owner(world)
    company_sync_on(context)
    loaded = salesforce.load({
        "Account": [{"Name": f"Account {n}", "Website": f"https://a{n}.bench.example"} for n in range(accounts)],
        "Contact": [{"LastName": f"Buyer {n}", "Email": f"buyer{n}@bench.example",
                     "AccountId": f"@Account:{n % accounts}"} for n in range(contacts)],
    })
    account_ids, contact_ids = loaded["Account"], loaded["Contact"]
    companies = hubspot.load({"companies": [{"name": f"Account {n}", "salesforce_account_id": account_id}
                                            for n, account_id in enumerate(account_ids)]})["companies"]
    hubspot_contacts = hubspot.load({"contacts": [{"email": f"buyer{n}@bench.example", "lastname": f"Buyer {n}"}
                                                  for n in range(contacts)]})["contacts"]
    _link_all(context, LinkKind.ACCOUNT, zip(account_ids, map(str, companies), strict=True))
    _link_all(context, LinkKind.CONTACT, zip(contact_ids, map(str, hubspot_contacts), strict=True))
    # The contact import (services.contacts.link_contacts) keeps the lifecycle stage it saw when linking
    # (none, for these contacts), so the rollup worker raises stages without reading contacts first.
    seen_ms = int(time.time() * 1000)
    context.store.rollups.note_lifecycle_stages(
        {contact_id: (str(hubspot_id), "", seen_ms) for contact_id, hubspot_id in zip(contact_ids, hubspot_contacts,
                                                                                      strict=True)},
        only_if_unknown=True)
    deal_sync_on(context)
    opportunity_ids: list[str] = []
    stages = ("Prospecting", "Qualification", "Closed Won", "Closed Lost")
    for start in range(0, opportunities, 10_000):  # in slices: the emulator's load holds its lock meanwhile
        size = min(10_000, opportunities - start)
        opportunity_ids += salesforce.load({"Opportunity": [
            {"Name": f"Bench {n}", "StageName": stages[n % len(stages)], "CloseDate": "2027-06-30",
             "Amount": 1000 + n, "AccountId": account_ids[n % accounts], "OwnerId": salesforce.person_user_id}
            for n in range(start, start + size)]})["Opportunity"]
    for start in range(0, opportunities, 10_000):
        salesforce.load({"OpportunityContactRole": [
            {"OpportunityId": opportunity_ids[n], "ContactId": contact_ids[(2 * n + role) % contacts],
             "IsPrimary": role == 0}
            for n in range(start, min(opportunities, start + 10_000)) for role in (0, 1)]})
    return opportunity_ids


# --- the coordinator, measured in a subprocess -------------------------------------------------------


def coordinator_main(job_id: str, figures: Path) -> None:
    """Run the job's coordinator in this process and write what it cost to ``figures`` (JSON)."""
    context = build_context()
    message = ImportStartMessage(job_id=job_id, object="Opportunity")
    # Not ru_maxrss: it keeps the RSS this process had when forked from the (large) bench process.
    resident = PhasePeak.start()
    tracemalloc.start()
    started = time.perf_counter()
    run_coordinator(context, message)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resident.figures()
    figures.write_text(json.dumps({"coordinator_seconds": round(elapsed, 2), "traced_peak_bytes": peak,
                                   "max_rss_bytes": rss["peak_rss_bytes"], "rss_growth_bytes": rss["rss_growth_bytes"],
                                   "salesforce_calls": context.salesforce.calls}))


def _coordinate(world: LocalWorld, context: SyncContext, figures: Path,
                chunk_queue: str | None = None) -> tuple[str, subprocess.Popen[bytes]]:
    """Create the job (its start message diverted so the world's workers do not run the coordinator)
    and start the coordinator subprocess; ``chunk_queue``: where it queues the chunks instead of the
    ImportQueue (a queue nobody polls, to measure the coordinator alone)."""
    dead_end = world.queue_url("ImportDLQ")
    diverted = dataclasses.replace(context, queues={**context.queues, "import": dead_end})
    job = start_import(diverted, "opportunities")
    sqs = world.sqs()
    for message in sqs.receive_message(QueueUrl=dead_end, MaxNumberOfMessages=10).get("Messages", []):
        sqs.delete_message(QueueUrl=dead_end, ReceiptHandle=message["ReceiptHandle"])
        assert isinstance(parse_import_queue_body(message["Body"]), ImportStartMessage)
    # Its log lines go where nobody has to read them (a full pipe would stop it); its figures to a file.
    process = subprocess.Popen(  # noqa: S603 - this very module, with a job id we created
        [sys.executable, "-m", "bench.imports", "--coordinator", job.job_id, "--figures", str(figures)],
        stdout=subprocess.DEVNULL, env={**os.environ, **({"IMPORT_QUEUE_URL": chunk_queue} if chunk_queue else {})})
    return job.job_id, process


# --- checks ----------------------------------------------------------------------------------------------


def check(world: LocalWorld, opportunity_ids: list[str]) -> dict[str, int]:
    """Every opportunity: exactly one deal, associated with its contacts (two) and its company, and its
    deal id in HubSpot_Deal_Id__c. Returns the counts of what is wrong."""
    assert world.crms is not None
    store = world.crms.hubspot.app.store
    with store.lock:
        deals: Counter[str] = Counter()
        deal_of: dict[str, int] = {}
        wrong_associations = 0
        for record in store.records[DEALS.name].values():
            if record.archived:
                continue
            opportunity_id = str(record.values.get("salesforce_opportunity_id") or "")
            deals[opportunity_id] += 1
            deal_of[opportunity_id] = record.id
            contacts = store.associated(DEALS, record.id, CONTACTS)
            companies = store.associated(DEALS, record.id, COMPANIES)
            wrong_associations += len(contacts) != 2 or len(companies) != 1
    written_back = {str(row["Id"]): str(row.get("HubSpot_Deal_Id__c") or "")
                    for row in world.crms.salesforce.app.soql("SELECT Id, HubSpot_Deal_Id__c FROM Opportunity")}
    return {
        "opportunities_without_a_deal": sum(1 for oid in opportunity_ids if deals[oid] == 0),
        "opportunities_with_more_than_one_deal": sum(1 for oid in opportunity_ids if deals[oid] > 1),
        "deals_without_their_2_contacts_and_company": wrong_associations,
        "deal_ids_not_written_back": sum(1 for oid in opportunity_ids
                                         if written_back.get(oid) != str(deal_of.get(oid, "-"))),
    }


# --- the run ---------------------------------------------------------------------------------------------


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not done within {timeout:.0f} s")
        time.sleep(0.2)


def run_coordinator_only(world: LocalWorld, opportunities: int, accounts: int, contacts: int) -> None:
    """The coordinator alone (the workers never see its chunks): its time, calls and memory."""
    assert world.crms is not None
    salesforce = world.crms.salesforce.app
    salesforce.apply_config({"outbound_message_enabled": False, "change_events_enabled": False})
    context = build_context()
    seeded = time.perf_counter()
    seed(world, context, opportunities, accounts, contacts)
    print(f"seeded {opportunities:,} opportunities, {2 * opportunities:,} contact roles in "
          f"{time.perf_counter() - seeded:.1f} s", flush=True)
    world.drain(120)
    with salesforce.lock:
        salesforce.stats.clear()
    sqs = world.sqs()
    sink = sqs.create_queue(QueueName="bench-imports-coordinator-sink")["QueueUrl"]
    figures = world.state_dir / "coordinator.json"
    job_id, coordinator = _coordinate(world, context, figures, chunk_queue=sink)
    if coordinator.wait(timeout=3600) != 0:
        raise SystemExit(f"the coordinator process failed ({coordinator.returncode})")
    measured = json.loads(figures.read_text())
    job = context.store.jobs.get(job_id)
    assert job is not None
    queued = int(sqs.get_queue_attributes(QueueUrl=sink, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"]["ApproximateNumberOfMessages"])
    routes = dict(salesforce.stats_snapshot()["by_route"])
    print(f"coordinator of an import of {opportunities:,} opportunities (the chunks go to a queue no worker reads)")
    print(f"  enumerated           {job.total:,} records into {job.chunks_total:,} chunks ({queued:,} messages queued) "
          f"in {measured['coordinator_seconds']:.2f} s under tracemalloc")
    print(f"  Salesforce calls     {sum(routes.values()):8d}     by route: "
          f"{', '.join(f'{route}: {n}' for route, n in sorted(routes.items()))}")
    print(f"  coordinator memory   {measured['traced_peak_bytes'] / 2**20:8.1f} MiB traced peak "
          f"(tracemalloc around run_coordinator, in its own process; that process's peak RSS "
          f"{measured['max_rss_bytes'] / 2**20:.0f} MiB, "
          f"{measured['rss_growth_bytes'] / 2**20:.0f} MiB over its start)")
    print(json.dumps({"opportunities": opportunities, "coordinator_only": True, "total": job.total,
                      "chunks": job.chunks_total, "coordinator_seconds": measured["coordinator_seconds"],
                      "salesforce_calls": sum(routes.values()),
                      "coordinator_traced_peak_bytes": measured["traced_peak_bytes"],
                      "coordinator_max_rss_bytes": measured["max_rss_bytes"]}))


def run(world: LocalWorld, opportunities: int, accounts: int, contacts: int, timeout: float) -> None:
    assert world.crms is not None
    salesforce, hubspot = world.crms.salesforce.app, world.crms.hubspot.app
    hubspot.apply_config({"tier": "professional", "rate_limits": True})
    # The seed is what existed before deal sync was switched on: no notifications of it.
    salesforce.apply_config({"outbound_message_enabled": False, "change_events_enabled": False})
    context = build_context()
    seeded = time.perf_counter()
    opportunity_ids = seed(world, context, opportunities, accounts, contacts)
    # From now on change events, the design's main path: the import's own bulk write-back comes back tagged
    # client=dealsync and is dropped. (Outbound Messages carry no origin: with them on, the write-back of
    # 10,000 deal ids would come back as 10,000 ids the live worker re-reads, writing nothing as the shadows
    # agree — a cost of the org's Outbound Message rule, not of the import; left off here.)
    salesforce.apply_config({"change_events_enabled": True})
    print(f"seeded {opportunities:,} opportunities, {2 * opportunities:,} contact roles, {accounts:,} accounts and "
          f"{contacts:,} contacts (linked) in {time.perf_counter() - seeded:.1f} s", flush=True)
    world.drain(120)
    for app in (salesforce, hubspot):
        with app.lock:
            app.stats.clear()
    server = world.crms.hubspot.server.server
    counter = _StatusCounter(server.app)
    server.app = counter

    started = time.perf_counter()
    figures = world.state_dir / "coordinator.json"
    job_id, coordinator = _coordinate(world, context, figures)

    def completed() -> bool:
        job = context.store.jobs.get(job_id)
        return job is not None and job.status in (JobStatus.COMPLETED, JobStatus.FAILED)

    _wait(completed, timeout, "the import")
    finished = time.perf_counter()
    if coordinator.wait(timeout=60) != 0:
        raise SystemExit(f"the coordinator process failed ({coordinator.returncode})")
    coordinator_figures = json.loads(figures.read_text())
    import_paths = Counter(counter.counts)
    import_statuses = Counter(counter.statuses)
    salesforce_routes = dict(salesforce.stats_snapshot()["by_route"])
    job = context.store.jobs.get(job_id)
    assert job is not None
    elapsed = finished - started
    hubspot_import = sum(import_paths.values())
    salesforce_calls = sum(salesforce_routes.values())
    per_100 = 100 / opportunities
    print(f"import of {opportunities:,} opportunities ({job.status}: {job.message})")
    print(f"  wall time            {elapsed:8.2f} s   ({opportunities / elapsed:,.0f} records/s; the coordinator "
          f"enumerated in {coordinator_figures['coordinator_seconds']:.2f} s of it, under tracemalloc)")
    print(f"  Salesforce calls     {salesforce_calls:8d}     ({salesforce_calls * per_100:.2f} per 100 records; "
          f"budget {SALESFORCE_CALL_BUDGET_PER_10K * opportunities // 10_000})")
    print(f"    by route: {', '.join(f'{route}: {n}' for route, n in sorted(salesforce_routes.items()))}")
    print(f"  HubSpot calls        {hubspot_import:8d}     ({hubspot_import * per_100:.2f} per 100 records; "
          f"budget {HUBSPOT_CALL_BUDGET_PER_10K * opportunities // 10_000})")
    print(f"    by path: {', '.join(f'{path}: {n}' for path, n in sorted(import_paths.items()))}")
    print(f"  HubSpot 429s         {import_statuses['429']:8d}     (Professional tier, 190 per 10 s; every status: "
          f"{dict(sorted(import_statuses.items()))})")
    print(f"  records done/failed  {job.done:,} / {job.failed:,} of {job.total:,}")
    print(f"  coordinator memory   {coordinator_figures['traced_peak_bytes'] / 2**20:8.1f} MiB traced peak "
          f"(tracemalloc around run_coordinator, in its own process; that process's peak RSS "
          f"{coordinator_figures['max_rss_bytes'] / 2**20:.0f} MiB, "
          f"{coordinator_figures['rss_growth_bytes'] / 2**20:.0f} MiB over its start)", flush=True)
    world.drain(timeout)  # the rollups the import enqueued, and the webhooks of its own writes
    drained = time.perf_counter()
    rollup_paths = counter.counts - import_paths
    rollup_calls = sum(rollup_paths.values())
    print(f"  after the job        {rollup_calls:8d} HubSpot calls ({rollup_calls * per_100:.2f} per 100 records; the "
          f"rollup worker's, drained {drained - finished:.1f} s later); 429s {counter.statuses['429']}")
    print(f"    by path: {', '.join(f'{path}: {n}' for path, n in sorted(rollup_paths.items()))}")
    problems = check(world, opportunity_ids)
    print(f"  checks               {json.dumps(problems)}")
    print(json.dumps({
        "opportunities": opportunities, "wall_seconds": round(elapsed, 2), "records_per_second": round(
            opportunities / elapsed), "salesforce_calls": salesforce_calls, "hubspot_calls": hubspot_import,
        "rollup_hubspot_calls": rollup_calls, "hubspot_429": counter.statuses["429"], "failed": job.failed,
        "coordinator_traced_peak_bytes": coordinator_figures["traced_peak_bytes"],
        "coordinator_max_rss_bytes": coordinator_figures["max_rss_bytes"], **problems}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--opportunities", type=int, default=10_000)
    parser.add_argument("--accounts", type=int, default=0, help="default: one per 50 opportunities")
    parser.add_argument("--contacts", type=int, default=0, help="default: one per 5 opportunities")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--coordinator-only", action="store_true",
                        help="measure the coordinator alone: its chunks go to a queue no worker reads")
    parser.add_argument("--coordinator", metavar="JOB", help=argparse.SUPPRESS)  # the measured subprocess
    parser.add_argument("--figures", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.coordinator:
        coordinator_main(args.coordinator, args.figures)
        return
    partition_lookup_for_moto()  # moto's table Query is O(table size); DynamoDB's is not (see bench/rollups.py)
    accounts = args.accounts or max(1, args.opportunities // 50)
    contacts = args.contacts or max(2, args.opportunities // 5)
    with tempfile.TemporaryDirectory() as state_dir:
        world = start_world(Path(state_dir))
        try:
            if args.coordinator_only:
                run_coordinator_only(world, args.opportunities, accounts, contacts)
            else:
                run(world, args.opportunities, accounts, contacts, args.timeout)
        finally:
            world.stop()


if __name__ == "__main__":
    main()
