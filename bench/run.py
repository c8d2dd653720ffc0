"""`make bench`: every benchmark of issue 9 in one run, each beside the same work done the naive way
(``bench.naive``), one markdown table printed at the end and every figure written to bench/results.json.

Benchmarks (each in a subprocess of its own with a fresh local world, so figures do not interfere):

* ``import``: opportunity import of 10,000 and 100,000 (``bench.imports``); the naive import of a sample
  of opportunities of the same shape, loaded into the same world afterwards, extrapolated per record.
* ``sf_to_hs``: a burst of 1,000 opportunity changes and single-change latency (``bench.sf_to_hs``);
  the naive recipe on a sample of the same opportunities, extrapolated to the burst.
* ``hs_to_sf``: a burst of 1,000 deal changes and single-change latency (``bench.hs_to_sf``); likewise.
* ``rollups``: rollup recompute of 10,000 contacts (``bench.rollups``, its four runs); the naive recipe
  on a sample of the contacts (their deals seeded into HubSpot), extrapolated.
* ``cold_start``: ``python -X importtime -c "import app"`` in each built function directory of
  ``.aws-sam/build`` with the built layer on PYTHONPATH (``make build`` first when it is missing):
  the handler module's cumulative import time, median of 5 runs, and the peak RSS of that process.

Peak memory is the peak RSS (VmHWM, reset at the phase's start: ``bench.memory``) of the process doing
the work: in the local world that process also holds the emulators, moto and the pollers, so the
dealsync and naive figures share a baseline of a few hundred MiB.

Run: .venv/bin/python -m bench.run [--quick] [--only import sf_to_hs ...] [--import-sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from dealsync_local.world import LocalWorld

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
BUILD = ROOT / ".aws-sam" / "build"
RESULT_PREFIX = "BENCH-RESULT "
BENCHMARKS = ("cold_start", "sf_to_hs", "hs_to_sf", "rollups", "import")  # the longest last


@dataclass(frozen=True)
class Sizes:
    import_sizes: tuple[int, ...] = (10_000, 100_000)
    import_naive_sample: int = 100
    burst_records: int = 1_000
    burst_naive_sample: int = 200
    latency_samples: int = 20
    rollup_contacts: int = 10_000
    rollup_naive_sample: int = 200
    cold_start_runs: int = 5
    import_timeout: float = 7200.0


QUICK = Sizes(import_sizes=(1_000,), import_naive_sample=20, burst_records=100, burst_naive_sample=20,
              latency_samples=5, rollup_contacts=1_000, rollup_naive_sample=20, cold_start_runs=3,
              import_timeout=1200.0)


# --- the benchmarks, each run in a child process with its own world ------------------------------------------


class _Tee(io.TextIOBase):
    """Write through to ``out`` and keep a copy (to read a benchmark's printed JSON summary)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.copy = io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


def _last_json_line(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            found: dict[str, Any] = json.loads(line)
            return found
    raise SystemExit("the benchmark printed no JSON summary")


def _stage_of(index: int) -> str:
    return ("Prospecting", "Qualification", "Closed Won", "Closed Lost")[index % 4]


@contextlib.contextmanager
def fresh_world() -> Iterator[LocalWorld]:
    """A local world of its own (the test defaults), stopped afterwards."""
    from dealsync_local.pytest_fixtures import start_world

    with tempfile.TemporaryDirectory() as state_dir:
        world = start_world(Path(state_dir))
        try:
            yield world
        finally:
            world.stop()


def bench_import(size: int, naive_sample: int, timeout: float) -> dict[str, Any]:
    from bench import imports
    from bench.memory import PhasePeak

    with fresh_world() as world:
        assert world.crms is not None
        # The echoes of the deal-id write-back are not the import's work; on a loaded 2-core machine their
        # batches of 1,000 outlast the function timeout and are redelivered without end, so no drain finishes.
        world.crms.salesforce.app.apply_config({"notifications_enabled": False})
        memory = PhasePeak.start()
        tee = _Tee(sys.stdout)
        run_import: Callable[..., object] = imports.run  # figures returned, or printed as its last JSON line
        with contextlib.redirect_stdout(tee):
            returned = run_import(world, size, max(1, size // 50), max(2, size // 5), timeout)
        dealsync = returned if isinstance(returned, dict) else _last_json_line(tee.copy.getvalue())
        dealsync.update({f"world_{key}": value for key, value in memory.figures().items()})
        dealsync["salesforce_notifications"] = "off (write-back echoes not processed)"
        return {"benchmark": "import", "records": size, "dealsync": dealsync,
                "naive": naive_import(world, size, naive_sample)}


def naive_import(world: LocalWorld, size: int, naive_sample: int) -> dict[str, Any]:
    """The naive import of ``naive_sample`` opportunities of the import's shape (an account, two contact
    roles), loaded into the world after the import, extrapolated to ``size``."""
    from bench import naive
    from dealsync_local.hubspot.common import COMPANIES, CONTACTS, DEALS

    assert world.crms is not None
    salesforce, hubspot = world.crms.salesforce.app, world.crms.hubspot.app
    account_ids = [str(row["Id"]) for row in salesforce.soql("SELECT Id FROM Account")]
    contact_ids = [str(row["Id"]) for row in salesforce.soql("SELECT Id FROM Contact")]
    with naive.notifications_off(world):
        sample = salesforce.load({"Opportunity": [
            {"Name": f"Naive {n}", "StageName": _stage_of(n), "CloseDate": "2027-06-30", "Amount": 2000 + n,
             "AccountId": account_ids[n % len(account_ids)], "OwnerId": salesforce.person_user_id}
            for n in range(naive_sample)]})["Opportunity"]
        salesforce.load({"OpportunityContactRole": [
            {"OpportunityId": oid, "ContactId": contact_ids[(2 * n + role) % len(contact_ids)], "IsPrimary": role == 0}
            for n, oid in enumerate(sample) for role in (0, 1)]})
        recipe = naive.NaiveRecipe.connect()
        deals: dict[str, str] = {}
        figures = naive.measure(recipe, len(sample), lambda: deals.update(recipe.import_opportunities(sample)),
                                total_records=size)
    store = hubspot.store

    def complete(deal_id: str) -> bool:
        return (len(store.associated(DEALS, int(deal_id), CONTACTS)) == 2
                and len(store.associated(DEALS, int(deal_id), COMPANIES)) == 1)

    with store.lock:
        incomplete = {oid for oid in sample if oid not in deals or not complete(deals[oid])}
    written_back = {str(row["Id"]): str(row.get("HubSpot_Deal_Id__c") or "") for row in salesforce.soql(
        "SELECT Id, HubSpot_Deal_Id__c FROM Opportunity WHERE Name LIKE 'Naive %'")}
    incomplete |= {oid for oid in sample if written_back.get(oid) != deals.get(oid)}
    figures["incomplete"] = len(incomplete)
    return figures


def bench_sf_to_hs(records: int, samples: int, naive_sample: int) -> dict[str, Any]:
    from bench import naive, sf_to_hs

    with fresh_world() as world:
        assert world.crms is not None
        salesforce = world.crms.salesforce.app
        dealsync = sf_to_hs.run(world, records, samples, both_paths=False)
        opportunity_ids = [str(row["Id"]) for row in salesforce.soql("SELECT Id FROM Opportunity")]
        sample = opportunity_ids[:naive_sample]
        with naive.notifications_off(world):
            for n, oid in enumerate(sample):  # the same kind of change as the burst's
                salesforce.update("Opportunity", oid, {"Amount": 7000 + n})
            recipe = naive.NaiveRecipe.connect()

            def burst() -> None:
                for oid in sample:
                    recipe.opportunity_changed(oid)

            figures = naive.measure(recipe, len(sample), burst, total_records=records)
            figures["not_up_to_date"] = sum(1 for n, oid in enumerate(sample)
                                            if sf_to_hs._deal_amount(world, oid) != str(7000 + n))
            figures["latency"] = naive.measure_latency(
                samples,
                change=lambda n: salesforce.update("Opportunity", opportunity_ids[n], {"Amount": 95000 + n}),
                work=lambda n: recipe.opportunity_changed(opportunity_ids[n]),
                applied=lambda n: sf_to_hs._deal_amount(world, opportunity_ids[n]) == str(95000 + n),
                what="opportunity edited → deal updated")
        return {"benchmark": "sf_to_hs", "records": records, "dealsync": dealsync, "naive": figures}


def bench_hs_to_sf(records: int, samples: int, naive_sample: int) -> dict[str, Any]:
    from bench import hs_to_sf, naive
    from dealsync.models.domain import LinkKind, Side
    from dealsync.services.context import build_context

    with fresh_world() as world:
        assert world.crms is not None
        salesforce = world.crms.salesforce.app
        dealsync = hs_to_sf.run(world, records, samples)
        opportunity_ids = [str(row["Id"]) for row in salesforce.soql("SELECT Id FROM Opportunity")]
        links = build_context().store.links.get_many(LinkKind.OPPORTUNITY, Side.SALESFORCE, opportunity_ids)
        deal_ids = [links[oid].hubspot_id for oid in opportunity_ids]

        def amount(n: int) -> float:
            return float((salesforce.get("Opportunity", opportunity_ids[n]) or {}).get("Amount") or 0)

        sample = range(min(naive_sample, len(deal_ids)))
        with naive.notifications_off(world):
            for n in sample:
                hs_to_sf._person_update(world, deal_ids[n], {"amount": str(7000 + n)})
            recipe = naive.NaiveRecipe.connect()

            def burst() -> None:
                for n in sample:
                    recipe.deal_changed(deal_ids[n])

            figures = naive.measure(recipe, len(sample), burst, total_records=records)
            figures["not_up_to_date"] = sum(1 for n in sample if amount(n) != 7000 + n)
            figures["latency"] = naive.measure_latency(
                samples,
                change=lambda n: hs_to_sf._person_update(world, deal_ids[n], {"amount": str(96000 + n)}),
                work=lambda n: recipe.deal_changed(deal_ids[n]),
                applied=lambda n: amount(n) == 96000 + n,
                what="deal edited → opportunity updated")
        return {"benchmark": "hs_to_sf", "records": records, "dealsync": dealsync, "naive": figures}


def bench_rollups(contacts: int, naive_sample: int) -> dict[str, Any]:
    from bench import naive, rollups
    from dealsync.mapping.values import date_to_hubspot
    from dealsync.models.domain import LinkKind, Side
    from dealsync.services.context import build_context
    from dealsync_local.world import LocalWorld

    rollups.partition_lookup_for_moto()
    with tempfile.TemporaryDirectory() as state_dir:
        world = LocalWorld(Path(state_dir), seed="none", run_schedules=False, port_base=0).start()
        try:
            assert world.crms is not None
            context = build_context()
            dealsync = rollups.measure(world, context, contacts)
            # The naive recipe reads deals from HubSpot: the sample's deals (opportunity i has contacts i and
            # i+1, as the projection rollups.seed wrote), associated with their contacts, won/lost/open alike.
            sample = [rollups.contact_id(index) for index in range(naive_sample)]
            everyone = [rollups.contact_id(index) for index in range(min(contacts, naive_sample + 1))]
            everyone.append(rollups.contact_id(contacts - 1))
            links = context.store.links.get_many(LinkKind.CONTACT, Side.SALESFORCE, everyone)
            opportunities = sorted({(index - 1) % contacts for index in range(naive_sample)} | set(range(naive_sample)))
            stages = ("closedwon", "closedlost", "appointmentscheduled")
            deals = [{"properties": {
                "dealname": f"Rollup {index}", "amount": str(1000 + index), "pipeline": "default",
                "dealstage": stages[index % 3], "closedate": date_to_hubspot(f"2025-{1 + index % 12:02d}-15")},
                "associations": [{"to": {"id": links[rollups.contact_id(contact % contacts)].hubspot_id},
                                  "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]}
                                 for contact in (index, index + 1)]} for index in opportunities]
            world.crms.hubspot.app.load({"deals": deals})
            hubspot_ids = [links[contact].hubspot_id for contact in sample]
            with naive.notifications_off(world):
                recipe = naive.NaiveRecipe.connect()
                written: list[dict[str, str]] = []
                figures = naive.measure(recipe, len(sample), lambda: written.extend(
                    recipe.contact_rollup(hubspot_id) for hubspot_id in hubspot_ids), total_records=contacts)
            figures["incomplete"] = sum(1 for values in written if values["num_associated_deals"] != "2")
            return {"benchmark": "rollups", "records": contacts, "dealsync": dealsync, "naive": figures}
        finally:
            world.stop()


_IMPORT_TIME_LINE = "import time:"


def handler_import_seconds(stderr: str) -> float:
    """The cumulative import time of the top-level module ``app`` in ``-X importtime`` output, whose lines
    read ``import time: <self us> | <cumulative us> | <module, indented by depth>``."""
    for line in stderr.splitlines():
        if not line.startswith(_IMPORT_TIME_LINE):
            continue
        parts = line[len(_IMPORT_TIME_LINE):].split("|")
        if len(parts) == 3 and parts[2].rstrip() == " app" and parts[1].strip().isdigit():
            return int(parts[1]) / 1e6
    raise ValueError("no import time line for the handler module app")


def _import_once(directory: Path, env: dict[str, str]) -> tuple[float, int]:
    """Import the handler module once in a fresh interpreter: (its cumulative import seconds, peak RSS)."""
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen([sys.executable, "-X", "importtime", "-c", "import app"],
                                   cwd=directory, env=env, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)  # reaped here, for the child's own resource usage
        process.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        stderr = errors.read()
    if process.returncode:
        raise SystemExit(f"importing the built {directory.name} failed:\n{stderr[-2000:]}")
    return handler_import_seconds(stderr), usage.ru_maxrss * 1024


def bench_cold_start(runs: int) -> dict[str, Any]:
    from scripts.smoke_built_artifact import LAYER, _layer_view

    if not (LAYER / "dealsync").is_dir():
        subprocess.run(["make", "build"], cwd=ROOT, check=True)  # noqa: S607 - the project's own Makefile
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as layer_view:
        substituted = _layer_view(Path(layer_view))
        env = {**os.environ, "PYTHONPATH": layer_view, "POWERTOOLS_TRACE_DISABLED": "true",
               "SYNC_TABLE_NAME": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
        for directory in sorted(path.parent for path in BUILD.glob("*/app.py")):
            measured = [_import_once(directory, env) for _ in range(runs)]
            seconds = [value for value, _ in measured]
            median = statistics.median(seconds)
            figures[directory.name] = {"import_seconds_median": round(median, 3),
                                       "import_seconds_runs": [round(value, 3) for value in seconds],
                                       "peak_rss_bytes": max(peak for _, peak in measured)}
            print(f"cold start {directory.name}: import app {median * 1000:.0f} ms (median of {runs})", flush=True)
    return {"benchmark": "cold_start", "functions": figures, "runs": runs, "arm64_substituted_from_venv": substituted,
            "host_architecture": platform.machine()}


# --- the parent: one child per benchmark, then the table ---------------------------------------------------------


@dataclass(frozen=True)
class Job:
    key: str  # e.g. "import-10000"
    benchmark: str
    arguments: dict[str, Any]


def jobs(selected: Sequence[str], sizes: Sizes) -> list[Job]:
    planned: list[Job] = []
    for benchmark in selected:
        if benchmark == "import":
            planned += [Job(f"import-{size}", "import", {
                "size": size, "naive_sample": min(size, sizes.import_naive_sample), "timeout": sizes.import_timeout})
                for size in sizes.import_sizes]
        elif benchmark in ("sf_to_hs", "hs_to_sf"):
            planned.append(Job(benchmark, benchmark, {"records": sizes.burst_records, "samples": sizes.latency_samples,
                                                      "naive_sample": min(sizes.burst_records,
                                                                          sizes.burst_naive_sample)}))
        elif benchmark == "rollups":
            planned.append(Job("rollups", "rollups", {"contacts": sizes.rollup_contacts, "naive_sample": min(
                sizes.rollup_contacts - 1, sizes.rollup_naive_sample)}))
        else:
            planned.append(Job("cold_start", "cold_start", {"runs": sizes.cold_start_runs}))
    return planned


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "import": bench_import, "sf_to_hs": bench_sf_to_hs, "hs_to_sf": bench_hs_to_sf, "rollups": bench_rollups,
    "cold_start": bench_cold_start,
}


def _routine_log(line: str) -> bool:
    """The handlers' INFO logs and EMF metric lines (warnings and errors are shown)."""
    return line.startswith(('{"_aws"', '{"level":"INFO"', '{"level":"DEBUG"'))


def run_child(job: Job) -> dict[str, Any]:
    """Run one benchmark in a fresh interpreter (its own world and moto state); its output streams through."""
    command = [sys.executable, "-m", "bench.run", "--child", job.benchmark, json.dumps(job.arguments)]
    print(f"\n=== {job.key} {json.dumps(job.arguments)}", flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, bufsize=1)  # noqa: S603
    assert process.stdout is not None
    result: dict[str, Any] | None = None
    quiet_logs = 0
    for line in process.stdout:
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
        elif _routine_log(line):
            quiet_logs += 1
        else:
            print(line, end="", flush=True)
    if quiet_logs:
        print(f"({quiet_logs:,} INFO log and metric lines of the handlers not shown)")
    code = process.wait()
    seconds = round(time.perf_counter() - started, 1)
    if code or result is None:
        return {"benchmark": job.benchmark, "error": f"exit code {code}", "seconds": seconds, **job.arguments}
    return {**result, "seconds": seconds}


def _mib(value: object) -> str:
    return f"{int(str(value)) / 2**20:,.0f} MiB" if value not in (None, "") else "—"


def _memory(figures: dict[str, Any], prefix: str = "") -> str:
    """Peak RSS during the phase, and how much it grew over the phase's start."""
    peak, growth = figures.get(f"{prefix}peak_rss_bytes"), figures.get(f"{prefix}rss_growth_bytes")
    return f"{_mib(peak)} (+{_mib(growth)})" if growth is not None else _mib(peak)


def _per_100(calls: object, records: int) -> str:
    if calls is None or not records:
        return "—"
    value = 100 * float(str(calls)) / records
    return f"{value:,.2f}" if value < 10 else f"{value:,.1f}"


def _ratio(naive: object, dealsync: object) -> str:
    if naive is None or dealsync is None:
        return "—"
    naive_value, dealsync_value = float(str(naive)), float(str(dealsync))
    if dealsync_value == 0:
        return "— (dealsync: 0)" if naive_value else "—"
    ratio = naive_value / dealsync_value
    return f"{ratio:,.2f}x" if ratio < 1 else f"{ratio:,.1f}x"


def _memory_ratio(naive: dict[str, Any], dealsync: dict[str, Any]) -> str:
    """Of the growth over each phase's start: the peaks mostly measure the world both share."""
    growth = dealsync.get("rss_growth_bytes", dealsync.get("world_rss_growth_bytes"))
    return f"growth {_ratio(naive.get('rss_growth_bytes'), growth)}"


def _seconds(value: object) -> str:
    return f"{float(str(value)):,.1f} s" if value is not None else "—"


Row = tuple[str, str, str, str, str, str, str, str]
HEADER: Row = ("Benchmark", "Way", "Records", "Wall time", "Records/s", "Peak memory",
               "Salesforce calls /100 records", "HubSpot calls /100 records")


def _work_rows(title: str, records: int, dealsync: dict[str, Any], naive: dict[str, Any],
               dealsync_memory: str, dealsync_label: str = "dealsync") -> list[Row]:
    sample = (f"naive (sample of {naive['sample']:,}, extrapolated per record, not below the rate limits)"
              if naive.get("extrapolated") else "naive")
    return [
        (title, dealsync_label, f"{records:,}", _seconds(dealsync["wall_seconds"]),
         f"{records / float(dealsync['wall_seconds']):,.1f}", dealsync_memory,
         _per_100(dealsync["salesforce_calls"], records), _per_100(dealsync["hubspot_calls"], records)),
        ("", sample, f"{records:,}", _seconds(naive["wall_seconds"]), f"{naive['records_per_second']:,.1f}",
         _memory(naive), _per_100(naive["salesforce_calls"], records),
         _per_100(naive["hubspot_calls"], records)),
        ("", "ratio naive ÷ dealsync", "", _ratio(naive["wall_seconds"], dealsync["wall_seconds"]),
         _ratio(records / float(dealsync["wall_seconds"]), naive["records_per_second"]) + " faster",
         _memory_ratio(naive, dealsync),
         _ratio(naive["salesforce_calls"], dealsync["salesforce_calls"]),
         _ratio(naive["hubspot_calls"], dealsync["hubspot_calls"])),
    ]


def _latency_rows(title: str, dealsync: dict[str, Any], naive: dict[str, Any]) -> list[Row]:
    def cell(figures: dict[str, Any]) -> str:
        return f"p50 {figures['p50_seconds']:.2f} s, p95 {figures['p95_seconds']:.2f} s"

    return [
        (title, "dealsync", f"{dealsync['samples']} changes", cell(dealsync), "—", "—", "—", "—"),
        ("", "naive (processing only, trigger delay not counted)", f"{naive['samples']} changes", cell(naive),
         "—", "—", "—", "—"),
        ("", "ratio naive ÷ dealsync", "", f"p50 {_ratio(naive['p50_seconds'], dealsync['p50_seconds'])}, "
         f"p95 {_ratio(naive['p95_seconds'], dealsync['p95_seconds'])}", "", "", "", ""),
    ]


def rows_for(result: dict[str, Any]) -> list[Row]:
    benchmark = result["benchmark"]
    if "error" in result:
        label = f"{benchmark} {result.get('size') or result.get('records') or ''}".strip()
        return [(label, "not measured", "", result["error"], "", "", "", "")]
    if benchmark == "import":
        dealsync, records = result["dealsync"], int(result["records"])
        memory = (f"{_memory(dealsync, 'world_')} world, seeding included; coordinator process "
                  f"{_mib(dealsync.get('coordinator_max_rss_bytes'))}")
        return _work_rows(f"Import of {records:,} opportunities", records, dealsync, result["naive"], memory)
    if benchmark in ("sf_to_hs", "hs_to_sf"):
        dealsync, naive = result["dealsync"], result["naive"]
        records = int(result["records"])
        burst = "Burst of {:,} opportunity changes, SF → HS" if benchmark == "sf_to_hs" else \
            "Burst of {:,} deal changes, HS → SF"
        latency = ("Single change SF → HS (change event → deal updated)" if benchmark == "sf_to_hs"
                   else "Single change HS → SF (deal edited → opportunity updated)")
        return (_work_rows(burst.format(records), records, dealsync, naive, _memory(dealsync))
                + _latency_rows(latency, dealsync["latency"], naive["latency"]))
    if benchmark == "rollups":
        records = int(result["records"])
        runs = result["dealsync"]["runs"]
        first = runs[0]
        rows = _work_rows(f"Rollup recompute of {records:,} contacts", records, first, result["naive"],
                          _memory(first), "dealsync, first recompute")
        for run in runs[1:]:
            rows.insert(len(rows) - 2, ("", f"dealsync, run {run['run']}", f"{records:,}",
                                        _seconds(run["wall_seconds"]), f"{run['contacts_per_second']:,}",
                                        _memory(run), _per_100(run["salesforce_calls"], records),
                                        _per_100(run["hubspot_calls"], records)))
        return rows
    cold: list[Row] = []
    for name, figures in result["functions"].items():
        cold.append((f"Cold start: import of {name}'s handler (built artifact)", "dealsync",
                     "—", f"{figures['import_seconds_median'] * 1000:,.0f} ms (median of {result['runs']})", "—",
                     _mib(figures["peak_rss_bytes"]), "0", "0"))
    cold.append(("", "naive", "", "not applicable: an iPaaS recipe has no code of its own to load", "", "", "", ""))
    return cold


def table(results: Sequence[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for result in results:
        lines += ["| " + " | ".join(row) + " |" for row in rows_for(result)]
    return "\n".join(lines)


def _git_commit() -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,  # noqa: S607
                           check=False)
    return found.stdout.strip() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (1,000 imported, bursts of 100, ...)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS), metavar="BENCHMARK",
                        help=f"run only these ({', '.join(BENCHMARKS)})")
    parser.add_argument("--import-sizes", nargs="+", type=int, help="opportunities per import run")
    parser.add_argument("--records", type=int, help="changes per burst (each direction)")
    parser.add_argument("--samples", type=int, help="single-change latency samples")
    parser.add_argument("--contacts", type=int, help="contacts in the rollup recompute")
    parser.add_argument("--naive-sample", type=int, help="records the naive way runs on, in every benchmark")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the figures go (JSON)")
    parser.add_argument("--table-from", type=Path, metavar="RESULTS_JSON",
                        help="print the table of an earlier run's figures instead of running anything")
    parser.add_argument("--child", nargs=2, metavar=("BENCHMARK", "ARGUMENTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.table_from:
        earlier = json.loads(args.table_from.read_text())
        print(f"## {earlier['heading']}\n\n{table(earlier['results'])}")
        return 0
    if args.child:
        result = CHILDREN[args.child[0]](**json.loads(args.child[1]))
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    sizes = QUICK if args.quick else Sizes()
    overrides: dict[str, Any] = {
        "import_sizes": tuple(args.import_sizes) if args.import_sizes else None, "burst_records": args.records,
        "latency_samples": args.samples, "rollup_contacts": args.contacts}
    if args.naive_sample:
        overrides.update(import_naive_sample=args.naive_sample, burst_naive_sample=args.naive_sample,
                         rollup_naive_sample=args.naive_sample)
    sizes = Sizes(**{**asdict(sizes), **{key: value for key, value in overrides.items() if value is not None}})
    started_at = datetime.now(UTC)
    heading = (f"dealsync benchmarks, {started_at:%Y-%m-%d %H:%M} UTC, commit {_git_commit()}, {os.cpu_count()} CPUs "
               f"(load average {os.getloadavg()[0]:.1f} at the start)")
    results: list[dict[str, Any]] = []
    for job in jobs(args.only, sizes):
        load_before = os.getloadavg()[0]
        result = run_child(job)
        results.append({**result, "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)]})
        # Written after every benchmark: a long run stopped half-way keeps what it measured.
        args.output.write_text(json.dumps({"heading": heading, "started_at": started_at.isoformat(),
                                           "sizes": asdict(sizes), "table": table(results), "results": results},
                                          indent=2) + "\n")
    print(f"\n## {heading}\n")
    print(table(results))
    print(f"\nfigures written to {args.output}")
    return 1 if any("error" in result for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
