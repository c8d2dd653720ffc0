"""Contact rollup recompute (DESIGN 1.7) of 10,000 contacts against a local world (moto server and
the HubSpot emulator over HTTPS), through the real worker entry (`process_rollup_messages`, batches
of 10 RollupMessages of 100 contacts, as the Lambda gets them from the RollupQueue).

    .venv/bin/python -m bench.rollups [--contacts 10000]

Seeding (not measured): the HubSpot contacts (emulator `load`), the CONTACT links and the projection
(two opportunities per contact: won, lost or open), written straight into the SyncTable in the
store's item format. The messages are built by paging the contact index over its 16 shards, as the
nightly full recompute does.

Runs, each printing wall time, contacts/s, HubSpot calls (client counter and the emulator's own
request count), lifecycle-stage reads, contact writes, Salesforce calls and HubSpot deal reads:
1. first recompute ever: nothing written yet; each contact's lifecycle stage is the one dealsync saw
   when it linked the contact (as ``services.contacts`` and the contact import record it), so no
   contact is read;
2. the same again, nothing changed: zero writes;
3. every opportunity's CreatedDate moved (all 10,000 contacts change, lifecycle stages known):
   the steady-state cost of a full recompute that has to write everything;
4. first recompute of contacts linked before dealsync kept their stage (no state at all): the stage
   of every contact whose rows call for one is read once, 100 per call — the one case above budget.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import Any

from bench.memory import PhasePeak
from dealsync.models.domain import Link, LinkKind
from dealsync.models.events import RollupMessage, salesforce_id_18
from dealsync.services.context import SyncContext, build_context
from dealsync.services.rollup_recompute import process_rollup_messages
from dealsync.services.rollups import full_recompute_pages
from dealsync.store.dynamo import iso
from dealsync.store.links import _items as link_items
from dealsync.store.rollups import _shard
from dealsync_local.world import LocalWorld

T0 = datetime(2025, 1, 1, tzinfo=UTC)
STAGES = ("lead", "lead", "lead", "subscriber", "customer", "evangelist", "other", "")


def partition_lookup_for_moto() -> None:
    """moto answers a table Query by sorting and scanning the whole table (O(table size) per query),
    so 10,000 one-partition queries over a 50,000-item table measure moto, not dealsync. In this
    process only, look the partition up directly, as DynamoDB does; the rest of moto's Query logic
    (key conditions, sorting, paging) is unchanged. Index queries are left as they are."""
    from moto.dynamodb.models.table import Table

    original = Table.query
    lock = threading.Lock()

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("index_name") or hash_key is None or not self.range_key_attr:
            return original(self, hash_key, *args, **kwargs)
        with lock:
            partition = list((self.items.get(hash_key) or {}).values())
            self.all_items = lambda: sorted(partition, key=lambda item: item.range_key)
            try:
                return original(self, hash_key, *args, **kwargs)
            finally:
                del self.all_items

    Table.query = query  # type: ignore[method-assign]


def contact_id(index: int) -> str:
    return salesforce_id_18(f"003{index:012d}")


def opportunity_id(index: int) -> str:
    return salesforce_id_18(f"006{index:012d}")


def seed(world: LocalWorld, context: SyncContext, n: int, shift_days: int = 0) -> None:
    """HubSpot contacts, CONTACT links, the projection: opportunity i has roles for contacts i and i+1."""
    table = context.store.table
    if not shift_days:
        assert world.crms is not None
        hubspot = world.crms.hubspot.app
        contacts = [{"email": f"c{index}@bench.example", "lifecyclestage": STAGES[index % len(STAGES)]}
                    for index in range(n)]
        hubspot_ids = hubspot.load({"contacts": contacts})["contacts"]
        moment = datetime.now(UTC)
        links = []
        for index, hubspot_id in enumerate(hubspot_ids):
            link = Link(kind=LinkKind.CONTACT, salesforce_id=contact_id(index), hubspot_id=str(hubspot_id),
                        created_at=moment, updated_at=moment)
            links += list(link_items(link))
        table.batch_write(puts=links)
        # Linking a contact (services.contacts, the contact import) keeps the lifecycle stage it saw.
        seen_ms = int(time.time() * 1000)
        context.store.rollups.note_lifecycle_stages(
            {contact_id(index): (str(hubspot_id), contacts[index]["lifecyclestage"], seen_ms)
             for index, hubspot_id in enumerate(hubspot_ids)}, only_if_unknown=True)
        table.batch_write(puts=[{"pk": f"ROLLUPCONTACTS#{_shard(contact_id(i)):02d}", "sk": contact_id(i),
                                 "contact_id": contact_id(i)} for i in range(n)])
    rows = []
    for index in range(n):
        kind = index % 3  # 0 won, 1 lost, 2 open
        for contact in (contact_id(index), contact_id((index + 1) % n)):
            rows.append({
                "pk": f"ROLLUP#{contact}", "sk": f"OPP#{opportunity_id(index)}", "contact_id": contact,
                "opportunity_id": opportunity_id(index), "amount": str(1000 + index),
                "created": iso(T0 + timedelta(minutes=index, days=shift_days)),
                "close_date": (T0 + timedelta(days=30 + index % 300)).date().isoformat(),
                "closed": kind != 2, "won": kind == 0,
                "gsi1pk": f"ROLLUPOPP#{opportunity_id(index)}", "gsi1sk": contact,
            })
    table.batch_write(puts=rows)


def forget_states(context: SyncContext, n: int) -> None:
    """No written-values state at all: nothing written yet and no stage known."""
    context.store.table.batch_write(deletes=[{"pk": f"ROLLUP#{contact_id(i)}", "sk": "STATE"} for i in range(n)])


def full_recompute_messages(context: SyncContext) -> list[str]:
    """What the nightly task enqueues (``enqueue_full_recompute``): a RollupMessage per page."""
    return [RollupMessage(contact_ids=page).model_dump_json() for page in full_recompute_pages(context)]


def count_calls(context: SyncContext) -> Counter[str]:
    """Count HubSpot client calls by method and object type (deal reads must stay at zero)."""
    counts: Counter[str] = Counter()
    hubspot = context.hubspot
    for name in ("batch_read", "batch_update", "batch_upsert", "batch_create", "search", "associations_read",
                 "properties", "create_property", "create_property_group"):
        original: Callable[..., Any] = getattr(hubspot, name)

        def wrapper(*args: Any, _original: Callable[..., Any] = original, _name: str = name, **kwargs: Any) -> Any:
            object_type = str(args[0]) if args else ""
            before = hubspot.calls
            try:
                return _original(*args, **kwargs)
            finally:
                counts[f"{_name} {object_type}".strip()] += hubspot.calls - before

        setattr(hubspot, name, wraps(original)(wrapper))
    return counts


def run(world: LocalWorld, context: SyncContext, bodies: Sequence[str], label: str, n: int) -> dict[str, Any]:
    assert world.crms is not None
    emulator = world.crms.hubspot.app
    emulator.stats.clear()
    counts = count_calls(context)
    hubspot_before, salesforce_before = context.hubspot.calls, context.salesforce.calls
    context.forget("contact_properties")  # as a fresh Lambda container: definitions read once
    started = time.perf_counter()
    failures = 0
    for start in range(0, len(bodies), 10):  # BatchSize 10
        records = [{"messageId": f"m{start + offset}", "body": body}
                   for offset, body in enumerate(bodies[start:start + 10])]
        failures += len(process_rollup_messages(records, context)["batchItemFailures"])
    wall = time.perf_counter() - started
    hubspot_calls = context.hubspot.calls - hubspot_before
    deal_reads = sum(value for key, value in counts.items() if key.endswith(" deals") and "update" not in key)
    return {
        "run": label, "contacts": n, "wall_seconds": round(wall, 2), "contacts_per_second": round(n / wall),
        "hubspot_calls": hubspot_calls, "hubspot_requests_seen_by_emulator": emulator.stats_snapshot()["total"],
        "contact_writes_calls": counts["batch_update contacts"], "lifecycle_read_calls": counts["batch_read contacts"],
        "property_definition_calls": counts["properties contacts"],
        "salesforce_calls": context.salesforce.calls - salesforce_before, "hubspot_deal_reads": deal_reads,
        "failed_messages": failures, "by_call": dict(counts),
    }


LABELS = ("1 first recompute (stages seen when the contacts were linked)", "2 nothing changed",
          "3 every contact changed (stages known)",
          "4 first recompute, contacts linked before dealsync kept stages (stages unknown: read)")


def measure(world: LocalWorld, context: SyncContext, n: int, steady_state: bool = True) -> dict[str, Any]:
    """Seed n contacts, then the runs (1 and 2 only without ``steady_state``), each printed as a JSON
    line; returns the seeding time, the budget and every run's figures (with its peak memory)."""
    started = time.perf_counter()
    seed(world, context, n)
    seeded = round(time.perf_counter() - started, 1)
    print(json.dumps({"seeded_contacts": n, "seconds": seeded}), flush=True)
    bodies = full_recompute_messages(context)
    assert sum(len(json.loads(body)["contact_ids"]) for body in bodies) == n
    budget = math.ceil(n * 11 / 1000)  # 110 for 10,000 contacts
    results = []
    for label in LABELS if steady_state else LABELS[:2]:
        if label.startswith("3"):
            seed(world, context, n, shift_days=1)
        if label.startswith("4"):
            forget_states(context, n)
        memory = PhasePeak.start()
        result = run(world, context, bodies, label, n)
        result.update(memory.figures())
        result["within_budget"] = result["hubspot_calls"] <= budget
        print(json.dumps(result), flush=True)
        results.append(result)
    summary = {"budget_hubspot_calls": budget, "second_run_writes": results[1]["contact_writes_calls"]}
    print(json.dumps(summary))
    return {"contacts": n, "seed_seconds": seeded, **summary, "runs": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--no-steady-state", action="store_true",
                        help="skip runs 3 and 4 (every contact changed, stages unknown) to halve the time")
    args = parser.parse_args()
    partition_lookup_for_moto()
    with tempfile.TemporaryDirectory() as state_dir:
        world = LocalWorld(Path(state_dir), seed="none", run_schedules=False, port_base=0).start()
        try:
            measure(world, build_context(), args.contacts, steady_state=not args.no_steady_state)
        finally:
            world.stop()


if __name__ == "__main__":
    main()
