"""HubSpot → Salesforce benchmark in the local world (issue 5).

1. A burst of N deal changes (default 1,000) made by a HubSpot user and delivered as signed app
   webhooks (batches of up to 100 events): wall time, records/s and the API calls dealsync made to
   each CRM (from the emulators' request statistics), Salesforce writes and HubSpot reads apart.
   Target: at most 10 Salesforce write calls and 25 HubSpot read calls per 1,000 changes.
2. Single-change latency: deal changed in HubSpot to opportunity updated, p50 and p95 over --samples.

Run: .venv/bin/python -m bench.hs_to_sf [--records 1000] [--samples 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import latency
from bench.memory import PhasePeak
from bench.setup import company_sync_on, deal_sync_on, person_is_a_hubspot_owner
from bench.sf_to_hs import SETUP_DRAIN_SECONDS
from dealsync.models.domain import LinkKind, Side
from dealsync.services.context import build_context
from dealsync.services.opportunity_sync import sync_opportunities
from dealsync_local.hubspot.common import DEALS
from dealsync_local.pytest_fixtures import start_world
from dealsync_local.world import LocalWorld


def _calls(stats: dict[str, Any], *, writes: bool | None = None) -> int:
    """Requests by route; ``writes`` True: only non-GET (minus token requests), False: reads only."""
    total = 0
    for route, count in stats["by_route"].items():
        method = route.split(" ", 1)[0]
        is_read = method == "GET" or "/search" in route
        if "oauth2" in route or (writes is True and is_read) or (writes is False and not is_read):
            continue
        total += count
    return total


def _not_up_to_date(salesforce: Any, opportunity_ids: list[str]) -> list[str]:
    amounts = {str(row["Id"]): row.get("Amount") for row in salesforce.soql("SELECT Id, Amount FROM Opportunity")}
    return [oid for n, oid in enumerate(opportunity_ids) if float(amounts.get(oid) or 0) != 5000 + n]


def _person_update(world: LocalWorld, deal_id: str, properties: dict[str, str]) -> None:
    """A HubSpot user's edit: a CRM_UI change with its webhook events, no API request counted."""
    assert world.crms is not None
    hubspot = world.crms.hubspot.app
    with hubspot.store.lock:
        record = hubspot.store.find(DEALS, deal_id)
        assert record is not None
        hubspot.store.update(DEALS, record, properties, hubspot.person_source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state_dir:
        world = start_world(Path(state_dir))
        try:
            run(world, args.records, args.samples)
        finally:
            world.stop()


def run(world: LocalWorld, records: int, samples: int) -> dict[str, Any]:
    """Seed, run the burst and the latency samples, print them; returns the figures."""
    assert world.crms is not None
    salesforce = world.crms.salesforce.app
    hubspot = world.crms.hubspot.app
    context = build_context()
    person_is_a_hubspot_owner(world)
    company_sync_on(context)
    deal_sync_on(context)
    loaded = salesforce.load({"Opportunity": [
        {"Name": f"Bench {n}", "StageName": "Prospecting", "CloseDate": "2027-06-30", "Amount": 1000 + n,
         "OwnerId": salesforce.person_user_id} for n in range(records)]})
    opportunity_ids: list[str] = loaded["Opportunity"]
    # Only HubSpot's webhooks drive this run: Salesforce's own notifications are off (from the seeding on,
    # so the echoes of its deal-id write-back are not processed either).
    salesforce.apply_config({"notifications_enabled": False})
    for start in range(0, records, 1000):  # linked pairs, as an opportunity import leaves them
        sync_opportunities(context, opportunity_ids[start:start + 1000], source="import")
    links = context.store.links.get_many(LinkKind.OPPORTUNITY, Side.SALESFORCE, opportunity_ids)
    deal_ids = [links[oid].hubspot_id for oid in opportunity_ids]
    hubspot.flush_webhooks(30)
    world.drain(SETUP_DRAIN_SECONDS)
    for app in (salesforce, hubspot):
        with app.lock:
            app.stats.clear()

    # --- the burst ---------------------------------------------------------------------------------
    memory = PhasePeak.start()
    started = time.perf_counter()
    for n, deal_id in enumerate(deal_ids):
        _person_update(world, deal_id, {"amount": str(5000 + n)})
    wrong = _not_up_to_date(salesforce, opportunity_ids)
    while wrong and time.perf_counter() - started < 300:
        time.sleep(0.05)
        wrong = _not_up_to_date(salesforce, opportunity_ids)
    elapsed = time.perf_counter() - started  # until every opportunity has its deal's amount
    hubspot.flush_webhooks(120)
    world.drain(300)
    burst_memory = memory.figures()
    sf_stats, hs_stats = salesforce.stats_snapshot(), hubspot.stats_snapshot()
    print(f"burst of {records} deal changes (HubSpot webhooks)")
    print(f"  wall time              {elapsed:8.2f} s   ({records / elapsed:,.0f} records/s; the whole world's "
          f"peak RSS during the burst {int(str(burst_memory['peak_rss_bytes'])) / 2**20:.0f} MiB)")
    print(f"  Salesforce write calls {_calls(sf_stats, writes=True):8d}   (target ≤ 10 per 1,000)")
    print(f"  Salesforce read calls  {_calls(sf_stats, writes=False):8d}")
    # HubSpot's batch routes (read/update/...) share one route in the statistics: all calls are shown,
    # and none of this burst's needs a HubSpot write (the by-route list below says which were made).
    print(f"  HubSpot calls          {_calls(hs_stats):8d}   (target ≤ 25 reads per 1,000)")
    print(f"  opportunities not up to date {len(wrong):d}")
    for name, stats in (("Salesforce", sf_stats), ("HubSpot", hs_stats)):
        routes = ", ".join(f"{route}: {count}" for route, count in sorted(stats["by_route"].items()))
        print(f"    {name} by route: {routes}")

    # --- single-change latency ------------------------------------------------------------------------
    def opportunity_amount(n: int) -> float:
        return float((salesforce.get("Opportunity", opportunity_ids[n]) or {}).get("Amount") or 0)

    latencies = latency.measure(
        samples,
        change=lambda n: _person_update(world, deal_ids[n], {"amount": str(90000 + n)}),
        applied=lambda n: opportunity_amount(n) == 90000 + n,
        what="opportunity update")
    latency_figures = latency.report("single change, deal edited → opportunity updated", latencies)
    return {
        "records": records, "wall_seconds": round(elapsed, 2), "records_per_second": round(records / elapsed, 1),
        "salesforce_calls": _calls(sf_stats), "salesforce_write_calls": _calls(sf_stats, writes=True),
        "hubspot_calls": _calls(hs_stats), "not_up_to_date": len(wrong), **burst_memory,
        "salesforce_by_route": dict(sf_stats["by_route"]), "hubspot_by_route": dict(hs_stats["by_route"]),
        "latency": latency_figures,
    }

if __name__ == "__main__":
    main()
