"""Salesforce → HubSpot benchmark in the local world (issue 4).

1. A burst of N opportunity changes (default 1,000) made by a Salesforce user, delivered by change
   events (Event Relay) and, with --both-paths, by Outbound Messages as well: wall time, records/s
   and the API calls dealsync made to each CRM (from the emulators' request statistics).
2. Single-change latency: change event to deal updated, p50 and p95 over --samples changes.

Run: .venv/bin/python -m bench.sf_to_hs [--records 1000] [--samples 20] [--both-paths]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import latency
from bench.memory import PhasePeak
from bench.setup import company_sync_on, deal_sync_on, person_is_a_hubspot_owner
from dealsync.models.domain import LinkKind
from dealsync.services.context import build_context
from dealsync.services.opportunity_sync import sync_opportunities
from dealsync_local.hubspot.common import DEALS
from dealsync_local.pytest_fixtures import start_world
from dealsync_local.world import LocalWorld

# Before the burst: the echoes of the seeding sync settle. On a shared, loaded machine that takes minutes.
SETUP_DRAIN_SECONDS = 900


def _calls(stats: dict[str, Any], *, writes_only: bool = False) -> int:
    return sum(count for route, count in stats["by_route"].items()
               if not writes_only or not route.startswith("GET"))


class _PathCounter:
    """Bench-only WSGI wrapper: counts the integration's HubSpot requests by concrete path, so calls on
    deals (the sync) and on contacts (the rollup worker's writes) can be told apart."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.counts: Counter[str] = Counter()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = str(environ.get("PATH_INFO", ""))
        if not path.startswith("/__emulator") and "crm-user" not in str(environ.get("HTTP_AUTHORIZATION", "")):
            self.counts[f"{environ.get('REQUEST_METHOD')} {path}"] += 1
        return self.app(environ, start_response)


def _deal_amount(world: LocalWorld, opportunity_id: str) -> str | None:
    assert world.crms is not None
    store = world.crms.hubspot.app.store
    with store.lock:
        record = store.find(DEALS, opportunity_id, "salesforce_opportunity_id")
        return None if record is None else record.values.get("amount")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--both-paths", action="store_true", help="Outbound Messages as well as change events")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as state_dir:
        world = start_world(Path(state_dir))
        try:
            run(world, args.records, args.samples, args.both_paths)
        finally:
            world.stop()


def run(world: LocalWorld, records: int, samples: int, both_paths: bool) -> dict[str, Any]:
    """Seed, run the burst and the latency samples, print them; returns the figures."""
    assert world.crms is not None
    salesforce = world.crms.salesforce.app
    hubspot = world.crms.hubspot.app
    context = build_context()
    person_is_a_hubspot_owner(world)
    company_sync_on(context)
    account_id = salesforce.create("Account", {"Name": "Bench Corp"})
    company_id = hubspot.load({"companies": [{"name": "Bench Corp", "salesforce_account_id": account_id}]})
    context.store.links.create(LinkKind.ACCOUNT, account_id, company_id["companies"][0])
    deal_sync_on(context)

    loaded = salesforce.load({
        "Contact": [{"LastName": f"Buyer {n}", "Email": f"buyer{n}@bench.example", "AccountId": account_id}
                    for n in range(2)],
        "Opportunity": [{"Name": f"Bench {n}", "StageName": "Prospecting", "CloseDate": "2027-06-30",
                         "Amount": 1000 + n, "AccountId": account_id, "OwnerId": salesforce.person_user_id}
                        for n in range(records)],
    })
    opportunity_ids = loaded["Opportunity"]
    salesforce.load({"OpportunityContactRole": [
        {"OpportunityId": opportunity_id, "ContactId": loaded["Contact"][n % 2], "IsPrimary": True}
        for n, opportunity_id in enumerate(opportunity_ids)]})
    # The pre-existing opportunities, as an import brings them over; the echoes of its deal-id write-back
    # are not what is measured, so Salesforce tells nobody of them.
    salesforce.apply_config({"notifications_enabled": False})
    for start in range(0, records, 1000):
        sync_opportunities(context, opportunity_ids[start:start + 1000], source="import")
    world.drain(SETUP_DRAIN_SECONDS)

    salesforce.apply_config({"notifications_enabled": True, "outbound_message_enabled": both_paths,
                             "change_events_enabled": True})
    salesforce.flush_notifications(30)
    world.drain(SETUP_DRAIN_SECONDS)
    for app in (salesforce, hubspot):
        with app.lock:
            app.stats.clear()
    hubspot_server = world.crms.hubspot.server.server
    counter = _PathCounter(hubspot_server.app)
    hubspot_server.app = counter

    # --- the burst ---------------------------------------------------------------------------------
    memory = PhasePeak.start()
    started = time.perf_counter()
    for n, opportunity_id in enumerate(opportunity_ids):
        salesforce.update("Opportunity", opportunity_id, {"Amount": 5000 + n})
    written = time.perf_counter()
    expected = {oid: str(5000 + n) for n, oid in enumerate(opportunity_ids)}
    while expected:
        expected = {oid: amount for oid, amount in expected.items() if _deal_amount(world, oid) != amount}
        if time.perf_counter() - started > 600:
            break
        time.sleep(0.05)
    applied = time.perf_counter()
    salesforce.flush_notifications(600)
    world.drain(600)  # the echoes (HubSpot webhooks of our own writes) and rollups, for the call counts
    drained = time.perf_counter()
    elapsed = applied - started
    burst_memory = memory.figures()
    peak = int(str(burst_memory["peak_rss_bytes"]))
    wrong = list(expected)
    sf_stats, hs_stats = salesforce.stats_snapshot(), hubspot.stats_snapshot()
    sf_calls, hs_calls = _calls(sf_stats), _calls(hs_stats)
    paths = "change events + Outbound Messages" if both_paths else "change events"
    print(f"burst of {records} opportunity changes ({paths}); calls counted until every queue drained")
    print(f"  wall time            {elapsed:8.2f} s   ({records / elapsed:,.0f} records/s; the whole world's peak "
          f"RSS during the burst {peak / 2**20:.0f} MiB)")
    print(f"    (Salesforce user's writes took {written - started:.2f} s; every deal up to date {elapsed:.2f} s after "
          f"the first; echoes and rollups drained {drained - applied:.2f} s later)")
    print(f"  Salesforce calls     {sf_calls:8d}     ({100 * sf_calls / records:.2f} per 100 records)")
    print(f"  HubSpot calls        {hs_calls:8d}     ({100 * hs_calls / records:.2f} per 100 records)")
    print(f"  deals not up to date {len(wrong):8d}")
    routes = ", ".join(f"{route}: {count}" for route, count in sorted(sf_stats["by_route"].items()))
    print(f"    Salesforce by route: {routes}")
    burst_paths = dict(counter.counts)  # the latency samples below count on
    deal_calls = sum(count for path, count in burst_paths.items() if "/objects/deals" in path)
    print(f"    HubSpot by path: {', '.join(f'{path}: {n}' for path, n in sorted(burst_paths.items()))}")
    print(f"    of the HubSpot calls, {deal_calls} on deals (the sync itself), {hs_calls - deal_calls} by what the "
          "burst set off (rollup writes to contacts)")

    # --- single-change latency ------------------------------------------------------------------------
    latencies = latency.measure(
        samples,
        change=lambda n: salesforce.update("Opportunity", opportunity_ids[n], {"Amount": 90000 + n}),
        applied=lambda n: _deal_amount(world, opportunity_ids[n]) == str(90000 + n),
        what="deal update")
    latency_figures = latency.report("single change, change event → deal updated", latencies)
    return {
        "records": records, "paths": paths, "wall_seconds": round(elapsed, 2),
        "records_per_second": round(records / elapsed, 1), "writes_seconds": round(written - started, 2),
        "drain_seconds": round(drained - applied, 2), "salesforce_calls": sf_calls, "hubspot_calls": hs_calls,
        "hubspot_deal_calls": deal_calls, "not_up_to_date": len(wrong), **burst_memory,
        "salesforce_by_route": dict(sf_stats["by_route"]), "hubspot_by_path": burst_paths,
        "latency": latency_figures,
    }

if __name__ == "__main__":
    main()
