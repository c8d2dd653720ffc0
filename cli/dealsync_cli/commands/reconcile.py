"""``dealsync reconcile [--apply] [--json]``, ``dealsync reconcile --last``: compare every linked
opportunity and deal across both CRMs and report the drift; ``--apply`` repairs it by the sync rules.

Drift: a deal missing for a linked opportunity, an opportunity missing for a linked deal, both gone
(an orphaned link), mapped fields the sync rules would write (field, both values, the side that wins),
id fields naming another record, duplicates (two links to one deal; a deal or an opportunity naming a
record linked to another), and deals or opportunities naming a record they are not linked to.

``--apply`` hands the drifted records to the sync engines — what HubSpot wins through the HubSpot →
Salesforce engine, the rest through the Salesforce → HubSpot one — so the sync rules decide, as for a
change: a deal deleted by hand tombstones its link and keeps the opportunity (DESIGN 1.6), a field
edited while deal sync was off goes the way its rule says. Duplicates are left for the operator.
Refused while deal sync is off. A weekly run in report mode is scheduled; ``--last`` shows the last run.

The run reads in batches (opportunities 200 per query, deals 100 per call) in this process; each
step is stored, and the finished run becomes the one ``--last`` shows.

Exit status: 0 no drift (or, with --apply, every drift repaired), 4 drift found (or left unrepaired),
3 refused (the message names the missing step), 1 an error or no run to show.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dealsync_cli.errors import CommandError
from dealsync_cli.target import EXIT_FAILURES, add_target_arguments, connect, refused

COLUMNS = (("OPPORTUNITY", 20), ("DEAL", 14), ("KIND", 23))


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "reconcile", help="compare every linked record across both CRMs; --apply repairs the drift",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--apply", action="store_true", help="repair the drift through the sync engines")
    mode.add_argument("--last", action="store_true", help="show the last finished run (e.g. the weekly one)")
    parser.add_argument("--json", action="store_true", help="machine-readable output (the whole run)")
    add_target_arguments(parser)
    parser.set_defaults(func=run)


def _progress(run: Any) -> None:
    if not sys.stderr.isatty():
        return
    print(f"\rreconcile: {run.phase} · {run.links_checked} links, {run.opportunities_checked} opportunities, "
          f"{run.deals_checked} deals checked · {run.drifts_total} drifted\x1b[K", end="", file=sys.stderr, flush=True)


def _exit_status(run: Any) -> int:
    if run.status == "failed":
        return 1
    if run.mode == "apply":
        return EXIT_FAILURES if run.not_repaired else 0
    return EXIT_FAILURES if run.drifts_total else 0


def _drift_line(drift: Any) -> str:
    head = "".join(f"{value or '-'!s:<{width}}" for value, (_, width) in
                   zip((drift.opportunity_id, drift.deal_id, drift.kind), COLUMNS, strict=True))
    if drift.field:
        what = (f"{drift.field} ⇄ {drift.hubspot_property}: Salesforce {drift.salesforce_value!r}, "
                f"HubSpot {drift.hubspot_value!r}. {drift.detail}")
    else:
        what = drift.detail
    return head + what + (f" → {drift.outcome}" if drift.outcome else "")


def print_run(run: Any) -> None:
    checked = (f"{run.links_checked} links ({run.links_paused} paused, {run.links_tombstoned} tombstoned), "
               f"{run.opportunities_checked} opportunities naming a deal, {run.deals_checked} deals")
    print(f"reconcile {run.run_id} ({run.mode}, {run.trigger}) {run.status}, started {run.started_at}"
          + (f", finished {run.finished_at}" if run.finished_at else ""))
    if run.message:
        print(f"  {run.message}")
    print(f"  checked: {checked}")
    if not run.drifts_total:
        print("  no drift")
        return
    summary = ", ".join(f"{kind} {count}" for kind, count in sorted(run.counts.items()))
    print(f"  drift: {run.drifts_total} ({summary})"
          + (f"; repaired {run.repaired}, not repaired {run.not_repaired}" if run.mode == "apply" else ""))
    print("".join(f"{title:<{width}}" for title, width in COLUMNS) + "DETAIL")
    for drift in run.drifts:
        print(_drift_line(drift))
    if run.drifts_total > len(run.drifts):
        print(f"  ... and {run.drifts_total - len(run.drifts)} more (the counts above are complete)")
    if run.mode == "report":
        print("  repair with `dealsync reconcile --apply`")


def run(args: argparse.Namespace) -> int:
    from dealsync.services.reconcile import last_run, reconcile
    from dealsync.store import ToggleRefusedError

    target = connect(args)
    if args.last:
        result = last_run(target.context)
        if result is None:
            raise CommandError("no reconcile has finished yet (run `dealsync reconcile`)")
    else:
        try:
            result = reconcile(target.context, apply=args.apply, progress=None if args.json else _progress)
        except ToggleRefusedError as error:
            return refused(error, args.json)
        if not args.json and sys.stderr.isatty():
            print(file=sys.stderr)
    if args.json:
        print(result.model_dump_json())
    else:
        print_run(result)
    return _exit_status(result)
