"""``dealsync budget [--salesforce-share FRACTION] [--json]``: dealsync's API budget.

The share of the Salesforce org's daily API requests that dealsync's batch work (the scheduled poll,
imports) may spend per UTC day: past it, batch work pauses with ``API_BUDGET`` and resumes by itself in
the next window; live sync of single changes is never held back by the share. Given as a fraction
(``0.25``) or a percentage (``25%``); it applies from the next batch step of every worker. Without an
option, shows the share and today's usage (as ``dealsync status`` does). Exit status 2 for a share
that is not more than 0 and at most 1.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from dealsync_cli.errors import CommandError
from dealsync_cli.target import EXIT_USAGE, add_target_arguments, connect


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "budget", help="dealsync's share of the Salesforce API allocation, and today's usage", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--salesforce-share", metavar="FRACTION", help="e.g. 0.25 or 25%%")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_target_arguments(parser)
    parser.set_defaults(func=run)


def parse_share(text: str) -> float:
    """``0.25`` or ``25%`` → 0.25; CommandError (exit 2) for anything not in (0, 1]."""
    raw = text.strip()
    try:
        share = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        share = float("nan")
    if not 0 < share <= 1:  # also refuses nan
        raise CommandError(f"--salesforce-share {text!r}: give a fraction more than 0 and at most 1 (e.g. 0.25 or "
                           "25%)", EXIT_USAGE)
    return share


def run(args: argparse.Namespace) -> int:
    from dealsync_cli.commands.status import api_usage_document, render_usage

    share = parse_share(args.salesforce_share) if args.salesforce_share is not None else None
    target = connect(args)
    context = target.context
    if share is not None:
        context.store.settings.set_options(salesforce_api_share=share)
    options = context.store.settings.options()
    usage = api_usage_document(context, None)
    if args.json:
        print(json.dumps({"salesforce_api_share": options.salesforce_api_share, "api_usage": usage}))
        return 0
    changed = " (set now)" if share is not None else ""
    print(f"dealsync's share of Salesforce's daily API requests: {options.salesforce_api_share:.0%}{changed}")
    print("\n".join(render_usage(usage)))
    return 0
