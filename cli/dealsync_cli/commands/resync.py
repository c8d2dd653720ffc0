"""``dealsync resync RECORD_ID`` and ``dealsync resync --category C``: put records back on their queues.

A record with sync errors goes where its errors came from: an opportunity (Salesforce → HubSpot) on
the Salesforce changes queue, a deal (HubSpot → Salesforce) on the HubSpot changes queue, accounts and
contacts that failed to import as a ``resync`` job on the import queue. A record without errors that
dealsync links (an opportunity, deal, account or contact) is synced again all the same, which applies
new mappings to it, and so is one that only its CRM knows (say, an opportunity whose change rests in a
dead-letter queue after five failed deliveries). The workers clear a record's errors when it syncs, or
record them again with one more attempt. ``--wait`` waits until those queues have drained and tells
which records cleared.

Exit status: 0 queued (with ``--wait``: every record cleared), 2 an unknown category, 3 refused (an
unknown record, nothing to resync in the category, or deal sync / company sync off: the message says
which), 4 with ``--wait``: some records still fail (their categories are printed), 5 ``--timeout``
passed before the queues drained, 1 another error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from dealsync_cli.commands.errors import category_argument
from dealsync_cli.commands.rollups import queue_depth
from dealsync_cli.errors import CommandError
from dealsync_cli.target import (
    EXIT_FAILURES,
    EXIT_REFUSED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    Target,
    add_target_arguments,
    connect,
)

if TYPE_CHECKING:
    from dealsync.services.resync import ResyncReport

# Which queues a resync's records travel on (the stack output prefixes of dealsync_cli.target.QUEUES).
QUEUES_BY_ROUTE = {"opportunities": "SalesforceChanges", "deals": "HubSpotChanges", "accounts": "Import",
                   "contacts": "Import"}


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "resync", help="queue records with sync errors (one, or a category) again", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("record", nargs="?", metavar="RECORD_ID",
                        help="a Salesforce id (opportunity, account, contact) or a HubSpot deal id")
    parser.add_argument("--category", metavar="C", help="every record with an error of this category")
    parser.add_argument("--wait", action="store_true", help="wait until the records were synced again")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                        help="how long --wait waits (default: 600)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_target_arguments(parser)
    parser.set_defaults(func=run)


def _refused(args: argparse.Namespace, message: str) -> int:
    if args.json:
        print(json.dumps({"refused": True, "message": message}))
    print(f"dealsync: refused. {message}", file=sys.stderr)
    return EXIT_REFUSED


def queues_of(report: ResyncReport, target: Target) -> list[str]:
    plan = report.to_json()
    names = sorted({QUEUES_BY_ROUTE[route] for route in QUEUES_BY_ROUTE if plan[route]})
    return [target.queues[name] for name in names if name in target.queues]


def wait_until_drained(queue_urls: list[str], timeout: float, interval: float = 0.5) -> bool:
    """True once every queue is empty (nothing visible or in flight) twice in a row; False at the timeout."""
    import boto3

    client = boto3.client("sqs")
    started = time.monotonic()
    quiet = 0
    while quiet < 2:
        if time.monotonic() - started > timeout:
            return False
        time.sleep(interval)
        quiet = quiet + 1 if sum(queue_depth(client, url) for url in queue_urls) == 0 else 0
    return True


def outcome(target: Target, report: ResyncReport) -> dict[str, list[str]]:
    """Record id -> the categories it still has (empty: cleared)."""
    errors = target.context.store.errors
    return {record_id: sorted(str(error.category) for error in errors.for_record(record_id))
            for record_id in report.plan.record_ids}


def run(args: argparse.Namespace) -> int:
    from dealsync.clients.errors import CrmError
    from dealsync.services.resync import (
        NothingToResyncError,
        UnknownRecordError,
        resync_category,
        resync_record,
    )
    from dealsync.store import ToggleRefusedError

    if bool(args.record) == bool(args.category):
        raise CommandError("name one RECORD_ID or --category C", EXIT_USAGE)
    category = category_argument(args.category, args.json) if args.category else None
    target = connect(args)
    try:
        report = (resync_category(target.context, category) if category is not None
                  else resync_record(target.context, args.record))
    except (UnknownRecordError, NothingToResyncError, ToggleRefusedError) as error:
        return _refused(args, str(error))
    except CrmError as error:
        raise CommandError(f"resync failed: {error}") from error
    document: dict[str, Any] = {"requested": str(category) if category is not None else args.record,
                                **report.to_json()}
    if not args.json:
        plan = report.plan
        parts = [f"{len(ids)} {name}" for name, ids in (("opportunities", plan.opportunities), ("deals", plan.deals),
                                                        ("accounts", plan.accounts), ("contacts", plan.contacts))
                 if ids]
        print(f"queued {plan.total} record{'s' if plan.total != 1 else ''} for resync: {', '.join(parts) or 'none'}"
              + (f" (job {report.job_id})" if report.job_id else ""))
        if plan.unsupported:
            print(f"  not resyncable (no queue takes these record types): {', '.join(plan.unsupported)}")
    if not args.wait:
        if args.json:
            print(json.dumps(document))
        return 0
    drained = wait_until_drained(queues_of(report, target), args.timeout)
    remaining = outcome(target, report)
    failing = {record_id: categories for record_id, categories in remaining.items() if categories}
    document.update({"drained": drained, "cleared": sorted(set(remaining) - set(failing)), "failing": failing})
    if args.json:
        print(json.dumps(document))
    else:
        if not drained:
            print(f"the queues did not drain in {args.timeout:.0f} s: the records are still on their way")
        print(f"{len(remaining) - len(failing)} cleared, {len(failing)} still failing")
        for record_id, categories in sorted(failing.items()):
            print(f"  {record_id}: {', '.join(categories)}")
    if not drained:
        return EXIT_TIMEOUT
    return EXIT_FAILURES if failing else 0
